// test_run_cli.c — `lossy run` end to end: greedy generation of stories260K equals llama2.c's reference output,
// a fixed seed reproduces, and bad models/flags give clear errors.
#include <jansson.h>
#include <stdlib.h>

#include "test.h"

TEST(run_stories260k_greedy_matches_llama2c) {
    char model[4200], refp[4200];
    const char *p = fixture_path("models/stories260K.gguf");
    REQUIRE(p);
    snprintf(model, sizeof model, "%s", p); // fixture_path's buffer is reused by the next call
    p = fixture_path("models/stories260K.greedy200.txt");
    REQUIRE(p);
    snprintf(refp, sizeof refp, "%s", p);
    char *ref;
    size_t ref_len;
    Err e;
    REQUIRE(file_read_all(refp, &ref, &ref_len, &e) == 0);
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    int rc = run_lossy(NULL, &out, &err, "run", model, "--temp", "0", "-n", "200", "--threads", "2", NULL);
    REQUIREF(rc == 0, "exit %d: %s", rc, err.data ? err.data : "");
    // lossy run ends the output with one newline; the reference excludes the run's final newline
    REQUIRE(out.len > 0 && out.data[out.len - 1] == '\n');
    out.data[--out.len] = 0;
    CHECKF(out.len == ref_len && memcmp(out.data, ref, ref_len) == 0, "generated:\n%s\nreference:\n%s", out.data, ref);
    free(ref);
    buf_free(&out);
    buf_free(&err);
}

TEST(run_seed_reproduces_and_threads_agree) {
    const char *model = fixture_path("models/stories260K.gguf");
    REQUIRE(model);
    char mp[4200];
    snprintf(mp, sizeof mp, "%s", model);
    Buf a, b, c, err;
    buf_init(&a);
    buf_init(&b);
    buf_init(&c);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &a, &err, "run", mp, "-p", "Once upon a time", "-n", "60", "--seed", "11", "--threads", "1", NULL), 0);
    CHECK_EQ_INT(run_lossy(NULL, &b, &err, "run", mp, "-p", "Once upon a time", "-n", "60", "--seed", "11", "--threads", "2", NULL), 0);
    CHECK_EQ_INT(run_lossy(NULL, &c, &err, "run", mp, "-p", "Once upon a time", "-n", "60", "--seed", "12", "--threads", "2", NULL), 0);
    REQUIRE(a.data && b.data && c.data);
    CHECK(str_starts_with(a.data, "Once upon a time"));
    CHECK_EQ_STR(a.data, b.data);
    CHECK(strcmp(a.data, c.data) != 0);
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
    buf_free(&err);
}

TEST(run_errors_are_clear) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "run", "/no/such/model.gguf", NULL), 1);
    CHECK(err.data && str_starts_with(err.data, "lossy: error: "));
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "run", "models/stories260K.gguf", "-n", "abc", NULL), 2);
    err.len = 0;
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/notamodel.dat", test_tmpdir());
    Err e;
    REQUIRE(file_write_atomic_bytes(bad, "hello", 5, &e) == 0);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "run", bad, NULL), 1);
    CHECK(err.data && strstr(err.data, "not a model"));
    // a .bin that is not a llama2.c checkpoint: the llama2.c reader says why
    snprintf(bad, sizeof bad, "%s/garbage.bin", test_tmpdir());
    REQUIRE(file_write_atomic_bytes(bad, "0123456789abcdefghijklmnopqrstuvwxyz", 36, &e) == 0);
    err.len = 0;
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "run", bad, NULL), 1);
    CHECK(err.data && str_starts_with(err.data, "lossy: error: "));
    buf_free(&out);
    buf_free(&err);
}

// `lossy bench` runs end to end and reports sane fields (its speed is recorded in bench/RESULTS.md, not tested).
TEST(bench_reports_json) {
    Buf out, err;
    buf_init(&out);
    buf_init(&err);
    int rc = run_lossy(NULL, &out, &err, "bench", "models/stories260K.gguf", "-p", "8", "-n", "8", "-r", "1", "--bandwidth", "10", "--json", NULL);
    REQUIREF(rc == 0, "%s", err.data ? err.data : "");
    json_t *j = json_loads(out.data, 0, NULL);
    REQUIRE(j);
    CHECK(json_real_value(json_object_get(j, "pp_tok_s")) > 0);
    CHECK(json_real_value(json_object_get(j, "tg_tok_s")) > 0);
    // all tensors but the (untied) token embedding, of which one row is read per token
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "weight_bytes")), 1171200 - 512 * 64 * 4);
    json_decref(j);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "bench", NULL), 2);
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "bench", "models/stories260K.gguf", "--machine", NULL), 2);
    buf_free(&out);
    buf_free(&err);
}

// The streamed text is exactly the decode of prompt + generated ids (no space lost between prompt and continuation).
TEST(run_text_equals_decode_of_ids) {
    Buf text, ids, prompt_ids, dec, err;
    buf_init(&text);
    buf_init(&ids);
    buf_init(&prompt_ids);
    buf_init(&dec);
    buf_init(&err);
    const char *m = "models/stories260K.gguf";
    REQUIRE(run_lossy(NULL, &text, &err, "run", m, "-p", "Once upon a time, there was a little robot", "-n", "30", "--temp", "0", NULL) == 0);
    REQUIRE(run_lossy(NULL, &ids, &err, "run", m, "-p", "Once upon a time, there was a little robot", "-n", "30", "--temp", "0", "--print-ids", NULL) == 0);
    REQUIRE(run_lossy("Once upon a time, there was a little robot", &prompt_ids, &err, "tokenize", m, NULL) == 0); // no BOS: decode would print it
    // prompt ids + generated ids → decode
    Buf all;
    buf_init(&all);
    buf_printf(&all, "%.*s %s", (int)strcspn(prompt_ids.data, "\n"), prompt_ids.data, ids.data);
    REQUIRE(run_lossy(all.data, &dec, &err, "tokenize", m, "--decode", NULL) == 0);
    // lossy run prints the text then one newline; --decode prints the raw text
    REQUIRE(text.len > 0);
    text.data[--text.len] = 0;
    size_t dl = dec.len;
    while (dl > 0 && dec.data[dl - 1] == '\n') dl--;
    dec.data[dl] = 0;
    CHECK_EQ_STR(text.data, dec.data);
    buf_free(&all);
    buf_free(&text);
    buf_free(&ids);
    buf_free(&prompt_ids);
    buf_free(&dec);
    buf_free(&err);
}
