// train_gemm_bench.c — GFLOP/s of our f32 GEMM (kernels/matmul.h through the pool split of kernels/matmul_mt.h) on a
// large product (the machine "peak" lossy train reports against) and on the exact products of one training step of a
// Llama model (forward x W^T, backward dy W and dy^T x, for q/k/v/o, gate/up/down and the output head). Built and run
// by bench/train_bench.sh:
//
//   cc -O3 -march=native -Isrc bench/train_gemm_bench.c build/release/liblossy.a -lm -lpthread -o train_gemm_bench
//   train_gemm_bench THREADS DIM FFN TOKENS VOCAB
#include <stdio.h>
#include <stdlib.h>

#include "base/threadpool.h"
#include "base/util.h"
#include "kernels/matmul.h"
#include "kernels/matmul_mt.h"

static double bench(ThreadPool *pool, int64_t M, int64_t N, int64_t K, int kind) {
    // kind 0: C = A B^T-like forward (x W^T); 1: dx = dy W; 2: dW = dy^T x
    float *A = xmalloc_array((size_t)(M > K ? M : K) * (size_t)(K > N ? K : N) + (size_t)(M * K), sizeof(float));
    float *B = xmalloc_array((size_t)(K * N), sizeof(float)), *C = xmalloc_array((size_t)(M * N), sizeof(float));
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 17) * 0.01f;
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 13) * 0.01f;
    double best = 0;
    double end = time_now() + 0.5;
    int it = 0;
    do {
        double t0 = time_now();
        if (kind == 0) matmul_gemm_mt(pool, M, N, K, A, K, 1, B, 1, K, C, N, false);      // x (M,K) W (N,K)^T
        else if (kind == 1) matmul_gemm_mt(pool, M, N, K, A, K, 1, B, N, 1, C, N, true);  // dy (M,K) W (K,N)
        else matmul_gemm_mt(pool, M, N, K, A, 1, M, B, N, 1, C, N, true);                 // dy^T: A (K,M) read transposed
        double g = 2.0 * (double)M * N * K / (time_now() - t0) / 1e9;
        if (g > best) best = g;
        it++;
    } while (time_now() < end || it < 3);
    free(A), free(B), free(C);
    return best;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 1;
    int64_t C = argc > 2 ? atoll(argv[2]) : 288, F = argc > 3 ? atoll(argv[3]) : 768;
    int64_t N = argc > 4 ? atoll(argv[4]) : 4096, V = argc > 5 ? atoll(argv[5]) : 4096;
    ThreadPool *pool = threadpool_new(nt);
    printf("threads %d, isa %s\n", nt, matmul_isa_name(matmul_active_isa()));
    printf("peak (1024 x 1024 x 512, forward layout): %.1f GFLOP/s\n", bench(pool, 1024, 1024, 512, 0));
    printf("peak (2048 x 2048 x 2048): %.1f GFLOP/s\n", bench(pool, 2048, 2048, 2048, 0));
    struct {
        const char *name;
        int64_t out, in;
    } layers[] = {{"qkvo (C->C)", C, C}, {"gate/up (C->F)", F, C}, {"down (F->C)", C, F}, {"head (C->V)", V, C}};
    int64_t head_rows = ((int64_t)1 << 23) / V;
    head_rows = head_rows < 16 ? 16 : head_rows / 16 * 16;
    if (head_rows > N) head_rows = N;
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) {
        int64_t rows = i == 3 ? head_rows : N;
        printf("%-16s rows %lld: fwd %.1f  dx %.1f  dW %.1f GFLOP/s\n", layers[i].name, (long long)rows,
               bench(pool, rows, layers[i].out, layers[i].in, 0), bench(pool, rows, layers[i].in, layers[i].out, 1),
               bench(pool, layers[i].out, layers[i].in, rows, 2));
    }
    threadpool_free(pool);
    return 0;
}
