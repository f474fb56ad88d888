// train_model.c — the trainer's Llama model: parameter layout, initialisation, batched forward with saved
// activations, the hand-written backward, and export as GGUF (see train_model.h).
//
// Threading: every op is split over the pool by rows (norms, rope, embedding, cross-entropy), (batch, head) jobs
// (attention), flat ranges (swiglu, residual adds) or output blocks (GEMMs, matmul_mt.h). A split never changes
// the arithmetic of an output element; the only reductions across rows — the RMSNorm weight gradients — sum
// per-block partials over fixed 64-row blocks in block order, so the result is the same for any thread count.
#include "train/train_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/matmul_mt.h"
#include "kernels/quant.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "tokenizer/write_tokenizer.h"
#include "train/rng.h"

// Rows per block of the norm-weight gradient reduction (fixed: the sum order must not depend on threads).
#define NORM_BLOCK 64
// Floats of one output-head chunk of logits (rows x V): bounds the head's memory for large vocabularies.
#define HEAD_CHUNK_FLOATS ((int64_t)1 << 23)

// ---------------------------------------------------------------------------------------------------------------
// presets and configs

const TrainPreset TRAIN_PRESETS[] = {
    {"tiny", 2, 64, 4, 2, 0, 128, "a few hundred thousand parameters: tests and smoke runs"},
    {"stories15m", 6, 288, 6, 6, 768, 256, "llama2.c's TinyStories 15M shape"},
    {"small", 6, 384, 6, 6, 1024, 256, "6 layers x 384: a Tiny Shakespeare / TinyStories model for a CPU hour"},
    {"stories42m", 8, 512, 8, 8, 1376, 1024, "llama2.c's TinyStories 42M shape"},
    {"medium", 12, 768, 12, 12, 2048, 1024, "GPT-2 small sized (124M with a 50k vocabulary)"},
};
const size_t TRAIN_N_PRESETS = sizeof TRAIN_PRESETS / sizeof TRAIN_PRESETS[0];

const TrainPreset *train_preset_find(const char *name) {
    for (size_t i = 0; i < TRAIN_N_PRESETS; i++)
        if (strcmp(TRAIN_PRESETS[i].name, name) == 0) return &TRAIN_PRESETS[i];
    return NULL;
}

int64_t train_default_ffn(int64_t n_embd) {
    int64_t h = 2 * (4 * n_embd) / 3;
    return (h + 31) / 32 * 32;
}

int train_config_llama(ModelConfig *c, int64_t vocab, int64_t n_layer, int64_t n_embd, int64_t n_head,
                       int64_t n_head_kv, int64_t n_ff, int64_t seq_len, bool tied, Err *e) {
    model_config_init(c);
    if (n_head <= 0 || n_embd <= 0 || n_embd % n_head != 0)
        return ERR(e, "model width %lld must be a positive multiple of the head count %lld", (long long)n_embd,
                   (long long)n_head);
    if ((n_embd / n_head) % 2 != 0)
        return ERR(e, "head size %lld (width / heads) must be even for rotary embeddings", (long long)(n_embd / n_head));
    c->arch = ARCH_LLAMA;
    snprintf(c->arch_name, sizeof c->arch_name, "llama");
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = vocab;
    c->n_embd = n_embd;
    c->n_layer = n_layer;
    c->n_head = n_head;
    c->n_head_kv = n_head_kv > 0 ? n_head_kv : n_head;
    c->n_ff = n_ff > 0 ? n_ff : train_default_ffn(n_embd);
    c->head_dim = n_embd / n_head;
    c->n_ctx_train = seq_len;
    c->norm = NORM_RMS;
    c->norm_eps = (double)1e-5f; // GGUF stores it as f32: train with the value readers will see
    c->pos = POS_ROPE;
    c->rope_style = ROPE_STYLE_INTERLEAVED;
    c->rope_dim = c->head_dim;
    c->rope_theta = 10000.0;
    c->rope_scaling = ROPE_SCALING_NONE;
    c->mlp = MLP_GATED;
    c->act = ACT_SILU;
    c->tied_embeddings = tied;
    c->dtype = DT_F32;
    if (model_config_validate(c, "model flags", e)) return -1;
    return train_config_check(c, e);
}

