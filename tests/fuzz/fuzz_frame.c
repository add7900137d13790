/* libFuzzer target: the frame decoder and Frame unpacking, fed the input as a
 * byte stream in chunks whose sizes the input itself chooses, the way a
 * socket delivers it. Invariants: a decoded frame never claims more bytes
 * than were given, and nothing over the maximum is ever accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/buf.h"
#include "rpc/frame.h"

#define MAX 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rpc_buf rb;
    rpc_buf_init(&rb);
    size_t off = 0;
    size_t step = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        if (rpc_buf_append(&rb, data + off, n, MAX + 4 + 64) < 0)
            break;
        off += n;
        for (;;) {
            const uint8_t *pl = NULL;
            size_t pn = 0;
            int k = rpc_frame_decode(rpc_buf_head(&rb), rpc_buf_used(&rb), MAX, &pl, &pn);
            if (k < 0)
                goto out; /* the connection would be closed here */
            if (k == 0)
                break;
            if ((size_t)k > rpc_buf_used(&rb) || pn > MAX || pl + pn > rb.data + rb.len)
                abort();
            rpc_frame *f = NULL;
            if (rpc_frame_unpack(pl, pn, &f) == 0) {
                /* What a server would write back must encode again. */
                size_t need = rpc_frame_size(f);
                uint8_t *out = malloc(need);
                if (out != NULL && rpc_frame_write(f, out) != need)
                    abort();
                free(out);
                rpc_frame_free(f);
            }
            rpc_buf_consume(&rb, (size_t)k);
        }
    }
out:
    rpc_buf_fini(&rb);
    return 0;
}
