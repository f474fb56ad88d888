// cmd_train.c — `lossy train`: pretrain a Llama-architecture model on a prepared dataset. The loop lives in
// src/train/trainer.c; this file turns flags (and, when resuming, the checkpoint's stored options) into TrainOpts,
// installs the SIGINT/SIGTERM handlers that make the trainer checkpoint and stop, and prints progress.
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "base/util.h"
#include "cli.h"
#include "train/checkpoint.h"
#include "train/train_model.h"
#include "train/trainer.h"

static const CliFlag FLAGS[] = {
    {"data", 'd', FLAG_STR, "DIR", NULL, "dataset directory from `lossy data prepare` (required)"},
    {"out", 'o', FLAG_STR, "FILE", NULL, "trained model GGUF to write (required); OUT.ckpt.gguf, OUT.csv, OUT.svg beside it"},
    {"preset", 0, FLAG_STR, "NAME", NULL, "model shape preset: tiny, stories15m, small, stories42m, medium"},
    {"layers", 0, FLAG_INT, "N", NULL, "transformer blocks (default 6)"},
    {"dim", 0, FLAG_INT, "N", NULL, "model width (default 288)"},
    {"heads", 0, FLAG_INT, "N", NULL, "attention heads (default 6)"},
    {"kv-heads", 0, FLAG_INT, "N", NULL, "key/value heads for grouped-query attention (default: = heads)"},
    {"ffn-dim", 0, FLAG_INT, "N", NULL, "MLP width (default: 2/3 of 4 x dim, rounded up to 32)"},
    {"seq-len", 0, FLAG_INT, "N", NULL, "model context length (default 256)"},
    {"untied", 0, FLAG_BOOL, NULL, NULL, "separate output head instead of tied token embeddings"},
    {"steps", 'n', FLAG_INT, "N", NULL, "optimizer steps to train"},
    {"tokens", 0, FLAG_INT, "N", NULL, "train on N tokens (steps = N / tokens per step)"},
    {"minutes", 0, FLAG_FLOAT, "M", NULL, "train for M minutes of wall clock (the schedule follows time)"},
    {"stop-after", 0, FLAG_INT, "N", NULL, "stop with a checkpoint after N steps of this invocation (keeps the schedule of the whole run)"},
    {"batch", 'b', FLAG_INT, "B", NULL, "sequences per micro-batch (default 16)"},
    {"seq", 0, FLAG_INT, "T", NULL, "tokens per training sequence (default: --seq-len)"},
    {"grad-accum", 0, FLAG_INT, "K", NULL, "micro-batches per optimizer step (default 1)"},
    {"lr", 0, FLAG_FLOAT, "X", NULL, "peak learning rate (default 1e-3)"},
    {"min-lr", 0, FLAG_FLOAT, "X", NULL, "final learning rate of cosine/wsd (default 1e-4)"},
    {"warmup", 0, FLAG_INT, "N", NULL, "linear warmup steps (default: min(100, a tenth of the run))"},
    {"schedule", 0, FLAG_STR, "S", NULL, "learning-rate schedule: cosine, wsd or const (default cosine)"},
    {"decay-frac", 0, FLAG_FLOAT, "F", NULL, "wsd: fraction of the run spent decaying (default 0.2)"},
    {"weight-decay", 0, FLAG_FLOAT, "X", NULL, "AdamW decoupled weight decay on matrices (default 0.1)"},
    {"grad-clip", 0, FLAG_FLOAT, "X", NULL, "clip the global gradient norm to X, 0 = off (default 1)"},
    {"beta1", 0, FLAG_FLOAT, "X", NULL, "AdamW beta1 (default 0.9)"},
    {"beta2", 0, FLAG_FLOAT, "X", NULL, "AdamW beta2 (default 0.95)"},
    {"eval-every", 0, FLAG_INT, "N", NULL, "evaluate on the validation split every N steps, 0 = only at the end (default 250)"},
    {"eval-tokens", 0, FLAG_INT, "N", NULL, "validation tokens per evaluation, 0 = no evaluation (default 65536)"},
    {"sample-every", 0, FLAG_INT, "N", NULL, "print a generated sample every N steps (default 0 = never)"},
    {"sample-tokens", 0, FLAG_INT, "N", NULL, "tokens per sample (default 128)"},
    {"ckpt-every", 0, FLAG_INT, "N", NULL, "write a checkpoint every N steps; 0 = only at the end and on SIGINT/SIGTERM (default 1000)"},
    {"checkpoint", 0, FLAG_STR, "FILE", NULL, "checkpoint path (default OUT.ckpt.gguf)"},
    {"log", 0, FLAG_STR, "FILE", NULL, "CSV loss log (default OUT.csv)"},
    {"plot", 0, FLAG_STR, "FILE", NULL, "SVG loss curve (default OUT.svg)"},
    {"resume", 0, FLAG_STR, "CKPT", NULL, "continue a run from its checkpoint (its options apply unless overridden)"},
    {"init", 0, FLAG_STR, "GGUF", NULL, "start from the weights of a llama GGUF (F32, or F16/BF16/quantized, dequantized) instead of random ones"},
    {"seed", 's', FLAG_INT, "S", NULL, "seed for initialisation and data order (default 1337)"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"name", 0, FLAG_STR, "NAME", NULL, "general.name of the output model"},
    {"peak-gflops", 0, FLAG_FLOAT, "X", NULL, "machine peak for the % column (default: measured with our GEMM at start)"},
    {"quiet", 'q', FLAG_BOOL, NULL, NULL, "print only errors and the final summary"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    g_stop = 1;
    signal(sig, SIG_DFL); // a second ^C ends the process at once
}

typedef struct Printer {
    bool quiet;
} Printer;

static void on_event(void *ctx, const TrainEvent *ev) {
    Printer *p = ctx;
    if (p->quiet) return;
    fprintf(stderr, "%s\n", ev->line);
    fflush(stderr);
}

static int apply_int(const CliArgs *a, const char *flag, int64_t lo, int64_t *dst, const char *ctx) {
    if (!cli_flag_given(a, flag)) return 0;
    int64_t v = cli_flag_int(a, flag);
    if (v < lo) return cli_errorf(EXIT_USAGE, ctx, "--%s must be at least %lld, got %lld", flag, (long long)lo, (long long)v);
    *dst = v;
    return 0;
}

static int apply_float(const CliArgs *a, const char *flag, double lo, double *dst, const char *ctx) {
    if (!cli_flag_given(a, flag)) return 0;
    double v = cli_flag_float(a, flag);
    if (!(v >= lo)) return cli_errorf(EXIT_USAGE, ctx, "--%s must be at least %g, got %g", flag, lo, v);
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
    Err e;
    if (resume) {
        // the run continues with its own options; flags given now override them
        Checkpoint ck;
        if (checkpoint_open(&ck, resume, &e)) return cli_fail(&e, resume);
        int rc = train_opts_from_json(&o, ck.meta.opts_json, &e);
        checkpoint_close(&ck);
        if (rc) return cli_fail(&e, resume);
    }
    if (cli_flag_given(a, "preset")) {
        const TrainPreset *p = train_preset_find(cli_flag_str(a, "preset"));
        if (!p) {
            Buf names;
            buf_init(&names);
            for (size_t i = 0; i < TRAIN_N_PRESETS; i++) buf_printf(&names, "%s%s", i ? ", " : "", TRAIN_PRESETS[i].name);
            int rc = cli_errorf(EXIT_USAGE, ctx, "unknown --preset '%s' (known: %s)", cli_flag_str(a, "preset"), names.data);
            buf_free(&names);
            return rc;
        }
        o.n_layer = p->n_layer, o.n_embd = p->n_embd, o.n_head = p->n_head, o.n_head_kv = p->n_head_kv;
        o.n_ff = p->n_ff, o.seq_len = p->seq_len;
    }
    int bad = 0;
    bad |= apply_int(a, "layers", 1, &o.n_layer, ctx) | apply_int(a, "dim", 1, &o.n_embd, ctx) |
           apply_int(a, "heads", 1, &o.n_head, ctx) | apply_int(a, "kv-heads", 1, &o.n_head_kv, ctx) |
           apply_int(a, "ffn-dim", 1, &o.n_ff, ctx) | apply_int(a, "seq-len", 2, &o.seq_len, ctx) |
           apply_int(a, "steps", 1, &o.steps, ctx) | apply_int(a, "tokens", 1, &o.tokens, ctx) |
           apply_int(a, "stop-after", 1, &o.stop_after, ctx) | apply_int(a, "batch", 1, &o.batch, ctx) |
           apply_int(a, "seq", 2, &o.seq, ctx) | apply_int(a, "grad-accum", 1, &o.grad_accum, ctx) |
           apply_int(a, "warmup", 0, &o.lr.warmup, ctx) | apply_int(a, "eval-every", 0, &o.eval_every, ctx) |
           apply_int(a, "eval-tokens", 0, &o.eval_tokens, ctx) | apply_int(a, "sample-every", 0, &o.sample_every, ctx) |
           apply_int(a, "sample-tokens", 1, &o.sample_tokens, ctx) | apply_int(a, "ckpt-every", 0, &o.ckpt_every, ctx);
    bad |= apply_float(a, "minutes", 0, &o.minutes, ctx) | apply_float(a, "lr", 0, &o.lr.lr, ctx) |
           apply_float(a, "min-lr", 0, &o.lr.min_lr, ctx) | apply_float(a, "decay-frac", 0, &o.lr.decay_frac, ctx) |
           apply_float(a, "weight-decay", 0, &o.weight_decay, ctx) | apply_float(a, "grad-clip", 0, &o.grad_clip, ctx) |
           apply_float(a, "beta1", 0, &o.beta1, ctx) | apply_float(a, "beta2", 0, &o.beta2, ctx) |
           apply_float(a, "peak-gflops", 0, &o.peak_gflops, ctx);
    if (bad) return EXIT_USAGE;
    if (cli_flag_given(a, "untied")) o.tied = false;
    if (cli_flag_given(a, "seq") && !cli_flag_given(a, "seq-len") && !cli_flag_given(a, "preset") && !resume && o.seq > o.seq_len)
        o.seq_len = o.seq;
    if (cli_flag_given(a, "schedule") && lr_schedule_parse(cli_flag_str(a, "schedule"), &o.lr.kind))
        return cli_errorf(EXIT_USAGE, ctx, "--schedule must be cosine, wsd or const, got '%s'", cli_flag_str(a, "schedule"));
    if (o.lr.decay_frac <= 0 || o.lr.decay_frac > 1) return cli_errorf(EXIT_USAGE, ctx, "--decay-frac must be in (0, 1]");
    if (o.beta1 >= 1 || o.beta2 >= 1) return cli_errorf(EXIT_USAGE, ctx, "--beta1 and --beta2 must be below 1");
    // the run length: exactly one of them
    int n_len = cli_flag_given(a, "steps") + cli_flag_given(a, "tokens") + cli_flag_given(a, "minutes");
    if (n_len > 1) return cli_errorf(EXIT_USAGE, ctx, "give only one of --steps, --tokens, --minutes");
    if (cli_flag_given(a, "steps")) o.tokens = 0, o.minutes = 0;
    if (cli_flag_given(a, "tokens")) o.steps = 0, o.minutes = 0;
    if (cli_flag_given(a, "minutes")) o.steps = 0, o.tokens = 0;
    if (o.steps <= 0 && o.tokens <= 0 && !(o.minutes > 0))
        return cli_errorf(EXIT_USAGE, ctx, "say how long to train: --steps N, --tokens N or --minutes M");
    if (cli_flag_given(a, "seed")) o.seed = (uint64_t)cli_flag_int(a, "seed");
    o.name = cli_flag_str(a, "name");
    if (resume && cli_flag_given(a, "init")) return cli_errorf(EXIT_USAGE, ctx, "--resume and --init contradict each other");
    int64_t threads = cli_flag_given(a, "threads") ? cli_flag_int(a, "threads") : cpu_features()->n_cores;
    if (threads < 1 || threads > 512) return cli_errorf(EXIT_USAGE, ctx, "--threads must be between 1 and 512");

    ThreadPool *pool = threadpool_new((int)threads);
    Printer pr = {cli_flag_bool(a, "quiet")};
    TrainIO io = {.data_dir = data,
                  .out_path = out,
                  .ckpt_path = cli_flag_str(a, "checkpoint"),
                  .log_path = cli_flag_str(a, "log"),
                  .plot_path = cli_flag_str(a, "plot"),
                  .resume = resume,
                  .init = cli_flag_str(a, "init"),
                  .pool = pool,
                  .stop = &g_stop,
                  .on_event = on_event,
                  .event_ctx = &pr};
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    TrainResult r;
    int rc = train_run(&o, &io, &r, &e);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    threadpool_free(pool);
    if (rc) return cli_fail(&e, data);
    fprintf(stderr, "%s after %lld steps (%lld tokens, %.1f s): train loss %.4f", r.interrupted ? "stopped" : "done",
            (long long)r.steps, (long long)r.tokens, r.seconds, r.train_loss);
    if (r.val_loss == r.val_loss) fprintf(stderr, ", val loss %.4f, %.3f bits/byte", r.val_loss, r.val_bpb);
    fprintf(stderr, "\n");
    if (r.interrupted) {
        fprintf(stderr, "resume with: lossy train --data %s --out %s --resume <checkpoint> (default %s)\n", data, out,
                cli_flag_str(a, "checkpoint") ? cli_flag_str(a, "checkpoint") : "OUT.ckpt.gguf");
        if (g_stop) return 130; // stopped by a signal, state saved
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
