// test_model_batch.c — the batched paths of the forward pass: prompt chunks (model_forward / model_forward_all over
// several tokens, through the token-block GEMM) and multi-state decoding steps (model_forward_batch).
//
//   - chunks against Hugging Face transformers on every fixture, with the same tolerances as token-by-token decoding;
//   - chunks of random-weight models in every compute dtype against token-by-token decoding of the same file (each
//     GEMM path forced in turn), and the same bits for 1 and 2 threads;
//   - model_forward_batch: each state gets the same bits as stepping it alone, for several thread counts.
#include <jansson.h>
#include <stdlib.h>

#include "formats/gguf.h"
#include "formats/npy.h"
#include "kernels/quant.h"
#include "kernels/wgemm.h"
#include "model/model.h"
#include "random_model.h"
#include "test.h"

static void check_chunks_hf(const char *dir_rel, double tol) {
    const char *dir = fixture_path(dir_rel);
    REQUIRE(dir);
    char path[4300], dirbuf[4200];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir);
    snprintf(path, sizeof path, "%s/ref.json", dirbuf);
    json_t *ref = json_load_file(path, 0, NULL);
    REQUIREF(ref, "cannot read %s", path);
    Err e;
    float *want = NULL;
    int64_t rows, cols;
    snprintf(path, sizeof path, "%s/ref_logits.npy", dirbuf);
    REQUIREF(npy_read_f32(path, &want, &rows, &cols, &e) == 0, "%s", e.msg);
    json_t *ids = json_object_get(ref, "input_ids");
    int64_t n = (int64_t)json_array_size(ids);
    REQUIRE(n == rows && n > 2);
    int32_t *tok = xmalloc_array((size_t)n, sizeof *tok);
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)json_integer_value(json_array_get(ids, (size_t)i));
    Model m;
    REQUIREF(model_load(&m, dirbuf, &e) == 0, "%s", e.msg);
    float *got[2];
    for (int th = 1; th <= 2; th++) {
        ThreadPool *pool = threadpool_new(th);
        ModelState s;
        REQUIRE(model_state_init(&s, &m, 0, pool, &e) == 0);
        got[th - 1] = xmalloc_array((size_t)(n * cols), sizeof(float));
        // two calls: the second chunk starts mid-sequence, on a warm cache
        int64_t first = n / 3;
        REQUIREF(model_forward_all(&s, tok, first, got[th - 1], &e) == 0, "%s", e.msg);
        REQUIREF(model_forward_all(&s, tok + first, n - first, got[th - 1] + first * cols, &e) == 0, "%s", e.msg);
        CHECK(memcmp(s.logits, got[th - 1] + (n - 1) * cols, (size_t)cols * sizeof(float)) == 0);
        CHECK_EQ_INT(s.pos, n);
        model_state_free(&s);
        threadpool_free(pool);
    }
    double rel = test_rel_l2(got[1], want, (size_t)(n * cols));
    CHECKF(rel <= tol, "%s: chunked logits relative L2 error %.3g > %.3g", dir_rel, rel, tol);
    CHECKF(memcmp(got[0], got[1], (size_t)(n * cols) * sizeof(float)) == 0, "%s: 1 and 2 threads differ", dir_rel);
    if (getenv("LOSSY_TEST_VERBOSE")) printf("    %s: chunked relative L2 logit error %.3g\n", dir_rel, rel);
    free(got[0]), free(got[1]), free(tok), free(want);
    json_decref(ref);
    model_free(&m);
}

TEST(model_chunks_match_transformers) {
    check_chunks_hf("hf/llama_gqa_f32", 1e-5);
    check_chunks_hf("hf/gpt2_f32", 1e-5);
    check_chunks_hf("hf/mistral_vocab_f16", 1e-4);
}

static void token_logits(const char *path, const int32_t *tok, int64_t n, float *out) {
    Err e;
    Model m;
    REQUIREF(model_load(&m, path, &e) == 0, "%s", e.msg);
    ModelState s;
    REQUIRE(model_state_init(&s, &m, 256, NULL, &e) == 0);
    for (int64_t i = 0; i < n; i++) {
        REQUIRE(model_forward(&s, &tok[i], 1, &e) == 0);
        memcpy(out + i * m.cfg.vocab_size, s.logits, (size_t)m.cfg.vocab_size * sizeof(float));
    }
    model_state_free(&s);
    model_free(&m);
}

