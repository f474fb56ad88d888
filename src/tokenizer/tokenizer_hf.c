// tokenizer_hf.c — Hugging Face tokenizer.json (BPE models) into the one Tokenizer.
//
// Supported: model BPE (vocab, merges as "a b" strings or [a, b] pairs, byte_fallback, unk_token, fuse_unk,
// ignore_merges); normalizers Sequence, Prepend, Replace (string or regex), NFC/NFD/NFKC/NFKD, Lowercase, Strip;
// pre-tokenizers Sequence, ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation; decoders
// Sequence, ByteLevel, Metaspace, Replace("▁" -> " "), ByteFallback, Fuse, Strip; added_tokens (special -> CONTROL,
// else USER_DEFINED, with lstrip/rstrip); post-processors TemplateProcessing, RobertaProcessing, BertProcessing,
// ByteLevel, Sequence. Anything else is a clear "unsupported" error rather than a silently different tokenizer.
// A vocabulary is byte-level when a ByteLevel pre-tokenizer or decoder is present: its pieces are then converted
// from the GPT-2 byte<->unicode spelling to raw bytes. Roles (BOS/EOS/UNK/PAD) come from the post-processor
// template, tokenizer_config.json beside the file when there is one, and the usual spellings.
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

typedef struct Ctx {
    Tokenizer *t;
    Err *e;
    bool bytelevel;
    int32_t tpl_prefix[8], tpl_suffix[8];
    size_t n_tpl_prefix, n_tpl_suffix;
    bool have_tpl;
} Ctx;

static const char *jtype_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

// Optional typed members: absent or null -> default; wrong type -> error.
static int jbool(const json_t *o, const char *key, bool def, bool *out, const char *where, Err *e) {
    *out = def;
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) return ERR(e, "%s.%s must be a boolean (got %s)", where, key, jtype_name(v));
    *out = json_is_true(v);
    return 0;
}

static int jstr(const json_t *o, const char *key, const char **out, size_t *len, const char *where, Err *e) {
    *out = NULL;
    *len = 0;
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = NULL;
        *len = 0;
        return 0;
    }
    if (!json_is_string(v)) return ERR(e, "%s.%s must be a string (got %s)", where, key, jtype_name(v));
    *out = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static const char *type_of(const json_t *o) {
    const json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

// A "pattern" member: {"String": s} or {"Regex": r}.
static int jpattern(const json_t *o, const char *where, const char **pat, size_t *plen, bool *is_regex, Err *e) {
    *pat = NULL;
    *plen = 0;
    *is_regex = false;
    const json_t *p = json_object_get(o, "pattern");
    if (!json_is_object(p)) return ERR(e, "%s.pattern must be an object {\"String\": ...} or {\"Regex\": ...}", where);
    const json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    const json_t *v = s ? s : r;
    if (!json_is_string(v)) return ERR(e, "%s.pattern must hold a String or Regex string", where);
    *pat = json_string_value(v);
    *plen = json_string_length(v);
    *is_regex = s == NULL;
    return 0;
}

static bool contains_bytelevel(const json_t *o, const char *list_key) {
    if (!json_is_object(o)) return false;
    const char *ty = type_of(o);
    if (ty && strcmp(ty, "ByteLevel") == 0) return true;
    const json_t *list = json_object_get(o, list_key);
    if (json_is_array(list)) {
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) if (contains_bytelevel(v, list_key)) return true;
    }
    return false;
}

