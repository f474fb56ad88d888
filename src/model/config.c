// config.c — ModelConfig defaults, validation, description, rope frequencies, and filling it from GGUF metadata.
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/dtype.h"
#include "formats/gguf.h"
#include "kernels/rope.h"

// Bounds that catch absurd values early (a corrupt header) while leaving room for the biggest real models.
#define MAX_DIM ((int64_t)1 << 24)   // widths, vocab
#define MAX_LAYERS 4096
#define MAX_CTX ((int64_t)1 << 26)

void model_config_init(ModelConfig *c) {
    memset(c, 0, sizeof *c);
    c->arch = ARCH_LLAMA;
    c->rope_factor = 1.0;
    c->bos_id = -1;
    c->dtype = -1;
}

const char *model_arch_name(ModelArch a) {
    static const char *names[ARCH_COUNT] = {"llama", "qwen2", "gpt2"};
    return (unsigned)a < ARCH_COUNT ? names[a] : "unknown";
}

const char *model_act_name(ActType a) {
    switch (a) {
    case ACT_SILU: return "silu";
    case ACT_GELU_TANH: return "gelu_tanh";
    case ACT_GELU_ERF: return "gelu";
    case ACT_RELU: return "relu";
    }
    return "unknown";
}

const char *model_rope_scaling_name(RopeScaling s) {
    switch (s) {
    case ROPE_SCALING_NONE: return "none";
    case ROPE_SCALING_LINEAR: return "linear";
    case ROPE_SCALING_LLAMA3: return "llama3";
    }
    return "unknown";
}

static int check_range(int64_t v, int64_t lo, int64_t hi, const char *field, const char *what, Err *e) {
    if (v < lo || v > hi)
        return ERR(e, "%s: %s = %lld is out of range [%lld, %lld]", what, field, (long long)v, (long long)lo,
                   (long long)hi);
    return 0;
}

int model_config_validate(const ModelConfig *c, const char *what, Err *e) {
    if ((unsigned)c->arch >= ARCH_COUNT) return ERR(e, "%s: unknown architecture id %d", what, (int)c->arch);
    if (check_range(c->vocab_size, 1, MAX_DIM, "vocab_size", what, e) ||
        check_range(c->n_embd, 1, MAX_DIM, "n_embd", what, e) || check_range(c->n_ff, 1, MAX_DIM, "n_ff", what, e) ||
        check_range(c->n_layer, 1, MAX_LAYERS, "n_layer", what, e) ||
        check_range(c->n_head, 1, 65536, "n_head", what, e) ||
        check_range(c->n_head_kv, 1, c->n_head, "n_head_kv", what, e) ||
        check_range(c->head_dim, 1, 65536, "head_dim", what, e) ||
        check_range(c->n_ctx_train, 1, MAX_CTX, "n_ctx_train", what, e) ||
        check_range(c->sliding_window, 0, MAX_CTX, "sliding_window", what, e))
        return -1;
    if (c->n_head % c->n_head_kv != 0)
        return ERR(e, "%s: %lld attention heads are not a multiple of %lld key/value heads", what,
                   (long long)c->n_head, (long long)c->n_head_kv);
    int64_t qdim;
    if (!i64_mul(c->n_head, c->head_dim, &qdim) || qdim > MAX_DIM)
        return ERR(e, "%s: n_head x head_dim is too large", what);
    if (!(c->norm_eps > 0 && c->norm_eps < 1))
        return ERR(e, "%s: norm epsilon %g must be in (0, 1)", what, c->norm_eps);
    if (c->pos == POS_ROPE) {
        if (c->rope_style == ROPE_STYLE_NONE) return ERR(e, "%s: rope positions without a rope style", what);
        if (c->rope_dim < 2 || c->rope_dim > c->head_dim || c->rope_dim % 2)
            return ERR(e, "%s: rope dimension %lld must be even and within head_dim %lld", what,
                       (long long)c->rope_dim, (long long)c->head_dim);
        if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
            return ERR(e, "%s: rope theta %g must be positive and finite", what, c->rope_theta);
        if (!(c->rope_factor > 0) || !isfinite(c->rope_factor))
            return ERR(e, "%s: rope scaling factor %g must be positive and finite", what, c->rope_factor);
        if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
            if (!(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
                !isfinite(c->rope_high_freq_factor) || c->rope_orig_ctx <= 0)
                return ERR(e, "%s: llama3 rope scaling needs 0 < low_freq_factor (%g) < high_freq_factor (%g) and "
                              "original_max_position_embeddings > 0 (%lld)", what, c->rope_low_freq_factor,
                           c->rope_high_freq_factor, (long long)c->rope_orig_ctx);
        }
    } else if (c->rope_style != ROPE_STYLE_NONE || c->rope_scaling != ROPE_SCALING_NONE) {
        return ERR(e, "%s: rope settings on a model without rope positions", what);
    }
    if (c->n_eos < 0 || c->n_eos > MODEL_MAX_EOS) return ERR(e, "%s: bad eos id count %d", what, c->n_eos);
    return 0;
}

