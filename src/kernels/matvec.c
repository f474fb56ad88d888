// matvec.c — matrix-vector product: path dispatch, activation quantization and the portable scalar kernels.
//
// The scalar kernels define what every path computes: integer dot products of weight quants with the int8
// activations, scaled per block in float (see matvec.h). matvec_avx2.c / matvec_avx512.c give faster versions of
// the same sums; the tests force each path and compare all of them with a double-precision reference.
#include "kernels/matvec.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/util.h"
#include "kernels/matvec_impl.h"
#include "kernels/quant.h"

// ---- dispatch ----

static KernelPath g_forced = KERNEL_AUTO;

const char *matvec_path_name(KernelPath p) {
    switch (p) {
    case KERNEL_AUTO: return "auto";
    case KERNEL_SCALAR: return "scalar";
    case KERNEL_AVX2: return "avx2";
    case KERNEL_AVX512: return "avx512";
    }
    return "unknown";
}

bool matvec_path_available(KernelPath p) {
    const CpuFeatures *f = cpu_features();
    switch (p) {
    case KERNEL_AUTO:
    case KERNEL_SCALAR: return true;
#ifdef LOSSY_MATVEC_X86
    case KERNEL_AVX2: return f->avx2 && f->fma && f->f16c;
    case KERNEL_AVX512: return f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512bw && f->avx512vl && f->avx512_vnni;
#else
    case KERNEL_AVX2:
    case KERNEL_AVX512: (void)f; return false;
#endif
    }
    return false;
}

int matvec_force_path(KernelPath p, Err *e) {
    if (p < KERNEL_AUTO || p > KERNEL_AVX512) return ERR(e, "unknown kernel path %d", (int)p);
    if (!matvec_path_available(p)) return ERR(e, "kernel path %s is not supported by this CPU", matvec_path_name(p));
    g_forced = p;
    return 0;
}

KernelPath matvec_current_path(void) {
    if (g_forced != KERNEL_AUTO) return g_forced;
    if (matvec_path_available(KERNEL_AVX512)) return KERNEL_AVX512;
    if (matvec_path_available(KERNEL_AVX2)) return KERNEL_AVX2;
    return KERNEL_SCALAR;
}

bool matvec_supports(DType t) { return quant_can_dequantize(t); }

// ---- activations ----

// Activation block size for weights of type t: 32 (legacy integer kernels), 256 (K-quant integer kernels), 0 (floats).
static int act_block(DType t) {
    switch (t) {
    case DT_Q8_0: case DT_Q4_0: return 32;
    case DT_Q4_K: case DT_Q5_K: case DT_Q6_K: return 256;
    default: return 0;
    }
}

void matvec_act_init(MatvecAct *a) { memset(a, 0, sizeof *a); }

void matvec_act_free(MatvecAct *a) {
    free(a->q);
    free(a->d);
    free(a->s16);
    free(a->s32);
    free(a->m4);
    memset(a, 0, sizeof *a);
}

