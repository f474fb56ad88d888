// test_tokenizer_ref.c — exactness against the shared reference encodings: Hugging Face tokenizers' ids for GPT-2
// and Mistral (hf_reference_encodings.json) through every loader that holds those vocabularies, llama.cpp's own
// vocabulary tests (*.gguf.inp / *.gguf.out), and decode(encode(x)) == x wherever the reference round-trips.
#include <jansson.h>
#include <stdlib.h>

#include "fixture_tokenizer.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

// Compare ids with a JSON array; report the first difference.
static bool ids_equal(const TokenIds *got, const json_t *want, const char *what, size_t idx) {
    size_t n = json_array_size(want);
    size_t i = 0;
    for (; i < n && i < got->n; i++)
        if (got->ids[i] != (int32_t)json_integer_value(json_array_get(want, i))) break;
    if (i == n && got->n == n) return true;
    test_fail_at(__FILE__, __LINE__, "%s[%zu]: ids differ at position %zu (got %d, want %d; lengths %zu vs %zu)", what, idx,
                 i, i < got->n ? got->ids[i] : -1, i < n ? (int)json_integer_value(json_array_get(want, i)) : -1, got->n, n);
    return false;
}

// Check plain/special/decoded/moby20k of one reference tokenizer. check_special: whether ADD_SPECIAL must match.
static void check_reference(Tokenizer *t, const json_t *ref, const char *model, bool check_special) {
    const json_t *strings = json_object_get(ref, "strings"), *m = json_object_get(ref, model);
    REQUIRE(json_is_array(strings) && json_is_object(m));
    const json_t *plain = json_object_get(m, "plain"), *special = json_object_get(m, "special"),
                 *decoded = json_object_get(m, "decoded");
    REQUIRE(json_array_size(plain) == json_array_size(strings));
    size_t ok_plain = 0, ok_special = 0, ok_decoded = 0, ok_round = 0, n_round = 0;
    for (size_t i = 0; i < json_array_size(strings); i++) {
        const json_t *s = json_array_get(strings, i);
        const char *text = json_string_value(s);
        size_t len = json_string_length(s);
        Err e;
        TokenIds ids = {0};
        REQUIREF(tokenizer_encode(t, text, len, 0, &ids, &e) == 0, "encode: %s", e.msg);
        char what[64];
        snprintf(what, sizeof what, "%s plain", model);
        ok_plain += ids_equal(&ids, json_array_get(plain, i), what, i);
        // decode of the plain ids against the reference decode
        Buf out;
        buf_init(&out);
        REQUIRE(tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e) == 0);
        const json_t *d = json_array_get(decoded, i);
        if (out.len == json_string_length(d) && memcmp(out.data ? out.data : "", json_string_value(d), out.len) == 0) ok_decoded++;
        else test_fail_at(__FILE__, __LINE__, "%s decoded[%zu] differs: '%.*s' vs '%s'", model, i, (int)out.len, out.data, json_string_value(d));
        if (json_string_length(d) == len && memcmp(json_string_value(d), text, len) == 0) {
            // the reference round-trips this string: so must we
            n_round++;
            if (out.len == len && memcmp(out.data ? out.data : "", text, len) == 0) ok_round++;
        }
        buf_free(&out);
        if (check_special) {
            ids.n = 0;
            REQUIRE(tokenizer_encode(t, text, len, TOKENIZE_ADD_SPECIAL, &ids, &e) == 0);
            snprintf(what, sizeof what, "%s special", model);
            ok_special += ids_equal(&ids, json_array_get(special, i), what, i);
        }
        token_ids_free(&ids);
    }
    CHECK_EQ_INT(ok_plain, json_array_size(strings));
    CHECK_EQ_INT(ok_decoded, json_array_size(strings));
    CHECK_EQ_INT(ok_round, n_round);
    CHECK(n_round > 30); // most strings round-trip; the check above must not be vacuous
    if (check_special) CHECK_EQ_INT(ok_special, json_array_size(strings));

    const json_t *moby = json_object_get(ref, "moby20k");
    TokenIds ids = {0};
    Err e;
    REQUIRE(tokenizer_encode(t, json_string_value(moby), json_string_length(moby), 0, &ids, &e) == 0);
    char what[64];
    snprintf(what, sizeof what, "%s moby20k", model);
    ids_equal(&ids, json_object_get(m, "moby20k"), what, 0);
    Buf out;
    buf_init(&out);
    REQUIRE(tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e) == 0);
    CHECK(out.len == json_string_length(moby) && memcmp(out.data, json_string_value(moby), out.len) == 0);
    buf_free(&out);
    token_ids_free(&ids);
}

TEST(tokenizer_ref_gpt2_encoder_json) {
    json_t *ref = fixture_reference_encodings();
    REQUIRE(ref);
    Tokenizer *t = fixture_tokenizer("tokenizers/gpt2");
    if (t) check_reference(t, ref, "gpt2", true);
    tokenizer_free(t);
    json_decref(ref);
}

