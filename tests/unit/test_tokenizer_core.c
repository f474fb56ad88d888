// test_tokenizer_core.c — the tokenizer core on small hand-made vocabularies (merge order, byte fallback, added
// tokens, modes, templates, pre-tokenizer behaviours), lossless round trips of random bytes through the real GPT-2
// and Mistral vocabularies, control tokens never coming from ordinary text, and bad input: malformed tokenizer.json
// and GGUF metadata, ids out of range, plus a deterministic mutation run over a small tokenizer.json.
#include <jansson.h>
#include <stdlib.h>

#include "formats/gguf.h"
#include "fixture_tokenizer.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static bool ids_are(const TokenIds *v, const int32_t *want, size_t n) {
    return v->n == n && (n == 0 || memcmp(v->ids, want, n * sizeof *want) == 0);
}

static void print_ids(const char *what, const TokenIds *v) {
    char buf[512];
    size_t o = 0;
    for (size_t i = 0; i < v->n && o < sizeof buf - 16; i++) o += (size_t)snprintf(buf + o, sizeof buf - o, " %d", v->ids[i]);
    buf[o] = 0;
    test_fail_at(__FILE__, __LINE__, "%s: got [%s ]", what, buf);
}

#define CHECK_IDS(t, text, mode, ...)                                                                        \
    do {                                                                                                     \
        const int32_t want_[] = {__VA_ARGS__};                                                               \
        TokenIds got_ = {0};                                                                                 \
        Err e_;                                                                                              \
        CHECKF(tokenizer_encode((t), (text), strlen(text), (mode), &got_, &e_) == 0, "encode: %s", e_.msg); \
        if (!ids_are(&got_, want_ + 1, sizeof want_ / sizeof want_[0] - 1)) print_ids(text, &got_);         \
        token_ids_free(&got_);                                                                               \
    } while (0)

// A tiny sentencepiece-style vocabulary:
//   0 <unk>  1 <s>  2 </s>  3 ▁  4 a  5 b  6 c  7 ab  8 ▁ab  9 abc  10 <0x41>  11 <0xC3>  12 <0xA9>  13 <ctl>
static Tokenizer *tiny_spm(bool merges_mode, Err *e) {
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_SPM);
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "c", "ab", "\xe2\x96\x81" "ab",
                                       "abc", "<0x41>", "<0xC3>", "<0xA9>", "<ctl>"};
    static const float scores[] = {0, 0, 0, -1, -2, -3, -4, -5, -6, -7, 0, 0, 0, 0};
    static const TokenType types[] = {TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_NORMAL,
                                      TOKEN_NORMAL, TOKEN_NORMAL, TOKEN_NORMAL, TOKEN_NORMAL, TOKEN_NORMAL,
                                      TOKEN_BYTE, TOKEN_BYTE, TOKEN_BYTE, TOKEN_CONTROL};
    for (int i = 0; i < 14; i++)
        if (tokenizer_add_token(t, toks[i], strlen(toks[i]), scores[i], types[i], e) != i) goto fail;
    if (merges_mode) {
        // ranks: a+b first, then ▁+ab, then ab+c
        if (tokenizer_add_merge(t, 4, 5, e) || tokenizer_add_merge(t, 3, 7, e) || tokenizer_add_merge(t, 7, 6, e)) goto fail;
    }
    tokenizer_set_special_id(t, TOKEN_ID_UNK, 0);
    tokenizer_set_special_id(t, TOKEN_ID_BOS, 1);
    tokenizer_set_special_id(t, TOKEN_ID_EOS, 2);
    tokenizer_set_add_bos_eos(t, true, true);
    tokenizer_set_byte_fallback(t, true);
    tokenizer_add_norm_prepend(t, "\xe2\x96\x81", 3);
    tokenizer_add_norm_replace(t, " ", 1, "\xe2\x96\x81", 3);
    tokenizer_set_decoder(t, TOKDEC_METASPACE | TOKDEC_BYTE_FALLBACK | TOKDEC_STRIP_SPACE);
    if (tokenizer_finalize(t, e)) goto fail;
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}

