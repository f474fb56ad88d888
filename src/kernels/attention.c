// attention.c — causal grouped-query attention: training forward/backward and KV-cache inference (attention.h).
//
// Two ways to compute the same thing:
//   - blocks of query rows (training, prompt processing): for up to ATT_ROW_BLOCK consecutive queries of one head,
//     the scores S = Q K^T, then the masked softmax row by row, then O = P V, each product a call to the packed GEMM
//     of matmul.c (strides let it read q/k/v where they lie). Keys past the block's last query are never touched,
//     so only the diagonal blocks do wasted (masked) work. The backward runs the same blocks with four products.
//   - one query at a time (decoding): dot products against each cached key and a weighted sum of values; a GEMM
//     would waste most of its register tile on a single row.
// Both round differently (FMA chains vs. 16 partial sums), so token-by-token decoding agrees with the batched
// forward to float precision, not bit for bit. Keys and values of one head are rows with a stride of
// n_kv_head * head_dim floats in both the batched tensors and the KV cache.
#include "kernels/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "kernels/fastmath.h"
#include "kernels/matmul.h"

// Query rows per block: a multiple of the GEMM tiles' heights is not needed; 64 keeps the (rows, keys) score block
// in L2 up to several thousand keys and the diagonal waste at 1/2 of one block per row block.
#define ATT_ROW_BLOCK 64
// Below this many new tokens the cached forward uses the per-query path.
#define ATT_GEMM_MIN_ROWS 4

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// First visible key position for a query at position t.
static inline int64_t window_start(int64_t t, int64_t window) {
    return (window > 0 && t - window + 1 > 0) ? t - window + 1 : 0;
}

// 16 independent partial sums: the compiler turns the inner loop into SIMD lanes without reassociating anything.
static inline float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += a[i] * b[i];
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

static float attn_scale(int64_t head_dim) { return (float)(1.0 / sqrt((double)head_dim)); }

// Scaled, masked, stable softmax of one score row in place: entries [lo, hi] become probabilities, the other
// entries of [from, to) become 0 (they are read by the P V product of the block). Each step is a simple loop over
// the row, so the compiler vectorises all of them, exp included (fastmath.h).
static void softmax_row_masked(float *p, int64_t from, int64_t to, int64_t lo, int64_t hi, float scale) {
    float *x = p + lo; // (n) visible scores
    int64_t n = hi - lo + 1;
    for (int64_t i = 0; i < n; i++) x[i] *= scale;
    float m = fm_max_f32(x, n);
    for (int64_t i = 0; i < n; i++) x[i] = fm_expf(x[i] - m);
    float inv = (float)(1.0 / fm_sum_f32(x, n));
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
    for (int64_t s = from; s < lo; s++) p[s] = 0.0f;
    for (int64_t s = hi + 1; s < to; s++) p[s] = 0.0f;
}

// One block of n_rows consecutive queries of one head, at positions pos_first .. pos_first + n_rows - 1.
// P (n_rows, ld_p) receives the probabilities in columns [lo_min, pos_last] (zeros where masked).
static void attend_block(float *out, int64_t o_stride, // row r at out + r * o_stride, (head_dim) each
                         float *P, int64_t ld_p,
                         const float *q, int64_t q_stride, // row r at q + r * q_stride
                         const float *k0, const float *v0, int64_t kv_stride, // key s at k0 + s * kv_stride
                         int64_t n_rows, int64_t pos_first, int64_t head_dim, int64_t window, float scale) {
    int64_t pos_last = pos_first + n_rows - 1;
    int64_t lo_min = window_start(pos_first, window), n_keys = pos_last + 1 - lo_min;
    // S (n_rows, n_keys) = Q (n_rows, head_dim) K[lo_min..pos_last]^T
    matmul_gemm(n_rows, n_keys, head_dim, q, q_stride, 1, k0 + lo_min * kv_stride, 1, kv_stride, P + lo_min, ld_p,
                false);
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t t = pos_first + r;
        softmax_row_masked(P + r * ld_p, lo_min, pos_last + 1, window_start(t, window), t, scale);
    }
    // O (n_rows, head_dim) = P (n_rows, n_keys) V[lo_min..pos_last]
    matmul_gemm(n_rows, head_dim, n_keys, P + lo_min, ld_p, 1, v0 + lo_min * kv_stride, kv_stride, 1, out, o_stride,
                false);
}

