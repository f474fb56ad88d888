// test_tokenizer_train.c — the BPE trainer and the tokenizer writers.
//
// The trainer is checked against a naive from-scratch recount BPE written here (every step recounts every pair of
// every word), on a small corpus, including the tie-break rule; against itself with 1, 2 and 3 threads; and its
// output is checked as a tokenizer: a naive rank-order merge encoder written here agrees with lossy's encoder on
// held-out text, decode(encode(x)) == x, special tokens are single ids and never learned, every learned token
// encodes to itself. The writers are checked for determinism, for the spelling of tokens and merges (with a GPT-2
// byte->unicode table built here independently), and by loading the written files back with tokenizer_load.
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/train_bpe.h"
#include "tokenizer/write_tokenizer.h"
#include "train_test_util.h"

// ---------------------------------------------------------------- helpers

// Train on one text with the given options (vocab_size, threads, min_frequency); REQUIREs success.
static int train_text(const char *text, size_t len, size_t vocab, int threads, int64_t minf, BpeVocab *v) {
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    o.vocab_size = vocab;
    o.n_threads = threads;
    o.min_frequency = minf;
    Err e;
    BpeTrainer *t = bpe_trainer_new(&o, &e);
    if (!t) return -1;
    int rc = bpe_trainer_add_text(t, text, len, &e);
    if (!rc) rc = bpe_trainer_train(t, v, &e);
    bpe_trainer_free(t);
    if (!rc) rc = bpe_vocab_set_bos_eos(v, BPE_DEFAULT_BOS, BPE_DEFAULT_EOS, &e);
    return rc;
}

static bool vocab_equal(const BpeVocab *a, const BpeVocab *b) {
    if (a->n_tokens != b->n_tokens || a->n_merges != b->n_merges) return false;
    for (size_t i = 0; i < a->n_merges; i++)
        if (a->merges[i].left != b->merges[i].left || a->merges[i].right != b->merges[i].right ||
            a->merges[i].count != b->merges[i].count)
            return false;
    return a->offset[a->n_tokens] == b->offset[b->n_tokens] && memcmp(a->bytes, b->bytes, a->offset[a->n_tokens]) == 0;
}

// Words of a text as the trainer sees them.
typedef struct WordList {
    char **w;
    size_t *len;
    bool *special;
    size_t n, cap;
} WordList;

static void collect_word(void *ctx, const char *word, size_t len, bool is_special) {
    WordList *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->w = xrealloc(l->w, l->cap * sizeof *l->w);
        l->len = xrealloc(l->len, l->cap * sizeof *l->len);
        l->special = xrealloc(l->special, l->cap * sizeof *l->special);
    }
    l->w[l->n] = xstrndup(word, len);
    l->len[l->n] = len;
    l->special[l->n] = is_special;
    l->n++;
}

static void wordlist_free(WordList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->w[i]);
    free(l->w);
    free(l->len);
    free(l->special);
}

static const char *const SPECIALS[] = {"<|endoftext|>", "<|bos|>", "<|system|>", "<|user|>",
                                       "<|assistant|>", "<|end|>", "<|tool_call|>", "<|tool_result|>"};
#define N_SPECIALS (sizeof SPECIALS / sizeof SPECIALS[0])

// ---------------------------------------------------------------- naive reference trainer

typedef struct NWord {
    int32_t *s;
    size_t n;
    int64_t count;
} NWord;

typedef struct NPair {
    int32_t a, b;
    int64_t count;
} NPair;

static int cmp_pair(const void *x, const void *y) {
    const NPair *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    if (p->b != q->b) return p->b < q->b ? -1 : 1;
    return 0;
}

typedef struct StrCount {
    const char *s;
    size_t n;
} StrCount;

static int cmp_str(const void *x, const void *y) {
    const StrCount *p = x, *q = y;
    size_t m = p->n < q->n ? p->n : q->n;
    int c = memcmp(p->s, q->s, m);
    if (c) return c;
    return p->n < q->n ? -1 : p->n > q->n;
}

