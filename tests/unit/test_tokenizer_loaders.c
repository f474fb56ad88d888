// test_tokenizer_loaders.c — the file-format loaders of src/tokenizer/load_{spm,llama2c,gpt2,tiktoken}.c: exact ids
// against the shared reference fixtures, small hand-built files whose expected ids follow from the format's rules
// (computed here by a naive reference, not copied from the code under test), and malformed input of every kind
// (each must give an Err naming the problem, never a crash: every test runs in a forked child under the harness).
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tokenizer/tokenizer.h"

// ---------------------------------------------------------------------------------------------------------------
// helpers

static char *slurp(const char *path, size_t *len) {
    char *d;
    Err e;
    if (file_read_all(path, &d, len, &e)) return NULL;
    return d;
}

// Plain stdio (no fsync): some tests rewrite a scratch file hundreds of times.
static void write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n || fclose(f) != 0) test_fail_at(__FILE__, __LINE__, "cannot write %s", path);
}

static const char *tmp_path(const char *name) {
    static char p[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", test_tmpdir(), name);
    return p[k];
}

// Encode and compare with a JSON array of ids; reports the first difference. Returns true when equal.
static bool ids_match(const Tokenizer *t, const char *text, size_t len, int mode, const json_t *want, const char *what) {
    TokenIds ids = {0};
    Err e;
    if (tokenizer_encode(t, text, len, mode, &ids, &e)) {
        test_fail_at(__FILE__, __LINE__, "%s: encode failed: %s", what, e.msg);
        return false;
    }
    bool ok = ids.n == json_array_size(want);
    size_t first = 0;
    for (size_t i = 0; i < ids.n && i < json_array_size(want); i++)
        if (ids.ids[i] != json_integer_value(json_array_get(want, i))) {
            if (ok || i < first) first = i;
            ok = false;
            break;
        }
    if (!ok) {
        if (ids.n != json_array_size(want) && first == 0) first = ids.n < json_array_size(want) ? ids.n : json_array_size(want);
        test_fail_at(__FILE__, __LINE__, "%s: %zu ids, want %zu; first difference at %zu: got %d want %lld", what,
                     ids.n, json_array_size(want), first, first < ids.n ? ids.ids[first] : -1,
                     first < json_array_size(want) ? (long long)json_integer_value(json_array_get(want, first)) : -1LL);
    }
    token_ids_free(&ids);
    return ok;
}

static bool ids_eq(const TokenIds *a, const int32_t *b, size_t n) {
    return a->n == n && (n == 0 || memcmp(a->ids, b, n * sizeof *b) == 0);
}

static json_t *load_json_fixture(const char *rel) {
    const char *p = fixture_path(rel);
    if (!p) return NULL;
    json_error_t je;
    json_t *j = json_load_file(p, JSON_ALLOW_NUL, &je);
    if (!j) test_fail_at(__FILE__, __LINE__, "%s: %s", rel, je.text);
    return j;
}

// Expect a loader to fail with a message containing `needle` (case-sensitive).
#define CHECK_ERR(call, e, needle)                                                                           \
    do {                                                                                                     \
        Tokenizer *t_ = NULL;                                                                                \
        (e).msg[0] = 0;                                                                                      \
        int rc_ = (call);                                                                                    \
        CHECKF(rc_ == -1 && t_ == NULL, "%s: expected failure, got rc %d", #call, rc_);                      \
        CHECKF(strstr((e).msg, (needle)) != NULL, "%s: message '%s' lacks '%s'", #call, (e).msg, (needle)); \
        if (t_) tokenizer_free(t_);                                                                          \
    } while (0)

// ---------------------------------------------------------------------------------------------------------------
// Llama 2: test vectors with tokenizer.model and tokenizer.bin

static void check_llama2_vectors(Tokenizer *t, const char *what) {
    json_t *j = load_json_fixture("tokenizers/llama2/test_vectors.json");
    if (!j) return;
    json_t *cases = json_object_get(j, "cases");
    REQUIRE(json_is_array(cases) && json_array_size(cases) > 0);
    size_t i, ok = 0;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        REQUIRE(text && json_is_array(want));
        char label[64];
        snprintf(label, sizeof label, "%s case %zu", what, i);
        if (ids_match(t, text, strlen(text), TOKENIZE_ADD_SPECIAL, want, label)) ok++;
        // Decoding the ids without BOS gives the text back.
        TokenIds ids = {0};
        Err e;
        CHECK(tokenizer_encode(t, text, strlen(text), 0, &ids, &e) == 0);
        Buf out;
        buf_init(&out);
        CHECK(tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e) == 0);
        CHECKF(out.len == strlen(text) && memcmp(out.data ? out.data : "", text, out.len) == 0,
               "%s: decode round trip differs", label);
        buf_free(&out);
        token_ids_free(&ids);
    }
    CHECK_EQ_INT(ok, json_array_size(cases));
    json_decref(j);
}

TEST(tokloader_spm_llama2_test_vectors) {
    const char *p = fixture_path("tokenizers/llama2/tokenizer.model");
    REQUIRE(p);
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_load_spm_model(p, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 32000);
    CHECK_EQ_INT(tokenizer_kind(t), TOKENIZER_BPE_SPM);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_BOS), 1);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_EOS), 2);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_UNK), 0);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_PAD), -1);
    CHECK(tokenizer_byte_fallback(t));
    CHECK_EQ_INT(tokenizer_token_type(t, 0), TOKEN_UNKNOWN);
    CHECK_EQ_INT(tokenizer_token_type(t, 1), TOKEN_CONTROL);
    CHECK_EQ_INT(tokenizer_token_type(t, 3), TOKEN_BYTE);
    CHECK_EQ_INT(tokenizer_token_type(t, 1000), TOKEN_NORMAL);
    check_llama2_vectors(t, "tokenizer.model");
    tokenizer_free(t);
}

