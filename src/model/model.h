// model.h — the one transformer: load any supported parameters file, bind its weights, run the forward pass.
//
// A Model is immutable after model_load (weights stay mmapped in their stored dtype; only small vectors — norm
// weights and biases — are converted to f32). A ModelState is one sequence's inference state: its KV cache, its
// position and its scratch buffers; several states can share one Model. Every architecture (Llama 1/2/3, Mistral,
// Qwen2, GPT-2, llama2.c) runs through the same model_forward, steered by the ModelConfig (config.h).
#ifndef LOSSY_MODEL_H
#define LOSSY_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/matvec.h"
#include "model/config.h"
#include "model/weights.h"

typedef struct ModelLayer {
    const float *attn_norm, *attn_norm_b;            // (C)
    const Tensor *wq, *wk, *wv, *wo;                 // (C -> H*hd), (C -> Hkv*hd) x2, (H*hd -> C)
    const Tensor *wqkv;                              // GPT-2 fused (C -> 3C), instead of wq/wk/wv
    const float *bq, *bk, *bv, *bqkv, *bo;           // biases or NULL
    const float *ffn_norm, *ffn_norm_b;              // (C)
    const Tensor *w_gate, *w_up, *w_down;            // (C -> F), (C -> F), (F -> C); w_gate NULL for MLP_PLAIN
    const float *b_gate, *b_up, *b_down;
} ModelLayer;

typedef enum ModelFormat { MODEL_FORMAT_GGUF = 1, MODEL_FORMAT_HF, MODEL_FORMAT_LLAMA2C } ModelFormat;

typedef struct Model {
    ModelConfig cfg;
    ModelFormat format;
    char *path;
    GGUFFile gguf;             // when format == GGUF
    SafeTensors st;            // when format == HF
    void *l2c;                 // when format == LLAMA2C (formats/llama2c.h)
    WeightTable w;
    const Tensor *tok_embd;    // (V rows of C)
    const Tensor *pos_embd;    // (n_ctx_train rows of C), POS_LEARNED only
    const Tensor *output;      // (V rows of C): output.weight, or tok_embd when tied
    const float *output_norm, *output_norm_b; // (C)
    ModelLayer *layers;        // (n_layer)
    const void **repacked;     // (w.n) per weight: a copy in a layout the kernels read faster (Q4_0x4 of a Q4_0
                               // matrix, matvec.h; 32-column panels of an F32 matrix, wpanel.h) or NULL; made at
                               // load when the AVX-512 kernels run
    const void **copied;       // (w.n) per weight: a same-layout copy in huge pages (every other decoding matrix, when
                               // the AVX-512 kernels run) or NULL
    double *inv_freq;          // (rope_dim / 2) rotary inverse frequencies, scaling and rope_freqs applied
    void *gpu;                 // the GPU copy (model_device.h) when the model runs with --device cuda, else NULL
    bool all_panels;           // every matrix the forward pass multiplies by is in panels (model_forward_multi)
} Model;

// Load a model: a GGUF file, a Hugging Face directory (config.json + model.safetensors[.index.json]) or a llama2.c
// checkpoint (.bin). The format is detected from the path and the file's first bytes. For running on the CPU: with
// the AVX-512 kernels every decoding matrix is copied at load into the layout they read fastest (model.c).
int model_load(Model *m, const char *path, Err *e);
// The same model with every tensor left where it is mapped (no load-time copies): for reading the weights
// (convert, quantize) and for uploading them to a GPU.
int model_load_mapped(Model *m, const char *path, Err *e);
void model_free(Model *m);

// Bytes of weights read per generated token (every matrix once), for bandwidth figures.
size_t model_weight_bytes(const Model *m);
// The byte ranges generation reads per token (every matrix once, in the memory and layout the kernels read: a
// repacked or huge-page copy where there is one), for measuring the bandwidth those bytes can be read at. Returns
// the number of ranges written (at most max).
size_t model_weight_ranges(const Model *m, const void **ptr, size_t *len, size_t max);

// Memory a model needs on the CPU, from a GGUF file's header alone (lossy info shows it before anything big is
// allocated): the mmapped weights, the load-time copies model_load would make in this process (F32 panels, Q4_0/Q8_0
// x4 groups, same-layout copies of the rest, for the AVX-512 kernels; LOSSY_REPACK=0 respected) and one sequence's
// f32 KV cache at n_ctx positions (n_ctx <= 0: the length model_state_init picks).
typedef struct ModelMemoryPlan {
    int64_t n_ctx;
    size_t weights, copies, kv_cache, total; // bytes
    size_t released; // of weights: file pages given back once their matrix is copied; not in total
} ModelMemoryPlan;
int model_memory_plan(const GGUFFile *g, int64_t n_ctx, ModelMemoryPlan *p, Err *e);

