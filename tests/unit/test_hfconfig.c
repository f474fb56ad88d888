// test_hfconfig.c — config.json / generation_config.json → ModelConfig: the HF fixtures (cross-checked against their
// safetensors shapes), both rope config styles, defaults per model_type, and errors naming key and value.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "formats/hfconfig.h"
#include "formats/safetensors.h"
#include "test.h"

static int parse(const char *cfg, const char *gen, ModelConfig *c, Err *e) {
    return hfconfig_parse(cfg, strlen(cfg), gen, gen ? strlen(gen) : 0, "test", c, e);
}

static void expect_err(const char *cfg, const char *gen, const char *n1, const char *n2, int line) {
    ModelConfig c;
    Err e = {0};
    if (parse(cfg, gen, &c, &e) == 0) {
        test_fail_at(__FILE__, line, "config unexpectedly accepted: %s", cfg);
        return;
    }
    if (!strstr(e.msg, n1) || (n2 && !strstr(e.msg, n2)))
        test_fail_at(__FILE__, line, "error '%s' should mention '%s'%s%s", e.msg, n1, n2 ? " and " : "", n2 ? n2 : "");
}
#define EXPECT_ERR(cfg, gen, n1, n2) expect_err((cfg), (gen), (n1), (n2), __LINE__)

// A minimal llama config with a placeholder for extra keys.
static char *llama_cfg_v(long vocab, const char *extra) {
    Buf b;
    buf_init(&b);
    buf_printf(&b, "{\"model_type\":\"llama\",\"vocab_size\":%ld,\"hidden_size\":256,\"intermediate_size\":688,"
                   "\"num_hidden_layers\":4,\"num_attention_heads\":8%s%s}", vocab, extra[0] ? "," : "", extra);
    return b.data;
}
static char *llama_cfg(const char *extra) { return llama_cfg_v(1000, extra); }

static const STTensor *need(const SafeTensors *st, const char *name) {
    const STTensor *t = st_find(st, name);
    if (!t) test_fail_at(__FILE__, __LINE__, "tensor %s missing", name);
    return t;
}

static void check_shape2(const STTensor *t, int64_t a, int64_t b) {
    if (!t) return;
    CHECKF(t->ndim == 2 && t->shape[0] == a && t->shape[1] == b, "%s: shape [%lld, %lld], config implies [%lld, %lld]",
           t->name, (long long)t->shape[0], (long long)t->shape[1], (long long)a, (long long)b);
}

