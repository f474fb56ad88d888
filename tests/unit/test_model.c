// test_model.c — the forward pass against Hugging Face transformers: logits at every position of the reference
// prompt, and the greedy continuation (where the reference's top-2 margin is large enough to be meaningful).
#include <jansson.h>
#include <stdlib.h>

#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"
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

// llama-2-tiny-random.gguf: F16 weights and the full Llama-2 vocabulary; it loads, runs, and its own tokenizer
// reproduces the Llama-2 test vectors (BOS included, as llama2.c publishes them).
TEST(model_llama2_tiny_random_runs_and_tokenizes) {
    const char *p = fixture_path("models/llama-2-tiny-random.gguf");
    REQUIRE(p);
    char mp[4200];
    snprintf(mp, sizeof mp, "%s", p);
    Model m;
    Err e;
    REQUIREF(model_load(&m, mp, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(m.cfg.vocab_size, 32000);
    ModelState s;
    REQUIRE(model_state_init(&s, &m, 64, NULL, &e) == 0);
    int32_t toks[4] = {1, 15043, 3186, 29991};
    REQUIREF(model_forward(&s, toks, 4, &e) == 0, "%s", e.msg);
    bool finite = true;
    for (int64_t v = 0; v < m.cfg.vocab_size; v++) finite &= isfinite(s.logits[v]);
    CHECK(finite);
    model_state_free(&s);
    model_free(&m);
    Tokenizer *tok;
    REQUIREF(tokenizer_load(mp, &tok, &e) == 0, "%s", e.msg);
    const char *tv = fixture_path("tokenizers/llama2/test_vectors.json");
    REQUIRE(tv);
    json_t *j = json_load_file(tv, 0, NULL);
    REQUIRE(j);
    json_t *cases = json_object_get(j, "cases");
    CHECK(json_array_size(cases) >= 3);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        TokenIds ids = {0};
        REQUIRE(tokenizer_encode(tok, text, strlen(text), TOKENIZE_ADD_SPECIAL, &ids, &e) == 0);
        bool same = ids.n == json_array_size(want);
        for (size_t k = 0; same && k < ids.n; k++) same = ids.ids[k] == json_integer_value(json_array_get(want, k));
        CHECKF(same, "test vector %zu (\"%.40s\"): ids differ", i, text);
        token_ids_free(&ids);
    }
    json_decref(j);
    tokenizer_free(tok);
}

// Wrong files give errors naming the problem: a tensor with the wrong shape, a missing tensor, a config that
// disagrees with the weights.
TEST(model_rejects_inconsistent_files) {
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    GGUFFile g;
    Err e;
    REQUIRE(gguf_open(&g, p, &e) == 0);
    char path[4300];
    for (int variant = 0; variant < 3; variant++) {
        GGUFWriter *w = gguf_writer_new();
        for (size_t i = 0; i < g.n_kv; i++) {
            if (variant == 2 && strcmp(g.kv[i].key, "llama.embedding_length") == 0) gguf_writer_set_u32(w, "llama.embedding_length", 72);
            else gguf_writer_copy_kv(w, &g.kv[i]);
        }
        for (size_t i = 0; i < g.n_tensors; i++) {
            const GGUFTensor *t = &g.tensors[i];
            if (variant == 1 && strcmp(t->name, "blk.2.ffn_down.weight") == 0) continue; // missing
            int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
            if (variant == 0 && strcmp(t->name, "blk.1.attn_k.weight") == 0) {
                ne[1] = ne[1] / 2; // half the rows: wrong shape (data is just the first half)
            }
            REQUIRE(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, t->data, &e) == 0);
        }
        snprintf(path, sizeof path, "%s/bad%d.gguf", test_tmpdir(), variant);
        REQUIRE(gguf_writer_write(w, path, &e) == 0);
        gguf_writer_free(w);
        Model m;
        int rc = model_load(&m, path, &e);
        CHECKF(rc != 0, "variant %d loaded", variant);
        if (rc == 0) model_free(&m);
        const char *want[3] = {"blk.1.attn_k.weight", "missing tensor 'blk.2.ffn_down.weight'", "72"};
        CHECKF(rc != 0 && strstr(e.msg, want[variant]), "variant %d: '%s' lacks '%s'", variant, e.msg, want[variant]);
    }
    gguf_close(&g);
}

