// fastmath.h — a branch-free expf (and what is built on it) that compilers vectorise, for the kernels' hot loops.
//
// libm's expf is a scalar call: in the attention softmax (one exp per score) and the activations it costs more
// than the matrix products around it. fm_expf is written only with operations every SIMD ISA has (multiply, add,
// compare/select, float->int conversion, integer shift), so a loop over an array of them becomes vector code under -O3
// (AVX-512/AVX2 with -march=native). Accuracy: within 2 ulp of exp over the whole float range; exp(x) underflows
// to 0 below -87.34, overflows to +inf above 88.38 (127.5 ln 2, a little before expf does); NaN stays NaN.
//
// Method (as in Cephes): exp(x) = 2^n exp(r) with n = round(x / ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2], ln 2
// split in two constants so that n ln 2 is exact in float; exp(r) by a degree-6 minimax polynomial; 2^n built in
// the exponent bits.
#ifndef LOSSY_KERNELS_FASTMATH_H
#define LOSSY_KERNELS_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float fm_expf(float x) {
    const float lo = -87.33654f;        // n = -126 at the bottom: 2^n is still a normal float
    const float hi = 88.37626266479492f; // 127.5 ln 2: n <= 127 (above this exp is within 2x of FLT_MAX; say inf)
    float xc = x < lo ? lo : x;          // NaN passes both clamps unchanged...
    xc = xc > hi ? hi : xc;
    xc = xc == xc ? xc : 0.0f;           // ...and is replaced here, restored at the end
    // Round to nearest by adding and removing 1.5 * 2^23 (floorf does not vectorise without -fno-trapping-math).
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;     // ln 2 = 0.693359375 - 2.12194440e-4 (the first part times n is exact)
    r = r + n * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; // 2^n in the exponent field
    float p2;
    memcpy(&p2, &bits, sizeof p2);
    float res = y * p2;
    res = x < lo ? 0.0f : res;
    res = x > hi ? INFINITY : res;
    return x == x ? res : x;
}

// 1 / (1 + exp(-x)), accurate to a few ulp for every x (no cancellation: exp(-x) > 0).
static inline float fm_sigmoidf(float x) { return 1.0f / (1.0f + fm_expf(-x)); }

// tanh(x) = 1 - 2 / (exp(2x) + 1): absolute error about 1e-7 (relative error grows near 0, where callers such as
// GELU multiply it by x and add 1 anyway).
static inline float fm_tanhf(float x) { return 1.0f - 2.0f / (fm_expf(2.0f * x) + 1.0f); }

// Row reductions with a fixed number of independent lanes: the compiler vectorises them without being allowed to
// reassociate, and the result does not depend on the ISA (the same lanes are added in the same order).
static inline float fm_max_f32(const float *x, int64_t n) { // -inf for n = 0
    float m[16];
    for (int j = 0; j < 16; j++) m[j] = -INFINITY;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (int j = 0; i < n; i++, j++) m[j] = x[i] > m[j] ? x[i] : m[j];
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) m[j] = m[j + w] > m[j] ? m[j + w] : m[j];
    return m[0];
}

// Sum in double (8 lanes): exact enough for a normaliser over a 150k-entry vocabulary.
static inline double fm_sum_f32(const float *x, int64_t n) {
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += x[i + j];
    for (int j = 0; i < n; i++, j++) s[j] += x[i];
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

#endif
