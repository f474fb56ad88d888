// embedding.c — token/position embedding lookup and scatter-add backward (see embedding.h).
//
// The backward is a scatter: several rows may hit the same token, so a threaded version must split by output
// row (vocabulary range) or by column, never by input row. This single-threaded loop is deterministic as written.
#include "kernels/embedding.h"

#include <string.h>

void embedding_forward(float *out, const int32_t *tokens, const int64_t *pos, const float *wte, const float *wpe,
                       int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * C, wte + (int64_t)tokens[n] * C, (size_t)C * sizeof(float));
    if (wpe) embedding_add_positions(out, pos, wpe, N, C);
}

void embedding_add_positions(float *out, const int64_t *pos, const float *wpe, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * C;             // (C)
        const float *p = wpe + pos[n] * C;  // (C)
        for (int64_t i = 0; i < C; i++) o[i] += p[i];
    }
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, const int64_t *pos,
                        int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const float *g = dout + n * C; // (C)
        if (dwte) {
            float *d = dwte + (int64_t)tokens[n] * C; // (C)
            for (int64_t i = 0; i < C; i++) d[i] += g[i];
        }
        if (dwpe) {
            float *d = dwpe + pos[n] * C; // (C)
            for (int64_t i = 0; i < C; i++) d[i] += g[i];
        }
    }
}