int matvec_act_prepare(MatvecAct *a, DType t, const float *x, int64_t n, Err *e) {
    if (!matvec_supports(t)) return ERR(e, "matrix-vector product with %s weights is not supported", dtype_name((uint32_t)t));
    const DTypeInfo *info = dtype_info((uint32_t)t);
    if (n < 0 || n % info->block_size != 0)
        return ERR(e, "row of %lld elements is not a whole number of %s blocks of %u", (long long)n, info->name,
                   info->block_size);
    a->wtype = t;
    a->n = n;
    a->x = x;
    a->bs = act_block(t);
    if (a->bs == 0) return 0;
    if ((size_t)n > a->cap) {
        free(a->q);
        free(a->d);
        free(a->s16);
        free(a->s32);
        free(a->m4);
        a->q = xmalloc((size_t)n);
        a->d = xmalloc_array((size_t)n / 32 + 1, sizeof(float));
        a->s16 = xmalloc_array((size_t)n / 16 + 1, sizeof(int16_t));
        a->s32 = xmalloc_array((size_t)n / 32 + 1, sizeof(int16_t));
        a->m4 = xmalloc_array((size_t)n / 4 + 1, sizeof(int32_t));
        a->cap = (size_t)n;
    }
    // group sums serve the K-quant kernels (their mins and Q6_K's offset) and the Q4_0x4 kernel (its -8 offset)
    matvec_quantize_act(x, n, a->bs, a->q, a->d, a->s16);
    for (int64_t g = 0; g < n / 32; g++) a->s32[g] = (int16_t)(a->s16[2 * g] + a->s16[2 * g + 1]);
    // computed once per product rather than once per block and group pass in the x4 kernel (4 instructions a block)
    if (t == DT_Q8_0)
        for (int64_t g = 0; g < n / 4; g++)
            a->m4[g] = -128 * ((int32_t)a->q[4 * g] + a->q[4 * g + 1] + a->q[4 * g + 2] + a->q[4 * g + 3]);
    return 0;
}

static void quantize_act_scalar(const float *x, int64_t n, int bs, int8_t *q, float *d, int16_t *s16) {
    // Symmetric int8 per block: q = round(x * 127 / max|x|), d = max|x| / 127. Non-finite x makes garbage, as a
    // float product would; callers check activations where that matters.
    for (int64_t b = 0; b < n / bs; b++) {
        const float *xb = x + b * bs;
        float amax = 0;
        for (int i = 0; i < bs; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        int8_t *qb = q + b * bs;
        for (int i = 0; i < bs; i++) {
            float v = nearbyintf(xb[i] * id);
            qb[i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v);
        }
    }
    if (s16)
        for (int64_t g = 0; g < n / 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += q[g * 16 + i];
            s16[g] = (int16_t)s;
        }
}

void matvec_quantize_act(const float *x, int64_t n, int bs, int8_t *q, float *d, int16_t *s16) {
#ifdef LOSSY_MATVEC_X86
    if (matvec_current_path() == KERNEL_AVX512) {
        matvec_quantize_act_avx512(x, n, bs, q, d, s16);
        return;
    }
#endif
    quantize_act_scalar(x, n, bs, q, d, s16);
}

// ---- scalar kernels ----

static inline float f32_at(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

static void scalar_f32(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *x = a->x;
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *row = w + (size_t)r * stride;
        float acc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= a->n; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += f32_at(row + 4 * (i + k)) * x[i + k];
        float s = 0;
        for (; i < a->n; i++) s += f32_at(row + 4 * i) * x[i];
        for (int k = 0; k < 8; k++) s += acc[k];
        y[r] = s;
    }
}

// fp16 -> f32 by table (256 KiB, built once): for the scalar path, where a conversion per weight is its whole
// cost, and for block scales in vector kernels, which can then broadcast a scale straight from memory.
static float *g_f16_table;
static pthread_once_t g_f16_once = PTHREAD_ONCE_INIT;
static void build_f16_table(void) {
    g_f16_table = xmalloc_array(65536, sizeof(float));
    for (uint32_t h = 0; h < 65536; h++) g_f16_table[h] = fp16_to_fp32((uint16_t)h);
}

const float *matvec_f16_table(void) {
    pthread_once(&g_f16_once, build_f16_table);
    return g_f16_table;
}

static void scalar_f16(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *tab = matvec_f16_table();
    const float *x = a->x;
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *row = w + (size_t)r * stride;
        float acc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= a->n; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += tab[load_u16le(row + 2 * (i + k))] * x[i + k];
        float s = 0;
        for (; i < a->n; i++) s += tab[load_u16le(row + 2 * i)] * x[i];
        for (int k = 0; k < 8; k++) s += acc[k];
        y[r] = s;
    }
}

