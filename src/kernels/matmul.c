// matmul.c — blocked, packed f32 GEMM with AVX-512 / AVX2 / portable micro-kernels, and the linear layer
// forward/backward built on it (see matmul.h).
//
// Structure (the classic Goto/BLIS loop nest), for C (M, N) += A (M, K) B (K, N):
//   for jc over N in steps of NC:            B block (KC, NC) packed once, reused by every row block of A
//     for pc over K in steps of KC:
//       pack B[pc.., jc..] into NR-wide column panels, k-major           (Bp, lives in L2/L3)
//       for ic over M in steps of MC:        <- split point for threads: each packs its own A block
//         pack A[ic.., pc..] into MR-tall row panels, k-major             (Ap, lives in L2)
//         for jr over the NR panels:  for ir over the MR panels:
//           micro-kernel: an MR x NR tile of C in registers, kc rank-1 updates from the two panels (L1)
// Packing absorbs any operand strides, which is how one kernel computes x W^T, dy W and dy^T x. Panels are
// zero-padded to full MR/NR, so the kernel always computes a full tile; edge tiles go through a small buffer.
#include "kernels/matmul.h"

#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MATMUL_X86 1
#else
#define MATMUL_X86 0
#endif

// C[0..MR, 0..NR] (row stride ldc) = (accumulate ? C : 0) + sum_k Ap[k*MR + i] * Bp[k*NR + j].
typedef void (*MicroKernel)(int64_t kc, const float *Ap, const float *Bp, float *C, int64_t ldc, int accumulate);

// The first m < MR rows of the same tile, full NR wide (NULL: partial tiles go through a buffer).
typedef void (*MicroKernelRows)(int64_t kc, const float *Ap, const float *Bp, float *C, int64_t ldc, int accumulate, int m);

typedef struct GemmKernel {
    MatmulIsa isa;
    int mr, nr;         // register tile
    int64_t mc, kc, nc; // cache blocks (mc a multiple of mr, nc of nr)
    MicroKernel fn;
    MicroKernelRows rows;
} GemmKernel;

#define MAX_MR 16
#define MAX_NR 32

// ---- portable micro-kernel ----
#define SC_MR 4
#define SC_NR 8
static void ukernel_scalar(int64_t kc, const float *Ap, const float *Bp, float *C, int64_t ldc, int accumulate) {
    float c[SC_MR][SC_NR];
    memset(c, 0, sizeof c);
    for (int64_t k = 0; k < kc; k++) {
        const float *a = Ap + k * SC_MR, *b = Bp + k * SC_NR;
        for (int i = 0; i < SC_MR; i++)
            for (int j = 0; j < SC_NR; j++) c[i][j] += a[i] * b[j];
    }
    for (int i = 0; i < SC_MR; i++)
        for (int j = 0; j < SC_NR; j++) C[i * ldc + j] = accumulate ? C[i * ldc + j] + c[i][j] : c[i][j];
}

#if MATMUL_X86
// ---- AVX2 + FMA: 6 x 16 tile in 12 ymm accumulators ----
#define AVX2_MR 6
#define AVX2_NR 16
__attribute__((target("avx2,fma"))) static void ukernel_avx2(int64_t kc, const float *Ap, const float *Bp, float *C,
                                                              int64_t ldc, int accumulate) {
    __m256 c[AVX2_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < AVX2_MR; i++) {
        c[i][0] = c[i][1] = _mm256_setzero_ps();
        if (accumulate) { // see the AVX-512 kernel
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + i * ldc + 15), _MM_HINT_T0);
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8);
#pragma GCC unroll 6
        for (int i = 0; i < AVX2_MR; i++) {
            __m256 a = _mm256_broadcast_ss(Ap + i);
            c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
        }
        Ap += AVX2_MR;
        Bp += AVX2_NR;
    }
#pragma GCC unroll 6
    for (int i = 0; i < AVX2_MR; i++) {
        float *cr = C + i * ldc;
        if (accumulate) {
            c[i][0] = _mm256_add_ps(c[i][0], _mm256_loadu_ps(cr));
            c[i][1] = _mm256_add_ps(c[i][1], _mm256_loadu_ps(cr + 8));
        }
        _mm256_storeu_ps(cr, c[i][0]);
        _mm256_storeu_ps(cr + 8, c[i][1]);
    }
}

