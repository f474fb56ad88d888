// encode.c — text -> token ids: added-token splitting, normalizers, pre-tokenizers, and the BPE merge itself.
//
// One path for every vocabulary (see tokenizer.h for the order of the steps). The merge works on token ids: the
// initial symbols of a word are single-byte tokens (byte-level BPE) or character tokens with <0xXX> fallback
// (sentencepiece style), and adjacent pairs merge by the pair table built at finalize, lowest rank first and
// leftmost on ties. Short words use a direct scan (cheap for the usual 1-10 symbols), long ones (a sentencepiece
// segment can be a whole paragraph) a binary heap over a linked list with lazily invalidated entries; both give the
// same result by construction, and a test checks it. Byte-level words are memoised in a per-call cache, since
// natural text repeats its words.
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer_impl.h"

// Words up to this many symbols use the direct scan; exposed (not in the header) so a test can force the heap path.
size_t tokenizer_small_word_limit = 48;

// ---------------------------------------------------------------------------------------------------------------
// per-call word cache (byte-level vocabularies only)

#define CACHE_MAX_WORD 64
#define CACHE_SLOTS (1u << 16)

// 16 bytes, so more slots stay in cache; key_len == 0 marks an empty slot (words are never empty).
typedef struct CacheSlot {
    uint32_t hash;
    uint32_t key_off; // into keys
    uint32_t val_off; // into vals
    uint16_t key_len, val_n;
} CacheSlot;

typedef struct WordCache {
    CacheSlot *slots;
    size_t n;
    Buf keys;
    int32_t *vals;
    size_t n_vals, cap_vals;
} WordCache;

static void cache_clear(WordCache *c) {
    memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
    c->n = 0;
    c->keys.len = 0;
    c->n_vals = 0;
}

