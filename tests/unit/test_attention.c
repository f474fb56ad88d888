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
                double m = -INFINITY, sum = 0.0;
                for (int64_t s = 0; s < T; s++) m = fmax(m, score[t * T + s]);
                for (int64_t s = 0; s < T; s++) sum += exp(score[t * T + s] - m);
                for (int64_t d = 0; d < D; d++) {
                    double o = 0.0;
                    for (int64_t s = 0; s < T; s++)
                        o += exp(score[t * T + s] - m) / sum * c->v[((b * T + s) * KV + kvh) * D + d];
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

static void check_attention(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D, int64_t window) {
    int64_t nq = B * T * H * D, nk = B * T * KV * D;
    float *q = ops_rand_new(nq, 1.5f), *k = ops_rand_new(nk, 1.5f), *v = ops_rand_new(nk, 1.0f);
    float *r = ops_rand_new(nq, 1.0f);
    float *out = xmalloc_array(nq, sizeof(float)), *att = xmalloc_array(B * H * T * T, sizeof(float));
    AttnCtx c = {ops_to_double(q, nq), ops_to_double(k, nk), ops_to_double(v, nk), r,
                 xmalloc_array(nq, sizeof(double)), B, T, H, KV, D, window};
    attention_forward(out, att, q, k, v, B, T, H, KV, D, window);
    ref_attention(&c);
    OPS_CHECK_CLOSE("attention forward", out, NULL, c.out, nq, 1e-6);
    float *out2 = xmalloc_array(nq, sizeof(float)); // without keeping probabilities: same numbers
    attention_forward(out2, NULL, q, k, v, B, T, H, KV, D, window);
    CHECK(memcmp(out, out2, (size_t)nq * sizeof(float)) == 0);

    float *dq = ops_rand_new(nq, 1.0f), *dk = ops_rand_new(nk, 1.0f), *dv = ops_rand_new(nk, 1.0f);
    float *dq0 = ops_copy(dq, nq), *dk0 = ops_copy(dk, nk), *dv0 = ops_copy(dv, nk);
    attention_backward(dq, dk, dv, r, q, k, v, att, B, T, H, KV, D, window);
    double *g = xmalloc_array(nq, sizeof(double));
    ops_fd_grad(g, c.q, nq, attn_loss, &c);
    OPS_CHECK_CLOSE("attention dq", dq, dq0, g, nq, 1e-5);
    ops_fd_grad(g, c.k, nk, attn_loss, &c);
    OPS_CHECK_CLOSE("attention dk", dk, dk0, g, nk, 1e-5);
    ops_fd_grad(g, c.v, nk, attn_loss, &c);
    OPS_CHECK_CLOSE("attention dv", dv, dv0, g, nk, 1e-5);

    // KV-cache inference: per sequence, keys/values enter the cache as their tokens arrive (later rows are NaN, so
    // reading ahead would show), queries come one token at a time, then in chunks of 3.
    int64_t n_ctx = T + 3, row = KV * D;
    float *kc = xmalloc_array(n_ctx * row, sizeof(float)), *vc = xmalloc_array(n_ctx * row, sizeof(float));
    float *o1 = xmalloc_array(H * D * 3, sizeof(float));
    float *scratch = xmalloc_array(attention_cached_scratch_size(3, T, H), sizeof(float));
    for (int64_t chunk = 1; chunk <= 3; chunk += 2) {
        for (int64_t b = 0; b < B; b++) {
            for (int64_t i = 0; i < n_ctx * row; i++) kc[i] = vc[i] = NAN;
            for (int64_t t0 = 0; t0 < T; t0 += chunk) {
                int64_t n = t0 + chunk <= T ? chunk : T - t0;
                memcpy(kc + t0 * row, k + (b * T + t0) * row, (size_t)(n * row) * sizeof(float));
                memcpy(vc + t0 * row, v + (b * T + t0) * row, (size_t)(n * row) * sizeof(float));
                attention_forward_cached(o1, q + (b * T + t0) * H * D, kc, vc, n, t0, H, KV, D, window,
                                         chunk == 1 ? NULL : scratch);
                CHECKF(memcmp(o1, out + (b * T + t0) * H * D, (size_t)(n * H * D) * sizeof(float)) == 0,
                       "cached attention (chunk %lld) differs from the batched forward at b=%lld t=%lld",
                       (long long)chunk, (long long)b, (long long)t0);
            }
        }
    }
    free(q), free(k), free(v), free(r), free(out), free(att), free(out2), free(dq), free(dk), free(dv), free(dq0);
    free(dk0), free(dv0), free(g), free(kc), free(vc), free(o1), free(scratch);
    free(c.q), free(c.k), free(c.v), free(c.out);
}

TEST(ops_attention_gqa_forward_backward_cache) {
    check_attention(2, 7, 4, 2, 5, 0); // grouped-query, odd head_dim
    check_attention(1, 6, 3, 3, 4, 0); // plain multi-head
    check_attention(2, 5, 4, 1, 3, 0); // multi-query
    check_attention(1, 9, 2, 1, 19, 0); // head_dim above the 16-wide dot unroll
}

TEST(ops_attention_sliding_window) {
    check_attention(2, 8, 4, 2, 5, 3);
    check_attention(1, 6, 2, 2, 4, 1); // each token sees only itself
}