// ---- AVX-512: 14 x 32 tile in 28 zmm accumulators (2 more for B, broadcasts folded into the FMAs) ----
#define AVX512_MR 14
#define AVX512_NR 32
// The first M rows of the tile (M a constant after inlining): the full kernel, and a partial one for the last row
// panel of a product whose height is not a multiple of 14 (a 128-token prompt chunk leaves 2 rows: computing all
// 14 would spend 9% of the chunk's multiply-adds on padding).
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
tile_avx512(int64_t kc, const float *Ap, const float *Bp, float *C, int64_t ldc, int accumulate, const int M) {
    __m512 c[AVX512_MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        c[i][0] = c[i][1] = _mm512_setzero_ps();
        // C is read only after kc updates: start its (likely uncached) lines now, so they are in L1 by then.
        if (accumulate) {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + i * ldc + 31), _MM_HINT_T0);
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(Bp + 16);
#pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            __m512 a = _mm512_set1_ps(Ap[i]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
        Ap += AVX512_MR;
        Bp += AVX512_NR;
    }
#pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        float *cr = C + i * ldc;
        if (accumulate) {
            c[i][0] = _mm512_add_ps(c[i][0], _mm512_loadu_ps(cr));
            c[i][1] = _mm512_add_ps(c[i][1], _mm512_loadu_ps(cr + 16));
        }
        _mm512_storeu_ps(cr, c[i][0]);
        _mm512_storeu_ps(cr + 16, c[i][1]);
    }
}

__attribute__((target("avx512f"))) static void ukernel_avx512(int64_t kc, const float *Ap, const float *Bp, float *C,
                                                               int64_t ldc, int accumulate) {
    tile_avx512(kc, Ap, Bp, C, ldc, accumulate, AVX512_MR);
}

#define TILE_ROWS_CASE(m) \
    case m: tile_avx512(kc, Ap, Bp, C, ldc, accumulate, m); return;
__attribute__((target("avx512f"))) static void ukernel_rows_avx512(int64_t kc, const float *Ap, const float *Bp, float *C,
                                                                    int64_t ldc, int accumulate, int m) {
    switch (m) {
        TILE_ROWS_CASE(1) TILE_ROWS_CASE(2) TILE_ROWS_CASE(3) TILE_ROWS_CASE(4) TILE_ROWS_CASE(5) TILE_ROWS_CASE(6)
        TILE_ROWS_CASE(7) TILE_ROWS_CASE(8) TILE_ROWS_CASE(9) TILE_ROWS_CASE(10) TILE_ROWS_CASE(11) TILE_ROWS_CASE(12)
        TILE_ROWS_CASE(13)
    default: tile_avx512(kc, Ap, Bp, C, ldc, accumulate, AVX512_MR); return;
    }
}
#endif

static const GemmKernel K_SCALAR = {MATMUL_ISA_SCALAR, SC_MR, SC_NR, 128, 256, 2048, ukernel_scalar, NULL};
#if MATMUL_X86
static const GemmKernel K_AVX2 = {MATMUL_ISA_AVX2, AVX2_MR, AVX2_NR, 144, 256, 2048, ukernel_avx2, NULL};
static const GemmKernel K_AVX512 = {MATMUL_ISA_AVX512, AVX512_MR, AVX512_NR, 168, 256, 2048, ukernel_avx512, ukernel_rows_avx512};
#endif

static MatmulIsa g_forced = MATMUL_ISA_AUTO;

static bool isa_supported(MatmulIsa isa) {
    const CpuFeatures *f = cpu_features();
    switch (isa) {
    case MATMUL_ISA_AUTO:
    case MATMUL_ISA_SCALAR: return true;
    case MATMUL_ISA_AVX2: return MATMUL_X86 && f->avx2 && f->fma;
    case MATMUL_ISA_AVX512: return MATMUL_X86 && f->avx512f;
    }
    return false;
}

