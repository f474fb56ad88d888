// model.c — loading, weight binding and the inference forward pass of the one transformer (see model.h).
//
// Per token (llm.c style, every step visible):
//   x = tok_embd[token] (+ position_embd[pos])
//   per layer: xb = norm(x); q,k,v = Wq/Wk/Wv xb (+b) or split(Wqkv xb + b); rope(q, k); cache k, v;
//              x += Wo attention(q, cache) (+b); xb = norm(x); x += Wdown act(Wgate xb) * (Wup xb)   (gated)
//                                                              or x += Wdown act(Wup xb + b) + b     (plain)
//   logits = Woutput norm(x)
// Matrix products run on the thread pool, rows split across threads; activations are quantized once per product.
#include "model/model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "formats/hfconfig.h"
#include "formats/llama2c.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/norm.h"
#include "kernels/quant.h"
#include "kernels/rope.h"

// ---------------------------------------------------------------------------------------------------------------
// binding

typedef struct Binder {
    Model *m;
    Err *e;
    int failed;
} Binder;

static const Tensor *find_or_fail(Binder *b, const char *name, bool required) {
    const Tensor *t = weights_find(&b->m->w, name);
    if (!t && required && !b->failed) {
        ERR(b->e, "missing tensor '%s'", name);
        b->failed = 1;
    }
    return t;
}

// A small f32 vector (norm weight, bias) of n elements; converted from F16/BF16 into an owned buffer if needed.
static const float *bind_vec(Binder *b, const char *name, int64_t n, bool required) {
    if (b->failed) return NULL;
    const Tensor *t = find_or_fail(b, name, required);
    if (!t) return NULL;
    int64_t count = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if (count != n) {
        ERR(b->e, "tensor '%s' has %lld elements, expected %lld", name, (long long)count, (long long)n);
        b->failed = 1;
        return NULL;
    }
    if (t->type == DT_F32) return t->data;
    if (!quant_can_dequantize((DType)t->type)) {
        ERR(b->e, "tensor '%s' has unsupported type %s", name, dtype_name(t->type));
        b->failed = 1;
        return NULL;
    }
    float *buf = xmalloc_array((size_t)n, sizeof(float));
    if (quant_dequantize_row((DType)t->type, t->data, buf, n, b->e)) {
        free(buf);
        err_prefix(b->e, "tensor '%s': ", name);
        b->failed = 1;
        return NULL;
    }
    weights_own(&b->m->w, buf);
    return buf;
}

// A matrix used as y (out) = W x (in).
static const Tensor *bind_mat(Binder *b, const char *name, int64_t in, int64_t out, bool required) {
    if (b->failed) return NULL;
    const Tensor *t = find_or_fail(b, name, required);
    if (!t) return NULL;
    if (t->ne[0] != in || tensor_rows(t) != out) {
        ERR(b->e, "tensor '%s' has shape %lld x %lld, expected %lld x %lld (in x out)", name, (long long)t->ne[0],
            (long long)tensor_rows(t), (long long)in, (long long)out);
        b->failed = 1;
        return NULL;
    }
    if (!matvec_supports((DType)t->type)) {
        ERR(b->e, "tensor '%s' has type %s, which lossy cannot compute with yet", name, dtype_name(t->type));
        b->failed = 1;
        return NULL;
    }
    return t;
}

