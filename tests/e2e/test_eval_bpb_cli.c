// test_eval_bpb_cli.c — `lossy eval bpb` on stories260K: per-file loss and bits per byte equal a direct computation
// (BOS, then the file's tokens fed one at a time through the decoding path, -ln softmax in double, bits = nats / ln 2
// over the file's bytes) and the total sums nats, tokens and bytes; with windows shorter than the text it agrees with
// `eval ppl` (whose windows are checked against a direct computation in test_quantize_eval.c); special-token
// spellings in the text are scored as ordinary text; missing, empty, binary and non-UTF-8 files fail before the
// model is loaded.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static const char *TEXT_A = "Once upon a time, there was a little dog named Max. Max liked to run in the park.</s><s> "
                            "One day he found a big stick.\n";

static char *path_in_tmp(char *out, const char *name) {
    snprintf(out, 512, "%s/%s", test_tmpdir(), name);
    return out;
}

static int write_bytes(const char *path, const char *p, size_t n) {
    Err e;
    return file_write_atomic_bytes(path, p, n, &e);
}

// BOS + the text encoded as ordinary text, scored token by token in one context. *n_scored: the text's tokens.
static double direct_nll(const Model *m, const Tokenizer *tk, const char *text, size_t len, int64_t *n_scored) {
    Err e;
    TokenIds ids = {0};
    token_ids_push(&ids, tokenizer_special_id(tk, TOKEN_ID_BOS));
    if (tokenizer_encode(tk, text, len, TOKENIZE_ORDINARY, &ids, &e)) return NAN;
    ModelState s;
    if (model_state_init(&s, m, (int64_t)ids.n, NULL, &e)) return NAN;
    double nll = 0;
    for (size_t t = 0; t + 1 < ids.n; t++) {
        if (model_forward(&s, &ids.ids[t], 1, &e)) return NAN;
        const float *l = s.logits;
        double mx = l[0], sum = 0;
        for (int64_t v = 1; v < m->cfg.vocab_size; v++) mx = l[v] > mx ? l[v] : mx;
        for (int64_t v = 0; v < m->cfg.vocab_size; v++) sum += exp((double)l[v] - mx);
        nll += log(sum) + mx - l[ids.ids[t + 1]];
    }
    *n_scored = (int64_t)ids.n - 1;
    model_state_free(&s);
    token_ids_free(&ids);
    return nll;
}

static json_t *run_json(Buf *err, const char *const *argv) {
    Buf o = {0};
    int rc = run_lossy_argv(NULL, &o, err, argv);
    json_t *j = rc == 0 && o.data ? json_loads(o.data, 0, NULL) : NULL;
    if (!j) fprintf(stderr, "rc %d, stdout %s, stderr %s\n", rc, o.data ? o.data : "", err->data ? err->data : "");
    buf_free(&o);
    return j;
}

