// optim.h — the optimizer side of a training step: learning-rate schedules, the global gradient norm (for clipping
// and for the progress line) and AdamW with decoupled weight decay.
//
// Weight decay applies to the parameters TrainParam.decay marks: the attention and MLP matrices and an untied output
// head. Norm weights are not decayed (shrinking a per-channel scale towards 0 only fights the normalisation), and
// neither are token embeddings — tied or not — since a row is only updated when its token appears and decaying the
// rows of rare tokens every step would erase them (the choice of Llama/OLMo-style recipes; nanoGPT decays them).
// Every loop is split over fixed blocks of parameters, so results do not depend on the thread count.
#ifndef LOSSY_TRAIN_OPTIM_H
#define LOSSY_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "train/train_model.h"

typedef enum LrSchedule {
    LR_COSINE = 0, // warmup, then cosine from lr to min_lr over the rest of the run
    LR_WSD,        // warmup, stable at lr, then linear decay to min_lr over the last decay_frac of the run
    LR_CONST,      // warmup, then lr
} LrSchedule;

typedef struct LrSpec {
    LrSchedule kind;
    double lr, min_lr;
    int64_t warmup;    // steps of linear warmup from lr/warmup to lr
    double decay_frac; // WSD: fraction of the run spent decaying (0, 1]
} LrSpec;

// Parse "cosine", "wsd", "const"; -1 for anything else.
int lr_schedule_parse(const char *s, LrSchedule *out);
const char *lr_schedule_name(LrSchedule s);

// The learning rate at step (0-based). progress in [0, 1] is how far the run is past its warmup (steps done after
// warmup / steps after warmup, or elapsed / budget for time-limited runs).
double lr_at(const LrSpec *s, int64_t step, double progress);

// Global L2 norm of g (n values): sums of squares in double per fixed block of 65536 values, blocks added in order.
double grad_global_norm(ThreadPool *pool, const float *g, size_t n);

typedef struct AdamW {
    double beta1, beta2, eps, weight_decay;
    size_t n;
    float *m, *v; // (n) first and second moments
    int64_t t;    // updates done (bias correction)
} AdamW;

void adamw_init(AdamW *o, size_t n, double beta1, double beta2, double eps, double weight_decay);
void adamw_free(AdamW *o);

// One update of model m's parameters from its gradients times grad_scale (clipping folds into grad_scale):
//   p -= lr * wd * p   (decay-marked parameters only, decoupled)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
void adamw_step(AdamW *o, TrainModel *m, double lr, float grad_scale, ThreadPool *pool);

#endif
