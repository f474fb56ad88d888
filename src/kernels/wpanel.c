// wpanel.c — products with F32/F16/BF16 weights repacked into 32-column panels (see wpanel.h).
//
// Loop nest of wpanel_rows, for a piece of the columns, with the activations packed k-major beforehand in groups of
// up to WPANEL_MR rows (one broadcast load per row and k):
//   up to WPANEL_MR rows (decoding): for each panel, tile = the rows x 32 columns (one row: two panels at a time);
//   more rows (a prompt chunk, AVX-512): for k in blocks of WPANEL_KC, for each panel, for each group: the tile over
//   that block, continuing from the sums stored by the previous block, so the panel's block stays in L1.
// Each output is one FMA chain over k in order: the same bits whatever the group size, k blocking or thread split.
// One code path for the three element types: the tiles take the type as a constant and widen each panel line to
// f32 in registers (F16/BF16 -> f32 is exact), so an F16 matrix gives the bits its F32 widening would.
#include "kernels/wpanel.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "base/cpu.h"
#include "base/util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define WPANEL_X86 1
#else
#define WPANEL_X86 0
#endif

#define WPANEL_KC 256                         // k per block when rows are many (a 32 KiB block of a panel)

static atomic_bool g_portable; // tests: force the portable path

void wpanel_force_portable(bool on) { atomic_store(&g_portable, on); }

bool wpanel_fast(void) { return WPANEL_X86 && cpu_features()->avx512f && !atomic_load(&g_portable); }

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

bool wpanel_supports(DType t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16; }

static size_t elem_size(DType t) { return t == DT_F32 ? 4 : 2; }

// How far ahead decoding prefetches a panel stream, in bytes (see tile_1xs).
static size_t stream_ahead(DType t) { return t == DT_F32 ? 1024 : 3072; }

size_t wpanel_bytes(DType t, int64_t n, int64_t k) {
    if (n <= 0 || k <= 0 || !wpanel_supports(t)) return 0;
    size_t panels = (size_t)((n + WPANEL_NR - 1) / WPANEL_NR), elems, bytes;
    if (!size_mul(panels, (size_t)k, &elems) || !size_mul(elems, (size_t)WPANEL_NR * elem_size(t), &bytes)) return 0;
    return bytes;
}

// One panel of 32 rows (the last may have fewer: zeros past them); es a constant after inlining, so each element
// is one plain move.
static inline __attribute__((always_inline)) void pack_panel(uint8_t *p, const uint8_t *w, size_t row_bytes,
                                                               int64_t rows, int64_t k, const size_t es) {
    // 32 source rows read in step, 8 columns at a time: each source line is used whole while it is in L1
    for (int64_t k0 = 0; k0 < k; k0 += 8) {
        int64_t k1 = min64(k, k0 + 8);
        for (int64_t j = 0; j < WPANEL_NR; j++) {
            const uint8_t *src = w + (size_t)j * row_bytes;
            for (int64_t kk = k0; kk < k1; kk++) {
                uint8_t *d = p + ((size_t)kk * WPANEL_NR + (size_t)j) * es;
                if (j < rows) memcpy(d, src + (size_t)kk * es, es);
                else memset(d, 0, es);
            }
        }
    }
}

void wpanel_pack(DType t, void *dst, const void *w, size_t row_bytes, int64_t n, int64_t k) {
    const size_t es = elem_size(t);
    for (int64_t q = 0; q * WPANEL_NR < n; q++) {
        uint8_t *p = (uint8_t *)dst + (size_t)q * (size_t)k * WPANEL_NR * es; // (k, 32) elements
        const uint8_t *src = (const uint8_t *)w + (size_t)(q * WPANEL_NR) * row_bytes;
        int64_t rows = min64(WPANEL_NR, n - q * WPANEL_NR);
        if (es == 4) pack_panel(p, src, row_bytes, rows, k, 4);
        else pack_panel(p, src, row_bytes, rows, k, 2);
    }
}

void wpanel_unpack_row(DType t, const void *panels, int64_t k, int64_t r, void *out) {
    const size_t es = elem_size(t);
    const uint8_t *p = (const uint8_t *)panels + (size_t)(r / WPANEL_NR) * (size_t)k * WPANEL_NR * es + (size_t)(r % WPANEL_NR) * es;
    for (int64_t kk = 0; kk < k; kk++) memcpy((uint8_t *)out + (size_t)kk * es, p + (size_t)kk * WPANEL_NR * es, es);
}

