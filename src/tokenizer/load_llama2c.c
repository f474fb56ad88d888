// load_llama2c.c — llama2.c `tokenizer.bin` loader.
//
// Format (little-endian, no header magic, no token count): int32 max_token_length, then for each token until the end
// of the file: float32 score, int32 len, len bytes. The vocabulary size is not stored (llama2.c takes it from the
// model's config), so the file is read to its end and must end exactly on a record boundary.
//
// llama2.c's exporter wrote sentencepiece pieces with "▁" replaced by ' ', and BOS/EOS respelled "\n<s>\n" and
// "\n</s>\n"; it stores no token types. Types are inferred here as llama2.c's run.c treats them: "<0xXX>" pieces are
// byte tokens (its byte fallback), "<unk>" is UNKNOWN, and "<s>"/"</s>" (either spelling, stored as "<s>"/"</s>") are
// CONTROL, BOS and EOS. Where the file has no such spellings, BOS = 1 and EOS = 2 as run.c hard-codes.
//
// run.c's encoder maps onto the shared TOKENIZER_BPE_SPM encoder exactly: a dummy ' ' before non-empty text (its
// lookup of " " as the first token), characters with byte fallback, then merges of the adjacent pair whose
// concatenation has the highest score (leftmost on ties). No space escaping: the vocabulary already spells ' '.
// Decoding strips the space after BOS (TOKDEC_STRIP_SPACE) and turns <0xXX> into bytes, as run.c's decode does.
#include <stdio.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static bool is_byte_piece(const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    return n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && memchr(hex, s[3], 16) && memchr(hex, s[4], 16);
}

static bool spelled(const uint8_t *s, size_t n, const char *lit) {
    size_t m = strlen(lit);
    return n == m && memcmp(s, lit, m) == 0;
}

// Parse a tokenizer.bin image (the bytes must outlive the call only; tokens are copied).
static int parse_llama2c(const uint8_t *d, size_t size, const char *name, Tokenizer **out, Err *e) {
    *out = NULL;
    if (size < 4) return ERR(e, "%s: %zu bytes, too short for a llama2.c tokenizer (needs int32 max_token_length)", name, size);
    int32_t max_len = (int32_t)load_u32le(d);
    // A sane bound: sentencepiece pieces are short; a huge value means this is not a tokenizer.bin.
    if (max_len <= 0 || max_len > (1 << 16))
        return ERR(e, "%s: max_token_length %d is not in 1..65536 (not a llama2.c tokenizer?)", name, (int)max_len);

    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_SPM);
    size_t pos = 4;
    int32_t bos = -1, eos = -1, unk = -1;
    bool have_bytes = false;
    size_t n = 0;
    while (pos < size) {
        if (size - pos < 8) {
            ERR(e, "%s: token %zu at byte %zu: truncated record header (%zu bytes left, need 8)", name, n, pos, size - pos);
            goto fail;
        }
        uint32_t sbits = load_u32le(d + pos);
        float score;
        memcpy(&score, &sbits, sizeof score);
        int32_t len = (int32_t)load_u32le(d + pos + 4);
        if (score != score) {
            ERR(e, "%s: token %zu at byte %zu has a NaN score", name, n, pos);
            goto fail;
        }
        if (len < 0 || len > max_len) {
            ERR(e, "%s: token %zu at byte %zu has length %d (max_token_length %d)", name, n, pos, (int)len, (int)max_len);
            goto fail;
        }
        if ((size_t)len > size - pos - 8) {
            ERR(e, "%s: token %zu at byte %zu: %d bytes of text run past the end of the file", name, n, pos, (int)len);
            goto fail;
        }
        const uint8_t *s = d + pos + 8;
        size_t slen = (size_t)len;
        pos += 8 + slen;
        TokenType type = TOKEN_NORMAL;
        const uint8_t *bytes = s;
        size_t blen = slen;
        if (is_byte_piece(s, slen)) {
            type = TOKEN_BYTE;
            have_bytes = true;
        } else if (spelled(s, slen, "<unk>")) {
            type = TOKEN_UNKNOWN;
            if (unk < 0) unk = (int32_t)n;
        } else if (spelled(s, slen, "<s>") || spelled(s, slen, "\n<s>\n")) {
            type = TOKEN_CONTROL;
            bytes = (const uint8_t *)"<s>", blen = 3;
            if (bos < 0) bos = (int32_t)n;
        } else if (spelled(s, slen, "</s>") || spelled(s, slen, "\n</s>\n")) {
            type = TOKEN_CONTROL;
            bytes = (const uint8_t *)"</s>", blen = 4;
            if (eos < 0) eos = (int32_t)n;
        }
        if (tokenizer_add_token(t, bytes, blen, score, type, e) < 0) {
            err_prefix(e, "%s: token %zu: ", name, n);
            goto fail;
        }
        n++;
    }
    if (n == 0) {
        ERR(e, "%s: no tokens after the header", name);
        goto fail;
    }
    // run.c hard-codes BOS = 1 and EOS = 2; use that only where the vocabulary does not spell them.
    if (bos < 0 && n > 1) bos = 1;
    if (eos < 0 && n > 2) eos = 2;
    tokenizer_set_special_id(t, TOKEN_ID_BOS, bos);
    tokenizer_set_special_id(t, TOKEN_ID_EOS, eos);
    tokenizer_set_special_id(t, TOKEN_ID_UNK, unk);
    // run.c falls back to bytes unconditionally (id = byte + 3); only a vocabulary with byte pieces can do that.
    tokenizer_set_byte_fallback(t, have_bytes);
    tokenizer_set_add_bos_eos(t, bos >= 0, false);
    tokenizer_add_norm_prepend(t, " ", 1);
    tokenizer_set_decoder(t, TOKDEC_BYTE_FALLBACK | TOKDEC_STRIP_SPACE);
    tokenizer_set_model_name(t, "llama");
    tokenizer_set_pre_name(t, "default");
    if (tokenizer_finalize(t, e)) {
        err_prefix(e, "%s: ", name);
        tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
fail:
    tokenizer_free(t);
    return -1;
}

int tokenizer_load_llama2c(const char *path, Tokenizer **out, Err *e) {
    *out = NULL;
    FileMap m;
    if (filemap_open(&m, path, e)) return -1;
    int rc = parse_llama2c(m.data, m.size, path, out, e);
    filemap_close(&m);
    return rc;
}