TEST(tokenizer_tiny_spm_scores_and_merges) {
    for (int mm = 0; mm < 2; mm++) {
        Err e;
        Tokenizer *t = tiny_spm(mm == 1, &e);
        REQUIREF(t, "%s", e.msg);
        // "ab" -> ▁ab (score: ab (-5) merges before ▁+ab (-6); merges: a+b then ▁+ab)
        CHECK_IDS(t, "ab", 0, -1, 8);
        // "abc": scores: ab(-5) > ▁ab(-6) > abc(-7): ▁ab then c stays; merges: a+b, ▁+ab, (ab+c no longer adjacent)
        CHECK_IDS(t, "abc", 0, -1, 8, 6);
        // unknown characters: 'A' has a byte token, 'é' = C3 A9 too, 'z' has none -> <unk>
        CHECK_IDS(t, "A", 0, -1, 3, 10);
        CHECK_IDS(t, "\xc3\xa9", 0, -1, 3, 11, 12);
        CHECK_IDS(t, "z", 0, -1, 3, 0);
        // templates and modes
        CHECK_IDS(t, "a", TOKENIZE_ADD_SPECIAL, -1, 1, 3, 4, 2);
        CHECK_IDS(t, "<s>a", 0, -1, 1, 3, 4);               // default: <s> recognised, ▁ prepended to the text after it
        CHECK_IDS(t, "a<ctl>", 0, -1, 3, 4, 13);
        TokenIds v = {0};
        CHECK(tokenizer_encode(t, "<s>a<ctl></s>", 13, TOKENIZE_ORDINARY, &v, &e) == 0);
        // (unknown characters legitimately become <unk>; control tokens never appear)
        for (size_t i = 0; i < v.n; i++)
            CHECKF(tokenizer_token_type(t, v.ids[i]) != TOKEN_CONTROL, "control id %d in ordinary mode", v.ids[i]);
        CHECK(v.n > 3);
        // decode: ▁ -> space, leading space stripped, bytes joined, control text kept unless skipped
        Buf out;
        buf_init(&out);
        int32_t ids[] = {1, 8, 6, 3, 11, 12, 13};
        CHECK(tokenizer_decode(t, ids, 7, 0, &out, &e) == 0);
        CHECK(out.len == strlen("<s> abc \xc3\xa9<ctl>") && memcmp(out.data, "<s> abc \xc3\xa9<ctl>", out.len) == 0);
        out.len = 0;
        CHECK(tokenizer_decode(t, ids, 7, TOKENIZER_DECODE_SKIP_SPECIAL, &out, &e) == 0);
        CHECK(out.len == strlen("abc \xc3\xa9") && memcmp(out.data, "abc \xc3\xa9", out.len) == 0);
        out.len = 0;
        int32_t bad[] = {4, 14};
        CHECK(tokenizer_decode(t, bad, 2, 0, &out, &e) == -1);
        CHECK(strstr(e.msg, "out of range") != NULL);
        int32_t neg[] = {-1};
        CHECK(tokenizer_decode(t, neg, 1, 0, &out, &e) == -1);
        CHECK(tokenizer_token_piece(t, 99, 0, &out, &e) == -1);
        buf_free(&out);
        token_ids_free(&v);
        tokenizer_free(t);
    }
}

