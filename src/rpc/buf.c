#include "rpc/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void rpc_buf_init(rpc_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void rpc_buf_fini(rpc_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int rpc_buf_reserve(rpc_buf *b, size_t want, size_t limit)
{
    size_t used = rpc_buf_used(b);

    if (want > limit || used > limit - want)
        return -EMSGSIZE;
    if (b->cap - b->len >= want)
        return 0;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, used);
        b->off = 0;
        b->len = used;
        if (b->cap - b->len >= want)
            return 0;
    }
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap - used < want)
        ncap *= 2;
    if (ncap > limit)
        ncap = limit;
    uint8_t *p = realloc(b->data, ncap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int rpc_buf_append(rpc_buf *b, const void *p, size_t n, size_t limit)
{
    int rc = rpc_buf_reserve(b, n, limit);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void rpc_buf_consume(rpc_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void rpc_buf_shrink(rpc_buf *b, size_t keep)
{
    if (rpc_buf_used(b) == 0 && b->cap > keep) {
        free(b->data);
        b->data = NULL;
        b->off = b->len = b->cap = 0;
    }
}
