// quant.c — dequantize/quantize rows of GGML block formats (see quant.h for the layouts).
//
// One table over DType holds each format's row decoder and (where supported) encoder. Decoders follow ggml's
// reference arithmetic: scales are combined in float first (d * sc), then multiplied by the integer quant, then the
// min is subtracted — the same operations in the same order, so outputs are bit-identical to ggml's.
//
// Encoders: Q8_0, Q4_0 and Q6_K search a symmetric scale (candidate inverse scales around nmax / max|x|, each
// rounding refit by least squares, the lowest squared error kept, then re-round + refit until it stops improving).
// Q4_K and Q5_K search scale and min per 32-element sub-block (candidate scales around nmax / (max - min), each
// rounding refit exactly by 2x2 least squares with the min constrained to <= 0, then re-round + refit). The 8 or 16
// per-sub-block scales are then quantized themselves (6 or 8 bits) against an fp16 super-block scale, and the final
// quants are rounded against the scales exactly as a decoder will reconstruct them. The error measure is plain
// (unweighted) squared error; an importance-weighted variant would slot into the same searches.
// QuantOpts.naive swaps the searches for plain min/max scales, so tests and benchmarks can show what the search buys.
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

#include "base/util.h"

_Static_assert(sizeof(BlockQ4_0) == 18, "q4_0 block");
_Static_assert(sizeof(BlockQ4_1) == 20, "q4_1 block");
_Static_assert(sizeof(BlockQ5_0) == 22, "q5_0 block");
_Static_assert(sizeof(BlockQ5_1) == 24, "q5_1 block");
_Static_assert(sizeof(BlockQ8_0) == 34, "q8_0 block");
_Static_assert(sizeof(BlockQ2_K) == 84, "q2_K block");
_Static_assert(sizeof(BlockQ3_K) == 110, "q3_K block");
_Static_assert(sizeof(BlockQ4_K) == 144, "q4_K block");
_Static_assert(sizeof(BlockQ5_K) == 176, "q5_K block");
_Static_assert(sizeof(BlockQ6_K) == 210, "q6_K block");
_Static_assert(sizeof(BlockQ8_K) == 292, "q8_K block");

static inline float half_at(const uint8_t *p) { return fp16_to_fp32(load_u16le(p)); }
static inline void store_u16le(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void quant_unpack_k4_scales(const uint8_t packed[12], uint8_t sc[8], uint8_t mn[8]) {
    // Bytes 0..3 hold scales 0..3 in their low 6 bits, bytes 4..7 mins 0..3; bytes 8..11 hold the low nibbles of
    // scales 4..7 (low half) and mins 4..7 (high half), whose top 2 bits sit in bits 6..7 of bytes 0..3 / 4..7.
    uint32_t a = load_u32le(packed), b = load_u32le(packed + 4), c = load_u32le(packed + 8);
    uint32_t s_lo = a & 0x3f3f3f3fu, m_lo = b & 0x3f3f3f3fu;
    uint32_t s_hi = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
    uint32_t m_hi = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
    for (int k = 0; k < 4; k++) {
        sc[k] = (uint8_t)(s_lo >> (8 * k));
        sc[k + 4] = (uint8_t)(s_hi >> (8 * k));
        mn[k] = (uint8_t)(m_lo >> (8 * k));
        mn[k + 4] = (uint8_t)(m_hi >> (8 * k));
    }
}

static void pack_k4_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t out[12]) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoders. Each takes nb blocks (for scalar types: nb elements).

static void deq_f32(const uint8_t *src, float *dst, int64_t nb) { memcpy(dst, src, (size_t)nb * sizeof(float)); }

static void deq_f16(const uint8_t *src, float *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) dst[i] = fp16_to_fp32(load_u16le(src + 2 * i));
}

static void deq_bf16(const uint8_t *src, float *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) dst[i] = bf16_to_fp32(load_u16le(src + 2 * i));
}

