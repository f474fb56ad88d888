// test_model_config.c — ModelConfig from GGUF: the model fixtures (cross-checked against their tensor shapes),
// qwen2/gpt2/rope-scaling files written by the test, and missing or unsupported keys.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "test.h"

static void check_ne(const GGUFFile *g, const char *name, int64_t ne0, int64_t ne1) {
    const GGUFTensor *t = gguf_find_tensor(g, name);
    CHECKF(t, "tensor %s missing", name);
    if (t)
        CHECKF(t->ne[0] == ne0 && t->ne[1] == ne1, "%s: ne [%lld, %lld], config implies [%lld, %lld]", name,
               (long long)t->ne[0], (long long)t->ne[1], (long long)ne0, (long long)ne1);
}

TEST(model_config_gguf_fixtures) {
    static const char *files[] = {"models/stories260K.gguf", "models/llama-2-tiny-random.gguf"};
    for (int f = 0; f < 2; f++) {
        const char *p = fixture_path(files[f]);
        REQUIRE(p);
        GGUFFile g;
        Err e;
        REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
        ModelConfig c;
        REQUIREF(model_config_from_gguf(&g, &c, &e) == 0, "%s", e.msg);
        CHECK(c.arch == ARCH_LLAMA && c.norm == NORM_RMS && c.pos == POS_ROPE && c.mlp == MLP_GATED);
        CHECK(c.rope_style == ROPE_STYLE_INTERLEAVED && c.act == ACT_SILU && c.rope_scaling == ROPE_SCALING_NONE);
        CHECK_EQ_STR(c.arch_name, "llama");
        CHECK_NEAR(c.rope_theta, 10000.0, 0); // no freq_base key: llama.cpp's default
        CHECK_NEAR(c.norm_eps, 1e-5, 1e-10);
        CHECK(!c.bias_qkv && !c.bias_o && !c.bias_mlp && !c.bias_norm && !c.rope_freqs_tensor);
        CHECK(!c.tied_embeddings); // both files carry output.weight
        CHECK_EQ_INT(c.bos_id, 1);
        CHECK(c.n_eos == 1 && c.eos_ids[0] == 2);
        CHECK_EQ_INT(c.vocab_size, (int64_t)gguf_find(&g, "tokenizer.ggml.tokens")->arr_count);
        check_ne(&g, "token_embd.weight", c.n_embd, c.vocab_size);
        check_ne(&g, "output.weight", c.n_embd, c.vocab_size);
        check_ne(&g, "blk.0.attn_q.weight", c.n_embd, c.n_head * c.head_dim);
        check_ne(&g, "blk.0.attn_k.weight", c.n_embd, c.n_head_kv * c.head_dim);
        check_ne(&g, "blk.0.ffn_gate.weight", c.n_embd, c.n_ff);
        check_ne(&g, "blk.0.ffn_down.weight", c.n_ff, c.n_embd);
        char name[64];
        snprintf(name, sizeof name, "blk.%lld.attn_norm.weight", (long long)c.n_layer - 1);
        CHECK(gguf_find_tensor(&g, name) != NULL);
        snprintf(name, sizeof name, "blk.%lld.attn_norm.weight", (long long)c.n_layer);
        CHECK(gguf_find_tensor(&g, name) == NULL);
        CHECK_EQ_INT(c.rope_dim, c.head_dim);
        CHECK_EQ_INT(c.dtype, gguf_find_tensor(&g, "blk.0.attn_q.weight")->type);
        if (f == 0) CHECK(c.n_head_kv < c.n_head); // stories260K uses grouped-query attention
        Buf d;
        buf_init(&d);
        model_config_describe(&c, &d);
        CHECK(strstr(d.data, "llama") != NULL);
        buf_free(&d);
        gguf_close(&g);
    }
}

// Write a GGUF with the given metadata recipe and a few tensors; returns the parsed config status.
typedef void (*Recipe)(GGUFWriter *w);

