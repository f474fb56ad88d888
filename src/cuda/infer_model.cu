// infer_model.cu — the GPU model behind `--device cuda` (C interface in infer.h): weight upload, KV caches,
// workspaces, and the two forward passes, each mirroring model.c op by op.
//
// Decoding (one token per sequence, S sequences at once): the embedding lookup and the step's rope cos/sin table
// first, then per layer five kernels — norm+QKV matvec (+bias), split attention (rope, cache store, flash-decoding
// chunks combined by the last block), output projection with the residual add, norm+gate/up matvec with the
// activation (SwiGLU), down projection with the residual add — and the norm+output matvec last. The whole step is
// captured once per batch size into a CUDA graph and replayed: every per-step value (token, position, cache pointers)
// is read from a device array uploaded before the launch, so the graph never changes. On Hopper the kernels are
// launched with programmatic dependent launch (each loads its first weights while its predecessor finishes).
// LOSSY_CUDA_GRAPHS=0 launches the same kernels without a graph, LOSSY_CUDA_PDL=0 without PDL (for debugging and
// comparison); LOSSY_CUDA_PROFILE=1 times every launch with CUDA events (see cuda_model_profile_report).
//
// Prompts (several tokens of one sequence) run in chunks of up to PCHUNK tokens through cuBLASLt GEMMs: F32 weights
// in fp32 (CUBLAS_COMPUTE_32F: no TF32, so logits match the CPU), F16/BF16 weights natively with f32 accumulation and
// output, Q8_0/Q4_0 weights dequantized to an f16 scratch matrix first; the activations are converted to the weight's
// half type for the product. Attention: rope + cache store (our kernel), then Q K^T and P V as cuBLAS strided-batched
// GEMMs over the KV heads with our masked softmax between them (attn_gemm). Norms and the MLP middle are our kernels.
//
// Everything runs on one stream per model; a mutex serialises callers (the server's scheduler is the only one).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/blas.h"
#include "cuda/infer.h"
#include "cuda/infer_internal.h"

extern "C" {
#include "base/dtype.h"
#include "base/util.h"
}

#define PCHUNK 512   // prompt tokens per chunk
#define LOGCH 64     // rows of prompt logits per output GEMM (bounds the logits buffer for large vocabularies)
#define LT_WS (32u << 20)
#define GEMM_CACHE 64
#define SC_FLOATS ((size_t)16 << 20) // prompt attention scores scratch (64 MiB): queries per pass = this / (H * keys)
#define PROF_KINDS 40

// LOSSY_CUDA_PROFILE=1: a CUDA event pair around every launch (graphs and PDL off), summed per kind of kernel.
struct ProfKind {
    const char *name;
    double ms, bytes, flops;
    int64_t launches;
};
struct ProfTable {
    ProfKind k[PROF_KINDS];
    int n;
    int64_t tokens, calls;
};

struct GLayer {
    const float *attn_norm, *attn_norm_b, *bqkv, *bo, *ffn_norm, *ffn_norm_b, *b_gate, *b_up, *b_down;
    GMat wqkv, wo, w_gate, w_up, w_down;
};

