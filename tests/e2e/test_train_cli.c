// test_train_cli.c — `lossy data prepare`, `lossy train`, `lossy plot` end to end: a tiny model trained from the
// command line generates text with `lossy run`, its logits through `lossy logits` (the inference forward) equal the
// trainer's forward on the same file, the provenance keys are there; SIGINT writes a checkpoint and --resume
// finishes the run; usage and data errors exit 2 and 1 with a message.
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/npy.h"
#include "test.h"
#include "train/train_model.h"
#include "../unit/train_test_util.h"

// tokenizer + dataset "ds" in the test's directory from the first `bytes` of Tiny Shakespeare.
static int cli_dataset(size_t bytes, size_t vocab, char *ds) {
    char tok[512], c[512];
    size_t n;
    char *sh = tt_shakespeare(0, bytes, &n);
    if (!sh) return -1;
    int rc = tt_make_tokenizer(tt_path(tok, "tok.gguf"), sh, n, vocab);
    if (rc == 0) rc = tt_write(tt_path(c, "corpus.txt"), sh, n);
    free(sh);
    if (rc) return -1;
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    rc = run_lossy(NULL, &out, &err, "data", "prepare", "--tokenizer", tok, "--out", tt_path(ds, "ds"), "--val-fraction",
                   "0.1", c, NULL);
    if (rc) test_fail_at(__FILE__, __LINE__, "data prepare: %s", err.data ? err.data : "");
    else CHECK(err.data && strstr(err.data, "prepared"));
    buf_free(&out);
    buf_free(&err);
    return rc;
}

TEST(cli_train_run_logits_and_plot) {
    char ds[512], model[512], npy[512], svg[512], csv[512];
    REQUIRE(cli_dataset(100000, 300, ds) == 0);
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    int rc = run_lossy(NULL, &out, &err, "train", "--data", ds, "--out", tt_path(model, "m.gguf"), "--layers", "2",
                       "--dim", "48", "--heads", "4", "--kv-heads", "2", "--seq-len", "64", "--untied", "--steps", "30",
                       "--batch", "4", "--seq", "48", "--lr", "3e-3", "--eval-every", "15", "--eval-tokens", "2048",
                       "--sample-every", "30", "--sample-tokens", "10", "--threads", "2", "--peak-gflops", "100", NULL);
    REQUIREF(rc == 0, "train exit %d: %s", rc, err.data ? err.data : "");
    const char *log = err.data ? err.data : "";
    CHECKF(strstr(log, "step 1/30 | loss") && strstr(log, "tok/s") && strstr(log, "% of peak") && strstr(log, "ETA"), "%s", log);
    CHECKF(strstr(log, "val ") && strstr(log, " bpb") && strstr(log, "sample at step 30"), "%s", log);
    CHECK(strstr(log, "model written to"));
    // lossy run generates from it
    out.len = err.len = 0;
    rc = run_lossy(NULL, &out, &err, "run", model, "-p", "KING", "-n", "12", "--temp", "0", "--ignore-eos", NULL);
    CHECKF(rc == 0 && out.len > 4, "run exit %d: %s", rc, err.data ? err.data : "");
    // provenance
    out.len = 0;
    CHECK(run_lossy(NULL, &out, &err, "info", model, NULL) == 0);
    CHECK(out.data && strstr(out.data, "lossy.train.steps") && strstr(out.data, "lossy.train.data_manifest_hash") &&
          strstr(out.data, "lossy.train.final_val_loss") && strstr(out.data, "tokenizer.ggml.merges"));
    // the inference forward (lossy logits) against the trainer's forward on the same file
    out.len = err.len = 0;
    rc = run_lossy(NULL, &out, &err, "logits", model, "--ids", "5,77,150,3,299,42,8,12", "--out", tt_path(npy, "l.npy"), NULL);
    REQUIREF(rc == 0, "logits: %s", err.data ? err.data : "");
    float *ref;
    int64_t rows, cols;
    Err e;
    REQUIRE(npy_read_f32(npy, &ref, &rows, &cols, &e) == 0);
    REQUIRE(rows == 8 && cols == 300);
    GGUFFile g;
    REQUIRE(gguf_open(&g, model, &e) == 0);
    ModelConfig c;
    REQUIRE(model_config_from_gguf(&g, &c, &e) == 0);
    TrainModel m;
    REQUIRE(train_model_init(&m, &c, NULL, &e) == 0);
    REQUIREF(train_model_load_weights(&m, &g, &e) == 0, "%s", e.msg);
    REQUIRE(train_model_reserve(&m, 1, 8, &e) == 0);
    int32_t ids[8] = {5, 77, 150, 3, 299, 42, 8, 12};
    float *lt = xmalloc_array(8 * 300, sizeof(float));
    train_model_logits(&m, ids, 1, 8, lt);
    double maxd = 0, maxv = 0;
    for (int i = 0; i < 8 * 300; i++) maxd = fmax(maxd, fabs(lt[i] - ref[i])), maxv = fmax(maxv, fabs(ref[i]));
    CHECKF(maxd <= 1e-5 * fmax(1.0, maxv), "inference and training logits differ by %g (max %g)", maxd, maxv);
    free(lt), free(ref);
    train_model_free(&m);
    gguf_close(&g);
    // the plot command redraws the log
    out.len = err.len = 0;
    CHECK(run_lossy(NULL, &out, &err, "plot", tt_path(csv, "m.csv"), "-o", tt_path(svg, "curve.svg"), NULL) == 0);
    char *s;
    size_t n;
    REQUIRE(file_read_all(svg, &s, &n, &e) == 0);
    CHECK(strstr(s, "<svg") && strstr(s, "val loss") && strstr(s, "</svg>"));
    free(s);
    CHECK(run_lossy(NULL, &out, &err, "plot", model, NULL) == 1); // not a CSV with step/loss columns
    // --init continues from the trained weights: the first loss is far below a random model's ln(300) = 5.70
    char init_out[512];
    err.len = 0;
    rc = run_lossy(NULL, &out, &err, "train", "--data", ds, "--out", tt_path(init_out, "init.gguf"), "--init", model,
                   "--steps", "2", "--batch", "4", "--seq", "48", "--eval-tokens", "0", "--peak-gflops", "100", NULL);
    const char *l1 = err.data ? strstr(err.data, "step 1/2 | loss ") : NULL;
    CHECKF(rc == 0 && l1 && atof(l1 + strlen("step 1/2 | loss ")) < 5.0, "exit %d: %s", rc, err.data ? err.data : "");
    buf_free(&out);
    buf_free(&err);
}

