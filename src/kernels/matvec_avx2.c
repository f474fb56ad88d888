// matvec_avx2.c — AVX2 + FMA + F16C matrix-vector kernels (see matvec.h). Compiled with target attributes so the
// baseline build stays portable; matvec.c only calls these after cpu_features() reports AVX2, FMA and F16C.
//
// Integer kernels follow the shape every x86 int8 dot product takes: maddubs multiplies unsigned weight quants by
// signed activation quants and adds pairs into int16 (bounded: 2 * 63 * 127 < 32767 for quants up to 6 bits; Q8_0
// makes the weight unsigned by moving its sign onto the activation), madd widens to int32 (optionally multiplying by
// per-sub-block scales), and each block's int32 lanes are scaled once in float.
#include "kernels/matvec_impl.h"

#ifdef LOSSY_MATVEC_X86

#include <immintrin.h>
#include <string.h>

#include "base/util.h"
#include "kernels/quant.h"

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))

T_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T_AVX2 static inline float half_f16c(const uint8_t *p) { return _cvtsh_ss(load_u16le(p)); }

T_AVX2 static inline __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
T_AVX2 static inline __m128i load128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

// ---- float weights ----

T_AVX2 static void avx2_f32(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *x = a->x;
    const int64_t n = a->n;
    for (int64_t r = 0; r < nrows; r++) {
        const float *row = (const float *)(const void *)(w + (size_t)r * stride);
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(x + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 8), _mm256_loadu_ps(x + i + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 16), _mm256_loadu_ps(x + i + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 24), _mm256_loadu_ps(x + i + 24), s3);
        }
        for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(x + i), s0);
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (; i < n; i++) {
            float v;
            memcpy(&v, row + i, 4);
            s += v * x[i];
        }
        y[r] = s;
    }
}

T_AVX2 static void avx2_f16(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *x = a->x;
    const int64_t n = a->n;
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *row = w + (size_t)r * stride;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(load128(row + 2 * i)), _mm256_loadu_ps(x + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(load128(row + 2 * i + 16)), _mm256_loadu_ps(x + i + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(load128(row + 2 * i + 32)), _mm256_loadu_ps(x + i + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(load128(row + 2 * i + 48)), _mm256_loadu_ps(x + i + 24), s3);
        }
        for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(load128(row + 2 * i)), _mm256_loadu_ps(x + i), s0);
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (; i < n; i++) s += half_f16c(row + 2 * i) * x[i];
        y[r] = s;
    }
}

T_AVX2 static inline __m256 bf16x8(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
}

T_AVX2 static void avx2_bf16(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *x = a->x;
    const int64_t n = a->n;
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *row = w + (size_t)r * stride;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            s0 = _mm256_fmadd_ps(bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), s0);
            s1 = _mm256_fmadd_ps(bf16x8(row + 2 * i + 16), _mm256_loadu_ps(x + i + 8), s1);
            s2 = _mm256_fmadd_ps(bf16x8(row + 2 * i + 32), _mm256_loadu_ps(x + i + 16), s2);
            s3 = _mm256_fmadd_ps(bf16x8(row + 2 * i + 48), _mm256_loadu_ps(x + i + 24), s3);
        }
        for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(bf16x8(row + 2 * i), _mm256_loadu_ps(x + i), s0);
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (; i < n; i++) s += bf16_to_fp32(load_u16le(row + 2 * i)) * x[i];
        y[r] = s;
    }
}

// ---- 32-element blocks ----

T_AVX2 static void avx2_q8_0(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ8_0 *b = (const BlockQ8_0 *)(w + (size_t)r * stride);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
        for (int64_t i = 0; i < nb; i++) {
            __m256i wv = load256(b[i].qs), xv = load256(a->q + 32 * i);
            // |w| * (x with w's sign) == w * x, with the unsigned operand first as maddubs wants.
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
            __m256 dd = _mm256_set1_ps(half_f16c(b[i].d) * a->d[i]);
            if (i & 1) acc1 = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc1);
            else acc0 = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc0);
        }
        y[r] = hsum8(_mm256_add_ps(acc0, acc1));
    }
}

T_AVX2 static void avx2_q4_0(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 32;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(15);
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ4_0 *b = (const BlockQ4_0 *)(w + (size_t)r * stride);
        __m256 acc = _mm256_setzero_ps();
        float corr = 0;
        for (int64_t i = 0; i < nb; i++) {
            __m128i raw = load128(b[i].qs);
            // Low nibbles are elements 0..15, high nibbles 16..31: one 256-bit vector in element order.
            __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, load256(a->q + 32 * i)), ones);
            float dd = half_f16c(b[i].d) * a->d[i];
            acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(p), acc);
            corr += dd * (float)a->s32[i]; // the -8 offset: sum (u - 8) x = sum u x - 8 sum x
        }
        y[r] = hsum8(acc) - 8.0f * corr;
    }
}