static const GemmKernel *gemm_kernel(void) {
    MatmulIsa isa = g_forced;
    if (isa == MATMUL_ISA_AUTO)
        isa = isa_supported(MATMUL_ISA_AVX512) ? MATMUL_ISA_AVX512
              : isa_supported(MATMUL_ISA_AVX2) ? MATMUL_ISA_AVX2 : MATMUL_ISA_SCALAR;
#if MATMUL_X86
    if (isa == MATMUL_ISA_AVX512) return &K_AVX512;
    if (isa == MATMUL_ISA_AVX2) return &K_AVX2;
#endif
    return &K_SCALAR;
}

int matmul_force_isa(MatmulIsa isa) {
    if (!isa_supported(isa)) return -1;
    g_forced = isa;
    return 0;
}

MatmulIsa matmul_active_isa(void) { return gemm_kernel()->isa; }

const char *matmul_isa_name(MatmulIsa isa) {
    switch (isa) {
    case MATMUL_ISA_AUTO: return "auto";
    case MATMUL_ISA_SCALAR: return "scalar";
    case MATMUL_ISA_AVX2: return "avx2";
    case MATMUL_ISA_AVX512: return "avx512";
    }
    return "?";
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

#if MATMUL_X86
// dst[k * ld + j] = src[j * lds + k] for rows j < n (n <= 16; lanes j >= n are not written) and k in
// [0, 16 * floor(kc / 16)), by 16 x 16 register transposes; returns the k reached. pf > 0: also prefetch the same
// columns pf floats further on (rows packed later, when src is a weight matrix streamed from memory: 16 rows read
// a few lines at a time defeat the hardware prefetcher).
__attribute__((target("avx512f"))) static int64_t transpose16_avx512(float *dst, int64_t ld, const float *src,
                                                                      int64_t lds, int64_t kc, int n, int64_t pf) {
    const __mmask16 store = (__mmask16)((1u << n) - 1);
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
        __m512 r[16], t[16];
        if (pf > 0)
            for (int i = 0; i < n; i++) _mm_prefetch((const char *)(src + i * lds + k + pf), _MM_HINT_T0);
        for (int i = 0; i < 16; i++) r[i] = i < n ? _mm512_loadu_ps(src + i * lds + k) : _mm512_setzero_ps();
        for (int i = 0; i < 16; i += 2) { // pairs of rows interleaved by element
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 16; i += 4) { // quads of rows, 64-bit granules
            r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
            r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
            r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
            r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        }
        // r[4q + c] holds, in 128-bit lane l, rows 4q..4q+3 of column 4l + c; two lane shuffles gather the quads
        for (int i = 0; i < 4; i++) { // 128-bit lanes across quads
            t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
            t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
            t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
            t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
        }
        for (int i = 0; i < 4; i++) {
            r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
            r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
            r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
            r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
        }
        for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(dst + (k + i) * ld, store, r[i]); // r[i] = column k + i
    }
    return k;
}
#endif

// Ap: ceil(mc / mr) panels, each (kc, mr) k-major: Ap[p*mr*kc + k*mr + i] = op(A)(p*mr + i, k), zero past mc.
static void pack_a(float *Ap, const float *A, int64_t rsa, int64_t csa, int64_t mc, int64_t kc, int mr) {
    if (csa == 1) {
        // Rows of op(A) are contiguous in k (x, dy): read each row once, write a column of its panel.
        int64_t i0 = 0;
#if MATMUL_X86
        if (mr <= 16 && cpu_features()->avx512f) { // whole panels by register transposes, then the k tail
            for (; i0 + mr <= mc; i0 += mr) {
                float *dst = Ap + i0 * kc;
                int64_t k = transpose16_avx512(dst, mr, A + i0 * rsa, rsa, kc, mr, 0);
                for (int64_t i = 0; i < mr; i++)
                    for (int64_t kk = k; kk < kc; kk++) dst[kk * mr + i] = A[(i0 + i) * rsa + kk];
            }
        }
#endif
        for (int64_t i = i0; i < mc; i++) {
            const float *src = A + i * rsa;
            float *dst = Ap + (i / mr) * mr * kc + i % mr;
            for (int64_t k = 0; k < kc; k++) dst[k * mr] = src[k];
        }
    } else {
        // Columns of op(A) are contiguous (dy^T): one sequential run of mc values per k, spread over the panels.
        for (int64_t k = 0; k < kc; k++) {
            const float *src = A + k * csa;
            for (int64_t p0 = 0; p0 < mc; p0 += mr) {
                int64_t m = min64(mr, mc - p0);
                float *dst = Ap + p0 * kc + k * mr;
                for (int64_t i = 0; i < m; i++) dst[i] = src[(p0 + i) * rsa];
            }
        }
    }
    int64_t m = mc % mr; // zero the tail of a partial last panel (its products land in discarded tile rows)
    if (m) {
        float *dst = Ap + (mc - m) * kc;
        for (int64_t k = 0; k < kc; k++)
            for (int64_t i = m; i < mr; i++) dst[k * mr + i] = 0.0f;
    }
}

