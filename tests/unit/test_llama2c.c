// test_llama2c.c — llama2.c checkpoints: legacy, version 1 and version 2 files written here from random weights in
// export.py's order, read back tensor by tensor; the stories260K GGUF rewritten in legacy layout must read back
// identical; malformed headers and sizes; deterministic header mutations.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/llama2c.h"
#include "test.h"

// A model held as named f32 tensors (GGUF names, ne[0] contiguous).
typedef struct RT {
    char name[40];
    int64_t ne0, ne1;
    const float *data;
    float *owned;
} RT;

typedef struct Model {
    int32_t dim, hid, L, nh, nkv, vocab, seq;
    RT *t;
    size_t n;
} Model;

static const RT *get(const Model *m, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    test_fail_at(__FILE__, __LINE__, "model has no %s", name);
    return NULL;
}

static void add(Model *m, const char *name, int64_t ne0, int64_t ne1, const float *data) {
    m->t = xrealloc(m->t, (m->n + 1) * sizeof *m->t);
    RT *t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne0 = ne0, t->ne1 = ne1;
    if (data) t->data = data;
    else {
        t->owned = xmalloc((size_t)(ne0 * ne1) * sizeof(float));
        for (int64_t i = 0; i < ne0 * ne1; i++) t->owned[i] = test_rand_uniform() * 2 - 1;
        t->data = t->owned;
    }
}

static void model_free(Model *m) {
    for (size_t i = 0; i < m->n; i++) free(m->t[i].owned);
    free(m->t);
}

static const char *LAYER_KINDS[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                    "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"};

static void random_model(Model *m, int32_t dim, int32_t hid, int32_t L, int32_t nh, int32_t nkv, int32_t vocab,
                         int32_t seq) {
    memset(m, 0, sizeof *m);
    m->dim = dim, m->hid = hid, m->L = L, m->nh = nh, m->nkv = nkv, m->vocab = vocab, m->seq = seq;
    int64_t kv = (int64_t)dim / nh * nkv;
    add(m, "token_embd.weight", dim, vocab, NULL);
    add(m, "output_norm.weight", dim, 1, NULL);
    add(m, "output.weight", dim, vocab, NULL);
    for (int l = 0; l < L; l++) {
        int64_t shapes[9][2] = {{dim, 1}, {dim, dim}, {dim, kv}, {dim, kv}, {dim, dim},
                                {dim, 1}, {dim, hid}, {hid, dim}, {dim, hid}};
        for (int k = 0; k < 9; k++) {
            char name[40];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, LAYER_KINDS[k]);
            add(m, name, shapes[k][0], shapes[k][1], NULL);
        }
    }
}

static void put_i32(Buf *b, int32_t v) {
    uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buf_append(b, p, 4);
}
static void put_f32s(Buf *b, const float *p, size_t n) { buf_append(b, p, n * sizeof(float)); }
static void put_tensor(Buf *b, const Model *m, const char *name) {
    const RT *t = get(m, name);
    if (t) put_f32s(b, t->data, (size_t)(t->ne0 * t->ne1));
}
static void put_layers(Buf *b, const Model *m, const char *kind) {
    for (int l = 0; l < m->L; l++) {
        char name[40];
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, kind);
        put_tensor(b, m, name);
    }
}

// export.py legacy_export: 7-int header, then tensors grouped by kind, rope tables, classifier if not shared.
static void write_legacy(Buf *b, const Model *m, bool shared) {
    buf_init(b);
    int32_t h[7] = {m->dim, m->hid, m->L, m->nh, m->nkv, shared ? m->vocab : -m->vocab, m->seq};
    for (int i = 0; i < 7; i++) put_i32(b, h[i]);
    put_tensor(b, m, "token_embd.weight");
    for (int k = 0; k < 9; k++) put_layers(b, m, LAYER_KINDS[k]);
    put_tensor(b, m, "output_norm.weight");
    size_t nf = (size_t)m->seq * (size_t)(m->dim / m->nh / 2);
    for (size_t i = 0; i < 2 * nf; i++) {
        float sentinel = 1e30f; // never read back as a weight
        put_f32s(b, &sentinel, 1);
    }
    if (!shared) put_tensor(b, m, "output.weight");
}

