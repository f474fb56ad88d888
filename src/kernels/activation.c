// activation.c — SiLU, SwiGLU, GELU (tanh and erf) and ReLU forward/backward (formulas in activation.h).
//
// exp and tanh come from fastmath.h (branch-free, vectorised by the compiler): with libm's scalar calls these
// O(N * n_ff) passes would cost a noticeable share of a training step. erff stays libm (exact GELU is rare).
#include "kernels/activation.h"

#include <math.h>

#include "kernels/fastmath.h"

#define GELU_K0 0.7978845608028654f // sqrt(2 / pi)
#define GELU_K1 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

static inline float sigmoidf(float x) { return fm_sigmoidf(x); }

void silu_forward(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * sigmoidf(x[i]);
}

// d/dx x s(x) = s (1 + x (1 - s)).
void silu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g * sigmoidf(g) * up[i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], s = sigmoidf(g);
        if (dgate) dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup) dup[i] += dout[i] * g * s;
    }
}

void gelu_tanh_forward(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + fm_tanhf(GELU_K0 * (v + GELU_K1 * v * v * v)));
    }
}

// With u = k0 (x + k1 x^3): d/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) k0 (1 + 3 k1 x^2).
void gelu_tanh_backward(float *dx, const float *dout, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float th = fm_tanhf(GELU_K0 * (v + GELU_K1 * v * v * v));
        float d = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * v * v);
        dx[i] += dout[i] * d;
    }
}

void gelu_erf_forward(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * INV_SQRT2));
}

// d/dx x Phi(x) = Phi(x) + x phi(x).
void gelu_erf_backward(float *dx, const float *dout, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float d = 0.5f * (1.0f + erff(v * INV_SQRT2)) + v * INV_SQRT_2PI * fm_expf(-0.5f * v * v);
        dx[i] += dout[i] * d;
    }
}

void relu_forward(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] > 0.0f) dx[i] += dout[i];
}
