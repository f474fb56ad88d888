// test_matmul.c — the f32 GEMM and the linear layer on every micro-kernel this CPU can run (portable, AVX2,
// AVX-512): forward against a naive double product on odd shapes and shapes that cross every cache block, the
// backward against finite differences on a small layer and against the double formulas on larger ones, and
// matmul_gemm's strides and accumulate flag.
#include "kernels/matmul.h"
#include "ops_check.h"
#include "test.h"

typedef struct LinCtx {
    double *x, *w, *b; // (N, IN), (OUT, IN), (OUT)
    const float *r;    // (N, OUT)
    int64_t N, IN, OUT;
} LinCtx;

static double lin_loss(void *ctx) {
    LinCtx *c = ctx;
    double L = 0.0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->OUT; o++) {
            double y = c->b[o];
            for (int64_t i = 0; i < c->IN; i++) y += c->x[n * c->IN + i] * c->w[o * c->IN + i];
            L += y * c->r[n * c->OUT + o];
        }
    return L;
}

// Forward and backward of one layer shape on the current ISA; finite differences only when fd is set (small).
static void check_linear(int64_t N, int64_t IN, int64_t OUT, bool fd) {
    float *x = ops_rand_new(N * IN, 1.0f), *w = ops_rand_new(OUT * IN, 1.0f), *b = ops_rand_new(OUT, 1.0f);
    float *dy = ops_rand_new(N * OUT, 1.0f);
    float *y = xmalloc_array(N * OUT, sizeof(float)), *y0 = xmalloc_array(N * OUT, sizeof(float));
    double *want = xmalloc_array(N * OUT, sizeof(double)), *want0 = xmalloc_array(N * OUT, sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OUT; o++) {
            double s = 0.0;
            for (int64_t i = 0; i < IN; i++) s += (double)x[n * IN + i] * w[o * IN + i];
            want0[n * OUT + o] = s;
            want[n * OUT + o] = s + b[o];
        }
    char what[160];
    snprintf(what, sizeof what, "linear forward N=%lld IN=%lld OUT=%lld isa=%s", (long long)N, (long long)IN,
             (long long)OUT, matmul_isa_name(matmul_active_isa()));
    matmul_forward(y, x, w, b, N, IN, OUT);
    OPS_CHECK_CLOSE(what, y, NULL, want, N * OUT, 1e-6);
    matmul_forward(y0, x, w, NULL, N, IN, OUT);
    OPS_CHECK_CLOSE(what, y0, NULL, want0, N * OUT, 1e-6);

    float *dx = ops_rand_new(N * IN, 1.0f), *dw = ops_rand_new(OUT * IN, 1.0f), *db = ops_rand_new(OUT, 1.0f);
    float *dx0 = ops_copy(dx, N * IN), *dw0 = ops_copy(dw, OUT * IN), *db0 = ops_copy(db, OUT);
    matmul_backward(dx, dw, db, dy, x, w, N, IN, OUT);
    double *gx = xcalloc(N * IN, sizeof(double)), *gw = xcalloc(OUT * IN, sizeof(double));
    double *gb = xcalloc(OUT, sizeof(double));
    if (fd) {
        LinCtx c = {ops_to_double(x, N * IN), ops_to_double(w, OUT * IN), ops_to_double(b, OUT), dy, N, IN, OUT};
        ops_fd_grad(gx, c.x, N * IN, lin_loss, &c);
        ops_fd_grad(gw, c.w, OUT * IN, lin_loss, &c);
        ops_fd_grad(gb, c.b, OUT, lin_loss, &c);
        free(c.x), free(c.w), free(c.b);
    } else {
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < OUT; o++) {
                double g = dy[n * OUT + o];
                gb[o] += g;
                for (int64_t i = 0; i < IN; i++) {
                    gx[n * IN + i] += g * w[o * IN + i];
                    gw[o * IN + i] += g * x[n * IN + i];
                }
            }
    }
    snprintf(what, sizeof what, "linear backward N=%lld IN=%lld OUT=%lld isa=%s", (long long)N, (long long)IN,
             (long long)OUT, matmul_isa_name(matmul_active_isa()));
    OPS_CHECK_CLOSE(what, dx, dx0, gx, N * IN, 1e-5);
    OPS_CHECK_CLOSE(what, dw, dw0, gw, OUT * IN, 1e-5);
    OPS_CHECK_CLOSE(what, db, db0, gb, OUT, 1e-5);

    // NULL gradients are skipped without touching the others.
    float *dx2 = ops_copy(dx0, N * IN);
    matmul_backward(dx2, NULL, NULL, dy, x, w, N, IN, OUT);
    CHECK(memcmp(dx2, dx, (size_t)(N * IN) * sizeof(float)) == 0);
    free(x), free(w), free(b), free(dy), free(y), free(y0), free(want), free(want0), free(dx), free(dw), free(db);
    free(dx0), free(dw0), free(db0), free(gx), free(gw), free(gb), free(dx2);
}

