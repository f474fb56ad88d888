// test_safetensors.c — safetensors reader: files built by the test, the HF fixtures, sharded directories, malformed
// headers, and a deterministic mutation run (the in-suite stand-in for tests/fuzz/fuzz_safetensors.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/safetensors.h"
#include "safetensors_writer.h"
#include "test.h"

// A file from a raw header string and data_len zero bytes of data.
static void make_raw(Buf *out, const char *header, size_t data_len) {
    buf_init(out);
    uint64_t hl = strlen(header);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hl >> (8 * i));
    buf_append(out, len8, 8);
    buf_append_str(out, header);
    for (size_t i = 0; i < data_len; i++) buf_append(out, "", 1);
}

static void expect_fail_raw(const char *header, size_t data_len, const char *needle, int line) {
    Buf b;
    make_raw(&b, header, data_len);
    SafeTensors st;
    Err e = {0};
    int rc = st_parse(&st, (const uint8_t *)b.data, b.len, "bad.safetensors", &e);
    if (rc == 0) {
        test_fail_at(__FILE__, line, "parse of %s unexpectedly succeeded", header);
        st_close(&st);
    } else if (!strstr(e.msg, needle)) {
        test_fail_at(__FILE__, line, "error '%s' does not mention '%s'", e.msg, needle);
    }
    buf_free(&b);
}
#define EXPECT_FAIL(h, n, needle) expect_fail_raw((h), (n), (needle), __LINE__)

static void write_file(const char *path, const void *p, size_t n) {
    Err e;
    if (file_write_atomic_bytes(path, p, n, &e) != 0) test_fail_at(__FILE__, __LINE__, "%s", e.msg);
}

TEST(safetensors_roundtrip_dtypes) {
    float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.5f, 1e-3f};
    uint16_t f16[4], bf16[4];
    float src[4] = {0.5f, -1.25f, 65504.0f, 3.0f};
    for (int i = 0; i < 4; i++) f16[i] = fp32_to_fp16(src[i]), bf16[i] = fp32_to_bf16(src[i]);
    int64_t i64[3] = {-1, 1ll << 40, 7};
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    double f64[2] = {1e300, -2.5};
    uint8_t f8[3] = {0x38 /* e4m3 1.0 */, 0xc0 /* e4m3 -2.0 */, 0x01 /* smallest subnormal 2^-9 */};
    float scalar = 42.0f;
    TT ts[] = {
        {"w.f32", "F32", 2, {2, 3}, f32, sizeof f32},     {"w.f16", "F16", 1, {4}, f16, sizeof f16},
        {"w.bf16", "BF16", 2, {2, 2}, bf16, sizeof bf16}, {"w.i64", "I64", 1, {3}, i64, sizeof i64},
        {"w.i8", "I8", 1, {5}, i8, sizeof i8},            {"w.f64", "F64", 1, {2}, f64, sizeof f64},
        {"w.f8", "F8_E4M3", 1, {3}, f8, sizeof f8},       {"scalar", "F32", 0, {0}, &scalar, 4},
        {"empty", "F32", 2, {0, 5}, NULL, 0},
    };
    Buf b;
    make_st(&b, ts, sizeof ts / sizeof *ts, "\"format\":\"pt\",\"note\":\"x\"");
    SafeTensors st;
    Err e;
    REQUIREF(st_parse(&st, (const uint8_t *)b.data, b.len, "mem", &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(st.n_tensors, 9);
    CHECK_EQ_STR(st_metadata(&st, "format"), "pt");
    CHECK_EQ_STR(st_metadata(&st, "note"), "x");
    CHECK(st_metadata(&st, "nope") == NULL);
    CHECK(st_find(&st, "nope") == NULL);
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
        const STTensor *t = st_find(&st, ts[i].name);
        REQUIREF(t, "missing %s", ts[i].name);
        CHECK_EQ_STR(st_dtype_name(t->st_dtype), ts[i].dtype);
        CHECK_EQ_INT(t->ndim, ts[i].ndim);
        for (int d = 0; d < ts[i].ndim; d++) CHECK_EQ_INT(t->shape[d], ts[i].shape[d]);
        CHECK_EQ_INT(t->nbytes, ts[i].nbytes);
        if (ts[i].nbytes) CHECK(memcmp(t->data, ts[i].data, ts[i].nbytes) == 0);
        // zero copy: the view points into the buffer we parsed
        CHECK((const char *)t->data >= b.data && (const char *)t->data + t->nbytes <= b.data + b.len);
    }
    const STTensor *t = st_find(&st, "w.f32");
    CHECK_EQ_INT(t->dtype, DT_F32);
    CHECK_EQ_INT(t->n_elements, 6);
    for (int i = 0; i < 6; i++) CHECK_NEAR(st_tensor_get(t, (uint64_t)i), f32[i], 0);
    t = st_find(&st, "w.f16");
    CHECK_EQ_INT(t->dtype, DT_F16);
    for (int i = 0; i < 4; i++) CHECK_NEAR(st_tensor_get(t, (uint64_t)i), src[i], 0);
    t = st_find(&st, "w.bf16");
    CHECK_EQ_INT(t->dtype, DT_BF16);
    CHECK_NEAR(st_tensor_get(t, 1), -1.25, 0);
    t = st_find(&st, "w.i64");
    CHECK_EQ_INT(t->dtype, DT_I64);
    CHECK_NEAR(st_tensor_get(t, 1), (double)(1ll << 40), 0);
    t = st_find(&st, "w.i8");
    CHECK_NEAR(st_tensor_get(t, 0), -128, 0);
    t = st_find(&st, "w.f64");
    CHECK_NEAR(st_tensor_get(t, 0), 1e300, 0);
    t = st_find(&st, "w.f8");
    CHECK_EQ_INT(t->dtype, -1);
    CHECK_NEAR(st_tensor_get(t, 0), 1.0, 0);
    CHECK_NEAR(st_tensor_get(t, 1), -2.0, 0);
    CHECK_NEAR(st_tensor_get(t, 2), 1.0 / 512, 0);
    t = st_find(&st, "scalar");
    CHECK_EQ_INT(t->n_elements, 1);
    CHECK_NEAR(st_tensor_get(t, 0), 42.0, 0);
    CHECK_EQ_INT(st_find(&st, "empty")->n_elements, 0);
    st_close(&st);
    buf_free(&b);
}

