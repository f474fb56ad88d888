// test_gpu_infer.c — the GPU model (`--device cuda`, src/cuda/infer_*.cu) against the CPU model, op for op.
//
// Every test needs a CUDA device and is SKIPPED (never passed) without one. Tolerances (relative L2 over all logits):
//   - F32 weights, decoding and prompt chunks: 1e-5 (both sides compute in fp32; only summation order differs).
//   - F16/BF16 weights, decoding: 1e-4 (f32 activations on both sides; the CPU and GPU kernels sum in different
//     orders over f16-exact products). Prompt chunks: 2e-2 (the GPU GEMM rounds activations to f16/bf16: relative
//     rounding 2^-11 / 2^-8 per element, accumulated over the layers).
//   - Q8_0/Q4_0 weights, decoding: 1e-4 (the GPU quantizes activations to int8 exactly as the CPU does, so the integer
//     dot products are identical; float scaling order differs). Prompt chunks: 5e-2 (the GPU multiplies the weights
//     dequantized to f16 with f16 activations, the CPU int8 activations: two different roundings of the same product).
//   - Batched decoding: bit-identical to stepping each sequence alone (same per-state arithmetic in the same order).
//   - Greedy text on stories260K: identical ids to the CPU for 200 steps.
//   - The split decode attention kernel alone (gpu_attn_decode_split_matches_reference): 1e-5 relative L2 against a
//     double-precision reference on random inputs, contexts 1 .. 5000 (one chunk up to 64 chunks), GQA/MHA, sliding
//     window; batched = alone bit for bit.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/convert.h"
#include "model/model.h"
#include "model/model_device.h"
#include "random_model.h"
#include "sample/sampler.h"
#include "test.h"
#ifdef LOSSY_CUDA
#include "cuda/cuda.h"
#endif

static void require_gpu(void) {
#ifdef LOSSY_CUDA
    char why[256] = "";
    if (cuda_device_count(why, sizeof why) < 1) TEST_SKIP("no CUDA device (%s)", why);
#else
    TEST_SKIP("lossy was built without CUDA");
#endif
}

// Loads path twice (CPU and GPU) and compares logits of ids fed one at a time (decoding) and as one prompt
// (model_forward_all: prompt chunks), each against the CPU doing the same.
static void compare_paths(const char *path, const int32_t *ids, int64_t n, double tol_decode, double tol_prompt) {
    Err e;
    Model mc, mg;
    REQUIREF(model_load(&mc, path, &e) == 0, "%s: %s", path, e.msg);
    REQUIREF(model_load_mapped(&mg, path, &e) == 0, "%s: %s", path, e.msg);
    REQUIREF(model_use_device(&mg, "cuda", &e) == 0, "%s: %s", path, e.msg);
    const int64_t V = mc.cfg.vocab_size;
    // the callers' ids are spread over [0, 1000); fold them into this model's vocabulary
    int32_t *ids_v = xmalloc_array((size_t)n, sizeof(int32_t));
    for (int64_t t = 0; t < n; t++) ids_v[t] = (int32_t)(ids[t] % V);
    ids = ids_v;
    ThreadPool *pool = threadpool_new(2);
    ModelState sc, sg;
    REQUIREF(model_state_init(&sc, &mc, 0, pool, &e) == 0, "%s", e.msg);
    REQUIREF(model_state_init(&sg, &mg, 0, pool, &e) == 0, "%s", e.msg);
    REQUIRE(n <= sc.n_ctx);
    float *lc = xmalloc_array((size_t)(n * V), sizeof(float)), *lg = xmalloc_array((size_t)(n * V), sizeof(float));
    for (int64_t t = 0; t < n; t++) {
        REQUIREF(model_forward(&sc, &ids[t], 1, &e) == 0, "%s", e.msg);
        REQUIREF(model_forward(&sg, &ids[t], 1, &e) == 0, "gpu: %s", e.msg);
        memcpy(lc + t * V, sc.logits, (size_t)V * sizeof(float));
        memcpy(lg + t * V, sg.logits, (size_t)V * sizeof(float));
    }
    CHECK_EQ_INT(sg.pos, n);
    double rd = test_rel_l2(lg, lc, (size_t)(n * V));
    CHECKF(rd <= tol_decode, "%s decoding: relative L2 %.3g > %.3g", path, rd, tol_decode);
    model_state_reset(&sc);
    model_state_reset(&sg);
    REQUIREF(model_forward_all(&sc, ids, n, lc, &e) == 0, "%s", e.msg);
    REQUIREF(model_forward_all(&sg, ids, n, lg, &e) == 0, "gpu: %s", e.msg);
    double rp = test_rel_l2(lg, lc, (size_t)(n * V));
    CHECKF(rp <= tol_prompt, "%s prompt: relative L2 %.3g > %.3g", path, rp, tol_prompt);
    // s->logits holds the last row, and decoding continues from the prompt's cache
    CHECK(memcmp(sg.logits, lg + (n - 1) * V, (size_t)V * sizeof(float)) == 0);
    int32_t next = sampler_argmax(sc.logits, V);
    REQUIREF(model_forward(&sc, &next, 1, &e) == 0, "%s", e.msg);
    REQUIREF(model_forward(&sg, &next, 1, &e) == 0, "gpu: %s", e.msg);
    double rn = test_rel_l2(sg.logits, sc.logits, (size_t)V);
    CHECKF(rn <= tol_prompt, "%s decode after prompt: relative L2 %.3g > %.3g", path, rn, tol_prompt);
    if (getenv("LOSSY_TEST_VERBOSE"))
        printf("    %s: decode %.3g, prompt %.3g, decode after prompt %.3g\n", path, rd, rp, rn);
    free(lc);
    free(lg);
    free(ids_v);
    model_state_free(&sc);
    model_state_free(&sg);
    threadpool_free(pool);
    model_free(&mc);
    model_free(&mg);
}

