// gpu_train_bench.c — training throughput of the GPU trainer (src/cuda/train_gpu.h) on a GPT-2-small-sized Llama
// model: 12 layers, width 768, 12 heads, MLP 2048, vocabulary 50304, T = 1024, B = 16 (flags change them), random
// weights and uniformly random tokens (throughput does not depend on the data). Runs --steps optimizer steps, the
// first --warmup untimed; prints the memory plan, tokens/s over the timed steps and MFU = model FLOPs per token
// (6 N + 12 L C T, N = parameters in matrix products, the trainer's formula) x tokens/s / the bf16 GEMM peak measured
// in the same run with a large cuBLASLt GEMM on random operands. --attn picks the attention route(s) (LOSSY_ATTN):
// gemm, flash, or both (default; one run each, same weights and tokens). With LOSSY_CUDA_PROFILE=1 each route also
// prints the GPU time per kind of operation per step over the timed steps (train_gpu.h; the events add a little time,
// so take tokens/s from an unprofiled run).
//
// Usage: gpu_train_bench [--steps N] [--warmup N] [--batch B] [--seq T] [--accum K] [--layers L] [--dim C]
//                        [--heads H] [--vocab V] [--recompute] [--attn gemm|flash|both]
// One line per route: "gpu_train_bench: attention <route>: <tok/s> tokens/s, MFU <x>% (peak <y> TFLOP/s, ...)".
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "train/train_model.h"
#ifdef LOSSY_CUDA
#include "cuda/train_gpu.h"
#endif

#ifdef LOSSY_CUDA
static int64_t arg_int(int argc, char **argv, const char *name, int64_t def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return strtoll(argv[i + 1], NULL, 10);
    return def;
}

static int has_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

