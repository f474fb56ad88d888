// llama2c.c — llama2.c checkpoint reader: header versions 0/1/2, layout with exact size check (see llama2c.h).
#include "llama2c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Per-layer tensor kinds, with their GGUF suffix.
typedef enum Kind { K_ATTN_NORM, K_Q, K_K, K_V, K_O, K_FFN_NORM, K_GATE, K_DOWN, K_UP } Kind;
static const char *KIND_NAME[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                  "ffn_norm",  "ffn_gate", "ffn_down", "ffn_up"};

typedef struct Layout {
    Llama2cFile *f;
    size_t off; // next byte to assign
    Err *e;
} Layout;

static int emit(Layout *L, const char *name, int64_t ne0, int64_t ne1, uint32_t n_dims, bool q8) {
    Llama2cFile *f = L->f;
    size_t n, nbytes, total;
    if (!size_mul((size_t)ne0, (size_t)ne1, &n)) return ERR(L->e, "%s: tensor %s: size overflows", f->name, name);
    if (q8) {
        if (n % (size_t)f->group_size)
            return ERR(L->e, "%s: tensor %s has %zu elements, not a multiple of group size %d", f->name, name, n,
                       f->group_size);
        nbytes = n;
        if (!size_mul(n / (size_t)f->group_size, 4, &total) || !size_add(total, nbytes, &total))
            return ERR(L->e, "%s: tensor %s: size overflows", f->name, name);
    } else {
        if (!size_mul(n, 4, &nbytes)) return ERR(L->e, "%s: tensor %s: size overflows", f->name, name);
        total = nbytes;
    }
    size_t end;
    if (!size_add(L->off, total, &end) || end > f->size)
        return ERR(L->e, "%s: truncated: tensor %s needs %zu bytes at offset %zu but the file has %zu (version %d, "
                         "dim %d, hidden_dim %d, layers %d, heads %d/%d, vocab %d, seq_len %d)",
                   f->name, name, total, L->off, f->size, f->version, f->dim,
                   f->hidden_dim, f->n_layers, f->n_heads, f->n_kv_heads, f->vocab_size, f->seq_len);
    L2CTensor *t = &f->tensors[f->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = q8 ? DT_I8 : DT_F32;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->n_elements = n;
    t->data = f->base + L->off;
    t->nbytes = nbytes;
    t->offset = L->off;
    if (q8) t->scales = f->base + L->off + nbytes;
    L->off = end;
    return 0;
}

static int emit_layers(Layout *L, Kind k, bool q8) {
    const Llama2cFile *f = L->f;
    int64_t dim = f->dim, hs = f->dim / f->n_heads, kv = hs * f->n_kv_heads, hid = f->hidden_dim;
    int64_t ne0, ne1 = 1;
    uint32_t nd = 2;
    switch (k) {
    case K_ATTN_NORM: case K_FFN_NORM: ne0 = dim; nd = 1; break;
    case K_Q: case K_O: ne0 = dim; ne1 = dim; break;
    case K_K: case K_V: ne0 = dim; ne1 = kv; break;
    case K_GATE: case K_UP: ne0 = dim; ne1 = hid; break;
    case K_DOWN: ne0 = hid; ne1 = dim; break;
    default: return -1;
    }
    for (int32_t l = 0; l < f->n_layers; l++) {
        char name[40];
        snprintf(name, sizeof name, "blk.%d.%s.weight", (int)l, KIND_NAME[k]);
        if (emit(L, name, ne0, ne1, nd, q8)) return -1;
    }
    return 0;
}

static int layout(Llama2cFile *f, Err *e) {
    Layout L = {f, f->version == 0 ? 28 : LLAMA2C_HEADER_V, e};
    // At most 9 tensors per layer + 4 others; n_layers is bounded by the caller.
    f->tensors = xcalloc((size_t)f->n_layers * 9 + 4, sizeof *f->tensors);
    int64_t dim = f->dim, vocab = f->vocab_size;
    bool q8 = f->version == 2;
    if (f->version == 0) {
        if (emit(&L, "token_embd.weight", dim, vocab, 2, false)) return -1;
        static const Kind order[] = {K_ATTN_NORM, K_Q, K_K, K_V, K_O, K_FFN_NORM, K_GATE, K_DOWN, K_UP};
        for (size_t i = 0; i < sizeof order / sizeof *order; i++)
            if (emit_layers(&L, order[i], false)) return -1;
        if (emit(&L, "output_norm.weight", dim, 1, 1, false)) return -1;
        // two obsolete rope tables (real and imaginary parts), seq_len x head_size/2 f32 each: skipped
        size_t skip, end;
        if (!size_mul((size_t)f->seq_len, (size_t)(dim / f->n_heads / 2), &skip) || !size_mul(skip, 8, &skip) ||
            !size_add(L.off, skip, &end) || end > f->size)
            return ERR(e, "%s: truncated: the legacy rope tables (seq_len %d) run past the end of the file (%zu bytes)",
                       f->name, f->seq_len, f->size);
        L.off = end;
        if (!f->shared_classifier && emit(&L, "output.weight", dim, vocab, 2, false)) return -1;
    } else {
        if (emit_layers(&L, K_ATTN_NORM, false) || emit_layers(&L, K_FFN_NORM, false) ||
            emit(&L, "output_norm.weight", dim, 1, 1, false) || emit(&L, "token_embd.weight", dim, vocab, 2, q8))
            return -1;
        static const Kind order[] = {K_Q, K_K, K_V, K_O, K_GATE, K_DOWN, K_UP};
        for (size_t i = 0; i < sizeof order / sizeof *order; i++)
            if (emit_layers(&L, order[i], q8)) return -1;
        if (!f->shared_classifier && emit(&L, "output.weight", dim, vocab, 2, q8)) return -1;
    }
    if (L.off != f->size)
        return ERR(e, "%s: file is %zu bytes but a version %d checkpoint with these dimensions (dim %d, hidden_dim %d, "
                      "layers %d, heads %d/%d, vocab %d%s, seq_len %d) takes %zu: wrong header or corrupt file",
                   f->name, f->size, f->version, f->dim, f->hidden_dim, f->n_layers, f->n_heads, f->n_kv_heads,
                   f->vocab_size, f->shared_classifier ? " shared" : " separate", f->seq_len, L.off);
    return 0;
}

void llama2c_close(Llama2cFile *f) {
    filemap_close(&f->map);
    free(f->tensors);
    free(f->name);
    memset(f, 0, sizeof *f);
}

// f is zeroed, except for the map when opened from a path.
static int parse_into(Llama2cFile *f, const uint8_t *data, size_t size, const char *name, Err *e) {
    f->base = data;
    f->size = size;
    f->name = xstrdup(name ? name : "llama2.c checkpoint");
    int32_t p[7];
    if (size >= 8 && load_u32le(data) == LLAMA2C_MAGIC) {
        int32_t v = (int32_t)load_u32le(data + 4);
        if (v != 1 && v != 2) {
            ERR(e, "%s: llama2.c checkpoint version %d is not supported (supported: legacy, 1, 2)", f->name, (int)v);
            goto fail;
        }
        if (size < LLAMA2C_HEADER_V) {
            ERR(e, "%s: truncated: %zu bytes, shorter than the %d-byte version %d header", f->name, size,
                LLAMA2C_HEADER_V, (int)v);
            goto fail;
        }
        f->version = v;
        for (int i = 0; i < 7; i++) p[i] = (int32_t)load_u32le(data + 8 + 4 * i);
        uint8_t flag = data[36];
        if (flag > 1) {
            ERR(e, "%s: shared_classifier flag is %u, expected 0 or 1", f->name, flag);
            goto fail;
        }
        f->shared_classifier = flag;
        if (v == 2) {
            f->group_size = (int32_t)load_u32le(data + 37);
            if (f->group_size <= 0) {
                ERR(e, "%s: group size %d must be positive", f->name, (int)f->group_size);
                goto fail;
            }
        }
        if (p[5] <= 0) {
            ERR(e, "%s: vocab_size %d must be positive in a version %d header", f->name, (int)p[5], (int)v);
            goto fail;
        }
    } else {
        if (size < 28) {
            ERR(e, "%s: %zu bytes is too small for a llama2.c checkpoint (28-byte legacy header)", f->name, size);
            goto fail;
        }
        for (int i = 0; i < 7; i++) p[i] = (int32_t)load_u32le(data + 4 * i);
        f->shared_classifier = p[5] > 0; // legacy: negative vocab_size flags a separate classifier
        if (p[5] < 0) p[5] = p[5] == INT32_MIN ? 0 : -p[5];
    }
    f->dim = p[0], f->hidden_dim = p[1], f->n_layers = p[2], f->n_heads = p[3], f->n_kv_heads = p[4];
    f->vocab_size = p[5], f->seq_len = p[6];
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++)
        if (p[i] <= 0) {
            ERR(e, "%s: header %s = %d must be positive (not a llama2.c checkpoint?)", f->name, names[i], (int)p[i]);
            goto fail;
        }
    // seq_len sizes nothing in versions 1 and 2, so the file size cannot vouch for it
    if (f->n_layers > 4096 || f->seq_len > (1 << 26)) {
        ERR(e, "%s: header n_layers = %d or seq_len = %d is implausible", f->name, (int)f->n_layers, (int)f->seq_len);
        goto fail;
    }
    if (f->dim % f->n_heads || f->n_kv_heads > f->n_heads || f->n_heads % f->n_kv_heads || (f->dim / f->n_heads) % 2) {
        ERR(e, "%s: header dim %d, n_heads %d, n_kv_heads %d are inconsistent (dim must split into heads of even size, "
               "heads into kv groups)", f->name, (int)f->dim, (int)f->n_heads, (int)f->n_kv_heads);
        goto fail;
    }
    if (layout(f, e) != 0) goto fail;
    return 0;
fail:
    llama2c_close(f);
    return -1;
}