void attention_forward_range(float *out, float *att, const float *q, const float *k, const float *v, int64_t B,
                             int64_t T, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window,
                             int64_t job0, int64_t job1) {
    (void)B;
    int64_t group = n_head / n_kv_head, kv_stride = n_kv_head * head_dim, q_stride = n_head * head_dim;
    float scale = attn_scale(head_dim);
    // (ATT_ROW_BLOCK, T) score block when the probabilities are not kept
    float *block = att ? NULL : xmalloc_array((size_t)(min64(T, ATT_ROW_BLOCK) * T), sizeof(float));
    for (int64_t job = job0; job < job1; job++) {
        int64_t b = job / n_head, h = job % n_head, kvh = h / group;
        const float *k0 = k + (b * T * n_kv_head + kvh) * head_dim;
        const float *v0 = v + (b * T * n_kv_head + kvh) * head_dim;
        for (int64_t r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
            int64_t rows = min64(ATT_ROW_BLOCK, T - r0);
            float *P = att ? att + ((b * n_head + h) * T + r0) * T : block; // (rows, T)
            attend_block(out + ((b * T + r0) * n_head + h) * head_dim, q_stride, P, T,
                         q + ((b * T + r0) * n_head + h) * head_dim, q_stride, k0, v0, kv_stride, rows, r0, head_dim,
                         window, scale);
        }
    }
    free(block);
}

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int64_t B, int64_t T,
                       int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window) {
    attention_forward_range(out, att, q, k, v, B, T, n_head, n_kv_head, head_dim, window, 0, B * n_head);
}

// For a block of query rows with probabilities P and upstream gradients dO:
//   dP = dO V^T;  dS = P * (dP - rowsum(P * dP)) * scale  (the softmax backward, masked entries 0);
//   dQ += dS K;  dK += dS^T Q;  dV += P^T dO.
void attention_backward_range(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *att, int64_t B, int64_t T, int64_t n_head,
                              int64_t n_kv_head, int64_t head_dim, int64_t window, int64_t job0, int64_t job1) {
    (void)B;
    if (!dq && !dk && !dv) return;
    int64_t group = n_head / n_kv_head, kv_stride = n_kv_head * head_dim, q_stride = n_head * head_dim;
    float scale = attn_scale(head_dim);
    float *dS = xmalloc_array((size_t)(min64(T, ATT_ROW_BLOCK) * T), sizeof(float)); // (rows, T)
    // A (b, kvh) job writes only its own dk/dv rows and its heads' dq rows.
    for (int64_t job = job0; job < job1; job++) {
        int64_t b = job / n_kv_head, kvh = job % n_kv_head;
        const float *k0 = k + (b * T * n_kv_head + kvh) * head_dim;
        const float *v0 = v + (b * T * n_kv_head + kvh) * head_dim;
        float *dk0 = dk ? dk + (b * T * n_kv_head + kvh) * head_dim : NULL;
        float *dv0 = dv ? dv + (b * T * n_kv_head + kvh) * head_dim : NULL;
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
            for (int64_t r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int64_t rows = min64(ATT_ROW_BLOCK, T - r0), pos_last = r0 + rows - 1;
                int64_t lo_min = window_start(r0, window), n_keys = pos_last + 1 - lo_min;
                const float *P = att + ((b * n_head + h) * T + r0) * T;           // (rows, T)
                const float *gO = dout + ((b * T + r0) * n_head + h) * head_dim;  // row stride q_stride
                const float *qr = q + ((b * T + r0) * n_head + h) * head_dim;     // row stride q_stride
                if (dv0) // dV[lo_min..] += P^T dO: op(A) element (s, r) = P[r * T + s]
                    matmul_gemm(n_keys, head_dim, rows, P + lo_min, 1, T, gO, q_stride, 1,
                                dv0 + lo_min * kv_stride, kv_stride, true);
                if (!dq && !dk0) continue;
                // dP (rows, n_keys) = dO V^T, into the dS buffer
                matmul_gemm(rows, n_keys, head_dim, gO, q_stride, 1, v0 + lo_min * kv_stride, 1, kv_stride,
                            dS + lo_min, T, false);
                for (int64_t r = 0; r < rows; r++) {
                    int64_t t = r0 + r, lo = window_start(t, window);
                    const float *p = P + r * T;
                    float *d = dS + r * T;
                    float dsum = dot_f32(p + lo, d + lo, t - lo + 1);
                    for (int64_t s = lo; s <= t; s++) d[s] = p[s] * (d[s] - dsum) * scale;
                    for (int64_t s = lo_min; s < lo; s++) d[s] = 0.0f;
                    for (int64_t s = t + 1; s <= pos_last; s++) d[s] = 0.0f;
                }
                if (dq) // dQ rows += dS K[lo_min..]
                    matmul_gemm(rows, head_dim, n_keys, dS + lo_min, T, 1, k0 + lo_min * kv_stride, kv_stride, 1,
                                dq + ((b * T + r0) * n_head + h) * head_dim, q_stride, true);
                if (dk0) // dK[lo_min..] += dS^T Q rows
                    matmul_gemm(n_keys, head_dim, rows, dS + lo_min, 1, T, qr, q_stride, 1,
                                dk0 + lo_min * kv_stride, kv_stride, true);
            }
        }
    }
    free(dS);
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                        const float *v, const float *att, int64_t B, int64_t T, int64_t n_head, int64_t n_kv_head,
                        int64_t head_dim, int64_t window) {
    attention_backward_range(dq, dk, dv, dout, q, k, v, att, B, T, n_head, n_kv_head, head_dim, window, 0,
                             B * n_kv_head);
}

