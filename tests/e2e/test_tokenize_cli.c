// test_tokenize_cli.c — `lossy tokenize` end to end through the binary: the exact input/output shapes external
// conformance checks rely on (plain text -> one line of ids, --jsonl, --decode, --count), the three modes, every
// kind of TOKENIZER_OR_MODEL argument (directory, tokenizer.json, GGUF vocabulary, GGUF model, HF model directory),
// and errors (exit codes and `lossy: error:` messages).
#include <jansson.h>
#include <stdlib.h>

#include "test.h"

static json_t *ref_json(void) {
    const char *p = fixture_path("tokenizers/hf_reference_encodings.json");
    if (!p) return NULL;
    return json_load_file(p, JSON_ALLOW_NUL, NULL);
}

// Feed every reference string as one JSON line; compare each output line with the reference array.
static void check_jsonl(const char *tok_rel, const char *model, const char *field, const char *flag) {
    json_t *ref = ref_json();
    REQUIRE(ref);
    const char *tok = fixture_path(tok_rel);
    REQUIRE(tok);
    char tokpath[4096];
    snprintf(tokpath, sizeof tokpath, "%s", tok);
    const json_t *strings = json_object_get(ref, "strings"), *want = json_object_get(json_object_get(ref, model), field);
    Buf in, out, err;
    buf_init(&in);
    buf_init(&out);
    buf_init(&err);
    for (size_t i = 0; i < json_array_size(strings); i++) {
        char *line = json_dumps(json_array_get(strings, i), JSON_ENCODE_ANY);
        buf_append_str(&in, line);
        buf_append_str(&in, "\n");
        free(line);
    }
    int rc = flag ? run_lossy(in.data, &out, &err, "tokenize", tokpath, "--jsonl", flag, NULL)
                  : run_lossy(in.data, &out, &err, "tokenize", tokpath, "--jsonl", NULL);
    CHECKF(rc == 0, "exit %d: %s", rc, err.data ? err.data : "");
    size_t line_no = 0, ok = 0;
    for (char *p = out.data; p && *p; line_no++) {
        char *nl = strchr(p, '\n');
        REQUIRE(nl);
        json_t *got = json_loadb(p, (size_t)(nl - p), 0, NULL);
        if (got && json_equal(got, json_array_get(want, line_no))) ok++;
        else test_fail_at(__FILE__, __LINE__, "%s %s line %zu differs: %.*s", model, field, line_no, (int)(nl - p), p);
        json_decref(got);
        p = nl + 1;
    }
    CHECK_EQ_INT(line_no, json_array_size(strings));
    CHECK_EQ_INT(ok, json_array_size(strings));
    buf_free(&in);
    buf_free(&out);
    buf_free(&err);
    json_decref(ref);
}

TEST(tokenize_cli_jsonl_gpt2_dir) { check_jsonl("tokenizers/gpt2", "gpt2", "plain", NULL); }
TEST(tokenize_cli_jsonl_gpt2_gguf) { check_jsonl("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf", "gpt2", "plain", NULL); }
TEST(tokenize_cli_jsonl_mistral) { check_jsonl("tokenizers/mistral/tokenizer.json", "mistral", "plain", NULL); }
TEST(tokenize_cli_jsonl_mistral_special) {
    check_jsonl("tokenizers/mistral/tokenizer.json", "mistral", "special", "--add-special");
}

TEST(tokenize_cli_plain_count_decode) {
    const char *dir = fixture_path("tokenizers/gpt2");
    REQUIRE(dir);
    char d[4096];
    snprintf(d, sizeof d, "%s", dir);
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    // the reference: "Hello world" -> 15496 995, "Hello\n\nworld\n" -> 15496 198 198 6894 198
    CHECK_EQ_INT(run_lossy("Hello world", &out, &err, "tokenize", d, NULL), 0);
    CHECK_EQ_STR(out.data, "15496 995\n");
    out.len = 0;
    CHECK_EQ_INT(run_lossy("Hello\n\nworld\n", &out, &err, "tokenize", d, NULL), 0);
    CHECK_EQ_STR(out.data, "15496 198 198 6894 198\n");
    out.len = 0;
    CHECK_EQ_INT(run_lossy("Hello world", &out, &err, "tokenize", d, "--count", NULL), 0);
    CHECK_EQ_STR(out.data, "2\n");
    out.len = 0;
    CHECK_EQ_INT(run_lossy("", &out, &err, "tokenize", d, NULL), 0);
    CHECK_EQ_STR(out.data, "\n");
    out.len = 0;
    CHECK_EQ_INT(run_lossy("15496 198 198\n6894 198", &out, &err, "tokenize", d, "--decode", NULL), 0);
    CHECK(out.len == 13 && memcmp(out.data, "Hello\n\nworld\n", 13) == 0);
    out.len = 0;
    CHECK_EQ_INT(run_lossy("[15496,995]\n[]\n[31373, 995]\n", &out, &err, "tokenize", d, "--decode", "--jsonl", NULL), 0);
    CHECK_EQ_STR(out.data, "\"Hello world\"\n\"\"\n\"hello world\"\n");
    // a lone byte token decodes to invalid UTF-8: the JSON line carries U+FFFD
    out.len = 0;
    CHECK_EQ_INT(run_lossy("[126]\n", &out, &err, "tokenize", d, "--decode", "--jsonl", NULL), 0); // id 126 = byte 0xC2
    CHECK_EQ_STR(out.data, "\"\xef\xbf\xbd\"\n");
    buf_free(&out);
    buf_free(&err);
}

