/* libFuzzer target: text mode's JSON line reader, on the real people service
 * over a temporary database. Every line gets one JSON line back. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "people_svc/people.h"
#include "proc.h"
#include "svc/svc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static svc_local *people;
static char dir[256];

/* The temporary database goes when the fuzzer exits. */
static void cleanup(void)
{
    svc_local_free(people);
    rm_rf(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    if (make_temp_dir(dir, sizeof(dir)) < 0 || svc_local_new(&people, people_service(), dir, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_text: %s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = svc_local_text(people, (const char *)data, size);
    if (out == NULL)
        abort();
    json_error_t je;
    json_t *j = json_loads(out, 0, &je); /* the answer is always one JSON value */
    if (j == NULL || strchr(out, '\n') != NULL)
        abort();
    json_decref(j);
    free(out);
    return 0;
}