// ---- normalizer ----
static int add_normalizer(Ctx *c, const json_t *o, int depth) {
    Err *e = c->e;
    if (!o || json_is_null(o)) return 0;
    if (depth > 8) return ERR(e, "normalizer: nesting too deep");
    if (!json_is_object(o)) return ERR(e, "normalizer must be an object (got %s)", jtype_name(o));
    const char *ty = type_of(o);
    if (!ty) return ERR(e, "normalizer without a \"type\"");
    if (!strcmp(ty, "Sequence")) {
        const json_t *list = json_object_get(o, "normalizers");
        if (!json_is_array(list)) return ERR(e, "normalizer Sequence.normalizers must be an array");
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) if (add_normalizer(c, v, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "Prepend")) {
        const char *s;
        size_t n;
        if (jstr(o, "prepend", &s, &n, "normalizer Prepend", e)) return -1;
        if (!s) return ERR(e, "normalizer Prepend without \"prepend\"");
        tokenizer_add_norm_prepend(c->t, s, n);
        return 0;
    }
    if (!strcmp(ty, "Replace")) {
        const char *pat, *content;
        size_t pl, cl;
        bool is_regex;
        if (jpattern(o, "normalizer Replace", &pat, &pl, &is_regex, e)) return -1;
        if (jstr(o, "content", &content, &cl, "normalizer Replace", e)) return -1;
        if (!content) return ERR(e, "normalizer Replace without \"content\"");
        if (is_regex) return tokenizer_add_norm_replace_regex(c->t, pat, content, cl, e);
        if (pl == 0) return ERR(e, "normalizer Replace with an empty pattern");
        tokenizer_add_norm_replace(c->t, pat, pl, content, cl);
        return 0;
    }
    if (!strcmp(ty, "NFC")) return tokenizer_add_norm_unicode(c->t, TOKNORM_NFC), 0;
    if (!strcmp(ty, "NFD")) return tokenizer_add_norm_unicode(c->t, TOKNORM_NFD), 0;
    if (!strcmp(ty, "NFKC")) return tokenizer_add_norm_unicode(c->t, TOKNORM_NFKC), 0;
    if (!strcmp(ty, "NFKD")) return tokenizer_add_norm_unicode(c->t, TOKNORM_NFKD), 0;
    if (!strcmp(ty, "Lowercase")) return tokenizer_add_norm_lowercase(c->t), 0;
    if (!strcmp(ty, "Strip")) {
        bool l, r;
        if (jbool(o, "strip_left", true, &l, "normalizer Strip", e) || jbool(o, "strip_right", true, &r, "normalizer Strip", e))
            return -1;
        tokenizer_add_norm_strip(c->t, l, r);
        return 0;
    }
    return ERR(e, "unsupported normalizer type '%s'", ty);
}

// ---- pre-tokenizer ----
static int parse_behavior(const json_t *o, TokSplitBehavior def, TokSplitBehavior *out, const char *where, Err *e) {
    *out = def;
    const char *b;
    size_t bl;
    if (jstr(o, "behavior", &b, &bl, where, e)) return -1;
    if (!b) *out = def;
    else if (!strcmp(b, "Isolated")) *out = TOKSPLIT_ISOLATED;
    else if (!strcmp(b, "Removed")) *out = TOKSPLIT_REMOVED;
    else if (!strcmp(b, "MergedWithPrevious")) *out = TOKSPLIT_MERGED_WITH_PREVIOUS;
    else if (!strcmp(b, "MergedWithNext")) *out = TOKSPLIT_MERGED_WITH_NEXT;
    else if (!strcmp(b, "Contiguous")) *out = TOKSPLIT_CONTIGUOUS;
    else return ERR(e, "%s: unknown behavior '%s'", where, b);
    return 0;
}

static int parse_prepend_scheme(const json_t *o, TokPrependScheme *out, const char *where, Err *e) {
    *out = TOKPREPEND_ALWAYS;
    const char *s;
    size_t n;
    if (jstr(o, "prepend_scheme", &s, &n, where, e)) return -1;
    if (s) {
        if (!strcmp(s, "always")) *out = TOKPREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = TOKPREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = TOKPREPEND_NEVER;
        else return ERR(e, "%s: unknown prepend_scheme '%s'", where, s);
        return 0;
    }
    bool add; // older files: add_prefix_space
    if (jbool(o, "add_prefix_space", true, &add, where, e)) return -1;
    *out = add ? TOKPREPEND_ALWAYS : TOKPREPEND_NEVER;
    return 0;
}

