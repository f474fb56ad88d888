// matmul.h — f32 matrix multiplication for training (and f32 prompt processing): the linear layer forward/backward
// and the general blocked GEMM underneath.
//
// A linear layer stores W as (OUT, IN) rows, as GGUF and PyTorch do: y = x W^T + b. Its backward needs two more
// products, dx = dy W and dW = dy^T x; all three are the same GEMM routine with different strides, so one tuned
// kernel serves forward and backward. The GEMM packs blocks of both operands into the layout its micro-kernel
// streams (the transposes cost nothing beyond the packing), and the micro-kernel keeps a register tile of C:
//   AVX-512: 14 x 32, AVX2+FMA: 6 x 16, portable C: 4 x 8 — chosen at run time from src/base/cpu.h.
// No BLAS. Single-threaded for now; the ic-loop over row blocks of C in matmul.c is the place to split threads.
#ifndef LOSSY_KERNELS_MATMUL_H
#define LOSSY_KERNELS_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

// y = x W^T + b. b may be NULL. y must not alias x or w.
void matmul_forward(float *y,       // (N, OUT)
                    const float *x, // (N, IN)
                    const float *w, // (OUT, IN)
                    const float *b, // (OUT) or NULL
                    int64_t N, int64_t IN, int64_t OUT);

// dx += dy W; dw += dy^T x; db += column sums of dy. Any gradient may be NULL (frozen weights, first layer).
void matmul_backward(float *dx,       // (N, IN) +=, or NULL
                     float *dw,       // (OUT, IN) +=, or NULL
                     float *db,       // (OUT) +=, or NULL
                     const float *dy, // (N, OUT)
                     const float *x,  // (N, IN)
                     const float *w,  // (OUT, IN)
                     int64_t N, int64_t IN, int64_t OUT);

// The general product: C = op(A) op(B) (+ C when accumulate), with op(A) (M, K) element (i, k) at
// A[i * rsa + k * csa] and op(B) (K, N) element (k, j) at B[k * rsb + j * csb]; C (M, N) with row stride ldc.
// Transposes are expressed by swapping the strides. C must not overlap A or B.
// Rounding contract (matmul_mt.c relies on it): each C element is the same sequence of float operations whatever
// M, N, the element's position in a tile or a sub-block of C being computed on its own — K is cut at fixed
// multiples of the kernel's KC, each piece is one chain of multiply-adds in k order, and pieces are added to C in
// order. Only the ISA (fixed per process unless forced) changes the result.
void matmul_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa, const float *B,
                 int64_t rsb, int64_t csb, float *C, int64_t ldc, bool accumulate);

// Which micro-kernel runs. AUTO picks the best the CPU supports; tests and benchmarks may force a lower one.
typedef enum MatmulIsa { MATMUL_ISA_AUTO = 0, MATMUL_ISA_SCALAR, MATMUL_ISA_AVX2, MATMUL_ISA_AVX512 } MatmulIsa;
// Force an ISA for later calls (process-wide; set it before any thread runs matmuls). Returns -1 and changes
// nothing when this CPU (or this build) cannot run it.
int matmul_force_isa(MatmulIsa isa);
MatmulIsa matmul_active_isa(void); // the one calls use now (never AUTO)
const char *matmul_isa_name(MatmulIsa isa);

#endif
