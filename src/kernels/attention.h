// attention.h — causal multi-head attention with grouped-query attention: batched training forward/backward, and
// the inference forward over a KV cache.
//
// Query head h reads key/value head h / (n_head / n_kv_head) (n_kv_head divides n_head), as Hugging Face's repeat_kv
// and llama.cpp do. Scores are scaled by 1/sqrt(head_dim). A token at position t sees keys at positions s <= t, and
// with window > 0 only those with t - s < window (Mistral's sliding window, as transformers masks it); window = 0
// means the full causal context.
//
// Training: attention_forward stores the softmax probabilities att (B, n_head, T, T) — row t's entries s <= t are
// written (0 outside a window); entries s > t are unspecified — and attention_backward reads them instead of
// recomputing the scores. Queries are processed in blocks of rows through the packed GEMM (matmul.h).
// Inference: attention_forward_cached takes the queries of n_tok new tokens at positions pos0 .. pos0+n_tok-1 and the
// layer's KV cache, whose rows 0 .. pos0+n_tok-1 must already hold those tokens' keys and values. A few tokens go
// one query at a time (dot products); a prompt chunk goes through the same blocked GEMM path as training. The two
// agree to float rounding (about 1e-7 relative), not bit for bit.
//
// Threading: the work is a loop over independent jobs — (batch, head) pairs b * n_head + h in the forward, and
// (batch, kv head) groups b * n_kv_head + kvh in the backward (a group owns its dk/dv rows). The *_range variants
// run jobs [job0, job1) only, so a thread pool splits them without locks (each call allocates its own scratch).
#ifndef LOSSY_KERNELS_ATTENTION_H
#define LOSSY_KERNELS_ATTENTION_H

#include <stdint.h>

// att may be NULL when no backward follows (a (64, T) scratch block is used instead).
void attention_forward(float *out,     // (B, T, n_head, head_dim)
                       float *att,     // (B, n_head, T, T) or NULL
                       const float *q, // (B, T, n_head, head_dim), rope already applied
                       const float *k, // (B, T, n_kv_head, head_dim), rope already applied
                       const float *v, // (B, T, n_kv_head, head_dim)
                       int64_t B, int64_t T, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window);

// Jobs [job0, job1) of attention_forward, out of B * n_head.
void attention_forward_range(float *out, float *att, const float *q, const float *k, const float *v, int64_t B,
                             int64_t T, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window,
                             int64_t job0, int64_t job1);

// Accumulates (+=) into dq, dk and dv; any of them may be NULL to skip it.
void attention_backward(float *dq,         // (B, T, n_head, head_dim) +=
                        float *dk,         // (B, T, n_kv_head, head_dim) +=
                        float *dv,         // (B, T, n_kv_head, head_dim) +=
                        const float *dout, // (B, T, n_head, head_dim)
                        const float *q,    // (B, T, n_head, head_dim) as given to the forward
                        const float *k,    // (B, T, n_kv_head, head_dim)
                        const float *v,    // (B, T, n_kv_head, head_dim)
                        const float *att,  // (B, n_head, T, T) from attention_forward
                        int64_t B, int64_t T, int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t window);

// Jobs [job0, job1) of attention_backward, out of B * n_kv_head.
void attention_backward_range(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                              const float *v, const float *att, int64_t B, int64_t T, int64_t n_head,
                              int64_t n_kv_head, int64_t head_dim, int64_t window, int64_t job0, int64_t job1);

// Floats of scratch attention_forward_cached needs: min(n_tok, 64) * (pos0 + n_tok).
int64_t attention_cached_scratch_size(int64_t n_tok, int64_t pos0, int64_t n_head);

// scratch may be NULL (allocated and freed inside; pass one to avoid a malloc per layer per token).
void attention_forward_cached(float *out,           // (n_tok, n_head, head_dim)
                              const float *q,       // (n_tok, n_head, head_dim), rope applied at pos0 + i
                              const float *k_cache, // (n_ctx, n_kv_head, head_dim), rows 0 .. pos0+n_tok-1 valid
                              const float *v_cache, // (n_ctx, n_kv_head, head_dim)
                              int64_t n_tok, int64_t pos0, int64_t n_head, int64_t n_kv_head, int64_t head_dim,
                              int64_t window,
                              float *scratch);      // attention_cached_scratch_size floats, or NULL

#endif
