// write_tokenizer.c — GGUF tokenizer metadata and Hugging Face tokenizer.json writers (see write_tokenizer.h).
//
// Spelling rules shared by both formats: byte-level vocabularies keep token bytes raw in memory, but files spell
// ordinary tokens through the GPT-2 byte<->unicode table ("Ġthe"), while special and added tokens (CONTROL,
// USER_DEFINED, UNKNOWN) are written as their plain text — that is how llama.cpp's converter and Hugging Face
// store them, and how their loaders (and ours) read them back.
// The tokenizer.json writer reads the pre-tokenizer pipeline from the Tokenizer's private layout (tokenizer_impl.h)
// so that any byte-level tokenizer, not only a trained one, is written with the regexes it really uses.
#include "tokenizer/write_tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

static bool is_added_type(TokenType ty) {
    return ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED || ty == TOKEN_UNKNOWN;
}

// The file spelling of token id into out (cleared first).
static void token_spelling(const Tokenizer *t, int32_t id, Buf *out) {
    out->len = 0;
    if (out->data) out->data[0] = 0;
    size_t len;
    const char *s = tokenizer_token_bytes(t, id, &len);
    if (tokenizer_kind(t) == TOKENIZER_BPE_BYTES && !is_added_type(tokenizer_token_type(t, id)))
        tokenizer_bytelevel_from_bytes(s, len, out);
    else
        buf_append(out, s, len);
    if (!out->data) buf_reserve(out, 1); // an empty token still needs a NUL-terminated string
}

// ---------------------------------------------------------------- GGUF

static const struct {
    TokenRole role;
    const char *key;
} ROLE_KEYS[] = {
    {TOKEN_ID_BOS, "tokenizer.ggml.bos_token_id"},      {TOKEN_ID_EOS, "tokenizer.ggml.eos_token_id"},
    {TOKEN_ID_UNK, "tokenizer.ggml.unknown_token_id"},  {TOKEN_ID_PAD, "tokenizer.ggml.padding_token_id"},
    {TOKEN_ID_SEP, "tokenizer.ggml.seperator_token_id"}, // sic: llama.cpp's spelling
    {TOKEN_ID_MASK, "tokenizer.ggml.mask_token_id"},    {TOKEN_ID_EOT, "tokenizer.ggml.eot_token_id"},
    {TOKEN_ID_EOM, "tokenizer.ggml.eom_token_id"},
};

int tokenizer_gguf_set_keys(GGUFWriter *w, const Tokenizer *t, Err *e) {
    if (!t) {
        gguf_writer_set_str(w, "tokenizer.ggml.model", TOKENIZER_GGUF_NO_VOCAB);
        return 0;
    }
    size_t n = tokenizer_vocab_size(t);
    if (!n) return ERR(e, "cannot write an empty vocabulary");
    TokenizerKind kind = tokenizer_kind(t);
    const char *model = tokenizer_model_name(t);
    if (!model) model = kind == TOKENIZER_BPE_BYTES ? "gpt2" : "llama";
    const char *pre = tokenizer_pre_name(t);
    if (!pre) pre = "default";

    // the template must be what GGUF can say: [BOS] text [EOS], each optional
    const int32_t *prefix, *suffix;
    size_t n_prefix, n_suffix;
    tokenizer_get_template(t, &prefix, &n_prefix, &suffix, &n_suffix);
    int32_t bos = tokenizer_special_id(t, TOKEN_ID_BOS), eos = tokenizer_special_id(t, TOKEN_ID_EOS);
    bool add_bos = n_prefix == 1 && prefix[0] == bos, add_eos = n_suffix == 1 && suffix[0] == eos;
    if ((n_prefix && !add_bos) || (n_suffix && !add_eos))
        return ERR(e, "the tokenizer's special-token template (%zu ids before, %zu after) is not [BOS] text [EOS]: "
                      "GGUF cannot express it", n_prefix, n_suffix);

    char **strs = xmalloc_array(n, sizeof *strs);
    size_t *lens = xmalloc_array(n, sizeof *lens);
    int32_t *types = xmalloc_array(n, sizeof *types);
    float *scores = xmalloc_array(n, sizeof *scores);
    Buf b;
    buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        token_spelling(t, (int32_t)i, &b);
        strs[i] = xstrndup(b.data, b.len);
        lens[i] = b.len;
        TokenType ty = tokenizer_token_type(t, (int32_t)i);
        types[i] = ty ? (int32_t)ty : TOKEN_UNUSED;
        scores[i] = tokenizer_token_score(t, (int32_t)i);
    }
    gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, lens, n);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n);
    if (kind == TOKENIZER_BPE_SPM) gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n);

    size_t n_merges = tokenizer_n_merges(t);
    if (kind == TOKENIZER_BPE_BYTES && n_merges) {
        char **ms = xmalloc_array(n_merges, sizeof *ms);
        size_t *mlens = xmalloc_array(n_merges, sizeof *mlens);
        for (size_t i = 0; i < n_merges; i++) {
            int32_t l, r;
            tokenizer_get_merge(t, i, &l, &r);
            Buf m;
            buf_init(&m);
            buf_append(&m, strs[l], lens[l]);
            buf_append(&m, " ", 1);
            buf_append(&m, strs[r], lens[r]);
            ms[i] = m.data;
            mlens[i] = m.len;
        }
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, mlens, n_merges);
        for (size_t i = 0; i < n_merges; i++) free(ms[i]);
        free(ms);
        free(mlens);
    }
    for (size_t k = 0; k < sizeof ROLE_KEYS / sizeof ROLE_KEYS[0]; k++) {
        int32_t id = tokenizer_special_id(t, ROLE_KEYS[k].role);
        if (id >= 0) gguf_writer_set_u32(w, ROLE_KEYS[k].key, (uint32_t)id);
    }
    // explicit, because llama.cpp's defaults for a missing flag depend on the pre-tokenizer name
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos);

    for (size_t i = 0; i < n; i++) free(strs[i]);
    free(strs);
    free(lens);
    free(types);
    free(scores);
    buf_free(&b);
    return 0;
}

