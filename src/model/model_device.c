// model_device.c — the Model on a GPU (see model_device.h): builds the plain CudaModelDesc the CUDA code takes from
// the bound Model, and forwards model.c's entry points to it. Compiled in every build; without LOSSY_CUDA the only
// reachable function is model_use_device, which reports that CUDA support is missing.
#include "model/model_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"

#ifdef LOSSY_CUDA
#include "cuda/cuda.h"
#include "cuda/infer.h"

static int dequant_cb(int dtype, const void *src, float *dst, int64_t n, Err *e) {
    return quant_dequantize_row((DType)dtype, src, dst, n, e);
}

static CudaMat mat_of(const Tensor *t) {
    CudaMat c = {0};
    if (!t) return c;
    c.dtype = (int)t->type, c.data = t->data, c.rows = tensor_rows(t), c.cols = t->ne[0], c.nbytes = t->nbytes, c.name = t->name;
    return c;
}

static int upload(Model *m, Err *e) {
    const ModelConfig *c = &m->cfg;
    CudaModelDesc d;
    memset(&d, 0, sizeof d);
    d.vocab = c->vocab_size, d.n_embd = c->n_embd, d.n_ff = c->n_ff, d.n_layer = c->n_layer, d.n_head = c->n_head;
    d.n_head_kv = c->n_head_kv, d.head_dim = c->head_dim, d.n_ctx_train = c->n_ctx_train;
    d.norm_layer = c->norm == NORM_LAYER, d.norm_eps = c->norm_eps;
    d.rope = c->pos != POS_ROPE ? 0 : c->rope_style == ROPE_STYLE_NEOX ? 2 : 1;
    d.rope_dim = c->rope_dim, d.inv_freq = m->inv_freq;
    d.mlp_gated = c->mlp == MLP_GATED, d.act = (int)c->act, d.sliding_window = c->sliding_window;
    d.tok_embd = mat_of(m->tok_embd), d.pos_embd = mat_of(m->pos_embd), d.output = mat_of(m->output);
    d.output_norm = m->output_norm, d.output_norm_b = m->output_norm_b;
    d.dequantize_row = dequant_cb;
    CudaLayerDesc *L = xcalloc((size_t)c->n_layer, sizeof *L);
    for (int64_t l = 0; l < c->n_layer; l++) {
        const ModelLayer *s = &m->layers[l];
        CudaLayerDesc *t = &L[l];
        t->attn_norm = s->attn_norm, t->attn_norm_b = s->attn_norm_b;
        t->wq = mat_of(s->wq), t->wk = mat_of(s->wk), t->wv = mat_of(s->wv), t->wqkv = mat_of(s->wqkv), t->wo = mat_of(s->wo);
        t->bq = s->bq, t->bk = s->bk, t->bv = s->bv, t->bqkv = s->bqkv, t->bo = s->bo;
        t->ffn_norm = s->ffn_norm, t->ffn_norm_b = s->ffn_norm_b;
        t->w_gate = mat_of(s->w_gate), t->w_up = mat_of(s->w_up), t->w_down = mat_of(s->w_down);
        t->b_gate = s->b_gate, t->b_up = s->b_up, t->b_down = s->b_down;
    }
    d.layers = L;
    CudaModel *g = NULL;
    int rc = cuda_model_create(&d, &g, e);
    free(L);
    if (rc) return err_prefix(e, "uploading the model to the GPU: ");
    m->gpu = g;
    return 0;
}
#endif

int model_use_device(Model *m, const char *device, Err *e) {
    if (!device || strcmp(device, "cpu") == 0) return 0;
    if (strcmp(device, "cuda") != 0) return ERR(e, "unknown device '%s' (expected cpu or cuda)", device);
    if (m->gpu) return 0;
#ifdef LOSSY_CUDA
    char why[256] = "";
    if (cuda_device_count(why, sizeof why) < 1) return ERR(e, "no usable CUDA device (%s)", why);
    return upload(m, e);
#else
    (void)m;
    return ERR(e, "lossy was built without CUDA (nvcc was not found at build time)");
#endif
}

const char *model_device_name(const Model *m) {
#ifdef LOSSY_CUDA
    static __thread char buf[300];
    if (m->gpu) {
        snprintf(buf, sizeof buf, "cuda (%s%s)", cuda_model_device_name(m->gpu), cuda_model_uses_pdl(m->gpu) ? ", PDL" : "");
        return buf;
    }
#else
    (void)m;
#endif
    return "cpu";
}