// Naive BPE: unique words by sorting, then per merge: recount all pairs, take the max (count desc, left asc,
// right asc), rewrite every word left to right. Returns the number of merges; merges[] gets (left, right, count).
static size_t naive_train(const char *text, size_t len, size_t max_merges, int64_t minf, NPair *merges) {
    WordList l = {0};
    Err e;
    if (bpe_pretokenize(text, len, SPECIALS, N_SPECIALS, collect_word, &l, &e)) return 0;
    StrCount *sc = xmalloc_array(l.n + 1, sizeof *sc);
    size_t n_sc = 0;
    for (size_t i = 0; i < l.n; i++)
        if (!l.special[i]) sc[n_sc++] = (StrCount){l.w[i], l.len[i]};
    qsort(sc, n_sc, sizeof *sc, cmp_str);
    NWord *words = xmalloc_array(n_sc + 1, sizeof *words);
    size_t nw = 0;
    for (size_t i = 0; i < n_sc; i++) {
        if (nw && cmp_str(&sc[i], &sc[i - 1]) == 0) {
            words[nw - 1].count++;
            continue;
        }
        NWord *w = &words[nw++];
        w->n = sc[i].n;
        w->count = 1;
        w->s = xmalloc_array(w->n, sizeof *w->s);
        for (size_t k = 0; k < w->n; k++) w->s[k] = (unsigned char)sc[i].s[k];
    }
    size_t done = 0;
    for (; done < max_merges; done++) {
        size_t np = 0, capp = 1024;
        NPair *pairs = xmalloc_array(capp, sizeof *pairs);
        for (size_t i = 0; i < nw; i++)
            for (size_t k = 0; k + 1 < words[i].n; k++) {
                if (np == capp) pairs = xrealloc(pairs, (capp *= 2) * sizeof *pairs);
                pairs[np++] = (NPair){words[i].s[k], words[i].s[k + 1], words[i].count};
            }
        qsort(pairs, np, sizeof *pairs, cmp_pair);
        NPair best = {-1, -1, 0};
        for (size_t i = 0; i < np;) {
            NPair cur = pairs[i];
            size_t j = i + 1;
            while (j < np && pairs[j].a == cur.a && pairs[j].b == cur.b) cur.count += pairs[j++].count;
            // pairs are sorted by (a, b), so a strictly larger count is needed to replace an earlier pair
            if (cur.count > best.count) best = cur;
            i = j;
        }
        free(pairs);
        if (best.count < minf || best.count == 0) break;
        merges[done] = best;
        int32_t z = (int32_t)(256 + done);
        for (size_t i = 0; i < nw; i++) {
            size_t j = 0;
            for (size_t k = 0; k < words[i].n;) {
                if (k + 1 < words[i].n && words[i].s[k] == best.a && words[i].s[k + 1] == best.b) {
                    words[i].s[j++] = z;
                    k += 2;
                } else {
                    words[i].s[j++] = words[i].s[k++];
                }
            }
            words[i].n = j;
        }
    }
    for (size_t i = 0; i < nw; i++) free(words[i].s);
    free(words);
    free(sc);
    wordlist_free(&l);
    return done;
}

// ---------------------------------------------------------------- naive reference encoder

// Rank-order BPE on one word: repeatedly merge the lowest-ranked adjacent pair (leftmost on ties).
static void naive_encode_word(const BpeVocab *v, const char *w, size_t n, TokenIds *out) {
    int32_t *s = xmalloc_array(n ? n : 1, sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = (unsigned char)w[i];
    for (;;) {
        size_t best_rank = SIZE_MAX, best_pos = 0;
        for (size_t i = 0; i + 1 < n; i++)
            for (size_t r = 0; r < v->n_merges && r < best_rank; r++)
                if (v->merges[r].left == s[i] && v->merges[r].right == s[i + 1]) {
                    best_rank = r, best_pos = i;
                    break;
                }
        if (best_rank == SIZE_MAX) break;
        s[best_pos] = (int32_t)(256 + best_rank);
        memmove(s + best_pos + 1, s + best_pos + 2, (n - best_pos - 2) * sizeof *s);
        n--;
    }
    for (size_t i = 0; i < n; i++) token_ids_push(out, s[i]);
    free(s);
}

static void naive_encode(const BpeVocab *v, const char *text, size_t len, TokenIds *out) {
    WordList l = {0};
    Err e;
    if (bpe_pretokenize(text, len, SPECIALS, N_SPECIALS, collect_word, &l, &e)) return;
    for (size_t i = 0; i < l.n; i++) {
        if (l.special[i]) {
            for (size_t k = 0; k < N_SPECIALS; k++)
                if (strcmp(l.w[i], SPECIALS[k]) == 0) token_ids_push(out, (int32_t)(v->first_special + k));
        } else {
            naive_encode_word(v, l.w[i], l.len[i], out);
        }
    }
    wordlist_free(&l);
}

// GPT-2's byte -> unicode table, built here from its definition: printable bytes map to themselves, the other
// bytes in order to U+0100, U+0101, ...
static void gpt2_spell(const char *s, size_t n, Buf *out) {
    int map[256], next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        map[b] = printable ? b : next++;
    }
    for (size_t i = 0; i < n; i++) {
        int c = map[(unsigned char)s[i]];
        char u[2];
        if (c < 0x80) {
            u[0] = (char)c;
            buf_append(out, u, 1);
        } else {
            u[0] = (char)(0xc0 | (c >> 6));
            u[1] = (char)(0x80 | (c & 0x3f));
            buf_append(out, u, 2);
        }
    }
}

// ---------------------------------------------------------------- trainer tests

