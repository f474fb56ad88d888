// test_matvec.c — y = W x kernels (src/kernels/matvec.c and its AVX2/AVX-512 paths) against double-precision
// references, every dispatch path forced in turn, on random blocks, odd sizes, padded and misaligned rows.
//
// Two references per row: the exact product sum_i w_i x_i (w decoded by quant_dequantize_row, x as given), whose
// distance to the kernel is bounded by the activation rounding (|x - q d| <= d / 2 per element); and the product with
// the kernel's own quantized activations sum_i w_i q_i d_b, which the kernel must match to float-summation accuracy,
// so a wrong nibble, scale or offset anywhere shows up far above the tolerance.
#include <math.h>
#include <stdlib.h>

#include "kernels/matvec.h"
#include "kernels/matvec_impl.h"
#include "kernels/quant.h"
#include "test.h"

static const DType TYPES[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q5_K, DT_Q6_K,
                              DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q2_K, DT_Q3_K, DT_Q8_K};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static float gauss(void) {
    double u1 = 1.0 - test_rand_uniform(), u2 = test_rand_uniform(); // u1 in (0, 1]: log(u1) finite, <= 0
    return (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

static void put_half(uint8_t *p, float v) {
    uint16_t h = fp32_to_fp16(v);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}

// Random rows of type t: random quant bytes, scale fields set to moderate random values (so d and dmin terms have
// comparable sizes and relative tolerances mean something); float types get Gaussian values.
static void random_rows(DType t, uint8_t *w, int64_t rows, size_t row_bytes, size_t stride) {
    for (size_t i = 0; i < stride * (size_t)rows; i++) w[i] = (uint8_t)test_rand_u64();
    const DTypeInfo *info = dtype_info(t);
    size_t nb = row_bytes / info->type_size;
    for (size_t b = 0; b < nb * (size_t)rows; b++) {
        uint8_t *p = w + (b / nb) * stride + (b % nb) * info->type_size;
        switch (t) {
        case DT_F32: { float v = gauss(); memcpy(p, &v, 4); break; }
        case DT_F16: put_half(p, gauss()); break;
        case DT_BF16: { uint16_t h = fp32_to_bf16(gauss()); p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8); break; }
        case DT_Q8_0: case DT_Q4_0: case DT_Q5_0: put_half(p, 0.01f * gauss()); break;
        case DT_Q4_1: case DT_Q5_1: case DT_Q4_K: case DT_Q5_K:
            put_half(p, 0.01f * gauss());
            put_half(p + 2, 0.01f * gauss() * (t == DT_Q4_K || t == DT_Q5_K ? 0.5f : 4.0f));
            break;
        case DT_Q2_K: put_half(p + 80, 0.01f * gauss()); put_half(p + 82, 0.01f * gauss()); break;
        case DT_Q3_K: put_half(p + 108, 0.01f * gauss()); break;
        case DT_Q6_K: put_half(p + 208, 0.001f * gauss()); break;
        case DT_Q8_K: { float v = 0.01f * gauss(); memcpy(p, &v, 4); break; }
        default: break;
        }
    }
}

static const KernelPath PATHS[] = {KERNEL_SCALAR, KERNEL_AVX2, KERNEL_AVX512};

// One product checked on every available path. Returns the number of failed rows.
static int check_product(DType t, int64_t rows, int64_t cols, size_t pad, size_t misalign, int xkind) {
    size_t rb;
    Err e;
    if (quant_row_bytes(t, cols, &rb, &e)) {
        test_fail_at(__FILE__, __LINE__, "%s", e.msg);
        return 1;
    }
    size_t stride = rb + pad;
    uint8_t *mem = xmalloc(stride * (size_t)rows + misalign + 64);
    uint8_t *w = mem + misalign;
    random_rows(t, w, rows, rb, stride);
    float *x = xmalloc((size_t)cols * sizeof(float)), *wd = xmalloc((size_t)cols * sizeof(float));
    for (int64_t i = 0; i < cols; i++) {
        x[i] = gauss();
        if (xkind == 1 && i < 64) x[i] = 0;            // an all-zero activation block (scale 0)
        if (xkind == 2) x[i] *= (i % 97 == 0) ? 50 : 1; // outliers dominating their blocks
    }
    MatvecAct act;
    matvec_act_init(&act);
    float *y = xmalloc((size_t)rows * sizeof(float));
    int bad = 0;
    for (size_t p = 0; p < sizeof PATHS / sizeof PATHS[0]; p++) {
        if (!matvec_path_available(PATHS[p])) continue;
        if (matvec_force_path(PATHS[p], &e) != 0) {
            test_fail_at(__FILE__, __LINE__, "%s", e.msg);
            bad++;
            continue;
        }
        for (int64_t r = 0; r < rows; r++) y[r] = NAN;
        if (matvec(t, w, stride, rows, cols, x, y, &act, &e) != 0) {
            test_fail_at(__FILE__, __LINE__, "%s: %s", dtype_name(t), e.msg);
            bad++;
            continue;
        }
        for (int64_t r = 0; r < rows; r++) {
            if (quant_dequantize_row(t, w + (size_t)r * stride, wd, cols, &e)) {
                bad++;
                break;
            }
            double exact = 0, mag = 0, qref = 0, qmag = 0, xerr = 0;
            for (int64_t i = 0; i < cols; i++) {
                exact += (double)wd[i] * x[i];
                mag += fabs((double)wd[i] * x[i]);
                if (act.bs) {
                    double xq = (double)act.q[i] * act.d[i / act.bs];
                    qref += (double)wd[i] * xq;
                    qmag += fabs((double)wd[i] * xq);
                    xerr += fabs((double)wd[i]) * act.d[i / act.bs] * 0.5;
                }
            }
            double tol_exact = 5e-5 * mag + 1.01 * xerr + 1e-30;
            bool ok = fabs(y[r] - exact) <= tol_exact;
            if (act.bs) ok = ok && fabs(y[r] - qref) <= 5e-5 * qmag + 1e-30;
            if (!ok) {
                if (bad < 6)
                    test_fail_at(__FILE__, __LINE__,
                                 "%s %s rows %lld cols %lld row %lld: got %.9g, exact %.9g (tol %.3g), with "
                                 "quantized x %.9g (tol %.3g)",
                                 dtype_name(t), matvec_path_name(PATHS[p]), (long long)rows, (long long)cols,
                                 (long long)r, (double)y[r], exact, tol_exact, qref, 5e-5 * qmag);
                bad++;
            }
        }
    }
    matvec_force_path(KERNEL_AUTO, &e);
    matvec_act_free(&act);
    free(mem);
    free(x);
    free(wd);
    free(y);
    return bad;
}

TEST(matvec_every_type_every_path_against_reference) {
    for (size_t k = 0; k < N_TYPES; k++) {
        DType t = TYPES[k];
        const DTypeInfo *info = dtype_info(t);
        REQUIRE(matvec_supports(t));
        // Block counts: 1, odd (tails of the two-block AVX-512 loops) and several.
        const int64_t scalar_cols[] = {1, 7, 33, 100, 515};
        const int64_t blocks[] = {1, 3, 5, 12};
        for (int c = 0; c < 4; c++) {
            int64_t cols = info->block_size == 1 ? scalar_cols[c + (c == 3)] : blocks[c] * info->block_size;
            int64_t rows = c == 2 ? 17 : 3;
            int bad = check_product(t, rows, cols, 0, 0, c == 1 ? 1 : 0);
            CHECKF(bad == 0, "%s rows %lld cols %lld: %d bad rows", info->name, (long long)rows, (long long)cols, bad);
        }
    }
}

TEST(matvec_padded_misaligned_rows_and_outliers) {
    for (size_t k = 0; k < N_TYPES; k++) {
        DType t = TYPES[k];
        const DTypeInfo *info = dtype_info(t);
        int64_t cols = info->block_size == 1 ? 300 : 4 * (int64_t)info->block_size;
        CHECK_EQ_INT(check_product(t, 5, cols, 13, 1, 2), 0);
        CHECK_EQ_INT(check_product(t, 4, cols, 64, 3, 0), 0);
    }
}

TEST(matvec_row_ranges_equal_whole_product) {
    // Bitwise: a row's result must not depend on how rows are split (threads) or grouped in a pass.
    const int64_t rows = 29, cols = 512;
    for (size_t k = 0; k < N_TYPES; k++) {
        DType t = TYPES[k];
        size_t rb;
        Err e;
        REQUIRE(quant_row_bytes(t, cols, &rb, &e) == 0);
        uint8_t *w = xmalloc(rb * rows);
        random_rows(t, w, rows, rb, rb);
        float x[512], y1[29], y2[29];
        for (int i = 0; i < cols; i++) x[i] = gauss();
        MatvecAct a;
        matvec_act_init(&a);
        for (size_t p = 0; p < sizeof PATHS / sizeof PATHS[0]; p++) {
            if (!matvec_path_available(PATHS[p])) continue;
            REQUIRE(matvec_force_path(PATHS[p], &e) == 0);
            REQUIRE(matvec(t, w, rb, rows, cols, x, y1, &a, &e) == 0);
            REQUIRE(matvec_act_prepare(&a, t, x, cols, &e) == 0);
            memset(y2, 0, sizeof y2);
            matvec_rows(t, w, rb, 0, 10, &a, y2);
            matvec_rows(t, w, rb, 10, 11, &a, y2);
            matvec_rows(t, w, rb, 11, 18, &a, y2);
            matvec_rows(t, w, rb, 18, rows, &a, y2);
            matvec_rows(t, w, rb, 5, 5, &a, y2); // empty range: no-op
            for (int r = 0; r < rows; r++)
                CHECKF(memcmp(&y1[r], &y2[r], 4) == 0, "%s %s row %d: %.9g vs %.9g", dtype_name(t),
                       matvec_path_name(PATHS[p]), r, (double)y1[r], (double)y2[r]);
        }
        matvec_force_path(KERNEL_AUTO, &e);
        matvec_act_free(&a);
        free(w);
    }
}

TEST(matvec_rows_multi_equals_one_at_a_time) {
    // Bitwise: each activation's result from the multi-activation product (decoding several sequences at once) must
    // be what matvec_rows gives for it alone, for every batch size (whole and partial passes of activations), row
    // range (partial row passes) and column count (the masked tail), on every path.
    enum { NA = 11 };
    const int64_t rows = 23;
    const int64_t COLS[] = {256, 80};
    for (size_t k = 0; k < N_TYPES; k++) {
        DType t = TYPES[k];
        for (size_t ci = 0; ci < 2; ci++) {
            const int64_t cols = COLS[ci];
            size_t rb;
            Err e;
            if (quant_row_bytes(t, cols, &rb, &e)) continue; // K-quants: 80 is not a whole number of blocks
            uint8_t *w = xmalloc(rb * rows);
            random_rows(t, w, rows, rb, rb);
            float *x = xmalloc_array((size_t)(NA * cols), sizeof(float)), want[NA][23], got[NA][23];
            for (int64_t i = 0; i < NA * cols; i++) x[i] = gauss();
            MatvecAct acts[NA];
            const MatvecAct *ap[NA];
            float *yp[NA];
            for (int i = 0; i < NA; i++) matvec_act_init(&acts[i]), ap[i] = &acts[i], yp[i] = got[i];
            for (size_t p = 0; p < sizeof PATHS / sizeof PATHS[0]; p++) {
                if (!matvec_path_available(PATHS[p])) continue;
                REQUIRE(matvec_force_path(PATHS[p], &e) == 0);
                for (int i = 0; i < NA; i++) {
                    REQUIRE(matvec_act_prepare(&acts[i], t, x + i * cols, cols, &e) == 0);
                    matvec_rows(t, w, rb, 0, rows, &acts[i], want[i]);
                }
                for (int n = 1; n <= NA; n++) {
                    memset(got, 0, sizeof got);
                    matvec_rows_multi(t, w, rb, 0, 9, ap, yp, n);
                    matvec_rows_multi(t, w, rb, 9, 10, ap, yp, n);
                    matvec_rows_multi(t, w, rb, 10, rows, ap, yp, n);
                    for (int i = 0; i < n; i++)
                        for (int r = 0; r < rows; r++)
                            CHECKF(memcmp(&want[i][r], &got[i][r], 4) == 0, "%s %s cols %lld n %d act %d row %d: %.9g vs %.9g",
                                   dtype_name(t), matvec_path_name(PATHS[p]), (long long)cols, n, i, r, (double)want[i][r],
                                   (double)got[i][r]);
                }
            }
            matvec_force_path(KERNEL_AUTO, &e);
            for (int i = 0; i < NA; i++) matvec_act_free(&acts[i]);
            free(x);
            free(w);
        }
    }
}

TEST(matvec_act_shared_between_types) {
    // One x, prepared once, serves every type of the same activation kind; a mismatched act still gives the right
    // answer (through the generic kernel), and an act of the wrong length gives NaN, never garbage.
    const int64_t rows = 6, cols = 512;
    float x[512], y[6], yref[6];
    for (int i = 0; i < cols; i++) x[i] = gauss();
    Err e;
    MatvecAct a;
    matvec_act_init(&a);
    REQUIRE(matvec_act_prepare(&a, DT_Q4_K, x, cols, &e) == 0);
    CHECK(matvec_act_fits(&a, DT_Q6_K) && matvec_act_fits(&a, DT_Q5_K) && matvec_act_fits(&a, DT_F16));
    CHECK(matvec_act_fits(&a, DT_Q3_K)); // generic kernels use x itself
    CHECK(!matvec_act_fits(&a, DT_Q8_0) && !matvec_act_fits(&a, DT_IQ2_XXS));
    const DType ts[] = {DT_Q6_K, DT_Q5_K, DT_Q8_0, DT_F16, DT_Q4_1};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        size_t rb;
        REQUIRE(quant_row_bytes(ts[k], cols, &rb, &e) == 0);
        uint8_t *w = xmalloc(rb * rows);
        random_rows(ts[k], w, rows, rb, rb);
        matvec_rows(ts[k], w, rb, 0, rows, &a, y);
        REQUIRE(matvec(ts[k], w, rb, rows, cols, x, yref, NULL, &e) == 0);
        for (int r = 0; r < rows; r++) {
            double mag = 0;
            float wd[512];
            REQUIRE(quant_dequantize_row(ts[k], w + r * rb, wd, cols, &e) == 0);
            for (int i = 0; i < cols; i++) mag += fabs((double)wd[i] * x[i]);
            CHECKF(fabs(y[r] - yref[r]) <= 0.02 * mag, "%s row %d: %g vs %g", dtype_name(ts[k]), r, (double)y[r],
                   (double)yref[r]);
        }
        free(w);
    }
    REQUIRE(matvec_act_prepare(&a, DT_F32, x, 100, &e) == 0);
    CHECK(!matvec_act_fits(&a, DT_Q8_0));
    uint8_t w[34 * 4] = {0};
    matvec_rows(DT_Q8_0, w, 34 * 4, 0, 1, &a, y);
    CHECK(isnan(y[0]));
    matvec_act_free(&a);
}