// ---- decoding: one query at a time ----

// One query at position t: p[s] (s in [lo, t]) receives the probabilities, out_t the weighted sum of values.
static void attend_query(float *out_t, float *p, const float *q_t, const float *k0, const float *v0,
                         int64_t kv_stride, int64_t lo, int64_t t, int64_t head_dim, float scale) {
    for (int64_t s = lo; s <= t; s++) p[s] = dot_f32(q_t, k0 + s * kv_stride, head_dim);
    softmax_row_masked(p, lo, t + 1, lo, t, scale);
    memset(out_t, 0, (size_t)head_dim * sizeof(float));
    for (int64_t s = lo; s <= t; s++) {
        const float *vs = v0 + s * kv_stride;
        float ps = p[s];
        for (int64_t d = 0; d < head_dim; d++) out_t[d] += ps * vs[d];
    }
}

int64_t attention_cached_scratch_size(int64_t n_tok, int64_t pos0, int64_t n_head) {
    (void)n_head; // one block reused head after head; per-thread blocks once heads are split across threads
    return min64(n_tok, ATT_ROW_BLOCK) * (pos0 + n_tok);
}

void attention_forward_cached(float *out, const float *q, const float *k_cache, const float *v_cache, int64_t n_tok,
                              int64_t pos0, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window,
                              float *scratch) {
    int64_t group = n_head / n_kv_head, kv_stride = n_kv_head * head_dim, q_stride = n_head * head_dim;
    int64_t n_keys = pos0 + n_tok;
    float scale = attn_scale(head_dim);
    float *own = NULL;
    if (!scratch)
        scratch = own = xmalloc_array((size_t)attention_cached_scratch_size(n_tok, pos0, n_head), sizeof(float));
    // Split point for threads: heads are independent (each thread with its own scratch block).
    for (int64_t h = 0; h < n_head; h++) {
        const float *k0 = k_cache + (h / group) * head_dim, *v0 = v_cache + (h / group) * head_dim;
        if (n_tok < ATT_GEMM_MIN_ROWS) {
            for (int64_t i = 0; i < n_tok; i++) {
                int64_t t = pos0 + i;
                attend_query(out + i * q_stride + h * head_dim, scratch, q + i * q_stride + h * head_dim, k0, v0,
                             kv_stride, window_start(t, window), t, head_dim, scale);
            }
            continue;
        }
        for (int64_t r0 = 0; r0 < n_tok; r0 += ATT_ROW_BLOCK) {
            int64_t rows = min64(ATT_ROW_BLOCK, n_tok - r0);
            attend_block(out + r0 * q_stride + h * head_dim, q_stride, scratch, n_keys,
                         q + r0 * q_stride + h * head_dim, q_stride, k0, v0, kv_stride, rows, pos0 + r0, head_dim,
                         window, scale);
        }
    }
    free(own);
}