static void ids_for(int32_t *ids, int64_t n, int64_t V) {
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    ids[0] = 1;
}

// One HF fixture directory: 40 ids spread over [0, spread) (folded into the vocabulary), GPU against CPU.
static void fixture_matches_cpu(const char *name, int64_t spread, double tol_decode, double tol_prompt) {
    require_gpu();
    const char *p = fixture_path(name);
    REQUIRE(p);
    char path[4200];
    snprintf(path, sizeof path, "%s", p);
    int32_t ids[40];
    ids_for(ids, 40, spread);
    compare_paths(path, ids, 40, tol_decode, tol_prompt);
}

TEST(gpu_f32_llama_gqa_matches_cpu) { fixture_matches_cpu("hf/llama_gqa_f32", 1000, 1e-5, 1e-5); }
TEST(gpu_f32_gpt2_matches_cpu) { fixture_matches_cpu("hf/gpt2_f32", 1000, 1e-5, 1e-5); }
TEST(gpu_f16_mistral_matches_cpu) { fixture_matches_cpu("hf/mistral_vocab_f16", 32000, 1e-4, 2e-2); }

// The llama fixture converted in-process to dtype (rows that do not fit the blocks fall back to F16, which also
// exercises the GPU's row padding and its mixed-dtype f16 upload).
static void converted(DType t, double tol_decode, double tol_prompt) {
    require_gpu();
    const char *p = fixture_path("hf/llama_gqa_f32");
    REQUIRE(p);
    char src[4200], dst[4300];
    snprintf(src, sizeof src, "%s", p);
    snprintf(dst, sizeof dst, "%s/m.gguf", test_tmpdir());
    Err e;
    Model m;
    REQUIREF(model_load_mapped(&m, src, &e) == 0, "%s", e.msg);
    ConvertOpts o = {.dtype = t, .mix = CONVERT_MIX_NONE};
    REQUIREF(model_write_gguf(&m, NULL, dst, &o, &e) == 0, "%s", e.msg);
    model_free(&m);
    int32_t ids[40];
    ids_for(ids, 40, 1000);
    compare_paths(dst, ids, 40, tol_decode, tol_prompt);
}

TEST(gpu_bf16_matches_cpu) { converted(DT_BF16, 1e-4, 2e-2); }
TEST(gpu_q8_0_matches_cpu) { converted(DT_Q8_0, 1e-4, 5e-2); }
TEST(gpu_q4_0_matches_cpu) { converted(DT_Q4_0, 1e-4, 5e-2); }