TEST(tokenizer_builder_errors) {
    Err e;
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_BYTES);
    CHECK(tokenizer_add_token(t, "a", 1, 0, TOKEN_NORMAL, &e) == 0);
    CHECK(tokenizer_add_token(t, "b", 1, 0, TOKEN_NORMAL, &e) == 1);
    CHECK(tokenizer_add_merge_str(t, "a", 1, "b", 1, &e) == -1); // "ab" missing
    CHECK(strstr(e.msg, "not in the vocabulary") != NULL);
    CHECK(tokenizer_add_merge(t, 0, 7, &e) == -1);
    CHECK(tokenizer_add_merge_str(t, "x", 1, "b", 1, &e) == -1);
    CHECK(tokenizer_add_token(t, "c", 1, 0, (TokenType)9, &e) == -1);
    CHECK(tokenizer_set_token(t, -3, "c", 1, 0, TOKEN_NORMAL, &e) == -1);
    CHECK(tokenizer_set_token(t, TOKENIZER_MAX_VOCAB, "c", 1, 0, TOKEN_NORMAL, &e) == -1);
    CHECK(tokenizer_add_pretok_split(t, "(", 1, true, TOKSPLIT_ISOLATED, false, &e) == 0);
    CHECK(tokenizer_finalize(t, &e) == -1); // the bad regex is reported at finalize
    CHECK(strstr(e.msg, "regex") != NULL);
    tokenizer_free(t);

    t = tokenizer_new(TOKENIZER_BPE_BYTES);
    CHECK(tokenizer_add_token(t, "a", 1, 0, TOKEN_NORMAL, &e) == 0);
    tokenizer_set_special_id(t, TOKEN_ID_BOS, 5);
    CHECK(tokenizer_finalize(t, &e) == -1);
    CHECK(strstr(e.msg, "BOS") != NULL);
    tokenizer_free(t);

    t = tokenizer_new(TOKENIZER_BPE_BYTES);
    CHECK(tokenizer_add_token(t, "a", 1, 0, TOKEN_NORMAL, &e) == 0);
    tokenizer_set_add_bos_eos(t, true, false);
    CHECK(tokenizer_finalize(t, &e) == -1); // add_bos without a BOS
    tokenizer_free(t);

    t = tokenizer_new(TOKENIZER_BPE_BYTES);
    CHECK(tokenizer_finalize(t, &e) == -1); // empty
    TokenIds v = {0};
    CHECK(tokenizer_encode(t, "x", 1, 0, &v, &e) == -1); // not finalized
    tokenizer_free(t);
}

// Hugging Face split behaviours on a byte-level vocabulary of the 256 bytes (so every word is visible as bytes).
static Tokenizer *bytes_only(void) {
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_BYTES);
    Err e;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        tokenizer_add_token(t, &c, 1, 0, TOKEN_NORMAL, &e);
    }
    // "ab" merges, so word boundaries show: an "ab" across a boundary stays two tokens
    tokenizer_add_token(t, "ab", 2, 0, TOKEN_NORMAL, &e);
    tokenizer_add_merge_str(t, "a", 1, "b", 1, &e);
    return t;
}