int train_config_check(const ModelConfig *c, Err *e) {
    if (c->arch != ARCH_LLAMA) return ERR(e, "training supports the llama architecture only (got %s)", model_arch_name(c->arch));
    if (c->norm != NORM_RMS || c->bias_norm) return ERR(e, "training needs RMSNorm without bias");
    if (c->pos != POS_ROPE || c->rope_style != ROPE_STYLE_INTERLEAVED)
        return ERR(e, "training needs rotary embeddings in the interleaved (GGUF llama) layout");
    if (c->rope_scaling != ROPE_SCALING_NONE || c->rope_freqs_tensor) return ERR(e, "training does not support rope scaling");
    if (c->mlp != MLP_GATED || c->act != ACT_SILU) return ERR(e, "training needs a SwiGLU MLP");
    if (c->bias_qkv || c->bias_o || c->bias_mlp) return ERR(e, "training does not support bias tensors");
    if (c->sliding_window != 0) return ERR(e, "training does not support sliding-window attention");
    if (c->n_ctx_train > ((int64_t)1 << 20)) return ERR(e, "context %lld is too long to train", (long long)c->n_ctx_train);
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// parameter layout

static void add_param(TrainModel *m, size_t *off, const char *name, int n_dims, int64_t ne0, int64_t ne1, bool decay) {
    TrainParam *p = &m->pinfo[m->n_pinfo++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->offset = *off;
    p->n_dims = n_dims;
    p->ne[0] = ne0;
    p->ne[1] = n_dims > 1 ? ne1 : 1;
    p->count = (size_t)ne0 * (size_t)p->ne[1];
    p->decay = decay;
    *off += p->count;
}

// Point a TrainWeights at buffer buf following m->pinfo.
static void bind_views(const TrainModel *m, float *buf, TrainWeights *w) {
    const ModelConfig *c = &m->cfg;
    size_t i = 0;
    w->tok_embd = buf + m->pinfo[i++].offset;
    w->output = c->tied_embeddings ? w->tok_embd : buf + m->pinfo[i++].offset;
    w->output_norm = buf + m->pinfo[i++].offset;
    for (int64_t l = 0; l < c->n_layer; l++) {
        TrainLayerW *L = &w->layers[l];
        L->attn_norm = buf + m->pinfo[i++].offset;
        L->wq = buf + m->pinfo[i++].offset;
        L->wk = buf + m->pinfo[i++].offset;
        L->wv = buf + m->pinfo[i++].offset;
        L->wo = buf + m->pinfo[i++].offset;
        L->ffn_norm = buf + m->pinfo[i++].offset;
        L->w_gate = buf + m->pinfo[i++].offset;
        L->w_up = buf + m->pinfo[i++].offset;
        L->w_down = buf + m->pinfo[i++].offset;
    }
}

int train_model_init(TrainModel *m, const ModelConfig *c, ThreadPool *pool, Err *e) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(c, "model", e) || train_config_check(c, e)) return -1;
    m->cfg = *c;
    m->pool = pool;
    const int64_t V = c->vocab_size, C = c->n_embd, F = c->n_ff, L = c->n_layer;
    const int64_t qd = c->n_head * c->head_dim, kvd = c->n_head_kv * c->head_dim;
    // every count below is bounded by model_config_validate (dims <= 2^24, layers <= 4096): products fit in 2^62,
    // but the total must still fit in memory
    double total = (double)V * C * (c->tied_embeddings ? 1 : 2) + C +
                   (double)L * (2.0 * C + (double)C * (qd + 2 * kvd) + (double)qd * C + 3.0 * C * F);
    if (total > 4e9) return ERR(e, "model has %.3g parameters; the trainer handles at most 4e9", total);
    m->pinfo = xcalloc((size_t)(3 + 9 * L), sizeof *m->pinfo);
    size_t off = 0;
    char name[64];
    add_param(m, &off, "token_embd.weight", 2, C, V, false);
    if (!c->tied_embeddings) add_param(m, &off, "output.weight", 2, C, V, true);
    add_param(m, &off, "output_norm.weight", 1, C, 1, false);
    for (int64_t l = 0; l < L; l++) {
#define P(suffix, nd, a, b, decay) \
    (snprintf(name, sizeof name, "blk.%lld." suffix, (long long)l), add_param(m, &off, name, nd, a, b, decay))
        P("attn_norm.weight", 1, C, 1, false);
        P("attn_q.weight", 2, C, qd, true);
        P("attn_k.weight", 2, C, kvd, true);
        P("attn_v.weight", 2, C, kvd, true);
        P("attn_output.weight", 2, qd, C, true);
        P("ffn_norm.weight", 1, C, 1, false);
        P("ffn_gate.weight", 2, C, F, true);
        P("ffn_up.weight", 2, C, F, true);
        P("ffn_down.weight", 2, F, C, true);
#undef P
    }
    m->n_params = off;
    m->params = xcalloc(off, sizeof(float));
    m->grads = xcalloc(off, sizeof(float));
    m->w.layers = xcalloc((size_t)L, sizeof(TrainLayerW));
    m->g.layers = xcalloc((size_t)L, sizeof(TrainLayerW));
    bind_views(m, m->params, &m->w);
    bind_views(m, m->grads, &m->g);
    m->inv_freq = xmalloc_array((size_t)(c->rope_dim / 2), sizeof(double));
    model_config_rope_inv_freq(c, m->inv_freq);
    return 0;
}

