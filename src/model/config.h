// config.h — ModelConfig: the architecture-independent hyper-parameters the forward pass consumes.
//
// lossy runs every supported architecture with one transformer implementation; what differs between Llama, Mistral,
// Qwen2 and GPT-2 is captured here as data (norm type, position scheme, MLP type, biases, tied embeddings, rope
// parameters). Each parameters-file reader fills a ModelConfig: model_config_from_gguf (GGUF metadata and tensor
// presence, here), hfconfig_load_dir (formats/hfconfig.h: config.json + generation_config.json) and
// llama2c_model_config (formats/llama2c.h). The tensor names the forward pass looks up are GGUF's
// (token_embd.weight, blk.N.attn_q.weight, ...); the readers of other formats map their names onto them.
//
// Anything a reader finds that this struct cannot express (an unknown architecture, an unsupported rope scaling
// type, sliding window on some layers only, ...) is an error naming the key and value, never silently ignored.
#ifndef LOSSY_MODEL_CONFIG_H
#define LOSSY_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/util.h"

struct GGUFFile;

typedef enum ModelArch {
    ARCH_LLAMA = 0, // Llama 1/2/3, Mistral (llama with an optional sliding window), llama2.c models
    ARCH_QWEN2,     // Llama layout with q/k/v biases, neox rope
    ARCH_GPT2,      // learned positions, LayerNorm with bias, GELU MLP, fused qkv
    ARCH_COUNT
} ModelArch;

typedef enum NormType {
    NORM_RMS = 0,   // x / sqrt(mean(x^2) + eps) * w
    NORM_LAYER,     // (x - mean) / sqrt(var + eps) * w + b
} NormType;

typedef enum PosType {
    POS_ROPE = 0,   // rotary embeddings on q and k (see rope_* fields)
    POS_LEARNED,    // absolute position embedding table added to the token embedding (position_embd.weight)
} PosType;

typedef enum MlpType {
    MLP_GATED = 0,  // down(act(gate(x)) * up(x)) — SwiGLU when act is SILU
    MLP_PLAIN,      // down(act(up(x)))          — GPT-2
} MlpType;

typedef enum ActType {
    ACT_SILU = 0,   // x * sigmoid(x)
    ACT_GELU_TANH,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (HF gelu_new / gelu_pytorch_tanh, GPT-2)
    ACT_GELU_ERF,   // 0.5 x (1 + erf(x / sqrt(2)))                      (HF "gelu")
    ACT_RELU,
} ActType;

typedef enum RopeStyle {
    ROPE_STYLE_NONE = 0,     // no rope (pos == POS_LEARNED)
    ROPE_STYLE_INTERLEAVED,  // rotate pairs (2i, 2i+1): llama2.c and GGUF llama (llama.cpp "norm"; its converter
                             // permutes HF q/k rows into this order)
    ROPE_STYLE_NEOX,         // rotate pairs (i, i + rope_dim/2): Hugging Face checkpoints as stored, GGUF qwen2
} RopeStyle;

typedef enum RopeScaling {
    ROPE_SCALING_NONE = 0,   // inv_freq[i] = theta^(-2i/rope_dim)
    ROPE_SCALING_LINEAR,     // positions divided by rope_factor (equivalently inv_freq / rope_factor)
    ROPE_SCALING_LLAMA3,     // Llama 3.1: per-frequency blend using rope_factor, rope_low_freq_factor,
                             // rope_high_freq_factor and rope_orig_ctx (wavelength thresholds orig_ctx/low, orig_ctx/high)
} RopeScaling;

#define MODEL_MAX_EOS 8