TEST(tokenizer_split_behaviours) {
    static const struct {
        TokSplitBehavior beh;
        bool invert;
        const char *text;
        int n_ids; // number of ids: the pieces of "a-b" split on "-" are visible through the ab merge
        int32_t ids[4];
    } cases[] = {
        {TOKSPLIT_ISOLATED, false, "a-b", 3, {'a', '-', 'b'}},
        {TOKSPLIT_REMOVED, false, "a-b", 2, {'a', 'b'}},
        {TOKSPLIT_MERGED_WITH_PREVIOUS, false, "a-b", 3, {'a', '-', 'b'}},
        {TOKSPLIT_MERGED_WITH_NEXT, false, "a-b", 3, {'a', '-', 'b'}},
        {TOKSPLIT_REMOVED, true, "a-b", 1, {'-'}},
        {TOKSPLIT_ISOLATED, false, "ab", 1, {256}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Tokenizer *t = bytes_only();
        Err e;
        REQUIRE(tokenizer_add_pretok_split(t, "-", 1, false, cases[k].beh, cases[k].invert, &e) == 0);
        REQUIREF(tokenizer_finalize(t, &e) == 0, "%s", e.msg);
        TokenIds v = {0};
        CHECK(tokenizer_encode(t, cases[k].text, strlen(cases[k].text), 0, &v, &e) == 0);
        CHECKF(ids_are(&v, cases[k].ids, (size_t)cases[k].n_ids), "split case %zu: %zu ids", k, v.n);
        token_ids_free(&v);
        tokenizer_free(t);
    }
    // the "ab" merge is blocked by a word boundary: "a" "b" split by a Digits-like regex on letters
    Tokenizer *t = bytes_only();
    Err e;
    REQUIRE(tokenizer_add_pretok_split(t, "b", 1, true, TOKSPLIT_ISOLATED, false, &e) == 0);
    REQUIRE(tokenizer_finalize(t, &e) == 0);
    CHECK_IDS(t, "ab", 0, -1, 'a', 'b');
    tokenizer_free(t);
    // \s is Unicode White_Space as in the reference engines: U+0085 is whitespace, U+180E is not (PCRE2 alone says so)
    t = bytes_only();
    REQUIRE(tokenizer_add_pretok_split(t, "\\s+", 3, true, TOKSPLIT_REMOVED, false, &e) == 0);
    REQUIRE(tokenizer_finalize(t, &e) == 0);
    CHECK_IDS(t, "a\xc2\x85" "b", 0, -1, 'a', 'b');
    CHECK_IDS(t, "a\xe1\xa0\x8e" "b", 0, -1, 'a', 0xe1, 0xa0, 0x8e, 'b');
    CHECK_IDS(t, "ab \t\n ab", 0, -1, 256, 256);
    tokenizer_free(t);
    // ignore_merges: a word that is a token is taken whole even when the merges would not build it
    t = bytes_only();
    tokenizer_add_token(t, "ba", 2, 0, TOKEN_NORMAL, &e); // 257, no merge makes it
    tokenizer_set_ignore_merges(t, true);
    REQUIRE(tokenizer_add_pretok_split(t, " ", 1, false, TOKSPLIT_REMOVED, false, &e) == 0);
    REQUIRE(tokenizer_finalize(t, &e) == 0);
    CHECK_IDS(t, "ba bab", 0, -1, 257, 'b', 256);
    tokenizer_free(t);
    // Metaspace: prepend on the first segment only, split before each ▁
    t = tokenizer_new(TOKENIZER_BPE_SPM);
    static const char *const toks[] = {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "<s>"};
    for (int i = 0; i < 5; i++) tokenizer_add_token(t, toks[i], strlen(toks[i]), (float)-i, i == 4 ? TOKEN_CONTROL : TOKEN_NORMAL, &e);
    tokenizer_add_pretok_metaspace(t, NULL, 0, TOKPREPEND_FIRST, true);
    REQUIRE(tokenizer_finalize(t, &e) == 0);
    CHECK_IDS(t, "a a", 0, -1, 3, 3);
    CHECK_IDS(t, "<s>a", 0, -1, 4, 1); // not the first segment: no ▁
    tokenizer_free(t);
}

// Random bytes (invalid UTF-8 included) survive encode -> decode exactly through byte-level and byte-fallback
// vocabularies; and control tokens spelled in the text never come out in ORDINARY mode.
TEST(tokenizer_random_roundtrip_and_ordinary) {
    Tokenizer *g = fixture_tokenizer("tokenizers/gpt2");
    Tokenizer *m = fixture_tokenizer("tokenizers/mistral/tokenizer.json");
    Tokenizer *s = fixture_tokenizer("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    REQUIRE(g && m && s);
    static const char alphabet[] = "ab <>|/s\n\t\xc3\xa9\xe2\x82\xac\xff\xf0\x9f\x98\x80' 1";
    Tokenizer *toks[3] = {g, m, s};
    for (int iter = 0; iter < 300; iter++) {
        char text[200];
        size_t n = test_rand_u64() % sizeof text;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = test_rand_u64();
            text[i] = (r & 1) ? (char)(r >> 8) : alphabet[(r >> 8) % (sizeof alphabet - 1)];
        }
        // never start with a space: the sentencepiece decoders strip one leading space by design
        if (n && text[0] == ' ') text[0] = 'x';
        for (int k = 0; k < 3; k++) {
            TokenIds v = {0};
            Err e;
            REQUIRE(tokenizer_encode(toks[k], text, n, TOKENIZE_ORDINARY, &v, &e) == 0);
            for (size_t i = 0; i < v.n; i++) CHECKF(!tokenizer_is_control(toks[k], v.ids[i]), "control id %d", v.ids[i]);
            Buf out;
            buf_init(&out);
            REQUIRE(tokenizer_decode(toks[k], v.ids, v.n, 0, &out, &e) == 0);
            bool has_meta = memmem(text, n, "\xe2\x96\x81", 3) != NULL; // "▁" in the text decodes as ' ' (as in HF)
            if (!has_meta) CHECKF(out.len == n && memcmp(out.data ? out.data : "", text, n) == 0, "tokenizer %d: round trip of %zu bytes failed (iter %d)", k, n, iter);
            buf_free(&out);
            token_ids_free(&v);
        }
    }
    // the control tokens' own spellings: recognised by default (where the reference does), never in ORDINARY mode
    static const char *const spelled[] = {"<s>", "</s>", "<unk>", "<|endoftext|>", "<s><s></s>x<unk>"};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizeof spelled / sizeof spelled[0]; i++) {
            TokenIds v = {0};
            Err e;
            REQUIRE(tokenizer_encode(toks[k], spelled[i], strlen(spelled[i]), TOKENIZE_ORDINARY, &v, &e) == 0);
            CHECK(v.n > 0);
            for (size_t j = 0; j < v.n; j++)
                CHECKF(!tokenizer_is_control(toks[k], v.ids[j]), "tokenizer %d: '%s' gave control id %d", k, spelled[i], v.ids[j]);
            token_ids_free(&v);
        }
    }
    CHECK_IDS(m, "<s>", 0, -1, 1);
    CHECK_IDS(m, "</s>", 0, -1, 2);
    CHECK_IDS(s, "<s>", 0, -1, 1);
    tokenizer_free(g);
    tokenizer_free(m);
    tokenizer_free(s);
}

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.json bad input

