// matvec_avx512.c — AVX-512 (F, BW, VL, VNNI) matrix-vector kernels (see matvec.h). Compiled with target
// attributes; matvec.c only calls these after cpu_features() reports all four extensions.
//
// The integer kernels use VNNI: vpdpbusd (unsigned x signed bytes, 4 products into each int32 lane, no int16
// saturation) for the 32-block formats, and vpmaddubsw + vpdpwssd (int16 pairs times per-sub-block scales,
// accumulated into int32) for the K-quants. A 512-bit register holds two 32-blocks or one 64-element K-quant chunk,
// arranged in element order so the activations load straight from memory. The F32 and 32-block kernels run
// MATVEC_ROWS rows per pass (independent accumulators; each activation vector is loaded once per pass), the F16/BF16
// ones a row at a time (one sequential stream, see FLOAT_KERNEL); the float kernels also come in a multi-activation
// form (matvec_rows_multi) that loads each weight vector once for MATVEC_ACTS activations.
#include "kernels/matvec_impl.h"

#ifdef LOSSY_MATVEC_X86

#include <immintrin.h>
#include <string.h>

#include "base/util.h"
#include "kernels/quant.h"

#define T_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

T_AVX512 INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T_AVX512 INLINE float half_f16c(const uint8_t *p) { return _cvtsh_ss(load_u16le(p)); }
T_AVX512 INLINE __m512i load512(const void *p) { return _mm512_loadu_si512(p); }
T_AVX512 INLINE __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
T_AVX512 INLINE __m128i load128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
T_AVX512 INLINE __m512i cat256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

// Wraps a kernel body written for R rows (R a constant after inlining) into a row-range kernel.
#define ROWS_KERNEL(name, body)                                                                        \
    T_AVX512 static void name(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) { \
        int64_t r = 0;                                                                                 \
        for (; r + MATVEC_ROWS <= nrows; r += MATVEC_ROWS) body(w + (size_t)r * stride, stride, a, y + r, MATVEC_ROWS); \
        for (; r < nrows; r++) body(w + (size_t)r * stride, stride, a, y + r, 1);                     \
    }

// ---- float weights: 32 elements per row per step, masked tail ----

