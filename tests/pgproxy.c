/* The cutting PostgreSQL proxy (pgproxy.h).
 *
 *   service (libpq) --client msgs--> pump thread --forwarded--> PostgreSQL
 *                   <--answers------ (one per    <------------
 *                                     connection)
 *
 * Each connection has one pump thread polling both sockets. Client bytes
 * are cut into messages (before the startup message: int32 length, no type
 * byte; after it: type byte + int32 length) and forwarded one by one, so a
 * COMMIT can be held back. Statements are named by Parse ('P') and run by
 * Bind ('B'): the pump remembers which names mean BEGIN, COMMIT or ROLLBACK,
 * marks the transaction when a Bind carries the marker as a parameter, and
 * cuts at the Bind of that transaction's COMMIT (or at a simple Query 'Q'
 * "COMMIT"). Cutting after the COMMIT counts the server's ReadyForQuery
 * ('Z') answers, one per Sync or Query, to know when the COMMIT's has come.
 * Writes block: the servers' answers in these tests are small. */
#include "pgproxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h" /* http_connect, http_send: plain socket helpers */

#define MAX_CONNS 64
#define MAX_STMTS 64
#define MAX_MSG (1 << 20)  /* larger messages close the connection: no test sends them */
#define CHUNK 65536
#define SSL_REQUEST 80877103
#define GSSENC_REQUEST 80877104

typedef enum kind { K_OTHER, K_BEGIN, K_COMMIT, K_ROLLBACK } kind;

struct pgproxy {
    int lfd, stopfd, port, upstream, log;
    pthread_t acceptor;
    pthread_mutex_t lock;      /* the fields below */
    char marker[128];
    int armed;
    pgproxy_cut how;
    int cuts;
    pthread_t pumps[MAX_CONNS];
    int npumps;
};

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