struct GemmPlan {
    int used;
    int dt, align;
    int64_t N, K, T, lda, ldb, ldy;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

struct CudaModel {
    int dev, n_sm;
    size_t smem_max;
    char name[256];
    cudaStream_t st;
    pthread_mutex_t mu;
    // shape
    int64_t V, C, F, L, H, Hkv, hd, QKV;
    int pro, gated, act;
    float eps;
    AttnShape sh;
    // weights
    void **allocs;
    size_t n_allocs, cap_allocs, wbytes;
    GMat tok, pos, out;
    int has_pos;
    const float *out_norm, *out_norm_b;
    GLayer *layers;
    int64_t max_kp;      // widest padded row of any matrix
    size_t max_qelems;   // largest quantized matrix (rows * kp), for the dequantization scratch
    // decoding workspace (smax states)
    int64_t smax, max_ctx;
    float *x, *qkv, *att, *hb, *logits; // (smax, C) (smax, QKV) (smax, H*hd) (smax, F) (smax, V)
    SeqDev *d_seq, *h_seq;              // device / pinned host (smax)
    float *h_logits;                    // pinned (smax, V)
    cudaGraphExec_t *graphs;            // (smax + 1) by batch size
    int use_graphs;
    int pdl;                            // decoding kernels launched with programmatic dependent launch
    // prompt workspace (PCHUNK tokens), allocated on first use
    int prompt_ready;
    float *px, *pxb, *pqkv, *patt, *phb, *phb2, *plog;
    void *ph;            // (PCHUNK, max_kp) half activations
    __half *wscr;        // dequantized weights
    int32_t *d_tok, *h_tok;
    int64_t *d_pos, *h_pos;
    void *lt_ws;
    const CudaBlas *blas;
    cublasLtHandle_t lt;
    GemmPlan plans[GEMM_CACHE];
    cudaEvent_t ev0, ev1;
    cudaEvent_t ev_tok;  // after a prompt chunk's token upload
    // split decode attention and rope (smax states)
    float *att_part;     // (smax, attn_partial_floats)
    int *att_cnt;        // (smax, Hkv)
    float2 *rope_cs;     // (smax, rope_dim / 2)
    // prompt attention through cuBLAS
    cublasHandle_t cublas;
    float *psc;          // (SC_FLOATS) scores
    // profiling
    int prof;
    cudaEvent_t *pev;    // (2 * pcap) pool: begin and end of launch i
    const char **pkind;  // (pcap)
    double *pbytes, *pflops;
    int npend, pcap;
    ProfTable pdec, ppre;
};

struct CudaSeq {
    CudaModel *g;
    float *k, *v; // (L, Hkv, n_ctx, hd)
    int64_t n_ctx;
};

// ---------------------------------------------------------------------------------------------------------------
// allocation

static void *g_track(CudaModel *g, void *p) {
    if (g->n_allocs == g->cap_allocs) {
        size_t cap = g->cap_allocs ? g->cap_allocs * 2 : 64;
        void **a = (void **)xrealloc(g->allocs, cap * sizeof *a);
        g->allocs = a, g->cap_allocs = cap;
    }
    return g->allocs[g->n_allocs++] = p;
}

// Device memory freed with the model.
static int dalloc(CudaModel *g, void **p, size_t bytes, Err *e) {
    *p = NULL;
    if (bytes == 0) bytes = 16;
    CU_TRY(e, cudaMalloc(p, bytes));
    g_track(g, *p);
    return 0;
}

static int bytes_of(int64_t a, int64_t b, size_t elem, size_t *out, Err *e) {
    size_t t;
    if (a < 0 || b < 0 || !size_mul((size_t)a, (size_t)b, &t) || !size_mul(t, elem, out))
        return ERR(e, "GPU buffer of %lld x %lld x %zu bytes is too large", (long long)a, (long long)b, elem);
    return 0;
}

static int up_vec(CudaModel *g, const float **dst, const float *src, int64_t n, Err *e) {
    *dst = NULL;
    if (!src) return 0;
    void *p;
    if (dalloc(g, &p, (size_t)n * sizeof(float), e)) return -1;
    CU_TRY(e, cudaMemcpy(p, src, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    *dst = (const float *)p;
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// weights

static int gdt_of(int dtype) {
    switch (dtype) {
    case DT_F32: return G_F32;
    case DT_F16: return G_F16;
    case DT_BF16: return G_BF16;
    case DT_Q8_0: return G_Q8;
    case DT_Q4_0: return G_Q4;
    default: return -1; // dequantized to G_F16 at upload
    }
}

static int64_t ld_of(int dt, int64_t kp) {
    switch (dt) {
    case G_F32: return kp * 4;
    case G_F16: case G_BF16: return kp * 2;
    case G_Q8: return kp;
    default: return kp / 2;
    }
}

static int gmat_alloc(CudaModel *g, GMat *m, int dt, int64_t rows, int64_t cols, Err *e) {
    memset(m, 0, sizeof *m);
    if (rows <= 0 || cols <= 0) return ERR(e, "matrix of %lld x %lld", (long long)rows, (long long)cols);
    m->dt = dt, m->rows = rows, m->cols = cols, m->kp = (cols + 31) / 32 * 32, m->ld = ld_of(dt, m->kp);
    size_t qb, db = 0;
    if (bytes_of(rows, m->ld, 1, &qb, e)) return -1;
    if (dt == G_Q8 || dt == G_Q4) {
        if (bytes_of(rows, m->kp / 32, sizeof(__half), &db, e)) return -1;
    }
    void *p;
    if (dalloc(g, &p, qb, e)) return -1;
    m->q = (uint8_t *)p;
    if (db) {
        if (dalloc(g, &p, db, e)) return -1;
        m->d = (__half *)p;
        size_t elems = (size_t)rows * (size_t)m->kp;
        if (elems > g->max_qelems) g->max_qelems = elems;
    }
    g->wbytes += qb + db;
    if (m->kp > g->max_kp) g->max_kp = m->kp;
    return 0;
}

// Rows [row0, row0 + src->rows) of m from a host matrix: copied as is, split into quant/scale planes (Q8_0, Q4_0),
// row-padded, or dequantized to f16 when m's dtype differs from the source's.
static int gmat_upload(CudaModel *g, GMat *m, int64_t row0, const CudaMat *src, const CudaModelDesc *d, Err *e) {
    if (!src->data) return ERR(e, "missing matrix");
    if (src->cols != m->cols || row0 + src->rows > m->rows)
        return ERR(e, "tensor '%s': %lld x %lld does not fit the GPU matrix", src->name, (long long)src->rows, (long long)src->cols);
    if (src->rows <= 0 || src->nbytes % (size_t)src->rows != 0) return ERR(e, "tensor '%s': bytes are not whole rows", src->name);
    const size_t srow = src->nbytes / (size_t)src->rows;
    const int sdt = gdt_of(src->dtype);
    const bool convert = sdt != m->dt;
    if (convert && m->dt != G_F16) return ERR(e, "tensor '%s': internal: conversion only to f16", src->name);
    const int64_t kp = m->kp, nsb = kp / 32;
    if (!convert && kp == m->cols && (m->dt == G_F32 || m->dt == G_F16 || m->dt == G_BF16)) {
        if ((size_t)m->ld != srow) return ERR(e, "tensor '%s': row size %zu, expected %lld", src->name, srow, (long long)m->ld);
        CU_TRY(e, cudaMemcpy(m->q + row0 * m->ld, src->data, src->nbytes, cudaMemcpyHostToDevice));
        return 0;
    }
    // staged in batches of rows
    int64_t batch = (int64_t)((size_t)(64u << 20) / (size_t)m->ld);
    if (batch < 1) batch = 1;
    if (batch > src->rows) batch = src->rows;
    uint8_t *hq = (uint8_t *)xmalloc((size_t)batch * (size_t)m->ld);
    uint16_t *hd = (uint16_t *)xmalloc((size_t)batch * (size_t)nsb * 2 + 2);
    float *tmp = (float *)xmalloc((size_t)kp * sizeof(float));
    int rc = 0;
    for (int64_t r0 = 0; r0 < src->rows && rc == 0; r0 += batch) {
        const int64_t nr = src->rows - r0 < batch ? src->rows - r0 : batch;
        memset(hq, 0, (size_t)nr * (size_t)m->ld);
        for (int64_t r = 0; r < nr && rc == 0; r++) {
            const uint8_t *s = (const uint8_t *)src->data + (size_t)(r0 + r) * srow;
            uint8_t *q = hq + (size_t)r * (size_t)m->ld;
            if (convert) {
                if (d->dequantize_row(src->dtype, s, tmp, src->cols, e)) {
                    rc = err_prefix(e, "tensor '%s': ", src->name);
                    break;
                }
                for (int64_t i = 0; i < src->cols; i++) ((__half *)q)[i] = __float2half_rn(tmp[i]);
            } else if (m->dt == G_Q8 || m->dt == G_Q4) {
                const int64_t nb = src->cols / 32;
                const size_t bsz = m->dt == G_Q8 ? 34 : 18, qb = bsz - 2;
                if (src->cols % 32 || srow != (size_t)nb * bsz) {
                    rc = ERR(e, "tensor '%s': row of %zu bytes is not %lld blocks", src->name, srow, (long long)nb);
                    break;
                }
                for (int64_t b = 0; b < nb; b++) {
                    const uint8_t *blk = s + (size_t)b * bsz;
                    hd[r * nsb + b] = (uint16_t)(blk[0] | blk[1] << 8);
                    memcpy(q + (size_t)b * qb, blk + 2, qb);
                }
            } else {
                const size_t es = m->dt == G_F32 ? 4 : 2;
                if (srow != (size_t)src->cols * es) {
                    rc = ERR(e, "tensor '%s': row size %zu", src->name, srow);
                    break;
                }
                memcpy(q, s, srow);
            }
        }
        if (rc) break;
        cudaError_t ce = cudaMemcpy(m->q + (row0 + r0) * m->ld, hq, (size_t)nr * (size_t)m->ld, cudaMemcpyHostToDevice);
        if (ce == cudaSuccess && (m->dt == G_Q8 || m->dt == G_Q4))
            ce = cudaMemcpy(m->d + (row0 + r0) * nsb, hd, (size_t)nr * (size_t)nsb * 2, cudaMemcpyHostToDevice);
        if (ce != cudaSuccess) rc = ERR(e, "CUDA: uploading '%s': %s", src->name, cudaGetErrorString(ce));
    }
    free(hq);
    free(hd);
    free(tmp);
    return rc;
}

// Several host matrices stacked into one GPU matrix (q|k|v), in their common dtype, or f16 when they differ.
static int gmat_stack(CudaModel *g, GMat *m, const CudaMat *const *parts, int n, const CudaModelDesc *d, Err *e) {
    int dt = gdt_of(parts[0]->dtype);
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (!parts[i]->data) return ERR(e, "missing matrix");
        if (gdt_of(parts[i]->dtype) != dt) dt = -1;
        rows += parts[i]->rows;
    }
    if (dt < 0) dt = G_F16;
    if (gmat_alloc(g, m, dt, rows, parts[0]->cols, e)) return -1;
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        if (gmat_upload(g, m, r, parts[i], d, e)) return -1;
        r += parts[i]->rows;
    }
    return 0;
}

static int gmat_one(CudaModel *g, GMat *m, const CudaMat *src, int dt, const CudaModelDesc *d, Err *e) {
    if (dt < 0) dt = gdt_of(src->dtype) < 0 ? G_F16 : gdt_of(src->dtype);
    if (gmat_alloc(g, m, dt, src->rows, src->cols, e)) return -1;
    return gmat_upload(g, m, 0, src, d, e);
}

// ---------------------------------------------------------------------------------------------------------------
// model

static void free_decode(CudaModel *g) {
    if (g->graphs)
        for (int64_t i = 0; i <= g->smax; i++)
            if (g->graphs[i]) cudaGraphExecDestroy(g->graphs[i]);
    free(g->graphs);
    g->graphs = NULL;
    cudaFree(g->x), cudaFree(g->qkv), cudaFree(g->att), cudaFree(g->hb), cudaFree(g->logits), cudaFree(g->d_seq);
    cudaFree(g->att_part), cudaFree(g->att_cnt), cudaFree(g->rope_cs);
    cudaFreeHost(g->h_seq), cudaFreeHost(g->h_logits);
    g->x = g->qkv = g->att = g->hb = g->logits = g->h_logits = g->att_part = NULL;
    g->att_cnt = NULL;
    g->rope_cs = NULL;
    g->d_seq = g->h_seq = NULL;
    g->smax = 0;
}

static void drop_graphs(CudaModel *g) {
    if (!g->graphs) return;
    for (int64_t i = 0; i <= g->smax; i++)
        if (g->graphs[i]) cudaGraphExecDestroy(g->graphs[i]), g->graphs[i] = NULL;
}

extern "C" void cuda_model_destroy(CudaModel *g) {
    if (!g) return;
    cudaSetDevice(g->dev);
    if (g->st) cudaStreamSynchronize(g->st);
    free_decode(g);
    cudaFree(g->px), cudaFree(g->pxb), cudaFree(g->pqkv), cudaFree(g->patt), cudaFree(g->phb), cudaFree(g->phb2);
    cudaFree(g->plog), cudaFree(g->ph), cudaFree(g->wscr), cudaFree(g->d_tok), cudaFree(g->d_pos), cudaFree(g->lt_ws);
    cudaFreeHost(g->h_tok), cudaFreeHost(g->h_pos);
    for (int i = 0; i < GEMM_CACHE; i++) {
        GemmPlan *p = &g->plans[i];
        if (!p->used) continue;
        g->blas->cublasLtMatmulDescDestroy(p->op);
        g->blas->cublasLtMatrixLayoutDestroy(p->la), g->blas->cublasLtMatrixLayoutDestroy(p->lb), g->blas->cublasLtMatrixLayoutDestroy(p->lc);
    }
    if (g->lt) g->blas->cublasLtDestroy(g->lt);
    if (g->cublas) g->blas->cublasDestroy_v2(g->cublas);
    cudaFree(g->psc);
    for (int i = 0; i < 2 * g->pcap; i++) cudaEventDestroy(g->pev[i]);
    free(g->pev), free(g->pkind), free(g->pbytes), free(g->pflops);
    for (size_t i = 0; i < g->n_allocs; i++) cudaFree(g->allocs[i]);
    free(g->allocs);
    free(g->layers);
    if (g->ev0) cudaEventDestroy(g->ev0);
    if (g->ev1) cudaEventDestroy(g->ev1);
    if (g->ev_tok) cudaEventDestroy(g->ev_tok);
    if (g->st) cudaStreamDestroy(g->st);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static int upload_layer(CudaModel *g, GLayer *G, const CudaLayerDesc *l, const CudaModelDesc *d, Err *e) {
    const int64_t C = g->C, F = g->F, H = g->H, Hkv = g->Hkv, hd = g->hd;
    if (up_vec(g, &G->attn_norm, l->attn_norm, C, e) || up_vec(g, &G->attn_norm_b, l->attn_norm_b, C, e) ||
        up_vec(g, &G->ffn_norm, l->ffn_norm, C, e) || up_vec(g, &G->ffn_norm_b, l->ffn_norm_b, C, e) ||
        up_vec(g, &G->bo, l->bo, C, e) || up_vec(g, &G->b_down, l->b_down, C, e) || up_vec(g, &G->b_gate, l->b_gate, F, e) ||
        up_vec(g, &G->b_up, l->b_up, F, e))
        return -1;
    if (!G->attn_norm || !G->ffn_norm) return ERR(e, "missing norm weights");
    if (l->wqkv.data) {
        if (gmat_one(g, &G->wqkv, &l->wqkv, -1, d, e) || up_vec(g, &G->bqkv, l->bqkv, g->QKV, e)) return -1;
    } else {
        const CudaMat *parts[3] = {&l->wq, &l->wk, &l->wv};
        if (gmat_stack(g, &G->wqkv, parts, 3, d, e)) return -1;
        if (l->bq || l->bk || l->bv) {
            if (!l->bq || !l->bk || !l->bv) return ERR(e, "q/k/v biases must all be present or all absent");
            float *b = (float *)xmalloc((size_t)g->QKV * sizeof(float));
            memcpy(b, l->bq, (size_t)(H * hd) * sizeof(float));
            memcpy(b + H * hd, l->bk, (size_t)(Hkv * hd) * sizeof(float));
            memcpy(b + (H + Hkv) * hd, l->bv, (size_t)(Hkv * hd) * sizeof(float));
            int rc = up_vec(g, &G->bqkv, b, g->QKV, e);
            free(b);
            if (rc) return -1;
        }
    }
    if (G->wqkv.rows != g->QKV || G->wqkv.cols != C) return ERR(e, "q/k/v projection has the wrong shape");
    if (gmat_one(g, &G->wo, &l->wo, -1, d, e)) return -1;
    if (g->gated) {
        // gate and up are read by the same warp, so they share one dtype (f16 when the file mixes them)
        int dg = gdt_of(l->w_gate.dtype), du = gdt_of(l->w_up.dtype), dt = dg == du && dg >= 0 ? dg : G_F16;
        if (gmat_one(g, &G->w_gate, &l->w_gate, dt, d, e) || gmat_one(g, &G->w_up, &l->w_up, dt, d, e)) return -1;
    } else if (gmat_one(g, &G->w_up, &l->w_up, -1, d, e)) {
        return -1;
    }
    return gmat_one(g, &G->w_down, &l->w_down, -1, d, e);
}

extern "C" int cuda_model_create(const CudaModelDesc *d, CudaModel **out, Err *e) {
    *out = NULL;
    int n = 0;
    CU_TRY(e, cudaGetDeviceCount(&n));
    if (n < 1) return ERR(e, "no CUDA device");
    CudaModel *g = (CudaModel *)xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    int rc = -1;
    do {
        const char *dev_env = getenv("LOSSY_CUDA_DEVICE");
        g->dev = dev_env ? atoi(dev_env) : 0;
        if (g->dev < 0 || g->dev >= n) {
            ERR(e, "LOSSY_CUDA_DEVICE=%d: there are %d devices", g->dev, n);
            break;
        }
        cudaDeviceProp p;
        cudaError_t ce = cudaSetDevice(g->dev);
        if (ce == cudaSuccess) ce = cudaGetDeviceProperties(&p, g->dev);
        if (ce != cudaSuccess) {
            ERR(e, "CUDA: device %d: %s", g->dev, cudaGetErrorString(ce));
            break;
        }
        snprintf(g->name, sizeof g->name, "%s", p.name);
        if (p.major < 7) {
            ERR(e, "CUDA device %s has compute capability %d.%d; lossy needs 7.0 or newer", p.name, p.major, p.minor);
            break;
        }
        g->n_sm = p.multiProcessorCount;
        g->smem_max = p.sharedMemPerBlockOptin > 2048 ? p.sharedMemPerBlockOptin - 1024 : p.sharedMemPerBlock;
        if (kernels_set_smem_limit(g->smem_max, e)) break;
        const char *ge = getenv("LOSSY_CUDA_GRAPHS"), *pe = getenv("LOSSY_CUDA_PDL"), *pr = getenv("LOSSY_CUDA_PROFILE");
        g->use_graphs = !(ge && strcmp(ge, "0") == 0);
        g->prof = pr && strcmp(pr, "0") != 0 && *pr;
        if (g->prof) g->use_graphs = 0; // one event pair per launch; graphs would hide them
        // programmatic dependent launch: Hopper and newer, off while profiling (overlapping kernels blur their times)
        g->pdl = p.major >= 9 && !g->prof && !(pe && strcmp(pe, "0") == 0);
        kernels_set_pdl(g->pdl);
        ce = cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking);
        if (ce == cudaSuccess) ce = cudaEventCreate(&g->ev0);
        if (ce == cudaSuccess) ce = cudaEventCreate(&g->ev1);
        if (ce != cudaSuccess) {
            ERR(e, "CUDA: stream: %s", cudaGetErrorString(ce));
            break;
        }
        g->V = d->vocab, g->C = d->n_embd, g->F = d->n_ff, g->L = d->n_layer, g->H = d->n_head, g->Hkv = d->n_head_kv;
        g->hd = d->head_dim, g->QKV = (g->H + 2 * g->Hkv) * g->hd;
        g->pro = d->norm_layer ? PRO_LAYER : PRO_RMS, g->gated = d->mlp_gated, g->act = d->act, g->eps = (float)d->norm_eps;
        if (g->hd > ATTN_MAX_HD) {
            ERR(e, "head_dim %lld: the GPU attention supports at most %d", (long long)g->hd, ATTN_MAX_HD);
            break;
        }
        if (g->H % g->Hkv != 0 || attn_decode_smem_bytes(g->hd, g->H / g->Hkv) > g->smem_max) {
            ERR(e, "%lld query heads over %lld KV heads of %lld values: too large for the GPU decode attention", (long long)g->H,
                (long long)g->Hkv, (long long)g->hd);
            break;
        }
        if (attn_prompt_smem_bytes(g->hd) > g->smem_max) {
            ERR(e, "head_dim %lld needs more shared memory than the device has", (long long)g->hd);
            break;
        }
        AttnShape sh = {g->L, g->H, g->Hkv, g->hd, d->rope_dim, d->sliding_window, d->rope, NULL};
        if (d->rope) {
            void *f;
            if (dalloc(g, &f, (size_t)(d->rope_dim / 2) * sizeof(double), e)) break;
            if (cudaMemcpy(f, d->inv_freq, (size_t)(d->rope_dim / 2) * sizeof(double), cudaMemcpyHostToDevice) != cudaSuccess) {
                ERR(e, "CUDA: uploading rope frequencies");
                break;
            }
            sh.inv_freq = (const double *)f;
        }
        g->sh = sh;
        if (gmat_one(g, &g->tok, &d->tok_embd, -1, d, e)) break;
        g->has_pos = d->pos_embd.data != NULL;
        if (g->has_pos && gmat_one(g, &g->pos, &d->pos_embd, -1, d, e)) break;
        if (d->output.data == d->tok_embd.data) g->out = g->tok;
        else if (gmat_one(g, &g->out, &d->output, -1, d, e)) break;
        if (up_vec(g, &g->out_norm, d->output_norm, g->C, e) || up_vec(g, &g->out_norm_b, d->output_norm_b, g->C, e)) break;
        g->layers = (GLayer *)xcalloc((size_t)g->L, sizeof(GLayer));
        int64_t l = 0;
        for (; l < g->L; l++)
            if (upload_layer(g, &g->layers[l], &d->layers[l], d, e)) {
                err_prefix(e, "layer %lld: ", (long long)l);
                break;
            }
        if (l < g->L) break;
        if (mv_smem_bytes(G_F32, g->max_kp, 1) > g->smem_max) {
            ERR(e, "rows of %lld values are too wide for the GPU matvec", (long long)g->max_kp);
            break;
        }
        rc = 0;
    } while (0);
    if (rc) {
        cuda_model_destroy(g);
        return -1;
    }
    *out = g;
    return 0;
}

extern "C" size_t cuda_model_weight_bytes(const CudaModel *g) { return g->wbytes; }
extern "C" const char *cuda_model_device_name(const CudaModel *g) { return g->name; }
extern "C" int cuda_model_uses_pdl(const CudaModel *g) { return g->pdl; }

extern "C" int cuda_seq_create(CudaModel *g, int64_t n_ctx, CudaSeq **out, Err *e) {
    *out = NULL;
    CU_TRY(e, cudaSetDevice(g->dev));
    if (n_ctx < 1) return ERR(e, "context of %lld positions", (long long)n_ctx);
    size_t per;
    if (bytes_of(g->L * g->Hkv, n_ctx * g->hd, sizeof(float), &per, e)) return -1;
    CudaSeq *s = (CudaSeq *)xcalloc(1, sizeof *s);
    s->g = g, s->n_ctx = n_ctx;
    cudaError_t ce = cudaMalloc((void **)&s->k, per);
    if (ce == cudaSuccess) ce = cudaMalloc((void **)&s->v, per);
    if (ce != cudaSuccess) {
        cudaFree(s->k);
        free(s);
        cudaGetLastError();
        return ERR(e, "CUDA: KV cache of %zu MB: %s", 2 * per >> 20, cudaGetErrorString(ce));
    }
    pthread_mutex_lock(&g->mu);
    if (n_ctx > g->max_ctx) {
        g->max_ctx = n_ctx;
        drop_graphs(g); // the attention's grid is sized for the longest context
    }
    pthread_mutex_unlock(&g->mu);
    *out = s;
    return 0;
}

extern "C" void cuda_seq_destroy(CudaSeq *s) {
    if (!s) return;
    cudaSetDevice(s->g->dev);
    cudaStreamSynchronize(s->g->st);
    cudaFree(s->k);
    cudaFree(s->v);
    free(s);
}

// ---------------------------------------------------------------------------------------------------------------
// decoding

static int ensure_decode(CudaModel *g, int64_t S, Err *e) {
    if (S <= g->smax) return 0;
    free_decode(g);
    int64_t n = S < 4 ? 4 : S;
    size_t b;
#define DEC_ALLOC(ptr, cols)                                                                                       \
    if (bytes_of(n, cols, sizeof(float), &b, e)) return -1;                                                        \
    CU_TRY(e, cudaMalloc((void **)&ptr, b));
    DEC_ALLOC(g->x, g->C)
    DEC_ALLOC(g->qkv, g->QKV)
    DEC_ALLOC(g->att, g->H * g->hd)
    DEC_ALLOC(g->hb, g->F)
    DEC_ALLOC(g->logits, g->V)
#undef DEC_ALLOC
    if (bytes_of(n, (int64_t)attn_partial_floats(g->H, g->hd), sizeof(float), &b, e)) return -1;
    CU_TRY(e, cudaMalloc((void **)&g->att_part, b));
    CU_TRY(e, cudaMalloc((void **)&g->att_cnt, (size_t)(n * g->Hkv) * sizeof(int)));
    CU_TRY(e, cudaMemset(g->att_cnt, 0, (size_t)(n * g->Hkv) * sizeof(int)));
    CU_TRY(e, cudaMalloc((void **)&g->rope_cs, (size_t)(n * (g->sh.rope_dim / 2 + 1)) * sizeof(float2)));
    CU_TRY(e, cudaMalloc((void **)&g->d_seq, (size_t)n * sizeof(SeqDev)));
    CU_TRY(e, cudaMallocHost((void **)&g->h_seq, (size_t)n * sizeof(SeqDev)));
    if (bytes_of(n, g->V, sizeof(float), &b, e)) return -1;
    CU_TRY(e, cudaMallocHost((void **)&g->h_logits, b));
    g->graphs = (cudaGraphExec_t *)xcalloc((size_t)n + 1, sizeof(cudaGraphExec_t));
    g->smax = n;
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// profiling (LOSSY_CUDA_PROFILE=1): prof_begin / prof_end around a launch record an event pair on the stream;
// prof_collect, after the stream synchronised, adds their times into a table by kind.

static void prof_begin(CudaModel *g, const char *kind, double bytes, double flops) {
    if (!g->prof) return;
    if (g->npend == g->pcap) {
        const int cap = g->pcap ? 2 * g->pcap : 256;
        cudaEvent_t *ev = (cudaEvent_t *)xrealloc(g->pev, 2 * (size_t)cap * sizeof *ev);
        const char **k = (const char **)xrealloc(g->pkind, (size_t)cap * sizeof *k);
        double *by = (double *)xrealloc(g->pbytes, (size_t)cap * sizeof *by), *fl = (double *)xrealloc(g->pflops, (size_t)cap * sizeof *fl);
        g->pev = ev, g->pkind = k, g->pbytes = by, g->pflops = fl;
        for (int i = 2 * g->pcap; i < 2 * cap; i++)
            if (cudaEventCreate(&g->pev[i]) != cudaSuccess) { // profiling is optional: stop it rather than fail the run
                while (i-- > 2 * g->pcap) cudaEventDestroy(g->pev[i]);
                g->prof = 0;
                return;
            }
        g->pcap = cap;
    }
    g->pkind[g->npend] = kind, g->pbytes[g->npend] = bytes, g->pflops[g->npend] = flops;
    cudaEventRecord(g->pev[2 * g->npend], g->st);
}

static void prof_end(CudaModel *g) {
    if (!g->prof) return;
    cudaEventRecord(g->pev[2 * g->npend + 1], g->st);
    g->npend++;
}

static void prof_collect(CudaModel *g, ProfTable *t, int64_t tokens) {
    if (!g->prof) return;
    for (int i = 0; i < g->npend; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, g->pev[2 * i], g->pev[2 * i + 1]) != cudaSuccess) ms = 0;
        int k = 0;
        while (k < t->n && strcmp(t->k[k].name, g->pkind[i]) != 0) k++;
        if (k == t->n) {
            if (t->n == PROF_KINDS) continue;
            memset(&t->k[t->n], 0, sizeof t->k[0]);
            t->k[t->n++].name = g->pkind[i];
        }
        t->k[k].ms += ms, t->k[k].bytes += g->pbytes[i], t->k[k].flops += g->pflops[i], t->k[k].launches++;
    }
    cudaGetLastError();
    g->npend = 0;
    t->tokens += tokens, t->calls++;
}

static size_t prof_table(const ProfTable *t, const char *what, char *buf, size_t len) {
    size_t n = 0;
#define PR(...) (n += (size_t)snprintf(buf + (n < len ? n : len), n < len ? len - n : 0, __VA_ARGS__))
    if (!t->tokens) return 0;
    double all = 0, all_b = 0, all_l = 0;
    for (int k = 0; k < t->n; k++) all += t->k[k].ms, all_b += t->k[k].bytes, all_l += (double)t->k[k].launches;
    const double tok = (double)t->tokens;
    PR("%s: %lld tokens in %lld calls; per token, summed over layers:\n", what, (long long)t->tokens, (long long)t->calls);
    PR("  %-22s %9s %10s %6s %10s %8s %9s\n", "kernel", "launches", "us/token", "%", "MB/token", "GB/s", "GFLOP/s");
    for (int k = 0; k < t->n; k++) {
        const ProfKind *p = &t->k[k];
        PR("  %-22s %9.1f %10.2f %6.1f %10.3f %8.0f %9.0f\n", p->name, (double)p->launches / tok, 1e3 * p->ms / tok,
           all > 0 ? 100 * p->ms / all : 0, p->bytes / tok / 1e6, p->ms > 0 ? p->bytes / (p->ms * 1e-3) / 1e9 : 0,
           p->ms > 0 ? p->flops / (p->ms * 1e-3) / 1e9 : 0);
    }
    PR("  %-22s %9.1f %10.2f %6.1f %10.3f %8.0f   (%.0f tok/s if kernels ran back to back)\n", "all kernels", all_l / tok,
       1e3 * all / tok, 100.0, all_b / tok / 1e6, all > 0 ? all_b / (all * 1e-3) / 1e9 : 0, all > 0 ? tok / (all * 1e-3) : 0);
#undef PR
    return n;
}

extern "C" int cuda_model_profiling(const CudaModel *g) { return g->prof; }

extern "C" void cuda_model_profile_reset(CudaModel *g) {
    memset(&g->pdec, 0, sizeof g->pdec);
    memset(&g->ppre, 0, sizeof g->ppre);
}

extern "C" size_t cuda_model_profile_report(const CudaModel *g, char *buf, size_t len) {
    if (len) buf[0] = 0;
    if (!g->prof) return 0;
    size_t n = prof_table(&g->ppre, "prompt processing (CUDA events per launch, graphs and PDL off)", buf, len);
    n += prof_table(&g->pdec, "decoding (CUDA events per launch, graphs and PDL off)", buf + (n < len ? n : len), n < len ? len - n : 0);
    return n;
}

// ---------------------------------------------------------------------------------------------------------------
// decoding kernels

static double gmat_bytes(const GMat &w) {
    return (double)w.rows * (double)w.ld + (w.d ? (double)w.rows * (double)(w.kp / 32) * 2.0 : 0.0);
}

static int mv(CudaModel *g, const char *kind, const GMat &w, const GMat *w2, const float *x, int64_t ldx, int64_t S, int pro,
              const float *nw, const float *nb, int epi, const float *ba, const float *bb, float *y, int64_t ldy, Err *e) {
    MvArgs a;
    memset(&a, 0, sizeof a);
    a.a = w;
    if (w2) a.b = *w2;
    a.x = x, a.ldx = ldx, a.nstates = (int)S, a.pro = pro, a.nw = nw, a.nb = nb, a.eps = g->eps;
    a.epi = epi, a.act = g->act, a.bias_a = ba, a.bias_b = bb, a.y = y, a.ldy = ldy;
    const int nm = w2 ? 2 : 1;
    prof_begin(g, kind, nm * gmat_bytes(w) + 4.0 * (double)S * (double)(w.cols + nm * w.rows),
               2.0 * nm * (double)S * (double)w.rows * (double)w.cols);
    int rc = mv_launch(a, g->smem_max, g->n_sm, g->st, e);
    prof_end(g);
    return rc;
}

// The kernels of one decoding step for S states (what the graph captures).
static int decode_record(CudaModel *g, int64_t S, Err *e) {
    const int64_t C = g->C, F = g->F, HD = g->H * g->hd;
    prof_begin(g, "embed + rope table", 4.0 * (double)(S * C), 0);
    if (embed_launch(g->tok, g->has_pos ? &g->pos : NULL, g->d_seq, NULL, NULL, S, g->x, C, g->st, e)) return -1;
    if (rope_table_launch(g->sh, g->d_seq, S, g->rope_cs, g->st, e)) return -1;
    prof_end(g);
    double kv_bytes = 0; // cache bytes the attention reads per layer (only known when not capturing: profiling)
    if (g->prof)
        for (int64_t i = 0; i < S; i++) {
            const int64_t pos = g->h_seq[i].pos, w = g->sh.window, lo = w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
            kv_bytes += (double)(pos + 1 - lo) * (double)(g->Hkv * g->hd) * 8.0;
        }
    for (int64_t l = 0; l < g->L; l++) {
        const GLayer *L = &g->layers[l];
        if (mv(g, "mv norm+qkv", L->wqkv, NULL, g->x, C, S, g->pro, L->attn_norm, L->attn_norm_b, EPI_STORE, L->bqkv, NULL, g->qkv,
               g->QKV, e))
            return -1;
        prof_begin(g, "attention (split)", kv_bytes, kv_bytes / 4.0 * (double)(g->H / g->Hkv) * 2.0);
        if (attn_decode_launch(g->sh, l, g->d_seq, g->rope_cs, S, g->qkv, g->att, g->att_part, g->att_cnt, g->max_ctx, g->st, e))
            return -1;
        prof_end(g);
        if (mv(g, "mv o +residual", L->wo, NULL, g->att, HD, S, PRO_COPY, NULL, NULL, EPI_ADD, L->bo, NULL, g->x, C, e)) return -1;
        if (g->gated) {
            if (mv(g, "mv norm+gate/up+act", L->w_gate, &L->w_up, g->x, C, S, g->pro, L->ffn_norm, L->ffn_norm_b, EPI_GLU, L->b_gate,
                   L->b_up, g->hb, F, e))
                return -1;
        } else if (mv(g, "mv norm+up+act", L->w_up, NULL, g->x, C, S, g->pro, L->ffn_norm, L->ffn_norm_b, EPI_ACT, L->b_up, NULL, g->hb,
                      F, e)) {
            return -1;
        }
        if (mv(g, "mv down +residual", L->w_down, NULL, g->hb, F, S, PRO_COPY, NULL, NULL, EPI_ADD, L->b_down, NULL, g->x, C, e))
            return -1;
    }
    return mv(g, "mv norm+output", g->out, NULL, g->x, C, S, g->pro, g->out_norm, g->out_norm_b, EPI_STORE, NULL, NULL, g->logits,
              g->V, e);
}

static int decode_launch(CudaModel *g, int64_t S, Err *e) {
    if (!g->use_graphs) return decode_record(g, S, e);
    if (!g->graphs[S]) {
        cudaGraph_t graph = NULL;
        CU_TRY(e, cudaStreamBeginCapture(g->st, cudaStreamCaptureModeRelaxed));
        int rc = decode_record(g, S, e);
        cudaError_t ce = cudaStreamEndCapture(g->st, &graph);
        if (rc == 0 && ce != cudaSuccess) rc = ERR(e, "CUDA: capturing the decoding graph: %s", cudaGetErrorString(ce));
        if (rc == 0) {
            ce = cudaGraphInstantiate(&g->graphs[S], graph, 0);
            if (ce != cudaSuccess) rc = ERR(e, "CUDA: instantiating the decoding graph: %s", cudaGetErrorString(ce)), g->graphs[S] = NULL;
        }
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        if (rc) return -1;
    }
    CU_TRY(e, cudaGraphLaunch(g->graphs[S], g->st));
    return 0;
}

static int step_locked(CudaModel *g, CudaSeq *const *seqs, const int64_t *pos, const int32_t *tokens, int64_t S,
                       float *const *logits, Err *e) {
    if (ensure_decode(g, S, e)) return -1;
    g->npend = 0;
    for (int64_t i = 0; i < S; i++) {
        const CudaSeq *s = seqs[i];
        if (s->g != g) return ERR(e, "sequence %lld belongs to another GPU model", (long long)i);
        if (pos[i] < 0 || pos[i] >= s->n_ctx) return ERR(e, "context is full (%lld tokens)", (long long)s->n_ctx);
        if (tokens[i] < 0 || tokens[i] >= g->V) return ERR(e, "token id %d is outside the vocabulary (%lld)", tokens[i], (long long)g->V);
        if (g->has_pos && pos[i] >= g->pos.rows) return ERR(e, "position %lld is past the position table", (long long)pos[i]);
        g->h_seq[i] = SeqDev{s->k, s->v, s->n_ctx, pos[i], tokens[i], 0};
    }
    CU_TRY(e, cudaMemcpyAsync(g->d_seq, g->h_seq, (size_t)S * sizeof(SeqDev), cudaMemcpyHostToDevice, g->st));
    if (decode_launch(g, S, e)) {
        // a driver that cannot launch (or capture) with programmatic dependent launch: once more without it
        if (!g->pdl) return -1;
        g->pdl = 0;
        kernels_set_pdl(0);
        drop_graphs(g);
        cudaGetLastError();
        g->npend = 0;
        if (decode_launch(g, S, e)) return -1;
    }
    CU_TRY(e, cudaMemcpyAsync(g->h_logits, g->logits, (size_t)S * (size_t)g->V * sizeof(float), cudaMemcpyDeviceToHost, g->st));
    CU_TRY(e, cudaStreamSynchronize(g->st));
    prof_collect(g, &g->pdec, S);
    for (int64_t i = 0; i < S; i++) memcpy(logits[i], g->h_logits + i * g->V, (size_t)g->V * sizeof(float));
    return 0;
}

extern "C" int cuda_model_step_batch(CudaModel *g, CudaSeq *const *seqs, const int64_t *pos, const int32_t *tokens, int64_t n,
                                     float *const *logits, Err *e) {
    if (n < 1) return ERR(e, "no sequences to step");
    CU_TRY(e, cudaSetDevice(g->dev));
    pthread_mutex_lock(&g->mu);
    int rc = step_locked(g, seqs, pos, tokens, n, logits, e);
    pthread_mutex_unlock(&g->mu);
    return rc;
}

// ---------------------------------------------------------------------------------------------------------------
// prompt chunks

static int ensure_prompt(CudaModel *g, Err *e) {
    if (g->prompt_ready) return 0;
    const int64_t T = PCHUNK;
    size_t b;
#define P_ALLOC(ptr, cols, el)                                                                                     \
    if (bytes_of(T, cols, el, &b, e)) return -1;                                                                   \
    CU_TRY(e, cudaMalloc((void **)&ptr, b));
    P_ALLOC(g->px, g->C, 4)
    P_ALLOC(g->pxb, g->C, 4)
    P_ALLOC(g->pqkv, g->QKV, 4)
    P_ALLOC(g->patt, g->H * g->hd, 4)
    P_ALLOC(g->phb, g->F, 4)
    P_ALLOC(g->phb2, g->F, 4)
    P_ALLOC(g->ph, g->max_kp, 2)
#undef P_ALLOC
    if (bytes_of(LOGCH, g->V, 4, &b, e)) return -1;
    CU_TRY(e, cudaMalloc((void **)&g->plog, b));
    if (g->max_qelems) CU_TRY(e, cudaMalloc((void **)&g->wscr, g->max_qelems * sizeof(__half)));
    CU_TRY(e, cudaMalloc((void **)&g->d_tok, T * sizeof(int32_t)));
    CU_TRY(e, cudaMalloc((void **)&g->d_pos, T * sizeof(int64_t)));
    CU_TRY(e, cudaMallocHost((void **)&g->h_tok, T * sizeof(int32_t)));
    CU_TRY(e, cudaMallocHost((void **)&g->h_pos, T * sizeof(int64_t)));
    CU_TRY(e, cudaMalloc(&g->lt_ws, LT_WS));
    CU_TRY(e, cudaMalloc((void **)&g->psc, SC_FLOATS * sizeof(float)));
    CU_TRY(e, cudaEventCreateWithFlags(&g->ev_tok, cudaEventDisableTiming));
    g->blas = cuda_blas_get(e);
    if (!g->blas) return -1;
    CUBLAS_TRY(e, g->blas->cublasLtCreate(&g->lt));
    CUBLAS_TRY(e, g->blas->cublasCreate_v2(&g->cublas));
    CUBLAS_TRY(e, g->blas->cublasSetStream_v2(g->cublas, g->st));
    g->prompt_ready = 1;
    return 0;
}

static int align_of(const void *p, int64_t ld, size_t el) {
    uintptr_t a = (uintptr_t)p | (uintptr_t)((size_t)ld * el);
    int al = 16;
    while (al > 1 && (a % (uintptr_t)al)) al /= 2;
    return al;
}

// A cached cuBLASLt plan (descriptors and algorithm) for Y (T, N) = X (T, K) W^T with W (N, lda) in type wt.
static GemmPlan *gemm_plan(CudaModel *g, int dt, int64_t N, int64_t K, int64_t T, int64_t lda, int64_t ldb, int64_t ldy,
                           int align, Err *e) {
    const CudaBlas *B = g->blas;
    GemmPlan *free_slot = NULL;
    for (int i = 0; i < GEMM_CACHE; i++) {
        GemmPlan *p = &g->plans[i];
        if (!p->used) {
            if (!free_slot) free_slot = p;
            continue;
        }
        if (p->dt == dt && p->N == N && p->K == K && p->T == T && p->lda == lda && p->ldb == ldb && p->ldy == ldy && p->align == align) return p;
    }
    if (!free_slot) { // full: recycle slot 0
        free_slot = &g->plans[0];
        B->cublasLtMatmulDescDestroy(free_slot->op);
        B->cublasLtMatrixLayoutDestroy(free_slot->la), B->cublasLtMatrixLayoutDestroy(free_slot->lb), B->cublasLtMatrixLayoutDestroy(free_slot->lc);
        free_slot->used = 0;
    }
    GemmPlan *p = free_slot;
    const cudaDataType wt = dt == G_F32 ? CUDA_R_32F : dt == G_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    const cublasOperation_t tr = CUBLAS_OP_T;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    const size_t ws = LT_WS;
    const uint32_t al = (uint32_t)align;
#define LT(call) do { cublasStatus_t s_ = (call); if (s_ != CUBLAS_STATUS_SUCCESS) { cuda_blas_err_at(e, __FILE__, __LINE__, #call, s_); goto fail; } } while (0)
    memset(p, 0, sizeof *p);
    LT(B->cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(B->cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr));
    // column-major view: W is (K x N, ld lda) transposed, X is (K x T, ld ldb), Y is (N x T, ld ldy)
    LT(B->cublasLtMatrixLayoutCreate(&p->la, wt, (uint64_t)K, (uint64_t)N, lda));
    LT(B->cublasLtMatrixLayoutCreate(&p->lb, wt, (uint64_t)K, (uint64_t)T, ldb));
    LT(B->cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, (uint64_t)N, (uint64_t)T, ldy));
    LT(B->cublasLtMatmulPreferenceCreate(&pref));
    LT(B->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LT(B->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
    LT(B->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al));
    LT(B->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al));
    LT(B->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    LT(B->cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &nres));
    if (nres < 1) {
        ERR(e, "cuBLASLt has no algorithm for a %lld x %lld x %lld GEMM", (long long)T, (long long)N, (long long)K);
        goto fail;
    }
#undef LT
    B->cublasLtMatmulPreferenceDestroy(pref);
    p->algo = res.algo;
    p->dt = dt, p->N = N, p->K = K, p->T = T, p->lda = lda, p->ldb = ldb, p->ldy = ldy, p->align = align, p->used = 1;
    return p;
fail:
    if (pref) B->cublasLtMatmulPreferenceDestroy(pref);
    if (p->op) B->cublasLtMatmulDescDestroy(p->op);
    if (p->la) B->cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) B->cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) B->cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
    return NULL;
}