void train_model_free(TrainModel *m) {
    free(m->params);
    free(m->grads);
    free(m->pinfo);
    free(m->w.layers);
    free(m->g.layers);
    free(m->inv_freq);
    free(m->act_mem);
    free(m->acts);
    free(m->tokens);
    memset(m, 0, sizeof *m);
}

void train_model_init_weights(TrainModel *m, uint64_t seed) {
    TrainRng r;
    rng_seed(&r, seed, 1);
    const double std = 0.02, resid_std = 0.02 / sqrt(2.0 * (double)m->cfg.n_layer);
    for (size_t i = 0; i < m->n_pinfo; i++) {
        const TrainParam *p = &m->pinfo[i];
        float *x = m->params + p->offset;
        if (p->n_dims == 1) {
            for (size_t j = 0; j < p->count; j++) x[j] = 1.0f;
            continue;
        }
        bool resid = strstr(p->name, "attn_output") || strstr(p->name, "ffn_down");
        double s = resid ? resid_std : std;
        for (size_t j = 0; j < p->count; j++) x[j] = (float)(s * rng_normal(&r));
    }
}

int train_model_load_weights(TrainModel *m, const GGUFFile *g, Err *e) {
    for (size_t i = 0; i < m->n_pinfo; i++) {
        const TrainParam *p = &m->pinfo[i];
        const GGUFTensor *t = gguf_find_tensor(g, p->name);
        if (!t) return ERR(e, "%s: tensor '%s' is missing", g->name, p->name);
        if (t->ne[0] != p->ne[0] || t->ne[1] != p->ne[1] || t->ne[2] != 1 || t->ne[3] != 1)
            return ERR(e, "%s: tensor '%s' has shape %lld x %lld, expected %lld x %lld", g->name, p->name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)p->ne[0], (long long)p->ne[1]);
        if (t->type == DT_F32) {
            memcpy(m->params + p->offset, t->data, p->count * sizeof(float));
            continue;
        }
        // F16/BF16 and quantized weights become the fp32 master copy (finetuning a converted or quantized model)
        if (!quant_can_dequantize((DType)t->type))
            return ERR(e, "%s: tensor '%s' is %s, which cannot be dequantized for training", g->name, p->name,
                       dtype_name(t->type));
        size_t row_bytes;
        if (quant_row_bytes((DType)t->type, p->ne[0], &row_bytes, e)) return err_prefix(e, "%s: tensor '%s': ", g->name, p->name);
        int64_t rows = p->n_dims == 2 ? p->ne[1] : 1;
        if (row_bytes > 0 && t->nbytes / row_bytes < (size_t)rows)
            return ERR(e, "%s: tensor '%s' holds %zu bytes, too few for its shape", g->name, p->name, t->nbytes);
        for (int64_t r = 0; r < rows; r++)
            if (quant_dequantize_row((DType)t->type, (const uint8_t *)t->data + (size_t)r * row_bytes,
                                     m->params + p->offset + (size_t)r * (size_t)p->ne[0], p->ne[0], e))
                return err_prefix(e, "%s: tensor '%s': ", g->name, p->name);
    }
    return 0;
}

size_t train_model_matmul_params(const TrainModel *m) {
    size_t n = 0;
    for (size_t i = 0; i < m->n_pinfo; i++) {
        const TrainParam *p = &m->pinfo[i];
        if (p->n_dims < 2) continue;
        // an untied token embedding is a table lookup; tied, it is also the output head
        if (strcmp(p->name, "token_embd.weight") == 0 && !m->cfg.tied_embeddings) continue;
        n += p->count;
    }
    return n;
}