static const char *arg_str(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

typedef struct BenchShape {
    int64_t steps, warm, B, T, K, L, C, V;
    bool recompute;
} BenchShape;

// Train sh.steps steps with attention route `route` from m's weights; prints the plan, a few losses and the result
// line. 0 on success.
static int bench_route(const TrainModel *m, const BenchShape *sh, const char *route, double peak, double flops_tok) {
    Err e;
    if (setenv("LOSSY_ATTN", route, 1) != 0) {
        fprintf(stderr, "gpu_train_bench: setenv failed\n");
        return 1;
    }
    const int64_t B = sh->B, T = sh->T, K = sh->K, V = sh->V, BT = B * T;
    GpuTrain *g = NULL;
    char plan[640];
    int rc = gpu_train_new(&g, m, B, T, sh->recompute, plan, sizeof plan, &e);
    if (plan[0]) printf("%s\n", plan);
    if (rc || gpu_train_upload(g, m->params, NULL, NULL, &e)) {
        fprintf(stderr, "gpu_train_bench: %s\n", e.msg);
        gpu_train_free(g);
        return 1;
    }
    if (strcmp(gpu_train_attention(g), route) != 0) {
        fprintf(stderr, "gpu_train_bench: attention route %s is not available for this shape (runs %s)\n", route,
                gpu_train_attention(g));
        gpu_train_free(g);
        return 1;
    }
    int32_t *tok = xmalloc_array((size_t)(BT + 1), sizeof(int32_t));
    uint64_t x = 88172645463325252ull;
    double t_start = 0, loss = 0, gnorm = 0;
    rc = 1;
    for (int64_t s = 0; s < sh->steps; s++) {
        if (s == sh->warm) {
            t_start = time_now();
            gpu_train_profile_reset(g);
        }
        if (gpu_train_zero_grad(g, &e)) goto fail;
        for (int64_t k = 0; k < K; k++) {
            for (int64_t i = 0; i <= BT; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                tok[i] = (int32_t)(x % (uint64_t)V);
            }
            float scale = (float)(1.0 / ((double)BT * (double)K));
            if (gpu_train_micro_step(g, tok, tok + 1, B, T, scale, (double)scale, &e)) goto fail;
        }
        GpuAdamParams ap = {3e-4, 0.9, 0.95, 1e-8, 0.1, 1.0, s + 1};
        if (gpu_train_update(g, &ap, &loss, &gnorm, &e)) goto fail;
        if (s < 3 || s == sh->steps - 1)
            printf("%s step %lld: loss %.4f, gradient norm %.3f\n", route, (long long)s + 1, loss, gnorm);
        if (!isfinite(loss)) {
            fprintf(stderr, "gpu_train_bench: %s: loss is not finite at step %lld\n", route, (long long)s + 1);
            goto done;
        }
    }
    {
        double dt = time_now() - t_start, tokens = (double)(sh->steps - sh->warm) * (double)(BT * K);
        double tps = tokens / dt, mfu = 100.0 * flops_tok * tps / (peak * 1e12);
        printf("gpu_train_bench: attention %s: %.0f tokens/s, MFU %.1f%% (peak %.0f TFLOP/s measured, batch %lld x %lld "
               "x %lld accum%s, %lld timed steps, %.1f ms/step)\n",
               route, tps, mfu, peak, (long long)B, (long long)T, (long long)K, sh->recompute ? ", recompute" : "",
               (long long)(sh->steps - sh->warm), 1e3 * dt / (double)(sh->steps - sh->warm));
        if (gpu_train_profiling(g)) {
            char *rep = xmalloc(8192);
            gpu_train_profile_report(g, rep, 8192);
            printf("gpu_train_bench: profile, attention %s (GPU time per step; launch groups per step):\n%s", route, rep);
            free(rep);
        }
        fflush(stdout);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "gpu_train_bench: %s: %s\n", route, e.msg);
done:
    gpu_train_free(g);
    free(tok);
    return rc;
}
#endif

int main(int argc, char **argv) {
#ifndef LOSSY_CUDA
    (void)argc, (void)argv;
    fprintf(stderr, "gpu_train_bench: built without CUDA\n");
    return 1;
#else
    const int64_t steps = arg_int(argc, argv, "--steps", 30), warm = arg_int(argc, argv, "--warmup", 5);
    const int64_t B = arg_int(argc, argv, "--batch", 16), T = arg_int(argc, argv, "--seq", 1024);
    const int64_t K = arg_int(argc, argv, "--accum", 1), L = arg_int(argc, argv, "--layers", 12);
    const int64_t C = arg_int(argc, argv, "--dim", 768), H = arg_int(argc, argv, "--heads", 12);
    const int64_t V = arg_int(argc, argv, "--vocab", 50304);
    const bool recompute = has_flag(argc, argv, "--recompute");
    const char *attn = arg_str(argc, argv, "--attn", "both");
    if (steps <= warm || B < 1 || T < 2 || K < 1) {
        fprintf(stderr, "gpu_train_bench: need --steps > --warmup, positive batch/seq/accum\n");
        return 2;
    }
    if (strcmp(attn, "gemm") != 0 && strcmp(attn, "flash") != 0 && strcmp(attn, "both") != 0) {
        fprintf(stderr, "gpu_train_bench: --attn must be gemm, flash or both\n");
        return 2;
    }
    Err e;
    ModelConfig cfg;
    TrainModel m;
    if (train_config_llama(&cfg, V, L, C, H, H, 0, T, true, &e) || train_model_init(&m, &cfg, NULL, &e)) {
        fprintf(stderr, "gpu_train_bench: %s\n", e.msg);
        return 1;
    }
    train_model_init_weights(&m, 1234);
    double peak = 0;
    if (gpu_measure_bf16_tflops(1.0, &peak, &e)) {
        fprintf(stderr, "gpu_train_bench: %s\n", e.msg);
        train_model_free(&m);
        return 1;
    }
    double flops_tok = 6.0 * (double)train_model_matmul_params(&m) + 12.0 * (double)L * (double)C * (double)T;
    printf("model: %lld layers x %lld, vocab %lld, %.1fM parameters; %.3f GFLOP per token; bf16 GEMM peak %.0f "
           "TFLOP/s (8192^3, random operands)\n",
           (long long)L, (long long)C, (long long)V, (double)m.n_params / 1e6, flops_tok / 1e9, peak);
    BenchShape sh = {steps, warm, B, T, K, L, C, V, recompute};
    int rc = 0;
    if (strcmp(attn, "flash") != 0) rc |= bench_route(&m, &sh, "gemm", peak, flops_tok);
    if (strcmp(attn, "gemm") != 0) rc |= bench_route(&m, &sh, "flash", peak, flops_tok);
    train_model_free(&m);
    return rc;
#endif
}