static inline float bf16_at(const uint8_t *p) {
    uint32_t u = (uint32_t)load_u16le(p) << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static void scalar_bf16(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *x = a->x;
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *row = w + (size_t)r * stride;
        float acc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= a->n; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += bf16_at(row + 2 * (i + k)) * x[i + k];
        float s = 0;
        for (; i < a->n; i++) s += bf16_at(row + 2 * i) * x[i];
        for (int k = 0; k < 8; k++) s += acc[k];
        y[r] = s;
    }
}

// Any dequantizable type: decode one block at a time onto the stack and dot in float.
static void scalar_generic(DType t, const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const DTypeInfo *info = dtype_info((uint32_t)t);
    if (!info || !quant_can_dequantize(t) || a->n % info->block_size != 0) {
        // misuse (unsupported type, an act of another length): no answer rather than a wrong one
        for (int64_t r = 0; r < nrows; r++) y[r] = NAN;
        return;
    }
    const int64_t bsz = info->block_size;
    // Scalar types are decoded 64 elements at a time.
    const int64_t chunk = bsz == 1 ? 64 : bsz;
    float buf[256];
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *row = w + (size_t)r * stride;
        float s = 0;
        for (int64_t i = 0; i < a->n; i += chunk) {
            int64_t len = a->n - i < chunk ? a->n - i : chunk;
            quant_dequantize_row(t, row + (size_t)(i / bsz) * info->type_size, buf, len, NULL);
            float part = 0;
            for (int64_t k = 0; k < len; k++) part += buf[k] * a->x[i + k];
            s += part;
        }
        y[r] = s;
    }
}

static void scalar_q8_0(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *tab = matvec_f16_table();
    const int64_t nb = a->n / 32;
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ8_0 *b = (const BlockQ8_0 *)(w + (size_t)r * stride);
        float s = 0;
        for (int64_t i = 0; i < nb; i++) {
            const int8_t *xq = a->q + 32 * i;
            int sumi = 0;
            for (int j = 0; j < 32; j++) sumi += b[i].qs[j] * xq[j];
            s += (float)sumi * (tab[load_u16le(b[i].d)] * a->d[i]);
        }
        y[r] = s;
    }
}

static void scalar_q4_0(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *tab = matvec_f16_table();
    const int64_t nb = a->n / 32;
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ4_0 *b = (const BlockQ4_0 *)(w + (size_t)r * stride);
        float s = 0;
        for (int64_t i = 0; i < nb; i++) {
            const int8_t *xq = a->q + 32 * i;
            int sumi = 0;
            for (int j = 0; j < 16; j++)
                sumi += ((b[i].qs[j] & 15) - 8) * xq[j] + ((b[i].qs[j] >> 4) - 8) * xq[j + 16];
            s += (float)sumi * (tab[load_u16le(b[i].d)] * a->d[i]);
        }
        y[r] = s;
    }
}

// Q4_K and Q5_K share everything but the fifth bit (qh == NULL for Q4_K).
static float dot_k4_block(float d, float dmin, const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh,
                          const int8_t *xq, const int16_t *s32, float xd) {
    uint8_t sc[8], mn[8];
    quant_unpack_k4_scales(scales, sc, mn);
    int sumi = 0, summ = 0;
    for (int c = 0; c < 4; c++) {
        const uint8_t *q = qs + 32 * c;
        int lo = 0, hi = 0;
        if (qh) {
            for (int l = 0; l < 32; l++) {
                lo += ((q[l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4)) * xq[64 * c + l];
                hi += ((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) * xq[64 * c + 32 + l];
            }
        } else {
            for (int l = 0; l < 32; l++) {
                lo += (q[l] & 15) * xq[64 * c + l];
                hi += (q[l] >> 4) * xq[64 * c + 32 + l];
            }
        }
        sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
        summ += mn[2 * c] * s32[2 * c] + mn[2 * c + 1] * s32[2 * c + 1];
    }
    return d * xd * (float)sumi - dmin * xd * (float)summ;
}

static void scalar_q4_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *tab = matvec_f16_table();
    const int64_t nb = a->n / 256;
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ4_K *b = (const BlockQ4_K *)(w + (size_t)r * stride);
        float s = 0;
        for (int64_t i = 0; i < nb; i++)
            s += dot_k4_block(tab[load_u16le(b[i].d)], tab[load_u16le(b[i].dmin)], b[i].scales, b[i].qs, NULL, a->q + 256 * i,
                              a->s32 + 8 * i, a->d[i]);
        y[r] = s;
    }
}

