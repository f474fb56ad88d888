// tokenizer_impl.h — the Tokenizer's private layout, shared by tokenizer.c (builder, tables, decode), encode.c
// (the encode pipeline) and the loaders in this directory that need more than the public builder.
// Not for use outside src/tokenizer/: everything else goes through tokenizer.h.
#ifndef LOSSY_TOKENIZER_IMPL_H
#define LOSSY_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

enum {
    TOKF_SET = 1,    // the id was assigned (not a hole)
    TOKF_LSTRIP = 2, // HF added token: absorbs whitespace on its left when matched
    TOKF_RSTRIP = 4, // ... and on its right
    TOKF_BYTE = 8,   // spelled "<0xXX>": decodes to one byte (field byte) under TOKDEC_BYTE_FALLBACK
};

typedef struct TokEntry {
    size_t off;    // into Tokenizer.arena
    uint32_t len;
    float score;
    uint8_t type;  // TokenType
    uint8_t flags; // TOKF_*
    uint8_t byte;  // value of a TOKF_BYTE token
} TokEntry;

// Pair table slot: (left, right) -> merge rank and result. Empty when rank == PAIR_NONE.
#define PAIR_NONE UINT32_MAX
typedef struct PairSlot {
    uint64_t key;
    uint32_t rank;
    int32_t result;
} PairSlot;

// Matcher for added/special token spellings: a byte trie (first-child / next-sibling lists).
typedef struct TrieNode {
    int32_t child, sibling; // node indexes, -1 = none
    int32_t token;          // token ending here, -1 = none
    uint8_t byte;
} TrieNode;
typedef struct Trie {
    TrieNode *nodes;
    size_t n, cap;
    uint8_t first[32]; // bitmap of bytes that start some token, to skip text quickly
} Trie;

enum { NORM_PREPEND, NORM_REPLACE, NORM_REPLACE_REGEX, NORM_UNICODE, NORM_LOWERCASE, NORM_STRIP };
typedef struct NormStep {
    int kind;
    char *a; size_t alen; // PREPEND text / REPLACE pattern
    char *b; size_t blen; // REPLACE content
    pcre2_code *re;       // REPLACE_REGEX (compiled at finalize)
    int form;             // UNICODE: TokUnicodeForm
    bool left, right;     // STRIP
} NormStep;

enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS };
typedef struct PreStep {
    int kind;
    char *pattern; size_t plen; bool is_regex; // SPLIT (BYTELEVEL with use_regex: the GPT-2 pattern)
    TokSplitBehavior behavior;
    bool invert;
    pcre2_code *re;                            // compiled at finalize
    bool add_prefix_space, use_regex;          // BYTELEVEL
    char *repl; size_t rlen;                   // METASPACE
    TokPrependScheme scheme;
    bool split;
    bool individual;                           // DIGITS
} PreStep;

struct Tokenizer {
    TokenizerKind kind;
    bool finalized;

    TokEntry *tok;
    size_t n_tok, cap_tok;
    char *arena;
    size_t arena_len, arena_cap;

    // bytes -> id, open addressing over ids (-1 empty); capacity a power of two.
    int32_t *vhash;
    size_t vhash_cap, vhash_n;

    // merges in rank order: left, right, result
    int32_t (*merges)[3];
    size_t n_merges, cap_merges;

    PairSlot *pairs;
    size_t pairs_cap; // power of two (0 = no pairs)

    int32_t byte_id[256]; // BYTES: the single-byte token of each byte; SPM: its <0xXX> token; -1 = none
    int32_t role[TOKEN_ROLE_COUNT];
    bool byte_fallback, fuse_unk, ignore_merges;
    bool no_parse_special; // default mode matches only USER_DEFINED spellings
    bool spm_split;        // SPM: words may be cut before each "▁" that follows another character (see finalize)
    bool merges_only;      // ranks come from the merges list even when it is empty (HF, GGUF gpt2): never from scores
    bool add_bos, add_eos, bos_eos_set, template_set;
    int32_t *prefix, *suffix;
    size_t n_prefix, n_suffix;
    int decoder;
    bool decoder_set;
    char *model_name, *pre_name;

    NormStep *norm;
    size_t n_norm;
    PreStep *pre;
    size_t n_pre;

    Trie trie_all;  // CONTROL, UNKNOWN and USER_DEFINED spellings (default mode)
    Trie trie_user; // USER_DEFINED only (ordinary mode)
    bool has_lrstrip;
};

// Hash of a byte string (FNV-1a variant mixed for open addressing).
static inline uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static inline bool pair_lookup(const Tokenizer *t, int32_t l, int32_t r, uint32_t *rank, int32_t *result) {
    if (!t->pairs_cap) return false;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t mask = t->pairs_cap - 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (;;) {
        const PairSlot *s = &t->pairs[i];
        if (s->rank == PAIR_NONE) return false;
        if (s->key == key) {
            *rank = s->rank;
            *result = s->result;
            return true;
        }
        i = (i + 1) & mask;
    }
}

// Longest token spelled at the start of s (bounded by n), -1 if none; *mlen gets its length.
int32_t tok_trie_match(const Trie *tr, const uint8_t *s, size_t n, size_t *mlen);
// True for bytes/characters that HF treats as whitespace around lstrip/rstrip tokens; returns the char's length.
size_t tok_whitespace_len(const uint8_t *s, size_t n);
// Length of the UTF-8 character at s (1 for an invalid byte), never more than n.
size_t tok_utf8_len(const uint8_t *s, size_t n);
// True when the bytes are valid UTF-8 (loaders reject vocabularies whose text pieces are not).
bool tokenizer_utf8_valid(const void *s, size_t n);

#endif
