// tokenizer.c — the Tokenizer's builder, lookup tables, finalize step, accessors and decoder.
//
// Loaders fill a Tokenizer through the builder (tokens, merges, options, normalizer and pre-tokenizer steps);
// tokenizer_finalize() then builds what encode.c needs: the pair table ((left, right) -> rank, result) either from
// the merges list or, for score-based vocabularies (sentencepiece, llama2.c, tiktoken), from every split of every
// token into two tokens; the byte tables; the added-token tries; and the compiled PCRE2 regexes.
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

// ---------------------------------------------------------------------------------------------------------------
// small helpers

void token_ids_push(TokenIds *v, int32_t id) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        v->ids = xrealloc(v->ids, nc * sizeof *v->ids);
        v->cap = nc;
    }
    v->ids[v->n++] = id;
}

void token_ids_free(TokenIds *v) {
    free(v->ids);
    memset(v, 0, sizeof *v);
}

size_t tok_utf8_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    size_t len;
    uint32_t min;
    if (c < 0x80) return 1;
    else if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
    else return 1;
    if (len > n) return 1;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 1;
    return len;
}

// Decode one valid UTF-8 character (caller checked with tok_utf8_len > 1 or ASCII).
static uint32_t utf8_cp(const uint8_t *s, size_t len) {
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

static bool cp_is_whitespace(uint32_t c) {
    // Unicode White_Space (what Rust's char::is_whitespace uses)
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t tok_whitespace_len(const uint8_t *s, size_t n) {
    size_t l = tok_utf8_len(s, n);
    if (l == 0) return 0;
    if (l == 1 && s[0] >= 0x80) return 0;
    return cp_is_whitespace(utf8_cp(s, l)) ? l : 0;
}

static bool utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t l = tok_utf8_len(s + i, n - i);
        if (l == 1 && s[i] >= 0x80) return false;
        i += l;
    }
    return true;
}

// ---------------------------------------------------------------------------------------------------------------
// GPT-2 byte <-> unicode table: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in order.

static uint16_t g_byte_to_cp[256];
static int16_t g_cp_to_byte[512]; // codepoints used are < 0x144
static pthread_once_t g_bytelevel_once = PTHREAD_ONCE_INIT;

static void bytelevel_init(void) {
    for (int i = 0; i < 512; i++) g_cp_to_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint16_t cp = printable ? (uint16_t)b : (uint16_t)(256 + n++);
        g_byte_to_cp[b] = cp;
        g_cp_to_byte[cp] = (int16_t)b;
    }
}

int tokenizer_bytelevel_to_bytes(const char *s, size_t n, Buf *out) {
    pthread_once(&g_bytelevel_once, bytelevel_init);
    const uint8_t *p = (const uint8_t *)s;
    size_t start = out->len;
    for (size_t i = 0; i < n;) {
        size_t l = tok_utf8_len(p + i, n - i);
        if (l == 1 && p[i] >= 0x80) goto fail;
        uint32_t cp = utf8_cp(p + i, l);
        if (cp >= 512 || g_cp_to_byte[cp] < 0) goto fail;
        uint8_t b = (uint8_t)g_cp_to_byte[cp];
        buf_append(out, &b, 1);
        i += l;
    }
    return 0;
fail:
    out->len = start;
    if (out->data) out->data[start] = 0;
    return -1;
}

