// cmd_eval.c — scoring text under a model with sliding windows (model/eval.h):
//   `lossy eval ppl MODEL TEXT`      perplexity and bits per byte of one text, so each quantization's quality cost can
//                                    be measured against the F16 file;
//   `lossy eval bpb MODEL TEXT...`   loss (nats/token) and bits per byte per file and in total: the tokenizer-
//                                    independent measure that compares models with different vocabularies.
//
// A text is read as ordinary text (special-token spellings in it are not special), tokenized with the model's own
// vocabulary (or --tokenizer), and prefixed with BOS when the vocabulary has one: then every token of the text is
// scored and bits per byte = total NLL / ln 2 / bytes of the text. `ppl` can leave BOS out (--no-bos: the first token
// is then context only and bits per byte is not reported) and cut the text (--max-tokens: the bytes are those the
// kept tokens decode to). `bpb` always scores the whole file — it starts with BOS, else the end-of-text token that
// separates documents in vocabularies without BOS — and refuses empty, binary and non-UTF-8 files before loading the
// model. Each file is its own document (scored from a fresh context); the total sums nats, tokens and bytes.
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/eval.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

#define SCORE_FLAGS                                                                                                   \
    {"ctx", 'c', FLAG_INT, "N", "512", "window length in tokens (capped at the model's context)"},                   \
    {"stride", 's', FLAG_INT, "N", NULL, "tokens between window starts (default: half the window)"},                \
    {"tokenizer", 0, FLAG_STR, "PATH", NULL, "tokenizer to use instead of the model's own"},                         \
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},                                             \
    {"json", 0, FLAG_BOOL, NULL, NULL, "print machine-readable JSON"}

static const CliFlag PPL_FLAGS[] = {
    SCORE_FLAGS,
    {"max-tokens", 0, FLAG_INT, "N", "0", "score only the first N tokens of the text (0: all)"},
    {"no-bos", 0, FLAG_BOOL, NULL, NULL, "do not put BOS before the text (its first token is then not scored)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const CliFlag BPB_FLAGS[] = {
    SCORE_FLAGS,
    {NULL, 0, 0, NULL, NULL, NULL},
};

// A model, its vocabulary and one state to score windows in.
typedef struct Scorer {
    Model m;
    bool model_ok, state_ok;
    Tokenizer *tok;
    ThreadPool *pool;
    ModelState s;
    int64_t ctx, stride;
} Scorer;

static void scorer_close(Scorer *sc) {
    if (sc->state_ok) model_state_free(&sc->s);
    threadpool_free(sc->pool);
    tokenizer_free(sc->tok);
    if (sc->model_ok) model_free(&sc->m);
}

// Load the model and the tokenizer, check they fit together, set up the state and the window (--ctx capped at the
// model's context, --stride). Returns an exit code (the error printed); close the scorer either way.
static int scorer_open(Scorer *sc, const CliArgs *a, const char *mpath) {
    memset(sc, 0, sizeof *sc);
    Err e;
    if (model_load(&sc->m, mpath, &e)) return cli_fail(&e, mpath);
    sc->model_ok = true;
    const char *tsrc = cli_flag_given(a, "tokenizer") ? cli_flag_str(a, "tokenizer") : mpath;
    if (tokenizer_load(tsrc, &sc->tok, &e)) return cli_fail(&e, tsrc);
    if ((int64_t)tokenizer_vocab_size(sc->tok) > sc->m.cfg.vocab_size)
        return cli_errorf(EXIT_RUNTIME, tsrc, "the vocabulary has %zu tokens, the model %lld", tokenizer_vocab_size(sc->tok),
                          (long long)sc->m.cfg.vocab_size);
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    sc->pool = threadpool_new(n_threads);
    sc->ctx = cli_flag_int(a, "ctx");
    if (model_state_init(&sc->s, &sc->m, sc->ctx, sc->pool, &e)) return cli_fail(&e, mpath);
    sc->state_ok = true;
    if (sc->ctx > sc->s.n_ctx) sc->ctx = sc->s.n_ctx;
    sc->stride = cli_flag_given(a, "stride") ? cli_flag_int(a, "stride") : sc->ctx / 2;
    if (sc->stride < 1 || sc->stride >= sc->ctx)
        return cli_errorf(EXIT_USAGE, "--stride", "must be 1 .. %lld (the window minus one)", (long long)(sc->ctx - 1));
    return EXIT_OK;
}

static int check_ctx(const CliArgs *a) {
    if (cli_flag_int(a, "ctx") < 2) return cli_errorf(EXIT_USAGE, "--ctx", "the window must be at least 2 tokens");
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    return EXIT_OK;
}

// ---- eval ppl ----

static int run_ppl(const CliArgs *a) {
    const char *mpath = a->pos[0], *tpath = a->pos[1];
    int64_t max_tokens = cli_flag_int(a, "max-tokens");
    int rc = check_ctx(a);
    if (rc) return rc;
    if (max_tokens < 0) return cli_errorf(EXIT_USAGE, "--max-tokens", "must be >= 0");
    Err e;
    char *text = NULL;
    size_t text_len = 0;
    if (file_read_all(tpath, &text, &text_len, &e)) return cli_fail(&e, tpath);
    Scorer sc;
    TokenIds ids = {0};
    rc = scorer_open(&sc, a, mpath);
    if (rc) goto out;
    int32_t bos = tokenizer_special_id(sc.tok, TOKEN_ID_BOS);
    bool add_bos = bos >= 0 && !cli_flag_bool(a, "no-bos");
    if (add_bos) token_ids_push(&ids, bos);
    if (tokenizer_encode(sc.tok, text, text_len, TOKENIZE_ORDINARY, &ids, &e)) {
        rc = cli_fail(&e, tpath);
        goto out;
    }
    size_t bytes = text_len;
    if (max_tokens > 0 && (size_t)max_tokens < ids.n) {
        ids.n = (size_t)max_tokens;
        Buf b = {0};
        if (tokenizer_decode(sc.tok, ids.ids + (add_bos ? 1 : 0), ids.n - (add_bos ? 1 : 0), 0, &b, &e)) {
            buf_free(&b);
            rc = cli_fail(&e, tpath);
            goto out;
        }
        bytes = b.len;
        buf_free(&b);
    }
    if (ids.n < 2) {
        rc = cli_errorf(EXIT_RUNTIME, tpath, "the text gives %zu token(s); at least 2 are needed", ids.n);
        goto out;
    }
    EvalResult r;
    double t0 = time_now();
    if (eval_nll(&sc.s, ids.ids, (int64_t)ids.n, sc.ctx, sc.stride, &r, &e)) {
        rc = cli_fail(&e, mpath);
        goto out;
    }
    double dt = time_now() - t0;
    double mean = r.nll / (double)r.n_scored, ppl = exp(mean);
    // bits per byte covers the text only when every one of its tokens was scored (BOS in front)
    double bpb = add_bos ? r.nll / log(2.0) / (double)bytes : NAN;
    if (cli_flag_bool(a, "json")) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:f}", "model", mpath, "text", tpath,
                              "tokens", (json_int_t)ids.n, "scored", (json_int_t)r.n_scored, "ctx", (json_int_t)sc.ctx,
                              "stride", (json_int_t)sc.stride, "nll", r.nll, "nll_per_token", mean, "ppl", ppl, "bytes",
                              (json_int_t)bytes, "seconds", dt);
        if (add_bos) json_object_set_new(j, "bits_per_byte", json_real(bpb));
        char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        puts(txt);
        free(txt);
        json_decref(j);
    } else {
        printf("model: %s\ntext: %s (%zu bytes, %zu tokens%s)\n", mpath, tpath, bytes, ids.n, add_bos ? " with BOS" : "");
        printf("windows: %lld of %lld tokens, stride %lld; %lld tokens scored in %.1f s (%.0f tok/s)\n", (long long)r.n_windows,
               (long long)sc.ctx, (long long)sc.stride, (long long)r.n_scored, dt, (double)r.n_scored / dt);
        printf("perplexity: %.4f (%.5f nats/token)\n", ppl, mean);
        if (add_bos) printf("bits per byte: %.5f\n", bpb);
    }
