// test_train_model.c — the trainer's model against an independent double-precision Llama written here: forward
// logits and loss, the whole backward against central finite differences (sampled parameters of every tensor,
// tied and untied embeddings, grouped-query attention), gradients bit-identical for any thread count, and the
// exported GGUF giving the same logits through the inference model (model_forward) as the trainer's forward.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "test.h"
#include "train/train_model.h"

// ---- the reference: a naive Llama in double, reading weights by tensor name from a double copy of the params ----

typedef struct Ref {
    const TrainModel *m; // for the layout (names and offsets) only
    double *p;           // (n_params) parameters in double
    const int32_t *tokens, *targets;
    int64_t B, T;
} Ref;

static const double *ref_w(const Ref *r, const char *name) {
    for (size_t i = 0; i < r->m->n_pinfo; i++)
        if (strcmp(r->m->pinfo[i].name, name) == 0) return r->p + r->m->pinfo[i].offset;
    return NULL;
}

static const double *ref_lw(const Ref *r, int64_t l, const char *suffix) {
    char name[64];
    snprintf(name, sizeof name, "blk.%lld.%s", (long long)l, suffix);
    return ref_w(r, name);
}

// y (n, out) = x (n, in) W^T with W (out, in)
static void ref_matmul(double *y, const double *x, const double *w, int64_t n, int64_t in, int64_t out) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t k = 0; k < in; k++) s += x[i * in + k] * w[o * in + k];
            y[i * out + o] = s;
        }
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int64_t n, int64_t c, double eps) {
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < c; j++) ss += x[i * c + j] * x[i * c + j];
        double r = 1.0 / sqrt(ss / (double)c + eps);
        for (int64_t j = 0; j < c; j++) y[i * c + j] = x[i * c + j] * r * w[j];
    }
}

// GGUF llama rope: pairs (2i, 2i+1) of each head turn by pos * theta^(-2i / head_dim).
static void ref_rope(double *x, int64_t T, int64_t nh, int64_t hd, double theta) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < hd / 2; i++) {
                double ang = (double)t * pow(theta, -2.0 * (double)i / (double)hd);
                double *v = x + (t * nh + h) * hd + 2 * i, a = v[0], b = v[1];
                v[0] = a * cos(ang) - b * sin(ang);
                v[1] = a * sin(ang) + b * cos(ang);
            }
}

// Logits (B*T, V) of the reference; returns the mean cross-entropy against targets when logits_out is NULL.
static double ref_forward(const Ref *r, double *logits_out) {
    const ModelConfig *c = &r->m->cfg;
    const int64_t C = c->n_embd, F = c->n_ff, H = c->n_head, Hkv = c->n_head_kv, hd = c->head_dim, V = c->vocab_size;
    const int64_t T = r->T;
    double loss = 0;
    double *x = calloc((size_t)(T * C), sizeof(double)), *xn = calloc((size_t)(T * C), sizeof(double));
    double *q = calloc((size_t)(T * H * hd), sizeof(double)), *k = calloc((size_t)(T * Hkv * hd), sizeof(double));
    double *v = calloc((size_t)(T * Hkv * hd), sizeof(double)), *ay = calloc((size_t)(T * H * hd), sizeof(double));
    double *tmp = calloc((size_t)(T * (C > F ? C : F)), sizeof(double)), *g = calloc((size_t)(T * F), sizeof(double));
    double *u = calloc((size_t)(T * F), sizeof(double)), *lg = calloc((size_t)(T * V), sizeof(double));
    const double *emb = ref_w(r, "token_embd.weight");
    const double *out = c->tied_embeddings ? emb : ref_w(r, "output.weight");
    for (int64_t b = 0; b < r->B; b++) {
        const int32_t *tok = r->tokens + b * T;
        for (int64_t t = 0; t < T; t++) memcpy(x + t * C, emb + (int64_t)tok[t] * C, (size_t)C * sizeof(double));
        for (int64_t l = 0; l < c->n_layer; l++) {
            ref_rmsnorm(xn, x, ref_lw(r, l, "attn_norm.weight"), T, C, c->norm_eps);
            ref_matmul(q, xn, ref_lw(r, l, "attn_q.weight"), T, C, H * hd);
            ref_matmul(k, xn, ref_lw(r, l, "attn_k.weight"), T, C, Hkv * hd);
            ref_matmul(v, xn, ref_lw(r, l, "attn_v.weight"), T, C, Hkv * hd);
            ref_rope(q, T, H, hd, c->rope_theta);
            ref_rope(k, T, Hkv, hd, c->rope_theta);
            for (int64_t h = 0; h < H; h++) {
                int64_t kh = h / (H / Hkv);
                for (int64_t t = 0; t < T; t++) {
                    double sc[64], mx = -1e300, sum = 0;
                    for (int64_t s = 0; s <= t; s++) {
                        double d = 0;
                        for (int64_t i = 0; i < hd; i++) d += q[(t * H + h) * hd + i] * k[(s * Hkv + kh) * hd + i];
                        sc[s] = d / sqrt((double)hd);
                        if (sc[s] > mx) mx = sc[s];
                    }
                    for (int64_t s = 0; s <= t; s++) sum += (sc[s] = exp(sc[s] - mx));
                    for (int64_t i = 0; i < hd; i++) {
                        double o = 0;
                        for (int64_t s = 0; s <= t; s++) o += sc[s] / sum * v[(s * Hkv + kh) * hd + i];
                        ay[(t * H + h) * hd + i] = o;
                    }
                }
            }
            ref_matmul(tmp, ay, ref_lw(r, l, "attn_output.weight"), T, H * hd, C);
            for (int64_t i = 0; i < T * C; i++) x[i] += tmp[i];
            ref_rmsnorm(xn, x, ref_lw(r, l, "ffn_norm.weight"), T, C, c->norm_eps);
            ref_matmul(g, xn, ref_lw(r, l, "ffn_gate.weight"), T, C, F);
            ref_matmul(u, xn, ref_lw(r, l, "ffn_up.weight"), T, C, F);
            for (int64_t i = 0; i < T * F; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matmul(tmp, g, ref_lw(r, l, "ffn_down.weight"), T, F, C);
            for (int64_t i = 0; i < T * C; i++) x[i] += tmp[i];
        }
        ref_rmsnorm(xn, x, ref_w(r, "output_norm.weight"), T, C, c->norm_eps);
        ref_matmul(lg, xn, out, T, C, V);
        if (logits_out) memcpy(logits_out + b * T * V, lg, (size_t)(T * V) * sizeof(double));
        for (int64_t t = 0; t < T; t++) {
            double mx = -1e300, s = 0;
            for (int64_t j = 0; j < V; j++) mx = lg[t * V + j] > mx ? lg[t * V + j] : mx;
            for (int64_t j = 0; j < V; j++) s += exp(lg[t * V + j] - mx);
            loss += mx + log(s) - lg[t * V + r->targets[b * T + t]];
        }
    }
    free(x), free(xn), free(q), free(k), free(v), free(ay), free(tmp), free(g), free(u), free(lg);
    return loss / (double)(r->B * T);
}

static void rand_tokens(int32_t *t, int64_t n, int64_t V) {
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)(test_rand_u64() % (uint64_t)V);
}