static int add_pretok(Ctx *c, const json_t *o, int depth) {
    Err *e = c->e;
    if (!o || json_is_null(o)) return 0;
    if (depth > 8) return ERR(e, "pre_tokenizer: nesting too deep");
    if (!json_is_object(o)) return ERR(e, "pre_tokenizer must be an object (got %s)", jtype_name(o));
    const char *ty = type_of(o);
    if (!ty) return ERR(e, "pre_tokenizer without a \"type\"");
    if (!strcmp(ty, "Sequence")) {
        const json_t *list = json_object_get(o, "pretokenizers");
        if (!json_is_array(list)) return ERR(e, "pre_tokenizer Sequence.pretokenizers must be an array");
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) if (add_pretok(c, v, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) {
        bool aps, use_regex;
        if (jbool(o, "add_prefix_space", true, &aps, "pre_tokenizer ByteLevel", e) ||
            jbool(o, "use_regex", true, &use_regex, "pre_tokenizer ByteLevel", e))
            return -1;
        tokenizer_add_pretok_bytelevel(c->t, aps, use_regex);
        return 0;
    }
    if (!strcmp(ty, "Split")) {
        const char *pat;
        size_t pl;
        bool is_regex, invert;
        TokSplitBehavior beh;
        if (jpattern(o, "pre_tokenizer Split", &pat, &pl, &is_regex, e) ||
            parse_behavior(o, TOKSPLIT_ISOLATED, &beh, "pre_tokenizer Split", e) ||
            jbool(o, "invert", false, &invert, "pre_tokenizer Split", e))
            return -1;
        return tokenizer_add_pretok_split(c->t, pat, pl, is_regex, beh, invert, e);
    }
    if (!strcmp(ty, "Metaspace")) {
        const char *r;
        size_t rl;
        TokPrependScheme sch;
        bool split;
        if (jstr(o, "replacement", &r, &rl, "pre_tokenizer Metaspace", e) ||
            parse_prepend_scheme(o, &sch, "pre_tokenizer Metaspace", e) ||
            jbool(o, "split", true, &split, "pre_tokenizer Metaspace", e))
            return -1;
        tokenizer_add_pretok_metaspace(c->t, r, rl, sch, split);
        return 0;
    }
    if (!strcmp(ty, "Digits")) {
        bool ind;
        if (jbool(o, "individual_digits", false, &ind, "pre_tokenizer Digits", e)) return -1;
        tokenizer_add_pretok_digits(c->t, ind);
        return 0;
    }
    if (!strcmp(ty, "Whitespace")) {
        static const char re[] = "\\w+|[^\\w\\s]+";
        return tokenizer_add_pretok_split(c->t, re, strlen(re), true, TOKSPLIT_REMOVED, true, e);
    }
    if (!strcmp(ty, "WhitespaceSplit")) {
        static const char re[] = "\\s+";
        return tokenizer_add_pretok_split(c->t, re, strlen(re), true, TOKSPLIT_REMOVED, false, e);
    }
    if (!strcmp(ty, "Punctuation")) {
        static const char re[] = "[\\p{P}\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E]";
        TokSplitBehavior beh;
        if (parse_behavior(o, TOKSPLIT_ISOLATED, &beh, "pre_tokenizer Punctuation", e)) return -1;
        return tokenizer_add_pretok_split(c->t, re, strlen(re), true, beh, false, e);
    }
    return ERR(e, "unsupported pre_tokenizer type '%s'", ty);
}

// ---- decoder ----
static int parse_decoder(Ctx *c, const json_t *o, int *flags, int depth) {
    Err *e = c->e;
    if (!o || json_is_null(o)) return 0;
    if (depth > 8) return ERR(e, "decoder: nesting too deep");
    if (!json_is_object(o)) return ERR(e, "decoder must be an object (got %s)", jtype_name(o));
    const char *ty = type_of(o);
    if (!ty) return ERR(e, "decoder without a \"type\"");
    if (!strcmp(ty, "Sequence")) {
        const json_t *list = json_object_get(o, "decoders");
        if (!json_is_array(list)) return ERR(e, "decoder Sequence.decoders must be an array");
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) if (parse_decoder(c, v, flags, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel") || !strcmp(ty, "Fuse")) return 0;
    if (!strcmp(ty, "ByteFallback")) return *flags |= TOKDEC_BYTE_FALLBACK, 0;
    if (!strcmp(ty, "Metaspace")) {
        TokPrependScheme sch;
        if (parse_prepend_scheme(o, &sch, "decoder Metaspace", e)) return -1;
        *flags |= TOKDEC_METASPACE | (sch != TOKPREPEND_NEVER ? TOKDEC_STRIP_SPACE : 0);
        return 0;
    }
    if (!strcmp(ty, "Replace")) {
        const char *pat, *content;
        size_t pl, cl;
        bool is_regex;
        if (jpattern(o, "decoder Replace", &pat, &pl, &is_regex, e) || jstr(o, "content", &content, &cl, "decoder Replace", e))
            return -1;
        if (!is_regex && content && pl == 3 && memcmp(pat, "\xe2\x96\x81", 3) == 0 && cl == 1 && content[0] == ' ')
            return *flags |= TOKDEC_METASPACE, 0;
        return ERR(e, "unsupported decoder Replace (only \"\xe2\x96\x81\" -> \" \" is)");
    }
    if (!strcmp(ty, "Strip")) {
        const char *content;
        size_t cl;
        const json_t *st = json_object_get(o, "start"), *sp = json_object_get(o, "stop");
        if (jstr(o, "content", &content, &cl, "decoder Strip", e)) return -1;
        json_int_t start = json_is_integer(st) ? json_integer_value(st) : 0, stop = json_is_integer(sp) ? json_integer_value(sp) : 0;
        if (start == 0 && stop == 0) return 0;
        if (content && cl == 1 && content[0] == ' ' && start == 1 && stop == 0) return *flags |= TOKDEC_STRIP_SPACE, 0;
        return ERR(e, "unsupported decoder Strip (only content \" \", start 1, stop 0 is)");
    }
    return ERR(e, "unsupported decoder type '%s'", ty);
}

// ---- post-processor ----
static int lookup_token_name(Ctx *c, const json_t *specials, const char *name, int32_t *ids, size_t *n, size_t max) {
    Err *e = c->e;
    const json_t *st = json_is_object(specials) ? json_object_get(specials, name) : NULL;
    if (st) {
        const json_t *list = json_object_get(st, "ids");
        if (!json_is_array(list)) return ERR(e, "post_processor special token '%s' has no ids array", name);
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOKENIZER_MAX_VOCAB)
                return ERR(e, "post_processor special token '%s': bad id", name);
            if (*n >= max) return ERR(e, "post_processor template too long");
            ids[(*n)++] = (int32_t)json_integer_value(v);
        }
        return 0;
    }
    int32_t id = tokenizer_find(c->t, name, strlen(name));
    if (id < 0) return ERR(e, "post_processor names token '%s', which is not in the vocabulary", name);
    if (*n >= max) return ERR(e, "post_processor template too long");
    ids[(*n)++] = id;
    return 0;
}

static int parse_post(Ctx *c, const json_t *o, int depth) {
    Err *e = c->e;
    if (!o || json_is_null(o)) return 0;
    if (depth > 8) return ERR(e, "post_processor: nesting too deep");
    if (!json_is_object(o)) return ERR(e, "post_processor must be an object (got %s)", jtype_name(o));
    const char *ty = type_of(o);
    if (!ty) return ERR(e, "post_processor without a \"type\"");
    if (!strcmp(ty, "Sequence")) {
        const json_t *list = json_object_get(o, "processors");
        if (!json_is_array(list)) return ERR(e, "post_processor Sequence.processors must be an array");
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) if (parse_post(c, v, depth + 1)) return -1;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) return 0;
    if (!strcmp(ty, "TemplateProcessing")) {
        const json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
        if (!json_is_array(single)) return ERR(e, "post_processor TemplateProcessing.single must be an array");
        c->n_tpl_prefix = c->n_tpl_suffix = 0;
        bool seen_seq = false;
        size_t i;
        const json_t *v;
        json_array_foreach(single, i, v) {
            const json_t *sp = json_object_get(v, "SpecialToken"), *sq = json_object_get(v, "Sequence");
            if (sq) {
                seen_seq = true;
                continue;
            }
            const json_t *name = json_object_get(sp, "id");
            if (!json_is_string(name)) return ERR(e, "post_processor TemplateProcessing.single: bad item %zu", i);
            int rc = seen_seq ? lookup_token_name(c, specials, json_string_value(name), c->tpl_suffix, &c->n_tpl_suffix, 8)
                              : lookup_token_name(c, specials, json_string_value(name), c->tpl_prefix, &c->n_tpl_prefix, 8);
            if (rc) return -1;
        }
        c->have_tpl = true;
        return 0;
    }
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        const json_t *sep = json_object_get(o, "sep"), *cls = json_object_get(o, "cls");
        if (!json_is_array(sep) || !json_is_array(cls) || !json_is_integer(json_array_get(sep, 1)) ||
            !json_is_integer(json_array_get(cls, 1)))
            return ERR(e, "post_processor %s needs sep and cls as [token, id]", ty);
        json_int_t s = json_integer_value(json_array_get(sep, 1)), k = json_integer_value(json_array_get(cls, 1));
        if (s < 0 || s >= TOKENIZER_MAX_VOCAB || k < 0 || k >= TOKENIZER_MAX_VOCAB) return ERR(e, "post_processor %s: bad id", ty);
        c->tpl_prefix[0] = (int32_t)k;
        c->tpl_suffix[0] = (int32_t)s;
        c->n_tpl_prefix = c->n_tpl_suffix = 1;
        c->have_tpl = true;
        return 0;
    }
    return ERR(e, "unsupported post_processor type '%s'", ty);
}

