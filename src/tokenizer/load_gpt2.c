// load_gpt2.c — OpenAI GPT-2 vocabulary files: `encoder.json` + `vocab.bpe` -> byte-level BPE Tokenizer.
//
// encoder.json is one JSON object {token: id}; tokens are spelled through GPT-2's byte<->unicode table ("Ġthe" =
// " the") and converted to raw bytes with tokenizer_bytelevel_to_bytes. vocab.bpe is a "#version: ..." line then one
// merge per line, "left right" in the same spelling; the line order is the merge rank. Encoding then follows the
// original encoder.py (and Hugging Face's GPT2Tokenizer): the GPT-2 split regex, then merges lowest rank first.
// "<|endoftext|>" is the one special token (CONTROL; BOS and EOS, as Hugging Face sets them); nothing is added to
// encoded text, even with TOKENIZE_ADD_SPECIAL, and "<|endoftext|>" written in the text is ordinary text in every
// mode (parse_special off): encoder.py, tiktoken's encode_ordinary and the shared Hugging Face reference ids agree.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

#define GPT2_EOT "<|endoftext|>"

static void excerpt(const char *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) k += (size_t)snprintf(out + k, cap - k, "\\x%02x", c);
        else out[k++] = (char)c;
    }
    out[k] = 0;
    if (n > 0 && k + 5 >= cap && cap > 4) memcpy(out + cap - 4, "...", 4);
}

static int add_vocab(Tokenizer *t, const char *path, int32_t *eot_id, Err *e) {
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, e)) return -1;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) return ERR(e, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column, je.text);
    int rc = -1;
    if (!json_is_object(root)) {
        ERR(e, "%s: expected a JSON object {token: id}", path);
        goto done;
    }
    if (json_object_size(root) == 0) {
        ERR(e, "%s: empty vocabulary", path);
        goto done;
    }
    if (json_object_size(root) > TOKENIZER_MAX_VOCAB) {
        ERR(e, "%s: %zu tokens, more than %d", path, json_object_size(root), TOKENIZER_MAX_VOCAB);
        goto done;
    }
    // Two spellings for one id would make decode ambiguous; catch them with a seen-bitmap over ids.
    size_t n_seen = json_object_size(root);
    uint8_t *seen = NULL;
    size_t seen_cap = 0;
    Buf raw;
    buf_init(&raw);
    const char *key;
    json_t *val;
    char ex[80];
    json_object_foreach(root, key, val) {
        excerpt(key, strlen(key), ex, sizeof ex);
        if (!json_is_integer(val)) {
            ERR(e, "%s: token '%s': id must be an integer, got %s", path, ex,
                json_is_string(val) ? "a string" : json_is_real(val) ? "a real number" : "a non-number");
            goto fail;
        }
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= TOKENIZER_MAX_VOCAB) {
            ERR(e, "%s: token '%s': id %lld out of range [0, %d)", path, ex, (long long)id, TOKENIZER_MAX_VOCAB);
            goto fail;
        }
        if ((size_t)id >= seen_cap) {
            size_t nc = seen_cap ? seen_cap : n_seen + 1;
            while (nc <= (size_t)id) nc *= 2;
            seen = xrealloc(seen, nc);
            memset(seen + seen_cap, 0, nc - seen_cap);
            seen_cap = nc;
        }
        if (seen[id]) {
            ERR(e, "%s: token '%s': id %lld is used by another token too", path, ex, (long long)id);
            goto fail;
        }
        seen[id] = 1;
        raw.len = 0;
        size_t klen = strlen(key);
        if (tokenizer_bytelevel_to_bytes(key, klen, &raw)) {
            ERR(e, "%s: token '%s' (id %lld) has a character outside GPT-2's byte-level alphabet", path, ex,
                (long long)id);
            goto fail;
        }
        TokenType type = TOKEN_NORMAL;
        if (klen == strlen(GPT2_EOT) && memcmp(key, GPT2_EOT, klen) == 0) {
            type = TOKEN_CONTROL;
            *eot_id = (int32_t)id;
        }
        if (tokenizer_set_token(t, (int32_t)id, raw.data ? raw.data : "", raw.len, 0.0f, type, e)) {
            err_prefix(e, "%s: token '%s': ", path, ex);
            goto fail;
        }
    }
    rc = 0;
fail:
    free(seen);
    buf_free(&raw);
done:
    json_decref(root);
    return rc;
}

static int add_merges(Tokenizer *t, const char *path, Err *e) {
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, e)) return -1;
    Buf l, r;
    buf_init(&l);
    buf_init(&r);
    int rc = -1;
    size_t pos = 0, line_no = 0;
    char ex[80];
    while (pos < len) {
        line_no++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > 0 && line[n - 1] == '\r') n--;
        if (n == 0) continue;
        if (line_no == 1 && n >= 8 && memcmp(line, "#version", 8) == 0) continue;
        const char *sp = memchr(line, ' ', n);
        excerpt(line, n, ex, sizeof ex);
        // Exactly two non-empty parts: a space inside a token would have been spelled 'Ġ'.
        if (!sp || sp == line || sp == line + n - 1 || memchr(sp + 1, ' ', (size_t)(line + n - sp - 1))) {
            ERR(e, "%s: line %zu: expected 'left right', got '%s'", path, line_no, ex);
            goto done;
        }
        l.len = r.len = 0;
        if (tokenizer_bytelevel_to_bytes(line, (size_t)(sp - line), &l) ||
            tokenizer_bytelevel_to_bytes(sp + 1, (size_t)(line + n - sp - 1), &r)) {
            ERR(e, "%s: line %zu: '%s' has a character outside GPT-2's byte-level alphabet", path, line_no, ex);
            goto done;
        }
        if (tokenizer_add_merge_str(t, l.data, l.len, r.data, r.len, e)) {
            err_prefix(e, "%s: line %zu: ", path, line_no);
            goto done;
        }
    }
    rc = 0;
done:
    buf_free(&l);
    buf_free(&r);
    free(text);
    return rc;
}

int tokenizer_load_gpt2_files(const char *encoder_json, const char *vocab_bpe, Tokenizer **out, Err *e) {
    *out = NULL;
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_BYTES);
    int32_t eot = -1;
    if (add_vocab(t, encoder_json, &eot, e) || add_merges(t, vocab_bpe, e)) goto fail;
    if (tokenizer_add_pretok_preset(t, "gpt2", e)) goto fail;
    tokenizer_set_special_id(t, TOKEN_ID_BOS, eot);
    tokenizer_set_special_id(t, TOKEN_ID_EOS, eot);
    tokenizer_set_add_bos_eos(t, false, false);
    tokenizer_set_parse_special(t, false);
    tokenizer_set_decoder(t, 0);
    tokenizer_set_model_name(t, "gpt2");
    tokenizer_set_pre_name(t, "gpt-2");
    if (tokenizer_finalize(t, e)) {
        err_prefix(e, "%s: ", encoder_json);
        goto fail;
    }
    // Byte-level BPE starts every word from single bytes: a vocabulary missing one cannot encode all text.
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (tokenizer_find(t, &c, 1) < 0) {
            ERR(e, "%s: no token for the single byte 0x%02x (GPT-2 vocabularies spell all 256)", encoder_json, b);
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    tokenizer_free(t);
    return -1;
}