static int bind_weights(Model *m, Err *e) {
    const ModelConfig *c = &m->cfg;
    Binder b = {m, e, 0};
    const int64_t C = c->n_embd, F = c->n_ff, hd = c->head_dim, H = c->n_head, Hkv = c->n_head_kv;
    m->tok_embd = bind_mat(&b, "token_embd.weight", C, c->vocab_size, true);
    if (c->pos == POS_LEARNED) m->pos_embd = bind_mat(&b, "position_embd.weight", C, c->n_ctx_train, true);
    m->output_norm = bind_vec(&b, "output_norm.weight", C, true);
    if (c->bias_norm) m->output_norm_b = bind_vec(&b, "output_norm.bias", C, true);
    m->output = c->tied_embeddings ? m->tok_embd : bind_mat(&b, "output.weight", C, c->vocab_size, true);
    m->layers = xcalloc((size_t)c->n_layer, sizeof *m->layers);
    char name[128];
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%lld." fmt, (long long)l), name)
    for (int64_t l = 0; l < c->n_layer && !b.failed; l++) {
        ModelLayer *L = &m->layers[l];
        L->attn_norm = bind_vec(&b, NAME("attn_norm.weight"), C, true);
        if (c->bias_norm) L->attn_norm_b = bind_vec(&b, NAME("attn_norm.bias"), C, true);
        if (weights_find(&m->w, NAME("attn_qkv.weight"))) {
            L->wqkv = bind_mat(&b, NAME("attn_qkv.weight"), C, (H + 2 * Hkv) * hd, true);
            if (c->bias_qkv) L->bqkv = bind_vec(&b, NAME("attn_qkv.bias"), (H + 2 * Hkv) * hd, true);
        } else {
            L->wq = bind_mat(&b, NAME("attn_q.weight"), C, H * hd, true);
            L->wk = bind_mat(&b, NAME("attn_k.weight"), C, Hkv * hd, true);
            L->wv = bind_mat(&b, NAME("attn_v.weight"), C, Hkv * hd, true);
            if (c->bias_qkv) {
                L->bq = bind_vec(&b, NAME("attn_q.bias"), H * hd, true);
                L->bk = bind_vec(&b, NAME("attn_k.bias"), Hkv * hd, true);
                L->bv = bind_vec(&b, NAME("attn_v.bias"), Hkv * hd, true);
            }
        }
        L->wo = bind_mat(&b, NAME("attn_output.weight"), H * hd, C, true);
        if (c->bias_o) L->bo = bind_vec(&b, NAME("attn_output.bias"), C, true);
        L->ffn_norm = bind_vec(&b, NAME("ffn_norm.weight"), C, true);
        if (c->bias_norm) L->ffn_norm_b = bind_vec(&b, NAME("ffn_norm.bias"), C, true);
        if (c->mlp == MLP_GATED) L->w_gate = bind_mat(&b, NAME("ffn_gate.weight"), C, F, true);
        L->w_up = bind_mat(&b, NAME("ffn_up.weight"), C, F, true);
        L->w_down = bind_mat(&b, NAME("ffn_down.weight"), F, C, true);
        if (c->bias_mlp) {
            if (c->mlp == MLP_GATED) L->b_gate = bind_vec(&b, NAME("ffn_gate.bias"), F, true);
            L->b_up = bind_vec(&b, NAME("ffn_up.bias"), F, true);
            L->b_down = bind_vec(&b, NAME("ffn_down.bias"), C, true);
        }
    }
#undef NAME
    if (b.failed) return -1;
    if (c->pos == POS_ROPE) {
        int64_t half = c->rope_dim / 2;
        double *f = xmalloc_array((size_t)half, sizeof(double));
        model_config_rope_inv_freq(c, f);
        if (c->rope_freqs_tensor) {
            const float *div = bind_vec(&b, "rope_freqs.weight", half, true);
            if (!div) {
                free(f);
                return -1;
            }
            for (int64_t i = 0; i < half; i++) f[i] /= div[i];
        }
        weights_own(&m->w, f);
        m->inv_freq = f;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// loading

static int load_gguf(Model *m, const char *path, Err *e) {
    if (gguf_open(&m->gguf, path, e)) return -1;
    m->format = MODEL_FORMAT_GGUF;
    if (model_config_from_gguf(&m->gguf, &m->cfg, e)) return -1;
    return weights_from_gguf(&m->w, &m->gguf, e);
}

static int load_hf(Model *m, const char *dir, Err *e) {
    if (hfconfig_load_dir(dir, &m->cfg, e)) return -1;
    if (st_open_dir(&m->st, dir, e)) return -1;
    m->format = MODEL_FORMAT_HF;
    return weights_from_safetensors(&m->w, &m->st, m->cfg.arch == ARCH_GPT2, e);
}

// llama2.c checkpoints: f32 tensors as views, version-2 int8 groups dequantized to f32 (their f32 group scales
// have no exact GGML block equivalent).
static int load_llama2c(Model *m, const char *path, Err *e) {
    Llama2cFile *f = xcalloc(1, sizeof *f);
    if (llama2c_open(f, path, e)) {
        free(f);
        return -1;
    }
    m->l2c = f;
    m->format = MODEL_FORMAT_LLAMA2C;
    if (llama2c_model_config(f, &m->cfg, e)) return -1;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const L2CTensor *t = &f->tensors[i];
        const void *data = t->data;
        size_t nbytes = t->nbytes;
        if (t->type != DT_F32) {
            float *buf = xmalloc_array((size_t)t->n_elements, sizeof(float));
            llama2c_dequantize(f, t, buf);
            weights_own(&m->w, buf);
            data = buf;
            nbytes = (size_t)t->n_elements * sizeof(float);
        }
        if (weights_add(&m->w, t->name, DT_F32, t->n_dims, t->ne, data, nbytes, e)) return -1;
    }
    return 0;
}

int model_load(Model *m, const char *path, Err *e) {
    memset(m, 0, sizeof *m);
    model_config_init(&m->cfg);
    weights_init(&m->w);
    m->path = xstrdup(path);
    int rc;
    if (path_is_dir(path)) {
        rc = load_hf(m, path, e);
    } else {
        uint8_t magic[4] = {0};
        FILE *f = fopen(path, "rb");
        if (!f) return ERR(e, "cannot open '%s': %s", path, strerror(errno)), model_free(m), -1;
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        if (got == 4 && memcmp(magic, "GGUF", 4) == 0) rc = load_gguf(m, path, e);
        else if (str_ends_with(path, ".bin")) rc = load_llama2c(m, path, e);
        else rc = ERR(e, "'%s' is not a model lossy recognises (expected a GGUF file, a Hugging Face directory or a llama2.c .bin)", path);
    }
    if (rc == 0) rc = model_config_validate(&m->cfg, path, e);
    if (rc == 0) rc = bind_weights(m, e);
    if (rc) model_free(m);
    return rc;
}

void model_free(Model *m) {
    weights_free(&m->w);
    if (m->format == MODEL_FORMAT_GGUF) gguf_close(&m->gguf);
    if (m->format == MODEL_FORMAT_HF) st_close(&m->st);
    if (m->l2c) {
        llama2c_close(m->l2c);
        free(m->l2c);
    }
    free(m->layers);
    free(m->path);
    memset(m, 0, sizeof *m);
}

size_t model_weight_bytes(const Model *m) {
    size_t total = 0;
    for (size_t i = 0; i < m->w.n; i++) {
        const Tensor *t = &m->w.t[i];
        if (t == m->tok_embd && m->output != m->tok_embd) continue; // only one embedding row is read per token
        if (t == m->pos_embd) continue;
        total += t->nbytes;
    }
    return total;
}

// ---------------------------------------------------------------------------------------------------------------
// inference state

int model_state_init(ModelState *s, const Model *m, int64_t n_ctx, ThreadPool *pool, Err *e) {
    memset(s, 0, sizeof *s);
    const ModelConfig *c = &m->cfg;
    if (n_ctx <= 0) n_ctx = c->n_ctx_train > 0 && c->n_ctx_train < 4096 ? c->n_ctx_train : 4096;
    if (c->pos == POS_LEARNED && n_ctx > c->n_ctx_train) n_ctx = c->n_ctx_train; // no positions past the table
    const int64_t C = c->n_embd, F = c->n_ff, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim;
    size_t kv_row = (size_t)(Hkv * hd), cache;
    if (!size_mul((size_t)c->n_layer * (size_t)n_ctx, kv_row, &cache) || cache > ((size_t)1 << 40) / sizeof(float))
        return ERR(e, "KV cache for %lld positions is too large", (long long)n_ctx);
    s->m = m;
    s->n_ctx = n_ctx;
    s->pool = pool;
    s->k_cache = xmalloc_array(cache, sizeof(float));
    s->v_cache = xmalloc_array(cache, sizeof(float));
    int64_t widest = C > F ? C : F;
    if (H * hd > widest) widest = H * hd;
    s->x = xmalloc_array((size_t)C, sizeof(float));
    s->xb = xmalloc_array((size_t)widest, sizeof(float));
    s->qkv = xmalloc_array((size_t)((H + 2 * Hkv) * hd), sizeof(float));
    s->att_out = xmalloc_array((size_t)(H * hd), sizeof(float));
    s->hb = xmalloc_array((size_t)F, sizeof(float));
    s->hb2 = xmalloc_array((size_t)F, sizeof(float));
    s->tmp = xmalloc_array((size_t)widest, sizeof(float));
    s->logits = xmalloc_array((size_t)c->vocab_size, sizeof(float));
    int64_t half = c->rope_dim > 0 ? c->rope_dim / 2 : 1;
    s->rope_cos = xmalloc_array((size_t)half, sizeof(float));
    s->rope_sin = xmalloc_array((size_t)half, sizeof(float));
    // one scratch row block per thread: threads split the KV heads
    size_t per = (size_t)attention_cached_scratch_size(1, n_ctx - 1, H);
    s->att_scratch = xmalloc_array(per * (size_t)threadpool_size(pool), sizeof(float));
    s->att_scratch_stride = per;
    for (int i = 0; i < MODEL_MAX_ACTS; i++) matvec_act_init(&s->act[i]);
    return 0;
}

void model_state_free(ModelState *s) {
    free(s->k_cache);
    free(s->v_cache);
    free(s->x);
    free(s->xb);
    free(s->qkv);
    free(s->att_out);
    free(s->hb);
    free(s->hb2);
    free(s->tmp);
    free(s->logits);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->att_scratch);
    for (int i = 0; i < MODEL_MAX_ACTS; i++) matvec_act_free(&s->act[i]);
    memset(s, 0, sizeof *s);
}