TEST(cli_eval_bpb_matches_direct_computation) {
    const char *mp = fixture_path("models/stories260K.gguf");
    REQUIRE(mp);
    char model[512], a[512], b[512];
    snprintf(model, sizeof model, "%s", mp);
    const char *sp = fixture_path("corpora/tinyshakespeare.txt");
    REQUIRE(sp);
    char *shake;
    size_t shake_len;
    Err e;
    REQUIRE(file_read_all(sp, &shake, &shake_len, &e) == 0);
    const size_t b_len = 600; // about 370 tokens: one window of 512
    REQUIRE(shake_len > b_len);
    REQUIRE(write_bytes(path_in_tmp(a, "a.txt"), TEXT_A, strlen(TEXT_A)) == 0);
    REQUIRE(write_bytes(path_in_tmp(b, "b.txt"), shake, b_len) == 0);
    Model m;
    REQUIREF(model_load(&m, model, &e) == 0, "%s", e.msg);
    Tokenizer *tk = NULL;
    REQUIREF(tokenizer_load(model, &tk, &e) == 0, "%s", e.msg);
    int64_t na, nb;
    double nll_a = direct_nll(&m, tk, TEXT_A, strlen(TEXT_A), &na), nll_b = direct_nll(&m, tk, shake, b_len, &nb);
    REQUIRE(!isnan(nll_a) && !isnan(nll_b) && nb + 1 < 512);
    // the spellings of BOS/EOS inside the text are ordinary text: more tokens than one id each
    TokenIds special = {0};
    REQUIRE(tokenizer_encode(tk, "</s><s>", 7, TOKENIZE_ORDINARY, &special, &e) == 0);
    CHECK(special.n > 2);
    token_ids_free(&special);

    Buf err = {0};
    const char *argv[] = {"eval", "bpb", model, a, b, "--json", "-t", "2", NULL};
    json_t *j = run_json(&err, argv);
    REQUIRE(j);
    buf_free(&err);
    json_t *files = json_object_get(j, "files");
    REQUIRE(json_array_size(files) == 2);
    const struct {
        const char *path;
        double nll;
        int64_t tokens, bytes;
    } want[2] = {{a, nll_a, na, (int64_t)strlen(TEXT_A)}, {b, nll_b, nb, (int64_t)b_len}};
    for (size_t i = 0; i < 2; i++) {
        json_t *f = json_array_get(files, i);
        CHECK_EQ_STR(json_string_value(json_object_get(f, "path")), want[i].path);
        CHECK_EQ_INT(json_integer_value(json_object_get(f, "tokens")), want[i].tokens);
        CHECK_EQ_INT(json_integer_value(json_object_get(f, "bytes")), want[i].bytes);
        double nll = json_real_value(json_object_get(f, "nll"));
        CHECKF(fabs(nll - want[i].nll) <= 1e-4 * want[i].nll, "file %zu: nll %.9g, direct %.9g", i, nll, want[i].nll);
        CHECK_NEAR(json_real_value(json_object_get(f, "loss")), want[i].nll / (double)want[i].tokens, 1e-4);
        CHECK_NEAR(json_real_value(json_object_get(f, "bits_per_byte")), want[i].nll / log(2.0) / (double)want[i].bytes, 1e-4);
    }
    json_t *t = json_object_get(j, "total");
    double total = nll_a + nll_b;
    CHECK_EQ_INT(json_integer_value(json_object_get(t, "tokens")), na + nb);
    CHECK_EQ_INT(json_integer_value(json_object_get(t, "bytes")), (int64_t)(strlen(TEXT_A) + b_len));
    CHECK_NEAR(json_real_value(json_object_get(t, "loss")), total / (double)(na + nb), 1e-4);
    CHECK_NEAR(json_real_value(json_object_get(t, "bits_per_byte")), total / log(2.0) / (double)(strlen(TEXT_A) + b_len), 1e-4);
    json_decref(j);

    // windows shorter than the text: the same sliding-window scores as `eval ppl`
    REQUIRE(write_bytes(b, shake, 3000) == 0);
    const char *argv_b[] = {"eval", "bpb", model, b, "--ctx", "64", "--stride", "24", "--json", NULL};
    const char *argv_p[] = {"eval", "ppl", model, b, "--ctx", "64", "--stride", "24", "--json", NULL};
    json_t *jb = run_json(&err, argv_b);
    buf_free(&err);
    json_t *jp = run_json(&err, argv_p);
    buf_free(&err);
    REQUIRE(jb && jp);
    json_t *fb = json_array_get(json_object_get(jb, "files"), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(fb, "tokens")), json_integer_value(json_object_get(jp, "scored")));
    CHECK_NEAR(json_real_value(json_object_get(fb, "nll")), json_real_value(json_object_get(jp, "nll")), 1e-9);
    CHECK_NEAR(json_real_value(json_object_get(fb, "bits_per_byte")), json_real_value(json_object_get(jp, "bits_per_byte")), 1e-9);
    json_decref(jb);
    json_decref(jp);

    // the text report
    Buf o = {0};
    CHECK(run_lossy(NULL, &o, &err, "eval", "bpb", model, a, b, NULL) == 0);
    CHECKF(o.data && strstr(o.data, "bits/byte") && strstr(o.data, "total") && strstr(o.data, "a.txt"), "%s", o.data ? o.data : "");
    buf_free(&o), buf_free(&err);
    tokenizer_free(tk);
    model_free(&m);
    free(shake);
}

TEST(cli_eval_bpb_bad_input) {
    const char *mp = fixture_path("models/stories260K.gguf");
    REQUIRE(mp);
    char model[512], good[512], empty[512], bin[512], latin1[512];
    snprintf(model, sizeof model, "%s", mp);
    REQUIRE(write_bytes(path_in_tmp(good, "good.txt"), TEXT_A, strlen(TEXT_A)) == 0);
    REQUIRE(write_bytes(path_in_tmp(empty, "empty.txt"), "", 0) == 0);
    REQUIRE(write_bytes(path_in_tmp(bin, "bin.dat"), "\x7f" "ELF\x02\x01\x01\0\0\0", 10) == 0);
    REQUIRE(write_bytes(path_in_tmp(latin1, "latin1.txt"), "caf\xe9\n", 5) == 0);
    const struct {
        const char *file, *want;
    } cases[] = {
        {"/nonexistent/x.txt", "/nonexistent/x.txt"},
        {empty, "empty"},
        {bin, "binary"},
        {latin1, "not valid UTF-8"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Buf o = {0}, err = {0};
        // a bad file after a good one: still refused before any scoring, and the model is not even loaded
        int rc = run_lossy(NULL, &o, &err, "eval", "bpb", "/nonexistent/model.gguf", good, cases[c].file, NULL);
        CHECKF(rc == 1 && err.data && strstr(err.data, cases[c].want) && !strstr(err.data, "model.gguf"), "case %zu: rc %d: %s",
               c, rc, err.data ? err.data : "");
        CHECK(o.len == 0);
        buf_free(&o), buf_free(&err);
    }
    Buf o = {0}, err = {0};
    CHECK(run_lossy(NULL, &o, &err, "eval", "bpb", model, NULL) == 2); // no text
    buf_free(&err);
    CHECK(run_lossy(NULL, &o, &err, "eval", "bpb", model, good, "--ctx", "1", NULL) == 2);
    CHECK(err.data && strstr(err.data, "--ctx"));
    buf_free(&err);
    CHECK(run_lossy(NULL, &o, &err, "eval", "bpb", model, good, "--ctx", "16", "--stride", "16", NULL) == 2);
    CHECK(err.data && strstr(err.data, "--stride"));
    buf_free(&err);
    CHECK(run_lossy(NULL, &o, &err, "eval", "bpb", "/nonexistent/model.gguf", good, NULL) == 1);
    CHECK(err.data && strstr(err.data, "/nonexistent/model.gguf"));
    buf_free(&o), buf_free(&err);
}