TEST(tokenize_cli_modes_and_models) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    const char *p = fixture_path("tokenizers/mistral/tokenizer.json");
    REQUIRE(p);
    char mis[4096];
    snprintf(mis, sizeof mis, "%s", p);
    CHECK_EQ_INT(run_lossy("<s>hi", &out, &err, "tokenize", mis, NULL), 0);
    CHECK(out.data && str_starts_with(out.data, "1 ")); // default: <s> recognised
    out.len = 0;
    CHECK_EQ_INT(run_lossy("<s>hi", &out, &err, "tokenize", mis, "--ordinary", NULL), 0);
    REQUIRE(out.data);
    for (char *q = out.data; *q;) { // no BOS/EOS/UNK among the ids
        char *qe;
        long v = strtol(q, &qe, 10);
        if (qe == q) break;
        CHECKF(v > 2, "control id %ld in ordinary mode", v);
        q = qe;
    }
    out.len = 0;
    CHECK_EQ_INT(run_lossy("<s>hi", &out, &err, "tokenize", mis, "--ordinary", "--add-special", NULL), 0);
    CHECK(out.data && str_starts_with(out.data, "1 ") && !str_starts_with(out.data, "1 1 "));
    // a Hugging Face model directory: its tokenizer.json; ref.json's prompt was encoded with BOS
    p = fixture_path("hf/mistral_vocab_f16");
    REQUIRE(p);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", p);
    out.len = 0;
    CHECK_EQ_INT(run_lossy("Once upon a time, there was a little robot who", &out, &err, "tokenize", dir, "--add-special", NULL), 0);
    CHECK_EQ_STR(out.data, "1 5713 3714 264 727 28725 736 403 264 1628 18401 693\n");
    // a GGUF model: the tokenizer in its metadata (stories260K: 512-token sentencepiece vocabulary)
    p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    char model[4096];
    snprintf(model, sizeof model, "%s", p);
    out.len = 0;
    CHECK_EQ_INT(run_lossy("Once upon a time", &out, &err, "tokenize", model, "--add-special", NULL), 0);
    CHECK(out.data && str_starts_with(out.data, "1 "));
    Buf dec;
    buf_init(&dec);
    CHECK_EQ_INT(run_lossy(out.data, &dec, &err, "tokenize", model, "--decode", "--skip-special", NULL), 0);
    CHECK_EQ_STR(dec.data, "Once upon a time");
    buf_free(&dec);
    buf_free(&out);
    buf_free(&err);
}

TEST(tokenize_cli_errors) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy("x", &out, &err, "tokenize", NULL), 2);
    err.len = 0;
    CHECK_EQ_INT(run_lossy("x", &out, &err, "tokenize", "/nonexistent/tok.json", NULL), 1);
    CHECK(err.data && str_starts_with(err.data, "lossy: error: ") && strstr(err.data, "not found"));
    const char *p = fixture_path("tokenizers/gpt2");
    REQUIRE(p);
    char d[4096];
    snprintf(d, sizeof d, "%s", p);
    err.len = 0;
    CHECK_EQ_INT(run_lossy("\"ok\"\nnot json\n", &out, &err, "tokenize", d, "--jsonl", NULL), 1);
    CHECK(err.data && strstr(err.data, "line 2"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy("[1, 2]\n", &out, &err, "tokenize", d, "--jsonl", NULL), 1);
    CHECK(err.data && strstr(err.data, "expected a JSON string"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy("[1, 99999999]\n", &out, &err, "tokenize", d, "--jsonl", "--decode", NULL), 1);
    CHECK(err.data && strstr(err.data, "out of range"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy("1 two 3", &out, &err, "tokenize", d, "--decode", NULL), 1);
    CHECK(err.data && strstr(err.data, "bad token id 'two'"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy("[1, -2]\n", &out, &err, "tokenize", d, "--jsonl", "--decode", NULL), 1);
    buf_free(&out);
    buf_free(&err);
}