// Chunked logits of a random model against token-by-token decoding of the same file, and both against the exact
// model (weights dequantized to F32): int8 activations make the quantized paths differ from each other by their
// rounding (one flipped activation quant moves a product by a quantum, and random weights amplify that), so the
// chunks must be as close to the exact model as token-by-token decoding is, and close to it in absolute terms.
static void check_chunks_vs_tokens(DType t, double tol) {
    char path[4200], exact[4200];
    snprintf(path, sizeof path, "%s/m_%s.gguf", test_tmpdir(), dtype_name(t));
    snprintf(exact, sizeof exact, "%s/m_%s_f32.gguf", test_tmpdir(), dtype_name(t));
    Err e;
    REQUIREF(write_random_model(path, t, exact, 2, &e) == 0, "%s", e.msg);
    Model m;
    REQUIREF(model_load(&m, path, &e) == 0, "%s", e.msg);
    const int64_t n = 150, V = m.cfg.vocab_size; // two chunks, the second short
    int32_t tok[150];
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
    ThreadPool *pool = threadpool_new(2);
    ModelState s;
    REQUIRE(model_state_init(&s, &m, 256, pool, &e) == 0);
    float *ref = xmalloc_array((size_t)(n * V), sizeof(float)), *got = xmalloc_array((size_t)(n * V), sizeof(float));
    float *ex = xmalloc_array((size_t)(n * V), sizeof(float));
    token_logits(path, tok, n, ref);
    token_logits(exact, tok, n, ex);
    double tok_err = test_rel_l2(ref, ex, (size_t)(n * V));
    const WgemmPath paths[] = {WGEMM_F32, WGEMM_AMX};
    for (int p = 0; p < 2; p++) {
        if (!wgemm_path_available(paths[p])) continue;
        REQUIRE(wgemm_force_path(paths[p], &e) == 0);
        model_state_reset(&s);
        REQUIREF(model_forward_all(&s, tok, n, got, &e) == 0, "%s", e.msg);
        double rel = test_rel_l2(got, ref, (size_t)(n * V)), ch_err = test_rel_l2(got, ex, (size_t)(n * V));
        CHECKF(rel <= tol, "%s (%s path): chunked vs token-by-token relative L2 %.3g > %.3g", dtype_name(t),
               wgemm_path_name(paths[p]), rel, tol);
        CHECKF(ch_err <= 1.5 * tok_err + 1e-5, "%s (%s path): chunks are %.3g from the exact model, tokens %.3g",
               dtype_name(t), wgemm_path_name(paths[p]), ch_err, tok_err);
        if (getenv("LOSSY_TEST_VERBOSE"))
            printf("    %s %s: chunked vs tokens %.3g; vs exact: chunks %.3g, tokens %.3g\n", dtype_name(t),
                   wgemm_path_name(paths[p]), rel, ch_err, tok_err);
        // model_forward over the same prompt ends with the same state: its last logits (through the decoding
        // product) match the chunk's last row
        model_state_reset(&s);
        REQUIRE(model_forward(&s, tok, n, &e) == 0);
        CHECK(test_rel_l2(s.logits, got + (n - 1) * V, (size_t)V) <= tol);
        // one thread gives the same bits
        ThreadPool *one = threadpool_new(1);
        ModelState s1;
        REQUIRE(model_state_init(&s1, &m, 256, one, &e) == 0);
        REQUIRE(model_forward(&s1, tok, n, &e) == 0);
        CHECKF(memcmp(s.logits, s1.logits, (size_t)V * sizeof(float)) == 0, "%s: threads change the result", dtype_name(t));
        model_state_free(&s1);
        threadpool_free(one);
    }
    REQUIRE(wgemm_force_path(WGEMM_AUTO, &e) == 0);
    free(ref), free(got), free(ex);
    model_state_free(&s);
    threadpool_free(pool);
    model_free(&m);
}

// The f32 weights and float activations of both paths agree closely; int8 activations (matvec: blocks of 32 for
// Q8_0/Q4_0, 256 for K-quants; AMX: 32; f32 GEMM: none) differ by the activation rounding.
TEST(model_chunks_match_tokens_f32_f16_bf16) {
    check_chunks_vs_tokens(DT_F32, 1e-5);
    check_chunks_vs_tokens(DT_F16, 1e-5);
    check_chunks_vs_tokens(DT_BF16, 1e-5);
}
TEST(model_chunks_match_tokens_q8_0_q4_0) {
    check_chunks_vs_tokens(DT_Q8_0, 3e-2);
    check_chunks_vs_tokens(DT_Q4_0, 3e-2);
}
TEST(model_chunks_match_tokens_k_quants) {
    check_chunks_vs_tokens(DT_Q4_K, 3e-2);
    check_chunks_vs_tokens(DT_Q5_K, 3e-2);
    check_chunks_vs_tokens(DT_Q6_K, 3e-2);
}