// A llama2.c legacy checkpoint of stories260K (written here from the GGUF's tensors in llama2.c's export order)
// runs through model_load's .bin path and gives the same logits as the GGUF.
TEST(model_llama2c_bin_matches_gguf) {
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    char gp[4200], bp[4300];
    snprintf(gp, sizeof gp, "%s", p);
    snprintf(bp, sizeof bp, "%s/stories260K.bin", test_tmpdir());
    GGUFFile g;
    Err e;
    REQUIRE(gguf_open(&g, gp, &e) == 0);
    int64_t dim, hidden, layers, heads, kv, ctx;
    REQUIRE(gguf_get_int(&g, "llama.embedding_length", &dim, &e) == 0 && gguf_get_int(&g, "llama.feed_forward_length", &hidden, &e) == 0 &&
            gguf_get_int(&g, "llama.block_count", &layers, &e) == 0 && gguf_get_int(&g, "llama.attention.head_count", &heads, &e) == 0 &&
            gguf_get_int(&g, "llama.attention.head_count_kv", &kv, &e) == 0);
    ctx = 512;
    const GGUFTensor *emb = gguf_find_tensor(&g, "token_embd.weight");
    REQUIRE(emb);
    int32_t header[7] = {(int32_t)dim, (int32_t)hidden, (int32_t)layers, (int32_t)heads, (int32_t)kv, -(int32_t)emb->ne[1], (int32_t)ctx};
    FILE *f = fopen(bp, "wb");
    REQUIRE(f);
    fwrite(header, sizeof header, 1, f);
    fwrite(emb->data, emb->nbytes, 1, f);
    static const char *per_layer[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"};
    for (size_t k = 0; k < sizeof per_layer / sizeof *per_layer; k++)
        for (int64_t l = 0; l < layers; l++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, per_layer[k]);
            const GGUFTensor *t = gguf_find_tensor(&g, name);
            REQUIREF(t, "%s", name);
            fwrite(t->data, t->nbytes, 1, f);
        }
    const GGUFTensor *norm = gguf_find_tensor(&g, "output_norm.weight"), *out = gguf_find_tensor(&g, "output.weight");
    REQUIRE(norm && out);
    fwrite(norm->data, norm->nbytes, 1, f);
    size_t freq = (size_t)(ctx * (dim / heads) / 2) * sizeof(float) * 2; // legacy rope tables, unused by readers
    float *zeros = xcalloc(freq, 1);
    fwrite(zeros, freq, 1, f);
    free(zeros);
    fwrite(out->data, out->nbytes, 1, f);
    fclose(f);
    gguf_close(&g);
    Model a, b;
    REQUIREF(model_load(&a, gp, &e) == 0, "%s", e.msg);
    REQUIREF(model_load(&b, bp, &e) == 0, "%s", e.msg);
    ModelState sa, sb;
    REQUIRE(model_state_init(&sa, &a, 32, NULL, &e) == 0 && model_state_init(&sb, &b, 32, NULL, &e) == 0);
    int32_t toks[6] = {1, 403, 407, 261, 378, 432};
    for (int i = 0; i < 6; i++) {
        REQUIRE(model_forward(&sa, &toks[i], 1, &e) == 0 && model_forward(&sb, &toks[i], 1, &e) == 0);
        for (int64_t v = 0; v < a.cfg.vocab_size; v++) CHECKF(sa.logits[v] == sb.logits[v], "pos %d logit %lld", i, (long long)v);
    }
    model_state_free(&sa);
    model_state_free(&sb);
    model_free(&a);
    model_free(&b);
}
