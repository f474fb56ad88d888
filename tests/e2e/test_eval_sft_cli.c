// test_eval_sft_cli.c — `lossy eval sft` end to end on a tiny model finetuned in the test (sft_fixture.h): every
// answer equals what `lossy chat --temp 0` says to the same question (the same rendering and generation path), the
// accuracy equals the matches the test counts itself with its own normalization, end-of-turn is counted (all answers
// end within 64 tokens, none within 1), categories come from "category" or sft-synth's meta; malformed test sets fail
// with path:line before anything runs. Also the normalization rules of exact match (sft_eval_normalize).
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sft_fixture.h"
#include "test.h"
#include "train/sft_eval.h"

// The test's own reading of the documented rule: trim, drop one trailing period, trim, lowercase (ASCII suffices here).
static void norm(const char *s, char *out, size_t cap) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n && s[n - 1] == '.') n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    size_t k = 0;
    for (; k < n && k + 1 < cap; k++) out[k] = (char)tolower((unsigned char)s[k]);
    out[k] = 0;
}

static int write_text(const char *path, const char *text) {
    Err e;
    return file_write_atomic_bytes(path, text, strlen(text), &e);
}

// A finetuned model shared by the tests of this file (built once per test: tests run in separate processes).
static int make_model(char *model) {
    char base[512], data[512];
    if (sft_make_base(sft_path(base, "es_base.gguf")) || sft_write_facts(sft_path(data, "es_facts.jsonl"))) return -1;
    sft_path(model, "es_model.gguf");
    Buf o = {0}, err = {0};
    int rc = run_lossy(NULL, &o, &err, "sft", "--base", base, "--data", data, "--val", data, "--out", model, "--seq",
                       "48", "--batch", "4", "--steps", "60", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup", "5",
                       "--eval-every", "0", "--threads", "2", "--peak-gflops", "100", "--quiet", NULL);
    if (rc) fprintf(stderr, "sft failed: %s\n", err.data ? err.data : "");
    buf_free(&o), buf_free(&err);
    return rc;
}

