// embedding.h — token embedding lookup (plus learned position embeddings) forward, and its scatter-add backward.
//
// out[n] = wte[tokens[n]] (+ wpe[pos[n]] when a position table is given: GPT-2). The tables are f32 here; models
// whose embedding is stored in another dtype dequantize the needed rows themselves (one row per token) and can
// then call embedding_add_positions. Token ids and positions must already be validated against the table sizes
// (the tokenizer and the model's context check do it); the kernels index without checking.
#ifndef LOSSY_KERNELS_EMBEDDING_H
#define LOSSY_KERNELS_EMBEDDING_H

#include <stdint.h>

void embedding_forward(float *out,            // (N, C)
                       const int32_t *tokens, // (N) ids in [0, vocab)
                       const int64_t *pos,    // (N) positions in [0, n_pos), or NULL when wpe is NULL
                       const float *wte,      // (vocab, C)
                       const float *wpe,      // (n_pos, C) or NULL
                       int64_t N, int64_t C);

// out[n] += wpe[pos[n]]: learned positions on top of rows produced elsewhere.
void embedding_add_positions(float *out,         // (N, C)
                             const int64_t *pos, // (N)
                             const float *wpe,   // (n_pos, C)
                             int64_t N, int64_t C);

// dwte[tokens[n]] += dout[n]; dwpe[pos[n]] += dout[n]. Either gradient may be NULL.
void embedding_backward(float *dwte,           // (vocab, C) +=
                        float *dwpe,           // (n_pos, C) +=, or NULL
                        const float *dout,     // (N, C)
                        const int32_t *tokens, // (N)
                        const int64_t *pos,    // (N) or NULL when dwpe is NULL
                        int64_t N, int64_t C);

#endif