T_AVX512 INLINE __m512 f32x16(const uint8_t *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
T_AVX512 INLINE __m512 f16x16(const uint8_t *p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
T_AVX512 INLINE __m512 bf16x16(const uint8_t *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

// R rows (<= MATVEC_ROWS) times S activations (<= MATVEC_ACTS) per pass: each weight vector is loaded and converted
// once for all S. Every (row, activation) pair keeps its own two accumulators, fed in the same order, and the same
// final reduction, so its result is the same bits whatever S (and R) it ran with. ys[s][yoff + r] receives row r.
// ahead: prefetch the bytes that far past each loaded vector (0: none, for rows just read for other activations
// that sit in cache); l2: into L2 only (matvec_prefetch_l2) rather than L1.
#define FLOAT_BODY(fname, load, esize)                                                                     \
    T_AVX512 INLINE void fname(const uint8_t *w, size_t stride, const MatvecAct *const *a, float *const *ys,  \
                               int64_t yoff, const int R, const int S, size_t ahead, const bool l2) {      \
        const int64_t n = a[0]->n;                                                                         \
        __m512 acc[MATVEC_ROWS][MATVEC_ACTS][2];                                                           \
        for (int r = 0; r < R; r++)                                                                        \
            for (int s = 0; s < S; s++) acc[r][s][0] = acc[r][s][1] = _mm512_setzero_ps();                 \
        int64_t i = 0;                                                                                     \
        for (; i + 32 <= n; i += 32) {                                                                     \
            __m512 x0[MATVEC_ACTS], x1[MATVEC_ACTS];                                                       \
            for (int s = 0; s < S; s++) x0[s] = _mm512_loadu_ps(a[s]->x + i), x1[s] = _mm512_loadu_ps(a[s]->x + i + 16); \
            for (int r = 0; r < R; r++) {                                                                  \
                const uint8_t *row = w + (size_t)r * stride + (size_t)i * esize;                           \
                if (ahead && l2) matvec_prefetch_l2(row, 32 * esize, ahead);                               \
                else if (ahead) matvec_prefetch(row, 32 * esize, ahead);                                   \
                __m512 w0 = load(row, 0xffff), w1 = load(row + 16 * esize, 0xffff);                        \
                for (int s = 0; s < S; s++) {                                                              \
                    acc[r][s][0] = _mm512_fmadd_ps(w0, x0[s], acc[r][s][0]);                               \
                    acc[r][s][1] = _mm512_fmadd_ps(w1, x1[s], acc[r][s][1]);                               \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
        for (; i < n; i += 16) {                                                                           \
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);              \
            __m512 x0[MATVEC_ACTS];                                                                        \
            for (int s = 0; s < S; s++) x0[s] = _mm512_maskz_loadu_ps(m, a[s]->x + i);                     \
            for (int r = 0; r < R; r++) {                                                                  \
                __m512 w0 = load(w + (size_t)r * stride + (size_t)i * esize, m);                           \
                for (int s = 0; s < S; s++) acc[r][s][0] = _mm512_fmadd_ps(w0, x0[s], acc[r][s][0]);       \
            }                                                                                              \
        }                                                                                                  \
        for (int r = 0; r < R; r++)                                                                        \
            for (int s = 0; s < S; s++) ys[s][yoff + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][s][0], acc[r][s][1])); \
    }

// One activation. stream = false: passes of MATVEC_ROWS rows, each prefetching the next pass into L1 (F32). stream =
// true (F16/BF16): one row after another, so each thread reads one sequential stream, prefetching into L2 the row
// MATVEC_PF_BYTES or more ahead. Decoding TinyStories-110M-shaped f16 weights on 2 threads: 4-10% more tokens/s
// than 4-row passes with L1 prefetches (lossy bench: 113-119 against 104-109 tok/s), from the file's 4 KiB pages and
// from 2 MiB ones alike; 2-row passes were no faster than 1, and either change alone (L2 prefetches with 4-row passes,
// L1 prefetches with 1) gained nothing or lost.
#define FLOAT_KERNEL(name, body, stream)                                                                   \
    T_AVX512 static void name(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) { \
        float *ys[1] = {y};                                                                                \
        int64_t r = 0;                                                                                     \
        if (stream) {                                                                                      \
            const size_t ahead = stride ? (MATVEC_PF_BYTES + stride - 1) / stride * stride : 0;            \
            for (; r < nrows; r++) body(w + (size_t)r * stride, stride, &a, ys, r, 1, 1, ahead, true);     \
            return;                                                                                        \
        }                                                                                                  \
        for (; r + MATVEC_ROWS <= nrows; r += MATVEC_ROWS)                                                 \
            body(w + (size_t)r * stride, stride, &a, ys, r, MATVEC_ROWS, 1, MATVEC_PF_ROWS * stride, false);  \
        for (; r < nrows; r++) body(w + (size_t)r * stride, stride, &a, ys, r, 1, 1, MATVEC_PF_ROWS * stride, false); \
    }

// n activations: each pass's rows are read from memory for the first MATVEC_ACTS activations, then from L1 for
// the others.
#define FLOAT_MULTI_KERNEL(name, body)                                                                     \
    T_AVX512 static void name(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *const *a,     \
                              float *const *ys, int64_t n) {                                               \
        const size_t pf = MATVEC_PF_ROWS * stride;                                                         \
        int64_t r = 0;                                                                                     \
        for (; r + MATVEC_ROWS <= nrows; r += MATVEC_ROWS) {                                               \
            const uint8_t *wr = w + (size_t)r * stride;                                                    \
            int64_t k = 0;                                                                                 \
            for (; k + MATVEC_ACTS <= n; k += MATVEC_ACTS) body(wr, stride, a + k, ys + k, r, MATVEC_ROWS, MATVEC_ACTS, k ? 0 : pf, false); \
            for (; k < n; k++) body(wr, stride, a + k, ys + k, r, MATVEC_ROWS, 1, k ? 0 : pf, false);      \
        }                                                                                                  \
        for (; r < nrows; r++) {                                                                           \
            const uint8_t *wr = w + (size_t)r * stride;                                                    \
            int64_t k = 0;                                                                                 \
            for (; k + MATVEC_ACTS <= n; k += MATVEC_ACTS) body(wr, stride, a + k, ys + k, r, 1, MATVEC_ACTS, k ? 0 : pf, false); \
            for (; k < n; k++) body(wr, stride, a + k, ys + k, r, 1, 1, k ? 0 : pf, false);                \
        }                                                                                                  \
    }

FLOAT_BODY(f32_body, f32x16, 4)
FLOAT_BODY(f16_body, f16x16, 2)
FLOAT_BODY(bf16_body, bf16x16, 2)
FLOAT_KERNEL(avx512_f32, f32_body, false)
FLOAT_KERNEL(avx512_f16, f16_body, true)
FLOAT_KERNEL(avx512_bf16, bf16_body, true)
FLOAT_MULTI_KERNEL(avx512_f32_multi, f32_body)
FLOAT_MULTI_KERNEL(avx512_f16_multi, f16_body)
FLOAT_MULTI_KERNEL(avx512_bf16_multi, bf16_body)

// ---- 32-element blocks, two per 512-bit register ----

// One 32-block per step in 256-bit registers (see q4_0_body for why): vpdpbusd wants one unsigned operand, so w's
// sign moves onto x and |w| is used (|-128| = 128 is fine as an unsigned byte).
T_AVX512 INLINE void q8_0_body(const uint8_t *w, size_t stride, const MatvecAct *a, float *y, const int R) {
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
            __m256i wv = load256(b->qs);
            __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
            __m256 dd = _mm256_mul_ps(_mm256_broadcast_ss(tab + load_u16le(b->d)), xd);
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = hsum8(acc[r]);
}
ROWS_KERNEL(avx512_q8_0, q8_0_body)

// One 32-block per step in 256-bit registers (ports 0 and 1 both take 256-bit VNNI, only port 0 takes 512-bit):
// the 16 quant bytes are broadcast to both halves straight from memory and masked, leaving the low nibbles (elements
// 0..15) in the low half and the high nibbles, still times 16, in the high half; the accumulators' high halves are
// divided by 16 at the end. The -8 offset is folded into the dot product's starting value, computed once per block
// for all rows. Scales come from the fp16 table by broadcast loads, so no shuffle port is needed per block.
T_AVX512 INLINE void q4_0_body(const uint8_t *w, size_t stride, const MatvecAct *a, float *y, const int R) {
    const int64_t nb = a->n / 32;
    const float *tab = matvec_f16_table();
    const __m256i mask = _mm256_set_epi64x(-0x0f0f0f0f0f0f0f10ll, -0x0f0f0f0f0f0f0f10ll, 0x0f0f0f0f0f0f0f0fll, 0x0f0f0f0f0f0f0f0fll);
    const __m256i offs = _mm256_set_epi64x(-0x7f7f7f7f7f7f7f80ll, -0x7f7f7f7f7f7f7f80ll, 0x0808080808080808ll, 0x0808080808080808ll);
    __m256 acc[MATVEC_ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = load256(a->q + 32 * i);
        // -(8 * x) for the low half, -(128 * x) for the high half (whose quants carry the factor 16).
        __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), offs, xv));
        __m256 xd = _mm256_broadcast_ss(a->d + i);
        for (int r = 0; r < R; r++) {
            const BlockQ4_0 *b = (const BlockQ4_0 *)(w + (size_t)r * stride) + i;
            matvec_prefetch_block((const uint8_t *)b, sizeof *b, MATVEC_PF_ROWS * stride);
            __m256i u = _mm256_and_si256(_mm256_broadcastsi128_si256(load128(b->qs)), mask);
            __m256i p = _mm256_dpbusd_epi32(start, u, xv);
            __m256 dd = _mm256_mul_ps(_mm256_broadcast_ss(tab + load_u16le(b->d)), xd);
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc[r]);
        }
    }
    const __m256 unscale = _mm256_setr_ps(1, 1, 1, 1, 0.0625f, 0.0625f, 0.0625f, 0.0625f);
    for (int r = 0; r < R; r++) y[r] = hsum8(_mm256_mul_ps(acc[r], unscale));
}
ROWS_KERNEL(avx512_q4_0, q4_0_body)