int64_t wpanel_act_groups(int64_t m) { return m > 0 ? (m + WPANEL_MR - 1) / WPANEL_MR : 0; }

size_t wpanel_act_floats(int64_t m, int64_t k) {
    return (size_t)(wpanel_act_groups(m) > 0 ? wpanel_act_groups(m) : 1) * WPANEL_MR * (size_t)(k > 0 ? k : 1);
}

void wpanel_act_pack(float *act, const float *const *x, int64_t m, int64_t k, int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; g++) {
        // (k, mm): a group of mm < WPANEL_MR rows (the last) is not padded, so one decoding row's packed input is
        // as compact as the row itself (padding it to 14 rows made it overflow L1 for wide inputs)
        const int64_t s0 = g * WPANEL_MR, mm = min64(WPANEL_MR, m - s0);
        float *dst = act + (size_t)s0 * (size_t)k;
        for (int64_t kk = 0; kk < k; kk++)
            for (int64_t i = 0; i < mm; i++) dst[kk * mm + i] = x[s0 + i][kk];
    }
}

// Element kk*32 + j of a panel block, widened to f32 (exactly).
static inline float elem_at(DType t, const uint8_t *b, size_t i) {
    if (t == DT_F32) {
        float v;
        memcpy(&v, b + i * 4, 4);
        return v;
    }
    uint16_t h = load_u16le(b + i * 2);
    return t == DT_F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
}

// Portable tile: the same chains as the AVX-512 one (fmaf rounds exactly like a vector FMA).
static void tile_portable(DType t, int64_t k, const float *a, const uint8_t *b, float *const *y, int64_t col, int64_t ncols,
                          int64_t m) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ncols; j++) {
            float acc = 0.0f;
            for (int64_t kk = 0; kk < k; kk++) acc = fmaf(a[kk * m + i], elem_at(t, b, (size_t)(kk * WPANEL_NR + j)), acc);
            y[i][col + j] = acc;
        }
}

#if WPANEL_X86
#define T_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw")))
#define INLINE static inline __attribute__((always_inline))

// 16 consecutive elements of a panel line as f32 (t a constant after inlining).
T_AVX512 INLINE __m512 load16(const uint8_t *p, const DType t) {
    if (t == DT_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    if (t == DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// M rows (a constant after inlining) x 32 columns over k steps; ncols < 32 only for the matrix's last, partial
// panel. Not matmul.c's micro-kernel, though it has the same shape: that one sums each k block from zero and adds it
// to C (training's GEMM rounds that way), where here every output continues one chain, which is what makes a row's
// result independent of k blocking and of the rows it shares the tile with; and the activations come packed per
// group of mm rows, not padded to the tile height. acc: continue the chains from the sums stored in y by the previous
// block of k (a float stored and loaded back is the same float, so blocking k changes no bit). ahead: prefetch the
// panel that many bytes ahead (decoding several sequences, where the panel is streamed from memory once: 110M F16, 2
// threads, 8 sequences a step 19.9 -> 12.8 ms; 0 for prompt blocks, which are read from L1 by every group of rows).
T_AVX512 INLINE void tile_avx512(int64_t k, const float *a, const uint8_t *b, float *const *y, int64_t col, int64_t ncols,
                                 bool acc, size_t ahead, const int M, const DType t) {
    const size_t es = elem_size(t);
    const __mmask16 m0 = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1);
    const __mmask16 m1 = ncols >= 32 ? (__mmask16)0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
    __m512 c[WPANEL_MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        c[i][0] = acc ? _mm512_maskz_loadu_ps(m0, y[i] + col) : _mm512_setzero_ps();
        c[i][1] = acc ? _mm512_maskz_loadu_ps(m1, y[i] + col + 16) : _mm512_setzero_ps();
    }
    for (int64_t kk = 0; kk < k; kk++) {
        if (ahead)
            for (size_t l = 0; l < WPANEL_NR * es; l += 64) _mm_prefetch((const char *)b + ahead + l, _MM_HINT_T0);
        __m512 b0 = load16(b, t), b1 = load16(b + 16 * es, t);
#pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
        }
        a += M;
        b += WPANEL_NR * es;
    }
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        _mm512_mask_storeu_ps(y[i] + col, m0, c[i][0]);
        _mm512_mask_storeu_ps(y[i] + col + 16, m1, c[i][1]);
    }
}

