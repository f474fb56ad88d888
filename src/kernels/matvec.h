// matvec.h — y = W x with W kept in its stored dtype (F32/F16/BF16 and the GGML block formats).
//
// W is `rows` rows of `cols` elements, each row `row_stride` bytes apart (usually quant_row_bytes(t, cols)). Rows are
// never expanded to f32 in memory: float types are converted a vector at a time; Q8_0/Q4_0 dot 8-bit activation
// blocks of 32 and Q4_K/Q5_K/Q6_K dot 8-bit activation super-blocks of 256 with integer arithmetic (the activation
// vector is quantized once per product, into a reusable MatvecAct); other dequantizable types decode one block at a
// time and dot in float.
//
// Kernel paths: a portable scalar path, AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI), picked at run time from
// cpu_features(). The AVX paths are compiled with __attribute__((target)), so a baseline build runs everywhere.
// All paths use the same quantized activations; they differ only in float summation order.
//
// Threading: callers split rows; matvec_act_prepare once, then matvec_rows on disjoint row ranges (read-only act).
#ifndef LOSSY_MATVEC_H
#define LOSSY_MATVEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/err.h"

typedef enum KernelPath { KERNEL_AUTO = 0, KERNEL_SCALAR = 1, KERNEL_AVX2 = 2, KERNEL_AVX512 = 3 } KernelPath;

const char *matvec_path_name(KernelPath p);
bool matvec_path_available(KernelPath p);
// Force a path (tests, benchmarks); KERNEL_AUTO returns to the best available. Fails when the CPU lacks it.
// Not thread-safe: call before products are running.
int matvec_force_path(KernelPath p, Err *e);
KernelPath matvec_current_path(void); // resolved (never KERNEL_AUTO)

// Whether W of type t can be used (every dequantizable type).
bool matvec_supports(DType t);

// The activation vector x, as each weight type wants it. Reused across products: memory grows, never shrinks.
typedef struct MatvecAct {
    DType wtype;     // weight type it was prepared for
    int64_t n;       // elements
    const float *x;  // (n) borrowed: the caller's x, valid while the act is used
    int8_t *q;       // (n) x quantized to int8, for integer kernels
    float *d;        // (n / bs) scale of each activation block (bs = 32 for Q8_0/Q4_0, 256 for K-quants)
    int16_t *s16;    // (n / 16) sums of 16 consecutive q
    int16_t *s32;    // (n / 32) sums of 32 consecutive q
    int32_t *m4;     // (n / 4) -128 * the sum of each 4 consecutive q (Q8_0: the x4 kernel's lane start values)
    size_t cap;      // elements allocated
    int bs;          // activation block size, 0 when x is used as floats
} MatvecAct;

void matvec_act_init(MatvecAct *a);
void matvec_act_free(MatvecAct *a);
// Prepare x (n = cols) for products with weights of type t. Fails for unsupported t or n not a whole number of blocks.
int matvec_act_prepare(MatvecAct *a, DType t, const float *x, int64_t n, Err *e);
// The activation quantization every int8 kernel uses, exposed for the prompt GEMM (wgemm.c): blocks of bs (32 or 256)
// elements, q = round-to-nearest-even(x * 127 / max|x|) clamped to [-127, 127], d = max|x| / 127 per block, and
// s16 (may be NULL) the sum of each 16 consecutive q. n must be a multiple of bs. Vectorized where the CPU allows;
// every path gives the same bits.
void matvec_quantize_act(const float *x, int64_t n, int bs, int8_t *q, float *d, int16_t *s16);

// Whether an act prepared (for any type) can serve weights of type t: float and generic types use x itself, Q8_0 and
// Q4_0 share 32-element activation blocks, Q4_K/Q5_K/Q6_K share 256-element ones. One x multiplied by several
// matrices (q, k, v; gate, up) is prepared once. n must also match. An act that does not fit still gives the right
// answer in matvec_rows, through the slow generic float kernel.
bool matvec_act_fits(const MatvecAct *a, DType t);

// y[r] = dot(row r of W, x) for r in [r0, r1). w points at row 0; y is indexed by absolute row. Each row's result
// is the same bits however the rows are split into ranges (so it does not depend on the thread count).
void matvec_rows(DType t, const void *w, size_t row_stride, int64_t r0, int64_t r1, const MatvecAct *a, float *y);

