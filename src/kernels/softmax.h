// softmax.h — row-wise softmax, and the fused softmax + cross-entropy loss with its backward.
//
// softmax_forward is the numerically stable in-place softmax used by sampling and anywhere a distribution over
// logits is needed. The cross-entropy pair is the end of the training forward and the start of its backward:
//   forward:  loss_n = logsumexp(logits_n) - logits_n[target_n] for every counted row, mean over counted rows;
//   backward: dlogits_n = (softmax(logits_n) - onehot(target_n)) * scale, written over the logits if wanted, so the
//             (N, V) buffer is reused instead of allocating a second one of the biggest activation in the model.
// A row is counted when its target is not ignore_index (a loss mask: prompts in fine-tuning, padding). A target
// outside [0, V) that is not ignore_index gives a NaN loss for its row (visible, never silently skipped); callers
// validate token ids when they load data.
#ifndef LOSSY_KERNELS_SOFTMAX_H
#define LOSSY_KERNELS_SOFTMAX_H

#include <stdint.h>

// x (N, V) in place: each row becomes exp(x - max) / sum. A row of all -inf becomes NaN (there is no distribution).
void softmax_forward(float *x, int64_t N, int64_t V);

// Mean cross-entropy over counted rows (0 when no row counts). Also returns, when the pointers are not NULL:
// per-row losses (0 for ignored rows), per-row log-sum-exp (for the backward) and the number of counted rows.
double softmax_xent_forward(const float *logits,   // (N, V)
                            const int32_t *targets,// (N)
                            int64_t N, int64_t V, int32_t ignore_index,
                            float *losses,         // (N) or NULL
                            float *lse,            // (N) or NULL: log sum_j exp(logits[n, j])
                            int64_t *n_counted);   // or NULL

// dlogits = (softmax(logits) - onehot(target)) * scale for counted rows, 0 for ignored rows. For the mean loss,
// scale = dL/dmean / n_counted (e.g. 1 / (n_counted * grad_accum_steps)). This one OVERWRITES dlogits (it starts
// the backward chain); dlogits may alias logits. lse comes from softmax_xent_forward on the same logits.
void softmax_xent_backward(float *dlogits,         // (N, V)
                           const float *logits,    // (N, V)
                           const float *lse,       // (N)
                           const int32_t *targets, // (N)
                           int64_t N, int64_t V, int32_t ignore_index, float scale);

#endif