// y (T, ldy) = x (T, ldx) W^T (+ y when accumulate): the residual add rides on the GEMM's beta.
static int gemm(CudaModel *g, const char *kind, const GMat &w, const float *x, int64_t ldx, int64_t T, float *y, int64_t ldy,
                bool accumulate, Err *e) {
    const void *A = w.q, *Bm = x;
    int64_t ldb = ldx;
    int dt = w.dt;
    if (w.dt != G_F32) {
        const int bf = w.dt == G_BF16;
        prof_begin(g, "to f16/bf16", 6.0 * (double)(T * w.cols), 0);
        if (to_half_launch(bf, x, ldx, T, w.cols, g->ph, w.kp, g->st, e)) return -1;
        prof_end(g);
        Bm = g->ph, ldb = w.kp;
        if (w.dt == G_Q8 || w.dt == G_Q4) {
            prof_begin(g, "dequant to f16", gmat_bytes(w) + 2.0 * (double)(w.rows * w.kp), 0);
            if (dequant_f16_launch(w, g->wscr, g->st, e)) return -1;
            prof_end(g);
            A = g->wscr, dt = G_F16;
        }
    }
    const size_t el = dt == G_F32 ? 4 : 2;
    int al = align_of(A, w.kp, el), ab = align_of(Bm, ldb, el), ay = align_of(y, ldy, 4);
    if (ab < al) al = ab;
    if (ay < al) al = ay;
    GemmPlan *p = gemm_plan(g, dt, w.rows, w.cols, T, w.kp, ldb, ldy, al, e);
    if (!p) return -1;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    prof_begin(g, kind, (double)w.rows * (double)w.kp * (double)el + (double)(T * w.kp) * (double)el + 4.0 * (double)(T * w.rows),
               2.0 * (double)T * (double)w.rows * (double)w.cols);
    CUBLAS_TRY(e, g->blas->cublasLtMatmul(g->lt, p->op, &one, A, p->la, Bm, p->lb, &beta, y, p->lc, y, p->lc, &p->algo,
                                          g->lt_ws, LT_WS, g->st));
    prof_end(g);
    return 0;
}

