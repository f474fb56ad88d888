// test_wpanel.c — the panel product of F32, F16 and BF16 weights (wpanel.h): against a double-precision product
// on random inputs with odd shapes, and the properties decoding and serving rely on: an output is the same bits
// whatever rows share the call (1 sequence, several, a prompt block), whatever the column split across threads, on
// the portable path as on the AVX-512 one, and for F16/BF16 weights as for their exact F32 widening.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/wpanel.h"
#include "test.h"

typedef struct Case {
    int64_t n, k, m;
} Case;

// W (n, k) as stored in type t (rows k elements apart), and w32 its exact widening.
static uint8_t *make_weights(DType t, int64_t n, int64_t k, float *w32) {
    const size_t es = t == DT_F32 ? 4 : 2;
    uint8_t *w = xmalloc_array((size_t)(n * k), es);
    for (int64_t i = 0; i < n * k; i++) {
        float v = 2.0f * test_rand_uniform() - 1.0f;
        if (t == DT_F32) {
            memcpy(w + (size_t)i * 4, &v, 4);
            w32[i] = v;
        } else {
            uint16_t h = t == DT_F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
            memcpy(w + (size_t)i * 2, &h, 2);
            w32[i] = t == DT_F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
        }
    }
    return w;
}

static void check_case(DType t, Case c) {
    const int64_t n = c.n, k = c.k, m = c.m;
    const size_t es = t == DT_F32 ? 4 : 2;
    float *w = xmalloc_array((size_t)(n * k), sizeof(float));
    float *xbuf = xmalloc_array((size_t)(m * k), sizeof(float));
    uint8_t *stored = make_weights(t, n, k, w);
    for (int64_t i = 0; i < m * k; i++) xbuf[i] = (2.0f * test_rand_uniform() - 1.0f) * (i % 29 == 0 ? 8.0f : 1.0f);
    size_t bytes = wpanel_bytes(t, n, k);
    REQUIRE(bytes >= (size_t)(n * k) * es);
    uint8_t *panels = xmalloc(bytes);
    wpanel_pack(t, panels, stored, (size_t)k * es, n, k);
    uint8_t *back = xmalloc((size_t)k * es);
    for (int64_t r = 0; r < n; r++) { // each row unpacked: the stored bits again
        memset(back, 0xAB, (size_t)k * es);
        wpanel_unpack_row(t, panels, k, r, back);
        CHECK(memcmp(back, stored + (size_t)r * (size_t)k * es, (size_t)k * es) == 0);
    }
    free(back);
    float *act = xmalloc_array(wpanel_act_floats(m, k), sizeof(float)), *act1 = xmalloc_array(wpanel_act_floats(1, k), sizeof(float));
    const float **x = xmalloc_array((size_t)m, sizeof *x);
    float **y = xmalloc_array((size_t)m, sizeof *y), **y1 = xmalloc_array((size_t)m, sizeof *y1);
    // outputs with a guard column on each side: nothing outside [r0, r1) may be written
    float *ybuf = xmalloc_array((size_t)(m * (n + 2)), sizeof(float)), *y1buf = xmalloc_array((size_t)(m * (n + 2)), sizeof(float));
    for (int64_t s = 0; s < m; s++) x[s] = xbuf + s * k, y[s] = ybuf + s * (n + 2) + 1, y1[s] = y1buf + s * (n + 2) + 1;
    for (int64_t i = 0; i < m * (n + 2); i++) ybuf[i] = y1buf[i] = -7.0f;

    // all rows at once (packed in two parts, as two threads would), columns split at a multiple of 32
    int64_t groups = wpanel_act_groups(m), split = n / 2 / WPANEL_NR * WPANEL_NR;
    wpanel_act_pack(act, x, m, k, 0, groups / 2);
    wpanel_act_pack(act, x, m, k, groups / 2, groups);
    wpanel_rows(t, panels, n, k, 0, split, m, act, y);
    wpanel_rows(t, panels, n, k, split, n, m, act, y);
    double worst = 0;
    for (int64_t s = 0; s < m; s++) {
        CHECK(y[s][-1] == -7.0f && y[s][n] == -7.0f);
        for (int64_t r = 0; r < n; r++) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) ref += (double)w[r * k + i] * x[s][i], mag += fabs((double)w[r * k + i] * x[s][i]);
            double err = fabs(y[s][r] - ref) / (mag + 1e-30);
            if (err > worst) worst = err;
        }
    }
    CHECK(worst < 1e-5);

    // each row alone, over the whole range: the same bits
    for (int64_t s = 0; s < m; s++) {
        wpanel_act_pack(act1, &x[s], 1, k, 0, 1);
        wpanel_rows(t, panels, n, k, 0, n, 1, act1, &y1[s]);
        CHECK(memcmp(y[s], y1[s], (size_t)n * sizeof(float)) == 0);
    }
    // the portable path: the same bits as well
    wpanel_force_portable(true);
    for (int64_t i = 0; i < m * (n + 2); i++) y1buf[i] = -7.0f;
    wpanel_rows(t, panels, n, k, 0, n, m, act, y1);
    wpanel_force_portable(false);
    for (int64_t s = 0; s < m; s++) CHECK(memcmp(y[s], y1[s], (size_t)n * sizeof(float)) == 0);

    if (t != DT_F32) { // half-width panels: the bits of their F32 widening, decoding and prompt block alike
        uint8_t *p32 = xmalloc(wpanel_bytes(DT_F32, n, k));
        wpanel_pack(DT_F32, p32, w, (size_t)k * sizeof(float), n, k);
        for (int64_t i = 0; i < m * (n + 2); i++) y1buf[i] = -7.0f;
        wpanel_rows(DT_F32, p32, n, k, 0, n, m, act, y1);
        for (int64_t s = 0; s < m; s++) CHECK(memcmp(y[s], y1[s], (size_t)n * sizeof(float)) == 0);
        wpanel_act_pack(act1, &x[0], 1, k, 0, 1);
        wpanel_rows(DT_F32, p32, n, k, 0, n, 1, act1, &y1[0]);
        CHECK(memcmp(y[0], y1[0], (size_t)n * sizeof(float)) == 0);
        free(p32);
    }
    free(w), free(stored), free(xbuf), free(panels), free(act), free(act1), free(x), free(y), free(y1), free(ybuf), free(y1buf);
}

