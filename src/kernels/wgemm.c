// wgemm.c — token-block GEMM with weights in their stored dtype: the AMX int8 path and the f32 panel path (wgemm.h).
//
// AMX int8, for C = W X^T one (32 rows x 32 tokens) block at a time:
//   tiles 0, 1: A = 16 weight rows each, one sub-block (SB = 32 quants, 16 for Q6_K) of int8 from the unpacked panel;
//   tiles 2, 3: B = 16 tokens each, the same SB quants of the activations in VNNI order (prepared once per product);
//   tiles 4..7: C = the four (16 rows x 16 tokens) int32 dot products of that sub-block.
// After each sub-block the vector unit adds C * (weight scale x activation scale) (minus mins x activation sums for
// Q4_K/Q5_K) into f32 accumulators, so each output is one chain of multiply-adds over sub-blocks in k order — the
// same for any row range or token count. Weight panels are unpacked from the stored blocks per 32 rows (Q8_0 quants
// are copied, 4/5/6-bit quants widened to int8 with their offsets), then reused by every token tile.
// The tile instructions come from the compiler's inline-asm macros; this file needs no -mamx flags and calls them
// only after CPUID reports AMX-TILE/AMX-INT8 and Linux grants the tile state (arch_prctl ARCH_REQ_XCOMP_PERM).
#include "kernels/wgemm.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "kernels/matmul.h"
#include "kernels/matvec.h"
#include "kernels/quant.h"

#if defined(__x86_64__) && defined(__linux__)
#define WGEMM_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define WGEMM_X86 0
#endif

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Ask for a whole row of weights ahead of its unpacking (the rows of a panel are read once each).
static inline void matvec_prefetch_row(const uint8_t *p, size_t n) {
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch(p + o, 0, 3);
}

// Where W's rows are: row r at rows + r * stride, except rows below x4_rows (Q4_0/Q8_0), which are in matvec.h's
// x4 layout: per group of 4 rows, block i's quants of row j at i * 4 * qb + j * qb, then the fp16 scales, block i's
// of row j at nb * 4 * qb + i * 8 + j * 2.
typedef struct WRows {
    DType t;
    const uint8_t *rows, *x4;
    size_t stride;
    int64_t x4_rows, nb;
    size_t qb, gstride; // quant bytes per block and row; bytes per group of 4 rows
} WRows;

static WRows wrows(DType t, const void *w, size_t stride, const void *x4, int64_t x4_rows, int64_t K) {
    WRows r = {t, w, x4, stride, x4 ? x4_rows / 4 * 4 : 0, K / 32, t == DT_Q4_0 ? 16 : 32, 0};
    r.gstride = (size_t)r.nb * (4 * r.qb + 8);
    return r;
}

// Block b of row r of a Q4_0/Q8_0 matrix: its quants at *q, its fp16 scale at *d (from the x4 copy when r has one).
static inline void row_block(const WRows *w, int64_t r, int64_t b, const uint8_t **q, const uint8_t **d) {
    if (r < w->x4_rows) {
        const uint8_t *g = w->x4 + (size_t)(r / 4) * w->gstride;
        *q = matvec_x4_quants(g, w->qb, b) + (size_t)(r % 4) * w->qb;
        *d = matvec_x4_scales(g, w->nb, w->qb, b) + (size_t)(r % 4) * 2;
        return;
    }
    const size_t bsz = w->t == DT_Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
    *d = w->rows + (size_t)r * w->stride + (size_t)b * bsz, *q = *d + 2; // blocks: fp16 d, then the quants
}

// While row r is unpacked, ask for what comes next: the next plain row, or a quarter of the next x4 group per row of
// the current one (a whole group asked for one row ahead arrives too late: 4 rows' bytes in one row's time).
static inline void prefetch_after(const WRows *w, int64_t r) {
    if (r + 1 >= w->x4_rows) {
        matvec_prefetch_row(w->rows + (size_t)(r + 1) * w->stride, w->stride);
        return;
    }
    const size_t quarter = (w->gstride + 3) / 4;
    matvec_prefetch_row(w->x4 + (size_t)(r / 4 + 1) * w->gstride + (size_t)(r % 4) * quarter, quarter);
}

// ---- dispatch ----

static WgemmPath g_forced = WGEMM_AUTO;
static bool g_amx_ok;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