TEST(tokenizer_ref_gpt2_gguf) {
    json_t *ref = fixture_reference_encodings();
    REQUIRE(ref);
    Tokenizer *t = fixture_tokenizer("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    if (t) check_reference(t, ref, "gpt2", true);
    tokenizer_free(t);
    json_decref(ref);
}

TEST(tokenizer_ref_mistral_json) {
    json_t *ref = fixture_reference_encodings();
    REQUIRE(ref);
    Tokenizer *t = fixture_tokenizer("tokenizers/mistral/tokenizer.json");
    if (t) check_reference(t, ref, "mistral", true);
    tokenizer_free(t);
    json_decref(ref);
}

// The heap merge (long words) and the direct scan (short words) must agree: force each on the same texts.
extern size_t tokenizer_small_word_limit;
TEST(tokenizer_merge_paths_agree) {
    json_t *ref = fixture_reference_encodings();
    REQUIRE(ref);
    Tokenizer *t = fixture_tokenizer("tokenizers/mistral/tokenizer.json"); // one word per text segment: long words
    Tokenizer *g = fixture_tokenizer("tokenizers/gpt2");
    REQUIRE(t && g);
    const json_t *strings = json_object_get(ref, "strings");
    size_t saved = tokenizer_small_word_limit;
    for (size_t k = 0; k <= json_array_size(strings); k++) {
        const json_t *s = k < json_array_size(strings) ? json_array_get(strings, k) : json_object_get(ref, "moby20k");
        const char *text = json_string_value(s);
        size_t len = k < json_array_size(strings) ? json_string_length(s) : 3000;
        for (int which = 0; which < 2; which++) {
            Tokenizer *tk = which ? g : t;
            TokenIds a = {0}, b = {0};
            Err e;
            tokenizer_small_word_limit = 0; // always the heap
            CHECK(tokenizer_encode(tk, text, len, 0, &a, &e) == 0);
            tokenizer_small_word_limit = SIZE_MAX; // always the scan
            CHECK(tokenizer_encode(tk, text, len, 0, &b, &e) == 0);
            CHECKF(a.n == b.n && (a.n == 0 || memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0), "merge paths differ on string %zu (%s)", k,
                   which ? "gpt2" : "mistral");
            token_ids_free(&a);
            token_ids_free(&b);
        }
    }
    tokenizer_small_word_limit = saved;
    tokenizer_free(t);
    tokenizer_free(g);
    json_decref(ref);
}

// llama.cpp's vocabulary test: inputs separated by "\n__ggml_vocab_test__\n", one line of expected ids per input.
// test-tokenizer-0 tokenizes with add_special = false, parse_special = false: our ORDINARY mode.
static void check_llamacpp(const char *vocab) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/llama.cpp-vocab/%s", vocab);
    Tokenizer *t = fixture_tokenizer(rel);
    REQUIRE(t);
    snprintf(rel, sizeof rel, "tokenizers/llama.cpp-vocab/%s.inp", vocab);
    const char *pin = fixture_path(rel);
    REQUIRE(pin);
    char *inp, *outs;
    size_t inp_len, out_len;
    Err e;
    REQUIRE(file_read_all(pin, &inp, &inp_len, &e) == 0);
    snprintf(rel, sizeof rel, "tokenizers/llama.cpp-vocab/%s.out", vocab);
    const char *pout = fixture_path(rel);
    REQUIRE(pout);
    REQUIRE(file_read_all(pout, &outs, &out_len, &e) == 0);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t pos = 0, opos = 0, n_cases = 0, n_ok = 0;
    while (pos < inp_len) {
        const char *next = memmem(inp + pos, inp_len - pos, sep, strlen(sep));
        size_t end = next ? (size_t)(next - inp) : inp_len;
        // expected line
        REQUIRE(opos < out_len);
        const char *nl = memchr(outs + opos, '\n', out_len - opos);
        size_t oend = nl ? (size_t)(nl - outs) : out_len;
        TokenIds want = {0};
        for (char *q = outs + opos; q < outs + oend;) {
            char *qe;
            long v = strtol(q, &qe, 10);
            if (qe == q) break;
            token_ids_push(&want, (int32_t)v);
            q = qe;
        }
        opos = oend + 1;
        for (int mode = 0; mode < 2; mode++) {
            TokenIds got = {0};
            REQUIRE(tokenizer_encode(t, inp + pos, end - pos, mode ? 0 : TOKENIZE_ORDINARY, &got, &e) == 0);
            bool same = got.n == want.n && (got.n == 0 || memcmp(got.ids, want.ids, got.n * sizeof *got.ids) == 0);
            if (mode == 0) n_ok += same;
            if (!same) {
                test_fail_at(__FILE__, __LINE__, "%s case %zu (%s mode) '%.*s': %zu ids vs %zu expected", vocab, n_cases,
                             mode ? "default" : "ordinary", (int)(end - pos), inp + pos, got.n, want.n);
            }
            token_ids_free(&got);
        }
        token_ids_free(&want);
        n_cases++;
        if (!next) break;
        pos = end + strlen(sep);
    }
    CHECK(n_cases > 20);
    CHECK_EQ_INT(n_ok, n_cases);
    free(inp);
    free(outs);
    tokenizer_free(t);
}

TEST(tokenizer_llamacpp_vocab_spm) { check_llamacpp("ggml-vocab-llama-spm.gguf"); }
TEST(tokenizer_llamacpp_vocab_gpt2) { check_llamacpp("ggml-vocab-gpt-2.gguf"); }