// model_forward_batch against stepping each state alone: the same bits, whatever the thread count.
static void check_batch_equals_single(DType t) {
    Err e;
    Model m;
    REQUIRE(load_random_model(&m, "b", t));
    enum { S = 3, STEPS = 5 };
    const int64_t V = m.cfg.vocab_size;
    for (int th = 1; th <= 3; th += 2) {
        ThreadPool *pool = threadpool_new(th);
        ModelState a[S], b[S];
        ModelState *pa[S];
        for (int k = 0; k < S; k++) {
            REQUIRE(model_state_init(&a[k], &m, 64, pool, &e) == 0);
            REQUIRE(model_state_init(&b[k], &m, 64, pool, &e) == 0);
            pa[k] = &a[k];
            // different prompt lengths, so the states sit at different positions
            int32_t prompt[8];
            for (int i = 0; i < 3 + 2 * k; i++) prompt[i] = (int32_t)((k * 31 + i * 7 + 1) % V);
            REQUIRE(model_forward(&a[k], prompt, 3 + 2 * k, &e) == 0);
            REQUIRE(model_forward(&b[k], prompt, 3 + 2 * k, &e) == 0);
        }
        for (int step = 0; step < STEPS; step++) {
            int32_t tok[S];
            for (int k = 0; k < S; k++) tok[k] = (int32_t)((step * 13 + k * 5 + 2) % V);
            REQUIREF(model_forward_batch(pa, tok, S, &e) == 0, "%s", e.msg);
            for (int k = 0; k < S; k++) {
                REQUIRE(model_forward(&b[k], &tok[k], 1, &e) == 0);
                CHECKF(memcmp(a[k].logits, b[k].logits, (size_t)V * sizeof(float)) == 0,
                       "%s, %d threads, step %d, state %d: batch differs from single", dtype_name(t), th, step, k);
                CHECK_EQ_INT(a[k].pos, b[k].pos);
            }
        }
        // misuse is refused, not computed
        ModelState *twice[2] = {&a[0], &a[0]};
        int32_t two[2] = {1, 2};
        CHECK(model_forward_batch(twice, two, 2, &e) != 0 && strstr(e.msg, "twice"));
        int32_t badtok[S] = {1, (int32_t)V, 2};
        CHECK(model_forward_batch(pa, badtok, S, &e) != 0 && strstr(e.msg, "vocabulary"));
        for (int k = 0; k < S; k++) model_state_free(&a[k]), model_state_free(&b[k]);
        threadpool_free(pool);
    }
    model_free(&m);
}

TEST(model_forward_batch_equals_single) {
    check_batch_equals_single(DT_F32);
    check_batch_equals_single(DT_F16);
    check_batch_equals_single(DT_BF16);
    check_batch_equals_single(DT_Q4_0);
    check_batch_equals_single(DT_Q6_K);
}

// A prompt fed in pieces of at least two tokens (the server's per-step prefill budget) leaves the same state as one
// call: every piece goes through the token-block path, whose per-token results do not depend on the block, so the
// last logits and the following decoding steps are the same bits.
static void check_prompt_pieces(DType t) {
    Err e;
    Model m;
    REQUIRE(load_random_model(&m, "p", t));
    const int64_t V = m.cfg.vocab_size, n = 150;
    int32_t tok[150];
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)((i * 29 + 3) % V);
    static const int64_t splits[][4] = {{64, 86, 0}, {2, 62, 64, 22}, {30, 30, 90, 0}, {129, 21, 0}, {5, 145, 0}};
    ThreadPool *pool = threadpool_new(2);
    ModelState whole, part;
    REQUIRE(model_state_init(&whole, &m, 256, pool, &e) == 0);
    REQUIRE(model_state_init(&part, &m, 256, pool, &e) == 0);
    REQUIRE(model_forward(&whole, tok, n, &e) == 0);
    int32_t next = 7;
    float *want = xmalloc_array((size_t)(2 * V), sizeof(float));
    memcpy(want, whole.logits, (size_t)V * sizeof(float));
    REQUIRE(model_forward(&whole, &next, 1, &e) == 0);
    memcpy(want + V, whole.logits, (size_t)V * sizeof(float));
    for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++) {
        model_state_reset(&part);
        int64_t at = 0;
        for (int i = 0; i < 4 && splits[k][i]; i++) {
            REQUIREF(model_forward(&part, tok + at, splits[k][i], &e) == 0, "%s", e.msg);
            at += splits[k][i];
        }
        REQUIRE(at == n);
        CHECKF(memcmp(part.logits, want, (size_t)V * sizeof(float)) == 0, "%s, split %zu: prompt logits differ", dtype_name(t), k);
        REQUIRE(model_forward(&part, &next, 1, &e) == 0);
        CHECKF(memcmp(part.logits, want + V, (size_t)V * sizeof(float)) == 0, "%s, split %zu: next step differs", dtype_name(t), k);
    }
    free(want);
    model_state_free(&whole);
    model_state_free(&part);
    threadpool_free(pool);
    model_free(&m);
}