TEST(safetensors_many_tensors_index) {
    // enough names to exercise the hash index's probing; each tensor holds its own index
    enum { N = 700 };
    static float vals[N];
    static char names[N][16];
    static TT ts[N];
    for (int i = 0; i < N; i++) {
        vals[i] = (float)i;
        snprintf(names[i], sizeof names[i], "t%d", i);
        ts[i] = (TT){names[i], "F32", 1, {1}, &vals[i], 4};
    }
    Buf b;
    make_st(&b, ts, N, NULL);
    SafeTensors st;
    Err e;
    REQUIREF(st_parse(&st, (const uint8_t *)b.data, b.len, "mem", &e) == 0, "%s", e.msg);
    for (int i = 0; i < N; i++) {
        const STTensor *t = st_find(&st, names[i]);
        REQUIRE(t);
        CHECK_NEAR(st_tensor_get(t, 0), i, 0);
    }
    st_close(&st);
    buf_free(&b);
}

// Every fixture directory: the view must agree with an independent reading of the raw file (header length, data
// start), the data buffer must be fully covered, and every tensor must be reachable by name.
TEST(safetensors_hf_fixtures) {
    static const char *dirs[] = {"hf/llama_gqa_f32", "hf/gpt2_f32", "hf/mistral_vocab_f16"};
    for (size_t d = 0; d < 3; d++) {
        const char *dir = fixture_path(dirs[d]);
        REQUIRE(dir);
        char *dirc = xstrdup(dir);
        SafeTensors st;
        Err e;
        REQUIREF(st_open_dir(&st, dirc, &e) == 0, "%s", e.msg);
        CHECK_EQ_INT(st.n_shards, 1);
        CHECK_EQ_STR(st_metadata(&st, "format"), "pt");
        Buf path;
        buf_init(&path);
        buf_printf(&path, "%s/model.safetensors", dirc);
        char *raw;
        size_t len;
        REQUIREF(file_read_all(path.data, &raw, &len, &e) == 0, "%s", e.msg);
        uint64_t hl = load_u64le((const uint8_t *)raw);
        size_t covered = 0;
        const uint8_t *base = st.maps[0].data;
        for (size_t i = 0; i < st.n_tensors; i++) {
            const STTensor *t = &st.tensors[i];
            CHECK(st_find(&st, t->name) == t);
            CHECK(t->offset >= 8 + hl);
            CHECK((const uint8_t *)t->data == base + t->offset);
            CHECK(memcmp(t->data, raw + t->offset, t->nbytes) == 0);
            CHECK(t->dtype == (d == 2 ? DT_F16 : DT_F32));
            CHECK(t->ndim == 1 || t->ndim == 2);
            covered += t->nbytes;
        }
        CHECK_EQ_INT(covered, len - 8 - hl);
        // the same file opened directly, and through its path
        SafeTensors st2;
        REQUIREF(st_open_dir(&st2, path.data, &e) == 0, "%s", e.msg);
        CHECK_EQ_INT(st2.n_tensors, st.n_tensors);
        st_close(&st2);
        free(raw);
        buf_free(&path);
        st_close(&st);
        free(dirc);
    }
}

