// matmul_mt.c — matmul_gemm split over the thread pool by blocks of the output (see matmul_mt.h).
//
// Why the cut is on the output: a thread that owns whole elements of C runs the full K loop for them, so the sum
// order — and with it every rounding — is the one the single-threaded GEMM uses. Splitting K instead would need a
// reduction whose order depends on the thread count. Rows are cut in multiples of 16 and columns in multiples of
// 32 so that nearly every register tile of the micro-kernels (14 or 6 rows, 32 or 16 columns) stays full.
// (Threads share nothing, so each packs its own blocks; sharing one packed B panel between threads is the next
// step for many cores, where repeated packing grows with the thread count.)
#include "kernels/matmul_mt.h"

#include <string.h>

#include "kernels/matmul.h"

// Below this many multiply-adds (~10 us of one core) a product runs on the calling thread: waking workers costs
// microseconds, and far more when the machine is oversubscribed and a worker has to be scheduled first.
#define MT_MIN_WORK ((int64_t)1 << 20)

typedef struct GemmJob {
    int64_t M, N, K;
    const float *A;
    int64_t rsa, csa;
    const float *B;
    int64_t rsb, csb;
    float *C;
    int64_t ldc;
    bool accumulate;
    bool by_rows; // cut M (rows of C) or N (columns of C)
} GemmJob;

// Part ith of [0, n) in units of `unit` (the last part takes the remainder).
static void split_units(int64_t n, int64_t unit, int ith, int nth, int64_t *s, int64_t *e) {
    int64_t units = (n + unit - 1) / unit, us, ue;
    threadpool_split(units, ith, nth, &us, &ue);
    *s = us * unit < n ? us * unit : n;
    *e = ue * unit < n ? ue * unit : n;
}

static void gemm_worker(void *ctx, int ith, int nth) {
    const GemmJob *j = ctx;
    int64_t s, e;
    if (j->by_rows) {
        split_units(j->M, 16, ith, nth, &s, &e);
        if (e > s)
            matmul_gemm(e - s, j->N, j->K, j->A + s * j->rsa, j->rsa, j->csa, j->B, j->rsb, j->csb, j->C + s * j->ldc,
                        j->ldc, j->accumulate);
    } else {
        split_units(j->N, 32, ith, nth, &s, &e);
        if (e > s)
            matmul_gemm(j->M, e - s, j->K, j->A, j->rsa, j->csa, j->B + s * j->csb, j->rsb, j->csb, j->C + s, j->ldc,
                        j->accumulate);
    }
}

void matmul_gemm_mt(ThreadPool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                    const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    int nth = threadpool_size(pool);
    GemmJob j = {M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, true};
    if (nth == 1 || M * N * (K > 0 ? K : 1) < MT_MIN_WORK) {
        matmul_gemm(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate);
        return;
    }
    // Each thread packs the whole of the operand it does not cut: cutting rows repeats B's packing (K x N) on every
    // thread, cutting columns repeats A's (M x K). Cut the larger of M and N (unless it is too small to share).
    // An output head with a large vocabulary (N = V) and a small batch (B4 x T64: M = 256) are the cases where this
    // matters: the wrong cut there costs a quarter of the product in repeated packing.
    bool rows_ok = M >= 16 * (int64_t)nth, cols_ok = N >= 32 * (int64_t)nth;
    j.by_rows = rows_ok && (M >= N || !cols_ok);
    threadpool_run(pool, gemm_worker, &j);
}

void matmul_forward_mt(ThreadPool *pool, float *y, const float *x, const float *w, const float *b, int64_t N,
                       int64_t IN, int64_t OUT) {
    if (b)
        for (int64_t n = 0; n < N; n++) memcpy(y + n * OUT, b, (size_t)OUT * sizeof(float));
    // op(A) = x (N, IN); op(B) = W^T (IN, OUT): element (k, j) = w[j * IN + k]
    matmul_gemm_mt(pool, N, OUT, IN, x, IN, 1, w, 1, IN, y, OUT, b != NULL);
}

typedef struct BiasJob {
    float *db;
    const float *dy;
    int64_t N, OUT;
} BiasJob;

// Column sums in row order per column: the same order whichever thread owns the column.
static void bias_worker(void *ctx, int ith, int nth) {
    const BiasJob *j = ctx;
    int64_t s, e;
    threadpool_split(j->OUT, ith, nth, &s, &e);
    for (int64_t n = 0; n < j->N; n++) {
        const float *g = j->dy + n * j->OUT; // (OUT)
        for (int64_t o = s; o < e; o++) j->db[o] += g[o];
    }
}

void matmul_backward_dx_mt(ThreadPool *pool, float *dx, const float *dy, const float *w, int64_t N, int64_t IN,
                           int64_t OUT, bool accumulate) {
    // dx (N, IN) (+)= dy (N, OUT) W (OUT, IN)
    matmul_gemm_mt(pool, N, IN, OUT, dy, OUT, 1, w, IN, 1, dx, IN, accumulate);
}

void matmul_backward_dw_mt(ThreadPool *pool, float *dw, const float *dy, const float *x, int64_t N, int64_t IN,
                           int64_t OUT) {
    // dw (OUT, IN) += dy^T (OUT, N) x (N, IN): op(A) element (o, n) = dy[n * OUT + o]
    matmul_gemm_mt(pool, OUT, IN, N, dy, 1, OUT, x, IN, 1, dw, IN, true);
}

void matmul_backward_mt(ThreadPool *pool, float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t N, int64_t IN, int64_t OUT) {
    if (dx) matmul_backward_dx_mt(pool, dx, dy, w, N, IN, OUT, true);
    if (dw) matmul_backward_dw_mt(pool, dw, dy, x, N, IN, OUT);
    if (db) {
        BiasJob j = {db, dy, N, OUT};
        if (N * OUT < MT_MIN_WORK) bias_worker(&j, 0, 1);
        else threadpool_run(pool, bias_worker, &j);
    }
}