// Causal attention of the chunk's T queries (positions pos0..) over the cache through cuBLAS, per pass of nq queries
// whose scores fit the scratch: for each of the G query heads of a KV head, S = Q K^T * scale batched over the KV
// heads (query head g * G + j reads KV head g), the masked softmax over all heads at once, then O = P V batched the
// same way, written straight into patt (T, H * hd). F32 models keep full fp32 products (their prompt logits match the
// CPU to 1e-5); the others, whose activations the weight GEMMs already round to 16 bits, let cuBLAS use TF32.
static int attn_gemm(CudaModel *g, const CudaSeq *sq, int64_t l, int64_t pos0, int64_t T, Err *e) {
    const int64_t H = g->H, Hkv = g->Hkv, G = H / Hkv, hd = g->hd, HD = H * hd, QKV = g->QKV, n_ctx = sq->n_ctx;
    const int64_t ld_all = (pos0 + T + 3) / 4 * 4;
    int64_t per = (int64_t)(SC_FLOATS / (size_t)(H * ld_all));
    if (per < 1) { // the scores of even one query do not fit: the tiled kernel
        prof_begin(g, "attention (tiled)", 0, 0);
        if (attn_prompt_launch(g->sh, l, sq->k, sq->v, n_ctx, pos0, T, g->pqkv, g->patt, g->st, e)) return -1;
        prof_end(g);
        return 0;
    }
    const CudaBlas *B = g->blas;
    const cublasComputeType_t ct = g->layers[l].wqkv.dt == G_F32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
    const float scale = (float)(1.0 / sqrt((double)hd)), zero = 0.0f, one = 1.0f;
    const size_t head_off = (size_t)l * (size_t)Hkv * (size_t)n_ctx * (size_t)hd;
    const float *kc = sq->k + head_off, *vc = sq->v + head_off;
    for (int64_t tq0 = 0; tq0 < T; tq0 += per) {
        const int64_t nq = T - tq0 < per ? T - tq0 : per, nk = pos0 + tq0 + nq, ld = (nk + 3) / 4 * 4;
        const double fl = 2.0 * (double)(H * nq) * (double)nk * (double)hd;
        // scores of head g * G + j at psc + (j * Hkv + g) * nq * ld: row-major (nq, ld) = column-major (nk x nq)
        prof_begin(g, "attention Q K^T gemm", 4.0 * (double)(Hkv * nk * hd + H * nq * hd + H * nq * nk), fl);
        for (int64_t j = 0; j < G; j++)
            CUBLAS_TRY(e, B->cublasGemmStridedBatchedEx(g->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nk, (int)nq, (int)hd, &scale, kc,
                                                        CUDA_R_32F, (int)hd, (long long)(n_ctx * hd), g->pqkv + tq0 * QKV + j * hd,
                                                        CUDA_R_32F, (int)QKV, (long long)(G * hd), &zero,
                                                        g->psc + j * Hkv * nq * ld, CUDA_R_32F, (int)ld, (long long)(nq * ld),
                                                        (int)Hkv, ct, CUBLAS_GEMM_DEFAULT));
        prof_end(g);
        prof_begin(g, "attention softmax", 8.0 * (double)(H * nq * nk), 0);
        if (attn_softmax_launch(g->psc, ld, H * nq, nq, tq0, pos0, nk, g->sh.window, g->st, e)) return -1;
        prof_end(g);
        prof_begin(g, "attention P V gemm", 4.0 * (double)(Hkv * nk * hd + H * nq * hd + H * nq * nk), fl);
        for (int64_t j = 0; j < G; j++)
            CUBLAS_TRY(e, B->cublasGemmStridedBatchedEx(g->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)hd, (int)nq, (int)nk, &one, vc,
                                                        CUDA_R_32F, (int)hd, (long long)(n_ctx * hd), g->psc + j * Hkv * nq * ld,
                                                        CUDA_R_32F, (int)ld, (long long)(nq * ld), &zero,
                                                        g->patt + tq0 * HD + j * hd, CUDA_R_32F, (int)HD, (long long)(G * hd),
                                                        (int)Hkv, ct, CUBLAS_GEMM_DEFAULT));
        prof_end(g);
    }
    return 0;
}

