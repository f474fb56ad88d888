// matmul_mt.h — the linear layer's three products (matmul.h) split over the persistent thread pool.
//
// Each product is cut into disjoint blocks of its OUTPUT (rows of C, or columns when C has few rows) and each thread
// calls matmul_gemm on its block with the full reduction length. Every output element is therefore computed by the
// same sequence of floating-point operations whatever the number of threads or the cut: the results are bit-identical
// to the single-threaded matmul_forward/matmul_backward GEMM path for any pool size. The trainer relies on this for
// runs that reproduce exactly. Small products run on the calling thread (waking workers would cost more).
// Same shapes and accumulate conventions as matmul.h; pool may be NULL (single-threaded).
#ifndef LOSSY_KERNELS_MATMUL_MT_H
#define LOSSY_KERNELS_MATMUL_MT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/threadpool.h"

// y = x W^T (+ b). Unlike matmul_forward, few rows still go through the GEMM (identical rounding for any N).
void matmul_forward_mt(ThreadPool *pool,
                       float *y,       // (N, OUT)
                       const float *x, // (N, IN)
                       const float *w, // (OUT, IN)
                       const float *b, // (OUT) or NULL
                       int64_t N, int64_t IN, int64_t OUT);

// dx += dy W; dw += dy^T x; db += column sums of dy. Any gradient may be NULL.
void matmul_backward_mt(ThreadPool *pool,
                        float *dx,       // (N, IN) +=, or NULL
                        float *dw,       // (OUT, IN) +=, or NULL
                        float *db,       // (OUT) +=, or NULL
                        const float *dy, // (N, OUT)
                        const float *x,  // (N, IN)
                        const float *w,  // (OUT, IN)
                        int64_t N, int64_t IN, int64_t OUT);

// The two products of the backward separately. dx = dy W, or dx += dy W with accumulate (the first contribution to
// a gradient can overwrite instead of needing a zeroed buffer); dw += dy^T x.
void matmul_backward_dx_mt(ThreadPool *pool, float *dx, const float *dy, const float *w, int64_t N, int64_t IN,
                           int64_t OUT, bool accumulate);
void matmul_backward_dw_mt(ThreadPool *pool, float *dw, const float *dy, const float *x, int64_t N, int64_t IN,
                           int64_t OUT);

// C = op(A) op(B) (+ C), as matmul_gemm, with C's rows (or columns) split over the pool.
void matmul_gemm_mt(ThreadPool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                    const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc, bool accumulate);

#endif
