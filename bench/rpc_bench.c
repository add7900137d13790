/* tcpops-bench-rpc: calls one method on one channel from T threads for a
 * number of seconds and prints calls/s, p50 and p99 latency.
 *   tcpops-bench-rpc --addr HOST:PORT --method M [--threads T] [--seconds S]
 *                    [--pool N] [--size BYTES]
 *                    [--tls-cert FILE --tls-key FILE --tls-ca FILE]
 *   tcpops-bench-rpc --addr HOST:PORT --handshakes N --tls-cert ... (TLS only)
 * With the --tls-* files every connection is mutual TLS (rpc/tls.h).
 * --handshakes times N full TLS handshakes and N resumed ones instead.
 * Methods: test.Echo (a body of --size bytes), people.PetIds (owner bob),
 * pets.GetByIds (ids 1 and 3), people.Create and pets.Create (a new name per
 * call). Output is one line of key=value pairs, for bench/run.sh to read;
 * cpu_us_client is this process's CPU time (user + system) per call while
 * the callers ran. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rpc/channel.h"
#include "rpc/clock.h"
#include "rpc/conn.h"
#include "rpc/sock.h"
#include "tcpops.pb-c.h"

#define MAX_SAMPLES 4000000

typedef struct worker {
    rpc_channel *ch;
    const char *method;
    int index;
    const char *payload;
    size_t len;
    _Atomic int *stop;
    int64_t *lat_us;      /* this worker's latencies */
    size_t n, cap;
    uint64_t errors;
} worker;

/* Encodes the request of call number i into buf; returns its length. */
static size_t build(const worker *w, uint64_t i, uint8_t *buf, size_t cap)
{
    char name[64];
    if (strcmp(w->method, "people.PetIds") == 0) {
        Tcpops__PetIdsRequest r = TCPOPS__PET_IDS_REQUEST__INIT;
        r.owner = "bob";
        return tcpops__pet_ids_request__pack(&r, buf);
    }
    if (strcmp(w->method, "pets.GetByIds") == 0) {
        uint64_t ids[] = {1, 3};
        Tcpops__GetPetsByIdsRequest r = TCPOPS__GET_PETS_BY_IDS_REQUEST__INIT;
        r.n_ids = 2;
        r.ids = ids;
        return tcpops__get_pets_by_ids_request__pack(&r, buf);
    }
    snprintf(name, sizeof(name), "bench-%d-%d-%llu", (int)getpid(), w->index,
             (unsigned long long)i);
    if (strcmp(w->method, "people.Create") == 0) {
        Tcpops__CreatePersonRequest r = TCPOPS__CREATE_PERSON_REQUEST__INIT;
        r.name = name;
        return tcpops__create_person_request__pack(&r, buf);
    }
    if (strcmp(w->method, "pets.Create") == 0) {
        Tcpops__CreatePetRequest r = TCPOPS__CREATE_PET_REQUEST__INIT;
        r.name = name;
        return tcpops__create_pet_request__pack(&r, buf);
    }
    size_t n = w->len < cap ? w->len : cap;
    memcpy(buf, w->payload, n);
    return n;
}

static void *run(void *arg)
{
    worker *w = arg;
    uint8_t body[65536];
    for (uint64_t i = 0; !atomic_load_explicit(w->stop, memory_order_relaxed); i++) {
        rpc_call c = {.method = w->method, .body = body,
                      .body_len = build(w, i, body, sizeof(body))};
        int64_t t0 = rpc_now_us();
        int st = rpc_channel_call(w->ch, &c);
        int64_t dt = rpc_now_us() - t0;
        if (st != TCPOPS__STATUS__OK ||
            (strcmp(w->method, "test.Echo") == 0 && c.resp_len != w->len))
            w->errors++;
        rpc_call_fini(&c);
        if (w->n < w->cap)
            w->lat_us[w->n++] = dt;
    }
    return NULL;
}

/* CPU microseconds (user + system) this process has used so far. */
static int64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
           ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One connection: TCP connect and TLS handshake (their time in *us), then a
 * PING answered, which also brings the server's next session ticket.
 * Returns 0 or a negative errno. */
static int one_handshake(const struct sockaddr_in *sa, const char *addr, rpc_tls *tls,
                         rpc_stats *stats, int64_t *us)
{
    char err[RPC_ERRLEN];
    int64_t deadline = rpc_now_ms() + 2000, t0 = rpc_now_us();
    int fd = rpc_sock_connect(sa, 2000);
    if (fd < 0)
        return fd;
    rpc_conn c;
    rpc_conn_init(&c, fd, 4096, 0);
    int rc = rpc_conn_tls_start(&c, tls, addr, stats, err);
    if (rc == 0)
        rc = rpc_conn_handshake(&c, deadline);
    *us = rpc_now_us() - t0;
    rpc_frame ping = TCPOPS__FRAME__INIT, *pong = NULL;
    ping.kind = TCPOPS__KIND__PING;
    ping.id = 1;
    if (rc == 0)
        rc = rpc_conn_send(&c, &ping);
    if (rc == 0)
        rc = rpc_conn_flush_wait(&c, deadline);
    if (rc == 0 && rpc_conn_recv_frame(&c, &pong, deadline) != 1)
        rc = -EPROTO;
    rpc_frame_free(pong);
    rpc_conn_fini(&c);
    return rc;
}

/* --handshakes N: N connections one after another with no ticket kept
 * (full handshakes), then N each offering the last ticket (resumed).
 * Prints the median time of each kind and what the counters saw of each.
 * Returns the exit code. */
