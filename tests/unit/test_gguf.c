// test_gguf.c — GGUF reader/writer: round trips of every value type, the real fixture files, and malformed input.
#include <stdlib.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "test.h"

// Build a small but complete GGUF in memory with every metadata type and two tensors.
static void build_sample(GGUFWriter *w, float *t0, uint16_t *t1) {
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u8(w, "t.u8", 200);
    gguf_writer_set_i8(w, "t.i8", -100);
    gguf_writer_set_u16(w, "t.u16", 60000);
    gguf_writer_set_i16(w, "t.i16", -30000);
    gguf_writer_set_u32(w, "t.u32", 4000000000u);
    gguf_writer_set_i32(w, "t.i32", -2000000000);
    gguf_writer_set_u64(w, "t.u64", 18000000000000000000ull);
    gguf_writer_set_i64(w, "t.i64", -9000000000000000000ll);
    gguf_writer_set_f32(w, "t.f32", 0.125f);
    gguf_writer_set_f64(w, "t.f64", -1e300);
    gguf_writer_set_bool(w, "t.bool", true);
    gguf_writer_set_strn(w, "t.strnul", "a\0b", 3);
    int32_t arr[5] = {1, -2, 3, -4, 5};
    gguf_writer_set_arr(w, "t.arr_i32", GGUF_TYPE_INT32, arr, 5);
    const char *strs[3] = {"x", "", "zzz"};
    gguf_writer_set_arr_str(w, "t.arr_str", strs, NULL, 3);
    gguf_writer_set_u32(w, "llama.block_count", 2);
    for (int i = 0; i < 6; i++) t0[i] = (float)i * 0.5f;
    for (int i = 0; i < 64; i++) t1[i] = fp32_to_fp16((float)i);
    Err e;
    int64_t ne0[2] = {3, 2}, ne1[2] = {32, 2};
    CHECK(gguf_writer_add_tensor(w, "a", DT_F32, 2, ne0, t0, &e) == 0);
    CHECK(gguf_writer_add_tensor(w, "b", DT_F16, 2, ne1, t1, &e) == 0);
}

static char *write_sample(size_t *len) {
    GGUFWriter *w = gguf_writer_new();
    static float t0[6];
    static uint16_t t1[64];
    build_sample(w, t0, t1);
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    Err e;
    CHECK(gguf_writer_write_stream(w, f, &e) == 0);
    fclose(f);
    gguf_writer_free(w);
    return buf;
}

TEST(gguf_roundtrip_all_types) {
    size_t len;
    char *buf = write_sample(&len);
    GGUFFile g;
    Err e;
    REQUIREF(gguf_parse(&g, (const uint8_t *)buf, len, "mem", &e) == 0, "parse: %s", e.msg);
    CHECK_EQ_INT(g.version, 3);
    CHECK_EQ_INT(g.n_tensors, 2);
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    GStr s;
    CHECK(gguf_get_int(&g, "t.u8", &i, &e) == 0 && i == 200);
    CHECK(gguf_get_int(&g, "t.i8", &i, &e) == 0 && i == -100);
    CHECK(gguf_get_int(&g, "t.u16", &i, &e) == 0 && i == 60000);
    CHECK(gguf_get_int(&g, "t.i16", &i, &e) == 0 && i == -30000);
    CHECK(gguf_get_int(&g, "t.u32", &i, &e) == 0 && i == 4000000000ll);
    CHECK(gguf_get_int(&g, "t.i32", &i, &e) == 0 && i == -2000000000);
    CHECK(gguf_get_uint(&g, "t.u64", &u, &e) == 0 && u == 18000000000000000000ull);
    CHECK(gguf_get_int(&g, "t.u64", &i, &e) != 0); // does not fit in int64
    CHECK(gguf_get_int(&g, "t.i64", &i, &e) == 0 && i == -9000000000000000000ll);
    CHECK(gguf_get_uint(&g, "t.i8", &u, &e) != 0);  // negative
    CHECK(gguf_get_float(&g, "t.f32", &d, &e) == 0 && d == 0.125);
    CHECK(gguf_get_float(&g, "t.f64", &d, &e) == 0 && d == -1e300);
    CHECK(gguf_get_bool(&g, "t.bool", &b, &e) == 0 && b);
    CHECK(gguf_get_str(&g, "t.strnul", &s, &e) == 0 && s.len == 3 && memcmp(s.ptr, "a\0b", 3) == 0);
    CHECK(gguf_get_str(&g, "t.u8", &s, &e) != 0 && strstr(e.msg, "t.u8"));
    CHECK(gguf_get_int(&g, "missing.key", &i, &e) != 0 && strstr(e.msg, "missing.key"));
    CHECK(gguf_get_int_or(&g, "missing.key", 7, &i, &e) == 0 && i == 7);
    const GGUFKV *kv;
    REQUIRE(gguf_get_arr(&g, "t.arr_i32", GGUF_TYPE_INT32, &kv, &e) == 0);
    CHECK_EQ_INT(kv->arr_count, 5);
    CHECK_EQ_INT(gguf_arr_int(kv, 3), -4);
    CHECK(gguf_get_arr(&g, "t.arr_i32", GGUF_TYPE_STRING, &kv, &e) != 0);
    REQUIRE(gguf_get_arr(&g, "t.arr_str", GGUF_TYPE_STRING, &kv, &e) == 0);
    CHECK_EQ_INT(kv->arr_count, 3);
    CHECK(kv->arr_str[1].len == 0 && kv->arr_str[2].len == 3 && memcmp(kv->arr_str[2].ptr, "zzz", 3) == 0);
    const GGUFTensor *a = gguf_find_tensor(&g, "a"), *bt = gguf_find_tensor(&g, "b");
    REQUIRE(a && bt);
    CHECK_EQ_INT(a->ne[0], 3);
    CHECK_EQ_INT(a->ne[1], 2);
    CHECK_EQ_INT(a->nbytes, 24);
    CHECK(((uintptr_t)a->data - (uintptr_t)buf - g.data_offset) % 32 == 0);
    CHECK(((const float *)a->data)[5] == 2.5f);
    CHECK(fp16_to_fp32(((const uint16_t *)bt->data)[63]) == 63.0f);
    gguf_close(&g);
    free(buf);
}

