// convert.h — write a loaded model as a GGUF file llama.cpp loads: standard llama.* / qwen2.* / gpt2.* keys, the
// tokenizer in tokenizer.ggml.* keys, the chat template, and every weight in the requested dtype.
#ifndef LOSSY_CONVERT_H
#define LOSSY_CONVERT_H

#include "base/dtype.h"
#include "base/err.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct ConvertOpts {
    DType dtype;              // matrices: F32, F16, BF16, Q8_0 or Q4_0 (rows that do not fit the blocks fall back)
    const char *name;         // general.name (NULL: keep the source's, or none)
    const char *chat_template;// tokenizer.chat_template (NULL: keep the source's, or none)
} ConvertOpts;

// tok may be NULL: the file then has no vocabulary (lossy runs it with --ids; llama.cpp needs one).
int model_write_gguf(const Model *m, const Tokenizer *tok, const char *path, const ConvertOpts *o, Err *e);

// The permutation llama.cpp's converter applies to Hugging Face q/k rows for the llama architecture: per head, rows
// (i, i + hd/2) of the half-split (neox) rope layout become rows (2i, 2i + 1) of the interleaved layout.
// src and dst are (n_head * hd) rows of row_bytes bytes; hd must be even.
void convert_permute_qk_rows(void *dst, const void *src, int64_t n_head, int64_t hd, size_t row_bytes);

#endif
