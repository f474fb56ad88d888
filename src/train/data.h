// data.h — training data: `lossy data prepare` (text files -> token shards + manifest), opening and validating a
// prepared dataset, and the resumable data loader that samples (B, T+1) windows.
//
// A dataset directory holds:
//   manifest.json   format, tokenizer hash and vocabulary size, token width, per-split token and byte counts, the
//                   shard list (file, split, tokens, FNV-1a hash) and the source files. Written last and atomically:
//                   a directory without it is an unfinished preparation.
//   tokenizer.gguf  the vocabulary the shards were encoded with (vocabulary-only GGUF), so training is self-contained
//                   and the trained model carries the same tokenizer.
//   train_NNNNN.bin, val_NNNNN.bin   shards: a 32-byte header (magic "LOSSYTOK", u32 version 1, u32 token width 2 or
//                   4, u64 token count, u64 vocabulary size) followed by little-endian token ids; uint16 when the
//                   vocabulary fits in 65536 ids, else uint32.
// Documents: each document (a whole file, or a piece between --doc-sep separators, surrounding whitespace trimmed)
// is written as [BOS] text [EOS] with whichever of the tokenizer's BOS/EOS exist (at least one must), so documents
// are separated by them and the model learns where texts start and end. Text is encoded as ordinary text: special
// tokens spelled inside a corpus are not produced.
// Validation split: the last --val-fraction of the corpus bytes (files in the order given), cut at a line boundary.
// "bytes" counts in the manifest are the UTF-8 bytes the split's tokens decode to, special tokens excluded: the
// denominator of bits per byte.
#ifndef LOSSY_TRAIN_DATA_H
#define LOSSY_TRAIN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "base/util.h"
#include "tokenizer/tokenizer.h"

#define DATA_MANIFEST "manifest.json"
#define DATA_TOKENIZER "tokenizer.gguf"
#define DATA_SHARD_HEADER 32

enum { DATA_TRAIN = 0, DATA_VAL = 1 };

// FNV-1a 64 over n bytes, continuing from h (start with DATA_HASH_INIT).
#define DATA_HASH_INIT 0xcbf29ce484222325ull
uint64_t data_hash64(const void *p, size_t n, uint64_t h);
// A fingerprint of what a tokenizer encodes to: every token's type and bytes, the merges, the special ids.
uint64_t data_tokenizer_hash(const Tokenizer *t);
// Bytes each token contributes to decoded text (0 for control tokens): the bits-per-byte denominator. (vocab)
int64_t *data_token_byte_lengths(const Tokenizer *t);

// A text file's bytes are usable as a corpus: not empty, no NUL byte (binary), valid UTF-8; errors name path and
// the offset (and line) of the first bad byte.
int data_check_corpus(const char *path, const void *data, size_t n, Err *e);

typedef void (*DataProgressFn)(void *ctx, uint64_t bytes_done, uint64_t bytes_total, uint64_t tokens);

typedef struct DataPrepareOpts {
    const char *tokenizer;    // any tokenizer tokenizer_load reads
    const char *out_dir;      // created if missing (its parent must exist)
    double val_fraction;      // [0, 0.5]
    const char *doc_sep;      // NULL: each file is one document
    int64_t shard_tokens;     // tokens per shard at most (> 0)
    ThreadPool *pool;         // encodes pieces in parallel; may be NULL
    DataProgressFn progress;  // may be NULL
    void *progress_ctx;
} DataPrepareOpts;

typedef struct DataPrepareStats {
    uint64_t bytes, documents, tokens[2], text_bytes[2];
    size_t n_shards;
} DataPrepareStats;

int data_prepare(const DataPrepareOpts *o, const char *const *files, size_t n_files, DataPrepareStats *st, Err *e);

typedef struct DataShard {
    char *file;         // name inside the dataset directory
    int split;          // DATA_TRAIN or DATA_VAL
    FileMap map;
    const uint8_t *tokens; // map.data + header
    int64_t n_tokens;
} DataShard;

typedef struct Dataset {
    char *dir;
    uint64_t manifest_hash;   // FNV-1a of manifest.json's bytes: identifies the dataset in checkpoints
    uint64_t tokenizer_hash;
    int64_t vocab_size;
    int token_bytes;          // 2 or 4
    uint64_t tokens[2], text_bytes[2]; // per split
    DataShard *shards;
    size_t n_shards;
    Tokenizer *tok;           // loaded from tokenizer.gguf
} Dataset;

// Open dir: parse and check the manifest, load the tokenizer and check its hash and size, map every shard and check
// its header, size, token ids (< vocab) and hash. Every failure names the file and what is wrong.
int dataset_open(Dataset *d, const char *dir, Err *e);
void dataset_close(Dataset *d);

static inline int32_t dataset_token(const Dataset *d, const DataShard *s, int64_t i) {
    const uint8_t *p = s->tokens + (size_t)i * (size_t)d->token_bytes;
    return d->token_bytes == 2 ? (int32_t)load_u16le(p) : (int32_t)load_u32le(p);
}

// Where a loader is: everything needed to continue the same sequence of batches.
typedef struct DataLoaderState {
    uint64_t seed;
    uint64_t epoch;  // passes over the split so far
    uint64_t index;  // windows of this epoch already handed out
} DataLoaderState;

// Windows of T+1 tokens inside a shard (never across shards), starting at phase + k*T. With shuffle, each epoch
// draws a new phase in [0, T) and a new permutation of its windows from (seed, epoch); without, phase 0 in order
// (evaluation). Batches continue into the next epoch when one runs out.
typedef struct DataLoader {
    const Dataset *d;
    int split;
    int64_t T;
    bool shuffle;
    DataLoaderState st;
    size_t *shard_idx;      // (n_split_shards) dataset shard indices of this split
    size_t n_split_shards;
    int64_t *shard_first;   // (n_split_shards + 1) first window id of each shard this epoch
    int64_t n_windows;      // this epoch
    int64_t phase;          // this epoch
    int64_t *perm;          // (n_windows) visit order (shuffle only)
    uint64_t perm_epoch;    // epoch perm was built for (+1; 0 = none)
} DataLoader;

int data_loader_init(DataLoader *l, const Dataset *d, int split, int64_t T, bool shuffle, uint64_t seed, Err *e);
void data_loader_free(DataLoader *l);
// Continue from a saved state (seed included).
int data_loader_set_state(DataLoader *l, const DataLoaderState *s, Err *e);
// The next B windows: inputs and targets (B, T) each (targets are the inputs shifted by one).
void data_loader_next(DataLoader *l, int64_t B, int32_t *inputs, int32_t *targets);
// Windows in one epoch of this split (for eval sizing).
int64_t data_loader_epoch_windows(const DataLoader *l);

#endif
