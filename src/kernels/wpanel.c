// wpanel.c — products with F32 weights repacked into 32-column panels (see wpanel.h).
//
// Loop nest of wpanel_rows, for a piece of the columns, with the activations packed k-major beforehand in groups of
// up to WPANEL_MR rows (one broadcast load per row and k):
//   up to WPANEL_MR rows (decoding): for each panel, tile = the rows x 32 columns (one row: two panels at a time);
//   more rows (a prompt chunk, AVX-512): for k in blocks of WPANEL_KC, for each panel, for each group: the tile over
//   that block, continuing from the sums stored by the previous block, so the panel's block stays in L1.
// Each output is one FMA chain over k in order: the same bits whatever the group size, k blocking or thread split.
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

size_t wpanel_bytes(int64_t n, int64_t k) {
    if (n <= 0 || k <= 0) return 0;
    size_t panels = (size_t)((n + WPANEL_NR - 1) / WPANEL_NR), floats, bytes;
    if (!size_mul(panels, (size_t)k, &floats) || !size_mul(floats, (size_t)WPANEL_NR * sizeof(float), &bytes)) return 0;
    return bytes;
}

void wpanel_pack(float *dst, const float *w, int64_t ld, int64_t n, int64_t k) {
    for (int64_t q = 0; q * WPANEL_NR < n; q++) {
        float *p = dst + (size_t)q * (size_t)k * WPANEL_NR; // (k, 32)
        int64_t rows = min64(WPANEL_NR, n - q * WPANEL_NR);
        // 32 source rows read in step, 8 columns at a time: each source line is used whole while it is in L1
        for (int64_t k0 = 0; k0 < k; k0 += 8) {
            int64_t k1 = min64(k, k0 + 8);
            for (int64_t j = 0; j < WPANEL_NR; j++) {
                const float *src = w + (size_t)(q * WPANEL_NR + j) * (size_t)ld;
                for (int64_t kk = k0; kk < k1; kk++) p[kk * WPANEL_NR + j] = j < rows ? src[kk] : 0.0f;
            }
        }
    }
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

// Portable tile: the same chains as the AVX-512 one (fmaf rounds exactly like a vector FMA).
static void tile_portable(int64_t k, const float *a, const float *b, float *const *y, int64_t col, int64_t ncols, int64_t m) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ncols; j++) {
            float acc = 0.0f;
            for (int64_t kk = 0; kk < k; kk++) acc = fmaf(a[kk * m + i], b[kk * WPANEL_NR + j], acc);
            y[i][col + j] = acc;
        }
}

#if WPANEL_X86
// M rows (a constant after inlining) x 32 columns over k steps; ncols < 32 only for the matrix's last, partial
// panel. Not matmul.c's micro-kernel, though it has the same shape: that one sums each k block from zero and adds it
// to C (training's GEMM rounds that way), where here every output continues one chain, which is what makes a row's
// result independent of k blocking and of the rows it shares the tile with; and the activations come packed per
// group of mm rows, not padded to the tile height. acc: continue the chains from the sums stored in y by the previous block of k (a float stored and loaded
// back is the same float, so blocking k changes no bit).
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
tile_avx512(int64_t k, const float *a, const float *b, float *const *y, int64_t col, int64_t ncols, bool acc, const int M) {
    const __mmask16 m0 = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1);
    const __mmask16 m1 = ncols >= 32 ? (__mmask16)0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
    __m512 c[WPANEL_MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        c[i][0] = acc ? _mm512_maskz_loadu_ps(m0, y[i] + col) : _mm512_setzero_ps();
        c[i][1] = acc ? _mm512_maskz_loadu_ps(m1, y[i] + col + 16) : _mm512_setzero_ps();
    }
    for (int64_t kk = 0; kk < k; kk++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
        }
        a += M;
        b += WPANEL_NR;
    }
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        _mm512_mask_storeu_ps(y[i] + col, m0, c[i][0]);
        _mm512_mask_storeu_ps(y[i] + col + 16, m1, c[i][1]);
    }
}

