// convert.h — write a loaded model as a GGUF file llama.cpp loads: standard llama.* / qwen2.* / gpt2.* keys, the
// tokenizer in tokenizer.ggml.* keys, the chat template, and every weight in the requested dtype.
//
// The same writer serves `lossy convert` (one dtype for every matrix) and `lossy quantize` (llama.cpp's per-tensor
// rules: the output matrix at Q6_K, and for the _M mixes attn_v / ffn_down at Q6_K in the layers llama.cpp's
// use_more_bits picks — the first and last eighth and every third layer between). Rows are converted in parallel
// when a thread pool is given; every row is quantized on its own, so the file does not depend on the thread count.
#ifndef LOSSY_CONVERT_H
#define LOSSY_CONVERT_H

#include "base/dtype.h"
#include "base/err.h"
#include "base/threadpool.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef enum ConvertMix {
    CONVERT_MIX_NONE = 0, // every matrix in dtype (convert)
    CONVERT_MIX_PLAIN,    // dtype, the output matrix (or tied embedding) at Q6_K unless dtype is Q8_0 (quantize q4_0, q4_k, ...)
    CONVERT_MIX_M,        // as PLAIN, and llama.cpp's _M choices: attn_v and ffn_down at Q6_K in use_more_bits layers,
                          // fused attn_qkv one step up (q4_k_m: dtype Q4_K; q5_k_m: dtype Q5_K)
} ConvertMix;

typedef struct ConvertOpts {
    DType dtype;              // matrices: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K (rows that do not fit the
                              // blocks fall back as llama.cpp does, to Q8_0 or F16 here)
    ConvertMix mix;
    const char *name;         // general.name (NULL: keep the source's, or none)
    const char *chat_template;// tokenizer.chat_template (NULL: keep the source's, or none)
    ThreadPool *pool;         // rows converted in parallel (NULL: one thread)
    // Called once per tensor after its type is chosen (may be NULL): progress and per-tensor reports.
    void (*on_tensor)(void *ctx, const char *name, DType from, DType to, size_t bytes);
    void *ctx;
} ConvertOpts;

// The dtype model_write_gguf writes tensor t in, under o's rules.
DType convert_tensor_type(const Model *m, const Tensor *t, const ConvertOpts *o);

// tok may be NULL: the file then has no vocabulary, marked as llama.cpp reads it (tokenizer.ggml.model = "no_vocab",
// <arch>.vocab_size); lossy and llama.cpp run it on token ids. A GGUF source keeps its own tokenizer keys; one without
// a vocabulary takes tok's (or the marker). llama.cpp's gpt2 needs output.weight, so a tied GPT-2 gets the embedding
// a second time under that name.
int model_write_gguf(const Model *m, const Tokenizer *tok, const char *path, const ConvertOpts *o, Err *e);

// The permutation llama.cpp's converter applies to Hugging Face q/k rows for the llama architecture: per head, rows
// (i, i + hd/2) of the half-split (neox) rope layout become rows (2i, 2i + 1) of the interleaved layout.
// src and dst are (n_head * hd) rows of row_bytes bytes; hd must be even.
void convert_permute_qk_rows(void *dst, const void *src, int64_t n_head, int64_t hd, size_t row_bytes);

#endif