void tokenizer_bytelevel_from_bytes(const void *bytes, size_t n, Buf *out) {
    pthread_once(&g_bytelevel_once, bytelevel_init);
    const uint8_t *p = bytes;
    for (size_t i = 0; i < n; i++) {
        uint16_t cp = g_byte_to_cp[p[i]];
        uint8_t u[2];
        if (cp < 0x80) {
            u[0] = (uint8_t)cp;
            buf_append(out, u, 1);
        } else {
            u[0] = (uint8_t)(0xC0 | (cp >> 6));
            u[1] = (uint8_t)(0x80 | (cp & 0x3F));
            buf_append(out, u, 2);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// split regex presets

static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_CL100K[] = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|"
                                "\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";
static const char RE_O200K[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_TEKKEN[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_GPT2_NOTAIL[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

typedef struct Preset {
    const char *names[6];
    const char *regex[5];
} Preset;

static const Preset PRESETS[] = {
    {{"gpt2", "gpt-2", "r50k_base", "p50k_base", "p50k_edit", "mpt"}, {RE_GPT2, NULL}},
    {{"olmo", "jais", "phi-2", "roberta-bpe", NULL}, {RE_GPT2, NULL}},
    {{"llama3", "llama-bpe", "llama-v3", "falcon3", "dbrx", "smaug-bpe"}, {RE_LLAMA3, NULL}},
    {{"chatglm-bpe", NULL}, {RE_LLAMA3, NULL}},
    {{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", NULL}, {RE_QWEN2, NULL}},
    {{"cl100k_base", "cl100k", NULL}, {RE_CL100K, NULL}},
    {{"o200k_base", "o200k", NULL}, {RE_O200K, NULL}},
    {{"tekken", NULL}, {RE_TEKKEN, NULL}},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone"}, {"\\p{N}", RE_GPT2_NOTAIL, NULL}},
    {{"minerva-7b", NULL}, {"\\p{N}", RE_GPT2_NOTAIL, NULL}},
    {{"falcon", NULL}, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2_NOTAIL, "[0-9][0-9][0-9]", NULL}},
    {{"default", NULL}, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2_NOTAIL, "\\p{N}+", "[0-9][0-9][0-9]", NULL}},
};

const char *const *tokenizer_regex_preset(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        for (size_t j = 0; j < 6 && PRESETS[i].names[j]; j++)
            if (strcmp(PRESETS[i].names[j], name) == 0) return PRESETS[i].regex;
    return NULL;
}

// ---------------------------------------------------------------------------------------------------------------
// builder

Tokenizer *tokenizer_new(TokenizerKind kind) {
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->kind = kind;
    for (int i = 0; i < TOKEN_ROLE_COUNT; i++) t->role[i] = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

static void trie_free(Trie *tr) {
    free(tr->nodes);
    memset(tr, 0, sizeof *tr);
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->tok);
    free(t->arena);
    free(t->vhash);
    free(t->merges);
    free(t->pairs);
    free(t->prefix);
    free(t->suffix);
    free(t->model_name);
    free(t->pre_name);
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
        if (t->norm[i].re) pcre2_code_free(t->norm[i].re);
    }
    free(t->norm);
    for (size_t i = 0; i < t->n_pre; i++) {
        free(t->pre[i].pattern);
        free(t->pre[i].repl);
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    }
    free(t->pre);
    trie_free(&t->trie_all);
    trie_free(&t->trie_user);
    free(t);
}

static const char *tok_ptr(const Tokenizer *t, int32_t id) { return t->arena + t->tok[id].off; }

static void vhash_insert(Tokenizer *t, int32_t id);

static void vhash_rebuild(Tokenizer *t, size_t cap) {
    free(t->vhash);
    t->vhash_cap = cap;
    t->vhash = xmalloc(cap * sizeof *t->vhash);
    memset(t->vhash, 0xff, cap * sizeof *t->vhash);
    t->vhash_n = 0;
    for (size_t i = 0; i < t->n_tok; i++)
        if (t->tok[i].flags & TOKF_SET) vhash_insert(t, (int32_t)i);
}

// Insert id; an existing entry with the same bytes is replaced (the last id set wins).
static void vhash_insert(Tokenizer *t, int32_t id) {
    if ((t->vhash_n + 1) * 2 > t->vhash_cap) {
        vhash_rebuild(t, t->vhash_cap ? t->vhash_cap * 2 : 1024);
        // the rebuild re-inserted id if it was already set; fall through to make sure
    }
    const TokEntry *te = &t->tok[id];
    const char *p = tok_ptr(t, id);
    size_t mask = t->vhash_cap - 1;
    size_t i = (size_t)tok_hash_bytes(p, te->len) & mask;
    for (;;) {
        int32_t cur = t->vhash[i];
        if (cur < 0) {
            t->vhash[i] = id;
            t->vhash_n++;
            return;
        }
        if (cur == id) return;
        const TokEntry *ce = &t->tok[cur];
        if (ce->len == te->len && memcmp(tok_ptr(t, cur), p, te->len) == 0) {
            t->vhash[i] = id;
            return;
        }
        i = (i + 1) & mask;
    }
}

int32_t tokenizer_find(const Tokenizer *t, const void *bytes, size_t len) {
    if (!t->vhash_cap) return -1;
    size_t mask = t->vhash_cap - 1;
    size_t i = (size_t)tok_hash_bytes(bytes, len) & mask;
    for (;;) {
        int32_t cur = t->vhash[i];
        if (cur < 0) return -1;
        const TokEntry *ce = &t->tok[cur];
        if (ce->len == len && memcmp(tok_ptr(t, cur), bytes, len) == 0) return cur;
        i = (i + 1) & mask;
    }
}

static int check_building(const Tokenizer *t, Err *e) {
    if (t->finalized) return ERR(e, "tokenizer: cannot change a finalized tokenizer");
    return 0;
}

static size_t arena_put(Tokenizer *t, const void *bytes, size_t len) {
    if (t->arena_len + len + 1 > t->arena_cap) {
        size_t nc = t->arena_cap ? t->arena_cap : 4096;
        while (nc < t->arena_len + len + 1) nc *= 2;
        t->arena = xrealloc(t->arena, nc);
        t->arena_cap = nc;
    }
    size_t off = t->arena_len;
    if (len) memcpy(t->arena + off, bytes, len);
    t->arena[off + len] = 0;
    t->arena_len += len + 1;
    return off;
}

static bool type_valid(int type) { return type >= TOKEN_NORMAL && type <= TOKEN_BYTE; }

int tokenizer_set_token(Tokenizer *t, int32_t id, const void *bytes, size_t len, float score, TokenType type, Err *e) {
    if (check_building(t, e)) return -1;
    if (id < 0 || id >= TOKENIZER_MAX_VOCAB) return ERR(e, "token id %" PRId32 " out of range (max %d)", id, TOKENIZER_MAX_VOCAB - 1);
    if (len > UINT32_MAX / 2) return ERR(e, "token %" PRId32 " is too long (%zu bytes)", id, len);
    if (!type_valid(type)) return ERR(e, "token %" PRId32 ": invalid token type %d", id, (int)type);
    if ((size_t)id >= t->n_tok) {
        if ((size_t)id >= t->cap_tok) {
            size_t nc = t->cap_tok ? t->cap_tok : 1024;
            while (nc <= (size_t)id) nc *= 2;
            t->tok = xrealloc(t->tok, nc * sizeof *t->tok);
            t->cap_tok = nc;
        }
        for (size_t i = t->n_tok; i <= (size_t)id; i++) {
            memset(&t->tok[i], 0, sizeof t->tok[i]);
            t->tok[i].type = TOKEN_UNUSED;
        }
        t->n_tok = (size_t)id + 1;
    }
    TokEntry *te = &t->tok[id];
    bool replacing = (te->flags & TOKF_SET) != 0;
    bool same = replacing && te->len == len && memcmp(tok_ptr(t, id), bytes, len) == 0;
    if (!same) {
        te->off = arena_put(t, bytes, len);
        te->len = (uint32_t)len;
    }
    te->score = score;
    te->type = (uint8_t)type;
    te->flags |= TOKF_SET;
    if (replacing && !same) vhash_rebuild(t, t->vhash_cap ? t->vhash_cap : 1024);
    else vhash_insert(t, id);
    return 0;
}

int32_t tokenizer_add_token(Tokenizer *t, const void *bytes, size_t len, float score, TokenType type, Err *e) {
    if (t->n_tok >= TOKENIZER_MAX_VOCAB) return ERR(e, "too many tokens (max %d)", TOKENIZER_MAX_VOCAB);
    int32_t id = (int32_t)t->n_tok;
    if (tokenizer_set_token(t, id, bytes, len, score, type, e)) return -1;
    return id;
}

static int check_id(const Tokenizer *t, int32_t id, Err *e) {
    if (id < 0 || (size_t)id >= t->n_tok || !(t->tok[id].flags & TOKF_SET))
        return ERR(e, "token id %" PRId32 " out of range (vocabulary has %zu tokens)", id, t->n_tok);
    return 0;
}

int tokenizer_set_token_type(Tokenizer *t, int32_t id, TokenType type, Err *e) {
    if (check_building(t, e) || check_id(t, id, e)) return -1;
    if (!type_valid(type)) return ERR(e, "token %" PRId32 ": invalid token type %d", id, (int)type);
    t->tok[id].type = (uint8_t)type;
    return 0;
}

int tokenizer_set_token_strip(Tokenizer *t, int32_t id, bool lstrip, bool rstrip, Err *e) {
    if (check_building(t, e) || check_id(t, id, e)) return -1;
    t->tok[id].flags = (uint8_t)((t->tok[id].flags & ~(TOKF_LSTRIP | TOKF_RSTRIP)) | (lstrip ? TOKF_LSTRIP : 0) |
                                 (rstrip ? TOKF_RSTRIP : 0));
    return 0;
}

// A printable rendering of a piece for error messages.
static void piece_desc(const void *p, size_t n, char *out, size_t cap) {
    const uint8_t *s = p;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') out[o++] = (char)s[i];
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", s[i]);
    }
    out[o < cap ? o : cap - 1] = 0;
}

int tokenizer_add_merge(Tokenizer *t, int32_t left, int32_t right, Err *e) {
    if (check_building(t, e)) return -1;
    if (check_id(t, left, e) || check_id(t, right, e)) return err_prefix(e, "merge %zu: ", t->n_merges);
    size_t ll = t->tok[left].len, rl = t->tok[right].len;
    char stack[256];
    char *cat = ll + rl <= sizeof stack ? stack : xmalloc(ll + rl);
    memcpy(cat, tok_ptr(t, left), ll);
    memcpy(cat + ll, tok_ptr(t, right), rl);
    int32_t res = tokenizer_find(t, cat, ll + rl);
    if (res < 0) {
        char d[128];
        piece_desc(cat, ll + rl, d, sizeof d);
        if (cat != stack) free(cat);
        return ERR(e, "merge %zu (%" PRId32 " + %" PRId32 "): the merged token '%s' is not in the vocabulary", t->n_merges,
                   left, right, d);
    }
    if (cat != stack) free(cat);
    if (t->n_merges == t->cap_merges) {
        size_t nc = t->cap_merges ? t->cap_merges * 2 : 1024;
        t->merges = xrealloc(t->merges, nc * sizeof *t->merges);
        t->cap_merges = nc;
    }
    t->merges[t->n_merges][0] = left;
    t->merges[t->n_merges][1] = right;
    t->merges[t->n_merges][2] = res;
    t->n_merges++;
    return 0;
}

int tokenizer_add_merge_str(Tokenizer *t, const void *left, size_t llen, const void *right, size_t rlen, Err *e) {
    if (check_building(t, e)) return -1;
    int32_t l = tokenizer_find(t, left, llen), r = tokenizer_find(t, right, rlen);
    if (l < 0 || r < 0) {
        char d[128];
        piece_desc(l < 0 ? left : right, l < 0 ? llen : rlen, d, sizeof d);
        return ERR(e, "merge %zu: token '%s' is not in the vocabulary", t->n_merges, d);
    }
    return tokenizer_add_merge(t, l, r, e);
}

void tokenizer_set_special_id(Tokenizer *t, TokenRole role, int32_t id) {
    if (t->finalized || role < 0 || role >= TOKEN_ROLE_COUNT) return;
    t->role[role] = id < 0 ? -1 : id;
}
void tokenizer_set_byte_fallback(Tokenizer *t, bool on) { if (!t->finalized) t->byte_fallback = on; }
void tokenizer_set_fuse_unk(Tokenizer *t, bool on) { if (!t->finalized) t->fuse_unk = on; }
void tokenizer_set_ignore_merges(Tokenizer *t, bool on) { if (!t->finalized) t->ignore_merges = on; }
void tokenizer_set_parse_special(Tokenizer *t, bool on) { if (!t->finalized) t->no_parse_special = !on; }

void tokenizer_set_template(Tokenizer *t, const int32_t *prefix, size_t n_prefix, const int32_t *suffix, size_t n_suffix) {
    if (t->finalized) return;
    free(t->prefix);
    free(t->suffix);
    t->prefix = n_prefix ? xmalloc(n_prefix * sizeof *prefix) : NULL;
    t->suffix = n_suffix ? xmalloc(n_suffix * sizeof *suffix) : NULL;
    if (n_prefix) memcpy(t->prefix, prefix, n_prefix * sizeof *prefix);
    if (n_suffix) memcpy(t->suffix, suffix, n_suffix * sizeof *suffix);
    t->n_prefix = n_prefix;
    t->n_suffix = n_suffix;
    t->template_set = true;
}

void tokenizer_set_add_bos_eos(Tokenizer *t, bool add_bos, bool add_eos) {
    if (t->finalized) return;
    t->add_bos = add_bos;
    t->add_eos = add_eos;
    t->bos_eos_set = true;
    t->template_set = false;
}

void tokenizer_set_decoder(Tokenizer *t, int flags) {
    if (t->finalized) return;
    t->decoder = flags;
    t->decoder_set = true;
}

void tokenizer_set_model_name(Tokenizer *t, const char *name) {
    if (t->finalized) return;
    free(t->model_name);
    t->model_name = name ? xstrdup(name) : NULL;
}
void tokenizer_set_pre_name(Tokenizer *t, const char *name) {
    if (t->finalized) return;
    free(t->pre_name);
    t->pre_name = name ? xstrdup(name) : NULL;
}

static NormStep *norm_push(Tokenizer *t, int kind) {
    t->norm = xrealloc(t->norm, (t->n_norm + 1) * sizeof *t->norm);
    NormStep *s = &t->norm[t->n_norm++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

void tokenizer_add_norm_prepend(Tokenizer *t, const char *s, size_t n) {
    if (t->finalized) return;
    NormStep *st = norm_push(t, NORM_PREPEND);
    st->a = xstrndup(s, n);
    st->alen = n;
}

void tokenizer_add_norm_replace(Tokenizer *t, const char *pattern, size_t plen, const char *content, size_t clen) {
    if (t->finalized || plen == 0) return;
    NormStep *st = norm_push(t, NORM_REPLACE);
    st->a = xstrndup(pattern, plen);
    st->alen = plen;
    st->b = xstrndup(content, clen);
    st->blen = clen;
}

int tokenizer_add_norm_replace_regex(Tokenizer *t, const char *pattern, const char *content, size_t clen, Err *e) {
    if (check_building(t, e)) return -1;
    NormStep *st = norm_push(t, NORM_REPLACE_REGEX);
    st->a = xstrdup(pattern);
    st->alen = strlen(pattern);
    st->b = xstrndup(content, clen);
    st->blen = clen;
    return 0;
}

void tokenizer_add_norm_unicode(Tokenizer *t, TokUnicodeForm form) {
    if (t->finalized) return;
    norm_push(t, NORM_UNICODE)->form = form;
}
void tokenizer_add_norm_lowercase(Tokenizer *t) {
    if (!t->finalized) norm_push(t, NORM_LOWERCASE);
}
void tokenizer_add_norm_strip(Tokenizer *t, bool left, bool right) {
    if (t->finalized) return;
    NormStep *st = norm_push(t, NORM_STRIP);
    st->left = left;
    st->right = right;
}

static PreStep *pre_push(Tokenizer *t, int kind) {
    t->pre = xrealloc(t->pre, (t->n_pre + 1) * sizeof *t->pre);
    PreStep *s = &t->pre[t->n_pre++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

int tokenizer_add_pretok_split(Tokenizer *t, const char *pattern, size_t plen, bool is_regex, TokSplitBehavior behavior,
                               bool invert, Err *e) {
    if (check_building(t, e)) return -1;
    if (behavior < TOKSPLIT_ISOLATED || behavior > TOKSPLIT_CONTIGUOUS) return ERR(e, "invalid split behavior %d", (int)behavior);
    if (plen == 0) return ERR(e, "empty split pattern");
    PreStep *s = pre_push(t, PRE_SPLIT);
    s->pattern = xstrndup(pattern, plen);
    s->plen = plen;
    s->is_regex = is_regex;
    s->behavior = behavior;
    s->invert = invert;
    return 0;
}

int tokenizer_add_pretok_preset(Tokenizer *t, const char *name, Err *e) {
    const char *const *re = tokenizer_regex_preset(name);
    if (!re) return ERR(e, "unknown pre-tokenizer '%s'", name ? name : "(null)");
    for (size_t i = 0; re[i]; i++)
        if (tokenizer_add_pretok_split(t, re[i], strlen(re[i]), true, TOKSPLIT_ISOLATED, false, e)) return -1;
    return 0;
}

void tokenizer_add_pretok_bytelevel(Tokenizer *t, bool add_prefix_space, bool use_regex) {
    if (t->finalized) return;
    PreStep *s = pre_push(t, PRE_BYTELEVEL);
    s->add_prefix_space = add_prefix_space;
    s->use_regex = use_regex;
    if (use_regex) {
        s->pattern = xstrdup(RE_GPT2);
        s->plen = strlen(RE_GPT2);
        s->is_regex = true;
    }
}

void tokenizer_add_pretok_metaspace(Tokenizer *t, const char *replacement, size_t rlen, TokPrependScheme scheme, bool split) {
    if (t->finalized) return;
    PreStep *s = pre_push(t, PRE_METASPACE);
    if (!replacement || rlen == 0) replacement = "\xe2\x96\x81", rlen = 3;
    s->repl = xstrndup(replacement, rlen);
    s->rlen = rlen;
    s->scheme = scheme;
    s->split = split;
}

void tokenizer_add_pretok_digits(Tokenizer *t, bool individual) {
    if (t->finalized) return;
    PreStep *s = pre_push(t, PRE_DIGITS);
    s->individual = individual;
    const char *re = individual ? "[0-9]" : "[0-9]+";
    s->pattern = xstrdup(re);
    s->plen = strlen(re);
    s->is_regex = true;
}

// ---------------------------------------------------------------------------------------------------------------
// finalize

static void trie_init(Trie *tr) {
    memset(tr, 0, sizeof *tr);
    tr->cap = 64;
    tr->nodes = xmalloc(tr->cap * sizeof *tr->nodes);
    tr->nodes[0] = (TrieNode){-1, -1, -1, 0};
    tr->n = 1;
}

static void trie_add(Trie *tr, const uint8_t *s, size_t n, int32_t id) {
    if (n == 0) return;
    tr->first[s[0] >> 3] |= (uint8_t)(1u << (s[0] & 7));
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->nodes[node].child;
        while (c >= 0 && tr->nodes[c].byte != s[i]) c = tr->nodes[c].sibling;
        if (c < 0) {
            if (tr->n == tr->cap) {
                tr->cap *= 2;
                tr->nodes = xrealloc(tr->nodes, tr->cap * sizeof *tr->nodes);
            }
            c = (int32_t)tr->n++;
            tr->nodes[c] = (TrieNode){-1, tr->nodes[node].child, -1, s[i]};
            tr->nodes[node].child = c;
        }
        node = c;
    }
    tr->nodes[node].token = id; // the last id with a spelling wins, as in the vocabulary hash
}

int32_t tok_trie_match(const Trie *tr, const uint8_t *s, size_t n, size_t *mlen) {
    int32_t best = -1;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->nodes[node].child;
        while (c >= 0 && tr->nodes[c].byte != s[i]) c = tr->nodes[c].sibling;
        if (c < 0) break;
        node = c;
        if (tr->nodes[node].token >= 0) {
            best = tr->nodes[node].token;
            *mlen = i + 1;
        }
    }
    return best;
}

static void pairs_put(Tokenizer *t, int32_t l, int32_t r, uint32_t rank, int32_t result, bool overwrite) {
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t mask = t->pairs_cap - 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    for (;;) {
        PairSlot *s = &t->pairs[i];
        if (s->rank == PAIR_NONE) {
            *s = (PairSlot){key, rank, result};
            return;
        }
        if (s->key == key) {
            if (overwrite) s->rank = rank, s->result = result;
            return;
        }
        i = (i + 1) & mask;
    }
}

static void pairs_alloc(Tokenizer *t, size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 2) cap *= 2;
    t->pairs = xmalloc(cap * sizeof *t->pairs);
    for (size_t i = 0; i < cap; i++) t->pairs[i].rank = PAIR_NONE;
    t->pairs_cap = cap;
}

// Types a merge (or a whole-word lookup) may produce.
static bool type_mergeable(uint8_t type) { return type == TOKEN_NORMAL || type == TOKEN_USER_DEFINED; }

typedef struct ScoreCand {
    float score;
    int32_t l, r, result;
} ScoreCand;

static int cmp_cand(const void *a, const void *b) {
    const ScoreCand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->result > y->result) - (x->result < y->result);
}

static void build_pairs_from_scores(Tokenizer *t) {
    ScoreCand *c = NULL;
    size_t n = 0, cap = 0;
    for (size_t id = 0; id < t->n_tok; id++) {
        const TokEntry *te = &t->tok[id];
        if (!(te->flags & TOKF_SET) || !type_mergeable(te->type) || te->len < 2) continue;
        const uint8_t *p = (const uint8_t *)tok_ptr(t, (int32_t)id);
        for (size_t k = 1; k < te->len; k++) {
            // sentencepiece symbols are whole characters: only split at character boundaries
            if (t->kind == TOKENIZER_BPE_SPM && (p[k] & 0xC0) == 0x80) continue;
            int32_t l = tokenizer_find(t, p, k);
            if (l < 0) continue;
            int32_t r = tokenizer_find(t, p + k, te->len - k);
            if (r < 0) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 4096;
                c = xrealloc(c, cap * sizeof *c);
            }
            c[n++] = (ScoreCand){te->score, l, r, (int32_t)id};
        }
    }
    if (n) qsort(c, n, sizeof *c, cmp_cand); // c is NULL when there are no candidates (UB for qsort)
    pairs_alloc(t, n);
    uint32_t rank = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && c[i].score != c[i - 1].score) rank++;
        pairs_put(t, c[i].l, c[i].r, rank, c[i].result, false);
    }
    free(c);
}

// PCRE2's Unicode \s also matches U+180E, which left Unicode's White_Space in 6.3; the reference engines
// (Oniguruma in Hugging Face tokenizers, Rust regex in tiktoken) follow White_Space. So \s and \S are rewritten to
// the explicit White_Space set before compiling ("\S" inside a class is left alone: no published pattern uses it).
#define WS_SET "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static void rewrite_ws(const char *p, size_t n, Buf *o) {
    bool in_class = false;
    size_t class_start = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 'Q') { // \Q...\E: copied verbatim
                const char *end = NULL;
                for (size_t k = i + 2; k + 1 < n; k++)
                    if (p[k] == '\\' && p[k + 1] == 'E') { end = p + k; break; }
                size_t stop = end ? (size_t)(end - p) + 2 : n;
                buf_append(o, p + i, stop - i);
                i = stop - 1;
                continue;
            }
            if (d == 's') buf_append_str(o, in_class ? WS_SET : "[" WS_SET "]");
            else if (d == 'S' && !in_class) buf_append_str(o, "[^" WS_SET "]");
            else buf_append(o, p + i, 2);
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            buf_append(o, &c, 1);
            if (i + 1 < n && p[i + 1] == '^') buf_append(o, "^", 1), i++;
            class_start = i + 1;
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { // POSIX class [:name:]
            size_t k = i + 2;
            while (k + 1 < n && !(p[k] == ':' && p[k + 1] == ']')) k++;
            size_t stop = k + 1 < n ? k + 2 : n;
            buf_append(o, p + i, stop - i);
            i = stop - 1;
            continue;
        }
        if (in_class && c == ']' && i != class_start) in_class = false;
        buf_append(o, &c, 1);
    }
}