static const char SMALL_JSON[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"lstrip\":false,\"rstrip\":false},"
    "{\"id\":9,\"content\":\"<|user|>\",\"special\":false,\"rstrip\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"},{\"type\":\"NFC\"}]},"
    "\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"\\u2581\":2,\"a\":3,\"b\":4,\"ab\":5,\"\\u2581ab\":6,\"<0x41>\":7,\"<0xC3>\":8},"
    "\"merges\":[\"a b\",[\"\\u2581\",\"ab\"]]}}";

TEST(tokenizer_hf_json_small) {
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_parse_hf_json(SMALL_JSON, strlen(SMALL_JSON), "small.json", &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 10);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_BOS), 1);
    CHECK_EQ_INT(tokenizer_token_type(t, 9), TOKEN_USER_DEFINED);
    CHECK_IDS(t, "ab ab", 0, -1, 6, 6);
    CHECK_IDS(t, "ab", TOKENIZE_ADD_SPECIAL, -1, 1, 6);
    CHECK_IDS(t, "A", 0, -1, 2, 7);
    CHECK_IDS(t, "zz", 0, -1, 2, 0); // fuse_unk: one <unk> for "zz"
    // the user-defined token is matched in every mode and eats the spaces after it (rstrip)
    CHECK_IDS(t, "<|user|>  ab", TOKENIZE_ORDINARY, -1, 9, 6);
    CHECK_IDS(t, "<s>ab", TOKENIZE_ORDINARY, -1, 2, 0, 5); // "<s>" as text: ▁, one fused <unk> for "<s>", ab
    tokenizer_free(t);
    // an empty merges list means no merging at all (not merging by scores)
    static const char nomerge[] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[]}}";
    REQUIREF(tokenizer_parse_hf_json(nomerge, strlen(nomerge), "nomerge.json", &t, &e) == 0, "%s", e.msg);
    CHECK_IDS(t, "ab", 0, -1, 0, 1);
    tokenizer_free(t);
}

