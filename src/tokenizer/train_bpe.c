// train_bpe.c — the byte-level BPE trainer behind `lossy tokenizer train` (see train_bpe.h for the contract).
//
// Two phases:
//  1. Counting. Texts are queued and counted in batches: each batch is spread over the threads (whole texts, or
//     pieces of one big text cut at boundaries the split regex can never cross), each thread counts words into its
//     own hash map, and the maps are summed before training. Special tokens are cut out of the text first, as
//     Hugging Face's added-token splitting does, so they are never learned as ordinary text.
//  2. Merging, over the unique words only. Each word is an array of token ids with a count. Pairs live in a hash map
//     (pair -> index) with their count and the list of words that (may) hold them. A max-heap ordered by
//     (count desc, left id asc, right id asc) holds entries whose counts are upper bounds: merging (a, b) -> Z
//     only ever lowers the counts of existing pairs and creates pairs that contain Z, so a popped entry whose count
//     is stale is pushed back with its current count, and a popped entry whose count is current is the exact best
//     pair with the documented tie-break. Applying a merge rewrites only the words in the pair's list and adjusts
//     the counts of their neighbouring pairs.
#include "tokenizer/train_bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

// lossy's reserved tokens. Ids follow the merges in this order. <|bos|> and <|endoftext|> are the BOS and EOS ids;
// the chat tokens are what lossy's own chat format is written with (src/sample), so user text encoded with the
// ordinary mode can never forge them.
const BpeSpecialInfo BPE_DEFAULT_SPECIALS[] = {
    {"<|endoftext|>", "end of a document (EOS); separates documents in training data"},
    {"<|bos|>", "start of a sequence (BOS)"},
    {"<|system|>", "chat: a system message follows"},
    {"<|user|>", "chat: a user message follows"},
    {"<|assistant|>", "chat: an assistant message follows"},
    {"<|end|>", "chat: end of one message"},
    {"<|tool_call|>", "chat: the assistant calls a tool (JSON follows)"},
    {"<|tool_result|>", "chat: a tool's result follows"},
};
const size_t BPE_N_DEFAULT_SPECIALS = sizeof BPE_DEFAULT_SPECIALS / sizeof BPE_DEFAULT_SPECIALS[0];

static const char *const default_special_texts[] = {
    "<|endoftext|>", "<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool_call|>", "<|tool_result|>",
};
_Static_assert(sizeof default_special_texts / sizeof *default_special_texts ==
                   sizeof BPE_DEFAULT_SPECIALS / sizeof *BPE_DEFAULT_SPECIALS,
               "the default special list and its table must agree");

// One piece of the split longer than this is cut into parts of this size: a pathological multi-megabyte "word"
// would otherwise cost 4 bytes of symbols per byte and quadratic merge work for nothing a vocabulary could use.
#define MAX_WORD_BYTES ((size_t)1 << 16)
// Texts are counted in batches of about this many bytes (the batch is what the threads share).
#define BATCH_BYTES ((size_t)8 << 20)

void bpe_train_options_default(BpeTrainOptions *o) {
    memset(o, 0, sizeof *o);
    o->specials = default_special_texts;
    o->n_specials = BPE_N_DEFAULT_SPECIALS;
    o->min_frequency = 2;
    o->n_threads = 1;
}

// ---------------------------------------------------------------- hashing

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return mix64(h ^ n);
}

// ---------------------------------------------------------------- word map: word bytes -> count

typedef struct WordEntry {
    uint64_t hash;
    size_t off;     // into the map's arena
    size_t len;
    int64_t count;  // 0 = empty slot
} WordEntry;

typedef struct WordMap {
    WordEntry *e;
    size_t cap, n; // cap is a power of two
    Buf arena;
    uint64_t n_words; // occurrences added
} WordMap;

static void wordmap_init(WordMap *m) {
    memset(m, 0, sizeof *m);
    m->cap = 1024;
    m->e = xcalloc(m->cap, sizeof *m->e);
    buf_init(&m->arena);
}

static void wordmap_free(WordMap *m) {
    free(m->e);
    buf_free(&m->arena);
    memset(m, 0, sizeof *m);
}

static void wordmap_grow(WordMap *m) {
    size_t cap;
    if (!size_mul(m->cap, 2, &cap)) abort();
    WordEntry *e = xcalloc(cap, sizeof *e);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].count) continue;
        size_t j = m->e[i].hash & (cap - 1);
        while (e[j].count) j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->cap = cap;
}

