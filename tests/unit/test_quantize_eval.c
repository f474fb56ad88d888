// test_quantize_eval.c — `lossy quantize` (types chosen per tensor as llama.cpp chooses them, values that round-trip
// within each format's precision, files independent of the thread count) and `lossy eval ppl` (against a direct
// computation: token-by-token logits and a double-precision log-softmax over the same windows).
#include <jansson.h>
#include <stdlib.h>

#include "model/eval.h"
#include "model/model.h"
#include "random_model.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

// Expected type of a tensor of the 4-layer random model after `quantize --type`: llama.cpp's rules written out by
// hand for this shape (use_more_bits picks layers 2 and 3 of 4).
static DType expected_type(const char *type, const char *name) {
    if (!strstr(name, ".weight") || strstr(name, "_norm")) return DT_F32;
    bool output = strcmp(name, "output.weight") == 0;
    bool more = strstr(name, "blk.2.attn_v") || strstr(name, "blk.3.attn_v") || strstr(name, "blk.2.ffn_down") ||
                strstr(name, "blk.3.ffn_down");
    if (strcmp(type, "q8_0") == 0) return DT_Q8_0;
    if (output) return DT_Q6_K;
    if (strcmp(type, "q4_0") == 0) return DT_Q4_0;
    if (strcmp(type, "q4_k") == 0) return DT_Q4_K;
    if (strcmp(type, "q5_k") == 0) return DT_Q5_K;
    if (strcmp(type, "q6_k") == 0) return DT_Q6_K;
    if (strcmp(type, "q4_k_m") == 0) return more ? DT_Q6_K : DT_Q4_K;
    if (strcmp(type, "q5_k_m") == 0) return more ? DT_Q6_K : DT_Q5_K;
    return DT_COUNT;
}

// Relative RMSE a format keeps Gaussian weights within (measured values are about half of these).
static double rmse_bound(DType t) {
    switch (t) {
    case DT_F32: return 0;
    case DT_Q8_0: return 0.01;
    case DT_Q6_K: return 0.03;
    case DT_Q5_K: return 0.06;
    case DT_Q4_K: return 0.12;
    case DT_Q4_0: return 0.15;
    default: return -1;
    }
}

static bool same_file(const char *a, const char *b) {
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    Err e;
    bool same = file_read_all(a, &da, &la, &e) == 0 && file_read_all(b, &db, &lb, &e) == 0 && la == lb && memcmp(da, db, la) == 0;
    free(da), free(db);
    return same;
}

TEST(quantize_types_follow_llama_cpp_and_round_trip) {
    char src[4200], out[4300], out1[4300];
    snprintf(src, sizeof src, "%s/src.gguf", test_tmpdir());
    Err e;
    REQUIREF(write_random_model(src, DT_F32, NULL, 4, &e) == 0, "%s", e.msg);
    Model ms;
    REQUIREF(model_load(&ms, src, &e) == 0, "%s", e.msg);
    const char *types[] = {"q8_0", "q4_0", "q4_k", "q5_k", "q6_k", "q4_k_m", "q5_k_m"};
    float *a = xmalloc_array(512, sizeof(float)), *b = xmalloc_array(512, sizeof(float));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        snprintf(out, sizeof out, "%s/%s.gguf", test_tmpdir(), types[ti]);
        Buf o = {0}, er = {0};
        int rc = run_lossy(NULL, &o, &er, "quantize", src, out, "--type", types[ti], "-t", "2", NULL);
        CHECKF(rc == 0, "quantize %s: %s", types[ti], er.data ? er.data : "");
        buf_free(&o), buf_free(&er);
        if (rc) continue;
        Model mq;
        REQUIREF(model_load(&mq, out, &e) == 0, "%s: %s", types[ti], e.msg);
        for (size_t i = 0; i < ms.w.n; i++) {
            const Tensor *t = &ms.w.t[i], *q = weights_find(&mq.w, t->name);
            REQUIREF(q, "%s: tensor %s missing", types[ti], t->name);
            DType want = expected_type(types[ti], t->name);
            CHECKF(q->type == (uint32_t)want, "%s: %s is %s, expected %s", types[ti], t->name, dtype_name(q->type), dtype_name(want));
            // dequantized rows against the source: relative RMSE within the format's precision
            size_t rs, rq;
            REQUIRE(quant_row_bytes((DType)t->type, t->ne[0], &rs, &e) == 0 && quant_row_bytes((DType)q->type, t->ne[0], &rq, &e) == 0);
            double num = 0, den = 0;
            for (int64_t r = 0; r < tensor_rows(t); r++) {
                REQUIRE(quant_dequantize_row((DType)t->type, (const uint8_t *)t->data + r * rs, a, t->ne[0], &e) == 0);
                REQUIRE(quant_dequantize_row((DType)q->type, (const uint8_t *)q->data + r * rq, b, t->ne[0], &e) == 0);
                for (int64_t c = 0; c < t->ne[0]; c++) num += ((double)a[c] - b[c]) * ((double)a[c] - b[c]), den += (double)a[c] * a[c];
            }
            double rel = sqrt(num / den);
            CHECKF(rel <= rmse_bound((DType)q->type), "%s: %s (%s) relative RMSE %.4g > %.4g", types[ti], t->name,
                   dtype_name(q->type), rel, rmse_bound((DType)q->type));
        }
        // the file runs
        ModelState s;
        REQUIRE(model_state_init(&s, &mq, 16, NULL, &e) == 0);
        int32_t tok[3] = {5, 77, 123};
        CHECKF(model_forward(&s, tok, 3, &e) == 0, "%s: %s", types[ti], e.msg);
        for (int64_t v = 0; v < mq.cfg.vocab_size; v++) REQUIRE(isfinite(s.logits[v]));
        model_state_free(&s);
        model_free(&mq);
    }
    // one thread writes the same bytes as two
    snprintf(out, sizeof out, "%s/q4_k_m.gguf", test_tmpdir());
    snprintf(out1, sizeof out1, "%s/q4_k_m_1.gguf", test_tmpdir());
    Buf o = {0}, er = {0};
    CHECK(run_lossy(NULL, &o, &er, "quantize", src, out1, "--type", "q4_k_m", "-t", "1", NULL) == 0);
    CHECK(same_file(out, out1));
    buf_free(&o), buf_free(&er);
    free(a), free(b);
    model_free(&ms);
}

