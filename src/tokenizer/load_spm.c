// load_spm.c — sentencepiece `tokenizer.model` loader: reads the ModelProto protobuf by hand into a Tokenizer.
//
// The file is a serialized sentencepiece.ModelProto (protobuf wire format, proto2):
//   1 pieces (repeated SentencePiece: 1 piece string, 2 score float, 3 type enum NORMAL=1 UNKNOWN=2 CONTROL=3
//     USER_DEFINED=4 UNUSED=5 BYTE=6 — the same numbers as TokenType),
//   2 trainer_spec (3 model_type UNIGRAM=1 BPE=2 WORD=3 CHAR=4, 24 treat_whitespace_as_suffix, 35 byte_fallback,
//     40..43 unk/bos/eos/pad ids),
//   3 normalizer_spec (1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
//     5 escape_whitespaces).
// Everything else (self-test data, training-only options) is skipped by wire type. Only the BPE model type maps onto
// lossy's encoder; UNIGRAM/WORD/CHAR models are refused with a clear error.
//
// Parsing is two passes: a structural scan that validates every varint, length and field against the bytes left
// (and the pieces' UTF-8 and types) without building anything, then the build through the public builder
// (tokenizer.h). A malformed file is therefore rejected cheaply and never half-built.
//
// How the sentencepiece behaviour maps onto the shared encoder (TOKENIZER_BPE_SPM, merges ranked by piece score):
//   normalizer: [remove_extra_whitespaces: strip/collapse ' '] -> [add_dummy_prefix: prepend ' '] ->
//               [escape_whitespaces: ' ' -> "▁"];  decoder: "▁" -> ' ', <0xXX> -> byte, strip one leading ' '.
//   ADD_SPECIAL template: BOS only (sentencepiece itself adds nothing; BOS-first is the Llama convention that
//   Hugging Face's LlamaTokenizer and llama.cpp follow for these files).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

// ---- protobuf wire format ----

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_SGROUP = 3, PB_EGROUP = 4, PB_FIXED32 = 5 };

typedef struct PbField {
    uint32_t num;         // field number
    int wire;             // PB_*
    uint64_t v;           // VARINT / FIXED64 / FIXED32 value
    const uint8_t *data;  // LEN payload (points into the message)
    size_t len;
    size_t off;           // absolute file offset of the field's key, for messages
    size_t data_off;      // absolute file offset of the LEN payload (the base of a nested message)
} PbField;

typedef struct PbMsg {
    const uint8_t *d; // message bytes
    size_t n;
    size_t pos;
    size_t base;      // absolute file offset of d[0]
} PbMsg;