// Two shards plus an index, then the ways an index can be wrong.
TEST(safetensors_sharded) {
    const char *dir = test_tmpdir();
    float a[4] = {1, 2, 3, 4}, b2[2] = {5, 6}, c[3] = {7, 8, 9};
    TT s1[] = {{"a", "F32", 2, {2, 2}, a, sizeof a}, {"b", "F32", 1, {2}, b2, sizeof b2}};
    TT s2[] = {{"c", "F32", 1, {3}, c, sizeof c}};
    Buf f1, f2;
    make_st(&f1, s1, 2, NULL);
    make_st(&f2, s2, 1, "\"format\":\"pt\"");
    char p[4096];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_file(p, f1.data, f1.len);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_file(p, f2.data, f2.len);
    const char *good = "{\"metadata\":{\"total_size\":36},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                       "\"c\":\"model-00002-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\"}}";
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_file(p, good, strlen(good));
    SafeTensors st;
    Err e;
    REQUIREF(st_open_dir(&st, dir, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(st.n_shards, 2);
    CHECK_EQ_INT(st.n_tensors, 3);
    const STTensor *t = st_find(&st, "c");
    REQUIRE(t);
    CHECK_EQ_INT(t->shard, 1);
    CHECK_NEAR(st_tensor_get(t, 2), 9, 0);
    CHECK_NEAR(st_tensor_get(st_find(&st, "a"), 3), 4, 0);
    CHECK_EQ_STR(st_metadata(&st, "format"), "pt");
    st_close(&st);
    // the index file itself may be given
    REQUIREF(st_open_dir(&st, p, &e) == 0, "%s", e.msg);
    st_close(&st);

    struct {
        const char *index;
        const char *needle;
    } bad[] = {
        {"{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"z\":\"missing.safetensors\"}}", "missing.safetensors"},
        {"{\"weight_map\":{\"c\":\"model-00001-of-00002.safetensors\"}}", "'c' listed in the index is missing"},
        {"{\"weight_map\":{\"a\":\"../model-00001-of-00002.safetensors\"}}", "unsafe shard path"},
        {"{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "unsafe shard path"},
        {"{\"weight_map\":{\"a\":3}}", "must be a file name string"},
        {"{\"weight_map\":{}}", "empty"},
        {"{\"weight\":{}}", "weight_map"},
        {"[1,2]", "weight_map"},
        {"{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}", "invalid JSON"},
        {"{not json", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(p, bad[i].index, strlen(bad[i].index));
        if (st_open_dir(&st, dir, &e) == 0) {
            test_fail_at(__FILE__, __LINE__, "index %s unexpectedly opened", bad[i].index);
            st_close(&st);
        } else {
            CHECKF(strstr(e.msg, bad[i].needle), "index %s: error '%s' lacks '%s'", bad[i].index, e.msg, bad[i].needle);
        }
    }
    // a tensor present in two shards
    TT dup[] = {{"a", "F32", 1, {3}, c, sizeof c}};
    Buf f3;
    make_st(&f3, dup, 1, NULL);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_file(p, f3.data, f3.len);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_file(p, good, strlen(good));
    CHECK(st_open_dir(&st, dir, &e) != 0);
    CHECKF(strstr(e.msg, "'a' appears twice"), "%s", e.msg);
    // a directory without any weights
    char empty[4200];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    mkdir(empty, 0755);
    CHECK(st_open_dir(&st, empty, &e) != 0);
    CHECKF(strstr(e.msg, "no model.safetensors"), "%s", e.msg);
    buf_free(&f1);
    buf_free(&f2);
    buf_free(&f3);
}

TEST(safetensors_bad_headers) {
    SafeTensors st;
    Err e;
    // too short for the length prefix
    CHECK(st_parse(&st, (const uint8_t *)"\x08\0\0", 3, "x", &e) != 0);
    CHECKF(strstr(e.msg, "too small"), "%s", e.msg);
    // header length larger than the file, and larger than the cap
    uint8_t big[16] = {0x00, 0x01, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(st_parse(&st, big, sizeof big, "x", &e) != 0);
    CHECKF(strstr(e.msg, "runs past the end"), "%s", e.msg);
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(st_parse(&st, huge, sizeof huge, "x", &e) != 0);
    CHECKF(strstr(e.msg, "exceeds"), "%s", e.msg);
    EXPECT_FAIL("", 0, "JSON object");
    EXPECT_FAIL("[1,2]", 0, "JSON object");
    EXPECT_FAIL("{\"a\":", 0, "invalid header JSON");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "invalid header JSON");
    EXPECT_FAIL("{\"a\":5}", 0, "expected an object");
    EXPECT_FAIL("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'dtype' must be a string (missing)");
    EXPECT_FAIL("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'dtype' must be a string");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype 'F33'");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4, "'shape' must be an array");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952,4],\"data_offsets\":[0,4]}}", 4, "overflows");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "data_offsets");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "non-negative");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4, "non-negative");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "reversed");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 3, "past the end");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,9223372036854775807]}}", 4, "past the end");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "need 8");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "overlap");
    EXPECT_FAIL("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name");
    EXPECT_FAIL("{\"__metadata__\":[1]}", 0, "__metadata__");
    EXPECT_FAIL("{\"__metadata__\":{\"k\":1}}", 0, "value of 'k' must be a string");
    EXPECT_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\x01", 4, "invalid header JSON");

    // accepted edge cases: gaps between tensors, trailing bytes, trailing spaces in the header, unknown keys
    Buf b;
    make_raw(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8],\"extra\":1}}   ", 16);
    CHECKF(st_parse(&st, (const uint8_t *)b.data, b.len, "x", &e) == 0, "%s", e.msg);
    st_close(&st);
    buf_free(&b);
    CHECK(st_open(&st, "/nonexistent/model.safetensors", &e) != 0);
    CHECKF(strstr(e.msg, "/nonexistent/model.safetensors"), "%s", e.msg);
}

