// test_convert_cli.c — `lossy convert` then `lossy logits` on every Hugging Face fixture: the converted GGUF gives
// the reference logits (F32 ≤ 1e-5, F16 storage ≤ 1e-4 relative L2), and quantized conversions stay within the
// documented tolerances of the reference, from the load-time copies (panels, x4 groups; a tied embedding looked up
// in them) and from the plain mapped file (LOSSY_REPACK=0) alike: the two read the weights through different kernels
// (the prompt of a Q8_0 file: int8 products with quantized activations from the x4 copy, f32 from the mapped rows),
// so they agree to the dtype's tolerance, not bit for bit. Also: `lossy logits` writes a valid .npy, bad arguments fail clearly, and a model
// converted without a tokenizer carries llama.cpp's no-vocabulary marker and runs by ids.
#include <jansson.h>
#include <stdlib.h>

#include "formats/gguf.h"
#include "formats/npy.h"
#include "test.h"

// Documented tolerances (relative L2 vs transformers' float32 logits) for the fixtures' random weights.
typedef struct {
    const char *dtype;
    double tol_f32_src; // fixture stored in F32
    double tol_f16_src; // fixture stored in F16
} Tol;
static const Tol TOLS[] = {
    {"f32", 1e-5, 1e-4},
    {"f16", 3e-3, 1e-4},
    {"bf16", 2e-2, 2e-2},
    {"q8_0", 6e-2, 6e-2},
    {"q4_0", 0.5, 0.5},
};

static void check_dir(const char *rel, bool f16_src) {
    const char *p = fixture_path(rel);
    REQUIRE(p);
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_t *ref = json_load_file(path, 0, NULL);
    REQUIRE(ref);
    Buf ids;
    buf_init(&ids);
    json_t *in = json_object_get(ref, "input_ids");
    for (size_t i = 0; i < json_array_size(in); i++) buf_printf(&ids, i ? ",%lld" : "%lld", (long long)json_integer_value(json_array_get(in, i)));
    float *want;
    int64_t rows, cols;
    Err e;
    snprintf(path, sizeof path, "%s/ref_logits.npy", dir);
    REQUIREF(npy_read_f32(path, &want, &rows, &cols, &e) == 0, "%s", e.msg);
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    for (size_t k = 0; k < sizeof TOLS / sizeof *TOLS; k++) {
        char gguf[4300], npy[4300];
        snprintf(gguf, sizeof gguf, "%s/m.%s.gguf", test_tmpdir(), TOLS[k].dtype);
        snprintf(npy, sizeof npy, "%s/m.%s.npy", test_tmpdir(), TOLS[k].dtype);
        err.len = 0;
        int rc = run_lossy(NULL, &out, &err, "convert", dir, gguf, "--dtype", TOLS[k].dtype, NULL);
        CHECKF(rc == 0, "convert %s to %s: %s", rel, TOLS[k].dtype, err.data ? err.data : "");
        if (rc) continue;
        rc = run_lossy(NULL, &out, &err, "logits", gguf, "--ids", ids.data, "--out", npy, NULL);
        CHECKF(rc == 0, "logits %s %s: %s", rel, TOLS[k].dtype, err.data ? err.data : "");
        if (rc) continue;
        float *got;
        int64_t r2, c2;
        REQUIRE(npy_read_f32(npy, &got, &r2, &c2, &e) == 0);
        CHECK(r2 == rows && c2 == cols);
        if (r2 == rows && c2 == cols) {
            double rel_err = test_rel_l2(got, want, (size_t)(rows * cols)), tol = f16_src ? TOLS[k].tol_f16_src : TOLS[k].tol_f32_src;
            CHECKF(rel_err <= tol, "%s as %s: relative L2 %.3g > %.3g", rel, TOLS[k].dtype, rel_err, tol);
            if (getenv("LOSSY_TEST_VERBOSE")) printf("    %s as %s: relative L2 %.3g\n", rel, TOLS[k].dtype, rel_err);
        }
        char npy_mapped[4400];
        snprintf(npy_mapped, sizeof npy_mapped, "%s.mapped.npy", npy);
        REQUIRE(setenv("LOSSY_REPACK", "0", 1) == 0); // tests run forked: the setting ends with this test
        rc = run_lossy(NULL, &out, &err, "logits", gguf, "--ids", ids.data, "--out", npy_mapped, NULL);
        unsetenv("LOSSY_REPACK");
        CHECKF(rc == 0, "logits (mapped) %s %s: %s", rel, TOLS[k].dtype, err.data ? err.data : "");
        float *mapped;
        if (rc == 0 && npy_read_f32(npy_mapped, &mapped, &r2, &c2, &e) == 0) {
            CHECK(r2 == rows && c2 == cols);
            if (r2 == rows && c2 == cols) {
                double tol = f16_src ? TOLS[k].tol_f16_src : TOLS[k].tol_f32_src, d = test_rel_l2(mapped, want, (size_t)(rows * cols));
                CHECKF(d <= tol, "%s as %s, mapped file: relative L2 %.3g > %.3g", rel, TOLS[k].dtype, d, tol);
                d = test_rel_l2(got, mapped, (size_t)(rows * cols));
                CHECKF(d <= tol, "%s as %s: copies vs mapped file, relative L2 %.3g > %.3g", rel, TOLS[k].dtype, d, tol);
                if (getenv("LOSSY_TEST_VERBOSE")) printf("    %s as %s: copies vs mapped %.3g\n", rel, TOLS[k].dtype, d);
            }
            free(mapped);
        }
        free(got);
    }
    free(want);
    buf_free(&ids);
    buf_free(&out);
    buf_free(&err);
    json_decref(ref);
}

