// gguf.h — GGUF, lossy's native parameters file: reader (mmap, zero copy) and atomic writer.
//
// File layout (little-endian): magic "GGUF", u32 version (2 or 3), u64 tensor count, u64 metadata count, metadata
// key/value pairs, tensor infos (name, n_dims, dims, type, offset), padding to `general.alignment` (default 32), then
// the tensor data section. The reader validates everything against the file size before trusting it: string lengths,
// array counts, dims products, offsets, alignment, overlaps. Strings returned are views into the map (GStr, not
// NUL-terminated; may contain NUL bytes); keys and tensor names are also available NUL-terminated.
#ifndef LOSSY_GGUF_H
#define LOSSY_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/dtype.h"
#include "base/err.h"
#include "base/util.h"

typedef enum GGUFType {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3, GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7, GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11, GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} GGUFType;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct GStr {
    const char *ptr; // not NUL-terminated
    size_t len;
} GStr;

typedef struct GGUFKV {
    char *key;        // NUL-terminated copy
    GGUFType type;
    union {
        uint64_t u64; // UINT8/16/32/64 widened
        int64_t i64;  // INT8/16/32/64 widened
        double f64;   // FLOAT32/64 widened
        bool b;
        GStr str;
    } v;
    // For type == GGUF_TYPE_ARRAY:
    GGUFType arr_type;
    uint64_t arr_count;
    const uint8_t *arr_data; // raw little-endian elements (numeric arrays)
    GStr *arr_str;           // arr_count views (string arrays), owned
} GGUFKV;

typedef struct GGUFTensor {
    char *name;                    // NUL-terminated copy
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];     // GGML order: ne[0] is the innermost (contiguous) dimension; unused dims are 1
    uint32_t type;                 // DType
    uint64_t offset;               // relative to the data section
    uint64_t n_elements;
    size_t nbytes;
    const void *data;              // points into the map
} GGUFTensor;

typedef struct GGUFFile {
    FileMap map;          // owned when opened from a path
    const uint8_t *base;  // file bytes
    size_t size;
    uint32_t version;
    size_t n_kv;
    GGUFKV *kv;
    size_t n_tensors;
    GGUFTensor *tensors;
    size_t alignment;
    size_t data_offset;   // start of the tensor data section
    char *name;           // path or label, for messages
} GGUFFile;

// Open and validate a GGUF file (memory-mapped). On failure g is left closed and e names the file and the problem.
int gguf_open(GGUFFile *g, const char *path, Err *e);
// Parse from memory (the bytes must outlive g). Used by gguf_open, tests and the fuzzer.
int gguf_parse(GGUFFile *g, const uint8_t *data, size_t size, const char *name, Err *e);
void gguf_close(GGUFFile *g);

const char *gguf_type_name(GGUFType t);

const GGUFKV *gguf_find(const GGUFFile *g, const char *key);
const GGUFTensor *gguf_find_tensor(const GGUFFile *g, const char *name);

// Typed getters: 0 on success; -1 (with e filled) when the key is missing or of an incompatible type.
// Integers of any width convert when the value fits; floats accept any numeric type.
int gguf_get_int(const GGUFFile *g, const char *key, int64_t *out, Err *e);
int gguf_get_uint(const GGUFFile *g, const char *key, uint64_t *out, Err *e);
int gguf_get_float(const GGUFFile *g, const char *key, double *out, Err *e);
int gguf_get_bool(const GGUFFile *g, const char *key, bool *out, Err *e);
int gguf_get_str(const GGUFFile *g, const char *key, GStr *out, Err *e);
// Array getter: returns the KV (type ARRAY) when its element type is elem_type (or any type when elem_type < 0).
int gguf_get_arr(const GGUFFile *g, const char *key, int elem_type, const GGUFKV **out, Err *e);
// Element i of a numeric array, widened.
int64_t gguf_arr_int(const GGUFKV *kv, uint64_t i);
double gguf_arr_float(const GGUFKV *kv, uint64_t i);
// "or default" convenience getters: return def when the key is missing (but fail on a wrong type).
int gguf_get_int_or(const GGUFFile *g, const char *key, int64_t def, int64_t *out, Err *e);
int gguf_get_float_or(const GGUFFile *g, const char *key, double def, double *out, Err *e);

// Size in bytes of one element of a scalar GGUF type (0 for STRING/ARRAY).
size_t gguf_type_size(GGUFType t);

// ---- writer ----
// Collects metadata and tensors, then writes the whole file atomically (temp + fsync + rename).
// Tensor data pointers are borrowed: they must stay valid until gguf_writer_write returns.
typedef struct GGUFWriter GGUFWriter;
GGUFWriter *gguf_writer_new(void);
void gguf_writer_free(GGUFWriter *w);
// Setting an existing key replaces its value.
void gguf_writer_set_u8(GGUFWriter *w, const char *key, uint8_t v);
void gguf_writer_set_i8(GGUFWriter *w, const char *key, int8_t v);
void gguf_writer_set_u16(GGUFWriter *w, const char *key, uint16_t v);
void gguf_writer_set_i16(GGUFWriter *w, const char *key, int16_t v);
void gguf_writer_set_u32(GGUFWriter *w, const char *key, uint32_t v);
void gguf_writer_set_i32(GGUFWriter *w, const char *key, int32_t v);
void gguf_writer_set_u64(GGUFWriter *w, const char *key, uint64_t v);
void gguf_writer_set_i64(GGUFWriter *w, const char *key, int64_t v);
void gguf_writer_set_f32(GGUFWriter *w, const char *key, float v);
void gguf_writer_set_f64(GGUFWriter *w, const char *key, double v);
void gguf_writer_set_bool(GGUFWriter *w, const char *key, bool v);
void gguf_writer_set_str(GGUFWriter *w, const char *key, const char *v);
void gguf_writer_set_strn(GGUFWriter *w, const char *key, const char *v, size_t len);
// Numeric array: n elements of elem_type copied from data (little-endian host layout).
void gguf_writer_set_arr(GGUFWriter *w, const char *key, GGUFType elem_type, const void *data, size_t n);
// String array: n strings (lens may be NULL for NUL-terminated strings); copied.
void gguf_writer_set_arr_str(GGUFWriter *w, const char *key, const char *const *strs, const size_t *lens, size_t n);
// Copy one KV from a parsed file (for convert/quantize keeping metadata).
void gguf_writer_copy_kv(GGUFWriter *w, const GGUFKV *kv);
// Add a tensor: ne in GGML order (ne[0] innermost), n_dims 1..4.
int gguf_writer_add_tensor(GGUFWriter *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                           const void *data, Err *e);
void gguf_writer_set_alignment(GGUFWriter *w, size_t alignment);
// version 3 by default
int gguf_writer_write(GGUFWriter *w, const char *path, Err *e);
// Serialise to a stream (not atomic; used by gguf_writer_write and tests writing to memory).
int gguf_writer_write_stream(GGUFWriter *w, FILE *f, Err *e);

#endif
