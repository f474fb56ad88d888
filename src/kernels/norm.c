// norm.c — RMSNorm and LayerNorm forward/backward (see norm.h for shapes and the accumulate convention).
//
// Per-row sums run in double: they cost C operations per row next to the C*C-sized matmuls around them, and they
// keep the statistics exact enough that f32 and "true" references agree to the last bit or two at any width.
// Elementwise products stay in float in the order Hugging Face uses ((x * rstd) * weight), so inference matches
// the reference implementation as closely as the arithmetic allows.
#include "kernels/norm.h"

#include <math.h>

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight, int64_t N, int64_t C, float eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C; // (C)
        float *yr = out + n * C;     // (C)
        double ss = 0.0;
        for (int64_t i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        if (rstd) rstd[n] = r;
        for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] * r) * weight[i];
    }
}

// y_j = w_j x_j r with r = (mean(x^2) + eps)^(-1/2), so dr/dx_j = -r^3 x_j / C and
// dx_j = r w_j g_j - (r^3 / C) x_j sum_i g_i w_i x_i.
void rmsnorm_backward(float *dx, float *dweight, const float *dout, const float *x, const float *weight,
                      const float *rstd, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;    // (C)
        const float *gr = dout + n * C; // (C)
        double r = rstd[n];
        if (dx) {
            double dot = 0.0;
            for (int64_t i = 0; i < C; i++) dot += (double)gr[i] * weight[i] * xr[i];
            double k = r * r * r * dot / (double)C;
            float *dxr = dx + n * C; // (C)
            for (int64_t i = 0; i < C; i++) dxr[i] += (float)(r * weight[i] * gr[i] - k * xr[i]);
        }
        if (dweight)
            for (int64_t i = 0; i < C; i++) dweight[i] += (float)((double)gr[i] * xr[i] * r);
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight, const float *bias,
                       int64_t N, int64_t C, float eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C; // (C)
        float *yr = out + n * C;     // (C)
        double s = 0.0;
        for (int64_t i = 0; i < C; i++) s += xr[i];
        double m = s / (double)C;
        // Two-pass variance: no cancellation when |mean| >> std.
        double v = 0.0;
        for (int64_t i = 0; i < C; i++) {
            double d = xr[i] - m;
            v += d * d;
        }
        double r = 1.0 / sqrt(v / (double)C + (double)eps);
        if (mean) mean[n] = (float)m;
        if (rstd) rstd[n] = (float)r;
        float mf = (float)m, rf = (float)r;
        for (int64_t i = 0; i < C; i++) {
            float h = (xr[i] - mf) * rf;
            yr[i] = bias ? h * weight[i] + bias[i] : h * weight[i];
        }
    }
}

// xhat = (x - mean) r, y = w xhat + b. With dxhat = g w:
// dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
void layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x, const float *weight,
                        const float *mean, const float *rstd, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;    // (C)
        const float *gr = dout + n * C; // (C)
        double m = mean[n], r = rstd[n];
        if (dx) {
            double sum_d = 0.0, sum_dh = 0.0;
            for (int64_t i = 0; i < C; i++) {
                double d = (double)gr[i] * weight[i];
                sum_d += d;
                sum_dh += d * ((xr[i] - m) * r);
            }
            double mean_d = sum_d / (double)C, mean_dh = sum_dh / (double)C;
            float *dxr = dx + n * C; // (C)
            for (int64_t i = 0; i < C; i++) {
                double h = (xr[i] - m) * r;
                dxr[i] += (float)(r * ((double)gr[i] * weight[i] - mean_d - h * mean_dh));
            }
        }
        for (int64_t i = 0; i < C; i++) {
            if (dweight) dweight[i] += (float)((double)gr[i] * ((xr[i] - m) * r));
            if (dbias) dbias[i] += gr[i];
        }
    }
}