// ---- model ----
static int piece_bytes(Ctx *c, const char *s, size_t n, Buf *b, const char **p, size_t *len) {
    *p = s;
    *len = n;
    if (!c->bytelevel) return 0;
    b->len = 0;
    if (tokenizer_bytelevel_to_bytes(s, n, b) == 0) {
        *p = b->data ? b->data : "";
        *len = b->len;
    }
    return 0;
}

static int load_model(Ctx *c, const json_t *m) {
    Err *e = c->e;
    Tokenizer *t = c->t;
    if (!json_is_object(m)) return ERR(e, "\"model\" must be an object");
    const char *ty = type_of(m);
    if (ty && strcmp(ty, "BPE") != 0) return ERR(e, "unsupported model type '%s' (lossy reads BPE models)", ty);
    const char *s;
    size_t sl;
    if (jstr(m, "continuing_subword_prefix", &s, &sl, "model", e)) return -1;
    if (s && sl) return ERR(e, "model.continuing_subword_prefix is not supported");
    if (jstr(m, "end_of_word_suffix", &s, &sl, "model", e)) return -1;
    if (s && sl) return ERR(e, "model.end_of_word_suffix is not supported");
    const json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
    if (!json_is_object(vocab)) return ERR(e, "model.vocab must be an object of token -> id");
    if (merges && !json_is_null(merges) && !json_is_array(merges)) return ERR(e, "model.merges must be an array");
    if (json_object_size(vocab) == 0) return ERR(e, "model.vocab is empty");
    if (json_object_size(vocab) > TOKENIZER_MAX_VOCAB) return ERR(e, "model.vocab is too large");

    Buf b;
    buf_init(&b);
    const char *key;
    const json_t *val;
    void *iter;
    // ids are placed explicitly; a duplicate id is an error
    uint8_t *seen = xcalloc(json_object_size(vocab) + 1, 1);
    size_t vsize = json_object_size(vocab);
    int rc = 0;
    for (iter = json_object_iter((json_t *)vocab); iter; iter = json_object_iter_next((json_t *)vocab, iter)) {
        key = json_object_iter_key(iter);
        val = json_object_iter_value(iter);
        size_t klen = json_object_iter_key_len(iter);
        if (!json_is_integer(val)) {
            rc = ERR(e, "model.vocab['%.40s'] must be an integer id (got %s)", key, jtype_name(val));
            break;
        }
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= TOKENIZER_MAX_VOCAB) {
            rc = ERR(e, "model.vocab['%.40s'] = %" PRId64 " is out of range", key, (int64_t)id);
            break;
        }
        if ((size_t)id < vsize) {
            if (seen[id]) {
                rc = ERR(e, "model.vocab: id %" PRId64 " is used twice (again by '%.40s')", (int64_t)id, key);
                break;
            }
            seen[id] = 1;
        } else if ((size_t)id < tokenizer_vocab_size(t) && tokenizer_token_type(t, (int32_t)id) != TOKEN_UNUSED) {
            rc = ERR(e, "model.vocab: id %" PRId64 " is used twice (again by '%.40s')", (int64_t)id, key);
            break;
        }
        const char *p;
        size_t len;
        piece_bytes(c, key, klen, &b, &p, &len);
        if ((rc = tokenizer_set_token(t, (int32_t)id, p, len, 0.0f, TOKEN_NORMAL, e))) break;
    }
    free(seen);
    if (rc) {
        buf_free(&b);
        return -1;
    }

    // merges
    size_t i;
    const json_t *mv;
    Buf lb, rb;
    buf_init(&lb);
    buf_init(&rb);
    if (json_is_array(merges)) {
        json_array_foreach(merges, i, mv) {
            const char *l = NULL, *r = NULL;
            size_t ll = 0, rl = 0;
            if (json_is_string(mv)) {
                const char *str = json_string_value(mv);
                size_t n = json_string_length(mv);
                const char *sp = memchr(str, ' ', n);
                if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp - str) - 1)) {
                    rc = ERR(e, "model.merges[%zu] must be two tokens separated by one space", i);
                    break;
                }
                l = str, ll = (size_t)(sp - str), r = sp + 1, rl = n - ll - 1;
            } else if (json_is_array(mv) && json_array_size(mv) == 2 && json_is_string(json_array_get(mv, 0)) &&
                       json_is_string(json_array_get(mv, 1))) {
                l = json_string_value(json_array_get(mv, 0)), ll = json_string_length(json_array_get(mv, 0));
                r = json_string_value(json_array_get(mv, 1)), rl = json_string_length(json_array_get(mv, 1));
            } else {
                rc = ERR(e, "model.merges[%zu] must be a string \"a b\" or a pair [\"a\", \"b\"]", i);
                break;
            }
            const char *lp, *rp;
            size_t lpl, rpl;
            piece_bytes(c, l, ll, &lb, &lp, &lpl);
            piece_bytes(c, r, rl, &rb, &rp, &rpl);
            if ((rc = tokenizer_add_merge_str(t, lp, lpl, rp, rpl, e))) {
                err_prefix(e, "model.merges[%zu]: ", i);
                break;
            }
        }
    }
    buf_free(&lb);
    buf_free(&rb);
    buf_free(&b);
    if (rc) return -1;

    bool bf, fuse, ignore;
    if (jbool(m, "byte_fallback", false, &bf, "model", e) || jbool(m, "fuse_unk", false, &fuse, "model", e) ||
        jbool(m, "ignore_merges", false, &ignore, "model", e))
        return -1;
    tokenizer_set_byte_fallback(t, bf);
    tokenizer_set_fuse_unk(t, fuse);
    tokenizer_set_ignore_merges(t, ignore);
    if (jstr(m, "unk_token", &s, &sl, "model", e)) return -1;
    if (s) {
        int32_t id = tokenizer_find(t, s, sl);
        if (id >= 0) tokenizer_set_special_id(t, TOKEN_ID_UNK, id);
    }
    return 0;
}

