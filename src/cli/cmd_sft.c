// cmd_sft.c — `lossy sft`: supervised finetuning of a llama GGUF on JSONL conversations. The base model gives the
// weights (F32/F16/BF16, quantized ones dequantized), the tokenizer and the chat format; src/train/sft_data.c turns
// the conversations into masked rows; the loop is the pretraining loop (trainer.c) fed by a TrainSource, and the flags
// shared with `lossy train` are parsed by cli_training.c, so progress lines, evaluation, CSV/SVG logs, checkpoints,
// SIGINT and --resume behave exactly as in `lossy train`. This file adds the base, the data split, the row layout
// and --epochs.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "base/util.h"
#include "cli/cli.h"
#include "cli/cli_training.h"
#include "model/config.h"
#include "sample/chat.h"
#include "train/sft_data.h"
#include "train/train_model.h"
#include "train/trainer.h"

static const CliFlag FLAGS[] = {
    {"base", 'm', FLAG_STR, "GGUF", NULL, "model to finetune: a llama GGUF with a tokenizer (required)"},
    {"data", 'd', FLAG_STR, "FILE", NULL, "conversations, one JSON {\"messages\": [...]} per line (required)"},
    {"val", 0, FLAG_STR, "FILE", NULL, "validation conversations (default: hold out --val-fraction of --data)"},
    {"val-fraction", 0, FLAG_FLOAT, "F", NULL, "part of --data held out for validation when no --val (default 0.05)"},
    {"chat-format", 0, FLAG_STR, "NAME", NULL, "chatml, llama2, llama3, mistral or lossy (default: the base model's template, else its vocabulary)"},
    {"seq", 0, FLAG_INT, "T", NULL, "tokens per training row (default: the model's context, at most 1024)"},
    {"pack", 0, FLAG_BOOL, NULL, NULL, "pack several conversations per row instead of one padded row each"},
    {"drop-long", 0, FLAG_BOOL, NULL, NULL, "drop conversations longer than a row instead of truncating them"},
    {"epochs", 0, FLAG_FLOAT, "E", NULL, "passes over the training rows (steps = E x rows / (batch x accum)); default 1"},
    {"name", 0, FLAG_STR, "NAME", NULL, "general.name of the output model (default: the base's name + \"-sft\")"},
    CLI_TRAINING_FLAGS("8", "1e-4", "1e-5", "0", "100"),
    {NULL, 0, 0, NULL, NULL, NULL},
};

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
    TrainOpts o;
    train_opts_default(&o);
    o.batch = 8;
    o.lr.lr = 1e-4;
    o.lr.min_lr = 1e-5;
    o.weight_decay = 0.0;
    o.eval_every = 100;
    const char *resume = cli_flag_str(a, "resume");
    int rc = cli_training_resume_opts(a, &o); // the run continues with its own options; flags given now override them
    if (rc) return rc;
    static const char *const own_len[] = {"epochs", NULL};
    if (cli_training_opts(a, ctx, own_len, &o)) return EXIT_USAGE;
    double epochs = 1.0, val_fraction = 0.05;
    int64_t seq = o.seq;
    if (cli_flag_given(a, "epochs")) epochs = cli_flag_float(a, "epochs");
    if (cli_flag_given(a, "val-fraction")) val_fraction = cli_flag_float(a, "val-fraction");
    if (cli_flag_given(a, "seq")) seq = cli_flag_int(a, "seq");
    if (!(epochs > 0)) return cli_errorf(EXIT_USAGE, ctx, "--epochs must be positive");
    if (!(val_fraction >= 0 && val_fraction <= 0.5)) return cli_errorf(EXIT_USAGE, ctx, "--val-fraction must be in [0, 0.5]");
    if (cli_flag_given(a, "seq") && seq < 2) return cli_errorf(EXIT_USAGE, ctx, "--seq must be at least 2, got %lld", (long long)seq);
    int threads;
    if (cli_training_threads(a, ctx, &threads)) return EXIT_USAGE;

    // the base: shape, tokenizer, chat format
    Err e;
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
    rc = EXIT_OK;
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
    if (!cli_flag_bool(a, "quiet")) {
        const SftSplit *tr = &sd.split[0], *va = &sd.split[1];
        fprintf(stderr, "sft: chat format %s%s; %lld train conversations in %lld rows of %lld tokens (%lld targets), "
                        "%lld validation conversations (%lld targets); over-long: %lld truncated, %lld dropped\n",
                chat_format_name(fmt), tmpl ? "" : " (no template text to store)", (long long)tr->conversations,
                (long long)tr->n_rows, (long long)seq, (long long)tr->targets, (long long)va->conversations,
                (long long)va->targets, (long long)(tr->truncated + va->truncated), (long long)(tr->dropped + va->dropped));
    }
    // the run length: --steps or --minutes as given; else --epochs (default 1) of the training rows, unless a resumed
    // run keeps the length it stored
    bool own_length = cli_flag_given(a, "steps") || cli_flag_given(a, "minutes");
    if (!own_length && (!resume || cli_flag_given(a, "epochs") || (o.steps <= 0 && !(o.minutes > 0)))) {
        double per_step = (double)(o.batch * o.grad_accum);
        o.steps = (int64_t)ceil(epochs * (double)sd.split[0].n_rows / per_step);
        if (o.steps < 1) o.steps = 1;
        o.minutes = 0;
    }
    o.tokens = 0;

    pool = threadpool_new(threads);
    TrainIO io = {.source = &sd.src, .init = resume ? NULL : base, .pool = pool};
    cli_training_io(a, &io);
    TrainResult r;
    bool by_signal;
    if (cli_training_run(&o, &io, &r, &by_signal, &e)) {
        rc = cli_fail(&e, data);
        goto done;
    }
    fprintf(stderr, "%s after %lld steps (%.1f s): train loss %.4f (assistant tokens)", r.interrupted ? "stopped" : "done",
            (long long)r.steps, r.seconds, r.train_loss);
    if (r.val_loss == r.val_loss) fprintf(stderr, ", val loss %.4f", r.val_loss);
    fprintf(stderr, "\n");
    if (r.interrupted) {
        fprintf(stderr, "resume with the same flags and --resume <checkpoint> (default OUT.ckpt.gguf)\n");
        if (by_signal) rc = 130;
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
        "checkpoints, SIGINT handling, --resume (bit for bit; same --base, --data and row flags) and the CSV/SVG logs "
        "are those of `lossy train`; the validation loss is the mean over held-out assistant tokens. The output is a "
        "standard F32 GGUF with the base's tokenizer, the chat template and lossy.sft.* provenance, loadable by "
        "`lossy run` and `lossy chat`.",
    .run = run,
};