static void scalar_q5_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *tab = matvec_f16_table();
    const int64_t nb = a->n / 256;
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ5_K *b = (const BlockQ5_K *)(w + (size_t)r * stride);
        float s = 0;
        for (int64_t i = 0; i < nb; i++)
            s += dot_k4_block(tab[load_u16le(b[i].d)], tab[load_u16le(b[i].dmin)], b[i].scales, b[i].qs, b[i].qh, a->q + 256 * i,
                              a->s32 + 8 * i, a->d[i]);
        y[r] = s;
    }
}

static void scalar_q6_k(const uint8_t *w, size_t stride, int64_t nrows, const MatvecAct *a, float *y) {
    const float *tab = matvec_f16_table();
    const int64_t nb = a->n / 256;
    for (int64_t r = 0; r < nrows; r++) {
        const BlockQ6_K *b = (const BlockQ6_K *)(w + (size_t)r * stride);
        float s = 0;
        for (int64_t i = 0; i < nb; i++) {
            const int8_t *xq = a->q + 256 * i;
            int dots[16] = {0}; // per 16-element group, quants taken unsigned (0..63); the -32 comes from the sums
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
                const int8_t *xh = xq + 128 * h;
                for (int l = 0; l < 32; l++) {
                    int g = 8 * h + l / 16;
                    dots[g] += ((ql[l] & 15) | ((qh[l] & 3) << 4)) * xh[l];
                    dots[g + 2] += ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) * xh[l + 32];
                    dots[g + 4] += ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) * xh[l + 64];
                    dots[g + 6] += ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) * xh[l + 96];
                }
            }
            int sumi = 0;
            for (int k = 0; k < 16; k++) sumi += b[i].scales[k] * (dots[k] - 32 * a->s16[16 * i + k]);
            s += tab[load_u16le(b[i].d)] * a->d[i] * (float)sumi;
        }
        y[r] = s;
    }
}

static void scalar_kernels(MatvecKernels *k) {
    memset(k, 0, sizeof *k);
    k->fn[DT_F32] = scalar_f32;
    k->fn[DT_F16] = scalar_f16;
    k->fn[DT_BF16] = scalar_bf16;
    k->fn[DT_Q8_0] = scalar_q8_0;
    k->fn[DT_Q4_0] = scalar_q4_0;
    k->fn[DT_Q4_K] = scalar_q4_k;
    k->fn[DT_Q5_K] = scalar_q5_k;
    k->fn[DT_Q6_K] = scalar_q6_k;
}

// Tables are built once, for every path, on first use.
static MatvecKernels g_tables[4];
static pthread_once_t g_tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    for (int p = 0; p < 4; p++) {
        scalar_kernels(&g_tables[p]);
#ifdef LOSSY_MATVEC_X86
        MatvecKernels v;
        memset(&v, 0, sizeof v);
        if (p == KERNEL_AVX2) matvec_kernels_avx2(&v);
        if (p == KERNEL_AVX512) matvec_kernels_avx512(&v);
        for (int t = 0; t < DT_COUNT; t++) {
            if (v.fn[t]) g_tables[p].fn[t] = v.fn[t];
            if (v.multi[t]) g_tables[p].multi[t] = v.multi[t];
        }
#endif
    }
}

