// train_kernels.h — the fused CUDA kernels of the GPU trainer (train_kernels.cu), each a forward/backward pair where
// the op has one, launched on a stream. Included only by .cu files (train_gpu.cu); the matrix products are cuBLASLt
// calls made there.
//
// Conventions: sizes are int64_t and every index is computed in 64 bits (B*T*V exceeds 2^31 at GPT-2 scale); row-major
// tensors with the shapes in the comments; bf16 = __nv_bfloat16 storage with fp32 arithmetic. Reductions that feed
// parameters (norm weights, embedding rows, the gradient norm) sum in a fixed order, never with atomics, so a step is
// bit-for-bit reproducible — what resuming a run needs. Launchers return nothing; the caller checks
// cudaGetLastError (CU_TRY_LAUNCH) after each.
#ifndef LOSSY_CUDA_TRAIN_KERNELS_H
#define LOSSY_CUDA_TRAIN_KERNELS_H

#include "cuda/cuda_common.h"

typedef __nv_bfloat16 bf16;

// x (N, C) f32 = table (V, C) f32 rows of tokens (N).
void tk_embed_fwd(cudaStream_t s, float *x, const int32_t *tokens, const float *table, int64_t N, int64_t C);
// dtable (V, C) += sum of dx rows per token: ids[u] gets rows order[start[u] .. start[u+1]) in that order (n_uniq
// groups, built on the host by a stable counting sort of the tokens).
void tk_embed_bwd(cudaStream_t s, float *dtable, const float *dx, const int32_t *order, const int32_t *start,
                  const int32_t *ids, int64_t n_uniq, int64_t C);

// out (N, C) bf16 = x * rstd * w; rstd (N) f32.
void tk_rmsnorm_fwd(cudaStream_t s, bf16 *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                    float eps);
// d_res (N, C) f32 (+)= dx of the norm given dout (N, C) f32 (overwrite instead of add when `overwrite`), d_res16 =
// bf16 copy of the new d_res; dw (C) += the weight gradient (partials per GPU_NORM_BLOCK rows in part, summed in block
// order).
void tk_rmsnorm_bwd(cudaStream_t s, float *d_res, bf16 *d_res16, float *dw, float *part, const float *dout,
                    const float *x, const float *w, const float *rstd, int64_t N, int64_t C, bool overwrite);

// qkv (B*T, D3) bf16 -> q, k, v (B, H, T, hd) bf16, rope on q and k (interleaved pairs, first rd dims; cos and
// sin (>= T, rd/2) from the CPU's rope_cos_sin), k and v repeated from Hkv to H heads.
void tk_rope_split_fwd(cudaStream_t s, bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, const float *cosv, const float *sinv, int64_t B,
                       int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t rd);
// The adjoint: dq, dk, dv (B, H, T, hd) -> dqkv (B*T, D3) with the inverse rotation; k/v gradients of the heads
// sharing a kv head are summed in head order.
void tk_rope_merge_bwd(cudaStream_t s, bf16 *dqkv, const bf16 *dq, const bf16 *dk, const bf16 *dv,
                       const float *cosv, const float *sinv, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                       int64_t rd);
// (B, H, T, hd) <-> (B*T, H*hd): to_rows = true gathers heads into rows, false scatters rows into heads.
void tk_heads_permute(cudaStream_t s, bf16 *dst, const bf16 *src, int64_t B, int64_t T, int64_t H, int64_t hd,
                      bool to_rows);

// att (BH, T, Tp) bf16 scores (already scaled) -> causal softmax in place; entries above the diagonal and the row
// padding become 0.
void tk_softmax_causal_fwd(cudaStream_t s, bf16 *att, int64_t BH, int64_t T, int64_t Tp);
// datt (BH, T, Tp) bf16: dP in, dS = P * (dP - rowsum(P * dP)) * scale out (0 above the diagonal).
void tk_softmax_causal_bwd(cudaStream_t s, bf16 *datt, const bf16 *att, int64_t BH, int64_t T, int64_t Tp, float scale);

// h (N, F) = silu(gate) * up with gu (N, 2F) = gate | up.
void tk_swiglu_fwd(cudaStream_t s, bf16 *h, const bf16 *gu, int64_t N, int64_t F);
// dgu (N, 2F) from dh (N, F).
void tk_swiglu_bwd(cudaStream_t s, bf16 *dgu, const bf16 *dh, const bf16 *gu, int64_t N, int64_t F);

// Cross-entropy of logits (N, ld) bf16 (V valid columns) against targets (N) (-1: not counted, loss 0, gradient 0;
// any other value outside [0, V): NaN). loss (N) f32. With backward, logits are overwritten in place by
// (softmax - onehot) * scale.
void tk_xent(cudaStream_t s, bf16 *logits, float *loss, const int32_t *targets, int64_t N, int64_t V, int64_t ld,
             float scale, bool backward);
// red[slot] += weight * sum(loss[0..N)) in f64, one block in a fixed order.
void tk_loss_accum(cudaStream_t s, double *red, int slot, const float *loss, int64_t N, double weight);

// Sum of squares of g (n) in f64: block partials red[0..nb) then red[norm_slot] = sqrt(total). nb <= GPU_RED_SLOTS-2.
void tk_grad_norm(cudaStream_t s, double *red, int norm_slot, const float *g, int64_t n, int64_t nb);

typedef struct TkAdam {
    float lr, b1, b2, eps, inv_bc1, inv_bc2, wd;
    double clip;              // max global norm (<= 0: no clipping)
} TkAdam;
// AdamW over the flat buffers (n), the clip factor from the norm at *norm (f64, device); no update at all when the
// norm is not finite (the host reports the divergence). decay_chunk[i / GPU_PARAM_ALIGN] says whether weight decay
// applies. p16 = bf16(p) afterwards.
void tk_adamw(cudaStream_t s, float *p, bf16 *p16, const float *g, float *m, float *v, const uint8_t *decay_chunk,
              const double *norm, int64_t n, TkAdam a);
// dst (n) bf16 = src f32.
void tk_cast_bf16(cudaStream_t s, bf16 *dst, const float *src, int64_t n);
// dst (n) bf16 = uniform random values in [-1, 1) from seed (the peak-GEMM operands: not zeros, which run faster).
void tk_fill_random_bf16(cudaStream_t s, bf16 *dst, int64_t n, uint64_t seed);

#endif