TEST(bpe_train_matches_naive_recount) {
    size_t len;
    char *text = tt_shakespeare(0, 12000, &len);
    REQUIRE(text);
    // min_frequency 1 goes deep into count-1 and count-2 ties, where only the tie-break decides
    size_t n_merges = 500;
    BpeVocab v;
    REQUIRE(train_text(text, len, 256 + n_merges + N_SPECIALS, 2, 1, &v) == 0);
    NPair *ref = xmalloc_array(n_merges, sizeof *ref);
    size_t n_ref = naive_train(text, len, n_merges, 1, ref);
    CHECK_EQ_INT(v.n_merges, n_ref);
    size_t first_diff = SIZE_MAX;
    for (size_t i = 0; i < n_ref && i < v.n_merges && first_diff == SIZE_MAX; i++)
        if (v.merges[i].left != ref[i].a || v.merges[i].right != ref[i].b || v.merges[i].count != ref[i].count)
            first_diff = i;
    CHECKF(first_diff == SIZE_MAX, "merge %zu differs: trainer (%d, %d) x%lld, naive (%d, %d) x%lld", first_diff,
           first_diff < n_ref ? v.merges[first_diff].left : -1, first_diff < n_ref ? v.merges[first_diff].right : -1,
           first_diff < n_ref ? (long long)v.merges[first_diff].count : -1LL, first_diff < n_ref ? ref[first_diff].a : -1,
           first_diff < n_ref ? ref[first_diff].b : -1, first_diff < n_ref ? (long long)ref[first_diff].count : -1LL);
    // some late merges really were ties decided by the rule (else this test would not test it)
    size_t ties = 0;
    for (size_t i = 1; i < n_ref; i++) ties += ref[i].count == ref[i - 1].count;
    CHECK(ties > 50);
    // min_frequency stops early exactly where the naive recount does
    BpeVocab v2;
    REQUIRE(train_text(text, len, 256 + 4000 + N_SPECIALS, 1, 3, &v2) == 0);
    NPair *ref2 = xmalloc_array(4000, sizeof *ref2);
    size_t n_ref2 = naive_train(text, len, 4000, 3, ref2);
    CHECK_EQ_INT(v2.n_merges, n_ref2);
    CHECK(v2.n_merges < 4000);
    CHECK_EQ_INT(v2.n_tokens, 256 + v2.n_merges + N_SPECIALS);
    if (v2.n_merges == n_ref2 && n_ref2) {
        CHECK_EQ_INT(v2.merges[n_ref2 - 1].left, ref2[n_ref2 - 1].a);
        CHECK(v2.merges[n_ref2 - 1].count >= 3);
    }
    free(ref2);
    bpe_vocab_free(&v2);
    free(ref);
    bpe_vocab_free(&v);
    free(text);
}

TEST(bpe_train_deterministic_across_threads) {
    size_t len;
    char *text = tt_shakespeare(0, 200000, &len);
    REQUIRE(text);
    BpeVocab v1, v2, v3;
    REQUIRE(train_text(text, len, 1024, 1, 2, &v1) == 0);
    REQUIRE(train_text(text, len, 1024, 2, 2, &v2) == 0);
    REQUIRE(train_text(text, len, 1024, 3, 2, &v3) == 0);
    CHECK_EQ_INT(v1.n_tokens, 1024);
    CHECK(vocab_equal(&v1, &v2));
    CHECK(vocab_equal(&v1, &v3));
    CHECK_EQ_INT(v1.n_words, v2.n_words);
    CHECK_EQ_INT(v1.n_unique_words, v3.n_unique_words);
    // merges are well formed: parts exist before the merge, the token is their concatenation, counts never grow
    for (size_t i = 0; i < v1.n_merges; i++) {
        const BpeMerge *m = &v1.merges[i];
        CHECK(m->left >= 0 && m->left < (int32_t)(256 + i) && m->right >= 0 && m->right < (int32_t)(256 + i));
        size_t lz, la, lb;
        const char *z = bpe_vocab_token(&v1, 256 + i, &lz), *a = bpe_vocab_token(&v1, (size_t)m->left, &la),
                   *b = bpe_vocab_token(&v1, (size_t)m->right, &lb);
        CHECK(lz == la + lb && memcmp(z, a, la) == 0 && memcmp(z + la, b, lb) == 0);
        if (i) CHECK(m->count <= v1.merges[i - 1].count);
    }
    // the special tokens follow the merges, in order
    for (size_t k = 0; k < N_SPECIALS; k++) {
        size_t n;
        const char *s = bpe_vocab_token(&v1, v1.first_special + k, &n);
        CHECK(n == strlen(SPECIALS[k]) && memcmp(s, SPECIALS[k], n) == 0);
    }
    CHECK_EQ_INT(v1.eos_id, v1.first_special);
    CHECK_EQ_INT(v1.bos_id, v1.first_special + 1);
    bpe_vocab_free(&v1);
    bpe_vocab_free(&v2);
    bpe_vocab_free(&v3);
    // one long line with special tokens sprinkled in: threads can only cut between words, never inside a special
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') text[i] = ' ';
    for (size_t i = 997; i + 20 < len; i += 7919) memcpy(text + i, "x<|endoftext|>y", 15);
    REQUIRE(train_text(text, len, 1024, 1, 2, &v1) == 0);
    REQUIRE(train_text(text, len, 1024, 2, 2, &v2) == 0);
    REQUIRE(train_text(text, len, 1024, 3, 2, &v3) == 0);
    CHECK(vocab_equal(&v1, &v2));
    CHECK(vocab_equal(&v1, &v3));
    CHECK_EQ_INT(v1.n_words, v2.n_words);
    CHECK_EQ_INT(v1.n_words, v3.n_words);
    CHECK_EQ_INT(v1.n_unique_words, v3.n_unique_words);
    bpe_vocab_free(&v1);
    bpe_vocab_free(&v2);
    bpe_vocab_free(&v3);
    free(text);
}