static const MatvecKernels *kernels_for(KernelPath p) {
    pthread_once(&g_tables_once, build_tables);
    return &g_tables[p];
}

bool matvec_act_fits(const MatvecAct *a, DType t) {
    if (!matvec_supports(t) || a->x == NULL) return false;
    int bs = act_block(t);
    return a->n % dtype_info((uint32_t)t)->block_size == 0 && (bs == 0 || bs == a->bs);
}

void matvec_rows(DType t, const void *w, size_t row_stride, int64_t r0, int64_t r1, const MatvecAct *a, float *y) {
    if (r1 <= r0) return;
    const uint8_t *w0 = (const uint8_t *)w + (size_t)r0 * row_stride;
    MatvecRowsFn fn = kernels_for(matvec_current_path())->fn[t];
    if (fn && act_block(t) == a->bs) fn(w0, row_stride, r1 - r0, a, y + r0);
    else scalar_generic(t, w0, row_stride, r1 - r0, a, y + r0); // also the safe answer for an act of another kind
}

void matvec_rows_multi(DType t, const void *w, size_t row_stride, int64_t r0, int64_t r1, const MatvecAct *const *acts,
                       float *const *ys, int64_t n) {
    if (r1 <= r0 || n <= 0) return;
    const MatvecKernels *k = kernels_for(matvec_current_path());
    bool direct = k->multi[t] != NULL;
    for (int64_t i = 0; i < n && direct; i++) direct = acts[i]->bs == act_block(t) && acts[i]->n == acts[0]->n;
    if (direct && n <= MATVEC_MULTI_MAX) {
        float *yo[MATVEC_MULTI_MAX];
        for (int64_t i = 0; i < n; i++) yo[i] = ys[i] + r0;
        k->multi[t]((const uint8_t *)w + (size_t)r0 * row_stride, row_stride, r1 - r0, acts, yo, n);
        return;
    }
    // no multi kernel: row tiles of about 16 KiB, read from memory once and then from L1 for every activation
    int64_t tile = (int64_t)(((size_t)16 << 10) / (row_stride ? row_stride : 1));
    tile = tile < MATVEC_ROWS ? MATVEC_ROWS : tile / MATVEC_ROWS * MATVEC_ROWS;
    for (int64_t a = r0; a < r1; a += tile) {
        int64_t b = a + tile < r1 ? a + tile : r1;
        for (int64_t i = 0; i < n; i++) matvec_rows(t, w, row_stride, a, b, acts[i], ys[i]);
    }
}

// ---- x4 layouts: repacked Q4_0 / Q8_0 ----

bool matvec_x4_supports(DType t) { return t == DT_Q4_0 || t == DT_Q8_0; }

static size_t x4_quant_bytes(DType t) { return t == DT_Q4_0 ? 16 : 32; } // per row and block

size_t matvec_x4_bytes(DType t, int64_t rows, int64_t cols) {
    return (size_t)(rows / 4) * (size_t)(cols / 32) * (4 * x4_quant_bytes(t) + 8);
}

void matvec_repack_x4(DType t, const void *w, size_t row_stride, int64_t rows, int64_t cols, void *out) {
    const int64_t nb = cols / 32;
    const size_t qb = x4_quant_bytes(t), bsz = t == DT_Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
    for (int64_t g = 0; g < rows / 4; g++) {
        uint8_t *group = (uint8_t *)out + (size_t)g * (size_t)nb * (4 * qb + 8);
        for (int r = 0; r < 4; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)(4 * g + r) * row_stride;
            for (int64_t i = 0; i < nb; i++) { // both block types: fp16 d first, then the quants
                const size_t q_off = (size_t)(matvec_x4_quants(group, qb, i) - group), d_off = (size_t)(matvec_x4_scales(group, nb, qb, i) - group);
                memcpy(group + q_off + r * qb, row + (size_t)i * bsz + 2, qb);
                memcpy(group + d_off + r * 2, row + (size_t)i * bsz, 2);
            }
        }
    }
}

