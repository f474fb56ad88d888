// convert.c — Model → GGUF (see convert.h).
//
// Keys follow llama.cpp's names so the file runs there; lossy-only facts go under lossy.*. When the source is a GGUF
// file, its metadata is carried over as it is (tokenizer, template, provenance) and only the file type changes.
// When the source is a Hugging Face llama checkpoint, q/k rows are permuted into the interleaved rope order that
// GGUF llama files use (llama.cpp's converter does the same); qwen2 files keep the neox order.
#include "model/convert.h"

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

static uint32_t file_type_of(DType t) {
    switch (t) {
    case DT_F32: return 0;
    case DT_F16: return 1;
    case DT_Q4_0: return 2;
    case DT_Q8_0: return 7;
    case DT_BF16: return 32;
    default: return 0;
    }
}

// The dtype a tensor is written in: matrices take the requested type when their rows fit its blocks (else a
// fallback as llama.cpp does), vectors stay F32.
static DType pick_dtype(const Tensor *t, DType want) {
    if (t->n_dims < 2) return DT_F32;
    const DTypeInfo *di = dtype_info(want);
    if (t->ne[0] % di->block_size == 0) return want;
    return (want == DT_F32) ? DT_F32 : DT_F16;
}

typedef struct Owned {
    void **p;
    size_t n;
} Owned;
static void *own(Owned *o, size_t bytes) {
    o->p = xrealloc(o->p, (o->n + 1) * sizeof *o->p);
    return o->p[o->n++] = xmalloc(bytes);
}

// Convert t's data into dtype `to` (a new buffer unless the type already matches).
static int convert_data(const Tensor *t, DType to, Owned *ow, const void **out, size_t *nbytes, Err *e) {
    const int64_t cols = t->ne[0], rows = tensor_rows(t);
    size_t out_row, in_row;
    if (quant_row_bytes(to, cols, &out_row, e) || quant_row_bytes((DType)t->type, cols, &in_row, e)) return err_prefix(e, "tensor '%s': ", t->name);
    if (!size_mul(out_row, (size_t)rows, nbytes)) return ERR(e, "tensor '%s' too large", t->name);
    if ((DType)t->type == to) {
        *out = t->data;
        return 0;
    }
    uint8_t *dst = own(ow, *nbytes);
    float *row = xmalloc_array((size_t)cols, sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        if (quant_dequantize_row((DType)t->type, (const uint8_t *)t->data + (size_t)r * in_row, row, cols, e) ||
            quant_quantize_row(to, row, dst + (size_t)r * out_row, cols, NULL, e)) {
            free(row);
            return err_prefix(e, "tensor '%s' row %lld: ", t->name, (long long)r);
        }
    }
    free(row);
    *out = dst;
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
    if (want != DT_F32 && want != DT_F16 && want != DT_BF16 && want != DT_Q8_0 && want != DT_Q4_0)
        return ERR(e, "convert writes f32, f16, bf16, q8_0 or q4_0 (got %s)", dtype_name(want));
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
    } else {
        set_arch_keys(w, c);
        if (tok && tokenizer_gguf_set_keys(w, tok, e)) {
            rc = -1;
            goto done;
        }
        gguf_writer_set_str(w, "lossy.converted_from", m->path);
    }
    if (o->name) gguf_writer_set_str(w, "general.name", o->name);
    if (o->chat_template) gguf_writer_set_str(w, "tokenizer.chat_template", o->chat_template);
    gguf_writer_set_u32(w, "general.file_type", file_type_of(want));
    gguf_writer_set_u32(w, "general.quantization_version", 2);
    // llama.cpp reads q/k of "llama" files in the interleaved rope order
    const bool permute = c->arch == ARCH_LLAMA && c->rope_style == ROPE_STYLE_NEOX;
    for (size_t i = 0; i < m->w.n && rc == 0; i++) {
        const Tensor *t = &m->w.t[i];
        if (c->tied_embeddings && strcmp(t->name, "output.weight") == 0) continue;
        DType to = pick_dtype(t, want);
        const void *data = NULL;
        size_t nbytes = 0;
        if (convert_data(t, to, &ow, &data, &nbytes, e)) {
            rc = -1;
            break;
        }
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
