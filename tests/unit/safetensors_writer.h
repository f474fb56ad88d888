// safetensors_writer.h — tests' serialiser for .safetensors files (lossy reads safetensors but never writes them),
// shared by the reader's tests and the architecture-variant tests; header-only, like random_model.h.
#ifndef LOSSY_TEST_SAFETENSORS_WRITER_H
#define LOSSY_TEST_SAFETENSORS_WRITER_H

#include <stdint.h>

#include "base/util.h"

typedef struct TT {
    const char *name;
    const char *dtype; // "F32", "F16", "BF16", ...
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} TT;

// Serialise tensors the way the safetensors library does: an 8-byte little-endian header length, the header JSON
// (with __metadata__ when meta is not NULL) padded with spaces to 8 bytes, then the data packed in order. out is
// initialised here.
static inline void make_st(Buf *out, const TT *ts, size_t n, const char *meta) {
    Buf h;
    buf_init(&h);
    buf_append_str(&h, "{");
    if (meta) buf_printf(&h, "\"__metadata__\":{%s}", meta);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        buf_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", (meta || i) ? "," : "", ts[i].name, ts[i].dtype);
        for (int d = 0; d < ts[i].ndim; d++) buf_printf(&h, d ? ",%lld" : "%lld", (long long)ts[i].shape[d]);
        buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + ts[i].nbytes);
        off += ts[i].nbytes;
    }
    buf_append_str(&h, "}");
    while (h.len % 8) buf_append_str(&h, " ");
    buf_init(out);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    buf_append(out, len8, 8);
    buf_append(out, h.data, h.len);
    for (size_t i = 0; i < n; i++) buf_append(out, ts[i].data, ts[i].nbytes);
    buf_free(&h);
}

#endif
