/* Socket calls, in one place: address parsing, listeners, connects with a
 * timeout, and whole-buffer writes. Errors come back as a negative errno and,
 * where useful, a sentence in the caller's buffer (redis anet.c style). */
#ifndef TCPOPS_RPC_SOCK_H
#define TCPOPS_RPC_SOCK_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define RPC_ERRLEN 256

/* Splits "host:port" (host may be empty for 127.0.0.1, or a name that
 * resolves) into an IPv4 address. Returns 0 or -EINVAL with err filled. */
int rpc_addr_parse(const char *hostport, struct sockaddr_in *out, char *err);

/* Formats sa as "a.b.c.d:port" into out (at least 32 bytes). */
void rpc_addr_format(const struct sockaddr_in *sa, char *out, size_t len);

/* A non-blocking listening socket on addr (port 0 picks a free one), with
 * SO_REUSEADDR and, when reuseport, SO_REUSEPORT so several processes share
 * the port. Returns the fd or a negative errno with err filled. */
int rpc_sock_listen(const struct sockaddr_in *addr, int reuseport, int backlog,
                    char *err);

/* The port a bound socket ended up on, or a negative errno. */
int rpc_sock_port(int fd);

/* Connects to addr within timeout_ms. Returns a non-blocking, TCP_NODELAY,
 * close-on-exec fd, or a negative errno (-ETIMEDOUT, -ECONNREFUSED, ...). */
int rpc_sock_connect(const struct sockaddr_in *addr, int timeout_ms);

/* Sets O_NONBLOCK and TCP_NODELAY on an accepted socket. 0 or -errno. */
int rpc_sock_prepare(int fd);

/* Writes all n bytes of p to a non-blocking fd, waiting for room until
 * deadline_ms (rpc_now_ms clock; <= 0 waits forever). Returns 0; -ETIMEDOUT
 * (then *written says how much went out, and the stream is torn if it is
 * neither 0 nor n); or another negative errno when the connection is gone. */
int rpc_sock_write_all(int fd, const void *p, size_t n, int64_t deadline_ms,
                       size_t *written);

#endif
