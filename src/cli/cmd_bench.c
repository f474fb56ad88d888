// cmd_bench.c — `lossy bench`: how fast a model runs here, and how close that is to the machine's limits.
//
//   lossy bench --machine                 streaming read bandwidth (GB/s) over 1 GiB in huge pages and in 4 KiB
//                                         pages (as mmapped weights are) and over 64 MiB (L3-sized), the peak of our
//                                         f32 GEMM (GFLOP/s) and of the int8 GEMM behind quantized prompt processing
//   lossy bench MODEL [-p 128] [-n 128]   prompt processing and generation tokens/s (median and spread over
//                                         --repeat runs after a warm-up; as llama-bench, the prompt is processed in
//                                         one call and generation starts from an empty context), generation as a
//                                         fraction of the bandwidth at which the bytes it reads per token can be read
//                                         where they lie (weight bytes per token / GB/s) and of the machine's memory
//                                         bandwidth (a model that fits in the cache exceeds it), prompt processing as
//                                         a fraction of the GEMM peak
// Speed is measured here, never asserted in tests; bench/RESULTS*.md record figures with their commands.
//
// The read bandwidth is what a well-written kernel can get: every thread streams its own contiguous part with
// 64-byte vector loads and software prefetch a few lines ahead (the hardware streamer alone leaves about a third of
// the bandwidth unused on this class of machine), on a buffer advised for huge pages, best of several passes.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "cli/cli.h"
#include "cli/cli_device.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/wgemm.h"
#include "model/model.h"
#include "model/model_device.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static const CliFlag FLAGS[] = {
    {"machine", 0, FLAG_BOOL, NULL, NULL, "measure the machine: read bandwidth and GEMM peaks (no MODEL)"},
    {"prompt", 'p', FLAG_INT, "N", "128", "prompt tokens to process"},
    {"gen", 'n', FLAG_INT, "N", "128", "tokens to generate"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"repeat", 'r', FLAG_INT, "R", "3", "measured runs (after one warm-up)"},
    {"bandwidth", 0, FLAG_FLOAT, "GB/s", NULL, "use this bandwidth instead of measuring it (skips both read measurements)"},
    {"json", 0, FLAG_BOOL, NULL, NULL, "print machine-readable JSON"},
    CLI_DEVICE_FLAG,
    {NULL, 0, 0, NULL, NULL, NULL},
};

// ---- machine limits ----

// Byte ranges read by the threads together: thread i takes a contiguous share of their concatenation.
typedef struct {
    const uint8_t *const *ptr;
    const size_t *len;
    size_t n;     // ranges
    size_t total; // bytes
    uint64_t sums[512];
} ReadJob;

#if defined(__x86_64__)
// The loads address the data as base + index and the prefetches go through a second pointer 1 KiB ahead. Written in
// assembly because the compiler's choice of addressing decides the result: the same loop with base + displacement
// loads off one moving pointer (what gcc makes of it when the prefetch distance is a constant) reads 1 GiB at 31 GB/s
// on 2 threads of this machine, this form at 36-37 (pure-read scratch variants, pthreads and the pool alike). A
// probe that reads slower than the machine can would make every kernel look closer to the limit than it is.
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t n) {
    n &= ~(size_t)255;
    if (n == 0) return 0;
    const uint8_t *ahead = p + 1024;
    size_t i = 0;
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    __asm__ volatile("1:\n\t"
                     "vpaddq (%[p],%[i]), %[s0], %[s0]\n\t"
                     "vpaddq 64(%[p],%[i]), %[s1], %[s1]\n\t"
                     "vpaddq 128(%[p],%[i]), %[s2], %[s2]\n\t"
                     "vpaddq 192(%[p],%[i]), %[s3], %[s3]\n\t"
                     "add $256, %[i]\n\t"
                     "prefetcht0 (%[a])\n\t"
                     "prefetcht0 64(%[a])\n\t"
                     "prefetcht0 128(%[a])\n\t"
                     "prefetcht0 192(%[a])\n\t"
                     "add $256, %[a]\n\t"
                     "cmp %[n], %[i]\n\t"
                     "jb 1b"
                     : [i] "+&r"(i), [a] "+&r"(ahead), [s0] "+v"(s0), [s1] "+v"(s1), [s2] "+v"(s2), [s3] "+v"(s3)
                     : [p] "r"(p), [n] "r"(n)
                     : "cc", "memory");
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
}

