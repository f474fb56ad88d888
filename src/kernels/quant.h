// quant.h — GGML block formats: their byte layouts, dequantization to f32 and quantization from f32.
//
// Every GGUF tensor row of a block-quantized type is a run of fixed-size blocks (dtype.h gives block_size and
// type_size). This module is the one place that knows what the bytes inside a block mean; matvec and the model
// read weights through it (or through matvec's fused kernels, whose tests check them against this module).
// Dequantization is bit-exact with ggml's reference dequantizers (same float operations in the same order; every
// product before the last rounding is exact, so fused multiply-adds would give the same bits too).
// Quantization writes blocks any ggml reader decodes; it is not bit-identical to llama.cpp's quantizer: the
// K-quants search scale/min per sub-block by iterative least-squares refinement (see quant.c).
//
// Blocks are declared with byte arrays only, so they have alignment 1 (GGUF does not promise more than the file's
// alignment for a tensor start, and Q4_0's 18-byte stride breaks any wider alignment) and are read little-endian
// with load_u16le whatever the host.
#ifndef LOSSY_QUANT_H
#define LOSSY_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/err.h"

#define QK_32 32  // elements per block of the legacy formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
#define QK_K 256  // elements per super-block of the K-quants

// x = d * (q - 8), q 4 bits; element i is nibble (i / 16) of qs[i % 16] (low nibble first).
typedef struct BlockQ4_0 { uint8_t d[2]; uint8_t qs[16]; } BlockQ4_0;
// x = d * q + m, q 4 bits, same nibble order as Q4_0.
typedef struct BlockQ4_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qs[16]; } BlockQ4_1;
// x = d * (q - 16), q 5 bits: low 4 as in Q4_0, bit 4 of element i is bit i of the little-endian u32 qh.
typedef struct BlockQ5_0 { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; } BlockQ5_0;
// x = d * q + m, q 5 bits as in Q5_0.
typedef struct BlockQ5_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qh[4]; uint8_t qs[16]; } BlockQ5_1;
// x = d * q, q int8.
typedef struct BlockQ8_0 { uint8_t d[2]; int8_t qs[32]; } BlockQ8_0;

// K-quants: 256 elements. Element i lies in half h = i / 128, group g = (i % 128) / 32, lane l = i % 32, and
// sub-block i / 16 (Q2/Q3/Q6) or i / 32 (Q4/Q5).
// Q2_K: x = d * (sc & 15) * q - dmin * (sc >> 4), sc = scales[i / 16], q = 2 bits at shift 2g of qs[32h + l].
typedef struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint8_t d[2]; uint8_t dmin[2]; } BlockQ2_K;
// Q3_K: x = d * (s - 32) * (q - (hbit ? 0 : 4)); q as in Q2_K, hbit = bit (i / 32) of hmask[i % 32], s a 6-bit
// scale: low 4 bits = nibble (j / 8) of scales[j % 8], high 2 bits = bits 2 * (j / 4) of scales[8 + j % 4], j = i/16.
typedef struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint8_t d[2]; } BlockQ3_K;
// Q4_K: x = d * sc_j * q - dmin * m_j, j = i / 32 (6-bit sc/m packed in 12 bytes, see quant_unpack_k4_scales);
// q = nibble (j & 1) of qs[32 * (j / 2) + i % 32].
typedef struct BlockQ4_K { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qs[128]; } BlockQ4_K;
// Q5_K: as Q4_K with a fifth bit: bit j of qh[i % 32].
typedef struct BlockQ5_K { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } BlockQ5_K;
// Q6_K: x = d * scales[i / 16] * (q - 32); q low 4 bits = nibble (g / 2) of ql[64h + 32 (g & 1) + l],
// high 2 bits = bits 2g of qh[32h + l].
typedef struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint8_t d[2]; } BlockQ6_K;
// Q8_K: x = d * q, d an f32; bsums[k] = sum of qs[16k .. 16k+15] (used by dot products; ignored by dequantize).
typedef struct BlockQ8_K { uint8_t d[4]; int8_t qs[256]; uint8_t bsums[32]; } BlockQ8_K;

// Bytes of a row of n elements of type t. Fails for unknown/unsupported types, n < 0, a partial block or overflow.
int quant_row_bytes(DType t, int64_t n, size_t *out, Err *e);

// Whether quant_dequantize_row / quant_quantize_row handle type t.
bool quant_can_dequantize(DType t);
bool quant_can_quantize(DType t);

// dst[0..n) = the n values stored in src (quant_row_bytes(t, n) bytes). n must be a whole number of blocks.
int quant_dequantize_row(DType t, const void *src, float *dst, int64_t n, Err *e);

typedef struct QuantOpts {
    // Use plain min/max (or max-abs) scales with no search: the baseline the searched quantizers are measured against.
    bool naive;
} QuantOpts;

// Quantize n floats (a whole number of blocks) into dst (quant_row_bytes(t, n) bytes). Supported: F32, F16, BF16,
// Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q8_K. opts may be NULL (= searched scales). Non-finite input is an error, and so is a
// value whose F16 or block scale does not fit in fp16. Searched Q8_0 uses the full int8 range [-128, 127].
int quant_quantize_row(DType t, const float *src, void *dst, int64_t n, const QuantOpts *opts, Err *e);

// The 8 six-bit scales and mins of a Q4_K/Q5_K block, unpacked from its 12 scale bytes.
void quant_unpack_k4_scales(const uint8_t packed[12], uint8_t sc[8], uint8_t mn[8]);

#endif