// Start lossy with argv; returns its pid and the read end of its stderr.
static pid_t spawn(const char *const *argv, int *err_fd) {
    int p[2];
    if (pipe(p)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        const char *args[64];
        size_t n = 0;
        args[n++] = lossy_binary();
        while (argv[n - 1] && n < 63) args[n] = argv[n - 1], n++;
        args[n] = NULL;
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    *err_fd = p[0];
    return pid;
}

TEST(cli_train_sigint_checkpoints_and_resumes) {
    char ds[512], model[512], ck[512];
    REQUIRE(cli_dataset(60000, 300, ds) == 0);
    tt_path(model, "m.gguf");
    tt_path(ck, "m.ckpt.gguf");
    const char *argv[] = {"train", "--data", ds, "--out", model, "--layers", "1", "--dim", "32", "--heads", "2",
                          "--seq-len", "32", "--steps", "100000", "--batch", "2", "--eval-every", "0", "--threads", "1",
                          "--peak-gflops", "100", NULL};
    int fd;
    pid_t pid = spawn(argv, &fd);
    REQUIRE(pid > 0);
    Buf log;
    buf_init(&log);
    char chunk[4096];
    double t0 = time_now();
    bool sent = false;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, 200);
        if (pr > 0) {
            ssize_t r = read(fd, chunk, sizeof chunk);
            if (r <= 0) break;
            buf_append(&log, chunk, (size_t)r);
        }
        if (!sent && log.data && strstr(log.data, "step 1/")) {
            kill(pid, SIGINT);
            sent = true;
        }
        if (time_now() - t0 > 60) {
            kill(pid, SIGKILL);
            break;
        }
    }
    close(fd);
    int status;
    waitpid(pid, &status, 0);
    REQUIREF(sent, "no progress line: %s", log.data ? log.data : "");
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status %d: %s", status, log.data);
    CHECK(strstr(log.data, "checkpoint: step") && strstr(log.data, "resume with"));
    CHECK(path_exists(ck) && !path_exists(model));
    buf_free(&log);
    // resume with a shorter run: the stored options apply, --steps overrides
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    int rc = run_lossy(NULL, &out, &err, "train", "--data", ds, "--out", model, "--resume", ck, "--steps", "5",
                       "--threads", "1", "--peak-gflops", "100", NULL);
    // interrupted after step >= 5 means nothing is left to do; otherwise it trains up to 5
    CHECKF(rc == 0 && strstr(err.data, "resumed") && path_exists(model), "exit %d: %s", rc, err.data ? err.data : "");
    buf_free(&out);
    buf_free(&err);
}

TEST(cli_train_usage_and_data_errors) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    char ds[512], m[512];
    tt_path(m, "m.gguf");
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--out", m, "--steps", "1", NULL), 2);
    CHECK(strstr(err.data, "--data"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--data", "x", "--out", m, NULL), 2);
    CHECK(strstr(err.data, "--steps"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--data", "x", "--out", m, "--steps", "1", "--minutes", "1", NULL), 2);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--data", "x", "--out", m, "--steps", "1", "--preset", "huge", NULL), 2);
    CHECK(strstr(err.data, "stories15m"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--data", "x", "--out", m, "--steps", "1", "--schedule", "step", NULL), 2);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--data", test_tmpdir(), "--out", m, "--steps", "1", NULL), 1);
    CHECK(strstr(err.data, "lossy: error:") && strstr(err.data, "manifest.json"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "data", "prepare", "--out", tt_path(ds, "ds"), "x.txt", NULL), 2);
    CHECK(strstr(err.data, "--tokenizer"));
    // a model whose heads do not divide the width, and a sequence longer than the context
    REQUIRE(cli_dataset(30000, 280, ds) == 0);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--data", ds, "--out", m, "--steps", "1", "--dim", "50", "--heads",
                           "4", "--peak-gflops", "1", NULL), 1);
    CHECK(strstr(err.data, "multiple of the head count"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "train", "--data", ds, "--out", m, "--steps", "1", "--preset", "tiny",
                           "--seq", "512", "--peak-gflops", "1", NULL), 1);
    CHECK(strstr(err.data, "longer than the model's context"));
    buf_free(&out);
    buf_free(&err);
}
