// norm.h — RMSNorm and LayerNorm, forward and backward, row-wise over (N, C) activations.
//
// The model calls these in order for inference and training alike (one implementation of each op). The forward
// stores per-row statistics (rstd, and mean for LayerNorm) when given a buffer for them; the backward reads them
// back instead of recomputing. Row statistics are accumulated in double, so the result is the correctly rounded
// normalisation for any width, which is what reference implementations computing in f32 approximate.
//
// Conventions shared by every op in src/kernels/:
//   - forward functions overwrite their outputs; out may alias x only where a comment says so;
//   - backward functions ACCUMULATE (+=) into every gradient buffer (dx, dweight, dbias), so residual branches and
//     gradient accumulation over micro-batches need no extra pass; the caller zeroes gradients when it starts;
//   - any gradient pointer may be NULL to skip that gradient.
#ifndef LOSSY_KERNELS_NORM_H
#define LOSSY_KERNELS_NORM_H

#include <stdint.h>

// out = x / sqrt(mean(x^2) + eps) * weight, per row. rstd may be NULL (inference). out may alias x.
void rmsnorm_forward(float *out,          // (N, C)
                     float *rstd,         // (N) or NULL: 1 / sqrt(mean(x^2) + eps)
                     const float *x,      // (N, C)
                     const float *weight, // (C)
                     int64_t N, int64_t C, float eps);

void rmsnorm_backward(float *dx,          // (N, C) +=
                      float *dweight,     // (C) +=, or NULL
                      const float *dout,  // (N, C)
                      const float *x,     // (N, C) the forward's input
                      const float *weight,// (C)
                      const float *rstd,  // (N) from rmsnorm_forward
                      int64_t N, int64_t C);

// out = (x - mean) / sqrt(var + eps) * weight + bias, per row (biased variance, as torch.nn.LayerNorm).
// mean and rstd may be NULL (inference); bias may be NULL (no bias). out may alias x.
void layernorm_forward(float *out,          // (N, C)
                       float *mean,         // (N) or NULL
                       float *rstd,         // (N) or NULL
                       const float *x,      // (N, C)
                       const float *weight, // (C)
                       const float *bias,   // (C) or NULL
                       int64_t N, int64_t C, float eps);

void layernorm_backward(float *dx,           // (N, C) +=
                        float *dweight,      // (C) +=, or NULL
                        float *dbias,        // (C) +=, or NULL
                        const float *dout,   // (N, C)
                        const float *x,      // (N, C) the forward's input
                        const float *weight, // (C)
                        const float *mean,   // (N) from layernorm_forward
                        const float *rstd,   // (N) from layernorm_forward
                        int64_t N, int64_t C);

#endif