// One row times WPANEL_STREAMS consecutive panels (columns col .. col + 32 * WPANEL_STREAMS - 1, ncols of them in
// all): a single decoding sequence keeps twice the FMA chains in flight and two streams for the prefetchers. Each output is still one chain over k in order: the same bits as
// tile_avx512 with M = 1.
#define WPANEL_STREAMS 2
__attribute__((target("avx512f"))) static void tile_avx512_1xs(int64_t k, const float *a, const float *b, float *const *y,
                                                                int64_t col, int64_t ncols) {
    const size_t ps = (size_t)k * WPANEL_NR; // floats per panel
    __m512 c[2 * WPANEL_STREAMS];
    for (int v = 0; v < 2 * WPANEL_STREAMS; v++) c[v] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < k; kk++) {
        __m512 av = _mm512_set1_ps(a[kk]);
        const float *bk = b + kk * WPANEL_NR;
        for (int p = 0; p < WPANEL_STREAMS; p++) {
            c[2 * p] = _mm512_fmadd_ps(av, _mm512_loadu_ps(bk + p * ps), c[2 * p]);
            c[2 * p + 1] = _mm512_fmadd_ps(av, _mm512_loadu_ps(bk + p * ps + 16), c[2 * p + 1]);
        }
    }
    for (int v = 0; v < 2 * WPANEL_STREAMS; v++) {
        int64_t left = ncols - 16 * v;
        __mmask16 mk = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        _mm512_mask_storeu_ps(y[0] + col + 16 * v, mk, c[v]);
    }
}

#define TILE_CASE(M) \
    case M: tile_avx512(k, a, b, y, col, ncols, acc, M); return;
__attribute__((target("avx512f"))) static void tile_avx512_m(int64_t k, const float *a, const float *b, float *const *y,
                                                              int64_t col, int64_t ncols, bool acc, int64_t m) {
    switch (m) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7)
        TILE_CASE(8) TILE_CASE(9) TILE_CASE(10) TILE_CASE(11) TILE_CASE(12) TILE_CASE(13)
    default: tile_avx512(k, a, b, y, col, ncols, acc, WPANEL_MR); return;
    }
}
#endif

void wpanel_rows(const float *panels, int64_t n, int64_t k, int64_t r0, int64_t r1, int64_t m, const float *act,
                 float *const *y) {
    if (r1 > n) r1 = n;
    if (r0 >= r1 || m <= 0 || k <= 0) return;
    const bool fast = wpanel_fast();
    const int64_t q0 = r0 / WPANEL_NR, q1 = (r1 + WPANEL_NR - 1) / WPANEL_NR;
#if WPANEL_X86
    if (fast && m > WPANEL_MR) {
        // Many rows (a prompt chunk): k in blocks of WPANEL_KC, so each panel's block (32 KiB) stays in L1 while
        // every group of rows passes over it.
        for (int64_t kb = 0; kb < k; kb += WPANEL_KC) {
            const int64_t kc = min64(WPANEL_KC, k - kb);
            for (int64_t q = q0; q < q1; q++) {
                const float *b = panels + (size_t)q * (size_t)k * WPANEL_NR + (size_t)kb * WPANEL_NR;
                const int64_t col = q * WPANEL_NR, ncols = min64(WPANEL_NR, r1 - col);
                for (int64_t s0 = 0; s0 < m; s0 += WPANEL_MR) {
                    const int64_t mm = min64(WPANEL_MR, m - s0);
                    tile_avx512_m(kc, act + (size_t)s0 * (size_t)k + (size_t)kb * (size_t)mm, b, y + s0, col, ncols, kb > 0, mm);
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
            const float *b = panels + (size_t)q * (size_t)k * WPANEL_NR;
            const int64_t col = q * WPANEL_NR, ncols = min64(WPANEL_NR, r1 - col);
#if WPANEL_X86
            if (fast && mm == 1 && q + WPANEL_STREAMS <= q1) {
                tile_avx512_1xs(k, a, b, y + s0, col, min64(WPANEL_STREAMS * WPANEL_NR, r1 - col));
                q += WPANEL_STREAMS - 1;
                continue;
            }
            if (fast) {
                tile_avx512_m(k, a, b, y + s0, col, ncols, false, mm);
                continue;
            }
#endif
            tile_portable(k, a, b, y + s0, col, ncols, mm);
        }
    }
}