TEST(bpe_train_never_learns_special_tokens) {
    // documents joined by <|endoftext|>: without cutting, "<|", "endoftext", "|>" would be the top merges
    Buf b;
    buf_init(&b);
    for (int i = 0; i < 300; i++) buf_printf(&b, "story %d is short.<|endoftext|>", i % 7);
    BpeVocab v;
    REQUIRE(train_text(b.data, b.len, 256 + 40 + N_SPECIALS, 1, 2, &v) == 0);
    for (size_t i = 256; i < v.first_special; i++) {
        size_t n;
        const char *s = bpe_vocab_token(&v, i, &n);
        CHECKF(!memmem(s, n, "endoftext", 9) && !memmem(s, n, "<|", 2) && !memmem(s, n, "|>", 2), "learned token %zu '%.*s'",
               i, (int)n, s);
    }
    bpe_vocab_free(&v);
    buf_free(&b);
}

TEST(bpe_train_bad_options) {
    Err e;
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    o.vocab_size = 256 + N_SPECIALS - 1; // no room for the specials
    CHECK(bpe_trainer_new(&o, &e) == NULL && strstr(e.msg, "too small"));
    o.vocab_size = 1000;
    const char *dup[] = {"<a>", "<b>", "<a>"};
    o.specials = dup, o.n_specials = 3;
    CHECK(bpe_trainer_new(&o, &e) == NULL && strstr(e.msg, "twice"));
    const char *empty[] = {"<a>", ""};
    o.specials = empty, o.n_specials = 2;
    CHECK(bpe_trainer_new(&o, &e) == NULL && strstr(e.msg, "empty"));
    o.specials = NULL, o.n_specials = 0, o.min_frequency = 0;
    CHECK(bpe_trainer_new(&o, &e) == NULL && strstr(e.msg, "min frequency"));
    o.min_frequency = 2, o.vocab_size = (size_t)1 << 40;
    CHECK(bpe_trainer_new(&o, &e) == NULL && strstr(e.msg, "too large"));
    // exactly bytes + specials: a valid vocabulary with no merges
    bpe_train_options_default(&o);
    o.vocab_size = 256 + N_SPECIALS;
    BpeTrainer *t = bpe_trainer_new(&o, &e);
    REQUIRE(t);
    BpeVocab v;
    CHECK(bpe_trainer_add_text(t, "aaaa aaaa", 9, &e) == 0);
    CHECK(bpe_trainer_train(t, &v, &e) == 0);
    CHECK_EQ_INT(v.n_merges, 0);
    CHECK_EQ_INT(v.n_tokens, 256 + N_SPECIALS);
    CHECK(bpe_trainer_train(t, &v, &e) == -1); // once only
    CHECK(bpe_trainer_add_text(t, "x", 1, &e) == -1);
    CHECK(bpe_vocab_set_bos_eos(&v, "<|nope|>", NULL, &e) == -1 && strstr(e.msg, "<|nope|>"));
    bpe_trainer_free(t);
    bpe_vocab_free(&v);
}

TEST(bpe_train_invalid_utf8_and_empty) {
    // invalid UTF-8 becomes words of its own; nothing is lost or crashes
    const char text[] = "abc\xff\xfe abc \xc3\x28 abc\xe2\x82 abc abc\x80\x80\x80";
    BpeVocab v;
    REQUIRE(train_text(text, sizeof text - 1, 300, 2, 1, &v) == 0);
    CHECK(v.n_merges > 0);
    Tokenizer *t;
    Err e;
    REQUIREF(bpe_vocab_to_tokenizer(&v, false, &t, &e) == 0, "%s", e.msg);
    TokenIds ids = {0};
    CHECK(tokenizer_encode(t, text, sizeof text - 1, 0, &ids, &e) == 0);
    Buf out;
    buf_init(&out);
    CHECK(tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e) == 0);
    CHECK(out.len == sizeof text - 1 && memcmp(out.data, text, out.len) == 0);
    buf_free(&out);
    token_ids_free(&ids);
    tokenizer_free(t);
    bpe_vocab_free(&v);
    // an empty corpus trains a vocabulary with no merges
    BpeVocab ve;
    REQUIRE(train_text("", 0, 300, 1, 2, &ve) == 0);
    CHECK_EQ_INT(ve.n_merges, 0);
    CHECK_EQ_INT(ve.n_words, 0);
    bpe_vocab_free(&ve);
}

