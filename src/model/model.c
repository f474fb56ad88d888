// model.c — loading, weight binding and the inference forward pass of the one transformer (see model.h).
//
// Per token (llm.c style, every step visible; a prompt chunk runs the same steps on (tokens, width) blocks):
//   x = tok_embd[token] (+ position_embd[pos])
//   per layer: xb = norm(x); q,k,v = Wq/Wk/Wv xb (+b) or split(Wqkv xb + b); rope(q, k); cache k, v;
//              x += Wo attention(q, cache) (+b); xb = norm(x); x += Wdown act(Wgate xb) * (Wup xb)   (gated)
//                                                              or x += Wdown act(Wup xb + b) + b     (plain)
//   logits = Woutput norm(x)
// Matrix products run on the thread pool, output rows handed out in pieces; activations are quantized once per
// product. Decoding (forward_step) multiplies one token per state (model_forward_batch shares each weight read
// across states); prompt chunks of up to MODEL_CHUNK tokens (forward_rows, one sequence) multiply whole blocks
// (wgemm.h: AMX int8 or f32 GEMM), which is where prompt processing gets its speed; forward_rows also takes rows of
// several sequences at once (model_forward_multi, F32/F16/BF16 panels). Results never depend on the thread count or
// on which thread ran a piece: every split is over output rows or jobs.
#include "model/model.h"

#include <errno.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "formats/hfconfig.h"
#include "formats/llama2c.h"
#include "kernels/activation.h"
#include "kernels/attn_decode.h"
#include "kernels/norm.h"
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "kernels/wgemm.h"
#include "kernels/wpanel.h"
#include "model/model_device.h"

// ---------------------------------------------------------------------------------------------------------------
// binding

typedef struct Binder {
    Model *m;
    Err *e;
    int failed;
    char label[600];
} Binder;

// How errors name tensor `name` (t: the tensor, NULL when missing): with the Hugging Face name too for a directory,
// since its user never saw the GGUF names ("'model.layers.0.self_attn.k_proj.weight' (blk.0.attn_k.weight)").
static const char *label(Binder *b, const char *name, const Tensor *t) {
    char hf[256];
    const char *src = t ? t->src_name : NULL;
    if (!t && b->m->format == MODEL_FORMAT_HF && weights_hf_name_of(&b->m->w, name, b->m->cfg.arch == ARCH_GPT2, hf, sizeof hf))
        src = hf;
    return weights_label(name, src, b->label, sizeof b->label);
}

static const Tensor *find_or_fail(Binder *b, const char *name, bool required) {
    const Tensor *t = weights_find(&b->m->w, name);
    if (!t && required && !b->failed) {
        ERR(b->e, "missing tensor %s", label(b, name, NULL));
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
        ERR(b->e, "tensor %s has %lld elements, expected %lld", label(b, name, t), (long long)count, (long long)n);
        b->failed = 1;
        return NULL;
    }
    if (t->type == DT_F32) return t->data;
    if (!quant_can_dequantize((DType)t->type)) {
        ERR(b->e, "tensor %s has unsupported type %s", label(b, name, t), dtype_name(t->type));
        b->failed = 1;
        return NULL;
    }
    float *buf = xmalloc_array((size_t)n, sizeof(float));
    if (quant_dequantize_row((DType)t->type, t->data, buf, n, b->e)) {
        free(buf);
        err_prefix(b->e, "tensor %s: ", label(b, name, t));
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
        ERR(b->e, "tensor %s has shape %lld x %lld, expected %lld x %lld (in x out)", label(b, name, t), (long long)t->ne[0],
            (long long)tensor_rows(t), (long long)in, (long long)out);
        b->failed = 1;
        return NULL;
    }
    if (!matvec_supports((DType)t->type)) {
        ERR(b->e, "tensor %s has type %s, which lossy cannot compute with yet", label(b, name, t), dtype_name(t->type));
        b->failed = 1;
        return NULL;
    }
    return t;
}

