#include "rpc/stats.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"

#define MAX_METHODS 64
#define MAX_STATUS RPC_STATS_STATUSES

typedef struct method_row {
    char name[64];
    _Atomic uint64_t by_status[MAX_STATUS + 1];
} method_row;

struct rpc_stats {
    _Atomic int64_t counters[RPC_C_COUNT];
    _Atomic int nmethods;      /* rows [0, nmethods) are published */
    pthread_mutex_t add_lock;  /* serialises adding a row */
    method_row rows[MAX_METHODS + 1]; /* the last is "other" */
};

static const struct {
    const char *name;
    const char *help;
} counter_info[RPC_C_COUNT] = {
    [RPC_C_CONNECTS] = {"connects", "Connections made."},
    [RPC_C_RECONNECTS] = {"reconnects", "Connections made after one was lost."},
    [RPC_C_CONNECT_FAILURES] = {"connect_failures", "Failed connection attempts."},
    [RPC_C_CONNS_OPEN] = {"connections_open", "Connections up now."},
    [RPC_C_CONNS_LOST] = {"connections_lost", "Connections that ended with an error."},
    [RPC_C_LATE_ANSWERS] = {"late_answers",
                           "Answers that came after their call's deadline, dropped."},
    [RPC_C_GOAWAYS] = {"goaways", "GOAWAY frames received (client) or sent (server)."},
    [RPC_C_RETRIES] = {"retries", "Calls sent again elsewhere."},
    [RPC_C_FAIL_FAST] = {"fail_fast", "Calls refused at once: no healthy connection."},
    [RPC_C_PROTOCOL_ERRORS] = {"protocol_errors", "Frames that broke the protocol."},
    [RPC_C_CONNS_REFUSED] = {"connections_refused",
                           "Connections refused over the connection limit."},
    [RPC_C_EXPIRED_SKIPPED] = {"expired_skipped",
                           "Requests whose deadline passed before they ran."},
    [RPC_C_WRITE_BUF_FULL] = {"write_buffer_full", "Peers cut off for not reading their answers."},
    [RPC_C_PARTIAL_TIMEOUT] = {"partial_frame_timeout",
                           "Peers cut off for stalling inside a frame."},
    [RPC_C_IDLE_CLOSED] = {"idle_closed", "Connections closed after the idle timeout."},
    [RPC_C_CONNS_EVICTED] = {"connections_evicted",
                           "Idle connections closed to admit a new one at the connection limit."},
    [RPC_C_OVERSIZE_FRAMES] = {"oversize_frames", "Frames refused by their length header."},
    [RPC_C_INFLIGHT_LIMIT] = {"inflight_limit",
                           "Calls refused: every connection at its in-flight limit."},
    [RPC_C_EJECTIONS] = {"ejections", "Endpoints set aside after failing calls in a row."},
    [RPC_C_TLS_HANDSHAKES] = {"tls_handshakes",
                           "TLS handshakes completed in full, certificates checked."},
    [RPC_C_TLS_RESUMED] = {"tls_resumed", "TLS handshakes that resumed a session."},
    [RPC_C_TLS_REFUSED] = {"tls_refused",
                           "TLS handshakes refused: no certificate, a bad one, or not TLS."},
    [RPC_C_TEXT_REFUSED] = {"text_refused",
                           "Text-mode connections refused: not from loopback, or text mode off."},
};

int rpc_stats_new(rpc_stats **out)
{
    rpc_stats *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->add_lock, NULL);
    strcpy(s->rows[MAX_METHODS].name, "other");
    *out = s;
    return 0;
}

void rpc_stats_free(rpc_stats *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->add_lock);
    free(s);
}

void rpc_stats_add(rpc_stats *s, rpc_counter c, int64_t delta)
{
    if (s != NULL)
        atomic_fetch_add_explicit(&s->counters[c], delta, memory_order_relaxed);
}