// ---------------------------------------------------------------- the trained vocabulary as a tokenizer

TEST(bpe_trained_tokenizer_encodes_like_naive) {
    size_t len, hlen;
    char *text = tt_shakespeare(0, 200000, &len);
    char *held = tt_shakespeare(1115394 - 12000, 12000, &hlen); // from the held-out last 10%
    REQUIRE(text && held);
    BpeVocab v;
    REQUIRE(train_text(text, len, 256 + 700 + N_SPECIALS, 2, 2, &v) == 0);
    Tokenizer *t;
    Err e;
    REQUIREF(bpe_vocab_to_tokenizer(&v, true, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(tokenizer_vocab_size(t), v.n_tokens);
    TokenIds ids = {0}, ref = {0};
    REQUIRE(tokenizer_encode(t, held, hlen, 0, &ids, &e) == 0);
    naive_encode(&v, held, hlen, &ref);
    CHECK_EQ_INT(ids.n, ref.n);
    size_t diff = SIZE_MAX;
    for (size_t i = 0; i < ids.n && i < ref.n && diff == SIZE_MAX; i++)
        if (ids.ids[i] != ref.ids[i]) diff = i;
    CHECKF(diff == SIZE_MAX, "ids differ from position %zu", diff);
    CHECK(ids.n < hlen / 2); // it compresses
    Buf out;
    buf_init(&out);
    REQUIRE(tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e) == 0);
    CHECK(out.len == hlen && memcmp(out.data, held, hlen) == 0);
    // every learned token is what its own bytes encode to (so llama.cpp's ignore_merges changes nothing)
    size_t bad = 0;
    for (size_t id = 256; id < v.first_special; id++) {
        size_t n;
        const char *s = bpe_vocab_token(&v, id, &n);
        TokenIds one = {0};
        naive_encode_word(&v, s, n, &one);
        bad += !(one.n == 1 && one.ids[0] == (int32_t)id);
        token_ids_free(&one);
    }
    CHECK_EQ_INT(bad, 0);
    token_ids_free(&ids);
    token_ids_free(&ref);
    buf_free(&out);
    tokenizer_free(t);
    bpe_vocab_free(&v);
    free(text);
    free(held);
}

TEST(bpe_trained_tokenizer_special_tokens) {
    size_t len;
    char *text = tt_shakespeare(0, 50000, &len);
    REQUIRE(text);
    BpeVocab v;
    REQUIRE(train_text(text, len, 256 + 300 + N_SPECIALS, 1, 2, &v) == 0);
    Tokenizer *t;
    Err e;
    REQUIREF(bpe_vocab_to_tokenizer(&v, true, &t, &e) == 0, "%s", e.msg);
    const char *msg = "<|user|>Good morrow<|end|><|assistant|>";
    TokenIds ids = {0};
    REQUIRE(tokenizer_encode(t, msg, strlen(msg), 0, &ids, &e) == 0);
    REQUIRE(ids.n >= 4);
    CHECK_EQ_INT(ids.ids[0], v.first_special + 3);
    CHECK_EQ_INT(ids.ids[ids.n - 2], v.first_special + 5);
    CHECK_EQ_INT(ids.ids[ids.n - 1], v.first_special + 4);
    token_ids_free(&ids);
    // ordinary mode: the same text can never produce a control id
    REQUIRE(tokenizer_encode(t, msg, strlen(msg), TOKENIZE_ORDINARY, &ids, &e) == 0);
    for (size_t i = 0; i < ids.n; i++) CHECK(ids.ids[i] < (int32_t)v.first_special);
    Buf out;
    buf_init(&out);
    REQUIRE(tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e) == 0);
    CHECK_EQ_STR(out.data, msg);
    token_ids_free(&ids);
    // add-special: BOS first
    REQUIRE(tokenizer_encode(t, "Hi", 2, TOKENIZE_ADD_SPECIAL, &ids, &e) == 0);
    REQUIRE(ids.n >= 2);
    CHECK_EQ_INT(ids.ids[0], v.bos_id);
    CHECK_EQ_INT(tokenizer_special_id(t, TOKEN_ID_EOS), v.eos_id);
    CHECK(tokenizer_is_control(t, (int32_t)v.first_special));
    token_ids_free(&ids);
    buf_free(&out);
    tokenizer_free(t);
    bpe_vocab_free(&v);
    free(text);
}

// ---------------------------------------------------------------- writers

// Train the standard small vocabulary and write both files into dir with the given stem.
static int write_both(const char *text, size_t len, const char *stem, char *gguf, char *json, size_t cap) {
    BpeVocab v;
    if (train_text(text, len, 256 + 500 + N_SPECIALS, 2, 2, &v)) return -1;
    Tokenizer *t;
    Err e;
    int rc = bpe_vocab_to_tokenizer(&v, true, &t, &e);
    snprintf(gguf, cap, "%s/%s.gguf", test_tmpdir(), stem);
    snprintf(json, cap, "%s/%s.json", test_tmpdir(), stem);
    if (!rc) rc = tokenizer_write_gguf(t, gguf, "test-vocab", &e);
    if (!rc) rc = tokenizer_write_hf_json(t, json, &e);
    if (rc) fprintf(stderr, "write_both: %s\n", e.msg);
    tokenizer_free(t);
    bpe_vocab_free(&v);
    return rc;
}