GGUFWriter *tokenizer_gguf_vocab_writer(const Tokenizer *t, const char *name, Err *e) {
    if (!t) {
        ERR(e, "a vocabulary-only GGUF needs a tokenizer");
        return NULL;
    }
    GGUFWriter *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    if (name) gguf_writer_set_str(w, "general.name", name);
    if (tokenizer_gguf_set_keys(w, t, e)) {
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

int tokenizer_write_gguf(const Tokenizer *t, const char *path, const char *name, Err *e) {
    GGUFWriter *w = tokenizer_gguf_vocab_writer(t, name, e);
    if (!w) return -1;
    int rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

// ---------------------------------------------------------------- tokenizer.json

static const char *behavior_name(TokSplitBehavior b) {
    switch (b) {
    case TOKSPLIT_ISOLATED: return "Isolated";
    case TOKSPLIT_REMOVED: return "Removed";
    case TOKSPLIT_MERGED_WITH_PREVIOUS: return "MergedWithPrevious";
    case TOKSPLIT_MERGED_WITH_NEXT: return "MergedWithNext";
    case TOKSPLIT_CONTIGUOUS: return "Contiguous";
    }
    return "Isolated";
}

static json_t *bytelevel_obj(const char *type, bool add_prefix_space, bool trim_offsets, bool use_regex) {
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "add_prefix_space", json_boolean(add_prefix_space));
    json_object_set_new(o, "trim_offsets", json_boolean(trim_offsets));
    json_object_set_new(o, "use_regex", json_boolean(use_regex));
    return o;
}

// The pre-tokenizer pipeline. Hugging Face maps bytes to the unicode alphabet in its ByteLevel step, and steps
// after it would see mapped text: so ByteLevel must be last (one is appended when the tokenizer has none).
static json_t *pre_tokenizer_json(const Tokenizer *t, Err *e) {
    json_t *list = json_array();
    bool have_bytelevel = false;
    for (size_t i = 0; i < t->n_pre; i++) {
        const PreStep *p = &t->pre[i];
        if (have_bytelevel) {
            json_decref(list);
            return ERR(e, "pre-tokenizer step %zu comes after ByteLevel: tokenizer.json cannot express it", i + 1), NULL;
        }
        json_t *o = json_object();
        switch (p->kind) {
        case PRE_SPLIT: {
            json_t *pat = json_object(), *s = json_stringn(p->pattern, p->plen);
            if (!s) {
                json_decref(o), json_decref(pat), json_decref(list);
                return ERR(e, "pre-tokenizer split pattern %zu is not valid UTF-8", i + 1), NULL;
            }
            json_object_set_new(pat, p->is_regex ? "Regex" : "String", s);
            json_object_set_new(o, "type", json_string("Split"));
            json_object_set_new(o, "pattern", pat);
            json_object_set_new(o, "behavior", json_string(behavior_name(p->behavior)));
            json_object_set_new(o, "invert", json_boolean(p->invert));
            break;
        }
        case PRE_BYTELEVEL:
            json_decref(o);
            o = bytelevel_obj("ByteLevel", p->add_prefix_space, true, p->use_regex);
            have_bytelevel = true;
            break;
        case PRE_DIGITS:
            json_object_set_new(o, "type", json_string("Digits"));
            json_object_set_new(o, "individual_digits", json_boolean(p->individual));
            break;
        default:
            json_decref(o), json_decref(list);
            return ERR(e, "pre-tokenizer step %zu (Metaspace) does not belong in a byte-level tokenizer.json", i + 1), NULL;
        }
        json_array_append_new(list, o);
    }
    if (!have_bytelevel) json_array_append_new(list, bytelevel_obj("ByteLevel", false, true, false));
    if (json_array_size(list) == 1) {
        json_t *only = json_incref(json_array_get(list, 0));
        json_decref(list);
        return only;
    }
    json_t *seq = json_object();
    json_object_set_new(seq, "type", json_string("Sequence"));
    json_object_set_new(seq, "pretokenizers", list);
    return seq;
}

// JSON string of a token's plain text; NULL when it is not valid UTF-8.
static json_t *token_text_json(const Tokenizer *t, int32_t id) {
    size_t len;
    const char *s = tokenizer_token_bytes(t, id, &len);
    return json_stringn(s ? s : "", len);
}

static json_t *template_piece(const char *kind, const char *id, int type_id) {
    json_t *inner = json_object(), *o = json_object();
    json_object_set_new(inner, "id", json_string(id));
    json_object_set_new(inner, "type_id", json_integer(type_id));
    json_object_set_new(o, kind, inner);
    return o;
}

// Append the special tokens `list` to a template and register them in special_tokens.
static int template_specials(const Tokenizer *t, const int32_t *list, size_t n, int type_id, json_t *arr,
                             json_t *specials, Err *e) {
    for (size_t i = 0; i < n; i++) {
        json_t *txt = token_text_json(t, list[i]);
        if (!txt) return ERR(e, "template token %d is not valid UTF-8", list[i]);
        const char *key = json_string_value(txt);
        if (!json_object_get(specials, key)) {
            json_t *st = json_object(), *ids = json_array(), *toks = json_array();
            json_object_set_new(st, "id", json_string(key));
            json_array_append_new(ids, json_integer(list[i]));
            json_object_set_new(st, "ids", ids);
            json_array_append_new(toks, json_string(key));
            json_object_set_new(st, "tokens", toks);
            json_object_set_new(specials, key, st);
        }
        json_array_append_new(arr, template_piece("SpecialToken", key, type_id));
        json_decref(txt);
    }
    return 0;
}

// HF TemplateProcessing: single = prefix $A suffix; pair = prefix $A suffix prefix $B suffix (as Llama 3 does).
static json_t *post_processor_json(const Tokenizer *t, Err *e) {
    const int32_t *pre, *suf;
    size_t n_pre, n_suf;
    tokenizer_get_template(t, &pre, &n_pre, &suf, &n_suf);
    if (!n_pre && !n_suf) return bytelevel_obj("ByteLevel", true, false, true);
    json_t *single = json_array(), *pair = json_array(), *specials = json_object();
    int rc = template_specials(t, pre, n_pre, 0, single, specials, e);
    if (!rc) json_array_append_new(single, template_piece("Sequence", "A", 0));
    if (!rc) rc = template_specials(t, suf, n_suf, 0, single, specials, e);
    for (int seq = 0; seq < 2 && !rc; seq++) {
        rc = template_specials(t, pre, n_pre, seq, pair, specials, e);
        if (!rc) json_array_append_new(pair, template_piece("Sequence", seq ? "B" : "A", seq));
        if (!rc) rc = template_specials(t, suf, n_suf, seq, pair, specials, e);
    }
    if (rc) {
        json_decref(single), json_decref(pair), json_decref(specials);
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("TemplateProcessing"));
    json_object_set_new(o, "single", single);
    json_object_set_new(o, "pair", pair);
    json_object_set_new(o, "special_tokens", specials);
    return o;
}

static json_t *build_hf_json(const Tokenizer *t, Err *e) {
    if (tokenizer_kind(t) != TOKENIZER_BPE_BYTES)
        return ERR(e, "tokenizer.json output is implemented for byte-level BPE vocabularies only"), NULL;
    if (t->n_norm)
        return ERR(e, "the tokenizer has %zu normalizer step(s): tokenizer.json output does not write them yet", t->n_norm), NULL;
    if (tokenizer_decoder_flags(t))
        return ERR(e, "decoder flags 0x%x have no byte-level tokenizer.json equivalent", tokenizer_decoder_flags(t)), NULL;
    size_t n = tokenizer_vocab_size(t);
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());

    json_t *added = json_array(), *vocab = json_object();
    Buf b;
    buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        int32_t id = (int32_t)i;
        if (!(t->tok[i].flags & TOKF_SET)) continue; // a hole: no token has this id
        TokenType ty = tokenizer_token_type(t, id);
        if (is_added_type(ty)) {
            json_t *txt = token_text_json(t, id);
            if (!txt) {
                json_decref(root), json_decref(added), json_decref(vocab), buf_free(&b);
                return ERR(e, "special token %d is not valid UTF-8: tokenizer.json cannot hold it", id), NULL;
            }
            json_t *o = json_object();
            json_object_set_new(o, "id", json_integer(id));
            json_object_set_new(o, "content", txt);
            json_object_set_new(o, "single_word", json_false());
            json_object_set_new(o, "lstrip", json_boolean(t->tok[i].flags & TOKF_LSTRIP));
            json_object_set_new(o, "rstrip", json_boolean(t->tok[i].flags & TOKF_RSTRIP));
            json_object_set_new(o, "normalized", json_false());
            json_object_set_new(o, "special", json_boolean(ty != TOKEN_USER_DEFINED));
            json_array_append_new(added, o);
            continue;
        }
        token_spelling(t, id, &b);
        if (!b.len) continue; // empty tokens cannot be spelled in a vocab map
        if (json_object_get(vocab, b.data)) {
            json_decref(root), json_decref(added), json_decref(vocab), buf_free(&b);
            return ERR(e, "tokens %d and %lld are spelled the same", id,
                       (long long)json_integer_value(json_object_get(vocab, b.data))), NULL;
        }
        json_object_set_new(vocab, b.data, json_integer(id));
    }
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_null());
    json_t *pre = pre_tokenizer_json(t, e);
    json_t *post = pre ? post_processor_json(t, e) : NULL;
    if (!pre || !post) {
        json_decref(pre), json_decref(root), json_decref(vocab), buf_free(&b);
        return NULL;
    }
    json_object_set_new(root, "pre_tokenizer", pre);
    json_object_set_new(root, "post_processor", post);
    json_object_set_new(root, "decoder", bytelevel_obj("ByteLevel", true, true, true));

    json_t *model = json_object();
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "dropout", json_null());
    int32_t unk = tokenizer_special_id(t, TOKEN_ID_UNK);
    json_t *unk_txt = unk >= 0 ? token_text_json(t, unk) : NULL;
    json_object_set_new(model, "unk_token", unk_txt ? unk_txt : json_null());
    json_object_set_new(model, "continuing_subword_prefix", json_null());
    json_object_set_new(model, "end_of_word_suffix", json_null());
    json_object_set_new(model, "fuse_unk", json_false());
    json_object_set_new(model, "byte_fallback", json_false());
    json_object_set_new(model, "ignore_merges", json_boolean(t->ignore_merges));
    json_object_set_new(model, "vocab", vocab);
    json_t *merges = json_array();
    Buf l, r;
    buf_init(&l);
    buf_init(&r);
    for (size_t i = 0; i < tokenizer_n_merges(t); i++) {
        int32_t li, ri;
        tokenizer_get_merge(t, i, &li, &ri);
        token_spelling(t, li, &l);
        token_spelling(t, ri, &r);
        buf_append(&l, " ", 1);
        buf_append(&l, r.data, r.len);
        json_array_append_new(merges, json_stringn(l.data, l.len));
    }
    json_object_set_new(model, "merges", merges);
    json_object_set_new(root, "model", model);
    buf_free(&l);
    buf_free(&r);
    buf_free(&b);
    return root;
}

static int dump_cb(const char *buffer, size_t size, void *data) {
    buf_append((Buf *)data, buffer, size);
    return 0;
}

int tokenizer_hf_json_dump(const Tokenizer *t, Buf *out, Err *e) {
    json_t *root = build_hf_json(t, e);
    if (!root) return -1;
    int rc = json_dump_callback(root, dump_cb, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc) return ERR(e, "cannot render tokenizer.json");
    buf_append(out, "\n", 1);
    return 0;
}

int tokenizer_write_hf_json(const Tokenizer *t, const char *path, Err *e) {
    Buf b;
    buf_init(&b);
    int rc = tokenizer_hf_json_dump(t, &b, e);
    if (!rc) rc = file_write_atomic_bytes(path, b.data, b.len, e);
    buf_free(&b);
    return rc;
}
