// convert.c — Model → GGUF (see convert.h).
//
// Keys follow llama.cpp's names so the file runs there; lossy-only facts go under lossy.*. When the source is a GGUF
// file, its metadata is carried over as it is (tokenizer, template, provenance) and only the file type changes.
// When the source is a Hugging Face llama checkpoint, q/k rows are permuted into the interleaved rope order that
// GGUF llama files use (llama.cpp's converter does the same); qwen2 files keep the neox order.
// Per-tensor types follow llama.cpp's llama_tensor_get_type for the types lossy writes (see convert.h).
#include "model/convert.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "formats/gguf.h"
#include "kernels/quant.h"
#include "tokenizer/write_tokenizer.h"

void convert_permute_qk_rows(void *dst, const void *src, int64_t n_head, int64_t hd, size_t row_bytes) {
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < hd / 2; i++) {
            memcpy(d + (size_t)(h * hd + 2 * i) * row_bytes, s + (size_t)(h * hd + i) * row_bytes, row_bytes);
            memcpy(d + (size_t)(h * hd + 2 * i + 1) * row_bytes, s + (size_t)(h * hd + i + hd / 2) * row_bytes, row_bytes);
        }
}

// general.file_type as llama.cpp numbers its llama_ftype values.
static uint32_t file_type_of(DType t, ConvertMix mix) {
    switch (t) {
    case DT_F32: return 0;
    case DT_F16: return 1;
    case DT_Q4_0: return 2;
    case DT_Q8_0: return 7;
    case DT_Q4_K: return mix == CONVERT_MIX_M ? 15 : 14; // MOSTLY_Q4_K_M / MOSTLY_Q4_K_S
    case DT_Q5_K: return mix == CONVERT_MIX_M ? 17 : 16; // MOSTLY_Q5_K_M / MOSTLY_Q5_K_S
    case DT_Q6_K: return 18;
    case DT_BF16: return 32;
    default: return 0;
    }
}

// llama.cpp's choice of the layers that get more bits in the _M mixes: the first and last eighth, and every third
// layer in between.
static bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int64_t layer_of(const char *name) {
    long long l = -1;
    if (sscanf(name, "blk.%lld.", &l) != 1) return -1;
    return (int64_t)l;
}

// A type the row length does not fit: llama.cpp falls back to Q5_0/Q5_1/Q8_0 for Q4_K/Q5_K/Q6_K; lossy writes
// Q8_0 for all three (it has no Q5_0/Q5_1 encoder; Q8_0 costs more bytes and loses less), then F16.
static DType fit_rows(DType want, int64_t cols) {
    if (cols % (int64_t)dtype_info(want)->block_size == 0) return want;
    if (want == DT_F32) return DT_F32;
    if ((want == DT_Q4_K || want == DT_Q5_K || want == DT_Q6_K) && cols % 32 == 0) return DT_Q8_0;
    return DT_F16;
}

DType convert_tensor_type(const Model *m, const Tensor *t, const ConvertOpts *o) {
    if (t->n_dims < 2) return DT_F32;
    DType want = o->dtype;
    const bool quantized = want != DT_F32 && want != DT_F16 && want != DT_BF16;
    if (o->mix != CONVERT_MIX_NONE && quantized) {
        const char *n = t->name;
        bool tied = m->output == m->tok_embd;
        bool is_output = strcmp(n, "output.weight") == 0 || (tied && strcmp(n, "token_embd.weight") == 0);
        if (is_output) {
            if (t->ne[0] % 256 != 0) want = DT_Q8_0;
            else if (want != DT_Q8_0) want = DT_Q6_K;
        } else if (o->mix == CONVERT_MIX_M) {
            int64_t l = layer_of(n), L = m->cfg.n_layer;
            if (l >= 0 && (strstr(n, ".attn_v.weight") || strstr(n, ".ffn_down.weight")) && use_more_bits(l, L))
                want = DT_Q6_K;
            else if (strstr(n, ".attn_qkv.weight"))
                want = want == DT_Q4_K ? DT_Q5_K : DT_Q6_K;
        }
    }
    return fit_rows(want, t->ne[0]);
}

typedef struct Owned {
    void **p;
    size_t n;
} Owned;
static void *own(Owned *o, size_t bytes) {
    o->p = xrealloc(o->p, (o->n + 1) * sizeof *o->p);
    return o->p[o->n++] = xmalloc(bytes);
}

typedef struct RowJob {
    const Tensor *t;
    DType to;
    uint8_t *dst;
    size_t in_row, out_row;
    int64_t cols, rows;
    int64_t bad_row;  // first failing row (rows when none)
    Err err;          // its error
    pthread_mutex_t mu;
} RowJob;