// The x4 kernels read G (1 or 2) groups per pass, gdist bytes apart, and write their rows at y and y + ydist.
// Prefetches go a fixed distance ahead in each group's stream (the layout keeps a group's quants and scales in one
// stream): Q8_0 2 KiB (1.1B-shaped matrices: beat 1, 3 and 4 KiB and the previous one-pass-ahead, 8.7-24 KiB, by
// 4-5%), Q4_0 3 KiB (1, 1.5, 2, 4, 6 KiB: 32.1, 33.3, 34.0, 32.9, 31.8 GB/s against 34.1-34.6 over 629 MB of
// groups; lossy bench on the 1.1B Q4_0 file: 52.7-55.8 -> 55.9-56.7 tok/s).
#define X4_PF_Q8_0 2048
#define X4_PF_Q4_0 3072
// The blocks of a pass, run by run (matvec.h: a run's quants, then its scales): STEP(i, q, d, first) for block i,
// its quants q and scales d in the pass's first group, first = it opens its run. Whole runs are unrolled with
// constant offsets, so a block costs its vector work and no address arithmetic or branches (Q8_0: about 43
// instructions per block of the pass's two groups where working the run pointers out per block took about 70; with
// the lane start values precomputed (MatvecAct.m4), 1 GiB of 1.1B-shaped Q8_0 x4 groups streams at 33.4-34.4 GB/s
// on 2 threads, was 32.2-33.3). Three groups per pass instead of two gained nothing.
#define X4_FOR_BLOCKS(qb, STEP)                                                                                  \
    for (int64_t r0 = 0; r0 < nb; r0 += MATVEC_X4_RUN) {                                                          \
        const int64_t len = nb - r0 < MATVEC_X4_RUN ? nb - r0 : MATVEC_X4_RUN;                                    \
        const uint8_t *run = group + (size_t)r0 * (4 * (qb) + 8);                                                 \
        if (len == MATVEC_X4_RUN) {                                                                               \
            _Pragma("GCC unroll 8") for (int k = 0; k < MATVEC_X4_RUN; k++)                                       \
                STEP(r0 + k, run + (size_t)k * 4 * (qb), run + (size_t)MATVEC_X4_RUN * 4 * (qb) + (size_t)k * 8, k == 0); \
        } else {                                                                                                  \
            for (int k = 0; k < len; k++)                                                                         \
                STEP(r0 + k, run + (size_t)k * 4 * (qb), run + (size_t)len * 4 * (qb) + (size_t)k * 8, k == 0);   \
        }                                                                                                         \
    }

