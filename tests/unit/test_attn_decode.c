// test_attn_decode.c — one token's grouped attention over a KV cache (src/kernels/attn_decode.c) against a
// double-precision reference: random queries/keys/values, odd head sizes and group sizes, sliding windows; and the
// activation quantization of the int8 kernels (matvec_quantize_act) giving the same bits on every path.
#include <math.h>
#include <stdlib.h>

#include "kernels/attn_decode.h"
#include "kernels/matvec.h"
#include "test.h"

static float urand(void) { return 2.0f * test_rand_uniform() - 1.0f; }

// Reference: query row qr (hd) at position t, keys/values (n_ctx, hd) position-major, in double.
static void reference(double *o, const float *qr, const float *k, const float *v, int64_t t, int64_t hd, int64_t window) {
    int64_t lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
    double m = -INFINITY, sum = 0, p[512];
    for (int64_t s = lo; s <= t; s++) {
        double d = 0;
        for (int64_t i = 0; i < hd; i++) d += (double)qr[i] * k[s * hd + i];
        p[s] = d / sqrt((double)hd);
        m = fmax(m, p[s]);
    }
    for (int64_t s = lo; s <= t; s++) sum += (p[s] = exp(p[s] - m));
    for (int64_t i = 0; i < hd; i++) {
        o[i] = 0;
        for (int64_t s = lo; s <= t; s++) o[i] += p[s] / sum * v[s * hd + i];
    }
}

// rows queries of G heads at positions pos0 .. pos0 + rows - 1: the decoding kernel for rows == 1 (and each row on
// its own), the chunk kernel for the block; both against the reference.
static void check_case(int64_t G, int64_t hd, int64_t pos0, int64_t rows, int64_t window) {
    const int64_t n_ctx = pos0 + rows + 3, ldk = n_ctx + 5, ldq = G * hd + 7;
    float *q = xmalloc_array((size_t)(rows * ldq), sizeof(float)), *k = xmalloc_array((size_t)(n_ctx * hd), sizeof(float));
    float *kt = xmalloc_array((size_t)(hd * ldk), sizeof(float)), *v = xmalloc_array((size_t)(n_ctx * hd), sizeof(float));
    float *out = xmalloc_array((size_t)(rows * ldq), sizeof(float)), *out1 = xmalloc_array((size_t)(G * hd), sizeof(float));
    int64_t need = attn_chunk_scratch_size(rows, pos0 + rows);
    if (attn_decode_scratch_size(G, pos0 + rows) > need) need = attn_decode_scratch_size(G, pos0 + rows);
    float *scratch = xmalloc_array((size_t)need, sizeof(float));
    for (int64_t i = 0; i < rows * ldq; i++) q[i] = 3.0f * urand();
    for (int64_t i = 0; i < n_ctx * hd; i++) k[i] = urand(), v[i] = urand();
    for (int64_t i = (pos0 + rows) * hd; i < n_ctx * hd; i++) k[i] = v[i] = NAN; // past the last token: never read
    for (int64_t d = 0; d < hd; d++)
        for (int64_t s = 0; s < ldk; s++) kt[d * ldk + s] = s < n_ctx ? k[s * hd + d] : NAN;
    attn_chunk_group(out, ldq, q, ldq, kt, ldk, v, pos0, rows, G, hd, window, scratch);
    double o[512];
    for (int64_t r = 0; r < rows; r++) {
        attn_decode_group(out1, q + r * ldq, kt, ldk, v, pos0 + r, G, hd, window, scratch);
        for (int64_t g = 0; g < G; g++) {
            reference(o, q + r * ldq + g * hd, k, v, pos0 + r, hd, window);
            for (int64_t i = 0; i < hd; i++) {
                double tol = 2e-6 + 2e-6 * fabs(o[i]);
                CHECKF(fabs(out1[g * hd + i] - o[i]) <= tol && fabs(out[r * ldq + g * hd + i] - o[i]) <= tol,
                       "G %lld hd %lld pos %lld window %lld head %lld dim %lld: decode %.9g, chunk %.9g, reference %.9g",
                       (long long)G, (long long)hd, (long long)(pos0 + r), (long long)window, (long long)g, (long long)i,
                       out1[g * hd + i], out[r * ldq + g * hd + i], o[i]);
            }
        }
    }
    free(q), free(k), free(kt), free(v), free(out), free(out1), free(scratch);
}

TEST(attn_decode_matches_reference) {
    check_case(1, 64, 0, 1, 0);    // one key
    check_case(1, 64, 37, 1, 0);
    check_case(8, 64, 100, 3, 0);  // GQA group of 8
    check_case(3, 17, 20, 9, 0);   // odd head size
    check_case(4, 80, 50, 30, 7);  // sliding window shorter than the block
    check_case(2, 128, 5, 64, 40); // window longer than the history, a full block from near the start
    check_case(2, 32, 0, 45, 0);   // a block from position 0
}

static const KernelPath PATHS[] = {KERNEL_SCALAR, KERNEL_AVX2, KERNEL_AVX512};

TEST(act_quantization_same_bits_every_path) {
    const int64_t n = 768;
    float *x = xmalloc_array((size_t)n, sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = urand() * (i % 50 == 0 ? 40.0f : 1.0f);
    for (int64_t i = 256; i < 288; i++) x[i] = 0;                 // an all-zero block
    for (int64_t i = 300; i < 320; i++) x[i] = (float)(i - 310) * 0.5f; // exact halves: ties to even
    x[301] = 127.0f * 3, x[302] = -127.0f * 3;
    for (int bsi = 0; bsi < 2; bsi++) {
        int bs = bsi ? 256 : 32;
        int8_t q[3][768];
        float d[3][24];
        int16_t s16[3][48];
        Err e;
        int have = 0;
        for (int p = 0; p < 3; p++) {
            if (!matvec_path_available(PATHS[p])) continue;
            REQUIRE(matvec_force_path(PATHS[p], &e) == 0);
            matvec_quantize_act(x, n, bs, q[p], d[p], s16[p]);
            have |= 1 << p;
            // against the definition
            for (int64_t b = 0; b < n / bs; b++) {
                float amax = 0;
                for (int i = 0; i < bs; i++) amax = fmaxf(amax, fabsf(x[b * bs + i]));
                CHECK(d[p][b] == amax / 127.0f);
                for (int i = 0; i < bs; i++) {
                    float want = amax > 0 ? nearbyintf(x[b * bs + i] * (127.0f / amax)) : 0.0f;
                    CHECKF(q[p][b * bs + i] == (int8_t)want, "%s bs %d: q[%lld] = %d, want %g", matvec_path_name(PATHS[p]), bs,
                           (long long)(b * bs + i), q[p][b * bs + i], want);
                }
            }
            for (int64_t g = 0; g < n / 16; g++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += q[p][16 * g + i];
                CHECK_EQ_INT(s16[p][g], sum);
            }
            if (p > 0 && (have & 1)) {
                CHECK(memcmp(q[0], q[p], (size_t)n) == 0);
                CHECK(memcmp(d[0], d[p], sizeof(float) * (size_t)(n / bs)) == 0);
            }
        }
        REQUIRE(matvec_force_path(KERNEL_AUTO, &e) == 0);
    }
    free(x);
}