static bool files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    Err e;
    if (file_read_all(a, &x, &nx, &e)) return false;
    if (file_read_all(b, &y, &ny, &e)) {
        free(x);
        return false;
    }
    bool eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

TEST(tokenizer_writers_deterministic_and_spelled) {
    size_t len;
    char *text = tt_shakespeare(0, 100000, &len);
    REQUIRE(text);
    char g1[512], j1[512], g2[512], j2[512];
    REQUIRE(write_both(text, len, "a", g1, j1, sizeof g1) == 0);
    REQUIRE(write_both(text, len, "b", g2, j2, sizeof g2) == 0);
    CHECK(files_equal(g1, g2));
    CHECK(files_equal(j1, j2));
    BpeVocab v;
    REQUIRE(train_text(text, len, 256 + 500 + N_SPECIALS, 1, 2, &v) == 0);

    // GGUF: keys, and tokens/merges spelled with an independently built byte->unicode table
    GGUFFile g;
    Err e;
    REQUIREF(gguf_open(&g, g1, &e) == 0, "%s", e.msg);
    GStr s;
    REQUIRE(gguf_get_str(&g, "tokenizer.ggml.model", &s, &e) == 0);
    CHECK(s.len == 4 && memcmp(s.ptr, "gpt2", 4) == 0);
    REQUIRE(gguf_get_str(&g, "tokenizer.ggml.pre", &s, &e) == 0);
    CHECK(s.len == 9 && memcmp(s.ptr, "llama-bpe", 9) == 0);
    REQUIRE(gguf_get_str(&g, "general.architecture", &s, &e) == 0);
    const GGUFKV *toks, *types, *merges;
    REQUIRE(gguf_get_arr(&g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &e) == 0);
    REQUIRE(gguf_get_arr(&g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types, &e) == 0);
    REQUIRE(gguf_get_arr(&g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, &e) == 0);
    CHECK_EQ_INT(toks->arr_count, v.n_tokens);
    CHECK_EQ_INT(merges->arr_count, v.n_merges);
    Buf sp;
    buf_init(&sp);
    size_t bad_tok = 0, bad_type = 0, bad_merge = 0;
    for (size_t i = 0; i < v.n_tokens && i < toks->arr_count; i++) {
        size_t n;
        const char *raw = bpe_vocab_token(&v, i, &n);
        sp.len = 0;
        if (i >= v.first_special) buf_append(&sp, raw, n);
        else gpt2_spell(raw, n, &sp);
        bad_tok += !(toks->arr_str[i].len == sp.len && memcmp(toks->arr_str[i].ptr, sp.data, sp.len) == 0);
        bad_type += gguf_arr_int(types, i) != (i >= v.first_special ? 3 : 1);
    }
    for (size_t i = 0; i < v.n_merges && i < merges->arr_count; i++) {
        size_t la, lb;
        const char *a = bpe_vocab_token(&v, (size_t)v.merges[i].left, &la), *b = bpe_vocab_token(&v, (size_t)v.merges[i].right, &lb);
        sp.len = 0;
        gpt2_spell(a, la, &sp);
        buf_append(&sp, " ", 1);
        gpt2_spell(b, lb, &sp);
        bad_merge += !(merges->arr_str[i].len == sp.len && memcmp(merges->arr_str[i].ptr, sp.data, sp.len) == 0);
    }
    CHECK_EQ_INT(bad_tok, 0);
    CHECK_EQ_INT(bad_type, 0);
    CHECK_EQ_INT(bad_merge, 0);
    int64_t id;
    CHECK(gguf_get_int(&g, "tokenizer.ggml.bos_token_id", &id, &e) == 0 && id == v.bos_id);
    CHECK(gguf_get_int(&g, "tokenizer.ggml.eos_token_id", &id, &e) == 0 && id == v.eos_id);
    bool flag;
    CHECK(gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &flag, &e) == 0 && flag);
    CHECK(gguf_get_bool(&g, "tokenizer.ggml.add_eos_token", &flag, &e) == 0 && !flag);
    gguf_close(&g);

    // tokenizer.json: structure, the split regex the encoder uses, vocab/merges/added tokens
    json_error_t je;
    json_t *root = json_load_file(j1, 0, &je);
    REQUIREF(root, "%s", je.text);
    json_t *model = json_object_get(root, "model");
    CHECK_EQ_STR(json_string_value(json_object_get(model, "type")), "BPE");
    CHECK_EQ_INT(json_object_size(json_object_get(model, "vocab")), v.first_special);
    CHECK_EQ_INT(json_array_size(json_object_get(model, "merges")), v.n_merges);
    sp.len = 0;
    gpt2_spell(" the", 4, &sp);
    json_t *the = json_object_get(json_object_get(model, "vocab"), sp.data);
    CHECK(the && json_integer_value(the) >= 256);
    json_t *added = json_object_get(root, "added_tokens");
    CHECK_EQ_INT(json_array_size(added), N_SPECIALS);
    for (size_t k = 0; k < json_array_size(added) && k < N_SPECIALS; k++) {
        json_t *a = json_array_get(added, k);
        CHECK_EQ_INT(json_integer_value(json_object_get(a, "id")), v.first_special + k);
        CHECK_EQ_STR(json_string_value(json_object_get(a, "content")), SPECIALS[k]);
        CHECK(json_is_true(json_object_get(a, "special")));
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    CHECK_EQ_STR(json_string_value(json_object_get(pre, "type")), "Sequence");
    json_t *split = json_array_get(json_object_get(pre, "pretokenizers"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex")),
                 tokenizer_regex_preset(BPE_TRAIN_PRE)[0]);
    CHECK_EQ_STR(json_string_value(json_object_get(split, "behavior")), "Isolated");
    json_t *bl = json_array_get(json_object_get(pre, "pretokenizers"), 1);
    CHECK_EQ_STR(json_string_value(json_object_get(bl, "type")), "ByteLevel");
    CHECK(json_is_false(json_object_get(bl, "use_regex")));
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(root, "decoder"), "type")), "ByteLevel");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(root, "post_processor"), "type")), "TemplateProcessing");
    json_decref(root);
    buf_free(&sp);
    bpe_vocab_free(&v);
    free(text);
}