TEST(quantize_bad_input) {
    char src[4200], out[4300];
    snprintf(src, sizeof src, "%s/src.gguf", test_tmpdir());
    snprintf(out, sizeof out, "%s/out.gguf", test_tmpdir());
    Err e;
    REQUIREF(write_random_model(src, DT_F32, NULL, 1, &e) == 0, "%s", e.msg);
    Buf o = {0}, er = {0};
    CHECK(run_lossy(NULL, &o, &er, "quantize", src, out, "--type", "q3_k", NULL) == 2);
    CHECK(er.data && strstr(er.data, "q3_k"));
    buf_free(&er);
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/none.gguf", test_tmpdir());
    CHECK(run_lossy(NULL, &o, &er, "quantize", missing, out, "--type", "q8_0", NULL) == 1);
    CHECK(er.data && strstr(er.data, "none.gguf"));
    buf_free(&er);
    CHECK(run_lossy(NULL, &o, &er, "quantize", src, NULL) == 2); // OUT missing
    buf_free(&o), buf_free(&er);
}

static const char *TEXT =
    "Once upon a time, there was a little dog named Max. Max liked to run in the park. One day he found a big "
    "stick. He ran home to show his friend Sue. Sue laughed and threw the stick, and Max ran after it.";

// Direct computation: every window on a fresh state, one token at a time (the decoding path, not the prompt
// GEMMs eval uses), -ln softmax in double, each target scored by the first window that contains it.
static double direct_nll(const Model *m, const int32_t *tok, int64_t n, int64_t ctx, int64_t stride, int64_t *scored) {
    Err e;
    ModelState s;
    if (model_state_init(&s, m, ctx, NULL, &e)) return NAN;
    double nll = 0;
    int64_t done = 1;
    *scored = 0;
    for (int64_t b = 0;; b += stride) {
        int64_t end = b + ctx < n ? b + ctx : n;
        model_state_reset(&s);
        for (int64_t t = b; t < end - 1; t++) {
            if (model_forward(&s, &tok[t], 1, &e)) return NAN;
            if (t + 1 >= done) {
                const float *l = s.logits;
                double mx = l[0], sum = 0;
                for (int64_t v = 1; v < m->cfg.vocab_size; v++) mx = l[v] > mx ? l[v] : mx;
                for (int64_t v = 0; v < m->cfg.vocab_size; v++) sum += exp((double)l[v] - mx);
                nll += log(sum) + mx - l[tok[t + 1]];
                ++*scored;
            }
        }
        done = end;
        if (end == n) break;
    }
    model_state_free(&s);
    return nll;
}

