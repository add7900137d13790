/* The control client: `tcpops ps|scale|restart|down` talk to the master over
 * its unix socket, one JSON request and one JSON answer. */
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

/* Prints `tcpops ps` as a table. */
void sup_ctl_print_ps(json_t *answer);

#endif
