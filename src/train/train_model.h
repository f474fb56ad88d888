// train_model.h — the Llama transformer as the trainer sees it: fp32 master weights in one flat buffer, the batched
// forward over (B, T) tokens that keeps every activation the backward needs, and the hand-written backward.
//
// Architecture (the GGUF "llama" layout that lossy run and llama.cpp load):
//   x = token_embd[tokens]
//   per layer: xn = rmsnorm(x) * attn_norm; q, k, v = xn Wq^T, xn Wk^T, xn Wv^T; rope(q, k) (interleaved pairs);
//              x += causal GQA attention(q, k, v) Wo^T;
//              xn = rmsnorm(x) * ffn_norm; x += (silu(xn Wgate^T) * (xn Wup^T)) Wdown^T
//   logits = rmsnorm(x) * output_norm W_out^T   (W_out = token_embd when the embeddings are tied)
// Every op is a kernel from src/kernels (rmsnorm, rope, attention, swiglu, matmul, embedding, softmax+xent), the
// same functions inference calls, each with its backward next to it; the model code only calls them in order and
// splits the work over the thread pool (rows, attention heads, or output blocks of the GEMMs). All splits keep each
// output's arithmetic independent of the thread count, and reductions across rows (norm weight gradients, the
// output head over row chunks, the gradient norm) sum fixed-size blocks in a fixed order: a step gives bit-identical
// results whatever --threads is, which is what makes resumed runs reproduce exactly.
//
// The output head never holds (B*T, V) logits: rows go through it in chunks; in the training step each chunk's
// cross-entropy gradient is formed and pushed back into dW_out and dx right away (a fused head), so memory stays
// bounded for large vocabularies.
#ifndef LOSSY_TRAIN_MODEL_H
#define LOSSY_TRAIN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

// One named parameter tensor: a slice of the flat parameter buffer.
typedef struct TrainParam {
    char name[64];   // GGUF tensor name
    size_t offset;   // first element in the flat buffer
    size_t count;    // elements
    int n_dims;      // 1 or 2
    int64_t ne[2];   // GGML order: ne[0] = row length (in), ne[1] = rows (out)
    bool decay;      // AdamW weight decay applies (matrices of the blocks and an untied output head)
} TrainParam;

typedef struct TrainLayerW {
    float *attn_norm;       // (C)
    float *wq, *wk, *wv;    // (H*hd, C), (Hkv*hd, C), (Hkv*hd, C)
    float *wo;              // (C, H*hd)
    float *ffn_norm;        // (C)
    float *w_gate, *w_up;   // (F, C)
    float *w_down;          // (C, F)
} TrainLayerW;

// Pointers into one flat buffer (weights, gradients or optimizer moments share the layout).
typedef struct TrainWeights {
    float *tok_embd;        // (V, C)
    float *output;          // (V, C); == tok_embd when tied
    float *output_norm;     // (C)
    TrainLayerW *layers;    // (L)
} TrainWeights;

// Activations of one forward pass, per layer, kept for the backward. BT = B*T rows.
typedef struct TrainLayerActs {
    float *x_in;            // (BT, C) residual stream entering the layer
    float *rstd1;           // (BT)
    float *xn1;             // (BT, C)
    float *q, *k, *v;       // (BT, H*hd), (BT, Hkv*hd), (BT, Hkv*hd); q and k after rope
    float *att;             // (B, H, T, T) attention probabilities
    float *atty;            // (BT, H*hd) attention output before Wo
    float *x_mid;           // (BT, C) after the attention residual
    float *rstd2;           // (BT)
    float *xn2;             // (BT, C)
    float *gate, *up, *h;   // (BT, F) each; h = silu(gate) * up
} TrainLayerActs;

typedef struct TrainModel {
    ModelConfig cfg;
    ThreadPool *pool;       // borrowed; NULL = single-threaded

    size_t n_params;
    float *params;          // (n_params) fp32 master weights
    float *grads;           // (n_params) accumulated by train_model_forward_backward
    TrainParam *pinfo;      // (n_pinfo) in buffer order
    size_t n_pinfo;
    TrainWeights w, g;      // views of params and grads

    double *inv_freq;       // (rope_dim/2)

    // activation capacity and buffers (train_model_reserve)
    int64_t cap_B, cap_T, head_rows;
    size_t act_bytes;       // size of act_mem
    float *act_mem;         // one allocation for everything below
    TrainLayerActs *acts;   // (L)
    float *x_out;           // (BT, C) residual stream after the last layer
    float *rstd_f;          // (BT)
    float *xf;              // (BT, C) final norm output
    float *rope_cos, *rope_sin; // (T, rope_dim/2)
    float *logits;          // (head_rows, V) one chunk of the head
    float *row_loss;        // (BT)
    float *row_lse;         // (head_rows)
    // backward scratch
    float *d_res, *d_xn;    // (BT, C)
    float *d_q, *d_k, *d_v, *d_atty; // (BT, H*hd), (BT, Hkv*hd) x2, (BT, H*hd)
    float *d_gate, *d_up, *d_h;      // (BT, F)
    float *d_normw;         // (ceil(BT / 64), C) per-block partial norm-weight gradients
    int32_t *tokens;        // (BT) copy of the current batch
} TrainModel;