static const int32_t *cache_get(const WordCache *c, const uint8_t *s, size_t n, uint64_t h, size_t *count) {
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        const CacheSlot *sl = &c->slots[i];
        if (!sl->key_len) return NULL;
        if (sl->hash == (uint32_t)(h >> 32) && sl->key_len == n && memcmp(c->keys.data + sl->key_off, s, n) == 0) {
            *count = sl->val_n;
            return c->vals + sl->val_off;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
}

static void cache_put(WordCache *c, const uint8_t *s, size_t n, uint64_t h, const int32_t *ids, size_t n_ids) {
    if (n == 0 || n_ids > UINT16_MAX) return;
    if (c->n * 4 >= CACHE_SLOTS * 3 || c->keys.len > (1u << 30) || c->n_vals > (1u << 28)) cache_clear(c);
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    while (c->slots[i].key_len) i = (i + 1) & (CACHE_SLOTS - 1);
    if (c->n_vals + n_ids > c->cap_vals) {
        size_t nc = c->cap_vals ? c->cap_vals : 4096;
        while (nc < c->n_vals + n_ids) nc *= 2;
        c->vals = xrealloc(c->vals, nc * sizeof *c->vals);
        c->cap_vals = nc;
    }
    CacheSlot *sl = &c->slots[i];
    sl->hash = (uint32_t)(h >> 32);
    sl->key_off = (uint32_t)c->keys.len;
    sl->key_len = (uint16_t)n;
    buf_append(&c->keys, s, n);
    sl->val_off = (uint32_t)c->n_vals;
    sl->val_n = (uint16_t)n_ids;
    memcpy(c->vals + c->n_vals, ids, n_ids * sizeof *ids);
    c->n_vals += n_ids;
    c->n++;
}

// ---------------------------------------------------------------------------------------------------------------
// encoder state for one call

typedef struct HeapEnt {
    uint32_t rank, pos, rpos;
    int32_t lid, rid, res;
} HeapEnt;

typedef struct Enc {
    const Tokenizer *t;
    TokenIds *out;
    Err *e;
    bool failed;
    pcre2_match_data **md; // one per pre-tokenizer step (NULL where the step has no regex)
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    Buf *lvl;              // one scratch buffer per pre-tokenizer step
    Buf norm[2];
    // merge scratch
    int32_t *id;
    uint32_t *rk;
    int32_t *res, *prev, *next;
    size_t cap;
    HeapEnt *heap;
    size_t heap_n, heap_cap;
    bool use_cache;
    WordCache cache;
} Enc;

static void enc_fail(Enc *x, int rc, const char *what) {
    if (x->failed) return;
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    ERR(x->e, "tokenizer: %s failed: %s", what, (const char *)msg);
    x->failed = true;
}

static void ensure_sym(Enc *x, size_t n) {
    if (n <= x->cap) return;
    size_t nc = x->cap ? x->cap : 256;
    while (nc < n) nc *= 2;
    x->id = xrealloc(x->id, nc * sizeof *x->id);
    x->rk = xrealloc(x->rk, nc * sizeof *x->rk);
    x->res = xrealloc(x->res, nc * sizeof *x->res);
    x->prev = xrealloc(x->prev, nc * sizeof *x->prev);
    x->next = xrealloc(x->next, nc * sizeof *x->next);
    x->cap = nc;
}

// ---------------------------------------------------------------------------------------------------------------
// merging

// Direct scan: repeatedly merge the leftmost pair of lowest rank. ids in place; returns the new count.
static size_t merge_scan(const Tokenizer *t, int32_t *id, uint32_t *rk, int32_t *res, size_t n) {
    if (n < 2) return n;
    for (size_t i = 0; i + 1 < n; i++)
        if (!pair_lookup(t, id[i], id[i + 1], &rk[i], &res[i])) rk[i] = PAIR_NONE;
    for (;;) {
        uint32_t best = PAIR_NONE;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] < best) best = rk[i], bi = i;
        if (best == PAIR_NONE) break;
        id[bi] = res[bi];
        // drop symbol bi+1 and pair entry bi+1 (pairs are indexed by their left symbol)
        if (bi + 2 < n) {
            memmove(&id[bi + 1], &id[bi + 2], (n - bi - 2) * sizeof *id);
            memmove(&rk[bi + 1], &rk[bi + 2], (n - bi - 2) * sizeof *rk);
            memmove(&res[bi + 1], &res[bi + 2], (n - bi - 2) * sizeof *res);
        }
        n--;
        if (bi > 0 && !pair_lookup(t, id[bi - 1], id[bi], &rk[bi - 1], &res[bi - 1])) rk[bi - 1] = PAIR_NONE;
        if (bi + 1 < n) {
            if (!pair_lookup(t, id[bi], id[bi + 1], &rk[bi], &res[bi])) rk[bi] = PAIR_NONE;
        } else {
            rk[bi] = PAIR_NONE;
        }
    }
    return n;
}

static bool heap_less(const HeapEnt *a, const HeapEnt *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(Enc *x, HeapEnt h) {
    if (x->heap_n == x->heap_cap) {
        x->heap_cap = x->heap_cap ? x->heap_cap * 2 : 256;
        x->heap = xrealloc(x->heap, x->heap_cap * sizeof *x->heap);
    }
    size_t i = x->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&h, &x->heap[p])) break;
        x->heap[i] = x->heap[p];
        i = p;
    }
    x->heap[i] = h;
}

static HeapEnt heap_pop(Enc *x) {
    HeapEnt top = x->heap[0];
    HeapEnt last = x->heap[--x->heap_n];
    size_t i = 0, n = x->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&x->heap[c + 1], &x->heap[c])) c++;
        if (!heap_less(&x->heap[c], &last)) break;
        x->heap[i] = x->heap[c];
        i = c;
    }
    if (n) x->heap[i] = last;
    return top;
}

static void heap_try(Enc *x, int32_t l, int32_t r) {
    uint32_t rank;
    int32_t res;
    if (l < 0 || r < 0) return;
    if (pair_lookup(x->t, x->id[l], x->id[r], &rank, &res))
        heap_push(x, (HeapEnt){rank, (uint32_t)l, (uint32_t)r, x->id[l], x->id[r], res});
}