static void detect_amx(void) {
#if WGEMM_X86
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    // AMX-TILE, AMX-INT8; AVX-512 F, BW, VL (the unpacking and scaling code uses them)
    bool tile = d & (1u << 24), int8 = d & (1u << 25), avx512 = (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31));
    if (!tile || !int8 || !avx512) return;
    // Linux keeps the 8 KiB tile data state off until a process asks for it (ARCH_REQ_XCOMP_PERM, XTILEDATA).
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return;
    g_amx_ok = true;
#endif
}

const char *wgemm_path_name(WgemmPath p) {
    switch (p) {
    case WGEMM_AUTO: return "auto";
    case WGEMM_F32: return "f32";
    case WGEMM_AMX: return "amx";
    }
    return "unknown";
}

bool wgemm_path_available(WgemmPath p) {
    if (p == WGEMM_AMX) {
        pthread_once(&g_amx_once, detect_amx);
        return g_amx_ok;
    }
    return p == WGEMM_AUTO || p == WGEMM_F32;
}

int wgemm_force_path(WgemmPath p, Err *e) {
    if (p < WGEMM_AUTO || p > WGEMM_AMX) return ERR(e, "unknown GEMM path %d", (int)p);
    if (!wgemm_path_available(p)) return ERR(e, "GEMM path %s is not available on this machine", wgemm_path_name(p));
    g_forced = p;
    return 0;
}

static bool amx_type(DType t) {
    return t == DT_Q8_0 || t == DT_Q4_0 || t == DT_Q4_K || t == DT_Q5_K || t == DT_Q6_K;
}

WgemmPath wgemm_path_for(DType t) {
    if (g_forced != WGEMM_F32 && amx_type(t) && wgemm_path_available(WGEMM_AMX)) return WGEMM_AMX;
    return WGEMM_F32;
}

// ---- activations ----

void wgemm_act_init(WgemmAct *a) { memset(a, 0, sizeof *a); }

void wgemm_act_free(WgemmAct *a) {
    free(a->xq);
    free(a->dx);
    free(a->u);
    memset(a, 0, sizeof *a);
}

bool wgemm_act_fits(const WgemmAct *a, DType t) {
    if (!a->x || !quant_can_dequantize(t) || a->K % dtype_info((uint32_t)t)->block_size != 0) return false;
    return wgemm_path_for(t) == a->path;
}

int wgemm_act_prepare(WgemmAct *a, DType t, const float *x, int64_t ldx, int64_t N, int64_t K, Err *e) {
    if (!quant_can_dequantize(t)) return ERR(e, "products with %s weights are not supported", dtype_name((uint32_t)t));
    const DTypeInfo *info = dtype_info((uint32_t)t);
    if (N < 0 || K < 0 || K % info->block_size != 0)
        return ERR(e, "row of %lld elements is not a whole number of %s blocks of %u", (long long)K, info->name,
                   info->block_size);
    a->wtype = t;
    a->path = wgemm_path_for(t);
    a->N = N;
    a->K = K;
    a->x = x;
    a->ldx = ldx;
    if (a->path != WGEMM_AMX) return 0;
    // every AMX type has K % 32 == 0 (its blocks are 32 or 256 long)
    const int64_t T16 = (N + 15) / 16, KB = K / 32;
    size_t nq = (size_t)(T16 * KB) * 512, nd = (size_t)(T16 * KB) * 16;
    if (nq > a->cap_q) {
        free(a->xq);
        a->xq = xmalloc(nq);
        a->cap_q = nq;
    }
    if (nd > a->cap_d) {
        free(a->dx);
        free(a->u);
        a->dx = xmalloc_array(nd, sizeof(float));
        a->u = xmalloc_array(nd, sizeof(float));
        a->cap_d = nd;
    }
    if (N % 16) { // padding tokens: zero quants and scales, so they add nothing and their outputs are dropped
        int64_t t0 = (T16 - 1) * KB;
        memset(a->xq + t0 * 512, 0, (size_t)KB * 512);
        memset(a->dx + t0 * 16, 0, (size_t)KB * 16 * sizeof(float));
        memset(a->u + t0 * 16, 0, (size_t)KB * 16 * sizeof(float));
    }
    // Symmetric int8 per block of 32, as matvec quantizes (matvec_quantize_act), then spread into tile order.
    int8_t q[32 * 64];
    float d[64];
    int16_t s16[128];
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * ldx;
        const int64_t tt = n / 16, tl = n % 16;
        for (int64_t j0 = 0; j0 < KB; j0 += 64) {
            int64_t nb = KB - j0 < 64 ? KB - j0 : 64;
            matvec_quantize_act(xr + 32 * j0, 32 * nb, 32, q, d, s16);
            for (int64_t jj = 0; jj < nb; jj++) {
                int64_t j = j0 + jj;
                int8_t *tile = a->xq + (tt * KB + j) * 512 + tl * 4; // (8, 64)
                for (int kk = 0; kk < 8; kk++) memcpy(tile + kk * 64, q + 32 * jj + 4 * kk, 4);
                a->dx[(tt * KB + j) * 16 + tl] = d[jj];
                a->u[(tt * KB + j) * 16 + tl] = d[jj] * (float)(s16[2 * jj] + s16[2 * jj + 1]);
            }
        }
    }
    return 0;
}

