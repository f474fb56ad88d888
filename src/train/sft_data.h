// sft_data.h — supervised-finetuning data for `lossy sft`: conversations as JSONL (one OpenAI `messages` object per
// line) rendered with a chat format (chat.h) into token ids plus a loss mask, laid out as fixed training rows, and
// exposed to the trainer as a TrainSource (trainer.h) whose targets are -1 wherever the mask is 0.
//
// A line is {"messages": [{"role": "system"|"user"|"assistant"|"developer"|"tool", "content": "..."}, ...], ...}
// (other keys are ignored). Blank lines are skipped. Every error names the file and line: bad JSON, a non-object,
// no "messages" array, a message without a string role/content, an unknown role, a conversation without an assistant
// message, or one the chat format cannot express.
//
// Rows hold T+1 tokens: inputs are tokens [0, T), targets tokens [1, T+1) where the target token is an assistant
// token (or its end-of-turn marker), else -1. Without packing each conversation gets a row of its own, padded (pad
// positions have no target); with packing conversations are laid end to end in file order, a new row starting when
// the next one does not fit in the current row (no conversation is split). A conversation longer than T+1 tokens is
// truncated to its first T+1 tokens when that keeps at least one target (else, or with drop_long, dropped); both are
// counted.
// Validation: a separate file, or the last val_fraction of the conversations (at least one when the fraction is
// positive and there are two or more). Training rows are visited in a fresh permutation each epoch drawn from
// (seed, epoch): the order is a pure function of a DataLoaderState, which is what the trainer checkpoints.
#ifndef LOSSY_TRAIN_SFT_DATA_H
#define LOSSY_TRAIN_SFT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "sample/chat.h"
#include "train/trainer.h"

// One conversation as JSONL gives it: messages point into root's strings.
typedef struct SftConversation {
    ChatMessage *msgs;
    size_t n;
    void *root; // json_t, owned
} SftConversation;

// Parse one JSONL line (len bytes, no newline). Errors say what is wrong (the caller adds file:line).
int sft_parse_line(const char *line, size_t len, SftConversation *out, Err *e);
void sft_conversation_free(SftConversation *c);

typedef struct SftOpts {
    int64_t T;            // row length (inputs per row), >= 2
    bool pack;            // several conversations per row
    bool drop_long;       // drop over-long conversations instead of truncating them
    double val_fraction;  // held out when there is no validation file, in [0, 0.5]
} SftOpts;

typedef struct SftSplit {
    int32_t *rows;        // (n_rows, T+1) token ids
    uint8_t *target;      // (n_rows, T+1) 1 where the token is trained on (never at column 0)
    int64_t n_rows;
    int64_t conversations, targets, truncated, dropped;
} SftSplit;

typedef struct SftData {
    int64_t T;
    int32_t pad_id;
    SftSplit split[2];    // DATA_TRAIN, DATA_VAL
    int64_t *perm;        // (split[DATA_TRAIN].n_rows) this epoch's visit order
    uint64_t perm_epoch;  // epoch perm belongs to, + 1 (0: none yet)
    uint64_t perm_seed;
    uint64_t hash;        // FNV-1a of T and every row and target flag
    // provenance for the exported model (borrowed strings, set by the caller; may be NULL)
    const char *base_path, *data_path, *val_path, *chat_template;
    ChatFormat format;
    TrainSource src;      // the trainer's view of this data (set by sft_data_load)
} SftData;

// Read the conversations of train_path (and val_path, or hold out a part), render them with chat, lay out rows.
// Fails when no training conversation or no target remains.
int sft_data_load(SftData *d, const Chat *chat, const char *train_path, const char *val_path, const SftOpts *o, Err *e);
void sft_data_free(SftData *d);

#endif
