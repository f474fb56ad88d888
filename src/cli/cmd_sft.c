// cmd_sft.c — `lossy sft`: supervised finetuning of a llama GGUF on JSONL conversations. The base model gives the
// weights (F32/F16/BF16, quantized ones dequantized), the tokenizer and the chat format; src/train/sft_data.c turns
// the conversations into masked rows; the loop is the pretraining loop (trainer.c) fed by a TrainSource, so progress
// lines, evaluation, CSV/SVG logs, checkpoints, SIGINT and --resume behave exactly as in `lossy train`.
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/threadpool.h"
#include "base/util.h"
#include "cli.h"
#include "model/config.h"
#include "sample/chat.h"
#include "train/checkpoint.h"
#include "train/sft_data.h"
#include "train/train_model.h"
#include "train/trainer.h"

static const CliFlag FLAGS[] = {
    {"base", 'm', FLAG_STR, "GGUF", NULL, "model to finetune: a llama GGUF with a tokenizer (required)"},
    {"data", 'd', FLAG_STR, "FILE", NULL, "conversations, one JSON {\"messages\": [...]} per line (required)"},
    {"out", 'o', FLAG_STR, "FILE", NULL, "finetuned model GGUF to write (required); OUT.ckpt.gguf, OUT.csv, OUT.svg beside it"},
    {"val", 0, FLAG_STR, "FILE", NULL, "validation conversations (default: hold out --val-fraction of --data)"},
    {"val-fraction", 0, FLAG_FLOAT, "F", NULL, "part of --data held out for validation when no --val (default 0.05)"},
    {"chat-format", 0, FLAG_STR, "NAME", NULL, "chatml, llama2, llama3, mistral or lossy (default: the base model's template, else its vocabulary)"},
    {"seq", 0, FLAG_INT, "T", NULL, "tokens per training row (default: the model's context, at most 1024)"},
    {"pack", 0, FLAG_BOOL, NULL, NULL, "pack several conversations per row instead of one padded row each"},
    {"drop-long", 0, FLAG_BOOL, NULL, NULL, "drop conversations longer than a row instead of truncating them"},
    {"steps", 'n', FLAG_INT, "N", NULL, "optimizer steps to train"},
    {"epochs", 0, FLAG_FLOAT, "E", NULL, "passes over the training rows (steps = E x rows / (batch x accum)); default 1"},
    {"stop-after", 0, FLAG_INT, "N", NULL, "stop with a checkpoint after N steps of this invocation"},
    {"batch", 'b', FLAG_INT, "B", NULL, "rows per micro-batch (default 8)"},
    {"grad-accum", 0, FLAG_INT, "K", NULL, "micro-batches per optimizer step (default 1)"},
    {"lr", 0, FLAG_FLOAT, "X", NULL, "peak learning rate (default 1e-4)"},
    {"min-lr", 0, FLAG_FLOAT, "X", NULL, "final learning rate of cosine/wsd (default 1e-5)"},
    {"warmup", 0, FLAG_INT, "N", NULL, "linear warmup steps (default: min(100, a tenth of the run))"},
    {"schedule", 0, FLAG_STR, "S", NULL, "learning-rate schedule: cosine, wsd or const (default cosine)"},
    {"decay-frac", 0, FLAG_FLOAT, "F", NULL, "wsd: fraction of the run spent decaying (default 0.2)"},
    {"weight-decay", 0, FLAG_FLOAT, "X", NULL, "AdamW decoupled weight decay on matrices (default 0)"},
    {"grad-clip", 0, FLAG_FLOAT, "X", NULL, "clip the global gradient norm to X, 0 = off (default 1)"},
    {"eval-every", 0, FLAG_INT, "N", NULL, "validation loss every N steps, 0 = only at the end (default 100)"},
    {"ckpt-every", 0, FLAG_INT, "N", NULL, "write a checkpoint every N steps; 0 = only at the end and on SIGINT/SIGTERM (default 1000)"},
    {"checkpoint", 0, FLAG_STR, "FILE", NULL, "checkpoint path (default OUT.ckpt.gguf)"},
    {"log", 0, FLAG_STR, "FILE", NULL, "CSV loss log (default OUT.csv)"},
    {"plot", 0, FLAG_STR, "FILE", NULL, "SVG loss curve (default OUT.svg)"},
    {"resume", 0, FLAG_STR, "CKPT", NULL, "continue a run from its checkpoint (same --base, --data and row flags)"},
    {"seed", 's', FLAG_INT, "S", NULL, "seed for the row order (default 1337)"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    {"name", 0, FLAG_STR, "NAME", NULL, "general.name of the output model (default: the base's name + \"-sft\")"},
    {"peak-gflops", 0, FLAG_FLOAT, "X", NULL, "machine peak for the % column (default: measured at start)"},
    {"quiet", 'q', FLAG_BOOL, NULL, NULL, "print only errors and the final summary"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    g_stop = 1;
    signal(sig, SIG_DFL); // a second ^C ends the process at once
}

static void on_event(void *ctx, const TrainEvent *ev) {
    if (*(const bool *)ctx) return;
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

// The chat format and the template to store in the output: --chat-format, else the base's template, else its
// vocabulary. *tmpl_out is what the output carries (malloc'ed), or NULL when no template text fits the format.
static int pick_format(const char *base, const GGUFFile *g, const Tokenizer *tok, const char *name, ChatFormat *fmt,
                       char **tmpl_out, Err *e) {
    char *tmpl = NULL;
    if (chat_template_from_gguf(g, &tmpl, e)) return err_prefix(e, "%s: ", base);
    ChatFormat from_tmpl = tmpl ? chat_format_detect(tmpl) : CHAT_FORMAT_UNKNOWN;
    if (name) {
        if (chat_format_from_name(name, fmt, e)) {
            free(tmpl);
            return -1;
        }
    } else if (from_tmpl != CHAT_FORMAT_UNKNOWN) {
        *fmt = from_tmpl;
    } else if (tmpl) {
        free(tmpl);
        return ERR(e, "%s: its chat template is not one lossy recognises; choose one with --chat-format", base);
    } else {
        *fmt = chat_format_from_vocab(tok);
    }
    if (*fmt == CHAT_FORMAT_LOSSY && from_tmpl != CHAT_FORMAT_LOSSY) {
        free(tmpl);
        tmpl = xstrdup(CHAT_TEMPLATE_LOSSY);
    } else if (from_tmpl != *fmt) {
        free(tmpl); // the base's template describes another format: storing it would mislead `lossy chat`
        tmpl = NULL;
    }
    *tmpl_out = tmpl;
    return 0;
}

static int run(const CliArgs *a) {
    const char *ctx = "lossy sft --help";
    const char *base = cli_flag_str(a, "base"), *data = cli_flag_str(a, "data"), *out = cli_flag_str(a, "out");
    if (!base) return cli_errorf(EXIT_USAGE, ctx, "--base GGUF is required");
    if (!data) return cli_errorf(EXIT_USAGE, ctx, "--data FILE is required");
    if (!out) return cli_errorf(EXIT_USAGE, ctx, "--out FILE is required");
    if (cli_flag_given(a, "steps") && cli_flag_given(a, "epochs"))
        return cli_errorf(EXIT_USAGE, ctx, "give only one of --steps, --epochs");
    TrainOpts o;
    train_opts_default(&o);
    o.batch = 8;
    o.lr.lr = 1e-4;
    o.lr.min_lr = 1e-5;
    o.weight_decay = 0.0;
    o.eval_every = 100;
    const char *resume = cli_flag_str(a, "resume");
    Err e;
    if (resume) { // the run continues with its own options; flags given now override them
        Checkpoint ck;
        if (checkpoint_open(&ck, resume, &e)) return cli_fail(&e, resume);
        int rc = train_opts_from_json(&o, ck.meta.opts_json, &e);
        checkpoint_close(&ck);
        if (rc) return cli_fail(&e, resume);
    }
    double epochs = 1.0, val_fraction = 0.05;
    int64_t seq = o.seq;
    int bad = apply_int(a, "steps", 1, &o.steps, ctx) | apply_int(a, "stop-after", 1, &o.stop_after, ctx) |
              apply_int(a, "batch", 1, &o.batch, ctx) | apply_int(a, "grad-accum", 1, &o.grad_accum, ctx) |
              apply_int(a, "warmup", 0, &o.lr.warmup, ctx) | apply_int(a, "eval-every", 0, &o.eval_every, ctx) |
              apply_int(a, "ckpt-every", 0, &o.ckpt_every, ctx) | apply_int(a, "seq", 2, &seq, ctx);
    bad |= apply_float(a, "epochs", 0, &epochs, ctx) | apply_float(a, "val-fraction", 0, &val_fraction, ctx) |
           apply_float(a, "lr", 0, &o.lr.lr, ctx) | apply_float(a, "min-lr", 0, &o.lr.min_lr, ctx) |
           apply_float(a, "decay-frac", 0, &o.lr.decay_frac, ctx) | apply_float(a, "weight-decay", 0, &o.weight_decay, ctx) |
           apply_float(a, "grad-clip", 0, &o.grad_clip, ctx) | apply_float(a, "peak-gflops", 0, &o.peak_gflops, ctx);
    if (bad) return EXIT_USAGE;
    if (!(epochs > 0)) return cli_errorf(EXIT_USAGE, ctx, "--epochs must be positive");
    if (val_fraction > 0.5) return cli_errorf(EXIT_USAGE, ctx, "--val-fraction must be in [0, 0.5]");
    if (cli_flag_given(a, "schedule") && lr_schedule_parse(cli_flag_str(a, "schedule"), &o.lr.kind))
        return cli_errorf(EXIT_USAGE, ctx, "--schedule must be cosine, wsd or const, got '%s'", cli_flag_str(a, "schedule"));
    if (o.lr.decay_frac <= 0 || o.lr.decay_frac > 1) return cli_errorf(EXIT_USAGE, ctx, "--decay-frac must be in (0, 1]");
    if (cli_flag_given(a, "seed")) o.seed = (uint64_t)cli_flag_int(a, "seed");
    int64_t threads = cli_flag_given(a, "threads") ? cli_flag_int(a, "threads") : cpu_features()->n_cores;
    if (threads < 1 || threads > 512) return cli_errorf(EXIT_USAGE, ctx, "--threads must be between 1 and 512");

    // the base: shape, tokenizer, chat format
    GGUFFile g;
    if (gguf_open(&g, base, &e)) return cli_fail(&e, base);
    ModelConfig cfg;
    Tokenizer *tok = NULL;
    char *tmpl = NULL, *name = NULL;
    ChatFormat fmt = CHAT_FORMAT_UNKNOWN;
    if (model_config_from_gguf(&g, &cfg, &e) || train_config_check(&cfg, &e) || tokenizer_load_gguf(&g, &tok, &e) ||
        pick_format(base, &g, tok, cli_flag_str(a, "chat-format"), &fmt, &tmpl, &e)) {
        gguf_close(&g);
        tokenizer_free(tok);
        return cli_fail(&e, base);
    }
    if (cli_flag_given(a, "name")) {
        name = xstrdup(cli_flag_str(a, "name"));
    } else {
        GStr gn;
        Err ne;
        Buf b;
        buf_init(&b);
        if (gguf_get_str(&g, "general.name", &gn, &ne) == 0 && gn.len > 0 && gn.len < 200) buf_append(&b, gn.ptr, gn.len);
        else buf_append_str(&b, "lossy");
        buf_append_str(&b, "-sft");
        name = b.data;
    }
    gguf_close(&g);
    o.name = name;
    o.n_layer = cfg.n_layer, o.n_embd = cfg.n_embd, o.n_head = cfg.n_head, o.n_head_kv = cfg.n_head_kv;
    o.n_ff = cfg.n_ff, o.seq_len = cfg.n_ctx_train, o.tied = cfg.tied_embeddings;
    if (seq <= 0) seq = cfg.n_ctx_train < 1024 ? cfg.n_ctx_train : 1024;
    int rc = EXIT_OK;
    Chat chat;
    memset(&chat, 0, sizeof chat);
    SftData sd;
    memset(&sd, 0, sizeof sd);
    ThreadPool *pool = NULL;
    if (seq > cfg.n_ctx_train) {
        rc = cli_errorf(EXIT_USAGE, ctx, "--seq %lld is longer than the base model's context %lld", (long long)seq,
                        (long long)cfg.n_ctx_train);
        goto done;
    }
    o.seq = seq;
    if (chat_init(&chat, fmt, tok, tmpl, &e)) {
        rc = cli_fail(&e, base);
        goto done;
    }
    SftOpts so = {.T = seq, .pack = cli_flag_bool(a, "pack"), .drop_long = cli_flag_bool(a, "drop-long"),
                  .val_fraction = val_fraction};
    const char *val = cli_flag_str(a, "val");
    if (sft_data_load(&sd, &chat, data, val, &so, &e)) {
        rc = cli_fail(&e, data);
        goto done;
    }
    sd.base_path = base, sd.data_path = data, sd.val_path = val, sd.chat_template = tmpl, sd.format = fmt;
    bool quiet = cli_flag_bool(a, "quiet");
    if (!quiet) {
        const SftSplit *tr = &sd.split[0], *va = &sd.split[1];
        fprintf(stderr, "sft: chat format %s%s; %lld train conversations in %lld rows of %lld tokens (%lld targets), "
                        "%lld validation conversations (%lld targets); over-long: %lld truncated, %lld dropped\n",
                chat_format_name(fmt), tmpl ? "" : " (no template text to store)", (long long)tr->conversations,
                (long long)tr->n_rows, (long long)seq, (long long)tr->targets, (long long)va->conversations,
                (long long)va->targets, (long long)(tr->truncated + va->truncated), (long long)(tr->dropped + va->dropped));
    }
    if (!cli_flag_given(a, "steps") && (!resume || cli_flag_given(a, "epochs"))) {
        double per_step = (double)(o.batch * o.grad_accum);
        o.steps = (int64_t)ceil(epochs * (double)sd.split[0].n_rows / per_step);
        if (o.steps < 1) o.steps = 1;
    }
    o.tokens = 0, o.minutes = 0;

    pool = threadpool_new((int)threads);
    TrainIO io = {.source = &sd.src,
                  .out_path = out,
                  .ckpt_path = cli_flag_str(a, "checkpoint"),
                  .log_path = cli_flag_str(a, "log"),
                  .plot_path = cli_flag_str(a, "plot"),
                  .resume = resume,
                  .init = resume ? NULL : base,
                  .pool = pool,
                  .stop = &g_stop,
                  .on_event = on_event,
                  .event_ctx = &quiet};
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    TrainResult r;
    int trc = train_run(&o, &io, &r, &e);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (trc) {
        rc = cli_fail(&e, data);
        goto done;
    }
    fprintf(stderr, "%s after %lld steps (%.1f s): train loss %.4f (assistant tokens)", r.interrupted ? "stopped" : "done",
            (long long)r.steps, r.seconds, r.train_loss);
    if (r.val_loss == r.val_loss) fprintf(stderr, ", val loss %.4f", r.val_loss);
    fprintf(stderr, "\n");
    if (r.interrupted) {
        fprintf(stderr, "resume with the same flags and --resume <checkpoint> (default OUT.ckpt.gguf)\n");
        if (g_stop) rc = 130;
    }
done:
    threadpool_free(pool);
    sft_data_free(&sd);
    chat_free(&chat);
    tokenizer_free(tok);
    free(tmpl);
    free(name);
    return rc;
}

const CliCommand cmd_sft = {
    .name = "sft",
    .summary = "finetune a model on JSONL conversations (assistant tokens only); write a GGUF",
    .usage = "",
    .min_pos = 0,
    .max_pos = 0,
    .flags = FLAGS,
    .details =
        "Each line of --data is an OpenAI-style {\"messages\": [{\"role\", \"content\"}, ...]}. Conversations are "
        "rendered with the base model's chat format (its tokenizer.chat_template, its vocabulary, or --chat-format); "
        "only assistant tokens and their end-of-turn marker are trained on (user, system and tool text is context). "
        "Over-long conversations are truncated (or dropped with --drop-long) and counted. The loop, progress lines, "
        "checkpoints, SIGINT handling, --resume (bit for bit) and the CSV/SVG logs are those of `lossy train`; the "
        "validation loss is the mean over held-out assistant tokens. The output is a standard F32 GGUF with the "
        "base's tokenizer, the chat template and lossy.sft.* provenance, loadable by `lossy run` and `lossy chat`.",
    .run = run,
};
