// dtype.h — tensor element types, numbered as GGML/GGUF numbers them.
//
// A dtype is either a scalar type (block size 1) or a block-quantized type whose rows are stored as blocks of
// `block_size` elements taking `type_size` bytes each. lossy keeps weights in their stored dtype; kernels dispatch on
// this enum. Types lossy can read but not yet compute with are still described here so `lossy info` can size them.
#ifndef LOSSY_DTYPE_H
#define LOSSY_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum DType {
    DT_F32 = 0, DT_F16 = 1, DT_Q4_0 = 2, DT_Q4_1 = 3, DT_Q5_0 = 6, DT_Q5_1 = 7, DT_Q8_0 = 8, DT_Q8_1 = 9,
    DT_Q2_K = 10, DT_Q3_K = 11, DT_Q4_K = 12, DT_Q5_K = 13, DT_Q6_K = 14, DT_Q8_K = 15,
    DT_IQ2_XXS = 16, DT_IQ2_XS = 17, DT_IQ3_XXS = 18, DT_IQ1_S = 19, DT_IQ4_NL = 20, DT_IQ3_S = 21, DT_IQ2_S = 22,
    DT_IQ4_XS = 23, DT_I8 = 24, DT_I16 = 25, DT_I32 = 26, DT_I64 = 27, DT_F64 = 28, DT_IQ1_M = 29, DT_BF16 = 30,
    DT_TQ1_0 = 34, DT_TQ2_0 = 35, DT_MXFP4 = 39,
    DT_COUNT = 40
} DType;

typedef struct DTypeInfo {
    const char *name;  // as llama.cpp prints it: "f32", "q4_K", ...
    uint32_t block_size; // elements per block (1 for scalar types)
    uint32_t type_size;  // bytes per block
} DTypeInfo;

// NULL when t is not a known type (ids 4, 5, 31..33, 36..38 were removed from GGML and are unknown here).
const DTypeInfo *dtype_info(uint32_t t);
const char *dtype_name(uint32_t t); // "unknown" when unknown
// Parse a name ("f16", "q8_0", "Q4_K", case-insensitive); -1 when unknown.
int dtype_from_name(const char *name);

// Bytes taken by n elements of type t. Fails when t is unknown, n is not a whole number of blocks, or on overflow.
int dtype_nbytes(uint32_t t, uint64_t n, size_t *out, Err *e);

#endif
