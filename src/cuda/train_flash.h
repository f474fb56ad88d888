// train_flash.h — flash-style causal attention for the GPU trainer (train_flash.cu): forward and backward without
// the (T, T) probability matrix. Tiles of 64 queries x 64 keys go through bf16 tensor cores (mma.sync m16n8k16, fp32
// accumulation) with an online softmax; the forward saves one logsumexp per query row, from which the backward
// recomputes the probabilities tile by tile.
//
// The backward is deterministic: one kernel owns a key tile and sums dK, dV over the query tiles in order, a second
// owns a query tile and sums dQ over the key tiles in order (no atomics), so a step stays bit-for-bit reproducible.
// That costs recomputing QK^T and dO V^T once more than the atomic formulation.
//
// Head sizes 64 and 128 (flash_attn_supported); other sizes take the trainer's GEMM route. Every tensor is a strided
// view (batch, head, position) with the head dimension contiguous, so the output and its gradient can be read and
// written in the (B*T, H*hd) row layout the Wo projection uses, without a permute.
#ifndef LOSSY_CUDA_TRAIN_FLASH_H
#define LOSSY_CUDA_TRAIN_FLASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

// Head sizes the flash kernels handle.
bool flash_attn_supported(int64_t hd);

// Test entry (tests/unit/test_gpu_flash.c): the forward, and with dout the backward, on the GPU for host inputs.
// q, k, v, dq, dk, dv are (B, H, T, hd); out and dout are in the trainer's row layout (B, T, H, hd); lse (B, H, T) is
// the natural-log logsumexp of each row of scale * QK^T over its causal window. Inputs are rounded to bf16 on upload,
// outputs are the bf16 results widened to f32 (lse stays f32). dout/dq/dk/dv NULL: forward only.
int flash_attn_host_run(const float *q, const float *k, const float *v, const float *dout, int64_t B, int64_t H,
                        int64_t T, int64_t hd, float *out, float *lse, float *dq, float *dk, float *dv, Err *e);

#ifdef __cplusplus
}

#include "cuda/cuda_common.h"

// A (B, H, T, hd) tensor in device memory: element (b, h, t, d) at p[b * sb + h * sh + t * st + d]. Strides are in
// elements; p and every stride times 2 bytes must be 16-byte aligned (hd and the row width multiples of 8).
struct FlashView {
    __nv_bfloat16 *p;
    int64_t sb, sh, st;
};

// o = softmax(scale * q k^T, causal) v; lse (B*H, T) f32 natural-log row logsumexp. q, k, v have H heads each (GQA
// callers repeat k/v heads first).
void flash_attn_fwd(cudaStream_t s, FlashView o, float *lse, FlashView q, FlashView k, FlashView v, int64_t B,
                    int64_t H, int64_t T, int64_t hd, float scale);
// The gradients dq, dk, dv (overwritten) from dout, the forward's o and lse. dsum (B*H, T) f32 is scratch (rowsum of
// dout * o).
void flash_attn_bwd(cudaStream_t s, FlashView dq, FlashView dk, FlashView dv, float *dsum, FlashView q, FlashView k,
                    FlashView v, FlashView o, FlashView dout, const float *lse, int64_t B, int64_t H, int64_t T,
                    int64_t hd, float scale);
#endif

#endif