void train_model_zero_grad(TrainModel *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

// ---------------------------------------------------------------------------------------------------------------
// activation buffers

// Two passes over the same sequence of requests: the first (base NULL) sizes the block, the second hands out
// 64-byte aligned pieces of it.
typedef struct Carver {
    float *base;
    size_t used; // floats
    bool overflow;
} Carver;

static float *carve(Carver *cv, int64_t a, int64_t b) {
    size_t n, padded;
    if (!size_mul((size_t)a, (size_t)b, &n) || !size_align_up(n, 16, &padded) || !size_add(cv->used, padded, &cv->used)) {
        cv->overflow = true;
        return NULL;
    }
    return cv->base ? cv->base + (cv->used - padded) : NULL;
}

static void carve_all(TrainModel *m, Carver *cv, int64_t B, int64_t T, int64_t R) {
    const ModelConfig *c = &m->cfg;
    const int64_t BT = B * T, C = c->n_embd, F = c->n_ff, H = c->n_head, V = c->vocab_size;
    const int64_t qd = H * c->head_dim, kvd = c->n_head_kv * c->head_dim, half = c->rope_dim / 2;
    for (int64_t l = 0; l < c->n_layer; l++) {
        TrainLayerActs *a = &m->acts[l];
        a->x_in = carve(cv, BT, C);
        a->rstd1 = carve(cv, BT, 1);
        a->xn1 = carve(cv, BT, C);
        a->q = carve(cv, BT, qd);
        a->k = carve(cv, BT, kvd);
        a->v = carve(cv, BT, kvd);
        a->att = carve(cv, B * H, T * T);
        a->atty = carve(cv, BT, qd);
        a->x_mid = carve(cv, BT, C);
        a->rstd2 = carve(cv, BT, 1);
        a->xn2 = carve(cv, BT, C);
        a->gate = carve(cv, BT, F);
        a->up = carve(cv, BT, F);
        a->h = carve(cv, BT, F);
    }
    m->x_out = carve(cv, BT, C);
    m->rstd_f = carve(cv, BT, 1);
    m->xf = carve(cv, BT, C);
    m->rope_cos = carve(cv, T, half);
    m->rope_sin = carve(cv, T, half);
    m->logits = carve(cv, R, V);
    m->row_loss = carve(cv, BT, 1);
    m->row_lse = carve(cv, R, 1);
    m->d_res = carve(cv, BT, C);
    m->d_xn = carve(cv, BT, C);
    m->d_q = carve(cv, BT, qd);
    m->d_k = carve(cv, BT, kvd);
    m->d_v = carve(cv, BT, kvd);
    m->d_atty = carve(cv, BT, qd);
    m->d_gate = carve(cv, BT, F);
    m->d_up = carve(cv, BT, F);
    m->d_h = carve(cv, BT, F);
    m->d_normw = carve(cv, (BT + NORM_BLOCK - 1) / NORM_BLOCK, C);
}

int train_model_reserve(TrainModel *m, int64_t B, int64_t T, Err *e) {
    const ModelConfig *c = &m->cfg;
    if (B <= 0 || T <= 0) return ERR(e, "batch %lld x %lld must be positive", (long long)B, (long long)T);
    if (T > c->n_ctx_train)
        return ERR(e, "sequence length %lld exceeds the model's context %lld", (long long)T, (long long)c->n_ctx_train);
    if (m->act_mem && B == m->cap_B && T == m->cap_T) return 0;
    int64_t BT;
    if (!i64_mul(B, T, &BT) || BT > ((int64_t)1 << 30)) return ERR(e, "batch %lld x %lld is too large", (long long)B, (long long)T);
    // head chunks: at most HEAD_CHUNK_FLOATS logits, then evened out (160 + 96 rows would leave the second GEMM
    // half as tall); a multiple of 16 rows keeps the GEMM's row tiles full
    int64_t R = HEAD_CHUNK_FLOATS / c->vocab_size;
    R = R < 16 ? 16 : R / 16 * 16;
    if (R > BT) R = BT;
    int64_t chunks = (BT + R - 1) / R;
    int64_t even = ((BT + chunks - 1) / chunks + 15) / 16 * 16;
    if (even < R) R = even;
    free(m->act_mem);
    free(m->acts);
    free(m->tokens);
    m->act_mem = NULL;
    m->acts = xcalloc((size_t)c->n_layer, sizeof *m->acts);
    Carver cv = {NULL, 0, false};
    carve_all(m, &cv, B, T, R);
    if (cv.overflow || cv.used > ((size_t)1 << 40) / sizeof(float))
        return ERR(e, "activations for batch %lld x %lld do not fit in memory", (long long)B, (long long)T);
    m->act_bytes = cv.used * sizeof(float) + 64;
    m->act_mem = xmalloc(m->act_bytes);
    cv.base = (float *)(((uintptr_t)m->act_mem + 63) & ~(uintptr_t)63);
    cv.used = 0;
    carve_all(m, &cv, B, T, R);
    m->tokens = xmalloc_array((size_t)BT, sizeof(int32_t));
    m->cap_B = B;
    m->cap_T = T;
    m->head_rows = R;
    int64_t *pos = xmalloc_array((size_t)T, sizeof(int64_t));
    for (int64_t t = 0; t < T; t++) pos[t] = t;
    rope_cos_sin(m->rope_cos, m->rope_sin, m->inv_freq, pos, T, c->rope_dim);
    free(pos);
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// parallel loops

typedef void (*RangeFn)(const void *ctx, int64_t s, int64_t e);
typedef struct ParFor {
    RangeFn fn;
    const void *ctx;
    int64_t n;
} ParFor;

static void par_worker(void *vctx, int ith, int nth) {
    const ParFor *p = vctx;
    int64_t s, e;
    threadpool_split(p->n, ith, nth, &s, &e);
    if (e > s) p->fn(p->ctx, s, e);
}

// Run fn over [0, n) split across the pool; `work` is roughly the operations per item, so tiny loops stay on the
// calling thread.
static void par_for(ThreadPool *pool, int64_t n, int64_t work, RangeFn fn, const void *ctx) {
    if (n <= 0) return;
    if (threadpool_size(pool) == 1 || n == 1 || n * work < ((int64_t)1 << 17)) {
        fn(ctx, 0, n);
        return;
    }
    ParFor p = {fn, ctx, n};
    threadpool_run(pool, par_worker, &p);
}

typedef struct NormArgs {
    float *out, *rstd;
    const float *x, *w;
    int64_t N, C;
    float eps;
    // backward
    float *dx, *partial, *dw;
    const float *dout;
} NormArgs;

static void rmsnorm_fwd_range(const void *vctx, int64_t s, int64_t e) {
    const NormArgs *a = vctx;
    rmsnorm_forward(a->out + s * a->C, a->rstd + s, a->x + s * a->C, a->w, e - s, a->C, a->eps);
}

static void rmsnorm_forward_par(ThreadPool *pool, float *out, float *rstd, const float *x, const float *w, int64_t N,
                                int64_t C, float eps) {
    NormArgs a = {.out = out, .rstd = rstd, .x = x, .w = w, .N = N, .C = C, .eps = eps};
    par_for(pool, N, 4 * C, rmsnorm_fwd_range, &a);
}

// Blocks [s, e) of NORM_BLOCK rows: dx rows, and each block's own weight-gradient partial.
static void rmsnorm_bwd_range(const void *vctx, int64_t s, int64_t e) {
    const NormArgs *a = vctx;
    for (int64_t bl = s; bl < e; bl++) {
        int64_t r0 = bl * NORM_BLOCK, rows = a->N - r0 < NORM_BLOCK ? a->N - r0 : NORM_BLOCK;
        float *part = a->partial + bl * a->C; // (C)
        memset(part, 0, (size_t)a->C * sizeof(float));
        rmsnorm_backward(a->dx + r0 * a->C, part, a->dout + r0 * a->C, a->x + r0 * a->C, a->w, a->rstd + r0, rows, a->C);
    }
}

// Columns [s, e): dw += the block partials, in block order.
static void rmsnorm_reduce_range(const void *vctx, int64_t s, int64_t e) {
    const NormArgs *a = vctx;
    int64_t nblocks = (a->N + NORM_BLOCK - 1) / NORM_BLOCK;
    for (int64_t bl = 0; bl < nblocks; bl++) {
        const float *part = a->partial + bl * a->C;
        for (int64_t i = s; i < e; i++) a->dw[i] += part[i];
    }
}

static void rmsnorm_backward_par(TrainModel *m, float *dx, float *dw, const float *dout, const float *x,
                                 const float *w, const float *rstd, int64_t N, int64_t C) {
    NormArgs a = {.x = x, .w = w, .rstd = (float *)rstd, .N = N, .C = C, .dx = dx, .partial = m->d_normw, .dw = dw,
                  .dout = dout};
    int64_t nblocks = (N + NORM_BLOCK - 1) / NORM_BLOCK;
    par_for(m->pool, nblocks, 8 * C * NORM_BLOCK, rmsnorm_bwd_range, &a);
    par_for(m->pool, C, nblocks, rmsnorm_reduce_range, &a);
}

typedef struct FlatArgs {
    float *y, *y2;
    const float *a, *b, *c;
} FlatArgs;

static void add_range(const void *vctx, int64_t s, int64_t e) {
    const FlatArgs *f = vctx;
    for (int64_t i = s; i < e; i++) f->y[i] += f->a[i];
}

static void add_par(ThreadPool *pool, float *y, const float *x, int64_t n) {
    FlatArgs f = {.y = y, .a = x};
    par_for(pool, n, 1, add_range, &f);
}

static void swiglu_fwd_range(const void *vctx, int64_t s, int64_t e) {
    const FlatArgs *f = vctx;
    swiglu_forward(f->y + s, f->a + s, f->b + s, e - s);
}

static void swiglu_bwd_range(const void *vctx, int64_t s, int64_t e) {
    const FlatArgs *f = vctx;
    swiglu_backward(f->y + s, f->y2 + s, f->c + s, f->a + s, f->b + s, e - s);
}

typedef struct RopeArgs {
    float *x;
    const float *cos_t, *sin_t;
    int64_t T, n_head, head_dim, rope_dim;
    bool inverse;
} RopeArgs;

// Rows [s, e) of (B*T) rows, cut where a sequence ends (positions restart at 0 in each sequence).
static void rope_range(const void *vctx, int64_t s, int64_t e) {
    const RopeArgs *a = vctx;
    int64_t half = a->rope_dim / 2, width = a->n_head * a->head_dim;
    for (int64_t r = s; r < e;) {
        int64_t t = r % a->T, seg = a->T - t;
        if (seg > e - r) seg = e - r;
        float *x = a->x + r * width;
        if (a->inverse)
            rope_backward(x, x, a->cos_t + t * half, a->sin_t + t * half, seg, a->n_head, a->head_dim, a->rope_dim, false);
        else
            rope_forward(x, x, a->cos_t + t * half, a->sin_t + t * half, seg, a->n_head, a->head_dim, a->rope_dim, false);
        r += seg;
    }
}

static void rope_par(TrainModel *m, float *x, int64_t n_head, int64_t rows, int64_t T, bool inverse) {
    RopeArgs a = {x, m->rope_cos, m->rope_sin, T, n_head, m->cfg.head_dim, m->cfg.rope_dim, inverse};
    par_for(m->pool, rows, 4 * n_head * m->cfg.head_dim, rope_range, &a);
}

typedef struct AttnArgs {
    float *out, *att, *dq, *dk, *dv;
    const float *q, *k, *v, *dout;
    int64_t B, T, H, Hkv, hd;
} AttnArgs;

// Jobs [s, e): (batch, head) pairs in the forward, (batch, kv head) groups in the backward (attention.h).
static void attn_fwd_range(const void *vctx, int64_t s, int64_t e) {
    const AttnArgs *a = vctx;
    attention_forward_range(a->out, a->att, a->q, a->k, a->v, a->B, a->T, a->H, a->Hkv, a->hd, 0, s, e);
}

static void attn_bwd_range(const void *vctx, int64_t s, int64_t e) {
    const AttnArgs *a = vctx;
    attention_backward_range(a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->att, a->B, a->T, a->H, a->Hkv, a->hd, 0,
                             s, e);
}

typedef struct EmbArgs {
    float *x;             // forward: output rows; backward: the rows' gradients
    const float *table;   // forward
    float *dtable;        // backward
    const int32_t *tokens;
    int64_t N, C;
} EmbArgs;

static void emb_fwd_range(const void *vctx, int64_t s, int64_t e) {
    const EmbArgs *a = vctx;
    embedding_forward(a->x + s * a->C, a->tokens + s, NULL, a->table, NULL, e - s, a->C);
}

// Vocabulary rows [s, e): each thread owns the gradient rows of its ids and adds the tokens' rows in token order.
static void emb_bwd_range(const void *vctx, int64_t s, int64_t e) {
    const EmbArgs *a = vctx;
    for (int64_t n = 0; n < a->N; n++) {
        int32_t id = a->tokens[n];
        if (id >= s && id < e) embedding_backward(a->dtable, NULL, a->x + n * a->C, &a->tokens[n], NULL, 1, a->C);
    }
}

typedef struct XentArgs {
    float *logits, *row_loss, *lse;
    const int32_t *targets;
    int64_t V;
    float scale;
    bool backward;
} XentArgs;

static void xent_range(const void *vctx, int64_t s, int64_t e) {
    const XentArgs *a = vctx;
    softmax_xent_forward(a->logits + s * a->V, a->targets + s, e - s, a->V, -1, a->row_loss + s, a->lse + s, NULL);
    if (a->backward)
        softmax_xent_backward(a->logits + s * a->V, a->logits + s * a->V, a->lse + s, a->targets + s, e - s, a->V, -1,
                              a->scale);
}

// ---------------------------------------------------------------------------------------------------------------
// forward

// Embedding and every block for tokens (B, T); leaves xf = final norm output.
static void forward_body(TrainModel *m, const int32_t *tokens, int64_t B, int64_t T) {
    const ModelConfig *c = &m->cfg;
    ThreadPool *pool = m->pool;
    const int64_t BT = B * T, C = c->n_embd, F = c->n_ff, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim;
    const int64_t qd = H * hd, kvd = Hkv * hd;
    const float eps = (float)c->norm_eps;
    memcpy(m->tokens, tokens, (size_t)BT * sizeof(int32_t));
    EmbArgs ea = {.x = m->acts[0].x_in, .table = m->w.tok_embd, .tokens = m->tokens, .N = BT, .C = C};
    par_for(pool, BT, C, emb_fwd_range, &ea);
    for (int64_t l = 0; l < c->n_layer; l++) {
        TrainLayerActs *a = &m->acts[l];
        const TrainLayerW *W = &m->w.layers[l];
        float *x_next = l + 1 < c->n_layer ? m->acts[l + 1].x_in : m->x_out;
        rmsnorm_forward_par(pool, a->xn1, a->rstd1, a->x_in, W->attn_norm, BT, C, eps);
        matmul_forward_mt(pool, a->q, a->xn1, W->wq, NULL, BT, C, qd);
        matmul_forward_mt(pool, a->k, a->xn1, W->wk, NULL, BT, C, kvd);
        matmul_forward_mt(pool, a->v, a->xn1, W->wv, NULL, BT, C, kvd);
        rope_par(m, a->q, H, BT, T, false);
        rope_par(m, a->k, Hkv, BT, T, false);
        AttnArgs aa = {.out = a->atty, .att = a->att, .q = a->q, .k = a->k, .v = a->v, .B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd};
        par_for(pool, B * H, T * T * hd, attn_fwd_range, &aa);
        matmul_forward_mt(pool, a->x_mid, a->atty, W->wo, NULL, BT, qd, C);
        add_par(pool, a->x_mid, a->x_in, BT * C);
        rmsnorm_forward_par(pool, a->xn2, a->rstd2, a->x_mid, W->ffn_norm, BT, C, eps);
        matmul_forward_mt(pool, a->gate, a->xn2, W->w_gate, NULL, BT, C, F);
        matmul_forward_mt(pool, a->up, a->xn2, W->w_up, NULL, BT, C, F);
        FlatArgs fa = {.y = a->h, .a = a->gate, .b = a->up};
        par_for(pool, BT * F, 8, swiglu_fwd_range, &fa);
        matmul_forward_mt(pool, x_next, a->h, W->w_down, NULL, BT, F, C);
        add_par(pool, x_next, a->x_mid, BT * C);
    }
    rmsnorm_forward_par(pool, m->xf, m->rstd_f, m->x_out, m->w.output_norm, BT, C, eps);
}

// The output head over row chunks: per-row losses into m->row_loss; with backward, the cross-entropy gradient
// (scaled) goes straight into dW_out and into m->d_xn as d(xf) (each chunk writes its own rows). Returns the mean
// loss.
static double head(TrainModel *m, const int32_t *targets, int64_t BT, bool backward, float scale) {
    const int64_t C = m->cfg.n_embd, V = m->cfg.vocab_size, R = m->head_rows;
    for (int64_t r0 = 0; r0 < BT; r0 += R) {
        int64_t rows = BT - r0 < R ? BT - r0 : R;
        matmul_forward_mt(m->pool, m->logits, m->xf + r0 * C, m->w.output, NULL, rows, C, V);
        XentArgs xa = {m->logits, m->row_loss + r0, m->row_lse, targets + r0, V, scale, backward};
        par_for(m->pool, rows, 4 * V, xent_range, &xa);
        if (backward) {
            matmul_backward_dx_mt(m->pool, m->d_xn + r0 * C, m->logits, m->w.output, rows, C, V, false);
            matmul_backward_dw_mt(m->pool, m->g.output, m->logits, m->xf + r0 * C, rows, C, V);
        }
    }
    double sum = 0.0;
    for (int64_t i = 0; i < BT; i++) sum += m->row_loss[i];
    return sum / (double)BT;
}

double train_model_forward(TrainModel *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                           float *row_loss) {
    forward_body(m, tokens, B, T);
    double loss = head(m, targets, B * T, false, 0.0f);
    if (row_loss) memcpy(row_loss, m->row_loss, (size_t)(B * T) * sizeof(float));
    return loss;
}

void train_model_logits(TrainModel *m, const int32_t *tokens, int64_t B, int64_t T, float *out) {
    forward_body(m, tokens, B, T);
    matmul_forward_mt(m->pool, out, m->xf, m->w.output, NULL, B * T, m->cfg.n_embd, m->cfg.vocab_size);
}

void train_model_next_logits(TrainModel *m, const int32_t *tokens, int64_t T, float *out) {
    forward_body(m, tokens, 1, T);
    const int64_t C = m->cfg.n_embd;
    matmul_forward_mt(m->pool, out, m->xf + (T - 1) * C, m->w.output, NULL, 1, C, m->cfg.vocab_size);
}

// ---------------------------------------------------------------------------------------------------------------
// backward

double train_model_forward_backward(TrainModel *m, const int32_t *tokens, const int32_t *targets, int64_t B,
                                    int64_t T, float grad_scale) {
    const ModelConfig *c = &m->cfg;
    ThreadPool *pool = m->pool;
    const int64_t BT = B * T, C = c->n_embd, F = c->n_ff, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim;
    const int64_t qd = H * hd, kvd = Hkv * hd;
    forward_body(m, tokens, B, T);
    double loss = head(m, targets, BT, true, grad_scale);

    // d_res = dL/d(residual stream), starting after the last block: the final norm's backward
    memset(m->d_res, 0, (size_t)(BT * C) * sizeof(float));
    rmsnorm_backward_par(m, m->d_res, m->g.output_norm, m->d_xn, m->x_out, m->w.output_norm, m->rstd_f, BT, C);

    for (int64_t l = c->n_layer - 1; l >= 0; l--) {
        TrainLayerActs *a = &m->acts[l];
        const TrainLayerW *W = &m->w.layers[l];
        TrainLayerW *G = &m->g.layers[l];
        // MLP: x_next = x_mid + down(h). First contributions to a gradient buffer overwrite it (no zeroing pass).
        matmul_backward_dx_mt(pool, m->d_h, m->d_res, W->w_down, BT, F, C, false);
        matmul_backward_dw_mt(pool, G->w_down, m->d_res, a->h, BT, F, C);
        memset(m->d_gate, 0, (size_t)(BT * F) * sizeof(float));
        memset(m->d_up, 0, (size_t)(BT * F) * sizeof(float));
        FlatArgs fa = {.y = m->d_gate, .y2 = m->d_up, .a = a->gate, .b = a->up, .c = m->d_h};
        par_for(pool, BT * F, 16, swiglu_bwd_range, &fa);
        matmul_backward_dx_mt(pool, m->d_xn, m->d_gate, W->w_gate, BT, C, F, false);
        matmul_backward_dw_mt(pool, G->w_gate, m->d_gate, a->xn2, BT, C, F);
        matmul_backward_mt(pool, m->d_xn, G->w_up, NULL, m->d_up, a->xn2, W->w_up, BT, C, F);
        rmsnorm_backward_par(m, m->d_res, G->ffn_norm, m->d_xn, a->x_mid, W->ffn_norm, a->rstd2, BT, C);
        // attention: x_mid = x_in + Wo attention(rope(q), rope(k), v)
        matmul_backward_dx_mt(pool, m->d_atty, m->d_res, W->wo, BT, qd, C, false);
        matmul_backward_dw_mt(pool, G->wo, m->d_res, a->atty, BT, qd, C);
        memset(m->d_q, 0, (size_t)(BT * qd) * sizeof(float));
        memset(m->d_k, 0, (size_t)(BT * kvd) * sizeof(float));
        memset(m->d_v, 0, (size_t)(BT * kvd) * sizeof(float));
        AttnArgs aa = {.att = a->att, .dq = m->d_q, .dk = m->d_k, .dv = m->d_v, .q = a->q, .k = a->k, .v = a->v,
                       .dout = m->d_atty, .B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd};
        par_for(pool, B * Hkv, T * T * hd * (H / Hkv), attn_bwd_range, &aa);
        rope_par(m, m->d_q, H, BT, T, true);
        rope_par(m, m->d_k, Hkv, BT, T, true);
        matmul_backward_dx_mt(pool, m->d_xn, m->d_q, W->wq, BT, C, qd, false);
        matmul_backward_dw_mt(pool, G->wq, m->d_q, a->xn1, BT, C, qd);
        matmul_backward_mt(pool, m->d_xn, G->wk, NULL, m->d_k, a->xn1, W->wk, BT, C, kvd);
        matmul_backward_mt(pool, m->d_xn, G->wv, NULL, m->d_v, a->xn1, W->wv, BT, C, kvd);
        rmsnorm_backward_par(m, m->d_res, G->attn_norm, m->d_xn, a->x_in, W->attn_norm, a->rstd1, BT, C);
    }
    EmbArgs eb = {.x = m->d_res, .dtable = m->g.tok_embd, .tokens = m->tokens, .N = BT, .C = C};
    par_for(pool, c->vocab_size, BT / 8 + 1, emb_bwd_range, &eb);
    return loss;
}

// ---------------------------------------------------------------------------------------------------------------
// export

GGUFWriter *train_model_gguf_writer(const TrainModel *m, const Tokenizer *tok, const char *name, Err *e) {
    const ModelConfig *c = &m->cfg;
    GGUFWriter *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    if (name) gguf_writer_set_str(w, "general.name", name);
    gguf_writer_set_u32(w, "general.file_type", 0); // all F32
    gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->n_ctx_train);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->n_embd);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layer);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_head_kv);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->norm_eps);
    gguf_writer_set_f32(w, "llama.rope.freq_base", (float)c->rope_theta);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->rope_dim);
    gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);
    if (tokenizer_gguf_set_keys(w, tok, e)) { // tok NULL: the no-vocabulary marker llama.cpp needs
        gguf_writer_free(w);
        return NULL;
    }
    for (size_t i = 0; i < m->n_pinfo; i++) {
        const TrainParam *p = &m->pinfo[i];
        if (gguf_writer_add_tensor(w, p->name, DT_F32, (uint32_t)p->n_dims, p->ne, m->params + p->offset, e)) {
            gguf_writer_free(w);
            return NULL;
        }
    }
    return w;
}