/* One proxied connection; its pump thread alone touches it. */
typedef struct pconn {
    pgproxy *px;
    int id, cfd, sfd;
    bytes in, out;             /* from the client / from the server, not yet forwarded */
    int started;               /* the startup message went by: typed messages follow */
    int single_bytes;          /* one-byte answers to SSL/GSS requests still due */
    struct {
        char name[64];
        kind k;
    } stmts[MAX_STMTS];
    int nstmts;
    int marked;                /* the open transaction bound the marker */
    int hold;                  /* cutting after the COMMIT: answers are swallowed */
    int wait_sync;             /* ... and the COMMIT's Sync has not gone by yet */
    long syncs, zs, cut_at_z;  /* Z answers owed and seen; the COMMIT's is cut_at_z */
} pconn;

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Reads what fd has into b. 0, or -1 when the peer closed or failed. */
static int fill(int fd, bytes *b)
{
    if (b->cap - b->len < CHUNK) {
        size_t cap = b->len + CHUNK;
        uint8_t *p = cap <= MAX_MSG + CHUNK ? realloc(b->p, cap) : NULL;
        if (p == NULL)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    ssize_t k;
    do
        k = recv(fd, b->p + b->len, b->cap - b->len, 0);
    while (k < 0 && errno == EINTR);
    if (k <= 0)
        return -1;
    b->len += (size_t)k;
    return 0;
}

static void consume(bytes *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* The NUL-terminated string at p[*off..n), advancing *off past it; NULL
 * when it is not terminated inside the message. */
static const char *cstr(const uint8_t *p, size_t n, size_t *off)
{
    const uint8_t *end = *off < n ? memchr(p + *off, '\0', n - *off) : NULL;
    if (end == NULL)
        return NULL;
    const char *s = (const char *)p + *off;
    *off = (size_t)(end - p) + 1;
    return s;
}

/* What a statement's text does to the transaction. */
static kind kind_of(const char *sql)
{
    while (isspace((unsigned char)*sql))
        sql++;
    size_t n = strcspn(sql, "; \t\r\n");
    const char *rest = sql + n + strspn(sql + n, "; \t\r\n");
    if (*rest != '\0')
        return K_OTHER;
    if (n == 5 && strncasecmp(sql, "BEGIN", 5) == 0)
        return K_BEGIN;
    if (n == 6 && strncasecmp(sql, "COMMIT", 6) == 0)
        return K_COMMIT;
    if (n == 8 && strncasecmp(sql, "ROLLBACK", 8) == 0)
        return K_ROLLBACK;
    return K_OTHER;
}

static void remember(pconn *c, const char *name, kind k)
{
    int i = 0;
    while (i < c->nstmts && strcmp(c->stmts[i].name, name) != 0)
        i++;
    if (i == MAX_STMTS)
        return; /* no test prepares this many: the statement goes unwatched */
    snprintf(c->stmts[i].name, sizeof(c->stmts[i].name), "%s", name);
    c->stmts[i].k = k;
    if (i == c->nstmts)
        c->nstmts++;
}

static kind lookup(const pconn *c, const char *name)
{
    for (int i = 0; i < c->nstmts; i++)
        if (strcmp(c->stmts[i].name, name) == 0)
            return c->stmts[i].k;
    return K_OTHER;
}

/* Whether one of the Bind's text parameters (body[off..n)) is the armed
 * marker. */
static int binds_marker(pconn *c, const uint8_t *body, size_t n, size_t off)
{
    if (off + 2 > n)
        return 0;
    off += 2 + 2 * (size_t)get16(body + off); /* parameter format codes */
    if (off + 2 > n)
        return 0;
    int nparams = get16(body + off), hit = 0;
    off += 2;
    pthread_mutex_lock(&c->px->lock);
    for (int i = 0; i < nparams && off + 4 <= n; i++) {
        int32_t len = (int32_t)get32(body + off);
        off += 4;
        if (len < 0 || off + (size_t)len > n)
            continue;
        if (c->px->log)
            fprintf(stderr, "pgproxy %d:   $%d = %.*s\n", c->id, i + 1,
                    len > 60 ? 60 : (int)len, (const char *)body + off);
        hit |= c->px->armed && (size_t)len == strlen(c->px->marker) &&
               memcmp(body + off, c->px->marker, (size_t)len) == 0;
        off += (size_t)len;
    }
    pthread_mutex_unlock(&c->px->lock);
    return hit;
}

/* The statement kind a typed client message runs (Bind or Query), noting
 * Parse's names and marking the transaction when it carries the marker. */
static kind watch(pconn *c, uint8_t type, const uint8_t *body, size_t n)
{
    size_t off = 0;
    const char *a = NULL, *b = NULL;
    kind k = K_OTHER;
    if (type == 'P' && (a = cstr(body, n, &off)) != NULL && (b = cstr(body, n, &off)) != NULL)
        remember(c, a, kind_of(b));
    else if (type == 'B' && (a = cstr(body, n, &off)) != NULL &&
             (b = cstr(body, n, &off)) != NULL)
        k = lookup(c, b);
    else if (type == 'Q' && (b = cstr(body, n, &off)) != NULL)
        k = kind_of(b);
    if (c->px->log && (type == 'P' || type == 'B' || type == 'Q')) {
        const char *text = b != NULL ? b : "(malformed)";
        int len = (int)strcspn(text, "\n");
        fprintf(stderr, "pgproxy %d: %c %s%s%.*s\n", c->id, type, type == 'P' ? a : "",
                type == 'P' ? ": " : "", len > 80 ? 80 : len, text);
    }
    if (k == K_BEGIN)
        c->marked = 0;
    if (type == 'B' && b != NULL && binds_marker(c, body, n, off))
        c->marked = 1;
    if (type == 'Q' && b != NULL && !c->marked) {
        pthread_mutex_lock(&c->px->lock);
        c->marked = c->px->armed && strstr(b, c->px->marker) != NULL;
        pthread_mutex_unlock(&c->px->lock);
    }
    return k;
}

/* At a COMMIT of a marked transaction: 1 when the connection is to be
 * closed now (cut before), 0 otherwise (cut after: hold the answers).
 * Disarms the proxy. */
static int commit_seen(pconn *c)
{
    int close_now = 0;
    pthread_mutex_lock(&c->px->lock);
    if (c->px->armed) {
        c->px->armed = 0;
        if (c->px->how == PGPROXY_CUT_BEFORE) {
            c->px->cuts++;
            close_now = 1;
        } else {
            c->hold = 1;
            c->wait_sync = 1;
        }
    }
    pthread_mutex_unlock(&c->px->lock);
    if (c->px->log)
        fprintf(stderr, "pgproxy %d: cutting at COMMIT (%s)\n", c->id,
                close_now ? "before" : "after");
    return close_now;
}

/* Forwards the complete client messages in c->in. -1 closes the connection. */
static int from_client(pconn *c)
{
    for (;;) {
        uint8_t *p = c->in.p;
        size_t hdr = c->started ? 5 : 4;
        if (c->in.len < hdr)
            return 0;
        uint32_t len = get32(p + hdr - 4);
        if (len < 4 || len > MAX_MSG)
            return -1;
        size_t total = hdr - 4 + len;
        if (c->in.len < total)
            return 0;
        int ends_sync = 0;
        if (!c->started) {
            uint32_t code = len >= 8 ? get32(p + 4) : 0;
            if (code == SSL_REQUEST || code == GSSENC_REQUEST)
                c->single_bytes++;
            else if (code >> 16 == 3) /* protocol 3.x: the startup message */
                c->started = ends_sync = 1; /* its answers end with a Z */
        } else {
            kind k = watch(c, p[0], p + 5, total - 5);
            if (k == K_COMMIT && c->marked && commit_seen(c))
                return -1;
            if (k == K_COMMIT || k == K_ROLLBACK)
                c->marked = 0;
            ends_sync = p[0] == 'S' || p[0] == 'Q';
        }
        if (http_send(c->sfd, p, total) < 0)
            return -1;
        c->syncs += ends_sync;
        if (ends_sync && c->wait_sync) { /* the COMMIT's answers end with this Z */
            c->wait_sync = 0;
            c->cut_at_z = c->syncs;
        }
        consume(&c->in, total);
    }
}

/* Forwards the complete server messages in c->out (none while holding).
 * -1 closes the connection. */
static int from_server(pconn *c)
{
    for (;;) {
        size_t total;
        if (c->single_bytes > 0 && c->out.len >= 1) {
            c->single_bytes--;
            total = 1;
        } else {
            if (c->out.len < 5)
                return 0;
            uint32_t len = get32(c->out.p + 1);
            if (len < 4 || len > MAX_MSG)
                return -1;
            total = 1 + (size_t)len;
            if (c->out.len < total)
                return 0;
            if (c->out.p[0] == 'Z')
                c->zs++;
        }
        if (!c->hold && http_send(c->cfd, c->out.p, total) < 0)
            return -1;
        consume(&c->out, total);
        if (c->hold && c->cut_at_z > 0 && c->zs >= c->cut_at_z) {
            pthread_mutex_lock(&c->px->lock);
            c->px->cuts++;
            pthread_mutex_unlock(&c->px->lock);
            return -1; /* the COMMIT was answered: the client never hears it */
        }
    }
}

static void *pump_main(void *arg)
{
    pconn *c = arg;
    struct pollfd p[3] = {{.fd = c->cfd, .events = POLLIN},
                          {.fd = c->sfd, .events = POLLIN},
                          {.fd = c->px->stopfd, .events = POLLIN}};
    for (;;) {
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[2].revents != 0)
            break;
        if (p[0].revents != 0 && (fill(c->cfd, &c->in) < 0 || from_client(c) < 0))
            break;
        if (p[1].revents != 0 && (fill(c->sfd, &c->out) < 0 || from_server(c) < 0))
            break;
    }
    close(c->cfd);
    close(c->sfd);
    free(c->in.p);
    free(c->out.p);
    free(c);
    return NULL;
}

/* Starts a pump for an accepted client; a server that does not accept
 * closes the client, as the server itself would have. */
static void start_pump(pgproxy *px, int cfd)
{
    pconn *c = calloc(1, sizeof(*c));
    int sfd = http_connect(px->upstream);
    pthread_mutex_lock(&px->lock);
    int ok = c != NULL && sfd >= 0 && px->npumps < MAX_CONNS;
    if (ok) {
        *c = (pconn){.px = px, .id = px->npumps, .cfd = cfd, .sfd = sfd};
        ok = pthread_create(&px->pumps[px->npumps], NULL, pump_main, c) == 0;
        px->npumps += ok;
    }
    pthread_mutex_unlock(&px->lock);
    if (!ok) {
        close(cfd);
        if (sfd >= 0)
            close(sfd);
        free(c);
    }
}

static void *accept_main(void *arg)
{
    pgproxy *px = arg;
    struct pollfd p[2] = {{.fd = px->lfd, .events = POLLIN},
                          {.fd = px->stopfd, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents != 0)
            break;
        if (p[0].revents == 0)
            continue;
        int cfd = accept4(px->lfd, NULL, NULL, SOCK_CLOEXEC), one = 1;
        if (cfd < 0)
            continue;
        /* Small messages each way, as fast as without the proxy. */
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        start_pump(px, cfd);
    }
    return NULL;
}

int pgproxy_start(pgproxy **out, int upstream_port)
{
    pgproxy *px = calloc(1, sizeof(*px));
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (px == NULL)
        return -1;
    px->upstream = upstream_port;
    px->log = getenv("PGPROXY_LOG") != NULL && strcmp(getenv("PGPROXY_LOG"), "1") == 0;
    pthread_mutex_init(&px->lock, NULL);
    px->stopfd = eventfd(0, EFD_CLOEXEC);
    px->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (px->stopfd < 0 || px->lfd < 0 || bind(px->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(px->lfd, 64) < 0 || getsockname(px->lfd, (struct sockaddr *)&a, &alen) < 0 ||
        pthread_create(&px->acceptor, NULL, accept_main, px) != 0) {
        int e = errno;
        if (px->lfd >= 0)
            close(px->lfd);
        if (px->stopfd >= 0)
            close(px->stopfd);
        pthread_mutex_destroy(&px->lock);
        free(px);
        errno = e;
        return -1;
    }
    px->port = ntohs(a.sin_port);
    *out = px;
    return 0;
}

int pgproxy_port(const pgproxy *px)
{
    return px->port;
}

void pgproxy_arm(pgproxy *px, const char *marker, pgproxy_cut how)
{
    pthread_mutex_lock(&px->lock);
    snprintf(px->marker, sizeof(px->marker), "%s", marker);
    px->how = how;
    px->armed = 1;
    pthread_mutex_unlock(&px->lock);
}

int pgproxy_cuts(pgproxy *px)
{
    pthread_mutex_lock(&px->lock);
    int n = px->cuts;
    pthread_mutex_unlock(&px->lock);
    return n;
}

void pgproxy_free(pgproxy *px)
{
    if (px == NULL)
        return;
    uint64_t one = 1;
    if (write(px->stopfd, &one, sizeof(one)) != sizeof(one))
        perror("pgproxy: eventfd write");
    pthread_join(px->acceptor, NULL);
    /* The acceptor has stopped: npumps no longer changes. */
    for (int i = 0; i < px->npumps; i++)
        pthread_join(px->pumps[i], NULL);
    close(px->lfd);
    close(px->stopfd);
    pthread_mutex_destroy(&px->lock);
    free(px);
}