static int prompt_chunk(CudaModel *g, CudaSeq *s, int64_t pos0, const int32_t *tokens, int64_t T, float *logits_all, Err *e) {
    const int64_t C = g->C, F = g->F, HD = g->H * g->hd, V = g->V;
    // the previous chunk's upload of the pinned token buffers must have happened before they are rewritten (an event
    // right after that copy, so the host keeps enqueueing ahead of the GPU)
    CU_TRY(e, cudaEventSynchronize(g->ev_tok));
    for (int64_t t = 0; t < T; t++) {
        if (tokens[t] < 0 || tokens[t] >= V) return ERR(e, "token id %d is outside the vocabulary (%lld)", tokens[t], (long long)V);
        if (g->has_pos && pos0 + t >= g->pos.rows) return ERR(e, "position %lld is past the position table", (long long)(pos0 + t));
        g->h_tok[t] = tokens[t], g->h_pos[t] = pos0 + t;
    }
    CU_TRY(e, cudaMemcpyAsync(g->d_tok, g->h_tok, (size_t)T * sizeof(int32_t), cudaMemcpyHostToDevice, g->st));
    CU_TRY(e, cudaMemcpyAsync(g->d_pos, g->h_pos, (size_t)T * sizeof(int64_t), cudaMemcpyHostToDevice, g->st));
    CU_TRY(e, cudaEventRecord(g->ev_tok, g->st));
    prof_begin(g, "embed", 4.0 * (double)(T * C), 0);
    if (embed_launch(g->tok, g->has_pos ? &g->pos : NULL, NULL, g->d_tok, g->d_pos, T, g->px, C, g->st, e)) return -1;
    prof_end(g);
    const double nb = 8.0 * (double)(T * C); // bytes of a row-wise pass over the stream
    for (int64_t l = 0; l < g->L; l++) {
        const GLayer *L = &g->layers[l];
        prof_begin(g, "norm", nb, 0);
        if (norm_rows_launch(g->pro, g->px, L->attn_norm, L->attn_norm_b, g->eps, T, C, g->pxb, g->st, e)) return -1;
        prof_end(g);
        if (gemm(g, "gemm qkv", L->wqkv, g->pxb, C, T, g->pqkv, g->QKV, false, e)) return -1;
        if (L->bqkv) {
            prof_begin(g, "bias", 8.0 * (double)(T * g->QKV), 0);
            if (add_bias_launch(g->pqkv, g->QKV, L->bqkv, T, g->QKV, g->st, e)) return -1;
            prof_end(g);
        }
        prof_begin(g, "rope + cache store", 4.0 * (double)(T * g->QKV), 0);
        if (rope_store_launch(g->sh, l, s->k, s->v, s->n_ctx, pos0, T, g->pqkv, g->st, e)) return -1;
        prof_end(g);
        if (attn_gemm(g, s, l, pos0, T, e)) return -1;
        if (gemm(g, "gemm o +residual", L->wo, g->patt, HD, T, g->px, C, true, e)) return -1;
        if (L->bo) {
            prof_begin(g, "bias", nb, 0);
            if (add_bias_launch(g->px, C, L->bo, T, C, g->st, e)) return -1;
            prof_end(g);
        }
        prof_begin(g, "norm", nb, 0);
        if (norm_rows_launch(g->pro, g->px, L->ffn_norm, L->ffn_norm_b, g->eps, T, C, g->pxb, g->st, e)) return -1;
        prof_end(g);
        if (g->gated && gemm(g, "gemm gate", L->w_gate, g->pxb, C, T, g->phb, F, false, e)) return -1;
        if (gemm(g, "gemm up", L->w_up, g->pxb, C, T, g->phb2, F, false, e)) return -1;
        prof_begin(g, "mlp act", 12.0 * (double)(T * F), 0);
        if (mlp_middle_launch(g->gated, g->act, g->phb, g->phb2, L->b_gate, L->b_up, T, F, g->st, e)) return -1;
        prof_end(g);
        if (gemm(g, "gemm down +residual", L->w_down, g->phb, F, T, g->px, C, true, e)) return -1;
        if (L->b_down) {
            prof_begin(g, "bias", nb, 0);
            if (add_bias_launch(g->px, C, L->b_down, T, C, g->st, e)) return -1;
            prof_end(g);
        }
    }
    if (logits_all) {
        prof_begin(g, "norm", nb, 0);
        if (norm_rows_launch(g->pro, g->px, g->out_norm, g->out_norm_b, g->eps, T, C, g->pxb, g->st, e)) return -1;
        prof_end(g);
        for (int64_t r = 0; r < T; r += LOGCH) {
            const int64_t nr = T - r < LOGCH ? T - r : LOGCH;
            if (gemm(g, "gemm output", g->out, g->pxb + r * C, C, nr, g->plog, V, false, e)) return -1;
            CU_TRY(e, cudaMemcpyAsync(logits_all + r * V, g->plog, (size_t)(nr * V) * sizeof(float), cudaMemcpyDeviceToHost, g->st));
            CU_TRY(e, cudaStreamSynchronize(g->st)); // plog is reused by the next rows
        }
    }
    return 0;
}

