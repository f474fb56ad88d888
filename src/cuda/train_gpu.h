// train_gpu.h — the GPU side of `lossy train/sft --device cuda`: the same Llama model as train_model.h, trained on
// one NVIDIA GPU in bf16 mixed precision. The trainer (src/train/trainer.c) keeps its loop, data, evaluation, logs
// and checkpoints; only the micro-batch forward+backward, the clipped AdamW update, the evaluation loss and the
// weight/optimizer transfers for checkpoints come here.
//
// Precision: fp32 master weights, fp32 gradients and fp32 AdamW moments on the GPU; a bf16 copy of the weights
// (rewritten by the fused AdamW kernel) feeds cuBLASLt GEMMs with bf16 inputs and fp32 accumulation; the residual
// stream and the gradients of parameters are fp32, other activations bf16; logits bf16 with a fused softmax
// cross-entropy. Attention (LOSSY_ATTN): `flash` (default) = our tiled kernels of train_flash.h (no T x T matrix) for
// the head sizes they handle; `gemm` (forced, or any other head size) = cuBLASLt strided-batched GEMMs for QK^T, PV
// and their gradients around fused causal softmax kernels. No cuDNN. Every reduction is in a fixed order, so a run is
// bit-for-bit reproducible on the same GPU, and resuming from a checkpoint continues exactly.
//
// Transfers use the CPU trainer's flat fp32 layout (TrainModel.params, AdamW.m/.v), so checkpoints stay in the CPU
// format: a GPU checkpoint resumes on the CPU and the reverse.
//
// Only compiled with nvcc (LOSSY_CUDA); C callers guard with #ifdef LOSSY_CUDA.
#ifndef LOSSY_CUDA_TRAIN_GPU_H
#define LOSSY_CUDA_TRAIN_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "train/train_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct GpuTrain GpuTrain;

// A trainer for m's config and parameter layout (m itself is not kept) at micro-batches up to (B, T). Prints nothing:
// plan_line (may be NULL) receives the memory plan. Fails with a clear message — the plan and the largest batch that
// fits — when the device lacks the memory, and when there is no usable GPU or cuBLAS.
int gpu_train_new(GpuTrain **out, const TrainModel *m, int64_t B, int64_t T, bool recompute, char *plan_line,
                  size_t plan_len, Err *e);
void gpu_train_free(GpuTrain *g);

// Weights and AdamW state from/to the CPU layout (n_params floats each; m/v NULL on upload: zeros; on download:
// skipped).
int gpu_train_upload(GpuTrain *g, const float *params, const float *adam_m, const float *adam_v, Err *e);
int gpu_train_download(GpuTrain *g, float *params, float *adam_m, float *adam_v, Err *e);
// The accumulated gradients in the CPU layout (tests).
int gpu_train_download_grads(GpuTrain *g, float *grads, Err *e);

// Start a step: gradients and the step's loss accumulator to 0.
int gpu_train_zero_grad(GpuTrain *g, Err *e);
// One micro-batch: forward, cross-entropy against targets (-1 = not counted), gradients of grad_scale * (sum of the
// counted tokens' losses) accumulated; the step loss accumulates loss_weight * (sum of the losses). Asynchronous:
// errors of the GPU work show up at the next synchronising call.
int gpu_train_micro_step(GpuTrain *g, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                         float grad_scale, double loss_weight, Err *e);

typedef struct GpuAdamParams {
    double lr, beta1, beta2, eps, weight_decay, grad_clip; // grad_clip <= 0: none
    int64_t t;                                             // update number (1 for the first): bias correction
} GpuAdamParams;
// Global gradient norm, (all-reduce across GPUs: none yet), clipped AdamW. Synchronises; *loss = the accumulated step
// loss, *gnorm = the norm before clipping. When either is not finite the weights are left unchanged.
int gpu_train_update(GpuTrain *g, const GpuAdamParams *a, double *loss, double *gnorm, Err *e);
// Forward only: row_loss (B*T) per position (0 where the target is -1). Synchronises.
int gpu_train_eval(GpuTrain *g, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T, float *row_loss,
                   Err *e);

// The attention route this trainer runs: "flash" (unless LOSSY_ATTN=gemm, for a head size train_flash.h handles) or
// "gemm".
const char *gpu_train_attention(const GpuTrain *g);

// Profiling, on when LOSSY_CUDA_PROFILE=1 is set as the trainer is created (benchmarks; costs a CUDA event per launch
// group): GPU time per kind of operation — each GEMM fwd/dX/dW, attention, norms, rope, swiglu, cross-entropy,
// gradient norm, AdamW, transfers, and the idle time between steps — over the optimizer steps since the last reset.
bool gpu_train_profiling(const GpuTrain *g);
void gpu_train_profile_reset(GpuTrain *g);
// The table as lines "  <ms per step>  <% of the step>  <launch groups per step>  <kind>", slowest first, then a total
// line; "" when not profiling or no step was profiled.
void gpu_train_profile_report(const GpuTrain *g, char *out, size_t len);

// Dense bf16 GEMM throughput (TFLOP/s) of this GPU with cuBLASLt (8192^3, fp32 accumulation, random operands), best
// of ~seconds.
int gpu_measure_bf16_tflops(double seconds, double *tflops, Err *e);

#ifdef __cplusplus
}
#endif

#endif