// Heap merge over a linked list of symbols; compacts the result into id[0..ret).
static size_t merge_heap(Enc *x, size_t n) {
    int32_t *id = x->id, *prev = x->prev, *next = x->next;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    x->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) heap_try(x, (int32_t)i, (int32_t)i + 1);
    while (x->heap_n) {
        HeapEnt h = heap_pop(x);
        if (id[h.pos] != h.lid || next[h.pos] != (int32_t)h.rpos || id[h.rpos] != h.rid) continue; // stale
        id[h.pos] = h.res;
        int32_t nn = next[h.rpos];
        next[h.pos] = nn;
        if (nn >= 0) prev[nn] = (int32_t)h.pos;
        id[h.rpos] = -1;
        next[h.rpos] = -1;
        heap_try(x, prev[h.pos], (int32_t)h.pos);
        heap_try(x, (int32_t)h.pos, nn);
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) id[m++] = id[i];
    return m;
}

static bool type_mergeable(uint8_t type) { return type == TOKEN_NORMAL || type == TOKEN_USER_DEFINED; }

// Encode one pre-tokenized word.
static void bpe_word(Enc *x, const uint8_t *s, size_t n) {
    if (n == 0) return;
    const Tokenizer *t = x->t;
    uint64_t h = 0;
    bool cacheable = x->use_cache && n <= CACHE_MAX_WORD;
    if (cacheable) {
        h = tok_hash_bytes(s, n);
        size_t cnt;
        const int32_t *v = cache_get(&x->cache, s, n, h, &cnt);
        if (v) {
            for (size_t i = 0; i < cnt; i++) token_ids_push(x->out, v[i]);
            return;
        }
    }
    if (t->ignore_merges) {
        int32_t id = tokenizer_find(t, s, n);
        if (id >= 0 && type_mergeable(t->tok[id].type)) {
            token_ids_push(x->out, id);
            if (cacheable) cache_put(&x->cache, s, n, h, &id, 1);
            return;
        }
    }
    int32_t unk = t->role[TOKEN_ID_UNK];
    ensure_sym(x, n);
    size_t ns = 0;
    bool last_unk = false;
#define PUSH_UNK()                                                        \
    do {                                                                  \
        if (unk >= 0 && !(t->fuse_unk && last_unk)) x->id[ns++] = unk;    \
        last_unk = unk >= 0;                                              \
    } while (0)
    if (t->kind == TOKENIZER_BPE_BYTES) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[s[i]];
            if (id >= 0) x->id[ns++] = id, last_unk = false;
            else PUSH_UNK();
        }
    } else {
        for (size_t i = 0; i < n;) {
            size_t l = tok_utf8_len(s + i, n - i);
            int32_t id = tokenizer_find(t, s + i, l);
            if (id >= 0 && type_mergeable(t->tok[id].type)) {
                x->id[ns++] = id;
                last_unk = false;
            } else {
                bool ok = t->byte_fallback;
                for (size_t k = 0; ok && k < l; k++) ok = t->byte_id[s[i + k]] >= 0;
                if (ok) {
                    for (size_t k = 0; k < l; k++) x->id[ns++] = t->byte_id[s[i + k]];
                    last_unk = false;
                } else {
                    PUSH_UNK();
                }
            }
            i += l;
        }
    }
#undef PUSH_UNK
    size_t m = ns <= tokenizer_small_word_limit ? merge_scan(t, x->id, x->rk, x->res, ns) : merge_heap(x, ns);
    for (size_t i = 0; i < m; i++) token_ids_push(x->out, x->id[i]);
    if (cacheable) cache_put(&x->cache, s, n, h, x->id, m);
}

// ---------------------------------------------------------------------------------------------------------------
// pre-tokenization

static void pre_run(Enc *x, size_t step, const uint8_t *s, size_t n, bool at_start);

// Next non-empty match of re in s[0..n) at or after *pos. Empty matches are skipped (the presets never produce them).
static bool next_match(Enc *x, pcre2_code *re, pcre2_match_data *md, const uint8_t *s, size_t n, size_t *pos,
                       size_t *ms, size_t *me) {
    while (*pos < n) {
        int rc = pcre2_match(re, s, n, *pos, 0, md, x->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return false;
        if (rc < 0) {
            enc_fail(x, rc, "pre-tokenizer regex");
            return false;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] <= ov[0]) {
            if (ov[0] >= n) return false;
            *pos = ov[0] + tok_utf8_len(s + ov[0], n - ov[0]);
            continue;
        }
        *ms = ov[0];
        *me = ov[1];
        *pos = ov[1];
        return true;
    }
    return false;
}