// ---- scratch ----

void wgemm_scratch_free(WgemmScratch *s) {
    free(s->mem);
    memset(s, 0, sizeof *s);
}

static void *scratch_get(WgemmScratch *s, size_t bytes) {
    if (bytes + 64 > s->cap) {
        free(s->mem);
        s->cap = bytes + 64;
        s->mem = xmalloc(s->cap);
    }
    return (void *)(((uintptr_t)s->mem + 63) & ~(uintptr_t)63);
}

// ---- f32 path ----

#if WGEMM_X86
__attribute__((target("avx512f,f16c"))) static void f16_row_avx512(const uint8_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + 2 * i))));
    for (; i < n; i++) dst[i] = fp16_to_fp32(load_u16le(src + 2 * i));
}
#endif

// One W row as f32: the common float and legacy formats inline (the compiler vectorises these loops), the rest
// through the reference decoder.
static void row_to_f32(DType t, const uint8_t *src, float *dst, int64_t n) {
    switch (t) {
    case DT_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case DT_F16:
#if WGEMM_X86
        if (__builtin_cpu_supports("avx512f")) {
            f16_row_avx512(src, dst, n);
            return;
        }
#endif
        break;
    case DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)load_u16le(src + 2 * i) << 16;
            memcpy(dst + i, &u, 4);
        }
        return;
    case DT_Q8_0:
        for (int64_t b = 0; b < n / 32; b++) {
            const BlockQ8_0 *blk = (const BlockQ8_0 *)src + b;
            float d = fp16_to_fp32(load_u16le(blk->d));
            for (int i = 0; i < 32; i++) dst[32 * b + i] = d * (float)blk->qs[i];
        }
        return;
    case DT_Q4_0:
        for (int64_t b = 0; b < n / 32; b++) {
            const BlockQ4_0 *blk = (const BlockQ4_0 *)src + b;
            float d = fp16_to_fp32(load_u16le(blk->d));
            for (int i = 0; i < 16; i++) {
                dst[32 * b + i] = d * (float)((blk->qs[i] & 15) - 8);
                dst[32 * b + 16 + i] = d * (float)((blk->qs[i] >> 4) - 8);
            }
        }
        return;
    default: break;
    }
    quant_dequantize_row(t, src, dst, n, NULL);
}

// Row r of W as f32.
static void wrow_to_f32(const WRows *w, int64_t r, float *dst, int64_t n) {
    if (r >= w->x4_rows) {
        row_to_f32(w->t, w->rows + (size_t)r * w->stride, dst, n);
        return;
    }
    for (int64_t b = 0; b < n / 32; b++) {
        const uint8_t *qb, *d;
        row_block(w, r, b, &qb, &d);
        float sc = fp16_to_fp32(load_u16le(d));
        if (w->t == DT_Q8_0)
            for (int i = 0; i < 32; i++) dst[32 * b + i] = sc * (float)(int8_t)qb[i];
        else
            for (int i = 0; i < 16; i++) {
                dst[32 * b + i] = sc * (float)((qb[i] & 15) - 8);
                dst[32 * b + 16 + i] = sc * (float)((qb[i] >> 4) - 8);
            }
    }
}