void model_state_reset(ModelState *s) { s->pos = 0; }

// ---------------------------------------------------------------------------------------------------------------
// forward

// Several products sharing one input x (q/k/v; gate/up): one pool run covers all their rows, so threads
// synchronise once per group instead of once per matrix. x is quantized once per distinct weight type.
typedef struct Proj {
    const Tensor *w;
    const float *bias; // or NULL
    float *y;          // (rows of w)
    size_t stride;     // bytes per row
    const MatvecAct *act;
} Proj;

typedef struct ProjJob {
    Proj *p;
    int n;
    int64_t total_rows;
} ProjJob;

static void proj_worker(void *ctx, int ith, int nth) {
    ProjJob *j = ctx;
    int64_t r0, r1;
    threadpool_split(j->total_rows, ith, nth, &r0, &r1);
    int64_t base = 0;
    for (int i = 0; i < j->n && r0 < r1; i++) {
        Proj *p = &j->p[i];
        int64_t rows = tensor_rows(p->w), a = r0 - base, b = r1 - base;
        if (a < 0) a = 0;
        if (b > rows) b = rows;
        if (a < b) matvec_rows((DType)p->w->type, p->w->data, p->stride, a, b, p->act, p->y);
        base += rows;
    }
}

static int project_many(ModelState *s, const float *x, Proj *p, int n, Err *e) {
    int64_t total = 0;
    size_t bytes = 0;
    int n_acts = 0;
    for (int i = 0; i < n; i++) {
        const Tensor *w = p[i].w;
        if (quant_row_bytes((DType)w->type, w->ne[0], &p[i].stride, e)) return err_prefix(e, "tensor '%s': ", w->name);
        p[i].act = NULL;
        for (int k = 0; k < n_acts; k++)
            if (s->act[k].wtype == (DType)w->type) p[i].act = &s->act[k];
        if (!p[i].act) {
            if (n_acts == MODEL_MAX_ACTS) return ERR(e, "too many weight types in one projection group");
            if (matvec_act_prepare(&s->act[n_acts], (DType)w->type, x, w->ne[0], e)) return err_prefix(e, "tensor '%s': ", w->name);
            p[i].act = &s->act[n_acts++];
        }
        total += tensor_rows(w);
        bytes += (size_t)tensor_rows(w) * p[i].stride;
    }
    ProjJob j = {p, n, total};
    // small products finish before a worker could wake up: run them on the calling thread
    if (bytes < ((size_t)1 << 17)) proj_worker(&j, 0, 1);
    else threadpool_run(s->pool, proj_worker, &j);
    for (int i = 0; i < n; i++)
        if (p[i].bias) {
            int64_t rows = tensor_rows(p[i].w);
            for (int64_t r = 0; r < rows; r++) p[i].y[r] += p[i].bias[r];
        }
    return 0;
}