static int compile_regex(const char *pattern, size_t plen, bool literal, pcre2_code **out, const char *what, Err *e) {
    int errcode;
    PCRE2_SIZE erroff;
    Buf rw;
    buf_init(&rw);
    if (!literal) {
        rewrite_ws(pattern, plen, &rw);
        pattern = rw.data ? rw.data : "";
        plen = rw.len;
    }
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, plen, opts, &errcode, &erroff, NULL);
    buf_free(&rw);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return ERR(e, "%s: bad regex at offset %zu: %s", what, (size_t)erroff, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // best effort: the interpreter gives the same results
    *out = re;
    return 0;
}

static const char *const EOT_SPELLINGS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                            "<EOT>", NULL};

int tokenizer_finalize(Tokenizer *t, Err *e) {
    if (check_building(t, e)) return -1;
    if (t->n_tok == 0) return ERR(e, "tokenizer has no tokens");
    static const char *role_names[TOKEN_ROLE_COUNT] = {"BOS", "EOS", "UNK", "PAD", "SEP", "MASK", "EOT", "EOM"};
    for (int r = 0; r < TOKEN_ROLE_COUNT; r++)
        if (t->role[r] >= 0 && check_id(t, t->role[r], e)) return err_prefix(e, "%s token: ", role_names[r]);

    if (t->role[TOKEN_ID_EOT] < 0) {
        for (size_t i = 0; EOT_SPELLINGS[i] && t->role[TOKEN_ID_EOT] < 0; i++) {
            int32_t id = tokenizer_find(t, EOT_SPELLINGS[i], strlen(EOT_SPELLINGS[i]));
            if (id >= 0 && t->tok[id].type == TOKEN_CONTROL) t->role[TOKEN_ID_EOT] = id;
        }
    }

    if (!t->template_set && t->bos_eos_set) {
        int32_t bos = t->role[TOKEN_ID_BOS], eos = t->role[TOKEN_ID_EOS];
        if (t->add_bos && bos < 0) return ERR(e, "add_bos is set but the tokenizer has no BOS token");
        if (t->add_eos && eos < 0) return ERR(e, "add_eos is set but the tokenizer has no EOS token");
        tokenizer_set_template(t, &bos, t->add_bos ? 1 : 0, &eos, t->add_eos ? 1 : 0);
    }
    for (size_t i = 0; i < t->n_prefix; i++)
        if (check_id(t, t->prefix[i], e)) return err_prefix(e, "template prefix: ");
    for (size_t i = 0; i < t->n_suffix; i++)
        if (check_id(t, t->suffix[i], e)) return err_prefix(e, "template suffix: ");

    if (!t->decoder_set) t->decoder = t->kind == TOKENIZER_BPE_SPM ? TOKDEC_BYTE_FALLBACK : 0;

    // byte tokens spelled <0xXX>
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (size_t id = 0; id < t->n_tok; id++) {
        TokEntry *te = &t->tok[id];
        const char *p = tok_ptr(t, (int32_t)id);
        if (t->kind == TOKENIZER_BPE_BYTES) {
            if ((te->flags & TOKF_SET) && te->len == 1 && type_mergeable(te->type) && t->byte_id[(uint8_t)p[0]] < 0)
                t->byte_id[(uint8_t)p[0]] = (int32_t)id;
            continue;
        }
        if (!(te->flags & TOKF_SET) || te->len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') continue;
        const char *h1 = memchr(hex, p[3], 16), *h2 = memchr(hex, p[4], 16);
        if (!h1 || !h2 || !p[3] || !p[4]) continue;
        te->byte = (uint8_t)(((h1 - hex) << 4) | (h2 - hex));
        te->flags |= TOKF_BYTE;
        if (te->type == TOKEN_CONTROL || te->type == TOKEN_UNKNOWN || te->type == TOKEN_UNUSED) continue;
        t->byte_id[te->byte] = (int32_t)id;
    }

    // pair table
    if (t->n_merges || t->merges_only) {
        // tokens may have been replaced since the merges were added (HF added_tokens reusing ids): check again
        for (size_t i = 0; i < t->n_merges; i++) {
            int32_t l = t->merges[i][0], r = t->merges[i][1];
            size_t ll = t->tok[l].len, rl = t->tok[r].len;
            char *cat = xmalloc(ll + rl + 1);
            memcpy(cat, tok_ptr(t, l), ll);
            memcpy(cat + ll, tok_ptr(t, r), rl);
            int32_t res = tokenizer_find(t, cat, ll + rl);
            free(cat);
            if (res < 0) return ERR(e, "merge %zu (%" PRId32 " + %" PRId32 "): the merged token is no longer in the vocabulary", i, l, r);
            if (!type_mergeable(t->tok[res].type))
                return ERR(e, "merge %zu (%" PRId32 " + %" PRId32 ") would produce special token %" PRId32, i, l, r, res);
            t->merges[i][2] = res;
        }
        pairs_alloc(t, t->n_merges);
        // later duplicates overwrite earlier ones, as Hugging Face's merge map does
        for (size_t i = 0; i < t->n_merges; i++)
            pairs_put(t, t->merges[i][0], t->merges[i][1], (uint32_t)i, t->merges[i][2], true);
    } else {
        build_pairs_from_scores(t);
    }

    // Sentencepiece vocabularies (split_by_whitespace) have no piece with a "▁" after another character, so no
    // merge can cross such a point and a long segment may be merged word by word, with identical results.
    if (t->kind == TOKENIZER_BPE_SPM && !t->ignore_merges) {
        int32_t ws = tokenizer_find(t, "\xe2\x96\x81", 3);
        bool ok = ws >= 0 && type_mergeable(t->tok[ws].type);
        for (size_t id = 0; ok && id < t->n_tok; id++) {
            const TokEntry *te = &t->tok[id];
            if (!(te->flags & TOKF_SET)) continue;
            const uint8_t *p = (const uint8_t *)tok_ptr(t, (int32_t)id);
            for (size_t k = 1; ok && k + 3 <= te->len; k++)
                if (p[k] == 0xE2 && p[k + 1] == 0x96 && p[k + 2] == 0x81 &&
                    !(k >= 3 && p[k - 3] == 0xE2 && p[k - 2] == 0x96 && p[k - 1] == 0x81))
                    ok = false;
        }
        t->spm_split = ok;
    }

    // added-token tries
    trie_init(&t->trie_all);
    trie_init(&t->trie_user);
    for (size_t id = 0; id < t->n_tok; id++) {
        const TokEntry *te = &t->tok[id];
        if (!(te->flags & TOKF_SET) || te->len == 0) continue;
        const uint8_t *p = (const uint8_t *)tok_ptr(t, (int32_t)id);
        if (te->type == TOKEN_CONTROL || te->type == TOKEN_UNKNOWN || te->type == TOKEN_USER_DEFINED)
            trie_add(&t->trie_all, p, te->len, (int32_t)id);
        if (te->type == TOKEN_USER_DEFINED) trie_add(&t->trie_user, p, te->len, (int32_t)id);
    }

    // regexes
    for (size_t i = 0; i < t->n_pre; i++) {
        PreStep *s = &t->pre[i];
        if (s->pattern && compile_regex(s->pattern, s->plen, !s->is_regex, &s->re, "pre-tokenizer split", e)) return -1;
    }
    for (size_t i = 0; i < t->n_norm; i++) {
        NormStep *s = &t->norm[i];
        if (s->kind == NORM_REPLACE_REGEX && compile_regex(s->a, s->alen, false, &s->re, "normalizer Replace", e)) return -1;
    }
    t->finalized = true;
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// accessors

size_t tokenizer_vocab_size(const Tokenizer *t) { return t->n_tok; }
TokenizerKind tokenizer_kind(const Tokenizer *t) { return t->kind; }

const char *tokenizer_token_bytes(const Tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_tok) {
        *len = 0;
        return NULL;
    }
    *len = t->tok[id].len;
    return tok_ptr(t, id);
}

float tokenizer_token_score(const Tokenizer *t, int32_t id) {
    return id < 0 || (size_t)id >= t->n_tok ? 0.0f : t->tok[id].score;
}
TokenType tokenizer_token_type(const Tokenizer *t, int32_t id) {
    return id < 0 || (size_t)id >= t->n_tok ? (TokenType)0 : (TokenType)t->tok[id].type;
}
bool tokenizer_is_control(const Tokenizer *t, int32_t id) {
    TokenType ty = tokenizer_token_type(t, id);
    return ty == TOKEN_CONTROL || ty == TOKEN_UNKNOWN;
}
int32_t tokenizer_special_id(const Tokenizer *t, TokenRole role) {
    return role < 0 || role >= TOKEN_ROLE_COUNT ? -1 : t->role[role];
}
bool tokenizer_is_eog(const Tokenizer *t, int32_t id) {
    return id >= 0 && (id == t->role[TOKEN_ID_EOS] || id == t->role[TOKEN_ID_EOT] || id == t->role[TOKEN_ID_EOM]);
}
size_t tokenizer_n_merges(const Tokenizer *t) { return t->n_merges; }
void tokenizer_get_merge(const Tokenizer *t, size_t i, int32_t *left, int32_t *right) {
    if (i >= t->n_merges) {
        *left = *right = -1;
        return;
    }
    *left = t->merges[i][0];
    *right = t->merges[i][1];
}
void tokenizer_get_template(const Tokenizer *t, const int32_t **prefix, size_t *n_prefix, const int32_t **suffix,
                            size_t *n_suffix) {
    *prefix = t->prefix;
    *n_prefix = t->n_prefix;
    *suffix = t->suffix;
    *n_suffix = t->n_suffix;
}
bool tokenizer_byte_fallback(const Tokenizer *t) { return t->byte_fallback; }
int tokenizer_decoder_flags(const Tokenizer *t) { return t->decoder; }
const char *tokenizer_model_name(const Tokenizer *t) { return t->model_name; }
const char *tokenizer_pre_name(const Tokenizer *t) { return t->pre_name; }

// ---------------------------------------------------------------------------------------------------------------
// decode

static void append_piece(const Tokenizer *t, int32_t id, int flags, Buf *out) {
    const TokEntry *te = &t->tok[id];
    if (!(te->flags & TOKF_SET)) return;
    if ((flags & TOKENIZER_DECODE_SKIP_SPECIAL) && (te->type == TOKEN_CONTROL || te->type == TOKEN_UNKNOWN)) return;
    if ((te->flags & TOKF_BYTE) && (t->decoder & TOKDEC_BYTE_FALLBACK)) {
        buf_append(out, &te->byte, 1);
        return;
    }
    const char *p = tok_ptr(t, id);
    if (!(t->decoder & TOKDEC_METASPACE)) {
        buf_append(out, p, te->len);
        return;
    }
    size_t i = 0, start = 0;
    while (i + 3 <= te->len) {
        if ((uint8_t)p[i] == 0xE2 && (uint8_t)p[i + 1] == 0x96 && (uint8_t)p[i + 2] == 0x81) {
            buf_append(out, p + start, i - start);
            buf_append(out, " ", 1);
            i += 3;
            start = i;
        } else {
            i++;
        }
    }
    buf_append(out, p + start, te->len - start);
}

int tokenizer_token_piece(const Tokenizer *t, int32_t id, int flags, Buf *out, Err *e) {
    if (id < 0 || (size_t)id >= t->n_tok)
        return ERR(e, "token id %" PRId32 " out of range (vocabulary has %zu tokens)", id, t->n_tok);
    size_t start = out->len;
    buf_reserve(out, 16);
    append_piece(t, id, flags, out);
    if ((flags & TOKENIZER_DECODE_FIRST) && (t->decoder & TOKDEC_STRIP_SPACE) && out->len > start && out->data[start] == ' ') {
        memmove(out->data + start, out->data + start + 1, out->len - start - 1);
        out->len--;
        out->data[out->len] = 0;
    }
    return 0;
}

int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, int flags, Buf *out, Err *e) {
    size_t start = out->len;
    buf_reserve(out, 16);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->n_tok) {
            out->len = start;
            out->data[start] = 0;
            return ERR(e, "token id %" PRId32 " at position %zu out of range (vocabulary has %zu tokens)", ids[i], i, t->n_tok);
        }
        append_piece(t, ids[i], flags, out);
    }
    if ((t->decoder & TOKDEC_STRIP_SPACE) && out->len > start && out->data[start] == ' ') {
        memmove(out->data + start, out->data + start + 1, out->len - start - 1);
        out->len--;
        out->data[out->len] = 0;
    }
    return 0;
}

bool tokenizer_utf8_valid(const void *s, size_t n) { return utf8_valid(s, n); }

void tokenizer_utf8_lossy(const void *bytes, size_t n, Buf *out) {
    const uint8_t *s = bytes;
    size_t i = 0, from = 0;
    buf_reserve(out, n);
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        size_t j = i + 1, k = 0;
        while (k < need && j < n && s[j] >= lo && s[j] <= hi) j++, k++, lo = 0x80, hi = 0xBF;
        if (need && k == need) {
            i = j;
            continue;
        }
        // invalid: flush the valid run, then one replacement character for bytes i..j-1
        buf_append(out, s + from, i - from);
        buf_append(out, "\xef\xbf\xbd", 3);
        i = need ? j : i + 1;
        from = i;
    }
    buf_append(out, s + from, n - from);
}