TEST(matvec_bad_arguments) {
    Err e;
    float x[64] = {0}, y[4];
    uint8_t w[1024] = {0};
    CHECK_EQ_INT(matvec(DT_Q4_0, w, 18, 2, 33, x, y, NULL, &e), -1);
    CHECK(strstr(e.msg, "33") && strstr(e.msg, "q4_0"));
    CHECK_EQ_INT(matvec(DT_Q4_K, w, 144, 1, 64, x, y, NULL, &e), -1);
    CHECK(strstr(e.msg, "q4_K") != NULL);
    CHECK_EQ_INT(matvec(DT_IQ2_XXS, w, 66, 1, 256, x, y, NULL, &e), -1);
    CHECK(strstr(e.msg, "iq2_xxs") != NULL);
    CHECK_EQ_INT(matvec(DT_Q8_0, w, 10, 2, 32, x, y, NULL, &e), -1); // stride shorter than a row
    CHECK(strstr(e.msg, "stride") != NULL);
    CHECK_EQ_INT(matvec(DT_F32, w, 16, -1, 4, x, y, NULL, &e), -1);
    CHECK_EQ_INT(matvec_force_path((KernelPath)9, &e), -1);
    CHECK_EQ_INT(matvec(DT_F32, w, 16, 0, 4, x, y, NULL, &e), 0); // no rows: nothing to do
    // The automatic choice is one of the available paths, and each reported path can be forced.
    CHECK(matvec_path_available(matvec_current_path()));
    for (int p = KERNEL_SCALAR; p <= KERNEL_AVX512; p++)
        if (matvec_path_available((KernelPath)p)) {
            CHECK_EQ_INT(matvec_force_path((KernelPath)p, &e), 0);
            CHECK_EQ_INT(matvec_current_path(), p);
        }
    CHECK_EQ_INT(matvec_force_path(KERNEL_AUTO, &e), 0);
}

