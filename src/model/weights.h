// weights.h — the model's tensors, whatever file they came from, under GGUF's tensor names.
//
// Each parameters-file format is turned into one WeightTable: GGUF files as they are (zero copy), Hugging Face
// safetensors through a name mapping (model.layers.N.self_attn.q_proj.weight → blk.N.attn_q.weight; GPT-2's
// Conv1D (in, out) matrices are transposed into (out, in) rows, the only case that copies), llama2.c checkpoints
// through formats/llama2c.h. The model binds its weights by these names and checks every shape against its
// ModelConfig, so a wrong file is an error naming the tensor (as the user's file calls it too), never silent garbage.
#ifndef LOSSY_WEIGHTS_H
#define LOSSY_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/err.h"

// A read-only view of one weight tensor. ne in GGML order: ne[0] is the row length (contiguous), ne[1] the number
// of rows; a matrix used as y = W x has ne[0] = in, ne[1] = out.
typedef struct Tensor {
    const char *name;
    const char *src_name; // the name in the user's file where that differs (Hugging Face), else NULL; for errors
    uint32_t type;   // DType
    uint32_t n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} Tensor;

static inline int64_t tensor_rows(const Tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

typedef struct WeightTable {
    Tensor *t;
    size_t n, cap;
    void **owned;   // buffers owned by the table (transposed copies, converted data)
    size_t n_owned;
} WeightTable;

void weights_init(WeightTable *w);
void weights_free(WeightTable *w);
// Add a view (name copied). Duplicate names are an error.
int weights_add(WeightTable *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne, const void *data,
                size_t nbytes, Err *e);
// Hand a malloc'ed buffer to the table (freed by weights_free).
void weights_own(WeightTable *w, void *buf);
const Tensor *weights_find(const WeightTable *w, const char *name);

struct GGUFFile;
struct SafeTensors;
// Every tensor of a GGUF file, zero copy (the file must stay open while the table is used).
int weights_from_gguf(WeightTable *w, const struct GGUFFile *g, Err *e);
// Hugging Face tensors renamed to GGUF names. gpt2 selects GPT-2's naming and Conv1D transposes. Tensors that are
// not weights (rotary inv_freq buffers, GPT-2's attention masks) are skipped; any other unknown name is an error.
int weights_from_safetensors(WeightTable *w, const struct SafeTensors *st, int gpt2, Err *e);
// Map one Hugging Face tensor name to its GGUF name; returns 1 mapped (out filled, *transpose set), 0 skip (not a
// weight), -1 unknown.
int weights_map_hf_name(const char *hf, int gpt2, char *out, size_t out_len, int *transpose);
// The reverse, for an error about a tensor the file lacks: the Hugging Face name the GGUF-named one would have come
// from (GPT-2's q/k/v: the fused c_attn; "transformer." in front when w's GPT-2 names have it). Returns 1 with out
// filled, 0 when no Hugging Face tensor maps to gguf.
int weights_hf_name_of(const WeightTable *w, const char *gguf, int gpt2, char *out, size_t out_len);
// How an error names a tensor: "'src' (name)" when the user's file calls it src, else "'name'" (GGUF files).
const char *weights_label(const char *name, const char *src, char *buf, size_t buf_len);

#endif