// Rows r .. r + 3 of an x4 group as f32 (row j at dst + j * n): the group read once, in order. x4 copies exist only
// where the AVX-512 matvec kernels run, so this is AVX-512 code (a scalar loop here ran 17% behind the plain rows').
#if WGEMM_X86
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void wgroup_to_f32(const WRows *w, int64_t r, float *dst, int64_t n) {
    const uint8_t *g = w->x4 + (size_t)(r / 4) * w->gstride;
    const __m128i m4 = _mm_set1_epi8(15);
    const __m512i eight = _mm512_set1_epi32(8);
    for (int64_t b = 0; b < n / 32; b++)
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = matvec_x4_quants(g, w->qb, b) + (size_t)j * w->qb;
            const __m512 sc = _mm512_set1_ps(fp16_to_fp32(load_u16le(matvec_x4_scales(g, w->nb, w->qb, b) + (size_t)j * 2)));
            float *o = dst + j * n + 32 * b;
            __m512i lo, hi;
            if (w->t == DT_Q8_0) {
                lo = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)q));
                hi = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 16)));
            } else {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)q);
                lo = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(raw, m4)), eight);
                hi = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(raw, 4), m4)), eight);
            }
            _mm512_storeu_ps(o, _mm512_mul_ps(sc, _mm512_cvtepi32_ps(lo)));
            _mm512_storeu_ps(o + 16, _mm512_mul_ps(sc, _mm512_cvtepi32_ps(hi)));
        }
}
#else
static void wgroup_to_f32(const WRows *w, int64_t r, float *dst, int64_t n) {
    for (int j = 0; j < 4; j++) wrow_to_f32(w, r + j, dst + j * n, n);
}
#endif

static void f32_rows(const WRows *wr, int64_t r0, int64_t r1, const WgemmAct *a, float *y, int64_t ldy, WgemmScratch *s) {
    const DType t = wr->t;
    const uint8_t *w = wr->rows;
    const size_t stride = wr->stride;
    const int64_t K = a->K, N = a->N;
    if (t == DT_F32 && stride % sizeof(float) == 0 && (uintptr_t)w % sizeof(float) == 0) {
        // F32 rows are packed straight from W (the GEMM's packing prefetches the rows it packs next): no copy, and the
        // activations are packed once per K block for the whole range instead of once per panel
        matmul_gemm(N, r1 - r0, K, a->x, a->ldx, 1, (const float *)(const void *)(w + (size_t)r0 * stride), 1,
                    (int64_t)(stride / sizeof(float)), y + r0, ldy, false);
        return;
    }
    // Other types: panels of PR rows converted to f32. Each panel is one GEMM call, which packs the activations
    // again, so panels are large: up to 4 MiB, at least 128 rows.
    int64_t PR = (int64_t)(((size_t)4 << 20) / ((size_t)(K > 0 ? K : 1) * sizeof(float))) / 32 * 32;
    PR = PR < 128 ? 128 : PR > 512 ? 512 : PR;
    float *panel = scratch_get(s, (size_t)PR * (size_t)K * sizeof(float)); // (PR, K)
    for (int64_t p0 = r0; p0 < r1; p0 += PR) {
        int64_t rows = min64(PR, r1 - p0);
        for (int64_t r = 0; r < rows; r++) {
            if ((p0 + r) % 4 == 0 && p0 + r + 4 <= wr->x4_rows && r + 4 <= rows) { // a whole x4 group
                wgroup_to_f32(wr, p0 + r, panel + r * K, K);
                r += 3;
                continue;
            }
            wrow_to_f32(wr, p0 + r, panel + r * K, K);
        }
        matmul_gemm(N, rows, K, a->x, a->ldx, 1, panel, 1, K, y + p0, ldy, false);
    }
}

// ---- AMX int8 path ----

#if WGEMM_X86

// One weight row of K elements: its quants as int8, sub-block j (SB of them) written to q + j * ts (ts = 16 * SB,
// the distance between consecutive tiles of the panel, so the row lands in tile-major order directly); s (K / SB)
// the scale of each sub-block, o (K / 32) its min (Q4_K/Q5_K only). AVX-512 BW/VL: the AMX path implies them.
#define T_UNPACK __attribute__((target("avx2,avx512f,avx512bw,avx512vl")))
T_UNPACK static inline void put32(int8_t *dst, __m256i v) { _mm256_storeu_si256((__m256i *)(void *)dst, v); }

