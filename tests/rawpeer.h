/* A raw TCP peer for tests that speak bytes to a server directly: reads that
 * end at a deadline, whole frames, and telling the server's close apart from
 * its silence. Every call waits at most timeout_ms. */
#ifndef TCPOPS_TEST_RAWPEER_H
#define TCPOPS_TEST_RAWPEER_H

#include <stddef.h>
#include <sys/types.h>

#include "frame.h"

/* Reads until n bytes are in buf, the peer closes or timeout_ms passes.
 * Returns the count read. */
size_t rawpeer_read_n(int fd, void *buf, size_t n, int timeout_ms);

/* The next frame (free with rpc_frame_free), or NULL when the peer closed or
 * went silent first, or sent a frame over max bytes or one that does not
 * decode. */
rpc_frame *rawpeer_read_frame(int fd, size_t max, int timeout_ms);

/* Reads until the peer closes (EOF or reset) into buf, NUL-terminated, at
 * most len - 1 bytes kept. Returns the bytes kept, or -1 when the peer was
 * still open at the deadline (buf then holds what came). */
ssize_t rawpeer_read_until_closed(int fd, char *buf, size_t len, int timeout_ms);

/* 1 when the peer closed within timeout_ms, discarding what it sent; else 0. */
int rawpeer_closed(int fd, int timeout_ms);

#endif