static void wordmap_add(WordMap *m, const char *w, size_t len, int64_t count, uint64_t h) {
    if ((m->n + 1) * 2 > m->cap) wordmap_grow(m);
    size_t mask = m->cap - 1, i = h & mask;
    for (;;) {
        WordEntry *e = &m->e[i];
        if (!e->count) {
            e->hash = h;
            e->off = m->arena.len;
            e->len = len;
            e->count = count;
            buf_append(&m->arena, w, len);
            m->n++;
            return;
        }
        if (e->hash == h && e->len == len && memcmp(m->arena.data + e->off, w, len) == 0) {
            e->count += count;
            return;
        }
        i = (i + 1) & mask;
    }
}

static void wordmap_add_word(WordMap *m, const char *w, size_t len, int64_t count) {
    while (len > MAX_WORD_BYTES) {
        wordmap_add(m, w, MAX_WORD_BYTES, count, hash_bytes(w, MAX_WORD_BYTES));
        w += MAX_WORD_BYTES, len -= MAX_WORD_BYTES;
    }
    if (len) wordmap_add(m, w, len, count, hash_bytes(w, len));
}

// ---------------------------------------------------------------- pre-tokenization

typedef struct Splitter {
    pcre2_code *re;
    bool jit;
} Splitter;

// The split is the encoder's own preset (one regex), compiled with the same options the encoder uses, so training
// and encoding can never cut text differently.
static int splitter_init(Splitter *s, Err *e) {
    const char *const *presets = tokenizer_regex_preset(BPE_TRAIN_PRE);
    if (!presets || !presets[0] || presets[1])
        return ERR(e, "pre-tokenizer preset '%s' is not a single regex", BPE_TRAIN_PRE);
    int errcode;
    PCRE2_SIZE erroff;
    s->re = pcre2_compile((PCRE2_SPTR)presets[0], PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &errcode, &erroff, NULL);
    if (!s->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return ERR(e, "cannot compile the split regex at offset %zu: %s", (size_t)erroff, (const char *)msg);
    }
    s->jit = pcre2_jit_compile(s->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

static void splitter_free(Splitter *s) {
    pcre2_code_free(s->re);
    s->re = NULL;
}

// Per-thread matching state. A private JIT stack lets long whitespace runs backtrack without hitting the small
// default machine-stack limit.
typedef struct Matcher {
    const Splitter *sp;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
} Matcher;

static void matcher_init(Matcher *m, const Splitter *sp) {
    m->sp = sp;
    m->md = pcre2_match_data_create_from_pattern(sp->re, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    m->stack = sp->jit ? pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL) : NULL;
    if (!m->md || !m->mctx || (sp->jit && !m->stack)) abort();
    if (m->stack) pcre2_jit_stack_assign(m->mctx, NULL, m->stack);
}

static void matcher_free(Matcher *m) {
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mctx);
    if (m->stack) pcre2_jit_stack_free(m->stack);
}

typedef void (*EmitFn)(void *ctx, const char *w, size_t n, bool is_special);

// Split one segment (text between special tokens) with the regex. Bytes that no alternative matches can only be
// invalid UTF-8 (every valid character is covered by some alternative): they are emitted as words of their own.
static int split_segment(Matcher *m, const char *s, size_t n, EmitFn emit, void *ctx, Err *e) {
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
    size_t pos = 0;
    while (pos < n) {
        int rc = m->sp->jit ? pcre2_jit_match(m->sp->re, (PCRE2_SPTR)s, n, pos, 0, m->md, m->mctx)
                            : pcre2_match(m->sp->re, (PCRE2_SPTR)s, n, pos, 0, m->md, m->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) {
            emit(ctx, s + pos, n - pos, false);
            break;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ERR(e, "split regex failed at byte %zu of a %zu-byte segment: %s", pos, n, (const char *)msg);
        }
        size_t a = ov[0], b = ov[1];
        if (a > pos) emit(ctx, s + pos, a - pos, false);
        if (b <= a) b = a + 1; // no alternative matches empty; never loop forever if that changes
        emit(ctx, s + a, b - a, false);
        pos = b;
    }
    return 0;
}

// Cut text at every occurrence of a special token (leftmost first; at one position the longest special wins),
// emitting specials as such and splitting the text between them.
static int split_text(Matcher *m, const char *text, size_t len, const char *const *specials, const size_t *slen,
                      size_t n_specials, EmitFn emit, void *ctx, Err *e) {
    size_t *next = n_specials ? xmalloc_array(n_specials, sizeof *next) : NULL; // next occurrence (len = none)
    for (size_t k = 0; k < n_specials; k++) {
        const char *p = memmem(text, len, specials[k], slen[k]);
        next[k] = p ? (size_t)(p - text) : len;
    }
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        size_t best = len, best_k = 0;
        for (size_t k = 0; k < n_specials; k++) {
            if (next[k] < pos) { // an overlapping occurrence was passed over: look again from pos
                const char *p = memmem(text + pos, len - pos, specials[k], slen[k]);
                next[k] = p ? (size_t)(p - text) : len;
            }
            if (next[k] < best || (next[k] == best && next[k] < len && slen[k] > slen[best_k])) best = next[k], best_k = k;
        }
        if (best > pos) rc = split_segment(m, text + pos, best - pos, emit, ctx, e);
        if (rc || best >= len) break;
        emit(ctx, text + best, slen[best_k], true);
        pos = best + slen[best_k];
    }
    free(next);
    return rc;
}