typedef struct Span {
    size_t off, len;
    bool match;
} Span;

static void split_run(Enc *x, size_t step, pcre2_code *re, TokSplitBehavior beh, bool invert, const uint8_t *s,
                      size_t n, bool at_start) {
    pcre2_match_data *md = x->md[step];
    size_t pos = 0, last = 0, ms, me;
    if (beh == TOKSPLIT_ISOLATED) {
        // the hot path: every match and every gap is a word, in order
        while (next_match(x, re, md, s, n, &pos, &ms, &me)) {
            if (ms > last) pre_run(x, step + 1, s + last, ms - last, at_start && last == 0);
            pre_run(x, step + 1, s + ms, me - ms, at_start && ms == 0);
            last = me;
        }
        if (last < n && !x->failed) pre_run(x, step + 1, s + last, n - last, at_start && last == 0);
        return;
    }
    Span *sp = NULL;
    size_t nsp = 0, cap = 0;
#define SPAN_PUSH(o, l, m)                                      \
    do {                                                        \
        if (nsp == cap) {                                       \
            cap = cap ? cap * 2 : 16;                           \
            sp = xrealloc(sp, cap * sizeof *sp);                \
        }                                                       \
        sp[nsp++] = (Span){(o), (l), (m)};                      \
    } while (0)
    while (next_match(x, re, md, s, n, &pos, &ms, &me)) {
        if (ms > last) SPAN_PUSH(last, ms - last, false);
        SPAN_PUSH(ms, me - ms, true);
        last = me;
    }
    if (last < n) SPAN_PUSH(last, n - last, false);
    if (invert)
        for (size_t i = 0; i < nsp; i++) sp[i].match = !sp[i].match;
    // combine per behaviour, as Hugging Face's split does
    Span *outp = xmalloc((nsp + 1) * sizeof *outp);
    size_t no = 0;
    bool prev_match = false;
    switch (beh) {
    case TOKSPLIT_REMOVED:
        for (size_t i = 0; i < nsp; i++)
            if (!sp[i].match) outp[no++] = sp[i];
        break;
    case TOKSPLIT_CONTIGUOUS:
        for (size_t i = 0; i < nsp; i++) {
            if (i > 0 && sp[i].match == prev_match && no > 0) outp[no - 1].len = sp[i].off + sp[i].len - outp[no - 1].off;
            else outp[no++] = sp[i];
            prev_match = sp[i].match;
        }
        break;
    case TOKSPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < nsp; i++) {
            if (sp[i].match && !prev_match && no > 0) outp[no - 1].len = sp[i].off + sp[i].len - outp[no - 1].off;
            else outp[no++] = sp[i];
            prev_match = sp[i].match;
        }
        break;
    case TOKSPLIT_MERGED_WITH_NEXT:
        for (size_t k = nsp; k-- > 0;) {
            if (sp[k].match && !prev_match && no > 0) {
                outp[no - 1].len = outp[no - 1].off + outp[no - 1].len - sp[k].off;
                outp[no - 1].off = sp[k].off;
            } else {
                outp[no++] = sp[k];
            }
            prev_match = sp[k].match;
        }
        for (size_t i = 0; i < no / 2; i++) {
            Span tmp = outp[i];
            outp[i] = outp[no - 1 - i];
            outp[no - 1 - i] = tmp;
        }
        break;
    default:
        for (size_t i = 0; i < nsp; i++) outp[no++] = sp[i];
        break;
    }
#undef SPAN_PUSH
    for (size_t i = 0; i < no && !x->failed; i++)
        if (outp[i].len) pre_run(x, step + 1, s + outp[i].off, outp[i].len, at_start && outp[i].off == 0);
    free(outp);
    free(sp);
}

