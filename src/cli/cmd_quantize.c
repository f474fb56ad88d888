// cmd_quantize.c — `lossy quantize IN OUT --type T`: a model (GGUF, Hugging Face directory, llama2.c checkpoint) to a
// quantized GGUF file that lossy and llama.cpp run, with llama.cpp's per-tensor rules (model/convert.h): norms stay
// F32, the output matrix goes to Q6_K (except for q8_0), the _M mixes give attn_v and ffn_down Q6_K in the layers
// llama.cpp picks, and rows that do not fit a type's blocks fall back. Rows are quantized on the thread pool.
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/convert.h"

static const CliFlag FLAGS[] = {
    {"type", 0, FLAG_STR, "TYPE", "q4_k_m", "q8_0, q4_0, q4_k, q5_k, q6_k, q4_k_m or q5_k_m"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"verbose", 'v', FLAG_BOOL, NULL, NULL, "print each tensor's type and size"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const struct {
    const char *name;
    DType dtype;
    ConvertMix mix;
} TYPES[] = {
    {"q8_0", DT_Q8_0, CONVERT_MIX_PLAIN}, {"q4_0", DT_Q4_0, CONVERT_MIX_PLAIN}, {"q4_k", DT_Q4_K, CONVERT_MIX_PLAIN},
    {"q5_k", DT_Q5_K, CONVERT_MIX_PLAIN}, {"q6_k", DT_Q6_K, CONVERT_MIX_PLAIN}, {"q4_k_m", DT_Q4_K, CONVERT_MIX_M},
    {"q5_k_m", DT_Q5_K, CONVERT_MIX_M},
};

typedef struct Report {
    bool verbose;
    size_t bytes_in, bytes_out, n[DT_COUNT];
} Report;

static void on_tensor(void *ctx, const char *name, DType from, DType to, size_t bytes) {
    Report *r = ctx;
    r->bytes_out += bytes;
    if ((unsigned)to < DT_COUNT) r->n[to]++;
    if (r->verbose) fprintf(stderr, "  %-32s %-5s -> %-5s %10.2f MB\n", name, dtype_name(from), dtype_name(to), (double)bytes / 1e6);
}

static int run(const CliArgs *a) {
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    const char *in = a->pos[0], *out = a->pos[1], *tname = cli_flag_str(a, "type");
    int ti = -1;
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (strcasecmp(tname, TYPES[i].name) == 0) ti = (int)i;
    if (ti < 0) return cli_errorf(EXIT_USAGE, "--type", "unknown type '%s' (q8_0, q4_0, q4_k, q5_k, q6_k, q4_k_m, q5_k_m)", tname);
    Err e;
    Model m;
    if (model_load_mapped(&m, in, &e)) return cli_fail(&e, in);
    Tokenizer *tok = NULL;
    if (tokenizer_load(in, &tok, &e)) {
        fprintf(stderr, "lossy: warning: no tokenizer written (%s); the file is marked as having no vocabulary "
                        "(tokenizer.ggml.model = no_vocab) and runs on token ids only (run --ids ... --print-ids)\n", e.msg);
        tok = NULL;
    }
    ThreadPool *pool = threadpool_new(n_threads);
    Report rep = {.verbose = cli_flag_bool(a, "verbose")};
    for (size_t i = 0; i < m.w.n; i++) rep.bytes_in += m.w.t[i].nbytes;
    ConvertOpts o = {.dtype = TYPES[ti].dtype, .mix = TYPES[ti].mix, .pool = pool, .on_tensor = on_tensor, .ctx = &rep};
    double t0 = time_now();
    int rc = EXIT_OK;
    if (model_write_gguf(&m, tok, out, &o, &e)) {
        rc = cli_fail(&e, out);
    } else {
        fprintf(stderr, "lossy: wrote %s (%s): %.1f MB -> %.1f MB in %.1f s; tensors:", out, TYPES[ti].name,
                (double)rep.bytes_in / 1e6, (double)rep.bytes_out / 1e6, time_now() - t0);
        for (int t = 0; t < DT_COUNT; t++)
            if (rep.n[t]) fprintf(stderr, " %zu %s", rep.n[t], dtype_name((uint32_t)t));
        fputc('\n', stderr);
    }
    threadpool_free(pool);
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}

const CliCommand cmd_quantize = {
    .name = "quantize",
    .summary = "quantize a model to a GGUF file (q8_0, q4_0, q4_k, q5_k, q6_k, q4_k_m, q5_k_m)",
    .usage = "IN OUT.gguf",
    .min_pos = 2,
    .max_pos = 2,
    .flags = FLAGS,
    .run = run,
};