TEST(convert_llama_gqa_then_logits) { check_dir("hf/llama_gqa_f32", false); }
TEST(convert_gpt2_then_logits) { check_dir("hf/gpt2_f32", false); }
TEST(convert_mistral_f16_then_logits) { check_dir("hf/mistral_vocab_f16", true); }

TEST(logits_and_convert_usage_errors) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "logits", "models/stories260K.gguf", "--out", "/tmp/x.npy", NULL), 2);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "logits", "models/stories260K.gguf", "--ids", "1,x", "--out", "/tmp/x.npy", NULL), 2);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "logits", "models/stories260K.gguf", "--ids", "1,99999", "--out", "/tmp/x.npy", NULL), 1);
    CHECK(err.data && strstr(err.data, "outside the vocabulary"));
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "convert", "models/stories260K.gguf", "/tmp/x.gguf", "--dtype", "q9", NULL), 2);
    // a GGUF → GGUF conversion keeps the tokenizer and gives the same greedy text
    char conv[4300];
    snprintf(conv, sizeof conv, "%s/s.gguf", test_tmpdir());
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "convert", "models/stories260K.gguf", conv, "--dtype", "f32", NULL), 0);
    Buf a, b;
    buf_init(&a);
    buf_init(&b);
    CHECK_EQ_INT(run_lossy(NULL, &a, &err, "run", "models/stories260K.gguf", "--temp", "0", "-n", "40", NULL), 0);
    CHECK_EQ_INT(run_lossy(NULL, &b, &err, "run", conv, "--temp", "0", "-n", "40", NULL), 0);
    CHECK(a.data && b.data && strcmp(a.data, b.data) == 0);
    buf_free(&a);
    buf_free(&b);
    buf_free(&out);
    buf_free(&err);
}

// Whether the GGUF at path has tokenizer.ggml.model == want.
static bool gguf_tokenizer_model_is(const char *path, const char *want) {
    GGUFFile g;
    Err e;
    if (gguf_open(&g, path, &e)) return false;
    GStr s;
    bool ok = gguf_get_str(&g, "tokenizer.ggml.model", &s, &e) == 0 && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
    gguf_close(&g);
    return ok;
}