TEST(tokloader_llama2c_test_vectors) {
    const char *p = fixture_path("tokenizers/llama2/tokenizer.bin");
    REQUIRE(p);
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_load_llama2c(p, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 32000);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_BOS), 1);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_EOS), 2);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_UNK), 0);
    CHECK_EQ_INT(tokenizer_token_type(t, 1), TOKEN_CONTROL);
    CHECK_EQ_INT(tokenizer_token_type(t, 3 + 0x41), TOKEN_BYTE);
    size_t len;
    const char *b = tokenizer_token_bytes(t, 1, &len);
    CHECK(len == 3 && memcmp(b, "<s>", 3) == 0);
    check_llama2_vectors(t, "tokenizer.bin");
    tokenizer_free(t);
}

// The same vocabulary in two formats must encode every string identically (the 50 tricky strings and 20k chars of
// Moby-Dick: whitespace runs, control bytes, emoji, CJK — byte fallback and merges exercised throughout).
TEST(tokloader_spm_and_llama2c_agree) {
    const char *pm = fixture_path("tokenizers/llama2/tokenizer.model");
    const char *pb = pm ? fixture_path("tokenizers/llama2/tokenizer.bin") : NULL;
    REQUIRE(pm && pb);
    Tokenizer *a, *b;
    Err e;
    REQUIREF(tokenizer_load_spm_model(fixture_path("tokenizers/llama2/tokenizer.model"), &a, &e) == 0, "%s", e.msg);
    REQUIREF(tokenizer_load_llama2c(fixture_path("tokenizers/llama2/tokenizer.bin"), &b, &e) == 0, "%s", e.msg);
    json_t *j = load_json_fixture("tokenizers/hf_reference_encodings.json");
    REQUIRE(j);
    json_t *strs = json_object_get(j, "strings");
    REQUIRE(json_is_array(strs));
    json_array_append(strs, json_object_get(j, "moby20k"));
    size_t i, same = 0;
    json_t *s;
    json_array_foreach(strs, i, s) {
        const char *text = json_string_value(s);
        size_t n = json_string_length(s);
        for (int mode = 0; mode <= TOKENIZE_ORDINARY; mode += TOKENIZE_ORDINARY) {
            TokenIds x = {0}, y = {0};
            CHECK(tokenizer_encode(a, text, n, mode, &x, &e) == 0);
            CHECK(tokenizer_encode(b, text, n, mode, &y, &e) == 0);
            bool eq = x.n == y.n && (x.n == 0 || memcmp(x.ids, y.ids, x.n * sizeof *x.ids) == 0);
            CHECKF(eq, "string %zu mode %d: .model gives %zu ids, .bin %zu", i, mode, x.n, y.n);
            same += eq;
            token_ids_free(&x);
            token_ids_free(&y);
        }
    }
    CHECK_EQ_INT(same, 2 * json_array_size(strs));
    json_decref(j);
    tokenizer_free(a);
    tokenizer_free(b);
}

// ---------------------------------------------------------------------------------------------------------------
// GPT-2 encoder.json + vocab.bpe against Hugging Face's ids

TEST(tokloader_gpt2_files_hf_reference) {
    const char *pe = fixture_path("tokenizers/gpt2/encoder.json");
    REQUIRE(pe);
    char enc[4096];
    snprintf(enc, sizeof enc, "%s", pe);
    const char *pv = fixture_path("tokenizers/gpt2/vocab.bpe");
    REQUIRE(pv);
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_load_gpt2_files(enc, pv, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 50257);
    CHECK_EQ_INT(tokenizer_n_merges(t), 50000);
    CHECK_EQ_INT(tokenizer_token_type(t, 50256), TOKEN_CONTROL);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_EOS), 50256);
    size_t len;
    const char *b = tokenizer_token_bytes(t, 220, &len); // "Ġ" = the byte ' '
    CHECK(len == 1 && b[0] == ' ');

    json_t *j = load_json_fixture("tokenizers/hf_reference_encodings.json");
    REQUIRE(j);
    json_t *strs = json_object_get(j, "strings"), *g = json_object_get(j, "gpt2");
    json_t *plain = json_object_get(g, "plain"), *special = json_object_get(g, "special"),
           *decoded = json_object_get(g, "decoded");
    REQUIRE(json_is_array(strs) && json_is_array(plain) && json_is_array(special) && json_is_array(decoded));
    size_t i, ok_plain = 0, ok_special = 0, ok_dec = 0;
    json_t *s;
    json_array_foreach(strs, i, s) {
        const char *text = json_string_value(s);
        size_t n = json_string_length(s);
        char label[64];
        snprintf(label, sizeof label, "gpt2 plain %zu", i);
        ok_plain += ids_match(t, text, n, 0, json_array_get(plain, i), label);
        snprintf(label, sizeof label, "gpt2 special %zu", i);
        ok_special += ids_match(t, text, n, TOKENIZE_ADD_SPECIAL, json_array_get(special, i), label);
        // decode(plain ids) == HF's decoded string
        json_t *ids = json_array_get(plain, i);
        size_t k = json_array_size(ids);
        int32_t *v = xmalloc_array(k + 1, sizeof *v);
        for (size_t q = 0; q < k; q++) v[q] = (int32_t)json_integer_value(json_array_get(ids, q));
        Buf out;
        buf_init(&out);
        CHECK(tokenizer_decode(t, v, k, 0, &out, &e) == 0);
        json_t *want = json_array_get(decoded, i);
        bool eq = out.len == json_string_length(want) && memcmp(out.data ? out.data : "", json_string_value(want), out.len) == 0;
        CHECKF(eq, "gpt2 decoded %zu differs", i);
        ok_dec += eq;
        buf_free(&out);
        free(v);
    }
    CHECK_EQ_INT(ok_plain, json_array_size(strs));
    CHECK_EQ_INT(ok_special, json_array_size(strs));
    CHECK_EQ_INT(ok_dec, json_array_size(strs));
    json_t *moby = json_object_get(j, "moby20k");
    CHECK(ids_match(t, json_string_value(moby), json_string_length(moby), 0, json_object_get(g, "moby20k"), "gpt2 moby20k"));
    json_decref(j);
    tokenizer_free(t);
}

// ---------------------------------------------------------------------------------------------------------------
// tiktoken: a generated rank file checked against a naive reference of tiktoken's algorithm

