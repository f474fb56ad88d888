// train_plan.h — the GPU trainer's memory layout as pure arithmetic: every device buffer `lossy train --device cuda`
// allocates, its size and its category, computed from the model config, the micro-batch (B, T), --recompute and the
// attention route (the GEMM route keeps each layer's (T, T) probabilities; flash keeps one logsumexp per row).
//
// Plain C with no CUDA dependency, so the CPU test suite checks it, and the one source of truth: train_gpu.cu
// carves its device arena from exactly this layout, so the plan printed before training is what gets allocated.
// gpu_plan_max_batch answers "what fits" for the refusal message instead of an out-of-memory crash.
//
// Parameter layout on the GPU: the CPU trainer's tensor order (train_model.h), but every group of tensors starting
// on a GPU_PARAM_ALIGN-element boundary (zero padding between groups) so GEMM operands are 256-byte aligned. Groups
// are single tensors, except that Wq|Wk|Wv and Wgate|Wup stay adjacent: each triple/pair is one fused GEMM weight.
#ifndef LOSSY_CUDA_TRAIN_PLAN_H
#define LOSSY_CUDA_TRAIN_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPU_PARAM_ALIGN 128   // elements
#define GPU_NORM_BLOCK 64     // rows per partial sum of a norm-weight gradient (fixed: deterministic reductions)
#define GPU_WORKSPACE_BYTES ((size_t)32 << 20) // cuBLASLt workspace
#define GPU_RESERVE_BYTES ((size_t)768 << 20)  // left free for the CUDA context, cuBLAS handles and fragmentation

// The attention route a layout is planned for (train_gpu.h: LOSSY_ATTN; flash where train_flash.h handles the head
// size).
typedef enum GpuAttn { GPU_ATTN_GEMM, GPU_ATTN_FLASH } GpuAttn;

typedef enum GpuBufKind { GPU_MEM_WEIGHTS, GPU_MEM_GRADS, GPU_MEM_OPTIM, GPU_MEM_ACTS, GPU_MEM_SCRATCH, GPU_MEM_KINDS } GpuBufKind;

// One device buffer: bytes at offset in the arena (256-byte aligned).
typedef struct GpuBuf {
    size_t offset, bytes;
} GpuBuf;

// Per-layer saved activations (one set per layer, or one shared set with recompute).
typedef struct GpuLayerBufs {
    GpuBuf rstd1, xn1;        // (BT) f32, (BT, C) bf16
    GpuBuf qh, kh, vh;        // (B, H, T, hd) bf16 each; q, k after rope; k, v repeated to H heads (GQA)
    GpuBuf att;               // gemm: (B*H, T, Tp) bf16 softmax probabilities, zero above the diagonal;
                              // flash: (B*H, T) f32 logsumexp of each row
    GpuBuf atty;              // (BT, H*hd) bf16 attention output before Wo
    GpuBuf x_mid;             // (BT, C) f32 residual after attention
    GpuBuf rstd2, xn2;        // (BT) f32, (BT, C) bf16
    GpuBuf gu;                // (BT, 2F) bf16: gate | up
    GpuBuf h;                 // (BT, F) bf16 silu(gate) * up
} GpuLayerBufs;

typedef struct GpuTrainLayout {
    // shape
    int64_t L, C, F, H, Hkv, hd, V, Vp, B, T, Tp, BT, qd, kvd, D3, head_rows, n_norm_blocks;
    bool recompute;
    GpuAttn attn;
    size_t n_tensors;         // as in the CPU trainer
    size_t *tensor_off;       // (n_tensors) element offset of each tensor in the GPU parameter buffers
    size_t n_padded;          // elements of each GPU parameter buffer
    // parameters
    GpuBuf params, params16, grads, adam_m, adam_v, decay_chunks; // f32, bf16, f32, f32, f32, u8 per GPU_PARAM_ALIGN
    // activations kept for the backward
    GpuBuf *resid;            // (L + 1) x (BT, C) f32: the residual stream entering each layer, and after the last
    GpuLayerBufs *layer;      // (n_sets) saved activations: L sets, or 1 shared set with recompute
    int64_t n_sets;
    GpuBuf rstd_f, xf;        // (BT) f32, (BT, C) bf16 final norm
    // scratch shared by all layers
    GpuBuf qkv;               // (BT, D3) bf16 fused q|k|v projection; in the backward d(q|k|v)
    GpuBuf oh;                // gemm: (B, H, T, hd) bf16 attention output per head, in the backward dO; flash: empty
    GpuBuf datt;              // gemm: (B*H, T, Tp) bf16 dP, then dS in place; flash: (B*H, T) f32 rowsum(dO * O)
    GpuBuf dqh, dkh, dvh;     // (B, H, T, hd) bf16
    GpuBuf d_res;             // (BT, C) f32 gradient of the residual stream
    GpuBuf d_res16;           // (BT, C) bf16 copy of it (GEMM operand)
    GpuBuf dxn;               // (BT, C) f32 gradient of a norm's output
    GpuBuf dh;                // (BT, F) bf16
    GpuBuf dgu;               // (BT, 2F) bf16
    GpuBuf logits;            // (head_rows, Vp) bf16 logits, then d(logits) in place
    GpuBuf row_loss;          // (BT) f32
    GpuBuf norm_part;         // (n_norm_blocks, C) f32 partial norm-weight gradients
    GpuBuf rope_cs;           // (T, hd/2) x 2 f32 cos, sin
    GpuBuf tokens, targets;   // (BT) i32
    GpuBuf emb_order, emb_start, emb_ids; // (BT), (BT + 1), (BT) i32: positions grouped by token (embedding backward)
    GpuBuf red;               // (GPU_RED_SLOTS) f64 reductions: gradient-norm partials, loss, norm
    GpuBuf workspace;         // cuBLASLt
    size_t arena;             // total bytes of the one device allocation
    size_t by_kind[GPU_MEM_KINDS];
} GpuTrainLayout;

#define GPU_RED_SLOTS 8192    // f64 slots: [0, 8190) gradient-norm block partials, 8190 loss, 8191 norm

// Fill L for config c at micro-batch (B, T) with attention route attn. Fails (with a reason) on shapes the GPU trainer does not handle:
// widths not multiples of 8 (16-byte GEMM rows), T beyond the context, sizes that overflow.
int gpu_layout_init(GpuTrainLayout *L, const ModelConfig *c, int64_t B, int64_t T, bool recompute, GpuAttn attn,
                    Err *e);
void gpu_layout_free(GpuTrainLayout *L);

// Bytes the run needs on the device: the arena plus the reserve for the CUDA context and libraries. 0 when the
// layout cannot be formed (bad shape or overflow).
size_t gpu_plan_bytes(const ModelConfig *c, int64_t B, int64_t T, bool recompute, GpuAttn attn);
// The largest B <= b_max whose plan fits in `free_bytes`; 0 when not even B = 1 fits.
int64_t gpu_plan_max_batch(const ModelConfig *c, int64_t T, bool recompute, GpuAttn attn, size_t free_bytes,
                           int64_t b_max);
// "GPU memory plan: weights X GB (fp32 + bf16), gradients X, optimizer X, activations X (B x T, <route> attention
// [, recompute]),
// scratch X, workspace+reserve X = total X GB of Y GB free" into out.
void gpu_plan_describe(const GpuTrainLayout *L, size_t free_bytes, char *out, size_t out_len);

#ifdef __cplusplus
}
#endif

#endif