// One row times WPANEL_STREAMS consecutive panels (columns col .. col + 32 * WPANEL_STREAMS - 1, ncols of them in
// all), each output still one chain over k in order: the same bits as tile_avx512 with M = 1. Decoding is bound by
// how many of a core's reads are in flight, and what raised that here (pure-read analogues of this loop on 1 GiB of
// 1.1B-shaped panels, 2 threads, against 36 GB/s for the bare read loop):
//   - two panels read in step: two streams for the L2 prefetcher (F16, one panel: 33 GB/s; two: 34-35);
//   - prefetching each stream's lines into L1 a fixed distance ahead, in bytes per element size: F16 3 KiB (35.6-36.3
//     GB/s; 1 KiB 33, 8 KiB 32), F32 1 KiB (37-38; 2 KiB 35, 4 KiB 30): past the best distance the prefetches
//     evict lines before they are used;
//   - 4 k steps per loop pass (fewer loop instructions between the loads).
// The same weights read as rows (one row after another, prefetched) reach 31-32.6 GB/s for F16.
#define WPANEL_STREAMS 2
// One k step of tile_1xs: kk's activation times line i (byte offset) of both panels, prefetching ahead.
#define TILE_1XS_STEP(kk, i)                                                                              \
    do {                                                                                                  \
        __m512 av = _mm512_set1_ps(a[kk]);                                                                \
        for (size_t l = 0; l < line; l += 64) {                                                           \
            _mm_prefetch((const char *)b0 + (i) + ahead + l, _MM_HINT_T0);                                \
            _mm_prefetch((const char *)b1 + (i) + ahead + l, _MM_HINT_T0);                                \
        }                                                                                                 \
        c0 = _mm512_fmadd_ps(av, load16(b0 + (i), t), c0);                                                \
        c1 = _mm512_fmadd_ps(av, load16(b0 + (i) + 16 * es, t), c1);                                      \
        c2 = _mm512_fmadd_ps(av, load16(b1 + (i), t), c2);                                                \
        c3 = _mm512_fmadd_ps(av, load16(b1 + (i) + 16 * es, t), c3);                                      \
    } while (0)
T_AVX512 INLINE void tile_1xs(int64_t k, const float *a, const uint8_t *b, float *const *y, int64_t col, int64_t ncols,
                              const DType t) {
    const size_t es = elem_size(t), line = WPANEL_NR * es, ps = (size_t)k * line; // bytes per k step, per panel
    const size_t ahead = stream_ahead(t);
    const uint8_t *b0 = b, *b1 = b + ps;
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    int64_t kk = 0;
    size_t i = 0; // byte offset of step kk in each panel
    for (; kk + 4 <= k; kk += 4, i += 4 * line) {
        TILE_1XS_STEP(kk, i);
        TILE_1XS_STEP(kk + 1, i + line);
        TILE_1XS_STEP(kk + 2, i + 2 * line);
        TILE_1XS_STEP(kk + 3, i + 3 * line);
    }
    for (; kk < k; kk++, i += line) TILE_1XS_STEP(kk, i);
    const __m512 c[4] = {c0, c1, c2, c3};
    for (int v = 0; v < 2 * WPANEL_STREAMS; v++) {
        int64_t left = ncols - 16 * v;
        __mmask16 mk = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        _mm512_mask_storeu_ps(y[0] + col + 16 * v, mk, c[v]);
    }
}

// The tiles for element type T, M a run-time value: one switch to the constant-M instances.
#define TILE_CASE(M, T) \
    case M: tile_avx512(k, a, b, y, col, ncols, acc, ahead, M, T); return;