typedef struct RankTok {
    char s[8];
    size_t n;
} RankTok;

// The vocabulary: the 256 bytes in a scrambled rank order, then multi-byte tokens (rank = index).
#define TK_NB 256
static const char *const TK_MERGED[] = {"ab", "cd", "abcd", " a", " ab", "ef", " abcd", "xyz", "de", "bcd", "aa", "aaa"};
#define TK_NM (sizeof TK_MERGED / sizeof TK_MERGED[0])

static size_t tk_vocab(RankTok *v) {
    for (int r = 0; r < TK_NB; r++) {
        v[r].s[0] = (char)((r * 73 + 11) & 255); // 73 is odd: a permutation of 0..255
        v[r].n = 1;
    }
    for (size_t i = 0; i < TK_NM; i++) {
        v[TK_NB + i].n = strlen(TK_MERGED[i]);
        memcpy(v[TK_NB + i].s, TK_MERGED[i], v[TK_NB + i].n);
    }
    return TK_NB + TK_NM;
}

static int tk_rank(const RankTok *v, size_t nv, const char *s, size_t n) {
    for (size_t i = 0; i < nv; i++)
        if (v[i].n == n && memcmp(v[i].s, s, n) == 0) return (int)i;
    return -1;
}

// tiktoken on one regex piece: the whole piece if it is a token, else merge the adjacent pair whose concatenation
// has the lowest rank (leftmost first) until none is a token.
static void tk_naive_piece(const RankTok *v, size_t nv, const char *s, size_t n, TokenIds *out) {
    int whole = tk_rank(v, nv, s, n);
    if (whole >= 0) {
        token_ids_push(out, whole);
        return;
    }
    size_t start[64], m = n; // part i = s[start[i] .. start[i+1])
    for (size_t i = 0; i <= n; i++) start[i] = i;
    for (;;) {
        int best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            int r = tk_rank(v, nv, s + start[i], start[i + 2] - start[i]);
            if (r >= 0 && (best < 0 || r < best)) best = r, at = i;
        }
        if (best < 0) break;
        memmove(&start[at + 1], &start[at + 2], (m - at - 1) * sizeof start[0]);
        m--;
    }
    for (size_t i = 0; i < m; i++) token_ids_push(out, tk_rank(v, nv, s + start[i], start[i + 1] - start[i]));
}

static void b64(const uint8_t *s, size_t n, Buf *out) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        char q[4] = {a[v >> 18], a[(v >> 12) & 63], i + 1 < n ? a[(v >> 6) & 63] : '=', i + 2 < n ? a[v & 63] : '='};
        buf_append(out, q, 4);
    }
}

static void tk_write(const char *path, const RankTok *v, size_t nv) {
    Buf f;
    buf_init(&f);
    // lines in a shuffled order: ranks, not line order, define ids
    for (size_t k = 0; k < nv; k++) {
        size_t i = (k * 7) % nv; // nv = 268 is coprime with 7
        b64((const uint8_t *)v[i].s, v[i].n, &f);
        buf_printf(&f, " %zu\n", i);
    }
    write_file(path, f.data, f.len);
    buf_free(&f);
}

TEST(tokloader_tiktoken_generated_ranks) {
    RankTok v[TK_NB + TK_NM];
    size_t nv = tk_vocab(v);
    REQUIRE(nv == 268);
    const char *path = tmp_path("r50k_base.tiktoken");
    tk_write(path, v, nv);
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_load_tiktoken(path, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 50257); // ranks 0..267, holes, then <|endoftext|> 50256
    CHECK_EQ_INT(tokenizer_token_type(t, 50256), TOKEN_CONTROL);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_EOS), 50256);
    size_t len;
    const char *b = tokenizer_token_bytes(t, 258, &len);
    CHECK(len == 4 && memcmp(b, "abcd", 4) == 0);

    // Words of letters with single spaces: the GPT-2 regex cuts them into " ?word" pieces, done here by hand.
    static const char *const texts[] = {
        "abcd", "abcdab", " abcd", "cdab abcd", "aaaaaaa", "xyz", "xyzz", "bcdabcdef", "zzz abab abcdabcd", "a",
        "dede", "eabcd", " a a ab", "ba", "aaab",
    };
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        const char *s = texts[k];
        size_t n = strlen(s);
        TokenIds want = {0}, got = {0};
        size_t i = 0;
        while (i < n) {
            size_t j = i + (s[i] == ' ');
            while (j < n && s[j] != ' ') j++;
            tk_naive_piece(v, nv, s + i, j - i, &want);
            i = j;
        }
        CHECK(tokenizer_encode(t, s, n, 0, &got, &e) == 0);
        CHECKF(ids_eq(&got, want.ids, want.n), "'%s': %zu ids, naive tiktoken %zu", s, got.n, want.n);
        Buf out;
        buf_init(&out);
        CHECK(tokenizer_decode(t, got.ids, got.n, 0, &out, &e) == 0);
        CHECKF(out.len == n && memcmp(out.data, s, n) == 0, "'%s': decode round trip", s);
        buf_free(&out);
        token_ids_free(&want);
        token_ids_free(&got);
    }
    // "xyz" is a token although "xy"/"yz" are not: tiktoken emits a token-spelled piece whole.
    TokenIds got = {0};
    CHECK(tokenizer_encode(t, "xyz", 3, 0, &got, &e) == 0);
    CHECK(got.n == 1 && got.ids[0] == 256 + 7);
    got.n = 0;
    // The special token is recognised by default, and is plain text in ordinary mode.
    CHECK(tokenizer_encode(t, "ab<|endoftext|>", 15, 0, &got, &e) == 0);
    CHECK(got.n == 2 && got.ids[0] == 256 && got.ids[1] == 50256);
    got.n = 0;
    CHECK(tokenizer_encode(t, "<|endoftext|>", 13, TOKENIZE_ORDINARY, &got, &e) == 0);
    CHECK(got.n > 1);
    for (size_t i = 0; i < got.n; i++) CHECK(got.ids[i] != 50256);
    token_ids_free(&got);
    tokenizer_free(t);
}