TEST(cli_eval_sft_matches_chat_and_counts) {
    char model[512], set[512];
    REQUIRE(make_model(model) == 0);
    // the test set: each fact asked once with its true answer (category "fact"), once with a wrong reference
    // (category "trap": only a wrong answer could match), and the two-turn variant in sft-synth's meta shape
    Buf t = {0};
    for (size_t i = 0; i < SFT_N_FACTS; i++) {
        buf_printf(&t, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \" %s \"}], \"category\": \"fact\"}\n",
                   SFT_FACTS[i][0], SFT_FACTS[i][1]);
        buf_printf(&t, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"Zebra.\"}], \"category\": \"trap\"}\n\n",
                   SFT_FACTS[i][0]);
        buf_printf(&t, "{\"messages\": [{\"role\": \"system\", \"content\": \"Answer briefly.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, "
                       "{\"role\": \"assistant\", \"content\": \"Hello.\"}, {\"role\": \"user\", \"content\": \"%s\"}, "
                       "{\"role\": \"assistant\", \"content\": \"%s\"}], \"meta\": {\"kind\": \"multi\", \"turns\": [{\"type\": \"greeting\"}, {\"type\": \"capital\"}]}}\n",
                   SFT_FACTS[i][0], SFT_FACTS[i][1]);
    }
    REQUIRE(write_text(sft_path(set, "es_set.jsonl"), t.data) == 0);
    buf_free(&t);

    // what `lossy chat` answers, greedily, to each question
    Buf in = {0}, o = {0}, err = {0};
    for (size_t i = 0; i < SFT_N_FACTS; i++) buf_printf(&in, "%s\n/reset\n", SFT_FACTS[i][0]);
    int rc = run_lossy(in.data, &o, &err, "chat", model, "--temp", "0", "-n", "64", "-t", "1", NULL);
    REQUIREF(rc == 0, "chat: %s", err.data ? err.data : "");
    char chat_answer[SFT_N_FACTS][256];
    const char *p = o.data;
    for (size_t i = 0; i < SFT_N_FACTS; i++) {
        const char *nl = p ? strchr(p, '\n') : NULL;
        REQUIREF(nl, "chat output: %s", o.data ? o.data : "");
        snprintf(chat_answer[i], sizeof chat_answer[i], "%.*s", (int)(nl - p), p);
        p = nl + 1;
    }
    buf_free(&in), buf_free(&o), buf_free(&err);
    // and to each question after the two-turn prefix: comparable with eval's answer (whose prefix is the reference
    // "Hello.") when chat's own first answer is "Hello." too
    for (size_t i = 0; i < SFT_N_FACTS; i++) buf_printf(&in, "Hi\n%s\n/reset\n", SFT_FACTS[i][0]);
    rc = run_lossy(in.data, &o, &err, "chat", model, "--system", "Answer briefly.", "--temp", "0", "-n", "64", "-t", "1", NULL);
    REQUIREF(rc == 0, "chat: %s", err.data ? err.data : "");
    char multi_answer[SFT_N_FACTS][256];
    p = o.data;
    for (size_t i = 0; i < SFT_N_FACTS; i++) {
        const char *nl1 = p ? strchr(p, '\n') : NULL, *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL;
        REQUIREF(nl2, "chat output: %s", o.data ? o.data : "");
        if (nl1 - p == 6 && memcmp(p, "Hello.", 6) == 0)
            snprintf(multi_answer[i], sizeof multi_answer[i], "%.*s", (int)(nl2 - nl1 - 1), nl1 + 1);
        else
            multi_answer[i][0] = 0;
        p = nl2 + 1;
    }
    buf_free(&in), buf_free(&o), buf_free(&err);

    rc = run_lossy(NULL, &o, &err, "eval", "sft", model, set, "--json", "--show", "100", "-t", "1", NULL);
    REQUIREF(rc == 0, "eval sft: %s", err.data ? err.data : "");
    json_error_t je;
    json_t *j = json_loads(o.data, 0, &je);
    REQUIREF(j, "not JSON: %s", o.data);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "n")), 3 * SFT_N_FACTS);
    CHECK_EQ_STR(json_string_value(json_object_get(j, "chat_format")), "lossy");
    json_t *ex = json_object_get(j, "examples");
    REQUIRE(json_array_size(ex) == 3 * SFT_N_FACTS);
    int64_t want_correct = 0, want_fact = 0, multi_checked = 0;
    for (size_t i = 0; i < 3 * SFT_N_FACTS; i++) {
        json_t *x = json_array_get(ex, i);
        size_t f = i / 3, kind = i % 3;
        const char *answer = json_string_value(json_object_get(x, "answer"));
        const char *ref = json_string_value(json_object_get(x, "reference"));
        REQUIRE(answer && ref);
        char a[256], b[256];
        norm(answer, a, sizeof a);
        norm(ref, b, sizeof b);
        bool match = strcmp(a, b) == 0;
        CHECKF(json_is_true(json_object_get(x, "correct")) == match, "line %lld: '%s' vs '%s'",
               (long long)json_integer_value(json_object_get(x, "line")), answer, ref);
        want_correct += match;
        CHECK_EQ_STR(json_string_value(json_object_get(x, "prompt")), SFT_FACTS[f][0]);
        if (kind < 2) CHECK_EQ_STR(answer, chat_answer[f]); // the same path as `lossy chat`
        if (kind == 2 && multi_answer[f][0]) {
            CHECK_EQ_STR(answer, multi_answer[f]);
            multi_checked++;
        }
        if (kind == 0) want_fact += match;
        CHECK(json_is_true(json_object_get(x, "ended")));
        CHECK_EQ_STR(json_string_value(json_object_get(x, "category")), kind == 0 ? "fact" : kind == 1 ? "trap" : "multi_turn");
    }
    // the finetuned model knows its facts (the sft test checks two of them through chat): not a vacuous match count
    CHECKF(want_fact >= SFT_N_FACTS - 1 && multi_checked > 0, "fact %lld, multi-turn answers compared %lld",
           (long long)want_fact, (long long)multi_checked);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "correct")), want_correct);
    CHECK_NEAR(json_real_value(json_object_get(j, "accuracy")), (double)want_correct / (3 * SFT_N_FACTS), 1e-9);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "ended")), 3 * SFT_N_FACTS);
    json_t *cats = json_object_get(j, "categories");
    CHECK_EQ_INT(json_object_size(cats), 3);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(cats, "fact"), "correct")), want_fact);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(cats, "trap"), "correct")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(cats, "multi_turn"), "n")), SFT_N_FACTS);
    json_decref(j);
    buf_free(&o), buf_free(&err);

    // one token per answer: nothing ends its turn, nothing matches; --limit scores a prefix of the file
    rc = run_lossy(NULL, &o, &err, "eval", "sft", model, set, "--json", "--max-tokens", "1", "--limit", "5", NULL);
    REQUIREF(rc == 0, "eval sft: %s", err.data ? err.data : "");
    j = json_loads(o.data, 0, &je);
    REQUIRE(j);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "n")), 5);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "ended")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "correct")), 0);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "examples")), 0);
    json_decref(j);
    buf_free(&o), buf_free(&err);

    // the text report: totals, the category table, --show-wrong examples
    rc = run_lossy(NULL, &o, &err, "eval", "sft", model, set, "--show", "2", "--show-wrong", NULL);
    REQUIREF(rc == 0, "eval sft: %s", err.data ? err.data : "");
    char line[128];
    snprintf(line, sizeof line, "exact match: %lld/%d = ", (long long)want_correct, 3 * SFT_N_FACTS);
    CHECKF(strstr(o.data, line) && strstr(o.data, "ended with end-of-turn within 64 tokens: 12/12 = 100.0%") &&
               strstr(o.data, "multi_turn") && strstr(o.data, "reference: Zebra.") && strstr(o.data, "WRONG") &&
               !strstr(o.data, ": correct"),
           "%s", o.data);
    buf_free(&o), buf_free(&err);
}