// Read a base-128 varint. At most 10 bytes, and the 10th may only carry the top bit of a uint64.
static int pb_varint(const uint8_t *d, size_t n, size_t *pos, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (*pos >= n) return -1;
        uint8_t c = d[(*pos)++];
        if (i == 9 && c > 1) return -1;
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

// Next field of m into f: 1 = got one, 0 = end of message, -1 = malformed (e filled; what names the message).
static int pb_next(PbMsg *m, PbField *f, const char *name, const char *what, Err *e) {
    if (m->pos >= m->n) return 0;
    memset(f, 0, sizeof *f);
    f->off = m->base + m->pos;
    uint64_t key;
    if (pb_varint(m->d, m->n, &m->pos, &key))
        return ERR(e, "%s: %s: truncated or overlong field key at byte %zu", name, what, f->off);
    if (key > UINT32_MAX || (key >> 3) == 0)
        return ERR(e, "%s: %s: invalid field number %llu at byte %zu", name, what, (unsigned long long)(key >> 3),
                   f->off);
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case PB_VARINT:
        if (pb_varint(m->d, m->n, &m->pos, &f->v))
            return ERR(e, "%s: %s: field %u: truncated or overlong varint at byte %zu", name, what, f->num, f->off);
        return 1;
    case PB_FIXED64:
        if (m->n - m->pos < 8)
            return ERR(e, "%s: %s: field %u: truncated 64-bit value at byte %zu", name, what, f->num, f->off);
        f->v = load_u64le(m->d + m->pos);
        m->pos += 8;
        return 1;
    case PB_FIXED32:
        if (m->n - m->pos < 4)
            return ERR(e, "%s: %s: field %u: truncated 32-bit value at byte %zu", name, what, f->num, f->off);
        f->v = load_u32le(m->d + m->pos);
        m->pos += 4;
        return 1;
    case PB_LEN: {
        uint64_t len;
        if (pb_varint(m->d, m->n, &m->pos, &len))
            return ERR(e, "%s: %s: field %u: truncated or overlong length at byte %zu", name, what, f->num, f->off);
        if (len > m->n - m->pos)
            return ERR(e, "%s: %s: field %u at byte %zu: length %llu runs past the end (%zu bytes left)", name, what,
                       f->num, f->off, (unsigned long long)len, m->n - m->pos);
        f->data = m->d + m->pos;
        f->data_off = m->base + m->pos;
        f->len = (size_t)len;
        m->pos += (size_t)len;
        return 1;
    }
    case PB_SGROUP:
    case PB_EGROUP:
        return ERR(e, "%s: %s: field %u at byte %zu uses the deprecated group wire type, not valid here", name, what,
                   f->num, f->off);
    default:
        return ERR(e, "%s: %s: field %u at byte %zu has invalid wire type %d", name, what, f->num, f->off, f->wire);
    }
}

// A field we interpret must have the wire type its schema says; anything else is a corrupt or foreign file.
static int pb_expect(const PbField *f, int wire, const char *name, const char *what, const char *field, Err *e) {
    if (f->wire == wire) return 0;
    return ERR(e, "%s: %s.%s (field %u) at byte %zu has wire type %d, expected %d", name, what, field, f->num, f->off,
               f->wire, wire);
}

// Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF): sentencepiece pieces are always valid UTF-8.
static bool utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) k = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) k = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) k = 4, cp = c & 0x07, min = 0x10000;
        else return false;
        if (n - i < k) return false;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += k;
    }
    return true;
}

static bool is_byte_piece(const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    return n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && memchr(hex, s[3], 16) && memchr(hex, s[4], 16);
}

// ---- ModelProto ----

typedef struct SpmPiece {
    const uint8_t *s;
    size_t len;
    float score;
    int type;
} SpmPiece;

typedef struct SpmSpec {
    // trainer_spec (proto2 defaults)
    int32_t model_type; // 1 UNIGRAM (the default), 2 BPE, 3 WORD, 4 CHAR
    bool byte_fallback;
    bool ws_suffix;     // treat_whitespace_as_suffix
    int32_t unk_id, bos_id, eos_id, pad_id;
    // normalizer_spec
    const uint8_t *norm_name;
    size_t norm_name_len;
    size_t charsmap_len;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
} SpmSpec;

static int parse_piece(const PbField *outer, size_t idx, SpmPiece *p, const char *name, Err *e) {
    PbMsg m = {outer->data, outer->len, 0, outer->data_off};
    p->s = NULL;
    p->len = 0;
    p->score = 0.0f;
    p->type = TOKEN_NORMAL;
    bool have_piece = false;
    char what[64];
    snprintf(what, sizeof what, "piece %zu", idx);
    PbField f;
    int r;
    while ((r = pb_next(&m, &f, name, what, e)) == 1) {
        switch (f.num) {
        case 1:
            if (pb_expect(&f, PB_LEN, name, what, "piece", e)) return -1;
            p->s = f.data;
            p->len = f.len;
            have_piece = true;
            break;
        case 2: {
            if (pb_expect(&f, PB_FIXED32, name, what, "score", e)) return -1;
            uint32_t u = (uint32_t)f.v;
            memcpy(&p->score, &u, sizeof u);
            break;
        }
        case 3:
            if (pb_expect(&f, PB_VARINT, name, what, "type", e)) return -1;
            if (f.v < TOKEN_NORMAL || f.v > TOKEN_BYTE)
                return ERR(e, "%s: %s has unknown type %llu (expected 1..6)", name, what, (unsigned long long)f.v);
            p->type = (int)f.v;
            break;
        default: break; // extensions
        }
    }
    if (r < 0) return -1;
    if (!have_piece || p->len == 0) return ERR(e, "%s: %s has no text (pieces must not be empty)", name, what);
    if (!utf8_valid(p->s, p->len)) return ERR(e, "%s: %s is not valid UTF-8", name, what);
    if (p->score != p->score) return ERR(e, "%s: %s has a NaN score", name, what);
    if (p->type == TOKEN_BYTE && !is_byte_piece(p->s, p->len))
        return ERR(e, "%s: %s has type BYTE but is not spelled <0xXX> ('%.*s')", name, what, (int)(p->len > 32 ? 32 : p->len),
                   (const char *)p->s);
    return 0;
}

