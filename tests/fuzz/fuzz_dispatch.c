/* libFuzzer target: a Frame, unpacked, then dispatched to the real handler
 * table of the people or pets service over a temporary database; or, when the
 * first byte is below 0x80, the rest of the input as the body of the method
 * that byte selects. Whatever the bytes, a handler answers with a status and
 * never crashes or leaks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "people_svc/people.h"
#include "pets_svc/pets.h"
#include "proc.h"
#include "svc/svc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static svc_local *people, *pets;
static char dir[256];

/* The temporary database goes when the fuzzer exits. */
static void cleanup(void)
{
    svc_local_free(pets);
    svc_local_free(people);
    rm_rf(dir);
}

static const char *const methods[] = {
    "people.List", "people.Create", "people.PetIds", "people.AddPet", "svc.Status",
    "pets.GetByIds", "pets.Create", "people.Nope",
};

static void call(const char *method, const uint8_t *body, size_t len)
{
    rpc_reply out;
    svc_local *l = strncmp(method, "pets.", 5) == 0 ? pets : people;
    svc_local_call(l, method, body, len, &out);
    if (out.status < 0 || out.status > 16)
        abort();
    free(out.body);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    if (make_temp_dir(dir, sizeof(dir)) < 0 || svc_local_new(&people, people_service(), dir, NULL, err, sizeof(err)) < 0 ||
        svc_local_new(&pets, pets_service(), dir, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_dispatch: %s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] < 0x80) {
        call(methods[data[0] % (sizeof(methods) / sizeof(methods[0]))], data + 1, size - 1);
        return 0;
    }
    rpc_frame *f = NULL;
    if (size == 0 || rpc_frame_unpack(data + 1, size - 1, &f) < 0)
        return 0;
    if (f->kind == TCPOPS__KIND__REQUEST)
        call(f->method, f->body.data, f->body.len);
    rpc_frame_free(f);
    return 0;
}
