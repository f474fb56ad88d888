// test_wgemm.c — the token-block GEMM (src/kernels/wgemm.c) against double-precision references, each path forced in
// turn (f32 panels under every matmul ISA; AMX int8 where the machine has it), on random blocks and odd sizes.
//
// References per output: for the f32 path the exact sum_i w_i x_i (w decoded by quant_dequantize_row); for the AMX
// path the sum with the activations quantized the way wgemm.h documents (int8 per block of 32, q = round(x * 127 /
// max|x|)), recomputed here independently, which the kernel must match to float-summation accuracy; the distance to
// the exact product is bounded by the activation rounding as well. Results must also not depend on the row range a
// call covers or on how many tokens share it (each element the same bits), nor, for Q4_0/Q8_0, on whether W is read
// from its plain rows or from matvec.h's x4 copy.
#include <math.h>
#include <stdlib.h>

#include "kernels/matmul.h"
#include "kernels/matvec.h"
#include "kernels/quant.h"
#include "kernels/wgemm.h"
#include "test.h"

static float gauss(void) {
    double u1 = 1.0 - test_rand_uniform(), u2 = test_rand_uniform(); // u1 in (0, 1]: log(u1) finite, <= 0
    return (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

// Random weight rows of type t: quantize Gaussian rows (so every field is a realistic value).
static uint8_t *random_weights(DType t, int64_t rows, int64_t cols, size_t stride) {
    uint8_t *w = xcalloc((size_t)rows, stride);
    float *row = xmalloc_array((size_t)cols, sizeof(float));
    Err e;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) row[i] = 0.05f * gauss() * (i % 61 == 0 ? 8.0f : 1.0f);
        if (quant_quantize_row(t, row, w + (size_t)r * stride, cols, NULL, &e)) test_fail_at(__FILE__, __LINE__, "%s", e.msg);
    }
    free(row);
    return w;
}

// x quantized as wgemm's AMX path does, then dequantized: (N, K)
static void quantized_x(const float *x, int64_t N, int64_t K, double *out) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < K / 32; b++) {
            const float *xb = x + n * K + 32 * b;
            double amax = 0;
            for (int i = 0; i < 32; i++) amax = fmax(amax, fabs((double)xb[i]));
            float famax = (float)amax, id = famax > 0 ? 127.0f / famax : 0.0f, d = famax / 127.0f;
            for (int i = 0; i < 32; i++) out[n * K + 32 * b + i] = (double)d * (double)nearbyintf(xb[i] * id);
        }
}

#define TRY(cond, ...)                                   \
    do {                                                 \
        if (!(cond)) {                                   \
            test_fail_at(__FILE__, __LINE__, __VA_ARGS__); \
            return 1;                                    \
        }                                                \
    } while (0)