static bool starts_with(const uint8_t *s, size_t n, const char *p, size_t pl) { return n >= pl && memcmp(s, p, pl) == 0; }

static void pre_run(Enc *x, size_t step, const uint8_t *s, size_t n, bool at_start) {
    if (x->failed || n == 0) return;
    const Tokenizer *t = x->t;
    if (step == t->n_pre) {
        if (!t->spm_split) {
            bpe_word(x, s, n);
            return;
        }
        // no token spans a "▁" that follows another character: each "▁...▁xyz" run is merged on its own
        size_t start = 0;
        for (size_t i = 1; i + 3 <= n; i++) {
            if (s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81 &&
                !(i >= 3 && s[i - 3] == 0xE2 && s[i - 2] == 0x96 && s[i - 1] == 0x81)) {
                bpe_word(x, s + start, i - start);
                start = i;
                i += 2;
            }
        }
        bpe_word(x, s + start, n - start);
        return;
    }
    const PreStep *st = &t->pre[step];
    Buf *b = &x->lvl[step];
    switch (st->kind) {
    case PRE_SPLIT:
    case PRE_DIGITS:
        split_run(x, step, st->re, st->kind == PRE_DIGITS ? TOKSPLIT_ISOLATED : st->behavior, st->invert, s, n, at_start);
        return;
    case PRE_BYTELEVEL:
        if (st->add_prefix_space && s[0] != ' ') {
            b->len = 0;
            buf_append(b, " ", 1);
            buf_append(b, s, n);
            s = (const uint8_t *)b->data;
            n = b->len;
        }
        if (st->use_regex) split_run(x, step, st->re, TOKSPLIT_ISOLATED, false, s, n, at_start);
        else pre_run(x, step + 1, s, n, at_start);
        return;
    case PRE_METASPACE: {
        b->len = 0;
        buf_reserve(b, n + st->rlen);
        bool prepend = st->scheme == TOKPREPEND_ALWAYS || (st->scheme == TOKPREPEND_FIRST && at_start);
        if (prepend && s[0] != ' ' && !starts_with(s, n, st->repl, st->rlen)) buf_append(b, st->repl, st->rlen);
        size_t from = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] != ' ') continue;
            buf_append(b, s + from, i - from);
            buf_append(b, st->repl, st->rlen);
            from = i + 1;
        }
        buf_append(b, s + from, n - from);
        const uint8_t *p = (const uint8_t *)b->data;
        size_t len = b->len;
        if (!st->split) {
            pre_run(x, step + 1, p, len, at_start);
            return;
        }
        // each replacement character starts a new word (HF: split MergedWithNext)
        size_t start = 0;
        for (size_t i = 1; i < len; i++) {
            if (starts_with(p + i, len - i, st->repl, st->rlen)) {
                pre_run(x, step + 1, p + start, i - start, at_start && start == 0);
                start = i;
                i += st->rlen - 1;
            }
        }
        pre_run(x, step + 1, p + start, len - start, at_start && start == 0);
        return;
    }
    default:
        pre_run(x, step + 1, s, n, at_start);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// normalization

static void norm_replace(const uint8_t *s, size_t n, const char *pat, size_t pl, const char *rep, size_t rl, Buf *o) {
    size_t from = 0;
    for (size_t i = 0; i + pl <= n;) {
        if (memcmp(s + i, pat, pl) == 0) {
            buf_append(o, s + from, i - from);
            buf_append(o, rep, rl);
            i += pl;
            from = i;
        } else {
            i++;
        }
    }
    buf_append(o, s + from, n - from);
}

static void norm_regex(Enc *x, const NormStep *st, const uint8_t *s, size_t n, Buf *o) {
    PCRE2_SIZE outlen = n + 64;
    for (int attempt = 0; attempt < 2; attempt++) {
        buf_reserve(o, outlen + 1);
        PCRE2_SIZE cap = o->cap - o->len;
        int rc = pcre2_substitute(st->re, s, n, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_LITERAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                                  NULL, x->mctx, (PCRE2_SPTR)st->b, st->blen, (PCRE2_UCHAR *)o->data + o->len, &cap);
        if (rc >= 0) {
            o->len += cap;
            o->data[o->len] = 0;
            return;
        }
        if (rc != PCRE2_ERROR_NOMEMORY) {
            enc_fail(x, rc, "normalizer Replace regex");
            return;
        }
        outlen = cap;
    }
    enc_fail(x, PCRE2_ERROR_NOMEMORY, "normalizer Replace regex");
}