static int parse_trainer(const PbField *outer, SpmSpec *sp, const char *name, Err *e) {
    PbMsg m = {outer->data, outer->len, 0, outer->data_off};
    PbField f;
    int r;
    const char *what = "trainer_spec";
    while ((r = pb_next(&m, &f, name, what, e)) == 1) {
        const char *field = NULL;
        int32_t *dst = NULL;
        switch (f.num) {
        case 3: field = "model_type"; dst = &sp->model_type; break;
        case 40: field = "unk_id"; dst = &sp->unk_id; break;
        case 41: field = "bos_id"; dst = &sp->bos_id; break;
        case 42: field = "eos_id"; dst = &sp->eos_id; break;
        case 43: field = "pad_id"; dst = &sp->pad_id; break;
        case 24:
            if (pb_expect(&f, PB_VARINT, name, what, "treat_whitespace_as_suffix", e)) return -1;
            sp->ws_suffix = f.v != 0;
            break;
        case 35:
            if (pb_expect(&f, PB_VARINT, name, what, "byte_fallback", e)) return -1;
            sp->byte_fallback = f.v != 0;
            break;
        default: break; // training-only options
        }
        if (dst) {
            if (pb_expect(&f, PB_VARINT, name, what, field, e)) return -1;
            // proto int32: negative values are sign-extended to 64 bits on the wire; keep the low 32 bits.
            *dst = (int32_t)(uint32_t)f.v;
        }
    }
    return r < 0 ? -1 : 0;
}

static int parse_normalizer(const PbField *outer, SpmSpec *sp, const char *name, Err *e) {
    PbMsg m = {outer->data, outer->len, 0, outer->data_off};
    PbField f;
    int r;
    const char *what = "normalizer_spec";
    while ((r = pb_next(&m, &f, name, what, e)) == 1) {
        switch (f.num) {
        case 1:
            if (pb_expect(&f, PB_LEN, name, what, "name", e)) return -1;
            sp->norm_name = f.data;
            sp->norm_name_len = f.len;
            break;
        case 2:
            if (pb_expect(&f, PB_LEN, name, what, "precompiled_charsmap", e)) return -1;
            sp->charsmap_len = f.len;
            break;
        case 3:
            if (pb_expect(&f, PB_VARINT, name, what, "add_dummy_prefix", e)) return -1;
            sp->add_dummy_prefix = f.v != 0;
            break;
        case 4:
            if (pb_expect(&f, PB_VARINT, name, what, "remove_extra_whitespaces", e)) return -1;
            sp->remove_extra_ws = f.v != 0;
            break;
        case 5:
            if (pb_expect(&f, PB_VARINT, name, what, "escape_whitespaces", e)) return -1;
            sp->escape_ws = f.v != 0;
            break;
        default: break;
        }
    }
    return r < 0 ? -1 : 0;
}

static bool name_is(const SpmSpec *sp, const char *s) {
    size_t n = strlen(s);
    return sp->norm_name_len == n && memcmp(sp->norm_name, s, n) == 0;
}

