// test_cli.c — the lossy binary end to end: help/version, exit codes, error format, `lossy info` on every fixture
// GGUF (text and JSON), and the README command list matching the CLI table.
#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "formats/gguf.h"
#include "kernels/wpanel.h"
#include "model/model.h"
#include "test.h"

TEST(cli_help_and_version) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "--help", NULL), 0);
    for (size_t i = 0; cli_commands[i]; i++) CHECKF(out.data && strstr(out.data, cli_commands[i]->name), "help lacks %s", cli_commands[i]->name);
    out.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "--version", NULL), 0);
    CHECK(out.data && strstr(out.data, "lossy " LOSSY_VERSION) && strstr(out.data, "cpu:") && strstr(out.data, "cuda:"));
    // every command's --help prints every flag of its table
    for (size_t i = 0; cli_commands[i]; i++) {
        const CliCommand *c = cli_commands[i];
        const char *argv[4] = {NULL, NULL, NULL, NULL};
        char word1[64], *sp;
        snprintf(word1, sizeof word1, "%s", c->name);
        sp = strchr(word1, ' ');
        if (sp) {
            *sp = 0;
            argv[0] = word1, argv[1] = sp + 1, argv[2] = "--help";
        } else {
            argv[0] = word1, argv[1] = "--help";
        }
        out.len = 0;
        CHECKF(run_lossy_argv(NULL, &out, &err, argv) == 0, "lossy %s --help failed", c->name);
        for (const CliFlag *f = c->flags; f && f->name; f++) {
            char want[80];
            snprintf(want, sizeof want, "--%s", f->name);
            CHECKF(out.data && strstr(out.data, want), "lossy %s --help lacks %s", c->name, want);
        }
    }
    buf_free(&out);
    buf_free(&err);
}