int llama2c_parse(Llama2cFile *f, const uint8_t *data, size_t size, const char *name, Err *e) {
    memset(f, 0, sizeof *f);
    return parse_into(f, data, size, name, e);
}

int llama2c_open(Llama2cFile *f, const char *path, Err *e) {
    memset(f, 0, sizeof *f);
    if (filemap_open(&f->map, path, e) != 0) return -1;
    return parse_into(f, f->map.data, f->map.size, path, e);
}

const L2CTensor *llama2c_find(const Llama2cFile *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

int llama2c_model_config(const Llama2cFile *f, ModelConfig *c, Err *e) {
    model_config_init(c);
    c->arch = ARCH_LLAMA;
    snprintf(c->arch_name, sizeof c->arch_name, "llama");
    snprintf(c->model_type, sizeof c->model_type, "llama2.c");
    c->vocab_size = f->vocab_size;
    c->n_embd = f->dim;
    c->n_ff = f->hidden_dim;
    c->n_layer = f->n_layers;
    c->n_head = f->n_heads;
    c->n_head_kv = f->n_kv_heads;
    c->head_dim = f->dim / f->n_heads;
    c->n_ctx_train = f->seq_len;
    c->norm = NORM_RMS;
    c->norm_eps = 1e-5;
    c->pos = POS_ROPE;
    c->rope_style = ROPE_STYLE_INTERLEAVED;
    c->rope_dim = c->head_dim;
    c->rope_theta = 10000.0;
    c->mlp = MLP_GATED;
    c->act = ACT_SILU;
    c->tied_embeddings = f->shared_classifier;
    c->bos_id = f->vocab_size > 1 ? 1 : -1;
    if (f->vocab_size > 2) c->eos_ids[c->n_eos++] = 2;
    if (f->vocab_size > 1) c->eos_ids[c->n_eos++] = 1;
    c->dtype = f->version == 2 ? DT_I8 : DT_F32;
    return model_config_validate(c, f->name, e);
}

void llama2c_dequantize(const Llama2cFile *f, const L2CTensor *t, float *out) {
    if (t->type == DT_F32) {
        memcpy(out, t->data, t->nbytes);
        return;
    }
    const int8_t *q = t->data;
    const uint8_t *s = t->scales;
    size_t gs = (size_t)f->group_size;
    for (size_t g = 0; g < t->n_elements / gs; g++) {
        uint32_t u = load_u32le(s + 4 * g);
        float scale;
        memcpy(&scale, &u, 4);
        for (size_t i = g * gs; i < (g + 1) * gs; i++) out[i] = (float)q[i] * scale;
    }
}
