// hfconfig.c — Hugging Face config.json / generation_config.json reader (see hfconfig.h).
#include "hfconfig.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "base/util.h"

typedef struct Ctx {
    const char *label;
    Err *e;
} Ctx;

static const char *kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

// key present and not null
static const json_t *get(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

// Integer field; a real with an integral value is accepted (some tools write 4096.0). Missing/null → def.
static int get_int(Ctx *x, const json_t *obj, const char *prefix, const char *key, int64_t def, int64_t *out) {
    const json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9e15) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return ERR(x->e, "%s: '%s%s' must be an integer, got %s", x->label, prefix, key, kind(v));
}

static int get_req_int(Ctx *x, const json_t *obj, const char *prefix, const char *key, int64_t *out) {
    if (!get(obj, key)) return ERR(x->e, "%s: '%s%s' is missing", x->label, prefix, key);
    return get_int(x, obj, prefix, key, 0, out);
}

static int get_num(Ctx *x, const json_t *obj, const char *prefix, const char *key, double def, double *out) {
    const json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return ERR(x->e, "%s: '%s%s' must be a number, got %s", x->label, prefix, key, kind(v));
    *out = json_number_value(v);
    if (!isfinite(*out)) return ERR(x->e, "%s: '%s%s' is not finite", x->label, prefix, key);
    return 0;
}

static int get_req_num(Ctx *x, const json_t *obj, const char *prefix, const char *key, double *out) {
    if (!get(obj, key)) return ERR(x->e, "%s: '%s%s' is missing", x->label, prefix, key);
    return get_num(x, obj, prefix, key, 0, out);
}

static int get_bool(Ctx *x, const json_t *obj, const char *key, bool def, bool *out) {
    const json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) return ERR(x->e, "%s: '%s' must be true or false, got %s", x->label, key, kind(v));
    *out = json_is_true(v);
    return 0;
}

// String field; NULL when missing/null.
static int get_str(Ctx *x, const json_t *obj, const char *prefix, const char *key, const char **out) {
    const json_t *v = get(obj, key);
    *out = NULL;
    if (!v) return 0;
    if (!json_is_string(v)) return ERR(x->e, "%s: '%s%s' must be a string, got %s", x->label, prefix, key, kind(v));
    *out = json_string_value(v);
    return 0;
}

// ---- pieces ----

static int parse_act(Ctx *x, const char *key, const char *name, ActType *out) {
    if (!strcmp(name, "silu") || !strcmp(name, "swish")) *out = ACT_SILU;
    else if (!strcmp(name, "gelu_new") || !strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_fast"))
        *out = ACT_GELU_TANH;
    else if (!strcmp(name, "gelu")) *out = ACT_GELU_ERF;
    else if (!strcmp(name, "relu")) *out = ACT_RELU;
    else
        return ERR(x->e, "%s: %s = '%s' is not supported (supported: silu, gelu, gelu_new, gelu_pytorch_tanh, "
                         "gelu_fast, relu)", x->label, key, name);
    return 0;
}

// bos/eos ids: an integer, a list of integers, or null.
static int parse_ids(Ctx *x, const json_t *obj, const char *file, const char *key, int64_t *ids, int *n, int max) {
    const json_t *v = get(obj, key);
    if (!v) return 0; // keep what we have
    *n = 0;
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < count; i++) {
        const json_t *it = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(it) || json_integer_value(it) < 0)
            return ERR(x->e, "%s: %s '%s' must be a non-negative integer or a list of them, got %s", x->label, file,
                       key, kind(it));
        int64_t id = (int64_t)json_integer_value(it);
        bool dup = false;
        for (int k = 0; k < *n; k++) dup |= ids[k] == id;
        if (dup) continue;
        if (*n >= max)
            return ERR(x->e, "%s: %s '%s' lists more than %d ids", x->label, file, key, max);
        ids[(*n)++] = id;
    }
    return 0;
}

