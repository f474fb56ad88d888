// wgemm.h — Y = X W^T for a block of tokens with W in its stored dtype: the GEMM behind prompt processing.
//
// matvec.h multiplies one activation vector by a weight matrix; a prompt chunk has N of them, and reading W once per
// chunk instead of once per token is what makes prompt processing many times faster than generation. Two paths:
//   - AMX int8 (Sapphire Rapids and later, when the OS grants the tile state): for Q8_0, Q4_0, Q4_K, Q5_K and Q6_K.
//     X is quantized once per product into int8 blocks of 32 (one scale per token and block, as matvec does) and
//     packed into tile layout; each thread unpacks 32 weight rows at a time into int8 plus per-sub-block scales (and
//     mins for Q4_K/Q5_K), and the tile unit computes the exact int32 dot product of every (row, token, sub-block);
//     the vector unit scales those into f32 accumulators, sub-block by sub-block in k order.
//   - f32 (every dtype, every CPU): W rows are converted to f32 a panel at a time (F32 rows are used in place) and
//     multiplied by the f32 activations with the packed GEMM of matmul.h (AVX-512 / AVX2 / portable micro-kernels).
// Either way every Y element is computed by the same sequence of float operations whatever the row range it lies in
// and however many tokens share the call, so splitting rows across threads never changes the result. The two paths
// round differently from each other and from matvec (batched prompts agree with token-by-token decoding to float
// and activation-quantization precision, not bit for bit).
//
// Use: wgemm_act_prepare once per X and weight family, then wgemm_rows on disjoint row ranges from any number of
// threads (the act is read-only), each thread with its own WgemmScratch.
#ifndef LOSSY_WGEMM_H
#define LOSSY_WGEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/err.h"

typedef enum WgemmPath { WGEMM_AUTO = 0, WGEMM_F32 = 1, WGEMM_AMX = 2 } WgemmPath;

const char *wgemm_path_name(WgemmPath p);
bool wgemm_path_available(WgemmPath p); // AMX: CPU has AMX-INT8 and the OS granted the tile data state
// Force a path for later products (tests, benchmarks). Not thread-safe: call before products run. A forced AMX path
// still uses f32 for weight types it has no kernel for.
int wgemm_force_path(WgemmPath p, Err *e);
// The path products with weights of type t take now (never WGEMM_AUTO).
WgemmPath wgemm_path_for(DType t);

// Rows per unit of work: ranges starting at multiples of it keep every thread on whole tiles.
#define WGEMM_ROW_UNIT 32

// X prepared for one family of weight types. Buffers grow, never shrink.
typedef struct WgemmAct {
    DType wtype;       // weight type it was prepared for
    WgemmPath path;    // WGEMM_F32 (x used as is) or WGEMM_AMX
    int64_t N, K;      // tokens, columns
    const float *x;    // (N, ldx) borrowed: valid while the act is used
    int64_t ldx;
    int8_t *xq;        // AMX: (ceil(N/16), K/32, 8 rows, 64 bytes) tiles; row kk of tile (t16, j) holds, for each
                       // of its 16 tokens, the 4 quants k = 32j + 4kk .. 32j + 4kk + 3
    float *dx;         // AMX: (ceil(N/16), K/32, 16) scale of each (token, block of 32); 0 for padding tokens
    float *u;          // AMX: (ceil(N/16), K/32, 16) dx times the sum of the block's quants (for K-quant mins)
    size_t cap_q, cap_d;
} WgemmAct;

void wgemm_act_init(WgemmAct *a);
void wgemm_act_free(WgemmAct *a);
// Prepare X (N rows of K floats, ldx apart) for weights of type t. Fails for unsupported t or K not a whole number
// of t's blocks.
int wgemm_act_prepare(WgemmAct *a, DType t, const float *x, int64_t ldx, int64_t N, int64_t K, Err *e);
// Whether an act prepared for some type serves weights of type t as well (then one preparation covers a group of
// products sharing X, like q/k/v).
bool wgemm_act_fits(const WgemmAct *a, DType t);

// Per-thread working memory (weight panels, tile buffers). Grows on first use, then is reused.
typedef struct WgemmScratch {
    void *mem;
    size_t cap;
} WgemmScratch;
void wgemm_scratch_free(WgemmScratch *s);

// Y[n][r] = dot(row r of W, X row n) for r in [r0, r1), n in [0, N). w points at row 0 (row_stride bytes apart);
// y is (N, ldy), indexed by absolute row. The act must fit t (wgemm_act_fits).
void wgemm_rows(DType t, const void *w, size_t row_stride, int64_t r0, int64_t r1, const WgemmAct *a, float *y,
                int64_t ldy, WgemmScratch *s);
// The same, with W's first x4_rows / 4 * 4 rows (Q4_0/Q8_0) read from matvec.h's x4 layout at x4 and only the rows
// past them from w: the same results as wgemm_rows on the plain rows, so a model that decodes from the x4 copy need
// not keep the plain rows resident. Other types ignore x4.
void wgemm_rows_x4(DType t, const void *x4, int64_t x4_rows, const void *w, size_t row_stride, int64_t r0, int64_t r1,
                   const WgemmAct *a, float *y, int64_t ldy, WgemmScratch *s);

#endif