static int load_added(Ctx *c, const json_t *added) {
    Err *e = c->e;
    if (!added || json_is_null(added)) return 0;
    if (!json_is_array(added)) return ERR(e, "added_tokens must be an array");
    size_t i;
    const json_t *a;
    json_array_foreach(added, i, a) {
        if (!json_is_object(a)) return ERR(e, "added_tokens[%zu] must be an object", i);
        const json_t *idv = json_object_get(a, "id");
        if (!json_is_integer(idv)) return ERR(e, "added_tokens[%zu].id must be an integer", i);
        json_int_t id = json_integer_value(idv);
        if (id < 0 || id >= TOKENIZER_MAX_VOCAB) return ERR(e, "added_tokens[%zu].id = %" PRId64 " is out of range", i, (int64_t)id);
        const char *content;
        size_t cl;
        bool special, lstrip, rstrip;
        if (jstr(a, "content", &content, &cl, "added_tokens[]", e) || jbool(a, "special", false, &special, "added_tokens[]", e) ||
            jbool(a, "lstrip", false, &lstrip, "added_tokens[]", e) || jbool(a, "rstrip", false, &rstrip, "added_tokens[]", e))
            return -1;
        if (!content || cl == 0) return ERR(e, "added_tokens[%zu] has no content", i);
        TokenType ty = special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
        if (tokenizer_set_token(c->t, (int32_t)id, content, cl, 0.0f, ty, e)) return err_prefix(e, "added_tokens[%zu]: ", i);
        if (tokenizer_set_token_strip(c->t, (int32_t)id, lstrip, rstrip, e)) return -1;
    }
    return 0;
}