// Rope base and scaling, from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (older).
static int parse_rope(Ctx *x, const json_t *root, double default_theta, ModelConfig *c) {
    const json_t *rp = get(root, "rope_parameters");
    const json_t *rs = get(root, "rope_scaling");
    const char *prefix;
    const json_t *src; // the object holding type and scaling parameters (root when there is none)
    double top_theta;
    if (get_num(x, root, "", "rope_theta", default_theta, &top_theta)) return -1;
    c->rope_theta = top_theta;
    if (rp) {
        if (!json_is_object(rp)) return ERR(x->e, "%s: 'rope_parameters' must be an object, got %s", x->label, kind(rp));
        if (!get(rp, "rope_type") && !get(rp, "type") && !get(rp, "rope_theta")) {
            // transformers 5 nests one parameter set per attention kind (e.g. {"full_attention": {...}, ...})
            const char *k;
            const json_t *v;
            json_object_foreach((json_t *)rp, k, v) {
                if (json_is_object(v))
                    return ERR(x->e, "%s: 'rope_parameters' holds per-layer-type sets ('%s'); not supported", x->label, k);
            }
        }
        prefix = "rope_parameters.";
        src = rp;
        if (get_num(x, rp, prefix, "rope_theta", top_theta, &c->rope_theta)) return -1;
    } else if (rs) {
        if (!json_is_object(rs)) return ERR(x->e, "%s: 'rope_scaling' must be an object or null, got %s", x->label, kind(rs));
        prefix = "rope_scaling.";
        src = rs;
    } else {
        prefix = "";
        src = root;
    }
    const char *type = NULL, *type_key = "rope_type";
    if (src != root && get_str(x, src, prefix, "rope_type", &type)) return -1;
    if (src != root && !type) {
        type_key = "type";
        if (get_str(x, src, prefix, "type", &type)) return -1;
    }
    double prf;
    if (get_num(x, root, "", "partial_rotary_factor", 1.0, &prf) ||
        get_num(x, src, prefix, "partial_rotary_factor", prf, &prf))
        return -1;
    if (prf != 1.0) {
        if (!(prf > 0 && prf <= 1)) return ERR(x->e, "%s: '%spartial_rotary_factor' = %g must be in (0, 1]", x->label, prefix, prf);
        c->rope_dim = (int64_t)((double)c->head_dim * prf);
    }
    if (!type || !strcmp(type, "default")) return 0;
    if (!strcmp(type, "linear")) {
        c->rope_scaling = ROPE_SCALING_LINEAR;
        return get_req_num(x, src, prefix, "factor", &c->rope_factor);
    }
    if (!strcmp(type, "llama3")) {
        c->rope_scaling = ROPE_SCALING_LLAMA3;
        if (get_req_num(x, src, prefix, "factor", &c->rope_factor) ||
            get_req_num(x, src, prefix, "low_freq_factor", &c->rope_low_freq_factor) ||
            get_req_num(x, src, prefix, "high_freq_factor", &c->rope_high_freq_factor) ||
            get_req_int(x, src, prefix, "original_max_position_embeddings", &c->rope_orig_ctx))
            return -1;
        return 0;
    }
    return ERR(x->e, "%s: '%s%s' = '%s' is not supported (supported: default, linear, llama3)", x->label, prefix,
               type_key, type);
}

