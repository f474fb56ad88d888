// cmd_eval.c — `lossy eval ppl MODEL TEXT`: perplexity and bits per byte of a text file under a model, with sliding
// windows (model/eval.h), so each quantization's quality cost can be measured against the F16 file.
//
// The text is read as ordinary text (special-token spellings in it are not special), tokenized with the model's own
// vocabulary (or --tokenizer), and prefixed with BOS when the vocabulary has one (--no-bos to leave it out): then
// every token of the text is scored and bits per byte = total NLL / ln 2 / bytes of the text. With --max-tokens the
// text is cut to its first N tokens and the bytes are those the kept tokens decode to.
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/eval.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static const CliFlag FLAGS[] = {
    {"ctx", 'c', FLAG_INT, "N", "512", "window length in tokens (capped at the model's context)"},
    {"stride", 's', FLAG_INT, "N", NULL, "tokens between window starts (default: half the window)"},
    {"max-tokens", 0, FLAG_INT, "N", "0", "score only the first N tokens of the text (0: all)"},
    {"tokenizer", 0, FLAG_STR, "PATH", NULL, "tokenizer to use instead of the model's own"},
    {"no-bos", 0, FLAG_BOOL, NULL, NULL, "do not put BOS before the text (its first token is then not scored)"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"json", 0, FLAG_BOOL, NULL, NULL, "print machine-readable JSON"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static int run(const CliArgs *a) {
    const char *mpath = a->pos[0], *tpath = a->pos[1];
    int64_t ctx = cli_flag_int(a, "ctx"), max_tokens = cli_flag_int(a, "max-tokens");
    if (ctx < 2) return cli_errorf(EXIT_USAGE, "--ctx", "the window must be at least 2 tokens");
    if (max_tokens < 0) return cli_errorf(EXIT_USAGE, "--max-tokens", "must be >= 0");
    Err e;
    char *text = NULL;
    size_t text_len = 0;
    if (file_read_all(tpath, &text, &text_len, &e)) return cli_fail(&e, tpath);
    Model m;
    if (model_load(&m, mpath, &e)) {
        free(text);
        return cli_fail(&e, mpath);
    }
    int rc = EXIT_OK;
    Tokenizer *tok = NULL;
    ThreadPool *pool = NULL;
    ModelState s;
    memset(&s, 0, sizeof s);
    TokenIds ids = {0};
    const char *tsrc = cli_flag_given(a, "tokenizer") ? cli_flag_str(a, "tokenizer") : mpath;
    if (tokenizer_load(tsrc, &tok, &e)) {
        rc = cli_fail(&e, tsrc);
        goto out;
    }
    if ((int64_t)tokenizer_vocab_size(tok) > m.cfg.vocab_size) {
        rc = cli_errorf(EXIT_RUNTIME, tsrc, "the vocabulary has %zu tokens, the model %lld", tokenizer_vocab_size(tok), (long long)m.cfg.vocab_size);
        goto out;
    }
    int32_t bos = tokenizer_special_id(tok, TOKEN_ID_BOS);
    bool add_bos = bos >= 0 && !cli_flag_bool(a, "no-bos");
    if (add_bos) token_ids_push(&ids, bos);
    if (tokenizer_encode(tok, text, text_len, TOKENIZE_ORDINARY, &ids, &e)) {
        rc = cli_fail(&e, tpath);
        goto out;
    }
    size_t bytes = text_len;
    if (max_tokens > 0 && (size_t)max_tokens < ids.n) {
        ids.n = (size_t)max_tokens;
        Buf b = {0};
        if (tokenizer_decode(tok, ids.ids + (add_bos ? 1 : 0), ids.n - (add_bos ? 1 : 0), 0, &b, &e)) {
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
    pool = threadpool_new(cli_flag_given(a, "threads") ? (int)cli_flag_int(a, "threads") : 0);
    if (model_state_init(&s, &m, ctx, pool, &e)) {
        rc = cli_fail(&e, mpath);
        goto out;
    }
    if (ctx > s.n_ctx) ctx = s.n_ctx;
    int64_t stride = cli_flag_given(a, "stride") ? cli_flag_int(a, "stride") : ctx / 2;
    if (stride < 1 || stride >= ctx) {
        rc = cli_errorf(EXIT_USAGE, "--stride", "must be 1 .. %lld (the window minus one)", (long long)(ctx - 1));
        goto out;
    }
    EvalResult r;
    double t0 = time_now();
    if (eval_nll(&s, ids.ids, (int64_t)ids.n, ctx, stride, &r, &e)) {
        rc = cli_fail(&e, mpath);
        goto out;
    }
    double dt = time_now() - t0;
    double mean = r.nll / (double)r.n_scored, ppl = exp(mean);
    // bits per byte covers the text only when every one of its tokens was scored (BOS in front)
    double bpb = add_bos ? r.nll / log(2.0) / (double)bytes : NAN;
    if (cli_flag_bool(a, "json")) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:f}", "model", mpath, "text", tpath,
                              "tokens", (json_int_t)ids.n, "scored", (json_int_t)r.n_scored, "ctx", (json_int_t)ctx,
                              "stride", (json_int_t)stride, "nll", r.nll, "nll_per_token", mean, "ppl", ppl, "bytes",
                              (json_int_t)bytes, "seconds", dt);
        if (add_bos) json_object_set_new(j, "bits_per_byte", json_real(bpb));
        char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        puts(txt);
        free(txt);
        json_decref(j);
    } else {
        printf("model: %s\ntext: %s (%zu bytes, %zu tokens%s)\n", mpath, tpath, bytes, ids.n, add_bos ? " with BOS" : "");
        printf("windows: %lld of %lld tokens, stride %lld; %lld tokens scored in %.1f s (%.0f tok/s)\n", (long long)r.n_windows,
               (long long)ctx, (long long)stride, (long long)r.n_scored, dt, (double)r.n_scored / dt);
        printf("perplexity: %.4f (%.5f nats/token)\n", ppl, mean);
        if (add_bos) printf("bits per byte: %.5f\n", bpb);
    }
out:
    token_ids_free(&ids);
    model_state_free(&s);
    threadpool_free(pool);
    tokenizer_free(tok);
    model_free(&m);
    free(text);
    return rc;
}

const CliCommand cmd_eval_ppl = {
    .name = "eval ppl",
    .summary = "perplexity and bits per byte of a text file under a model (sliding windows)",
    .usage = "MODEL TEXT",
    .min_pos = 2,
    .max_pos = 2,
    .flags = FLAGS,
    .run = run,
};