TEST(tokloader_tiktoken_encoding_by_name) {
    RankTok v[TK_NB + TK_NM];
    size_t nv = tk_vocab(v);
    const char *cl = tmp_path("cl100k_base.tiktoken");
    tk_write(cl, v, nv);
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_load_tiktoken(cl, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 100277);
    TokenIds ids = {0};
    CHECK(tokenizer_encode(t, "<|endofprompt|><|fim_middle|>", 29, 0, &ids, &e) == 0);
    CHECK(ids.n == 2 && ids.ids[0] == 100276 && ids.ids[1] == 100259);
    ids.n = 0;
    CHECK(strcmp(tokenizer_pre_name(t), "cl100k_base") == 0);
    tokenizer_free(t);

    // An explicit NAME:PATH overrides the file name.
    char spec[4200];
    snprintf(spec, sizeof spec, "o200k_base:%s", cl);
    REQUIREF(tokenizer_load_tiktoken(spec, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 200019);
    CHECK(tokenizer_encode(t, "<|endoftext|>", 13, 0, &ids, &e) == 0);
    CHECK(ids.n == 1 && ids.ids[0] == 199999);
    token_ids_free(&ids);
    CHECK(strcmp(tokenizer_pre_name(t), "o200k_base") == 0);
    tokenizer_free(t);

    // p50k_edit adds the FIM tokens to p50k_base's ranks.
    snprintf(spec, sizeof spec, "p50k_edit:%s", cl);
    REQUIREF(tokenizer_load_tiktoken(spec, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 50284);
    tokenizer_free(t);

    // A file whose name says nothing, and a bare name with no rank file anywhere.
    const char *anon = tmp_path("ranks.txt");
    tk_write(anon, v, nv);
    CHECK_ERR(tokenizer_load_tiktoken(anon, &t_, &e), e, "cannot tell which tiktoken encoding");
    setenv("LOSSY_TIKTOKEN_DIR", test_tmpdir(), 1);
    setenv("XDG_CACHE_HOME", test_tmpdir(), 1);
    CHECK_ERR(tokenizer_load_tiktoken("o200k_base", &t_, &e), e, "no o200k_base.tiktoken");
    // ... but a bare name finds NAME.tiktoken in $LOSSY_TIKTOKEN_DIR.
    REQUIREF(tokenizer_load_tiktoken("cl100k_base", &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 100277);
    tokenizer_free(t);
}

// ---------------------------------------------------------------------------------------------------------------
// sentencepiece: a small hand-built ModelProto

static void pb_varint(Buf *b, uint64_t v) {
    while (v >= 0x80) {
        uint8_t c = (uint8_t)(v | 0x80);
        buf_append(b, &c, 1);
        v >>= 7;
    }
    uint8_t c = (uint8_t)v;
    buf_append(b, &c, 1);
}
static void pb_key(Buf *b, uint32_t field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_bytes(Buf *b, uint32_t field, const void *p, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    buf_append(b, p, n);
}
static void pb_uint(Buf *b, uint32_t field, uint64_t v) {
    pb_key(b, field, 0);
    pb_varint(b, v);
}
static void pb_float(Buf *b, uint32_t field, float f) {
    pb_key(b, field, 5);
    uint8_t q[4];
    memcpy(q, &f, 4); // little-endian host
    buf_append(b, q, 4);
}
static void pb_piece(Buf *b, const char *s, float score, int type) {
    Buf p;
    buf_init(&p);
    pb_bytes(&p, 1, s, strlen(s));
    pb_float(&p, 2, score);
    if (type != 1) pb_uint(&p, 3, (uint64_t)type);
    pb_bytes(b, 1, p.data, p.len);
    buf_free(&p);
}

#define SP "\xe2\x96\x81" // "▁"
static const char *const SPM_WORDS[] = {SP, "a", "b", "ab", SP "ab", "c", SP "a", "bc"};
static const float SPM_SCORES[] = {-1, -2, -3, -4, -5, -6, -7, -8};
#define SPM_N_WORDS 8
#define SPM_FIRST_WORD 259

typedef struct SpmOpts {
    int model_type;     // 0 = omit (proto default UNIGRAM)
    int byte_fallback;  // -1 = omit
    int add_dummy_prefix, remove_extra_ws; // -1 = omit
    int64_t unk_id;     // INT64_MIN = omit
    const char *extra_piece; // appended when non-NULL
    int extra_type;
} SpmOpts;

static void spm_build(Buf *m, const SpmOpts *o) {
    buf_init(m);
    pb_piece(m, "<unk>", 0, 2);
    pb_piece(m, "<s>", 0, 3);
    pb_piece(m, "</s>", 0, 3);
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        pb_piece(m, s, 0, 6);
    }
    for (int i = 0; i < SPM_N_WORDS; i++) pb_piece(m, SPM_WORDS[i], SPM_SCORES[i], 1);
    if (o->extra_piece) pb_piece(m, o->extra_piece, -9, o->extra_type);
    Buf ts;
    buf_init(&ts);
    if (o->model_type) pb_uint(&ts, 3, (uint64_t)o->model_type);
    if (o->byte_fallback >= 0) pb_uint(&ts, 35, (uint64_t)o->byte_fallback);
    if (o->unk_id != INT64_MIN) pb_uint(&ts, 40, (uint64_t)o->unk_id);
    pb_uint(&ts, 43, (uint64_t)-1); // pad_id = -1, as sentencepiece writes it (10-byte varint)
    pb_bytes(m, 2, ts.data ? ts.data : "", ts.len);
    buf_free(&ts);
    Buf ns;
    buf_init(&ns);
    pb_bytes(&ns, 1, "identity", 8);
    if (o->add_dummy_prefix >= 0) pb_uint(&ns, 3, (uint64_t)o->add_dummy_prefix);
    if (o->remove_extra_ws >= 0) pb_uint(&ns, 4, (uint64_t)o->remove_extra_ws);
    pb_bytes(m, 3, ns.data, ns.len);
    buf_free(&ns);
}

static const SpmOpts SPM_DEFAULT = {2, 1, 1, 0, INT64_MIN, NULL, 0};

static int32_t spm_id(const char *w) {
    for (int i = 0; i < SPM_N_WORDS; i++)
        if (strcmp(SPM_WORDS[i], w) == 0) return SPM_FIRST_WORD + i;
    return -1;
}

static void spm_expect(const Tokenizer *t, const char *text, int mode, const int32_t *want, size_t n) {
    TokenIds got = {0};
    Err e;
    CHECKF(tokenizer_encode(t, text, strlen(text), mode, &got, &e) == 0, "encode '%s': %s", text, e.msg);
    bool eq = ids_eq(&got, want, n);
    CHECKF(eq, "'%s': got %zu ids (first %d), want %zu (first %d)", text, got.n, got.n ? got.ids[0] : -1, n,
           n ? want[0] : -1);
    token_ids_free(&got);
}

TEST(tokloader_spm_small_model) {
    Buf m;
    spm_build(&m, &SPM_DEFAULT);
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_parse_spm_model((const uint8_t *)m.data, m.len, "small.model", &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), SPM_FIRST_WORD + SPM_N_WORDS);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_PAD), -1);
    // "ab ab" -> "▁ab▁ab": "ab" (score -4) merges before "▁ab" (-5); "▁a" (-7) never wins over "ab".
    int32_t w1[] = {spm_id(SP "ab"), spm_id(SP "ab")};
    spm_expect(t, "ab ab", 0, w1, 2);
    // "abc": ▁ a b c -> pairs ▁a(-7) ab(-4) bc(-8) -> ab, then ▁+ab = ▁ab(-5) -> [▁ab, c]
    int32_t w2[] = {spm_id(SP "ab"), spm_id("c")};
    spm_expect(t, "abc", 0, w2, 2);
    // "bc": ▁ b c -> bc(-8) -> [▁, bc]
    int32_t w3[] = {spm_id(SP), spm_id("bc")};
    spm_expect(t, "bc", 0, w3, 2);
    // byte fallback: 'é' = C3 A9 has no piece -> <0xC3><0xA9> (byte b is piece 3 + b)
    int32_t w4[] = {1, spm_id(SP), 3 + 0xC3, 3 + 0xA9};
    spm_expect(t, "\xc3\xa9", TOKENIZE_ADD_SPECIAL, w4, 4);
    // the empty text: BOS only with ADD_SPECIAL, nothing otherwise
    int32_t w5[] = {1};
    spm_expect(t, "", TOKENIZE_ADD_SPECIAL, w5, 1);
    spm_expect(t, "", 0, NULL, 0);
    Buf out;
    buf_init(&out);
    int32_t ids[] = {spm_id(SP "ab"), spm_id("c"), 3 + 0xC3, 3 + 0xA9, spm_id(SP "a")};
    CHECK(tokenizer_decode(t, ids, 5, 0, &out, &e) == 0);
    CHECK(out.len == 7 && memcmp(out.data, "abc\xc3\xa9 a", 7) == 0);
    buf_free(&out);
    tokenizer_free(t);

    // Without byte fallback an unknown character becomes <unk>.
    SpmOpts o = SPM_DEFAULT;
    o.byte_fallback = 0;
    buf_free(&m);
    spm_build(&m, &o);
    REQUIREF(tokenizer_parse_spm_model((const uint8_t *)m.data, m.len, "small.model", &t, &e) == 0, "%s", e.msg);
    CHECK(!tokenizer_byte_fallback(t));
    int32_t w6[] = {spm_id(SP), 0};
    spm_expect(t, "\xc3\xa9", 0, w6, 2);
    tokenizer_free(t);

    // remove_extra_whitespaces: leading/trailing ' ' dropped, runs collapsed; no dummy prefix when disabled.
    o = SPM_DEFAULT;
    o.remove_extra_ws = 1;
    o.add_dummy_prefix = 0;
    buf_free(&m);
    spm_build(&m, &o);
    REQUIREF(tokenizer_parse_spm_model((const uint8_t *)m.data, m.len, "small.model", &t, &e) == 0, "%s", e.msg);
    int32_t w7[] = {spm_id("ab"), spm_id(SP "ab")};
    spm_expect(t, "  ab   ab  ", 0, w7, 2);
    tokenizer_free(t);
    buf_free(&m);
}

