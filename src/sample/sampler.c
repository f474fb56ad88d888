// sampler.c — token sampling (see sampler.h for the order of operations).
#include "sample/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

void sampler_params_default(SamplerParams *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 0.8;
    p->top_k = 40;
    p->top_p = 0.95;
    p->min_p = 0.05;
    p->repeat_penalty = 1.0;
    p->penalty_last_n = 64;
}

void sampler_reseed(Sampler *s, uint64_t seed) {
    // splitmix64 of the seed, so nearby seeds give unrelated streams and seed 0 is valid
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    s->rng = z ? z : 1;
}

void sampler_init(Sampler *s, int64_t n_vocab, const SamplerParams *p) {
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    s->probs = xmalloc_array((size_t)n_vocab, sizeof *s->probs);
    s->idx = xmalloc_array((size_t)n_vocab, sizeof *s->idx);
    s->counts = xcalloc((size_t)n_vocab, sizeof *s->counts);
    sampler_reseed(s, p->seed);
}

void sampler_free(Sampler *s) {
    free(s->probs);
    free(s->idx);
    free(s->counts);
    memset(s, 0, sizeof *s);
}

double sampler_rand(Sampler *s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

int32_t sampler_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

static void apply_penalties(Sampler *s, float *logits, const int32_t *history, size_t n_hist) {
    const SamplerParams *p = &s->p;
    if (p->penalty_last_n == 0 || n_hist == 0) return;
    if (p->repeat_penalty == 1.0 && p->presence_penalty == 0.0 && p->frequency_penalty == 0.0) return;
    size_t start = (p->penalty_last_n < 0 || (size_t)p->penalty_last_n >= n_hist) ? 0 : n_hist - (size_t)p->penalty_last_n;
    for (size_t i = start; i < n_hist; i++)
        if (history[i] >= 0 && history[i] < s->n_vocab) s->counts[history[i]]++;
    for (size_t i = start; i < n_hist; i++) {
        int32_t t = history[i];
        if (t < 0 || t >= s->n_vocab || s->counts[t] == 0) continue;
        float l = logits[t];
        if (p->repeat_penalty != 1.0) l = l > 0 ? l / (float)p->repeat_penalty : l * (float)p->repeat_penalty;
        l -= (float)(p->presence_penalty + p->frequency_penalty * s->counts[t]);
        logits[t] = l;
        s->counts[t] = 0; // each distinct token once; also leaves counts zeroed for the next call
    }
}

static int cmp_prob_desc(const void *a, const void *b, void *ctx) {
    const float *pr = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (pr[x] != pr[y]) return pr[x] > pr[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int32_t sampler_sample(Sampler *s, float *logits, const int32_t *history, size_t n_hist) {
    const SamplerParams *p = &s->p;
    const int64_t n = s->n_vocab;
    apply_penalties(s, logits, history, n_hist);
    if (p->temperature <= 0) return sampler_argmax(logits, n);
    // softmax at temperature
    float mx = logits[sampler_argmax(logits, n)];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        float e = expf((logits[i] - mx) / (float)p->temperature);
        s->probs[i] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum), best = 0;
    for (int64_t i = 0; i < n; i++) {
        s->probs[i] *= inv;
        if (s->probs[i] > best) best = s->probs[i];
    }
    // candidates: a cheap pre-filter keeps sorting small. Tokens below min-p × best can never be kept; with top-p
    // alone, tokens below (1 - top_p) / (n - 1) cannot be part of the nucleus (llama2.c's observation).
    float floor_p = 0;
    if (p->min_p > 0) floor_p = (float)p->min_p * best;
    if (p->top_p < 1 && n > 1) {
        float f = (float)((1.0 - p->top_p) / (double)(n - 1));
        if (f > floor_p && p->top_k <= 0) floor_p = f;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (s->probs[i] >= floor_p) s->idx[m++] = (int32_t)i;
    if (m == 0) return sampler_argmax(s->probs, n);
    qsort_r(s->idx, (size_t)m, sizeof *s->idx, cmp_prob_desc, s->probs);
    if (p->top_k > 0 && m > p->top_k) m = p->top_k;
    if (p->top_p < 1) {
        double cum = 0;
        for (int64_t i = 0; i < m; i++) {
            cum += s->probs[s->idx[i]];
            if (cum >= p->top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        float keep = (float)p->min_p * s->probs[s->idx[0]];
        int64_t k = 1;
        while (k < m && s->probs[s->idx[k]] >= keep) k++;
        m = k;
    }
    double total = 0;
    for (int64_t i = 0; i < m; i++) total += s->probs[s->idx[i]];
    double r = sampler_rand(s) * total, cum = 0;
    for (int64_t i = 0; i < m; i++) {
        cum += s->probs[s->idx[i]];
        if (r < cum) return s->idx[i];
    }
    return s->idx[m - 1];
}
