// softmax.c — stable softmax and fused softmax + cross-entropy forward/backward (see softmax.h).
//
// Each row subtracts its maximum before exponentiating (no overflow for any finite logits) and sums the exponentials
// in double: a 150k-token vocabulary summed in float would lose several digits of the normaliser. exp is fastmath's
// vectorisable fm_expf (within 2 ulp), so every pass over a row is SIMD code.
#include "kernels/softmax.h"

#include <math.h>
#include <stdlib.h>

#include "base/util.h"
#include "kernels/fastmath.h"

void softmax_forward(float *x, int64_t N, int64_t V) {
    for (int64_t n = 0; n < N; n++) {
        float *xr = x + n * V; // (V)
        float m = fm_max_f32(xr, V);
        for (int64_t j = 0; j < V; j++) xr[j] = fm_expf(xr[j] - m);
        float inv = (float)(1.0 / fm_sum_f32(xr, V));
        for (int64_t j = 0; j < V; j++) xr[j] *= inv;
    }
}

// log sum_j exp(x_j) = max + log(sum exp(x_j - max)); tmp (V) holds the exponentials so both loops vectorise.
static double row_lse(const float *x, float *tmp, int64_t V) {
    float m = fm_max_f32(x, V);
    for (int64_t j = 0; j < V; j++) tmp[j] = fm_expf(x[j] - m);
    return (double)m + log(fm_sum_f32(tmp, V));
}

double softmax_xent_forward(const float *logits, const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                            float *losses, float *lse, int64_t *n_counted) {
    double total = 0.0;
    int64_t count = 0;
    float *tmp = xmalloc_array((size_t)V, sizeof(float)); // (V)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = logits + n * V; // (V)
        int32_t tgt = targets[n];
        if (tgt == ignore_index) {
            if (losses) losses[n] = 0.0f;
            if (lse) lse[n] = 0.0f;
            continue;
        }
        double l = row_lse(xr, tmp, V);
        double loss = (tgt >= 0 && tgt < V) ? l - (double)xr[tgt] : NAN;
        if (losses) losses[n] = (float)loss;
        if (lse) lse[n] = (float)l;
        total += loss;
        count++;
    }
    free(tmp);
    if (n_counted) *n_counted = count;
    return count > 0 ? total / (double)count : 0.0;
}

void softmax_xent_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets, int64_t N,
                           int64_t V, int32_t ignore_index, float scale) {
    for (int64_t n = 0; n < N; n++) {
        const float *xr = logits + n * V; // (V)
        float *dr = dlogits + n * V;      // (V)
        int32_t tgt = targets[n];
        if (tgt == ignore_index) {
            for (int64_t j = 0; j < V; j++) dr[j] = 0.0f;
            continue;
        }
        float l = lse[n];
        for (int64_t j = 0; j < V; j++) dr[j] = fm_expf(xr[j] - l) * scale;
        if (tgt >= 0 && tgt < V) dr[tgt] -= scale;
        else
            for (int64_t j = 0; j < V; j++) dr[j] = NAN;
    }
}