// ---- K-quants (256-element super-blocks) ----

// Q4_K / Q5_K: qh == NULL for Q4_K.
T_AVX2 static inline void k4_block(const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh, const int8_t *xq,
                                   const int16_t *s32, __m256i *sumi_out, int *summ_out) {
    const __m256i m4 = _mm256_set1_epi8(15), one8 = _mm256_set1_epi8(1);
    uint8_t sc[8], mn[8];
    quant_unpack_k4_scales(scales, sc, mn);
    __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)mn));
    __m128i pm = _mm_madd_epi16(mins, load128(s32));
    pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0x4e));
    pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0xb1));
    *summ_out = _mm_cvtsi128_si32(pm);
    __m256i sumi = _mm256_setzero_si256();
    __m256i hb = qh ? load256(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i raw = load256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, one8), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one8), 4));
            hb = _mm256_srli_epi16(hb, 2);
        }
        __m256i plo = _mm256_maddubs_epi16(lo, load256(xq + 64 * c));
        __m256i phi = _mm256_maddubs_epi16(hi, load256(xq + 64 * c + 32));
        plo = _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * c]));
        phi = _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
    }
    *sumi_out = sumi;
}

T_AVX2 static void avx2_q4_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 256;
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ4_K *b = (const BlockQ4_K *)(w + (size_t)r * stride);
        __m256 acc = _mm256_setzero_ps();
        float corr = 0;
        for (int64_t i = 0; i < nb; i++) {
            __m256i sumi;
            int summ;
            k4_block(b[i].scales, b[i].qs, NULL, a->q + 256 * i, a->s32 + 8 * i, &sumi, &summ);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(half_f16c(b[i].d) * a->d[i]), _mm256_cvtepi32_ps(sumi), acc);
            corr += half_f16c(b[i].dmin) * a->d[i] * (float)summ;
        }
        y[r] = hsum8(acc) - corr;
    }
}

T_AVX2 static void avx2_q5_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 256;
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ5_K *b = (const BlockQ5_K *)(w + (size_t)r * stride);
        __m256 acc = _mm256_setzero_ps();
        float corr = 0;
        for (int64_t i = 0; i < nb; i++) {
            __m256i sumi;
            int summ;
            k4_block(b[i].scales, b[i].qs, b[i].qh, a->q + 256 * i, a->s32 + 8 * i, &sumi, &summ);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(half_f16c(b[i].d) * a->d[i]), _mm256_cvtepi32_ps(sumi), acc);
            corr += half_f16c(b[i].dmin) * a->d[i] * (float)summ;
        }
        y[r] = hsum8(acc) - corr;
    }
}

T_AVX2 static void avx2_q6_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 256;
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ6_K *b = (const BlockQ6_K *)(w + (size_t)r * stride);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            const int8_t *xq = a->q + 256 * i;
            uint8_t sc[16];
            memcpy(sc, b[i].scales, 16);
            // The -32 offset of every quant, in integer: subtract 32 * sum_k scale_k * (sum of x in group k).
            __m256i sc16 = _mm256_cvtepi8_epi16(load128(b[i].scales));
            __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(a->s16 + 16 * i)), 5);
            sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
            for (int h = 0; h < 2; h++) {
                __m256i ql0 = load256(b[i].ql + 64 * h), ql1 = load256(b[i].ql + 64 * h + 32);
                __m256i qh = load256(b[i].qh + 32 * h);
                __m256i u[4];
                u[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
                u[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
                u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
                u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
                for (int g = 0; g < 4; g++) {
                    __m256i p = _mm256_maddubs_epi16(u[g], load256(xq + 128 * h + 32 * g));
                    // Scales are signed bytes; sign-extend through int8_t before broadcasting.
                    __m256i s = _mm256_set_m128i(_mm_set1_epi16((int8_t)sc[8 * h + 2 * g + 1]),
                                                 _mm_set1_epi16((int8_t)sc[8 * h + 2 * g]));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(half_f16c(b[i].d) * a->d[i]), _mm256_cvtepi32_ps(sumi), acc);
        }
        y[r] = hsum8(acc);
    }
}

void matvec_kernels_avx2(MatvecKernels *k) {
    k->fn[DT_F32] = avx2_f32;
    k->fn[DT_F16] = avx2_f16;
    k->fn[DT_BF16] = avx2_bf16;
    k->fn[DT_Q8_0] = avx2_q8_0;
    k->fn[DT_Q4_0] = avx2_q4_0;
    k->fn[DT_Q4_K] = avx2_q4_k;
    k->fn[DT_Q5_K] = avx2_q5_k;
    k->fn[DT_Q6_K] = avx2_q6_k;
}

#endif