static inline bool ascii_letter(char ch) {
    unsigned char c = (unsigned char)ch;
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// A position where a text may be cut for counting in parallel without changing its split, and not inside an
// occurrence of a special token. Two kinds of points qualify:
//  - after '\n' and before an ASCII letter: no alternative of the pattern matches across it (a letter run cannot
//    take a newline as its optional prefix), and the whitespace run before it ends with that newline either way;
//  - before ' ' between two ASCII letters: every alternative that can match a letter stops at the space, and the
//    match starting at the space (" word") looks at nothing before it.
static size_t safe_cut(const char *text, size_t len, size_t from, const char *const *specials, const size_t *slen,
                       size_t n_specials) {
    for (size_t p = from; p + 1 < len; p++) {
        bool ok = (text[p - 1] == '\n' && ascii_letter(text[p])) ||
                  (text[p] == ' ' && ascii_letter(text[p - 1]) && ascii_letter(text[p + 1]));
        if (!ok) continue;
        bool inside = false;
        for (size_t k = 0; k < n_specials && !inside; k++) {
            size_t lo = p >= slen[k] ? p - slen[k] + 1 : 0;
            size_t hi = p + slen[k] - 1 < len ? p + slen[k] - 1 : len; // occurrences starting in [lo, p) that reach past p
            const char *q = memmem(text + lo, hi - lo, specials[k], slen[k]);
            inside = q && (size_t)(q - text) < p;
        }
        if (!inside) return p;
    }
    return len;
}

// ---------------------------------------------------------------- trainer: counting

typedef struct Unit {
    const char *p;
    size_t n;
} Unit;

struct BpeTrainer {
    BpeTrainOptions o;
    char **specials; // owned copies
    size_t *slen;
    Splitter sp;
    int n_threads;
    WordMap *maps;     // (n_threads)
    Matcher *matchers; // (n_threads)
    // pending batch: texts are copied into pend (so callers may free theirs) and cut into units
    Buf pend;
    size_t *pend_off, *pend_len;
    size_t n_pend, cap_pend;
    uint64_t bytes_counted;
    bool trained;
};

BpeTrainer *bpe_trainer_new(const BpeTrainOptions *o, Err *e) {
    if (o->n_specials && !o->specials) return ERR(e, "special tokens: list missing"), NULL;
    for (size_t i = 0; i < o->n_specials; i++) {
        if (!o->specials[i] || !o->specials[i][0]) return ERR(e, "special token %zu is empty", i + 1), NULL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->specials[i], o->specials[j]) == 0)
                return ERR(e, "special token '%s' is given twice", o->specials[i]), NULL;
    }
    size_t min_vocab;
    if (!size_add(256, o->n_specials, &min_vocab) || o->vocab_size < min_vocab)
        return ERR(e, "vocabulary size %zu is too small: 256 byte tokens + %zu special tokens need at least %zu",
                   o->vocab_size, o->n_specials, min_vocab), NULL;
    if (o->vocab_size > (size_t)INT32_MAX) return ERR(e, "vocabulary size %zu is too large", o->vocab_size), NULL;
    if (o->min_frequency < 1) return ERR(e, "min frequency must be at least 1 (got %lld)", (long long)o->min_frequency), NULL;
    BpeTrainer *t = xcalloc(1, sizeof *t);
    t->o = *o;
    if (splitter_init(&t->sp, e)) {
        free(t);
        return NULL;
    }
    t->specials = o->n_specials ? xmalloc_array(o->n_specials, sizeof *t->specials) : NULL;
    t->slen = o->n_specials ? xmalloc_array(o->n_specials, sizeof *t->slen) : NULL;
    for (size_t i = 0; i < o->n_specials; i++) {
        t->specials[i] = xstrdup(o->specials[i]);
        t->slen[i] = strlen(o->specials[i]);
    }
    t->o.specials = (const char *const *)t->specials;
    t->n_threads = o->n_threads < 1 ? 1 : o->n_threads > 64 ? 64 : o->n_threads;
    t->maps = xmalloc_array((size_t)t->n_threads, sizeof *t->maps);
    t->matchers = xmalloc_array((size_t)t->n_threads, sizeof *t->matchers);
    for (int i = 0; i < t->n_threads; i++) {
        wordmap_init(&t->maps[i]);
        matcher_init(&t->matchers[i], &t->sp);
    }
    buf_init(&t->pend);
    return t;
}