// Rows in interleaved blocks of 16, so threads share the work evenly whatever the tensor's height.
static void row_worker(void *ctx, int ith, int nth) {
    RowJob *j = ctx;
    float *row = xmalloc_array((size_t)j->cols, sizeof(float));
    Err e;
    for (int64_t b = ith; b * 16 < j->rows; b += nth)
        for (int64_t r = b * 16; r < j->rows && r < b * 16 + 16; r++) {
            if (quant_dequantize_row((DType)j->t->type, (const uint8_t *)j->t->data + (size_t)r * j->in_row, row, j->cols, &e) ||
                quant_quantize_row(j->to, row, j->dst + (size_t)r * j->out_row, j->cols, NULL, &e)) {
                pthread_mutex_lock(&j->mu);
                if (r < j->bad_row) j->bad_row = r, j->err = e;
                pthread_mutex_unlock(&j->mu);
                break;
            }
        }
    free(row);
}

// Convert t's data into dtype `to` (a new buffer unless the type already matches).
static int convert_data(const Tensor *t, DType to, ThreadPool *pool, Owned *ow, const void **out, size_t *nbytes, Err *e) {
    const int64_t cols = t->ne[0], rows = tensor_rows(t);
    char lb[320];
    const char *label = weights_label(t->name, t->src_name, lb, sizeof lb); // the user's name for it too
    size_t out_row, in_row;
    if (quant_row_bytes(to, cols, &out_row, e) || quant_row_bytes((DType)t->type, cols, &in_row, e)) return err_prefix(e, "tensor %s: ", label);
    if (!size_mul(out_row, (size_t)rows, nbytes)) return ERR(e, "tensor %s too large", label);
    if ((DType)t->type == to) {
        *out = t->data;
        return 0;
    }
    RowJob j;
    memset(&j, 0, sizeof j);
    j.t = t, j.to = to, j.dst = own(ow, *nbytes), j.in_row = in_row, j.out_row = out_row, j.cols = cols, j.rows = rows;
    j.bad_row = rows;
    pthread_mutex_init(&j.mu, NULL);
    if (rows * cols < 65536) row_worker(&j, 0, 1);
    else threadpool_run(pool, row_worker, &j);
    pthread_mutex_destroy(&j.mu);
    if (j.bad_row < rows) {
        *e = j.err;
        return err_prefix(e, "tensor %s row %lld: ", label, (long long)j.bad_row);
    }
    *out = j.dst;
    return 0;
}

static void set_arch_keys(GGUFWriter *w, const ModelConfig *c) {
    const char *a = c->arch_name[0] ? c->arch_name : model_arch_name(c->arch);
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    gguf_writer_set_str(w, "general.architecture", a);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx_train);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size);
    if (c->head_dim * c->n_head != c->n_embd) {
        gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
    // Mistral v0.1's sliding window, under llama.cpp's key name: without it the GGUF attended to the whole context
    // while the Hugging Face directory it came from sees the last sliding_window positions only (model_config_from_gguf
    // reads it back; llama.cpp's llama architecture ignores the key, as it ignores the window in its own conversions)
    if (c->sliding_window > 0) gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window);
    if (c->norm == NORM_RMS) gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->norm_eps);
    else gguf_writer_set_f32(w, KEY("attention.layer_norm_epsilon"), (float)c->norm_eps);
    if (c->pos == POS_ROPE) {
        gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)c->rope_theta);
        gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->rope_dim);
        if (c->rope_scaling == ROPE_SCALING_LINEAR) {
            gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear");
            gguf_writer_set_f32(w, KEY("rope.scaling.factor"), (float)c->rope_factor);
        }
    }
#undef KEY
}

