// attention.c — causal grouped-query attention: training forward/backward and KV-cache inference (attention.h).
//
// Everything goes through attend_query, the work for one query row: scores against the visible keys, a stable
// softmax (sum in double), and the probability-weighted sum of values. The batched and the cached forwards differ
// only in where the keys live, which is what makes incremental decoding bit-identical to the batched pass.
// Keys and values of one head are rows with a stride of n_kv_head * head_dim floats in both layouts.
#include "kernels/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

// 16 independent partial sums: the compiler turns the inner loop into SIMD lanes without reassociating anything
// itself, and the fixed order keeps results identical between calls.
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

static inline void axpy_f32(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

// First visible key position for a query at position t.
static inline int64_t window_start(int64_t t, int64_t window) {
    return (window > 0 && t - window + 1 > 0) ? t - window + 1 : 0;
}

// One query row: p[s] (s in [lo, hi]) receives the attention probabilities, out_t the weighted sum of values.
static void attend_query(float *out_t,     // (head_dim)
                         float *p,         // indexed by key position; [lo, hi] written
                         const float *q_t, // (head_dim)
                         const float *k0,  // key at position s is k0 + s * kv_stride
                         const float *v0,  // likewise for values
                         int64_t kv_stride, int64_t lo, int64_t hi, int64_t head_dim, float scale) {
    float m = -INFINITY;
    for (int64_t s = lo; s <= hi; s++) {
        float sc = dot_f32(q_t, k0 + s * kv_stride, head_dim) * scale;
        p[s] = sc;
        if (sc > m) m = sc;
    }
    double sum = 0.0;
    for (int64_t s = lo; s <= hi; s++) {
        float e = expf(p[s] - m);
        p[s] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    memset(out_t, 0, (size_t)head_dim * sizeof(float));
    for (int64_t s = lo; s <= hi; s++) {
        p[s] *= inv;
        axpy_f32(out_t, p[s], v0 + s * kv_stride, head_dim);
    }
}

static float attn_scale(int64_t head_dim) { return (float)(1.0 / sqrt((double)head_dim)); }

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int64_t B, int64_t T,
                       int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window) {
    int64_t group = n_head / n_kv_head, kv_stride = n_kv_head * head_dim;
    float scale = attn_scale(head_dim);
    float *row = att ? NULL : xmalloc_array((size_t)T, sizeof(float)); // (T) when att is not kept
    // Split point for threads: the (b, h) pairs are independent.
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < n_head; h++) {
            int64_t kvh = h / group;
            const float *k0 = k + (b * T * n_kv_head + kvh) * head_dim;
            const float *v0 = v + (b * T * n_kv_head + kvh) * head_dim;
            for (int64_t t = 0; t < T; t++) {
                float *p = att ? att + ((b * n_head + h) * T + t) * T : row; // (T)
                attend_query(out + ((b * T + t) * n_head + h) * head_dim, p,
                             q + ((b * T + t) * n_head + h) * head_dim, k0, v0, kv_stride, window_start(t, window), t,
                             head_dim, scale);
            }
        }
    }
    free(row);
}

// For one query row with probabilities p and upstream gradient g = dout_t:
//   dp[s] = g . v_s;  dv_s += p[s] g;  dscore[s] = p[s] (dp[s] - sum_s' p[s'] dp[s']);
//   dq_t += scale sum_s dscore[s] k_s;  dk_s += scale dscore[s] q_t.
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                        const float *v, const float *att, int64_t B, int64_t T, int64_t n_head, int64_t n_kv_head,
                        int64_t head_dim, int64_t window) {
    int64_t group = n_head / n_kv_head, kv_stride = n_kv_head * head_dim;
    float scale = attn_scale(head_dim);
    float *dp = xmalloc_array((size_t)T, sizeof(float)); // (T) per thread once threaded
    // Split point for threads: a (b, kvh) group writes only its own dk/dv rows and its heads' dq rows.
    for (int64_t b = 0; b < B; b++) {
        for (int64_t kvh = 0; kvh < n_kv_head; kvh++) {
            const float *k0 = k + (b * T * n_kv_head + kvh) * head_dim;
            const float *v0 = v + (b * T * n_kv_head + kvh) * head_dim;
            float *dk0 = dk ? dk + (b * T * n_kv_head + kvh) * head_dim : NULL;
            float *dv0 = dv ? dv + (b * T * n_kv_head + kvh) * head_dim : NULL;
            for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
                for (int64_t t = 0; t < T; t++) {
                    const float *p = att + ((b * n_head + h) * T + t) * T;      // (T)
                    const float *g = dout + ((b * T + t) * n_head + h) * head_dim; // (head_dim)
                    const float *q_t = q + ((b * T + t) * n_head + h) * head_dim;  // (head_dim)
                    float *dq_t = dq ? dq + ((b * T + t) * n_head + h) * head_dim : NULL;
                    int64_t lo = window_start(t, window);
                    double dsum = 0.0;
                    for (int64_t s = lo; s <= t; s++) {
                        dp[s] = dot_f32(g, v0 + s * kv_stride, head_dim);
                        dsum += (double)p[s] * dp[s];
                        if (dv0) axpy_f32(dv0 + s * kv_stride, p[s], g, head_dim);
                    }
                    for (int64_t s = lo; s <= t; s++) {
                        float ds = p[s] * (dp[s] - (float)dsum) * scale;
                        if (dq_t) axpy_f32(dq_t, ds, k0 + s * kv_stride, head_dim);
                        if (dk0) axpy_f32(dk0 + s * kv_stride, ds, q_t, head_dim);
                    }
                }
            }
        }
    }
    free(dp);
}

int64_t attention_cached_scratch_size(int64_t n_tok, int64_t pos0, int64_t n_head) { return n_head * (pos0 + n_tok); }

void attention_forward_cached(float *out, const float *q, const float *k_cache, const float *v_cache, int64_t n_tok,
                              int64_t pos0, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window,
                              float *scratch) {
    int64_t group = n_head / n_kv_head, kv_stride = n_kv_head * head_dim, n_keys = pos0 + n_tok;
    float scale = attn_scale(head_dim);
    float *own = NULL;
    if (!scratch) scratch = own = xmalloc_array((size_t)attention_cached_scratch_size(n_tok, pos0, n_head), sizeof(float));
    // Split point for threads: heads are independent, each with its own scratch row.
    for (int64_t h = 0; h < n_head; h++) {
        int64_t kvh = h / group;
        float *p = scratch + h * n_keys; // (pos0 + n_tok)
        for (int64_t i = 0; i < n_tok; i++) {
            int64_t t = pos0 + i;
            attend_query(out + (i * n_head + h) * head_dim, p, q + (i * n_head + h) * head_dim,
                         k_cache + kvh * head_dim, v_cache + kvh * head_dim, kv_stride, window_start(t, window), t,
                         head_dim, scale);
        }
    }
    free(own);
}