// Every fixture: the config must agree with the tensors actually stored (an independent source of truth).
TEST(hfconfig_fixtures_match_tensors) {
    static const char *dirs[] = {"hf/llama_gqa_f32", "hf/gpt2_f32", "hf/mistral_vocab_f16"};
    for (size_t d = 0; d < 3; d++) {
        const char *p = fixture_path(dirs[d]);
        REQUIRE(p);
        char *dir = xstrdup(p);
        ModelConfig c;
        Err e;
        REQUIREF(hfconfig_load_dir(dir, &c, &e) == 0, "%s", e.msg);
        SafeTensors st;
        REQUIREF(st_open_dir(&st, dir, &e) == 0, "%s", e.msg);
        int64_t n_layer = 0;
        char name[128];
        if (c.arch == ARCH_GPT2) {
            CHECK_EQ_STR(c.model_type, "gpt2");
            CHECK(c.norm == NORM_LAYER && c.bias_norm && c.pos == POS_LEARNED && c.mlp == MLP_PLAIN);
            CHECK(c.act == ACT_GELU_TANH); // activation_function gelu_new
            CHECK(c.tied_embeddings && !st_find(&st, "lm_head.weight"));
            check_shape2(need(&st, "transformer.wte.weight"), c.vocab_size, c.n_embd);
            check_shape2(need(&st, "transformer.wpe.weight"), c.n_ctx_train, c.n_embd);
            while (snprintf(name, sizeof name, "transformer.h.%lld.ln_1.weight", (long long)n_layer),
                   st_find(&st, name))
                n_layer++;
            check_shape2(need(&st, "transformer.h.0.attn.c_attn.weight"), c.n_embd, 3 * c.n_head * c.head_dim);
            check_shape2(need(&st, "transformer.h.0.mlp.c_fc.weight"), c.n_embd, c.n_ff);
            CHECK(need(&st, "transformer.h.0.attn.c_attn.bias") != NULL);
            CHECK_EQ_INT(c.bos_id, -1); // 50256 is outside this tiny vocabulary
            CHECK_EQ_INT(c.n_eos, 0);
        } else {
            CHECK(c.arch == ARCH_LLAMA && c.norm == NORM_RMS && c.pos == POS_ROPE && c.mlp == MLP_GATED);
            CHECK(c.act == ACT_SILU && c.rope_style == ROPE_STYLE_NEOX && c.rope_scaling == ROPE_SCALING_NONE);
            CHECK_NEAR(c.rope_theta, 10000.0, 0);
            CHECK_EQ_INT(c.rope_dim, c.head_dim);
            CHECK(!c.bias_qkv && !c.bias_o && !c.bias_mlp);
            CHECK_EQ_INT(c.tied_embeddings, st_find(&st, "lm_head.weight") == NULL);
            check_shape2(need(&st, "model.embed_tokens.weight"), c.vocab_size, c.n_embd);
            if (!c.tied_embeddings) check_shape2(need(&st, "lm_head.weight"), c.vocab_size, c.n_embd);
            while (snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)n_layer),
                   st_find(&st, name))
                n_layer++;
            check_shape2(need(&st, "model.layers.0.self_attn.q_proj.weight"), c.n_head * c.head_dim, c.n_embd);
            check_shape2(need(&st, "model.layers.0.self_attn.k_proj.weight"), c.n_head_kv * c.head_dim, c.n_embd);
            check_shape2(need(&st, "model.layers.0.self_attn.v_proj.weight"), c.n_head_kv * c.head_dim, c.n_embd);
            check_shape2(need(&st, "model.layers.0.self_attn.o_proj.weight"), c.n_embd, c.n_head * c.head_dim);
            check_shape2(need(&st, "model.layers.0.mlp.gate_proj.weight"), c.n_ff, c.n_embd);
            check_shape2(need(&st, "model.layers.0.mlp.down_proj.weight"), c.n_embd, c.n_ff);
            CHECK_EQ_INT(c.bos_id, 1);
            CHECK(c.n_eos == 1 && c.eos_ids[0] == 2);
        }
        CHECK_EQ_INT(n_layer, c.n_layer);
        CHECK_EQ_INT(c.dtype, st.tensors[0].dtype);
        CHECK_NEAR(c.norm_eps, 1e-5, 1e-12);
        st_close(&st);
        free(dir);
    }
    // the GQA fixture really is grouped (the point of that fixture)
    const char *p = fixture_path("hf/llama_gqa_f32");
    REQUIRE(p);
    ModelConfig c;
    Err e;
    REQUIREF(hfconfig_load_dir(p, &c, &e) == 0, "%s", e.msg);
    CHECK(c.n_head_kv < c.n_head);
}

