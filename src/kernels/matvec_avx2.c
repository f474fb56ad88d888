// matvec_avx2.c — AVX2 + FMA + F16C matrix-vector kernels (see matvec.h). Compiled with target attributes so the
// baseline build stays portable; matvec.c only calls these after cpu_features() reports AVX2, FMA and F16C.
//
// Integer kernels follow the shape every x86 int8 dot product takes: maddubs multiplies unsigned weight quants by
// signed activation quants and adds pairs into int16 (bounded: 2 * 63 * 127 < 32767 for quants up to 6 bits; Q8_0
// makes the weight unsigned by moving its sign onto the activation), madd widens to int32 (optionally multiplying by
// per-sub-block scales), and each block's int32 lanes are scaled once in float. The float and 32-block kernels run
// MATVEC_ROWS rows per pass (independent accumulators; each activation vector loaded once per pass); block scales
// are broadcast from the fp16 table in memory rather than converted and shuffled per block.
#include "kernels/matvec_impl.h"

#ifdef LOSSY_MATVEC_X86

#include <immintrin.h>
#include <string.h>

#include "base/util.h"
#include "kernels/quant.h"

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

T_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T_AVX2 static inline float half_f16c(const uint8_t *p) { return _cvtsh_ss(load_u16le(p)); }

T_AVX2 static inline __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
T_AVX2 static inline __m128i load128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

// Wraps a kernel body written for R rows (R a constant after inlining) into a row-range kernel.
#define ROWS_KERNEL(name, body)                                                                        \
    T_AVX2 static void name(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) { \
        int64_t r = 0;                                                                                 \
        for (; r + MATVEC_ROWS <= nrows; r += MATVEC_ROWS) body(w + (size_t)r * stride, stride, a, y + r, MATVEC_ROWS); \
        for (; r < nrows; r++) body(w + (size_t)r * stride, stride, a, y + r, 1);                     \
    }

// ---- float weights: 16 elements per row per step, scalar tail ----

T_AVX2 INLINE __m256 f32x8(const uint8_t *p) { return _mm256_loadu_ps((const float *)(const void *)p); }
T_AVX2 INLINE __m256 f16x8(const uint8_t *p) { return _mm256_cvtph_ps(load128(p)); }
T_AVX2 INLINE __m256 bf16x8(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
}
T_AVX2 INLINE float f32_1(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}
T_AVX2 INLINE float f16_1(const uint8_t *p) { return half_f16c(p); }
T_AVX2 INLINE float bf16_1(const uint8_t *p) { return bf16_to_fp32(load_u16le(p)); }

#define FLOAT_BODY(fname, load8, load1, esize)                                                             \
    T_AVX2 INLINE void fname(const uint8_t *w, size_t stride, const MatvecAct *a, float *y, const int R) { \
        const float *x = a->x;                                                                             \
        const int64_t n = a->n;                                                                            \
        __m256 acc[MATVEC_ROWS][2];                                                                        \
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();                           \
        int64_t i = 0;                                                                                     \
        for (; i + 16 <= n; i += 16) {                                                                     \
            __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);                           \
            for (int r = 0; r < R; r++) {                                                                  \
                const uint8_t *row = w + (size_t)r * stride + (size_t)i * esize;                           \
                if (esize == 4 || (i & 16) == 0) matvec_prefetch(row, 64, MATVEC_PF_ROWS * stride);        \
                acc[r][0] = _mm256_fmadd_ps(load8(row), x0, acc[r][0]);                                    \
                acc[r][1] = _mm256_fmadd_ps(load8(row + 8 * esize), x1, acc[r][1]);                        \
            }                                                                                              \
        }                                                                                                  \
        for (int r = 0; r < R; r++) {                                                                      \
            float s = hsum8(_mm256_add_ps(acc[r][0], acc[r][1]));                                          \
            for (int64_t k = i; k < n; k++) s += load1(w + (size_t)r * stride + (size_t)k * esize) * x[k]; \
            y[r] = s;                                                                                      \
        }                                                                                                  \
    }