TEST(wpanel_matches_reference_and_is_row_independent) {
    // odd sizes: partial last panel, k not a multiple of anything, more rows than one tile (14), a block split,
    // several panel pairs for the two-stream decoding tile (and an odd panel count after them)
    const Case cases[] = {{1, 1, 1},     {31, 7, 1},     {33, 65, 3},     {96, 256, 8},  {70, 300, 15},
                          {257, 129, 30}, {64, 2200, 29}, {200, 1000, 1}, {161, 77, 1}};
    const DType types[] = {DT_F32, DT_F16, DT_BF16};
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(types[t], cases[i]);
}

TEST(wpanel_bytes_overflow) {
    CHECK(wpanel_bytes(DT_F32, 0, 5) == 0);
    CHECK(wpanel_bytes(DT_F32, INT64_MAX / 2, INT64_MAX / 2) == 0);
    CHECK(wpanel_bytes(DT_F16, INT64_MAX / 2, INT64_MAX / 4) == 0);
    CHECK(wpanel_bytes(DT_F32, 33, 2) == 2 * 2 * 32 * sizeof(float));
    CHECK(wpanel_bytes(DT_BF16, 33, 2) == 2 * 2 * 32 * 2);
    CHECK(wpanel_bytes(DT_Q8_0, 32, 32) == 0); // not a panel type
    CHECK(!wpanel_supports(DT_Q4_0) && wpanel_supports(DT_F16));
}
