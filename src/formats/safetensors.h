// safetensors.h — Hugging Face safetensors reader (mmap, zero copy), single files and sharded directories.
//
// File layout: u64 little-endian header length N, N bytes of JSON (an object: tensor name → {"dtype", "shape",
// "data_offsets": [begin, end]}, plus an optional "__metadata__" object of string → string), then the data buffer.
// Offsets are relative to the start of the data buffer (byte 8 + N). Shapes are row-major as PyTorch writes them:
// shape[0] is the outermost dimension and shape[ndim-1] the contiguous one (the reverse of GGUF's ne[] order).
//
// Everything is validated before it is trusted: header length against the file size and a 100 MB cap, JSON
// syntax and value types, dtype names, duplicate names, shape products (overflow-checked), offsets inside the data
// buffer and equal to dtype size × element count, and no two tensors overlapping. Gaps between tensors are allowed.
//
// A sharded model is a directory with `model.safetensors.index.json` ({"weight_map": {name: shard file}}); st_open_dir
// opens every shard it names and presents one tensor table. Tensor data points straight into the shard's mapping:
// it is NOT necessarily aligned to the element size (the format does not promise alignment), so readers that need
// aligned loads must check or copy.
#ifndef LOSSY_SAFETENSORS_H
#define LOSSY_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/err.h"
#include "base/util.h"

#define ST_MAX_DIMS 8
// The safetensors reference implementation refuses headers above 100 MB; so does lossy.
#define ST_MAX_HEADER (100u * 1000u * 1000u)

typedef enum STDType {
    ST_BOOL, ST_U8, ST_I8, ST_U16, ST_I16, ST_U32, ST_I32, ST_U64, ST_I64,
    ST_F16, ST_BF16, ST_F32, ST_F64, ST_F8_E4M3, ST_F8_E5M2,
    ST_DTYPE_COUNT
} STDType;

typedef struct STTensor {
    const char *name;          // NUL-terminated, owned by the SafeTensors
    STDType st_dtype;          // as written in the file
    int dtype;                 // the matching DType (DT_F32, DT_F16, DT_BF16, DT_F64, DT_I8..DT_I64), or -1 if none
    uint32_t ndim;             // 0 for a scalar
    int64_t shape[ST_MAX_DIMS]; // row-major: shape[ndim-1] is contiguous; unused entries are 0
    uint64_t n_elements;       // product of shape (1 for a scalar)
    const void *data;          // into the shard's mapping; may be unaligned
    size_t nbytes;
    size_t offset;             // byte offset of data inside its file (for messages)
    size_t shard;              // index into SafeTensors.shard_paths
} STTensor;

typedef struct SafeTensors {
    size_t n_shards;
    FileMap *maps;             // n_shards mappings (unused when parsed from memory)
    char **shard_paths;        // n_shards paths (or the label given to st_parse)
    size_t n_tensors;
    STTensor *tensors;         // in file order within each shard, shards in index order
    size_t n_meta;             // "__metadata__" entries of all shards (first occurrence of a key wins)
    char **meta_keys;
    char **meta_values;
    // open-addressing name index (internal)
    size_t *slots;
    size_t n_slots;
} SafeTensors;

// Parse one safetensors image held in memory (the bytes must outlive st). Used by st_open, tests and the fuzzer.
int st_parse(SafeTensors *st, const uint8_t *data, size_t size, const char *name, Err *e);
// Open one .safetensors file (memory-mapped).
int st_open(SafeTensors *st, const char *path, Err *e);
// Open a model: PATH may be a directory (its model.safetensors.index.json if present, else model.safetensors),
// an index .json file, or a single .safetensors file. On failure st is left closed and e names file and problem.
int st_open_dir(SafeTensors *st, const char *path, Err *e);
void st_close(SafeTensors *st);

// NULL when no tensor has that name.
const STTensor *st_find(const SafeTensors *st, const char *name);
// "__metadata__" value for key, or NULL.
const char *st_metadata(const SafeTensors *st, const char *key);

const char *st_dtype_name(STDType t);     // "F32", "BF16", ...
size_t st_dtype_size(STDType t);          // bytes per element
int st_dtype_from_name(const char *name); // -1 when unknown

// Convert element i of t to float (any numeric dtype; BOOL gives 0/1). i must be < t->n_elements.
// Slow path meant for tests, conversion and small tensors (norm weights, biases), not for matmuls.
double st_tensor_get(const STTensor *t, uint64_t i);

#endif
