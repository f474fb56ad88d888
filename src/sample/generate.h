// generate.h — the generation loop shared by `lossy run` (and later chat and serve): feed a prompt, then sample
// one token at a time until a stop condition, streaming decoded text through a callback.
#ifndef LOSSY_GENERATE_H
#define LOSSY_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

// Called with each new piece of text (bytes, not necessarily whole UTF-8 characters). Return false to stop.
typedef bool (*GenerateEmit)(void *ctx, const char *text, size_t len);

typedef struct GenerateOpts {
    int64_t max_tokens;  // new tokens at most
    bool ignore_eos;     // keep going through end-of-generation tokens
    GenerateEmit emit;    // may be NULL (then no text is decoded)
    void *emit_ctx;
    const char *const *stop; // stop strings (n_stop): generation ends before the first occurrence in the text
    size_t n_stop;
} GenerateOpts;

typedef struct GenerateStats {
    int64_t n_prompt, n_generated;
    double prompt_seconds, gen_seconds; // prompt processing; generation (first sampled token to last)
    bool stopped_by_eos;
    bool stopped_by_string;
} GenerateStats;

// prompt (n_prompt >= 1) is fed from the state's current position. out_ids (may be NULL) receives the generated ids.
// tok may be NULL (no text, no stop strings): end-of-generation is then the model config's EOS ids.
int generate_run(ModelState *s, const Tokenizer *tok, Sampler *smp, const int32_t *prompt, int64_t n_prompt,
                 const GenerateOpts *o, TokenIds *out_ids, GenerateStats *st, Err *e);

#endif
