// tokenizer_gguf.c — the tokenizer stored in GGUF metadata (tokenizer.ggml.*), as llama.cpp reads it.
//
//   model "llama": sentencepiece-style BPE over scores (merges ignored, as llama.cpp does), <0xXX> byte fallback,
//                  spaces escaped to "▁" and a "▁" prepended to each text segment when add_space_prefix (default on).
//   model "gpt2":  byte-level BPE over the merges list; tokens are spelled through the GPT-2 byte<->unicode table
//                  (except CONTROL/USER_DEFINED tokens, which are raw text); split regexes chosen by
//                  tokenizer.ggml.pre; llama-bpe/tekken also set ignore_merges and add_bos, as in llama.cpp.
// Defaults for missing keys follow llama.cpp (llama: BOS 1, EOS 2, UNK 0, add_bos on). Everything read from the
// file is validated: array types and lengths, ids in range, UTF-8 of text pieces, merges naming existing tokens.
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

static int get_bool_or(const GGUFFile *g, const char *key, bool def, bool *out, Err *e) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) {
        *out = def;
        return 0;
    }
    return gguf_get_bool(g, key, out, e);
}

static const char *const ROLE_KEYS[TOKEN_ROLE_COUNT] = {
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",     "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.mask_token_id",
    "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
};

bool tokenizer_gguf_has_vocab(const GGUFFile *g) {
    const GGUFKV *kv = gguf_find(g, "tokenizer.ggml.model");
    if (!kv || kv->type != GGUF_TYPE_STRING) return kv != NULL; // a wrongly typed key is an error for load() to report
    GStr m = kv->v.str;
    return !(m.len == strlen(TOKENIZER_GGUF_NO_VOCAB) && memcmp(m.ptr, TOKENIZER_GGUF_NO_VOCAB, m.len) == 0) &&
           !(m.len == 4 && memcmp(m.ptr, "none", 4) == 0);
}