#define TILES_FOR(name, T)                                                                                     \
    T_AVX512 static void name##_m(int64_t k, const float *a, const uint8_t *b, float *const *y, int64_t col,    \
                                  int64_t ncols, bool acc, size_t ahead, int64_t m) {                          \
        switch (m) {                                                                                           \
            TILE_CASE(1, T) TILE_CASE(2, T) TILE_CASE(3, T) TILE_CASE(4, T) TILE_CASE(5, T) TILE_CASE(6, T)    \
            TILE_CASE(7, T) TILE_CASE(8, T) TILE_CASE(9, T) TILE_CASE(10, T) TILE_CASE(11, T) TILE_CASE(12, T) \
            TILE_CASE(13, T)                                                                                   \
        default: tile_avx512(k, a, b, y, col, ncols, acc, ahead, WPANEL_MR, T); return;                        \
        }                                                                                                      \
    }                                                                                                          \
    T_AVX512 static void name##_1xs(int64_t k, const float *a, const uint8_t *b, float *const *y, int64_t col, \
                                    int64_t ncols) {                                                           \
        tile_1xs(k, a, b, y, col, ncols, T);                                                                   \
    }
TILES_FOR(tiles_f32, DT_F32)
TILES_FOR(tiles_f16, DT_F16)
TILES_FOR(tiles_bf16, DT_BF16)

typedef void (*TileM)(int64_t k, const float *a, const uint8_t *b, float *const *y, int64_t col, int64_t ncols, bool acc,
                      size_t ahead, int64_t m);
typedef void (*Tile1xs)(int64_t k, const float *a, const uint8_t *b, float *const *y, int64_t col, int64_t ncols);
#endif

void wpanel_rows(DType t, const void *panels, int64_t n, int64_t k, int64_t r0, int64_t r1, int64_t m, const float *act,
                 float *const *y) {
    if (r1 > n) r1 = n;
    if (r0 >= r1 || m <= 0 || k <= 0 || !wpanel_supports(t)) return;
    const size_t es = elem_size(t), pbytes = (size_t)k * WPANEL_NR * es; // one panel
    const uint8_t *base = panels;
    const bool fast = wpanel_fast();
    const int64_t q0 = r0 / WPANEL_NR, q1 = (r1 + WPANEL_NR - 1) / WPANEL_NR;
#if WPANEL_X86
    const TileM tile_m = t == DT_F32 ? tiles_f32_m : t == DT_F16 ? tiles_f16_m : tiles_bf16_m;
    const Tile1xs tile_1 = t == DT_F32 ? tiles_f32_1xs : t == DT_F16 ? tiles_f16_1xs : tiles_bf16_1xs;
    if (fast && m > WPANEL_MR) {
        // Many rows (a prompt chunk): k in blocks of WPANEL_KC, so each panel's block (32 KiB of F32) stays in L1
        // while every group of rows passes over it.
        for (int64_t kb = 0; kb < k; kb += WPANEL_KC) {
            const int64_t kc = min64(WPANEL_KC, k - kb);
            for (int64_t q = q0; q < q1; q++) {
                const uint8_t *b = base + (size_t)q * pbytes + (size_t)kb * WPANEL_NR * es;
                const int64_t col = q * WPANEL_NR, ncols = min64(WPANEL_NR, r1 - col);
                for (int64_t s0 = 0; s0 < m; s0 += WPANEL_MR) {
                    const int64_t mm = min64(WPANEL_MR, m - s0);
                    tile_m(kc, act + (size_t)s0 * (size_t)k + (size_t)kb * (size_t)mm, b, y + s0, col, ncols, kb > 0, 0, mm);
                }
            }
        }
        return;
    }
#endif
    for (int64_t s0 = 0; s0 < m; s0 += WPANEL_MR) {
        const int64_t mm = min64(WPANEL_MR, m - s0);
        const float *a = act + (size_t)s0 * (size_t)k; // (k, mm)
        for (int64_t q = q0; q < q1; q++) {
            const uint8_t *b = base + (size_t)q * pbytes;
            const int64_t col = q * WPANEL_NR, ncols = min64(WPANEL_NR, r1 - col);
#if WPANEL_X86
            if (fast && mm == 1 && q + WPANEL_STREAMS <= q1) {
                tile_1(k, a, b, y + s0, col, min64(WPANEL_STREAMS * WPANEL_NR, r1 - col));
                q += WPANEL_STREAMS - 1;
                continue;
            }
            if (fast) {
                tile_m(k, a, b, y + s0, col, ncols, false, stream_ahead(t), mm);
                continue;
            }
#endif
            tile_portable(t, k, a, b, y + s0, col, ncols, mm);
        }
    }
}