FLOAT_BODY(f32_body, f32x8, f32_1, 4)
FLOAT_BODY(f16_body, f16x8, f16_1, 2)
FLOAT_BODY(bf16_body, bf16x8, bf16_1, 2)
ROWS_KERNEL(avx2_f32, f32_body)
ROWS_KERNEL(avx2_f16, f16_body)
ROWS_KERNEL(avx2_bf16, bf16_body)

// ---- 32-element blocks ----

// Signed w times signed x, 32 bytes: |w| * (x with w's sign), the unsigned operand first as maddubs wants.
T_AVX2 INLINE __m256i dot_s8(__m256i wv, __m256i xv) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

T_AVX2 INLINE void q8_0_body(const uint8_t *w, size_t stride, const MatvecAct *a, float *y, const int R) {
    const int64_t nb = a->n / 32;
    const float *tab = matvec_f16_table();
    __m256 acc[MATVEC_ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = load256(a->q + 32 * i);
        __m256 xd = _mm256_broadcast_ss(a->d + i);
        for (int r = 0; r < R; r++) {
            const BlockQ8_0 *b = (const BlockQ8_0 *)(w + (size_t)r * stride) + i;
            matvec_prefetch_block((const uint8_t *)b, sizeof *b, MATVEC_PF_ROWS * stride);
            __m256 dd = _mm256_mul_ps(_mm256_broadcast_ss(tab + load_u16le(b->d)), xd);
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(dot_s8(load256(b->qs), xv)), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = hsum8(acc[r]);
}
ROWS_KERNEL(avx2_q8_0, q8_0_body)

T_AVX2 INLINE void q4_0_body(const uint8_t *w, size_t stride, const MatvecAct *a, float *y, const int R) {
    const int64_t nb = a->n / 32;
    const __m256i m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    const float *tab = matvec_f16_table();
    __m256 acc[MATVEC_ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = load256(a->q + 32 * i);
        __m256 xd = _mm256_broadcast_ss(a->d + i);
        for (int r = 0; r < R; r++) {
            const BlockQ4_0 *b = (const BlockQ4_0 *)(w + (size_t)r * stride) + i;
            matvec_prefetch_block((const uint8_t *)b, sizeof *b, MATVEC_PF_ROWS * stride);
            __m128i raw = load128(b->qs);
            // Low nibbles are elements 0..15, high nibbles 16..31; minus 8 gives the signed quants.
            __m256i q = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4), eight);
            __m256 dd = _mm256_mul_ps(_mm256_broadcast_ss(tab + load_u16le(b->d)), xd);
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(dot_s8(q, xv)), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = hsum8(acc[r]);
}
ROWS_KERNEL(avx2_q4_0, q4_0_body)

// ---- K-quants (256-element super-blocks) ----

// Q4_K / Q5_K: qh == NULL for Q4_K.
T_AVX2 INLINE void k4_block(const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh, const int8_t *xq,
                                   const int16_t *s32, __m256i *sumi_out, int *summ_out) {
    const __m256i m4 = _mm256_set1_epi8(15), one8 = _mm256_set1_epi8(1);
    uint64_t sc, mn;
    matvec_k4_scales(scales, &sc, &mn);
    __m128i pm = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn)), load128(s32));
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
        plo = _mm256_madd_epi16(plo, _mm256_set1_epi16((short)((sc >> (16 * c)) & 0xff)));
        phi = _mm256_madd_epi16(phi, _mm256_set1_epi16((short)((sc >> (16 * c + 8)) & 0xff)));
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
            matvec_prefetch((const uint8_t *)&b[i], sizeof b[i], MATVEC_PF_ROWS * stride);
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
            matvec_prefetch((const uint8_t *)&b[i], sizeof b[i], MATVEC_PF_ROWS * stride);
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
            matvec_prefetch((const uint8_t *)&b[i], sizeof b[i], MATVEC_PF_ROWS * stride);
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