static void deq_q4_0(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ4_0 *b = (const BlockQ4_0 *)src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        float d = half_at(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((b[i].qs[j] & 15) - 8) * d;
            dst[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ4_1 *b = (const BlockQ4_1 *)src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        float d = half_at(b[i].d), m = half_at(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(b[i].qs[j] & 15) * d + m;
            dst[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void deq_q5_0(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ5_0 *b = (const BlockQ5_0 *)src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        float d = half_at(b[i].d);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
            int hi = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[j] = (float)(lo - 16) * d;
            dst[j + 16] = (float)(hi - 16) * d;
        }
    }
}

static void deq_q5_1(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ5_1 *b = (const BlockQ5_1 *)src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        float d = half_at(b[i].d), m = half_at(b[i].m);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
            int hi = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            dst[j] = (float)lo * d + m;
            dst[j + 16] = (float)hi * d + m;
        }
    }
}

static void deq_q8_0(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ8_0 *b = (const BlockQ8_0 *)src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        float d = half_at(b[i].d);
        for (int j = 0; j < 32; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

static void deq_q2_k(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ2_K *b = (const BlockQ2_K *)src;
    for (int64_t i = 0; i < nb; i++) {
        float d = half_at(b[i].d), dmin = half_at(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    uint8_t sc = b[i].scales[is++];
                    float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *dst++ = dl * (float)((q[16 * part + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

static void deq_q3_k(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ3_K *b = (const BlockQ3_K *)src;
    for (int64_t i = 0; i < nb; i++) {
        float d = half_at(b[i].d);
        // Unpack the 16 six-bit scales: low nibbles from bytes 0..7, high 2-bit pairs from bytes 8..11.
        const uint8_t *s = b[i].scales;
        int8_t scales[16];
        for (int j = 0; j < 8; j++) {
            scales[j] = (int8_t)((s[j] & 15) | (((s[8 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4));
            scales[j + 8] = (int8_t)((s[j] >> 4) | (((s[8 + (j & 3)] >> (2 * (j >> 2) + 4)) & 3) << 4));
        }
        const uint8_t *q = b[i].qs;
        uint8_t m = 1;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int part = 0; part < 2; part++) {
                    float dl = d * (float)(scales[is++] - 32);
                    for (int l = 16 * part; l < 16 * part + 16; l++) {
                        int v = ((q[l] >> shift) & 3) - ((b[i].hmask[l] & m) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

static void deq_q4_k(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ4_K *b = (const BlockQ4_K *)src;
    for (int64_t i = 0; i < nb; i++) {
        float d = half_at(b[i].d), dmin = half_at(b[i].dmin);
        uint8_t sc[8], mn[8];
        quant_unpack_k4_scales(b[i].scales, sc, mn);
        const uint8_t *q = b[i].qs;
        for (int c = 0; c < 4; c++, q += 32) {
            float d1 = d * (float)sc[2 * c], m1 = dmin * (float)mn[2 * c];
            float d2 = d * (float)sc[2 * c + 1], m2 = dmin * (float)mn[2 * c + 1];
            for (int l = 0; l < 32; l++) dst[l] = d1 * (float)(q[l] & 15) - m1;
            for (int l = 0; l < 32; l++) dst[32 + l] = d2 * (float)(q[l] >> 4) - m2;
            dst += 64;
        }
    }
}

static void deq_q5_k(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ5_K *b = (const BlockQ5_K *)src;
    for (int64_t i = 0; i < nb; i++) {
        float d = half_at(b[i].d), dmin = half_at(b[i].dmin);
        uint8_t sc[8], mn[8];
        quant_unpack_k4_scales(b[i].scales, sc, mn);
        const uint8_t *q = b[i].qs, *qh = b[i].qh;
        for (int c = 0; c < 4; c++, q += 32) {
            float d1 = d * (float)sc[2 * c], m1 = dmin * (float)mn[2 * c];
            float d2 = d * (float)sc[2 * c + 1], m2 = dmin * (float)mn[2 * c + 1];
            for (int l = 0; l < 32; l++) dst[l] = d1 * (float)((q[l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++)
                dst[32 + l] = d2 * (float)((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m2;
            dst += 64;
        }
    }
}

static void deq_q6_k(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ6_K *b = (const BlockQ6_K *)src;
    for (int64_t i = 0; i < nb; i++) {
        float d = half_at(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int l = 0; l < 32; l++) {
                int s = l / 16;
                int q1 = ((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * (float)sc[s] * (float)q1;
                dst[l + 32] = d * (float)sc[s + 2] * (float)q2;
                dst[l + 64] = d * (float)sc[s + 4] * (float)q3;
                dst[l + 96] = d * (float)sc[s + 6] * (float)q4;
            }
        }
    }
}

static void deq_q8_k(const uint8_t *src, float *dst, int64_t nb) {
    const BlockQ8_K *b = (const BlockQ8_K *)src;
    for (int64_t i = 0; i < nb; i++, dst += 256) {
        uint32_t bits = load_u32le(b[i].d);
        float d;
        memcpy(&d, &bits, 4);
        for (int j = 0; j < 256; j++) dst[j] = d * (float)b[i].qs[j];
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Scale searches.

static inline int round_clamp(float v, int lo, int hi) {
    // nearbyintf: ties to even; NaN cannot reach here (inputs are checked finite, scales nonzero).
    float r = nearbyintf(v);
    if (r < (float)lo) return lo;
    if (r > (float)hi) return hi;
    return (int)r;
}

// Sums over the rounding q_i = clamp(round((x_i - off) * iscale), lo, hi): sum q, sum q^2, sum x q. n is a multiple of
// 8; the work is laid out as 8 independent lanes so the compiler vectorizes it (this loop is the searches' cost).
static inline void rounding_sums(int n, const float *x, float off, float iscale, float lo, float hi, float *sq,
                                 float *sqq, float *sxq) {
    float a[8] = {0}, b[8] = {0}, c[8] = {0};
    for (int i = 0; i < n; i += 8) {
        for (int k = 0; k < 8; k++) {
            float v = nearbyintf((x[i + k] - off) * iscale);
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
            a[k] += v;
            b[k] += v * v;
            c[k] += x[i + k] * v;
        }
    }
    // Pairwise (tree) lane sums: short dependency chains.
    for (int w = 4; w > 0; w /= 2)
        for (int k = 0; k < w; k++) a[k] += a[k + w], b[k] += b[k + w], c[k] += c[k + w];
    *sq = a[0], *sqq = b[0], *sxq = c[0];
}

// Symmetric: find s and q_i in [-nmax, nmax-1] minimising sum (x_i - s q_i)^2. Returns s (negative when the
// largest magnitude is positive: the extra negative level goes to it). Tries 2 * steps + 1 inverse scales
// (nmax +- delta * steps levels across max|x|; mapping the largest value to +nmax instead never won in tests on
// Gaussian rows, so that orientation is not tried); for each rounding the best s is the least-squares
// sum(x q) / sum(q q), leaving error sum x^2 - sum(x q)^2 / sum(q q), so the candidate with the largest
// sum(x q)^2 / sum(q q) wins. naive: s = vmax / -nmax, no search.
static float search_sym(int n, int nmax, const float *x, int8_t *q, bool naive, int steps, float delta) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), vmax = x[i];
    if (amax < 1e-30f) {
        memset(q, 0, (size_t)n);
        return 0;
    }
    float s = vmax / (float)-nmax;
    if (!naive) {
        double best_gain = -1;
        for (int step = -steps; step <= steps; step++) {
            float iscale = -((float)nmax + delta * (float)step) / vmax;
            float sq, sqq, sxq;
            rounding_sums(n, x, 0.0f, iscale, (float)-nmax, (float)(nmax - 1), &sq, &sqq, &sxq);
            if (sqq > 0 && (double)sxq * sxq / sqq > best_gain) {
                best_gain = (double)sxq * sxq / sqq;
                s = sxq / sqq;
            }
        }
        // Re-round against the refitted scale and refit, while the error keeps falling.
        for (int it = 0; it < 3; it++) {
            float sq, sqq, sxq;
            rounding_sums(n, x, 0.0f, 1.0f / s, (float)-nmax, (float)(nmax - 1), &sq, &sqq, &sxq);
            if (!(sqq > 0) || (double)sxq * sxq / sqq <= best_gain * (1 + 1e-7)) break;
            best_gain = (double)sxq * sxq / sqq;
            s = sxq / sqq;
        }
    }
    if (!(s != 0)) { // cannot happen for finite x with max|x| > 0; keeps x / s finite regardless
        memset(q, 0, (size_t)n);
        return 0;
    }
    for (int i = 0; i < n; i++) q[i] = (int8_t)round_clamp(x[i] / s, -nmax, nmax - 1);
    return s;
}

// Asymmetric: find s > 0, m >= 0 and q_i in [0, nmax] minimising sum (x_i - (s q_i - m))^2. Returns s, sets *m.
// Candidate roundings come from inverse scales (nmax - 1 .. nmax + 1 levels across max - min) and then from the best
// fit so far; each is refit exactly by 2x2 least squares (offset b = -m clamped to <= 0) and scored in closed form.
static float search_asym(int n, int nmax, const float *x, uint8_t *q, float *m_out, bool naive) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (lo > 0) lo = 0; // the offset can only be subtracted (m >= 0)
    if (hi - lo < 1e-30f) {
        memset(q, 0, (size_t)n);
        *m_out = -lo;
        return 0;
    }
    float best_s = (hi - lo) / (float)nmax, best_b = lo;
    if (!naive) {
        double sx = 0, sxx = 0;
        for (int i = 0; i < n; i++) {
            sx += x[i];
            sxx += (double)x[i] * x[i];
        }
        double best_err = INFINITY;
        for (int cand = 0; cand < 21 + 4; cand++) {
            float is_, off;
            if (cand < 21) {
                is_ = ((float)nmax - 1.0f + 0.1f * (float)cand) / (hi - lo);
                off = lo;
            } else {
                is_ = 1.0f / best_s;
                off = best_b;
            }
            float sq, sqq, sxq;
            rounding_sums(n, x, off, is_, 0.0f, (float)nmax, &sq, &sqq, &sxq);
            double D = (double)n * sqq - (double)sq * sq;
            if (!(D > 0)) continue;
            double s = ((double)n * sxq - sq * sx) / D;
            double b = ((double)sqq * sx - sq * (double)sxq) / D;
            if (b > 0) { // constrained: offset must be <= 0
                b = 0;
                s = sxq / sqq;
            }
            if (!(s > 0)) continue;
            double err = sxx - 2 * s * sxq - 2 * b * sx + s * s * sqq + 2 * s * b * sq + n * b * b;
            if (err < best_err) {
                best_err = err;
                best_s = (float)s;
                best_b = (float)b;
            } else if (cand >= 21) {
                break; // the refit no longer improves: converged
            }
        }
    }
    *m_out = -best_b;
    for (int i = 0; i < n; i++) q[i] = (uint8_t)round_clamp((x[i] - best_b) / best_s, 0, nmax);
    return best_s;
}

// ---------------------------------------------------------------------------------------------------------------
// Encoders: nb blocks from src to dst. Inputs are finite (checked by the caller). Return -1 when a scale does not
// fit its fp16 field (|x| beyond ~1e9 for most formats).

static int check_half(float v, const char *what, Err *e) {
    if (!isfinite(fp16_to_fp32(fp32_to_fp16(v)))) return ERR(e, "%s scale %g does not fit in fp16", what, (double)v);
    return 0;
}

static int enc_f32(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    memcpy(dst, src, (size_t)nb * sizeof(float));
    return 0;
}

static int enc_f16(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    for (int64_t i = 0; i < nb; i++) {
        uint16_t h = fp32_to_fp16(src[i]);
        if ((h & 0x7c00) == 0x7c00) return ERR(e, "value %g at index %lld does not fit in f16", (double)src[i], (long long)i);
        store_u16le(dst + 2 * i, h);
    }
    return 0;
}

static int enc_bf16(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    for (int64_t i = 0; i < nb; i++) {
        uint16_t h = fp32_to_bf16(src[i]);
        if ((h & 0x7f80) == 0x7f80) return ERR(e, "value %g at index %lld does not fit in bf16", (double)src[i], (long long)i);
        store_u16le(dst + 2 * i, h);
    }
    return 0;
}

// Searched: q in [-128, 127] (the full int8 range; ggml's decoders and dot products take -128 like any other
// value) with a few clipping levels tried. naive: ggml's max|x| / 127 with q in [-127, 127].
static int enc_q8_0(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    BlockQ8_0 *b = (BlockQ8_0 *)dst;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++, src += 32) {
        float s;
        if (naive) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fabsf(src[j]) > amax ? fabsf(src[j]) : amax;
            s = amax / 127.0f;
        } else {
            s = search_sym(32, 128, src, q, false, 3, 0.5f);
        }
        if (check_half(s, "q8_0", e)) return -1;
        uint16_t h = fp32_to_fp16(s);
        float d = fp16_to_fp32(h);
        store_u16le(b[i].d, h);
        const int lo = naive ? -127 : -128;
        for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)(d != 0 ? round_clamp(src[j] / d, lo, 127) : 0);
    }
    return 0;
}

static int enc_q4_0(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    BlockQ4_0 *b = (BlockQ4_0 *)dst;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++, src += 32) {
        float s = search_sym(32, 8, src, q, naive, 10, 0.1f);
        if (check_half(s, "q4_0", e)) return -1;
        uint16_t h = fp32_to_fp16(s);
        float d = fp16_to_fp32(h);
        store_u16le(b[i].d, h);
        // Round against the scale as stored, so the decoder's grid is the one the quants were chosen on.
        for (int j = 0; j < 32; j++) q[j] = (int8_t)(d != 0 ? round_clamp(src[j] / d, -8, 7) : 0);
        for (int j = 0; j < 16; j++) b[i].qs[j] = (uint8_t)((q[j] + 8) | ((q[j + 16] + 8) << 4));
    }
    return 0;
}

// Quants of a Q4_K/Q5_K super-block for given super-scales and 6-bit sub-block scales, rounded against the values
// exactly as the decoder reconstructs them (d * sc in float, times q, minus dmin * m). Returns the squared error.
static double k4_requant(const float *x, int nmax, float d, float dmin, const uint8_t ls[8], const uint8_t lm[8],
                         uint8_t q[256]) {
    double err = 0;
    for (int j = 0; j < 8; j++) {
        float es = d * (float)ls[j], em = dmin * (float)lm[j];
        for (int l = 0; l < 32; l++) {
            int v = es > 0 ? round_clamp((x[32 * j + l] + em) / es, 0, nmax) : 0;
            q[32 * j + l] = (uint8_t)v;
            double r = (double)(es * (float)v - em) - x[32 * j + l];
            err += r * r;
        }
    }
    return err;
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per-sub-block scale/min search, 6-bit scale quantization, then a
// least-squares refit of the two fp16 super-scales for the chosen integer scales and quants (kept while it lowers
// the error). Fills d, dmin (fp16 bits), packed scales and q[256] in 0..nmax.
static int enc_k4_common(const float *x, int nmax, bool naive, uint8_t d_out[2], uint8_t dmin_out[2],
                         uint8_t scales_out[12], uint8_t q[256], const char *what, Err *e) {
    float s[8], m[8];
    for (int j = 0; j < 8; j++) s[j] = search_asym(32, nmax, x + 32 * j, q + 32 * j, &m[j], naive);
    float max_s = 0, max_m = 0;
    for (int j = 0; j < 8; j++) {
        max_s = (s[j] > max_s ? s[j] : max_s);
        max_m = (m[j] > max_m ? m[j] : max_m);
    }
    if (check_half(max_s / 63.0f, what, e) || check_half(max_m / 63.0f, what, e)) return -1;
    uint16_t dh = fp32_to_fp16(max_s / 63.0f), mh = fp32_to_fp16(max_m / 63.0f);
    float d = fp16_to_fp32(dh), dmin = fp16_to_fp32(mh);
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)(d > 0 ? round_clamp(s[j] / d, 0, 63) : 0);
        lm[j] = (uint8_t)(dmin > 0 ? round_clamp(m[j] / dmin, 0, 63) : 0);
    }
    double err = k4_requant(x, nmax, d, dmin, ls, lm, q);
    for (int it = 0; it < 2 && !naive; it++) {
        // x ~ d * A - dmin * B with A = ls_j * q_i, B = lm_j: solve the 2x2 normal equations for (d, dmin).
        double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
        for (int k = 0; k < 256; k++) {
            double A = (double)ls[k / 32] * q[k], B = lm[k / 32];
            saa += A * A, sab += A * B, sbb += B * B, sxa += x[k] * A, sxb += x[k] * B;
        }
        double det = saa * sbb - sab * sab, nd, nm;
        if (sbb == 0 && saa > 0) nd = sxa / saa, nm = 0;
        else if (det > 0) nd = (sxa * sbb - sab * sxb) / det, nm = (sab * sxa - saa * sxb) / det;
        else break;
        if (!(nd > 0) || !(nm >= 0)) break;
        uint16_t ndh = fp32_to_fp16((float)nd), nmh = fp32_to_fp16((float)nm);
        float fd = fp16_to_fp32(ndh), fm = fp16_to_fp32(nmh);
        if (!isfinite(fd) || !isfinite(fm)) break;
        uint8_t tq[256];
        double nerr = k4_requant(x, nmax, fd, fm, ls, lm, tq);
        if (!(nerr < err)) break;
        err = nerr, dh = ndh, mh = nmh;
        memcpy(q, tq, 256);
    }
    store_u16le(d_out, dh);
    store_u16le(dmin_out, mh);
    pack_k4_scales(ls, lm, scales_out);
    return 0;
}

static int enc_q4_k(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    BlockQ4_K *b = (BlockQ4_K *)dst;
    uint8_t q[256];
    for (int64_t i = 0; i < nb; i++, src += 256) {
        if (enc_k4_common(src, 15, naive, b[i].d, b[i].dmin, b[i].scales, q, "q4_K", e)) return -1;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
    return 0;
}

static int enc_q5_k(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    BlockQ5_K *b = (BlockQ5_K *)dst;
    uint8_t q[256];
    for (int64_t i = 0; i < nb; i++, src += 256) {
        if (enc_k4_common(src, 31, naive, b[i].d, b[i].dmin, b[i].scales, q, "q5_K", e)) return -1;
        memset(b[i].qh, 0, 32);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
                b[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
        }
    }
    return 0;
}

// Quants of a Q6_K super-block for super-scale d and 8-bit sub-block scales, as the decoder sees them.
static double q6_requant(const float *x, float d, const int8_t ls[16], int8_t q[256]) {
    double err = 0;
    for (int j = 0; j < 16; j++) {
        float es = d * (float)ls[j];
        for (int l = 0; l < 16; l++) {
            int v = es != 0 ? round_clamp(x[16 * j + l] / es, -32, 31) : 0;
            q[16 * j + l] = (int8_t)v;
            double r = (double)(es * (float)v) - x[16 * j + l];
            err += r * r;
        }
    }
    return err;
}

static int enc_q6_k(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    BlockQ6_K *b = (BlockQ6_K *)dst;
    int8_t q[256], tq[256], ls[16];
    for (int64_t i = 0; i < nb; i++, src += 256) {
        float s[16], amax = 0;
        for (int j = 0; j < 16; j++) {
            s[j] = search_sym(16, 32, src + 16 * j, q + 16 * j, naive, 10, 0.1f);
            amax = fabsf(s[j]) > amax ? fabsf(s[j]) : amax;
        }
        if (check_half(amax / 127.0f, "q6_K", e)) return -1;
        uint16_t dh = fp32_to_fp16(amax / 127.0f);
        float d = fp16_to_fp32(dh);
        for (int j = 0; j < 16; j++) ls[j] = (int8_t)(d > 0 ? round_clamp(s[j] / d, -127, 127) : 0);
        double err = q6_requant(src, d, ls, q);
        for (int it = 0; it < 2 && !naive; it++) { // refit d for the chosen integer scales and quants
            double saa = 0, sxa = 0;
            for (int k = 0; k < 256; k++) {
                double A = (double)ls[k / 16] * q[k];
                saa += A * A, sxa += src[k] * A;
            }
            if (!(saa > 0) || !(sxa > 0)) break;
            uint16_t ndh = fp32_to_fp16((float)(sxa / saa));
            float nd = fp16_to_fp32(ndh);
            if (!isfinite(nd)) break;
            double nerr = q6_requant(src, nd, ls, tq);
            if (!(nerr < err)) break;
            err = nerr, dh = ndh;
            memcpy(q, tq, 256);
        }
        store_u16le(b[i].d, dh);
        memcpy(b[i].scales, ls, 16);
        memset(b[i].ql, 0, 128);
        memset(b[i].qh, 0, 64);
        for (int k = 0; k < 256; k++) {
            int h = k / 128, g = (k % 128) / 32, l = k % 32, u = q[k] + 32;
            uint8_t *qlb = &b[i].ql[64 * h + 32 * (g & 1) + l];
            if (g < 2) *qlb = (uint8_t)((*qlb & 0xf0) | (u & 15));
            else *qlb = (uint8_t)((*qlb & 0x0f) | ((u & 15) << 4));
            b[i].qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * g));
        }
    }
    return 0;
}

static int enc_q8_k(const float *src, uint8_t *dst, int64_t nb, bool naive, Err *e) {
    BlockQ8_K *b = (BlockQ8_K *)dst;
    for (int64_t i = 0; i < nb; i++, src += 256) {
        float amax = 0;
        for (int j = 0; j < 256; j++) amax = fabsf(src[j]) > amax ? fabsf(src[j]) : amax;
        float d = amax / 127.0f, id = d > 0 ? 127.0f / amax : 0.0f;
        uint32_t bits;
        memcpy(&bits, &d, 4);
        store_u16le(b[i].d, (uint16_t)bits);
        store_u16le(b[i].d + 2, (uint16_t)(bits >> 16));
        for (int k = 0; k < 16; k++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                int v = round_clamp(src[16 * k + l] * id, -127, 127);
                b[i].qs[16 * k + l] = (int8_t)v;
                sum += v;
            }
            store_u16le(b[i].bsums + 2 * k, (uint16_t)(int16_t)sum);
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------

typedef void (*DequantFn)(const uint8_t *src, float *dst, int64_t nblocks);
typedef int (*QuantFn)(const float *src, uint8_t *dst, int64_t nblocks, bool naive, Err *e);

static const struct {
    DequantFn deq;
    QuantFn enc;
} KINDS[DT_COUNT] = {
    [DT_F32] = {deq_f32, enc_f32},   [DT_F16] = {deq_f16, enc_f16},   [DT_BF16] = {deq_bf16, enc_bf16},
    [DT_Q4_0] = {deq_q4_0, enc_q4_0}, [DT_Q4_1] = {deq_q4_1, NULL},   [DT_Q5_0] = {deq_q5_0, NULL},
    [DT_Q5_1] = {deq_q5_1, NULL},    [DT_Q8_0] = {deq_q8_0, enc_q8_0}, [DT_Q2_K] = {deq_q2_k, NULL},
    [DT_Q3_K] = {deq_q3_k, NULL},    [DT_Q4_K] = {deq_q4_k, enc_q4_k}, [DT_Q5_K] = {deq_q5_k, enc_q5_k},
    [DT_Q6_K] = {deq_q6_k, enc_q6_k}, [DT_Q8_K] = {deq_q8_k, enc_q8_k},
};

bool quant_can_dequantize(DType t) { return (unsigned)t < DT_COUNT && KINDS[t].deq != NULL; }
bool quant_can_quantize(DType t) { return (unsigned)t < DT_COUNT && KINDS[t].enc != NULL; }

int quant_row_bytes(DType t, int64_t n, size_t *out, Err *e) {
    if (n < 0) return ERR(e, "negative row length %lld", (long long)n);
    return dtype_nbytes((uint32_t)t, (uint64_t)n, out, e);
}

// Validates (t, n) for a row operation and returns the block count.
static int row_blocks(DType t, int64_t n, bool want_enc, int64_t *nb, Err *e) {
    const DTypeInfo *info = dtype_info((uint32_t)t);
    if (!info) return ERR(e, "unknown tensor type %d", (int)t);
    if (want_enc ? !quant_can_quantize(t) : !quant_can_dequantize(t))
        return ERR(e, "%s to type %s is not supported", want_enc ? "quantization" : "dequantization", info->name);
    if (n < 0) return ERR(e, "negative row length %lld", (long long)n);
    if (n % info->block_size != 0)
        return ERR(e, "row of %lld elements is not a whole number of %s blocks of %u", (long long)n, info->name,
                   info->block_size);
    *nb = n / info->block_size;
    return 0;
}

int quant_dequantize_row(DType t, const void *src, float *dst, int64_t n, Err *e) {
    int64_t nb = 0;
    if (row_blocks(t, n, false, &nb, e)) return -1;
    KINDS[t].deq((const uint8_t *)src, dst, nb);
    return 0;
}

int quant_quantize_row(DType t, const float *src, void *dst, int64_t n, const QuantOpts *opts, Err *e) {
    int64_t nb = 0;
    if (row_blocks(t, n, true, &nb, e)) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(src[i])) return ERR(e, "cannot quantize non-finite value %g at index %lld", (double)src[i], (long long)i);
    return KINDS[t].enc(src, (uint8_t *)dst, nb, opts && opts->naive, e);
}