TEST(tokloader_spm_bad_input) {
    Err e;
    Buf m;
    SpmOpts o;
#define SPM_ERR(opts_expr, needle)                                                                               \
    do {                                                                                                         \
        o = SPM_DEFAULT;                                                                                         \
        opts_expr;                                                                                               \
        spm_build(&m, &o);                                                                                       \
        CHECK_ERR(tokenizer_parse_spm_model((const uint8_t *)m.data, m.len, "bad.model", &t_, &e), e, needle); \
        buf_free(&m);                                                                                            \
    } while (0)
    SPM_ERR(o.model_type = 0, "UNIGRAM");
    SPM_ERR(o.model_type = 1, "UNIGRAM");
    SPM_ERR(o.model_type = 4, "CHAR");
    SPM_ERR(o.unk_id = 100000, "unk_id");
    SPM_ERR(o.unk_id = -5, "unk_id");
    SPM_ERR((o.extra_piece = "ab", o.extra_type = 1), "defined again");
    SPM_ERR((o.extra_piece = "\xff\xfe", o.extra_type = 1), "not valid UTF-8");
    SPM_ERR((o.extra_piece = "\xed\xa0\x80", o.extra_type = 1), "not valid UTF-8"); // a surrogate
    SPM_ERR((o.extra_piece = "x", o.extra_type = 9), "unknown type");
    SPM_ERR((o.extra_piece = "xyz", o.extra_type = 6), "BYTE");
    SPM_ERR((o.extra_piece = "", o.extra_type = 1), "no text");

    CHECK_ERR(tokenizer_parse_spm_model((const uint8_t *)"", 0, "empty.model", &t_, &e), e, "empty");
    // wire-level damage, each with the words its message must contain
    static const struct { const char *bytes; size_t n; const char *needle; } exact[] = {
        {"\x0a", 1, "truncated"},
        {"\x0a\x05\x0a\x01", 4, "runs past the end"},
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, "runs past the end"},
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11, "overlong"},
        {"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 12, "overlong"},
        {"\x0b", 1, "group"},
        {"\x0e\x00", 2, "invalid wire type"},
        {"\x00", 1, "invalid field number"},
        {"\x08\x01", 2, "has wire type 0, expected 2"},
        {"\x12\x00", 2, "no pieces"},
        {"\x0a\x05\x0a\x01\x61\x10\x01", 7, "score (field 2)"},
        {"\x0a\x03\x0a\x01\x61\x12\x02\x1a\x00", 9, "model_type (field 3) at byte 7 has wire type 2"},
        {"\x0a\x03\x0a\x01\x61\x1a\x02\x1a\x00", 9, "add_dummy_prefix (field 3) at byte 7 has wire type 2"},
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        CHECK_ERR(tokenizer_parse_spm_model((const uint8_t *)exact[i].bytes, exact[i].n, "bad.model", &t_, &e), e,
                  exact[i].needle);
    // an empty piece message (no text) in an otherwise BPE model
    CHECK_ERR(tokenizer_parse_spm_model((const uint8_t *)"\x0a\x00\x12\x02\x18\x02", 6, "bad.model", &t_, &e), e,
              "no text");
}

