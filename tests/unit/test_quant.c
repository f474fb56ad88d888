// test_quant.c — GGML block formats (src/kernels/quant.c): every decoder against an independent reference decoder
// written here from the GGUF/ggml block layouts, quantize -> dequantize error bounds, bad sizes, and a real GGUF file.
//
// The reference decoder is deliberately unlike the production code: it reads every field through a bit extractor at
// explicit byte offsets (no structs, no loops over sub-blocks), decodes fp16 with ldexp, and computes each element
// on its own in double precision. Every product in these formats is exact in double (fp16 scales are multiples of
// 2^-24 below 2^16, times small integers), so rounding the double result to float once must give the production
// decoder's float bits exactly.
#include <math.h>
#include <stdlib.h>

#include "base/dtype.h"
#include "formats/gguf.h"
#include "kernels/quant.h"
#include "test.h"

// ---- reference decoder ----

// nbits bits starting at bit `pos` of p, least significant bit first (bit 0 = bit 0 of p[0]).
static unsigned bits(const uint8_t *p, unsigned pos, unsigned nbits) {
    unsigned v = 0;
    for (unsigned k = 0; k < nbits; k++) v |= ((p[(pos + k) / 8] >> ((pos + k) % 8)) & 1u) << k;
    return v;
}

static double ref_half(const uint8_t *p) {
    unsigned h = bits(p, 0, 16);
    int sign = (h >> 15) ? -1 : 1;
    int exp = (int)((h >> 10) & 31);
    unsigned mant = h & 1023;
    if (exp == 0) return sign * ldexp((double)mant, -24);
    return sign * ldexp((double)(1024 + mant), exp - 25);
}

static double ref_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)bits(p, 0, 16) | ((uint32_t)bits(p, 16, 16) << 16);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int sbyte(const uint8_t *p) { return (int)bits(p, 0, 8) - (bits(p, 7, 1) ? 256 : 0); }