static int config_of(Recipe r, const char *const *tensors, ModelConfig *c, Err *e) {
    GGUFWriter *w = gguf_writer_new();
    r(w);
    static float zeros[4096];
    for (size_t i = 0; tensors && tensors[i]; i++) {
        int64_t ne[2] = {16, 1};
        if (!strcmp(tensors[i], "token_embd.weight") || !strcmp(tensors[i], "output.weight")) ne[1] = 100;
        if (gguf_writer_add_tensor(w, tensors[i], DT_F32, 2, ne, zeros, e) != 0) {
            gguf_writer_free(w);
            return -1;
        }
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc = gguf_writer_write_stream(w, f, e);
    fclose(f);
    gguf_writer_free(w);
    GGUFFile g;
    if (rc == 0) rc = gguf_parse(&g, (const uint8_t *)buf, len, "mem.gguf", e);
    if (rc == 0) {
        rc = model_config_from_gguf(&g, c, e);
        gguf_close(&g);
    }
    free(buf);
    return rc;
}

static void base_keys(GGUFWriter *w, const char *arch) {
    char k[128];
    gguf_writer_set_str(w, "general.architecture", arch);
#define SETU(suffix, v) (snprintf(k, sizeof k, "%s." suffix, arch), gguf_writer_set_u32(w, k, (v)))
    SETU("context_length", 512);
    SETU("embedding_length", 16);
    SETU("block_count", 2);
    SETU("feed_forward_length", 40);
    SETU("attention.head_count", 4);
#undef SETU
}

static void r_qwen2(GGUFWriter *w) {
    base_keys(w, "qwen2");
    gguf_writer_set_u32(w, "qwen2.attention.head_count_kv", 2);
    gguf_writer_set_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    gguf_writer_set_f32(w, "qwen2.rope.freq_base", 1000000.0f);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 7);
    gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", 9);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 0xffffffffu);
}
static void r_gpt2(GGUFWriter *w) {
    base_keys(w, "gpt2");
    gguf_writer_set_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f);
}
static void r_linear(GGUFWriter *w) {
    base_keys(w, "llama");
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_str(w, "llama.rope.scaling.type", "linear");
    gguf_writer_set_f32(w, "llama.rope.scaling.factor", 4.0f);
    gguf_writer_set_u32(w, "llama.attention.key_length", 8);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", 6);
    gguf_writer_set_u32(w, "llama.vocab_size", 100);
}
static void r_scale_linear_old(GGUFWriter *w) {
    base_keys(w, "llama");
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_f32(w, "llama.rope.scale_linear", 2.0f);
    gguf_writer_set_u32(w, "llama.vocab_size", 100);
}
static void r_yarn(GGUFWriter *w) {
    r_linear(w);
    gguf_writer_set_str(w, "llama.rope.scaling.type", "yarn");
}
static void r_falcon(GGUFWriter *w) { base_keys(w, "falcon"); }
static void r_no_blocks(GGUFWriter *w) {
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.context_length", 512);
    gguf_writer_set_u32(w, "llama.embedding_length", 16);
    gguf_writer_set_u32(w, "llama.attention.head_count", 4);
}
static void r_per_layer_kv(GGUFWriter *w) {
    r_linear(w);
    int32_t kv[2] = {2, 4};
    gguf_writer_set_arr(w, "llama.attention.head_count_kv", GGUF_TYPE_INT32, kv, 2);
}
static void r_string_ctx(GGUFWriter *w) {
    r_linear(w);
    gguf_writer_set_str(w, "llama.context_length", "512");
}
static void r_no_eps(GGUFWriter *w) {
    base_keys(w, "llama");
    gguf_writer_set_u32(w, "llama.vocab_size", 100);
}
static void r_bad_vocab(GGUFWriter *w) {
    r_linear(w);
    gguf_writer_set_u32(w, "llama.vocab_size", 99);
}
static void r_zero_heads(GGUFWriter *w) {
    r_linear(w);
    gguf_writer_set_u32(w, "llama.attention.head_count", 0);
}