TEST(eval_ppl_matches_direct_computation) {
    const char *mp = fixture_path("models/stories260K.gguf");
    REQUIRE(mp);
    char model[4200], text[4300];
    snprintf(model, sizeof model, "%s", mp);
    snprintf(text, sizeof text, "%s/t.txt", test_tmpdir());
    Err e;
    REQUIRE(file_write_atomic_bytes(text, TEXT, strlen(TEXT), &e) == 0);
    Model m;
    REQUIREF(model_load(&m, model, &e) == 0, "%s", e.msg);
    Tokenizer *tk = NULL;
    REQUIREF(tokenizer_load(model, &tk, &e) == 0, "%s", e.msg);
    TokenIds ids = {0};
    token_ids_push(&ids, tokenizer_special_id(tk, TOKEN_ID_BOS));
    REQUIRE(tokenizer_encode(tk, TEXT, strlen(TEXT), TOKENIZE_ORDINARY, &ids, &e) == 0);
    REQUIRE(ids.n > 40);
    const struct {
        const char *ctx, *stride;
    } cases[] = {{"24", "10"}, {"512", "100"}, {"7", "6"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Buf o = {0}, er = {0};
        int rc = run_lossy(NULL, &o, &er, "eval", "ppl", model, text, "--ctx", cases[c].ctx, "--stride", cases[c].stride,
                           "--json", "-t", "2", NULL);
        CHECKF(rc == 0, "eval ppl: %s", er.data ? er.data : "");
        json_t *j = o.data ? json_loads(o.data, 0, NULL) : NULL;
        REQUIREF(j, "no JSON: %s", o.data ? o.data : "");
        int64_t ctx = atoll(cases[c].ctx), stride = atoll(cases[c].stride), scored = 0;
        if (ctx > (int64_t)ids.n) ctx = (int64_t)ids.n; // one window; the direct loop needs ctx <= n only for its state
        double want = direct_nll(&m, ids.ids, (int64_t)ids.n, ctx, stride, &scored);
        double got = json_real_value(json_object_get(j, "nll"));
        CHECK_EQ_INT(json_integer_value(json_object_get(j, "scored")), scored);
        CHECK_EQ_INT(scored, (int64_t)ids.n - 1);
        CHECKF(fabs(got - want) <= 1e-4 * want, "ctx %s stride %s: nll %.9g, direct %.9g", cases[c].ctx, cases[c].stride, got, want);
        CHECK_NEAR(json_real_value(json_object_get(j, "ppl")), exp(want / (double)scored), 1e-4 * exp(want / (double)scored));
        CHECK_NEAR(json_real_value(json_object_get(j, "bits_per_byte")), want / log(2.0) / (double)strlen(TEXT), 1e-4);
        json_decref(j);
        buf_free(&o), buf_free(&er);
    }
    token_ids_free(&ids);
    tokenizer_free(tk);
    model_free(&m);
}

TEST(eval_ppl_bad_input) {
    const char *mp = fixture_path("models/stories260K.gguf");
    REQUIRE(mp);
    char model[4200], text[4300], empty[4300];
    snprintf(model, sizeof model, "%s", mp);
    snprintf(text, sizeof text, "%s/t.txt", test_tmpdir());
    snprintf(empty, sizeof empty, "%s/empty.txt", test_tmpdir());
    Err e;
    REQUIRE(file_write_atomic_bytes(text, TEXT, strlen(TEXT), &e) == 0);
    REQUIRE(file_write_atomic_bytes(empty, "", 0, &e) == 0);
    Buf o = {0}, er = {0};
    CHECK(run_lossy(NULL, &o, &er, "eval", "ppl", model, text, "--ctx", "16", "--stride", "16", NULL) == 2);
    CHECK(er.data && strstr(er.data, "--stride"));
    buf_free(&er);
    CHECK(run_lossy(NULL, &o, &er, "eval", "ppl", model, text, "--ctx", "1", NULL) == 2);
    buf_free(&er);
    CHECK(run_lossy(NULL, &o, &er, "eval", "ppl", model, empty, NULL) == 1);
    CHECK(er.data && strstr(er.data, "token"));
    buf_free(&er);
    CHECK(run_lossy(NULL, &o, &er, "eval", "ppl", model, "/nonexistent/text.txt", NULL) == 1);
    CHECK(er.data && strstr(er.data, "/nonexistent/text.txt"));
    buf_free(&o), buf_free(&er);
    // the library call refuses bad windows too
    Model m;
    REQUIREF(model_load(&m, model, &e) == 0, "%s", e.msg);
    ModelState s;
    REQUIRE(model_state_init(&s, &m, 8, NULL, &e) == 0);
    int32_t tok[4] = {1, 2, 3, 4};
    EvalResult r;
    CHECK(eval_nll(&s, tok, 4, 9, 2, &r, &e) != 0);  // window longer than the state's context
    CHECK(eval_nll(&s, tok, 1, 8, 2, &r, &e) != 0);  // one token
    int32_t bad[2] = {1, 99999};
    CHECK(eval_nll(&s, bad, 2, 8, 2, &r, &e) != 0 && strstr(e.msg, "vocabulary"));
    model_state_free(&s);
    model_free(&m);
}