// Q4_0x4 (matvec.h): per block, one 512-bit load holds 4 rows x 32 nibbles; low and high nibbles meet the
// block's activations broadcast to the four 128-bit lanes, so each lane accumulates one row. The -8 offset starts
// lane 0 of each row at -8 * (sum of the block's activations). Scales: the four rows' fp16 converted together and
// spread over their lanes. The pass's groups share the activation loads.
T_AVX512 INLINE void q4_0x4_step(const MatvecAct *a, int64_t i, const uint8_t *run_q, const uint8_t *run_d, bool first,
                                 size_t gdist, __m512 *acc, const int G) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i xl = _mm512_broadcast_i32x4(load128(a->q + 32 * i)), xh = _mm512_broadcast_i32x4(load128(a->q + 32 * i + 16));
    const __m512i start = _mm512_maskz_set1_epi32(0x1111, -8 * (a->s16[2 * i] + a->s16[2 * i + 1]));
    const __m512 xd = _mm512_set1_ps(a->d[i]);
    for (int g = 0; g < G; g++) {
        const uint8_t *q = run_q + g * gdist, *ds = run_d + g * gdist;
        matvec_prefetch(q, 64, X4_PF_Q4_0);
        if (first) matvec_prefetch(ds, 64, X4_PF_Q4_0);
        __m512i v = load512(q);
        __m512i p = _mm512_dpbusd_epi32(start, _mm512_and_si512(v, m4), xl);
        p = _mm512_dpbusd_epi32(p, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), xh);
        __m512 d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)ds))));
        acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(d, xd), acc[g]);
    }
}

T_AVX512 INLINE void q4_0x4_body(const uint8_t *group, size_t gdist, int64_t nb, const MatvecAct *a, float *y,
                                 int64_t ydist, const int G) {
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
#define Q4_STEP(i, q, d, first) q4_0x4_step(a, i, q, d, first, gdist, acc, G)
    X4_FOR_BLOCKS(16, Q4_STEP)
#undef Q4_STEP
    for (int g = 0; g < G; g++) { // lanes 4r .. 4r+3 belong to row r
        float t[16];
        _mm512_storeu_ps(t, acc[g]);
        for (int r = 0; r < 4; r++) y[g * ydist + r] = (t[4 * r] + t[4 * r + 1]) + (t[4 * r + 2] + t[4 * r + 3]);
    }
}