TEST(gpu_greedy_stories260k_matches_cpu) {
    require_gpu();
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    char path[4200];
    snprintf(path, sizeof path, "%s", p);
    Err e;
    Model mc, mg;
    REQUIREF(model_load(&mc, path, &e) == 0, "%s", e.msg);
    REQUIREF(model_load_mapped(&mg, path, &e) == 0, "%s", e.msg);
    REQUIREF(model_use_device(&mg, "cuda", &e) == 0, "%s", e.msg);
    ModelState sc, sg;
    REQUIREF(model_state_init(&sc, &mc, 0, NULL, &e) == 0, "%s", e.msg);
    REQUIREF(model_state_init(&sg, &mg, 0, NULL, &e) == 0, "%s", e.msg);
    int32_t tc = 1, tg = 1;
    for (int i = 0; i < 200; i++) {
        REQUIREF(model_forward(&sc, &tc, 1, &e) == 0, "%s", e.msg);
        REQUIREF(model_forward(&sg, &tg, 1, &e) == 0, "gpu: %s", e.msg);
        tc = sampler_argmax(sc.logits, mc.cfg.vocab_size);
        tg = sampler_argmax(sg.logits, mg.cfg.vocab_size);
        REQUIREF(tc == tg, "step %d: cpu %d, gpu %d", i, tc, tg);
    }
    model_state_free(&sc);
    model_state_free(&sg);
    model_free(&mc);
    model_free(&mg);
}

// Three sequences with different histories stepped together = each stepped alone, bit for bit; for F32, F16 and Q4_0
// random models (the batched matvec reads each weight once for all states).
static void batch_vs_single(DType t) {
    require_gpu();
    Err e;
    Model m;
    REQUIRE(load_random_model(&m, "r", t));
    REQUIREF(model_use_device(&m, "cuda", &e) == 0, "%s", e.msg);
    const int64_t V = m.cfg.vocab_size;
    enum { S = 3 };
    ModelState a[S], b[S];
    ModelState *pa[S];
    for (int k = 0; k < S; k++) {
        REQUIREF(model_state_init(&a[k], &m, 64, NULL, &e) == 0, "%s", e.msg);
        REQUIREF(model_state_init(&b[k], &m, 64, NULL, &e) == 0, "%s", e.msg);
        pa[k] = &a[k];
        int32_t prompt[8];
        for (int i = 0; i < 3 + 2 * k; i++) prompt[i] = (int32_t)((17 * i + 5 * k + 1) % V);
        REQUIREF(model_forward(&a[k], prompt, 3 + 2 * k, &e) == 0, "%s", e.msg);
        REQUIREF(model_forward(&b[k], prompt, 3 + 2 * k, &e) == 0, "%s", e.msg);
    }
    for (int step = 0; step < 5; step++) {
        int32_t tok[S];
        for (int k = 0; k < S; k++) tok[k] = (int32_t)((31 * step + 7 * k + 3) % V);
        REQUIREF(model_forward_batch(pa, tok, S, &e) == 0, "%s", e.msg);
        for (int k = 0; k < S; k++) {
            REQUIREF(model_forward(&b[k], &tok[k], 1, &e) == 0, "%s", e.msg);
            CHECK_EQ_INT(a[k].pos, b[k].pos);
            CHECKF(memcmp(a[k].logits, b[k].logits, (size_t)V * sizeof(float)) == 0, "%s step %d state %d: batched != single (rel %.3g)",
                   dtype_name(t), step, k, test_rel_l2(a[k].logits, b[k].logits, (size_t)V));
        }
    }
    for (int k = 0; k < S; k++) model_state_free(&a[k]), model_state_free(&b[k]);
    model_free(&m);
}

TEST(gpu_batch_equals_single_f32) { batch_vs_single(DT_F32); }
TEST(gpu_batch_equals_single_f16) { batch_vs_single(DT_F16); }
TEST(gpu_batch_equals_single_q4_0) { batch_vs_single(DT_Q4_0); }

// ---- the split decode attention kernel against a double-precision reference ----

#ifdef LOSSY_CUDA
#include "cuda/infer.h"

#define ATTN_REF_MAX_HD 256
#define ATTN_REF_MAX_HALF (ATTN_REF_MAX_HD / 2)

