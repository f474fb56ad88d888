// attn_decode.c — inference attention over a transposed-key cache (see attn_decode.h).
#include "kernels/attn_decode.h"

#include <math.h>
#include <string.h>

#include "base/cpu.h"
#include "kernels/fastmath.h"
#include "kernels/matmul.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define ATTN_X86 1
#else
#define ATTN_X86 0
#endif

static inline int64_t first_visible(int64_t t, int64_t window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

// In place over x[0..n): exp(x - max) / sum.
static void softmax_inplace(float *x, int64_t n) {
    float m = fm_max_f32(x, n);
    for (int64_t s = 0; s < n; s++) x[s] = fm_expf(x[s] - m);
    float inv = (float)(1.0 / fm_sum_f32(x, n));
    for (int64_t s = 0; s < n; s++) x[s] *= inv;
}

int64_t attn_decode_scratch_size(int64_t G, int64_t n_keys) { return (void)G, n_keys; }

// p[s] = scale * sum_d q[d] Kt[d][lo + s] for s in [0, n), and out (head_dim) = sum_s p[s] V[lo + s] once p holds
// probabilities: the portable loops, and AVX-512 ones keeping 64 partial results in registers (the portable loops
// pass over p or out once per dimension or position, which makes them load/store bound).
static void scores_portable(float *p, const float *q, const float *kt, int64_t ldk, int64_t n, int64_t hd, float scale) {
    memset(p, 0, (size_t)n * sizeof(float));
    for (int64_t d = 0; d < hd; d++) {
        const float qd = q[d] * scale, *kd = kt + d * ldk;
        for (int64_t s = 0; s < n; s++) p[s] += qd * kd[s];
    }
}

static void values_portable(float *out, const float *p, const float *v, int64_t n, int64_t hd) {
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int64_t s = 0; s < n; s++) {
        const float ps = p[s], *vs = v + s * hd;
        for (int64_t d = 0; d < hd; d++) out[d] += ps * vs[d];
    }
}

#if ATTN_X86
static inline __mmask16 tail16(int64_t left) { return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1); }

__attribute__((target("avx512f"))) static void scores_avx512(float *p, const float *q, const float *kt, int64_t ldk, int64_t n,
                                                              int64_t hd, float scale) {
    for (int64_t s0 = 0; s0 < n; s0 += 64) {
        const __mmask16 m0 = tail16(n - s0), m1 = tail16(n - s0 - 16), m2 = tail16(n - s0 - 32), m3 = tail16(n - s0 - 48);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t d = 0; d < hd; d++) {
            const __m512 qd = _mm512_set1_ps(q[d] * scale);
            const float *kd = kt + d * ldk + s0;
            a0 = _mm512_fmadd_ps(qd, _mm512_maskz_loadu_ps(m0, kd), a0);
            a1 = _mm512_fmadd_ps(qd, _mm512_maskz_loadu_ps(m1, kd + 16), a1);
            a2 = _mm512_fmadd_ps(qd, _mm512_maskz_loadu_ps(m2, kd + 32), a2);
            a3 = _mm512_fmadd_ps(qd, _mm512_maskz_loadu_ps(m3, kd + 48), a3);
        }
        _mm512_mask_storeu_ps(p + s0, m0, a0);
        _mm512_mask_storeu_ps(p + s0 + 16, m1, a1);
        _mm512_mask_storeu_ps(p + s0 + 32, m2, a2);
        _mm512_mask_storeu_ps(p + s0 + 48, m3, a3);
    }
}

__attribute__((target("avx512f"))) static void values_avx512(float *out, const float *p, const float *v, int64_t n, int64_t hd) {
    for (int64_t d0 = 0; d0 < hd; d0 += 64) {
        const __mmask16 m0 = tail16(hd - d0), m1 = tail16(hd - d0 - 16), m2 = tail16(hd - d0 - 32), m3 = tail16(hd - d0 - 48);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t s = 0; s < n; s++) {
            const __m512 ps = _mm512_set1_ps(p[s]);
            const float *vs = v + s * hd + d0;
            a0 = _mm512_fmadd_ps(ps, _mm512_maskz_loadu_ps(m0, vs), a0);
            a1 = _mm512_fmadd_ps(ps, _mm512_maskz_loadu_ps(m1, vs + 16), a1);
            a2 = _mm512_fmadd_ps(ps, _mm512_maskz_loadu_ps(m2, vs + 32), a2);
            a3 = _mm512_fmadd_ps(ps, _mm512_maskz_loadu_ps(m3, vs + 48), a3);
        }
        _mm512_mask_storeu_ps(out + d0, m0, a0);
        _mm512_mask_storeu_ps(out + d0 + 16, m1, a1);
        _mm512_mask_storeu_ps(out + d0 + 32, m2, a2);
        _mm512_mask_storeu_ps(out + d0 + 48, m3, a3);
    }
}
#endif

void attn_decode_group(float *out, const float *q, const float *kt, int64_t ldk, const float *v, int64_t pos, int64_t G,
                       int64_t head_dim, int64_t window, float *scratch) {
    const int64_t lo = first_visible(pos, window), n = pos + 1 - lo;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
#if ATTN_X86
    const bool avx512 = cpu_features()->avx512f;
#endif
    float *p = scratch; // (n) scores, then probabilities, one head at a time
    for (int64_t g = 0; g < G; g++) {
        const float *qg = q + g * head_dim;
        float *og = out + g * head_dim;
#if ATTN_X86
        if (avx512) {
            scores_avx512(p, qg, kt + lo, ldk, n, head_dim, scale);
            softmax_inplace(p, n);
            values_avx512(og, p, v + lo * head_dim, n, head_dim);
            continue;
        }
#endif
        scores_portable(p, qg, kt + lo, ldk, n, head_dim, scale);
        softmax_inplace(p, n);
        values_portable(og, p, v + lo * head_dim, n, head_dim);
    }
}

int64_t attn_chunk_scratch_size(int64_t rows, int64_t n_keys) { return rows * n_keys; }

void attn_chunk_group(float *out, int64_t ldo, const float *q, int64_t ldq, const float *kt, int64_t ldk, const float *v,
                      int64_t pos0, int64_t rows, int64_t G, int64_t head_dim, int64_t window, float *scratch) {
    const int64_t last = pos0 + rows - 1, lo_min = first_visible(pos0, window), n = last + 1 - lo_min;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    float *S = scratch; // (rows, n): scores, then probabilities (masked entries 0)
    for (int64_t g = 0; g < G; g++) {
        // S = Q_g (rows, hd) Kt[:, lo_min .. last] (hd, n)
        matmul_gemm(rows, n, head_dim, q + g * head_dim, ldq, 1, kt + lo_min, ldk, 1, S, n, false);
        for (int64_t r = 0; r < rows; r++) {
            const int64_t t = pos0 + r, lo = first_visible(t, window) - lo_min, hi = t - lo_min; // visible [lo, hi]
            float *sr = S + r * n;
            for (int64_t s = lo; s <= hi; s++) sr[s] *= scale;
            softmax_inplace(sr + lo, hi - lo + 1);
            for (int64_t s = 0; s < lo; s++) sr[s] = 0.0f;
            for (int64_t s = hi + 1; s < n; s++) sr[s] = 0.0f;
        }
        // O_g (rows, hd) = P (rows, n) V[lo_min .. last] (n, hd)
        matmul_gemm(rows, head_dim, n, S, n, 1, v + lo_min * head_dim, head_dim, 1, out + g * head_dim, ldo, false);
    }
}