static int time_handshakes(const char *addr, rpc_tls *tls, int n)
{
    char err[RPC_ERRLEN] = "out of memory";
    struct sockaddr_in sa;
    rpc_stats *stats = NULL;
    int64_t *us = calloc(2 * (size_t)n, sizeof(*us));
    int rc = us == NULL || rpc_stats_new(&stats) < 0 ? -ENOMEM : rpc_addr_parse(addr, &sa, err);
    if (rc < 0) {
        fprintf(stderr, "tcpops-bench-rpc: %s\n", err);
        goto out;
    }
    for (int i = 0; rc == 0 && i < 2 * n; i++) {
        if (i < n)
            rpc_tls_forget_sessions(tls);
        rc = one_handshake(&sa, addr, tls, stats, &us[i]);
    }
    if (rc < 0) {
        fprintf(stderr, "tcpops-bench-rpc: handshake with %s: %s\n", addr, strerror(-rc));
        goto out;
    }
    qsort(us, (size_t)n, sizeof(*us), cmp64);
    qsort(us + n, (size_t)n, sizeof(*us), cmp64);
    printf("handshakes=%d full_us=%lld resumed_us=%lld full=%lld resumed=%lld\n", n,
           (long long)us[n / 2], (long long)us[n + n / 2],
           (long long)rpc_stats_get(stats, RPC_C_TLS_HANDSHAKES),
           (long long)rpc_stats_get(stats, RPC_C_TLS_RESUMED));
out:
    rpc_stats_free(stats);
    free(us);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *addr = NULL;
    const char *method = "test.Echo";
    int threads = 1, seconds = 5, pool = 2, size = 16, handshakes = 0;
    rpc_tls_files files = {0};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--addr") == 0) addr = argv[i + 1];
        else if (strcmp(argv[i], "--method") == 0) method = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0) seconds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--pool") == 0) pool = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0) size = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--tls-cert") == 0) files.cert = argv[i + 1];
        else if (strcmp(argv[i], "--tls-key") == 0) files.key = argv[i + 1];
        else if (strcmp(argv[i], "--tls-ca") == 0) files.ca = argv[i + 1];
        else if (strcmp(argv[i], "--handshakes") == 0) handshakes = atoi(argv[i + 1]);
        else addr = NULL, i = argc;
    }
    if (addr == NULL || threads <= 0 || seconds <= 0 || size < 0 || handshakes < 0 ||
        (handshakes > 0 && files.cert == NULL)) {
        fprintf(stderr, "usage: %s --addr HOST:PORT [--method M] [--threads T] "
                        "[--seconds S] [--pool N] [--size BYTES] [--handshakes N] "
                        "[--tls-cert FILE --tls-key FILE --tls-ca FILE]\n", argv[0]);
        return 2;
    }

    char err[RPC_ERRLEN];
    rpc_channel_cfg cfg;
    rpc_channel *ch = NULL;
    rpc_tls *tls = NULL;
    int given = rpc_tls_files_check(&files, err);
    if (given < 0 || (given == 1 && rpc_tls_new(&tls, RPC_TLS_CLIENT, &files, err) < 0)) {
        fprintf(stderr, "tcpops-bench-rpc: %s\n", err);
        return 2;
    }
    if (handshakes > 0) {
        int rc = time_handshakes(addr, tls, handshakes);
        rpc_tls_free(tls);
        return rc;
    }
    const char *eps[] = {addr};
    rpc_channel_cfg_default(&cfg);
    cfg.name = "bench";
    cfg.endpoints = eps;
    cfg.nendpoints = 1;
    cfg.pool_size = pool;
    cfg.tls = tls;
    if (rpc_channel_new(&ch, &cfg, err) < 0) {
        fprintf(stderr, "tcpops-bench-rpc: %s\n", err);
        rpc_tls_free(tls);
        return 1;
    }
    for (int i = 0; i < 200 && rpc_channel_ready(ch) < pool; i++)
        usleep(10000);

    char *payload = malloc((size_t)size + 1);
    memset(payload, 'x', (size_t)size);
    payload[size] = '\0';
    _Atomic int stop = 0;
    worker *w = calloc((size_t)threads, sizeof(*w));
    pthread_t *th = calloc((size_t)threads, sizeof(*th));
    for (int i = 0; i < threads; i++) {
        w[i].ch = ch;
        w[i].method = method;
        w[i].index = i;
        w[i].payload = payload;
        w[i].len = (size_t)size;
        w[i].stop = &stop;
        w[i].cap = MAX_SAMPLES / (size_t)threads;
        w[i].lat_us = malloc(w[i].cap * sizeof(int64_t));
    }
    int64_t t0 = rpc_now_us(), cpu0 = cpu_us();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, run, &w[i]);
    sleep((unsigned)seconds);
    atomic_store(&stop, 1);
    size_t total = 0;
    uint64_t errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    double elapsed = (double)(rpc_now_us() - t0) / 1e6;
    double cpu_per_call = total ? (double)(cpu_us() - cpu0) / (double)total : 0;
    int64_t *all = malloc((total ? total : 1) * sizeof(int64_t));
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, w[i].lat_us, w[i].n * sizeof(int64_t));
        k += w[i].n;
        free(w[i].lat_us);
    }
    qsort(all, total, sizeof(int64_t), cmp64);
    printf("method=%s threads=%d calls=%zu errors=%llu calls_per_s=%.0f p50_us=%lld p99_us=%lld "
           "cpu_us_client=%.1f\n",
           method, threads, total, (unsigned long long)errors, (double)total / elapsed,
           (long long)(total ? all[total / 2] : 0),
           (long long)(total ? all[(total * 99) / 100] : 0), cpu_per_call);
    free(all);
    free(w);
    free(th);
    free(payload);
    rpc_channel_free(ch);
    rpc_tls_free(tls);
    return errors == 0 ? 0 : 1;
}