static void norm_unicode(const NormStep *st, const uint8_t *s, size_t n, Buf *o) {
    int opts = UTF8PROC_STABLE;
    switch (st->form) {
    case TOKNORM_NFC: opts |= UTF8PROC_COMPOSE; break;
    case TOKNORM_NFD: opts |= UTF8PROC_DECOMPOSE; break;
    case TOKNORM_NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    default: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    // utf8proc needs valid UTF-8: normalize each valid run and keep invalid bytes as they are
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n) {
            size_t l = tok_utf8_len(s + j, n - j);
            if (l == 1 && s[j] >= 0x80) break;
            j += l;
        }
        if (j > i) {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t r = utf8proc_map(s + i, (utf8proc_ssize_t)(j - i), &dst, (utf8proc_option_t)opts);
            if (r >= 0) buf_append(o, dst, (size_t)r);
            else buf_append(o, s + i, j - i);
            free(dst);
        }
        if (j < n) buf_append(o, s + j, 1), j++;
        i = j;
    }
}

static void norm_lower(const uint8_t *s, size_t n, Buf *o) {
    for (size_t i = 0; i < n;) {
        size_t l = tok_utf8_len(s + i, n - i);
        if (l == 1 && s[i] >= 0x80) {
            buf_append(o, s + i, 1);
        } else {
            utf8proc_int32_t cp;
            utf8proc_iterate(s + i, (utf8proc_ssize_t)l, &cp);
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t el = utf8proc_encode_char(utf8proc_tolower(cp), enc);
            buf_append(o, enc, (size_t)el);
        }
        i += l;
    }
}

// Apply the normalizer steps; returns the normalized text (x->norm[k] or s itself).
static const uint8_t *normalize(Enc *x, const uint8_t *s, size_t n, size_t *out_n) {
    const Tokenizer *t = x->t;
    int cur = 0;
    for (size_t k = 0; k < t->n_norm && !x->failed; k++) {
        const NormStep *st = &t->norm[k];
        Buf *o = &x->norm[cur];
        o->len = 0;
        buf_reserve(o, n + 16);
        switch (st->kind) {
        case NORM_PREPEND:
            if (n) buf_append(o, st->a, st->alen);
            buf_append(o, s, n);
            break;
        case NORM_REPLACE: norm_replace(s, n, st->a, st->alen, st->b, st->blen, o); break;
        case NORM_REPLACE_REGEX: norm_regex(x, st, s, n, o); break;
        case NORM_UNICODE: norm_unicode(st, s, n, o); break;
        case NORM_LOWERCASE: norm_lower(s, n, o); break;
        case NORM_STRIP: {
            size_t a = 0, b = n;
            if (st->left) {
                size_t w;
                while (a < b && (w = tok_whitespace_len(s + a, b - a)) > 0) a += w;
            }
            if (st->right) {
                for (;;) {
                    size_t k2 = b; // find the start of the last character
                    if (k2 == a) break;
                    k2--;
                    while (k2 > a && (s[k2] & 0xC0) == 0x80 && b - k2 < 4) k2--;
                    if (tok_whitespace_len(s + k2, b - k2) != b - k2) break;
                    b = k2;
                }
            }
            buf_append(o, s + a, b - a);
            break;
        }
        default: buf_append(o, s, n); break;
        }
        s = (const uint8_t *)(o->data ? o->data : "");
        n = o->len;
        cur ^= 1;
    }
    *out_n = n;
    return s;
}

static void encode_segment(Enc *x, const uint8_t *s, size_t n, bool at_start) {
    if (n == 0) return;
    size_t nn;
    const uint8_t *p = normalize(x, s, n, &nn);
    if (!x->failed) pre_run(x, 0, p, nn, at_start);
}

