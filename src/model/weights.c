// weights.c — WeightTable and the per-format name mappings (see weights.h).
#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

void weights_init(WeightTable *w) { memset(w, 0, sizeof *w); }

void weights_free(WeightTable *w) {
    for (size_t i = 0; i < w->n; i++) free((char *)w->t[i].name), free((char *)w->t[i].src_name);
    free(w->t);
    for (size_t i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    memset(w, 0, sizeof *w);
}

void weights_own(WeightTable *w, void *buf) {
    w->owned = xrealloc(w->owned, (w->n_owned + 1) * sizeof *w->owned);
    w->owned[w->n_owned++] = buf;
}

const Tensor *weights_find(const WeightTable *w, const char *name) {
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return &w->t[i];
    return NULL;
}

int weights_add(WeightTable *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne, const void *data,
                size_t nbytes, Err *e) {
    if (weights_find(w, name)) return ERR(e, "tensor '%s' appears twice", name);
    if (n_dims == 0 || n_dims > 4) return ERR(e, "tensor '%s' has %u dimensions", name, n_dims);
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->t = xrealloc(w->t, w->cap * sizeof *w->t);
    }
    Tensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

int weights_from_gguf(WeightTable *w, const GGUFFile *g, Err *e) {
    for (size_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensor *gt = &g->tensors[i];
        if (weights_add(w, gt->name, gt->type, gt->n_dims, gt->ne, gt->data, gt->nbytes, e)) return -1;
    }
    return 0;
}

// ---- Hugging Face names ----

// One table per naming serves both directions: weights_map_hf_name reads it hf → gguf, weights_hf_name_of
// gguf → hf (for errors about a missing tensor).
typedef struct NameRule {
    const char *hf;   // suffix after the layer prefix (per-layer) or the whole name (global)
    const char *gguf; // GGUF name (per-layer: after "blk.N.")
    int transpose;    // 1: GPT-2 Conv1D stores (in, out); FUSED_PART: read gguf → hf only (see GPT2_LAYER)
} NameRule;
#define FUSED_PART 2

static const NameRule LLAMA_GLOBAL[] = {
    {"model.embed_tokens.weight", "token_embd.weight", 0},
    {"model.norm.weight", "output_norm.weight", 0},
    {"lm_head.weight", "output.weight", 0},
    {NULL, NULL, 0},
};
static const NameRule LLAMA_LAYER[] = {
    {"input_layernorm.weight", "attn_norm.weight", 0},
    {"self_attn.q_proj.weight", "attn_q.weight", 0},       {"self_attn.q_proj.bias", "attn_q.bias", 0},
    {"self_attn.k_proj.weight", "attn_k.weight", 0},       {"self_attn.k_proj.bias", "attn_k.bias", 0},
    {"self_attn.v_proj.weight", "attn_v.weight", 0},       {"self_attn.v_proj.bias", "attn_v.bias", 0},
    {"self_attn.o_proj.weight", "attn_output.weight", 0},  {"self_attn.o_proj.bias", "attn_output.bias", 0},
    {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
    {"mlp.gate_proj.weight", "ffn_gate.weight", 0},        {"mlp.gate_proj.bias", "ffn_gate.bias", 0},
    {"mlp.up_proj.weight", "ffn_up.weight", 0},            {"mlp.up_proj.bias", "ffn_up.bias", 0},
    {"mlp.down_proj.weight", "ffn_down.weight", 0},        {"mlp.down_proj.bias", "ffn_down.bias", 0},
    {NULL, NULL, 0},
};
static const NameRule GPT2_GLOBAL[] = {
    {"wte.weight", "token_embd.weight", 0}, {"wpe.weight", "position_embd.weight", 0},
    {"ln_f.weight", "output_norm.weight", 0}, {"ln_f.bias", "output_norm.bias", 0},
    {"lm_head.weight", "output.weight", 0},
    {NULL, NULL, 0},
};
static const NameRule GPT2_LAYER[] = {
    {"ln_1.weight", "attn_norm.weight", 0},        {"ln_1.bias", "attn_norm.bias", 0},
    {"attn.c_attn.weight", "attn_qkv.weight", 1},  {"attn.c_attn.bias", "attn_qkv.bias", 0},
    // without attn_qkv the binder looks for separate q/k/v: what the file lacks is still the fused c_attn
    {"attn.c_attn.weight", "attn_q.weight", FUSED_PART}, {"attn.c_attn.weight", "attn_k.weight", FUSED_PART},
    {"attn.c_attn.weight", "attn_v.weight", FUSED_PART}, {"attn.c_attn.bias", "attn_q.bias", FUSED_PART},
    {"attn.c_attn.bias", "attn_k.bias", FUSED_PART},     {"attn.c_attn.bias", "attn_v.bias", FUSED_PART},
    {"attn.c_proj.weight", "attn_output.weight", 1}, {"attn.c_proj.bias", "attn_output.bias", 0},
    {"ln_2.weight", "ffn_norm.weight", 0},         {"ln_2.bias", "ffn_norm.bias", 0},
    {"mlp.c_fc.weight", "ffn_up.weight", 1},       {"mlp.c_fc.bias", "ffn_up.bias", 0},
    {"mlp.c_proj.weight", "ffn_down.weight", 1},   {"mlp.c_proj.bias", "ffn_down.bias", 0},
    {NULL, NULL, 0},
};

#define GPT2_MODULE "transformer." // GPT2LMHeadModel's body; checkpoints saved from GPT2Model lack it

static const char *layer_prefix(int gpt2) { return gpt2 ? "h." : "model.layers."; }

int weights_map_hf_name(const char *hf, int gpt2, char *out, size_t out_len, int *transpose) {
    *transpose = 0;
    const char *name = hf;
    if (gpt2 && str_starts_with(name, GPT2_MODULE)) name += strlen(GPT2_MODULE);
    const NameRule *global = gpt2 ? GPT2_GLOBAL : LLAMA_GLOBAL, *layer = gpt2 ? GPT2_LAYER : LLAMA_LAYER;
    for (const NameRule *r = global; r->hf; r++)
        if (r->transpose != FUSED_PART && strcmp(name, r->hf) == 0) {
            snprintf(out, out_len, "%s", r->gguf);
            *transpose = r->transpose;
            return 1;
        }
    const char *prefix = layer_prefix(gpt2);
    if (str_starts_with(name, prefix)) {
        const char *p = name + strlen(prefix);
        char *end;
        long idx = strtol(p, &end, 10);
        if (end != p && *end == '.' && idx >= 0 && idx < 100000) {
            const char *rest = end + 1;
            for (const NameRule *r = layer; r->hf; r++)
                if (r->transpose != FUSED_PART && strcmp(rest, r->hf) == 0) {
                    snprintf(out, out_len, "blk.%ld.%s", idx, r->gguf);
                    *transpose = r->transpose;
                    return 1;
                }
            // buffers that are not weights
            if (strstr(rest, "rotary_emb.inv_freq") || (gpt2 && (strcmp(rest, "attn.bias") == 0 || strcmp(rest, "attn.masked_bias") == 0)))
                return 0;
        }
    }
    return -1;
}

int weights_hf_name_of(const WeightTable *w, const char *gguf, int gpt2, char *out, size_t out_len) {
    const char *module = "";
    for (size_t i = 0; gpt2 && i < w->n; i++)
        if (w->t[i].src_name && str_starts_with(w->t[i].src_name, GPT2_MODULE)) {
            module = GPT2_MODULE;
            break;
        }
    const NameRule *global = gpt2 ? GPT2_GLOBAL : LLAMA_GLOBAL, *layer = gpt2 ? GPT2_LAYER : LLAMA_LAYER;
    for (const NameRule *r = global; r->hf; r++)
        if (strcmp(gguf, r->gguf) == 0) { // lm_head sits beside the transformer module, not in it
            snprintf(out, out_len, "%s%s", strcmp(r->hf, "lm_head.weight") == 0 ? "" : module, r->hf);
            return 1;
        }
    if (!str_starts_with(gguf, "blk.")) return 0;
    const char *p = gguf + strlen("blk.");
    char *end;
    long idx = strtol(p, &end, 10);
    if (end == p || *end != '.' || idx < 0) return 0;
    for (const NameRule *r = layer; r->hf; r++)
        if (strcmp(end + 1, r->gguf) == 0) {
            snprintf(out, out_len, "%s%s%ld.%s", module, layer_prefix(gpt2), idx, r->hf);
            return 1;
        }
    return 0;
}

const char *weights_label(const char *name, const char *src, char *buf, size_t buf_len) {
    if (src) snprintf(buf, buf_len, "'%s' (%s)", src, name);
    else snprintf(buf, buf_len, "'%s'", name);
    return buf;
}

int weights_from_safetensors(WeightTable *w, const SafeTensors *st, int gpt2, Err *e) {
    for (size_t i = 0; i < st->n_tensors; i++) {
        const STTensor *s = &st->tensors[i];
        char name[256];
        int transpose;
        int m = weights_map_hf_name(s->name, gpt2, name, sizeof name, &transpose);
        if (m == 0) continue;
        if (m < 0) return ERR(e, "unknown tensor '%s' for a %s model", s->name, gpt2 ? "GPT-2" : "Llama-family");
        const Tensor *twin = weights_find(w, name); // e.g. GPT-2's 'h.0.ln_1.weight' and 'transformer.h.0.ln_1.weight'
        if (twin) return ERR(e, "tensors '%s' and '%s' are both %s", twin->src_name ? twin->src_name : twin->name, s->name, name);
        if (s->dtype != DT_F32 && s->dtype != DT_F16 && s->dtype != DT_BF16)
            return ERR(e, "tensor '%s' has dtype %s; weights must be F32, F16 or BF16", s->name, st_dtype_name(s->st_dtype));
        if (s->ndim < 1 || s->ndim > 2) return ERR(e, "tensor '%s' has %u dimensions, expected 1 or 2", s->name, s->ndim);
        int64_t ne[2];
        // row-major shape (rows, cols) → GGML ne = (cols, rows)
        ne[0] = s->shape[s->ndim - 1];
        ne[1] = s->ndim == 2 ? s->shape[0] : 1;
        const void *data = s->data;
        if (transpose) {
            if (s->ndim != 2) return ERR(e, "tensor '%s': expected a matrix to transpose", s->name);
            // Conv1D (in, out): the stored rows are inputs; make rows the outputs
            size_t esz = s->nbytes / s->n_elements;
            int64_t rows = s->shape[0], cols = s->shape[1];
            uint8_t *tbuf = xmalloc(s->nbytes);
            const uint8_t *src = s->data;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++)
                    memcpy(tbuf + ((size_t)c * (size_t)rows + (size_t)r) * esz, src + ((size_t)r * (size_t)cols + (size_t)c) * esz, esz);
            weights_own(w, tbuf);
            data = tbuf;
            ne[0] = rows;
            ne[1] = cols;
        }
        if (weights_add(w, name, (uint32_t)s->dtype, s->ndim == 2 ? 2 : 1, ne, data, s->nbytes, e)) return -1;
        if (strcmp(name, s->name) != 0) w->t[w->n - 1].src_name = xstrdup(s->name);
    }
    return 0;
}
