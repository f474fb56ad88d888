// cmd_data.c — `lossy data prepare`: encode text corpora into the token shards `lossy train` reads. The work is in
// src/train/data.c; this file parses flags, reports progress and prints a summary.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "base/util.h"
#include "cli.h"
#include "train/data.h"

static const CliFlag FLAGS[] = {
    {"tokenizer", 0, FLAG_STR, "PATH", NULL, "tokenizer to encode with: a GGUF (model or vocabulary), tokenizer.json, tokenizer.model, ... (required)"},
    {"out", 'o', FLAG_STR, "DIR", NULL, "dataset directory to write (created if missing) (required)"},
    {"val-fraction", 0, FLAG_FLOAT, "F", "0.05", "fraction of the corpus bytes (the end) held out for validation, 0 to 0.5"},
    {"doc-sep", 0, FLAG_STR, "TEXT", NULL, "split files into documents at TEXT (e.g. '<|endoftext|>'); default: each file is one document"},
    {"shard-tokens", 0, FLAG_INT, "N", "100000000", "tokens per shard file at most"},
    {"threads", 't', FLAG_INT, "N", NULL, "encoding threads (default: all cores)"},
    {"quiet", 'q', FLAG_BOOL, NULL, NULL, "no progress and no summary on stderr"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

typedef struct Progress {
    bool quiet, tty;
    double start, last;
} Progress;

static void on_progress(void *ctx, uint64_t done, uint64_t total, uint64_t tokens) {
    Progress *p = ctx;
    if (p->quiet) return;
    double now = time_now();
    if (now - p->last < (p->tty ? 0.25 : 5.0) && done < total) return;
    p->last = now;
    fprintf(stderr, "%sencoding: %.1f / %.1f MB, %llu tokens (%.1f s)%s", p->tty ? "\r" : "", (double)done / 1e6,
            (double)total / 1e6, (unsigned long long)tokens, now - p->start, p->tty ? "\x1b[K" : "\n");
}

static int run(const CliArgs *a) {
    const char *ctx = "lossy data prepare --help";
    const char *tok = cli_flag_str(a, "tokenizer"), *out = cli_flag_str(a, "out");
    if (!tok) return cli_errorf(EXIT_USAGE, ctx, "--tokenizer PATH is required");
    if (!out) return cli_errorf(EXIT_USAGE, ctx, "--out DIR is required");
    double vf = cli_flag_float(a, "val-fraction");
    if (!(vf >= 0 && vf <= 0.5)) return cli_errorf(EXIT_USAGE, ctx, "--val-fraction must be between 0 and 0.5, got %g", vf);
    int64_t shard = cli_flag_int(a, "shard-tokens");
    if (shard < 1024) return cli_errorf(EXIT_USAGE, ctx, "--shard-tokens must be at least 1024, got %lld", (long long)shard);
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    int64_t threads = n_threads ? n_threads : cpu_features()->n_cores;
    const char *sep = cli_flag_str(a, "doc-sep");
    if (sep && !*sep) return cli_errorf(EXIT_USAGE, ctx, "--doc-sep must not be empty");

    Progress prog = {.quiet = cli_flag_bool(a, "quiet"), .tty = isatty(2) == 1, .start = time_now()};
    prog.last = prog.start;
    ThreadPool *pool = threadpool_new((int)threads);
    DataPrepareOpts o = {tok, out, vf, sep, shard, pool, on_progress, &prog};
    DataPrepareStats st;
    Err e;
    int rc = data_prepare(&o, (const char *const *)a->pos, a->n_pos, &st, &e);
    threadpool_free(pool);
    if (prog.tty && !prog.quiet) fputc('\n', stderr);
    if (rc) return cli_fail(&e, out);
    if (!prog.quiet)
        fprintf(stderr, "prepared %s: %llu documents, %.2f MB -> %llu train + %llu val tokens (%.2f bytes/token) in %zu shards, %.1f s\n",
                out, (unsigned long long)st.documents, (double)st.bytes / 1e6, (unsigned long long)st.tokens[DATA_TRAIN],
                (unsigned long long)st.tokens[DATA_VAL],
                (double)(st.text_bytes[0] + st.text_bytes[1]) / (double)(st.tokens[0] + st.tokens[1]), st.n_shards,
                time_now() - prog.start);
    return EXIT_OK;
}

const CliCommand cmd_data_prepare = {
    .name = "data prepare",
    .summary = "encode text files into token shards (train/validation) for lossy train",
    .usage = "CORPUS...",
    .min_pos = 1,
    .max_pos = -1,
    .flags = FLAGS,
    .details =
        "Writes DIR/manifest.json (token and byte counts, tokenizer hash, shard list), DIR/tokenizer.gguf and shards "
        "of uint16 token ids (uint32 for vocabularies over 65536). Each document is written as BOS text EOS with the "
        "tokenizer's BOS/EOS; text is encoded as ordinary text (special tokens are not parsed). The last "
        "--val-fraction of the bytes, cut at a line start, is the validation split. Corpora must be non-empty UTF-8 "
        "text. Every file is written atomically and the manifest last.",
    .run = run,
};
