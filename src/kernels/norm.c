// norm.c — RMSNorm and LayerNorm forward/backward (see norm.h for shapes and the accumulate convention).
//
// Per-row sums run in double (in fixed SIMD-friendly lanes): they cost C operations per row next to the C*C-sized
// matmuls around them, and keep the statistics exact enough that f32 and exact references agree at any width.
// Elementwise products stay in float in the order Hugging Face uses ((x * rstd) * weight), so inference matches
// the reference implementation as closely as the arithmetic allows.
#include "kernels/norm.h"

#include <math.h>

#include "kernels/fastmath.h"

// Row sums in 8 independent double lanes (vectorised by the compiler, same result on every ISA).
#define LANES 8
static double sum_sq(const float *x, int64_t n, double center) { // sum (x - center)^2
    double s[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double d = (double)x[i + j] - center;
            s[j] += d * d;
        }
    for (int j = 0; i < n; i++, j++) {
        double d = (double)x[i] - center;
        s[j] += d * d;
    }
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

static double sum_prod3(const float *a, const float *b, const float *c, int64_t n) { // sum a b c
    double s[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) s[j] += (double)a[i + j] * b[i + j] * c[i + j];
    for (int j = 0; i < n; i++, j++) s[j] += (double)a[i] * b[i] * c[i];
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight, int64_t N, int64_t C, float eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C; // (C)
        float *yr = out + n * C;     // (C)
        float r = (float)(1.0 / sqrt(sum_sq(xr, C, 0.0) / (double)C + (double)eps));
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
            double k = r * r * r * sum_prod3(gr, weight, xr, C) / (double)C;
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
        double m = fm_sum_f32(xr, C) / (double)C;
        // Two-pass variance: no cancellation when |mean| >> std.
        double r = 1.0 / sqrt(sum_sq(xr, C, m) / (double)C + (double)eps);
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
            double sd[LANES] = {0}, sdh[LANES] = {0};
            int64_t i = 0;
            for (; i + LANES <= C; i += LANES)
                for (int j = 0; j < LANES; j++) {
                    double d = (double)gr[i + j] * weight[i + j];
                    sd[j] += d;
                    sdh[j] += d * ((xr[i + j] - m) * r);
                }
            for (int j = 0; i < C; i++, j++) {
                double d = (double)gr[i] * weight[i];
                sd[j] += d;
                sdh[j] += d * ((xr[i] - m) * r);
            }
            double sum_d = 0.0, sum_dh = 0.0;
            for (int j = 0; j < LANES; j++) sum_d += sd[j], sum_dh += sdh[j];
            double mean_d = sum_d / (double)C, mean_dh = sum_dh / (double)C;
            float *dxr = dx + n * C; // (C)
            for (i = 0; i < C; i++) {
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
