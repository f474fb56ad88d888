// test_attention.c — causal grouped-query attention: the batched forward against a naive double reference (full
// score matrix with an explicit mask), the backward against finite differences, sliding windows, and the KV-cache
// inference path fed token by token (and in chunks) against the batched forward's rows.
#include "kernels/attention.h"
#include "ops_check.h"
#include "test.h"

typedef struct AttnCtx {
    double *q, *k, *v; // (B, T, H, D), (B, T, KV, D), (B, T, KV, D)
    const float *r;    // (B, T, H, D)
    double *out;       // (B, T, H, D)
    int64_t B, T, H, KV, D, window;
} AttnCtx;

static void ref_attention(AttnCtx *c) {
    int64_t T = c->T, H = c->H, KV = c->KV, D = c->D;
    double *score = xmalloc_array(T * T, sizeof(double)); // (T, T) with -inf where masked
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t kvh = h * KV / H; // heads h*KV/H share a kv head: the grouping written another way
            for (int64_t t = 0; t < T; t++)
                for (int64_t s = 0; s < T; s++) {
                    bool visible = s <= t && (c->window == 0 || t - s < c->window);
                    double dot = 0.0;
                    for (int64_t d = 0; d < D; d++)
                        dot += c->q[((b * T + t) * H + h) * D + d] * c->k[((b * T + s) * KV + kvh) * D + d];
                    score[t * T + s] = visible ? dot / sqrt((double)D) : -INFINITY;
                }
            for (int64_t t = 0; t < T; t++) {
                double *row = score + t * T, m = -INFINITY, sum = 0.0;
                for (int64_t s = 0; s < T; s++) m = fmax(m, row[s]);
                for (int64_t s = 0; s < T; s++) sum += (row[s] = exp(row[s] - m)); // exp(-inf) = 0 when masked
                for (int64_t d = 0; d < D; d++) {
                    double o = 0.0;
                    for (int64_t s = 0; s < T; s++) o += row[s] / sum * c->v[((b * T + s) * KV + kvh) * D + d];
                    c->out[((b * T + t) * H + h) * D + d] = o;
                }
            }
        }
    free(score);
}

static double attn_loss(void *ctx) {
    AttnCtx *c = ctx;
    ref_attention(c);
    return ops_weighted_sum(c->out, c->r, c->B * c->T * c->H * c->D);
}

// Compare the entries i % step == 0 of an accumulated gradient with finite differences of the reference.
static void check_grad_sampled(const char *what, const float *got, const float *base, double *p, int64_t n,
                               int64_t step, AttnCtx *c) {
    int64_t m = (n + step - 1) / step;
    double *g = xmalloc_array(m, sizeof(double));
    float *gs = xmalloc_array(m, sizeof(float)), *bs = xmalloc_array(m, sizeof(float));
    for (int64_t j = 0; j < m; j++) {
        ops_fd_grad(g + j, p + j * step, 1, attn_loss, c);
        gs[j] = got[j * step];
        bs[j] = base[j * step];
    }
    OPS_CHECK_CLOSE(what, gs, bs, g, m, 1e-5);
    free(g), free(gs), free(bs);
}

