// test_training_flags_cli.c — the training flags `lossy train` and `lossy sft` share (src/cli/cli_training.h): both
// list them, each with its own defaults where they differ; they are validated the same way; the run length takes one
// of --steps/--minutes or the command's own (--tokens, --epochs); `lossy sft --minutes` trains for wall-clock time.
#include <stdio.h>
#include <string.h>

#include "sft_fixture.h"
#include "test.h"

static const char *const SHARED[] = {"--out", "--steps", "--minutes", "--stop-after", "--batch", "--grad-accum", "--lr",
                                     "--min-lr", "--warmup", "--schedule", "--decay-frac", "--weight-decay", "--grad-clip",
                                     "--beta1", "--beta2", "--eval-every", "--ckpt-every", "--checkpoint", "--log",
                                     "--plot", "--resume", "--seed", "--threads", "--device", "--recompute",
                                     "--peak-gflops", "--quiet"};

// The help line of a flag (up to its newline) in help text h, copied to out.
static const char *help_line(const char *h, const char *flag, char *out, size_t cap) {
    char key[64];
    snprintf(key, sizeof key, "%s ", flag);
    const char *p = h ? strstr(h, key) : NULL;
    if (!p) {
        snprintf(key, sizeof key, "%s\n", flag);
        p = h ? strstr(h, key) : NULL;
    }
    if (!p) return NULL;
    const char *nl = strchr(p, '\n');
    snprintf(out, cap, "%.*s", (int)(nl ? nl - p : (long)strlen(p)), p);
    return out;
}

TEST(cli_training_flags_shared_with_own_defaults) {
    Buf train = {0}, sft = {0}, err = {0};
    REQUIRE(run_lossy(NULL, &train, &err, "train", "--help", NULL) == 0);
    REQUIRE(run_lossy(NULL, &sft, &err, "sft", "--help", NULL) == 0);
    char a[512], b[512];
    for (size_t i = 0; i < sizeof SHARED / sizeof SHARED[0]; i++) {
        CHECKF(help_line(train.data, SHARED[i], a, sizeof a), "train --help lacks %s", SHARED[i]);
        CHECKF(help_line(sft.data, SHARED[i], b, sizeof b), "sft --help lacks %s", SHARED[i]);
    }
    // the defaults that differ are each command's own (trainer.c's train_opts_default; cmd_sft.c's finetuning ones)
    const struct {
        const char *flag, *train, *sft;
    } defs[] = {{"--batch", "(default 16)", "(default 8)"},
                {"--lr", "(default 1e-3)", "(default 1e-4)"},
                {"--min-lr", "(default 1e-4)", "(default 1e-5)"},
                {"--weight-decay", "(default 0.1)", "(default 0)"},
                {"--eval-every", "(default 250)", "(default 100)"}};
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        CHECKF(help_line(train.data, defs[i].flag, a, sizeof a) && strstr(a, defs[i].train), "train %s: %s", defs[i].flag, a);
        CHECKF(help_line(sft.data, defs[i].flag, b, sizeof b) && strstr(b, defs[i].sft), "sft %s: %s", defs[i].flag, b);
    }
    // each command's own flags stay its own
    CHECK(help_line(train.data, "--tokens", a, sizeof a) && !help_line(sft.data, "--tokens", b, sizeof b));
    CHECK(help_line(sft.data, "--epochs", b, sizeof b) && !help_line(train.data, "--epochs", a, sizeof a));
    CHECK(help_line(train.data, "--init", a, sizeof a) && !help_line(sft.data, "--init", b, sizeof b));
    buf_free(&train), buf_free(&sft), buf_free(&err);
}

TEST(cli_training_flags_validated_alike) {
    char base[512], data[512], out[512];
    REQUIRE(sft_make_base(sft_path(base, "tf_base.gguf")) == 0);
    REQUIRE(sft_write_facts(sft_path(data, "tf_facts.jsonl")) == 0);
    sft_path(out, "tf_out.gguf");
    const struct {
        const char *flag, *value, *want;
    } bad[] = {{"--device", "tpu", "--device must be cpu or cuda"},
               {"--beta2", "1", "--beta1 and --beta2 must be below 1"},
               {"--schedule", "step", "--schedule must be cosine, wsd or const"},
               {"--decay-frac", "0", "--decay-frac must be in (0, 1]"},
               {"--batch", "0", "--batch must be at least 1"},
               {"--threads", "0", "--threads must be between 1 and 512"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Buf o = {0}, err = {0};
        int rc = run_lossy(NULL, &o, &err, "train", "--data", "x", "--out", out, "--steps", "1", bad[i].flag, bad[i].value, NULL);
        CHECKF(rc == 2 && err.data && strstr(err.data, bad[i].want), "train %s: rc %d: %s", bad[i].flag, rc, err.data ? err.data : "");
        buf_free(&o), buf_free(&err);
        rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--out", out, bad[i].flag, bad[i].value, NULL);
        CHECKF(rc == 2 && err.data && strstr(err.data, bad[i].want), "sft %s: rc %d: %s", bad[i].flag, rc, err.data ? err.data : "");
        buf_free(&o), buf_free(&err);
    }
    Buf o = {0}, err = {0};
    CHECK(run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--out", out, "--steps", "2", "--epochs", "1", NULL) == 2);
    CHECK(err.data && strstr(err.data, "give only one of --steps, --minutes, --epochs"));
    buf_free(&err);
    CHECK(run_lossy(NULL, &o, &err, "train", "--data", "x", "--out", out, "--tokens", "100", "--minutes", "1", NULL) == 2);
    CHECK(err.data && strstr(err.data, "give only one of --steps, --minutes, --tokens"));
    buf_free(&err);
    CHECK(!path_exists(out));
    // --minutes on sft: the run follows the clock
    int rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--out", out, "--seq", "48", "--batch", "2",
                       "--minutes", "0.01", "--eval-every", "0", "--threads", "1", "--peak-gflops", "100", "--quiet", NULL);
    CHECKF(rc == 0 && path_exists(out) && err.data && strstr(err.data, "done after"), "rc %d: %s", rc, err.data ? err.data : "");
    buf_free(&o), buf_free(&err);
}
