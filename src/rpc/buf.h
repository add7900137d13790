/* A growable byte buffer with a hard cap, for connection read and write
 * buffers. Bytes live in [off, len) of data; consumed bytes are reclaimed by
 * moving the rest down when room is needed, so a buffer never grows past what
 * one frame plus one read needs. Not thread-safe: the owner serialises. */
#ifndef TCPOPS_RPC_BUF_H
#define TCPOPS_RPC_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct rpc_buf {
    uint8_t *data;
    size_t off;  /* first unconsumed byte */
    size_t len;  /* end of valid bytes */
    size_t cap;  /* allocated size */
} rpc_buf;

void rpc_buf_init(rpc_buf *b);
void rpc_buf_fini(rpc_buf *b);

/* Bytes waiting to be consumed. */
static inline size_t rpc_buf_used(const rpc_buf *b) { return b->len - b->off; }
static inline uint8_t *rpc_buf_head(const rpc_buf *b) { return b->data + b->off; }

/* Makes room for at least `want` more bytes after len, never letting the
 * buffer hold more than `limit` bytes in all. Returns 0, -EMSGSIZE when
 * used + want exceeds limit (nothing allocated), or -ENOMEM. */
int rpc_buf_reserve(rpc_buf *b, size_t want, size_t limit);

/* Appends n bytes (reserving under `limit` first). 0, -EMSGSIZE or -ENOMEM. */
int rpc_buf_append(rpc_buf *b, const void *p, size_t n, size_t limit);

/* Marks n bytes at the head as consumed. */
void rpc_buf_consume(rpc_buf *b, size_t n);

/* Frees memory of a buffer that has grown past `keep` and is now empty, so an
 * idle connection does not hold a large frame's worth of memory. */
void rpc_buf_shrink(rpc_buf *b, size_t keep);

#endif