TEST(cli_usage_errors_exit_2) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, NULL), 2);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "frobnicate", NULL), 2);
    CHECK(err.data && strstr(err.data, "lossy: error: unknown command 'frobnicate' (lossy --help)"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", NULL), 2);
    CHECK(err.data && str_starts_with(err.data, "lossy: error: "));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", "--no-such-flag", "x", NULL), 2);
    CHECK(err.data && strstr(err.data, "unknown option '--no-such-flag' (lossy info --help)"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", "--json=1", "x", NULL), 2);
    // --threads is checked the same way by every command that takes it, before any file is read
    const char *with_threads[][3] = {{"run", "m.gguf", NULL}, {"chat", "m.gguf", NULL}, {"serve", "m.gguf", NULL},
                                     {"bench", "m.gguf", NULL}, {"logits", "m.gguf", NULL}, {"eval", "ppl", "m.gguf"}};
    for (size_t i = 0; i < sizeof with_threads / sizeof with_threads[0]; i++) {
        const char *bad[] = {"0", "-1", "513"};
        for (size_t b = 0; b < 3; b++) {
            err.len = 0;
            const char *const *c = with_threads[i];
            int rc = c[2] ? run_lossy(NULL, &out, &err, c[0], c[1], c[2], "x.txt", "--threads", bad[b], NULL)
                          : run_lossy(NULL, &out, &err, c[0], c[1], "--threads", bad[b], NULL);
            CHECK_EQ_INT(rc, 2);
            CHECK(err.data && strstr(err.data, "lossy: error: --threads must be between 1 and 512"));
        }
    }
    buf_free(&out);
    buf_free(&err);
}

TEST(cli_runtime_errors_exit_1) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", "/no/such/model.gguf", NULL), 1);
    CHECK(err.data && str_starts_with(err.data, "lossy: error: ") && strstr(err.data, "(/no/such/model.gguf)"));
    // a truncated copy of a real model: clear error naming the problem, exit 1
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    char *data;
    size_t len;
    Err e;
    REQUIRE(file_read_all(p, &data, &len, &e) == 0);
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/truncated.gguf", test_tmpdir());
    REQUIRE(file_write_atomic_bytes(bad, data, len / 2, &e) == 0);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", bad, NULL), 1);
    CHECKF(err.data && strstr(err.data, "past the end"), "stderr: %s", err.data ? err.data : "");
    snprintf(bad, sizeof bad, "%s/text.gguf", test_tmpdir());
    REQUIRE(file_write_atomic_bytes(bad, "hello world\n", 12, &e) == 0);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", bad, NULL), 1);
    CHECK(err.data && strstr(err.data, "not a GGUF file"));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", test_tmpdir(), NULL), 1);
    CHECK(err.data && strstr(err.data, "directory"));
    free(data);
    buf_free(&out);
    buf_free(&err);
}

static void collect_gguf(const char *dir, char ***list, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (path_is_dir(path)) collect_gguf(path, list, n);
        else if (str_ends_with(de->d_name, ".gguf")) {
            *list = xrealloc(*list, (*n + 1) * sizeof **list);
            (*list)[(*n)++] = xstrdup(path);
        }
    }
    closedir(d);
}

TEST(cli_info_on_every_fixture_gguf) {
    const char *root = fixture_path("models");
    REQUIRE(root);
    char fixtures[4200];
    snprintf(fixtures, sizeof fixtures, "%s/..", root);
    char **files = NULL;
    size_t n = 0;
    collect_gguf(fixtures, &files, &n);
    CHECKF(n >= 4, "found only %zu GGUF fixtures", n);
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    for (size_t i = 0; i < n; i++) {
        out.len = 0;
        err.len = 0;
        CHECKF(run_lossy(NULL, &out, &err, "info", files[i], NULL) == 0, "info %s: %s", files[i], err.data ? err.data : "");
        CHECKF(out.data && strstr(out.data, "architecture:") && strstr(out.data, "metadata ("), "info %s output", files[i]);
        out.len = 0;
        CHECKF(run_lossy(NULL, &out, &err, "info", "--json", "--tensors", files[i], NULL) == 0, "info --json %s", files[i]);
        json_error_t je;
        json_t *j = out.data ? json_loads(out.data, 0, &je) : NULL;
        CHECKF(j != NULL, "info --json %s: invalid JSON: %s", files[i], j ? "" : je.text);
        GGUFFile g;
        Err e;
        if (j && gguf_open(&g, files[i], &e) == 0) {
            CHECK_EQ_INT(json_integer_value(json_object_get(j, "tensor_count")), g.n_tensors);
            CHECK_EQ_INT(json_array_size(json_object_get(j, "tensors")), g.n_tensors);
            CHECK_EQ_INT(json_object_size(json_object_get(j, "metadata")), g.n_kv);
            const GGUFKV *tok = gguf_find(&g, "tokenizer.ggml.tokens");
            if (tok) CHECK_EQ_INT(json_integer_value(json_object_get(j, "vocab_size")), tok->arr_count);
            gguf_close(&g);
        }
        json_decref(j);
        free(files[i]);
    }
    free(files);
    // specific facts about the shipped models
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    out.len = 0;
    REQUIRE(run_lossy(NULL, &out, &err, "info", "--json", p, NULL) == 0);
    json_t *j = json_loads(out.data, 0, NULL);
    REQUIRE(j);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "architecture")), "llama");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "vocab_size")), 512);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "hyperparameters"), "embedding_length")), 64);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "parameters")), 292800);
    json_decref(j);
    buf_free(&out);
    buf_free(&err);
}