// Rotate the pairs of x (rope_dim first values) at position pos, in double.
static void ref_rope(double *x, int rope, int64_t rope_dim, const double *inv_freq, int64_t pos) {
    const int64_t half = rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double ang = (double)pos * inv_freq[i], c = cos(ang), s = sin(ang);
        int64_t a = rope == 2 ? i : 2 * i, b = rope == 2 ? i + half : 2 * i + 1;
        double xa = x[a], xb = x[b];
        x[a] = xa * c - xb * s;
        x[b] = xa * s + xb * c;
    }
}

typedef struct {
    int64_t H, Hkv, hd, rope_dim, window;
    int rope;
} AttnCase;

// One sequence: out (H hd) of its token at pos over its cache (Hkv, n_ctx, hd) and its own roped k, v.
static void ref_attend(const AttnCase *c, const double *inv_freq, int64_t n_ctx, int64_t pos, const float *k, const float *v,
                       const float *qkv, double *out) {
    const int64_t H = c->H, Hkv = c->Hkv, hd = c->hd, G = H / Hkv;
    double *q = xmalloc_array((size_t)hd, sizeof(double)), *kc = xmalloc_array((size_t)hd, sizeof(double));
    double *p = xmalloc_array((size_t)(pos + 1), sizeof(double));
    const int64_t lo = c->window > 0 && pos - c->window + 1 > 0 ? pos - c->window + 1 : 0;
    for (int64_t h = 0; h < H; h++) {
        const int64_t g = h / G;
        for (int64_t d = 0; d < hd; d++) q[d] = qkv[h * hd + d], kc[d] = qkv[(H + g) * hd + d];
        if (c->rope) ref_rope(q, c->rope, c->rope_dim, inv_freq, pos), ref_rope(kc, c->rope, c->rope_dim, inv_freq, pos);
        double m = -INFINITY, sum = 0;
        for (int64_t t = lo; t <= pos; t++) {
            double s = 0;
            for (int64_t d = 0; d < hd; d++) s += q[d] * (t == pos ? kc[d] : (double)k[(g * n_ctx + t) * hd + d]);
            p[t] = s / sqrt((double)hd);
            if (p[t] > m) m = p[t];
        }
        for (int64_t t = lo; t <= pos; t++) sum += p[t] = exp(p[t] - m);
        for (int64_t d = 0; d < hd; d++) {
            double o = 0;
            for (int64_t t = lo; t <= pos; t++)
                o += p[t] * (t == pos ? (double)qkv[(H + Hkv + g) * hd + d] : (double)v[(g * n_ctx + t) * hd + d]);
            out[h * hd + d] = o / sum;
        }
    }
    free(q), free(kc), free(p);
}

