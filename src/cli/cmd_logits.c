// cmd_logits.c — `lossy logits MODEL --ids 1,2,3 --out FILE.npy`: float32 logits of one forward pass over the ids,
// shape (T, vocab). Used by conformance checks against reference implementations.
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_device.h"
#include "formats/npy.h"
#include "model/model.h"

static const CliFlag FLAGS[] = {
    {"ids", 0, FLAG_STR, "1,2,3", NULL, "input token ids (comma or space separated); required"},
    {"out", 'o', FLAG_STR, "FILE.npy", NULL, "where to write the logits; required"},
    {"threads", 't', FLAG_INT, "N", NULL, "threads (default: all cores)"},
    CLI_DEVICE_FLAG,
    {NULL, 0, 0, NULL, NULL, NULL},
};

static int run(const CliArgs *a) {
    int n_threads;
    if (cli_flag_threads(a, &n_threads) != EXIT_OK) return EXIT_USAGE;
    const char *path = a->pos[0];
    if (!cli_flag_given(a, "ids")) return cli_errorf(EXIT_USAGE, "--ids", "token ids are required");
    if (!cli_flag_given(a, "out")) return cli_errorf(EXIT_USAGE, "--out", "an output file is required");
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(cli_flag_str(a, "ids"), &ids, &n)) return cli_errorf(EXIT_USAGE, "--ids", "expected token ids like 1,2,3");
    Err e;
    Model m;
    int rc = cli_device_load(a, &m, path);
    if (rc != EXIT_OK) {
        free(ids);
        return rc;
    }
    ThreadPool *pool = threadpool_new(n_threads);
    ModelState s;
    const int64_t V = m.cfg.vocab_size;
    float *logits = NULL; // (T, V)
    int64_t ctx = (int64_t)n;
    if (model_state_init(&s, &m, ctx, pool, &e)) {
        rc = cli_fail(&e, path);
        goto out;
    }
    if (s.n_ctx < (int64_t)n) {
        rc = cli_errorf(EXIT_RUNTIME, "--ids", "%zu ids exceed the model's context of %lld positions", n, (long long)s.n_ctx);
        model_state_free(&s);
        goto out;
    }
    logits = xmalloc_array(n * (size_t)V, sizeof(float));
    for (size_t t = 0; t < n && rc == EXIT_OK; t++) {
        if (model_forward(&s, &ids[t], 1, &e)) rc = cli_fail(&e, "--ids");
        else memcpy(logits + t * (size_t)V, s.logits, (size_t)V * sizeof(float));
    }
    if (rc == EXIT_OK && npy_write_f32(cli_flag_str(a, "out"), logits, (int64_t)n, V, &e)) rc = cli_fail(&e, cli_flag_str(a, "out"));
    model_state_free(&s);
out:
    free(logits);
    free(ids);
    threadpool_free(pool);
    model_free(&m);
    return rc;
}

const CliCommand cmd_logits = {
    .name = "logits",
    .summary = "write the logits of one forward pass over token ids as a .npy file (T, vocab)",
    .usage = "MODEL",
    .min_pos = 1,
    .max_pos = 1,
    .flags = FLAGS,
    .run = run,
};
