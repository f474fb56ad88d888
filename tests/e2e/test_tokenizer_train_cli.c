// test_tokenizer_train_cli.c — `lossy tokenizer train` end to end: outputs that load back and agree, deterministic
// files across runs and thread counts, special-token flags, progress/summary, and every usage and runtime error.
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/train_bpe.h"

// The first n bytes of tinyshakespeare written to <tmp>/name; returns the path (static buffer per call site).
static int write_corpus(const char *name, size_t off, size_t n, char *path, size_t cap) {
    const char *p = fixture_path("corpora/tinyshakespeare.txt");
    if (!p) return -1;
    char *all;
    size_t len;
    Err e;
    if (file_read_all(p, &all, &len, &e)) return -1;
    if (off > len) off = len;
    if (n > len - off) n = len - off;
    snprintf(path, cap, "%s/%s", test_tmpdir(), name);
    int rc = file_write_atomic_bytes(path, all + off, n, &e);
    free(all);
    return rc;
}

static bool same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    Err e;
    bool ok = file_read_all(a, &x, &nx, &e) == 0 && file_read_all(b, &y, &ny, &e) == 0 && nx == ny &&
              memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return ok;
}

static void tmp(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", test_tmpdir(), name); }

TEST(cli_tokenizer_train_writes_loadable_deterministic_files) {
    char corpus[512], held[512], g1[512], j1[512], g2[512], j2[512], jonly[512];
    REQUIRE(write_corpus("corpus.txt", 0, 200000, corpus, sizeof corpus) == 0);
    REQUIRE(write_corpus("held.txt", 1115394 - 10000, 10000, held, sizeof held) == 0);
    tmp(g1, sizeof g1, "a.gguf"), tmp(j1, sizeof j1, "a.json"), tmp(g2, sizeof g2, "b.gguf"), tmp(j2, sizeof j2, "b.json");
    tmp(jonly, sizeof jonly, "only.json");
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "tokenizer", "train", "--vocab-size", "700", "--threads", "1", "--out", g1,
                           "--json-out", j1, corpus, NULL), 0);
    CHECKF(err.data && strstr(err.data, "trained 700 tokens") && strstr(err.data, "8 special"), "summary: %s",
           err.data ? err.data : "");
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "tokenizer", "train", "-n", "700", "-t", "2", "-q", "-o", g2, "--json-out",
                           j2, corpus, NULL), 0);
    CHECK_EQ_INT(err.len, 0); // --quiet
    CHECK(same_file(g1, g2));
    CHECK(same_file(j1, j2));
    // --out with .json alone writes the same tokenizer.json
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "tokenizer", "train", "-n", "700", "-q", "--out", jonly, corpus, NULL), 0);
    CHECK(same_file(j1, jonly));

    // what lossy info sees
    out.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", g1, NULL), 0);
    CHECK(out.data && strstr(out.data, "vocab size:    700") && strstr(out.data, "\"llama-bpe\"") && strstr(out.data, "\"gpt2\""));

    // both files load and encode held-out text identically, round-tripping it
    Tokenizer *tg = NULL, *tj = NULL;
    Err e;
    CHECKF(tokenizer_load(g1, &tg, &e) == 0, "%s", e.msg);
    CHECKF(tokenizer_load(j1, &tj, &e) == 0, "%s", e.msg);
    REQUIRE(tg && tj);
    char *text;
    size_t len;
    REQUIRE(file_read_all(held, &text, &len, &e) == 0);
    TokenIds a = {0}, b = {0};
    REQUIRE(tokenizer_encode(tg, text, len, 0, &a, &e) == 0);
    REQUIRE(tokenizer_encode(tj, text, len, 0, &b, &e) == 0);
    CHECK(a.n == b.n && memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0);
    CHECK(a.n > 0 && a.n < len / 2);
    Buf dec;
    buf_init(&dec);
    REQUIRE(tokenizer_decode(tg, a.ids, a.n, 0, &dec, &e) == 0);
    CHECK(dec.len == len && memcmp(dec.data, text, len) == 0);
    buf_free(&dec);
    token_ids_free(&a);
    token_ids_free(&b);
    free(text);
    tokenizer_free(tg);
    tokenizer_free(tj);
    buf_free(&out);
    buf_free(&err);
}

