// model_device.h — running the one Model on another device than the CPU (today: an NVIDIA GPU through CUDA).
//
// model_use_device(m, "cuda") uploads the bound weights (src/cuda/infer.h); from then on model_state_init gives each
// state a GPU KV cache and model_forward / model_forward_all / model_forward_batch run on the GPU (model.c hands over
// at their top), so every command and the server use it unchanged. A state's pos and logits stay on the host and
// mean the same as on the CPU. Without CUDA support in the build, or without a usable GPU, model_use_device fails
// with a message saying which.
#ifndef LOSSY_MODEL_DEVICE_H
#define LOSSY_MODEL_DEVICE_H

#include "model/model.h"

// device: "cpu" (nothing to do) or "cuda". Call after model_load, before any model_state_init.
int model_use_device(Model *m, const char *device, Err *e);
// "cpu", or "cuda (<GPU name>)" — for reports.
const char *model_device_name(const Model *m);

// For `lossy bench --device cuda`: the device's copy bandwidth (GB/s, read + write, over a 1 GiB copy) and its
// cuBLASLt bf16 GEMM rate (GFLOP/s at 8192^3); and device-side timing of the forwards between start and stop (CUDA
// events on the model's stream). Errors where the model is not on a GPU.
int model_device_limits(const Model *m, double *copy_gb_s, double *gemm_gflop_s, Err *e);
int model_device_timer_start(const Model *m, Err *e);
int model_device_timer_stop(const Model *m, double *seconds, Err *e);
// LOSSY_CUDA_PROFILE=1: time per kind of kernel, per token, for prompt processing and decoding since the last reset,
// as text (malloc'd; NULL when the model is not on a GPU or profiling is off).
void model_device_profile_reset(const Model *m);
char *model_device_profile_report(const Model *m);

// The hand-over points model.c calls when m->gpu is set (not for other callers).
int model_device_state_init(ModelState *s, Err *e);
void model_device_state_free(ModelState *s);
void model_device_free(Model *m);
int model_device_forward(ModelState *s, const int32_t *tokens, int64_t n, float *logits_all, Err *e);
int model_device_forward_batch(ModelState *const *states, const int32_t *tokens, int64_t n, Err *e);

#endif
