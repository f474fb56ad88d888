// cli_training.c — parsing and range checks of the shared training flags, and the signal handling around a run
// (see cli_training.h).
#include "cli/cli_training.h"

#include <signal.h>
#include <string.h>

#include "base/cpu.h"
#include "train/checkpoint.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    g_stop = 1;
    signal(sig, SIG_DFL); // a second ^C ends the process at once
}

static void on_event(void *ctx, const TrainEvent *ev) {
    (void)ctx;
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

int cli_training_resume_opts(const CliArgs *a, TrainOpts *o) {
    const char *resume = cli_flag_str(a, "resume");
    if (!resume) return EXIT_OK;
    Checkpoint ck;
    Err e;
    if (checkpoint_open(&ck, resume, &e)) return cli_fail(&e, resume);
    int rc = train_opts_from_json(o, ck.meta.opts_json, &e);
    checkpoint_close(&ck);
    return rc ? cli_fail(&e, resume) : EXIT_OK;
}

int cli_training_opts(const CliArgs *a, const char *ctx, const char *const *other_len, TrainOpts *o) {
    int bad = apply_int(a, "steps", 1, &o->steps, ctx) | apply_int(a, "stop-after", 1, &o->stop_after, ctx) |
              apply_int(a, "batch", 1, &o->batch, ctx) | apply_int(a, "grad-accum", 1, &o->grad_accum, ctx) |
              apply_int(a, "warmup", 0, &o->lr.warmup, ctx) | apply_int(a, "eval-every", 0, &o->eval_every, ctx) |
              apply_int(a, "ckpt-every", 0, &o->ckpt_every, ctx);
    bad |= apply_float(a, "minutes", 0, &o->minutes, ctx) | apply_float(a, "lr", 0, &o->lr.lr, ctx) |
           apply_float(a, "min-lr", 0, &o->lr.min_lr, ctx) | apply_float(a, "decay-frac", 0, &o->lr.decay_frac, ctx) |
           apply_float(a, "weight-decay", 0, &o->weight_decay, ctx) | apply_float(a, "grad-clip", 0, &o->grad_clip, ctx) |
           apply_float(a, "beta1", 0, &o->beta1, ctx) | apply_float(a, "beta2", 0, &o->beta2, ctx) |
           apply_float(a, "peak-gflops", 0, &o->peak_gflops, ctx);
    if (bad) return EXIT_USAGE;
    if (cli_flag_given(a, "schedule") && lr_schedule_parse(cli_flag_str(a, "schedule"), &o->lr.kind))
        return cli_errorf(EXIT_USAGE, ctx, "--schedule must be cosine, wsd or const, got '%s'", cli_flag_str(a, "schedule"));
    if (o->lr.decay_frac <= 0 || o->lr.decay_frac > 1) return cli_errorf(EXIT_USAGE, ctx, "--decay-frac must be in (0, 1]");
    if (o->beta1 >= 1 || o->beta2 >= 1) return cli_errorf(EXIT_USAGE, ctx, "--beta1 and --beta2 must be below 1");
    if (cli_flag_given(a, "seed")) o->seed = (uint64_t)cli_flag_int(a, "seed");
    o->device = cli_flag_str(a, "device");
    if (o->device && strcmp(o->device, "cpu") != 0 && strcmp(o->device, "cuda") != 0)
        return cli_errorf(EXIT_USAGE, ctx, "--device must be cpu or cuda, got '%s'", o->device);
    o->recompute = cli_flag_bool(a, "recompute");

    // the run length: at most one of them; the one given replaces what a resumed run stored
    char names[128] = "--steps, --minutes";
    int n_len = cli_flag_given(a, "steps") + cli_flag_given(a, "minutes"), n_other = 0;
    for (size_t i = 0; other_len && other_len[i]; i++) {
        n_other += cli_flag_given(a, other_len[i]);
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, ", --%s", other_len[i]);
    }
    if (n_len + n_other > 1) return cli_errorf(EXIT_USAGE, ctx, "give only one of %s", names);
    if (cli_flag_given(a, "steps")) o->tokens = 0, o->minutes = 0;
    if (cli_flag_given(a, "minutes")) o->steps = 0, o->tokens = 0;
    if (n_other) o->steps = 0, o->tokens = 0, o->minutes = 0; // the command sets its own
    return EXIT_OK;
}

int cli_training_threads(const CliArgs *a, const char *ctx, int *threads) {
    if (cli_flag_threads(a, threads) != EXIT_OK) return EXIT_USAGE;
    if (*threads == 0) *threads = cpu_features()->n_cores;
    return EXIT_OK;
}

void cli_training_io(const CliArgs *a, TrainIO *io) {
    io->out_path = cli_flag_str(a, "out");
    io->ckpt_path = cli_flag_str(a, "checkpoint");
    io->log_path = cli_flag_str(a, "log");
    io->plot_path = cli_flag_str(a, "plot");
    io->resume = cli_flag_str(a, "resume");
    io->stop = &g_stop;
    io->on_event = cli_flag_bool(a, "quiet") ? NULL : on_event;
    io->event_ctx = NULL;
}

int cli_training_run(const TrainOpts *o, const TrainIO *io, TrainResult *r, bool *by_signal, Err *e) {
    g_stop = 0;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = train_run(o, io, r, e);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (by_signal) *by_signal = g_stop != 0;
    return rc;
}
