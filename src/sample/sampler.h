// sampler.h — choose the next token from logits: greedy, or seeded random sampling with temperature, top-k, top-p,
// min-p, and repetition / presence / frequency penalties.
//
// Order of operations (fixed, so a seed reproduces a run): penalties on the raw logits → greedy if temperature <= 0
// → divide by temperature → softmax → keep the top-k → keep the smallest set whose mass reaches top-p → drop tokens
// below min-p × the best probability → renormalise and draw. Ties in greedy go to the lowest id (as argmax does in
// PyTorch and llama.cpp). The sampler owns its scratch buffers: no allocation per token.
#ifndef LOSSY_SAMPLER_H
#define LOSSY_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct SamplerParams {
    double temperature;       // <= 0: greedy
    int64_t top_k;            // <= 0: off
    double top_p;             // >= 1: off
    double min_p;             // <= 0: off
    double repeat_penalty;    // 1: off. llama.cpp/HF CTRL style: positive logits divided, negative multiplied
    double presence_penalty;  // 0: off. OpenAI style: subtract once per token present in the window
    double frequency_penalty; // 0: off. OpenAI style: subtract count × penalty
    int64_t penalty_last_n;   // how many recent tokens the penalties look at (0: off, -1: all)
    uint64_t seed;
} SamplerParams;

// Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off, seed 0 (callers pick a seed).
void sampler_params_default(SamplerParams *p);

typedef struct Sampler {
    SamplerParams p;
    int64_t n_vocab;
    uint64_t rng;      // xorshift64* state
    float *probs;      // (n_vocab) scratch
    int32_t *idx;      // (n_vocab) scratch: candidate ids
    uint32_t *counts;  // (n_vocab) scratch: token counts in the penalty window
} Sampler;

void sampler_init(Sampler *s, int64_t n_vocab, const SamplerParams *p);
void sampler_free(Sampler *s);
// Reset the random stream (e.g. per request) without reallocating.
void sampler_reseed(Sampler *s, uint64_t seed);
// Pick a token. logits (n_vocab) are modified in place (penalties, temperature). history: tokens so far (prompt and
// generated) for the penalties; may be NULL when n_hist is 0.
int32_t sampler_sample(Sampler *s, float *logits, const int32_t *history, size_t n_hist);
// Index of the largest value (lowest index on ties).
int32_t sampler_argmax(const float *x, int64_t n);
// Uniform double in [0, 1) from the sampler's stream.
double sampler_rand(Sampler *s);

#endif