// Q8_0x4: the Q8_0 body's numbers (so the Q8_0 kernel's bits) for four rows read in order, in 512-bit registers:
// one register holds a block of two rows (32 bytes each), the block's activations broadcast to both halves. There is
// no 512-bit vpsignb, so the weights are made unsigned by flipping their sign bit (w + 128) and each int32 lane
// starts at -128 * (its 4 activations): lane by lane the same integer as q8_0_body's |w| . sign(x, w), then the
// same scale product and FMA.
T_AVX512 INLINE void q8_0x4_step(const MatvecAct *a, int64_t i, const uint8_t *run_q, const uint8_t *run_d, bool first,
                                 size_t gdist, __m512 *acc, const int G) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i lo2 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i hi2 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m512i x2 = _mm512_broadcast_i64x4(load256(a->q + 32 * i));
    const __m512i start = _mm512_broadcast_i64x4(load256(a->m4 + 8 * i));
    const __m128 xd = _mm_set1_ps(a->d[i]);
    for (int g = 0; g < G; g++) {
        const uint8_t *q = run_q + g * gdist, *d = run_d + g * gdist;
        matvec_prefetch(q, 128, X4_PF_Q8_0);
        if (first) matvec_prefetch(d, 64, X4_PF_Q8_0);
        __m512i p01 = _mm512_dpbusd_epi32(start, _mm512_xor_si512(load512(q), flip), x2);
        __m512i p23 = _mm512_dpbusd_epi32(start, _mm512_xor_si512(load512(q + 64), flip), x2);
        __m512 dd = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)d)), xd));
        acc[2 * g] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo2, dd), _mm512_cvtepi32_ps(p01), acc[2 * g]);
        acc[2 * g + 1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi2, dd), _mm512_cvtepi32_ps(p23), acc[2 * g + 1]);
    }
}

T_AVX512 INLINE void q8_0x4_body(const uint8_t *group, size_t gdist, int64_t nb, const MatvecAct *a, float *y,
                                 int64_t ydist, const int G) {
    __m512 acc[4]; // group g: rows 0, 1 in acc[2g] (low, high half), rows 2, 3 in acc[2g + 1]
    for (int v = 0; v < 2 * G; v++) acc[v] = _mm512_setzero_ps();
#define Q8_STEP(i, q, d, first) q8_0x4_step(a, i, q, d, first, gdist, acc, G)
    X4_FOR_BLOCKS(32, Q8_STEP)
#undef Q8_STEP
    for (int v = 0; v < 2 * G; v++) {
        float *yr = y + (v / 2) * ydist + 2 * (v % 2);
        yr[0] = hsum8(_mm512_castps512_ps256(acc[v]));
        yr[1] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[v]), 1)));
    }
}

// Groups [g0, g1) two per pass, taken from the two halves of the range: two long sequential streams rather than two
// adjacent groups whose streams restart every pass (1.1B-shaped Q8_0, lossy bench: +4-5% alone, +9-10% with the
// scales in the groups' streams).
#define X4_KERNEL(name, body, qb)                                                                                 \
    T_AVX512 void name(const uint8_t *packed, int64_t nb, int64_t g0, int64_t g1, const MatvecAct *a, float *y) { \
        const size_t gstride = (size_t)nb * (4 * (qb) + 8);                                                      \
        const int64_t half = (g1 - g0) / 2;                                                                      \
        for (int64_t k = 0; k < half; k++)                                                                       \
            body(packed + (size_t)(g0 + k) * gstride, (size_t)half * gstride, nb, a, y + 4 * (g0 + k), 4 * half, 2); \
        if ((g1 - g0) % 2) body(packed + (size_t)(g1 - 1) * gstride, 0, nb, a, y + 4 * (g1 - 1), 0, 1);          \
    }
X4_KERNEL(matvec_q4_0x4_avx512, q4_0x4_body, 16)
X4_KERNEL(matvec_q8_0x4_avx512, q8_0x4_body, 32)

