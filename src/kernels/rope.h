// rope.h — rotary position embeddings (RoPE): frequency table, forward rotation and its backward.
//
// A head vector of head_dim values has its first rope_dim values rotated in pairs; the rest pass through (partial
// rotary). Pair i (0 <= i < rope_dim/2) turns by angle pos * inv_freq[i]. Two pair layouts exist in the wild:
//   - interleaved (neox = false): pairs (2i, 2i+1). llama2.c checkpoints and GGUF "llama" files (llama.cpp's
//     converter permutes the Hugging Face q/k rows into this order; llama.cpp calls it the "normal" mode);
//   - neox (neox = true): pairs (i, i + rope_dim/2), Hugging Face's rotate_half. HF Llama/Mistral/Qwen2 weights as
//     stored in safetensors, and GGUF "qwen2" files.
// Rotation of a pair (a, b) by angle t: a' = a cos t - b sin t, b' = a sin t + b cos t.
//
// Use: rope_inv_freq once per model (double precision, scaling applied), rope_cos_sin once per forward for the
// batch's positions (shared by all layers), then rope_forward on q and k of each layer. rope_backward applies the
// transposed (= inverse) rotation to the gradients. Positions are given per token, so a KV-cache step at position
// p and a training row at t use the same code.
#ifndef LOSSY_KERNELS_ROPE_H
#define LOSSY_KERNELS_ROPE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum RopeFreqScaling {
    ROPE_FREQ_NONE = 0, // inv_freq[i] = theta^(-2i / rope_dim)
    ROPE_FREQ_LINEAR,   // inv_freq / factor (positions interpolated by the factor)
    ROPE_FREQ_LLAMA3,   // Llama 3.1 "llama3": see rope_inv_freq
} RopeFreqScaling;

typedef struct RopeFreqSpec {
    int64_t rope_dim;        // rotated dims per head (even, > 0)
    double theta;            // base frequency (rope_theta)
    RopeFreqScaling scaling;
    double factor;           // LINEAR and LLAMA3
    double low_freq_factor;  // LLAMA3
    double high_freq_factor; // LLAMA3 (> low_freq_factor)
    double orig_ctx;         // LLAMA3: original_max_position_embeddings
} RopeFreqSpec;

// inv_freq (rope_dim/2). With LLAMA3, following transformers' _compute_llama3_parameters: wavelen = 2 pi / f;
// wavelen < orig_ctx / high_freq_factor: f unchanged; wavelen > orig_ctx / low_freq_factor: f / factor; between:
// s = (orig_ctx / wavelen - low) / (high - low), f = (1 - s) f / factor + s f.
// (GGUF's rope_freqs.weight tensor, when present, divides this result element-wise; the caller does that.)
void rope_inv_freq(const RopeFreqSpec *spec, double *inv_freq);

// cos/sin of pos[t] * inv_freq[i], computed in double and rounded once.
void rope_cos_sin(float *cos_out,        // (T, rope_dim/2)
                  float *sin_out,        // (T, rope_dim/2)
                  const double *inv_freq,// (rope_dim/2)
                  const int64_t *pos,    // (T) position of each token
                  int64_t T, int64_t rope_dim);

// Rotate each token's heads. out may alias x (in place).
void rope_forward(float *out,           // (T, n_head, head_dim)
                  const float *x,       // (T, n_head, head_dim)
                  const float *cos_tab, // (T, rope_dim/2) from rope_cos_sin
                  const float *sin_tab, // (T, rope_dim/2)
                  int64_t T, int64_t n_head, int64_t head_dim, int64_t rope_dim, bool neox);

// The gradient through rope_forward: the inverse rotation of dout. Unlike the other backward functions this one
// OVERWRITES dx (rope has no parameters and its input gradient is usually computed in place); dx may alias dout.
void rope_backward(float *dx,             // (T, n_head, head_dim)
                   const float *dout,     // (T, n_head, head_dim)
                   const float *cos_tab,  // (T, rope_dim/2)
                   const float *sin_tab,  // (T, rope_dim/2)
                   int64_t T, int64_t n_head, int64_t head_dim, int64_t rope_dim, bool neox);

#endif
