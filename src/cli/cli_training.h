// cli_training.h — the training flags that `lossy train` and `lossy sft` share, their parsing into TrainOpts/TrainIO,
// and the signal handling around train_run(), so both commands spell, validate and interrupt a run the same way.
//
// A command puts CLI_TRAINING_FLAGS(...) inside its flag table; the arguments are the help texts of the defaults that
// differ between the two (pretraining and finetuning want different batch sizes, learning rates, weight decay and
// evaluation cadence), so --help states each command's own default. Its run function fills a TrainOpts with those
// defaults, calls cli_training_resume_opts() (a checkpoint's stored options replace them), then cli_training_opts()
// (flags given now override), and runs through cli_training_run(). Command-specific flags (model shape, --tokens,
// --init, samples for train; --base, --epochs, row layout for sft) stay in the command's own table.
#ifndef LOSSY_CLI_TRAINING_H
#define LOSSY_CLI_TRAINING_H

#include "cli/cli.h"
#include "train/trainer.h"

#define CLI_TRAINING_FLAGS(DEF_BATCH, DEF_LR, DEF_MIN_LR, DEF_WEIGHT_DECAY, DEF_EVAL_EVERY)                          \
    {"out", 'o', FLAG_STR, "FILE", NULL, "model GGUF to write (required); OUT.ckpt.gguf, OUT.csv, OUT.svg beside it"},   \
    {"steps", 'n', FLAG_INT, "N", NULL, "optimizer steps to train"},                                                     \
    {"minutes", 0, FLAG_FLOAT, "M", NULL, "train for M minutes of wall clock (the schedule follows time)"},              \
    {"stop-after", 0, FLAG_INT, "N", NULL,                                                                                \
     "stop with a checkpoint after N steps of this invocation (keeps the schedule of the whole run)"},                  \
    {"batch", 'b', FLAG_INT, "B", NULL, "sequences (rows) per micro-batch (default " DEF_BATCH ")"},                      \
    {"grad-accum", 0, FLAG_INT, "K", NULL, "micro-batches per optimizer step (default 1)"},                              \
    {"lr", 0, FLAG_FLOAT, "X", NULL, "peak learning rate (default " DEF_LR ")"},                                         \
    {"min-lr", 0, FLAG_FLOAT, "X", NULL, "final learning rate of cosine/wsd (default " DEF_MIN_LR ")"},                  \
    {"warmup", 0, FLAG_INT, "N", NULL, "linear warmup steps (default: min(100, a tenth of the run))"},                   \
    {"schedule", 0, FLAG_STR, "S", NULL, "learning-rate schedule: cosine, wsd or const (default cosine)"},               \
    {"decay-frac", 0, FLAG_FLOAT, "F", NULL, "wsd: fraction of the run spent decaying (default 0.2)"},                   \
    {"weight-decay", 0, FLAG_FLOAT, "X", NULL,                                                                            \
     "AdamW decoupled weight decay on matrices (default " DEF_WEIGHT_DECAY ")"},                                         \
    {"grad-clip", 0, FLAG_FLOAT, "X", NULL, "clip the global gradient norm to X, 0 = off (default 1)"},                  \
    {"beta1", 0, FLAG_FLOAT, "X", NULL, "AdamW beta1 (default 0.9)"},                                                    \
    {"beta2", 0, FLAG_FLOAT, "X", NULL, "AdamW beta2 (default 0.95)"},                                                   \
    {"eval-every", 0, FLAG_INT, "N", NULL,                                                                                \
     "evaluate on the validation split every N steps, 0 = only at the end (default " DEF_EVAL_EVERY ")"},              \
    {"ckpt-every", 0, FLAG_INT, "N", NULL,                                                                                \
     "write a checkpoint every N steps; 0 = only at the end and on SIGINT/SIGTERM (default 1000)"},                    \
    {"checkpoint", 0, FLAG_STR, "FILE", NULL, "checkpoint path (default OUT.ckpt.gguf)"},                                \
    {"log", 0, FLAG_STR, "FILE", NULL, "CSV loss log (default OUT.csv)"},                                                \
    {"plot", 0, FLAG_STR, "FILE", NULL, "SVG loss curve (default OUT.svg)"},                                             \
    {"resume", 0, FLAG_STR, "CKPT", NULL,                                                                                 \
     "continue a run from its checkpoint (same data; its options apply unless overridden)"},                            \
    {"seed", 's', FLAG_INT, "S", NULL, "seed for random initialisation and the data order (default 1337)"},             \
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},                                               \
    {"device", 0, FLAG_STR, "D", NULL, "where steps run: cpu or cuda (default cpu; checkpoints move freely between them)"}, \
    {"recompute", 0, FLAG_BOOL, NULL, NULL, "cuda: recompute activations in the backward pass to save memory"},          \
    {"peak-gflops", 0, FLAG_FLOAT, "X", NULL, "machine peak for the % column (default: measured with our GEMM at start)"}, \
    {"quiet", 'q', FLAG_BOOL, NULL, NULL, "print only errors and the final summary"}

// With --resume given: replace o with the options stored in that checkpoint (flags given now are applied after, by
// cli_training_opts). Returns EXIT_OK, or EXIT_RUNTIME after printing why the checkpoint cannot be read.
int cli_training_resume_opts(const CliArgs *a, TrainOpts *o);

// Apply the CLI_TRAINING_FLAGS that were given onto o and check their ranges. Also resolves the run length: when one
// of --steps/--minutes (or a command's own length flag named in other_len, e.g. "tokens" or "epochs"; NULL-terminated,
// may be NULL) is given, the other lengths are cleared. Returns EXIT_OK, or EXIT_USAGE after printing the bad flag;
// ctx names the help to read ("lossy train --help").
int cli_training_opts(const CliArgs *a, const char *ctx, const char *const *other_len, TrainOpts *o);

// --threads, else all cores; EXIT_USAGE (printed) when out of range.
int cli_training_threads(const CliArgs *a, const char *ctx, int *threads);

// The output, checkpoint, log, plot and resume paths, the stop flag the signal handlers set, and the progress
// printer (silent with --quiet). The caller sets data_dir or source, init and pool.
void cli_training_io(const CliArgs *a, TrainIO *io);

// train_run() with SIGINT/SIGTERM asking the trainer to checkpoint and stop (a second signal ends the process).
// *by_signal (may be NULL) tells whether a signal stopped the run: the command then exits 130.
int cli_training_run(const TrainOpts *o, const TrainIO *io, TrainResult *r, bool *by_signal, Err *e);

#endif