// The sequences of ctx[] (cache n_ctx = max(ctx) + extra, token at position ctx - 1) launched together and one at a time:
// each against the double reference (relative L2 <= 1e-5 per sequence: float sums over up to 5000 keys; the cache at pos holds the roped key), and
// together == alone bit for bit (a sequence's chunking depends only on its own n_ctx).
static void check_attn(const AttnCase *c, const int64_t *ctx, int n, int64_t extra) {
    const int64_t H = c->H, Hkv = c->Hkv, hd = c->hd, QKV = (H + 2 * Hkv) * hd;
    double inv_freq[ATTN_REF_MAX_HALF];
    for (int64_t i = 0; i < c->rope_dim / 2; i++) inv_freq[i] = pow(10000.0, -2.0 * (double)i / (double)c->rope_dim);
    int64_t n_ctx[8], pos[8];
    float *k[8], *v[8], *k1[8], *v1[8];
    float *qkv = xmalloc_array((size_t)(n * QKV), sizeof(float));
    float *out = xmalloc_array((size_t)(n * H * hd), sizeof(float)), *out1 = xmalloc_array((size_t)(H * hd), sizeof(float));
    double *ref = xmalloc_array((size_t)(H * hd), sizeof(double));
    for (int i = 0; i < n; i++) {
        n_ctx[i] = ctx[i] + extra, pos[i] = ctx[i] - 1;
        const size_t nel = (size_t)(Hkv * n_ctx[i] * hd);
        k[i] = xmalloc_array(nel, sizeof(float)), v[i] = xmalloc_array(nel, sizeof(float));
        k1[i] = xmalloc_array(nel, sizeof(float)), v1[i] = xmalloc_array(nel, sizeof(float));
        for (size_t j = 0; j < nel; j++) k[i][j] = 2 * test_rand_uniform() - 1, v[i][j] = 2 * test_rand_uniform() - 1;
        memcpy(k1[i], k[i], nel * sizeof(float)), memcpy(v1[i], v[i], nel * sizeof(float));
    }
    for (int64_t j = 0; j < n * QKV; j++) qkv[j] = 2 * test_rand_uniform() - 1;
    // scaled-up queries make the softmax peaked (its max subtraction and the chunk combine matter)
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < H * hd; j++) qkv[i * QKV + j] *= 3.0f;
    Err e;
    REQUIREF(cuda_attn_decode_run(H, Hkv, hd, c->rope, c->rope_dim, inv_freq, c->window, n, n_ctx, pos, k, v, qkv, out, &e) == 0,
             "%s", e.msg);
    for (int i = 0; i < n; i++) {
        // reference from the original cache (k1/v1 still hold it; position pos is the token's own k, v)
        ref_attend(c, inv_freq, n_ctx[i], pos[i], k1[i], v1[i], qkv + i * QKV, ref);
        double num = 0, den = 0;
        for (int64_t j = 0; j < H * hd; j++) {
            double d = (double)out[i * H * hd + j] - ref[j];
            num += d * d, den += ref[j] * ref[j];
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        CHECKF(rel <= 1e-5, "H %lld Hkv %lld hd %lld ctx %lld window %lld: relative L2 %.3g", (long long)H, (long long)Hkv, (long long)hd,
               (long long)ctx[i], (long long)c->window, rel);
        // the cache now holds the token's key (roped) and value at pos
        double kr[ATTN_REF_MAX_HD];
        for (int64_t g = 0; g < Hkv; g++) {
            for (int64_t d = 0; d < hd; d++) kr[d] = qkv[i * QKV + (H + g) * hd + d];
            if (c->rope) ref_rope(kr, c->rope, c->rope_dim, inv_freq, pos[i]);
            for (int64_t d = 0; d < hd; d++) {
                const size_t at = (size_t)((g * n_ctx[i] + pos[i]) * hd + d);
                CHECKF(fabs(k[i][at] - kr[d]) <= 1e-5, "stored key %lld.%lld: %g vs %g", (long long)g, (long long)d, k[i][at], kr[d]);
                CHECKF(v[i][at] == qkv[i * QKV + (H + Hkv + g) * hd + d], "stored value %lld.%lld", (long long)g, (long long)d);
            }
        }
        // alone (a launch sized for this sequence only) = together
        REQUIREF(cuda_attn_decode_run(H, Hkv, hd, c->rope, c->rope_dim, inv_freq, c->window, 1, &n_ctx[i], &pos[i], &k1[i], &v1[i],
                                      qkv + i * QKV, out1, &e) == 0, "%s", e.msg);
        CHECKF(memcmp(out1, out + i * H * hd, (size_t)(H * hd) * sizeof(float)) == 0, "ctx %lld: batched != alone", (long long)ctx[i]);
    }
    for (int i = 0; i < n; i++) free(k[i]), free(v[i]), free(k1[i]), free(v1[i]);
    free(qkv), free(out), free(out1), free(ref);
}
#endif

TEST(gpu_attn_decode_split_matches_reference) {
    require_gpu();
#ifdef LOSSY_CUDA
    static const int64_t ctx[] = {1, 7, 64, 1000, 5000};
    // GQA with neox rope (TinyLlama's shape per KV head); extra = 0: the token at the last position of its cache
    AttnCase gqa = {.H = 8, .Hkv = 2, .hd = 64, .rope_dim = 64, .window = 0, .rope = 2};
    check_attn(&gqa, ctx, 5, 0);
    // caches longer than the context (idle chunks), interleaved partial rope, MHA, a head size that is not a multiple of 4
    AttnCase mha = {.H = 3, .Hkv = 3, .hd = 10, .rope_dim = 6, .window = 0, .rope = 1};
    check_attn(&mha, ctx, 5, 3000);
    // sliding window: chunks before the window are skipped
    AttnCase win = {.H = 4, .Hkv = 1, .hd = 32, .rope_dim = 32, .window = 300, .rope = 2};
    check_attn(&win, ctx, 5, 17);
#endif
}
