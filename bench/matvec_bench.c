// matvec_bench.c — single-thread y = W x throughput per weight dtype and kernel path, in GB/s of weight bytes, plus
// the quantizers' error (searched vs naive min/max scales). Built by hand (see bench/RESULTS.md, matvec section):
//
//   make B=build/m1 build/m1/liblossy.a
//   cc -O3 -march=native -Isrc bench/matvec_bench.c build/m1/liblossy.a -lm -lpthread -o build/m1/matvec_bench
//   build/m1/matvec_bench [rows cols [dtype]]    (default 4096 4096, every dtype; with dtype: only its speed)
//
// "hot": the same matrix again and again (it stays in cache when it fits: L2/L3 figures for the small dtypes).
// "stream": a ring of copies totalling > 1 GiB (more than any L3), so every product reads its weights from DRAM.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/util.h"
#include "kernels/matvec.h"
#include "kernels/quant.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double urand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2 * log(urand() + 1e-12)) * cos(2 * M_PI * urand())); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Median seconds per product over `reps` runs, cycling through n_mats matrices.
static double time_products(DType t, uint8_t **mats, int n_mats, size_t rb, int64_t rows, int64_t cols,
                            const float *x, float *y, MatvecAct *act, int reps) {
    double *ts = malloc(sizeof(double) * (size_t)reps);
    Err e;
    for (int i = 0; i < n_mats; i++) matvec(t, mats[i], rb, rows, cols, x, y, act, &e); // warm-up
    for (int r = 0; r < reps; r++) {
        double t0 = time_now();
        matvec(t, mats[r % n_mats], rb, rows, cols, x, y, act, &e);
        ts[r] = time_now() - t0;
    }
    qsort(ts, (size_t)reps, sizeof(double), cmp_double);
    double med = ts[reps / 2];
    free(ts);
    return med;
}

int main(int argc, char **argv) {
    int64_t rows = argc > 2 ? atoll(argv[1]) : 4096, cols = argc > 2 ? atoll(argv[2]) : 4096;
    char feat[256];
    cpu_features_string(feat, sizeof feat);
    printf("cpu: %s\nmatrix %lld x %lld, 1 thread, median of repeated products\n\n", feat, (long long)rows,
           (long long)cols);

    float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
    float *x = malloc(sizeof(float) * (size_t)cols), *y = malloc(sizeof(float) * (size_t)rows);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = 0.02f * gauss();
    for (int64_t i = 0; i < cols; i++) x[i] = gauss();

    const DType types[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
    const KernelPath paths[] = {KERNEL_SCALAR, KERNEL_AVX2, KERNEL_AVX512};
    printf("%-6s %9s | %-7s %10s %10s %12s\n", "dtype", "MiB", "path", "hot GB/s", "stream GB/s", "us/product");
    MatvecAct act;
    matvec_act_init(&act);
    Err e;
    const int only = argc > 3 ? dtype_from_name(argv[3]) : -1;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        DType t = types[k];
        if (only >= 0 && (int)t != only) continue;
        size_t rb;
        if (quant_row_bytes(t, cols, &rb, &e)) {
            printf("%s: %s\n", dtype_name(t), e.msg);
            continue;
        }
        size_t bytes = rb * (size_t)rows;
        int n_copies = (int)(((size_t)1 << 30) / bytes) + 1; // > the 480 MiB L3 seen here
        uint8_t **mats = malloc(sizeof(uint8_t *) * (size_t)n_copies);
        mats[0] = malloc(bytes);
        QuantOpts naive = {.naive = true}; // quantizer quality is measured below; this is only about speed
        for (int64_t r = 0; r < rows; r++)
            if (quant_quantize_row(t, wf + r * cols, mats[0] + (size_t)r * rb, cols, &naive, &e)) {
                printf("%s\n", e.msg);
                return 1;
            }
        for (int c = 1; c < n_copies; c++) {
            mats[c] = malloc(bytes);
            memcpy(mats[c], mats[0], bytes);
        }
        for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
            if (!matvec_path_available(paths[p])) continue;
            matvec_force_path(paths[p], &e);
            // Aim for ~0.3 s per measurement.
            double one = time_products(t, mats, 1, rb, rows, cols, x, y, &act, 3);
            int reps = (int)(0.3 / (one + 1e-9));
            reps = reps < 5 ? 5 : reps > 2000 ? 2000 : reps;
            double hot = time_products(t, mats, 1, rb, rows, cols, x, y, &act, reps);
            double cold = time_products(t, mats, n_copies, rb, rows, cols, x, y, &act, reps > n_copies ? reps : n_copies);
            printf("%-6s %9.1f | %-7s %10.1f %10.1f %12.1f\n", dtype_name(t), (double)bytes / (1 << 20),
                   matvec_path_name(paths[p]), (double)bytes / hot / 1e9, (double)bytes / cold / 1e9, hot * 1e6);
            fflush(stdout);
        }
        for (int c = 0; c < n_copies; c++) free(mats[c]);
        free(mats);
    }
    matvec_force_path(KERNEL_AUTO, &e);
    if (only >= 0) return 0;

    // Streaming read bandwidth of this machine (one thread), for scale: an integer sum the compiler vectorizes.
    {
        size_t n = (size_t)1 << 30;
        uint64_t *buf = malloc(n);
        for (size_t i = 0; i < n / 8; i++) buf[i] = i;
        double best = 1e9;
        uint64_t total = 0;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = time_now();
            uint64_t s = 0;
            for (size_t i = 0; i < n / 8; i++) s += buf[i];
            double dt = time_now() - t0;
            total += s;
            if (dt < best) best = dt;
        }
        printf("\nstreaming read (vectorized integer sum over 1 GiB, 1 thread, best of 5): %.1f GB/s%s\n",
               (double)n / best / 1e9, total == 42 ? " " : "");
        free(buf);
    }

    // Quantizer error on Gaussian rows: searched scales vs naive min/max scales.
    printf("\nquantize -> dequantize relative RMSE on %lld Gaussian values:\n", (long long)(rows * cols / 16));
    const DType qtypes[] = {DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q5_K, DT_Q6_K};
    int64_t n = rows * cols / 16;
    n -= n % 256;
    float *back = malloc(sizeof(float) * (size_t)n);
    for (size_t k = 0; k < sizeof qtypes / sizeof qtypes[0]; k++) {
        size_t rb;
        quant_row_bytes(qtypes[k], n, &rb, &e);
        uint8_t *q = malloc(rb);
        double rel[2], secs[2];
        for (int nv = 0; nv < 2; nv++) {
            QuantOpts o = {.naive = nv == 1};
            double t0 = time_now();
            quant_quantize_row(qtypes[k], wf, q, n, &o, &e);
            secs[nv] = time_now() - t0;
            quant_dequantize_row(qtypes[k], q, back, n, &e);
            double num = 0, den = 0;
            for (int64_t i = 0; i < n; i++) num += (wf[i] - back[i]) * (double)(wf[i] - back[i]), den += (double)wf[i] * wf[i];
            rel[nv] = sqrt(num / den);
        }
        printf("  %-5s searched %.5f (%5.1f ns/value)   naive %.5f (%4.1f ns/value)   search gain %.1f%%\n",
               dtype_name(qtypes[k]), rel[0], secs[0] * 1e9 / (double)n, rel[1], secs[1] * 1e9 / (double)n,
               100 * (1 - rel[0] / rel[1]));
        free(q);
    }
    free(back);
    matvec_act_free(&act);
    free(wf);
    free(x);
    free(y);
    return 0;
}