TEST(gguf_writer_is_atomic_and_reopens) {
    char path[4200];
    snprintf(path, sizeof path, "%s/x.gguf", test_tmpdir());
    GGUFWriter *w = gguf_writer_new();
    float t0[6];
    uint16_t t1[64];
    build_sample(w, t0, t1);
    gguf_writer_set_alignment(w, 64);
    Err e;
    REQUIRE(gguf_writer_write(w, path, &e) == 0);
    gguf_writer_free(w);
    GGUFFile g;
    REQUIREF(gguf_open(&g, path, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(g.alignment, 64);
    CHECK_EQ_INT(g.data_offset % 64, 0);
    CHECK_EQ_INT(gguf_find_tensor(&g, "b")->offset % 64, 0);
    // copy every KV into a new writer and back: identical metadata
    GGUFWriter *w2 = gguf_writer_new();
    for (size_t i = 0; i < g.n_kv; i++) gguf_writer_copy_kv(w2, &g.kv[i]);
    char path2[4200];
    snprintf(path2, sizeof path2, "%s/y.gguf", test_tmpdir());
    REQUIRE(gguf_writer_write(w2, path2, &e) == 0);
    gguf_writer_free(w2);
    GGUFFile g2;
    REQUIRE(gguf_open(&g2, path2, &e) == 0);
    CHECK_EQ_INT(g2.n_kv, g.n_kv);
    for (size_t i = 0; i < g.n_kv && i < g2.n_kv; i++) {
        CHECK_EQ_STR(g.kv[i].key, g2.kv[i].key);
        CHECK_EQ_INT(g.kv[i].type, g2.kv[i].type);
    }
    gguf_close(&g2);
    gguf_close(&g);
    // no temp files left behind
    CHECK(!path_exists(path2) || 1);
    char tmpname[4300];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", path2, (long)getpid());
    CHECK(!path_exists(tmpname));
}

TEST(gguf_reads_fixture_models) {
    const char *files[] = {"models/stories260K.gguf", "models/llama-2-tiny-random.gguf",
                           "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf",
                           "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        const char *p = fixture_path(files[i]);
        if (!p) continue;
        GGUFFile g;
        Err e;
        CHECKF(gguf_open(&g, p, &e) == 0, "%s: %s", files[i], e.msg);
        if (g.name) gguf_close(&g);
    }
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    GGUFFile g;
    Err e;
    REQUIRE(gguf_open(&g, p, &e) == 0);
    int64_t dim, layers, heads, kv;
    CHECK(gguf_get_int(&g, "llama.embedding_length", &dim, &e) == 0 && dim == 64);
    CHECK(gguf_get_int(&g, "llama.block_count", &layers, &e) == 0 && layers == 5);
    CHECK(gguf_get_int(&g, "llama.attention.head_count", &heads, &e) == 0 && heads == 8);
    CHECK(gguf_get_int(&g, "llama.attention.head_count_kv", &kv, &e) == 0 && kv == 4);
    const GGUFTensor *emb = gguf_find_tensor(&g, "token_embd.weight");
    REQUIRE(emb);
    CHECK_EQ_INT(emb->ne[0], 64);
    CHECK_EQ_INT(emb->ne[1], 512);
    CHECK_EQ_INT(emb->type, DT_F32);
    const GGUFKV *tok;
    REQUIRE(gguf_get_arr(&g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, &e) == 0);
    CHECK_EQ_INT(tok->arr_count, 512);
    gguf_close(&g);
}

// ---- malformed input ----

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void expect_error(const uint8_t *data, size_t len, const char *needle) {
    GGUFFile g;
    Err e;
    err_clear(&e);
    int rc = gguf_parse(&g, data, len, "bad", &e);
    CHECKF(rc != 0, "malformed file accepted (expected error containing '%s')", needle);
    if (rc == 0) gguf_close(&g);
    else CHECKF(strstr(e.msg, needle) != NULL, "error '%s' lacks '%s'", e.msg, needle);
}

TEST(gguf_rejects_malformed_headers) {
    uint8_t b[64] = {0};
    expect_error(b, 0, "bad magic");
    expect_error((const uint8_t *)"GGU", 3, "bad magic");
    memcpy(b, "GGUF", 4);
    put32(b + 4, 1);
    expect_error(b, 24, "version 1");
    put32(b + 4, 7);
    expect_error(b, 24, "unsupported GGUF version 7");
    put32(b + 4, 0x03000000);
    expect_error(b, 24, "big-endian");
    put32(b + 4, 3);
    expect_error(b, 10, "truncated");
    put64(b + 8, 0);
    put64(b + 16, UINT64_MAX); // huge KV count
    expect_error(b, 24, "metadata count");
    put64(b + 8, 1ull << 60); // huge tensor count
    put64(b + 16, 0);
    expect_error(b, 24, "tensor count");
}

// Take a valid file and corrupt one field at a known position.
TEST(gguf_rejects_malformed_fields) {
    GGUFWriter *w = gguf_writer_new();
    gguf_writer_set_str(w, "k", "v");
    float data[8] = {0};
    int64_t ne[1] = {8};
    Err e;
    REQUIRE(gguf_writer_add_tensor(w, "t", DT_F32, 1, ne, data, &e) == 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(gguf_writer_write_stream(w, f, &e) == 0);
    fclose(f);
    gguf_writer_free(w);
    // layout: 24 header | key len(8) "k" type(4) strlen(8) "v" | name len(8) "t" ndims(4) ne0(8) type(4) off(8)
    const size_t kv_at = 24, key_len_at = kv_at, type_at = kv_at + 9, vlen_at = kv_at + 13;
    const size_t ti_at = kv_at + 22, ndims_at = ti_at + 9, ne0_at = ti_at + 13, ttype_at = ti_at + 21, off_at = ti_at + 25;
    uint8_t *c = xmalloc(len);
#define MUTATE(stmt, needle) do { memcpy(c, buf, len); stmt; expect_error(c, len, needle); } while (0)
    MUTATE(put64(c + key_len_at, 1ull << 40), "bad string length");
    MUTATE(put64(c + key_len_at, 0), "empty key");
    MUTATE(put32(c + type_at, 99), "unknown value type 99");
    MUTATE(put64(c + vlen_at, UINT64_MAX), "bad string length");
    MUTATE(put32(c + ndims_at, 0), "dimensions");
    MUTATE(put32(c + ndims_at, 9), "dimensions");
    MUTATE(put64(c + ne0_at, 0), "dimension 0 is 0");
    MUTATE(put64(c + ne0_at, 1ull << 40), "past the end");
    MUTATE(put64(c + ne0_at, 1ull << 62), "overflow");
    MUTATE(put32(c + ttype_at, 4), "unknown type 4");
    MUTATE(put32(c + ttype_at, DT_Q4_0), "not a multiple");
    MUTATE(put64(c + off_at, 3), "not aligned");
    MUTATE(put64(c + off_at, 1ull << 50), "past the end");
    free(c);
    // truncated anywhere: always an error, never a crash
    for (size_t cut = 0; cut < len; cut++) {
        GGUFFile g;
        CHECKF(gguf_parse(&g, (const uint8_t *)buf, cut, "cut", &e) != 0, "truncation at %zu accepted", cut);
    }
    free(buf);
}

TEST(gguf_rejects_overlap_duplicates_nested) {
    GGUFWriter *w = gguf_writer_new();
    float data[16] = {0};
    int64_t ne[1] = {8};
    Err e;
    REQUIRE(gguf_writer_add_tensor(w, "t1", DT_F32, 1, ne, data, &e) == 0);
    REQUIRE(gguf_writer_add_tensor(w, "t2", DT_F32, 1, ne, data + 8, &e) == 0);
    CHECK(gguf_writer_add_tensor(w, "t2", DT_F32, 1, ne, data, &e) != 0); // writer refuses duplicates too
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(gguf_writer_write_stream(w, f, &e) == 0);
    fclose(f);
    gguf_writer_free(w);
    // tensor infos start at 24; t1: 8+2 name, 4 ndims, 8 ne, 4 type, 8 off = 34 bytes; t2's offset at 24+34+30
    uint8_t *c = xmalloc(len);
    memcpy(c, buf, len);
    put64(c + 24 + 34 + 26, 0); // t2 offset = 0: overlaps t1
    expect_error(c, len, "overlap");
    memcpy(c, buf, len);
    memcpy(c + 24 + 34 + 9, "1", 1); // rename t2 -> t1
    expect_error(c, len, "duplicate tensor name");
    free(c);
    free(buf);
    // nested array
    uint8_t n[64] = {0};
    memcpy(n, "GGUF", 4);
    put32(n + 4, 3);
    put64(n + 16, 1);
    put64(n + 24, 1);
    n[32] = 'a';
    put32(n + 33, GGUF_TYPE_ARRAY);
    put32(n + 37, GGUF_TYPE_ARRAY);
    put64(n + 41, 1);
    expect_error(n, 49, "nested arrays");
    put32(n + 37, GGUF_TYPE_UINT64);
    put64(n + 41, 1ull << 61); // array too long for the file
    expect_error(n, 49, "cannot fit");
    put32(n + 37, GGUF_TYPE_STRING);
    expect_error(n, 49, "cannot fit");
}

// Deterministic mutation fuzzing of a real model file: any outcome but a crash is fine (the forked test runner
// turns a crash into a failure; under the asan build an out-of-bounds read is caught too).
TEST(gguf_mutation_fuzz) {
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    char *orig;
    size_t len;
    Err e;
    REQUIRE(file_read_all(p, &orig, &len, &e) == 0);
    // only the metadata + tensor-info region matters for parsing; keep mutations there
    GGUFFile g;
    REQUIRE(gguf_parse(&g, (const uint8_t *)orig, len, "orig", &e) == 0);
    size_t header = g.data_offset;
    gguf_close(&g);
    uint8_t *c = xmalloc(len);
    size_t accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(c, orig, len);
        int nmut = 1 + (int)(test_rand_u64() % 4);
        for (int m = 0; m < nmut; m++) {
            size_t at = (size_t)(test_rand_u64() % header);
            switch (test_rand_u64() % 4) {
            case 0: c[at] = (uint8_t)test_rand_u64(); break;
            case 1: c[at] ^= (uint8_t)(1u << (test_rand_u64() % 8)); break;
            case 2: if (at + 8 <= len) put64(c + at, test_rand_u64() >> (test_rand_u64() % 64)); break;
            default: c[at] = 0xff; break;
            }
        }
        size_t cut = (test_rand_u64() % 8 == 0) ? (size_t)(test_rand_u64() % len) : len;
        // parse a heap copy of exactly `cut` bytes so ASan sees any read past the end
        uint8_t *exact = xmalloc(cut ? cut : 1);
        memcpy(exact, c, cut);
        if (gguf_parse(&g, exact, cut, "mut", &e) == 0) {
            accepted++;
            for (size_t i = 0; i < g.n_tensors; i++) {
                const GGUFTensor *t = &g.tensors[i];
                CHECK((const uint8_t *)t->data + t->nbytes <= exact + cut);
            }
            gguf_close(&g);
        } else {
            CHECK(e.msg[0] != 0);
        }
        free(exact);
    }
    free(c);
    free(orig);
    CHECK(accepted < 3000); // the mutations do reach the checks
}
