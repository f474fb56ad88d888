// train_bpe.h — training lossy's own byte-level BPE vocabularies (`lossy tokenizer train`).
//
// The trainer learns merges the GPT-2/GPT-4 way: text is cut at reserved special tokens, pre-split with the GPT-4
// (cl100k) regex (PCRE2, UTF + UCP), and each piece is a "word" of bytes. Words are counted in a hash map (in
// parallel over threads), then BPE runs over the unique words: the vocabulary starts as the 256 single bytes, and
// each step merges the most frequent adjacent pair into a new token. Pair counts are kept up to date incrementally
// (pair -> count, pair -> the words holding it, a max-heap with lazy deletion): one merge only touches the words
// that contain the merged pair, never recounts the corpus.
//
// Determinism: the pair chosen at each step is the one with the highest count; ties go to the smallest left token
// id, then the smallest right token id. Token ids are assigned in a fixed way (byte b is id b, merge i creates id
// 256 + i, the special tokens follow in the order given), so the output never depends on hash order, thread count
// or file order.
//
// The result (BpeVocab) is format-neutral; bpe_vocab_to_tokenizer() makes it a Tokenizer, which write_tokenizer.h
// writes as a GGUF or a tokenizer.json.
#ifndef LOSSY_TRAIN_BPE_H
#define LOSSY_TRAIN_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "tokenizer/tokenizer.h"

// The pre-tokenizer preset the trainer splits with (tokenizer_regex_preset): the GPT-4-style pattern that Llama 3
// uses, which llama.cpp knows as "llama-bpe" — so the files written name it and every reader splits the same way.
#define BPE_TRAIN_PRE "llama-bpe"

// lossy's default reserved tokens, in id order after the merges (see train_bpe.c for what each one is for).
typedef struct BpeSpecialInfo {
    const char *text;
    const char *purpose;
} BpeSpecialInfo;
extern const BpeSpecialInfo BPE_DEFAULT_SPECIALS[];
extern const size_t BPE_N_DEFAULT_SPECIALS;
#define BPE_DEFAULT_BOS "<|bos|>"
#define BPE_DEFAULT_EOS "<|endoftext|>"

// Progress report: phase is "count" or "merge"; done/total in phase units (bytes, merges).
typedef void (*BpeProgressFn)(void *ctx, const char *phase, uint64_t done, uint64_t total);

typedef struct BpeTrainOptions {
    size_t vocab_size;             // total ids: 256 bytes + merges + specials
    const char *const *specials;   // reserved tokens (NULL with n_specials 0: none); never learned from the corpus
    size_t n_specials;
    int64_t min_frequency;         // stop merging when the best pair occurs fewer times than this (>= 1)
    int n_threads;                 // threads for counting words (>= 1)
    BpeProgressFn progress;        // may be NULL
    void *progress_ctx;
} BpeTrainOptions;
// Defaults: vocab_size 0 (must be set), lossy's default specials, min_frequency 2, 1 thread.
void bpe_train_options_default(BpeTrainOptions *o);

typedef struct BpeMerge {
    int32_t left, right; // the ids merged; the new token's id is 256 + (index of the merge)
    int64_t count;       // how often the pair occurred when it was merged (the training corpus' word counts)
} BpeMerge;

typedef struct BpeVocab {
    size_t n_tokens;        // 256 + n_merges + n_specials
    char *bytes;            // all token byte strings, back to back (owned)
    size_t *offset;         // (n_tokens + 1): token i is bytes[offset[i] .. offset[i+1])
    BpeMerge *merges;       // (n_merges)
    size_t n_merges;
    size_t first_special;   // = 256 + n_merges
    size_t n_specials;
    int64_t bos_id, eos_id; // -1 when none
    // statistics of the training run
    uint64_t corpus_bytes, n_words, n_unique_words;
} BpeVocab;
void bpe_vocab_free(BpeVocab *v);
static inline const char *bpe_vocab_token(const BpeVocab *v, size_t id, size_t *len) {
    *len = v->offset[id + 1] - v->offset[id];
    return v->bytes + v->offset[id];
}

// The trainer accumulates word counts over any number of texts, then trains once.
typedef struct BpeTrainer BpeTrainer;
// Fails (e filled, NULL returned) on bad options: vocab too small for bytes + specials, empty or duplicate specials.
BpeTrainer *bpe_trainer_new(const BpeTrainOptions *o, Err *e);
void bpe_trainer_free(BpeTrainer *t);
// Count the words of one text (one document or file: the split regex never joins words across calls). Any bytes
// are accepted; invalid UTF-8 sequences become words of their own.
int bpe_trainer_add_text(BpeTrainer *t, const char *text, size_t len, Err *e);
// Add one already pre-split word with a count (tests and callers with their own splitting).
void bpe_trainer_add_word(BpeTrainer *t, const char *word, size_t len, int64_t count);
// Learn the merges. The trainer's counts are consumed: call once. Fewer merges than asked for are learned when no
// pair reaches min_frequency; v->n_tokens says how many ids there are.
int bpe_trainer_train(BpeTrainer *t, BpeVocab *v, Err *e);

// Bos/eos ids of v by token text (after training): sets v->bos_id / v->eos_id, -1 when text is NULL.
// Fails when the text is not one of v's special tokens.
int bpe_vocab_set_bos_eos(BpeVocab *v, const char *bos, const char *eos, Err *e);

// The trained vocabulary as a finalized Tokenizer: byte-level BPE, ids as in v (bytes and merges NORMAL, specials
// CONTROL), the BPE_TRAIN_PRE split, ignore_merges (as llama.cpp does for "llama-bpe", so every reader agrees),
// v's BOS/EOS ids, and the [BOS] text template when add_bos is set and v has a BOS.
int bpe_vocab_to_tokenizer(const BpeVocab *v, bool add_bos, Tokenizer **out, Err *e);

// Pre-split text exactly as the trainer does (special tokens are cut out first and reported with is_special).
// Calls fn for every piece in order; used by tests to check the trainer against an independent recount.
typedef void (*BpeWordFn)(void *ctx, const char *word, size_t len, bool is_special);
int bpe_pretokenize(const char *text, size_t len, const char *const *specials, size_t n_specials, BpeWordFn fn,
                    void *ctx, Err *e);

#endif