#define MODEL_MAX_ACTS 4
#define MODEL_MAX_SEQS 256 // sequences one model_forward_batch / model_forward_multi steps together
#define MODEL_CHUNK 128    // tokens per prompt chunk (model_forward), rows per model_forward_multi pass

typedef struct ModelBatch ModelBatch; // prompt-chunk buffers (model.c)

typedef struct ModelState {
    const Model *m;
    int64_t n_ctx;     // KV cache length
    int64_t pos;       // tokens already in the cache
    float *k_cache;    // (n_layer, Hkv, hd, n_ctx) keys transposed: decoding scores need no horizontal sums
    float *v_cache;    // (n_layer, Hkv, n_ctx, hd)
    float *x;          // (C) residual stream
    float *xb;         // (C) normed input of a sub-block
    float *qkv;        // (H*hd + 2*Hkv*hd) q, k, v of the current token
    float *att_out;    // (H*hd) attention output
    float *hb, *hb2;   // (F) MLP hidden
    float *tmp;        // (max(C, F, H*hd)) projection output
    float *logits;     // (V)
    float *rope_cos, *rope_sin; // (rope_dim / 2) for the current position
    float *att_scratch;         // (threads, scratch per thread) attention scores
    MatvecAct act[MODEL_MAX_ACTS]; // the current input quantized for each weight type in use
    size_t att_scratch_stride;      // floats of att_scratch per thread
    float *panel_act;               // a decoding step's inputs packed for wpanel_rows (wpanel_act_floats); grows
    size_t panel_act_cap;           // floats allocated
    ThreadPool *pool;  // borrowed; NULL = single-threaded
    ModelBatch *batch; // prompt-chunk activations, allocated by the first model_forward of several tokens
    void *gpu;         // this sequence's GPU KV cache when the model runs on the GPU (model_device.h), else NULL;
                       // such a state has no host buffers but logits
} ModelState;

// n_ctx <= 0: the model's training context (capped at 4096 to bound memory).
int model_state_init(ModelState *s, const Model *m, int64_t n_ctx, ThreadPool *pool, Err *e);
void model_state_free(ModelState *s);
void model_state_reset(ModelState *s); // forget the sequence (pos = 0)

// Feed tokens at the current position; after the call s->logits holds the logits of the last token (V).
// Several tokens go through in chunks of token-block GEMMs (prompt processing); the result agrees with feeding them
// one at a time to float and activation-quantization precision, not bit for bit.
int model_forward(ModelState *s, const int32_t *tokens, int64_t n, Err *e);

// As model_forward over n > 0 tokens, and the next-token logits after every token into logits (n, V) (perplexity,
// scoring). s->logits holds the last row afterwards.
int model_forward_all(ModelState *s, const int32_t *tokens, int64_t n, float *logits, Err *e);

// One decoding step for several independent sequences (the server's slots): state i takes token tokens[i]; after the
// call states[i]->logits holds its next-token logits. Each matrix is read once for all states (F32 panels: one GEMM
// over the states' rows, wpanel.h; F16/BF16: each loaded weight vector multiplies several states' activations,
// matvec_rows_multi; other types: row tiles reread from cache), and each state's result is the same bits as
// model_forward of that one token on it alone.
// The states must share the model and the thread pool, and be distinct.
int model_forward_batch(ModelState *const *states, const int32_t *tokens, int64_t n, Err *e);

// A server's pass: sequence i takes counts[i] >= 1 tokens (tokens holds them sequence after sequence); afterwards
// states[i]->logits holds its next-token logits. Each sequence ends in the same state, bit for bit, as
// model_forward_batch (count 1, the decoding rows together) or model_forward (count > 1) would leave it. With F32
// weights in panels (wpanel.h) all rows go through one pass that reads the weights once (at most MODEL_CHUNK rows,
// sequences with one context length); otherwise the decoding rows are one batched step and each prompt piece its own.
int model_forward_multi(ModelState *const *states, const int32_t *tokens, const int64_t *counts, int64_t n, Err *e);

#endif