// A Hugging Face directory without tokenizer files converts to a GGUF that llama.cpp loads: tokenizer.ggml.model is
// "no_vocab" (llama.cpp refuses a file without the key) next to <arch>.vocab_size, and a tied GPT-2 carries
// output.weight (llama.cpp's gpt2 requires it). lossy runs the file by ids, gives transformers' greedy tokens (up
// to the first near-tie), refuses text prompts clearly; converting it again with --tokenizer adds a vocabulary.
static void check_no_vocab(const char *rel, const char *arch) {
    const char *p = fixture_path(rel);
    REQUIRE(p);
    char dir[4200], path[4300], gguf[4300];
    snprintf(dir, sizeof dir, "%s", p);
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_t *ref = json_load_file(path, 0, NULL);
    REQUIRE(ref);
    snprintf(gguf, sizeof gguf, "%s/nv.gguf", test_tmpdir());
    Buf out, err, ids;
    buf_init(&out);
    buf_init(&err);
    buf_init(&ids);
    REQUIREF(run_lossy(NULL, &out, &err, "convert", dir, gguf, "--dtype", "f32", NULL) == 0, "%s", err.data ? err.data : "");
    CHECKF(gguf_tokenizer_model_is(gguf, "no_vocab"), "%s: tokenizer.ggml.model is not \"no_vocab\"", rel);
    GGUFFile g;
    Err e;
    REQUIREF(gguf_open(&g, gguf, &e) == 0, "%s", e.msg);
    char key[128];
    snprintf(key, sizeof key, "%s.vocab_size", arch);
    uint64_t vocab = 0;
    CHECKF(gguf_get_uint(&g, key, &vocab, &e) == 0, "%s", e.msg);
    const GGUFTensor *embd = gguf_find_tensor(&g, "token_embd.weight");
    CHECK(embd && (uint64_t)embd->ne[1] == vocab);
    CHECKF(gguf_find_tensor(&g, "output.weight"), "%s: no output.weight", rel);
    gguf_close(&g);

    json_t *in = json_object_get(ref, "input_ids"), *seq = json_object_get(ref, "greedy_sequence");
    json_t *margins = json_object_get(ref, "greedy_top2_margins");
    size_t n_in = json_array_size(in), n_gen = json_array_size(seq) - n_in;
    for (size_t i = 0; i < n_in; i++) buf_printf(&ids, i ? ",%lld" : "%lld", (long long)json_integer_value(json_array_get(in, i)));
    char n[16];
    snprintf(n, sizeof n, "%zu", n_gen);
    out.len = err.len = 0;
    int rc = run_lossy(NULL, &out, &err, "run", gguf, "--ids", ids.data, "--print-ids", "--temp", "0", "-n", n, NULL);
    CHECKF(rc == 0, "run --ids: %s", err.data ? err.data : "");
    const char *s = out.data ? out.data : "";
    for (size_t k = 0; k < n_gen && rc == 0; k++) {
        char *end;
        long long got = strtoll(s, &end, 10);
        if (end == s) {
            CHECKF(false, "%s: only %zu of %zu ids printed", rel, k, n_gen);
            break;
        }
        s = end;
        long long want = json_integer_value(json_array_get(seq, n_in + k));
        if (got != want) {
            // a different token is legitimate only where the reference's top two were nearly tied
            double margin = json_number_value(json_array_get(margins, k));
            CHECKF(margin <= 1e-3, "%s: step %zu: %lld, reference %lld (top-2 margin %.3g)", rel, k, got, want, margin);
            break;
        }
    }
    // a text prompt needs a vocabulary
    out.len = err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "run", gguf, "-p", "hello", "-n", "2", NULL), 1);
    CHECKF(err.data && strstr(err.data, "no vocabulary"), "%s", err.data ? err.data : "");
    // a GGUF source without a vocabulary takes the one --tokenizer names (stories260K: the same 512 tokens)
    if (vocab == 512) {
        const char *tp = fixture_path("models/stories260K.gguf");
        REQUIRE(tp);
        char tok[4300], withtok[4300];
        snprintf(tok, sizeof tok, "%s", tp);
        snprintf(withtok, sizeof withtok, "%s/tok.gguf", test_tmpdir());
        out.len = err.len = 0;
        CHECK_EQ_INT(run_lossy(NULL, &out, &err, "convert", gguf, withtok, "--dtype", "f32", "--tokenizer", tok, NULL), 0);
        CHECKF(gguf_tokenizer_model_is(withtok, "llama"), "%s: --tokenizer not written", rel);
        out.len = err.len = 0;
        CHECK_EQ_INT(run_lossy(NULL, &out, &err, "run", withtok, "-p", "Once", "-n", "2", "--temp", "0", NULL), 0);
    }
    // a --tokenizer that does not load is an error, not a file silently written without one
    snprintf(path, sizeof path, "%s/none.gguf", test_tmpdir());
    out.len = err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "convert", gguf, path, "--tokenizer", "/nonexistent/tokenizer.bin", NULL), 1);
    CHECK(!path_exists(path));
    buf_free(&out);
    buf_free(&err);
    buf_free(&ids);
    json_decref(ref);
}

TEST(convert_without_tokenizer_gpt2) { check_no_vocab("hf/gpt2_f32", "gpt2"); }
TEST(convert_without_tokenizer_llama) { check_no_vocab("hf/llama_gqa_f32", "llama"); }