static void put_header_v(Buf *b, const Model *m, int version, bool shared, int32_t gs) {
    buf_init(b);
    put_i32(b, (int32_t)LLAMA2C_MAGIC);
    put_i32(b, version);
    int32_t h[7] = {m->dim, m->hid, m->L, m->nh, m->nkv, m->vocab, m->seq};
    for (int i = 0; i < 7; i++) put_i32(b, h[i]);
    uint8_t flag = shared;
    buf_append(b, &flag, 1);
    if (version == 2) put_i32(b, gs);
    while (b->len < 256) buf_append(b, "", 1);
}

static const char *MATRIX_KINDS[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"};

// export.py version1_export
static void write_v1(Buf *b, const Model *m, bool shared) {
    put_header_v(b, m, 1, shared, 0);
    put_layers(b, m, "attn_norm");
    put_layers(b, m, "ffn_norm");
    put_tensor(b, m, "output_norm.weight");
    put_tensor(b, m, "token_embd.weight");
    for (int k = 0; k < 7; k++) put_layers(b, m, MATRIX_KINDS[k]);
    if (!shared) put_tensor(b, m, "output.weight");
}

// Symmetric int8 groups: scale = max|x| / 127, q = round(x / scale).
static void quantize(const float *x, size_t n, int32_t gs, int8_t *q, float *s) {
    for (size_t g = 0; g < n / (size_t)gs; g++) {
        float mx = 0;
        for (int i = 0; i < gs; i++) mx = fmaxf(mx, fabsf(x[g * (size_t)gs + (size_t)i]));
        s[g] = mx / 127.0f;
        for (int i = 0; i < gs; i++) {
            size_t k = g * (size_t)gs + (size_t)i;
            q[k] = s[g] > 0 ? (int8_t)lrintf(x[k] / s[g]) : 0;
        }
    }
}

static void put_q(Buf *b, const Model *m, const char *name, int32_t gs) {
    const RT *t = get(m, name);
    if (!t) return;
    size_t n = (size_t)(t->ne0 * t->ne1);
    int8_t *q = xmalloc(n);
    float *s = xmalloc(n / (size_t)gs * sizeof(float));
    quantize(t->data, n, gs, q, s);
    buf_append(b, q, n);
    put_f32s(b, s, n / (size_t)gs);
    free(q);
    free(s);
}

// export.py version2_export
static void write_v2(Buf *b, const Model *m, bool shared, int32_t gs) {
    put_header_v(b, m, 2, shared, gs);
    put_layers(b, m, "attn_norm");
    put_layers(b, m, "ffn_norm");
    put_tensor(b, m, "output_norm.weight");
    put_q(b, m, "token_embd.weight", gs);
    for (int k = 0; k < 7; k++)
        for (int l = 0; l < m->L; l++) {
            char name[40];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, MATRIX_KINDS[k]);
            put_q(b, m, name, gs);
        }
    if (!shared) put_q(b, m, "output.weight", gs);
}

// Every tensor of f must be the model's tensor of that name, at the right shape; and nothing may be missing.
static void check_against(const Llama2cFile *f, const Model *m, bool shared, int32_t gs) {
    CHECK_EQ_INT(f->n_tensors, 2 + 9 * (size_t)m->L + (shared ? 0 : 1));
    CHECK_EQ_INT(f->shared_classifier, shared);
    CHECK_EQ_INT(f->vocab_size, m->vocab);
    for (size_t i = 0; i < m->n; i++) {
        const RT *r = &m->t[i];
        const L2CTensor *t = llama2c_find(f, r->name);
        if (shared && !strcmp(r->name, "output.weight")) {
            CHECK(t == NULL);
            continue;
        }
        CHECKF(t, "%s missing", r->name);
        if (!t) continue;
        CHECKF(t->ne[0] == r->ne0 && t->ne[1] == r->ne1, "%s: shape", r->name);
        CHECK_EQ_INT(t->n_dims, r->ne1 == 1 ? 1 : 2);
        size_t n = (size_t)(r->ne0 * r->ne1);
        CHECK_EQ_INT(t->n_elements, n);
        float *deq = xmalloc(n * sizeof(float));
        llama2c_dequantize(f, t, deq);
        if (gs && r->ne1 > 1) {
            CHECK_EQ_INT(t->type, DT_I8);
            CHECK_EQ_INT(t->nbytes, n);
            int8_t *q = xmalloc(n);
            float *s = xmalloc(n / (size_t)gs * sizeof(float));
            quantize(r->data, n, gs, q, s);
            CHECKF(memcmp(t->data, q, n) == 0, "%s: int8 values", r->name);
            CHECKF(memcmp(t->scales, s, n / (size_t)gs * sizeof(float)) == 0, "%s: scales", r->name);
            size_t bad = 0;
            for (size_t k = 0; k < n; k++) {
                bad += deq[k] != (float)q[k] * s[k / (size_t)gs];
                bad += fabsf(deq[k] - r->data[k]) > s[k / (size_t)gs] * 0.5001f; // within half a step of the original
            }
            CHECKF(bad == 0, "%s: %zu dequantized values wrong", r->name, bad);
            free(q);
            free(s);
        } else {
            CHECK_EQ_INT(t->type, DT_F32);
            CHECK(t->scales == NULL);
            CHECKF(memcmp(t->data, r->data, n * sizeof(float)) == 0, "%s: data", r->name);
            CHECKF(memcmp(deq, r->data, n * sizeof(float)) == 0, "%s: dequantize copy", r->name);
        }
        free(deq);
    }
}

