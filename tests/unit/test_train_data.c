// test_train_data.c — `data prepare` and the data loader: shards decode back to exactly the corpus (documents,
// BOS/EOS, the validation cut, several shards, 16- and 32-bit tokens), bad corpora and damaged datasets give clear
// errors (missing manifest, truncated or corrupted shards, out-of-vocabulary ids, a tokenizer that does not match),
// and the loader's batches are deterministic per seed, shifted by one for targets, cover an epoch without repeats,
// and continue identically from a saved state.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "train/data.h"
#include "train_test_util.h"

static int prepare(const char *tok, const char *out, double vf, const char *sep, int64_t shard,
                   const char *const *files, size_t n, DataPrepareStats *st, Err *e) {
    DataPrepareOpts o = {tok, out, vf, sep, shard, NULL, NULL, NULL};
    return data_prepare(&o, files, n, st, e);
}

// All tokens of one split in shard order.
static int32_t *split_tokens(const Dataset *d, int split, size_t *n) {
    int32_t *ids = xmalloc_array((size_t)d->tokens[split] + 1, sizeof(int32_t));
    *n = 0;
    for (size_t i = 0; i < d->n_shards; i++)
        if (d->shards[i].split == split)
            for (int64_t j = 0; j < d->shards[i].n_tokens; j++) ids[(*n)++] = dataset_token(d, &d->shards[i], j);
    return ids;
}

static char *decode_all(const Dataset *d, int flags, size_t *len) {
    Buf b;
    buf_init(&b);
    Err e;
    for (int s = 0; s < 2; s++) {
        size_t n;
        int32_t *ids = split_tokens(d, s, &n);
        CHECK(tokenizer_decode(d->tok, ids, n, flags, &b, &e) == 0);
        free(ids);
    }
    *len = b.len;
    return b.data ? b.data : xstrdup("");
}

