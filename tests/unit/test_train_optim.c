// test_train_optim.c — learning-rate schedules at their defining points, the global gradient norm against a double
// sum (and bit-identical across thread counts), and AdamW against a double-precision reference of the same update,
// including which tensors are decayed.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "train/optim.h"
#include "train/train_model.h"

TEST(train_lr_schedules) {
    LrSpec s = {LR_COSINE, 1e-3, 1e-4, 10, 0.2};
    CHECK_NEAR(lr_at(&s, 0, 0), 1e-4, 1e-12);        // warmup: (step+1)/warmup of the peak
    CHECK_NEAR(lr_at(&s, 4, 0), 5e-4, 1e-12);
    CHECK_NEAR(lr_at(&s, 10, 0), 1e-3, 1e-12);       // end of warmup: peak
    CHECK_NEAR(lr_at(&s, 50, 0.5), 5.5e-4, 1e-12);   // cosine midpoint: halfway between peak and floor
    CHECK_NEAR(lr_at(&s, 99, 1.0), 1e-4, 1e-12);
    CHECK_NEAR(lr_at(&s, 99, 1.5), 1e-4, 1e-12);     // clamped
    s.kind = LR_WSD;
    CHECK_NEAR(lr_at(&s, 50, 0.79), 1e-3, 1e-12);    // stable
    CHECK_NEAR(lr_at(&s, 90, 0.9), 5.5e-4, 1e-12);   // halfway through the last 20%
    CHECK_NEAR(lr_at(&s, 99, 1.0), 1e-4, 1e-12);
    s.kind = LR_CONST;
    CHECK_NEAR(lr_at(&s, 99, 1.0), 1e-3, 1e-12);
    LrSchedule k;
    CHECK(lr_schedule_parse("wsd", &k) == 0 && k == LR_WSD);
    CHECK(lr_schedule_parse("linear", &k) != 0);
}

TEST(train_grad_norm_blocks_and_threads) {
    const size_t n = 300001;
    float *g = xmalloc_array(n, sizeof(float));
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (2.0f * test_rand_uniform() - 1.0f) * 0.01f;
        ref += (double)g[i] * g[i];
    }
    double n1 = 0;
    for (int nt = 1; nt <= 3; nt++) {
        ThreadPool *p = threadpool_new(nt);
        double v = grad_global_norm(p, g, n);
        if (nt == 1) n1 = v;
        CHECK(v == n1);
        threadpool_free(p);
    }
    CHECK_NEAR(n1, sqrt(ref), 1e-12 * sqrt(ref));
    free(g);
}

TEST(train_adamw_matches_reference_and_decays_matrices_only) {
    ModelConfig c;
    Err e;
    REQUIRE(train_config_llama(&c, 40, 1, 16, 2, 1, 24, 8, false, &e) == 0);
    TrainModel m;
    REQUIRE(train_model_init(&m, &c, NULL, &e) == 0);
    train_model_init_weights(&m, 3);
    AdamW o;
    const double b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, lr = 1e-2;
    adamw_init(&o, m.n_params, b1, b2, eps, wd);
    size_t n = m.n_params;
    double *p = xmalloc_array(n, sizeof(double)), *mm = xcalloc(n, sizeof(double)), *vv = xcalloc(n, sizeof(double));
    // the same update in float, operation by operation: the vectorised path must match it bit for bit
    float *pf = xmalloc_array(n, sizeof(float)), *mf = xcalloc(n, sizeof(float)), *vf = xcalloc(n, sizeof(float));
    memcpy(pf, m.params, n * sizeof(float));
    bool *decay = xcalloc(n, sizeof(bool));
    for (size_t t = 0; t < m.n_pinfo; t++)
        for (size_t i = 0; i < m.pinfo[t].count; i++) decay[m.pinfo[t].offset + i] = m.pinfo[t].decay;
    for (size_t i = 0; i < n; i++) p[i] = m.params[i];
    for (int step = 1; step <= 3; step++) {
        for (size_t i = 0; i < n; i++) m.grads[i] = (2.0f * test_rand_uniform() - 1.0f) * 0.1f;
        float scale = step == 2 ? 0.5f : 1.0f; // a clipped step
        adamw_step(&o, &m, lr, scale, NULL);
        float ib1 = (float)(1.0 / (1.0 - pow(b1, step))), ib2 = (float)(1.0 / (1.0 - pow(b2, step)));
        for (size_t i = 0; i < n; i++) {
            float gi = m.grads[i] * scale, sh = decay[i] ? 1.0f - (float)lr * (float)wd : 1.0f;
            float mi = (float)b1 * mf[i] + (1.0f - (float)b1) * gi;
            float vi = (float)b2 * vf[i] + (1.0f - (float)b2) * (gi * gi);
            mf[i] = mi, vf[i] = vi;
            pf[i] = pf[i] * sh - ((float)lr * (mi * ib1)) / (sqrtf(vi * ib2) + (float)eps);
        }
        for (size_t i = 0; i < n; i++) {
            double g = (double)m.grads[i] * scale;
            if (decay[i]) p[i] *= 1.0 - lr * wd;
            mm[i] = b1 * mm[i] + (1 - b1) * g;
            vv[i] = b2 * vv[i] + (1 - b2) * g * g;
            double mh = mm[i] / (1 - pow(b1, step)), vh = vv[i] / (1 - pow(b2, step));
            p[i] -= lr * mh / (sqrt(vh) + eps);
        }
    }
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(m.params[i] - p[i]));
    CHECKF(worst < 1e-5, "AdamW differs from the reference by %g", worst);
    CHECK(memcmp(pf, m.params, n * sizeof(float)) == 0 && memcmp(mf, o.m, n * sizeof(float)) == 0 &&
          memcmp(vf, o.v, n * sizeof(float)) == 0);
    free(pf), free(mf), free(vf);
    CHECK_EQ_INT(o.t, 3);
    // decay flags: matrices of the blocks and the untied head, not norms or the token embedding
    for (size_t t = 0; t < m.n_pinfo; t++) {
        const TrainParam *pi = &m.pinfo[t];
        bool want = pi->n_dims == 2 && strcmp(pi->name, "token_embd.weight") != 0;
        CHECKF(pi->decay == want, "%s decay %d", pi->name, pi->decay);
    }
    free(p), free(mm), free(vv), free(decay);
    adamw_free(&o);
    train_model_free(&m);
}