TEST(hfconfig_llama_defaults_and_old_rope_style) {
    ModelConfig c;
    Err e;
    char *cfg = llama_cfg("");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    CHECK_EQ_INT(c.n_head_kv, 8);       // default: no GQA
    CHECK_EQ_INT(c.head_dim, 32);       // hidden / heads
    CHECK_EQ_INT(c.n_ctx_train, 2048);  // LlamaConfig default
    CHECK_NEAR(c.norm_eps, 1e-6, 1e-15);
    CHECK_NEAR(c.rope_theta, 10000, 0);
    CHECK(!c.tied_embeddings);
    CHECK_EQ_INT(c.bos_id, -1);
    CHECK_EQ_INT(c.dtype, -1);

    // Llama 3.1 as its config.json spells it (older style: top-level rope_theta + rope_scaling with rope_type)
    cfg = llama_cfg_v(128256, "\"num_key_value_heads\":2,\"head_dim\":64,\"rope_theta\":500000.0,\"max_position_embeddings\":131072,"
                    "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},\"torch_dtype\":\"bfloat16\","
                    "\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],"
                    "\"tie_word_embeddings\":true,\"attention_bias\":true,\"mlp_bias\":false");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.n_head_kv, 2);
    CHECK_NEAR(c.rope_theta, 500000, 0);
    CHECK(c.rope_scaling == ROPE_SCALING_LLAMA3);
    CHECK_NEAR(c.rope_factor, 8, 0);
    CHECK_NEAR(c.rope_low_freq_factor, 1, 0);
    CHECK_NEAR(c.rope_high_freq_factor, 4, 0);
    CHECK_EQ_INT(c.rope_orig_ctx, 8192);
    CHECK_EQ_INT(c.dtype, DT_BF16);
    CHECK_EQ_INT(c.bos_id, 128000);
    CHECK(c.n_eos == 3 && c.eos_ids[0] == 128001 && c.eos_ids[2] == 128009);
    CHECK(c.tied_embeddings && c.bias_qkv && c.bias_o && !c.bias_mlp);

    // the same in the newer rope_parameters style, with "type" spelled the old way inside rope_scaling elsewhere
    cfg = llama_cfg("\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":32.0,"
                    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    CHECK(c.rope_scaling == ROPE_SCALING_LLAMA3);
    CHECK_NEAR(c.rope_factor, 32, 0);
    CHECK_NEAR(c.rope_theta, 500000, 0);

    cfg = llama_cfg("\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0},\"rope_theta\":20000");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    CHECK(c.rope_scaling == ROPE_SCALING_LINEAR);
    CHECK_NEAR(c.rope_factor, 4, 0);
    CHECK_NEAR(c.rope_theta, 20000, 0);

    cfg = llama_cfg("\"rope_scaling\":null,\"head_dim\":null,\"num_key_value_heads\":null,\"partial_rotary_factor\":0.5");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    CHECK(c.rope_scaling == ROPE_SCALING_NONE);
    CHECK_EQ_INT(c.head_dim, 32);
    CHECK_EQ_INT(c.rope_dim, 16);

    // integral reals are accepted for integer fields
    cfg = llama_cfg("\"max_position_embeddings\":4096.0");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    CHECK_EQ_INT(c.n_ctx_train, 4096);
}

