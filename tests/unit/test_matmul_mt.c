// test_matmul_mt.c — the pool-split linear layer (kernels/matmul_mt.h): for 1 to 4 threads and shapes that take
// the row split, the column split and the single-thread path, forward and both backward products are bit-identical
// to the single-threaded GEMM and close to a double-precision product; overwrite vs accumulate; biases.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/matmul.h"
#include "kernels/matmul_mt.h"
#include "ops_check.h"
#include "test.h"

static void check_shape(int64_t N, int64_t IN, int64_t OUT) {
    float *x = ops_rand_new(N * IN, 1.0f), *w = ops_rand_new(OUT * IN, 1.0f), *b = ops_rand_new(OUT, 1.0f);
    float *dy = ops_rand_new(N * OUT, 1.0f);
    // single-threaded references through the plain GEMM
    float *y1 = xmalloc_array((size_t)(N * OUT), sizeof(float)), *dx1 = ops_rand_new(N * IN, 1.0f);
    float *dw1 = ops_rand_new(OUT * IN, 1.0f), *db1 = ops_rand_new(OUT, 1.0f);
    float *dx0 = ops_copy(dx1, N * IN), *dw0 = ops_copy(dw1, OUT * IN), *db0 = ops_copy(db1, OUT);
    for (int64_t n = 0; n < N; n++) memcpy(y1 + n * OUT, b, (size_t)OUT * sizeof(float));
    matmul_gemm(N, OUT, IN, x, IN, 1, w, 1, IN, y1, OUT, true);
    matmul_gemm(N, IN, OUT, dy, OUT, 1, w, IN, 1, dx1, IN, true);
    matmul_gemm(OUT, IN, N, dy, 1, OUT, x, IN, 1, dw1, IN, true);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OUT; o++) db1[o] += dy[n * OUT + o];
    // and the forward against double
    double *want = xmalloc_array((size_t)(N * OUT), sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OUT; o++) {
            double s = b[o];
            for (int64_t i = 0; i < IN; i++) s += (double)x[n * IN + i] * w[o * IN + i];
            want[n * OUT + o] = s;
        }
    char what[128];
    snprintf(what, sizeof what, "forward_mt N=%lld IN=%lld OUT=%lld", (long long)N, (long long)IN, (long long)OUT);
    OPS_CHECK_CLOSE(what, y1, NULL, want, N * OUT, 1e-5);
    for (int nt = 1; nt <= 4; nt++) {
        ThreadPool *p = threadpool_new(nt);
        float *y = xmalloc_array((size_t)(N * OUT), sizeof(float));
        float *dx = ops_copy(dx0, N * IN), *dw = ops_copy(dw0, OUT * IN), *db = ops_copy(db0, OUT);
        matmul_forward_mt(p, y, x, w, b, N, IN, OUT);
        matmul_backward_mt(p, dx, dw, db, dy, x, w, N, IN, OUT);
        CHECKF(memcmp(y, y1, (size_t)(N * OUT) * sizeof(float)) == 0, "%s: forward differs with %d threads", what, nt);
        CHECKF(memcmp(dx, dx1, (size_t)(N * IN) * sizeof(float)) == 0, "%s: dx differs with %d threads", what, nt);
        CHECKF(memcmp(dw, dw1, (size_t)(OUT * IN) * sizeof(float)) == 0, "%s: dw differs with %d threads", what, nt);
        CHECKF(memcmp(db, db1, (size_t)OUT * sizeof(float)) == 0, "%s: db differs with %d threads", what, nt);
        // overwrite: dx = dy W equals accumulating into zeros
        float *dxo = ops_rand_new(N * IN, 1.0f), *dxz = xcalloc((size_t)(N * IN), sizeof(float));
        matmul_backward_dx_mt(p, dxo, dy, w, N, IN, OUT, false);
        matmul_backward_dx_mt(p, dxz, dy, w, N, IN, OUT, true);
        CHECK(memcmp(dxo, dxz, (size_t)(N * IN) * sizeof(float)) == 0);
        free(y), free(dx), free(dw), free(db), free(dxo), free(dxz);
        threadpool_free(p);
    }
    free(x), free(w), free(b), free(dy), free(y1), free(dx1), free(dw1), free(db1), free(dx0), free(dw0), free(db0);
    free(want);
}

TEST(matmul_mt_bit_identical_for_any_thread_count) {
    check_shape(3, 5, 7);        // single-thread path
    check_shape(20, 128, 700);   // few rows: column split
    check_shape(333, 96, 130);   // row split with a ragged last block
    check_shape(130, 300, 290);  // crosses the GEMM's k block
}
