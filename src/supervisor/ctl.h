/* The control client: `tcpops ps|scale|restart|down` talk to the master over
 * its unix socket, one JSON request line and one JSON answer line (it has
 * "ok"); a request with "progress":true may get progress lines,
 * {"progress":"TEXT"}, before the answer (ctlserver.h). */
#ifndef TCPOPS_SUP_CTL_H
#define TCPOPS_SUP_CTL_H

#include <jansson.h>
#include <stddef.h>
#include <sys/un.h>

/* Path of the control socket for a data dir into buf. */
void sup_socket_path(const char *data_dir, char *buf, size_t len);

/* Fills sa with data_dir's control socket address (and path, len bytes,
 * with its path). 0, or -1 when the path does not fit in a sockaddr_un. */
int sup_ctl_addr(const char *data_dir, struct sockaddr_un *sa, char *path, size_t len);

#define SUP_CTL_PATH_MAX 1200 /* room for the path sup_socket_path writes */

/* 1 when a master answers on data_dir's control socket, else 0 (none, or a
 * socket file left by one that died). */
int sup_master_alive(const char *data_dir);

/* Sends req (consumed) to the master of data_dir and waits for its answer,
 * at most timeout_ms. Returns the answer (caller json_decref's), or NULL with
 * err filled (no master running, or it did not answer). */
json_t *sup_ctl_request(const char *data_dir, json_t *req, int timeout_ms, char *err,
                        size_t errlen);

/* Told each progress line's text as it comes. */
typedef void (*sup_ctl_progress_fn)(void *arg, const char *text);

/* As sup_ctl_request, but asks for progress lines and hands each to
 * on_progress (NULL: asks for none) before the answer comes. */
json_t *sup_ctl_request_progress(const char *data_dir, json_t *req, int timeout_ms,
                                 sup_ctl_progress_fn on_progress, void *arg, char *err,
                                 size_t errlen);

/* Prints `tcpops ps` as a table; then each service's database, and each
 * failed worker's reason, on lines of their own. */
void sup_ctl_print_ps(json_t *answer);

/* Prints the line that says what the successful answer of cmd ("scale",
 * "restart" or "down") did: "people: 3 workers (was 2)", "gateway:
 * restarted 1 worker", "stopped 5 workers". */
void sup_ctl_print_done(const char *cmd, json_t *answer);

#endif
