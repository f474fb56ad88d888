// test_default_model.c — the shipped assistant (models/lossy-assistant.gguf, built by `make default-model`) as a
// newcomer meets it through `make run`: it loads, fits the size budget, and answers through `lossy chat` with piped
// stdin. The questions use phrasings held out of its finetuning set (see `lossy data sft-synth`), so a right answer
// is recall of a trained fact, not a memorised line. Tests run from the repository root (as `make test` does).
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"

#define DEFAULT_MODEL "models/lossy-assistant.gguf"
#define MAX_BYTES 30000000 // the budget: at most 30 MB

// The n-th line (0-based) of text, copied into out; false when there are fewer lines.
static bool nth_line(const char *text, int n, char *out, size_t cap) {
    for (int i = 0; i < n && text; i++) {
        text = strchr(text, '\n');
        if (text) text++;
    }
    if (!text || !*text) return false;
    size_t len = strcspn(text, "\n");
    if (len >= cap) len = cap - 1;
    memcpy(out, text, len);
    out[len] = 0;
    return true;
}

TEST(default_model_is_shipped_within_budget) {
    struct stat st;
    REQUIREF(stat(DEFAULT_MODEL, &st) == 0, "%s is missing (run the tests from the repository root; make default-model "
                                            "rebuilds it)", DEFAULT_MODEL);
    CHECKF(st.st_size > 1000000 && st.st_size <= MAX_BYTES, "%s is %lld bytes (budget %d)", DEFAULT_MODEL,
           (long long)st.st_size, MAX_BYTES);
    Buf out = {0}, err = {0};
    CHECK_EQ_INT(run_lossy(NULL, &out, &err, "info", DEFAULT_MODEL, NULL), 0);
    // an assistant finetuned by lossy in its own chat format, with the template that `lossy chat` recognises
    CHECKF(out.data && strstr(out.data, "lossy.sft.chat_format") && strstr(out.data, "tokenizer.chat_template"),
           "info: %s", out.data);
    buf_free(&out);
    buf_free(&err);
}

TEST(default_model_answers_capitals_through_chat) {
    // three user turns in one conversation, in the two held-out phrasings of the capital question and the held-out
    // follow-up, which names only the state (the quality bar, >= 95% on the held-out split, is for this direction)
    static const char *const questions = "What's the capital city of Oregon?\n"
                                         "What city is the state capital of Florida?\n"
                                         "What about Ohio?\n";
    static const char *const expect[][2] = {{"Salem", "Oregon"}, {"Tallahassee", "Florida"}, {"Columbus", "Ohio"}};
    Buf out = {0}, err = {0};
    int rc = run_lossy(questions, &out, &err, "chat", DEFAULT_MODEL, "--temp", "0", "-n", "48", "-t", "2", NULL);
    REQUIREF(rc == 0, "rc %d, stderr: %s", rc, err.data);
    REQUIRE(out.data);
    for (int i = 0; i < 3; i++) {
        char line[512];
        REQUIREF(nth_line(out.data, i, line, sizeof line), "answer %d missing; output:\n%s", i + 1, out.data);
        CHECKF(strstr(line, expect[i][0]) && strstr(line, expect[i][1]), "answer %d: '%s' (expected %s and %s)", i + 1,
               line, expect[i][0], expect[i][1]);
    }
    CHECKF(!nth_line(out.data, 3, (char[8]){0}, 8), "more answer lines than questions:\n%s", out.data);
    buf_free(&out);
    buf_free(&err);
}