// Every truncation of a valid model, and random byte flips, give a tokenizer or an Err — never a crash.
static int spm_try(const uint8_t *d, size_t n, size_t *n_ok) {
    Tokenizer *t = NULL;
    Err e;
    e.msg[0] = 0;
    if (tokenizer_parse_spm_model(d, n, "mutant.model", &t, &e) == 0) {
        if (!t) return -1;
        TokenIds ids = {0};
        const char text[] = "Hello wörld \xf0\x9f\x98\x80 <s> 123";
        int rc = tokenizer_encode(t, text, sizeof text - 1, TOKENIZE_ADD_SPECIAL, &ids, &e);
        Buf out;
        buf_init(&out);
        if (rc == 0) rc = tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e);
        buf_free(&out);
        token_ids_free(&ids);
        tokenizer_free(t);
        (*n_ok)++;
        return rc;
    }
    return (t == NULL && e.msg[0]) ? 0 : -1;
}

TEST(tokloader_spm_mutations_real_model) {
    const char *p = fixture_path("tokenizers/llama2/tokenizer.model");
    REQUIRE(p);
    size_t size;
    char *full = slurp(p, &size);
    REQUIRE(full && size > 1000);
    // A small model cut from the real one: its first 400 pieces plus its trainer and normalizer specs, copied byte
    // for byte (so every mutation below is cheap enough to build in full).
    Buf small;
    buf_init(&small);
    size_t pos = 0, pieces = 0;
    const uint8_t *d = (const uint8_t *)full;
    while (pos < size) {
        size_t start = pos;
        uint8_t key = d[pos++];
        uint64_t len = 0;
        for (int s = 0; pos < size; s += 7) {
            len |= (uint64_t)(d[pos] & 0x7f) << s;
            if (!(d[pos++] & 0x80)) break;
        }
        REQUIRE(len <= size - pos);
        pos += len;
        if (key != 0x0a || pieces++ < 400) buf_append(&small, d + start, pos - start);
    }
    Tokenizer *t;
    Err e;
    REQUIREF(tokenizer_parse_spm_model((const uint8_t *)small.data, small.len, "small", &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 400);
    tokenizer_free(t);

    size_t n_ok = 0, n_bad = 0;
    uint8_t *buf = xmalloc(size);
    // truncations of the full model (rejected by the structural scan, so cheap)
    for (int i = 0; i < 1500; i++) {
        size_t n = (size_t)(test_rand_u64() % size);
        n_bad += spm_try(d, n, &n_ok) != 0;
    }
    // truncations and byte flips of the small model
    for (int i = 0; i < 3000; i++) {
        size_t n = small.len;
        memcpy(buf, small.data, n);
        int kind = (int)(test_rand_u64() % 4);
        if (kind == 0) {
            n = (size_t)(test_rand_u64() % n);
        } else {
            int flips = 1 + (int)(test_rand_u64() % 4);
            for (int f = 0; f < flips; f++) {
                size_t at = (size_t)(test_rand_u64() % n);
                // headers and varints are where structure lives: bias flips to the first and last bytes too
                if (kind == 2) at = (size_t)(test_rand_u64() % 64);
                if (kind == 3) at = n - 1 - (size_t)(test_rand_u64() % (n < 256 ? n : 256));
                buf[at] ^= (uint8_t)(1u << (test_rand_u64() % 8));
            }
        }
        n_bad += spm_try(buf, n, &n_ok) != 0;
    }
    // a few byte flips of the full model
    for (int i = 0; i < 8; i++) {
        memcpy(buf, d, size);
        buf[test_rand_u64() % size] ^= (uint8_t)(1u << (test_rand_u64() % 8));
        n_bad += spm_try(buf, size, &n_ok) != 0;
    }
    CHECK_EQ_INT(n_bad, 0);
    CHECKF(n_ok > 0 && n_ok < 4508, "mutants accepted: %zu of 4508 (want some but not all)", n_ok);
    free(buf);
    buf_free(&small);
    free(full);
}

// ---------------------------------------------------------------------------------------------------------------
// llama2.c bad input

static void l2_record(Buf *b, float score, const char *s, int32_t len) {
    uint8_t q[8];
    memcpy(q, &score, 4);
    memcpy(q + 4, &len, 4);
    buf_append(b, q, 8);
    if (len > 0) buf_append(b, s, (size_t)len);
}

TEST(tokloader_llama2c_small_and_bad) {
    const char *path = tmp_path("tok.bin");
    Err e;
    Buf b;
    // a small valid file: <unk>, BOS/EOS in the exporter's spelling, 256 bytes, a few words (' ' spelled raw)
    buf_init(&b);
    int32_t maxlen = 6;
    buf_append(&b, &maxlen, 4);
    l2_record(&b, 0, "<unk>", 5);
    l2_record(&b, 0, "\n<s>\n", 5);
    l2_record(&b, 0, "\n</s>\n", 6);
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        l2_record(&b, 0, s, 6);
    }
    l2_record(&b, -1, " ", 1);
    l2_record(&b, -2, "h", 1);
    l2_record(&b, -3, "i", 1);
    l2_record(&b, -4, "hi", 2);
    l2_record(&b, -5, " hi", 3);
    write_file(path, b.data, b.len);
    Tokenizer *t;
    REQUIREF(tokenizer_load_llama2c(path, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), 264);
    CHECK_EQ_INT(tokenizer_token_type(t, 2), TOKEN_CONTROL);
    // " hi hi" -> BOS, " hi", " hi"; "é" -> " " then byte fallback
    TokenIds ids = {0};
    CHECK(tokenizer_encode(t, "hi hi", 5, TOKENIZE_ADD_SPECIAL, &ids, &e) == 0);
    CHECK(ids.n == 3 && ids.ids[0] == 1 && ids.ids[1] == 263 && ids.ids[2] == 263);
    ids.n = 0;
    CHECK(tokenizer_encode(t, "\xc3\xa9", 2, 0, &ids, &e) == 0);
    CHECK(ids.n == 3 && ids.ids[0] == 259 && ids.ids[1] == 3 + 0xC3 && ids.ids[2] == 3 + 0xA9);
    Buf out;
    buf_init(&out);
    int32_t dec[] = {1, 263, 262, 3 + 0xC3, 3 + 0xA9};
    CHECK(tokenizer_decode(t, dec, 5, TOKENIZER_DECODE_SKIP_SPECIAL, &out, &e) == 0);
    CHECKF(out.len == 6 && memcmp(out.data, "hihi\xc3\xa9", 6) == 0, "decoded '%.*s'", (int)out.len, out.data);
    buf_free(&out);
    token_ids_free(&ids);
    tokenizer_free(t);

    // Truncations load exactly when they end on a record boundary (after at least one record). Scratch files are
    // slow to rewrite here, so try the first and last 64 cut points and 40 random ones.
    uint8_t *is_end = xcalloc(b.len + 1, 1);
    for (size_t q = 4; q + 8 <= b.len;) {
        int32_t rl;
        memcpy(&rl, b.data + q + 4, 4);
        q += 8 + (size_t)rl;
        is_end[q] = 1;
    }
    for (int k = 0; k < 168; k++) {
        size_t n = k < 64 ? (size_t)k : k < 128 ? b.len - 1 - (size_t)(k - 64) : (size_t)(test_rand_u64() % b.len);
        write_file(path, b.data, n);
        Tokenizer *tt = NULL;
        e.msg[0] = 0;
        int rc = tokenizer_load_llama2c(path, &tt, &e);
        CHECKF((rc == 0) == (is_end[n] != 0), "cut at %zu: rc %d (%s)", n, rc, e.msg);
        if (rc == 0) tokenizer_free(tt);
        else CHECK(tt == NULL && e.msg[0]);
    }
    free(is_end);
    buf_free(&b);

#define L2_ERR(build, needle)                                                       \
    do {                                                                            \
        buf_init(&b);                                                               \
        build;                                                                      \
        write_file(path, b.data ? b.data : "", b.len);                              \
        CHECK_ERR(tokenizer_load_llama2c(path, &t_, &e), e, needle);                \
        buf_free(&b);                                                               \
    } while (0)
    int32_t neg = -5, big = 1 << 30, eight = 8;
    L2_ERR((void)0, "too short");
    L2_ERR(buf_append(&b, &neg, 4), "max_token_length");
    L2_ERR(buf_append(&b, &big, 4), "max_token_length");
    L2_ERR(buf_append(&b, &eight, 4), "no tokens");
    L2_ERR((buf_append(&b, &eight, 4), l2_record(&b, 0, "a", -1)), "length -1");
    L2_ERR((buf_append(&b, &eight, 4), l2_record(&b, 0, "abcdefghi", 9)), "length 9");
    L2_ERR((buf_append(&b, &eight, 4), l2_record(&b, 0, "abc", 3), buf_append(&b, "\0\0\0\0\x05\0\0\0ab", 10)),
           "run past the end");
    L2_ERR((buf_append(&b, &eight, 4), l2_record(&b, 0, "abc", 3), buf_append(&b, "\0\0", 2)), "truncated record");
    L2_ERR((buf_append(&b, &eight, 4), l2_record(&b, __builtin_nanf(""), "abc", 3)), "NaN");
    CHECK_ERR(tokenizer_load_llama2c(tmp_path("does-not-exist.bin"), &t_, &e), e, "cannot open");
}