TEST(train_data_prepare_roundtrip_shards_and_split) {
    char tok[512], a[512], b[512], out[512];
    size_t na = 0, nb = 0;
    char *ta = tt_shakespeare(0, 60000, &na), *tb = tt_shakespeare(60000, 40000, &nb);
    REQUIRE(ta && tb);
    REQUIRE(tt_make_tokenizer(tt_path(tok, "tok.gguf"), ta, na, 400) == 0);
    REQUIRE(tt_write(tt_path(a, "a.txt"), ta, na) == 0 && tt_write(tt_path(b, "b.txt"), tb, nb) == 0);
    const char *files[2] = {a, b};
    DataPrepareStats st;
    Err e;
    REQUIREF(prepare(tok, tt_path(out, "ds"), 0.1, NULL, 5000, files, 2, &st, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(st.documents, 2);
    CHECK(st.n_shards > 4);
    Dataset d;
    REQUIREF(dataset_open(&d, out, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(d.vocab_size, 400);
    CHECK_EQ_INT(d.token_bytes, 2);
    CHECK_EQ_INT(d.tokens[0], st.tokens[0]);
    CHECK_EQ_INT(d.text_bytes[0] + d.text_bytes[1], 100000);
    // the validation split is the last ~10% of the bytes, cut at a line start
    CHECK(d.text_bytes[1] >= 9900 && d.text_bytes[1] <= 10100);
    for (size_t i = 0; i < d.n_shards; i++) CHECK(d.shards[i].n_tokens <= 5000);
    // decoding everything gives the corpus back exactly
    size_t len;
    char *text = decode_all(&d, TOKENIZER_DECODE_SKIP_SPECIAL, &len);
    CHECK(len == na + nb && memcmp(text, ta, na) == 0 && memcmp(text + na, tb, nb) == 0);
    free(text);
    // one BOS and one EOS per document; the train split starts with BOS, the validation split ends with EOS
    int32_t bos = tokenizer_special_id(d.tok, TOKEN_ID_BOS), eos = tokenizer_special_id(d.tok, TOKEN_ID_EOS);
    size_t nt, nv, nbos = 0, neos = 0;
    int32_t *tr = split_tokens(&d, DATA_TRAIN, &nt), *va = split_tokens(&d, DATA_VAL, &nv);
    for (size_t i = 0; i < nt; i++) nbos += tr[i] == bos, neos += tr[i] == eos;
    for (size_t i = 0; i < nv; i++) nbos += va[i] == bos, neos += va[i] == eos;
    CHECK_EQ_INT(nbos, 2);
    CHECK_EQ_INT(neos, 2);
    CHECK(tr[0] == bos && va[nv - 1] == eos);
    free(tr), free(va);
    dataset_close(&d);
    free(ta), free(tb);
}

TEST(train_data_doc_separator_trims_documents) {
    char tok[512], c[512], out[512];
    size_t n = 0;
    char *sh = tt_shakespeare(0, 30000, &n);
    REQUIRE(sh);
    REQUIRE(tt_make_tokenizer(tt_path(tok, "tok.gguf"), sh, n, 300) == 0);
    const char *corpus = "  First doc.\n<SEP>\n\nSecond doc\nhas two lines.\n<SEP><SEP>Third.  ";
    REQUIRE(tt_write(tt_path(c, "c.txt"), corpus, strlen(corpus)) == 0);
    const char *files[1] = {c};
    DataPrepareStats st;
    Err e;
    REQUIREF(prepare(tok, tt_path(out, "ds"), 0, "<SEP>", 1 << 20, files, 1, &st, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(st.documents, 3);
    CHECK_EQ_INT(st.tokens[DATA_VAL], 0);
    Dataset d;
    REQUIREF(dataset_open(&d, out, &e) == 0, "%s", e.msg);
    size_t len;
    char *text = decode_all(&d, 0, &len);
    CHECK_EQ_STR(text, "<|bos|>First doc.<|endoftext|><|bos|>Second doc\nhas two lines.<|endoftext|><|bos|>Third.<|endoftext|>");
    free(text);
    dataset_close(&d);
    free(sh);
}

// A vocabulary over 65536 ids: bytes, filler tokens, BOS and EOS.
TEST(train_data_wide_vocabulary_uses_32bit_tokens) {
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_BYTES);
    Err e;
    for (int i = 0; i < 256; i++) {
        char ch = (char)i;
        REQUIRE(tokenizer_add_token(t, &ch, 1, 0, TOKEN_NORMAL, &e) >= 0);
    }
    char name[32];
    for (int i = 0; i < 70000; i++) {
        int n = snprintf(name, sizeof name, "~filler%d~", i);
        REQUIRE(tokenizer_add_token(t, name, (size_t)n, 0, TOKEN_NORMAL, &e) >= 0);
    }
    int32_t wi = tokenizer_add_token(t, "wi", 2, 0, TOKEN_NORMAL, &e);
    REQUIRE(tokenizer_add_merge_str(t, "w", 1, "i", 1, &e) == 0);
    int32_t bos = tokenizer_add_token(t, "<s>", 3, 0, TOKEN_CONTROL, &e), eos = tokenizer_add_token(t, "</s>", 4, 0, TOKEN_CONTROL, &e);
    tokenizer_set_special_id(t, TOKEN_ID_BOS, bos);
    tokenizer_set_special_id(t, TOKEN_ID_EOS, eos);
    REQUIREF(tokenizer_finalize(t, &e) == 0, "%s", e.msg);
    char tok[512], c[512], out[512];
    REQUIREF(tokenizer_write_gguf(t, tt_path(tok, "wide.gguf"), NULL, &e) == 0, "%s", e.msg);
    tokenizer_free(t);
    const char *corpus = "wide vocabularies need four bytes per token\n";
    REQUIRE(tt_write(tt_path(c, "c.txt"), corpus, strlen(corpus)) == 0);
    const char *files[1] = {c};
    DataPrepareStats st;
    REQUIREF(prepare(tok, tt_path(out, "ds"), 0, NULL, 1 << 20, files, 1, &st, &e) == 0, "%s", e.msg);
    Dataset d;
    REQUIREF(dataset_open(&d, out, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(d.token_bytes, 4);
    size_t n;
    int32_t *ids = split_tokens(&d, DATA_TRAIN, &n);
    CHECK_EQ_INT(n, strlen(corpus) + 1); // BOS, "wi" merged, the other bytes, EOS
    CHECK(ids[0] == bos && ids[n - 1] == eos && ids[1] == wi && ids[2] == 'd');
    free(ids);
    dataset_close(&d);
}

TEST(train_data_bad_corpora_are_clear_errors) {
    char tok[512], f[512], out[512];
    size_t n = 0;
    char *sh = tt_shakespeare(0, 20000, &n);
    REQUIRE(sh);
    REQUIRE(tt_make_tokenizer(tt_path(tok, "tok.gguf"), sh, n, 300) == 0);
    free(sh);
    struct {
        const char *data;
        size_t len;
        const char *want;
    } cases[] = {
        {"", 0, "is empty"},
        {"text\0more", 9, "looks binary: NUL byte at offset 4"},
        {"ok\n\xff\xfe", 5, "not valid UTF-8: byte 0xff at offset 3 (line 2)"},
        {"overlong \xc0\xaf", 11, "not valid UTF-8"},
        {"surrogate \xed\xa0\x80", 13, "not valid UTF-8"},
        {"cut \xe2\x82", 6, "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        REQUIRE(tt_write(tt_path(f, "bad.txt"), cases[i].data, cases[i].len) == 0);
        const char *files[1] = {f};
        DataPrepareStats st;
        Err e;
        CHECKF(prepare(tok, tt_path(out, "ds"), 0.1, NULL, 1 << 20, files, 1, &st, &e) != 0 && strstr(e.msg, cases[i].want),
               "case %zu: %s", i, e.msg);
        CHECK(!path_exists(tt_path(out, "ds/manifest.json")));
    }
    const char *dir[1] = {test_tmpdir()};
    DataPrepareStats st;
    Err e;
    CHECK(prepare(tok, tt_path(out, "ds"), 0.1, NULL, 1 << 20, dir, 1, &st, &e) != 0 && strstr(e.msg, "directory"));
    const char *missing[1] = {tt_path(f, "nope.txt")};
    CHECK(prepare(tok, tt_path(out, "ds"), 0.1, NULL, 1 << 20, missing, 1, &st, &e) != 0 && strstr(e.msg, "nope.txt"));
    REQUIRE(tt_write(tt_path(f, "ok.txt"), "hello\n", 6) == 0);
    const char *ok[1] = {f};
    CHECK(prepare(tt_path(out, "no-such-tokenizer.gguf"), tt_path(out, "ds"), 0.1, NULL, 1 << 20, ok, 1, &st, &e) != 0 &&
          strstr(e.msg, "tokenizer"));
    CHECK(prepare(tok, tt_path(out, "ds"), 0.9, NULL, 1 << 20, ok, 1, &st, &e) != 0 && strstr(e.msg, "val-fraction"));
}

// Rewrite one field of the manifest with jansson.
static void manifest_edit(const char *dir, void (*fn)(json_t *root)) {
    char p[600];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    REQUIRE(root);
    fn(root);
    char *s = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    REQUIRE(tt_write(p, s, strlen(s)) == 0);
    free(s);
}

static char g_hash[32];
static void set_shard0_hash(json_t *root) {
    json_object_set_new(json_array_get(json_object_get(root, "shards"), 0), "hash", json_string(g_hash));
}
static void set_shard0_file(json_t *root) {
    json_object_set_new(json_array_get(json_object_get(root, "shards"), 0), "file", json_string("../escape.bin"));
}

static void expect_open_error(const char *dir, const char *want) {
    Dataset d;
    Err e;
    int rc = dataset_open(&d, dir, &e);
    CHECKF(rc != 0 && strstr(e.msg, want), "want '%s', got: %s", want, rc ? e.msg : "(opened)");
    if (rc == 0) dataset_close(&d);
}

TEST(train_data_damaged_datasets_are_clear_errors) {
    char tok[512], tok2[512], tok3[512], c[512], ds[512], p[600];
    size_t n = 0;
    char *sh = tt_shakespeare(0, 40000, &n);
    REQUIRE(sh);
    REQUIRE(tt_make_tokenizer(tt_path(tok, "tok.gguf"), sh, 30000, 300) == 0);
    REQUIRE(tt_make_tokenizer(tt_path(tok2, "tok2.gguf"), sh + 30000, 10000, 300) == 0); // same size, other merges
    REQUIRE(tt_make_tokenizer(tt_path(tok3, "tok3.gguf"), sh, 30000, 280) == 0);         // other size
    REQUIRE(tt_write(tt_path(c, "c.txt"), sh, n) == 0);
    free(sh);
    const char *files[1] = {c};
    DataPrepareStats st;
    Err e;
#define FRESH() REQUIREF(prepare(tok, tt_path(ds, "ds"), 0.1, NULL, 1 << 20, files, 1, &st, &e) == 0, "%s", e.msg)
    FRESH();
    Dataset d;
    REQUIREF(dataset_open(&d, ds, &e) == 0, "%s", e.msg);
    dataset_close(&d);

    expect_open_error(tt_path(p, "nowhere"), "not a directory");
    snprintf(p, sizeof p, "%s/manifest.json", ds);
    unlink(p);
    expect_open_error(ds, "no manifest.json");
    REQUIRE(tt_write(p, "{\"format\": \"lossy-tokens\",", 26) == 0);
    expect_open_error(ds, "invalid JSON");

    // truncated shard
    FRESH();
    snprintf(p, sizeof p, "%s/train_00000.bin", ds);
    char *sd;
    size_t sn;
    REQUIRE(file_read_all(p, &sd, &sn, &e) == 0);
    REQUIRE(tt_write(p, sd, sn - 1) == 0);
    expect_open_error(ds, "truncated");
    // a token changed: the hash catches it
    uint16_t v = 7;
    memcpy(sd + 40, &v, 2);
    REQUIRE(tt_write(p, sd, sn) == 0);
    expect_open_error(ds, "does not match its hash");
    // an out-of-vocabulary id with a consistent hash
    v = 300;
    memcpy(sd + 40, &v, 2);
    REQUIRE(tt_write(p, sd, sn) == 0);
    snprintf(g_hash, sizeof g_hash, "%016llx", (unsigned long long)data_hash64(sd + DATA_SHARD_HEADER, sn - DATA_SHARD_HEADER, DATA_HASH_INIT));
    manifest_edit(ds, set_shard0_hash);
    expect_open_error(ds, "token id 300 at position 4 is outside the vocabulary (300)");
    // a header claiming another vocabulary (300 = 0x12c becomes 0x12d)
    free(sd);
    FRESH();
    REQUIRE(file_read_all(p, &sd, &sn, &e) == 0);
    sd[24] = (char)0x2d;
    REQUIRE(tt_write(p, sd, sn) == 0);
    expect_open_error(ds, "was encoded for a vocabulary of 301 tokens");
    free(sd);
    // path escapes
    FRESH();
    manifest_edit(ds, set_shard0_file);
    expect_open_error(ds, "plain file name");
    // a tokenizer that is not the one the shards were encoded with
    FRESH();
    snprintf(p, sizeof p, "%s/tokenizer.gguf", ds);
    char *td;
    size_t tn;
    REQUIRE(file_read_all(tok2, &td, &tn, &e) == 0);
    REQUIRE(tt_write(p, td, tn) == 0);
    free(td);
    expect_open_error(ds, "does not match the tokenizer the shards were encoded with");
    REQUIRE(file_read_all(tok3, &td, &tn, &e) == 0);
    REQUIRE(tt_write(p, td, tn) == 0);
    free(td);
    expect_open_error(ds, "manifest says 300 tokens but tokenizer.gguf has 280");
#undef FRESH
}

static uint64_t row_hash(const int32_t *a, const int32_t *b, int64_t T) {
    uint64_t h = data_hash64(a, (size_t)T * 4, DATA_HASH_INIT);
    return data_hash64(b, (size_t)T * 4, h);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

TEST(train_data_loader_deterministic_resumable_and_covering) {
    char tok[512], c[512], ds[512];
    size_t n = 0;
    char *sh = tt_shakespeare(0, 30000, &n);
    REQUIRE(sh);
    REQUIRE(tt_make_tokenizer(tt_path(tok, "tok.gguf"), sh, n, 300) == 0);
    REQUIRE(tt_write(tt_path(c, "c.txt"), sh, n) == 0);
    free(sh);
    const char *files[1] = {c};
    DataPrepareStats st;
    Err e;
    REQUIREF(prepare(tok, tt_path(ds, "ds"), 0.1, NULL, 4000, files, 1, &st, &e) == 0, "%s", e.msg);
    Dataset d;
    REQUIREF(dataset_open(&d, ds, &e) == 0, "%s", e.msg);
    const int64_t T = 32, B = 3;
    DataLoader a, b, other;
    REQUIRE(data_loader_init(&a, &d, DATA_TRAIN, T, true, 5, &e) == 0);
    REQUIRE(data_loader_init(&b, &d, DATA_TRAIN, T, true, 5, &e) == 0);
    REQUIRE(data_loader_init(&other, &d, DATA_TRAIN, T, true, 6, &e) == 0);
    int32_t in1[96], tg1[96], in2[96], tg2[96];
    bool differs = false;
    for (int i = 0; i < 3; i++) {
        data_loader_next(&a, B, in1, tg1);
        data_loader_next(&b, B, in2, tg2);
        CHECK(memcmp(in1, in2, sizeof in1) == 0 && memcmp(tg1, tg2, sizeof tg1) == 0);
        data_loader_next(&other, B, in2, tg2);
        differs |= memcmp(in1, in2, sizeof in1) != 0;
        for (int64_t r = 0; r < B; r++)
            for (int64_t t = 0; t + 1 < T; t++) CHECK(tg1[r * T + t] == in1[r * T + t + 1]);
    }
    CHECK(differs);
    // a loader set to a's state continues exactly like a
    DataLoader c2;
    REQUIRE(data_loader_init(&c2, &d, DATA_TRAIN, T, true, 99, &e) == 0);
    REQUIRE(data_loader_set_state(&c2, &a.st, &e) == 0);
    for (int i = 0; i < 4; i++) {
        data_loader_next(&a, B, in1, tg1);
        data_loader_next(&c2, B, in2, tg2);
        CHECK(memcmp(in1, in2, sizeof in1) == 0 && memcmp(tg1, tg2, sizeof tg1) == 0);
    }
    // one epoch visits every window once; the next epoch starts over with a new order
    DataLoader f;
    REQUIRE(data_loader_init(&f, &d, DATA_TRAIN, T, true, 11, &e) == 0);
    int64_t nw = data_loader_epoch_windows(&f);
    CHECK(nw > 100 && nw <= (int64_t)d.tokens[DATA_TRAIN] / T);
    uint64_t *seen = xmalloc_array((size_t)nw, sizeof(uint64_t));
    for (int64_t i = 0; i < nw; i++) {
        data_loader_next(&f, 1, in1, tg1);
        seen[i] = row_hash(in1, tg1, T);
    }
    qsort(seen, (size_t)nw, sizeof *seen, cmp_u64);
    for (int64_t i = 1; i < nw; i++) CHECK(seen[i] != seen[i - 1]);
    CHECK_EQ_INT(f.st.epoch, 0);
    data_loader_next(&f, 1, in1, tg1);
    CHECK_EQ_INT(f.st.epoch, 1);
    CHECK_EQ_INT(f.st.index, 1);
    free(seen);
    // a state past the epoch's windows is refused
    DataLoaderState bad = {11, 0, (uint64_t)nw + 5};
    CHECK(data_loader_set_state(&f, &bad, &e) != 0 && strstr(e.msg, "past"));
    // sequences longer than every shard
    DataLoader big;
    CHECK(data_loader_init(&big, &d, DATA_VAL, 100000, false, 0, &e) != 0 && strstr(e.msg, "no window"));
    data_loader_free(&a), data_loader_free(&b), data_loader_free(&other), data_loader_free(&c2), data_loader_free(&f);
    dataset_close(&d);
}