// ---- K-quants, one row at a time (a 256-element super-block already gives each row long independent chains) ----

// Q4_K / Q5_K (qh == NULL for Q4_K). Returns the int32 lanes of sum_j sc_j * dot_j; *summ = sum_j mn_j * xsum_j.
T_AVX512 INLINE __m512i k4_block(const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh, const int8_t *xq,
                                 const int16_t *s32, const __m512i idx[4], int *summ) {
    const __m512i m4 = _mm512_set1_epi8(15), one8 = _mm512_set1_epi8(1);
    uint64_t sc, mn;
    matvec_k4_scales(scales, &sc, &mn);
    __m128i pm = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn)), load128(s32));
    pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0x4e));
    pm = _mm_add_epi32(pm, _mm_shuffle_epi32(pm, 0xb1));
    *summ = _mm_cvtsi128_si32(pm);
    __m512i scv = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    __m512i hb = _mm512_setzero_si512();
    if (qh) {
        __m256i h = load256(qh);
        hb = cat256(h, _mm256_srli_epi16(h, 1)); // bit 2c -> low-nibble half, bit 2c+1 -> high-nibble half
    }
    __m512i sumi = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
        __m256i raw = load256(qs + 32 * c);
        __m512i u = _mm512_and_si512(cat256(raw, _mm256_srli_epi16(raw, 4)), m4); // elements 64c .. 64c+63
        if (qh) {
            u = _mm512_or_si512(u, _mm512_slli_epi16(_mm512_and_si512(hb, one8), 4));
            hb = _mm512_srli_epi16(hb, 2);
        }
        __m512i p = _mm512_maddubs_epi16(u, load512(xq + 64 * c));
        sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(idx[c], scv));
    }
    return sumi;
}

T_AVX512 INLINE void k4_idx(__m512i idx[4]) {
    for (int c = 0; c < 4; c++)
        idx[c] = _mm512_mask_set1_epi16(_mm512_set1_epi16((short)(2 * c)), 0xffff0000u, (short)(2 * c + 1));
}

T_AVX512 static void avx512_q4_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 256;
    __m512i idx[4];
    k4_idx(idx);
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ4_K *b = (const BlockQ4_K *)(w + (size_t)r * stride);
        __m512 acc = _mm512_setzero_ps();
        float corr = 0;
        for (int64_t i = 0; i < nb; i++) {
            matvec_prefetch((const uint8_t *)&b[i], sizeof b[i], MATVEC_PF_ROWS * stride);
            int summ;
            __m512i sumi = k4_block(b[i].scales, b[i].qs, NULL, a->q + 256 * i, a->s32 + 8 * i, idx, &summ);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(half_f16c(b[i].d) * a->d[i]), _mm512_cvtepi32_ps(sumi), acc);
            corr += half_f16c(b[i].dmin) * a->d[i] * (float)summ;
        }
        y[r] = _mm512_reduce_add_ps(acc) - corr;
    }
}

T_AVX512 static void avx512_q5_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 256;
    __m512i idx[4];
    k4_idx(idx);
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ5_K *b = (const BlockQ5_K *)(w + (size_t)r * stride);
        __m512 acc = _mm512_setzero_ps();
        float corr = 0;
        for (int64_t i = 0; i < nb; i++) {
            matvec_prefetch((const uint8_t *)&b[i], sizeof b[i], MATVEC_PF_ROWS * stride);
            int summ;
            __m512i sumi = k4_block(b[i].scales, b[i].qs, b[i].qh, a->q + 256 * i, a->s32 + 8 * i, idx, &summ);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(half_f16c(b[i].d) * a->d[i]), _mm512_cvtepi32_ps(sumi), acc);
            corr += half_f16c(b[i].dmin) * a->d[i] * (float)summ;
        }
        y[r] = _mm512_reduce_add_ps(acc) - corr;
    }
}

