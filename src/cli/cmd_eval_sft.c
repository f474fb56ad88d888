// cmd_eval_sft.c — `lossy eval sft MODEL TESTSET.jsonl`: exact-match accuracy of a chat model on held-out
// conversations, the fraction of answers closed with end-of-turn, per-category figures and examples. The scoring is
// src/train/sft_eval.c; the setup and the format choice are `lossy chat`'s (cli_chat.h) and the answers come from the
// same ChatSession, greedily, so what this reports is what a user sees in `lossy chat --temp 0`.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_chat.h"
#include "sample/chat_session.h"
#include "train/sft_eval.h"

static const CliFlag FLAGS[] = {
    {"max-tokens", 'n', FLAG_INT, "N", "64", "tokens per answer at most"},
    {"show", 0, FLAG_INT, "N", "0", "print the first N examples (prompt, reference, answer)"},
    {"show-wrong", 0, FLAG_BOOL, NULL, NULL, "with --show: print the first N wrong answers instead"},
    {"limit", 0, FLAG_INT, "N", "0", "score only the first N conversations (0: all)"},
    {"chat-format", 0, FLAG_STR, "NAME", NULL,
     "chatml, llama2, llama3, mistral, lossy, or raw; default: from the model's template, as `lossy chat` chooses"},
    {"ctx", 'c', FLAG_INT, "N", "0", "context length (0 = the model's, capped at 4096)"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"json", 0, FLAG_BOOL, NULL, NULL, "print machine-readable JSON"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

typedef struct Shown {
    int64_t want, done;
    bool wrong_only, json, progress;
    size_t total;
    json_t *examples; // --json
} Shown;

static const char *last_user(const SftEvalItem *it) { return it->conv.msgs[it->ref - 1].content; }

static void on_outcome(void *ctx, size_t index, const SftEvalOutcome *o) {
    Shown *s = ctx;
    if (s->progress) fprintf(stderr, "\r%zu/%zu", index + 1, s->total);
    if (s->done >= s->want || (s->wrong_only && o->correct)) return;
    s->done++;
    const SftEvalItem *it = o->item;
    const ChatMessage *ref = &it->conv.msgs[it->ref];
    if (s->json) {
        json_t *x = json_object();
        json_object_set_new(x, "line", json_integer((json_int_t)it->line));
        json_object_set_new(x, "category", it->category ? json_string(it->category) : json_null());
        json_object_set_new(x, "prompt", json_string(last_user(it)));
        json_object_set_new(x, "reference", json_stringn(ref->content, ref->len));
        json_object_set_new(x, "answer", json_stringn(o->answer, o->answer_len));
        json_object_set_new(x, "correct", json_boolean(o->correct));
        json_object_set_new(x, "ended", json_boolean(o->ended));
        json_object_set_new(x, "too_long", json_boolean(o->too_long));
        json_array_append_new(s->examples, x);
        return;
    }
    if (s->progress) fprintf(stderr, "\r");
    printf("--- line %lld%s%s: %s%s\n", (long long)it->line, it->category ? ", " : "", it->category ? it->category : "",
           o->correct ? "correct" : "WRONG", o->too_long ? " (prompt too long for the context)" : o->ended ? "" : " (no end of turn)");
    printf("user: %s\nreference: %.*s\nanswer: %.*s\n", last_user(it), (int)ref->len, ref->content, (int)o->answer_len, o->answer);
    fflush(stdout);
}

static double frac(int64_t k, int64_t n) { return n ? (double)k / (double)n : 0.0; }

static json_t *tally_json(const SftEvalTally *t) {
    return json_pack("{s:I, s:I, s:f, s:I, s:f, s:I}", "n", (json_int_t)t->n, "correct", (json_int_t)t->correct,
                     "accuracy", frac(t->correct, t->n), "ended", (json_int_t)t->ended, "ended_fraction",
                     frac(t->ended, t->n), "too_long", (json_int_t)t->too_long);
}

static int run(const CliArgs *a) {
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    const char *mpath = a->pos[0], *tpath = a->pos[1];
    int64_t max_tokens = cli_flag_int(a, "max-tokens"), show = cli_flag_int(a, "show"), limit = cli_flag_int(a, "limit");
    if (max_tokens < 1) return cli_errorf(EXIT_USAGE, "--max-tokens", "must be at least 1");
    if (show < 0) return cli_errorf(EXIT_USAGE, "--show", "must be >= 0");
    if (limit < 0) return cli_errorf(EXIT_USAGE, "--limit", "must be >= 0");
    if (cli_flag_int(a, "ctx") < 0) return cli_errorf(EXIT_USAGE, "--ctx", "must be >= 0");
    Err e;
    // the test set first: a malformed file fails before the model is loaded
    SftEvalSet set;
    if (sft_eval_set_load(&set, tpath, &e)) return cli_fail(&e, tpath);
    SamplerParams sp;
    sampler_params_default(&sp);
    sp.temperature = 0; // greedy: the answer is the model's most likely one, and the score is reproducible
    ChatSetup cs;
    int rc = cli_chat_setup_init(&cs, a, mpath, &sp, n_threads);
    if (rc != EXIT_OK) {
        sft_eval_set_free(&set);
        return rc;
    }
    SftEvalResult r;
    memset(&r, 0, sizeof r);
    Shown shown = {.want = show, .wrong_only = cli_flag_bool(a, "show-wrong"), .json = cli_flag_bool(a, "json")};
    size_t n = limit > 0 && (uint64_t)limit < set.n ? (size_t)limit : set.n;
    shown.total = n;
    shown.progress = !shown.json && isatty(STDERR_FILENO);
    if (shown.json) shown.examples = json_array();
    if (!shown.json)
        fprintf(stderr, "lossy: scoring %s on %zu conversations of %s: %s%s, greedy, at most %lld tokens per answer\n",
                mpath, n, tpath, cs.raw ? "raw text continuation" : "chat format ", cs.raw ? "" : chat_format_name(cs.fmt),
                (long long)max_tokens);
    if (sft_eval_run(&cs.session, &set, n, max_tokens, on_outcome, &shown, &r, &e)) {
        if (shown.progress) fprintf(stderr, "\n");
        rc = cli_fail(&e, tpath);
        goto out;
    }
    if (shown.progress) fprintf(stderr, "\r\033[K");
    if (shown.json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I}", "model", mpath, "testset", tpath, "chat_format",
                              cs.raw ? "raw" : chat_format_name(cs.fmt), "max_tokens", (json_int_t)max_tokens);
        json_t *t = tally_json(&r.total);
        json_object_update(j, t);
        json_decref(t);
        json_t *cats = json_object();
        for (size_t i = 0; i < r.n_cats; i++) json_object_set_new(cats, r.cats[i].name, tally_json(&r.cats[i]));
        json_object_set_new(j, "categories", cats);
        json_object_set_new(j, "generated_tokens", json_integer((json_int_t)r.generated));
        json_object_set_new(j, "seconds", json_real(r.seconds));
        json_object_set_new(j, "examples", shown.examples);
        shown.examples = NULL;
        char *txt = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        puts(txt);
        free(txt);
        json_decref(j);
    } else {
        const SftEvalTally *t = &r.total;
        if (shown.done) printf("---\n");
        printf("exact match: %lld/%lld = %.1f%% (trimmed, case-insensitive, a trailing period ignored)\n",
               (long long)t->correct, (long long)t->n, 100 * frac(t->correct, t->n));
        printf("ended with end-of-turn within %lld tokens: %lld/%lld = %.1f%%\n", (long long)max_tokens,
               (long long)t->ended, (long long)t->n, 100 * frac(t->ended, t->n));
        if (t->too_long) printf("prompt too long for the context (counted wrong): %lld\n", (long long)t->too_long);
        if (r.n_cats) {
            size_t w = strlen("category");
            for (size_t i = 0; i < r.n_cats; i++) w = strlen(r.cats[i].name) > w ? strlen(r.cats[i].name) : w;
            printf("%-*s %7s %8s %8s\n", (int)w, "category", "n", "exact", "ended");
            for (size_t i = 0; i < r.n_cats; i++) {
                const SftEvalTally *c = &r.cats[i];
                printf("%-*s %7lld %7.1f%% %7.1f%%\n", (int)w, c->name, (long long)c->n, 100 * frac(c->correct, c->n),
                       100 * frac(c->ended, c->n));
            }
        }
        printf("%lld answer tokens in %.1f s (%.0f tok/s)\n", (long long)r.generated, r.seconds,
               r.seconds > 0 ? (double)r.generated / r.seconds : 0.0);
    }
out:
    json_decref(shown.examples);
    sft_eval_result_free(&r);
    cli_chat_setup_free(&cs);
    sft_eval_set_free(&set);
    return rc;
}

const CliCommand cmd_eval_sft = {
    .name = "eval sft",
    .summary = "exact-match accuracy of a chat model on held-out JSONL conversations",
    .usage = "MODEL TESTSET.jsonl",
    .min_pos = 2,
    .max_pos = 2,
    .flags = FLAGS,
    .details =
        "Each line of TESTSET is an OpenAI-style {\"messages\": [...]}: the last assistant message is the reference "
        "answer, the messages before it the prompt, rendered with the model's chat format (chosen as `lossy chat` "
        "chooses it; user text is always ordinary text). The model answers greedily, at most --max-tokens tokens. "
        "Exact match compares the answer and the reference after trimming surrounding whitespace, dropping one "
        "trailing period and case-folding. Also reported: the fraction of answers that ended with end-of-turn within "
        "the limit, and both figures per category (a row's \"category\" string, or for `lossy data sft-synth` rows "
        "the question type in meta: capital, add, ..., multi_turn). A malformed line is reported with its number "
        "before anything runs.",
    .run = run,
};
