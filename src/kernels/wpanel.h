// wpanel.h — F32, F16 and BF16 weights repacked once into 32-column panels: one product for decoding and prompt rows
// alike.
//
// matvec.h (one activation) and wgemm.h (a block of tokens) read a weight matrix W (N rows of K elements) as stored,
// and round differently; the f32 GEMM behind wgemm also repacks W into column panels on every call, which costs as
// much as the multiplication itself for the short prompts of a chat or a server's requests. Here W is repacked at
// load into its GEMM layout (model.c keeps the panels instead of reading the mmapped rows) and every product — one
// token, several decoding sequences, a prompt chunk — is the same register-tiled loop: up to WPANEL_MR activation
// rows times one 32-column panel, each output one chain of fused multiply-adds over k in order. So
//   - an output never depends on which other rows or columns share the call: a decoding step of S sequences gives
//     each the bits it would get alone, and a token gets the same projections in a prompt chunk as when decoded;
//   - the panels are read as one sequential stream per thread (no per-row streams for the prefetcher to track, no
//     loop exit per row): decoding F16 1.1B-shaped matrices streams at 98% of the machine's read bandwidth where
//     the same weights as rows reach 86% (see tile_1xs in wpanel.c);
//   - S decoding sequences cost one read of the panels plus S rank-1 updates per k: a GEMM, not S matrix-vector
//     products, which is what makes a server's batched steps cheap.
// Elements keep their stored type (F16/BF16 panels are half the size of F32 ones) and are widened to f32 in
// registers, exactly. The AVX-512 tile is the fast path (model.c repacks only where it runs); the portable path
// computes the same sums in the same order (without FMA contraction the last bits can differ from the AVX-512 path).
#ifndef LOSSY_WPANEL_H
#define LOSSY_WPANEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"

#define WPANEL_NR 32 // columns (weight rows) per panel
#define WPANEL_MR 14 // activation rows per register tile

// Whether weights of type t can be kept in panels (F32, F16, BF16).
bool wpanel_supports(DType t);
// Bytes of W (n rows of k elements of type t) in panels: ceil(n / 32) panels of (k, 32) elements, zero-padded past
// row n. Returns 0 when the size overflows size_t or t is not supported.
size_t wpanel_bytes(DType t, int64_t n, int64_t k);
// dst (wpanel_bytes) = W (n, k) of type t, row-major with rows row_bytes apart, in panels: dst[q][kk][j] =
// W[32q+j][kk], each element's bits as stored.
void wpanel_pack(DType t, void *dst, const void *w, size_t row_bytes, int64_t n, int64_t k);

// Row r of W from its panels (n, k, type t), as stored: k elements written to out (the inverse of wpanel_pack, for a
// tied embedding's lookups once the file's pages are given back).
void wpanel_unpack_row(DType t, const void *panels, int64_t k, int64_t r, void *out);

// Activations are packed once per product (or group of products sharing the input) for every thread and piece:
// groups of WPANEL_MR rows (the last one shorter), each (k, rows) k-major, so the tile broadcasts one float per row
// and k from one stream. wpanel_act_floats(m, k) floats hold m rows; groups [g0, g1) can be packed by different threads.
size_t wpanel_act_floats(int64_t m, int64_t k);
int64_t wpanel_act_groups(int64_t m);
void wpanel_act_pack(float *act, const float *const *x, int64_t m, int64_t k, int64_t g0, int64_t g1);

// y[s][r] = sum_k x[s][kk] W[r][kk] for r in [r0, r1) and s < m, from W's panels (n, k, type t) and the activations
// packed by wpanel_act_pack. r0 must be a multiple of WPANEL_NR; r1 <= n. y[s] are per-row pointers (rows of
// different sequences need not be contiguous), indexed by absolute row.
void wpanel_rows(DType t, const void *panels, int64_t n, int64_t k, int64_t r0, int64_t r1, int64_t m, const float *act,
                 float *const *y);

// Whether the AVX-512 tile runs on this CPU (where repacking pays).
bool wpanel_fast(void);
// Tests: run the portable tile even where AVX-512 is present (its results are the same bits).
void wpanel_force_portable(bool on);

#endif
