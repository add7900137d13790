/* A steady, paced HTTP load that records every request (httpload.h). */
#include "httpload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_client.h"
#include "rpc/clock.h"

#define PER_THREAD 100000

typedef struct worker {
    httpload *l;
    int index;
    pthread_t th;
    httpload_req *reqs;
    _Atomic size_t n; /* published after each record is complete */
} worker;

struct httpload {
    httpload_cfg cfg;
    atomic_int stop;
    worker *w;
    int started;
};

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One request of kind i % 4 on c, recorded into r. */
static void one(worker *w, http_conn *c, int i, httpload_req *r)
{
    const httpload_cfg *cfg = &w->l->cfg;
    char path[96];
    const char *method = "GET", *want = "[\"bixa\",\"rex\"]";
    memset(r, 0, sizeof(*r));
    if (i % 4 == 3) {
        method = "POST";
        r->post = 1;
        snprintf(r->name, sizeof(r->name), "%s-%d-%d", cfg->prefix, w->index, i / 4);
        snprintf(path, sizeof(path), "/people?name=%s", r->name);
        want = NULL;
    } else if (i % 4 == 2) {
        snprintf(path, sizeof(path), "/people?limit=2");
        want = "[\"bob\",\"jane\"]";
    } else {
        snprintf(path, sizeof(path), "/people/pets?owner=bob");
    }
    http_resp resp;
    r->start_ms = rpc_now_ms();
    int rc = http_do(c, method, path, NULL, NULL, 0, &resp, cfg->timeout_ms);
    r->end_ms = rpc_now_ms();
    if (rc < 0)
        return;
    r->status = resp.status;
    r->ok = r->status / 100 == 2 && (want == NULL || strcmp(resp.body, want) == 0);
    http_resp_free(&resp);
}

static void *run(void *arg)
{
    worker *w = arg;
    http_conn c = {.fd = -1, .port = w->l->cfg.port};
    for (int i = 0; !atomic_load(&w->l->stop) && atomic_load(&w->n) < PER_THREAD; i++) {
        size_t k = atomic_load(&w->n);
        one(w, &c, i, &w->reqs[k]);
        atomic_store_explicit(&w->n, k + 1, memory_order_release);
        pause_ms(w->l->cfg.pace_ms);
    }
    http_close(&c);
    return NULL;
}

int httpload_start(httpload **out, const httpload_cfg *cfg)
{
    httpload *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -1;
    l->cfg = *cfg;
    l->w = calloc((size_t)cfg->threads, sizeof(*l->w));
    if (l->w == NULL) {
        free(l);
        return -1;
    }
    for (int i = 0; i < cfg->threads; i++) {
        worker *w = &l->w[i];
        w->l = l;
        w->index = i;
        w->reqs = malloc(PER_THREAD * sizeof(*w->reqs));
        if (w->reqs == NULL || pthread_create(&w->th, NULL, run, w) != 0) {
            free(w->reqs);
            w->reqs = NULL;
            httpload_free(l);
            return -1;
        }
        l->started = i + 1;
    }
    *out = l;
    return 0;
}

static int by_start(const void *a, const void *b)
{
    const httpload_req *x = a, *y = b;
    return (x->start_ms > y->start_ms) - (x->start_ms < y->start_ms);
}

size_t httpload_snapshot(httpload *l, httpload_req **out)
{
    size_t total = 0, n[l->cfg.threads];
    for (int i = 0; i < l->started; i++)
        total += n[i] = atomic_load_explicit(&l->w[i].n, memory_order_acquire);
    httpload_req *all = malloc((total + 1) * sizeof(*all));
    size_t k = 0;
    for (int i = 0; all != NULL && i < l->started; i++) {
        memcpy(all + k, l->w[i].reqs, n[i] * sizeof(*all));
        k += n[i];
    }
    if (all != NULL)
        qsort(all, k, sizeof(*all), by_start);
    *out = all;
    return all != NULL ? k : 0;
}

void httpload_stop(httpload *l)
{
    if (atomic_exchange(&l->stop, 1))
        return;
    for (int i = 0; i < l->started; i++)
        pthread_join(l->w[i].th, NULL);
}

void httpload_free(httpload *l)
{
    if (l == NULL)
        return;
    httpload_stop(l);
    for (int i = 0; i < l->cfg.threads; i++)
        free(l->w[i].reqs);
    free(l->w);
    free(l);
}
