// cmd_tokenizer_train.c — `lossy tokenizer train`: learn a byte-level BPE vocabulary from text files and write it as
// a vocabulary-only GGUF (llama.cpp loads it) and/or a Hugging Face tokenizer.json. The algorithm is in
// src/tokenizer/train_bpe.c, the file formats in src/tokenizer/write_tokenizer.c; this file reads the corpus,
// reports progress and picks the outputs.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/util.h"
#include "cli.h"
#include "tokenizer/train_bpe.h"
#include "tokenizer/write_tokenizer.h"

static const CliFlag FLAGS[] = {
    {"vocab-size", 'n', FLAG_INT, "N", NULL, "total vocabulary size: 256 byte tokens + merges + special tokens (required)"},
    {"out", 'o', FLAG_STR, "FILE", NULL, "output: FILE.gguf (vocabulary-only GGUF) or FILE.json (tokenizer.json) (required)"},
    {"format", 0, FLAG_STR, "gguf|json", NULL, "format of --out (default: from its extension)"},
    {"json-out", 0, FLAG_STR, "FILE", NULL, "also write a Hugging Face tokenizer.json to FILE"},
    {"special", 0, FLAG_LIST, "TOKEN", NULL, "a reserved special token; given at all, the list replaces lossy's defaults"},
    {"no-special", 0, FLAG_BOOL, NULL, NULL, "reserve no special tokens"},
    {"bos", 0, FLAG_STR, "TOKEN", NULL, "BOS token, one of the special tokens (default: <|bos|> when reserved)"},
    {"eos", 0, FLAG_STR, "TOKEN", NULL, "EOS token, one of the special tokens (default: <|endoftext|> when reserved)"},
    {"no-add-bos", 0, FLAG_BOOL, NULL, NULL, "do not mark the vocabulary to put BOS before encoded text"},
    {"min-frequency", 0, FLAG_INT, "N", "2", "stop merging when the most frequent pair occurs fewer than N times"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads for counting words (default: all cores, at most 8)"},
    {"name", 0, FLAG_STR, "NAME", NULL, "general.name of the GGUF (default: lossy-bpe-N)"},
    {"quiet", 'q', FLAG_BOOL, NULL, NULL, "no progress and no summary on stderr"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

typedef struct Progress {
    bool quiet, tty, dirty;
    double start, last;
} Progress;

// One status line: rewritten in place on a terminal, a new line every few seconds otherwise (logs stay short).
static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total) {
    Progress *p = ctx;
    if (p->quiet) return;
    double now = time_now();
    if (now - p->last < (p->tty ? 0.25 : 5.0)) return;
    p->last = now;
    if (strcmp(phase, "count") == 0)
        fprintf(stderr, "%scounting words: %.1f MB read (%.1f s)%s", p->tty ? "\r" : "", (double)done / 1e6,
                now - p->start, p->tty ? "\x1b[K" : "\n");
    else
        fprintf(stderr, "%smerging: %llu / %llu merges (%.1f s)%s", p->tty ? "\r" : "", (unsigned long long)done,
                (unsigned long long)total, now - p->start, p->tty ? "\x1b[K" : "\n");
    p->dirty = p->tty;
}

// Output format by --format or the file extension; NULL (after printing a usage error) when it cannot be told.
static const char *out_format(const CliArgs *a, const char *out) {
    const char *f = cli_flag_str(a, "format");
    if (f) {
        if (strcmp(f, "gguf") == 0 || strcmp(f, "json") == 0) return f;
        cli_errorf(EXIT_USAGE, "lossy tokenizer train --help", "--format must be gguf or json, got '%s'", f);
        return NULL;
    }
    if (str_ends_with(out, ".gguf")) return "gguf";
    if (str_ends_with(out, ".json")) return "json";
    cli_errorf(EXIT_USAGE, "lossy tokenizer train --help", "cannot tell the format of '%s' from its name: use --format gguf|json", out);
    return NULL;
}

static int add_corpus_file(BpeTrainer *t, const char *path, uint64_t *bytes, Err *e) {
    if (strcmp(path, "-") != 0 && path_is_dir(path)) return ERR(e, "is a directory (give the text files themselves)");
    if (strcmp(path, "-") == 0) {
        char *data;
        size_t n;
        if (file_read_all(path, &data, &n, e)) return -1;
        int rc = bpe_trainer_add_text(t, data, n, e);
        free(data);
        *bytes += n;
        return rc;
    }
    FileMap m;
    if (filemap_open(&m, path, e)) return -1;
    int rc = bpe_trainer_add_text(t, (const char *)m.data, m.size, e);
    *bytes += m.size;
    filemap_close(&m);
    return rc;
}

static bool in_list(const char *s, char **list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

static int run(const CliArgs *a) {
    const char *ctx = "lossy tokenizer train --help";
    if (!cli_flag_given(a, "vocab-size")) return cli_errorf(EXIT_USAGE, ctx, "--vocab-size N is required");
    const char *out = cli_flag_str(a, "out");
    if (!out) return cli_errorf(EXIT_USAGE, ctx, "--out FILE is required");
    const char *fmt = out_format(a, out);
    if (!fmt) return EXIT_USAGE;
    int64_t vocab = cli_flag_int(a, "vocab-size"), minf = cli_flag_int(a, "min-frequency");
    if (vocab < 1 || vocab > (int64_t)TOKENIZER_MAX_VOCAB)
        return cli_errorf(EXIT_USAGE, ctx, "--vocab-size must be between 1 and %d, got %lld", TOKENIZER_MAX_VOCAB, (long long)vocab);
    if (minf < 1) return cli_errorf(EXIT_USAGE, ctx, "--min-frequency must be at least 1, got %lld", (long long)minf);
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    int64_t threads = n_threads ? n_threads : cpu_features()->n_cores;
    if (threads > 8 && !n_threads) threads = 8;
    if (threads > 64) threads = 64; // counting words scales no further

    BpeTrainOptions o;
    bpe_train_options_default(&o);
    char **specials = NULL;
    size_t n_specials = cli_flag_list(a, "special", &specials);
    if (cli_flag_bool(a, "no-special") && n_specials)
        return cli_errorf(EXIT_USAGE, ctx, "--no-special and --special contradict each other");
    if (cli_flag_bool(a, "no-special")) o.specials = NULL, o.n_specials = 0;
    else if (n_specials) o.specials = (const char *const *)specials, o.n_specials = n_specials;
    // BOS/EOS: an explicit choice must be reserved; the defaults apply only when they are
    const char *bos = cli_flag_str(a, "bos"), *eos = cli_flag_str(a, "eos");
    char **set = (char **)o.specials;
    if (bos && !in_list(bos, set, o.n_specials))
        return cli_errorf(EXIT_USAGE, ctx, "--bos '%s' is not one of the special tokens", bos);
    if (eos && !in_list(eos, set, o.n_specials))
        return cli_errorf(EXIT_USAGE, ctx, "--eos '%s' is not one of the special tokens", eos);
    if (!bos && in_list(BPE_DEFAULT_BOS, set, o.n_specials)) bos = BPE_DEFAULT_BOS;
    if (!eos && in_list(BPE_DEFAULT_EOS, set, o.n_specials)) eos = BPE_DEFAULT_EOS;

    Progress prog = {.quiet = cli_flag_bool(a, "quiet"), .tty = isatty(2) == 1, .start = time_now()};
    prog.last = prog.start;
    o.vocab_size = (size_t)vocab;
    o.min_frequency = minf;
    o.n_threads = (int)threads;
    o.progress = on_progress;
    o.progress_ctx = &prog;

    Err e;
    BpeTrainer *t = bpe_trainer_new(&o, &e);
    if (!t) return cli_fail(&e, "--vocab-size/--special");
    uint64_t bytes = 0;
    for (size_t i = 0; i < a->n_pos; i++) {
        if (add_corpus_file(t, a->pos[i], &bytes, &e)) {
            bpe_trainer_free(t);
            if (prog.dirty) fputc('\n', stderr);
            return cli_fail(&e, a->pos[i]);
        }
    }
    BpeVocab v;
    int rc = bpe_trainer_train(t, &v, &e);
    bpe_trainer_free(t);
    if (prog.dirty) fputc('\n', stderr);
    if (rc) return cli_fail(&e, "training");
    if (!v.n_words) {
        bpe_vocab_free(&v);
        return cli_errorf(EXIT_RUNTIME, NULL, "the corpus has no text (%llu bytes)", (unsigned long long)bytes);
    }
    double t_train = time_now() - prog.start;

    Tokenizer *tok = NULL;
    rc = bpe_vocab_set_bos_eos(&v, bos, eos, &e);
    if (!rc) rc = bpe_vocab_to_tokenizer(&v, !cli_flag_bool(a, "no-add-bos"), &tok, &e);
    char name[64];
    snprintf(name, sizeof name, "lossy-bpe-%zu", v.n_tokens);
    const char *json_out = cli_flag_str(a, "json-out");
    const char *failed_path = out;
    if (!rc && strcmp(fmt, "gguf") == 0) {
        GGUFWriter *w = tokenizer_gguf_vocab_writer(tok, cli_flag_str(a, "name") ? cli_flag_str(a, "name") : name, &e);
        rc = w ? 0 : -1;
        if (w) {
            // provenance: how the vocabulary was made (no paths or times, so equal runs give equal files)
            gguf_writer_set_str(w, "lossy.tokenizer.trainer", "lossy " LOSSY_VERSION " tokenizer train (byte-level BPE)");
            gguf_writer_set_u64(w, "lossy.tokenizer.corpus_bytes", v.corpus_bytes);
            gguf_writer_set_u64(w, "lossy.tokenizer.corpus_words", v.n_words);
            gguf_writer_set_u64(w, "lossy.tokenizer.min_frequency", (uint64_t)minf);
            rc = gguf_writer_write(w, out, &e);
            gguf_writer_free(w);
        }
    } else if (!rc) {
        rc = tokenizer_write_hf_json(tok, out, &e);
    }
    if (!rc && json_out) {
        failed_path = json_out;
        rc = tokenizer_write_hf_json(tok, json_out, &e);
    }
    if (rc) {
        tokenizer_free(tok);
        bpe_vocab_free(&v);
        return cli_fail(&e, failed_path);
    }
    if (!prog.quiet) {
        size_t want = (size_t)vocab - 256 - v.n_specials;
        if (v.n_merges < want)
            fprintf(stderr, "lossy: warning: only %zu of %zu merges occur at least %lld times: the vocabulary has %zu "
                            "tokens, not %lld\n", v.n_merges, want, (long long)minf, v.n_tokens, (long long)vocab);
        fprintf(stderr, "trained %zu tokens (256 bytes + %zu merges + %zu special) on %llu bytes, %llu words "
                        "(%llu distinct) in %.2f s -> %s%s%s\n",
                v.n_tokens, v.n_merges, v.n_specials, (unsigned long long)v.corpus_bytes, (unsigned long long)v.n_words,
                (unsigned long long)v.n_unique_words, t_train, out, json_out ? ", " : "", json_out ? json_out : "");
    }
    tokenizer_free(tok);
    bpe_vocab_free(&v);
    return EXIT_OK;
}

const CliCommand cmd_tokenizer_train = {
    .name = "tokenizer train",
    .summary = "train a byte-level BPE vocabulary on text files; write it as GGUF and/or tokenizer.json",
    .usage = "CORPUS...",
    .min_pos = 1,
    .max_pos = -1,
    .flags = FLAGS,
    .details =
        "Text is cut at the special tokens, pre-split with the GPT-4-style regex (llama.cpp's \"llama-bpe\"), and "
        "merges are learned from the most frequent pair down (ties: lowest left id, then lowest right id), so equal "
        "inputs give identical files. Ids: byte b is id b, merge i is id 256+i, the special tokens follow. "
        "Default special tokens (in id order): <|endoftext|> (EOS, ends a document), <|bos|> (BOS), <|system|>, "
        "<|user|>, <|assistant|>, <|end|> (end of a chat message), <|tool_call|>, <|tool_result|>. CORPUS files are "
        "read whole, each one a document; '-' reads stdin.",
    .run = run,
};
