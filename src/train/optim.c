// optim.c — learning-rate schedules, gradient norm and AdamW (see optim.h).
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// Sum of squares of one block in 16 independent double lanes (a fixed order, so the result is reproducible, and
// one the compiler vectorises: a single running sum would be a chain of dependent additions).
static double block_sumsq(const float *g, size_t n) {
    double acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += (double)g[i + k] * g[i + k];
    for (int k = 0; i < n; i++, k++) acc[k] += (double)g[i] * g[i];
    for (int w = 8; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

static void norm_worker(void *ctx, int ith, int nth) {
    NormJob *j = ctx;
    int64_t s, e;
    threadpool_split((int64_t)j->n_blocks, ith, nth, &s, &e);
    for (int64_t b = s; b < e; b++) {
        size_t lo = (size_t)b * NORM_BLOCK, hi = lo + NORM_BLOCK < j->n ? lo + NORM_BLOCK : j->n;
        j->block_sums[b] = block_sumsq(j->g + lo, hi - lo);
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
    float lr, scale, b1, b2, eps, inv_bc1, inv_bc2, decay;
} AdamJob;

// One element of the update. Every operation is a separately rounded IEEE operation (no contraction in ISO C
// mode), so the AVX-512 path below, doing the same operations lane-wise, gives bit-identical results.
static inline void adam_one(const AdamJob *j, float *p, const float *g, float *mm, float *vv, float shrink) {
    float gi = *g * j->scale;
    float mi = j->b1 * *mm + (1.0f - j->b1) * gi;
    float vi = j->b2 * *vv + (1.0f - j->b2) * (gi * gi);
    *mm = mi;
    *vv = vi;
    *p = *p * shrink - (j->lr * (mi * j->inv_bc1)) / (sqrtf(vi * j->inv_bc2) + j->eps);
}

#if defined(__x86_64__)
// The scalar loop cannot vectorise (sqrtf may set errno as far as the compiler knows); the update would then be
// compute-bound on divisions and square roots instead of memory-bound. Returns how many elements it did.
__attribute__((target("avx512f"))) static size_t adam_avx512(const AdamJob *j, float *p, const float *g, float *mm,
                                                              float *vv, size_t n, float shrink) {
    const __m512 sc = _mm512_set1_ps(j->scale), b1 = _mm512_set1_ps(j->b1), c1 = _mm512_set1_ps(1.0f - j->b1);
    const __m512 b2 = _mm512_set1_ps(j->b2), c2 = _mm512_set1_ps(1.0f - j->b2), lr = _mm512_set1_ps(j->lr);
    const __m512 ib1 = _mm512_set1_ps(j->inv_bc1), ib2 = _mm512_set1_ps(j->inv_bc2), eps = _mm512_set1_ps(j->eps);
    const __m512 sh = _mm512_set1_ps(shrink);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), sc);
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(mm + i)), _mm512_mul_ps(c1, gi));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(vv + i)), _mm512_mul_ps(c2, _mm512_mul_ps(gi, gi)));
        _mm512_storeu_ps(mm + i, mi);
        _mm512_storeu_ps(vv + i, vi);
        __m512 num = _mm512_mul_ps(lr, _mm512_mul_ps(mi, ib1));
        __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(vi, ib2)), eps);
        _mm512_storeu_ps(p + i, _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(p + i), sh), _mm512_div_ps(num, den)));
    }
    return i;
}
#endif

static void adam_range(const AdamJob *j, size_t lo, size_t hi, bool decay) {
    float *p = j->m->params + lo, *mm = j->o->m + lo, *vv = j->o->v + lo;
    const float *g = j->m->grads + lo;
    const float shrink = decay ? 1.0f - j->lr * j->decay : 1.0f;
    size_t n = hi - lo, i = 0;
#if defined(__x86_64__)
    if (cpu_features()->avx512f) i = adam_avx512(j, p, g, mm, vv, n, shrink);
#endif
    for (; i < n; i++) adam_one(j, p + i, g + i, mm + i, vv + i, shrink);
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
                 (float)(1.0 / (1.0 - pow(o->beta1, (double)o->t))),
                 (float)(1.0 / (1.0 - pow(o->beta2, (double)o->t))),
                 (float)o->weight_decay};
    if (m->n_params < ((size_t)1 << 16)) adam_worker(&j, 0, 1);
    else threadpool_run(pool, adam_worker, &j);
}