// Bp: ceil(nc / nr) panels, each (kc, nr) k-major: Bp[q*nr*kc + k*nr + j] = op(B)(k, q*nr + j), zero past nc.
static void pack_b(float *Bp, const float *B, int64_t rsb, int64_t csb, int64_t kc, int64_t nc, int nr) {
    if (csb == 1) {
        // Rows of op(B) are contiguous (W in dy W, x in dy^T x): one sequential run of nc values per k.
        for (int64_t k = 0; k < kc; k++) {
            const float *src = B + k * rsb;
            for (int64_t q0 = 0; q0 < nc; q0 += nr)
                memcpy(Bp + q0 * kc + k * nr, src + q0, (size_t)min64(nr, nc - q0) * sizeof(float));
        }
    } else if (rsb == 1) {
        // Columns of op(B) are contiguous in k (B = W^T for an (OUT, IN) weight). Panel by panel, 8 k at a time:
        // the nr source rows are read a few lines each and the panel is written in order, so neither side
        // scatters single floats over a block larger than L1 (which made this the GEMM's main cost).
        for (int64_t q0 = 0; q0 < nc; q0 += nr) {
            int64_t n = min64(nr, nc - q0);
            float *dst = Bp + q0 * kc;
            int64_t k = 0;
#if MATMUL_X86
            if (nr % 16 == 0 && cpu_features()->avx512f) {
                for (int64_t j0 = 0; j0 + 16 <= n; j0 += 16) k = transpose16_avx512(dst + j0, nr, B + (q0 + j0) * csb, csb, kc, 16, nr * csb);
                for (int64_t j0 = n / 16 * 16; j0 < n; j0++)
                    for (int64_t kk = 0; kk < k; kk++) dst[kk * nr + j0] = B[(q0 + j0) * csb + kk];
            }
#endif
            for (; k + 8 <= kc; k += 8)
                for (int64_t j = 0; j < n; j++) {
                    const float *src = B + (q0 + j) * csb + k;
                    for (int kk = 0; kk < 8; kk++) dst[(k + kk) * nr + j] = src[kk];
                }
            for (; k < kc; k++)
                for (int64_t j = 0; j < n; j++) dst[k * nr + j] = B[(q0 + j) * csb + k];
        }
    } else {
        for (int64_t j = 0; j < nc; j++) {
            const float *src = B + j * csb;
            float *dst = Bp + (j / nr) * nr * kc + j % nr;
            for (int64_t k = 0; k < kc; k++) dst[k * nr] = src[k * rsb];
        }
    }
    int64_t n = nc % nr;
    if (n) {
        float *dst = Bp + (nc - n) * kc;
        for (int64_t k = 0; k < kc; k++)
            for (int64_t j = n; j < nr; j++) dst[k * nr + j] = 0.0f;
    }
}

