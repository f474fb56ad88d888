// eval.c — sliding-window negative log-likelihood (see eval.h).
#include "model/eval.h"

#include <math.h>
#include <stdlib.h>

#include "base/util.h"

double eval_token_nll(const float *logits, int64_t V, int32_t target) {
    double m = logits[0];
    for (int64_t i = 1; i < V; i++) m = logits[i] > m ? logits[i] : m;
    double s = 0;
    for (int64_t i = 0; i < V; i++) s += exp((double)logits[i] - m);
    return log(s) + m - (double)logits[target];
}

int eval_nll(ModelState *s, const int32_t *tokens, int64_t n, int64_t ctx, int64_t stride, EvalResult *r, Err *e) {
    r->nll = 0;
    r->n_scored = 0;
    r->n_windows = 0;
    if (n < 2) return ERR(e, "need at least 2 tokens to score (got %lld)", (long long)n);
    if (ctx < 2 || ctx > s->n_ctx) return ERR(e, "window of %lld tokens: must be 2 .. %lld", (long long)ctx, (long long)s->n_ctx);
    if (stride < 1 || stride >= ctx) return ERR(e, "stride %lld: must be 1 .. %lld (the window minus one)", (long long)stride, (long long)(ctx - 1));
    const int64_t V = s->m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return ERR(e, "token id %d at %lld is outside the vocabulary (%lld)", tokens[i], (long long)i, (long long)V);
    int64_t len = ctx < n ? ctx : n;
    float *logits = xmalloc_array((size_t)len * (size_t)V, sizeof(float)); // (len, V)
    int64_t scored_end = 1; // targets [1, scored_end) are done
    int rc = 0;
    for (int64_t b = 0;; b += stride) {
        int64_t end = b + ctx < n ? b + ctx : n;
        model_state_reset(s);
        if (model_forward_all(s, tokens + b, end - b, logits, e)) {
            rc = -1;
            break;
        }
        r->n_windows++;
        for (int64_t t = scored_end > b + 1 ? scored_end : b + 1; t < end; t++) {
            r->nll += eval_token_nll(logits + (t - 1 - b) * V, V, tokens[t]);
            r->n_scored++;
        }
        scored_end = end;
        if (end == n) break;
    }
    free(logits);
    return rc;
}
