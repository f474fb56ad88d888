// activation.h — elementwise MLP activations, forward and backward: SiLU, SwiGLU, GELU (tanh and erf), ReLU.
//
// All functions work on flat arrays of n elements: the model passes (N, n_ff) buffers as N * n_ff values. The
// formulas are the reference ones:
//   silu(x)      = x * sigmoid(x)
//   swiglu(g, u) = silu(g) * u                                       (Llama, Mistral, Qwen2 MLPs)
//   gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (GPT-2; HF "gelu_new"/"gelu_pytorch_tanh")
//   gelu_erf(x)  = 0.5 x (1 + erf(x / sqrt(2)))                      (HF "gelu")
//   relu(x)      = max(x, 0)
// Forward outputs may alias their input. Backward functions accumulate (+=) into the input gradients (see norm.h).
#ifndef LOSSY_KERNELS_ACTIVATION_H
#define LOSSY_KERNELS_ACTIVATION_H

#include <stdint.h>

void silu_forward(float *out, const float *x, int64_t n);                       // (n) <- (n)
void silu_backward(float *dx, const float *dout, const float *x, int64_t n);   // dx (n) +=

// out may alias gate or up.
void swiglu_forward(float *out,        // (n)
                    const float *gate, // (n)
                    const float *up,   // (n)
                    int64_t n);
void swiglu_backward(float *dgate,      // (n) +=, or NULL
                     float *dup,        // (n) +=, or NULL
                     const float *dout, // (n)
                     const float *gate, // (n) the forward's inputs
                     const float *up,   // (n)
                     int64_t n);

void gelu_tanh_forward(float *out, const float *x, int64_t n);                     // (n) <- (n)
void gelu_tanh_backward(float *dx, const float *dout, const float *x, int64_t n);  // dx (n) +=
void gelu_erf_forward(float *out, const float *x, int64_t n);                      // (n) <- (n)
void gelu_erf_backward(float *dx, const float *dout, const float *x, int64_t n);   // dx (n) +=
void relu_forward(float *out, const float *x, int64_t n);                          // (n) <- (n)
void relu_backward(float *dx, const float *dout, const float *x, int64_t n);       // dx (n) +=

#endif