// Sliding-window attention: transformers 5 lists it per layer (layer_types); Mistral has sliding_window; Qwen2
// gates it with use_sliding_window and max_window_layers. lossy supports it on all layers or none.
static int parse_window(Ctx *x, const json_t *root, ModelConfig *c) {
    int64_t window;
    if (get_int(x, root, "", "sliding_window", 0, &window)) return -1;
    const json_t *lt = get(root, "layer_types");
    if (lt) {
        if (!json_is_array(lt)) return ERR(x->e, "%s: 'layer_types' must be an array, got %s", x->label, kind(lt));
        size_t n_sliding = 0, n = json_array_size(lt);
        for (size_t i = 0; i < n; i++) {
            const json_t *t = json_array_get(lt, i);
            const char *s = json_is_string(t) ? json_string_value(t) : "";
            if (!strcmp(s, "sliding_attention")) n_sliding++;
            else if (strcmp(s, "full_attention") != 0)
                return ERR(x->e, "%s: layer_types[%zu] = %s%s%s is not supported (full_attention, sliding_attention)",
                           x->label, i, json_is_string(t) ? "'" : "", json_is_string(t) ? s : kind(t),
                           json_is_string(t) ? "'" : "");
        }
        if (n_sliding && n_sliding != n)
            return ERR(x->e, "%s: 'layer_types' mixes sliding and full attention layers (not supported)", x->label);
        if (n_sliding && window <= 0)
            return ERR(x->e, "%s: sliding_attention layers need a positive 'sliding_window'", x->label);
        c->sliding_window = n_sliding ? window : 0;
        return 0;
    }
    if (c->arch == ARCH_QWEN2) {
        bool use;
        int64_t mwl;
        if (get_bool(x, root, "use_sliding_window", false, &use) ||
            get_int(x, root, "", "max_window_layers", c->n_layer, &mwl))
            return -1;
        if (!use || mwl >= c->n_layer) return 0; // transformers: layers with index >= max_window_layers slide
        if (mwl > 0)
            return ERR(x->e, "%s: use_sliding_window with max_window_layers = %lld < %lld layers mixes window and full "
                             "attention (not supported)", x->label, (long long)mwl, (long long)c->n_layer);
        if (window <= 0) return ERR(x->e, "%s: use_sliding_window needs a positive 'sliding_window'", x->label);
        c->sliding_window = window;
        return 0;
    }
    if (window < 0) return ERR(x->e, "%s: 'sliding_window' = %lld must not be negative", x->label, (long long)window);
    c->sliding_window = window;
    return 0;
}

static int parse_llama_like(Ctx *x, const json_t *root, ModelConfig *c) {
    int64_t def_ctx = c->arch == ARCH_QWEN2 ? 32768 : !strcmp(c->model_type, "mistral") ? 131072 : 2048;
    if (get_req_int(x, root, "", "vocab_size", &c->vocab_size) ||
        get_req_int(x, root, "", "hidden_size", &c->n_embd) ||
        get_req_int(x, root, "", "intermediate_size", &c->n_ff) ||
        get_req_int(x, root, "", "num_hidden_layers", &c->n_layer) ||
        get_req_int(x, root, "", "num_attention_heads", &c->n_head) ||
        get_int(x, root, "", "num_key_value_heads", c->n_head, &c->n_head_kv) ||
        get_int(x, root, "", "max_position_embeddings", def_ctx, &c->n_ctx_train) ||
        get_num(x, root, "", "rms_norm_eps", 1e-6, &c->norm_eps))
        return -1;
    if (c->n_head <= 0) return ERR(x->e, "%s: 'num_attention_heads' = %lld must be positive", x->label, (long long)c->n_head);
    if (!get(root, "head_dim") && c->n_embd % c->n_head)
        return ERR(x->e, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld and head_dim is not given",
                   x->label, (long long)c->n_embd, (long long)c->n_head);
    if (get_int(x, root, "", "head_dim", c->n_embd / c->n_head, &c->head_dim)) return -1;
    c->norm = NORM_RMS;
    c->pos = POS_ROPE;
    c->rope_style = ROPE_STYLE_NEOX;
    c->rope_dim = c->head_dim;
    c->mlp = MLP_GATED;
    const char *act;
    if (get_str(x, root, "", "hidden_act", &act)) return -1;
    if (parse_act(x, "hidden_act", act ? act : "silu", &c->act)) return -1;
    if (get_bool(x, root, "tie_word_embeddings", false, &c->tied_embeddings)) return -1;
    if (c->arch == ARCH_QWEN2) {
        c->bias_qkv = true; // Qwen2 attention: q/k/v projections always carry biases, o_proj none
    } else {
        bool ab;
        if (get_bool(x, root, "attention_bias", false, &ab) || get_bool(x, root, "mlp_bias", false, &c->bias_mlp))
            return -1;
        c->bias_qkv = c->bias_o = ab;
    }
    double theta_default = c->arch == ARCH_QWEN2 ? 1e6 : 10000.0;
    if (parse_rope(x, root, theta_default, c)) return -1;
    return parse_window(x, root, c);
}

