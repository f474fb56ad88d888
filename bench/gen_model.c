// gen_model.c — write a llama-architecture GGUF with random weights in the shapes of known models, for benchmarks.
//
//   cc -O2 -Isrc bench/gen_model.c build/release/liblossy.a -lpcre2-8 -ljansson -lutf8proc -lm -lpthread -o build/gen_model
//   build/gen_model stories15m f32 /tmp/s15m.f32.gguf [VOCAB.gguf]
//
// Shapes: stories15m (dim 288, 6 layers), stories110m (dim 768, 12 layers), tinyllama (dim 2048, 22 layers, GQA 32/4).
// Without VOCAB the file has no tokenizer (tokenizer.ggml.model = "no_vocab"): run it with `lossy run FILE --ids 1
// --print-ids`, `lossy bench` or llama.cpp's llama-bench. With a
// 32000-token vocabulary GGUF (e.g. ../shared/fixtures/tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf) its
// tokenizer.ggml.* keys are copied in, so llama.cpp loads the same file (llama-bench, llama-cli).
// dtype: f32 f16 bf16 q8_0 q4_0 q4_K q5_K q6_K (rows that are not a whole number of blocks, e.g. dim 288 with a
// K-quant, make the generator fail: use `lossy quantize`'s fallback rules for mixed files).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "kernels/quant.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/write_tokenizer.h"

typedef struct Shape {
    const char *name;
    int64_t dim, ffn, layers, heads, kv_heads, vocab, ctx;
} Shape;

static const Shape SHAPES[] = {
    {"stories15m", 288, 768, 6, 6, 6, 32000, 256},
    {"stories110m", 768, 2048, 12, 12, 12, 32000, 1024},
    {"tinyllama", 2048, 5632, 22, 32, 4, 32000, 2048},
};

static uint64_t rng = 88172645463325252ull;
static float randn(void) {
    // sum of uniforms: cheap, roughly normal, deterministic
    float s = 0;
    for (int i = 0; i < 4; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        s += (float)(rng >> 40) / (float)(1ull << 24);
    }
    return (s - 2.0f) * 1.7f;
}

static void *tensor_data(DType t, int64_t rows, int64_t cols, float scale) {
    size_t row_bytes;
    Err e;
    if (quant_row_bytes(t, cols, &row_bytes, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    uint8_t *out = malloc(row_bytes * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) row[c] = randn() * scale;
        if (quant_quantize_row(t, row, out + (size_t)r * row_bytes, cols, NULL, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            exit(1);
        }
    }
    free(row);
    return out;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: gen_model stories15m|stories110m|tinyllama f32|f16|bf16|q8_0|q4_0|q4_K|q5_K|q6_K OUT.gguf [VOCAB.gguf]\n");
        return 2;
    }
    const Shape *s = NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++)
        if (strcmp(SHAPES[i].name, argv[1]) == 0) s = &SHAPES[i];
    int dt = dtype_from_name(argv[2]);
    if (!s || dt < 0) {
        fprintf(stderr, "unknown shape or type\n");
        return 2;
    }
    GGUFWriter *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.name", s->name);
    gguf_writer_set_u32(w, "llama.context_length", (uint32_t)s->ctx);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->dim);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->ffn);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->layers);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->heads);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->kv_heads);
    gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)s->vocab);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(s->dim / s->heads));
    Err e;
    if (argc == 5) {
        Tokenizer *tok = NULL;
        if (tokenizer_load_gguf_path(argv[4], &tok, &e) || tokenizer_gguf_set_keys(w, tok, &e)) {
            fprintf(stderr, "%s: %s\n", argv[4], e.msg);
            return 1;
        }
        if ((int64_t)tokenizer_vocab_size(tok) != s->vocab) {
            fprintf(stderr, "%s: vocabulary of %lld tokens, the shape needs %lld\n", argv[4], (long long)tokenizer_vocab_size(tok), (long long)s->vocab);
            return 1;
        }
        tokenizer_free(tok);
    } else {
        tokenizer_gguf_set_keys(w, NULL, &e); // the no-vocabulary marker, without which llama.cpp refuses the file
    }
    const int64_t hd = s->dim / s->heads;
    float *ones = malloc(sizeof(float) * (size_t)s->dim);
    for (int64_t i = 0; i < s->dim; i++) ones[i] = 1.0f;
#define ADD(name, type, rows, cols, scale)                                                              \
    do {                                                                                                 \
        int64_t ne_[2] = {cols, rows};                                                                   \
        if (gguf_writer_add_tensor(w, name, type, 2, ne_, tensor_data(type, rows, cols, scale), &e)) {   \
            fprintf(stderr, "%s\n", e.msg);                                                              \
            return 1;                                                                                    \
        }                                                                                                \
    } while (0)
    ADD("token_embd.weight", (DType)dt, s->vocab, s->dim, 0.5f);
    ADD("output.weight", (DType)dt, s->vocab, s->dim, 0.05f);
    int64_t ne1[1] = {s->dim};
    gguf_writer_add_tensor(w, "output_norm.weight", DT_F32, 1, ne1, ones, &e);
    char name[128];
    for (int64_t l = 0; l < s->layers; l++) {
#define N(x) (snprintf(name, sizeof name, "blk.%lld." x, (long long)l), name)
        gguf_writer_add_tensor(w, N("attn_norm.weight"), DT_F32, 1, ne1, ones, &e);
        gguf_writer_add_tensor(w, N("ffn_norm.weight"), DT_F32, 1, ne1, ones, &e);
        ADD(N("attn_q.weight"), (DType)dt, s->heads * hd, s->dim, 0.05f);
        ADD(N("attn_k.weight"), (DType)dt, s->kv_heads * hd, s->dim, 0.05f);
        ADD(N("attn_v.weight"), (DType)dt, s->kv_heads * hd, s->dim, 0.05f);
        ADD(N("attn_output.weight"), (DType)dt, s->dim, s->heads * hd, 0.05f);
        ADD(N("ffn_gate.weight"), (DType)dt, s->ffn, s->dim, 0.05f);
        ADD(N("ffn_up.weight"), (DType)dt, s->ffn, s->dim, 0.05f);
        ADD(N("ffn_down.weight"), (DType)dt, s->dim, s->ffn, 0.05f);
    }
    if (gguf_writer_write(w, argv[3], &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    fprintf(stderr, "wrote %s\n", argv[3]);
    return 0; // tensor buffers are left to the OS: a one-shot tool
}