out:
    token_ids_free(&ids);
    scorer_close(&sc);
    free(text);
    return rc;
}

const CliCommand cmd_eval_ppl = {
    .name = "eval ppl",
    .summary = "perplexity and bits per byte of a text file under a model (sliding windows)",
    .usage = "MODEL TEXT",
    .min_pos = 2,
    .max_pos = 2,
    .flags = PPL_FLAGS,
    .run = run_ppl,
};

// ---- eval bpb ----

typedef struct FileScore {
    const char *path;
    int64_t bytes, tokens; // tokens: the text's (all scored; the start token is not counted)
    double nll, seconds;
} FileScore;

static json_t *score_json(const char *path, int64_t bytes, int64_t tokens, double nll) {
    json_t *j = json_object();
    if (path) json_object_set_new(j, "path", json_string(path));
    json_t *v = json_pack("{s:I, s:I, s:f, s:f, s:f}", "bytes", (json_int_t)bytes, "tokens", (json_int_t)tokens, "nll",
                          nll, "loss", nll / (double)tokens, "bits_per_byte", nll / log(2.0) / (double)bytes);
    json_object_update(j, v);
    json_decref(v);
    return j;
}

static int run_bpb(const CliArgs *a) {
    const char *mpath = a->pos[0];
    const size_t n_files = a->n_pos - 1;
    int rc = check_ctx(a);
    if (rc) return rc;
    // every file is read and checked before the model is loaded: a bad file fails fast
    Err e;
    char **texts = xcalloc(n_files, sizeof *texts);
    FileScore *fs = xcalloc(n_files, sizeof *fs);
    for (size_t i = 0; i < n_files && rc == EXIT_OK; i++) {
        size_t len = 0;
        fs[i].path = a->pos[1 + i];
        if (file_read_all(fs[i].path, &texts[i], &len, &e) || data_check_corpus(fs[i].path, texts[i], len, &e))
            rc = cli_fail(&e, fs[i].path);
        fs[i].bytes = (int64_t)len;
    }
    Scorer sc;
    memset(&sc, 0, sizeof sc);
    TokenIds ids = {0};
    if (rc == EXIT_OK) rc = scorer_open(&sc, a, mpath);
    int32_t start = -1;
    if (rc == EXIT_OK) {
        start = tokenizer_special_id(sc.tok, TOKEN_ID_BOS);
        if (start < 0) start = tokenizer_special_id(sc.tok, TOKEN_ID_EOS);
        if (start < 0)
            rc = cli_errorf(EXIT_RUNTIME, mpath, "the vocabulary has neither a BOS nor an end-of-text token to start a "
                                                 "text with, so its first token could not be scored (try eval ppl --no-bos)");
    }
    for (size_t i = 0; i < n_files && rc == EXIT_OK; i++) {
        ids.n = 0;
        token_ids_push(&ids, start);
        if (tokenizer_encode(sc.tok, texts[i], (size_t)fs[i].bytes, TOKENIZE_ORDINARY, &ids, &e)) {
            rc = cli_fail(&e, fs[i].path);
            break;
        }
        EvalResult r;
        double t0 = time_now();
        if (eval_nll(&sc.s, ids.ids, (int64_t)ids.n, sc.ctx, sc.stride, &r, &e)) {
            rc = cli_fail(&e, fs[i].path);
            break;
        }
        fs[i].seconds = time_now() - t0;
        fs[i].tokens = r.n_scored;
        fs[i].nll = r.nll;
    }
    if (rc == EXIT_OK) {
        int64_t bytes = 0, tokens = 0;
        double nll = 0, seconds = 0;
        for (size_t i = 0; i < n_files; i++) bytes += fs[i].bytes, tokens += fs[i].tokens, nll += fs[i].nll, seconds += fs[i].seconds;
        if (cli_flag_bool(a, "json")) {
            json_t *files = json_array();
            for (size_t i = 0; i < n_files; i++) json_array_append_new(files, score_json(fs[i].path, fs[i].bytes, fs[i].tokens, fs[i].nll));
            json_t *j = json_pack("{s:s, s:I, s:I, s:o, s:o, s:f}", "model", mpath, "ctx", (json_int_t)sc.ctx, "stride",
                                  (json_int_t)sc.stride, "files", files, "total", score_json(NULL, bytes, tokens, nll),
                                  "seconds", seconds);
            char *txt = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
            puts(txt);
            free(txt);
            json_decref(j);
        } else {
            printf("model: %s (windows of %lld tokens, stride %lld)\n", mpath, (long long)sc.ctx, (long long)sc.stride);
            size_t w = strlen("total");
            for (size_t i = 0; i < n_files; i++) w = strlen(fs[i].path) > w ? strlen(fs[i].path) : w;
            printf("%-*s %12s %10s %10s %10s\n", (int)w, "file", "bytes", "tokens", "nats/tok", "bits/byte");
            for (size_t i = 0; i < n_files; i++)
                printf("%-*s %12lld %10lld %10.5f %10.5f\n", (int)w, fs[i].path, (long long)fs[i].bytes,
                       (long long)fs[i].tokens, fs[i].nll / (double)fs[i].tokens, fs[i].nll / log(2.0) / (double)fs[i].bytes);
            if (n_files > 1)
                printf("%-*s %12lld %10lld %10.5f %10.5f\n", (int)w, "total", (long long)bytes, (long long)tokens,
                       nll / (double)tokens, nll / log(2.0) / (double)bytes);
            printf("%lld tokens scored in %.1f s (%.0f tok/s)\n", (long long)tokens, seconds,
                   seconds > 0 ? (double)tokens / seconds : 0.0);
        }
    }
    token_ids_free(&ids);
    scorer_close(&sc);
    for (size_t i = 0; i < n_files; i++) free(texts[i]);
    free(texts);
    free(fs);
    return rc;
}

const CliCommand cmd_eval_bpb = {
    .name = "eval bpb",
    .summary = "loss and bits per byte of text files under a model, per file and in total",
    .usage = "MODEL TEXT...",
    .min_pos = 2,
    .max_pos = -1,
    .flags = BPB_FLAGS,
    .details =
        "Bits per byte = the text's negative log-likelihood in bits / its bytes: unlike perplexity it does not depend "
        "on the vocabulary, so models with different tokenizers compare. Each file is one document: BOS (else the "
        "end-of-text token) in front as context, every token of the text scored once with sliding windows of --ctx "
        "tokens that start --stride apart, the text encoded as ordinary text (special-token spellings in it are text; "
        "no special token is scored). Files must be non-empty UTF-8 text. The total sums nats, tokens and bytes over "
        "the files.",
    .run = run_bpb,
};