// Random weights larger than the training init so that every path (attention, norms) carries real gradient.
static void rand_weights(TrainModel *m) {
    for (size_t i = 0; i < m->n_pinfo; i++) {
        const TrainParam *p = &m->pinfo[i];
        for (size_t j = 0; j < p->count; j++) {
            float u = 2.0f * test_rand_uniform() - 1.0f;
            m->params[p->offset + j] = p->n_dims == 1 ? 1.0f + 0.3f * u : 0.4f * u;
        }
    }
}

static void check_model_gradients(bool tied, int64_t H, int64_t Hkv) {
    ModelConfig c;
    Err e;
    REQUIREF(train_config_llama(&c, 13, 2, 8 * H / 2, H, Hkv, 12, 8, tied, &e) == 0, "%s", e.msg);
    TrainModel m;
    REQUIRE(train_model_init(&m, &c, NULL, &e) == 0);
    const int64_t B = 2, T = 5;
    REQUIRE(train_model_reserve(&m, B, T, &e) == 0);
    rand_weights(&m);
    int32_t tokens[10], targets[10];
    rand_tokens(tokens, B * T, c.vocab_size);
    rand_tokens(targets, B * T, c.vocab_size);

    Ref r = {&m, xmalloc_array(m.n_params, sizeof(double)), tokens, targets, B, T};
    for (size_t i = 0; i < m.n_params; i++) r.p[i] = m.params[i];

    // forward: logits and loss against the reference
    float *lf = xmalloc_array((size_t)(B * T * c.vocab_size), sizeof(float));
    double *ld = xmalloc_array((size_t)(B * T * c.vocab_size), sizeof(double));
    train_model_logits(&m, tokens, B, T, lf);
    ref_forward(&r, ld);
    double maxd = 0;
    for (int64_t i = 0; i < B * T * c.vocab_size; i++) maxd = fmax(maxd, fabs(lf[i] - ld[i]));
    CHECKF(maxd < 1e-4, "logits differ from the double reference by %g", maxd);
    double ref_loss = ref_forward(&r, NULL);
    double fl = train_model_forward(&m, tokens, targets, B, T, NULL);
    CHECK_NEAR(fl, ref_loss, 1e-5);

    // backward: gradient of the mean loss
    train_model_zero_grad(&m);
    double bl = train_model_forward_backward(&m, tokens, targets, B, T, 1.0f / (float)(B * T));
    CHECK_NEAR(bl, ref_loss, 1e-5);
    double worst = 0;
    const char *worst_name = "";
    for (size_t ti = 0; ti < m.n_pinfo; ti++) {
        const TrainParam *p = &m.pinfo[ti];
        for (int s = 0; s < 4; s++) {
            size_t idx = p->offset + (size_t)(test_rand_u64() % p->count);
            double save = r.p[idx], h = 1e-5;
            r.p[idx] = save + h;
            double lp = ref_forward(&r, NULL);
            r.p[idx] = save - h;
            double lm = ref_forward(&r, NULL);
            r.p[idx] = save;
            double fd = (lp - lm) / (2 * h), got = m.grads[idx];
            double err = fabs(got - fd) / (fabs(fd) + 1e-3);
            if (err > worst) worst = err, worst_name = p->name;
            CHECKF(fabs(got - fd) <= 2e-3 * fabs(fd) + 2e-5, "%s[%zu]: backward %.9g vs finite differences %.9g",
                   p->name, idx - p->offset, got, fd);
        }
    }
    (void)worst_name;
    free(lf), free(ld), free(r.p);
    train_model_free(&m);
}