void bpe_trainer_free(BpeTrainer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_threads; i++) {
        wordmap_free(&t->maps[i]);
        matcher_free(&t->matchers[i]);
    }
    free(t->maps);
    free(t->matchers);
    for (size_t i = 0; i < t->o.n_specials; i++) free(t->specials[i]);
    free(t->specials);
    free(t->slen);
    splitter_free(&t->sp);
    buf_free(&t->pend);
    free(t->pend_off);
    free(t->pend_len);
    free(t);
}

static void emit_count(void *ctx, const char *w, size_t n, bool is_special) {
    WordMap *m = ctx;
    if (is_special) return;
    m->n_words++;
    wordmap_add_word(m, w, n, 1);
}

typedef struct CountJob {
    BpeTrainer *t;
    int thread;
    const Unit *units;
    size_t n_units;
    int rc;
    Err err;
} CountJob;

static void *count_thread(void *arg) {
    CountJob *j = arg;
    BpeTrainer *t = j->t;
    for (size_t i = 0; i < j->n_units && j->rc == 0; i++)
        j->rc = split_text(&t->matchers[j->thread], j->units[i].p, j->units[i].n, (const char *const *)t->specials,
                           t->slen, t->o.n_specials, emit_count, &t->maps[j->thread], &j->err);
    return NULL;
}

// Count the pending batch: texts larger than a thread's share are cut at safe points, then the units are dealt
// out to the threads in order, balanced by bytes.
static int flush_pending(BpeTrainer *t, Err *e) {
    if (!t->n_pend) return 0;
    size_t total = t->pend.len, share = total / (size_t)t->n_threads + 1;
    size_t cap = t->n_pend + (size_t)t->n_threads * 2, n_units = 0;
    Unit *units = xmalloc_array(cap, sizeof *units);
    for (size_t i = 0; i < t->n_pend; i++) {
        const char *p = t->pend.data + t->pend_off[i];
        size_t n = t->pend_len[i];
        while (n > share && t->n_threads > 1 && n_units + 1 < cap) {
            size_t cut = safe_cut(p, n, share, (const char *const *)t->specials, t->slen, t->o.n_specials);
            if (cut >= n) break;
            units[n_units++] = (Unit){p, cut};
            p += cut, n -= cut;
        }
        units[n_units++] = (Unit){p, n};
    }
    CountJob *jobs = xcalloc((size_t)t->n_threads, sizeof *jobs);
    size_t u = 0, acc = 0;
    for (int k = 0; k < t->n_threads; k++) {
        size_t start = u, goal = (size_t)((double)total * (k + 1) / t->n_threads);
        while (u < n_units && (acc < goal || k == t->n_threads - 1)) acc += units[u++].n;
        jobs[k] = (CountJob){.t = t, .thread = k, .units = units + start, .n_units = u - start};
    }
    pthread_t *th = xcalloc((size_t)t->n_threads, sizeof *th);
    bool *started = xcalloc((size_t)t->n_threads, sizeof *started);
    for (int k = 1; k < t->n_threads; k++)
        if (jobs[k].n_units) started[k] = pthread_create(&th[k], NULL, count_thread, &jobs[k]) == 0;
    count_thread(&jobs[0]);
    for (int k = 1; k < t->n_threads; k++) {
        if (started[k]) pthread_join(th[k], NULL);
        else if (jobs[k].n_units) count_thread(&jobs[k]); // could not start a thread: do its share here
    }
    int rc = 0;
    for (int k = 0; k < t->n_threads && !rc; k++)
        if (jobs[k].rc) *e = jobs[k].err, rc = -1;
    t->bytes_counted += total;
    free(th);
    free(started);
    free(jobs);
    free(units);
    t->pend.len = 0;
    t->n_pend = 0;
    if (!rc && t->o.progress) t->o.progress(t->o.progress_ctx, "count", t->bytes_counted, 0);
    return rc;
}