static int parse_gpt2(Ctx *x, const json_t *root, ModelConfig *c) {
    int64_t n_inner;
    if (get_int(x, root, "", "vocab_size", 50257, &c->vocab_size) ||
        get_int(x, root, "", "n_embd", 768, &c->n_embd) || get_int(x, root, "", "n_layer", 12, &c->n_layer) ||
        get_int(x, root, "", "n_head", 12, &c->n_head) ||
        get_int(x, root, "", "n_ctx", 1024, &c->n_ctx_train) ||
        get_int(x, root, "", "n_positions", c->n_ctx_train, &c->n_ctx_train) ||
        get_int(x, root, "", "n_inner", 0, &n_inner) ||
        get_num(x, root, "", "layer_norm_epsilon", 1e-5, &c->norm_eps))
        return -1;
    if (n_inner < 0) return ERR(x->e, "%s: 'n_inner' = %lld must not be negative", x->label, (long long)n_inner);
    c->n_ff = n_inner ? n_inner : 4 * c->n_embd; // n_inner null means 4 x n_embd
    if (c->n_head <= 0 || c->n_embd % c->n_head)
        return ERR(x->e, "%s: n_embd %lld is not a multiple of n_head %lld", x->label, (long long)c->n_embd,
                   (long long)c->n_head);
    c->n_head_kv = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    const char *act;
    if (get_str(x, root, "", "activation_function", &act)) return -1;
    if (parse_act(x, "activation_function", act ? act : "gelu_new", &c->act)) return -1;
    bool scale_w, scale_inv, tied;
    if (get_bool(x, root, "scale_attn_weights", true, &scale_w) ||
        get_bool(x, root, "scale_attn_by_inverse_layer_idx", false, &scale_inv) ||
        get_bool(x, root, "tie_word_embeddings", true, &tied))
        return -1;
    if (!scale_w) return ERR(x->e, "%s: scale_attn_weights = false is not supported", x->label);
    if (scale_inv) return ERR(x->e, "%s: scale_attn_by_inverse_layer_idx = true is not supported", x->label);
    c->tied_embeddings = tied;
    c->norm = NORM_LAYER;
    c->bias_norm = c->bias_qkv = c->bias_o = c->bias_mlp = true;
    c->pos = POS_LEARNED;
    c->rope_style = ROPE_STYLE_NONE;
    c->mlp = MLP_PLAIN;
    return 0;
}

static int dtype_from_torch(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "float32")) return DT_F32;
    if (!strcmp(s, "float16")) return DT_F16;
    if (!strcmp(s, "bfloat16")) return DT_BF16;
    return -1;
}