T_AVX512 static void avx512_q6_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const int64_t nb = a->n / 256;
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    // Scale index of each int16 lane of a maddubs result (8 lanes per 16-element group), for the 4 64-element
    // quarters of a super-block.
    __m512i idx[4];
    for (int k = 0; k < 4; k++) {
        int16_t t[32];
        for (int l = 0; l < 32; l++) t[l] = (int16_t)(4 * k + l / 8);
        idx[k] = _mm512_loadu_si512(t);
    }
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ6_K *b = (const BlockQ6_K *)(w + (size_t)r * stride);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            matvec_prefetch((const uint8_t *)&b[i], sizeof b[i], MATVEC_PF_ROWS * stride);
            const int8_t *xq = a->q + 256 * i;
            __m256i sc16 = _mm256_cvtepi8_epi16(load128(b[i].scales));
            __m512i scv = _mm512_castsi256_si512(sc16);
            __m512i sumi = _mm512_setzero_si512();
            for (int h = 0; h < 2; h++) {
                __m512i ql = load512(b[i].ql + 64 * h);
                __m256i qh = load256(b[i].qh + 32 * h);
                __m512i qh2 = cat256(qh, _mm256_srli_epi16(qh, 2));
                __m512i ua = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(qh2, m2), 4));
                __m512i ub = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                             _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh2, 4), m2), 4));
                __m512i pa = _mm512_maddubs_epi16(ua, load512(xq + 128 * h));
                __m512i pb = _mm512_maddubs_epi16(ub, load512(xq + 128 * h + 64));
                sumi = _mm512_dpwssd_epi32(sumi, pa, _mm512_permutexvar_epi16(idx[2 * h], scv));
                sumi = _mm512_dpwssd_epi32(sumi, pb, _mm512_permutexvar_epi16(idx[2 * h + 1], scv));
            }
            // Fold to 8 lanes and remove the -32 offset: 32 * sum_k scale_k * (sum of x in group k).
            __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi), _mm512_extracti64x4_epi64(sumi, 1));
            s8 = _mm256_sub_epi32(s8, _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(a->s16 + 16 * i)), 5));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(half_f16c(b[i].d) * a->d[i]), _mm256_cvtepi32_ps(s8), acc);
        }
        y[r] = hsum8(acc);
    }
}

// Activation quantization (matvec.h), 16 lanes at a time; the same float operations as the scalar loop, so the same
// bits: max|x| is exact in any order, x * id rounds once, roundscale is round-to-nearest-even like nearbyintf.
T_AVX512 void matvec_quantize_act_avx512(const float *x, int64_t n, int bs, int8_t *q, float *d, int16_t *s16) {
    const __m512 lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f);
    for (int64_t b = 0; b < n / bs; b++) {
        const float *xb = x + b * bs;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < bs; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + i)));
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        const __m512 idv = _mm512_set1_ps(id);
        for (int i = 0; i < bs; i += 16) {
            __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(xb + i), idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m512i qi = _mm512_cvtps_epi32(_mm512_max_ps(_mm512_min_ps(v, lim), nlim));
            _mm_storeu_si128((__m128i *)(q + b * bs + i), _mm512_cvtepi32_epi8(qi));
        }
    }
    if (!s16) return;
    // Sums of 16 quants: psadbw adds 8 bytes per 64-bit lane (taken unsigned: q + 128, so subtract 8 * 128), and
    // adjacent lanes make a group of 16.
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    int64_t g = 0;
    for (; g + 4 <= n / 16; g += 4) {
        __m512i sad = _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(q + 16 * g), bias), _mm512_setzero_si512());
        int64_t lanes[8];
        _mm512_storeu_si512(lanes, sad);
        for (int k = 0; k < 4; k++) s16[g + k] = (int16_t)(lanes[2 * k] + lanes[2 * k + 1] - 16 * 128);
    }
    for (; g < n / 16; g++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += q[16 * g + i];
        s16[g] = (int16_t)sum;
    }
}

void matvec_kernels_avx512(MatvecKernels *k) {
    k->fn[DT_F32] = avx512_f32;
    k->fn[DT_F16] = avx512_f16;
    k->fn[DT_BF16] = avx512_bf16;
    k->fn[DT_Q8_0] = avx512_q8_0;
    k->fn[DT_Q4_0] = avx512_q4_0;
    k->fn[DT_Q4_K] = avx512_q4_k;
    k->fn[DT_Q5_K] = avx512_q5_k;
    k->fn[DT_Q6_K] = avx512_q6_k;
    k->multi[DT_F32] = avx512_f32_multi;
    k->multi[DT_F16] = avx512_f16_multi;
    k->multi[DT_BF16] = avx512_bf16_multi;
}

#endif