int model_write_gguf(const Model *m, const Tokenizer *tok, const char *path, const ConvertOpts *o, Err *e) {
    const ModelConfig *c = &m->cfg;
    DType want = o->dtype;
    if (want != DT_F32 && want != DT_F16 && want != DT_BF16 && want != DT_Q8_0 && want != DT_Q4_0 && want != DT_Q4_K &&
        want != DT_Q5_K && want != DT_Q6_K)
        return ERR(e, "GGUF files are written in f32, f16, bf16, q8_0, q4_0, q4_K, q5_K or q6_K (got %s)", dtype_name(want));
    if (o->mix == CONVERT_MIX_M && want != DT_Q4_K && want != DT_Q5_K)
        return ERR(e, "the _M mixes are defined for q4_K and q5_K (got %s)", dtype_name(want));
    if (c->rope_scaling == ROPE_SCALING_LLAMA3 && c->arch != ARCH_LLAMA)
        return ERR(e, "llama3 rope scaling is only written for the llama architecture");
    GGUFWriter *w = gguf_writer_new();
    Owned ow = {0};
    int rc = 0;
    if (m->format == MODEL_FORMAT_GGUF) {
        for (size_t i = 0; i < m->gguf.n_kv; i++) {
            const char *k = m->gguf.kv[i].key;
            if (strcmp(k, "general.file_type") == 0 || strcmp(k, "general.alignment") == 0) continue;
            gguf_writer_copy_kv(w, &m->gguf.kv[i]);
        }
        // a source without a vocabulary gets tok's keys when one is given, else the marker (a file written before
        // lossy wrote it lacks the key, and llama.cpp refuses it)
        if (!tokenizer_gguf_has_vocab(&m->gguf) && tokenizer_gguf_set_keys(w, tok, e)) {
            rc = -1;
            goto done;
        }
    } else {
        set_arch_keys(w, c);
        if (tokenizer_gguf_set_keys(w, tok, e)) { // tok NULL: the no-vocabulary marker
            rc = -1;
            goto done;
        }
        gguf_writer_set_str(w, "lossy.converted_from", m->path);
    }
    if (o->name) gguf_writer_set_str(w, "general.name", o->name);
    if (o->chat_template) gguf_writer_set_str(w, "tokenizer.chat_template", o->chat_template);
    gguf_writer_set_u32(w, "general.file_type", file_type_of(want, o->mix));
    gguf_writer_set_u32(w, "general.quantization_version", 2);
    // llama.cpp reads q/k of "llama" files in the interleaved rope order
    const bool permute = c->arch == ARCH_LLAMA && c->rope_style == ROPE_STYLE_NEOX;
    for (size_t i = 0; i < m->w.n && rc == 0; i++) {
        const Tensor *t = &m->w.t[i];
        if (c->tied_embeddings && strcmp(t->name, "output.weight") == 0) continue;
        DType to = convert_tensor_type(m, t, o);
        const void *data = NULL;
        size_t nbytes = 0;
        if (convert_data(t, to, o->pool, &ow, &data, &nbytes, e)) {
            rc = -1;
            break;
        }
        if (o->on_tensor) o->on_tensor(o->ctx, t->name, (DType)t->type, to, nbytes);
        const char *suffix = strrchr(t->name, '.');
        bool is_q = strstr(t->name, ".attn_q.") != NULL, is_k = strstr(t->name, ".attn_k.") != NULL;
        if (permute && (is_q || is_k) && suffix) {
            int64_t heads = is_q ? c->n_head : c->n_head_kv;
            size_t row_bytes = nbytes / (size_t)(heads * c->head_dim);
            void *p = own(&ow, nbytes);
            convert_permute_qk_rows(p, data, heads, c->head_dim, row_bytes);
            data = p;
        }
        rc = gguf_writer_add_tensor(w, t->name, to, t->n_dims, t->ne, data, e);
        // llama.cpp's gpt2 requires output.weight (no fallback to the tied embedding, unlike llama/qwen2); its own
        // converter writes the embedding a second time, and so does this one
        if (rc == 0 && c->arch == ARCH_GPT2 && c->tied_embeddings && strcmp(t->name, "token_embd.weight") == 0)
            rc = gguf_writer_add_tensor(w, "output.weight", to, t->n_dims, t->ne, data, e);
    }
    if (rc == 0 && c->rope_scaling == ROPE_SCALING_LLAMA3 && !weights_find(&m->w, "rope_freqs.weight")) {
        // llama.cpp stores Llama 3.1 scaling as per-frequency divisors: unscaled inv_freq / scaled inv_freq
        int64_t half = c->rope_dim / 2;
        double *scaled = xmalloc_array((size_t)half, sizeof(double));
        ModelConfig plain = *c;
        plain.rope_scaling = ROPE_SCALING_NONE;
        double *base = xmalloc_array((size_t)half, sizeof(double));
        model_config_rope_inv_freq(c, scaled);
        model_config_rope_inv_freq(&plain, base);
        float *div = own(&ow, (size_t)half * sizeof(float));
        for (int64_t i = 0; i < half; i++) div[i] = (float)(base[i] / scaled[i]);
        free(scaled);
        free(base);
        int64_t ne[1] = {half};
        rc = gguf_writer_add_tensor(w, "rope_freqs.weight", DT_F32, 1, ne, div, e);
    }
    if (rc == 0) rc = gguf_writer_write(w, path, e);
done:
    for (size_t i = 0; i < ow.n; i++) free(ow.p[i]);
    free(ow.p);
    gguf_writer_free(w);
    return rc;
}