// Presets: name, and the shape they give (vocab and context come from elsewhere unless the preset fixes seq).
typedef struct TrainPreset {
    const char *name;
    int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, seq_len;
    const char *note;
} TrainPreset;
extern const TrainPreset TRAIN_PRESETS[];
extern const size_t TRAIN_N_PRESETS;
const TrainPreset *train_preset_find(const char *name);

// The default MLP width for a model width: llama2.c's rule, 2/3 of 4*C rounded up to a multiple of 32.
int64_t train_default_ffn(int64_t n_embd);

// Fill a llama ModelConfig for training (rope theta 10000, rms eps 1e-5 as stored in GGUF f32, interleaved rope).
// head_kv <= 0 means n_head; n_ff <= 0 means train_default_ffn.
int train_config_llama(ModelConfig *c, int64_t vocab, int64_t n_layer, int64_t n_embd, int64_t n_head,
                       int64_t n_head_kv, int64_t n_ff, int64_t seq_len, bool tied, Err *e);
// Whether the trainer can train this config (llama layout, RMSNorm, interleaved rope without scaling, SwiGLU, no
// biases, no sliding window); the error names what is not supported.
int train_config_check(const ModelConfig *c, Err *e);

// Allocate weights and gradients (zeroed) for c. pool may be NULL.
int train_model_init(TrainModel *m, const ModelConfig *c, ThreadPool *pool, Err *e);
void train_model_free(TrainModel *m);
// Random initialisation from a seed: matrices and embeddings N(0, 0.02), the residual projections (Wo, Wdown)
// scaled by 1/sqrt(2L) (GPT-2), norm weights 1.
void train_model_init_weights(TrainModel *m, uint64_t seed);
// Load weights from a GGUF llama file whose config equals m->cfg: F32 tensors are copied, F16/BF16 and quantized ones
// dequantized (finetuning a converted or quantized model starts from the same values inference computes with).
int train_model_load_weights(TrainModel *m, const GGUFFile *g, Err *e);

// Activation buffers for batches of up to B sequences of T tokens (T <= n_ctx_train). Idempotent for equal sizes.
int train_model_reserve(TrainModel *m, int64_t B, int64_t T, Err *e);

// Forward over tokens (B, T) and the mean cross-entropy against targets (B, T). Activations stay in the model.
// row_loss (B*T) receives each position's loss when not NULL. B <= cap_B, T <= cap_T.
double train_model_forward(TrainModel *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                           float *row_loss);
// One micro-batch of training: forward, loss, and gradients ACCUMULATED into m->grads scaled by grad_scale (the
// gradient of grad_scale * sum of per-token losses; use 1 / (B*T*accum_steps)). Returns the mean loss.
double train_model_forward_backward(TrainModel *m, const int32_t *tokens, const int32_t *targets, int64_t B,
                                    int64_t T, float grad_scale);
// Logits of every position: out (B*T, V). For tests and sampling.
void train_model_logits(TrainModel *m, const int32_t *tokens, int64_t B, int64_t T, float *out);
// Logits of the last position of one sequence of T tokens: out (V). For sampling during training.
void train_model_next_logits(TrainModel *m, const int32_t *tokens, int64_t T, float *out);

void train_model_zero_grad(TrainModel *m);

// Parameters taking part in matrix products (for FLOP counts: 6 N + 12 L C T per token).
size_t train_model_matmul_params(const TrainModel *m);

// A GGUF writer holding the standard llama.* keys, the tokenizer (tok may be NULL) and every weight as F32
// (borrowed views: m must outlive the write). The caller adds lossy.* keys or extra tensors and writes it.
GGUFWriter *train_model_gguf_writer(const TrainModel *m, const Tokenizer *tok, const char *name, Err *e);

#endif
