/* A raw TCP peer for tests that speak bytes to a server directly: reads that
 * end at a deadline, whole frames, and telling the server's close apart from
 * its silence. Every call waits at most timeout_ms. */
#ifndef TCPOPS_TEST_RAWPEER_H
#define TCPOPS_TEST_RAWPEER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc/frame.h"

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

/* A thread that writes n bytes from p to fd, whole, within timeout_ms, while
 * the test reads: for pipelining more than the socket buffers hold. */
typedef struct rawpeer_writer {
    int fd;
    const void *p;
    size_t n;
    int timeout_ms;
    int rc;                /* after rawpeer_writer_join: 0 or a negative errno */
    pthread_t thread;
} rawpeer_writer;

/* Starts w writing p[0..n) to fd. p must live until rawpeer_writer_join.
 * 0 or a negative errno. */
int rawpeer_writer_start(rawpeer_writer *w, int fd, const void *p, size_t n, int timeout_ms);

/* Waits for w to end; returns its result (0 when everything was written). */
int rawpeer_writer_join(rawpeer_writer *w);

/* Appends to buf (cap bytes, *have in use) what fd sends, waiting up to 5 s
 * and never past deadline (rpc_now_ms). slow: at most 8 KiB per read and a
 * millisecond after each, a peer that reads far slower than a server
 * answers. Returns the count read, or 0 when the peer closed or went silent. */
size_t rawpeer_read_some(int fd, char *buf, size_t cap, size_t *have, int64_t deadline,
                         int slow);

/* Told of each line (without its newline, not NUL-terminated) in order;
 * returns 0 to go on, anything else to stop. */
typedef int (*rawpeer_line_fn)(void *arg, int index, const char *line, size_t len);

/* Reads newline-ended lines from fd (each at most 64 KiB) and hands them to
 * check until n came, check stops, or the peer closes or goes silent (see
 * rawpeer_read_some; timeout_ms in all). Returns how many check accepted. */
int rawpeer_read_lines(int fd, int n, int slow, int timeout_ms, rawpeer_line_fn check,
                       void *arg);

#endif
