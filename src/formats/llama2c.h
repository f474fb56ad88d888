// llama2c.h — reader for llama2.c checkpoints (`.bin` written by karpathy/llama2.c export.py), mmap, zero copy.
//
// Three layouts, all little-endian:
// - legacy (version 0): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), a negative
//   vocab_size meaning "separate classifier"; then f32 tensors grouped by kind across layers: token embedding,
//   attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, final norm, two obsolete rope tables
//   (seq_len × head_size/2 each, skipped), and the classifier when not shared.
// - version 1: 256-byte header (u32 magic 0x616b3432 "ak42", int32 version, the 7 params, u8 shared_classifier, zero
//   padding); f32 tensors: attention norms, ffn norms, final norm, token embedding, wq, wk, wv, wo, w1, w2, w3,
//   [classifier].
// - version 2: as version 1 plus int32 group_size after the flag byte; the norms in f32, then every matrix as int8
//   values followed by one f32 scale per group_size consecutive values (symmetric: x = q × scale), same order.
// The file size must match the header's dimensions exactly (a legacy header has no magic; its size is the check).
//
// Tensors are presented under GGUF names and shapes (ne[0] contiguous), as llama.cpp's converter names them:
// token_embd.weight, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate (w1), ffn_down (w2),
// ffn_up (w3)}.weight, output_norm.weight, output.weight (absent when the classifier is shared). llama2.c applies
// rope to interleaved pairs, which is also GGUF llama's order: no permutation is involved.
#ifndef LOSSY_LLAMA2C_H
#define LOSSY_LLAMA2C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/err.h"
#include "base/util.h"
#include "model/config.h"

#define LLAMA2C_MAGIC 0x616b3432u
#define LLAMA2C_HEADER_V 256 // header bytes of versions 1 and 2

typedef struct L2CTensor {
    char name[40];          // GGUF-style name
    uint32_t type;          // DT_F32, or DT_I8 for version-2 quantized matrices (see scales)
    uint32_t n_dims;        // 1 (norms) or 2
    int64_t ne[2];          // GGML order: ne[0] is the contiguous (input) dimension; ne[1] = 1 for vectors
    uint64_t n_elements;
    const void *data;       // into the map (f32 data is 4-byte aligned; int8 any)
    size_t nbytes;          // of data (not counting scales)
    size_t offset;          // byte offset of data in the file
    // Version 2 int8 tensors: n_elements / group_size little-endian f32 scales right after the data; element i is
    // int8[i] * scale[i / group_size]. May be unaligned: read with memcpy (or use llama2c_dequantize). NULL otherwise.
    const void *scales;
} L2CTensor;

typedef struct Llama2cFile {
    FileMap map;            // owned when opened from a path
    const uint8_t *base;
    size_t size;
    char *name;             // path or label, for messages
    int version;            // 0 (legacy), 1 or 2
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; // vocab_size made positive
    bool shared_classifier; // output projection = token embedding
    int32_t group_size;     // version 2; 0 otherwise
    size_t n_tensors;
    L2CTensor *tensors;     // in file order
} Llama2cFile;

int llama2c_open(Llama2cFile *f, const char *path, Err *e);
// Parse from memory (the bytes must outlive f). Used by llama2c_open, tests and fuzzing.
int llama2c_parse(Llama2cFile *f, const uint8_t *data, size_t size, const char *name, Err *e);
void llama2c_close(Llama2cFile *f);

const L2CTensor *llama2c_find(const Llama2cFile *f, const char *name);

// The hyper-parameters llama2.c's run.c uses: Llama architecture, RMSNorm eps 1e-5, rope theta 10000 on interleaved
// pairs over the whole head, SwiGLU, no biases; bos 1; generation stops on eos 2 and, as run.c does, on bos 1
// (llama2.c models end a story by starting the next one).
int llama2c_model_config(const Llama2cFile *f, ModelConfig *c, Err *e);

// Write t's values as f32 (out holds t->n_elements floats): a copy for f32 tensors, q × scale for int8 ones.
void llama2c_dequantize(const Llama2cFile *f, const L2CTensor *t, float *out);

#endif
