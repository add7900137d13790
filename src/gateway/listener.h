/* Serving HTTP on a listening socket someone else owns, so that gateways can
 * replace each other without a moment in which the port refuses or resets
 * a connection.
 *
 *   tcpops (supervisor)  binds 127.0.0.1:PORT once, keeps it, and passes it
 *        |               to every gateway it starts (--listen-fd N)
 *        v
 *   one socket, one accept queue, shared by the old and the new gateway:
 *   the new one accepts from it as soon as it serves; the old one stops
 *   accepting when it drains (gw_listener_release) and what waits in the
 *   queue is accepted by the new one, never reset.
 *
 * civetweb 1.15 cannot be given a socket, so it is started on an ephemeral
 * port of 127.0.0.1 and the shared socket is put in place of its listener
 * with dup2: civetweb's accept loop polls its listener's descriptor number
 * afresh on every turn. The socket must be non-blocking (the supervisor
 * creates it so): two processes poll it and only one wins each connection. */
#ifndef TCPOPS_GW_LISTENER_H
#define TCPOPS_GW_LISTENER_H

#include <civetweb.h>
#include <stddef.h>

/* Finds ctx's only listening socket (bound by civetweb to an ephemeral port)
 * and puts shared_fd in its place; shared_fd itself is closed. *slot gets
 * the descriptor number civetweb accepts on. 0, or -1 with err filled (ctx
 * still serves its own port then). Call from main after mg_start2. */
int gw_listener_adopt(struct mg_context *ctx, int shared_fd, int *slot, char *err,
                      size_t errlen);

/* Stops accepting on the shared socket (a quiet listener of our own takes
 * its place in slot) without closing the socket for the other holders:
 * connections waiting in its queue go to the next gateway. 0, or -1 with
 * err filled (then this gateway keeps accepting until mg_stop). */
int gw_listener_release(int slot, char *err, size_t errlen);

#endif