// ---------------------------------------------------------------------------------------------------------------
// GPT-2 files and tiktoken: bad input

TEST(tokloader_gpt2_bad_input) {
    Err e;
    const char *enc = tmp_path("encoder.json"), *bpe = tmp_path("vocab.bpe");
    // A minimal valid pair: the 256 byte-level characters, "ab", <|endoftext|>.
    Buf j;
    buf_init(&j);
    buf_append_str(&j, "{");
    for (int i = 0; i < 256; i++) {
        Buf ch;
        buf_init(&ch);
        uint8_t c = (uint8_t)i;
        tokenizer_bytelevel_from_bytes(&c, 1, &ch);
        json_t *s = json_stringn(ch.data, ch.len);
        char *q = json_dumps(s, JSON_ENCODE_ANY);
        buf_printf(&j, "%s: %d, ", q, i);
        free(q);
        json_decref(s);
        buf_free(&ch);
    }
    buf_append_str(&j, "\"ab\": 256, \"\\u0120a\": 257, \"<|endoftext|>\": 258}");
    write_file(enc, j.data, j.len);
    const char good_bpe[] = "#version: 0.2\na b\n\xc4\xa0 a\n";
    write_file(bpe, good_bpe, sizeof good_bpe - 1);
    Tokenizer *t;
    REQUIREF(tokenizer_load_gpt2_files(enc, bpe, &t, &e) == 0, "%s", e.msg);
    TokenIds ids = {0};
    CHECK(tokenizer_encode(t, "ab a", 4, 0, &ids, &e) == 0);
    CHECK(ids.n == 2 && ids.ids[0] == 256 && ids.ids[1] == 257);
    // GPT-2 reads "<|endoftext|>" in text as text (13 single bytes here), in every mode
    for (int mode = 0; mode <= TOKENIZE_ORDINARY; mode++) {
        ids.n = 0;
        CHECK(tokenizer_encode(t, "<|endoftext|>", 13, mode, &ids, &e) == 0);
        CHECK_EQ_INT(ids.n, 13);
    }
    CHECK_EQ_INT(tokenizer_token_type(t, 258), TOKEN_CONTROL);
    token_ids_free(&ids);
    tokenizer_free(t);

#define ENC_ERR(text, needle)                                                   \
    do {                                                                        \
        write_file(enc, text, strlen(text));                                    \
        CHECK_ERR(tokenizer_load_gpt2_files(enc, bpe, &t_, &e), e, needle);     \
    } while (0)
    ENC_ERR("{\"a\": 0, \"b\": ", "invalid JSON");
    ENC_ERR("[1, 2]", "expected a JSON object");
    ENC_ERR("{}", "empty vocabulary");
    ENC_ERR("{\"a\": \"0\"}", "must be an integer, got a string");
    ENC_ERR("{\"a\": 1.5}", "must be an integer, got a real");
    ENC_ERR("{\"a\": -1}", "out of range");
    ENC_ERR("{\"a\": 99999999999}", "out of range");
    ENC_ERR("{\"a\": 0, \"b\": 0}", "used by another token");
    ENC_ERR("{\"a\": 0, \"a\": 1}", "invalid JSON"); // duplicate key
    ENC_ERR("{\"\xe4\xb8\x80\": 0}", "outside GPT-2's byte-level alphabet");
    write_file(bpe, "#version: 0.2\n", 14); // no merges, so only the missing bytes are wrong below
    ENC_ERR("{\"a\": 0, \"b\": 1}", "no token for the single byte 0x00");
    write_file(bpe, good_bpe, sizeof good_bpe - 1);
    write_file(enc, j.data, j.len);
    buf_free(&j);
#define BPE_ERR(text, needle)                                                   \
    do {                                                                        \
        write_file(bpe, text, strlen(text));                                    \
        CHECK_ERR(tokenizer_load_gpt2_files(enc, bpe, &t_, &e), e, needle);     \
    } while (0)
    BPE_ERR("#version: 0.2\nab\n", "line 2: expected 'left right'");
    BPE_ERR("#version: 0.2\na b c\n", "line 2: expected 'left right'");
    BPE_ERR("#version: 0.2\n a\n", "line 2: expected 'left right'");
    BPE_ERR("#version: 0.2\na b\nb a\n", "line 3");     // "ba" is not a token
    BPE_ERR("#version: 0.2\nq zz\n", "line 2");          // "zz" is not a token
    BPE_ERR("a b\n\xe4\xb8\x80 a\n", "line 2");
    CHECK_ERR(tokenizer_load_gpt2_files(enc, tmp_path("missing.bpe"), &t_, &e), e, "cannot open");
}

