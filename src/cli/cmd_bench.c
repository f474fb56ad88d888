// cmd_bench.c — `lossy bench`: how fast a model runs here, and how close that is to the machine's limits.
//
//   lossy bench --machine                 streaming read bandwidth (GB/s) and the peak of our own f32 GEMM (GFLOP/s)
//   lossy bench MODEL [-p 128] [-n 128]   prompt processing and generation tokens/s (median and spread over
//                                         --repeat runs after a warm-up), generation as a fraction of bandwidth
//                                         (weight bytes read per token / measured GB/s)
// Speed is measured here, never asserted in tests; bench/RESULTS.md records figures with their commands.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "cli/cli.h"
#include "kernels/matmul.h"
#include "model/model.h"

static const CliFlag FLAGS[] = {
    {"machine", 0, FLAG_BOOL, NULL, NULL, "measure the machine: read bandwidth and GEMM peak (no MODEL)"},
    {"prompt", 'p', FLAG_INT, "N", "128", "prompt tokens to process"},
    {"gen", 'n', FLAG_INT, "N", "128", "tokens to generate"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"repeat", 'r', FLAG_INT, "R", "3", "measured runs (after one warm-up)"},
    {"bandwidth", 0, FLAG_FLOAT, "GB/s", NULL, "use this bandwidth instead of measuring it"},
    {"json", 0, FLAG_BOOL, NULL, NULL, "print machine-readable JSON"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

// ---- machine limits ----

typedef struct {
    const uint64_t *buf; // (n)
    int64_t n;
    uint64_t sums[512];
} ReadJob;

static void read_worker(void *ctx, int ith, int nth) {
    ReadJob *j = ctx;
    int64_t a, b;
    threadpool_split(j->n, ith, nth, &a, &b);
    // XOR into 16 independent lanes: one-cycle integer ops that the compiler vectorises, so the loop is bound by
    // loads from memory and nothing else
    uint64_t s[16] = {0};
    int64_t i = a;
    for (; i + 16 <= b; i += 16)
        for (int k = 0; k < 16; k++) s[k] ^= j->buf[i + k];
    for (; i < b; i++) s[0] ^= j->buf[i];
    uint64_t x = 0;
    for (int k = 0; k < 16; k++) x ^= s[k];
    j->sums[ith] = x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Read bandwidth in GB/s: best of several passes over a buffer far larger than the caches.
static double measure_bandwidth(ThreadPool *pool) {
    const int64_t n = (int64_t)1 << 27; // 1 GiB
    uint64_t *buf = xmalloc_array((size_t)n, sizeof(uint64_t));
    for (int64_t i = 0; i < n; i++) buf[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    ReadJob j = {buf, n, {0}};
    double best = 0;
    for (int pass = 0; pass < 6; pass++) {
        double t0 = time_now();
        threadpool_run(pool, read_worker, &j);
        double dt = time_now() - t0, gbs = (double)n * sizeof(uint64_t) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

typedef struct {
    int64_t M;
    float *x[512], *w[512], *y[512];
} GemmJob;

static void gemm_worker(void *ctx, int ith, int nth) {
    GemmJob *j = ctx;
    matmul_forward(j->y[ith], j->x[ith], j->w[ith], NULL, j->M, j->M, j->M);
}

// Peak GFLOP/s of our f32 GEMM: every thread multiplies its own square matrices.
static double measure_gemm(ThreadPool *pool) {
    const int64_t M = 512;
    int nt = threadpool_size(pool);
    GemmJob j = {.M = M};
    for (int t = 0; t < nt; t++) {
        j.x[t] = xmalloc_array((size_t)(M * M), sizeof(float));
        j.w[t] = xmalloc_array((size_t)(M * M), sizeof(float));
        j.y[t] = xmalloc_array((size_t)(M * M), sizeof(float));
        for (int64_t i = 0; i < M * M; i++) j.x[t][i] = (float)((i * 7) % 13) * 0.1f, j.w[t][i] = (float)((i * 5) % 11) * 0.1f;
    }
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = time_now();
        threadpool_run(pool, gemm_worker, &j);
        double dt = time_now() - t0, gf = 2.0 * M * M * M * nt / dt / 1e9;
        if (gf > best) best = gf;
    }
    for (int t = 0; t < nt; t++) free(j.x[t]), free(j.w[t]), free(j.y[t]);
    return best;
}

// ---- model ----

typedef struct {
    double med, lo, hi;
} Spread;

static Spread spread(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    Spread s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

static int bench_model(const CliArgs *a, ThreadPool *pool, double bw) {
    const char *path = a->pos[0];
    Err e;
    Model m;
    if (model_load(&m, path, &e)) return cli_fail(&e, path);
    int64_t np = cli_flag_int(a, "prompt"), ng = cli_flag_int(a, "gen"), reps = cli_flag_int(a, "repeat");
    if (np < 1 || ng < 1 || reps < 1 || reps > 100) {
        model_free(&m);
        return cli_errorf(EXIT_USAGE, "lossy bench --help", "--prompt and --gen must be >= 1, --repeat 1..100");
    }
    ModelState s;
    if (model_state_init(&s, &m, np + ng, pool, &e)) {
        model_free(&m);
        return cli_fail(&e, path);
    }
    int rc = EXIT_OK;
    if (s.n_ctx < np + ng) {
        rc = cli_errorf(EXIT_USAGE, "--prompt", "prompt + gen (%lld) exceed the model's context (%lld)", (long long)(np + ng), (long long)s.n_ctx);
        goto out;
    }
    int32_t *prompt = xmalloc_array((size_t)np, sizeof *prompt);
    for (int64_t i = 0; i < np; i++) prompt[i] = (int32_t)((i * 7919 + 13) % m.cfg.vocab_size);
    double *pp = xmalloc_array((size_t)reps, sizeof(double)), *tg = xmalloc_array((size_t)reps, sizeof(double));
    for (int64_t r = -1; r < reps && rc == EXIT_OK; r++) { // r = -1: warm-up
        model_state_reset(&s);
        double t0 = time_now();
        if (model_forward(&s, prompt, np, &e)) {
            rc = cli_fail(&e, path);
            break;
        }
        double t1 = time_now();
        int32_t tok = prompt[np - 1];
        for (int64_t i = 0; i < ng && rc == EXIT_OK; i++) {
            tok = (tok + 1) % (int32_t)m.cfg.vocab_size; // content does not matter for speed
            if (model_forward(&s, &tok, 1, &e)) rc = cli_fail(&e, path);
        }
        double t2 = time_now();
        if (r >= 0) {
            pp[r] = (double)np / (t1 - t0);
            tg[r] = (double)ng / (t2 - t1);
        }
    }
    if (rc == EXIT_OK) {
        Spread P = spread(pp, (int)reps), G = spread(tg, (int)reps);
        double bytes = (double)model_weight_bytes(&m), frac = bw > 0 ? G.med * bytes / (bw * 1e9) : 0;
        if (cli_flag_bool(a, "json")) {
            json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:I, s:f, s:[f,f], s:f, s:[f,f], s:f, s:f}", "model", path, "threads",
                                  threadpool_size(pool), "prompt_tokens", (json_int_t)np, "gen_tokens", (json_int_t)ng,
                                  "weight_bytes", (json_int_t)bytes, "pp_tok_s", P.med, "pp_range", P.lo, P.hi, "tg_tok_s",
                                  G.med, "tg_range", G.lo, G.hi, "bandwidth_gb_s", bw, "tg_bandwidth_fraction", frac);
            char *txt = json_dumps(j, JSON_INDENT(2));
            puts(txt);
            free(txt);
            json_decref(j);
        } else {
            printf("model: %s (%.1f MB of weights read per token), %d threads\n", path, bytes / 1e6, threadpool_size(pool));
            printf("prompt processing: %8.1f tok/s (range %.1f .. %.1f, %lld tokens, %lld runs)\n", P.med, P.lo, P.hi, (long long)np, (long long)reps);
            printf("generation:        %8.1f tok/s (range %.1f .. %.1f, %lld tokens)\n", G.med, G.lo, G.hi, (long long)ng);
            if (bw > 0) printf("generation reads %.1f GB/s = %.0f%% of the measured %.1f GB/s read bandwidth\n", G.med * bytes / 1e9, 100 * frac, bw);
        }
    }
    free(pp);
    free(tg);
    free(prompt);
out:
    model_state_free(&s);
    model_free(&m);
    return rc;
}

static int run(const CliArgs *a) {
    bool machine = cli_flag_bool(a, "machine");
    if (machine == (a->n_pos == 1)) return cli_errorf(EXIT_USAGE, "lossy bench --help", "give either MODEL or --machine");
    ThreadPool *pool = threadpool_new(cli_flag_given(a, "threads") ? (int)cli_flag_int(a, "threads") : 0);
    int rc = EXIT_OK;
    if (machine) {
        double bw = measure_bandwidth(pool), gf = measure_gemm(pool);
        char feats[256];
        cpu_features_string(feats, sizeof feats);
        if (cli_flag_bool(a, "json"))
            printf("{\"threads\": %d, \"read_bandwidth_gb_s\": %.2f, \"gemm_f32_gflop_s\": %.2f}\n", threadpool_size(pool), bw, gf);
        else
            printf("cpu: %s\nthreads: %d\nread bandwidth: %.2f GB/s\nf32 GEMM peak (ours, 512^3 per thread): %.1f GFLOP/s\n", feats,
                   threadpool_size(pool), bw, gf);
    } else {
        double bw = cli_flag_given(a, "bandwidth") ? cli_flag_float(a, "bandwidth") : measure_bandwidth(pool);
        rc = bench_model(a, pool, bw);
    }
    threadpool_free(pool);
    return rc;
}

const CliCommand cmd_bench = {
    .name = "bench",
    .summary = "measure prompt/generation speed of a model, or the machine's bandwidth and GEMM peak",
    .usage = "[MODEL]",
    .min_pos = 0,
    .max_pos = 1,
    .flags = FLAGS,
    .run = run,
};