// fd_step: finite differences on every fd_step-th element (1 = all) — long sequences have many inputs.
static void check_attention(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D, int64_t window, int64_t fd_step) {
    int64_t nq = B * T * H * D, nk = B * T * KV * D;
    float *q = ops_rand_new(nq, 1.5f), *k = ops_rand_new(nk, 1.5f), *v = ops_rand_new(nk, 1.0f);
    float *r = ops_rand_new(nq, 1.0f);
    float *out = xmalloc_array(nq, sizeof(float)), *att = xmalloc_array(B * H * T * T, sizeof(float));
    AttnCtx c = {ops_to_double(q, nq), ops_to_double(k, nk), ops_to_double(v, nk), r,
                 xmalloc_array(nq, sizeof(double)), B, T, H, KV, D, window};
    attention_forward(out, att, q, k, v, B, T, H, KV, D, window);
    ref_attention(&c);
    OPS_CHECK_CLOSE("attention forward", out, NULL, c.out, nq, 1e-6);
    double *want = ops_to_double(out, nq); // the batched result, for the cached path below
    float *out2 = xmalloc_array(nq, sizeof(float)); // without keeping probabilities: same numbers
    attention_forward(out2, NULL, q, k, v, B, T, H, KV, D, window);
    CHECK(memcmp(out, out2, (size_t)nq * sizeof(float)) == 0);

    float *dq = ops_rand_new(nq, 1.0f), *dk = ops_rand_new(nk, 1.0f), *dv = ops_rand_new(nk, 1.0f);
    float *dq0 = ops_copy(dq, nq), *dk0 = ops_copy(dk, nk), *dv0 = ops_copy(dv, nk);
    attention_backward(dq, dk, dv, r, q, k, v, att, B, T, H, KV, D, window);
    check_grad_sampled("attention dq", dq, dq0, c.q, nq, fd_step, &c);
    check_grad_sampled("attention dk", dk, dk0, c.k, nk, fd_step, &c);
    check_grad_sampled("attention dv", dv, dv0, c.v, nk, fd_step, &c);
    // Split into job ranges (as threads would): the same numbers, bit for bit.
    int64_t fj = B * H, bj = B * KV;
    attention_forward_range(out2, att, q, k, v, B, T, H, KV, D, window, 0, fj / 2 + 1);
    attention_forward_range(out2, att, q, k, v, B, T, H, KV, D, window, fj / 2 + 1, fj);
    CHECK(memcmp(out, out2, (size_t)nq * sizeof(float)) == 0);
    float *dq3 = ops_copy(dq0, nq), *dk3 = ops_copy(dk0, nk), *dv3 = ops_copy(dv0, nk);
    for (int64_t j = 0; j < bj; j++)
        attention_backward_range(dq3, dk3, dv3, r, q, k, v, att, B, T, H, KV, D, window, j, j + 1);
    CHECK(memcmp(dq3, dq, (size_t)nq * sizeof(float)) == 0);
    CHECK(memcmp(dk3, dk, (size_t)nk * sizeof(float)) == 0 && memcmp(dv3, dv, (size_t)nk * sizeof(float)) == 0);
    free(dq3), free(dk3), free(dv3);
    // Gradients requested one at a time are the same numbers.
    float *dv2 = ops_copy(dv0, nk);
    attention_backward(NULL, NULL, dv2, r, q, k, v, att, B, T, H, KV, D, window);
    CHECK(memcmp(dv2, dv, (size_t)nk * sizeof(float)) == 0);

    // KV-cache inference: per sequence, keys/values enter the cache as their tokens arrive (later rows are NaN, so
    // reading ahead would show), queries come one token at a time (the per-query path), then in chunks of 5 (the
    // blocked GEMM path at pos0 > 0).
    int64_t n_ctx = T + 5, row = KV * D;
    float *kc = xmalloc_array(n_ctx * row, sizeof(float)), *vc = xmalloc_array(n_ctx * row, sizeof(float));
    float *o1 = xmalloc_array(nq, sizeof(float));
    float *scratch = xmalloc_array(attention_cached_scratch_size(5, T, H), sizeof(float));
    for (int64_t chunk = 1; chunk <= 5; chunk += 4) {
        for (int64_t b = 0; b < B; b++) {
            for (int64_t i = 0; i < n_ctx * row; i++) kc[i] = vc[i] = NAN;
            for (int64_t t0 = 0; t0 < T; t0 += chunk) {
                int64_t n = t0 + chunk <= T ? chunk : T - t0;
                memcpy(kc + t0 * row, k + (b * T + t0) * row, (size_t)(n * row) * sizeof(float));
                memcpy(vc + t0 * row, v + (b * T + t0) * row, (size_t)(n * row) * sizeof(float));
                attention_forward_cached(o1 + (b * T + t0) * H * D, q + (b * T + t0) * H * D, kc, vc, n, t0, H, KV, D,
                                         window, chunk == 1 ? NULL : scratch);
            }
        }
        OPS_CHECK_CLOSE(chunk == 1 ? "cached attention, token by token" : "cached attention, chunks of 5", o1, NULL,
                        want, nq, 1e-6);
    }
    free(q), free(k), free(v), free(r), free(out), free(att), free(out2), free(dq), free(dk), free(dv), free(dq0);
    free(dk0), free(dv0), free(dv2), free(want), free(kc), free(vc), free(o1), free(scratch);
    free(c.q), free(c.k), free(c.v), free(c.out);
}

TEST(ops_attention_gqa_forward_backward_cache) {
    check_attention(2, 7, 4, 2, 5, 0, 1);   // grouped-query, odd head_dim
    check_attention(1, 6, 3, 3, 4, 0, 1);   // plain multi-head
    check_attention(2, 5, 4, 1, 3, 0, 1);   // multi-query
    check_attention(1, 9, 2, 1, 19, 0, 1);  // head_dim above the 16-wide dot unroll
    check_attention(1, 70, 2, 1, 8, 0, 7);  // more rows than one query block (64)
}

TEST(ops_attention_sliding_window) {
    check_attention(2, 8, 4, 2, 5, 3, 1);
    check_attention(1, 6, 2, 2, 4, 1, 1);   // each token sees only itself
    check_attention(1, 70, 2, 2, 4, 20, 5); // the second query block starts past the window
}