T_UNPACK static void unpack_row(const WRows *w, int64_t r, int64_t K, int8_t *q, int64_t ts, float *s, float *o) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const DType t = w->t;
    const uint8_t *row = w->rows + (size_t)r * w->stride, *bq, *bd; // row: the K-quants (never in x4 layout)
    switch (t) {
    case DT_Q8_0:
        for (int64_t b = 0; b < K / 32; b++) {
            row_block(w, r, b, &bq, &bd);
            put32(q + b * ts, _mm256_loadu_si256((const __m256i *)(const void *)bq));
            s[b] = fp16_to_fp32(load_u16le(bd));
        }
        break;
    case DT_Q4_0: {
        const __m256i eight = _mm256_set1_epi8(8);
        for (int64_t b = 0; b < K / 32; b++) {
            row_block(w, r, b, &bq, &bd);
            __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)bq);
            __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4); // elements 0..15 | 16..31
            put32(q + b * ts, _mm256_sub_epi8(v, eight));
            s[b] = fp16_to_fp32(load_u16le(bd));
        }
        break;
    }
    case DT_Q4_K:
    case DT_Q5_K:
        for (int64_t b = 0; b < K / 256; b++) {
            const uint8_t *d2, *dmin2, *scales, *qs, *qh = NULL;
            if (t == DT_Q4_K) {
                const BlockQ4_K *blk = (const BlockQ4_K *)row + b;
                d2 = blk->d, dmin2 = blk->dmin, scales = blk->scales, qs = blk->qs;
            } else {
                const BlockQ5_K *blk = (const BlockQ5_K *)row + b;
                d2 = blk->d, dmin2 = blk->dmin, scales = blk->scales, qs = blk->qs, qh = blk->qh;
            }
            uint8_t sc[8], mn[8];
            quant_unpack_k4_scales(scales, sc, mn);
            float d = fp16_to_fp32(load_u16le(d2)), dmin = fp16_to_fp32(load_u16le(dmin2));
            __m256i h = qh ? _mm256_loadu_si256((const __m256i *)(const void *)qh) : _mm256_setzero_si256();
            const __m256i one = _mm256_set1_epi8(1);
            for (int c = 0; c < 4; c++) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if (qh) { // fifth bit of sub-block j is bit j of qh[l]
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one), 4));
                }
                put32(q + (8 * b + 2 * c) * ts, lo);
                put32(q + (8 * b + 2 * c + 1) * ts, hi);
            }
            for (int j = 0; j < 8; j++) {
                s[8 * b + j] = d * (float)sc[j];
                o[8 * b + j] = dmin * (float)mn[j];
            }
        }
        break;
    case DT_Q6_K: {
        const __m256i m2 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
        for (int64_t b = 0; b < K / 256; b++) {
            const BlockQ6_K *blk = (const BlockQ6_K *)row + b;
            for (int h = 0; h < 2; h++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(blk->ql + 64 * h));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(blk->ql + 64 * h + 32));
                __m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)(blk->qh + 32 * h));
                __m256i g[4];
                g[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
                g[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
                g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
                g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
                for (int k = 0; k < 4; k++) { // 32 quants = two sub-blocks of 16
                    __m256i v = _mm256_sub_epi8(g[k], off);
                    int64_t j = 16 * b + 8 * h + 2 * k;
                    _mm_storeu_si128((__m128i *)(void *)(q + j * ts), _mm256_castsi256_si128(v));
                    _mm_storeu_si128((__m128i *)(void *)(q + (j + 1) * ts), _mm256_extracti128_si256(v, 1));
                }
            }
            float d = fp16_to_fp32(load_u16le(blk->d));
            for (int j = 0; j < 16; j++) s[16 * b + j] = d * (float)blk->scales[j];
        }
        break;
    }
    default: break;
    }
}

typedef struct TileConfig {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

// A sub-block of SB quants: A tiles 16 x SB bytes, B tiles SB/4 x 64 bytes, C tiles 16 x 16 int32.
__attribute__((target("amx-tile"))) static void amx_configure(int sb) {
    TileConfig c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 2; i++) c.colsb[i] = (uint16_t)sb, c.rows[i] = 16;
    for (int i = 2; i < 4; i++) c.colsb[i] = 64, c.rows[i] = (uint8_t)(sb / 4);
    for (int i = 4; i < 8; i++) c.colsb[i] = 64, c.rows[i] = 16;
    _tile_loadconfig(&c);
}