static int bind_weights(Model *m, Err *e) {
    const ModelConfig *c = &m->cfg;
    Binder b = {m, e, 0, ""};
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

// Whether tensor t is a matrix that decoding multiplies by (everything 2-D but an untied token embedding, which is
// only looked up, and learned positions).
static bool decode_matrix(const Model *m, const Tensor *t) {
    return t->n_dims >= 2 && t != m->pos_embd && !(t == m->tok_embd && m->output != m->tok_embd);
}

// Every matrix the decoding kernels read gets a load-time copy in huge pages when the AVX-512 kernels are in use, and
// the file pages it was made from are given back (drop_source), so the model is resident once: Q4_0 and Q8_0 as x4
// groups (matvec.h: one sequential stream per matrix), F32/F16/BF16 as 32-column panels in their stored type
// (wpanel.h), which every product with them then uses (decoding one or several sequences and prompt chunks alike,
// with the same bits for a token whichever way it is processed; decoding streams them without a loop exit per row:
// 1.1B F16 15.0 -> 16.8-17.0 tok/s), every other type (K-quants) in its own layout. The copies pay twice over: 2 MiB
// pages instead of 4 KiB ones (110M F16 as rows: 122-127 -> 138-140 tok/s), and a speed that no longer depends on
// how the file came into the page cache (on the machines here, pages read from disk stream at ~20 GB/s against ~31 for memory
// the CPU wrote: 1.1B F16 9.0 tok/s mapped from a freshly read file, 14.3 from the copy). LOSSY_REPACK=0 in the
// environment skips every copy, for benchmarking the plain mmapped layout.
typedef enum CopyKind { COPY_NONE, COPY_PANELS, COPY_X4, COPY_SAME } CopyKind;

// The rule for one decoding matrix of type ty, rows x cols, nbytes as stored (shared with model_memory_plan).
static CopyKind copy_rule(DType ty, int64_t rows, int64_t cols, size_t nbytes, bool repack, size_t *bytes) {
    size_t stride;
    *bytes = 0;
    if (!repack) return COPY_NONE;
    if (wpanel_supports(ty) && wpanel_fast() && (*bytes = wpanel_bytes(ty, rows, cols)) > 0) return COPY_PANELS;
    if (matvec_x4_supports(ty) && rows >= 4 && quant_row_bytes(ty, cols, &stride, NULL) == 0) {
        *bytes = matvec_x4_bytes(ty, rows, cols);
        return COPY_X4;
    }
    return *bytes = nbytes, COPY_SAME;
}

// Whether load-time copies are made in this process: the AVX-512 kernels, unless LOSSY_REPACK=0 or the caller
// loads for something other than running on the CPU (model_load_mapped).
static bool copy_switch(bool wanted) {
    const char *rp = getenv("LOSSY_REPACK");
    return wanted && !(rp && strcmp(rp, "0") == 0) && matvec_current_path() == KERNEL_AVX512;
}

// The copy repack_weights makes of tensor i: its kind, and its bytes through *bytes.
static CopyKind copy_kind(const Model *m, size_t i, bool repack, size_t *bytes) {
    const Tensor *t = &m->w.t[i];
    *bytes = 0;
    if (!decode_matrix(m, t)) return COPY_NONE;
    return copy_rule((DType)t->type, tensor_rows(t), t->ne[0], t->nbytes, repack, bytes);
}

// The file pages of tensor t, when t lies in the model's mapped file(s): given back once t has a copy that every
// product reads instead (decoding and prompt chunks alike), so a model is not resident twice; a tied embedding's
// lookups unpack their row from the copy (embed). Reads of t->data still work (the rows past the last x4 group): they
// fault those pages in again.
static void drop_source(const Model *m, const Tensor *t) {
    if (m->format == MODEL_FORMAT_GGUF) filemap_drop(&m->gguf.map, t->data, t->nbytes);
    else if (m->format == MODEL_FORMAT_HF && m->st.maps)
        for (size_t i = 0; i < m->st.n_shards; i++) filemap_drop(&m->st.maps[i], t->data, t->nbytes);
    else if (m->format == MODEL_FORMAT_LLAMA2C && m->l2c) filemap_drop(&((const Llama2cFile *)m->l2c)->map, t->data, t->nbytes);
}

typedef struct CopyJob {
    Model *m;
    bool repack;
    uint8_t *arena;
    const size_t *off; // (w.n) each tensor's place in the arena, SIZE_MAX for none
} CopyJob;

static void copy_range(void *ctx, int64_t i0, int64_t i1, int ith) {
    const CopyJob *j = ctx;
    Model *m = j->m;
    for (int64_t i = i0; i < i1; i++) {
        if (j->off[i] == SIZE_MAX) continue;
        const Tensor *t = &m->w.t[i];
        uint8_t *at = j->arena + j->off[i];
        size_t bytes, stride;
        switch (copy_kind(m, (size_t)i, j->repack, &bytes)) {
        case COPY_NONE: continue;
        case COPY_PANELS:
            quant_row_bytes((DType)t->type, t->ne[0], &stride, NULL);
            wpanel_pack((DType)t->type, at, t->data, stride, tensor_rows(t), t->ne[0]);
            m->repacked[i] = at;
            break;
        case COPY_X4:
            quant_row_bytes((DType)t->type, t->ne[0], &stride, NULL);
            matvec_repack_x4((DType)t->type, t->data, stride, tensor_rows(t), t->ne[0], at);
            m->repacked[i] = at; // prompt chunks read the x4 copy too (wgemm_rows_x4)
            break;
        case COPY_SAME:
            memcpy(at, t->data, t->nbytes);
            m->copied[i] = at;
            break;
        }
        drop_source(m, t);
    }
}

static void repack_weights(Model *m, bool wanted) {
    m->repacked = xcalloc(m->w.n ? m->w.n : 1, sizeof *m->repacked);
    m->copied = xcalloc(m->w.n ? m->w.n : 1, sizeof *m->copied);
    const bool repack = copy_switch(wanted);
    // One arena for all copies: each matrix in its own huge-page-aligned buffer would round every small matrix up
    // to 2 MiB of resident memory. Copies start 4 KiB apart (aligned vector loads, no shared lines).
    size_t total = 0, bytes, *off = xmalloc_array(m->w.n ? m->w.n : 1, sizeof *off);
    bool all_panels = true;
    for (size_t i = 0; i < m->w.n; i++) {
        CopyKind kind = copy_kind(m, i, repack, &bytes);
        if (decode_matrix(m, &m->w.t[i]) && kind != COPY_PANELS) all_panels = false;
        off[i] = SIZE_MAX;
        if (kind == COPY_NONE) continue;
        size_t padded = (bytes + 4095) / 4096 * 4096;
        if (padded < bytes || total + padded < total) { // cannot happen for mapped tensors
            total = 0;
            break;
        }
        off[i] = total;
        total += padded;
    }
    if (total == 0) { // nothing to copy (or too much to address): the plain layout
        free(off);
        return;
    }
    m->all_panels = all_panels;
    // huge pages: streaming them costs fewer TLB misses than the mmapped file's 4 KiB pages
    uint8_t *arena = xmalloc_huge(total, 1);
    weights_own(&m->w, arena);
    // on every core: copying is bound by page faults and one core's copy rate (1.1B F16, 2.1 GB: 0.75 s on one core)
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ThreadPool *pool = threadpool_new(cores < 1 ? 1 : cores > 16 ? 16 : (int)cores);
    CopyJob j = {m, repack, arena, off};
    threadpool_for(pool, (int64_t)m->w.n, 1, copy_range, &j);
    threadpool_free(pool);
    free(off);
}

static const void *repacked_any(const Model *m, const Tensor *t) {
    return m->repacked && t >= m->w.t && t < m->w.t + m->w.n ? m->repacked[t - m->w.t] : NULL;
}

// Matrix t's x4 copy (Q4_0/Q8_0), or NULL.
static const void *repacked_of(const Model *m, const Tensor *t) {
    return wpanel_supports((DType)t->type) ? NULL : repacked_any(m, t);
}

// Matrix t's panels (F32/F16/BF16), or NULL.
static const void *panels_of(const Model *m, const Tensor *t) {
    return wpanel_supports((DType)t->type) ? repacked_any(m, t) : NULL;
}

// The bytes decoding reads for matrix t: its huge-page copy when there is one.
static const void *decode_data(const Model *m, const Tensor *t) {
    const void *c = m->copied && t >= m->w.t && t < m->w.t + m->w.n ? m->copied[t - m->w.t] : NULL;
    return c ? c : t->data;
}

size_t model_weight_ranges(const Model *m, const void **ptr, size_t *len, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < m->w.n && n < max; i++) {
        const Tensor *t = &m->w.t[i];
        if (t == m->pos_embd || (t == m->tok_embd && m->output != m->tok_embd)) continue;
        const void *panels = decode_matrix(m, t) ? panels_of(m, t) : NULL;
        if (panels) {
            ptr[n] = panels, len[n++] = wpanel_bytes((DType)t->type, tensor_rows(t), t->ne[0]);
            continue;
        }
        const void *x4 = decode_matrix(m, t) ? repacked_of(m, t) : NULL;
        size_t rows4 = (size_t)(tensor_rows(t) / 4 * 4), row = t->nbytes / (size_t)(tensor_rows(t) > 0 ? tensor_rows(t) : 1);
        if (x4) { // the repacked groups, and the rows past the last group from the file
            ptr[n] = x4, len[n++] = rows4 * row;
            if (rows4 < (size_t)tensor_rows(t) && n < max) ptr[n] = (const uint8_t *)t->data + rows4 * row, len[n++] = t->nbytes - rows4 * row;
        } else {
            ptr[n] = decode_matrix(m, t) ? decode_data(m, t) : t->data, len[n++] = t->nbytes;
        }
    }
    return n;
}

static int load_model(Model *m, const char *path, bool cpu_copies, Err *e) {
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
    if (rc == 0) repack_weights(m, cpu_copies);
    if (rc) model_free(m);
    return rc;
}

int model_load(Model *m, const char *path, Err *e) { return load_model(m, path, true, e); }
int model_load_mapped(Model *m, const char *path, Err *e) { return load_model(m, path, false, e); }

