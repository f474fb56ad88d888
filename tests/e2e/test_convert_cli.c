// test_convert_cli.c — `lossy convert` then `lossy logits` on every Hugging Face fixture: the converted GGUF gives
// the reference logits (F32 ≤ 1e-5, F16 storage ≤ 1e-4 relative L2), and quantized conversions stay within the
// documented tolerances of the reference. Also: `lossy logits` writes a valid .npy, and bad arguments fail clearly.
#include <jansson.h>
#include <stdlib.h>

#include "formats/npy.h"
#include "test.h"

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

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
            double rel_err = rel_l2(got, want, (size_t)(rows * cols)), tol = f16_src ? TOLS[k].tol_f16_src : TOLS[k].tol_f32_src;
            CHECKF(rel_err <= tol, "%s as %s: relative L2 %.3g > %.3g", rel, TOLS[k].dtype, rel_err, tol);
            if (getenv("LOSSY_TEST_VERBOSE")) printf("    %s as %s: relative L2 %.3g\n", rel, TOLS[k].dtype, rel_err);
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