static void expect_json_error(const char *json, const char *needle) {
    Tokenizer *t = NULL;
    Err e;
    int rc = tokenizer_parse_hf_json(json, strlen(json), "bad.json", &t, &e);
    CHECKF(rc == -1 && t == NULL, "accepted bad tokenizer.json (expected '%s')", needle);
    if (rc == -1) CHECKF(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    tokenizer_free(t);
}

TEST(tokenizer_hf_json_bad_input) {
    expect_json_error("", "invalid JSON");
    expect_json_error("{\"model\":", "invalid JSON");
    expect_json_error("[]", "must hold an object");
    expect_json_error("{}", "no \"model\"");
    expect_json_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "unsupported model type 'Unigram'");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":[]}}", "model.vocab must be an object");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", "model.vocab is empty");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}", "must be an integer id");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "out of range");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999999}}}", "out of range");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", "used twice");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", "not in the vocabulary");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}", "not in the vocabulary");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"ab\"]}}", "separated by one space");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", "must be a string");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", "model.merges must be an array");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"byte_fallback\":1}}", "must be a boolean");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":-5,\"content\":\"x\"}]}",
                      "out of range");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":1}]}", "no content");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":{}}", "must be an array");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"normalizer\":{\"type\":\"BertNormalizer\"}}",
                      "unsupported normalizer");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"Split\","
                      "\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}",
                      "regex");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":{\"type\":\"Split\","
                      "\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}}",
                      "unknown behavior");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"post_processor\":{\"type\":\"TemplateProcessing\","
                      "\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}}]}}",
                      "not in the vocabulary");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"post_processor\":{\"type\":\"TemplateProcessing\","
                      "\"single\":[{\"SpecialToken\":{\"id\":\"a\"}}],\"special_tokens\":{\"a\":{\"ids\":[5]}}}}",
                      "out of range");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"decoder\":{\"type\":\"WordPiece\"}}", "unsupported decoder");
    // deep nesting is refused, not recursed into
    char deep[2048] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"normalizer\":";
    for (int i = 0; i < 20; i++) strcat(deep, "{\"type\":\"Sequence\",\"normalizers\":[");
    strcat(deep, "{\"type\":\"NFC\"}");
    for (int i = 0; i < 20; i++) strcat(deep, "]}");
    strcat(deep, "}");
    expect_json_error(deep, "too deep");
}

// 2,000 random truncations and byte changes of a valid tokenizer.json: each must be refused with a message or give
// a working tokenizer, never crash (the fuzz target does the same at scale).
TEST(tokenizer_hf_json_mutations) {
    size_t n = strlen(SMALL_JSON);
    char *buf = xmalloc(n + 1);
    size_t ok = 0, refused = 0;
    for (int iter = 0; iter < 2000; iter++) {
        memcpy(buf, SMALL_JSON, n + 1);
        size_t len = n;
        uint64_t r = test_rand_u64();
        if (r % 3 == 0) {
            len = test_rand_u64() % n;
        } else {
            int flips = 1 + (int)(test_rand_u64() % 4);
            for (int f = 0; f < flips; f++) {
                size_t at = test_rand_u64() % n;
                static const char pool[] = "{}[]\":,0123456789-abtn\\ u";
                buf[at] = (r >> 8) & 1 ? (char)test_rand_u64() : pool[test_rand_u64() % (sizeof pool - 1)];
            }
        }
        Tokenizer *t = NULL;
        Err e;
        e.msg[0] = 0;
        if (tokenizer_parse_hf_json(buf, len, "mut.json", &t, &e) == 0) {
            ok++;
            TokenIds v = {0};
            Buf out;
            buf_init(&out);
            CHECK(tokenizer_encode(t, "ab <s>A zz", 10, TOKENIZE_ADD_SPECIAL, &v, &e) == 0);
            CHECK(tokenizer_decode(t, v.ids, v.n, 0, &out, &e) == 0);
            buf_free(&out);
            token_ids_free(&v);
            tokenizer_free(t);
        } else {
            refused++;
            CHECK(e.msg[0] != 0);
        }
    }
    CHECK(ok > 50 && refused > 500);
    free(buf);
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF metadata bad input

typedef struct GgufCase {
    const char *model;
    bool bad_utf8, bad_scores_len, types_as_str, bad_bos, bad_merge, no_merges;
} GgufCase;

static int gguf_case(const GgufCase *c, Tokenizer **out, Err *e) {
    GGUFWriter *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", c->model);
    const char *toks[5] = {"<unk>", "a", "b", "ab", c->bad_utf8 ? "\xff\xfe" : "\xc4\xa0"}; // "Ġ"
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 5);
    float sc[5] = {0, -1, -2, -3, -4};
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, sc, c->bad_scores_len ? 4 : 5);
    if (c->types_as_str) gguf_writer_set_arr_str(w, "tokenizer.ggml.token_type", toks, NULL, 5);
    else {
        int32_t ty[5] = {2, 1, 1, 1, 1};
        gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, ty, 5);
    }
    if (!c->no_merges) {
        const char *merges[1] = {c->bad_merge ? "a c" : "a b"};
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1);
    }
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", c->bad_bos ? 77 : 1);
    char path[4096];
    snprintf(path, sizeof path, "%s/v.gguf", test_tmpdir());
    int rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    if (rc) return -1;
    return tokenizer_load(path, out, e);
}