static json_t *load_json(Ctx *x, const char *text, size_t len, const char *file) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        ERR(x->e, "%s: %s is not valid JSON (line %d, column %d): %s", x->label, file, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        ERR(x->e, "%s: %s must hold a JSON object, got %s", x->label, file, kind(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

static int parse_root(Ctx *x, const json_t *root, const json_t *gen, ModelConfig *c) {
    const char *mt;
    if (get_str(x, root, "", "model_type", &mt)) return -1;
    const json_t *archs = get(root, "architectures");
    const char *arch0 = NULL;
    if (archs) {
        if (!json_is_array(archs) || json_array_size(archs) == 0 || !json_is_string(json_array_get(archs, 0)))
            return ERR(x->e, "%s: 'architectures' must be a non-empty list of strings", x->label);
        arch0 = json_string_value(json_array_get(archs, 0));
        if (!str_ends_with(arch0, "ForCausalLM") && !str_ends_with(arch0, "LMHeadModel"))
            return ERR(x->e, "%s: architectures[0] = '%s' is not a causal language model", x->label, arch0);
    }
    if (!mt && arch0) {
        static const char *map[][2] = {{"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"},
                                       {"Qwen2ForCausalLM", "qwen2"}, {"GPT2LMHeadModel", "gpt2"}};
        for (size_t i = 0; i < sizeof map / sizeof *map; i++)
            if (!strcmp(arch0, map[i][0])) mt = map[i][1];
        if (!mt) return ERR(x->e, "%s: no model_type, and architectures[0] = '%s' is not supported", x->label, arch0);
    }
    if (!mt) return ERR(x->e, "%s: 'model_type' is missing", x->label);
    if (!strcmp(mt, "llama") || !strcmp(mt, "mistral")) c->arch = ARCH_LLAMA;
    else if (!strcmp(mt, "qwen2")) c->arch = ARCH_QWEN2;
    else if (!strcmp(mt, "gpt2")) c->arch = ARCH_GPT2;
    else
        return ERR(x->e, "%s: model_type = '%s' is not supported (supported: llama, mistral, qwen2, gpt2)", x->label, mt);
    snprintf(c->arch_name, sizeof c->arch_name, "%s", model_arch_name(c->arch));
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    if ((c->arch == ARCH_GPT2 ? parse_gpt2 : parse_llama_like)(x, root, c)) return -1;

    const char *dt;
    if (get_str(x, root, "", "dtype", &dt)) return -1;
    if (!dt && get_str(x, root, "", "torch_dtype", &dt)) return -1;
    c->dtype = dtype_from_torch(dt);

    // generate() takes its special ids from generation_config.json when it has them
    int64_t bos[MODEL_MAX_EOS];
    int n_bos = 0;
    if (parse_ids(x, root, "config.json", "bos_token_id", bos, &n_bos, MODEL_MAX_EOS) ||
        parse_ids(x, root, "config.json", "eos_token_id", c->eos_ids, &c->n_eos, MODEL_MAX_EOS))
        return -1;
    if (gen && (parse_ids(x, gen, "generation_config.json", "bos_token_id", bos, &n_bos, MODEL_MAX_EOS) ||
                parse_ids(x, gen, "generation_config.json", "eos_token_id", c->eos_ids, &c->n_eos, MODEL_MAX_EOS)))
        return -1;
    if (n_bos > 1) return ERR(x->e, "%s: bos_token_id lists %d ids, expected one", x->label, n_bos);
    c->bos_id = n_bos ? bos[0] : -1;
    // Ids outside the vocabulary can never be sampled (tiny test models keep GPT-2's 50256): treat them as unset.
    if (c->bos_id >= c->vocab_size) c->bos_id = -1;
    int kept = 0;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < c->vocab_size) c->eos_ids[kept++] = c->eos_ids[i];
    c->n_eos = kept;
    return model_config_validate(c, x->label, x->e);
}

int hfconfig_parse(const char *config_json, size_t config_len, const char *gen_json, size_t gen_len,
                   const char *label, ModelConfig *c, Err *e) {
    Ctx x = {label ? label : "config.json", e};
    model_config_init(c);
    json_t *root = load_json(&x, config_json, config_len, "config.json");
    if (!root) return -1;
    json_t *gen = NULL;
    if (gen_json) {
        gen = load_json(&x, gen_json, gen_len, "generation_config.json");
        if (!gen) {
            json_decref(root);
            return -1;
        }
    }
    int rc = parse_root(&x, root, gen, c);
    json_decref(root);
    if (gen) json_decref(gen);
    return rc;
}

int hfconfig_load_dir(const char *dir, ModelConfig *c, Err *e) {
    Buf p;
    buf_init(&p);
    buf_printf(&p, "%s/config.json", dir);
    char *cfg = NULL, *gen = NULL;
    size_t cfg_len = 0, gen_len = 0;
    int rc = file_read_all(p.data, &cfg, &cfg_len, e);
    if (rc == 0) {
        p.len = 0;
        buf_printf(&p, "%s/generation_config.json", dir);
        if (path_exists(p.data)) rc = file_read_all(p.data, &gen, &gen_len, e);
    }
    if (rc == 0) rc = hfconfig_parse(cfg, cfg_len, gen, gen_len, dir, c, e);
    free(cfg);
    free(gen);
    buf_free(&p);
    return rc;
}
