/* Line mode: a connection whose first byte is cfg.text_first_byte speaks
 * newline-delimited messages instead of frames. The I/O thread hands its
 * lines to the workers one at a time, in order (the next only when the one
 * before has been answered), through cfg.text; the answer line goes back
 * with a newline. The flow control of binary mode holds: lines wait in rbuf
 * while one runs, while answers wait past the high-water mark
 * (srv_answers_held), and a line longer than max_frame ends the connection
 * with cfg.text_error's line. After EOF a last line without its newline
 * runs too. The module knows nothing of what the lines mean. */
#include <stdlib.h>
#include <string.h>

#include "rpc/srv.h"
#include "rpc/stats.h"

/* Runs one line on a worker and sends its answer line (or closes when the
 * callback answers NULL), which ends the job. */
static void run_line(rpc_task *t, void *state)
{
    srv_job *j = (srv_job *)t;
    rpc_server *s = j->s;
    srv_conn *c = j->c;
    char *out = s->cfg.text(state, s->cfg.user, j->line, j->line_len);

    pthread_mutex_lock(&c->lock);
    if (out != NULL) {
        size_t n = strlen(out);
        out[n] = '\n'; /* replaces the NUL; the length is what counts */
        srv_queue_locked(s, c, out, n + 1);
    } else {
        srv_shut_locked(c);
    }
    c->line_busy = 0; /* the notice that follows hands on the next line */
    int notify = srv_job_end_locked(c);
    pthread_mutex_unlock(&c->lock);
    free(out);
    srv_job_done(j, notify);
}

void srv_lines_error(rpc_server *s, srv_conn *c, const char *why)
{
    char *line = s->cfg.text_error != NULL ? s->cfg.text_error(s->cfg.user, why) : NULL;
    if (line != NULL) {
        size_t n = strlen(line);
        line[n] = '\n';
        pthread_mutex_lock(&c->lock);
        srv_queue_locked(s, c, line, n + 1);
        pthread_mutex_unlock(&c->lock);
        free(line);
    }
    srv_cork(s, c, 0);
    srv_conn_close(s, c);
}

/* A job for the line at the head of c's read buffer, n bytes without its
 * newline (and a '\r' before it). NULL when out of memory. */
static srv_job *line_job(rpc_server *s, srv_conn *c, const uint8_t *head, size_t n)
{
    if (n > 0 && head[n - 1] == '\r')
        n--;
    srv_job *j = calloc(1, sizeof(*j));
    char *line = malloc(n + 1);
    if (j == NULL || line == NULL) {
        free(j);
        free(line);
        return NULL;
    }
    memcpy(line, head, n);
    line[n] = '\0';
    j->task.fn = run_line;
    j->s = s;
    j->c = c;
    j->line = line;
    j->line_len = n;
    return j;
}

int srv_lines_next(rpc_server *s, srv_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int busy = c->line_busy;
    pthread_mutex_unlock(&c->lock);
    size_t used = rpc_buf_used(&c->io.rbuf);
    if (busy || used == 0 || srv_answers_held(s, c))
        return 0; /* (an empty buffer may have no memory at all) */
    uint8_t *head = rpc_buf_head(&c->io.rbuf);
    uint8_t *nl = memchr(head, '\n', used);
    size_t n = nl != NULL ? (size_t)(nl - head) : used;
    if (nl == NULL) {
        if (used > s->cfg.max_frame) {
            rpc_stats_add(s->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
            srv_lines_error(s, c, "line too long");
            return -1;
        }
        if (!c->rd_eof)
            return 0;
    }
    srv_job *j = line_job(s, c, head, n);
    if (j == NULL)
        return 0; /* try again on the next event */
    pthread_mutex_lock(&c->lock);
    c->line_busy = 1;
    pthread_mutex_unlock(&c->lock);
    srv_inflight_add(s, c, 1);
    if (srv_job_push(s, j) < 0) {
        srv_inflight_add(s, c, -1);
        pthread_mutex_lock(&c->lock);
        c->line_busy = 0;
        pthread_mutex_unlock(&c->lock);
        srv_job_free(j);
        return 0;
    }
    rpc_conn_consume(&c->io, nl != NULL ? n + 1 : n);
    return 0;
}