static int project(ModelState *s, const Tensor *w, const float *x, const float *bias, float *y, Err *e) {
    Proj p = {w, bias, y, 0, NULL};
    return project_many(s, x, &p, 1, e);
}

// Attention of the current token, threads split the KV heads (each with its group of query heads).
typedef struct AttJob {
    ModelState *s;
    const float *q;         // (H * hd)
    const float *kc, *vc;   // this layer's cache: (Hkv, n_ctx, hd)
    int64_t pos;
} AttJob;

static void att_worker(void *ctx, int ith, int nth) {
    AttJob *j = ctx;
    const ModelConfig *c = &j->s->m->cfg;
    const int64_t G = c->n_head / c->n_head_kv, hd = c->head_dim, n_ctx = j->s->n_ctx;
    int64_t g0, g1;
    threadpool_split(c->n_head_kv, ith, nth, &g0, &g1);
    float *scratch = j->s->att_scratch + (size_t)ith * j->s->att_scratch_stride;
    for (int64_t g = g0; g < g1; g++)
        attention_forward_cached(j->s->att_out + g * G * hd, j->q + g * G * hd, j->kc + g * n_ctx * hd,
                                 j->vc + g * n_ctx * hd, 1, j->pos, G, 1, hd, c->sliding_window, scratch);
}