TEST(llama2c_versions_roundtrip) {
    Model m;
    random_model(&m, 16, 40, 2, 4, 2, 37, 10);
    for (int version = 0; version <= 2; version++)
        for (int shared = 0; shared <= 1; shared++) {
            Buf b;
            int32_t gs = version == 2 ? 8 : 0;
            if (version == 0) write_legacy(&b, &m, shared);
            else if (version == 1) write_v1(&b, &m, shared);
            else write_v2(&b, &m, shared, gs);
            Llama2cFile f;
            Err e;
            REQUIREF(llama2c_parse(&f, (const uint8_t *)b.data, b.len, "mem.bin", &e) == 0, "v%d shared %d: %s",
                     version, shared, e.msg);
            CHECK_EQ_INT(f.version, version);
            CHECK_EQ_INT(f.group_size, gs);
            check_against(&f, &m, shared, gs);
            ModelConfig c;
            REQUIREF(llama2c_model_config(&f, &c, &e) == 0, "%s", e.msg);
            CHECK(c.arch == ARCH_LLAMA && c.rope_style == ROPE_STYLE_INTERLEAVED && c.norm == NORM_RMS);
            CHECK_EQ_INT(c.n_embd, 16);
            CHECK_EQ_INT(c.n_ff, 40);
            CHECK_EQ_INT(c.n_layer, 2);
            CHECK_EQ_INT(c.n_head, 4);
            CHECK_EQ_INT(c.n_head_kv, 2);
            CHECK_EQ_INT(c.head_dim, 4);
            CHECK_EQ_INT(c.vocab_size, 37);
            CHECK_EQ_INT(c.n_ctx_train, 10);
            CHECK_EQ_INT(c.tied_embeddings, shared);
            CHECK_EQ_INT(c.dtype, version == 2 ? DT_I8 : DT_F32);
            llama2c_close(&f);
            // the same through a file
            char path[4200];
            snprintf(path, sizeof path, "%s/m%d%d.bin", test_tmpdir(), version, shared);
            REQUIREF(file_write_atomic_bytes(path, b.data, b.len, &e) == 0, "%s", e.msg);
            REQUIREF(llama2c_open(&f, path, &e) == 0, "%s", e.msg);
            check_against(&f, &m, shared, gs);
            llama2c_close(&f);
            buf_free(&b);
        }
    model_free(&m);
}

