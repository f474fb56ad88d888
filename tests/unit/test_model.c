// test_model.c — the forward pass against Hugging Face transformers: logits at every position of the reference
// prompt, and the greedy continuation (where the reference's top-2 margin is large enough to be meaningful).
#include <jansson.h>
#include <stdlib.h>

#include "model/model.h"
#include "sample/sampler.h"
#include "test.h"

// Minimal .npy reader for the fixtures: little-endian f4, C order, 2-D.
static float *load_npy_f32(const char *path, int64_t *rows, int64_t *cols) {
    char *data;
    size_t len;
    Err e;
    if (file_read_all(path, &data, &len, &e)) return NULL;
    if (len < 10 || memcmp(data, "\x93NUMPY", 6) != 0) { free(data); return NULL; }
    size_t hlen = (uint8_t)data[8] | ((size_t)(uint8_t)data[9] << 8), off = 10 + hlen;
    const char *shape = strstr(data + 10, "'shape': (");
    if (!strstr(data + 10, "'<f4'") || !shape || off > len) { free(data); return NULL; }
    *rows = strtoll(shape + 10, NULL, 10);
    *cols = strtoll(strchr(shape, ',') + 1, NULL, 10);
    if ((size_t)(*rows * *cols) * 4 != len - off) { free(data); return NULL; }
    float *out = xmalloc(len - off);
    memcpy(out, data + off, len - off);
    free(data);
    return out;
}

static int32_t *json_ids(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    int32_t *ids = xmalloc_array(*n ? *n : 1, sizeof *ids);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

static void check_hf_fixture(const char *dir_rel, double tol) {
    const char *dir = fixture_path(dir_rel);
    REQUIRE(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_t *ref = json_load_file(path, 0, NULL);
    REQUIREF(ref, "cannot read %s", path);
    int64_t rows = 0, cols = 0;
    snprintf(path, sizeof path, "%s/ref_logits.npy", dir);
    float *want = load_npy_f32(path, &rows, &cols);
    REQUIREF(want, "cannot read %s", path);
    Model m;
    Err e;
    char dirbuf[4200];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir);
    REQUIREF(model_load(&m, dirbuf, &e) == 0, "%s: %s", dir_rel, e.msg);
    CHECK_EQ_INT(m.cfg.vocab_size, cols);
    ThreadPool *pool = threadpool_new(2);
    ModelState s;
    REQUIRE(model_state_init(&s, &m, 0, pool, &e) == 0);
    size_t n_in, n_greedy;
    int32_t *in = json_ids(json_object_get(ref, "input_ids"), &n_in);
    int32_t *greedy = json_ids(json_object_get(ref, "greedy_sequence"), &n_greedy);
    json_t *margins = json_object_get(ref, "greedy_top2_margins");
    CHECK_EQ_INT((int64_t)n_in, rows);
    // ‖ours − ref‖₂ / ‖ref‖₂ over all positions and the vocabulary
    double num = 0, den = 0;
    for (size_t t = 0; t < n_in; t++) {
        REQUIREF(model_forward(&s, &in[t], 1, &e) == 0, "%s", e.msg);
        for (int64_t v = 0; v < cols; v++) {
            double r = want[t * (size_t)cols + (size_t)v], d = s.logits[v] - r;
            num += d * d;
            den += r * r;
        }
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    CHECKF(rel <= tol, "%s: relative L2 logit error %.3g > %.3g", dir_rel, rel, tol);
    // greedy continuation: the reference picks token g at step i; where its top-2 margin is below the precision we
    // can claim, a different pick is legitimate and ends the comparison
    int32_t tok = sampler_argmax(s.logits, cols);
    for (size_t i = n_in; i < n_greedy; i++) {
        double margin = json_real_value(json_array_get(margins, i - n_in));
        if (tok != greedy[i]) {
            CHECKF(margin <= 1e-3, "%s greedy step %zu: got %d, reference %d (margin %.3g)", dir_rel, i - n_in, tok, greedy[i], margin);
            break;
        }
        REQUIREF(model_forward(&s, &tok, 1, &e) == 0, "%s", e.msg);
        tok = sampler_argmax(s.logits, cols);
    }
    if (getenv("LOSSY_TEST_VERBOSE")) printf("    %s: relative L2 logit error %.3g\n", dir_rel, rel);
    free(in);
    free(greedy);
    free(want);
    json_decref(ref);
    model_state_free(&s);
    threadpool_free(pool);
    model_free(&m);
}

TEST(model_llama_gqa_matches_transformers) { check_hf_fixture("hf/llama_gqa_f32", 1e-5); }
TEST(model_gpt2_matches_transformers) { check_hf_fixture("hf/gpt2_f32", 1e-5); }
TEST(model_mistral_f16_matches_transformers) { check_hf_fixture("hf/mistral_vocab_f16", 1e-4); }
