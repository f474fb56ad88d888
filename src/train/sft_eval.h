// sft_eval.h — scoring a chat model on held-out conversations (`lossy eval sft`): for each conversation of an
// OpenAI-`messages` JSONL file, the last assistant message is the reference answer; everything before it is the
// prompt. The prompt goes through a ChatSession (chat_session.h) — the rendering, stop tokens and stop strings that
// `lossy chat` uses, user text always encoded as ordinary text — and the model answers greedily (the session's
// sampler) up to max_tokens.
//
// Exact match compares normalized texts: surrounding whitespace trimmed, one trailing period dropped (then trimmed
// again), Unicode case-folded (NFC). "Columbus." matches " columbus"; "Columbus, Ohio" does not match "Columbus".
// An answer "ended" when the model closed its turn (an end-of-turn / end-of-text token or a turn marker) within
// max_tokens; a conversation whose prompt does not fit in the context counts as wrong and not ended ("too long").
//
// Categories: a row's string "category" key when it has one; else, for `lossy data sft-synth` rows, "multi_turn" when
// meta.kind is "multi", otherwise the type of the reference's turn (meta.turns[last].type: capital, add, ...); else
// none. Loading checks every line first (bad JSON, roles, no assistant message, a reference not preceded by a user
// message, a non-string category), so a malformed file fails before any generation; errors name path:line.
#ifndef LOSSY_TRAIN_SFT_EVAL_H
#define LOSSY_TRAIN_SFT_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/util.h"
#include "sample/chat_session.h"
#include "train/sft_data.h"

typedef struct SftEvalItem {
    int64_t line;          // 1-based line of the file
    SftConversation conv;
    size_t ref;            // index in conv.msgs of the reference answer (the last assistant message)
    char *category;        // malloc'ed, or NULL
} SftEvalItem;

typedef struct SftEvalSet {
    SftEvalItem *items;
    size_t n;
} SftEvalSet;

int sft_eval_set_load(SftEvalSet *s, const char *path, Err *e);
void sft_eval_set_free(SftEvalSet *s);

// The normalized form exact match compares (appended to out, NUL-terminated).
void sft_eval_normalize(const char *s, size_t n, Buf *out);
bool sft_eval_match(const char *answer, size_t answer_len, const char *reference, size_t reference_len);

typedef struct SftEvalOutcome {
    const SftEvalItem *item;
    const char *answer;    // the generated answer (valid UTF-8; cut at a stop marker), valid during the callback
    size_t answer_len;
    bool correct, ended, too_long;
    int64_t n_generated;
} SftEvalOutcome;

typedef struct SftEvalTally {
    char *name;            // NULL for the total
    int64_t n, correct, ended, too_long;
} SftEvalTally;

typedef struct SftEvalResult {
    SftEvalTally total;
    SftEvalTally *cats;    // in order of first appearance
    size_t n_cats;
    int64_t generated;     // answer tokens in all
    double seconds;
} SftEvalResult;

typedef void (*SftEvalEach)(void *ctx, size_t index, const SftEvalOutcome *o);

// Answer items [0, limit) of set (limit 0 or past the end: all) with cs, whose history is replaced for each item
// (the KV cache keeps what the next prompt shares). each (may be NULL) sees every outcome. Fails only on a model or
// tokenizer error, naming the item's line.
int sft_eval_run(ChatSession *cs, const SftEvalSet *set, size_t limit, int64_t max_tokens, SftEvalEach each,
                 void *ctx, SftEvalResult *r, Err *e);
void sft_eval_result_free(SftEvalResult *r);

#endif