// Check a special id from trainer_spec: -1 means none; anything else must name a piece.
static int check_id(int32_t id, const char *what, size_t n_pieces, const char *name, Err *e) {
    if (id == -1) return 0;
    if (id < 0 || (size_t)id >= n_pieces)
        return ERR(e, "%s: trainer_spec.%s = %d is out of range (%zu pieces)", name, what, (int)id, n_pieces);
    return 0;
}

// Map the sentencepiece normalizer onto lossy's normalizer steps.
static int add_normalizer(Tokenizer *t, const SpmSpec *sp, const char *name, Err *e) {
    // The precompiled charsmap is sentencepiece's compiled rule table; lossy does not interpret it. The published
    // rules it can stand for are mapped onto Unicode normalization (nmt_nfkc also folds a few control/space
    // characters, which NFKC approximates); an unknown non-empty table would silently change ids, so it is refused.
    if (sp->norm_name_len == 0 || name_is(sp, "identity")) {
        // nothing
    } else if (name_is(sp, "nfkc") || name_is(sp, "nmt_nfkc")) {
        tokenizer_add_norm_unicode(t, TOKNORM_NFKC);
    } else if (name_is(sp, "nfkc_cf") || name_is(sp, "nmt_nfkc_cf")) {
        tokenizer_add_norm_unicode(t, TOKNORM_NFKC);
        tokenizer_add_norm_lowercase(t);
    } else if (sp->charsmap_len > 0) {
        return ERR(e, "%s: normalizer_spec.name '%.*s' with a custom precompiled_charsmap is not supported", name,
                   (int)(sp->norm_name_len > 64 ? 64 : sp->norm_name_len), (const char *)sp->norm_name);
    }
    if (sp->remove_extra_ws) {
        // sentencepiece drops leading and trailing ' ' and collapses runs of ' ' (only U+0020, after normalization).
        if (tokenizer_add_norm_replace_regex(t, "^ +| +$", "", 0, e)) return -1;
        if (tokenizer_add_norm_replace_regex(t, "  +", " ", 1, e)) return -1;
    }
    if (sp->add_dummy_prefix) tokenizer_add_norm_prepend(t, " ", 1);
    if (sp->escape_ws) tokenizer_add_norm_replace(t, " ", 1, "\xe2\x96\x81", 3);
    return 0;
}

