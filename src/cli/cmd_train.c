// cmd_train.c — `lossy train`: pretrain a Llama-architecture model on a prepared dataset. The loop lives in
// src/train/trainer.c; the flags shared with `lossy sft` (optimizer, schedule, run length, logs, checkpoints, resume,
// threads, device) are parsed by cli_training.c; this file adds the model shape, --tokens, --init and samples, and
// prints the final summary.
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "base/util.h"
#include "cli/cli.h"
#include "cli/cli_training.h"
#include "train/train_model.h"
#include "train/trainer.h"

static const CliFlag FLAGS[] = {
    {"data", 'd', FLAG_STR, "DIR", NULL, "dataset directory from `lossy data prepare` (required)"},
    {"preset", 0, FLAG_STR, "NAME", NULL, "model shape preset: tiny, stories15m, small, stories42m, medium"},
    {"layers", 0, FLAG_INT, "N", NULL, "transformer blocks (default 6)"},
    {"dim", 0, FLAG_INT, "N", NULL, "model width (default 288)"},
    {"heads", 0, FLAG_INT, "N", NULL, "attention heads (default 6)"},
    {"kv-heads", 0, FLAG_INT, "N", NULL, "key/value heads for grouped-query attention (default: = heads)"},
    {"ffn-dim", 0, FLAG_INT, "N", NULL, "MLP width (default: 2/3 of 4 x dim, rounded up to 32)"},
    {"seq-len", 0, FLAG_INT, "N", NULL, "model context length (default 256)"},
    {"untied", 0, FLAG_BOOL, NULL, NULL, "separate output head instead of tied token embeddings"},
    {"tokens", 0, FLAG_INT, "N", NULL, "train on N tokens (steps = N / tokens per step)"},
    {"seq", 0, FLAG_INT, "T", NULL, "tokens per training sequence (default: --seq-len)"},
    {"eval-tokens", 0, FLAG_INT, "N", NULL, "validation tokens per evaluation, 0 = no evaluation (default 65536)"},
    {"sample-every", 0, FLAG_INT, "N", NULL, "print a generated sample every N steps (default 0 = never)"},
    {"sample-tokens", 0, FLAG_INT, "N", NULL, "tokens per sample (default 128)"},
    {"init", 0, FLAG_STR, "GGUF", NULL, "start from the weights of a llama GGUF (F32, or F16/BF16/quantized, dequantized) instead of random ones"},
    {"name", 0, FLAG_STR, "NAME", NULL, "general.name of the output model (default lossy-<layers>x<dim>)"},
    CLI_TRAINING_FLAGS("16", "1e-3", "1e-4", "0.1", "250"),
    {NULL, 0, 0, NULL, NULL, NULL},
};

static int apply_int(const CliArgs *a, const char *flag, int64_t lo, int64_t *dst, const char *ctx) {
    if (!cli_flag_given(a, flag)) return 0;
    int64_t v = cli_flag_int(a, flag);
    if (v < lo) return cli_errorf(EXIT_USAGE, ctx, "--%s must be at least %lld, got %lld", flag, (long long)lo, (long long)v);
    *dst = v;
    return 0;
}