TEST(train_model_gradcheck_untied_gqa) { check_model_gradients(false, 4, 2); }
TEST(train_model_gradcheck_tied_mha) { check_model_gradients(true, 2, 2); }

// The gradient buffer and the loss are bit-identical for 1, 2 and 3 threads (and so is a second accumulated
// micro-batch): the property resumable runs rely on.
TEST(train_model_threads_bit_identical) {
    ModelConfig c;
    Err e;
    REQUIRE(train_config_llama(&c, 97, 2, 64, 4, 2, 0, 64, false, &e) == 0);
    const int64_t B = 3, T = 64;
    int32_t *tok = xmalloc_array((size_t)(B * T), sizeof(int32_t)), *tgt = xmalloc_array((size_t)(B * T), sizeof(int32_t));
    rand_tokens(tok, B * T, c.vocab_size);
    rand_tokens(tgt, B * T, c.vocab_size);
    float *ref = NULL;
    double ref_loss = 0;
    for (int nt = 1; nt <= 3; nt++) {
        ThreadPool *pool = threadpool_new(nt);
        TrainModel m;
        REQUIRE(train_model_init(&m, &c, pool, &e) == 0);
        REQUIRE(train_model_reserve(&m, B, T, &e) == 0);
        train_model_init_weights(&m, 7);
        double l = train_model_forward_backward(&m, tok, tgt, B, T, 0.5f / (float)(B * T));
        l += train_model_forward_backward(&m, tgt, tok, B, T, 0.5f / (float)(B * T));
        if (!ref) {
            ref = xmalloc_array(m.n_params, sizeof(float));
            memcpy(ref, m.grads, m.n_params * sizeof(float));
            ref_loss = l;
        } else {
            CHECKF(memcmp(ref, m.grads, m.n_params * sizeof(float)) == 0, "gradients differ with %d threads", nt);
            CHECKF(l == ref_loss, "loss differs with %d threads: %.17g vs %.17g", nt, l, ref_loss);
        }
        train_model_free(&m);
        threadpool_free(pool);
    }
    free(ref), free(tok), free(tgt);
}

// The GGUF the trainer writes, loaded by the inference model, gives the trainer's logits at every position.
TEST(train_model_gguf_runs_in_inference_model) {
    ModelConfig c;
    Err e;
    REQUIRE(train_config_llama(&c, 50, 2, 32, 4, 2, 48, 16, false, &e) == 0);
    for (int tied = 0; tied < 2; tied++) {
        c.tied_embeddings = tied;
        TrainModel m;
        REQUIRE(train_model_init(&m, &c, NULL, &e) == 0);
        const int64_t T = 12;
        REQUIRE(train_model_reserve(&m, 1, T, &e) == 0);
        rand_weights(&m);
        int32_t tok[12];
        rand_tokens(tok, T, c.vocab_size);
        float *lt = xmalloc_array((size_t)(T * c.vocab_size), sizeof(float));
        train_model_logits(&m, tok, 1, T, lt);
        char path[512];
        snprintf(path, sizeof path, "%s/m%d.gguf", test_tmpdir(), tied);
        GGUFWriter *w = train_model_gguf_writer(&m, NULL, "test", &e);
        REQUIRE(w);
        REQUIREF(gguf_writer_write(w, path, &e) == 0, "%s", e.msg);
        gguf_writer_free(w);
        Model im;
        REQUIREF(model_load(&im, path, &e) == 0, "%s", e.msg);
        CHECK(im.cfg.tied_embeddings == (bool)tied);
        CHECK(im.cfg.rope_style == ROPE_STYLE_INTERLEAVED);
        ModelState s;
        REQUIRE(model_state_init(&s, &im, 0, NULL, &e) == 0);
        double maxd = 0, maxv = 0;
        for (int64_t t = 0; t < T; t++) {
            REQUIRE(model_forward(&s, &tok[t], 1, &e) == 0);
            for (int64_t j = 0; j < c.vocab_size; j++) {
                maxd = fmax(maxd, fabs(s.logits[j] - lt[t * c.vocab_size + j]));
                maxv = fmax(maxv, fabs(lt[t * c.vocab_size + j]));
            }
        }
        CHECKF(maxd <= 1e-5 * fmax(maxv, 1.0), "tied=%d: inference logits differ by %g (max |logit| %g)", tied, maxd, maxv);
        model_state_free(&s);
        model_free(&im);
        free(lt);
        train_model_free(&m);
    }
}
