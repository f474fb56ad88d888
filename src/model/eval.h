// eval.h — scoring text with a model: the negative log-likelihood behind `lossy eval ppl` (perplexity, bits per
// byte), computed with sliding windows so texts longer than the context are scored with as much context as fits.
#ifndef LOSSY_EVAL_H
#define LOSSY_EVAL_H

#include <stdint.h>

#include "base/err.h"
#include "model/model.h"

typedef struct EvalResult {
    double nll;        // sum over scored targets of -ln p(target | preceding tokens in its window), in nats
    int64_t n_scored;  // targets scored: every token but the first, once
    int64_t n_windows; // forward passes
} EvalResult;

// Windows of up to ctx tokens start stride tokens apart (0, stride, 2 stride, ...) until one reaches the end; each
// runs on a fresh state (s is reset) and scores the targets no earlier window scored, so every token after the first
// is scored once, with at least ctx - stride tokens of context once the first window is past (Hugging Face's
// perplexity recipe). Needs n >= 2, 2 <= ctx <= s->n_ctx and 1 <= stride <= ctx - 1. logits for each window come
// from model_forward_all (prompt-chunk GEMMs); the log-softmax is taken in double.
int eval_nll(ModelState *s, const int32_t *tokens, int64_t n, int64_t ctx, int64_t stride, EvalResult *r, Err *e);

// -ln softmax(logits)[target] in double precision, logits (V).
double eval_token_nll(const float *logits, int64_t V, int32_t target);

#endif