TEST(tokenizer_writers_reject_what_they_cannot_express) {
    // a sentencepiece-kind tokenizer has no byte-level tokenizer.json form
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_SPM);
    Err e;
    REQUIRE(tokenizer_add_token(t, "<unk>", 5, 0, TOKEN_UNKNOWN, &e) == 0);
    REQUIRE(tokenizer_add_token(t, "a", 1, -1, TOKEN_NORMAL, &e) == 1);
    REQUIRE(tokenizer_add_token(t, "b", 1, -2, TOKEN_NORMAL, &e) == 2);
    REQUIRE(tokenizer_add_token(t, "ab", 2, -3, TOKEN_NORMAL, &e) == 3);
    REQUIRE(tokenizer_finalize(t, &e) == 0);
    Buf b;
    buf_init(&b);
    CHECK(tokenizer_hf_json_dump(t, &b, &e) == -1 && strstr(e.msg, "byte-level"));
    // but its GGUF keys are fine (scores included)
    GGUFWriter *w = gguf_writer_new();
    CHECK(tokenizer_gguf_set_keys(w, t, &e) == 0);
    gguf_writer_free(w);
    tokenizer_free(t);
    // a byte-level tokenizer with a template GGUF cannot say ([EOS] text)
    t = tokenizer_new(TOKENIZER_BPE_BYTES);
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        REQUIRE(tokenizer_add_token(t, &c, 1, 0, TOKEN_NORMAL, &e) == i);
    }
    int32_t eos = tokenizer_add_token(t, "<|e|>", 5, 0, TOKEN_CONTROL, &e);
    tokenizer_set_special_id(t, TOKEN_ID_EOS, eos);
    tokenizer_set_template(t, &eos, 1, NULL, 0);
    REQUIRE(tokenizer_finalize(t, &e) == 0);
    w = gguf_writer_new();
    CHECK(tokenizer_gguf_set_keys(w, t, &e) == -1 && strstr(e.msg, "template"));
    gguf_writer_free(w);
    // while tokenizer.json can (TemplateProcessing with <|e|> first)
    b.len = 0;
    REQUIREF(tokenizer_hf_json_dump(t, &b, &e) == 0, "%s", e.msg);
    CHECK(strstr(b.data, "\"TemplateProcessing\"") && strstr(b.data, "<|e|>"));
    buf_free(&b);
    tokenizer_free(t);
}

// Encode text with a tokenizer; REQUIREs success through the caller's CHECK.
static bool encode_all(const Tokenizer *t, const char *text, size_t len, int mode, TokenIds *out) {
    Err e;
    out->n = 0;
    return tokenizer_encode(t, text, len, mode, out, &e) == 0;
}

