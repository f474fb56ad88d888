// fixture_tokenizer.h — tokenizers and reference encodings from the shared fixtures, for tests: NULL when the fixture
// is absent or fails to load (the test is then marked failed with the reason).
#ifndef LOSSY_TEST_FIXTURE_TOKENIZER_H
#define LOSSY_TEST_FIXTURE_TOKENIZER_H

#include <jansson.h>

#include "test.h"
#include "tokenizer/tokenizer.h"

static inline Tokenizer *fixture_tokenizer(const char *rel) {
    const char *p = fixture_path(rel);
    if (!p) return NULL;
    Tokenizer *t = NULL;
    Err e;
    if (tokenizer_load(p, &t, &e)) {
        test_fail_at(__FILE__, __LINE__, "loading %s: %s", p, e.msg);
        return NULL;
    }
    return t;
}

// tokenizers/hf_reference_encodings.json: "strings", "moby20k" and the per-tokenizer ids (fixtures README).
static inline json_t *fixture_reference_encodings(void) {
    const char *p = fixture_path("tokenizers/hf_reference_encodings.json");
    if (!p) return NULL;
    json_error_t je;
    json_t *j = json_load_file(p, JSON_ALLOW_NUL, &je);
    if (!j) test_fail_at(__FILE__, __LINE__, "cannot parse %s: %s", p, je.text);
    return j;
}

#endif