// The compiler's addressing is fine here: this loop reads 1 GiB at 35.7-36.2 GB/s on 2 threads of this machine, as
// fast as the AVX-512 probe (an assembly version of it: the same).
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        _mm_prefetch((const char *)p + i + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)p + i + 1088, _MM_HINT_T0);
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(const void *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 32)));
        s2 = _mm256_add_epi64(s2, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 64)));
        s3 = _mm256_add_epi64(s3, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)(void *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}
#endif

static uint64_t read_portable(const uint8_t *p, size_t n) {
    uint64_t s[8] = {0};
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int k = 0; k < 8; k++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * k, 8);
            s[k] += v;
        }
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static uint64_t read_bytes(const uint8_t *p, size_t n) {
#if defined(__x86_64__)
    const CpuFeatures *f = cpu_features();
    if (f->avx512f) return read_avx512(p, n);
    if (f->avx2) return read_avx2(p, n);
#endif
    return read_portable(p, n);
}

static void read_worker(void *ctx, int ith, int nth) {
    ReadJob *j = ctx;
    int64_t a, b;
    threadpool_split((int64_t)(j->total / 256), ith, nth, &a, &b);
    size_t lo = (size_t)a * 256, hi = (size_t)b * 256, base = 0;
    uint64_t sum = 0;
    for (size_t r = 0; r < j->n && base < hi; base += j->len[r], r++) {
        size_t s = lo > base ? lo - base : 0, e = hi - base < j->len[r] ? hi - base : j->len[r];
        if (s < e) sum += read_bytes(j->ptr[r] + s, e - s);
    }
    j->sums[ith] = sum;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Read bandwidth in GB/s over the given ranges: best of several passes (at least ~8 GB read in all) after one
// warm-up pass.
static double measure_ranges(ThreadPool *pool, const uint8_t *const *ptr, const size_t *len, size_t n) {
    ReadJob *j = xcalloc(1, sizeof *j);
    j->ptr = ptr, j->len = len, j->n = n;
    for (size_t i = 0; i < n; i++) j->total += len[i];
    if (j->total < 256) {
        free(j);
        return 0;
    }
    int passes = (int)(((size_t)8 << 30) / j->total);
    passes = passes < 5 ? 5 : passes > 200 ? 200 : passes;
    double best = 0;
    threadpool_run(pool, read_worker, j);
    for (int pass = 0; pass < passes; pass++) {
        double t0 = time_now();
        threadpool_run(pool, read_worker, j);
        double dt = time_now() - t0, gbs = (double)j->total / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(j);
    return best;
}

// Over a fresh buffer of `bytes`, in huge pages (madvised) or in ordinary 4 KiB pages.
static double measure_bandwidth(ThreadPool *pool, size_t bytes, bool huge) {
    bytes = (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    void *mem = NULL;
    if (posix_memalign(&mem, (size_t)2 << 20, bytes) != 0) return 0;
#ifdef MADV_HUGEPAGE
    madvise(mem, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#endif
    uint8_t *buf = mem;
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t v = (uint64_t)i * 0x9E3779B97F4A7C15ull;
        memcpy(buf + i, &v, 8);
    }
    const uint8_t *p = buf;
    double bw = measure_ranges(pool, &p, &bytes, 1);
    free(mem);
    return bw;
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

typedef struct {
    const uint8_t *w;
    size_t stride;
    int64_t rows;
    WgemmAct *act;
    float *y;
    WgemmScratch scratch[512];
} QGemmJob;

static void qgemm_worker(void *ctx, int ith, int nth) {
    QGemmJob *j = ctx;
    int64_t u0, u1;
    threadpool_split(j->rows / WGEMM_ROW_UNIT, ith, nth, &u0, &u1);
    wgemm_rows(DT_Q8_0, j->w, j->stride, u0 * WGEMM_ROW_UNIT, u1 * WGEMM_ROW_UNIT, j->act, j->y, j->rows, &j->scratch[ith]);
}

// Peak of the quantized prompt-processing GEMM (Q8_0 weights, 128 tokens, 1024 x 2048 per thread), in GOP/s
// (2 operations per multiply-add); *path names the engine (amx or f32).
static double measure_qgemm(ThreadPool *pool, const char **path) {
    const int64_t N = 128, K = 2048, rows = 1024 * (int64_t)threadpool_size(pool);
    size_t stride;
    Err e;
    if (quant_row_bytes(DT_Q8_0, K, &stride, &e)) return 0;
    uint8_t *w = xmalloc(stride * (size_t)rows);
    float *x = xmalloc_array((size_t)(N * K), sizeof(float)), *y = xmalloc_array((size_t)(N * rows), sizeof(float));
    float *row = xmalloc_array((size_t)K, sizeof(float));
    QuantOpts naive = {.naive = true};
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < K; i++) row[i] = (float)(((r + 1) * (i + 3) * 2654435761u) % 2000) * 0.001f - 1.0f;
        quant_quantize_row(DT_Q8_0, row, w + (size_t)r * stride, K, &naive, &e);
    }
    for (int64_t i = 0; i < N * K; i++) x[i] = (float)((i * 7919) % 1000) * 0.001f - 0.5f;
    WgemmAct act;
    wgemm_act_init(&act);
    QGemmJob *j = xcalloc(1, sizeof *j);
    *j = (QGemmJob){w, stride, rows, &act, y, {{0}}};
    double best = 0;
    if (wgemm_act_prepare(&act, DT_Q8_0, x, K, N, K, &e) == 0) {
        *path = wgemm_path_name(act.path);
        for (int pass = 0; pass < 6; pass++) {
            double t0 = time_now();
            threadpool_run(pool, qgemm_worker, j);
            double dt = time_now() - t0, g = 2.0 * (double)N * (double)K * (double)rows / dt / 1e9;
            if (g > best) best = g;
        }
    }
    for (int t = 0; t < 512; t++) wgemm_scratch_free(&j->scratch[t]);
    free(j);
    wgemm_act_free(&act);
    free(w), free(x), free(y), free(row);
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

// Multiply-adds per token of prompt processing (every matrix product; attention's are left out) and whether most
// weight bytes are in a quantized type (which decides the GEMM the figure is compared with).
static double model_macs_per_token(const Model *m, bool *quantized) {
    double macs = 0, qbytes = 0, all = 0;
    for (size_t i = 0; i < m->w.n; i++) {
        const Tensor *t = &m->w.t[i];
        if (t->n_dims < 2 || t == m->pos_embd || (t == m->tok_embd && m->output != m->tok_embd)) continue;
        macs += (double)t->ne[0] * (double)tensor_rows(t);
        all += (double)t->nbytes;
        if (t->type != DT_F32 && t->type != DT_F16 && t->type != DT_BF16) qbytes += (double)t->nbytes;
    }
    *quantized = qbytes > all / 2;
    return macs;
}

// Timing of the measured runs: on a GPU, CUDA events on the model's stream around the (synchronous) forwards; on the
// CPU, the wall clock.
static int lap_start(const Model *m, double *t0, Err *e) {
    *t0 = time_now();
    return m->gpu ? model_device_timer_start(m, e) : 0;
}

static int lap_seconds(const Model *m, double t0, double *seconds, Err *e) {
    if (m->gpu) return model_device_timer_stop(m, seconds, e);
    *seconds = time_now() - t0;
    return 0;
}

static int bench_model(const CliArgs *a, ThreadPool *pool) {
    const char *path = a->pos[0];
    Err e;
    Model m;
    int dev_rc = cli_device_load(a, &m, path);
    if (dev_rc != EXIT_OK) return dev_rc;
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
    double bytes = (double)model_weight_bytes(&m);
    // The bandwidth this model can hope for: the fastest read of the very bytes generation reads per token, where
    // they lie (the mmapped file's 4 KiB pages, or a repacked copy's huge pages; L3 included when they fit).
    double bw = 0, gpu_peak = 0;
    // on a GPU: its device-to-device copy bandwidth and cuBLASLt bf16 GEMM rate, measured here
    if (m.gpu && model_device_limits(&m, &bw, &gpu_peak, &e)) {
        rc = cli_fail(&e, "--device cuda");
        goto out;
    }
    if (cli_flag_given(a, "bandwidth")) {
        bw = cli_flag_float(a, "bandwidth");
    } else if (!m.gpu) {
        const void **ptr = xmalloc_array(m.w.n * 2 + 1, sizeof *ptr);
        size_t *len = xmalloc_array(m.w.n * 2 + 1, sizeof *len);
        size_t n = model_weight_ranges(&m, ptr, len, m.w.n * 2 + 1);
        bw = measure_ranges(pool, (const uint8_t *const *)ptr, len, n);
        free(ptr);
        free(len);
    }
    // The machine's memory bandwidth too: for a model that fits in the cache the bytes' own read rate above is the
    // cache's, so both fractions are reported.
    double dram = m.gpu || cli_flag_given(a, "bandwidth") ? 0 : measure_bandwidth(pool, (size_t)1 << 30, true);
    bool quantized;
    double macs = model_macs_per_token(&m, &quantized);
    const char *gemm_path = "f32";
    if (m.gpu) gemm_path = "cuBLASLt bf16";
    double peak = m.gpu ? gpu_peak : quantized ? measure_qgemm(pool, &gemm_path) : measure_gemm(pool);
    int32_t *prompt = xmalloc_array((size_t)np, sizeof *prompt);
    for (int64_t i = 0; i < np; i++) prompt[i] = (int32_t)((i * 7919 + 13) % m.cfg.vocab_size);
    double *pp = xmalloc_array((size_t)reps, sizeof(double)), *tg = xmalloc_array((size_t)reps, sizeof(double));
    for (int64_t r = -1; r < reps && rc == EXIT_OK; r++) { // r = -1: warm-up
        model_state_reset(&s);
        if (r == 0 && m.gpu) model_device_profile_reset(&m); // LOSSY_CUDA_PROFILE=1: the measured runs only
        double t0, dt_p = 0, dt_g = 0;
        if (lap_start(&m, &t0, &e) || model_forward(&s, prompt, np, &e) || lap_seconds(&m, t0, &dt_p, &e)) {
            rc = cli_fail(&e, path);
            break;
        }
        // generation from an empty context, as llama-bench's tg test: the two figures do not depend on each other
        model_state_reset(&s);
        if (lap_start(&m, &t0, &e)) rc = cli_fail(&e, path);
        int32_t tok = prompt[np - 1];
        for (int64_t i = 0; i < ng && rc == EXIT_OK; i++) {
            tok = (tok + 1) % (int32_t)m.cfg.vocab_size; // content does not matter for speed
            if (model_forward(&s, &tok, 1, &e)) rc = cli_fail(&e, path);
        }
        if (rc == EXIT_OK && lap_seconds(&m, t0, &dt_g, &e)) rc = cli_fail(&e, path);
        if (r >= 0 && rc == EXIT_OK) {
            pp[r] = (double)np / dt_p;
            tg[r] = (double)ng / dt_g;
        }
    }
    if (rc == EXIT_OK) {
        Spread P = spread(pp, (int)reps), G = spread(tg, (int)reps);
        double frac = bw > 0 ? G.med * bytes / (bw * 1e9) : 0, dram_frac = dram > 0 ? G.med * bytes / (dram * 1e9) : 0;
        double pp_gops = P.med * 2 * macs / 1e9, pp_frac = peak > 0 ? pp_gops / peak : 0;
        if (cli_flag_bool(a, "json")) {
            json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:I, s:f, s:[f,f], s:f, s:[f,f], s:f, s:f, s:f, s:f, s:s, s:f}", "model", path,
                                  "threads", threadpool_size(pool), "prompt_tokens", (json_int_t)np, "gen_tokens", (json_int_t)ng,
                                  "weight_bytes", (json_int_t)bytes, "pp_tok_s", P.med, "pp_range", P.lo, P.hi, "tg_tok_s",
                                  G.med, "tg_range", G.lo, G.hi, "bandwidth_gb_s", bw, "tg_bandwidth_fraction", frac,
                                  "pp_gop_s", pp_gops, "gemm_peak_gop_s", peak, "gemm_path", gemm_path, "pp_gemm_fraction", pp_frac);
            json_object_set_new(j, "device", json_string(model_device_name(&m)));
            if (dram > 0) {
                json_object_set_new(j, "dram_bandwidth_gb_s", json_real(dram));
                json_object_set_new(j, "tg_dram_fraction", json_real(dram_frac));
            }
            char *txt = json_dumps(j, JSON_INDENT(2));
            puts(txt);
            free(txt);
            json_decref(j);
        } else {
            printf("model: %s (%.1f MB of weights read per token), %d threads, device %s\n", path, bytes / 1e6,
                   threadpool_size(pool), model_device_name(&m));
            printf("prompt processing: %8.1f tok/s (range %.1f .. %.1f, %lld tokens, %lld runs)\n", P.med, P.lo, P.hi, (long long)np, (long long)reps);
            printf("generation:        %8.1f tok/s (range %.1f .. %.1f, %lld tokens)\n", G.med, G.lo, G.hi, (long long)ng);
            if (bw > 0) printf("generation reads %.1f GB/s = %.0f%% of the measured %.1f GB/s read bandwidth\n", G.med * bytes / 1e9, 100 * frac, bw);
            if (dram > 0)
                printf("                   = %.0f%% of the machine's memory bandwidth (%.1f GB/s, 1 GiB in huge pages)%s\n", 100 * dram_frac,
                       dram, bw > 1.2 * dram ? "; the weights fit in the cache" : "");
            if (peak > 0)
                printf("prompt processing computes %.0f GOP/s = %.0f%% of the measured %s GEMM peak (%.0f GOP/s)\n", pp_gops,
                       100 * pp_frac, quantized || m.gpu ? gemm_path : "f32", peak);
            char *prof = m.gpu ? model_device_profile_report(&m) : NULL;
            if (prof) fputs(prof, stdout);
            free(prof);
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
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    bool machine = cli_flag_bool(a, "machine");
    if (machine == (a->n_pos == 1)) return cli_errorf(EXIT_USAGE, "lossy bench --help", "give either MODEL or --machine");
    ThreadPool *pool = threadpool_new(n_threads);
    int rc = EXIT_OK;
    if (machine) {
        double bw = measure_bandwidth(pool, (size_t)1 << 30, true), bw4k = measure_bandwidth(pool, (size_t)1 << 30, false);
        double bw_small = measure_bandwidth(pool, (size_t)64 << 20, true);
        double gf = measure_gemm(pool);
        const char *qpath = "f32";
        double qg = measure_qgemm(pool, &qpath);
        char feats[256];
        cpu_features_string(feats, sizeof feats);
        if (cli_flag_bool(a, "json"))
            printf("{\"threads\": %d, \"read_bandwidth_gb_s\": %.2f, \"read_bandwidth_4k_pages_gb_s\": %.2f, "
                   "\"read_bandwidth_64mib_gb_s\": %.2f, \"gemm_f32_gflop_s\": %.2f, \"gemm_q8_gop_s\": %.2f, \"gemm_q8_path\": \"%s\"}\n",
                   threadpool_size(pool), bw, bw4k, bw_small, gf, qg, qpath);
        else
            printf("cpu: %s\nthreads: %d\nread bandwidth: %.2f GB/s (1 GiB, huge pages), %.2f GB/s (1 GiB, 4 KiB pages, as mmapped "
                   "weights), %.2f GB/s (64 MiB, huge pages)\n"
                   "f32 GEMM peak (ours, 512^3 per thread): %.1f GFLOP/s\n"
                   "int8 GEMM peak (ours, Q8_0 weights, 128 tokens, %s): %.1f GOP/s\n",
                   feats, threadpool_size(pool), bw, bw4k, bw_small, gf, qpath, qg);
    } else {
        rc = bench_model(a, pool);
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