static void norm(const ModelConfig *c, float *out, const float *x, const float *w, const float *b) {
    if (c->norm == NORM_RMS) rmsnorm_forward(out, NULL, x, w, 1, c->n_embd, (float)c->norm_eps);
    else layernorm_forward(out, NULL, NULL, x, w, b, 1, c->n_embd, (float)c->norm_eps);
}

static void activate(ActType a, float *out, const float *x, int64_t n) {
    switch (a) {
    case ACT_SILU: silu_forward(out, x, n); break;
    case ACT_GELU_TANH: gelu_tanh_forward(out, x, n); break;
    case ACT_GELU_ERF: gelu_erf_forward(out, x, n); break;
    case ACT_RELU: relu_forward(out, x, n); break;
    }
}

static int forward_token(ModelState *s, int32_t token, Err *e) {
    const Model *m = s->m;
    const ModelConfig *c = &m->cfg;
    const int64_t C = c->n_embd, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim, pos = s->pos;
    if (token < 0 || token >= c->vocab_size) return ERR(e, "token id %d is outside the vocabulary (%lld)", token, (long long)c->vocab_size);
    if (pos >= s->n_ctx) return ERR(e, "context is full (%lld tokens)", (long long)s->n_ctx);
    size_t row;
    if (quant_row_bytes((DType)m->tok_embd->type, C, &row, e)) return -1;
    if (quant_dequantize_row((DType)m->tok_embd->type, (const uint8_t *)m->tok_embd->data + (size_t)token * row, s->x, C, e)) return -1;
    if (m->pos_embd) {
        if (quant_row_bytes((DType)m->pos_embd->type, C, &row, e) ||
            quant_dequantize_row((DType)m->pos_embd->type, (const uint8_t *)m->pos_embd->data + (size_t)pos * row, s->tmp, C, e))
            return -1;
        for (int64_t i = 0; i < C; i++) s->x[i] += s->tmp[i];
    }
    if (c->pos == POS_ROPE) rope_cos_sin(s->rope_cos, s->rope_sin, m->inv_freq, &pos, 1, c->rope_dim);
    float *q = s->qkv, *k = s->qkv + H * hd, *v = k + Hkv * hd;
    const size_t kv_row = (size_t)(Hkv * hd);
    for (int64_t l = 0; l < c->n_layer; l++) {
        const ModelLayer *L = &m->layers[l];
        norm(c, s->xb, s->x, L->attn_norm, L->attn_norm_b);
        if (L->wqkv) {
            if (project(s, L->wqkv, s->xb, L->bqkv, s->qkv, e)) return -1;
        } else {
            Proj p[3] = {{L->wq, L->bq, q, 0, NULL}, {L->wk, L->bk, k, 0, NULL}, {L->wv, L->bv, v, 0, NULL}};
            if (project_many(s, s->xb, p, 3, e)) return -1;
        }
        if (c->pos == POS_ROPE) {
            bool neox = c->rope_style == ROPE_STYLE_NEOX;
            rope_forward(q, q, s->rope_cos, s->rope_sin, 1, H, hd, c->rope_dim, neox);
            rope_forward(k, k, s->rope_cos, s->rope_sin, 1, Hkv, hd, c->rope_dim, neox);
        }
        // cache layout per layer (Hkv, n_ctx, hd): each KV head's history is contiguous for its attention thread
        float *kc = s->k_cache + (size_t)l * (size_t)s->n_ctx * kv_row, *vc = s->v_cache + (size_t)l * (size_t)s->n_ctx * kv_row;
        for (int64_t g = 0; g < Hkv; g++) {
            memcpy(kc + ((size_t)g * (size_t)s->n_ctx + (size_t)pos) * (size_t)hd, k + g * hd, (size_t)hd * sizeof(float));
            memcpy(vc + ((size_t)g * (size_t)s->n_ctx + (size_t)pos) * (size_t)hd, v + g * hd, (size_t)hd * sizeof(float));
        }
        AttJob aj = {s, q, kc, vc, pos};
        // short histories are cheaper than a thread wake-up
        if ((pos + 1) * H * hd < 16384) att_worker(&aj, 0, 1);
        else threadpool_run(s->pool, att_worker, &aj);
        if (project(s, L->wo, s->att_out, L->bo, s->tmp, e)) return -1;
        for (int64_t i = 0; i < C; i++) s->x[i] += s->tmp[i];
        norm(c, s->xb, s->x, L->ffn_norm, L->ffn_norm_b);
        const int64_t F = c->n_ff;
        if (c->mlp == MLP_GATED) {
            Proj p[2] = {{L->w_gate, L->b_gate, s->hb, 0, NULL}, {L->w_up, L->b_up, s->hb2, 0, NULL}};
            if (project_many(s, s->xb, p, 2, e)) return -1;
            if (c->act == ACT_SILU) swiglu_forward(s->hb, s->hb, s->hb2, F);
            else {
                activate(c->act, s->hb, s->hb, F);
                for (int64_t i = 0; i < F; i++) s->hb[i] *= s->hb2[i];
            }
        } else {
            if (project(s, L->w_up, s->xb, L->b_up, s->hb2, e)) return -1;
            activate(c->act, s->hb, s->hb2, F);
        }
        if (project(s, L->w_down, s->hb, L->b_down, s->tmp, e)) return -1;
        for (int64_t i = 0; i < C; i++) s->x[i] += s->tmp[i];
    }
    s->pos++;
    return 0;
}

int model_forward(ModelState *s, const int32_t *tokens, int64_t n, Err *e) {
    if (n <= 0) return ERR(e, "no tokens to process");
    for (int64_t i = 0; i < n; i++)
        if (forward_token(s, tokens[i], e)) return -1;
    const Model *m = s->m;
    norm(&m->cfg, s->xb, s->x, m->output_norm, m->output_norm_b);
    return project(s, m->output, s->xb, NULL, s->logits, e);
}

int model_forward_batch(ModelState *const *states, const int32_t *tokens, int64_t n, Err *e) {
    for (int64_t i = 0; i < n; i++)
        if (model_forward(states[i], &tokens[i], 1, e)) return err_prefix(e, "sequence %lld: ", (long long)i);
    return 0;
}
