// generate.h — the generation loop shared by `lossy run`, chat and serve: feed a prompt, then sample one token at a
// time until a stop condition, streaming decoded text through a callback.
//
// Two ways in. generate_run() drives one ModelState from prompt to end (lossy run). The step API (GenerateSeq) holds
// the same per-sequence logic — sampling with the penalty history, end-of-generation tokens, stop strings, UTF-8-safe
// streaming — without owning the forward pass, so a scheduler can step many sequences through one batched forward
// (model_forward_batch) and each still produces exactly what generate_run would:
//   generate_seq_init(&g, ...); model_forward(s, prompt, n);
//   while (generate_seq_next(&g, s->logits, s->pos, s->n_ctx, &id, e) == 1) model_forward(s, &id, 1);  // or batched
//   generate_seq_finish(&g); generate_seq_free(&g);
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
    const int32_t *stop_ids; // extra end-of-generation ids (n_stop_ids), e.g. a chat format's end-of-turn token
    size_t n_stop_ids;
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

// ---- step API: one sequence's generation logic without the forward pass ----
// Text is decoded incrementally: the text of the ids before an anchor is final, and each step decodes only a
// look-behind context (the last GENERATE_DECODE_CONTEXT text-producing ids before the anchor) followed by the ids
// from the anchor on, keeping what follows the context's own text. The anchor moves to the end once
// GENERATE_DECODE_WINDOW ids follow it, so a step decodes at most CONTEXT + WINDOW ids however long the output.
#define GENERATE_DECODE_CONTEXT 8
#define GENERATE_DECODE_WINDOW 16
typedef struct GenerateSeq {
    const ModelConfig *cfg;
    const Tokenizer *tok;
    Sampler *smp;
    GenerateOpts o;      // copied; the stop strings and ids it points to must outlive the sequence
    TokenIds hist;       // prompt + generated ids (the penalties' window)
    size_t gen_start;    // index in hist of the first generated id
    size_t anchor;       // index in hist: the text of hist[gen_start, anchor) is final ...
    size_t anchor_text;  // ... and is text[0, anchor_text)
    int32_t ctx[GENERATE_DECODE_CONTEXT]; // the last text-producing ids before the anchor (prompt ids included)
    size_t n_ctx;
    TokenIds win;        // scratch: ctx followed by hist[anchor..]
    Buf full;            // scratch: decode of win
    Buf prefix;          // decode of ctx alone
    Buf text;            // decode of the generated ids
    size_t shown;        // bytes of text already emitted
    size_t n_decode_ids; // ids handed to the tokenizer so far (decodes and piece look-ups): tests bound it
    bool decode;         // text is decoded (an emitter or stop strings need it)
    bool done;
    bool emitter_stopped; // the emitter returned false: nothing more is emitted, not even the held-back tail
    GenerateStats st;    // n_generated, stopped_by_eos, stopped_by_string; times are left to the caller
} GenerateSeq;

// Check the prompt (non-empty, ids in the vocabulary, fits in n_ctx - pos) and set up the sequence. The caller
// then feeds the prompt to its ModelState. On failure nothing needs freeing.
int generate_seq_init(GenerateSeq *g, const ModelConfig *cfg, const Tokenizer *tok, Sampler *smp,
                      const int32_t *prompt, int64_t n_prompt, int64_t pos, int64_t n_ctx, const GenerateOpts *o,
                      Err *e);
// With logits (vocab) of the last fed token (modified in place by the sampler) and the state's position after
// that feed: sample the next token, apply the stop rules and emit text. Returns 1 when *next must be fed to the
// model before the next call, 0 when the sequence is finished (g->done), -1 on a decode error (e filled).
int generate_seq_next(GenerateSeq *g, float *logits, int64_t pos, int64_t n_ctx, int32_t *next, Err *e);
// Flush text held back (an unfinished UTF-8 character, or the start of a stop string that never completed).
void generate_seq_finish(GenerateSeq *g);
void generate_seq_free(GenerateSeq *g);

#endif
