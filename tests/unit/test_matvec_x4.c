// test_matvec_x4.c — the repacked x4 matrix-vector kernels (Q4_0x4, Q8_0x4; matvec.h) on every path against a
// double-precision product with the kernel's own quantized activations, on random rows, odd shapes and arbitrary
// group ranges; Q8_0x4 also against the Q8_0 kernel bit for bit; and each row unpacked back to its stored bytes.
#include <math.h>
#include <stdlib.h>

#include "kernels/matvec.h"
#include "kernels/quant.h"
#include "test.h"

static void check_x4(DType t) {
    const int64_t rows = 4 * 13 + 3, cols = 32 * 23;
    size_t rb;
    Err e;
    REQUIRE(quant_row_bytes(t, cols, &rb, &e) == 0);
    uint8_t *w = xmalloc(rb * rows);
    float *row = xmalloc_array((size_t)cols, sizeof(float)), *x = xmalloc_array((size_t)cols, sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) row[i] = 2.0f * test_rand_uniform() - 1.0f;
        REQUIRE(quant_quantize_row(t, row, w + r * rb, cols, NULL, &e) == 0);
    }
    for (int64_t i = 0; i < cols; i++) x[i] = (2.0f * test_rand_uniform() - 1.0f) * (i % 37 == 0 ? 20.0f : 1.0f);
    REQUIRE(matvec_x4_supports(t));
    uint8_t *packed = xmalloc(matvec_x4_bytes(t, rows, cols));
    matvec_repack_x4(t, w, rb, rows, cols, packed);
    uint8_t *back = xmalloc(rb);
    for (int64_t r = 0; r < rows / 4 * 4; r++) { // each row unpacked: the stored bytes again
        memset(back, 0xAB, rb);
        matvec_unpack_x4_row(t, packed, cols, r, back);
        CHECKF(memcmp(back, w + r * rb, rb) == 0, "%s row %lld unpacked differs", dtype_name(t), (long long)r);
    }
    free(back);
    float *wd = xmalloc_array((size_t)cols, sizeof(float)), y[4 * 13], y2[4 * 13];
    const KernelPath paths[] = {KERNEL_SCALAR, KERNEL_AVX2, KERNEL_AVX512};
    for (int p = 0; p < 3; p++) {
        if (!matvec_path_available(paths[p])) continue;
        REQUIRE(matvec_force_path(paths[p], &e) == 0);
        MatvecAct a;
        matvec_act_init(&a);
        REQUIRE(matvec_act_prepare(&a, t, x, cols, &e) == 0);
        matvec_rows_x4(t, packed, cols, 0, rows / 4 * 4, &a, y);
        for (int64_t r = 0; r < rows / 4 * 4; r++) {
            quant_dequantize_row(t, w + r * rb, wd, cols, NULL);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < cols; i++) {
                double xv = (double)a.q[i] * a.d[i / 32];
                ref += wd[i] * xv;
                mag += fabs(wd[i] * xv);
            }
            CHECKF(fabs(y[r] - ref) <= 1e-5 * mag, "%s %s row %lld: %.9g vs %.9g", dtype_name(t), matvec_path_name(paths[p]), (long long)r, y[r], ref);
        }
        // group ranges: the same bits
        matvec_rows_x4(t, packed, cols, 0, 8, &a, y2);
        matvec_rows_x4(t, packed, cols, 8, 20, &a, y2);
        matvec_rows_x4(t, packed, cols, 20, rows / 4 * 4, &a, y2);
        CHECK(memcmp(y, y2, sizeof(float) * (size_t)(rows / 4 * 4)) == 0);
        if (t == DT_Q8_0 && paths[p] != KERNEL_AVX2) { // the Q8_0 kernel's operations: its bits (AVX2 runs the portable x4 kernel)
            matvec_rows(t, w, rb, 0, rows / 4 * 4, &a, y2);
            CHECK(memcmp(y, y2, sizeof(float) * (size_t)(rows / 4 * 4)) == 0);
        }
        matvec_act_free(&a);
    }
    REQUIRE(matvec_force_path(KERNEL_AUTO, &e) == 0);
    free(w), free(row), free(x), free(packed), free(wd);
}

TEST(matvec_x4_matches_reference_every_path) {
    check_x4(DT_Q4_0);
    check_x4(DT_Q8_0);
}
