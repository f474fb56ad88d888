// test_train_loop.c — the training loop end to end through train_run: a tiny model on Tiny Shakespeare goes well
// below the unigram entropy of its tokens; a run stopped halfway and resumed from its checkpoint ends with exactly
// the weights and optimizer moments of the uninterrupted run, and so does a run on another thread count; the stop
// flag checkpoints and stops; checkpoint writing that fails (file size limit = full disk) leaves the previous
// checkpoint intact; resuming with another model shape or dataset is refused.
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <dirent.h>

#include "test.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/trainer.h"
#include "train_test_util.h"

static void tiny_opts(TrainOpts *o) {
    train_opts_default(o);
    o->n_layer = 2, o->n_embd = 64, o->n_head = 4, o->n_head_kv = 2, o->n_ff = 0, o->seq_len = 64;
    o->batch = 4, o->seq = 32, o->steps = 16;
    o->eval_every = 0, o->ckpt_every = 0, o->peak_gflops = 1;
    o->lr.lr = 3e-3, o->lr.min_lr = 3e-4;
}

static int run(const TrainOpts *o, const char *data, const char *out, const char *resume, int threads, TrainResult *r,
               Err *e) {
    ThreadPool *pool = threadpool_new(threads);
    TrainIO io = {.data_dir = data, .out_path = out, .resume = resume, .pool = pool};
    int rc = train_run(o, &io, r, e);
    threadpool_free(pool);
    return rc;
}

// A 2-step run of tiny_opts on dataset "ds" (paths into ds, out and ck: its checkpoint m.ckpt.gguf); 0 or -1 with e.
static int two_step_run(char *ds, char *out, char *ck, TrainOpts *o, Err *e) {
    if (tt_make_dataset("ds", 60000, 300, ds)) return ERR(e, "dataset not made");
    tiny_opts(o);
    o->steps = 2;
    TrainResult r;
    tt_path(ck, "m.ckpt.gguf");
    return run(o, ds, tt_path(out, "m.gguf"), NULL, 1, &r, e);
}