TEST(hfconfig_mistral_qwen2_gpt2) {
    ModelConfig c;
    Err e;
    const char *mistral = "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\",\"vocab_size\":32000,"
                          "\"hidden_size\":4096,\"intermediate_size\":14336,\"num_hidden_layers\":32,"
                          "\"num_attention_heads\":32,\"num_key_value_heads\":8,\"sliding_window\":4096,"
                          "\"rope_theta\":10000.0,\"max_position_embeddings\":32768,\"bos_token_id\":1,\"eos_token_id\":2}";
    REQUIREF(parse(mistral, NULL, &c, &e) == 0, "%s", e.msg);
    CHECK(c.arch == ARCH_LLAMA);
    CHECK_EQ_STR(c.model_type, "mistral");
    CHECK_EQ_STR(c.arch_name, "llama");
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(c.head_dim, 128);

    const char *qwen = "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\",\"vocab_size\":151936,"
                       "\"hidden_size\":896,\"intermediate_size\":4864,\"num_hidden_layers\":24,"
                       "\"num_attention_heads\":14,\"num_key_value_heads\":2,\"rope_theta\":1000000.0,"
                       "\"sliding_window\":32768,\"use_sliding_window\":false,\"max_window_layers\":21,"
                       "\"tie_word_embeddings\":true,\"rms_norm_eps\":1e-06,\"hidden_act\":\"silu\","
                       "\"bos_token_id\":151643,\"eos_token_id\":151643}";
    const char *qwen_gen = "{\"bos_token_id\":151643,\"eos_token_id\":[151645,151643],\"do_sample\":true}";
    REQUIREF(parse(qwen, qwen_gen, &c, &e) == 0, "%s", e.msg);
    CHECK(c.arch == ARCH_QWEN2 && c.bias_qkv && !c.bias_o && !c.bias_mlp);
    CHECK_EQ_STR(c.arch_name, "qwen2");
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK(c.tied_embeddings);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 151645 && c.eos_ids[1] == 151643); // generation_config wins
    // Qwen2's default theta when the key is absent
    const char *qwen_min = "{\"model_type\":\"qwen2\",\"vocab_size\":100,\"hidden_size\":64,\"intermediate_size\":128,"
                           "\"num_hidden_layers\":2,\"num_attention_heads\":4}";
    REQUIREF(parse(qwen_min, NULL, &c, &e) == 0, "%s", e.msg);
    CHECK_NEAR(c.rope_theta, 1e6, 0);

    const char *gpt2 = "{\"model_type\":\"gpt2\",\"vocab_size\":50257,\"n_embd\":768,\"n_layer\":12,\"n_head\":12,"
                       "\"n_positions\":1024,\"n_inner\":null,\"activation_function\":\"gelu_new\","
                       "\"layer_norm_epsilon\":1e-05,\"bos_token_id\":50256,\"eos_token_id\":50256}";
    REQUIREF(parse(gpt2, NULL, &c, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(c.n_ff, 3072);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.n_ctx_train, 1024);
    CHECK(c.tied_embeddings && c.bias_qkv && c.bias_o && c.bias_mlp && c.bias_norm);
    CHECK(c.rope_style == ROPE_STYLE_NONE);
    CHECK(c.bos_id == 50256 && c.n_eos == 1 && c.eos_ids[0] == 50256);
    // no model_type: inferred from architectures
    REQUIREF(parse("{\"architectures\":[\"GPT2LMHeadModel\"],\"n_inner\":1000,\"activation_function\":\"gelu\"}", NULL,
                   &c, &e) == 0, "%s", e.msg);
    CHECK(c.arch == ARCH_GPT2 && c.n_ff == 1000 && c.act == ACT_GELU_ERF && c.vocab_size == 50257);
}