typedef struct ModelConfig {
    ModelArch arch;
    char arch_name[32];     // GGUF general.architecture spelling: "llama", "qwen2", "gpt2"
    char model_type[32];    // as the source named it: HF model_type ("mistral"), GGUF arch, "llama2.c"

    int64_t vocab_size;     // rows of token_embd.weight
    int64_t n_embd;         // model width (hidden_size / n_embd / dim)
    int64_t n_ff;           // MLP inner width (intermediate_size / n_inner / hidden_dim)
    int64_t n_layer;        // transformer blocks
    int64_t n_head;         // query heads
    int64_t n_head_kv;      // key/value heads (== n_head without grouped-query attention); n_head % n_head_kv == 0
    int64_t head_dim;       // per-head width of q, k and v; may differ from n_embd / n_head (explicit head_dim)
    int64_t n_ctx_train;    // context the model was trained for (max_position_embeddings / n_positions / seq_len);
                            // with POS_LEARNED this is the hard limit (rows of position_embd.weight)

    NormType norm;          // for every norm (pre-attention, pre-MLP, final)
    double norm_eps;        // rms_norm_eps / layer_norm_epsilon

    PosType pos;
    RopeStyle rope_style;   // NONE when pos != POS_ROPE
    int64_t rope_dim;       // leading dims of each head that rotate (even, <= head_dim; == head_dim usually)
    double rope_theta;      // base frequency (10000 for Llama 2, 500000 for Llama 3, 1e6 for Qwen2)
    RopeScaling rope_scaling;
    double rope_factor;             // LINEAR and LLAMA3; 1 when NONE
    double rope_low_freq_factor;    // LLAMA3 only
    double rope_high_freq_factor;   // LLAMA3 only
    int64_t rope_orig_ctx;          // LLAMA3: original_max_position_embeddings; 0 otherwise
    // GGUF files converted by llama.cpp store Llama 3.1 scaling as a tensor instead of keys: rope_freqs.weight,
    // rope_dim/2 f32 divisors applied to inv_freq (inv_freq[i] / rope_freqs[i]). true when that tensor is present;
    // rope_scaling then stays NONE.
    bool rope_freqs_tensor;

    MlpType mlp;
    ActType act;

    bool bias_qkv;          // q, k, v projections have biases (Qwen2, Llama attention_bias, GPT-2)
    bool bias_o;            // attention output projection has a bias (Llama attention_bias, GPT-2)
    bool bias_mlp;          // MLP projections have biases (Llama mlp_bias, GPT-2)
    bool bias_norm;         // norms have a bias (LayerNorm beta)
    bool tied_embeddings;   // the output projection is token_embd.weight (no output.weight tensor)
    int64_t sliding_window; // attention sees only the last sliding_window positions (Mistral v0.1); 0 = full

    int64_t bos_id;                 // -1 when unknown
    int64_t eos_ids[MODEL_MAX_EOS]; // generation stops on any of these
    int n_eos;
    int dtype;              // the weights' declared dtype (DType, from torch_dtype/dtype/file_type); -1 unknown
} ModelConfig;

// A config with every field at its "unset" value (arch LLAMA, counts 0, ids -1, dtype -1, rope_factor 1).
void model_config_init(ModelConfig *c);

// Check internal consistency (positive sizes, head counts dividing, rope_dim even and <= head_dim, finite eps and
// theta, a rope style iff rope positions). Every reader calls it last; `what` names the source for messages.
int model_config_validate(const ModelConfig *c, const char *what, Err *e);

// Fill c from GGUF metadata ("<arch>.context_length", "<arch>.embedding_length", "<arch>.block_count",
// "<arch>.feed_forward_length", "<arch>.attention.head_count(_kv)", "<arch>.attention.key_length",
// "<arch>.attention.layer_norm_rms_epsilon" / "layer_norm_epsilon", "<arch>.rope.freq_base",
// "<arch>.rope.dimension_count", "<arch>.rope.scaling.*", "<arch>.attention.sliding_window", "tokenizer.ggml.*" ids)
// and from which tensors exist (output.weight for untied embeddings, bias tensors, rope_freqs.weight). Supported
// architectures: llama, qwen2, gpt2.
int model_config_from_gguf(const struct GGUFFile *g, ModelConfig *c, Err *e);

const char *model_arch_name(ModelArch a);
const char *model_act_name(ActType a);
const char *model_rope_scaling_name(RopeScaling s);

// One line per field group, for `lossy info` and test failure messages.
void model_config_describe(const ModelConfig *c, Buf *out);

// Attention rotary inverse frequencies for the config: rope_dim/2 values, scaling applied (LINEAR, LLAMA3; not the
// GGUF rope_freqs tensor, which the caller divides by). Shared so that every backend computes them the same way.
void model_config_rope_inv_freq(const ModelConfig *c, double *inv_freq);

#endif
