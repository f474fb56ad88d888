// ops_check.h — helpers shared by the kernel tests (test_ops.c, test_attention.c, test_matmul.c): random inputs,
// float/double conversion, a normalised error check, and central finite differences of a double-precision loss.
//
// The pattern every op test follows: a naive reference forward written in the test in double; the kernel's float
// forward compared with it; a scalar loss L = sum(out * R) with random weights R, whose gradient the kernel's
// backward computes from dout = R; and the same gradient by central differences of the double reference.
#ifndef LOSSY_TESTS_OPS_CHECK_H
#define LOSSY_TESTS_OPS_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

// Uniform in [-scale, scale).
static inline void ops_rand_fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (2.0f * test_rand_uniform() - 1.0f) * scale;
}

static inline float *ops_rand_new(int64_t n, float scale) {
    float *x = xmalloc_array((size_t)n, sizeof(float));
    ops_rand_fill(x, n, scale);
    return x;
}

static inline double *ops_to_double(const float *x, int64_t n) {
    double *d = xmalloc_array((size_t)n, sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static inline float *ops_copy(const float *x, int64_t n) {
    float *c = xmalloc_array((size_t)n, sizeof(float));
    memcpy(c, x, (size_t)n * sizeof(float));
    return c;
}

// max_i |got_i - base_i - want_i| / max(max_i |want_i|, floor), where base (may be NULL) is what the buffer held
// before an accumulating (+=) call: that checks the += convention and the values at once. Records a failure naming
// the worst index when the error exceeds tol. Returns the error.
static inline double ops_check_close_at(const char *file, int line, const char *what, const float *got,
                                        const float *base, const double *want, int64_t n, double tol) {
    double scale = 1e-6, err = 0.0;
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    for (int64_t i = 0; i < n; i++) {
        double g = (double)got[i] - (base ? (double)base[i] : 0.0);
        double d = fabs(g - want[i]);
        if (!(d <= err)) { // also catches NaN
            err = isnan(d) ? INFINITY : d;
            worst = i;
        }
    }
    err /= scale;
    if (!(err <= tol)) {
        double g = (double)got[worst] - (base ? (double)base[worst] : 0.0);
        test_fail_at(file, line, "%s: normalised error %.3g > %.3g (index %lld: got %.9g want %.9g, max |want| %.3g)",
                     what, err, tol, (long long)worst, g, want[worst], scale);
    }
    return err;
}
#define OPS_CHECK_CLOSE(what, got, base, want, n, tol) \
    ops_check_close_at(__FILE__, __LINE__, (what), (got), (base), (want), (n), (tol))

// The reference loss of an op test: reads its (double) inputs from ctx.
typedef double (*OpsRefLoss)(void *ctx);

// grad[i] = dL/dp[i] by central differences; p points into ctx's inputs and is restored afterwards.
static inline void ops_fd_grad(double *grad, double *p, int64_t n, OpsRefLoss loss, void *ctx) {
    for (int64_t i = 0; i < n; i++) {
        double s = p[i], h = 1e-6 * (fabs(s) > 1.0 ? fabs(s) : 1.0);
        p[i] = s + h;
        double lp = loss(ctx);
        p[i] = s - h;
        double lm = loss(ctx);
        p[i] = s;
        grad[i] = (lp - lm) / (2.0 * h);
    }
}

// sum_i out[i] * r[i] in double.
static inline double ops_weighted_sum(const double *out, const float *r, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += out[i] * r[i];
    return s;
}

#endif