int bpe_trainer_add_text(BpeTrainer *t, const char *text, size_t len, Err *e) {
    if (t->trained) return ERR(e, "tokenizer trainer: text added after training");
    if (!len) return 0;
    if (t->n_pend == t->cap_pend) {
        t->cap_pend = t->cap_pend ? t->cap_pend * 2 : 64;
        t->pend_off = xrealloc(t->pend_off, t->cap_pend * sizeof *t->pend_off);
        t->pend_len = xrealloc(t->pend_len, t->cap_pend * sizeof *t->pend_len);
    }
    t->pend_off[t->n_pend] = t->pend.len;
    t->pend_len[t->n_pend] = len;
    t->n_pend++;
    buf_append(&t->pend, text, len);
    return t->pend.len >= BATCH_BYTES ? flush_pending(t, e) : 0;
}

void bpe_trainer_add_word(BpeTrainer *t, const char *word, size_t len, int64_t count) {
    if (count <= 0 || !len) return;
    t->maps[0].n_words += (uint64_t)count;
    wordmap_add_word(&t->maps[0], word, len, count);
}

// ---------------------------------------------------------------- trainer: merging

typedef struct Word {
    int32_t *sym; // into the symbol pool
    size_t len;
    int64_t count;
    uint32_t stamp; // last merge step that rewrote this word (a word can sit in a pair's list more than once)
} Word;

typedef struct Pair {
    int32_t a, b;
    int64_t count;
    int32_t *words; // words that may hold the pair (stale entries are skipped when applied)
    size_t n_words, cap_words;
} Pair;

typedef struct HeapEntry {
    int64_t count;
    int32_t a, b;
    int32_t pair;
} HeapEntry;

typedef struct Merger {
    Word *words;
    size_t n_words;
    Pair *pairs;
    size_t n_pairs, cap_pairs;
    int32_t *slots; // pair map: open addressing, pair index + 1 (0 = empty)
    uint64_t *keys;
    size_t cap_slots, n_slots;
    HeapEntry *heap;
    size_t n_heap, cap_heap;
    int32_t *fresh; // pairs created during the current step (they get pushed on the heap after it)
    size_t n_fresh, cap_fresh;
    size_t step;
} Merger;

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static void pairmap_grow(Merger *m) {
    size_t cap = m->cap_slots ? m->cap_slots * 2 : 1 << 16;
    int32_t *slots = xcalloc(cap, sizeof *slots);
    uint64_t *keys = xcalloc(cap, sizeof *keys);
    for (size_t i = 0; i < m->cap_slots; i++) {
        if (!m->slots[i]) continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
        keys[j] = m->keys[i];
    }
    free(m->slots);
    free(m->keys);
    m->slots = slots, m->keys = keys, m->cap_slots = cap;
}

// Index of pair (a, b); created (count 0) when create is set, else -1 when absent.
static int32_t pair_find(Merger *m, int32_t a, int32_t b, bool create) {
    if ((m->n_slots + 1) * 2 > m->cap_slots) pairmap_grow(m);
    uint64_t key = pair_key(a, b);
    size_t mask = m->cap_slots - 1, i = mix64(key) & mask;
    while (m->slots[i]) {
        if (m->keys[i] == key) return m->slots[i] - 1;
        i = (i + 1) & mask;
    }
    if (!create) return -1;
    if (m->n_pairs == m->cap_pairs) {
        m->cap_pairs = m->cap_pairs ? m->cap_pairs * 2 : 1 << 14;
        m->pairs = xrealloc(m->pairs, m->cap_pairs * sizeof *m->pairs);
    }
    int32_t idx = (int32_t)m->n_pairs++;
    m->pairs[idx] = (Pair){.a = a, .b = b};
    m->slots[i] = idx + 1;
    m->keys[i] = key;
    m->n_slots++;
    if (m->n_fresh == m->cap_fresh) {
        m->cap_fresh = m->cap_fresh ? m->cap_fresh * 2 : 256;
        m->fresh = xrealloc(m->fresh, m->cap_fresh * sizeof *m->fresh);
    }
    m->fresh[m->n_fresh++] = idx;
    return idx;
}