// F (16 rows, 16 tokens) += C * (s[row] * dx) - o[row] * u, one sub-block's contribution.
// Rows r .. r + 3 of an x4 group (r a multiple of 4, all four below x4_rows), as unpack_row would write them (row j
// at q + j * SB, its scales at s + j * ns): the group is read once, in order, 128 (Q8_0) or 64 (Q4_0) bytes a block.
T_UNPACK static void unpack_group(const WRows *w, int64_t r, int64_t K, int8_t *q, int64_t ts, int SB, float *s, int64_t ns) {
    const uint8_t *g = w->x4 + (size_t)(r / 4) * w->gstride;
    const __m256i m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    for (int64_t b = 0; b < K / 32; b++) {
        const uint8_t *blk = matvec_x4_quants(g, w->qb, b), *d = matvec_x4_scales(g, w->nb, w->qb, b);
        for (int j = 0; j < 4; j++) {
            __m256i v;
            if (w->t == DT_Q8_0) {
                v = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 32 * j));
            } else {
                __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * j));
                v = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4), eight);
            }
            put32(q + j * SB + b * ts, v);
            s[j * ns + b] = fp16_to_fp32(load_u16le(d + (size_t)j * 2));
        }
    }
}

__attribute__((target("avx512f"))) static inline void amx_post(float *F, const int32_t *C, const float *s, int64_t s_stride,
                                                              const float *o, int64_t o_stride, __m512 dxv, __m512 uv) {
    for (int r = 0; r < 16; r++) {
        __m512 acc = _mm512_loadu_ps(F + 16 * r);
        __m512 scale = _mm512_mul_ps(_mm512_set1_ps(s[r * s_stride]), dxv);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(C + 16 * r)), scale, acc);
        if (o) acc = _mm512_fnmadd_ps(_mm512_set1_ps(o[r * o_stride]), uv, acc);
        _mm512_storeu_ps(F + 16 * r, acc);
    }
}