// Thousands of deterministic mutations of a valid file: each must parse into in-bounds views or fail with a message.
TEST(safetensors_mutations) {
    float w[12];
    uint16_t h[6];
    for (int i = 0; i < 12; i++) w[i] = (float)i;
    for (int i = 0; i < 6; i++) h[i] = fp32_to_bf16((float)i);
    TT ts[] = {{"model.embed.weight", "F32", 2, {3, 4}, w, sizeof w}, {"norm", "BF16", 1, {6}, h, sizeof h},
               {"s", "I8", 0, {0}, "x", 1}};
    Buf good;
    make_st(&good, ts, 3, "\"format\":\"pt\"");
    uint8_t *m = xmalloc(good.len + 64);
    static const char tokens[] = "{}[]\",:0123456789-e.";
    int n_ok = 0, n_fail = 0;
    for (int iter = 0; iter < 4000; iter++) {
        size_t len = good.len;
        memcpy(m, good.data, len);
        int kind = (int)(test_rand_u64() % 5), n_mut = 1 + (int)(test_rand_u64() % 4);
        for (int k = 0; k < n_mut; k++) {
            size_t pos = (size_t)(test_rand_u64() % len);
            switch (kind) {
            case 0: m[pos] ^= (uint8_t)(1u << (test_rand_u64() % 8)); break;           // bit flip anywhere
            case 1: m[pos] = (uint8_t)tokens[test_rand_u64() % (sizeof tokens - 1)]; break; // JSON-ish byte
            case 2: len = pos; break;                                                   // truncate
            case 3: m[test_rand_u64() % 8] = (uint8_t)test_rand_u64(); break;           // header length
            default: m[8 + test_rand_u64() % (len - 8)] = (uint8_t)('0' + test_rand_u64() % 10); break; // digits
            }
            if (len == 0) break;
        }
        SafeTensors st;
        Err e = {0};
        if (st_parse(&st, m, len, "mut", &e) != 0) {
            CHECKF(e.msg[0], "iteration %d: failure without a message", iter);
            n_fail++;
            continue;
        }
        n_ok++;
        for (size_t i = 0; i < st.n_tensors; i++) {
            const STTensor *t = &st.tensors[i];
            CHECKF((const uint8_t *)t->data >= m && (const uint8_t *)t->data + t->nbytes <= m + len,
                   "iteration %d: tensor %s out of bounds", iter, t->name);
            if (t->n_elements) (void)st_tensor_get(t, t->n_elements - 1);
        }
        st_close(&st);
    }
    CHECK(n_fail > 1000); // the mutations must actually exercise the error paths
    CHECK(n_ok > 10);
    free(m);
    buf_free(&good);
}