TEST(model_prompt_in_pieces_equals_whole) {
    check_prompt_pieces(DT_F32);
    check_prompt_pieces(DT_F16);
    check_prompt_pieces(DT_Q8_0);
    check_prompt_pieces(DT_Q4_K);
}

// model_forward_multi: a pass mixing decoding rows and prompt pieces of several sequences leaves each sequence with
// the same bits as model_forward_batch (its decoding rows) and model_forward (each piece alone) — with panels (F32,
// F16, BF16: one shared pass) and for a type that takes the fallback — over three passes with changing mixes, 1 and 2 threads.
static void check_multi(DType t) {
    Err e;
    Model m;
    REQUIRE(load_random_model(&m, "multi", t));
    const int64_t V = m.cfg.vocab_size;
    enum { S = 4, PASSES = 3 };
    // per pass, tokens per sequence (1 = a decoding step); every sequence first gets a 3-token prompt on its own
    static const int64_t plan[PASSES][S] = {{1, 5, 1, 2}, {1, 1, 40, 1}, {3, 1, 1, 70}};
    for (int th = 1; th <= 2; th++) {
        ThreadPool *pool = threadpool_new(th);
        ModelState a[S], b[S];
        ModelState *pa[S], *pb[S];
        for (int k = 0; k < S; k++) {
            REQUIRE(model_state_init(&a[k], &m, 256, pool, &e) == 0);
            REQUIRE(model_state_init(&b[k], &m, 256, pool, &e) == 0);
            pa[k] = &a[k], pb[k] = &b[k];
            int32_t start[3] = {(int32_t)(k + 1), (int32_t)(k + 5), (int32_t)(k + 9)};
            REQUIRE(model_forward(&a[k], start, 3, &e) == 0 && model_forward(&b[k], start, 3, &e) == 0);
        }
        int32_t tok[256];
        for (int pass = 0; pass < PASSES; pass++) {
            int64_t r = 0;
            for (int k = 0; k < S; k++)
                for (int64_t i = 0; i < plan[pass][k]; i++) tok[r++] = (int32_t)((pass * 131 + k * 17 + i * 7 + 1) % V);
            REQUIREF(model_forward_multi(pa, tok, plan[pass], S, &e) == 0, "%s", e.msg);
            // reference: the decoding rows in one batch, each prompt piece alone
            ModelState *dec[S];
            int32_t dtok[S];
            int n_dec = 0;
            r = 0;
            for (int k = 0; k < S; r += plan[pass][k++]) {
                if (plan[pass][k] == 1) dec[n_dec] = pb[k], dtok[n_dec++] = tok[r];
                else REQUIRE(model_forward(pb[k], tok + r, plan[pass][k], &e) == 0);
            }
            REQUIRE(model_forward_batch(dec, dtok, n_dec, &e) == 0);
            for (int k = 0; k < S; k++) {
                CHECKF(memcmp(a[k].logits, b[k].logits, (size_t)V * sizeof(float)) == 0, "%s, %d threads, pass %d, sequence %d: logits differ",
                       dtype_name(t), th, pass, k);
                CHECK_EQ_INT(a[k].pos, b[k].pos);
            }
        }
        int64_t bad[S] = {1, 0, 1, 1};
        CHECK(model_forward_multi(pa, tok, bad, S, &e) != 0 && strstr(e.msg, "no tokens"));
        for (int k = 0; k < S; k++) model_state_free(&a[k]), model_state_free(&b[k]);
        threadpool_free(pool);
    }
    model_free(&m);
}

TEST(model_forward_multi_equals_batch_and_pieces) {
    check_multi(DT_F32);
    check_multi(DT_F16);
    check_multi(DT_BF16);
    check_multi(DT_Q8_0);
}