TEST(hfconfig_errors_name_key_and_value) {
    EXPECT_ERR("{\"model_type\":\"falcon\"}", NULL, "model_type", "falcon");
    EXPECT_ERR("{\"model_type\":7}", NULL, "model_type", "integer");
    EXPECT_ERR("{}", NULL, "model_type", "missing");
    EXPECT_ERR("{\"architectures\":[\"FalconForCausalLM\"]}", NULL, "FalconForCausalLM", NULL);
    EXPECT_ERR("{\"architectures\":[\"LlamaForSequenceClassification\"],\"model_type\":\"llama\"}", NULL,
               "LlamaForSequenceClassification", "causal");
    EXPECT_ERR("{\"model_type\":\"llama\"", NULL, "not valid JSON", NULL);
    EXPECT_ERR("[1]", NULL, "JSON object", NULL);
    EXPECT_ERR("{\"model_type\":\"llama\",\"model_type\":\"gpt2\"}", NULL, "not valid JSON", NULL);
    char *c;
    c = llama_cfg("\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}");
    EXPECT_ERR(c, NULL, "rope_scaling.rope_type", "yarn");
    free(c);
    c = llama_cfg("\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}");
    EXPECT_ERR(c, NULL, "rope_scaling.type", "dynamic");
    free(c);
    c = llama_cfg("\"rope_parameters\":{\"rope_type\":\"longrope\"}");
    EXPECT_ERR(c, NULL, "rope_parameters.rope_type", "longrope");
    free(c);
    c = llama_cfg("\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"}}");
    EXPECT_ERR(c, NULL, "rope_parameters", "full_attention");
    free(c);
    c = llama_cfg("\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}");
    EXPECT_ERR(c, NULL, "rope_scaling.low_freq_factor", "missing");
    free(c);
    c = llama_cfg("\"rope_scaling\":{\"rope_type\":\"linear\"}");
    EXPECT_ERR(c, NULL, "rope_scaling.factor", "missing");
    free(c);
    c = llama_cfg("\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":\"2\"}");
    EXPECT_ERR(c, NULL, "rope_scaling.factor", "number");
    free(c);
    c = llama_cfg("\"rope_scaling\":[1]");
    EXPECT_ERR(c, NULL, "rope_scaling", "array");
    free(c);
    c = llama_cfg("\"hidden_act\":\"swiglu_oai\"");
    EXPECT_ERR(c, NULL, "hidden_act", "swiglu_oai");
    free(c);
    c = llama_cfg("\"num_key_value_heads\":3");
    EXPECT_ERR(c, NULL, "attention heads", "key/value heads");
    free(c);
    c = llama_cfg("\"num_key_value_heads\":-2");
    EXPECT_ERR(c, NULL, "n_head_kv", NULL);
    free(c);
    c = llama_cfg("\"rms_norm_eps\":\"1e-5\"");
    EXPECT_ERR(c, NULL, "rms_norm_eps", "string");
    free(c);
    c = llama_cfg("\"rms_norm_eps\":0");
    EXPECT_ERR(c, NULL, "epsilon", NULL);
    free(c);
    c = llama_cfg("\"tie_word_embeddings\":1");
    EXPECT_ERR(c, NULL, "tie_word_embeddings", "true or false");
    free(c);
    c = llama_cfg("\"head_dim\":33");
    EXPECT_ERR(c, NULL, "rope dimension", NULL);
    free(c);
    c = llama_cfg("\"partial_rotary_factor\":2");
    EXPECT_ERR(c, NULL, "partial_rotary_factor", NULL);
    free(c);
    c = llama_cfg("\"max_position_embeddings\":1e300");
    EXPECT_ERR(c, NULL, "max_position_embeddings", "integer");
    free(c);
    c = llama_cfg("\"layer_types\":[\"full_attention\",\"sliding_attention\",\"full_attention\",\"full_attention\"],"
                  "\"sliding_window\":128");
    EXPECT_ERR(c, NULL, "layer_types", "mixes");
    free(c);
    c = llama_cfg("\"layer_types\":[\"chunked_attention\"]");
    EXPECT_ERR(c, NULL, "layer_types[0]", "chunked_attention");
    free(c);
    c = llama_cfg("\"eos_token_id\":\"2\"");
    EXPECT_ERR(c, NULL, "eos_token_id", NULL);
    free(c);
    c = llama_cfg("");
    EXPECT_ERR(c, "{\"bos_token_id\":[1,2]}", "bos_token_id", NULL);
    EXPECT_ERR(c, "{\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}", "eos_token_id", NULL);
    EXPECT_ERR(c, "not json", "generation_config.json", NULL);
    free(c);
    EXPECT_ERR("{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":64,\"intermediate_size\":128,"
               "\"num_attention_heads\":4}", NULL, "num_hidden_layers", "missing");
    EXPECT_ERR("{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":66,\"intermediate_size\":128,"
               "\"num_hidden_layers\":2,\"num_attention_heads\":4}", NULL, "not a multiple", NULL);
    EXPECT_ERR("{\"model_type\":\"qwen2\",\"vocab_size\":10,\"hidden_size\":64,\"intermediate_size\":128,"
               "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"use_sliding_window\":true,"
               "\"max_window_layers\":2,\"sliding_window\":64}", NULL, "max_window_layers", NULL);
    EXPECT_ERR("{\"model_type\":\"gpt2\",\"scale_attn_by_inverse_layer_idx\":true}", NULL,
               "scale_attn_by_inverse_layer_idx", NULL);
    EXPECT_ERR("{\"model_type\":\"gpt2\",\"scale_attn_weights\":false}", NULL, "scale_attn_weights", NULL);
    EXPECT_ERR("{\"model_type\":\"gpt2\",\"activation_function\":\"tanh\"}", NULL, "activation_function", "tanh");
    EXPECT_ERR("{\"model_type\":\"gpt2\",\"n_embd\":100,\"n_head\":3}", NULL, "n_head", NULL);
    EXPECT_ERR("{\"model_type\":\"gpt2\",\"n_layer\":0}", NULL, "n_layer", NULL);
    ModelConfig cfg;
    Err e;
    CHECK(hfconfig_load_dir("/nonexistent-dir", &cfg, &e) != 0);
    CHECKF(strstr(e.msg, "/nonexistent-dir/config.json"), "%s", e.msg);
}