TEST(cli_eval_sft_bad_test_sets) {
    char model[512], path[512];
    REQUIRE(sft_make_base(sft_path(model, "es_bad_base.gguf")) == 0);
    const char *ok = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n";
    const struct {
        const char *text, *want;
    } cases[] = {
        {"", "no conversations"},
        {"\n  \n", "no conversations"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n{\"messages\": [\n", ":2: bad JSON"},
        {"[1, 2]\n", ":1: expected a JSON object"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n", ":1: the conversation has no assistant message"},
        {"{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n", ":1: the last assistant message"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"robot\", \"content\": \"Yo\"}]}\n", ":1: message 1 has an unknown role 'robot'"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"category\": 3}\n", ":1: \"category\" must be a string"},
        {"\x7f" "ELF\x01\x01\x01\n", ":1: bad JSON"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.jsonl", c);
        REQUIRE(write_text(sft_path(path, name), cases[c].text) == 0);
        Buf o = {0}, err = {0};
        int rc = run_lossy(NULL, &o, &err, "eval", "sft", model, path, NULL);
        CHECKF(rc == 1 && err.data && strstr(err.data, name) && strstr(err.data, cases[c].want), "case %zu: rc %d: %s", c,
               rc, err.data ? err.data : "");
        buf_free(&o), buf_free(&err);
    }
    Buf o = {0}, err = {0};
    CHECK(run_lossy(NULL, &o, &err, "eval", "sft", model, "/nonexistent/set.jsonl", NULL) == 1);
    CHECK(err.data && strstr(err.data, "/nonexistent/set.jsonl"));
    buf_free(&err);
    REQUIRE(write_text(sft_path(path, "ok.jsonl"), ok) == 0);
    CHECK(run_lossy(NULL, &o, &err, "eval", "sft", model, path, "--max-tokens", "0", NULL) == 2);
    CHECK(err.data && strstr(err.data, "--max-tokens"));
    buf_free(&err);
    CHECK(run_lossy(NULL, &o, &err, "eval", "sft", "/nonexistent/m.gguf", path, NULL) == 1);
    CHECK(err.data && strstr(err.data, "/nonexistent/m.gguf"));
    buf_free(&o), buf_free(&err);
}

TEST(sft_eval_normalization) {
    const struct {
        const char *a, *b;
        bool same;
    } cases[] = {
        {"Columbus.", " columbus", true},
        {"Columbus", "COLUMBUS .", true},
        {"\tColumbus\n", "Columbus.", true},
        {"Columbus, Ohio", "Columbus", false},
        {"3.14.", "3.14", true},
        {"3.14", "314", false},
        {"Wait..", "wait", false}, // only one period goes
        {"ÄPFEL", "äpfel.", true},   // Unicode case folding
        {"Straße", "STRASSE", true},
        {"", " . ", true},
        {"a b", "a  b", false},      // inner whitespace counts
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECKF(sft_eval_match(cases[i].a, strlen(cases[i].a), cases[i].b, strlen(cases[i].b)) == cases[i].same,
               "'%s' vs '%s'", cases[i].a, cases[i].b);
    Buf b = {0};
    sft_eval_normalize("  The Lossy Project. ", 21, &b);
    CHECK_EQ_STR(b.data, "the lossy project");
    buf_free(&b);
}