extern "C" int cuda_model_forward(CudaModel *g, CudaSeq *s, int64_t pos, const int32_t *tokens, int64_t n, float *logits_last,
                                  float *logits_all, Err *e) {
    if (n < 1) return ERR(e, "no tokens to process");
    if (s->g != g) return ERR(e, "the sequence belongs to another GPU model");
    if (pos < 0 || n > s->n_ctx - pos) return ERR(e, "context is full (%lld tokens)", (long long)s->n_ctx);
    if (n == 1 && !logits_all) {
        CudaSeq *seqs[1] = {s};
        float *lg[1] = {logits_last};
        return cuda_model_step_batch(g, seqs, &pos, tokens, 1, lg, e);
    }
    CU_TRY(e, cudaSetDevice(g->dev));
    pthread_mutex_lock(&g->mu);
    int rc = ensure_prompt(g, e) || ensure_decode(g, 1, e) ? -1 : 0;
    g->npend = 0;
    for (int64_t i = 0; i < n && rc == 0; i += PCHUNK) {
        const int64_t T = n - i < PCHUNK ? n - i : PCHUNK;
        rc = prompt_chunk(g, s, pos + i, tokens + i, T, logits_all ? logits_all + i * g->V : NULL, e);
        if (rc == 0 && i + T == n && !logits_all) {
            // the last token's logits: norm + output matvec of its residual row
            rc = mv(g, "mv norm+output (last)", g->out, NULL, g->px + (T - 1) * g->C, g->C, 1, g->pro, g->out_norm, g->out_norm_b, EPI_STORE, NULL, NULL,
                    g->logits, g->V, e);
            if (rc == 0) {
                cudaError_t ce = cudaMemcpyAsync(g->h_logits, g->logits, (size_t)g->V * sizeof(float), cudaMemcpyDeviceToHost, g->st);
                if (ce == cudaSuccess) ce = cudaStreamSynchronize(g->st);
                if (ce != cudaSuccess) rc = ERR(e, "CUDA: logits: %s", cudaGetErrorString(ce));
                else memcpy(logits_last, g->h_logits, (size_t)g->V * sizeof(float));
            }
        }
    }
    if (rc == 0) {
        cudaError_t ce = cudaStreamSynchronize(g->st);
        if (ce != cudaSuccess) rc = ERR(e, "CUDA: prompt: %s", cudaGetErrorString(ce));
    }
    if (rc == 0) prof_collect(g, &g->ppre, n);
    pthread_mutex_unlock(&g->mu);
    if (rc == 0 && logits_all) memcpy(logits_last, logits_all + (n - 1) * g->V, (size_t)g->V * sizeof(float));
    return rc;
}