// stories260K's tensors written in llama2.c's legacy layout must read back equal to the GGUF's, under the same names.
TEST(llama2c_stories260k_legacy_equals_gguf) {
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    GGUFFile g;
    Err e;
    REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
    ModelConfig gc;
    REQUIREF(model_config_from_gguf(&g, &gc, &e) == 0, "%s", e.msg);
    Model m;
    memset(&m, 0, sizeof m);
    m.dim = (int32_t)gc.n_embd, m.hid = (int32_t)gc.n_ff, m.L = (int32_t)gc.n_layer, m.nh = (int32_t)gc.n_head;
    m.nkv = (int32_t)gc.n_head_kv, m.vocab = (int32_t)gc.vocab_size, m.seq = (int32_t)gc.n_ctx_train;
    for (size_t i = 0; i < g.n_tensors; i++) {
        const GGUFTensor *t = &g.tensors[i];
        REQUIRE(t->type == DT_F32 && t->n_dims <= 2);
        add(&m, t->name, t->ne[0], t->n_dims == 2 ? t->ne[1] : 1, t->data);
    }
    bool shared = gguf_find_tensor(&g, "output.weight") == NULL;
    Buf b;
    write_legacy(&b, &m, shared);
    char path[4200];
    snprintf(path, sizeof path, "%s/stories260K.bin", test_tmpdir());
    REQUIREF(file_write_atomic_bytes(path, b.data, b.len, &e) == 0, "%s", e.msg);
    Llama2cFile f;
    REQUIREF(llama2c_open(&f, path, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(f.n_tensors, g.n_tensors);
    for (size_t i = 0; i < g.n_tensors; i++) {
        const GGUFTensor *gt = &g.tensors[i];
        const L2CTensor *t = llama2c_find(&f, gt->name);
        CHECKF(t, "%s not found in the llama2.c file", gt->name);
        if (!t) continue;
        CHECKF(t->ne[0] == gt->ne[0] && t->ne[1] == gt->ne[1] && t->n_dims == gt->n_dims, "%s: shape", gt->name);
        CHECKF(t->nbytes == gt->nbytes && memcmp(t->data, gt->data, gt->nbytes) == 0, "%s: data", gt->name);
    }
    ModelConfig lc;
    REQUIREF(llama2c_model_config(&f, &lc, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(lc.vocab_size, gc.vocab_size);
    CHECK_EQ_INT(lc.n_embd, gc.n_embd);
    CHECK_EQ_INT(lc.n_ff, gc.n_ff);
    CHECK_EQ_INT(lc.n_layer, gc.n_layer);
    CHECK_EQ_INT(lc.n_head, gc.n_head);
    CHECK_EQ_INT(lc.n_head_kv, gc.n_head_kv);
    CHECK_EQ_INT(lc.head_dim, gc.head_dim);
    CHECK_EQ_INT(lc.rope_dim, gc.rope_dim);
    CHECK_EQ_INT(lc.n_ctx_train, gc.n_ctx_train);
    CHECK_EQ_INT(lc.rope_style, gc.rope_style);
    CHECK_EQ_INT(lc.tied_embeddings, gc.tied_embeddings);
    CHECK_EQ_INT(lc.bos_id, gc.bos_id);
    CHECK_NEAR(lc.norm_eps, gc.norm_eps, 1e-10);
    CHECK_NEAR(lc.rope_theta, gc.rope_theta, 0);
    llama2c_close(&f);
    buf_free(&b);
    free(m.t);
    gguf_close(&g);
}

static void expect_parse_err(const void *data, size_t len, const char *needle, int line) {
    Llama2cFile f;
    Err e = {0};
    if (llama2c_parse(&f, data, len, "bad.bin", &e) == 0) {
        test_fail_at(__FILE__, line, "unexpectedly parsed (%zu bytes)", len);
        llama2c_close(&f);
    } else if (!strstr(e.msg, needle)) {
        test_fail_at(__FILE__, line, "error '%s' lacks '%s'", e.msg, needle);
    }
}
#define EXPECT_PARSE_ERR(d, n, needle) expect_parse_err((d), (n), (needle), __LINE__)

static void set_i32(Buf *b, size_t off, int32_t v) {
    for (int i = 0; i < 4; i++) b->data[off + (size_t)i] = (char)(uint8_t)((uint32_t)v >> (8 * i));
}

TEST(llama2c_bad_input) {
    Model m;
    random_model(&m, 16, 40, 1, 4, 2, 32, 6);
    Buf leg, v1, v2;
    write_legacy(&leg, &m, false);
    write_v1(&v1, &m, true);
    write_v2(&v2, &m, false, 16);
    EXPECT_PARSE_ERR("", 0, "too small");
    EXPECT_PARSE_ERR(leg.data, 27, "too small");
    // any truncation, and one byte too many
    size_t cuts[] = {28, 29, 100, leg.len / 2, leg.len - 4, leg.len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) EXPECT_PARSE_ERR(leg.data, cuts[i], "truncated");
    buf_append(&leg, "", 1);
    EXPECT_PARSE_ERR(leg.data, leg.len, "wrong header or corrupt");
    leg.len--;
    EXPECT_PARSE_ERR(v1.data, 200, "256-byte");
    EXPECT_PARSE_ERR(v1.data, v1.len - 1, "truncated");
    EXPECT_PARSE_ERR(v2.data, v2.len - 3, "truncated");

    Buf t;
    buf_init(&t);
#define MUTATE(src, off, val, needle)                                  \
    do {                                                               \
        t.len = 0;                                                     \
        buf_append(&t, (src).data, (src).len);                         \
        set_i32(&t, (off), (val));                                     \
        EXPECT_PARSE_ERR(t.data, t.len, (needle));                     \
    } while (0)
    MUTATE(v1, 4, 3, "version 3 is not supported");
    MUTATE(v1, 4, -1, "version -1");
    MUTATE(leg, 0, 0, "dim = 0");
    MUTATE(leg, 0, 18, "inconsistent");          // 18 not a multiple of 4 heads
    MUTATE(leg, 12, 3, "inconsistent");          // 16 not a multiple of 3 heads
    MUTATE(leg, 16, 3, "inconsistent");          // 4 heads not a multiple of 3 kv heads
    MUTATE(leg, 16, 8, "inconsistent");          // more kv heads than heads
    MUTATE(leg, 8, -1, "n_layers = -1");
    MUTATE(leg, 8, 5000, "implausible");
    MUTATE(leg, 20, INT32_MIN, "vocab_size = 0");
    MUTATE(leg, 24, 0, "seq_len = 0");
    MUTATE(leg, 0, 1 << 30, "truncated");        // huge dims: sizes computed without overflow, then too big
    MUTATE(leg, 20, INT32_MAX, "truncated");
    MUTATE(leg, 4, INT32_MAX, "truncated");
    MUTATE(v1, 28, -5, "vocab_size -5 must be positive");
    MUTATE(v2, 37, 0, "group size 0");
    MUTATE(v2, 37, 7, "not a multiple of group size 7");
    MUTATE(v2, 37, -16, "group size -16");
    MUTATE(v2, 37, 32, "wrong header or corrupt"); // a different group size changes the scale count
    t.len = 0;
    buf_append(&t, v1.data, v1.len);
    t.data[36] = 2;
    EXPECT_PARSE_ERR(t.data, t.len, "shared_classifier flag is 2");
#undef MUTATE
    Llama2cFile f;
    Err e;
    CHECK(llama2c_open(&f, "/nonexistent/model.bin", &e) != 0);
    CHECKF(strstr(e.msg, "/nonexistent/model.bin"), "%s", e.msg);
    buf_free(&t);
    buf_free(&leg);
    buf_free(&v1);
    buf_free(&v2);
    model_free(&m);
}

// Random header and size mutations of valid files: parse or fail with a message, never a view out of bounds.
TEST(llama2c_mutations) {
    Model m;
    random_model(&m, 8, 12, 2, 2, 1, 16, 4);
    Buf files[3];
    write_legacy(&files[0], &m, true);
    write_v1(&files[1], &m, false);
    write_v2(&files[2], &m, true, 4);
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        const Buf *src = &files[iter % 3];
        uint8_t *d = xmalloc(src->len);
        memcpy(d, src->data, src->len);
        size_t len = src->len;
        int n = 1 + (int)(test_rand_u64() % 3);
        for (int k = 0; k < n; k++) {
            uint64_t r = test_rand_u64();
            size_t pos = (size_t)(r % 48); // the header region
            switch ((r >> 32) % 4) {
            case 0: d[pos] ^= (uint8_t)(1u << ((r >> 40) % 8)); break;
            case 1: d[pos] = (uint8_t)(r >> 40); break;
            case 2: len = (size_t)((r >> 40) % len); break;
            default: d[pos & ~(size_t)3] = (uint8_t)((r >> 40) % 3); break; // small ints stress consistency checks
            }
            if (len == 0) break;
        }
        Llama2cFile f;
        Err e = {0};
        if (llama2c_parse(&f, d, len, "mut", &e) == 0) {
            ok++;
            for (size_t i = 0; i < f.n_tensors; i++) {
                const L2CTensor *t = &f.tensors[i];
                size_t end = t->offset + t->nbytes + (t->scales ? t->n_elements / (size_t)f.group_size * 4 : 0);
                CHECKF(end <= len, "iteration %d: %s out of bounds", iter, t->name);
            }
            ModelConfig c;
            CHECKF(llama2c_model_config(&f, &c, &e) == 0, "iteration %d: config: %s", iter, e.msg);
            llama2c_close(&f);
        } else {
            bad++;
            CHECK(e.msg[0]);
        }
        free(d);
    }
    CHECK(ok > 50 && bad > 1000);
    for (int i = 0; i < 3; i++) buf_free(&files[i]);
    model_free(&m);
}