TEST(model_config_gguf_variants) {
    ModelConfig c;
    Err e;
    const char *qwen_t[] = {"token_embd.weight", "blk.0.attn_q.bias", "blk.0.attn_q.weight", NULL};
    REQUIREF(config_of(r_qwen2, qwen_t, &c, &e) == 0, "%s", e.msg);
    CHECK(c.arch == ARCH_QWEN2 && c.rope_style == ROPE_STYLE_NEOX && c.bias_qkv && !c.bias_o);
    CHECK(c.tied_embeddings);
    CHECK_NEAR(c.rope_theta, 1e6, 0);
    CHECK_EQ_INT(c.vocab_size, 100); // from token_embd.weight rows: no token list, no vocab_size key
    CHECK_EQ_INT(c.n_head_kv, 2);
    CHECK_EQ_INT(c.head_dim, 4);
    CHECK_EQ_INT(c.bos_id, -1); // 0xffffffff means none
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 7 && c.eos_ids[1] == 9);

    const char *gpt2_t[] = {"token_embd.weight", "output.weight", "blk.0.attn_qkv.bias", "blk.0.ffn_up.bias",
                            "blk.0.attn_output.bias", NULL};
    REQUIREF(config_of(r_gpt2, gpt2_t, &c, &e) == 0, "%s", e.msg);
    CHECK(c.arch == ARCH_GPT2 && c.norm == NORM_LAYER && c.pos == POS_LEARNED && c.mlp == MLP_PLAIN);
    CHECK(c.act == ACT_GELU_TANH && c.bias_qkv && c.bias_o && c.bias_mlp && c.bias_norm && !c.tied_embeddings);

    const char *llama_t[] = {"rope_freqs.weight", NULL};
    REQUIREF(config_of(r_linear, llama_t, &c, &e) == 0, "%s", e.msg);
    CHECK(c.rope_scaling == ROPE_SCALING_LINEAR);
    CHECK_NEAR(c.rope_factor, 4, 0);
    CHECK_EQ_INT(c.head_dim, 8); // explicit key_length, not 16/4
    CHECK_EQ_INT(c.rope_dim, 6);
    CHECK(c.rope_freqs_tensor);
    REQUIREF(config_of(r_scale_linear_old, NULL, &c, &e) == 0, "%s", e.msg);
    CHECK(c.rope_scaling == ROPE_SCALING_LINEAR);
    CHECK_NEAR(c.rope_factor, 2, 0);

    struct {
        Recipe r;
        const char *n1, *n2;
    } bad[] = {
        {r_yarn, "llama.rope.scaling.type", "yarn"},
        {r_falcon, "general.architecture", "falcon"},
        {r_no_blocks, "llama.block_count", "missing"},
        {r_per_layer_kv, "llama.attention.head_count_kv", "per-layer"},
        {r_string_ctx, "llama.context_length", NULL},
        {r_no_eps, "layer_norm_rms_epsilon", NULL},
        {r_zero_heads, "llama.attention.head_count", "positive"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        Err err = {0};
        if (config_of(bad[i].r, NULL, &c, &err) == 0) {
            test_fail_at(__FILE__, __LINE__, "case %zu unexpectedly accepted", i);
            continue;
        }
        CHECKF(strstr(err.msg, bad[i].n1) && (!bad[i].n2 || strstr(err.msg, bad[i].n2)),
               "case %zu: '%s' should mention %s", i, err.msg, bad[i].n1);
    }
    const char *embd_t[] = {"token_embd.weight", NULL};
    CHECK(config_of(r_bad_vocab, embd_t, &c, &e) != 0);
    CHECKF(strstr(e.msg, "token_embd.weight has 100 rows"), "%s", e.msg);
}
