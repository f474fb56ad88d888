// optim.c — learning-rate schedules, gradient norm and AdamW (see optim.h).
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define NORM_BLOCK ((size_t)1 << 16)

int lr_schedule_parse(const char *s, LrSchedule *out) {
    if (strcmp(s, "cosine") == 0) *out = LR_COSINE;
    else if (strcmp(s, "wsd") == 0) *out = LR_WSD;
    else if (strcmp(s, "const") == 0 || strcmp(s, "constant") == 0) *out = LR_CONST;
    else return -1;
    return 0;
}

const char *lr_schedule_name(LrSchedule s) {
    switch (s) {
    case LR_COSINE: return "cosine";
    case LR_WSD: return "wsd";
    case LR_CONST: return "const";
    }
    return "?";
}

double lr_at(const LrSpec *s, int64_t step, double progress) {
    if (s->warmup > 0 && step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    if (progress < 0) progress = 0;
    if (progress > 1) progress = 1;
    switch (s->kind) {
    case LR_COSINE: return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * progress));
    case LR_WSD: {
        double f = s->decay_frac > 0 ? s->decay_frac : 0.2, start = 1.0 - f;
        if (progress <= start) return s->lr;
        return s->lr + (s->min_lr - s->lr) * (progress - start) / f;
    }
    case LR_CONST: return s->lr;
    }
    return s->lr;
}

typedef struct NormJob {
    const float *g;
    size_t n;
    double *block_sums;
    size_t n_blocks;
} NormJob;

static void norm_worker(void *ctx, int ith, int nth) {
    NormJob *j = ctx;
    int64_t s, e;
    threadpool_split((int64_t)j->n_blocks, ith, nth, &s, &e);
    for (int64_t b = s; b < e; b++) {
        size_t lo = (size_t)b * NORM_BLOCK, hi = lo + NORM_BLOCK < j->n ? lo + NORM_BLOCK : j->n;
        double acc = 0.0;
        for (size_t i = lo; i < hi; i++) acc += (double)j->g[i] * j->g[i];
        j->block_sums[b] = acc;
    }
}

double grad_global_norm(ThreadPool *pool, const float *g, size_t n) {
    size_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    NormJob j = {g, n, xcalloc(nb ? nb : 1, sizeof(double)), nb};
    if (nb > 1) threadpool_run(pool, norm_worker, &j);
    else norm_worker(&j, 0, 1);
    double total = 0.0;
    for (size_t b = 0; b < nb; b++) total += j.block_sums[b];
    free(j.block_sums);
    return sqrt(total);
}

void adamw_init(AdamW *o, size_t n, double beta1, double beta2, double eps, double weight_decay) {
    memset(o, 0, sizeof *o);
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->n = n;
    o->m = xcalloc(n ? n : 1, sizeof(float));
    o->v = xcalloc(n ? n : 1, sizeof(float));
}

void adamw_free(AdamW *o) {
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

typedef struct AdamJob {
    AdamW *o;
    TrainModel *m;
    float lr, scale, b1, b2, eps, bc1, bc2, decay;
} AdamJob;

static void adam_range(const AdamJob *j, size_t lo, size_t hi, bool decay) {
    float *p = j->m->params, *g = j->m->grads, *mm = j->o->m, *vv = j->o->v;
    const float b1 = j->b1, b2 = j->b2, lr = j->lr, eps = j->eps, bc1 = j->bc1, bc2 = j->bc2;
    const float shrink = decay ? 1.0f - j->lr * j->decay : 1.0f;
    for (size_t i = lo; i < hi; i++) {
        float gi = g[i] * j->scale;
        float mi = b1 * mm[i] + (1.0f - b1) * gi;
        float vi = b2 * vv[i] + (1.0f - b2) * gi * gi;
        mm[i] = mi;
        vv[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        p[i] = p[i] * shrink - lr * mhat / (sqrtf(vhat) + eps);
    }
}

static void adam_worker(void *ctx, int ith, int nth) {
    const AdamJob *j = ctx;
    int64_t s, e;
    threadpool_split((int64_t)j->m->n_params, ith, nth, &s, &e);
    // walk the tensors overlapping [s, e): each has its own decay flag
    for (size_t t = 0; t < j->m->n_pinfo; t++) {
        const TrainParam *pi = &j->m->pinfo[t];
        size_t lo = pi->offset, hi = pi->offset + pi->count;
        if (hi <= (size_t)s || lo >= (size_t)e) continue;
        if (lo < (size_t)s) lo = (size_t)s;
        if (hi > (size_t)e) hi = (size_t)e;
        adam_range(j, lo, hi, pi->decay && j->decay != 0.0f);
    }
}

void adamw_step(AdamW *o, TrainModel *m, double lr, float grad_scale, ThreadPool *pool) {
    o->t++;
    AdamJob j = {o,
                 m,
                 (float)lr,
                 grad_scale,
                 (float)o->beta1,
                 (float)o->beta2,
                 (float)o->eps,
                 (float)(1.0 - pow(o->beta1, (double)o->t)),
                 (float)(1.0 - pow(o->beta2, (double)o->t)),
                 (float)o->weight_decay};
    if (m->n_params < ((size_t)1 << 16)) adam_worker(&j, 0, 1);
    else threadpool_run(pool, adam_worker, &j);
}
