// infer.h — the C interface of lossy's CUDA inference (src/cuda/infer_*.cu): upload a bound model's weights to the
// GPU, per-sequence KV caches there, and the forward passes src/model/model.c hands over to when a model runs with
// `--device cuda` (through src/model/model_device.c, which turns a Model into the plain CudaModelDesc below, so no
// .cu file includes the C model headers).
//
// The GPU pass mirrors model.c op by op (see infer_model.cu): decoding runs fused kernels captured in one CUDA graph
// per batch size (with programmatic dependent launch on Hopper); prompts run in chunks through cuBLASLt GEMMs, their
// attention through cuBLAS batched GEMMs. Weights keep their dtype (F32, F16, BF16, Q8_0,
// Q4_0; any other GGML type is dequantized to F16 at upload). KV caches are f32 for every weight dtype, so F32 models
// agree with the CPU to float rounding (relative L2 of logits <= 1e-5).
#ifndef LOSSY_CUDA_INFER_H
#define LOSSY_CUDA_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#ifdef __cplusplus
extern "C" {
#endif

// A matrix used as y (rows) = W x (cols), stored row-major in the GGML dtype `dtype`; data NULL when absent.
typedef struct CudaMat {
    int dtype;
    const void *data;
    int64_t rows, cols;
    size_t nbytes;
    const char *name;
} CudaMat;

typedef struct CudaLayerDesc {
    const float *attn_norm, *attn_norm_b;  // (C)
    CudaMat wq, wk, wv, wqkv, wo;          // wqkv (GPT-2) instead of wq/wk/wv
    const float *bq, *bk, *bv, *bqkv, *bo; // or NULL
    const float *ffn_norm, *ffn_norm_b;    // (C)
    CudaMat w_gate, w_up, w_down;          // w_gate absent for a plain MLP
    const float *b_gate, *b_up, *b_down;
} CudaLayerDesc;

typedef struct CudaModelDesc {
    int64_t vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, n_ctx_train;
    int norm_layer;          // 0 RMSNorm, 1 LayerNorm (config.h NormType)
    double norm_eps;
    int rope;                // 0 none (learned positions), 1 interleaved pairs, 2 neox halves
    int64_t rope_dim;
    const double *inv_freq;  // (rope_dim / 2), scaling applied
    int mlp_gated;           // 1: down(act(gate x) * up x); 0: down(act(up x))
    int act;                 // config.h ActType
    int64_t sliding_window;  // 0 = full attention
    CudaMat tok_embd, pos_embd, output; // pos_embd absent unless learned positions; output may equal tok_embd
    const float *output_norm, *output_norm_b;
    const CudaLayerDesc *layers; // (n_layer)
    // Dequantize n values of GGML type dtype (used at upload for dtypes the GPU kernels do not read directly).
    int (*dequantize_row)(int dtype, const void *src, float *dst, int64_t n, Err *e);
} CudaModelDesc;

typedef struct CudaModel CudaModel; // weights, workspaces and decode graphs on one device
typedef struct CudaSeq CudaSeq;     // one sequence's KV cache

int cuda_model_create(const CudaModelDesc *d, CudaModel **out, Err *e);
void cuda_model_destroy(CudaModel *g);
size_t cuda_model_weight_bytes(const CudaModel *g); // device bytes of the uploaded weights
const char *cuda_model_device_name(const CudaModel *g);
// Whether decoding launches its kernels with programmatic dependent launch (Hopper+, LOSSY_CUDA_PDL unset or 1; turned
// off for good if the driver refuses it).
int cuda_model_uses_pdl(const CudaModel *g);

int cuda_seq_create(CudaModel *g, int64_t n_ctx, CudaSeq **out, Err *e);
void cuda_seq_destroy(CudaSeq *s);

// Tokens tokens[0..n) at positions pos .. pos+n-1 of s (its cache holds positions < pos). logits_last (V) receives
// the last token's next-token logits; logits_all (n, V), when not NULL, every token's.
int cuda_model_forward(CudaModel *g, CudaSeq *s, int64_t pos, const int32_t *tokens, int64_t n, float *logits_last,
                       float *logits_all, Err *e);
// One decoding step for n distinct sequences: seqs[i] takes tokens[i] at position pos[i]; logits[i] (V) receives its
// next-token logits. Each sequence's result equals cuda_model_forward of that token alone on it.
int cuda_model_step_batch(CudaModel *g, CudaSeq *const *seqs, const int64_t *pos, const int32_t *tokens, int64_t n,
                          float *const *logits, Err *e);

// LOSSY_CUDA_PROFILE=1 (read at cuda_model_create): every launch is timed with a CUDA event pair (graphs and
// programmatic dependent launch off) and summed per kind of kernel, separately for prompt processing and decoding.
// profiling: whether it is on; reset: forget what was summed so far; report: the two tables as text into buf (at most
// len bytes, NUL-terminated; returns the length it needed, 0 when profiling is off or nothing ran).
int cuda_model_profiling(const CudaModel *g);
void cuda_model_profile_reset(CudaModel *g);
size_t cuda_model_profile_report(const CudaModel *g, char *buf, size_t len);

// Test hook for the split decode attention (tests/unit/test_gpu_infer.c): one step of nseq sequences launched together
// on the current device. Sequence i has caches k[i], v[i] (Hkv, n_ctx[i], hd) holding positions < pos[i] (on return,
// position pos[i] holds its roped key and value), its row of qkv (nseq, (H + 2 Hkv) hd) (q heads, k heads, v heads,
// before rope), and receives out (nseq, H hd). rope: 0 none, 1 interleaved pairs, 2 neox halves, over the first
// rope_dim values with frequencies inv_freq (rope_dim / 2); window 0 = full attention.
int cuda_attn_decode_run(int64_t H, int64_t Hkv, int64_t hd, int rope, int64_t rope_dim, const double *inv_freq, int64_t window,
                         int64_t nseq, const int64_t *n_ctx, const int64_t *pos, float *const *k, float *const *v,
                         const float *qkv, float *out, Err *e);

// Elapsed device time between two points of g's stream (CUDA events): start, run forwards, stop.
int cuda_model_timer_start(CudaModel *g, Err *e);
int cuda_model_timer_stop(CudaModel *g, double *seconds, Err *e);

// Device limits for `lossy bench --device cuda`: device-to-device copy bandwidth over `bytes` (GB/s counting bytes
// read + written, best of several copies after a warm-up), and the cuBLASLt bf16 GEMM rate at n x n x n (GFLOP/s,
// bf16 inputs and output, fp32 accumulation, median of several runs after a warm-up).
int cuda_measure_copy_bandwidth(size_t bytes, double *gb_s, Err *e);
int cuda_measure_gemm_bf16(int64_t n, double *gflop_s, Err *e);

#ifdef __cplusplus
}
#endif

#endif
