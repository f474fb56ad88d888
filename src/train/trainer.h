// trainer.h — the training loop behind `lossy train` and `lossy sft`: data (a prepared dataset, or a TrainSource with
// masked targets for finetuning), model, AdamW, evaluation, samples, logs, plots, checkpoints and the final GGUF.
//
// One step = grad_accum micro-batches of (batch, seq) windows from the shuffled training split, gradients averaged,
// the global norm clipped, one AdamW update at the scheduled learning rate. Every eval_every steps the model is
// evaluated on the first eval_tokens of the validation split (the same windows each time): mean loss per token and
// bits per byte (nats of the tokens that decode to text / ln 2 / their bytes; special tokens excluded). A CSV row is
// logged per step, the SVG curve is redrawn at every evaluation and at the end. Checkpoints (checkpoint.h) are written
// every ckpt_every steps, when *stop becomes non-zero (SIGINT/SIGTERM in the CLI), and at the end; resuming one
// reproduces the uninterrupted run bit for bit (the computation does not even depend on the thread count).
// The library never prints: progress goes to the on_event callback as formatted lines.
#ifndef LOSSY_TRAIN_TRAINER_H
#define LOSSY_TRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/optim.h"

typedef struct TrainOpts {
    // model shape (ignored when resuming: the checkpoint's shape is used, and given flags must agree with it)
    int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, seq_len; // n_head_kv/n_ff <= 0: defaults
    bool tied;
    // run length: the first one set (> 0) of steps, tokens, minutes
    int64_t steps, tokens;
    double minutes;
    int64_t stop_after;   // > 0: stop (with a checkpoint) after this many steps in this invocation
    // batch
    int64_t batch, seq, grad_accum;
    // optimizer
    LrSpec lr;
    double weight_decay, grad_clip, beta1, beta2, adam_eps;
    // evaluation (eval_every 0: at the end only; eval_tokens 0: never), samples, checkpoints (0 = off)
    int64_t eval_every, eval_tokens, sample_every, sample_tokens, ckpt_every;
    uint64_t seed;
    double peak_gflops;   // <= 0: measure with our GEMM at start-up
    const char *name;     // general.name of the output (NULL: lossy-<L>x<C>)
    const char *device;   // where steps run: NULL/"cpu", or "cuda" (checkpoints move freely between the two)
    bool recompute;       // cuda: keep fewer activations, recompute them in the backward pass (less memory)
} TrainOpts;

// Defaults: lr 1e-3 → min 1e-4 cosine, warmup 100 steps (capped at a tenth of the run), weight decay 0.1, clip 1,
// betas (0.9, 0.95), eps 1e-8, batch 16, grad_accum 1, eval every 250 steps on 65536 tokens, checkpoints every 1000.
void train_opts_default(TrainOpts *o);
// The options as a JSON object (stored in checkpoints and in the model's provenance). Caller frees.
char *train_opts_to_json(const TrainOpts *o);
// Fill o from JSON written by train_opts_to_json (unknown keys are ignored, missing ones keep o's values).
int train_opts_from_json(TrainOpts *o, const char *json, Err *e);

typedef enum TrainEventKind { TRAIN_EV_INFO, TRAIN_EV_STEP, TRAIN_EV_EVAL, TRAIN_EV_SAMPLE, TRAIN_EV_CHECKPOINT } TrainEventKind;
typedef struct TrainEvent {
    TrainEventKind kind;
    const char *line; // formatted, no trailing newline
    int64_t step;
} TrainEvent;
typedef void (*TrainEventFn)(void *ctx, const TrainEvent *ev);

// A data source other than a prepared dataset directory (supervised finetuning, sft_data.h): fixed rows of T inputs
// and T targets, where a target of -1 is not trained on (the loss mask). With a source, the loss and its gradient
// are averaged over the counted targets of each micro-batch (not over all B*T positions), evaluation averages over
// the counted validation targets, and the row order is a pure function of a DataLoaderState (checkpointed as the
// loader's position, so resuming reproduces the run bit for bit).
typedef struct TrainSource {
    void *ctx;
    const Tokenizer *tok;      // the vocabulary; the exported model carries it
    uint64_t hash;             // identifies the data: a checkpoint refuses to resume on other data
    const char *desc;          // lossy.train.data provenance
    int64_t T;                 // row length (the trainer's --seq)
    int64_t n_val_rows;        // 0: no evaluation
    int64_t train_targets, val_targets; // counted targets per split (for the info line)
    // The next B training rows (B, T) in the order st fixes; advances st.
    void (*next)(void *ctx, DataLoaderState *st, int64_t B, int32_t *inputs, int32_t *targets);
    // Validation rows [first, first + n) (B, T).
    void (*val_rows)(void *ctx, int64_t first, int64_t n, int32_t *inputs, int32_t *targets);
    // Extra keys for the exported model (may be NULL).
    int (*export_keys)(void *ctx, GGUFWriter *w, Err *e);
} TrainSource;

typedef struct TrainIO {
    const char *data_dir;     // prepared dataset; ignored when source is set
    const TrainSource *source;// or NULL
    const char *out_path;     // final GGUF
    const char *ckpt_path;    // NULL: <out>.ckpt
    const char *log_path;     // NULL: <out>.csv
    const char *plot_path;    // NULL: <out>.svg
    const char *resume;       // checkpoint to continue from, or NULL
    const char *init;         // llama GGUF to start from instead of random weights (F32, F16, BF16 or quantized
                              // tensors, dequantized), or NULL
    ThreadPool *pool;
    volatile sig_atomic_t *stop; // may be NULL
    TrainEventFn on_event;       // may be NULL
    void *event_ctx;
} TrainIO;

typedef struct TrainResult {
    int64_t steps;           // optimizer steps done in total (including before a resume)
    int64_t tokens;
    double train_loss;       // last step's loss
    double val_loss, val_bpb;// last evaluation (NAN when none)
    bool interrupted;        // stopped by *stop or stop_after before the end (a checkpoint was written)
    double seconds;
} TrainResult;

int train_run(const TrainOpts *o, const TrainIO *io, TrainResult *r, Err *e);

// Our GEMM's throughput on the pool (GFLOP/s), measured for about `seconds`: the "peak" in progress lines.
double train_measure_peak_gflops(ThreadPool *pool, double seconds);

#endif