// README.md's command list is generated from the CLI table (`make docs`); this keeps them from drifting apart.
TEST(readme_command_list_matches_cli_table) {
    char *readme;
    size_t len;
    Err e;
    REQUIREF(file_read_all("README.md", &readme, &len, &e) == 0, "%s (tests run from the repository root)", e.msg);
    const char *begin = strstr(readme, "<!-- commands:begin -->\n");
    const char *end = strstr(readme, "<!-- commands:end -->");
    REQUIREF(begin && end && end > begin, "README.md lacks the <!-- commands:begin/end --> markers");
    begin += strlen("<!-- commands:begin -->\n");
    char *gen = NULL;
    size_t gen_len = 0;
    FILE *f = open_memstream(&gen, &gen_len);
    cli_print_markdown(f);
    fclose(f);
    CHECKF((size_t)(end - begin) == gen_len && memcmp(begin, gen, gen_len) == 0,
           "README command list is stale: run `make docs`\n--- README ---\n%.*s--- table ---\n%s", (int)(end - begin), begin, gen);
    free(gen);
    free(readme);
}

// The memory plan `lossy info` prints before anything is allocated: the KV cache from the hyper-parameters
// (n_layer x n_ctx x 2 x kv width x 4 bytes), the weights' bytes, load-time copies as the loaded model makes them,
// --ctx honoured, a bad --ctx refused.
TEST(cli_info_memory_plan) {
    const char *path = fixture_path("models/stories260K.gguf");
    REQUIRE(path);
    char file[4200];
    snprintf(file, sizeof file, "%s", path);
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    REQUIRE(run_lossy(NULL, &out, &err, "info", "--json", "--ctx", "100", file, NULL) == 0);
    json_t *j = json_loads(out.data, 0, NULL);
    REQUIRE(j);
    json_t *plan = json_object_get(j, "memory_plan");
    REQUIRE(json_is_object(plan));
    Model m;
    Err e;
    REQUIREF(model_load(&m, file, &e) == 0, "%s", e.msg);
    const ModelConfig *c = &m.cfg;
    const int64_t kv = c->n_layer * 100 * 2 * c->n_head_kv * c->head_dim * (int64_t)sizeof(float);
    CHECK_EQ_INT(json_integer_value(json_object_get(plan, "n_ctx")), 100);
    CHECK_EQ_INT(json_integer_value(json_object_get(plan, "kv_cache_bytes")), kv);
    GGUFFile g;
    REQUIRE(gguf_open(&g, file, &e) == 0);
    size_t weights = 0;
    for (size_t i = 0; i < g.n_tensors; i++) weights += g.tensors[i].nbytes;
    gguf_close(&g);
    CHECK_EQ_INT(json_integer_value(json_object_get(plan, "weights_bytes")), (int64_t)weights);
    // copies: what the loaded model made (repacked layouts, same-layout copies), each rounded up to 4 KiB in its arena
    size_t copies = 0, released = 0;
    for (size_t i = 0; i < m.w.n; i++) {
        const Tensor *t = &m.w.t[i];
        size_t b = m.repacked[i] ? (wpanel_supports((DType)t->type) ? wpanel_bytes((DType)t->type, tensor_rows(t), t->ne[0]) : matvec_x4_bytes((DType)t->type, tensor_rows(t), t->ne[0]))
                   : m.copied[i] ? t->nbytes
                                 : 0;
        if (!m.repacked[i] && !m.copied[i]) continue;
        copies += (b + 4095) / 4096 * 4096;
        released += t->nbytes; // the file bytes of a copied matrix are given back, so they leave the total
    }
    CHECK_EQ_INT(json_integer_value(json_object_get(plan, "copies_bytes")), (int64_t)copies);
    CHECK_EQ_INT(json_integer_value(json_object_get(plan, "weights_released_bytes")), (int64_t)released);
    CHECK_EQ_INT(json_integer_value(json_object_get(plan, "total_bytes")),
                 json_integer_value(json_object_get(plan, "weights_bytes")) - (int64_t)released +
                     json_integer_value(json_object_get(plan, "copies_bytes")) + kv);
    model_free(&m);
    json_decref(j);
    out.len = 0;
    REQUIRE(run_lossy(NULL, &out, &err, "info", file, NULL) == 0);
    CHECK(strstr(out.data, "memory plan:") && strstr(out.data, "KV cache"));
    out.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", "--ctx", "-5", file, NULL), 2);
    buf_free(&out);
    buf_free(&err);
}