TEST(tokloader_tiktoken_bad_input) {
    Err e;
    const char *path = tmp_path("cl100k_base.tiktoken");
    RankTok v[TK_NB + TK_NM];
    size_t nv = tk_vocab(v);
    Buf good;
    buf_init(&good);
    for (size_t i = 0; i < nv; i++) {
        b64((const uint8_t *)v[i].s, v[i].n, &good);
        buf_printf(&good, " %zu\n", i);
    }
#define TK_ERR(extra, needle)                                                  \
    do {                                                                       \
        Buf f_;                                                                \
        buf_init(&f_);                                                         \
        buf_append(&f_, good.data, good.len);                                  \
        buf_append_str(&f_, extra);                                            \
        write_file(path, f_.data, f_.len);                                     \
        buf_free(&f_);                                                         \
        CHECK_ERR(tokenizer_load_tiktoken(path, &t_, &e), e, needle);          \
    } while (0)
    TK_ERR("YWJj\n", "expected '<base64 token> <rank>'");
    TK_ERR("YWJj -3\n", "not a non-negative decimal");
    TK_ERR("YWJj 3x\n", "not a non-negative decimal");
    TK_ERR("YWJj 99999999999999999999999\n", "out of range");
    TK_ERR("YW*j 300\n", "not valid base64");
    TK_ERR("YWJ 300\n", "not valid base64");
    TK_ERR("Y=Jj 300\n", "not valid base64");
    TK_ERR("==== 300\n", "not valid base64");
    TK_ERR("YWJj 5\n", "rank 5 is given to two tokens");
    TK_ERR("YWI= 300\n", "has two ranks");                // "ab" again
    TK_ERR("YWJj 100257\n", "already gives to a token"); // collides with <|endoftext|>
    // a file without all 256 single bytes
    Buf f;
    buf_init(&f);
    for (size_t i = 1; i < nv; i++) {
        b64((const uint8_t *)v[i].s, v[i].n, &f);
        buf_printf(&f, " %zu\n", i);
    }
    write_file(path, f.data, f.len);
    buf_free(&f);
    char msg[64];
    snprintf(msg, sizeof msg, "no token for the single byte 0x%02x", (uint8_t)v[0].s[0]);
    CHECK_ERR(tokenizer_load_tiktoken(path, &t_, &e), e, msg);
    write_file(path, "", 0);
    CHECK_ERR(tokenizer_load_tiktoken(path, &t_, &e), e, "no tokens");
    write_file(path, "\n\n\r\n", 4);
    CHECK_ERR(tokenizer_load_tiktoken(path, &t_, &e), e, "no tokens");
    // the good file loads (so the failures above are the edits' doing)
    write_file(path, good.data, good.len);
    Tokenizer *t;
    REQUIREF(tokenizer_load_tiktoken(path, &t, &e) == 0, "%s", e.msg);
    tokenizer_free(t);
    buf_free(&good);
}