void matvec_unpack_x4_row(DType t, const void *packed, int64_t cols, int64_t r, void *out) {
    const int64_t nb = cols / 32;
    const size_t qb = x4_quant_bytes(t), bsz = t == DT_Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
    const uint8_t *group = (const uint8_t *)packed + (size_t)(r / 4) * (size_t)nb * (4 * qb + 8);
    const int64_t k = r % 4;
    for (int64_t i = 0; i < nb; i++) {
        memcpy((uint8_t *)out + (size_t)i * bsz, matvec_x4_scales(group, nb, qb, i) + k * 2, 2);
        memcpy((uint8_t *)out + (size_t)i * bsz + 2, matvec_x4_quants(group, qb, i) + k * qb, qb);
    }
}

// The portable kernels on the repacked layouts: the scalar kernels' sums, block by block.
static void scalar_x4(DType t, const uint8_t *packed, int64_t nb, int64_t g0, int64_t g1, const MatvecAct *a, float *y) {
    const float *tab = matvec_f16_table();
    const size_t qb = x4_quant_bytes(t), gstride = (size_t)nb * (4 * qb + 8);
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *group = packed + (size_t)g * gstride;
        for (int r = 0; r < 4; r++) {
            float s = 0;
            for (int64_t i = 0; i < nb; i++) {
                const uint8_t *q = matvec_x4_quants(group, qb, i) + r * qb;
                const int8_t *xq = a->q + 32 * i;
                int sumi = 0;
                if (t == DT_Q4_0)
                    for (int j = 0; j < 16; j++) sumi += ((q[j] & 15) - 8) * xq[j] + ((q[j] >> 4) - 8) * xq[j + 16];
                else { // through an int8_t pointer: GCC 12 at -O3 -march=native turns "(int8_t)u8[j] * s8[j]"
                       // into an unsigned x signed VNNI dot product, dropping the sign of the weight
                    const int8_t *q8 = (const int8_t *)q;
                    for (int j = 0; j < 32; j++) sumi += q8[j] * xq[j];
                }
                s += (float)sumi * (tab[load_u16le(matvec_x4_scales(group, nb, qb, i) + r * 2)] * a->d[i]);
            }
            y[4 * g + r] = s;
        }
    }
}

void matvec_rows_x4(DType t, const void *packed, int64_t cols, int64_t r0, int64_t r1, const MatvecAct *a, float *y) {
    if (r1 <= r0) return;
    const int64_t nb = cols / 32;
#ifdef LOSSY_MATVEC_X86
    if (matvec_current_path() == KERNEL_AVX512) {
        if (t == DT_Q4_0) matvec_q4_0x4_avx512(packed, nb, r0 / 4, r1 / 4, a, y);
        else matvec_q8_0x4_avx512(packed, nb, r0 / 4, r1 / 4, a, y);
        return;
    }
#endif
    scalar_x4(t, packed, nb, r0 / 4, r1 / 4, a, y);
}

int matvec(DType t, const void *w, size_t row_stride, int64_t rows, int64_t cols, const float *x, float *y,
           MatvecAct *scratch, Err *e) {
    if (rows < 0) return ERR(e, "negative row count %lld", (long long)rows);
    size_t need;
    if (quant_row_bytes(t, cols, &need, e)) return -1;
    if (row_stride < need && rows > 1)
        return ERR(e, "row stride %zu is smaller than a %s row of %lld elements (%zu bytes)", row_stride,
                   dtype_name((uint32_t)t), (long long)cols, need);
    MatvecAct local;
    MatvecAct *a = scratch;
    if (!a) {
        matvec_act_init(&local);
        a = &local;
    }
    int rc = matvec_act_prepare(a, t, x, cols, e);
    if (rc == 0) matvec_rows(t, w, row_stride, 0, rows, a, y);
    if (!scratch) matvec_act_free(&local);
    return rc;
}
