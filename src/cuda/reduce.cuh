// reduce.cuh — generic device helpers any lossy .cu file may use: warp and block reductions (float and double),
// and 16-byte vector element access. Shared on purpose between the inference kernels (infer_*.cu) and the training
// kernels (train_*.cu, helper cuda-train): add generic helpers here rather than copying them into a kernel file.
// Header-only (static inline __device__), so every .cu that includes it gets its own copy; no link-time coupling.
#ifndef LOSSY_CUDA_REDUCE_CUH
#define LOSSY_CUDA_REDUCE_CUH

#include <cuda_runtime.h>

#define LOSSY_WARP 32

// Sum / max over the 32 lanes of a warp; every lane gets the result.
static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum: every thread gets the result. scratch holds one value per warp (32 entries suffice for any block);
// the call synchronises the block twice, so all threads must call it.
static __device__ __forceinline__ double block_sum_d(double v, double *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum_d(v);
    __syncthreads(); // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = 0;
    for (int i = 0; i < nw; i++) t += scratch[i]; // same order in every thread: identical results
    return t;
}
static __device__ __forceinline__ float block_max(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = scratch[0];
    for (int i = 1; i < nw; i++) t = fmaxf(t, scratch[i]);
    return t;
}

#endif
