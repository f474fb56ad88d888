// attn_decode.h — inference attention over a KV cache whose keys are stored transposed, for one KV head and the
// G query heads that share it (grouped-query attention).
//
// Cache layout per KV head (the model's): keys Kt (head_dim, ldk) — row d holds dimension d of every position —
// and values V (positions, head_dim). With keys transposed, the scores of a new token are sum_d q[d] * Kt[d][:], a
// vector multiply-add over positions with no horizontal sums; the weighted sum of values is a vector multiply-add over
// dimensions. Heads of a group run one after another, so the group's keys and values are read from memory once and
// then from cache. A prompt chunk's block of queries uses the packed
// GEMM (matmul.h) for Q Kt and P V, whose strides read both layouts in place.
//
// Scores are scaled by 1/sqrt(head_dim); a query at position t sees positions lo(t) .. t, lo(t) = 0 or, with a
// sliding window w > 0, max(0, t - w + 1) (attention.h's convention). Softmax in float with exp from fastmath.h.
// AVX-512 (runtime dispatch) or portable loops; results do not depend on which thread runs a head or on the others.
#ifndef LOSSY_KERNELS_ATTN_DECODE_H
#define LOSSY_KERNELS_ATTN_DECODE_H

#include <stdint.h>

// Floats of scratch attn_decode_group needs for G heads and n_keys positions.
int64_t attn_decode_scratch_size(int64_t G, int64_t n_keys);

// One new token at position pos (its key and value already in the cache).
void attn_decode_group(float *out,       // (G, head_dim)
                       const float *q,   // (G, head_dim), rope applied
                       const float *kt,  // (head_dim, ldk): positions 0 .. pos valid in every row
                       int64_t ldk,
                       const float *v,   // (>= pos + 1, head_dim)
                       int64_t pos, int64_t G, int64_t head_dim, int64_t window,
                       float *scratch);  // attn_decode_scratch_size(G, pos + 1) floats

// Floats of scratch attn_chunk_group needs for blocks of up to rows queries and n_keys positions.
int64_t attn_chunk_scratch_size(int64_t rows, int64_t n_keys);

// rows consecutive queries at positions pos0 .. pos0 + rows - 1 (their keys and values already in the cache).
void attn_chunk_group(float *out, int64_t ldo, // row r, head g at out + r * ldo + g * head_dim
                      const float *q, int64_t ldq, // the same layout
                      const float *kt, int64_t ldk, const float *v, int64_t pos0, int64_t rows, int64_t G,
                      int64_t head_dim, int64_t window,
                      float *scratch);     // attn_chunk_scratch_size(rows, pos0 + rows) floats

#endif