static void for_each_isa(void (*fn)(void)) {
    const MatmulIsa isas[] = {MATMUL_ISA_SCALAR, MATMUL_ISA_AVX2, MATMUL_ISA_AVX512};
    int ran = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (matmul_force_isa(isas[i]) != 0) continue;
        CHECK_EQ_INT(matmul_active_isa(), isas[i]);
        fn();
        ran++;
    }
    CHECK(ran >= 1);
    CHECK(matmul_force_isa(MATMUL_ISA_AUTO) == 0);
}

static void linear_shapes(void) {
    check_linear(5, 7, 3, true);      // finite differences; N > 4 takes the packed GEMM
    check_linear(2, 9, 5, true);      // few rows: the dot-product path
    check_linear(37, 45, 29, false);  // odd sizes: partial tiles everywhere
    check_linear(1, 33, 17, false);
    check_linear(181, 263, 41, false); // M above every MC, K above KC: several blocks, accumulation across K
    check_linear(9, 20, 2100, false);  // OUT above NC
}

TEST(ops_matmul_linear_every_isa) { for_each_isa(linear_shapes); }

static void gemm_strides(void) {
    // C (M, N) = A^T-stored (K, M) times B stored (N, K) transposed, once fresh and once accumulated.
    const int64_t M = 19, N = 23, K = 300, ldc = 31;
    float *At = ops_rand_new(K * M, 1.0f), *Bt = ops_rand_new(N * K, 1.0f);
    float *C = ops_rand_new(M * ldc, 1.0f), *C0 = ops_copy(C, M * ldc);
    double *want = xmalloc_array(M * ldc, sizeof(double));
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < K && j < N; k++) s += (double)At[k * M + i] * Bt[j * K + k];
            want[i * ldc + j] = s;
        }
    matmul_gemm(M, N, K, At, 1, M, Bt, 1, K, C, ldc, true);
    float *padding = ops_copy(C0, M * ldc);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = N; j < ldc; j++) CHECK(C[i * ldc + j] == padding[i * ldc + j]); // beyond N untouched
    OPS_CHECK_CLOSE("gemm accumulate, transposed operands", C, C0, want, M * ldc, 2e-6);
    matmul_gemm(M, N, K, At, 1, M, Bt, 1, K, C, ldc, false);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = N; j < ldc; j++) C0[i * ldc + j] = C[i * ldc + j], want[i * ldc + j] = 0.0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C0[i * ldc + j] = 0.0f;
    OPS_CHECK_CLOSE("gemm overwrite", C, C0, want, M * ldc, 2e-6);
    // K = 0: overwrite zeroes C, accumulate leaves it.
    matmul_gemm(M, N, 0, At, 1, M, Bt, 1, K, C, ldc, false);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) CHECK(C[i * ldc + j] == 0.0f);
    free(At), free(Bt), free(C), free(C0), free(want), free(padding);
}

TEST(ops_matmul_gemm_strides_every_isa) { for_each_isa(gemm_strides); }

// Every height of a partial row panel (the AVX-512 kernel has a direct path for each of 1..13 leftover rows), with
// full and partial column panels, accumulated and fresh, against a double-precision product; C's columns past N
// stay untouched.
static void gemm_every_tail(void) {
    const int64_t K = 70, ldc = 67;
    for (int64_t M = 1; M <= 30; M++) {
        const int64_t N = M % 2 ? 64 : 45;
        float *A = ops_rand_new(M * K, 1.0f), *Bt = ops_rand_new(N * K, 1.0f);
        float *C = ops_rand_new(M * ldc, 1.0f), *C0 = ops_copy(C, M * ldc);
        double *want = xmalloc_array(M * ldc, sizeof(double));
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < ldc; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < K && j < N; k++) s += (double)A[i * K + k] * Bt[j * K + k];
                want[i * ldc + j] = s;
            }
        char what[96];
        snprintf(what, sizeof what, "gemm M=%lld N=%lld accumulate isa=%s", (long long)M, (long long)N, matmul_isa_name(matmul_active_isa()));
        matmul_gemm(M, N, K, A, K, 1, Bt, 1, K, C, ldc, true);
        OPS_CHECK_CLOSE(what, C, C0, want, M * ldc, 2e-6);
        snprintf(what, sizeof what, "gemm M=%lld N=%lld isa=%s", (long long)M, (long long)N, matmul_isa_name(matmul_active_isa()));
        matmul_gemm(M, N, K, A, K, 1, Bt, 1, K, C, ldc, false);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C0[i * ldc + j] = 0.0f;
        OPS_CHECK_CLOSE(what, C, C0, want, M * ldc, 2e-6);
        free(A), free(Bt), free(C), free(C0), free(want);
    }
}

TEST(ops_matmul_gemm_partial_tiles_every_isa) { for_each_isa(gemm_every_tail); }