void model_config_describe(const ModelConfig *c, Buf *out) {
    buf_printf(out, "architecture: %s (%s)\n", c->arch_name, c->model_type);
    buf_printf(out, "vocab %lld, n_embd %lld, n_ff %lld, n_layer %lld, heads %lld (kv %lld) x %lld, context %lld\n",
               (long long)c->vocab_size, (long long)c->n_embd, (long long)c->n_ff, (long long)c->n_layer,
               (long long)c->n_head, (long long)c->n_head_kv, (long long)c->head_dim, (long long)c->n_ctx_train);
    buf_printf(out, "norm %s eps %g, mlp %s %s, biases qkv=%d o=%d mlp=%d norm=%d, tied embeddings %d\n",
               c->norm == NORM_RMS ? "rms" : "layer", c->norm_eps, c->mlp == MLP_GATED ? "gated" : "plain",
               model_act_name(c->act), c->bias_qkv, c->bias_o, c->bias_mlp, c->bias_norm, c->tied_embeddings);
    if (c->pos == POS_ROPE)
        buf_printf(out, "rope %s dim %lld theta %g scaling %s factor %g%s\n",
                   c->rope_style == ROPE_STYLE_NEOX ? "neox" : "interleaved", (long long)c->rope_dim, c->rope_theta,
                   model_rope_scaling_name(c->rope_scaling), c->rope_factor,
                   c->rope_freqs_tensor ? " (rope_freqs tensor)" : "");
    else buf_printf(out, "learned positions\n");
    if (c->sliding_window) buf_printf(out, "sliding window %lld\n", (long long)c->sliding_window);
    buf_printf(out, "bos %lld, eos", (long long)c->bos_id);
    for (int i = 0; i < c->n_eos; i++) buf_printf(out, " %lld", (long long)c->eos_ids[i]);
    buf_printf(out, "\n");
}