__attribute__((target("avx512f,amx-tile,amx-int8"))) static void amx_rows(const WRows *w, int64_t r0, int64_t r1,
                                                        const WgemmAct *a, float *y, int64_t ldy, WgemmScratch *sc) {
    const DType t = w->t;
    const int64_t K = a->K, N = a->N, KB = K / 32, T16 = (N + 15) / 16;
    const int SB = t == DT_Q6_K ? 16 : 32;
    const int64_t NSB = K / SB;
    const bool mins = t == DT_Q4_K || t == DT_Q5_K;
    size_t q_bytes = (size_t)(32 * K), s_bytes = (size_t)(32 * NSB) * sizeof(float), o_bytes = (size_t)(32 * KB) * sizeof(float);
    q_bytes = (q_bytes + 63) & ~(size_t)63;
    s_bytes = (s_bytes + 63) & ~(size_t)63;
    o_bytes = (o_bytes + 63) & ~(size_t)63;
    uint8_t *mem = scratch_get(sc, q_bytes + s_bytes + o_bytes + 4 * 1024 + 4 * 1024);
    int8_t *P = (int8_t *)mem;                                 // (2, NSB, 16, SB) unpacked quants, tile by tile
    float *S = (float *)(mem + q_bytes);                       // (32, NSB) scales
    float *O = (float *)(mem + q_bytes + s_bytes);             // (32, KB) mins
    int32_t *C = (int32_t *)(mem + q_bytes + s_bytes + o_bytes); // (4, 16, 16) C tiles [ti * 2 + ri]
    float *F = (float *)(C + 1024);                             // (4, 16, 16) accumulators
    amx_configure(SB);
    for (int64_t rb = r0; rb < r1; rb += 32) {
        const int64_t nr = min64(32, r1 - rb);
        // P holds tile (ri, j) — rows 16 ri .. 16 ri + 15, quants j SB .. j SB + SB - 1 — as one contiguous
        // 16 x SB block, so tile loads read whole lines in order instead of 16 partial lines K bytes apart.
        for (int64_t r = 0; r < 32; r++) {
            int8_t *dst = P + (r / 16) * NSB * 16 * SB + (r % 16) * SB;
            // a whole x4 group, its 4 rows in one tile block (ranges start on tile rows in practice: WGEMM_ROW_UNIT)
            if (r < nr && r % 4 == 0 && (rb + r) % 4 == 0 && rb + r + 4 <= w->x4_rows && r + 4 <= nr) {
                matvec_prefetch_row(w->x4 + (size_t)((rb + r) / 4 + 1) * w->gstride, w->gstride);
                unpack_group(w, rb + r, K, dst, 16 * SB, SB, S + r * NSB, NSB);
                r += 3;
            } else if (r < nr) {
                prefetch_after(w, rb + r);
                unpack_row(w, rb + r, K, dst, 16 * SB, S + r * NSB, O + r * KB);
            } else { // padding rows: zero quants and scales
                for (int64_t j = 0; j < NSB; j++) memset(dst + j * 16 * SB, 0, (size_t)SB);
                memset(S + r * NSB, 0, (size_t)NSB * sizeof(float));
                memset(O + r * KB, 0, (size_t)KB * sizeof(float));
            }
        }
        __asm__ volatile("" ::: "memory"); // the tile loads below read P (the asm macros declare no memory inputs)
        // One token tile at a time, software-pipelined: the tile unit computes sub-block j into one pair of C tiles
        // (4, 5 for even j; 6, 7 for odd j) while the vector unit stores and scales sub-block j - 1 from the other
        // pair, so neither waits for the other.
        for (int64_t tt = 0; tt < T16; tt++) {
            memset(F, 0, 2 * 256 * sizeof(float));
            const int8_t *xt = a->xq + tt * KB * 512;
            const float *dxt = a->dx + tt * KB * 16, *ut = a->u + tt * KB * 16;
            for (int64_t j = 0; j <= NSB; j++) {
                if (j < NSB) {
                    const int8_t *b0 = xt + (j * SB / 32) * 512 + (SB == 16 ? (j & 1) * 256 : 0);
                    _tile_loadd(0, P + j * 16 * SB, SB);
                    _tile_loadd(1, P + (NSB + j) * 16 * SB, SB);
                    _tile_loadd(2, b0, 64);
                    if ((j & 1) == 0) {
                        _tile_zero(4);
                        _tile_zero(5);
                        _tile_dpbssd(4, 0, 2);
                        _tile_dpbssd(5, 1, 2);
                    } else {
                        _tile_zero(6);
                        _tile_zero(7);
                        _tile_dpbssd(6, 0, 2);
                        _tile_dpbssd(7, 1, 2);
                    }
                }
                if (j > 0) {
                    const int64_t jp = j - 1, jb = jp * SB / 32;
                    if ((jp & 1) == 0) {
                        _tile_stored(4, C, 64);
                        _tile_stored(5, C + 256, 64);
                    } else {
                        _tile_stored(6, C, 64);
                        _tile_stored(7, C + 256, 64);
                    }
                    __m512 dxv = _mm512_loadu_ps(dxt + jb * 16), uv = _mm512_loadu_ps(ut + jb * 16);
                    for (int ri = 0; ri < 2; ri++)
                        amx_post(F + ri * 256, C + ri * 256, S + ri * 16 * NSB + jp, NSB,
                                 mins && SB == 32 ? O + ri * 16 * KB + jp : NULL, KB, dxv, uv);
                }
            }
            for (int ri = 0; ri < 2; ri++) {
                const float *Ft = F + ri * 256; // (16 rows, 16 tokens)
                for (int64_t n = tt * 16; n < min64(tt * 16 + 16, N); n++)
                    for (int64_t r = ri * 16; r < min64(ri * 16 + 16, nr); r++) y[n * ldy + rb + r] = Ft[(r - ri * 16) * 16 + (n - tt * 16)];
            }
        }
    }
    _tile_release();
}
#endif

void wgemm_rows_x4(DType t, const void *x4, int64_t x4_rows, const void *w, size_t row_stride, int64_t r0, int64_t r1,
                   const WgemmAct *a, float *y, int64_t ldy, WgemmScratch *s) {
    if (r1 <= r0 || a->N <= 0) return;
    const WRows wr = wrows(t, w, row_stride, (t == DT_Q4_0 || t == DT_Q8_0) ? x4 : NULL, x4_rows, a->K);
#if WGEMM_X86
    if (a->path == WGEMM_AMX && amx_type(t)) {
        amx_rows(&wr, r0, r1, a, y, ldy, s);
        return;
    }
#endif
    f32_rows(&wr, r0, r1, a, y, ldy, s);
}

void wgemm_rows(DType t, const void *w, size_t row_stride, int64_t r0, int64_t r1, const WgemmAct *a, float *y,
                int64_t ldy, WgemmScratch *s) {
    wgemm_rows_x4(t, NULL, 0, w, row_stride, r0, r1, a, y, ldy, s);
}