// Roles by spelling when nothing said otherwise.
static void guess_roles(Tokenizer *t) {
    static const char *const bos[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", "<BOS>", NULL};
    static const char *const eos[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<EOS>", NULL};
    static const char *const pad[] = {"<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>", NULL};
    static const char *const *const lists[3] = {bos, eos, pad};
    static const TokenRole roles[3] = {TOKEN_ID_BOS, TOKEN_ID_EOS, TOKEN_ID_PAD};
    for (int r = 0; r < 3; r++) {
        if (tokenizer_special_id(t, roles[r]) >= 0) continue;
        for (size_t i = 0; lists[r][i]; i++) {
            int32_t id = tokenizer_find(t, lists[r][i], strlen(lists[r][i]));
            if (id >= 0 && tokenizer_token_type(t, id) == TOKEN_CONTROL) {
                tokenizer_set_special_id(t, roles[r], id);
                break;
            }
        }
    }
}

static int apply_config(Tokenizer *t, const json_t *cfg) {
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    static const TokenRole roles[] = {TOKEN_ID_BOS, TOKEN_ID_EOS, TOKEN_ID_UNK, TOKEN_ID_PAD};
    for (int k = 0; k < 4; k++) {
        const json_t *v = json_object_get(cfg, keys[k]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!json_is_string(v)) continue;
        int32_t id = tokenizer_find(t, json_string_value(v), json_string_length(v));
        if (id >= 0) tokenizer_set_special_id(t, roles[k], id);
    }
    return 0;
}

static int parse(const char *text, size_t len, const char *name, const json_t *config, Tokenizer **out, Err *e) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    if (!root) return ERR(e, "%s: invalid JSON at line %d column %d: %s", name, jerr.line, jerr.column, jerr.text);
    Ctx c;
    memset(&c, 0, sizeof c);
    c.e = e;
    int rc = -1;
    if (!json_is_object(root)) {
        ERR(e, "tokenizer.json must hold an object (got %s)", jtype_name(root));
        goto done;
    }
    const json_t *model = json_object_get(root, "model");
    if (!model) {
        ERR(e, "tokenizer.json has no \"model\"");
        goto done;
    }
    const json_t *pre = json_object_get(root, "pre_tokenizer"), *dec = json_object_get(root, "decoder");
    c.bytelevel = contains_bytelevel(pre, "pretokenizers") || contains_bytelevel(dec, "decoders");
    c.t = tokenizer_new(c.bytelevel ? TOKENIZER_BPE_BYTES : TOKENIZER_BPE_SPM);
    c.t->merges_only = true; // a BPE model merges only what its merges list says (none when it is empty)
    tokenizer_set_model_name(c.t, c.bytelevel ? "gpt2" : "llama");
    if (load_model(&c, model) || load_added(&c, json_object_get(root, "added_tokens")) ||
        add_normalizer(&c, json_object_get(root, "normalizer"), 0) || add_pretok(&c, pre, 0))
        goto done;
    int flags = 0;
    if (dec && !json_is_null(dec)) {
        if (parse_decoder(&c, dec, &flags, 0)) goto done;
        tokenizer_set_decoder(c.t, flags);
    }
    if (parse_post(&c, json_object_get(root, "post_processor"), 0)) goto done;
    tokenizer_set_template(c.t, c.tpl_prefix, c.n_tpl_prefix, c.tpl_suffix, c.n_tpl_suffix);
    if (config) apply_config(c.t, config);
    if (c.n_tpl_prefix == 1 && tokenizer_special_id(c.t, TOKEN_ID_BOS) < 0)
        tokenizer_set_special_id(c.t, TOKEN_ID_BOS, c.tpl_prefix[0]);
    if (c.n_tpl_suffix == 1 && tokenizer_special_id(c.t, TOKEN_ID_EOS) < 0)
        tokenizer_set_special_id(c.t, TOKEN_ID_EOS, c.tpl_suffix[0]);
    guess_roles(c.t);
    // a role naming an id beyond the vocabulary is caught by finalize
    if (tokenizer_finalize(c.t, e)) goto done;
    *out = c.t;
    c.t = NULL;
    rc = 0;
done:
    if (rc) err_prefix(e, "%s: ", name);
    tokenizer_free(c.t);
    json_decref(root);
    return rc;
}

int tokenizer_parse_hf_json(const char *text, size_t len, const char *name, Tokenizer **out, Err *e) {
    return parse(text, len, name ? name : "tokenizer.json", NULL, out, e);
}

int tokenizer_load_hf_json(const char *path, Tokenizer **out, Err *e) {
    *out = NULL;
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, e)) return -1;
    // tokenizer_config.json beside it names the roles (bos_token, eos_token, ...); optional and best effort
    json_t *cfg = NULL;
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path + 1) : 0;
    char *cpath = xmalloc(dl + 32);
    memcpy(cpath, path, dl);
    strcpy(cpath + dl, "tokenizer_config.json");
    if (path_exists(cpath)) {
        cfg = json_load_file(cpath, 0, NULL);
        if (cfg && !json_is_object(cfg)) {
            json_decref(cfg);
            cfg = NULL;
        }
    }
    free(cpath);
    int rc = parse(text, len, path, cfg, out, e);
    json_decref(cfg);
    free(text);
    return rc;
}
