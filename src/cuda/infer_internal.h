// infer_internal.h — what infer_kernels.cu (the kernels) and infer_model.cu (upload, workspaces, the forward passes)
// share: the device weight layout and the launchers. C++ only; the C side sees infer.h.
//
// Device weight layout (GMat): one row-major matrix of `rows` rows whose length is padded with zeros to kp, a
// multiple of 32, so every row starts 16-byte aligned and the matvec reads it in 16-byte loads.
//   G_F32 / G_F16 / G_BF16: q holds the values, ld = kp * element size.
//   G_Q8: q holds int8 quants (ld = kp bytes), d the f16 block scales (rows, kp / 32) — GGML Q8_0 split into planes.
//   G_Q4: q holds the 16 nibble bytes of each block as GGML stores them (element j in the low nibble of byte j,
//         element j + 16 in the high one; value (nibble - 8) * d), ld = kp / 2; d as for G_Q8.
#ifndef LOSSY_CUDA_INFER_INTERNAL_H
#define LOSSY_CUDA_INFER_INTERNAL_H

#include "cuda/cuda_common.h"

enum GDt { G_F32 = 0, G_F16, G_BF16, G_Q8, G_Q4, G_NDT };

struct GMat {
    int dt;
    uint8_t *q;
    __half *d;       // block scales (G_Q8, G_Q4) or NULL
    int64_t rows, cols, kp;
    int64_t ld;      // bytes per row of q
};

// Prologue: what a matvec block puts in shared memory from its input rows before the products.
enum { PRO_COPY = 0, PRO_RMS, PRO_LAYER };
// Epilogue: what happens to each output value v (bias already added).
enum { EPI_STORE = 0, // y = v
       EPI_ADD,       // y += v (residual add into the stream)
       EPI_GLU,       // y = act(v_a) * v_b with a second matrix b (gate, up)
       EPI_ACT };     // y = act(v)

struct MvArgs {
    GMat a, b;              // b only for EPI_GLU (same dtype and shape as a)
    const float *x;         // (S, ldx) input rows, a.cols used
    int64_t ldx;
    int nstates;            // S
    int pro;
    const float *nw, *nb;   // norm weight / bias (C) for PRO_RMS, PRO_LAYER
    float eps;
    int epi, act;
    const float *bias_a, *bias_b; // or NULL
    float *y;               // (S, ldy)
    int64_t ldy;
};

// Decoding: one token per sequence; the per-step values live in device memory so a captured graph replays as is.
struct SeqDev {
    float *k, *v;     // (n_layer, Hkv, n_ctx, hd) f32
    int64_t n_ctx;
    int64_t pos;      // position of this step's token
    int32_t token;
    int32_t pad_;
};

struct AttnShape {
    int64_t n_layer, H, Hkv, hd, rope_dim, window;
    int rope;               // 0 none, 1 interleaved, 2 neox
    const double *inv_freq; // device (rope_dim / 2)
};

// Shared-memory bytes a matvec of a over ns states needs (the launcher splits the states to fit the device limit).
size_t mv_smem_bytes(int dt, int64_t kp, int ns);
// Allow every inference kernel up to `bytes` of dynamic shared memory (the device's opt-in limit; launches still
// ask only for what they use, so occupancy is unaffected). Once per device before the first launch.
int kernels_set_smem_limit(size_t bytes, Err *e);
// Launch the decoding kernels with programmatic dependent launch (Hopper and newer; a process-wide setting).
void kernels_set_pdl(int on);
// Split decode attention: a sequence of n_ctx positions attends in chunks of attn_chunk_keys(n_ctx) keys (a multiple
// of ATTN_MIN_CHUNK; at most ATTN_MAX_SPLIT chunks); a launch for sequences of up to max_ctx positions has
// attn_grid_splits(max_ctx) blocks per (KV head, state). Partials take attn_partial_floats(H, hd) floats per state.
#define ATTN_MIN_CHUNK 32 // one key tile: a chunk per block, several blocks per SM at typical contexts
#define ATTN_MAX_SPLIT 64
static inline __host__ __device__ int64_t attn_chunk_keys(int64_t n_ctx) {
    const int64_t per = (n_ctx + ATTN_MAX_SPLIT - 1) / ATTN_MAX_SPLIT;
    return (per + ATTN_MIN_CHUNK - 1) / ATTN_MIN_CHUNK * ATTN_MIN_CHUNK;
}
int64_t attn_grid_splits(int64_t max_ctx);
size_t attn_partial_floats(int64_t H, int64_t hd);
// Dynamic shared memory of the decode attention (G query heads per KV head), and of the tiled prompt attention.
size_t attn_decode_smem_bytes(int64_t hd, int64_t G);
size_t attn_prompt_smem_bytes(int64_t hd);
#define ATTN_MAX_HD 256 // the attention kernels keep hd / 32 accumulators per lane
// y = epilogue(W prologue(x)) for up to any number of states (split into groups of at most 8 that fit smem_max).
int mv_launch(const MvArgs &a, size_t smem_max, int n_sm, cudaStream_t st, Err *e);

