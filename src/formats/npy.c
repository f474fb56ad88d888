// npy.c — minimal .npy reader/writer for float32 matrices (see npy.h). The header is a Python dict literal; we
// write the canonical one and read only what we write and what NumPy writes for such arrays.
#include "formats/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

typedef struct {
    const float *data;
    int64_t rows, cols;
} NpyCtx;

static int write_cb(FILE *f, void *vctx, Err *e) {
    NpyCtx *c = vctx;
    char dict[128];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     (long long)c->rows, (long long)c->cols);
    // magic(6) + version(2) + header_len(2) + dict + padding + '\n', total a multiple of 64
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    char header[256];
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    uint16_t hl = (uint16_t)(padded - 10);
    header[8] = (char)(hl & 0xff);
    header[9] = (char)(hl >> 8);
    memcpy(header + 10, dict, (size_t)n);
    memset(header + 10 + n, ' ', padded - total);
    header[padded - 1] = '\n';
    if (file_write_checked(f, header, padded, "npy header", e)) return -1;
    size_t count;
    if (!size_mul((size_t)c->rows, (size_t)c->cols, &count) || !size_mul(count, sizeof(float), &count)) return ERR(e, "array too large");
    return file_write_checked(f, c->data, count, "npy data", e);
}

int npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, Err *e) {
    if (rows < 0 || cols < 0) return ERR(e, "negative shape");
    NpyCtx c = {data, rows, cols};
    return file_write_atomic(path, write_cb, &c, e);
}

int npy_read_f32(const char *path, float **out, int64_t *rows, int64_t *cols, Err *e) {
    *out = NULL;
    char *d;
    size_t len;
    if (file_read_all(path, &d, &len, e)) return -1;
    int rc = 0;
    if (len < 10 || memcmp(d, "\x93NUMPY", 6) != 0) { rc = ERR(e, "'%s' is not a .npy file", path); goto done; }
    size_t hl = (uint8_t)d[8] | ((size_t)(uint8_t)d[9] << 8), off = 10 + hl;
    if (d[6] != 1 || off > len) { rc = ERR(e, "'%s': unsupported .npy version or truncated header", path); goto done; }
    char *hdr = xstrndup(d + 10, hl);
    const char *shape = strstr(hdr, "'shape': (");
    if (!strstr(hdr, "'descr': '<f4'") || !strstr(hdr, "'fortran_order': False") || !shape) {
        free(hdr);
        rc = ERR(e, "'%s': only little-endian float32 C-order arrays are supported", path);
        goto done;
    }
    char *end;
    long long r = strtoll(shape + 10, &end, 10), cc = 1;
    if (*end == ',' && end[1] != ')') cc = strtoll(end + 1, &end, 10);
    free(hdr);
    size_t n;
    if (r < 0 || cc < 0 || !size_mul((size_t)r, (size_t)cc, &n) || !size_mul(n, 4, &n) || n != len - off) {
        rc = ERR(e, "'%s': shape does not match the data size", path);
        goto done;
    }
    *out = xmalloc(n ? n : 1);
    memcpy(*out, d + off, n);
    *rows = r;
    *cols = cc;
done:
    free(d);
    return rc;
}