TEST(cli_tokenizer_train_special_flags) {
    char corpus[512], g[512];
    REQUIRE(write_corpus("corpus.txt", 0, 30000, corpus, sizeof corpus) == 0);
    tmp(g, sizeof g, "s.gguf");
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    // the corpus comes from stdin ("-") here
    char *text;
    size_t len;
    Err e;
    REQUIRE(file_read_all(corpus, &text, &len, &e) == 0);
    CHECK_EQ_INT(run_lossy(text, &out, &err, "tokenizer", "train", "--vocab-size", "300", "--special", "<|a|>",
                           "--special", "<|b|>", "--bos", "<|b|>", "--no-add-bos", "-q", "--out", g, "-", NULL), 0);
    free(text);
    GGUFFile f;
    REQUIREF(gguf_open(&f, g, &e) == 0, "%s", e.msg);
    int64_t id;
    CHECK(gguf_get_int(&f, "tokenizer.ggml.bos_token_id", &id, &e) == 0 && id == 299);
    CHECK(gguf_find(&f, "tokenizer.ggml.eos_token_id") == NULL); // <|endoftext|> was not reserved
    bool add;
    CHECK(gguf_get_bool(&f, "tokenizer.ggml.add_bos_token", &add, &e) == 0 && !add);
    const GGUFKV *toks, *types;
    REQUIRE(gguf_get_arr(&f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &e) == 0);
    REQUIRE(gguf_get_arr(&f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types, &e) == 0);
    REQUIRE(toks->arr_count == 300);
    CHECK(toks->arr_str[298].len == 5 && memcmp(toks->arr_str[298].ptr, "<|a|>", 5) == 0);
    CHECK(gguf_arr_int(types, 298) == TOKEN_CONTROL && gguf_arr_int(types, 299) == TOKEN_CONTROL);
    CHECK(gguf_arr_int(types, 297) == TOKEN_NORMAL);
    gguf_close(&f);
    // --no-special: every id is bytes or merges
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "tokenizer", "train", "-n", "300", "--no-special", "-q", "--out", g, corpus, NULL), 0);
    REQUIREF(gguf_open(&f, g, &e) == 0, "%s", e.msg);
    REQUIRE(gguf_get_arr(&f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types, &e) == 0);
    size_t control = 0;
    for (uint64_t i = 0; i < types->arr_count; i++) control += gguf_arr_int(types, i) != TOKEN_NORMAL;
    CHECK_EQ_INT(control, 0);
    CHECK(gguf_find(&f, "tokenizer.ggml.bos_token_id") == NULL);
    gguf_close(&f);
    // a min-frequency no pair reaches: a warning, and a vocabulary of bytes + specials only
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "tokenizer", "train", "-n", "5000", "--min-frequency", "1000000", "--out",
                           g, corpus, NULL), 0);
    CHECK(err.data && strstr(err.data, "warning") && strstr(err.data, "264 tokens"));
    buf_free(&out);
    buf_free(&err);
}

TEST(cli_tokenizer_train_errors) {
    char corpus[512], g[512], bad_dir_out[512];
    REQUIRE(write_corpus("corpus.txt", 0, 5000, corpus, sizeof corpus) == 0);
    tmp(g, sizeof g, "e.gguf");
    tmp(bad_dir_out, sizeof bad_dir_out, "no/such/dir/x.gguf");
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    struct {
        int code;
        const char *want; // in stderr
        const char *argv[12];
    } cases[] = {
        {2, "--vocab-size", {"tokenizer", "train", "--out", g, corpus}},
        {2, "--out", {"tokenizer", "train", "-n", "500", corpus}},
        {2, "arguments", {"tokenizer", "train", "-n", "500", "--out", g}},
        {2, "format", {"tokenizer", "train", "-n", "500", "--out", "x.bin", corpus}},
        {2, "gguf or json", {"tokenizer", "train", "-n", "500", "--format", "xml", "--out", g, corpus}},
        {2, "integer", {"tokenizer", "train", "-n", "many", "--out", g, corpus}},
        {2, "--vocab-size", {"tokenizer", "train", "-n", "-5", "--out", g, corpus}},
        {2, "--min-frequency", {"tokenizer", "train", "-n", "500", "--min-frequency", "0", "--out", g, corpus}},
        {2, "not one of the special", {"tokenizer", "train", "-n", "500", "--bos", "<|x|>", "--out", g, corpus}},
        {2, "contradict", {"tokenizer", "train", "-n", "500", "--no-special", "--special", "<|x|>", "--out", g, corpus}},
        {1, "too small", {"tokenizer", "train", "-n", "100", "--out", g, corpus}},
        {1, "twice", {"tokenizer", "train", "-n", "500", "--special", "<|x|>", "--special", "<|x|>", "--out", g, corpus}},
        {1, "no-such-file.txt", {"tokenizer", "train", "-n", "500", "--out", g, "no-such-file.txt"}},
        {1, "directory", {"tokenizer", "train", "-n", "500", "--out", g, test_tmpdir()}},
        {1, "x.gguf", {"tokenizer", "train", "-n", "500", "-q", "--out", bad_dir_out, corpus}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err.len = 0;
        if (err.data) err.data[0] = 0;
        int rc = run_lossy_argv(NULL, &out, &err, cases[i].argv);
        CHECKF(rc == cases[i].code, "case %zu: exit %d, want %d (%s)", i, rc, cases[i].code, err.data ? err.data : "");
        CHECKF(err.data && strstr(err.data, "lossy: error:") && strstr(err.data, cases[i].want), "case %zu: stderr '%s' lacks '%s'",
               i, err.data ? err.data : "", cases[i].want);
    }
    // an empty corpus is an error, not an empty vocabulary file
    char empty[512];
    tmp(empty, sizeof empty, "empty.txt");
    Err e;
    REQUIRE(file_write_atomic_bytes(empty, "", 0, &e) == 0);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "tokenizer", "train", "-n", "500", "--out", g, empty, NULL), 1);
    CHECK(err.data && strstr(err.data, "no text"));
    CHECK(!path_exists(g));
    buf_free(&out);
    buf_free(&err);
}

TEST(cli_tokenizer_train_help_lists_default_specials) {
    // the help text spells out the default special tokens: it must name every entry of the trainer's table
    const CliCommand *c = NULL;
    for (size_t i = 0; cli_commands[i]; i++)
        if (strcmp(cli_commands[i]->name, "tokenizer train") == 0) c = cli_commands[i];
    REQUIRE(c && c->details);
    for (size_t i = 0; i < BPE_N_DEFAULT_SPECIALS; i++)
        CHECKF(strstr(c->details, BPE_DEFAULT_SPECIALS[i].text), "help lacks %s", BPE_DEFAULT_SPECIALS[i].text);
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    REQUIRE(o.n_specials == BPE_N_DEFAULT_SPECIALS);
    for (size_t i = 0; i < o.n_specials; i++) CHECK_EQ_STR(o.specials[i], BPE_DEFAULT_SPECIALS[i].text);
}