// ---------------------------------------------------------------------------------------------------------------
// timing

extern "C" int cuda_model_timer_start(CudaModel *g, Err *e) {
    CU_TRY(e, cudaEventRecord(g->ev0, g->st));
    return 0;
}

extern "C" int cuda_model_timer_stop(CudaModel *g, double *seconds, Err *e) {
    float ms = 0;
    CU_TRY(e, cudaEventRecord(g->ev1, g->st));
    CU_TRY(e, cudaEventSynchronize(g->ev1));
    CU_TRY(e, cudaEventElapsedTime(&ms, g->ev0, g->ev1));
    *seconds = ms / 1e3;
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// kernel-level test hook

extern "C" int cuda_attn_decode_run(int64_t H, int64_t Hkv, int64_t hd, int rope, int64_t rope_dim, const double *inv_freq,
                                    int64_t window, int64_t nseq, const int64_t *n_ctx, const int64_t *pos, float *const *k,
                                    float *const *v, const float *qkv, float *out, Err *e) {
    if (H < 1 || Hkv < 1 || H % Hkv || hd < 2 || hd > ATTN_MAX_HD || nseq < 1 || (rope && (rope_dim < 2 || rope_dim > hd)))
        return ERR(e, "attention test: bad shape");
    if (attn_decode_smem_bytes(hd, H / Hkv) > 48 * 1024) return ERR(e, "attention test: shape needs opt-in shared memory");
    int64_t max_ctx = 0;
    for (int64_t i = 0; i < nseq; i++) {
        if (n_ctx[i] < 1 || pos[i] < 0 || pos[i] >= n_ctx[i]) return ERR(e, "attention test: bad position");
        if (n_ctx[i] > max_ctx) max_ctx = n_ctx[i];
    }
    const int64_t QKV = (H + 2 * Hkv) * hd;
    float **dk = (float **)xcalloc((size_t)nseq, sizeof *dk), **dv = (float **)xcalloc((size_t)nseq, sizeof *dv);
    SeqDev *hs = (SeqDev *)xcalloc((size_t)nseq, sizeof *hs);
    SeqDev *ds = NULL;
    float *dqkv = NULL, *dout = NULL, *dpart = NULL;
    float2 *dcs = NULL;
    double *dfreq = NULL;
    int *dcnt = NULL, *hcnt = NULL;
    cudaStream_t st = NULL;
    int rc = -1;
    do {
#define T_CU(call) { cudaError_t c_ = (call); if (c_ != cudaSuccess) { ERR(e, "CUDA: %s: %s", #call, cudaGetErrorString(c_)); break; } }
        T_CU(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        int64_t i = 0;
        for (; i < nseq; i++) {
            const size_t b = (size_t)(Hkv * n_ctx[i] * hd) * sizeof(float);
            if (cudaMalloc((void **)&dk[i], b) != cudaSuccess || cudaMalloc((void **)&dv[i], b) != cudaSuccess ||
                cudaMemcpy(dk[i], k[i], b, cudaMemcpyHostToDevice) != cudaSuccess ||
                cudaMemcpy(dv[i], v[i], b, cudaMemcpyHostToDevice) != cudaSuccess)
                break;
            hs[i] = SeqDev{dk[i], dv[i], n_ctx[i], pos[i], 0, 0};
        }
        if (i < nseq) {
            ERR(e, "CUDA: attention test caches");
            break;
        }
        T_CU(cudaMalloc((void **)&ds, (size_t)nseq * sizeof *ds));
        T_CU(cudaMemcpy(ds, hs, (size_t)nseq * sizeof *ds, cudaMemcpyHostToDevice));
        T_CU(cudaMalloc((void **)&dqkv, (size_t)(nseq * QKV) * sizeof(float)));
        T_CU(cudaMemcpy(dqkv, qkv, (size_t)(nseq * QKV) * sizeof(float), cudaMemcpyHostToDevice));
        T_CU(cudaMalloc((void **)&dout, (size_t)(nseq * H * hd) * sizeof(float)));
        T_CU(cudaMalloc((void **)&dpart, (size_t)nseq * attn_partial_floats(H, hd) * sizeof(float)));
        T_CU(cudaMalloc((void **)&dcnt, (size_t)(nseq * Hkv) * sizeof(int)));
        T_CU(cudaMemset(dcnt, 0, (size_t)(nseq * Hkv) * sizeof(int)));
        T_CU(cudaMalloc((void **)&dcs, (size_t)(nseq * (rope_dim / 2 + 1)) * sizeof(float2)));
        AttnShape sh = {1, H, Hkv, hd, rope_dim, window, rope, NULL};
        if (rope) {
            T_CU(cudaMalloc((void **)&dfreq, (size_t)(rope_dim / 2) * sizeof(double)));
            T_CU(cudaMemcpy(dfreq, inv_freq, (size_t)(rope_dim / 2) * sizeof(double), cudaMemcpyHostToDevice));
            sh.inv_freq = dfreq;
        }
        if (rope_table_launch(sh, ds, nseq, dcs, st, e)) break;
        if (attn_decode_launch(sh, 0, ds, dcs, nseq, dqkv, dout, dpart, dcnt, max_ctx, st, e)) break;
        T_CU(cudaStreamSynchronize(st));
        T_CU(cudaMemcpy(out, dout, (size_t)(nseq * H * hd) * sizeof(float), cudaMemcpyDeviceToHost));
        for (i = 0; i < nseq; i++) {
            const size_t b = (size_t)(Hkv * n_ctx[i] * hd) * sizeof(float);
            if (cudaMemcpy(k[i], dk[i], b, cudaMemcpyDeviceToHost) != cudaSuccess || cudaMemcpy(v[i], dv[i], b, cudaMemcpyDeviceToHost) != cudaSuccess)
                break;
        }
        if (i < nseq) {
            ERR(e, "CUDA: attention test caches back");
            break;
        }
        hcnt = (int *)xcalloc((size_t)(nseq * Hkv), sizeof *hcnt);
        T_CU(cudaMemcpy(hcnt, dcnt, (size_t)(nseq * Hkv) * sizeof(int), cudaMemcpyDeviceToHost));
        for (i = 0; i < nseq * Hkv; i++)
            if (hcnt[i] != 0) break;
        if (i < nseq * Hkv) {
            ERR(e, "attention: the combine counters were not reset (%d at %lld)", hcnt[i], (long long)i);
            break;
        }
        rc = 0;
#undef T_CU
    } while (0);
    for (int64_t i = 0; i < nseq; i++) cudaFree(dk[i]), cudaFree(dv[i]);
    cudaFree(ds), cudaFree(dqkv), cudaFree(dout), cudaFree(dpart), cudaFree(dcnt), cudaFree(dcs), cudaFree(dfreq);
    if (st) cudaStreamDestroy(st);
    free(dk), free(dv), free(hs), free(hcnt);
    cudaGetLastError();
    return rc;
}