static int run(const CliArgs *a) {
    const char *ctx = "lossy train --help";
    const char *data = cli_flag_str(a, "data"), *out = cli_flag_str(a, "out");
    if (!data) return cli_errorf(EXIT_USAGE, ctx, "--data DIR is required");
    if (!out) return cli_errorf(EXIT_USAGE, ctx, "--out FILE is required");
    TrainOpts o;
    train_opts_default(&o);
    const char *resume = cli_flag_str(a, "resume");
    int rc = cli_training_resume_opts(a, &o); // the run continues with its own options; flags given now override them
    if (rc) return rc;
    if (cli_flag_given(a, "preset")) {
        const TrainPreset *p = train_preset_find(cli_flag_str(a, "preset"));
        if (!p) {
            Buf names;
            buf_init(&names);
            for (size_t i = 0; i < TRAIN_N_PRESETS; i++) buf_printf(&names, "%s%s", i ? ", " : "", TRAIN_PRESETS[i].name);
            rc = cli_errorf(EXIT_USAGE, ctx, "unknown --preset '%s' (known: %s)", cli_flag_str(a, "preset"), names.data);
            buf_free(&names);
            return rc;
        }
        o.n_layer = p->n_layer, o.n_embd = p->n_embd, o.n_head = p->n_head, o.n_head_kv = p->n_head_kv;
        o.n_ff = p->n_ff, o.seq_len = p->seq_len;
    }
    static const char *const own_len[] = {"tokens", NULL};
    if (cli_training_opts(a, ctx, own_len, &o)) return EXIT_USAGE;
    int bad = apply_int(a, "layers", 1, &o.n_layer, ctx) | apply_int(a, "dim", 1, &o.n_embd, ctx) |
              apply_int(a, "heads", 1, &o.n_head, ctx) | apply_int(a, "kv-heads", 1, &o.n_head_kv, ctx) |
              apply_int(a, "ffn-dim", 1, &o.n_ff, ctx) | apply_int(a, "seq-len", 2, &o.seq_len, ctx) |
              apply_int(a, "tokens", 1, &o.tokens, ctx) | apply_int(a, "seq", 2, &o.seq, ctx) |
              apply_int(a, "eval-tokens", 0, &o.eval_tokens, ctx) | apply_int(a, "sample-every", 0, &o.sample_every, ctx) |
              apply_int(a, "sample-tokens", 1, &o.sample_tokens, ctx);
    if (bad) return EXIT_USAGE;
    if (cli_flag_given(a, "untied")) o.tied = false;
    if (cli_flag_given(a, "seq") && !cli_flag_given(a, "seq-len") && !cli_flag_given(a, "preset") && !resume && o.seq > o.seq_len)
        o.seq_len = o.seq;
    if (o.steps <= 0 && o.tokens <= 0 && !(o.minutes > 0))
        return cli_errorf(EXIT_USAGE, ctx, "say how long to train: --steps N, --tokens N or --minutes M");
    o.name = cli_flag_str(a, "name");
    if (resume && cli_flag_given(a, "init")) return cli_errorf(EXIT_USAGE, ctx, "--resume and --init contradict each other");
    int threads;
    if (cli_training_threads(a, ctx, &threads)) return EXIT_USAGE;

    ThreadPool *pool = threadpool_new(threads);
    TrainIO io = {.data_dir = data, .init = cli_flag_str(a, "init"), .pool = pool};
    cli_training_io(a, &io);
    TrainResult r;
    bool by_signal;
    Err e;
    rc = cli_training_run(&o, &io, &r, &by_signal, &e);
    threadpool_free(pool);
    if (rc) return cli_fail(&e, data);
    fprintf(stderr, "%s after %lld steps (%lld tokens, %.1f s): train loss %.4f", r.interrupted ? "stopped" : "done",
            (long long)r.steps, (long long)r.tokens, r.seconds, r.train_loss);
    if (r.val_loss == r.val_loss) fprintf(stderr, ", val loss %.4f, %.3f bits/byte", r.val_loss, r.val_bpb);
    fprintf(stderr, "\n");
    if (r.interrupted) {
        fprintf(stderr, "resume with: lossy train --data %s --out %s --resume <checkpoint> (default %s)\n", data, out,
                cli_flag_str(a, "checkpoint") ? cli_flag_str(a, "checkpoint") : "OUT.ckpt.gguf");
        if (by_signal) return 130; // stopped by a signal, state saved
    }
    return EXIT_OK;
}

const CliCommand cmd_train = {
    .name = "train",
    .summary = "pretrain a Llama-architecture model on a prepared dataset; write a GGUF",
    .usage = "",
    .min_pos = 0,
    .max_pos = 0,
    .flags = FLAGS,
    .details =
        "Model: RMSNorm, rotary embeddings (GGUF llama layout), SwiGLU MLP, grouped-query attention, fp32 weights. "
        "Optimizer: AdamW (decay on matrices only; norms and embeddings are not decayed), global-norm clipping, "
        "gradient accumulation, warmup then cosine / wsd / const. Each step prints loss, learning rate, gradient "
        "norm, tokens/s, GFLOP/s (6N + 12LCT per token) and % of peak, ETA; evaluations add validation loss and bits "
        "per byte. SIGINT/SIGTERM write a checkpoint and stop (exit 130); --resume continues bit for bit. The output "
        "is a standard GGUF with the dataset's tokenizer and lossy.train.* provenance.",
    .run = run,
};