// Llama 3.1 frequencies against a direct transcription of the published rule, element by element.
TEST(hfconfig_llama3_inv_freq) {
    ModelConfig c;
    Err e;
    char *cfg = llama_cfg("\"head_dim\":128,\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":8.0,"
                          "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,"
                          "\"rope_type\":\"llama3\"}");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    double got[64];
    model_config_rope_inv_freq(&c, got);
    int n_scaled = 0, n_kept = 0, n_mid = 0;
    for (int i = 0; i < 64; i++) {
        double base = 1.0 / pow(500000.0, (2.0 * i) / 128.0);
        double wl = 2 * M_PI / base, want;
        if (wl < 8192.0 / 4.0) want = base, n_kept++;
        else if (wl > 8192.0 / 1.0) want = base / 8.0, n_scaled++;
        else {
            double smooth = (8192.0 / wl - 1.0) / (4.0 - 1.0);
            want = (1 - smooth) * base / 8.0 + smooth * base;
            n_mid++;
        }
        CHECK_NEAR(got[i], want, 1e-12 * want);
        if (i) CHECK(got[i] < got[i - 1]);
    }
    CHECK(n_scaled > 0 && n_kept > 0 && n_mid > 0); // all three bands exercised
    // linear: every frequency divided by the factor; none: the plain geometric sequence
    cfg = llama_cfg("\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}");
    REQUIREF(parse(cfg, NULL, &c, &e) == 0, "%s", e.msg);
    free(cfg);
    model_config_rope_inv_freq(&c, got);
    for (int i = 0; i < 16; i++) CHECK_NEAR(got[i], pow(10000.0, -(2.0 * i) / 32.0) / 4.0, 1e-15);
}

// Deterministic mutations of a real config.json: never a crash; whatever is accepted is a valid config.
TEST(hfconfig_mutations) {
    const char *p = fixture_path("hf/llama_gqa_f32/config.json");
    REQUIRE(p);
    char *text;
    size_t len;
    Err e;
    REQUIREF(file_read_all(p, &text, &len, &e) == 0, "%s", e.msg);
    char *m = xmalloc(len + 1);
    static const char tok[] = "{}[]\",:0123456789-.etruefalsnul ";
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(m, text, len);
        size_t n = len;
        int muts = 1 + (int)(test_rand_u64() % 3);
        for (int k = 0; k < muts; k++) {
            size_t pos = (size_t)(test_rand_u64() % n);
            if (test_rand_u64() % 8 == 0) n = pos + 1;
            else m[pos] = tok[test_rand_u64() % (sizeof tok - 1)];
        }
        ModelConfig c;
        Err err = {0};
        if (hfconfig_parse(m, n, NULL, 0, "mut", &c, &err) == 0) {
            ok++;
            CHECKF(model_config_validate(&c, "mut", &err) == 0, "accepted an invalid config: %s", err.msg);
        } else {
            bad++;
            CHECK(err.msg[0]);
        }
    }
    CHECK(ok > 100 && bad > 100);
    free(m);
    free(text);
}
