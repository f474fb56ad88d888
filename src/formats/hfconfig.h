// hfconfig.h — Hugging Face config.json (+ generation_config.json) → ModelConfig.
//
// Supported model_type values: llama, mistral, qwen2 (Llama layout, RMSNorm, SwiGLU, rope) and gpt2 (LayerNorm,
// learned positions, GELU). Both rope styles of config.json are read: the older top-level `rope_theta` +
// `rope_scaling` {"type" | "rope_type": "linear" | "llama3", ...} and the newer `rope_parameters` {"rope_theta",
// "rope_type", ...} (transformers 5). Missing keys take the defaults transformers uses for that model_type.
// Anything lossy does not implement — another model_type, a rope type such as "dynamic" or "yarn", sliding window on
// only some layers, GPT-2 attention scaling variants — fails with an Err naming the key and its value.
//
// Note for weight loading: the rope style is ROPE_STYLE_NEOX because HF checkpoints store q/k rows in the
// half-split order (transformers' rotate_half); GPT-2's c_attn/c_fc/c_proj weights are Conv1D, i.e. (in, out).
#ifndef LOSSY_HFCONFIG_H
#define LOSSY_HFCONFIG_H

#include <stddef.h>

#include "base/err.h"
#include "model/config.h"

// Parse config.json text (and generation_config.json text, or NULL/0 when there is none) into c.
// label names the source in messages (e.g. the directory).
int hfconfig_parse(const char *config_json, size_t config_len, const char *gen_json, size_t gen_len,
                   const char *label, ModelConfig *c, Err *e);

// Read DIR/config.json and, when present, DIR/generation_config.json.
int hfconfig_load_dir(const char *dir, ModelConfig *c, Err *e);

#endif