// 64-byte aligned scratch carved from one allocation (aligned vector loads, no false sharing across threads later).
static float *align64(void *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

void matmul_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa, const float *B,
                 int64_t rsb, int64_t csb, float *C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    const GemmKernel *kr = gemm_kernel();
    const int mr = kr->mr, nr = kr->nr;
    int64_t kc_max = min64(kr->kc, K);
    int64_t mc_max = min64(kr->mc, (M + mr - 1) / mr * mr);
    int64_t nc_max = min64(kr->nc, (N + nr - 1) / nr * nr);
    void *mem_a = xmalloc((size_t)(mc_max * kc_max) * sizeof(float) + 64);
    void *mem_b = xmalloc((size_t)(kc_max * nc_max) * sizeof(float) + 64);
    float *Ap = align64(mem_a); // (mc, kc) as panels
    float *Bp = align64(mem_b); // (kc, nc) as panels
    float tile[MAX_MR * MAX_NR] __attribute__((aligned(64)));

    for (int64_t jc = 0; jc < N; jc += kr->nc) {
        int64_t nc = min64(kr->nc, N - jc);
        for (int64_t pc = 0; pc < K; pc += kr->kc) {
            int64_t kc = min64(kr->kc, K - pc);
            int acc = accumulate || pc > 0;
            pack_b(Bp, B + pc * rsb + jc * csb, rsb, csb, kc, nc, nr);
            for (int64_t ic = 0; ic < M; ic += kr->mc) {
                int64_t mc = min64(kr->mc, M - ic);
                pack_a(Ap, A + ic * rsa + pc * csa, rsa, csa, mc, kc, mr);
                for (int64_t jr = 0; jr < nc; jr += nr) {
                    int64_t n = min64(nr, nc - jr);
                    for (int64_t ir = 0; ir < mc; ir += mr) {
                        int64_t m = min64(mr, mc - ir);
                        float *Ct = C + (ic + ir) * ldc + jc + jr;
                        const float *a = Ap + ir * kc, *b = Bp + jr * kc;
                        if (m == mr && n == nr) {
                            kr->fn(kc, a, b, Ct, ldc, acc);
                        } else if (n == nr && kr->rows) {
                            kr->rows(kc, a, b, Ct, ldc, acc, (int)m);
                        } else {
                            kr->fn(kc, a, b, tile, nr, 0);
                            for (int64_t i = 0; i < m; i++)
                                for (int64_t j = 0; j < n; j++)
                                    Ct[i * ldc + j] = acc ? Ct[i * ldc + j] + tile[i * nr + j] : tile[i * nr + j];
                        }
                    }
                }
            }
        }
    }
    free(mem_a);
    free(mem_b);
}

// A few rows (a token at a time through an f32 model): packing W would cost more than the product, so take dot
// products of x rows with W rows straight from memory. 16 partial sums vectorise without reassociation.
static void matmul_forward_rows(float *y, const float *x, const float *w, const float *b, int64_t N, int64_t IN,
                                int64_t OUT) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * IN; // (IN)
        for (int64_t o = 0; o < OUT; o++) {
            const float *wr = w + o * IN; // (IN)
            float acc[16] = {0};
            int64_t i = 0;
            for (; i + 16 <= IN; i += 16)
                for (int j = 0; j < 16; j++) acc[j] += xr[i + j] * wr[i + j];
            for (int j = 0; i < IN; i++, j++) acc[j] += xr[i] * wr[i];
            for (int s = 8; s > 0; s /= 2)
                for (int j = 0; j < s; j++) acc[j] += acc[j + s];
            y[n * OUT + o] = b ? acc[0] + b[o] : acc[0];
        }
    }
}

void matmul_forward(float *y, const float *x, const float *w, const float *b, int64_t N, int64_t IN, int64_t OUT) {
    if (N < 4) {
        matmul_forward_rows(y, x, w, b, N, IN, OUT);
        return;
    }
    if (b)
        for (int64_t n = 0; n < N; n++) memcpy(y + n * OUT, b, (size_t)OUT * sizeof(float));
    // op(A) = x (N, IN); op(B) = W^T (IN, OUT): element (k, j) = w[j * IN + k].
    matmul_gemm(N, OUT, IN, x, IN, 1, w, 1, IN, y, OUT, b != NULL);
}

void matmul_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int64_t N,
                     int64_t IN, int64_t OUT) {
    // dx (N, IN) += dy (N, OUT) W (OUT, IN)
    if (dx) matmul_gemm(N, IN, OUT, dy, OUT, 1, w, IN, 1, dx, IN, true);
    // dw (OUT, IN) += dy^T (OUT, N) x (N, IN): op(A) element (o, n) = dy[n * OUT + o]
    if (dw) matmul_gemm(OUT, IN, N, dy, 1, OUT, x, IN, 1, dw, IN, true);
    if (db)
        for (int64_t n = 0; n < N; n++) {
            const float *g = dy + n * OUT; // (OUT)
            for (int64_t o = 0; o < OUT; o++) db[o] += g[o];
        }
}