// The product of one matrix with n activation vectors (decoding steps of n sequences): ys[k][r] = dot(row r of W,
// acts[k]) for r in [r0, r1), k in [0, n). Each weight row is read from memory once for all n (float types: a kernel
// that multiplies each loaded weight vector by several activations; others: row tiles reread from cache), and every
// ys[k][r] is the same bits as matvec_rows with acts[k] alone. At most MATVEC_MULTI_MAX activations go through the
// multi kernel in one call (more still work, more slowly): callers split larger batches.
#define MATVEC_MULTI_MAX 16
void matvec_rows_multi(DType t, const void *w, size_t row_stride, int64_t r0, int64_t r1, const MatvecAct *const *acts,
                       float *const *ys, int64_t n);

// Q4_0 and Q8_0 weights repacked at load time for the vector kernels ("x4" layouts, the same bits per weight): rows
// in groups of 4, nb blocks each; for block i a group holds the four rows' quants side by side (Q4_0: 4 x 16 bytes,
// one 512-bit load; Q8_0: 4 x 32 bytes) and the four rows' fp16 scales (8 bytes). Blocks come in runs of
// MATVEC_X4_RUN: a run's quants, then its scales (matvec_x4_quants / matvec_x4_scales), so a group - and a matrix -
// is one sequential stream, scales included, instead of four interleaved row streams (measured: the scales in a
// separate stream after the group's quants cost ~9% of the Q8_0 kernel's speed from memory on 1.1B-shaped matrices).
// Rows past the last whole group are not repacked: callers run them from the original layout. Each row's result is
// computed by the same operations whatever range it is computed in; Q8_0x4 gives the bits of the Q8_0 kernel (AVX-512
// and portable paths; the AVX2 path runs the portable x4 kernels), Q4_0x4 differs from Q4_0 by summation order.
#define MATVEC_X4_RUN 8
// Block i's quants (4 x qb bytes; qb = 16 for Q4_0, 32 for Q8_0) and scales (4 x fp16) in an x4 group of nb blocks.
static inline const uint8_t *matvec_x4_quants(const uint8_t *group, size_t qb, int64_t i) {
    return group + (size_t)(i / MATVEC_X4_RUN) * MATVEC_X4_RUN * (4 * qb + 8) + (size_t)(i % MATVEC_X4_RUN) * 4 * qb;
}
static inline const uint8_t *matvec_x4_scales(const uint8_t *group, int64_t nb, size_t qb, int64_t i) {
    const int64_t run = i / MATVEC_X4_RUN, in_run = nb - run * MATVEC_X4_RUN < MATVEC_X4_RUN ? nb - run * MATVEC_X4_RUN : MATVEC_X4_RUN;
    return group + (size_t)run * MATVEC_X4_RUN * (4 * qb + 8) + (size_t)in_run * 4 * qb + (size_t)(i % MATVEC_X4_RUN) * 8;
}
bool matvec_x4_supports(DType t);                          // Q4_0, Q8_0
size_t matvec_x4_bytes(DType t, int64_t rows, int64_t cols); // bytes for rows / 4 groups
void matvec_repack_x4(DType t, const void *w, size_t row_stride, int64_t rows, int64_t cols, void *out);
// Row r (< rows / 4 * 4) from the x4 copy, in the stored block format: the inverse of matvec_repack_x4 for one row
// (a tied embedding's lookups once the file's pages are given back).
void matvec_unpack_x4_row(DType t, const void *packed, int64_t cols, int64_t r, void *out);
// y[r] for r in [r0, r1), r0 and r1 multiples of 4 within the repacked groups; the act must be prepared for t.
void matvec_rows_x4(DType t, const void *packed, int64_t cols, int64_t r0, int64_t r1, const MatvecAct *a, float *y);

// The whole product, one thread. scratch may be NULL (then a temporary is allocated).
int matvec(DType t, const void *w, size_t row_stride, int64_t rows, int64_t cols, const float *x, float *y,
           MatvecAct *scratch, Err *e);

#endif
