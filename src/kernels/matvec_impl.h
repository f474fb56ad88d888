// matvec_impl.h — private to the matvec kernels: the per-path kernel tables (matvec.c, matvec_avx2.c,
// matvec_avx512.c). A kernel computes y[0..nrows) from nrows rows starting at w, row_stride bytes apart.
#ifndef LOSSY_MATVEC_IMPL_H
#define LOSSY_MATVEC_IMPL_H

#include "kernels/matvec.h"

typedef void (*MatvecRowsFn)(const uint8_t *w, size_t row_stride, int64_t nrows, const MatvecAct *a, float *y);
// The same rows times n activations: ys[k][0..nrows) from acts[k], each the bits fn gives for acts[k] alone.
typedef void (*MatvecMultiFn)(const uint8_t *w, size_t row_stride, int64_t nrows, const MatvecAct *const *acts,
                              float *const *ys, int64_t n);

// Indexed by DType; NULL entries fall back to the scalar kernel (fn) or to fn once per activation over row tiles
// that stay in cache (multi).
typedef struct MatvecKernels {
    MatvecRowsFn fn[DT_COUNT];
    MatvecMultiFn multi[DT_COUNT];
} MatvecKernels;

// The 8 six-bit scales and mins of a Q4_K/Q5_K block (see quant_unpack_k4_scales) as 8 bytes each, little-endian
// in a u64, for kernels that move them straight into vector registers.
static inline void matvec_k4_scales(const uint8_t *p, uint64_t *sc, uint64_t *mn) {
    uint32_t a = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    uint32_t b = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
    uint32_t c = (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
    uint32_t s_hi = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
    uint32_t m_hi = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
    *sc = (a & 0x3f3f3f3fu) | (uint64_t)s_hi << 32;
    *mn = (b & 0x3f3f3f3fu) | (uint64_t)m_hi << 32;
}

// fp16 bits -> f32, all 65536 values (built on first use, thread-safe).
const float *matvec_f16_table(void);

// Rows per pass in the vector kernels: independent accumulator chains, and activations loaded once per pass.
#define MATVEC_ROWS 4
// Activations per pass in the multi-activation float kernels (rows x activations x 2 accumulators in registers).
#define MATVEC_ACTS 2

// Software prefetch: while a kernel reads bytes [p, p + n) of a row it asks for the same bytes MATVEC_ROWS rows
// further on (the next pass, rows being contiguous), so every line of the matrix is requested about one pass before
// it is needed. The hardware streamer alone leaves a third of the read bandwidth unused on these short interleaved
// row streams (measured: 27 vs 37 GB/s on 2 threads for a plain sequential read, and 2x on the Q8_0 kernel).
#define MATVEC_PF_ROWS MATVEC_ROWS
static inline __attribute__((always_inline)) void matvec_prefetch(const uint8_t *p, size_t n, size_t ahead) {
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch(p + ahead + o, 0, 3);
}
// The same requests into L2 only (prefetcht1), for the F16/BF16 row stream (FLOAT_KERNEL in matvec_avx512.c): the
// row MATVEC_PF_BYTES or more ahead, in whole rows.
#define MATVEC_PF_BYTES 8192
static inline __attribute__((always_inline)) void matvec_prefetch_l2(const uint8_t *p, size_t n, size_t ahead) {
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch(p + ahead + o, 0, 2);
}
// For blocks smaller than a line (Q8_0: 34 bytes, Q4_0: 18): one request per line, when a block is the first to
// reach into it. A request per block made the prefetches themselves the kernel's bottleneck (their fill-buffer
// lookups), at L3 speeds.
static inline __attribute__((always_inline)) void matvec_prefetch_block(const uint8_t *b, size_t size, size_t ahead) {
    uintptr_t last = (uintptr_t)(b + ahead + size - 1);
    if ((last & ~(uintptr_t)63) != ((uintptr_t)(b + ahead) & ~(uintptr_t)63) || ((uintptr_t)(b + ahead) & 63) == 0)
        __builtin_prefetch((const void *)last, 0, 3);
}

#if defined(__x86_64__)
#define LOSSY_MATVEC_X86 1
void matvec_kernels_avx2(MatvecKernels *k);
void matvec_kernels_avx512(MatvecKernels *k);
void matvec_quantize_act_avx512(const float *x, int64_t n, int bs, int8_t *q, float *d, int16_t *s16);
// groups [g0, g1) of a Q4_0x4 / Q8_0x4 matrix (matvec.h)
void matvec_q4_0x4_avx512(const uint8_t *packed, int64_t nb, int64_t g0, int64_t g1, const MatvecAct *a, float *y);
void matvec_q8_0x4_avx512(const uint8_t *packed, int64_t nb, int64_t g0, int64_t g1, const MatvecAct *a, float *y);
#endif

#endif