void model_free(Model *m) {
    if (m->gpu) model_device_free(m);
    weights_free(&m->w);
    if (m->format == MODEL_FORMAT_GGUF) gguf_close(&m->gguf);
    if (m->format == MODEL_FORMAT_HF) st_close(&m->st);
    if (m->l2c) {
        llama2c_close(m->l2c);
        free(m->l2c);
    }
    free(m->layers);
    free((void *)m->repacked);
    free((void *)m->copied);
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
// ---------------------------------------------------------------------------------------------------------------
// inference state

// Prompt chunks (model_forward over several tokens) run on these (tokens, width) buffers: every product is one
// token-block GEMM (wgemm.h) that reads each weight once per chunk. Allocated on first use and grown to the largest
// chunk seen, so the per-token path never allocates.
#define ATT_ROWS 64     // query rows per attention job in a chunk

struct ModelBatch {
    int64_t cap;                // tokens the buffers hold
    float *x;                   // (cap, C) residual stream
    float *xb;                  // (cap, C) normed input of a sub-block
    float *qkv;                 // (cap, QKV) q | k | v of each token
    float *att;                 // (cap, H*hd) attention output
    float *hb, *hb2;            // (cap, F) MLP hidden
    float *tmp;                 // (cap, C) projection output
    float *rope_cos, *rope_sin; // (cap, rope_dim/2)
    int64_t *pos;               // (cap)
    WgemmAct act[MODEL_MAX_ACTS];
    int n_threads;
    WgemmScratch *wscratch;     // (n_threads)
    float *att_scratch;         // (n_threads, att_stride) attention scores
    size_t att_stride;
    float *panel_act;           // (wpanel_act_floats(cap, widest input)) a product's inputs packed for wpanel_rows
};

static void batch_free(ModelBatch *b) {
    if (!b) return;
    free(b->x), free(b->xb), free(b->qkv), free(b->att), free(b->hb), free(b->hb2), free(b->tmp);
    free(b->rope_cos), free(b->rope_sin), free(b->pos);
    for (int i = 0; i < MODEL_MAX_ACTS; i++) wgemm_act_free(&b->act[i]);
    for (int i = 0; i < b->n_threads; i++) wgemm_scratch_free(&b->wscratch[i]);
    free(b->wscratch), free(b->att_scratch), free(b->panel_act);
    free(b);
}

static ModelBatch *batch_get(ModelState *s, int64_t T) {
    if (s->batch && s->batch->cap >= T) return s->batch;
    batch_free(s->batch);
    const ModelConfig *c = &s->m->cfg;
    const int64_t C = c->n_embd, F = c->n_ff, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim;
    const int64_t QKV = (H + 2 * Hkv) * hd, half = c->rope_dim > 0 ? c->rope_dim / 2 : 1;
    ModelBatch *b = xcalloc(1, sizeof *b);
    b->cap = T;
    b->x = xmalloc_array((size_t)(T * C), sizeof(float));
    b->xb = xmalloc_array((size_t)(T * C), sizeof(float));
    b->qkv = xmalloc_array((size_t)(T * QKV), sizeof(float));
    b->att = xmalloc_array((size_t)(T * H * hd), sizeof(float));
    b->hb = xmalloc_array((size_t)(T * F), sizeof(float));
    b->hb2 = xmalloc_array((size_t)(T * F), sizeof(float));
    b->tmp = xmalloc_array((size_t)(T * C), sizeof(float));
    b->rope_cos = xmalloc_array((size_t)(T * half), sizeof(float));
    b->rope_sin = xmalloc_array((size_t)(T * half), sizeof(float));
    b->pos = xmalloc_array((size_t)T, sizeof(int64_t));
    for (int i = 0; i < MODEL_MAX_ACTS; i++) wgemm_act_init(&b->act[i]);
    b->n_threads = threadpool_size(s->pool);
    b->wscratch = xcalloc((size_t)b->n_threads, sizeof *b->wscratch);
    b->att_stride = (size_t)attn_chunk_scratch_size(ATT_ROWS, s->n_ctx);
    b->att_scratch = xmalloc_array(b->att_stride * (size_t)b->n_threads, sizeof(float));
    int64_t widest = C > F ? C : F;
    if (H * hd > widest) widest = H * hd;
    b->panel_act = xmalloc_array(wpanel_act_floats(T, widest), sizeof(float));
    s->batch = b;
    return b;
}

// The KV cache length for a requested n_ctx (<= 0: the model's, capped at 4096; learned positions cap it).
static int64_t default_ctx(const ModelConfig *c, int64_t n_ctx) {
    if (n_ctx <= 0) n_ctx = c->n_ctx_train > 0 && c->n_ctx_train < 4096 ? c->n_ctx_train : 4096;
    if (c->pos == POS_LEARNED && n_ctx > c->n_ctx_train) n_ctx = c->n_ctx_train;
    return n_ctx;
}

int model_state_init(ModelState *s, const Model *m, int64_t n_ctx, ThreadPool *pool, Err *e) {
    memset(s, 0, sizeof *s);
    const ModelConfig *c = &m->cfg;
    n_ctx = default_ctx(c, n_ctx);
    const int64_t C = c->n_embd, F = c->n_ff, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim;
    size_t kv_row = (size_t)(Hkv * hd), cache;
    if (!size_mul((size_t)c->n_layer * (size_t)n_ctx, kv_row, &cache) || cache > ((size_t)1 << 40) / sizeof(float))
        return ERR(e, "KV cache for %lld positions is too large", (long long)n_ctx);
    s->m = m;
    s->n_ctx = n_ctx;
    s->pool = pool;
    s->logits = xmalloc_array((size_t)c->vocab_size, sizeof(float));
    if (m->gpu) { // on a GPU: the KV cache and activations live there; only the logits come back to the host
        if (model_device_state_init(s, e)) {
            model_state_free(s);
            return -1;
        }
        return 0;
    }
    // huge pages: a decoding step writes one position into every (head, dim) row of the transposed keys
    s->k_cache = xmalloc_huge(cache, sizeof(float));
    s->v_cache = xmalloc_huge(cache, sizeof(float));
    int64_t widest = C > F ? C : F;
    if (H * hd > widest) widest = H * hd;
    s->x = xmalloc_array((size_t)C, sizeof(float));
    s->xb = xmalloc_array((size_t)widest, sizeof(float));
    s->qkv = xmalloc_array((size_t)((H + 2 * Hkv) * hd), sizeof(float));
    s->att_out = xmalloc_array((size_t)(H * hd), sizeof(float));
    s->hb = xmalloc_array((size_t)F, sizeof(float));
    s->hb2 = xmalloc_array((size_t)F, sizeof(float));
    s->tmp = xmalloc_array((size_t)widest, sizeof(float));
    int64_t half = c->rope_dim > 0 ? c->rope_dim / 2 : 1;
    s->rope_cos = xmalloc_array((size_t)half, sizeof(float));
    s->rope_sin = xmalloc_array((size_t)half, sizeof(float));
    // one scratch block per thread: threads split the KV heads
    size_t per = (size_t)attn_decode_scratch_size(H / Hkv, n_ctx);
    s->att_scratch = xmalloc_array(per * (size_t)threadpool_size(pool), sizeof(float));
    s->att_scratch_stride = per;
    for (int i = 0; i < MODEL_MAX_ACTS; i++) matvec_act_init(&s->act[i]);
    return 0;
}

void model_state_free(ModelState *s) {
    if (s->gpu) model_device_state_free(s);
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
    free(s->panel_act);
    for (int i = 0; i < MODEL_MAX_ACTS; i++) matvec_act_free(&s->act[i]);
    batch_free(s->batch);
    memset(s, 0, sizeof *s);
}

void model_state_reset(ModelState *s) { s->pos = 0; }

// ---------------------------------------------------------------------------------------------------------------
// shared steps

static void norm_rows(const ModelConfig *c, float *out, const float *x, const float *w, const float *b, int64_t n) {
    if (c->norm == NORM_RMS) rmsnorm_forward(out, NULL, x, w, n, c->n_embd, (float)c->norm_eps);
    else layernorm_forward(out, NULL, NULL, x, w, b, n, c->n_embd, (float)c->norm_eps);
}

static void norm(const ModelConfig *c, float *out, const float *x, const float *w, const float *b) {
    norm_rows(c, out, x, w, b, 1);
}

static void activate(ActType a, float *out, const float *x, int64_t n) {
    switch (a) {
    case ACT_SILU: silu_forward(out, x, n); break;
    case ACT_GELU_TANH: gelu_tanh_forward(out, x, n); break;
    case ACT_GELU_ERF: gelu_erf_forward(out, x, n); break;
    case ACT_RELU: relu_forward(out, x, n); break;
    }
}

// The MLP's elementwise middle: hb = act(hb) * hb2 (gated) or hb = act(hb2) (plain), n elements.
static void mlp_middle(const ModelConfig *c, float *hb, const float *hb2, int64_t n) {
    if (c->mlp == MLP_GATED) {
        if (c->act == ACT_SILU) swiglu_forward(hb, hb, hb2, n);
        else {
            activate(c->act, hb, hb, n);
            for (int64_t i = 0; i < n; i++) hb[i] *= hb2[i];
        }
    } else {
        activate(c->act, hb, hb2, n);
    }
}

static int embed(const Model *m, int32_t token, int64_t pos, float *x, float *tmp, Err *e) {
    const ModelConfig *c = &m->cfg;
    const int64_t C = c->n_embd;
    if (token < 0 || token >= c->vocab_size) return ERR(e, "token id %d is outside the vocabulary (%lld)", token, (long long)c->vocab_size);
    size_t row;
    if (quant_row_bytes((DType)m->tok_embd->type, C, &row, e)) return -1;
    // A tied embedding is also the output matrix, whose copy the products read while its file pages are given back:
    // its row comes from that copy (unpacked into tmp, which holds C floats >= row bytes), not from a page faulted
    // back in.
    const DType t = (DType)m->tok_embd->type;
    const void *src = (const uint8_t *)decode_data(m, m->tok_embd) + (size_t)token * row, *packed;
    if ((packed = panels_of(m, m->tok_embd))) {
        wpanel_unpack_row(t, packed, C, token, tmp);
        src = tmp;
    } else if ((packed = repacked_of(m, m->tok_embd)) && token < tensor_rows(m->tok_embd) / 4 * 4) {
        matvec_unpack_x4_row(t, packed, C, token, tmp);
        src = tmp;
    }
    if (quant_dequantize_row(t, src, x, C, e)) return -1;
    if (m->pos_embd) {
        if (quant_row_bytes((DType)m->pos_embd->type, C, &row, e) ||
            quant_dequantize_row((DType)m->pos_embd->type, (const uint8_t *)m->pos_embd->data + (size_t)pos * row, tmp, C, e))
            return -1;
        for (int64_t i = 0; i < C; i++) x[i] += tmp[i];
    }
    return 0;
}

// Append one token's k and v (Hkv heads of hd) at position pos of layer l's cache: per layer and KV head, keys are
// stored transposed (hd, n_ctx) and values (n_ctx, hd), so each head's history is contiguous for its attention job
// (attn_decode.h).
static void cache_store_head(ModelState *s, int64_t l, int64_t pos, int64_t g, const float *k, const float *v) {
    const ModelConfig *c = &s->m->cfg;
    const size_t hd = (size_t)c->head_dim, n_ctx = (size_t)s->n_ctx, layer = (size_t)l * n_ctx * (size_t)c->n_head_kv * hd;
    float *kt = s->k_cache + layer + (size_t)g * hd * n_ctx + (size_t)pos;
    for (size_t d = 0; d < hd; d++) kt[d * n_ctx] = k[(size_t)g * hd + d];
    memcpy(s->v_cache + layer + ((size_t)g * n_ctx + (size_t)pos) * hd, v + g * (int64_t)hd, hd * sizeof(float));
}

static void cache_store(ModelState *s, int64_t l, int64_t pos, const float *k, const float *v) {
    for (int64_t g = 0; g < s->m->cfg.n_head_kv; g++) cache_store_head(s, l, pos, g, k, v);
}

// ---------------------------------------------------------------------------------------------------------------
// decoding steps: one token for each of S states (S = 1: model_forward of a single token)
//
// Every matrix is read once per step for all S states: row tiles small enough to stay in L1/L2 are multiplied by
// each state's activations in turn, with the same matvec kernel a single state uses, so each state's result is the
// same bits as stepping it alone.

// Which per-state buffer a product reads or writes.
typedef enum SBuf { SB_XB, SB_ATT, SB_HB, SB_HB2, SB_Q, SB_K, SB_V, SB_TMP, SB_LOGITS } SBuf;

static float *sbuf(ModelState *s, SBuf b) {
    const ModelConfig *c = &s->m->cfg;
    switch (b) {
    case SB_XB: return s->xb;
    case SB_ATT: return s->att_out;
    case SB_HB: return s->hb;
    case SB_HB2: return s->hb2;
    case SB_Q: return s->qkv;
    case SB_K: return s->qkv + c->n_head * c->head_dim;
    case SB_V: return s->qkv + (c->n_head + c->n_head_kv) * c->head_dim;
    case SB_TMP: return s->tmp;
    case SB_LOGITS: return s->logits;
    }
    return NULL;
}

// Several products sharing one input (q/k/v; gate/up): one pool run covers all their rows, so threads synchronise
// once per group instead of once per matrix. The input is quantized once per distinct activation kind.
typedef struct Proj {
    const Tensor *w;
    const float *bias; // or NULL
    SBuf out;
    size_t stride;     // bytes per row
    int act;           // index into each state's act[]
    const void *x4;    // x4 copy of w (rows / 4 groups, matvec.h) or NULL
    const void *panels; // w in panels (wpanel.h) or NULL
    const void *data;  // w's rows as decoding reads them (the file's, or a huge-page copy)
} Proj;

typedef struct ProjJob {
    ModelState *const *st;
    int64_t S;
    const Proj *p;
    int n;
    int64_t total_units; // groups of 4 rows over all products (a repacked matrix is read a group at a time)
} ProjJob;

// Rows [a, b) of one product for one state: repacked groups, then the rows past the last whole group.
static void proj_rows(const Proj *p, int64_t a, int64_t b, const MatvecAct *act, float *y) {
    if (p->x4) {
        int64_t g_end = tensor_rows(p->w) / 4 * 4, e = b < g_end ? b : g_end;
        if (a < e) matvec_rows_x4((DType)p->w->type, p->x4, p->w->ne[0], a, e, act, y);
        if (a < e) a = e;
    }
    if (a < b) matvec_rows((DType)p->w->type, p->data, p->stride, a, b, act, y);
}

#define PROJ_PIECE_BYTES 262144 // decoding pieces of about this many weight bytes (see project_many)

// A thread's row boundary r (a multiple of 4) moved to the nearest panel boundary; the matrix end stays.
static int64_t panel_bound(int64_t r, int64_t rows) {
    if (r >= rows) return rows;
    r = (r + WPANEL_NR / 2) / WPANEL_NR * WPANEL_NR;
    return r < rows ? r : rows;
}

// Units [u0, u1) of the group's products (threadpool_for pieces).
static void proj_range(void *ctx, int64_t u0, int64_t u1, int ith) {
    const ProjJob *j = ctx;
    int64_t base = 0;
    for (int i = 0; i < j->n && u0 < u1; i++) {
        const Proj *p = &j->p[i];
        int64_t rows = tensor_rows(p->w), units = (rows + 3) / 4, ua = u0 - base, ub = u1 - base;
        base += units;
        if (ua < 0) ua = 0;
        if (ub > units) ub = units;
        if (ua >= ub) continue;
        int64_t a = 4 * ua, b = 4 * ub < rows ? 4 * ub : rows;
        if (p->panels) {
            // whole panels per piece: both ends of every piece rounded the same way
            a = panel_bound(a, rows), b = panel_bound(b, rows);
            float *ys[MODEL_MAX_SEQS];
            for (int64_t k = 0; k < j->S; k++) ys[k] = sbuf(j->st[k], p->out);
            wpanel_rows((DType)p->w->type, p->panels, rows, p->w->ne[0], a, b, j->S, j->st[0]->panel_act, ys);
            continue;
        }
        if (j->S == 1) {
            proj_rows(p, a, b, &j->st[0]->act[p->act], sbuf(j->st[0], p->out));
            continue;
        }
        if (!p->x4) {
            // the multi-activation kernel: each weight vector loaded once for several states
            for (int64_t k0 = 0; k0 < j->S; k0 += MATVEC_MULTI_MAX) {
                const MatvecAct *acts[MATVEC_MULTI_MAX];
                float *ys[MATVEC_MULTI_MAX];
                int64_t nk = j->S - k0 < MATVEC_MULTI_MAX ? j->S - k0 : MATVEC_MULTI_MAX;
                for (int64_t k = 0; k < nk; k++) acts[k] = &j->st[k0 + k]->act[p->act], ys[k] = sbuf(j->st[k0 + k], p->out);
                matvec_rows_multi((DType)p->w->type, p->data, p->stride, a, b, acts, ys, nk);
            }
            continue;
        }
        // about 16 KiB of weights per tile: read from memory once, then from L1 for every state
        int64_t tile = (int64_t)(((size_t)16 << 10) / (p->stride ? p->stride : 1));
        tile = tile < 4 ? 4 : tile / 4 * 4;
        for (int64_t t0 = a; t0 < b; t0 += tile) {
            int64_t t1 = t0 + tile < b ? t0 + tile : b;
            for (int64_t k = 0; k < j->S; k++) proj_rows(p, t0, t1, &j->st[k]->act[p->act], sbuf(j->st[k], p->out));
        }
    }
}

static int project_many(ModelState *const *st, int64_t S, SBuf in, Proj *p, int n, Err *e) {
    int64_t total = 0;
    size_t bytes = 0;
    int n_acts = 0;
    bool packed = false;
    ModelState *s0 = st[0];
    for (int i = 0; i < n; i++) {
        const Tensor *w = p[i].w;
        if (quant_row_bytes((DType)w->type, w->ne[0], &p[i].stride, e)) return err_prefix(e, "tensor '%s': ", w->name);
        p[i].act = -1;
        for (int k = 0; k < n_acts; k++)
            if (s0->act[k].wtype == (DType)w->type) p[i].act = k;
        if (p[i].act < 0) {
            if (n_acts == MODEL_MAX_ACTS) return ERR(e, "too many weight types in one projection group");
            for (int64_t k = 0; k < S; k++)
                if (matvec_act_prepare(&st[k]->act[n_acts], (DType)w->type, sbuf(st[k], in), w->ne[0], e))
                    return err_prefix(e, "tensor '%s': ", w->name);
            p[i].act = n_acts++;
        }
        p[i].x4 = repacked_of(s0->m, w);
        p[i].panels = panels_of(s0->m, w);
        if (p[i].panels && !packed) { // the group's inputs, packed once for all its panel products
            packed = true;
            size_t need = wpanel_act_floats(S, w->ne[0]);
            if (need > s0->panel_act_cap) {
                free(s0->panel_act);
                s0->panel_act = xmalloc_array(need, sizeof(float));
                s0->panel_act_cap = need;
            }
            const float *xs[MODEL_MAX_SEQS];
            for (int64_t k = 0; k < S; k++) xs[k] = sbuf(st[k], in);
            wpanel_act_pack(s0->panel_act, xs, S, w->ne[0], 0, wpanel_act_groups(S));
        }
        p[i].data = decode_data(s0->m, w);
        total += (tensor_rows(w) + 3) / 4;
        bytes += (size_t)tensor_rows(w) * p[i].stride;
    }
    ProjJob j = {st, S, p, n, total};
    // small products finish before a worker could wake up: run them on the calling thread
    if (bytes * (size_t)S < ((size_t)1 << 17)) {
        proj_range(&j, 0, total, 0);
    } else {
        // pieces of whole panel pairs (16 units of 4 rows: one decoding row reads two panels at a time), about
        // PROJ_PIECE_BYTES of weights or more each (the prefetchers' streams run on across a thread's pieces, but a
        // piece taken over from another thread starts a new one), and at least 4 per thread so a descheduled
        // thread's share is taken over in small parts
        const int64_t nth = threadpool_size(s0->pool), unit_bytes = (int64_t)(bytes / (size_t)total) + 1;
        int64_t grain = ((PROJ_PIECE_BYTES / unit_bytes) + 15) / 16 * 16;
        if (grain > total / (4 * nth)) grain = total / (4 * nth) / 16 * 16;
        threadpool_for(s0->pool, total, grain < 16 ? 16 : grain, proj_range, &j);
    }
    for (int i = 0; i < n; i++)
        if (p[i].bias) {
            int64_t rows = tensor_rows(p[i].w);
            for (int64_t k = 0; k < S; k++) {
                float *y = sbuf(st[k], p[i].out);
                for (int64_t r = 0; r < rows; r++) y[r] += p[i].bias[r];
            }
        }
    return 0;
}

static int project(ModelState *const *st, int64_t S, SBuf in, const Tensor *w, const float *bias, SBuf out, Err *e) {
    Proj p = {w, bias, out, 0, 0, NULL, NULL, NULL};
    return project_many(st, S, in, &p, 1, e);
}

// Attention of each state's current token: jobs are (state, KV head) pairs, each with its group of query heads.
typedef struct AttJob {
    ModelState *const *st;
    int64_t S, layer;
} AttJob;

// Jobs [j0, j1): each ropes its query heads and key head, appends its key and value head to the cache, then
// attends (so those per-head steps run in parallel too, and the cache lines just written are used at once).
static void att_range(void *ctx, int64_t j0, int64_t j1, int ith) {
    const AttJob *j = ctx;
    const ModelConfig *c = &j->st[0]->m->cfg;
    const int64_t H = c->n_head, Hkv = c->n_head_kv, G = H / Hkv, hd = c->head_dim;
    const bool neox = c->rope_style == ROPE_STYLE_NEOX;
    for (int64_t job = j0; job < j1; job++) {
        ModelState *s = j->st[job / Hkv];
        int64_t g = job % Hkv;
        float *q = sbuf(s, SB_Q), *k = sbuf(s, SB_K);
        if (c->pos == POS_ROPE) {
            rope_forward(q + g * G * hd, q + g * G * hd, s->rope_cos, s->rope_sin, 1, G, hd, c->rope_dim, neox);
            rope_forward(k + g * hd, k + g * hd, s->rope_cos, s->rope_sin, 1, 1, hd, c->rope_dim, neox);
        }
        cache_store_head(s, j->layer, s->pos, g, k, sbuf(s, SB_V));
        size_t off = (size_t)j->layer * (size_t)s->n_ctx * (size_t)(Hkv * hd) + (size_t)(g * s->n_ctx * hd);
        float *scratch = s->att_scratch + (size_t)ith * s->att_scratch_stride;
        attn_decode_group(s->att_out + g * G * hd, s->qkv + g * G * hd, s->k_cache + off, s->n_ctx, s->v_cache + off, s->pos,
                          G, hd, c->sliding_window, scratch);
    }
}

static int forward_step(ModelState *const *st, const int32_t *tokens, int64_t S, Err *e) {
    const Model *m = st[0]->m;
    const ModelConfig *c = &m->cfg;
    const int64_t C = c->n_embd, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim, F = c->n_ff;
    int64_t work = 0;
    for (int64_t k = 0; k < S; k++) {
        ModelState *s = st[k];
        if (s->m != m) return ERR(e, "sequence %lld belongs to another model", (long long)k);
        if (s->pos >= s->n_ctx) return ERR(e, "context is full (%lld tokens)", (long long)s->n_ctx);
        if (embed(m, tokens[k], s->pos, s->x, s->tmp, e)) return -1;
        if (c->pos == POS_ROPE) rope_cos_sin(s->rope_cos, s->rope_sin, m->inv_freq, &s->pos, 1, c->rope_dim);
        work += (s->pos + 1) * H * hd;
    }
    for (int64_t l = 0; l < c->n_layer; l++) {
        const ModelLayer *L = &m->layers[l];
        for (int64_t k = 0; k < S; k++) norm(c, st[k]->xb, st[k]->x, L->attn_norm, L->attn_norm_b);
        if (L->wqkv) {
            if (project(st, S, SB_XB, L->wqkv, L->bqkv, SB_Q, e)) return -1;
        } else {
            Proj p[3] = {{L->wq, L->bq, SB_Q, 0, 0, NULL, NULL, NULL}, {L->wk, L->bk, SB_K, 0, 0, NULL, NULL, NULL}, {L->wv, L->bv, SB_V, 0, 0, NULL, NULL, NULL}};
            if (project_many(st, S, SB_XB, p, 3, e)) return -1;
        }
        AttJob aj = {st, S, l};
        // short histories are cheaper than a thread wake-up
        if (work < 16384) att_range(&aj, 0, S * Hkv, 0);
        else threadpool_for(st[0]->pool, S * Hkv, 1, att_range, &aj);
        if (project(st, S, SB_ATT, L->wo, L->bo, SB_TMP, e)) return -1;
        for (int64_t k = 0; k < S; k++) {
            ModelState *s = st[k];
            for (int64_t i = 0; i < C; i++) s->x[i] += s->tmp[i];
            norm(c, s->xb, s->x, L->ffn_norm, L->ffn_norm_b);
        }
        if (c->mlp == MLP_GATED) {
            Proj p[2] = {{L->w_gate, L->b_gate, SB_HB, 0, 0, NULL, NULL, NULL}, {L->w_up, L->b_up, SB_HB2, 0, 0, NULL, NULL, NULL}};
            if (project_many(st, S, SB_XB, p, 2, e)) return -1;
        } else {
            if (project(st, S, SB_XB, L->w_up, L->b_up, SB_HB2, e)) return -1;
        }
        for (int64_t k = 0; k < S; k++) mlp_middle(c, st[k]->hb, st[k]->hb2, F);
        if (project(st, S, SB_HB, L->w_down, L->b_down, SB_TMP, e)) return -1;
        for (int64_t k = 0; k < S; k++)
            for (int64_t i = 0; i < C; i++) st[k]->x[i] += st[k]->tmp[i];
    }
    for (int64_t k = 0; k < S; k++) st[k]->pos++;
    return 0;
}

// Next-token logits of each state from its residual stream.
static int output_step(ModelState *const *st, int64_t S, Err *e) {
    const Model *m = st[0]->m;
    for (int64_t k = 0; k < S; k++) norm(&m->cfg, st[k]->xb, st[k]->x, m->output_norm, m->output_norm_b);
    return project(st, S, SB_XB, m->output, NULL, SB_LOGITS, e);
}

// ---------------------------------------------------------------------------------------------------------------
// prompt chunks: T consecutive tokens of one state

typedef struct BProj {
    const Tensor *w;
    const float *bias; // or NULL
    float *y;          // (T, ldy), columns [0, rows)
    int64_t ldy;
    size_t stride;
    const WgemmAct *act;
    const void *panels;  // w in panels (wpanel.h) or NULL
    const void *x4;      // w's x4 copy (Q4_0/Q8_0, matvec.h) or NULL: read instead of the plain rows
    const void *rows;    // w's rows: its same-layout copy (decode_data) or the mapped tensor
} BProj;

typedef struct BProjJob {
    const BProj *p;
    int n;
    int64_t total_units; // WGEMM_ROW_UNIT-row units over all products
    WgemmScratch *scratch;
    ModelState *s;
} BProjJob;

static int64_t units_of(const Tensor *w) { return (tensor_rows(w) + WGEMM_ROW_UNIT - 1) / WGEMM_ROW_UNIT; }

// Units [u0, u1) of the group's products (threadpool_for pieces).
static void bproj_range(void *ctx, int64_t u0, int64_t u1, int ith) {
    const BProjJob *j = ctx;
    int64_t base = 0;
    for (int i = 0; i < j->n && u0 < u1; i++) {
        const BProj *p = &j->p[i];
        int64_t units = units_of(p->w), a = u0 - base, b = u1 - base;
        base += units;
        if (a < 0) a = 0;
        if (b > units) b = units;
        if (a >= b) continue;
        int64_t r0 = a * WGEMM_ROW_UNIT, r1 = b * WGEMM_ROW_UNIT;
        if (r1 > tensor_rows(p->w)) r1 = tensor_rows(p->w);
        if (p->panels) { // the same product as decoding (WGEMM_ROW_UNIT is a whole number of panels)
            const int64_t T = p->act->N;
            float *ys[MODEL_CHUNK];
            for (int64_t t = 0; t < T; t++) ys[t] = p->y + t * p->ldy;
            wpanel_rows((DType)p->w->type, p->panels, tensor_rows(p->w), p->w->ne[0], r0, r1, T, j->s->batch->panel_act, ys);
            continue;
        }
        wgemm_rows_x4((DType)p->w->type, p->x4, tensor_rows(p->w), p->rows, p->stride, r0, r1, p->act, p->y, p->ldy,
                      &j->scratch[ith]);
    }
}

typedef struct PackJob {
    float *act;
    const float *x[MODEL_CHUNK];
    int64_t T, k;
} PackJob;

static void pack_range(void *ctx, int64_t g0, int64_t g1, int ith) {
    const PackJob *j = ctx;
    wpanel_act_pack(j->act, j->x, j->T, j->k, g0, g1);
}

// Products of X (T rows, ldx apart) with several matrices, the activations prepared once per weight family.
static int bproject_many(ModelState *s, const float *x, int64_t ldx, int64_t T, BProj *p, int n, Err *e) {
    ModelBatch *B = s->batch;
    int n_acts = 0;
    int64_t units = 0;
    double macs = 0;
    for (int i = 0; i < n; i++) {
        const Tensor *w = p[i].w;
        if (quant_row_bytes((DType)w->type, w->ne[0], &p[i].stride, e)) return err_prefix(e, "tensor '%s': ", w->name);
        p[i].act = NULL;
        p[i].panels = panels_of(s->m, w);
        p[i].x4 = repacked_of(s->m, w);
        p[i].rows = decode_data(s->m, w);
        for (int k = 0; k < n_acts && !p[i].act; k++)
            if (wgemm_act_fits(&B->act[k], (DType)w->type)) p[i].act = &B->act[k];
        if (!p[i].act) {
            if (n_acts == MODEL_MAX_ACTS) return ERR(e, "too many weight types in one projection group");
            if (wgemm_act_prepare(&B->act[n_acts], (DType)w->type, x, ldx, T, w->ne[0], e)) return err_prefix(e, "tensor '%s': ", w->name);
            p[i].act = &B->act[n_acts++];
        }
        units += units_of(w);
        macs += (double)T * (double)tensor_rows(w) * (double)w->ne[0];
    }
    int64_t k_panels = 0;
    for (int i = 0; i < n; i++)
        if (p[i].panels) k_panels = p[i].w->ne[0];
    if (k_panels) { // the chunk's inputs packed once for every panel product of the group, a group of rows per piece
        PackJob pj = {B->panel_act, {0}, T, k_panels};
        for (int64_t t = 0; t < T; t++) pj.x[t] = x + t * ldx;
        // small inputs are packed faster than the pool could synchronise (a server pass: a few dozen rows)
        if (macs < 1e6 || T * k_panels < 65536) pack_range(&pj, 0, wpanel_act_groups(T), 0);
        else threadpool_for(s->pool, wpanel_act_groups(T), 1, pack_range, &pj);
    }
    BProjJob j = {p, n, units, B->wscratch, s};
    if (macs < 1e6) {
        bproj_range(&j, 0, units, 0);
    } else {
        // 4 pieces per thread, at least 128 rows each (the f32 path converts non-F32 weights in panels that large)
        int64_t grain = units / (4 * threadpool_size(s->pool));
        threadpool_for(s->pool, units, grain < 4 ? 4 : grain, bproj_range, &j);
    }
    for (int i = 0; i < n; i++)
        if (p[i].bias) {
            int64_t rows = tensor_rows(p[i].w);
            for (int64_t t = 0; t < T; t++)
                for (int64_t r = 0; r < rows; r++) p[i].y[t * p[i].ldy + r] += p[i].bias[r];
        }
    return 0;
}

static int bproject(ModelState *s, const float *x, int64_t ldx, int64_t T, const Tensor *w, const float *bias, float *y,
                    int64_t ldy, Err *e) {
    BProj p = {w, bias, y, ldy, 0, NULL, NULL, NULL, NULL};
    return bproject_many(s, x, ldx, T, &p, 1, e);
}

// ---------------------------------------------------------------------------------------------------------------
// rows of several sequences in one pass: sequence i contributes counts[i] consecutive tokens, one (a decoding step)
// or several (a prompt piece); a prompt chunk is the case of one sequence. Per sequence the attention is the decoding
// kernel for one row and the blocked chunk kernel otherwise. Where every product is a panel product a row's
// projections are the same bits whatever rows share the pass, so model_forward_multi can run the server's decoding
// rows and prompt pieces together, each sequence ending exactly as forward_step or a chunk of its own would leave it.

typedef struct RowsAttJob {
    ModelState *const *st;
    const int64_t *counts, *row0, *job0; // (n) per sequence: tokens, first row, first attention job
    int64_t n, layer;
} RowsAttJob;

static void rows_att_range(void *ctx, int64_t j0, int64_t j1, int ith) {
    const RowsAttJob *j = ctx;
    ModelState *s0 = j->st[0];
    ModelBatch *B = s0->batch;
    const ModelConfig *c = &s0->m->cfg;
    const int64_t H = c->n_head, Hkv = c->n_head_kv, G = H / Hkv, hd = c->head_dim, QKV = (H + 2 * Hkv) * hd;
    int64_t i = 0;
    for (int64_t job = j0; job < j1; job++) {
        while (i + 1 < j->n && j->job0[i + 1] <= job) i++; // jobs come in increasing order within a piece
        while (j->job0[i] > job) i--;
        ModelState *s = j->st[i];
        const int64_t local = job - j->job0[i], r = j->row0[i], T = j->counts[i];
        const int64_t nblk = (T + ATT_ROWS - 1) / ATT_ROWS, g = T == 1 ? local : local / nblk;
        const size_t off = (size_t)j->layer * (size_t)s->n_ctx * (size_t)(Hkv * hd) + (size_t)(g * s->n_ctx * hd);
        if (T == 1) {
            attn_decode_group(B->att + r * H * hd + g * G * hd, B->qkv + r * QKV + g * G * hd, s->k_cache + off, s->n_ctx,
                              s->v_cache + off, s->pos, G, hd, c->sliding_window,
                              s->att_scratch + (size_t)ith * s->att_scratch_stride);
        } else {
            const int64_t r0 = (local % nblk) * ATT_ROWS, nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS;
            attn_chunk_group(B->att + (r + r0) * H * hd + g * G * hd, H * hd, B->qkv + (r + r0) * QKV + g * G * hd, QKV,
                             s->k_cache + off, s->n_ctx, s->v_cache + off, s->pos + r0, nr, G, hd, c->sliding_window,
                             B->att_scratch + (size_t)ith * B->att_stride);
        }
    }
}

static int forward_rows(ModelState *const *st, const int32_t *tokens, const int64_t *counts, int64_t n, Err *e) {
    ModelState *s0 = st[0];
    const Model *m = s0->m;
    const ModelConfig *c = &m->cfg;
    const int64_t C = c->n_embd, F = c->n_ff, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim;
    const int64_t QKV = (H + 2 * Hkv) * hd, half = c->rope_dim / 2;
    int64_t row0[MODEL_MAX_SEQS], job0[MODEL_MAX_SEQS], R = 0, jobs = 0, work = 0;
    for (int64_t i = 0; i < n; i++) {
        row0[i] = R, job0[i] = jobs;
        R += counts[i];
        jobs += counts[i] == 1 ? Hkv : Hkv * ((counts[i] + ATT_ROWS - 1) / ATT_ROWS);
        work += (st[i]->pos + counts[i]) * counts[i] * H * hd;
    }
    ModelBatch *B = batch_get(s0, R);
    for (int64_t i = 0, r = 0; i < n; i++)
        for (int64_t t = 0; t < counts[i]; t++, r++) {
            B->pos[r] = st[i]->pos + t;
            if (embed(m, tokens[r], B->pos[r], B->x + r * C, B->tmp + r * C, e)) return -1;
        }
    if (c->pos == POS_ROPE) rope_cos_sin(B->rope_cos, B->rope_sin, m->inv_freq, B->pos, R, c->rope_dim);
    const bool neox = c->rope_style == ROPE_STYLE_NEOX;
    for (int64_t l = 0; l < c->n_layer; l++) {
        const ModelLayer *L = &m->layers[l];
        norm_rows(c, B->xb, B->x, L->attn_norm, L->attn_norm_b, R);
        if (L->wqkv) {
            if (bproject(s0, B->xb, C, R, L->wqkv, L->bqkv, B->qkv, QKV, e)) return -1;
        } else {
            BProj p[3] = {{L->wq, L->bq, B->qkv, QKV, 0, NULL, NULL, NULL, NULL},
                          {L->wk, L->bk, B->qkv + H * hd, QKV, 0, NULL, NULL, NULL, NULL},
                          {L->wv, L->bv, B->qkv + (H + Hkv) * hd, QKV, 0, NULL, NULL, NULL, NULL}};
            if (bproject_many(s0, B->xb, C, R, p, 3, e)) return -1;
        }
        for (int64_t i = 0, r = 0; i < n; i++)
            for (int64_t t = 0; t < counts[i]; t++, r++) {
                float *q = B->qkv + r * QKV, *k = q + H * hd;
                if (c->pos == POS_ROPE) {
                    rope_forward(q, q, B->rope_cos + r * half, B->rope_sin + r * half, 1, H, hd, c->rope_dim, neox);
                    rope_forward(k, k, B->rope_cos + r * half, B->rope_sin + r * half, 1, Hkv, hd, c->rope_dim, neox);
                }
                cache_store(st[i], l, B->pos[r], k, k + Hkv * hd);
            }
        RowsAttJob aj = {st, counts, row0, job0, n, l};
        if (work < 16384) rows_att_range(&aj, 0, jobs, 0);
        else threadpool_for(s0->pool, jobs, 1, rows_att_range, &aj);
        if (bproject(s0, B->att, H * hd, R, L->wo, L->bo, B->tmp, C, e)) return -1;
        for (int64_t i = 0; i < R * C; i++) B->x[i] += B->tmp[i];
        norm_rows(c, B->xb, B->x, L->ffn_norm, L->ffn_norm_b, R);
        if (c->mlp == MLP_GATED) {
            BProj p[2] = {{L->w_gate, L->b_gate, B->hb, F, 0, NULL, NULL, NULL, NULL}, {L->w_up, L->b_up, B->hb2, F, 0, NULL, NULL, NULL, NULL}};
            if (bproject_many(s0, B->xb, C, R, p, 2, e)) return -1;
        } else {
            if (bproject(s0, B->xb, C, R, L->w_up, L->b_up, B->hb2, F, e)) return -1;
        }
        mlp_middle(c, B->hb, B->hb2, R * F);
        if (bproject(s0, B->hb, F, R, L->w_down, L->b_down, B->tmp, C, e)) return -1;
        for (int64_t i = 0; i < R * C; i++) B->x[i] += B->tmp[i];
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(st[i]->x, B->x + (row0[i] + counts[i] - 1) * C, (size_t)C * sizeof(float));
        st[i]->pos += counts[i];
    }
    return 0;
}

// T tokens at positions pos .. pos+T-1; afterwards s->x holds the last token's residual stream and, when logits is
// not NULL, logits (T, V) the next-token logits after every token.
static int forward_chunk(ModelState *s, const int32_t *tokens, int64_t T, float *logits, Err *e) {
    if (s->pos + T > s->n_ctx) return ERR(e, "context is full (%lld tokens)", (long long)s->n_ctx);
    if (forward_rows(&s, tokens, &T, 1, e)) return -1;
    if (logits) {
        const ModelConfig *c = &s->m->cfg;
        ModelBatch *B = s->batch;
        norm_rows(c, B->xb, B->x, s->m->output_norm, s->m->output_norm_b, T);
        if (bproject(s, B->xb, c->n_embd, T, s->m->output, NULL, logits, c->vocab_size, e)) return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// entry points

static int check_tokens(const ModelState *s, const int32_t *tokens, int64_t n, Err *e) {
    const int64_t V = s->m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return ERR(e, "token id %d is outside the vocabulary (%lld)", tokens[i], (long long)V);
    if (n > s->n_ctx - s->pos) return ERR(e, "context is full (%lld tokens)", (long long)s->n_ctx);
    return 0;
}

int model_forward(ModelState *s, const int32_t *tokens, int64_t n, Err *e) {
    if (n <= 0) return ERR(e, "no tokens to process");
    if (check_tokens(s, tokens, n, e)) return -1;
    if (s->m->gpu) return model_device_forward(s, tokens, n, NULL, e);
    if (n == 1) {
        if (forward_step(&s, tokens, 1, e)) return -1;
    } else {
        for (int64_t i = 0; i < n; i += MODEL_CHUNK)
            if (forward_chunk(s, tokens + i, n - i < MODEL_CHUNK ? n - i : MODEL_CHUNK, NULL, e)) return -1;
    }
    return output_step(&s, 1, e);
}

int model_forward_all(ModelState *s, const int32_t *tokens, int64_t n, float *logits, Err *e) {
    if (n <= 0) return ERR(e, "no tokens to process");
    if (check_tokens(s, tokens, n, e)) return -1;
    if (s->m->gpu) return model_device_forward(s, tokens, n, logits, e);
    const int64_t V = s->m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i += MODEL_CHUNK) {
        int64_t T = n - i < MODEL_CHUNK ? n - i : MODEL_CHUNK;
        if (forward_chunk(s, tokens + i, T, logits + i * V, e)) return -1;
    }
    memcpy(s->logits, logits + (n - 1) * V, (size_t)V * sizeof(float));
    return 0;
}

// The sequences of one step or pass: distinct states of one model, each with counts[i] >= 1 valid tokens that fit its
// context (counts NULL: one each); *rows receives the total.
static int check_sequences(ModelState *const *states, const int32_t *tokens, const int64_t *counts, int64_t n,
                           int64_t *rows, Err *e) {
    if (n <= 0) return ERR(e, "no sequences to step");
    if (n > MODEL_MAX_SEQS) return ERR(e, "%lld sequences in one step (at most %d)", (long long)n, MODEL_MAX_SEQS);
    *rows = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t cnt = counts ? counts[i] : 1;
        for (int64_t k = 0; k < i; k++)
            if (states[k] == states[i]) return ERR(e, "sequence %lld is given twice", (long long)i);
        if (states[i]->m != states[0]->m) return ERR(e, "sequence %lld belongs to another model", (long long)i);
        if (cnt < 1) return ERR(e, "sequence %lld: no tokens", (long long)i);
        if (check_tokens(states[i], tokens + *rows, cnt, e)) return err_prefix(e, "sequence %lld: ", (long long)i);
        *rows += cnt;
    }
    return 0;
}

int model_forward_batch(ModelState *const *states, const int32_t *tokens, int64_t n, Err *e) {
    int64_t rows;
    if (check_sequences(states, tokens, NULL, n, &rows, e)) return -1;
    if (states[0]->m->gpu) return model_device_forward_batch(states, tokens, n, e);
    if (forward_step(states, tokens, n, e)) return -1;
    return output_step(states, n, e);
}

int model_forward_multi(ModelState *const *states, const int32_t *tokens, const int64_t *counts, int64_t n, Err *e) {
    int64_t rows;
    if (check_sequences(states, tokens, counts, n, &rows, e)) return -1;
    const Model *m = states[0]->m;
    bool same_ctx = true, any_piece = false;
    for (int64_t i = 0; i < n; i++) same_ctx = same_ctx && states[i]->n_ctx == states[0]->n_ctx, any_piece = any_piece || counts[i] > 1;
    // one pass where it pays and is exact: a prompt piece to share the weight read with (only decoding rows take
    // the decoding step itself: the same bits, less bookkeeping), all F32 panels, on the CPU
    if (!m->gpu && any_piece && rows <= MODEL_CHUNK && same_ctx && m->all_panels) {
        if (forward_rows(states, tokens, counts, n, e)) return -1;
        return output_step(states, n, e);
    }
    // otherwise: the decoding rows in one batched step, each prompt piece on its own (the same results)
    ModelState *single[MODEL_MAX_SEQS];
    int32_t single_tok[MODEL_MAX_SEQS];
    int64_t k = 0;
    for (int64_t i = 0, r = 0; i < n; r += counts[i++]) {
        if (counts[i] == 1) {
            single[k] = states[i], single_tok[k++] = tokens[r];
        } else if (model_forward(states[i], tokens + r, counts[i], e)) {
            return err_prefix(e, "sequence %lld: ", (long long)i);
        }
    }
    return k ? model_forward_batch(single, single_tok, k, e) : 0;
}

int model_memory_plan(const GGUFFile *g, int64_t n_ctx, ModelMemoryPlan *p, Err *e) {
    memset(p, 0, sizeof *p);
    ModelConfig c;
    model_config_init(&c);
    if (model_config_from_gguf(g, &c, e) || model_config_validate(&c, g->name, e)) return -1;
    p->n_ctx = default_ctx(&c, n_ctx);
    const bool repack = copy_switch(true);
    const GGUFTensor *tok = gguf_find_tensor(g, "token_embd.weight"), *out = gguf_find_tensor(g, "output.weight");
    for (size_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensor *t = &g->tensors[i];
        p->weights += t->nbytes;
        // decoding matrices: every 2-D tensor but learned positions and an untied token embedding (only looked up)
        bool decode = t->n_dims >= 2 && strcmp(t->name, "position_embd.weight") != 0 && !(t == tok && out);
        size_t bytes;
        CopyKind kind = decode ? copy_rule((DType)t->type, (int64_t)(t->n_elements / (uint64_t)(t->ne[0] ? t->ne[0] : 1)),
                                           (int64_t)t->ne[0], t->nbytes, repack, &bytes)
                               : COPY_NONE;
        if (kind != COPY_NONE) p->copies += (bytes + 4095) / 4096 * 4096, p->released += t->nbytes; // drop_source
    }
    size_t kv;
    if (!size_mul((size_t)c.n_layer, (size_t)p->n_ctx, &kv) || !size_mul(kv, (size_t)(c.n_head_kv * c.head_dim), &kv) ||
        !size_mul(kv, 2 * sizeof(float), &kv))
        return ERR(e, "KV cache for %lld positions is too large", (long long)p->n_ctx);
    p->kv_cache = kv;
    p->total = p->weights - p->released + p->copies + p->kv_cache;
    return 0;
}