TEST(tokenizer_written_files_load_back_identically) {
    size_t len, hlen;
    char *text = tt_shakespeare(0, 200000, &len);
    char *held = tt_shakespeare(1115394 - 20000, 20000, &hlen);
    REQUIRE(text && held);
    char gpath[512], jpath[512];
    REQUIRE(write_both(text, len, "rt", gpath, jpath, sizeof gpath) == 0);
    BpeVocab v;
    REQUIRE(train_text(text, len, 256 + 500 + N_SPECIALS, 2, 2, &v) == 0);
    Tokenizer *mem, *fromg = NULL, *fromj = NULL;
    Err e;
    REQUIREF(bpe_vocab_to_tokenizer(&v, true, &mem, &e) == 0, "%s", e.msg);
    CHECKF(tokenizer_load(gpath, &fromg, &e) == 0, "load gguf: %s", e.msg);
    CHECKF(tokenizer_load(jpath, &fromj, &e) == 0, "load json: %s", e.msg);
    REQUIRE(fromg && fromj);
    CHECK_EQ_INT(tokenizer_vocab_size(fromg), v.n_tokens);
    CHECK_EQ_INT(tokenizer_vocab_size(fromj), v.n_tokens);
    CHECK_EQ_INT(tokenizer_n_merges(fromg), v.n_merges);
    CHECK_EQ_INT(tokenizer_n_merges(fromj), v.n_merges);
    // held-out text plus special tokens and odd bytes, in every mode
    Buf probe;
    buf_init(&probe);
    buf_append(&probe, held, hlen);
    buf_append_str(&probe, "<|user|>What's 12345 + 6?<|end|>\r\n\t  tabs\xc3\xa9t\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80 \xff<|endoftext|>");
    const Tokenizer *all[3] = {mem, fromg, fromj};
    const char *names[3] = {"memory", "gguf", "json"};
    int modes[3] = {0, TOKENIZE_ORDINARY, TOKENIZE_ADD_SPECIAL};
    TokenIds ref = {0}, ids = {0};
    for (int m = 0; m < 3; m++) {
        REQUIRE(encode_all(mem, probe.data, probe.len, modes[m], &ref));
        for (int k = 1; k < 3; k++) {
            REQUIRE(encode_all(all[k], probe.data, probe.len, modes[m], &ids));
            bool same = ids.n == ref.n && memcmp(ids.ids, ref.ids, ids.n * sizeof *ids.ids) == 0;
            CHECKF(same, "mode %d: %s-loaded tokenizer gives %zu ids, the trained one %zu", modes[m], names[k], ids.n, ref.n);
            Buf out;
            buf_init(&out);
            CHECK(tokenizer_decode(all[k], ids.ids, ids.n, 0, &out, &e) == 0);
            if (modes[m] != TOKENIZE_ADD_SPECIAL) CHECK(out.len == probe.len && memcmp(out.data, probe.data, out.len) == 0);
            buf_free(&out);
        }
        if (modes[m] == TOKENIZE_ADD_SPECIAL) CHECK(ref.n && ref.ids[0] == v.bos_id);
    }
    for (int k = 0; k < 3; k++) {
        CHECK_EQ_INT(tokenizer_special_id(all[k], TOKEN_ID_BOS), v.bos_id);
        CHECK_EQ_INT(tokenizer_special_id(all[k], TOKEN_ID_EOS), v.eos_id);
        for (size_t i = v.first_special; i < v.n_tokens; i++) CHECK(tokenizer_is_control(all[k], (int32_t)i));
    }
    token_ids_free(&ref);
    token_ids_free(&ids);
    buf_free(&probe);
    tokenizer_free(mem);
    tokenizer_free(fromg);
    tokenizer_free(fromj);
    bpe_vocab_free(&v);
    free(text);
    free(held);
}

TEST(tokenizer_writers_round_trip_a_loaded_vocabulary) {
    // a real byte-level vocabulary (GPT-2, loaded by llama.cpp's vocab GGUF) written back out keeps encoding the same
    const char *p = fixture_path("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    REQUIRE(p);
    Tokenizer *orig;
    Err e;
    REQUIREF(tokenizer_load(p, &orig, &e) == 0, "%s", e.msg);
    char gpath[512], jpath[512];
    snprintf(gpath, sizeof gpath, "%s/gpt2-copy.gguf", test_tmpdir());
    snprintf(jpath, sizeof jpath, "%s/gpt2-copy.json", test_tmpdir());
    CHECKF(tokenizer_write_gguf(orig, gpath, "gpt-2", &e) == 0, "%s", e.msg);
    CHECKF(tokenizer_write_hf_json(orig, jpath, &e) == 0, "%s", e.msg);
    Tokenizer *g = NULL, *j = NULL;
    CHECKF(tokenizer_load(gpath, &g, &e) == 0, "%s", e.msg);
    CHECKF(tokenizer_load(jpath, &j, &e) == 0, "%s", e.msg);
    REQUIRE(g && j);
    size_t hlen;
    char *held = tt_shakespeare(1115394 - 8000, 8000, &hlen);
    REQUIRE(held);
    TokenIds a = {0}, b = {0}, c = {0};
    REQUIRE(encode_all(orig, held, hlen, 0, &a));
    REQUIRE(encode_all(g, held, hlen, 0, &b));
    REQUIRE(encode_all(j, held, hlen, 0, &c));
    CHECK(a.n == b.n && memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0);
    CHECK(a.n == c.n && memcmp(a.ids, c.ids, a.n * sizeof *a.ids) == 0);
    token_ids_free(&a);
    token_ids_free(&b);
    token_ids_free(&c);
    free(held);
    tokenizer_free(orig);
    tokenizer_free(g);
    tokenizer_free(j);
}