static int check(DType t, WgemmPath path, int64_t rows, int64_t K, int64_t N, size_t pad) {
    Err e;
    size_t rb;
    TRY(quant_row_bytes(t, K, &rb, &e) == 0, "%s", e.msg);
    size_t stride = rb + pad;
    uint8_t *w = random_weights(t, rows, K, stride);
    int64_t ldx = K + 3;
    float *x = xmalloc_array((size_t)(N * ldx), sizeof(float)), *xc = xmalloc_array((size_t)(N * K), sizeof(float));
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < K; i++) {
            x[n * ldx + i] = gauss() * (i % 97 == 5 ? 30.0f : 1.0f); // outliers dominating their blocks
            if (n == 1 && i < 64) x[n * ldx + i] = 0;                // all-zero blocks (scale 0)
            xc[n * K + i] = x[n * ldx + i];
        }
    double *xq = xmalloc_array((size_t)(N * K), sizeof(double));
    quantized_x(xc, N, K, xq);
    float *wd = xmalloc_array((size_t)(rows * K), sizeof(float));
    for (int64_t r = 0; r < rows; r++) quant_dequantize_row(t, w + (size_t)r * stride, wd + r * K, K, NULL);
    int64_t ldy = rows + 5;
    float *y = xmalloc_array((size_t)(N * ldy), sizeof(float)), *y2 = xmalloc_array((size_t)(N * ldy), sizeof(float));
    TRY(wgemm_force_path(path, &e) == 0, "%s", e.msg);
    WgemmAct act;
    wgemm_act_init(&act);
    WgemmScratch sc = {0};
    TRY(wgemm_act_prepare(&act, t, x, ldx, N, K, &e) == 0, "%s", e.msg);
    CHECK(act.path == wgemm_path_for(t));
    bool amx = act.path == WGEMM_AMX;
    wgemm_rows(t, w, stride, 0, rows, &act, y, ldy, &sc);
    int bad = 0;
    for (int64_t n = 0; n < N && bad < 3; n++)
        for (int64_t r = 0; r < rows && bad < 3; r++) {
            double exact = 0, quant = 0, mag = 0, qerr = 0;
            for (int64_t i = 0; i < K; i++) {
                double wv = wd[r * K + i];
                exact += wv * xc[n * K + i];
                quant += wv * xq[n * K + i];
                mag += fabs(wv * xc[n * K + i]);
                qerr += fabs(wv) * fabs(xc[n * K + i] - xq[n * K + i]);
            }
            double got = y[n * ldy + r], ref = amx ? quant : exact;
            double tol = 2e-6 * mag + 1e-30;
            if (fabs(got - ref) > tol || fabs(got - exact) > tol + qerr) {
                test_fail_at(__FILE__, __LINE__, "%s %s rows %lld K %lld N %lld: y[%lld][%lld] = %.9g, reference %.9g (exact %.9g, tol %.3g)",
                             dtype_name(t), wgemm_path_name(path), (long long)rows, (long long)K, (long long)N,
                             (long long)n, (long long)r, got, ref, exact, tol);
                bad++;
            }
        }
    // any row split gives the same bits
    int64_t cut = rows > 40 ? 37 : rows / 2;
    wgemm_rows(t, w, stride, 0, cut, &act, y2, ldy, &sc);
    wgemm_rows(t, w, stride, cut, rows, &act, y2, ldy, &sc);
    for (int64_t n = 0; n < N; n++)
        if (memcmp(y + n * ldy, y2 + n * ldy, (size_t)rows * sizeof(float)) != 0) {
            test_fail_at(__FILE__, __LINE__, "%s %s: row split changes token %lld", dtype_name(t), wgemm_path_name(path), (long long)n);
            bad++;
            break;
        }
    // Q4_0/Q8_0 from matvec.h's x4 copy (the groups) plus the plain rows past them: the same bits; the plain rows
    // the copy covers are overwritten, so reading them instead would show
    if (matvec_x4_supports(t)) {
        uint8_t *x4 = xmalloc(matvec_x4_bytes(t, rows, K) + 1), *plain = xmalloc((size_t)rows * stride);
        matvec_repack_x4(t, w, stride, rows, K, x4);
        memcpy(plain, w, (size_t)rows * stride);
        memset(plain, 0x7f, (size_t)(rows / 4 * 4) * stride);
        wgemm_rows_x4(t, x4, rows, plain, stride, 0, cut, &act, y2, ldy, &sc);
        wgemm_rows_x4(t, x4, rows, plain, stride, cut, rows, &act, y2, ldy, &sc);
        for (int64_t n = 0; n < N; n++)
            if (memcmp(y + n * ldy, y2 + n * ldy, (size_t)rows * sizeof(float)) != 0) {
                test_fail_at(__FILE__, __LINE__, "%s %s: the x4 copy gives other results (token %lld)", dtype_name(t),
                             wgemm_path_name(path), (long long)n);
                bad++;
                break;
            }
        free(x4), free(plain);
    }
    // the last token alone gives the same bits as inside the block
    WgemmAct one;
    wgemm_act_init(&one);
    TRY(wgemm_act_prepare(&one, t, x + (N - 1) * ldx, ldx, 1, K, &e) == 0, "%s", e.msg);
    wgemm_rows(t, w, stride, 0, rows, &one, y2, ldy, &sc);
    if (memcmp(y2, y + (N - 1) * ldy, (size_t)rows * sizeof(float)) != 0) {
        test_fail_at(__FILE__, __LINE__, "%s %s: a token's result depends on the block size", dtype_name(t), wgemm_path_name(path));
        bad++;
    }
    wgemm_act_free(&one);
    wgemm_act_free(&act);
    wgemm_scratch_free(&sc);
    TRY(wgemm_force_path(WGEMM_AUTO, &e) == 0, "%s", e.msg);
    free(w), free(x), free(xc), free(xq), free(wd), free(y), free(y2);
    return bad;
}

static const DType TYPES[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};

TEST(wgemm_matches_reference_every_path) {
    const MatmulIsa isas[] = {MATMUL_ISA_SCALAR, MATMUL_ISA_AVX2, MATMUL_ISA_AVX512};
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        DType t = TYPES[ti];
        bool kq = t == DT_Q4_K || t == DT_Q5_K || t == DT_Q6_K;
        int64_t K = kq ? 512 : (t == DT_F32 || t == DT_F16 || t == DT_BF16) ? 77 : 96;
        for (size_t ii = 0; ii < 3; ii++) {
            if (matmul_force_isa(isas[ii]) != 0) continue;
            CHECK(check(t, WGEMM_F32, 45, K, 19, ii == 1 ? 6 : 0) == 0);
        }
        matmul_force_isa(MATMUL_ISA_AUTO);
        if (wgemm_path_available(WGEMM_AMX)) {
            CHECK(check(t, WGEMM_AMX, 45, K, 37, 0) == 0);
            CHECK(check(t, WGEMM_AMX, 70, K, 1, 2) == 0);
            CHECK(check(t, WGEMM_AMX, 3, K, 16, 0) == 0);
        }
    }
}

TEST(wgemm_rejects_bad_shapes) {
    WgemmAct act;
    wgemm_act_init(&act);
    Err e;
    float x[64] = {0};
    CHECK(wgemm_act_prepare(&act, DT_Q4_K, x, 64, 1, 64, &e) != 0); // not a whole K-quant block
    CHECK(strstr(e.msg, "q4_K") != NULL);
    CHECK(wgemm_act_prepare(&act, DT_Q8_0, x, 64, 1, 48, &e) != 0);
    CHECK(wgemm_act_prepare(&act, (DType)4, x, 64, 1, 64, &e) != 0); // unknown type
    CHECK(wgemm_force_path((WgemmPath)9, &e) != 0);
    wgemm_act_free(&act);
}
