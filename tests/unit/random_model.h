// random_model.h — a random-weight Llama GGUF for tests of the batched forward, quantization and evaluation (shared
// by several test files; header-only so each includes it directly).
#ifndef LOSSY_TEST_RANDOM_MODEL_H
#define LOSSY_TEST_RANDOM_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "formats/gguf.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "test.h"

static inline float rm_gauss(void) {
    double u1 = 1.0 - test_rand_uniform(), u2 = test_rand_uniform();
    return (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

// A random Llama model (C = 256, F = 512, L layers, GQA 4/2, head_dim 64, vocab 300) with every matrix in type t;
// when deq_path is not NULL, also the same model with every matrix dequantized to F32 (the exact reference).
static inline int write_random_model(const char *path, DType t, const char *deq_path, int64_t L, Err *e) {
    const int64_t C = 256, F = 512, H = 4, Hkv = 2, hd = 64, V = 300;
    GGUFWriter *w = gguf_writer_new(), *wd = gguf_writer_new();
    for (int i = 0; i < 2; i++) {
        GGUFWriter *x = i ? wd : w;
        gguf_writer_set_str(x, "general.architecture", "llama");
        gguf_writer_set_u32(x, "llama.context_length", 512);
        gguf_writer_set_u32(x, "llama.embedding_length", (uint32_t)C);
        gguf_writer_set_u32(x, "llama.feed_forward_length", (uint32_t)F);
        gguf_writer_set_u32(x, "llama.block_count", (uint32_t)L);
        gguf_writer_set_u32(x, "llama.attention.head_count", (uint32_t)H);
        gguf_writer_set_u32(x, "llama.attention.head_count_kv", (uint32_t)Hkv);
        gguf_writer_set_u32(x, "llama.vocab_size", (uint32_t)V);
        gguf_writer_set_f32(x, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
        gguf_writer_set_u32(x, "llama.rope.dimension_count", (uint32_t)hd);
    }
    void *bufs[128];
    int nb = 0;
    float *ones = xmalloc_array((size_t)C, sizeof(float));
    for (int64_t i = 0; i < C; i++) ones[i] = 1.0f + 0.1f * rm_gauss();
    bufs[nb++] = ones;
    int rc = 0;
#define MAT(name, rows, cols, scale)                                                                          \
    do {                                                                                                      \
        size_t rb_;                                                                                           \
        if (rc == 0) rc = quant_row_bytes(t, cols, &rb_, e);                                                  \
        if (rc) break;                                                                                        \
        uint8_t *d_ = xmalloc(rb_ * (size_t)(rows));                                                          \
        float *f_ = xmalloc_array((size_t)((rows) * (cols)), sizeof(float));                                  \
        for (int64_t r_ = 0; r_ < (rows) && rc == 0; r_++) {                                                  \
            for (int64_t c_ = 0; c_ < (cols); c_++) f_[r_ * (cols) + c_] = (scale) * rm_gauss();                 \
            rc = quant_quantize_row(t, f_ + r_ * (cols), d_ + (size_t)r_ * rb_, cols, NULL, e);               \
            if (rc == 0) rc = quant_dequantize_row(t, d_ + (size_t)r_ * rb_, f_ + r_ * (cols), cols, e);       \
        }                                                                                                     \
        bufs[nb++] = d_;                                                                                      \
        bufs[nb++] = f_;                                                                                      \
        int64_t ne_[2] = {cols, rows};                                                                        \
        if (rc == 0) rc = gguf_writer_add_tensor(w, name, t, 2, ne_, d_, e);                                  \
        if (rc == 0) rc = gguf_writer_add_tensor(wd, name, DT_F32, 2, ne_, f_, e);                            \
    } while (0)
    int64_t ne1[1] = {C};
    MAT("token_embd.weight", V, C, 1.0f);
    MAT("output.weight", V, C, 0.1f);
    for (int i = 0; i < 2 && rc == 0; i++) rc = gguf_writer_add_tensor(i ? wd : w, "output_norm.weight", DT_F32, 1, ne1, ones, e);
    char name[64];
    for (int64_t l = 0; l < L && rc == 0; l++) {
#define N(x) (snprintf(name, sizeof name, "blk.%lld." x, (long long)l), name)
        for (int i = 0; i < 2 && rc == 0; i++) {
            rc = gguf_writer_add_tensor(i ? wd : w, N("attn_norm.weight"), DT_F32, 1, ne1, ones, e);
            if (rc == 0) rc = gguf_writer_add_tensor(i ? wd : w, N("ffn_norm.weight"), DT_F32, 1, ne1, ones, e);
        }
        MAT(N("attn_q.weight"), H * hd, C, 0.08f);
        MAT(N("attn_k.weight"), Hkv * hd, C, 0.08f);
        MAT(N("attn_v.weight"), Hkv * hd, C, 0.08f);
        MAT(N("attn_output.weight"), C, H * hd, 0.06f);
        MAT(N("ffn_gate.weight"), F, C, 0.06f);
        MAT(N("ffn_up.weight"), F, C, 0.06f);
        MAT(N("ffn_down.weight"), C, F, 0.05f);
#undef N
    }
#undef MAT
    if (rc == 0) rc = gguf_writer_write(w, path, e);
    if (rc == 0 && deq_path) rc = gguf_writer_write(wd, deq_path, e);
    gguf_writer_free(w);
    gguf_writer_free(wd);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc;
}

// A 2-layer random model with every matrix in type t, written to the test's temporary folder as <tag>_<type>.gguf
// and loaded into *m; false, with the test marked failed, when either step fails.
static inline bool load_random_model(Model *m, const char *tag, DType t) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s_%s.gguf", test_tmpdir(), tag, dtype_name(t));
    Err e;
    if (write_random_model(path, t, NULL, 2, &e) == 0 && model_load(m, path, &e) == 0) return true;
    test_fail_at(__FILE__, __LINE__, "%s: %s", path, e.msg);
    return false;
}

#endif