TEST(tokenizer_gguf_bad_input) {
    Tokenizer *t;
    Err e;
    GgufCase good = {"gpt2", 0, 0, 0, 0, 0, 0};
    REQUIREF(gguf_case(&good, &t, &e) == 0, "%s", e.msg);
    CHECK_IDS(t, "ab ab", 0, -1, 3, 4, 3); // default pre-tokenizer: "ab", " ab" ("Ġ" = ' ' is token 4)
    tokenizer_free(t);
    GgufCase spm = {"llama", 0, 0, 0, 0, 0, 1};
    REQUIREF(gguf_case(&spm, &t, &e) == 0, "%s", e.msg);
    tokenizer_free(t);
    static const struct {
        GgufCase c;
        const char *needle;
    } bad[] = {
        {{"bert", 0, 0, 0, 0, 0, 0}, "unsupported tokenizer.ggml.model"},
        {{"gpt2", 1, 0, 0, 0, 0, 0}, "not valid UTF-8"},
        {{"gpt2", 0, 1, 0, 0, 0, 0}, "tokenizer.ggml.scores has 4 entries"},
        {{"gpt2", 0, 0, 1, 0, 0, 0}, "token_type must be an array of integers"},
        {{"gpt2", 0, 0, 0, 1, 0, 0}, "out of range"},
        {{"gpt2", 0, 0, 0, 0, 1, 0}, "not in the vocabulary"},
        {{"gpt2", 0, 0, 0, 0, 0, 1}, "without tokenizer.ggml.merges"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = NULL;
        int rc = gguf_case(&bad[i].c, &t, &e);
        CHECKF(rc == -1 && !t, "bad GGUF case %zu accepted", i);
        if (rc == -1) CHECKF(strstr(e.msg, bad[i].needle) != NULL, "case %zu: '%s' lacks '%s'", i, e.msg, bad[i].needle);
        tokenizer_free(t);
    }
}

TEST(tokenizer_load_detection_errors) {
    Tokenizer *t;
    Err e;
    CHECK(tokenizer_load("/nonexistent/tokenizer.json", &t, &e) == -1);
    CHECK(strstr(e.msg, "not found") != NULL);
    CHECK(tokenizer_load(test_tmpdir(), &t, &e) == -1); // an empty directory
    CHECK(strstr(e.msg, "no tokenizer found") != NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s/x.dat", test_tmpdir());
    CHECK(file_write_atomic_bytes(path, "hello", 5, &e) == 0);
    CHECK(tokenizer_load(path, &t, &e) == -1);
    CHECK(strstr(e.msg, "unrecognised tokenizer format") != NULL);
}

TEST(tokenizer_utf8_lossy) {
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"abc", 3, "abc"},
        {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},
        {"\xe2\x82", 2, "\xef\xbf\xbd"},                      // truncated 3-byte sequence: one U+FFFD
        {"\xe2\x82\xac\xf0\x9f", 5, "\xe2\x82\xac\xef\xbf\xbd"}, // "€" then a cut emoji
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, // a surrogate: three
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Buf b;
        buf_init(&b);
        tokenizer_utf8_lossy(cases[i].in, cases[i].n, &b);
        CHECKF(b.len == strlen(cases[i].out) && memcmp(b.data, cases[i].out, b.len) == 0, "lossy case %zu", i);
        buf_free(&b);
    }
}