// Element i of one block of type t starting at blk.
static double ref_element(DType t, const uint8_t *blk, int i) {
    switch (t) {
    case DT_F32: return ref_f32(blk);
    case DT_F16: return ref_half(blk);
    case DT_BF16: {
        uint32_t u = bits(blk, 0, 16) << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case DT_Q4_0: return ref_half(blk) * ((int)bits(blk + 2, 8 * (i % 16) + 4 * (i / 16), 4) - 8);
    case DT_Q4_1: return ref_half(blk) * bits(blk + 4, 8 * (i % 16) + 4 * (i / 16), 4) + ref_half(blk + 2);
    case DT_Q5_0: {
        int q = (int)(bits(blk + 6, 8 * (i % 16) + 4 * (i / 16), 4) | bits(blk + 2, (unsigned)i, 1) << 4);
        return ref_half(blk) * (q - 16);
    }
    case DT_Q5_1: {
        int q = (int)(bits(blk + 8, 8 * (i % 16) + 4 * (i / 16), 4) | bits(blk + 4, (unsigned)i, 1) << 4);
        return ref_half(blk) * q + ref_half(blk + 2);
    }
    case DT_Q8_0: return ref_half(blk) * sbyte(blk + 2 + i);
    case DT_Q8_K: return ref_f32(blk) * sbyte(blk + 4 + i);
    default: break;
    }
    // K-quants: half h, group g of 32 within the half, lane l.
    int h = i / 128, g = (i % 128) / 32, l = i % 32;
    switch (t) {
    case DT_Q2_K: { // scales[16] qs[64] d dmin
        unsigned sc = bits(blk, 8u * (unsigned)(i / 16), 8);
        int q = (int)bits(blk + 16, (unsigned)(8 * (32 * h + l) + 2 * g), 2);
        return ref_half(blk + 80) * (sc & 15) * q - ref_half(blk + 82) * (sc >> 4);
    }
    case DT_Q3_K: { // hmask[32] qs[64] scales[12] d
        int j = i / 16;
        const uint8_t *s = blk + 96;
        int sc = (int)(bits(s, (unsigned)(8 * (j % 8) + 4 * (j / 8)), 4) | bits(s, (unsigned)(8 * (8 + j % 4) + 2 * (j / 4)), 2) << 4);
        int q = (int)bits(blk + 32, (unsigned)(8 * (32 * h + l) + 2 * g), 2);
        int hbit = (int)bits(blk, (unsigned)(8 * l + i / 32), 1);
        return ref_half(blk + 108) * (sc - 32) * (q - (hbit ? 0 : 4));
    }
    case DT_Q4_K:
    case DT_Q5_K: { // d dmin scales[12] (qh[32]) qs[128]
        int j = i / 32;
        const uint8_t *s = blk + 4;
        unsigned sc, mn;
        if (j < 4) {
            sc = bits(s, (unsigned)(8 * j), 6);
            mn = bits(s, (unsigned)(8 * (j + 4)), 6);
        } else {
            sc = bits(s, (unsigned)(8 * (j + 4)), 4) | bits(s, (unsigned)(8 * (j - 4) + 6), 2) << 4;
            mn = bits(s, (unsigned)(8 * (j + 4) + 4), 4) | bits(s, (unsigned)(8 * j + 6), 2) << 4;
        }
        const uint8_t *qs = blk + (t == DT_Q4_K ? 16 : 48);
        unsigned q = bits(qs, (unsigned)(8 * (32 * (j / 2) + i % 32) + 4 * (j % 2)), 4);
        if (t == DT_Q5_K) q |= bits(blk + 16, (unsigned)(8 * (i % 32) + j), 1) << 4;
        return ref_half(blk) * sc * q - ref_half(blk + 2) * mn;
    }
    case DT_Q6_K: { // ql[128] qh[64] scales[16] d
        int lo = (int)bits(blk, (unsigned)(8 * (64 * h + 32 * (g % 2) + l) + 4 * (g / 2)), 4);
        int hi = (int)bits(blk + 128, (unsigned)(8 * (32 * h + l) + 2 * g), 2);
        return ref_half(blk + 208) * sbyte(blk + 192 + i / 16) * ((lo | hi << 4) - 32);
    }
    default: break;
    }
    return NAN;
}

// Byte offsets of the fp16 (or f32 for Q8_K) scale fields of a block, so random blocks can be made finite.
static int scale_fields(DType t, int off[2]) {
    switch (t) {
    case DT_F16: case DT_Q4_0: case DT_Q5_0: case DT_Q8_0: off[0] = 0; return 1;
    case DT_Q4_1: case DT_Q5_1: case DT_Q4_K: case DT_Q5_K: off[0] = 0; off[1] = 2; return 2;
    case DT_Q2_K: off[0] = 80; off[1] = 82; return 2;
    case DT_Q3_K: off[0] = 108; return 1;
    case DT_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

static void random_blocks(DType t, uint8_t *p, size_t nblocks) {
    const DTypeInfo *info = dtype_info(t);
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *blk = p + b * info->type_size;
        for (uint32_t k = 0; k < info->type_size; k++) blk[k] = (uint8_t)test_rand_u64();
        int off[2], nf = scale_fields(t, off);
        for (int f = 0; f < nf; f++)
            if ((blk[off[f] + 1] & 0x7c) == 0x7c) blk[off[f] + 1] &= 0xbf; // exponent 31 (inf/nan) -> 15 or below
        if (t == DT_F32 || t == DT_Q8_K) {
            if ((blk[3] & 0x7f) == 0x7f && (blk[2] & 0x80)) blk[3] &= 0xbf; // f32 exponent 255 -> finite
        }
        if (t == DT_BF16 && (blk[1] & 0x7f) == 0x7f && (blk[0] & 0x80)) blk[1] &= 0xbf;
    }
}

static const DType DECODE_TYPES[] = {DT_F32, DT_F16,  DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_1, DT_Q5_0,
                                     DT_Q5_1, DT_Q2_K, DT_Q3_K, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_Q8_K};
#define N_DECODE (sizeof DECODE_TYPES / sizeof DECODE_TYPES[0])

// Decode n elements with the production decoder and compare each with the reference, bit for bit. Returns mismatches.
static int compare_with_reference(DType t, const uint8_t *data, int64_t n) {
    const DTypeInfo *info = dtype_info(t);
    float *out = xmalloc((size_t)n * sizeof(float));
    Err e;
    int bad = 0;
    if (quant_dequantize_row(t, data, out, n, &e) != 0) {
        test_fail_at(__FILE__, __LINE__, "%s: %s", info->name, e.msg);
        free(out);
        return 1;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *blk = data + (size_t)(i / info->block_size) * info->type_size;
        float want = (float)ref_element(t, blk, (int)(i % info->block_size));
        if (memcmp(&want, &out[i], 4) != 0) {
            if (bad < 5)
                test_fail_at(__FILE__, __LINE__, "%s element %lld: got %.9g want %.9g", info->name, (long long)i,
                             (double)out[i], (double)want);
            bad++;
        }
    }
    free(out);
    return bad;
}

TEST(quant_dequantize_matches_reference_on_random_blocks) {
    for (size_t k = 0; k < N_DECODE; k++) {
        DType t = DECODE_TYPES[k];
        const DTypeInfo *info = dtype_info(t);
        REQUIRE(quant_can_dequantize(t));
        // 40 random blocks for the 256-element formats, 300 for the small ones, decoded as one row.
        size_t nblocks = info->block_size >= 256 ? 40 : info->block_size == 32 ? 300 : 4096;
        uint8_t *data = xmalloc(nblocks * info->type_size);
        random_blocks(t, data, nblocks);
        int bad = compare_with_reference(t, data, (int64_t)(nblocks * info->block_size));
        CHECKF(bad == 0, "%s: %d elements differ from the reference decoder", info->name, bad);
        free(data);
    }
}

TEST(quant_reference_decoder_sees_field_changes) {
    // Guard against a reference that agrees by reading nothing: flipping a quant bit must change exactly one element.
    uint8_t blk[144];
    random_blocks(DT_Q4_K, blk, 1);
    blk[0] = 0x00, blk[1] = 0x3c; // d = 1
    blk[4] |= 1;                  // scale 0 nonzero
    double before = ref_element(DT_Q4_K, blk, 0);
    blk[16] ^= 1; // lowest bit of element 0
    CHECK(ref_element(DT_Q4_K, blk, 0) != before);
    CHECK_EQ_INT(compare_with_reference(DT_Q4_K, blk, 256), 0);
}

TEST(quant_row_bytes_and_bad_sizes) {
    Err e;
    size_t nb;
    CHECK_EQ_INT(quant_row_bytes(DT_Q4_K, 512, &nb, &e), 0);
    CHECK_EQ_INT(nb, 288);
    CHECK_EQ_INT(quant_row_bytes(DT_Q8_0, 64, &nb, &e), 0);
    CHECK_EQ_INT(nb, 68);
    CHECK_EQ_INT(quant_row_bytes(DT_F16, 3, &nb, &e), 0);
    CHECK_EQ_INT(nb, 6);
    CHECK_EQ_INT(quant_row_bytes(DT_Q4_0, 33, &nb, &e), -1);
    CHECK(strstr(e.msg, "q4_0") && strstr(e.msg, "33"));
    CHECK_EQ_INT(quant_row_bytes(DT_Q6_K, -256, &nb, &e), -1);
    CHECK_EQ_INT(quant_row_bytes((DType)4, 32, &nb, &e), -1);
    CHECK_EQ_INT(quant_row_bytes(DT_F32, INT64_MAX, &nb, &e), -1); // overflows size_t
    CHECK(strstr(e.msg, "overflow") != NULL);

    float buf[300] = {0};
    uint8_t out[1024];
    CHECK_EQ_INT(quant_dequantize_row(DT_Q4_K, out, buf, 100, &e), -1);
    CHECK(strstr(e.msg, "100") && strstr(e.msg, "q4_K") && strstr(e.msg, "256"));
    CHECK_EQ_INT(quant_dequantize_row(DT_Q8_0, out, buf, 31, &e), -1);
    CHECK_EQ_INT(quant_quantize_row(DT_Q8_0, buf, out, 33, NULL, &e), -1);
    CHECK(strstr(e.msg, "33") != NULL);
    CHECK_EQ_INT(quant_quantize_row(DT_Q5_K, buf, out, 257, NULL, &e), -1);
    CHECK_EQ_INT(quant_quantize_row(DT_Q2_K, buf, out, 256, NULL, &e), -1);
    CHECK(strstr(e.msg, "not supported") != NULL);
    CHECK_EQ_INT(quant_dequantize_row(DT_IQ2_XXS, out, buf, 256, &e), -1);
    CHECK(strstr(e.msg, "iq2_xxs") != NULL);
    CHECK_EQ_INT(quant_dequantize_row((DType)5, out, buf, 32, &e), -1);
    CHECK_EQ_INT(quant_dequantize_row((DType)1000, out, buf, 32, &e), -1);
    buf[7] = NAN;
    CHECK_EQ_INT(quant_quantize_row(DT_Q4_0, buf, out, 32, NULL, &e), -1);
    CHECK(strstr(e.msg, "non-finite") && strstr(e.msg, "7"));
    buf[7] = 0;
    buf[3] = 1e12f; // the fp16 scale of a q8_0 block cannot hold 1e12 / 127
    CHECK_EQ_INT(quant_quantize_row(DT_Q8_0, buf, out, 32, NULL, &e), -1);
    CHECK(strstr(e.msg, "fp16") != NULL);
    buf[3] = 1e6f;
    CHECK_EQ_INT(quant_quantize_row(DT_F16, buf, out, 32, NULL, &e), -1);
    CHECK_EQ_INT(quant_quantize_row(DT_Q8_0, buf, out, 0, NULL, &e), 0); // empty row: nothing to do
}

// ---- quantization round trips ----

static void gaussian(float *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - test_rand_uniform(), u2 = test_rand_uniform(); // in (0, 1]: log finite
        double r = sqrt(-2 * log(u1)) * scale;
        x[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
}

// Relative RMSE of quantize -> dequantize; also checks the blocks decode the same through the reference decoder.
static double roundtrip_rel_rmse(DType t, const float *x, int64_t n, bool naive) {
    size_t nbytes;
    Err e;
    if (quant_row_bytes(t, n, &nbytes, &e)) return INFINITY;
    uint8_t *q = xmalloc(nbytes);
    float *y = xmalloc((size_t)n * sizeof(float));
    QuantOpts o = {.naive = naive};
    double rel = INFINITY;
    if (quant_quantize_row(t, x, q, n, &o, &e) == 0 && quant_dequantize_row(t, q, y, n, &e) == 0) {
        CHECKF(compare_with_reference(t, q, n) == 0, "%s: quantized blocks disagree with the reference decoder",
               dtype_name(t));
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; i++) {
            num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            den += (double)x[i] * x[i];
        }
        rel = sqrt(num / den);
    } else {
        test_fail_at(__FILE__, __LINE__, "%s: %s", dtype_name(t), e.msg);
    }
    free(q);
    free(y);
    return rel;
}

TEST(quant_roundtrip_error_bounds) {
    const int64_t n = 256 * 64;
    float *x = xmalloc((size_t)n * sizeof(float));
    gaussian(x, n, 0.02);
    double q8 = roundtrip_rel_rmse(DT_Q8_0, x, n, false), q8n = roundtrip_rel_rmse(DT_Q8_0, x, n, true);
    double q4 = roundtrip_rel_rmse(DT_Q4_0, x, n, false);
    double q4n = roundtrip_rel_rmse(DT_Q4_0, x, n, true);
    double k4 = roundtrip_rel_rmse(DT_Q4_K, x, n, false), k4n = roundtrip_rel_rmse(DT_Q4_K, x, n, true);
    double k5 = roundtrip_rel_rmse(DT_Q5_K, x, n, false), k5n = roundtrip_rel_rmse(DT_Q5_K, x, n, true);
    double k6 = roundtrip_rel_rmse(DT_Q6_K, x, n, false), k6n = roundtrip_rel_rmse(DT_Q6_K, x, n, true);
    double f16 = roundtrip_rel_rmse(DT_F16, x, n, false), bf16 = roundtrip_rel_rmse(DT_BF16, x, n, false);
    // Bounds: a uniform quantizer's error is step / sqrt(12); for Gaussian blocks the step is about
    // 2 * 2.2 sigma / levels (Q8_0: 0.53%, Q4_0: ~8%, Q4_K: ~7%, Q5_K: ~3.5%, Q6_K: ~1.7%), and the searches must
    // do better than plain min/max scales (measured: Q8_0 0.49%, Q4_0 8.1%, Q4_K 7.1%, Q5_K 3.6%, Q6_K 1.7%).
    CHECKF(q8 < 0.0053 && q8 < q8n, "q8_0 rel rmse %g (naive %g)", q8, q8n); // 0.0049-0.0050 over draws
    CHECKF(q4 < 0.10, "q4_0 rel rmse %g", q4);
    CHECKF(k4 < 0.085, "q4_K rel rmse %g", k4);
    CHECKF(k5 < 0.042, "q5_K rel rmse %g", k5);
    CHECKF(k6 < 0.021, "q6_K rel rmse %g", k6);
    CHECKF(k6 < k5 && k5 < k4, "K-quants not ordered: q6_K %g q5_K %g q4_K %g", k6, k5, k4);
    CHECKF(q4 < q4n, "q4_0 search %g not better than naive %g", q4, q4n);
    CHECKF(k4 < 0.97 * k4n, "q4_K search %g not better than naive %g", k4, k4n);
    CHECKF(k5 < 0.97 * k5n, "q5_K search %g not better than naive %g", k5, k5n);
    CHECKF(k6 < 0.97 * k6n, "q6_K search %g not better than naive %g", k6, k6n);
    CHECKF(f16 < 3e-4 && bf16 < 3e-3, "f16 %g bf16 %g", f16, bf16);
    if (getenv("LOSSY_TEST_VERBOSE"))
        printf("    rel rmse: q8_0 %.5f (naive %.5f)  q4_0 %.5f (naive %.5f)  q4_K %.5f (naive %.5f)  q5_K %.5f (naive %.5f)  "
               "q6_K %.5f (naive %.5f)\n", q8, q8n, q4, q4n, k4, k4n, k5, k5n, k6, k6n);
    free(x);
}

TEST(quant_roundtrip_edge_rows) {
    // Constant, all-zero, all-positive and one-spike rows must survive every encoder (no NaN, no division by zero).
    const DType types[] = {DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_Q8_K};
    float x[512], y[512];
    uint8_t q[1024];
    Err e;
    for (int pattern = 0; pattern < 5; pattern++) {
        for (int i = 0; i < 512; i++) {
            switch (pattern) {
            case 0: x[i] = 0; break;
            case 1: x[i] = 0.75f; break;
            case 2: x[i] = 1.0f + (float)(i % 17) * 0.01f; break; // all positive: min clamps to 0
            case 3: x[i] = i == 77 ? -3.0f : 0.001f * (float)(i % 5); break;
            default: x[i] = -1.0f - (float)(i % 7) * 0.1f; break; // all negative
            }
        }
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            REQUIRE(quant_quantize_row(types[k], x, q, 512, NULL, &e) == 0);
            REQUIRE(quant_dequantize_row(types[k], q, y, 512, &e) == 0);
            double num = 0, den = 1e-30;
            for (int i = 0; i < 512; i++) {
                CHECK(isfinite(y[i]));
                num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
                den += (double)x[i] * x[i];
            }
            CHECKF(sqrt(num / den) < 0.08 || (pattern == 0 && num == 0), "%s pattern %d rel rmse %g",
                   dtype_name(types[k]), pattern, sqrt(num / den));
            CHECK_EQ_INT(compare_with_reference(types[k], q, 512), 0);
        }
    }
}

TEST(quant_q8_k_bsums_and_half_types_exact) {
    float x[512], y[512];
    gaussian(x, 512, 3.0);
    BlockQ8_K b[2];
    Err e;
    REQUIRE(quant_quantize_row(DT_Q8_K, x, b, 512, NULL, &e) == 0);
    for (int k = 0; k < 32; k++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += b[k / 16].qs[16 * (k % 16) + l];
        CHECK_EQ_INT((int16_t)load_u16le(b[k / 16].bsums + 2 * (k % 16)), s);
    }
    // F16/BF16 encode is the exact round-to-nearest-even conversion.
    uint8_t h[1024];
    REQUIRE(quant_quantize_row(DT_F16, x, h, 512, NULL, &e) == 0);
    REQUIRE(quant_dequantize_row(DT_F16, h, y, 512, &e) == 0);
    for (int i = 0; i < 512; i++) CHECK(y[i] == fp16_to_fp32(fp32_to_fp16(x[i])));
    REQUIRE(quant_quantize_row(DT_BF16, x, h, 512, NULL, &e) == 0);
    REQUIRE(quant_dequantize_row(DT_BF16, h, y, 512, &e) == 0);
    for (int i = 0; i < 512; i++) CHECK(y[i] == bf16_to_fp32(fp32_to_bf16(x[i])));
}

TEST(quant_dequantize_real_gguf_f16_tensors) {
    const char *path = fixture_path("models/llama-2-tiny-random.gguf");
    REQUIRE(path);
    GGUFFile g;
    Err e;
    REQUIRE(gguf_open(&g, path, &e) == 0);
    size_t n_f16 = 0, n_checked = 0;
    for (size_t k = 0; k < g.n_tensors; k++) {
        const GGUFTensor *t = &g.tensors[k];
        if (t->type != DT_F16) continue;
        n_f16++;
        float *out = xmalloc(t->n_elements * sizeof(float));
        CHECK_EQ_INT(quant_dequantize_row(DT_F16, t->data, out, (int64_t)t->n_elements, &e), 0);
        const uint8_t *p = t->data;
        size_t bad = 0;
        for (uint64_t i = 0; i < t->n_elements; i++) {
            uint16_t hv = load_u16le(p + 2 * i);
            float want = fp16_to_fp32(hv);
            if (memcmp(&want, &out[i], 4) != 0 || (double)want != ref_half(p + 2 * i)) bad++;
        }
        CHECKF(bad == 0, "tensor %s: %zu elements differ", t->name, bad);
        n_checked += t->n_elements;
        free(out);
    }
    CHECKF(n_f16 > 0 && n_checked > 1000, "expected F16 tensors in %s (found %zu)", path, n_f16);
    gguf_close(&g);
}
