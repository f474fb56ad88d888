// test_sft_cli.c — `lossy sft` end to end on a tiny random base model (2 layers, width 64, a byte-level BPE vocabulary
// with lossy's control tokens and no chat template): finetuning a few dozen steps on a handful of conversations
// lowers the masked loss, the output carries the lossy chat template and lossy.sft.* keys, `lossy run` loads it and
// `lossy chat` (greedy) answers a trained question with the memorised answer; an interrupted run resumed from its
// checkpoint ends with weights bit-identical to the uninterrupted run; usage and data errors are clear.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "sample/chat.h"
#include "sft_fixture.h"
#include "test.h"

// Training loss of the first and the last step rows of a trainer CSV log.
static bool csv_first_last_loss(const char *path, double *first, double *last) {
    char *s;
    size_t n;
    Err e;
    if (file_read_all(path, &s, &n, &e)) return false;
    *first = *last = NAN;
    char *line = strchr(s, '\n');
    while (line && line[1]) {
        line++;
        // step,tokens,elapsed_s,lr,loss,...
        const char *p = line;
        for (int k = 0; k < 4 && p; k++) {
            p = strchr(p, ',');
            if (p) p++;
        }
        if (p && *p != ',') {
            double v = strtod(p, NULL);
            if (isnan(*first)) *first = v;
            *last = v;
        }
        line = strchr(line, '\n');
    }
    free(s);
    return !isnan(*first);
}

static bool same_weights(const char *a, const char *b) {
    GGUFFile x, y;
    Err e;
    if (gguf_open(&x, a, &e)) return false;
    if (gguf_open(&y, b, &e)) {
        gguf_close(&x);
        return false;
    }
    bool same = x.n_tensors == y.n_tensors && x.n_tensors > 0;
    for (size_t i = 0; same && i < x.n_tensors; i++) {
        const GGUFTensor *t = gguf_find_tensor(&y, x.tensors[i].name);
        same = t && t->nbytes == x.tensors[i].nbytes && memcmp(t->data, x.tensors[i].data, t->nbytes) == 0;
    }
    gguf_close(&x);
    gguf_close(&y);
    return same;
}

TEST(cli_sft_learns_a_fact_and_chat_answers_it) {
    char base[512], data[512], out[512], csv[512];
    REQUIRE(sft_make_base(sft_path(base, "sft_base.gguf")) == 0);
    REQUIRE(sft_write_facts(sft_path(data, "facts.jsonl")) == 0);
    sft_path(out, "sft_out.gguf");
    sft_path(csv, "sft_out.csv");
    Buf o = {0}, err = {0};
    int rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--val", data, "--out", out, "--seq", "48",
                       "--batch", "4", "--steps", "60", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup", "5",
                       "--eval-every", "20", "--threads", "2", "--peak-gflops", "100", NULL);
    REQUIREF(rc == 0, "rc %d: %s", rc, err.data ? err.data : "");
    CHECKF(strstr(err.data, "chat format lossy") && strstr(err.data, "8 train conversations") &&
               strstr(err.data, "val loss") && strstr(err.data, "model written to"), "stderr: %s", err.data);
    double first, last;
    REQUIRE(csv_first_last_loss(csv, &first, &last));
    CHECKF(last < 0.25 * first, "masked loss %g -> %g", first, last);
    // the output: the lossy template, provenance
    GGUFFile g;
    Err e;
    REQUIRE(gguf_open(&g, out, &e) == 0);
    GStr s;
    CHECK(gguf_get_str(&g, "tokenizer.chat_template", &s, &e) == 0 && s.len == strlen(CHAT_TEMPLATE_LOSSY) &&
          memcmp(s.ptr, CHAT_TEMPLATE_LOSSY, s.len) == 0);
    CHECK(gguf_get_str(&g, "lossy.sft.chat_format", &s, &e) == 0 && s.len == 5 && memcmp(s.ptr, "lossy", 5) == 0);
    int64_t v = 0;
    CHECK(gguf_get_int(&g, "lossy.sft.train_conversations", &v, &e) == 0 && v == 8);
    CHECK(gguf_get_int(&g, "lossy.train.steps", &v, &e) == 0 && v == 60);
    gguf_close(&g);
    buf_free(&o);
    buf_free(&err);
    // `lossy run` loads it; `lossy chat` answers the trained question greedily
    rc = run_lossy(NULL, &o, &err, "run", out, "-p", "What", "-n", "4", "--temp", "0", "-t", "1", NULL);
    CHECKF(rc == 0, "run: rc %d: %s", rc, err.data ? err.data : "");
    buf_free(&o);
    buf_free(&err);
    rc = run_lossy("What is the secret word?\nWho made you?\n", &o, &err, "chat", out, "--temp", "0", "-n", "16", "-t",
                   "1", NULL);
    CHECKF(rc == 0 && o.data && strstr(o.data, "Pineapple.") && strstr(o.data, "The lossy project."),
           "chat: rc %d, stdout '%s', stderr %s", rc, o.data ? o.data : "", err.data ? err.data : "");
    buf_free(&o);
    buf_free(&err);
}

