// cuda_common.h — what every lossy .cu file shares: checked CUDA calls that turn failures into an Err with the
// file:line of the call (never exit, never print), and the bf16/f16 conversions kernels use. Included only by .cu
// files; the C side sees src/cuda/cuda.h alone.
#ifndef LOSSY_CUDA_COMMON_H
#define LOSSY_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stddef.h>

extern "C" {
#include "base/err.h"
}

// `CU_TRY(e, call)`: on failure fill e with "<call>: <CUDA message>" at this file:line and return -1 from the caller.
#define CU_TRY(e, call)                                                                                            \
    do {                                                                                                           \
        cudaError_t cu_try_rc_ = (call);                                                                           \
        if (cu_try_rc_ != cudaSuccess) {                                                                           \
            cudaGetLastError();                                                                                    \
            return err_set_at((e), __FILE__, __LINE__, "CUDA: %s: %s", #call, cudaGetErrorString(cu_try_rc_));    \
        }                                                                                                          \
    } while (0)

// After a kernel launch: a bad launch configuration shows up here, an asynchronous fault at the next sync.
#define CU_TRY_LAUNCH(e) CU_TRY(e, cudaGetLastError())

#define LOSSY_STR_(x) #x
#define LOSSY_STR(x) LOSSY_STR_(x)

// Integer ceil division for grid sizes (sizes are int64_t on the host; grids are checked to fit before launch).
static inline int64_t cu_div_up(int64_t a, int64_t b) { return (a + b - 1) / b; }

#endif