static void pair_add(Merger *m, int32_t a, int32_t b, int64_t count, int32_t word) {
    int32_t i = pair_find(m, a, b, true); // may move m->pairs: index first, then the pointer
    Pair *p = &m->pairs[i];
    p->count += count;
    if (p->n_words && p->words[p->n_words - 1] == word) return;
    if (p->n_words == p->cap_words) {
        p->cap_words = p->cap_words ? p->cap_words * 2 : 4;
        p->words = xrealloc(p->words, p->cap_words * sizeof *p->words);
    }
    p->words[p->n_words++] = word;
}

static void pair_sub(Merger *m, int32_t a, int32_t b, int64_t count) {
    int32_t i = pair_find(m, a, b, false);
    if (i < 0) abort(); // a neighbour pair of a word always exists: a broken invariant, not bad input
    Pair *p = &m->pairs[i];
    p->count -= count;
    if (p->count == 0) { // an old pair never gains again: its word list can go
        free(p->words);
        p->words = NULL;
        p->n_words = p->cap_words = 0;
    }
}

// Heap order: higher count first; ties: smaller left id, then smaller right id.
static inline bool heap_before(const HeapEntry *x, const HeapEntry *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void heap_push(Merger *m, int32_t pair) {
    if (m->n_heap == m->cap_heap) {
        m->cap_heap = m->cap_heap ? m->cap_heap * 2 : 1 << 14;
        m->heap = xrealloc(m->heap, m->cap_heap * sizeof *m->heap);
    }
    const Pair *p = &m->pairs[pair];
    HeapEntry x = {p->count, p->a, p->b, pair};
    size_t i = m->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(&x, &m->heap[up])) break;
        m->heap[i] = m->heap[up];
        i = up;
    }
    m->heap[i] = x;
}

static HeapEntry heap_pop(Merger *m) {
    HeapEntry top = m->heap[0], x = m->heap[--m->n_heap];
    size_t i = 0, n = m->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&m->heap[c + 1], &m->heap[c])) c++;
        if (!heap_before(&m->heap[c], &x)) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (n) m->heap[i] = x;
    return top;
}

// The best pair by (count, tie-break), or -1 when no pair is left.
static int32_t best_pair(Merger *m) {
    while (m->n_heap) {
        HeapEntry h = heap_pop(m);
        const Pair *p = &m->pairs[h.pair];
        if (p->count == h.count) return h.pair;
        if (p->count > 0) heap_push(m, h.pair); // stale upper bound: requeue with the current count
    }
    return -1;
}

// Replace every (a, b) in the words that hold it by z, left to right without overlap, adjusting neighbour pairs.
static void apply_merge(Merger *m, int32_t pi, int32_t z) {
    int32_t a = m->pairs[pi].a, b = m->pairs[pi].b;
    int32_t *list = m->pairs[pi].words; // no pair_add below targets (a, b), so this list stays put
    size_t n_list = m->pairs[pi].n_words;
    m->pairs[pi].words = NULL;
    m->pairs[pi].n_words = m->pairs[pi].cap_words = 0;
    uint32_t stamp = (uint32_t)m->step; // steps count from 1; fresh words have stamp 0
    for (size_t li = 0; li < n_list; li++) {
        int32_t wi = list[li];
        Word *w = &m->words[wi];
        if (w->stamp == stamp) continue;
        w->stamp = stamp;
        int32_t *s = w->sym;
        size_t n = w->len, i = 0, j = 0;
        int64_t c = w->count;
        while (i < n) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                if (j > 0) {
                    if (!(s[j - 1] == a && a == b)) pair_sub(m, s[j - 1], a, c);
                    pair_add(m, s[j - 1], z, c, wi);
                }
                if (i + 2 < n) {
                    if (!(a == b && s[i + 2] == a)) pair_sub(m, b, s[i + 2], c);
                    pair_add(m, z, s[i + 2], c, wi);
                }
                s[j++] = z;
                i += 2;
            } else {
                s[j++] = s[i++];
            }
        }
        w->len = j;
    }
    free(list);
    m->pairs[pi].count = 0;
}