// ---------------------------------------------------------------------------------------------------------------

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int mode, TokenIds *out, Err *e) {
    if (!t->finalized) return ERR(e, "tokenizer_encode: tokenizer not finalized");
    if (!text && len) return ERR(e, "tokenizer_encode: NULL text");
    Enc x;
    memset(&x, 0, sizeof x);
    x.t = t;
    x.out = out;
    x.e = e;
    x.md = xcalloc(t->n_pre + 1, sizeof *x.md);
    x.lvl = xcalloc(t->n_pre + 1, sizeof *x.lvl);
    bool any_re = false;
    for (size_t i = 0; i < t->n_pre; i++)
        if (t->pre[i].re) x.md[i] = pcre2_match_data_create_from_pattern(t->pre[i].re, NULL), any_re = true;
    for (size_t i = 0; i < t->n_norm; i++) any_re |= t->norm[i].re != NULL;
    if (any_re) {
        x.mctx = pcre2_match_context_create(NULL);
        x.jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        if (x.mctx && x.jit) pcre2_jit_stack_assign(x.mctx, NULL, x.jit);
    }
    // the cache pays off on long byte-level texts, whose words are short and repeat
    x.use_cache = (t->n_pre > 0 || t->spm_split) && len >= 2048;
    if (x.use_cache) x.cache.slots = xcalloc(CACHE_SLOTS, sizeof *x.cache.slots);

    size_t out_start = out->n;
    if (mode & TOKENIZE_ADD_SPECIAL)
        for (size_t i = 0; i < t->n_prefix; i++) token_ids_push(out, t->prefix[i]);

    const Trie *tr = ((mode & TOKENIZE_ORDINARY) || t->no_parse_special) ? &t->trie_user : &t->trie_all;
    const uint8_t *s = (const uint8_t *)text;
    size_t seg = 0, i = 0;
    while (i < len && !x.failed) {
        if (!(tr->first[s[i] >> 3] & (1u << (s[i] & 7)))) {
            i++;
            continue;
        }
        size_t mlen = 0;
        int32_t id = tok_trie_match(tr, s + i, len - i, &mlen);
        if (id < 0) {
            i++;
            continue;
        }
        size_t seg_end = i;
        if (t->tok[id].flags & TOKF_LSTRIP) {
            // absorb whitespace before the token (whole characters, scanning back from the match)
            for (;;) {
                size_t k = seg_end;
                if (k == seg) break;
                k--;
                while (k > seg && (s[k] & 0xC0) == 0x80 && seg_end - k < 4) k--;
                if (tok_whitespace_len(s + k, seg_end - k) != seg_end - k) break;
                seg_end = k;
            }
        }
        encode_segment(&x, s + seg, seg_end - seg, seg == 0);
        token_ids_push(out, id);
        i += mlen;
        if (t->tok[id].flags & TOKF_RSTRIP) {
            size_t w;
            while (i < len && (w = tok_whitespace_len(s + i, len - i)) > 0) i += w;
        }
        seg = i;
    }
    if (!x.failed) encode_segment(&x, s + seg, len - seg, seg == 0);

    if (mode & TOKENIZE_ADD_SPECIAL)
        for (size_t k = 0; k < t->n_suffix; k++) token_ids_push(out, t->suffix[k]);

    for (size_t k = 0; k <= t->n_pre; k++) {
        if (x.md[k]) pcre2_match_data_free(x.md[k]);
        buf_free(&x.lvl[k]);
    }
    free(x.md);
    free(x.lvl);
    buf_free(&x.norm[0]);
    buf_free(&x.norm[1]);
    if (x.mctx) pcre2_match_context_free(x.mctx);
    if (x.jit) pcre2_jit_stack_free(x.jit);
    free(x.id);
    free(x.rk);
    free(x.res);
    free(x.prev);
    free(x.next);
    free(x.heap);
    if (x.use_cache) {
        free(x.cache.slots);
        buf_free(&x.cache.keys);
        free(x.cache.vals);
    }
    if (x.failed) {
        out->n = out_start;
        return -1;
    }
    return 0;
}