TEST(matvec_quantized_weights_close_to_float_product) {
    // End to end: quantize Gaussian weights, multiply, compare with the f32 product. The error must stay within what
    // the format's rounding allows (a few times the rel. RMSE of the weights, measured relative to ||y||).
    const int64_t rows = 64, cols = 1024;
    float *wf = xmalloc((size_t)(rows * cols) * sizeof(float)), x[1024], yf[64], yq[64];
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = 0.02f * gauss();
    for (int i = 0; i < cols; i++) x[i] = gauss();
    Err e;
    REQUIRE(matvec(DT_F32, wf, (size_t)cols * 4, rows, cols, x, yf, NULL, &e) == 0);
    const DType qt[] = {DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_F16, DT_BF16};
    // Q8_0: weights and activations are both rounded to 8-bit blocks (~0.5% rel. RMSE each); 0.0101 was seen for one
    // draw of the shared test RNG, whose state depends on which tests ran before, so the bound leaves that margin.
    const double bound[] = {0.015, 0.12, 0.10, 0.05, 0.025, 0.001, 0.008};
    for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++) {
        size_t rb;
        REQUIRE(quant_row_bytes(qt[k], cols, &rb, &e) == 0);
        uint8_t *w = xmalloc(rb * rows);
        for (int64_t r = 0; r < rows; r++) REQUIREF(quant_quantize_row(qt[k], wf + r * cols, w + r * rb, cols, NULL, &e) == 0, "%s: %s", dtype_name(qt[k]), e.msg);
        for (size_t p = 0; p < sizeof PATHS / sizeof PATHS[0]; p++) {
            if (!matvec_path_available(PATHS[p])) continue;
            REQUIRE(matvec_force_path(PATHS[p], &e) == 0);
            REQUIRE(matvec(qt[k], w, rb, rows, cols, x, yq, NULL, &e) == 0);
            double num = 0, den = 0;
            for (int r = 0; r < rows; r++) num += (yq[r] - yf[r]) * (double)(yq[r] - yf[r]), den += (double)yf[r] * yf[r];
            CHECKF(sqrt(num / den) < bound[k], "%s %s: rel error %g", dtype_name(qt[k]), matvec_path_name(PATHS[p]),
                   sqrt(num / den));
        }
        matvec_force_path(KERNEL_AUTO, &e);
        free(w);
    }
    free(wf);
}

TEST(matvec_f16_table_exact) {
    const float *tab = matvec_f16_table();
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float want = fp16_to_fp32((uint16_t)h);
        if (memcmp(&want, &tab[h], 4) != 0) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(tab == matvec_f16_table()); // built once
}