void model_config_rope_inv_freq(const ModelConfig *c, double *inv_freq) {
    // the formulas live once, in the rope kernel; this maps the config onto them
    RopeFreqSpec spec = {
        .rope_dim = c->rope_dim,
        .theta = c->rope_theta,
        .scaling = c->rope_scaling == ROPE_SCALING_LINEAR   ? ROPE_FREQ_LINEAR
                   : c->rope_scaling == ROPE_SCALING_LLAMA3 ? ROPE_FREQ_LLAMA3
                                                            : ROPE_FREQ_NONE,
        .factor = c->rope_factor,
        .low_freq_factor = c->rope_low_freq_factor,
        .high_freq_factor = c->rope_high_freq_factor,
        .orig_ctx = (double)c->rope_orig_ctx,
    };
    rope_inv_freq(&spec, inv_freq);
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF

static int key_of(char *buf, size_t n, const char *arch, const char *suffix) {
    return snprintf(buf, n, "%s.%s", arch, suffix) < (int)n ? 0 : -1;
}

// A required positive integer "<arch>.<suffix>".
static int gguf_req(const GGUFFile *g, const char *arch, const char *suffix, int64_t *out, Err *e) {
    char key[128];
    key_of(key, sizeof key, arch, suffix);
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return ERR(e, "%s: metadata key '%s' is missing", g->name, key);
    if (kv->type == GGUF_TYPE_ARRAY)
        return ERR(e, "%s: metadata key '%s' is a per-layer array; per-layer values are not supported", g->name, key);
    if (gguf_get_int(g, key, out, e) != 0) return err_prefix(e, "%s: ", g->name);
    if (*out <= 0) return ERR(e, "%s: metadata key '%s' = %lld must be positive", g->name, key, (long long)*out);
    return 0;
}

static int gguf_opt(const GGUFFile *g, const char *arch, const char *suffix, int64_t def, int64_t *out, Err *e) {
    char key[128];
    key_of(key, sizeof key, arch, suffix);
    if (!gguf_find(g, key)) {
        *out = def;
        return 0;
    }
    return gguf_req(g, arch, suffix, out, e);
}

static int gguf_optf(const GGUFFile *g, const char *arch, const char *suffix, double def, double *out, Err *e) {
    char key[128];
    key_of(key, sizeof key, arch, suffix);
    if (gguf_get_float_or(g, key, def, out, e) != 0) return err_prefix(e, "%s: ", g->name);
    return 0;
}

static bool has_tensor(const GGUFFile *g, const char *name) { return gguf_find_tensor(g, name) != NULL; }

static void add_eos(ModelConfig *c, int64_t id) {
    if (id < 0) return;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return;
    if (c->n_eos < MODEL_MAX_EOS) c->eos_ids[c->n_eos++] = id;
}

// Special token ids: absent, negative, or >= vocab (llama.cpp writes 0xFFFFFFFF for "none") mean "not set".
static int gguf_token_id(const GGUFFile *g, const char *key, int64_t vocab, int64_t *out, Err *e) {
    *out = -1;
    if (!gguf_find(g, key)) return 0;
    int64_t v;
    if (gguf_get_int(g, key, &v, e) != 0) return err_prefix(e, "%s: ", g->name);
    if (v >= 0 && v < vocab) *out = v;
    return 0;
}

int model_config_from_gguf(const GGUFFile *g, ModelConfig *c, Err *e) {
    model_config_init(c);
    GStr as;
    if (gguf_get_str(g, "general.architecture", &as, e) != 0) return err_prefix(e, "%s: ", g->name);
    char arch[32];
    if (as.len == 0 || as.len >= sizeof arch || memchr(as.ptr, 0, as.len))
        return ERR(e, "%s: general.architecture is empty or malformed", g->name);
    memcpy(arch, as.ptr, as.len);
    arch[as.len] = 0;
    if (strcmp(arch, "llama") == 0) c->arch = ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) c->arch = ARCH_QWEN2;
    else if (strcmp(arch, "gpt2") == 0) c->arch = ARCH_GPT2;
    else return ERR(e, "%s: general.architecture '%s' is not supported (supported: llama, qwen2, gpt2)", g->name, arch);
    snprintf(c->arch_name, sizeof c->arch_name, "%s", arch);
    snprintf(c->model_type, sizeof c->model_type, "%s", arch);

    if (gguf_req(g, arch, "context_length", &c->n_ctx_train, e) || gguf_req(g, arch, "embedding_length", &c->n_embd, e) ||
        gguf_req(g, arch, "block_count", &c->n_layer, e) || gguf_req(g, arch, "attention.head_count", &c->n_head, e))
        return -1;
    if (gguf_opt(g, arch, "feed_forward_length", c->arch == ARCH_GPT2 ? 4 * c->n_embd : -1, &c->n_ff, e)) return -1;
    if (c->n_ff < 0) return ERR(e, "%s: metadata key '%s.feed_forward_length' is missing", g->name, arch);
    if (gguf_opt(g, arch, "attention.head_count_kv", c->n_head, &c->n_head_kv, e)) return -1;
    char klkey[128];
    key_of(klkey, sizeof klkey, arch, "attention.key_length");
    if (c->n_embd % c->n_head && !gguf_find(g, klkey))
        return ERR(e, "%s: embedding_length %lld is not a multiple of head_count %lld and no key_length is given",
                   g->name, (long long)c->n_embd, (long long)c->n_head);
    if (gguf_opt(g, arch, "attention.key_length", c->n_embd / c->n_head, &c->head_dim, e)) return -1;
    int64_t vlen;
    if (gguf_opt(g, arch, "attention.value_length", c->head_dim, &vlen, e)) return -1;
    if (vlen != c->head_dim)
        return ERR(e, "%s: %s.attention.value_length %lld differs from key_length %lld (not supported)", g->name, arch,
                   (long long)vlen, (long long)c->head_dim);

    // vocabulary: explicit key, else the token list, else the embedding rows
    const GGUFKV *tokens = gguf_find(g, "tokenizer.ggml.tokens");
    const GGUFTensor *embd = gguf_find_tensor(g, "token_embd.weight");
    int64_t vocab = tokens && tokens->type == GGUF_TYPE_ARRAY ? (int64_t)tokens->arr_count : (embd ? embd->ne[1] : 0);
    if (gguf_opt(g, arch, "vocab_size", vocab, &c->vocab_size, e)) return -1;
    if (c->vocab_size <= 0) return ERR(e, "%s: cannot tell the vocabulary size (no %s.vocab_size, token list or token_embd.weight)", g->name, arch);
    if (embd && embd->ne[1] != c->vocab_size)
        return ERR(e, "%s: token_embd.weight has %lld rows but the vocabulary has %lld tokens", g->name,
                   (long long)embd->ne[1], (long long)c->vocab_size);

    if (c->arch == ARCH_GPT2) {
        char key[128];
        key_of(key, sizeof key, arch, "attention.layer_norm_epsilon");
        if (gguf_get_float(g, key, &c->norm_eps, e) != 0) return err_prefix(e, "%s: ", g->name);
        c->norm = NORM_LAYER;
        c->bias_norm = true;
        c->pos = POS_LEARNED;
        c->rope_style = ROPE_STYLE_NONE;
        c->mlp = MLP_PLAIN;
        c->act = ACT_GELU_TANH;
        c->bias_qkv = has_tensor(g, "blk.0.attn_qkv.bias") || has_tensor(g, "blk.0.attn_q.bias");
        c->bias_o = has_tensor(g, "blk.0.attn_output.bias");
        c->bias_mlp = has_tensor(g, "blk.0.ffn_up.bias");
    } else {
        char key[128];
        key_of(key, sizeof key, arch, "attention.layer_norm_rms_epsilon");
        if (gguf_get_float(g, key, &c->norm_eps, e) != 0) return err_prefix(e, "%s: ", g->name);
        c->norm = NORM_RMS;
        c->pos = POS_ROPE;
        c->rope_style = c->arch == ARCH_QWEN2 ? ROPE_STYLE_NEOX : ROPE_STYLE_INTERLEAVED;
        c->mlp = MLP_GATED;
        c->act = ACT_SILU;
        c->bias_qkv = has_tensor(g, "blk.0.attn_q.bias");
        c->bias_o = has_tensor(g, "blk.0.attn_output.bias");
        c->bias_mlp = has_tensor(g, "blk.0.ffn_up.bias");
        c->bias_norm = has_tensor(g, "blk.0.attn_norm.bias");
        if (gguf_optf(g, arch, "rope.freq_base", 10000.0, &c->rope_theta, e)) return -1;
        if (gguf_opt(g, arch, "rope.dimension_count", c->head_dim, &c->rope_dim, e)) return -1;
        c->rope_freqs_tensor = has_tensor(g, "rope_freqs.weight");
        // a sliding window written by convert.c (llama.cpp's key name; absent: full attention)
        if (gguf_opt(g, arch, "attention.sliding_window", 0, &c->sliding_window, e)) return -1;

        // rope scaling: type (default linear, as llama.cpp), factor from rope.scaling.factor or rope.scale_linear
        char type[32] = "linear";
        key_of(key, sizeof key, arch, "rope.scaling.type");
        if (gguf_find(g, key)) {
            GStr ts;
            if (gguf_get_str(g, key, &ts, e) != 0) return err_prefix(e, "%s: ", g->name);
            if (ts.len >= sizeof type || memchr(ts.ptr, 0, ts.len))
                return ERR(e, "%s: metadata key '%s' is malformed", g->name, key);
            memcpy(type, ts.ptr, ts.len);
            type[ts.len] = 0;
        }
        double factor = 0;
        if (gguf_optf(g, arch, "rope.scale_linear", 0.0, &factor, e)) return -1;
        if (gguf_optf(g, arch, "rope.scaling.factor", factor, &factor, e)) return -1;
        if (strcmp(type, "none") == 0 || factor == 0.0 || factor == 1.0) {
            c->rope_scaling = ROPE_SCALING_NONE;
        } else if (strcmp(type, "linear") == 0) {
            c->rope_scaling = ROPE_SCALING_LINEAR;
            c->rope_factor = factor;
        } else {
            return ERR(e, "%s: %s = '%s' is not supported (supported: none, linear)", g->name, key, type);
        }
    }

    c->tied_embeddings = !has_tensor(g, "output.weight");
    const GGUFTensor *w = gguf_find_tensor(g, c->arch == ARCH_GPT2 ? "blk.0.attn_qkv.weight" : "blk.0.attn_q.weight");
    if (!w) w = embd;
    c->dtype = w ? (int)w->type : -1;

    if (gguf_token_id(g, "tokenizer.ggml.bos_token_id", c->vocab_size, &c->bos_id, e)) return -1;
    // llama.cpp ends generation on any end-of-generation token: eos, eot (end of turn), eom (end of message)
    static const char *eog_keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                     "tokenizer.ggml.eom_token_id"};
    for (size_t i = 0; i < sizeof eog_keys / sizeof *eog_keys; i++) {
        int64_t id;
        if (gguf_token_id(g, eog_keys[i], c->vocab_size, &id, e)) return -1;
        add_eos(c, id);
    }
    return model_config_validate(c, g->name, e);
}