#ifdef LOSSY_CUDA
int model_device_state_init(ModelState *s, Err *e) {
    CudaSeq *q = NULL;
    if (cuda_seq_create(s->m->gpu, s->n_ctx, &q, e)) return -1;
    s->gpu = q;
    return 0;
}

void model_device_state_free(ModelState *s) {
    cuda_seq_destroy(s->gpu);
    s->gpu = NULL;
}

void model_device_free(Model *m) {
    cuda_model_destroy(m->gpu);
    m->gpu = NULL;
}

int model_device_forward(ModelState *s, const int32_t *tokens, int64_t n, float *logits_all, Err *e) {
    if (!s->gpu) return ERR(e, "this state was created before the model moved to the GPU");
    if (cuda_model_forward(s->m->gpu, s->gpu, s->pos, tokens, n, s->logits, logits_all, e)) return -1;
    s->pos += n;
    return 0;
}

int model_device_forward_batch(ModelState *const *states, const int32_t *tokens, int64_t n, Err *e) {
    CudaSeq **seqs = xmalloc_array((size_t)n, sizeof *seqs);
    int64_t *pos = xmalloc_array((size_t)n, sizeof *pos);
    float **logits = xmalloc_array((size_t)n, sizeof *logits);
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        if (!states[i]->gpu) rc = ERR(e, "sequence %lld was created before the model moved to the GPU", (long long)i);
        seqs[i] = states[i]->gpu, pos[i] = states[i]->pos, logits[i] = states[i]->logits;
    }
    if (rc == 0) rc = cuda_model_step_batch(states[0]->m->gpu, seqs, pos, tokens, n, logits, e);
    if (rc == 0)
        for (int64_t i = 0; i < n; i++) states[i]->pos++;
    free(seqs);
    free(pos);
    free(logits);
    return rc;
}

int model_device_limits(const Model *m, double *copy_gb_s, double *gemm_gflop_s, Err *e) {
    if (!m->gpu) return ERR(e, "the model is not on a GPU");
    if (cuda_measure_copy_bandwidth((size_t)1 << 30, copy_gb_s, e)) return -1;
    return cuda_measure_gemm_bf16(8192, gemm_gflop_s, e);
}

int model_device_timer_start(const Model *m, Err *e) {
    if (!m->gpu) return ERR(e, "the model is not on a GPU");
    return cuda_model_timer_start(m->gpu, e);
}

void model_device_profile_reset(const Model *m) {
    if (m->gpu) cuda_model_profile_reset(m->gpu);
}

char *model_device_profile_report(const Model *m) {
    if (!m->gpu || !cuda_model_profiling(m->gpu)) return NULL;
    size_t n = cuda_model_profile_report(m->gpu, NULL, 0);
    if (n == 0) return NULL;
    char *buf = xmalloc(n + 1);
    cuda_model_profile_report(m->gpu, buf, n + 1);
    return buf;
}

int model_device_timer_stop(const Model *m, double *seconds, Err *e) {
    if (!m->gpu) return ERR(e, "the model is not on a GPU");
    return cuda_model_timer_stop(m->gpu, seconds, e);
}
#else
// Unreachable without CUDA (m->gpu is never set); defined so model.c needs no #ifdef.
int model_device_state_init(ModelState *s, Err *e) { (void)s; return ERR(e, "lossy was built without CUDA"); }
void model_device_state_free(ModelState *s) { (void)s; }
void model_device_free(Model *m) { (void)m; }
int model_device_forward(ModelState *s, const int32_t *tokens, int64_t n, float *logits_all, Err *e) {
    (void)s, (void)tokens, (void)n, (void)logits_all;
    return ERR(e, "lossy was built without CUDA");
}
int model_device_forward_batch(ModelState *const *states, const int32_t *tokens, int64_t n, Err *e) {
    (void)states, (void)tokens, (void)n;
    return ERR(e, "lossy was built without CUDA");
}
int model_device_limits(const Model *m, double *copy_gb_s, double *gemm_gflop_s, Err *e) {
    (void)m, (void)copy_gb_s, (void)gemm_gflop_s;
    return ERR(e, "lossy was built without CUDA");
}
int model_device_timer_start(const Model *m, Err *e) { (void)m; return ERR(e, "lossy was built without CUDA"); }
void model_device_profile_reset(const Model *m) { (void)m; }
char *model_device_profile_report(const Model *m) { (void)m; return NULL; }
int model_device_timer_stop(const Model *m, double *seconds, Err *e) {
    (void)m, (void)seconds;
    return ERR(e, "lossy was built without CUDA");
}
#endif
