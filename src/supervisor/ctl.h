/* The control client: `tcpops ps|scale|restart|down` talk to the master over
 * its unix socket, one JSON request and one JSON answer. */
#ifndef TCPOPS_SUP_CTL_H
#define TCPOPS_SUP_CTL_H

#include <jansson.h>

/* Sends req (consumed) to the master of data_dir and waits for its answer,
 * at most timeout_ms. Returns the answer (caller json_decref's), or NULL with
 * err filled (no master running, or it did not answer). */
json_t *sup_ctl_request(const char *data_dir, json_t *req, int timeout_ms, char *err,
                        size_t errlen);

/* Prints `tcpops ps` as a table. */
void sup_ctl_print_ps(json_t *answer);

#endif