TEST(cli_sft_resume_is_exact) {
    char base[512], data[512], a[512], b[512], ck[512];
    REQUIRE(sft_make_base(sft_path(base, "sft_rbase.gguf")) == 0);
    REQUIRE(sft_write_facts(sft_path(data, "rfacts.jsonl")) == 0);
    sft_path(a, "sft_a.gguf");
    sft_path(b, "sft_b.gguf");
    sft_path(ck, "sft_b.ckpt.gguf");
    Buf o = {0}, err = {0};
    // a held-out conversation (the default split) and two epochs' worth of steps: the row order crosses an epoch
    int rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--out", a, "--seq", "48", "--batch", "3",
                       "--val-fraction", "0.2", "--steps", "8", "--lr", "2e-3", "--eval-every", "3", "--threads", "2",
                       "--peak-gflops", "100", NULL);
    REQUIREF(rc == 0, "rc %d: %s", rc, err.data ? err.data : "");
    buf_free(&o);
    buf_free(&err);
    rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--out", b, "--seq", "48", "--batch", "3",
                   "--val-fraction", "0.2", "--steps", "8", "--lr", "2e-3", "--eval-every", "3", "--threads", "1",
                   "--peak-gflops", "100", "--stop-after", "4", NULL);
    REQUIREF(rc == 0 && path_exists(ck) && !path_exists(b), "rc %d: %s", rc, err.data ? err.data : "");
    buf_free(&o);
    buf_free(&err);
    // other data is refused
    char other[512];
    Err e;
    const char *one = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}]}\n";
    REQUIRE(file_write_atomic_bytes(sft_path(other, "rother.jsonl"), one, strlen(one), &e) == 0);
    rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", other, "--out", b, "--seq", "48", "--resume", ck,
                   "--threads", "1", "--peak-gflops", "100", NULL);
    CHECKF(rc != 0 && err.data && strstr(err.data, "another dataset"), "rc %d: %s", rc, err.data ? err.data : "");
    buf_free(&o);
    buf_free(&err);
    rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--out", b, "--seq", "48",
                   "--val-fraction", "0.2", "--resume", ck, "--threads", "2", "--peak-gflops", "100", NULL);
    REQUIREF(rc == 0 && strstr(err.data, "resumed"), "rc %d: %s", rc, err.data ? err.data : "");
    CHECK(same_weights(a, b));
    buf_free(&o);
    buf_free(&err);
}

TEST(cli_sft_usage_and_data_errors) {
    char base[512], bad[512], out[512];
    REQUIRE(sft_make_base(sft_path(base, "sft_ebase.gguf")) == 0);
    sft_path(out, "sft_e.gguf");
    Buf o = {0}, err = {0};
    CHECK(run_lossy(NULL, &o, &err, "sft", "--data", "x.jsonl", "--out", out, NULL) == 2);
    CHECK(err.data && strstr(err.data, "--base"));
    buf_free(&o);
    buf_free(&err);
    Err e;
    const char *text = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n"
                       "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"robot\", \"content\": \"Yo\"}]}\n";
    REQUIRE(file_write_atomic_bytes(sft_path(bad, "sft_bad.jsonl"), text, strlen(text), &e) == 0);
    int rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", bad, "--out", out, "--steps", "1", NULL);
    CHECKF(rc != 0 && err.data && strstr(err.data, "sft_bad.jsonl:2:") && strstr(err.data, "unknown role 'robot'"),
           "rc %d: %s", rc, err.data ? err.data : "");
    buf_free(&o);
    buf_free(&err);
    rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", bad, "--out", out, "--chat-format", "jinja", NULL);
    CHECK(rc != 0 && err.data && strstr(err.data, "jinja"));
    buf_free(&o);
    buf_free(&err);
    rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", bad, "--out", out, "--seq", "4096", NULL);
    CHECK(rc != 0 && err.data && strstr(err.data, "context"));
    buf_free(&o);
    buf_free(&err);
    CHECK(!path_exists(out));
}