int tokenizer_parse_spm_model(const uint8_t *data, size_t size, const char *name, Tokenizer **out, Err *e) {
    *out = NULL;
    if (!name) name = "tokenizer.model";
    if (size == 0) return ERR(e, "%s: empty file, expected a sentencepiece model", name);

    SpmSpec sp = {
        .model_type = 1, .byte_fallback = false, .ws_suffix = false,
        .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
        .add_dummy_prefix = true, .remove_extra_ws = true, .escape_ws = true,
    };

    // Pass 1: structure. Count the pieces first so the piece table is sized exactly once.
    PbMsg top = {data, size, 0, 0};
    PbField f;
    int r;
    size_t n_pieces = 0;
    while ((r = pb_next(&top, &f, name, "ModelProto", e)) == 1) {
        if (f.num == 1) {
            if (pb_expect(&f, PB_LEN, name, "ModelProto", "pieces", e)) return -1;
            if (++n_pieces > TOKENIZER_MAX_VOCAB)
                return ERR(e, "%s: more than %d pieces", name, TOKENIZER_MAX_VOCAB);
        } else if (f.num == 2) {
            if (pb_expect(&f, PB_LEN, name, "ModelProto", "trainer_spec", e)) return -1;
            if (parse_trainer(&f, &sp, name, e)) return -1;
        } else if (f.num == 3) {
            if (pb_expect(&f, PB_LEN, name, "ModelProto", "normalizer_spec", e)) return -1;
            if (parse_normalizer(&f, &sp, name, e)) return -1;
        }
    }
    if (r < 0) return -1;
    if (n_pieces == 0) return ERR(e, "%s: no pieces (not a sentencepiece model?)", name);

    SpmPiece *pieces = xmalloc_array(n_pieces, sizeof *pieces);
    Tokenizer *t = NULL;
    top.pos = 0;
    size_t k = 0;
    while (pb_next(&top, &f, name, "ModelProto", e) == 1) {
        if (f.num != 1) continue;
        if (parse_piece(&f, k, &pieces[k], name, e)) goto fail;
        k++;
    }

    if (sp.model_type != 2) {
        const char *mt = sp.model_type == 1 ? "UNIGRAM" : sp.model_type == 3 ? "WORD" : sp.model_type == 4 ? "CHAR" : "unknown";
        ERR(e, "%s: sentencepiece model type %s (%d) is not supported; lossy reads BPE models (type 2)", name, mt,
            (int)sp.model_type);
        goto fail;
    }
    if (sp.ws_suffix) {
        ERR(e, "%s: trainer_spec.treat_whitespace_as_suffix is not supported", name);
        goto fail;
    }
    if (sp.unk_id < 0 || (size_t)sp.unk_id >= n_pieces) {
        ERR(e, "%s: trainer_spec.unk_id = %d is out of range (%zu pieces)", name, (int)sp.unk_id, n_pieces);
        goto fail;
    }
    if (check_id(sp.bos_id, "bos_id", n_pieces, name, e) || check_id(sp.eos_id, "eos_id", n_pieces, name, e) ||
        check_id(sp.pad_id, "pad_id", n_pieces, name, e))
        goto fail;

    // Pass 2: build.
    t = tokenizer_new(TOKENIZER_BPE_SPM);
    for (size_t i = 0; i < n_pieces; i++) {
        if (tokenizer_add_token(t, pieces[i].s, pieces[i].len, pieces[i].score, (TokenType)pieces[i].type, e) < 0) {
            err_prefix(e, "%s: piece %zu: ", name, i);
            goto fail;
        }
    }
    tokenizer_set_special_id(t, TOKEN_ID_UNK, sp.unk_id);
    tokenizer_set_special_id(t, TOKEN_ID_BOS, sp.bos_id);
    tokenizer_set_special_id(t, TOKEN_ID_EOS, sp.eos_id);
    tokenizer_set_special_id(t, TOKEN_ID_PAD, sp.pad_id);
    tokenizer_set_byte_fallback(t, sp.byte_fallback);
    tokenizer_set_add_bos_eos(t, sp.bos_id >= 0, false);
    if (add_normalizer(t, &sp, name, e)) goto fail;
    tokenizer_set_decoder(t, (sp.escape_ws ? TOKDEC_METASPACE : 0) | TOKDEC_BYTE_FALLBACK |
                                 (sp.add_dummy_prefix ? TOKDEC_STRIP_SPACE : 0));
    tokenizer_set_model_name(t, "llama");
    tokenizer_set_pre_name(t, "default");
    if (tokenizer_finalize(t, e)) {
        err_prefix(e, "%s: ", name);
        goto fail;
    }
    // sentencepiece refuses a model that defines a piece twice; lookups would otherwise silently pick one.
    for (size_t i = 0; i < n_pieces; i++) {
        int32_t id = tokenizer_find(t, pieces[i].s, pieces[i].len);
        if (id != (int32_t)i) {
            ERR(e, "%s: piece %zu ('%.*s') is defined again as piece %d", name, i,
                (int)(pieces[i].len > 64 ? 64 : pieces[i].len), (const char *)pieces[i].s, (int)id);
            goto fail;
        }
    }
    free(pieces);
    *out = t;
    return 0;
fail:
    free(pieces);
    if (t) tokenizer_free(t);
    return -1;
}

int tokenizer_load_spm_model(const char *path, Tokenizer **out, Err *e) {
    *out = NULL;
    FileMap m;
    if (filemap_open(&m, path, e)) return -1;
    int rc = tokenizer_parse_spm_model(m.data, m.size, path, out, e);
    filemap_close(&m);
    return rc;
}