static int load(const GGUFFile *g, Tokenizer **out, Err *e) {
    if (!tokenizer_gguf_has_vocab(g))
        return ERR(e, "no vocabulary in this file (tokenizer.ggml.model %s): it runs on token ids only, or with a "
                      "tokenizer given separately", gguf_find(g, "tokenizer.ggml.model") ? "is the no-vocabulary marker" : "is missing");
    GStr model;
    if (gguf_get_str(g, "tokenizer.ggml.model", &model, e)) return -1;
    bool spm;
    if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) spm = true;
    else if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0) spm = false;
    else return ERR(e, "unsupported tokenizer.ggml.model '%.*s' (lossy reads 'llama' and 'gpt2')", (int)model.len, model.ptr);

    const GGUFKV *tokens, *scores = NULL, *types = NULL, *merges = NULL;
    if (gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens, e)) return -1;
    uint64_t n = tokens->arr_count;
    if (n == 0) return ERR(e, "tokenizer.ggml.tokens is empty");
    if (n > TOKENIZER_MAX_VOCAB) return ERR(e, "tokenizer.ggml.tokens has %" PRIu64 " entries (max %d)", n, TOKENIZER_MAX_VOCAB);
    if (gguf_find(g, "tokenizer.ggml.scores")) {
        if (gguf_get_arr(g, "tokenizer.ggml.scores", -1, &scores, e)) return -1;
        if (scores->arr_type != GGUF_TYPE_FLOAT32 && scores->arr_type != GGUF_TYPE_FLOAT64)
            return ERR(e, "tokenizer.ggml.scores must be an array of floats (got %s)", gguf_type_name(scores->arr_type));
        if (scores->arr_count != n)
            return ERR(e, "tokenizer.ggml.scores has %" PRIu64 " entries for %" PRIu64 " tokens", scores->arr_count, n);
    }
    if (gguf_find(g, "tokenizer.ggml.token_type")) {
        if (gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &types, e)) return -1;
        if (types->arr_type == GGUF_TYPE_STRING || types->arr_type == GGUF_TYPE_ARRAY || types->arr_type == GGUF_TYPE_BOOL ||
            types->arr_type == GGUF_TYPE_FLOAT32 || types->arr_type == GGUF_TYPE_FLOAT64)
            return ERR(e, "tokenizer.ggml.token_type must be an array of integers (got %s)", gguf_type_name(types->arr_type));
        if (types->arr_count != n)
            return ERR(e, "tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRIu64 " tokens", types->arr_count, n);
    }
    if (!spm) {
        if (!gguf_find(g, "tokenizer.ggml.merges")) return ERR(e, "gpt2 tokenizer without tokenizer.ggml.merges");
        if (gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, e)) return -1;
    }

    Tokenizer *t = tokenizer_new(spm ? TOKENIZER_BPE_SPM : TOKENIZER_BPE_BYTES);
    t->merges_only = !spm;
    tokenizer_set_model_name(t, spm ? "llama" : "gpt2");
    Buf b;
    buf_init(&b);
    for (uint64_t i = 0; i < n; i++) {
        GStr s = tokens->arr_str[i];
        int64_t ty = types ? gguf_arr_int(types, i) : TOKEN_NORMAL;
        if (ty < TOKEN_NORMAL || ty > TOKEN_BYTE) {
            if (ty == 0) ty = TOKEN_NORMAL; // LLAMA_TOKEN_TYPE_UNDEFINED
            else {
                ERR(e, "token %" PRIu64 ": invalid token type %" PRId64, i, ty);
                goto fail;
            }
        }
        if (!tokenizer_utf8_valid(s.ptr, s.len)) {
            ERR(e, "token %" PRIu64 " is not valid UTF-8", i);
            goto fail;
        }
        const char *p = s.ptr;
        size_t len = s.len;
        if (!spm && ty != TOKEN_CONTROL && ty != TOKEN_USER_DEFINED) {
            b.len = 0;
            if (tokenizer_bytelevel_to_bytes(s.ptr, s.len, &b) == 0) p = b.data ? b.data : "", len = b.len;
            // a piece outside the byte table stays raw text (llama.cpp would print it as [UNK_BYTE...])
        }
        float sc = scores ? (float)gguf_arr_float(scores, i) : 0.0f;
        if (tokenizer_add_token(t, p, len, sc, (TokenType)ty, e) < 0) goto fail;
    }
    if (merges) {
        for (uint64_t i = 0; i < merges->arr_count; i++) {
            GStr m = merges->arr_str[i];
            // "left right", split at the first space after the first character (a piece may be a lone space
            // only in theory: byte-level spellings never contain ' ')
            const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
            if (!sp) {
                ERR(e, "merge %" PRIu64 " has no space separating two tokens", i);
                goto fail;
            }
            size_t ll = (size_t)(sp - m.ptr), rl = m.len - ll - 1;
            Buf lb, rb;
            buf_init(&lb);
            buf_init(&rb);
            int rc = 0;
            if (tokenizer_bytelevel_to_bytes(m.ptr, ll, &lb) || tokenizer_bytelevel_to_bytes(sp + 1, rl, &rb)) {
                rc = ERR(e, "merge %" PRIu64 " is not spelled in the byte-level alphabet", i);
            } else {
                rc = tokenizer_add_merge_str(t, lb.data ? lb.data : "", lb.len, rb.data ? rb.data : "", rb.len, e);
            }
            buf_free(&lb);
            buf_free(&rb);
            if (rc) goto fail;
        }
    }
    buf_free(&b);

    // pre-tokenizer, flags
    bool add_bos = spm, add_eos = false, add_space_prefix = spm, ignore = false;
    if (spm) {
        tokenizer_set_special_id(t, TOKEN_ID_BOS, 1 < (int64_t)n ? 1 : -1);
        tokenizer_set_special_id(t, TOKEN_ID_EOS, 2 < (int64_t)n ? 2 : -1);
        tokenizer_set_special_id(t, TOKEN_ID_UNK, 0);
        tokenizer_set_byte_fallback(t, true);
    } else {
        const GGUFKV *pre = gguf_find(g, "tokenizer.ggml.pre");
        char name[128] = "default";
        if (pre) {
            if (pre->type != GGUF_TYPE_STRING) {
                ERR(e, "tokenizer.ggml.pre must be a string (got %s)", gguf_type_name(pre->type));
                goto fail_nobuf;
            }
            if (pre->v.str.len >= sizeof name) {
                ERR(e, "tokenizer.ggml.pre is too long");
                goto fail_nobuf;
            }
            memcpy(name, pre->v.str.ptr, pre->v.str.len);
            name[pre->v.str.len] = 0;
        }
        if (tokenizer_add_pretok_preset(t, name, e)) {
            err_prefix(e, "tokenizer.ggml.pre: ");
            goto fail_nobuf;
        }
        tokenizer_set_pre_name(t, name);
        // GPT-2's reference tokenizers encode "<|endoftext|>" written in text as text (see tokenizer.h)
        if (!strcmp(name, "gpt-2")) tokenizer_set_parse_special(t, false);
        if (!strcmp(name, "llama3") || !strcmp(name, "llama-bpe") || !strcmp(name, "llama-v3") ||
            !strcmp(name, "falcon3") || !strcmp(name, "tekken"))
            ignore = true, add_bos = true;
    }
    for (int r = 0; r < TOKEN_ROLE_COUNT; r++) {
        const GGUFKV *kv = gguf_find(g, ROLE_KEYS[r]);
        if (!kv) continue;
        int64_t id;
        if (gguf_get_int(g, ROLE_KEYS[r], &id, e)) goto fail_nobuf;
        // llama.cpp writes "no such token" as u32 0xFFFFFFFF (its LLAMA_TOKEN_NULL, -1 as i32)
        if (id == -1 || id == (int64_t)UINT32_MAX) continue;
        if (id < 0 || (uint64_t)id >= n) {
            ERR(e, "%s = %" PRId64 " is out of range (vocabulary has %" PRIu64 " tokens)", ROLE_KEYS[r], id, n);
            goto fail_nobuf;
        }
        tokenizer_set_special_id(t, (TokenRole)r, (int32_t)id);
    }
    if (get_bool_or(g, "tokenizer.ggml.add_bos_token", add_bos, &add_bos, e) ||
        get_bool_or(g, "tokenizer.ggml.add_eos_token", add_eos, &add_eos, e) ||
        get_bool_or(g, "tokenizer.ggml.add_space_prefix", add_space_prefix, &add_space_prefix, e))
        goto fail_nobuf;
    if (add_bos && tokenizer_special_id(t, TOKEN_ID_BOS) < 0) add_bos = false;
    if (add_eos && tokenizer_special_id(t, TOKEN_ID_EOS) < 0) add_eos = false;
    tokenizer_set_add_bos_eos(t, add_bos, add_eos);
    tokenizer_set_ignore_merges(t, ignore);
    if (spm) {
        if (add_space_prefix) tokenizer_add_norm_prepend(t, "\xe2\x96\x81", 3);
        tokenizer_add_norm_replace(t, " ", 1, "\xe2\x96\x81", 3);
        tokenizer_set_decoder(t, TOKDEC_METASPACE | TOKDEC_BYTE_FALLBACK | (add_space_prefix ? TOKDEC_STRIP_SPACE : 0));
    }
    if (tokenizer_finalize(t, e)) goto fail_nobuf;
    *out = t;
    return 0;
fail:
    buf_free(&b);
fail_nobuf:
    tokenizer_free(t);
    return -1;
}

int tokenizer_load_gguf(const GGUFFile *g, Tokenizer **out, Err *e) {
    *out = NULL;
    if (load(g, out, e)) return err_prefix(e, "%s: ", g->name ? g->name : "GGUF");
    return 0;
}

int tokenizer_load_gguf_path(const char *path, Tokenizer **out, Err *e) {
    GGUFFile g;
    *out = NULL;
    if (gguf_open(&g, path, e)) return -1;
    int rc = tokenizer_load_gguf(&g, out, e);
    gguf_close(&g);
    return rc;
}