TEST(train_loop_loss_goes_below_unigram_entropy) {
    char ds[512], out[512];
    REQUIRE(tt_make_dataset("ds", 400000, 512, ds) == 0);
    Dataset d;
    Err e;
    REQUIREF(dataset_open(&d, ds, &e) == 0, "%s", e.msg);
    // unigram entropy of the training tokens: what a model that ignores context achieves at best
    double *cnt = xcalloc((size_t)d.vocab_size, sizeof(double)), total = 0, H = 0;
    for (size_t i = 0; i < d.n_shards; i++)
        if (d.shards[i].split == DATA_TRAIN)
            for (int64_t j = 0; j < d.shards[i].n_tokens; j++) cnt[dataset_token(&d, &d.shards[i], j)]++, total++;
    for (int64_t v = 0; v < d.vocab_size; v++)
        if (cnt[v] > 0) H -= cnt[v] / total * log(cnt[v] / total);
    free(cnt);
    dataset_close(&d);
    TrainOpts o;
    tiny_opts(&o);
    o.steps = 200, o.batch = 8, o.seq = 64, o.eval_every = 100, o.eval_tokens = 8192;
    TrainResult r;
    REQUIREF(run(&o, ds, tt_path(out, "m.gguf"), NULL, 1, &r, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(r.steps, 200);
    fprintf(stderr, "unigram %.3f val %.3f train %.3f bpb %.3f\n", H, r.val_loss, r.train_loss, r.val_bpb);
    CHECKF(r.val_loss < H - 0.5, "val loss %.3f is not well below the unigram entropy %.3f", r.val_loss, H);
    CHECKF(r.train_loss < H - 0.5, "train loss %.3f vs unigram entropy %.3f", r.train_loss, H);
    CHECK(r.val_bpb > 0.5 && r.val_bpb < 8);
    char p[512];
    CHECK(path_exists(tt_path(p, "m.ckpt.gguf")) && path_exists(tt_path(p, "m.csv")) && path_exists(tt_path(p, "m.svg")));
}

TEST(train_loop_resume_and_threads_are_bit_exact) {
    char ds[512], a[512], b[512], c[512], ck[512];
    REQUIRE(tt_make_dataset("ds", 60000, 300, ds) == 0);
    TrainOpts o;
    tiny_opts(&o);
    o.grad_accum = 2, o.eval_every = 5, o.eval_tokens = 1024, o.sample_every = 7, o.sample_tokens = 8;
    TrainResult r;
    Err e;
    REQUIREF(run(&o, ds, tt_path(a, "a.gguf"), NULL, 1, &r, &e) == 0, "%s", e.msg);
    CHECK(!r.interrupted && r.steps == 16);
    // stop after 7 steps (a checkpoint), then resume to the end, on 2 threads
    o.stop_after = 7;
    REQUIREF(run(&o, ds, tt_path(b, "b.gguf"), NULL, 2, &r, &e) == 0, "%s", e.msg);
    CHECK(r.interrupted && r.steps == 7);
    CHECK(!path_exists(b));
    o.stop_after = 0;
    REQUIREF(run(&o, ds, b, tt_path(ck, "b.ckpt.gguf"), 2, &r, &e) == 0, "%s", e.msg);
    CHECK(!r.interrupted && r.steps == 16);
    CHECK(tt_same_tensors(a, b));
    char cka[512];
    CHECK(tt_same_tensors(tt_path(cka, "a.ckpt.gguf"), ck)); // weights and both AdamW moments
    // the log was continued, not duplicated: 16 rows after the header
    char log[512], *text;
    size_t len;
    REQUIRE(file_read_all(tt_path(log, "b.csv"), &text, &len, &e) == 0);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    CHECK_EQ_INT(lines, 17);
    free(text);
    // another thread count, uninterrupted: the same weights too
    REQUIREF(run(&o, ds, tt_path(c, "c.gguf"), NULL, 3, &r, &e) == 0, "%s", e.msg);
    CHECK(tt_same_tensors(a, c));
    // and a different seed gives different weights (the comparison can fail)
    o.seed = 99;
    REQUIREF(run(&o, ds, tt_path(c, "d.gguf"), NULL, 1, &r, &e) == 0, "%s", e.msg);
    CHECK(!tt_same_tensors(a, c));
}

typedef struct StopCtx {
    volatile sig_atomic_t *flag;
    int64_t at;
} StopCtx;

static void stop_at(void *ctx, const TrainEvent *ev) {
    StopCtx *s = ctx;
    if (ev->kind == TRAIN_EV_STEP && ev->step >= s->at) *s->flag = 1;
}

TEST(train_loop_stop_flag_checkpoints) {
    char ds[512], out[512], ck[512];
    REQUIRE(tt_make_dataset("ds", 60000, 300, ds) == 0);
    TrainOpts o;
    tiny_opts(&o);
    o.steps = 1000;
    volatile sig_atomic_t flag = 0;
    StopCtx sc = {&flag, 1};
    ThreadPool *pool = threadpool_new(1);
    TrainIO io = {.data_dir = ds, .out_path = tt_path(out, "m.gguf"), .pool = pool, .stop = &flag, .on_event = stop_at,
                  .event_ctx = &sc};
    TrainResult r;
    Err e;
    int rc = train_run(&o, &io, &r, &e);
    threadpool_free(pool);
    REQUIREF(rc == 0, "%s", e.msg);
    CHECK(r.interrupted && r.steps == 1);
    Checkpoint c;
    REQUIREF(checkpoint_open(&c, tt_path(ck, "m.ckpt.gguf"), &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(c.meta.step, 1);
    CHECK_EQ_INT(c.meta.loader.index, 4); // one step of 4 windows
    checkpoint_close(&c);
}

TEST(train_loop_checkpoint_write_failure_keeps_previous) {
    char ds[512], out[512], ck[512], copy[512];
    TrainOpts o;
    Err e;
    REQUIREF(two_step_run(ds, out, ck, &o, &e) == 0, "%s", e.msg);
    char *orig;
    size_t n;
    REQUIRE(file_read_all(ck, &orig, &n, &e) == 0);
    REQUIRE(tt_write(tt_path(copy, "orig.bin"), orig, n) == 0);
    free(orig);
    // a "full disk": files may not grow past 64 KiB (this test runs in its own process)
    Checkpoint c;
    REQUIREF(checkpoint_open(&c, ck, &e) == 0, "%s", e.msg);
    TrainModel m;
    REQUIRE(train_model_init(&m, &c.cfg, NULL, &e) == 0);
    AdamW opt;
    adamw_init(&opt, m.n_params, 0.9, 0.95, 1e-8, 0.1);
    REQUIREF(checkpoint_restore(&c, &m, &opt, &e) == 0, "%s", e.msg);
    Dataset d;
    REQUIRE(dataset_open(&d, ds, &e) == 0);
    CheckpointMeta meta = c.meta;
    meta.step = 99;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {65536, 65536};
    REQUIRE(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    int rc = checkpoint_save(ck, &m, &opt, d.tok, &meta, &e);
    CHECKF(rc != 0 && strstr(e.msg, "previous checkpoint") && strstr(e.msg, "m.ckpt.gguf"), "%s", rc ? e.msg : "saved");
    CHECK(tt_same_file(ck, copy));
    // no temporary file is left behind
    DIR *dir = opendir(test_tmpdir());
    REQUIRE(dir);
    struct dirent *de;
    while ((de = readdir(dir))) CHECKF(!strstr(de->d_name, ".tmp."), "left behind: %s", de->d_name);
    closedir(dir);
    dataset_close(&d);
    adamw_free(&opt);
    train_model_free(&m);
    checkpoint_close(&c);
}

TEST(train_loop_resume_mismatches_are_refused) {
    char ds[512], ds2[512], out[512], ck[512];
    TrainOpts o;
    TrainResult r;
    Err e;
    REQUIREF(two_step_run(ds, out, ck, &o, &e) == 0, "%s", e.msg);
    o.steps = 4;
    o.n_embd = 32;
    CHECK(run(&o, ds, out, ck, 1, &r, &e) != 0 && strstr(e.msg, "differs from the model flags"));
    o.n_embd = 64;
    REQUIRE(tt_make_dataset("ds2", 50000, 300, ds2) == 0);
    CHECK(run(&o, ds2, out, ck, 1, &r, &e) != 0 && strstr(e.msg, "another dataset"));
    o.seed = 5;
    CHECK(run(&o, ds, out, ck, 1, &r, &e) != 0 && strstr(e.msg, "seed"));
    o.seed = 1337;
    CHECK(run(&o, ds, out, tt_path(ck, "m.gguf"), 1, &r, &e) != 0 && strstr(e.msg, "not a lossy training checkpoint"));
    CHECKF(run(&o, ds, out, tt_path(ck, "m.ckpt.gguf"), 1, &r, &e) == 0, "%s", e.msg);
}