static void merger_free(Merger *m) {
    for (size_t i = 0; i < m->n_pairs; i++) free(m->pairs[i].words);
    free(m->pairs);
    free(m->slots);
    free(m->keys);
    free(m->heap);
    free(m->fresh);
    free(m->words);
}

void bpe_vocab_free(BpeVocab *v) {
    free(v->bytes);
    free(v->offset);
    free(v->merges);
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = -1;
}

int bpe_trainer_train(BpeTrainer *t, BpeVocab *v, Err *e) {
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = -1;
    if (t->trained) return ERR(e, "tokenizer trainer: train called twice");
    if (flush_pending(t, e)) return -1;
    t->trained = true;
    // sum the per-thread counts into map 0
    WordMap *wm = &t->maps[0];
    for (int k = 1; k < t->n_threads; k++) {
        WordMap *o = &t->maps[k];
        for (size_t i = 0; i < o->cap; i++)
            if (o->e[i].count) wordmap_add(wm, o->arena.data + o->e[i].off, o->e[i].len, o->e[i].count, o->e[i].hash);
        wm->n_words += o->n_words;
        wordmap_free(o);
        wordmap_init(o);
    }
    if (wm->n > (size_t)INT32_MAX) return ERR(e, "too many distinct words to train on (%zu)", wm->n);
    v->corpus_bytes = t->bytes_counted;
    v->n_words = wm->n_words;
    v->n_unique_words = wm->n;

    // words as symbol arrays: one pool, each word's bytes as ids 0..255
    Merger m = {0};
    m.words = xmalloc_array(wm->n ? wm->n : 1, sizeof *m.words);
    int32_t *pool = xmalloc_array(wm->arena.len ? wm->arena.len : 1, sizeof *pool);
    size_t used = 0;
    for (size_t i = 0; i < wm->cap; i++) {
        const WordEntry *we = &wm->e[i];
        if (!we->count) continue;
        Word *w = &m.words[m.n_words++];
        w->sym = pool + used;
        w->len = we->len;
        w->count = we->count;
        w->stamp = 0;
        for (size_t k = 0; k < we->len; k++) w->sym[k] = (unsigned char)wm->arena.data[we->off + k];
        used += we->len;
    }
    wordmap_free(wm);
    wordmap_init(wm);
    for (size_t wi = 0; wi < m.n_words; wi++) {
        const Word *w = &m.words[wi];
        for (size_t k = 0; k + 1 < w->len; k++) pair_add(&m, w->sym[k], w->sym[k + 1], w->count, (int32_t)wi);
    }
    for (size_t i = 0; i < m.n_fresh; i++) heap_push(&m, m.fresh[i]);
    m.n_fresh = 0;

    // merge
    size_t want = t->o.vocab_size - 256 - t->o.n_specials;
    v->merges = xmalloc_array(want ? want : 1, sizeof *v->merges);
    Buf bytes;
    buf_init(&bytes);
    size_t *offset = xmalloc_array(t->o.vocab_size + 1, sizeof *offset);
    for (int b = 0; b < 256; b++) {
        offset[b] = bytes.len;
        char c = (char)b;
        buf_append(&bytes, &c, 1);
    }
    while (v->n_merges < want) {
        m.step = v->n_merges + 1;
        int32_t pi = best_pair(&m);
        if (pi < 0 || m.pairs[pi].count < t->o.min_frequency) break;
        int32_t z = (int32_t)(256 + v->n_merges);
        const Pair *p = &m.pairs[pi];
        v->merges[v->n_merges] = (BpeMerge){p->a, p->b, p->count};
        offset[z] = bytes.len;
        size_t la = offset[p->a + 1] - offset[p->a], lb = offset[p->b + 1] - offset[p->b];
        buf_reserve(&bytes, la + lb);
        buf_append(&bytes, bytes.data + offset[p->a], la);
        buf_append(&bytes, bytes.data + offset[p->b], lb);
        v->n_merges++;
        offset[z + 1] = bytes.len; // provisional end, so the next merge can read token z
        m.n_fresh = 0;
        apply_merge(&m, pi, z);
        for (size_t i = 0; i < m.n_fresh; i++)
            if (m.pairs[m.fresh[i]].count > 0) heap_push(&m, m.fresh[i]);
        if (t->o.progress) t->o.progress(t->o.progress_ctx, "merge", v->n_merges, want);
    }
    merger_free(&m);
    free(pool);

    v->first_special = 256 + v->n_merges;
    v->n_specials = t->o.n_specials;
    v->n_tokens = v->first_special + v->n_specials;
    for (size_t k = 0; k < t->o.n_specials; k++) {
        offset[v->first_special + k] = bytes.len;
        buf_append(&bytes, t->specials[k], t->slen[k]);
    }
    offset[v->n_tokens] = bytes.len;
    if (!bytes.data) buf_reserve(&bytes, 1);
    v->bytes = bytes.data;
    v->offset = offset;
    return 0;
}