// x[s] = tok_embd[token] (+ pos_embd[pos]) for s < S; tokens and positions read from seq (decode) or arrays.
int embed_launch(const GMat &tok, const GMat *pos_tab, const SeqDev *seq, const int32_t *tokens, const int64_t *pos,
                 int64_t S, float *x, int64_t C, cudaStream_t st, Err *e);
// Decoding: cos and sin of each state's rope angles at its position, cs (S, rope_dim / 2), for every layer's
// attention (nothing to do without rope).
int rope_table_launch(const AttnShape &sh, const SeqDev *seq, int64_t S, float2 *cs, cudaStream_t st, Err *e);
// Decode attention for layer l: rope q and k of each state's current token, store k, v in its cache, attend.
// max_ctx: the largest n_ctx of the S sequences (sizes the grid); part (S, attn_partial_floats) scratch; cnt (S, Hkv)
// counters, zero before the first launch (each launch leaves them zero).
int attn_decode_launch(const AttnShape &sh, int64_t layer, const SeqDev *seq, const float2 *rope_cs, int64_t S, const float *qkv,
                       float *out, float *part, int *cnt, int64_t max_ctx, cudaStream_t st, Err *e);
// Prompt attention through GEMMs: S (rows, ld) holds scaled scores of nq queries (tq0.. of the chunk at pos0) against
// keys 0 .. nk-1, row r being query r % nq of some head; each row becomes its masked softmax (zeros elsewhere).
int attn_softmax_launch(float *S, int64_t ld, int64_t rows, int64_t nq, int64_t tq0, int64_t pos0, int64_t nk, int64_t window,
                        cudaStream_t st, Err *e);
// Prompt: rope q and k of T tokens in place (qkv (T, QKV)) and store k, v at positions pos0.. of the cache.
int rope_store_launch(const AttnShape &sh, int64_t layer, float *kc, float *vc, int64_t n_ctx, int64_t pos0, int64_t T,
                      float *qkv, cudaStream_t st, Err *e);
// Prompt: causal attention of T queries at positions pos0.. over the cache (keys 0 .. pos0+T-1).
int attn_prompt_launch(const AttnShape &sh, int64_t layer, const float *kc, const float *vc, int64_t n_ctx, int64_t pos0,
                       int64_t T, const float *qkv, float *out, cudaStream_t st, Err *e);
// Row-wise norm of T rows (C) into out.
int norm_rows_launch(int pro, const float *x, const float *w, const float *b, float eps, int64_t T, int64_t C, float *out,
                     cudaStream_t st, Err *e);
// y[t][i] += bias[i] over (T, n) with row stride ld.
int add_bias_launch(float *y, int64_t ld, const float *bias, int64_t T, int64_t n, cudaStream_t st, Err *e);
// hb = act(hb + bg) * (hb2 + bu) (gated) or hb = act(hb2 + bu) (plain), (T, F) contiguous.
int mlp_middle_launch(int gated, int act, float *hb, const float *hb2, const float *bg, const float *bu, int64_t T,
                      int64_t F, cudaStream_t st, Err *e);
// f32 (T, K) rows (stride ldx) to f16 or bf16 (T, ldo).
int to_half_launch(int bf16, const float *x, int64_t ldx, int64_t T, int64_t K, void *out, int64_t ldo, cudaStream_t st,
                   Err *e);
// A Q8 / Q4 matrix dequantized to f16 (rows, kp).
int dequant_f16_launch(const GMat &w, __half *out, cudaStream_t st, Err *e);

#endif
