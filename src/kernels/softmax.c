// softmax.c — stable softmax and fused softmax + cross-entropy forward/backward (see softmax.h).
//
// Each row subtracts its maximum before exponentiating (no overflow for any finite logits) and sums the exponentials
// in double: a 150k-token vocabulary summed in float would lose several digits of the normaliser.
#include "kernels/softmax.h"

#include <math.h>

static float row_max(const float *x, int64_t V) {
    float m = -INFINITY;
    for (int64_t j = 0; j < V; j++)
        if (x[j] > m) m = x[j];
    return m;
}

void softmax_forward(float *x, int64_t N, int64_t V) {
    for (int64_t n = 0; n < N; n++) {
        float *xr = x + n * V; // (V)
        float m = row_max(xr, V);
        double sum = 0.0;
        for (int64_t j = 0; j < V; j++) {
            float ev = expf(xr[j] - m);
            xr[j] = ev;
            sum += ev;
        }
        float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < V; j++) xr[j] *= inv;
    }
}

// log sum_j exp(x_j), computed as max + log(sum exp(x_j - max)).
static double row_lse(const float *x, int64_t V) {
    float m = row_max(x, V);
    double sum = 0.0;
    for (int64_t j = 0; j < V; j++) sum += expf(x[j] - m);
    return (double)m + log(sum);
}

double softmax_xent_forward(const float *logits, const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                            float *losses, float *lse, int64_t *n_counted) {
    double total = 0.0;
    int64_t count = 0;
    for (int64_t n = 0; n < N; n++) {
        const float *xr = logits + n * V; // (V)
        int32_t tgt = targets[n];
        if (tgt == ignore_index) {
            if (losses) losses[n] = 0.0f;
            if (lse) lse[n] = 0.0f;
            continue;
        }
        double l = row_lse(xr, V);
        double loss = (tgt >= 0 && tgt < V) ? l - (double)xr[tgt] : NAN;
        if (losses) losses[n] = (float)loss;
        if (lse) lse[n] = (float)l;
        total += loss;
        count++;
    }
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
        for (int64_t j = 0; j < V; j++) dr[j] = expf(xr[j] - l) * scale;
        if (tgt >= 0 && tgt < V) dr[tgt] -= scale;
        else
            for (int64_t j = 0; j < V; j++) dr[j] = NAN;
    }
}