int bpe_vocab_set_bos_eos(BpeVocab *v, const char *bos, const char *eos, Err *e) {
    const char *want[2] = {bos, eos};
    int64_t *out[2] = {&v->bos_id, &v->eos_id};
    for (int k = 0; k < 2; k++) {
        *out[k] = -1;
        if (!want[k]) continue;
        size_t wl = strlen(want[k]);
        for (size_t id = v->first_special; id < v->n_tokens; id++) {
            size_t len;
            const char *s = bpe_vocab_token(v, id, &len);
            if (len == wl && memcmp(s, want[k], wl) == 0) *out[k] = (int64_t)id;
        }
        if (*out[k] < 0) return ERR(e, "%s token '%s' is not one of the special tokens", k ? "EOS" : "BOS", want[k]);
    }
    return 0;
}

int bpe_vocab_to_tokenizer(const BpeVocab *v, bool add_bos, Tokenizer **out, Err *e) {
    *out = NULL;
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_BYTES);
    int rc = 0;
    for (size_t id = 0; id < v->n_tokens && !rc; id++) {
        size_t len;
        const char *s = bpe_vocab_token(v, id, &len);
        TokenType ty = id >= v->first_special ? TOKEN_CONTROL : TOKEN_NORMAL;
        if (tokenizer_add_token(t, s, len, 0.0f, ty, e) != (int32_t)id) rc = -1;
    }
    for (size_t i = 0; i < v->n_merges && !rc; i++) rc = tokenizer_add_merge(t, v->merges[i].left, v->merges[i].right, e);
    if (!rc) rc = tokenizer_add_pretok_preset(t, BPE_TRAIN_PRE, e);
    if (!rc) {
        tokenizer_set_ignore_merges(t, true);
        tokenizer_set_model_name(t, "gpt2");
        tokenizer_set_pre_name(t, BPE_TRAIN_PRE);
        tokenizer_set_special_id(t, TOKEN_ID_BOS, (int32_t)v->bos_id);
        tokenizer_set_special_id(t, TOKEN_ID_EOS, (int32_t)v->eos_id);
        tokenizer_set_add_bos_eos(t, add_bos && v->bos_id >= 0, false);
        rc = tokenizer_finalize(t, e);
    }
    if (rc) {
        err_prefix(e, "trained vocabulary: ");
        tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

// ---------------------------------------------------------------- public pre-tokenizer (tests)

typedef struct EmitAdapter {
    BpeWordFn fn;
    void *ctx;
} EmitAdapter;

static void emit_adapter(void *ctx, const char *w, size_t n, bool is_special) {
    EmitAdapter *a = ctx;
    a->fn(a->ctx, w, n, is_special);
}

int bpe_pretokenize(const char *text, size_t len, const char *const *specials, size_t n_specials, BpeWordFn fn,
                    void *ctx, Err *e) {
    Splitter sp;
    if (splitter_init(&sp, e)) return -1;
    Matcher m;
    matcher_init(&m, &sp);
    size_t *slen = n_specials ? xmalloc_array(n_specials, sizeof *slen) : NULL;
    int rc = 0;
    for (size_t k = 0; k < n_specials && !rc; k++) {
        slen[k] = strlen(specials[k]);
        if (!slen[k]) rc = ERR(e, "special token %zu is empty", k + 1);
    }
    EmitAdapter a = {fn, ctx};
    if (!rc) rc = split_text(&m, text, len, specials, slen, n_specials, emit_adapter, &a, e);
    free(slen);
    matcher_free(&m);
    splitter_free(&sp);
    return rc;
}