int64_t rpc_stats_get(const rpc_stats *s, rpc_counter c)
{
    return atomic_load_explicit(&((rpc_stats *)s)->counters[c], memory_order_relaxed);
}

static method_row *find_row(rpc_stats *s, const char *method)
{
    int n = atomic_load_explicit(&s->nmethods, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (strcmp(s->rows[i].name, method) == 0)
            return &s->rows[i];
    return NULL;
}

void rpc_stats_call(rpc_stats *s, const char *method, int status)
{
    if (s == NULL)
        return;
    method_row *r = NULL;
    /* Whatever counts as "other" goes to the one "other" row, so that no
     * second row of that name appears among the first 64. */
    if (method == NULL || strlen(method) >= sizeof(s->rows[0].name))
        r = &s->rows[MAX_METHODS];
    else if ((r = find_row(s, method)) == NULL && strcmp(method, "other") == 0)
        r = &s->rows[MAX_METHODS];
    if (r == NULL) {
        pthread_mutex_lock(&s->add_lock);
        r = find_row(s, method);
        if (r == NULL) {
            int n = atomic_load_explicit(&s->nmethods, memory_order_relaxed);
            if (n < MAX_METHODS) {
                r = &s->rows[n];
                strcpy(r->name, method);
                atomic_store_explicit(&s->nmethods, n + 1, memory_order_release);
            } else {
                r = &s->rows[MAX_METHODS];
            }
        }
        pthread_mutex_unlock(&s->add_lock);
    }
    int slot = status >= 0 && status < MAX_STATUS ? status : MAX_STATUS;
    atomic_fetch_add_explicit(&r->by_status[slot], 1, memory_order_relaxed);
}

/* Reports one row's non-zero statuses. The statuses with no name (a peer
 * may answer any number) are summed into one UNKNOWN, so that no label
 * pair is reported twice. */
static void report_row(method_row *r, rpc_stats_call_fn fn, void *user)
{
    const char *unknown = rpc_status_name(-1);
    uint64_t nunknown = 0;
    for (int st = 0; st <= MAX_STATUS; st++) {
        uint64_t v = atomic_load_explicit(&r->by_status[st], memory_order_relaxed);
        const char *name = st < MAX_STATUS ? rpc_status_name(st) : unknown;
        if (strcmp(name, unknown) == 0)
            nunknown += v;
        else if (v != 0)
            fn(user, r->name, name, v);
    }
    if (nunknown != 0)
        fn(user, r->name, unknown, nunknown);
}

void rpc_stats_foreach_call(const rpc_stats *cs, rpc_stats_call_fn fn, void *user)
{
    rpc_stats *s = (rpc_stats *)cs;
    int n = atomic_load_explicit(&s->nmethods, memory_order_acquire);
    for (int i = 0; i <= MAX_METHODS; i++)
        if (i < n || i == MAX_METHODS)
            report_row(&s->rows[i], fn, user);
}

uint64_t rpc_stats_calls(const rpc_stats *cs, const char *method, int status)
{
    rpc_stats *s = (rpc_stats *)cs;
    int n = atomic_load_explicit(&s->nmethods, memory_order_acquire);
    int slot = status >= 0 && status < MAX_STATUS ? status : MAX_STATUS;
    uint64_t total = 0;
    for (int i = 0; i <= MAX_METHODS; i++) {
        if (i >= n && i != MAX_METHODS)
            continue;
        if (method == NULL || strcmp(s->rows[i].name, method) == 0)
            total += atomic_load_explicit(&s->rows[i].by_status[slot],
                                          memory_order_relaxed);
    }
    return total;
}

const char *rpc_counter_name(rpc_counter c)
{
    return c >= 0 && c < RPC_C_COUNT ? counter_info[c].name : "unknown";
}

const char *rpc_counter_help(rpc_counter c)
{
    return c >= 0 && c < RPC_C_COUNT ? counter_info[c].help : "";
}
