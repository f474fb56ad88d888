// data.c — dataset preparation, validation and the windowed data loader (see data.h).
//
// Preparation streams: corpus files are memory-mapped one after another, cut into pieces (documents, and for
// byte-level vocabularies also ~1 MB runs of whole lines, since their pre-tokenizers never merge across a line
// start), pieces are encoded in parallel in batches, and tokens go out to shards in corpus order. Memory stays
// bounded by one batch plus one shard whatever the corpus size. Sentencepiece-style vocabularies are not cut inside
// a document: they prepend a space marker to every encoded text, and a cut would add one.
#include "train/data.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer/write_tokenizer.h"
#include "train/rng.h"

#define SHARD_MAGIC "LOSSYTOK"
#define SHARD_VERSION 1
#define PIECE_BYTES ((size_t)1 << 20)
#define BATCH_BYTES ((size_t)8 << 20)

uint64_t data_hash64(const void *p, size_t n, uint64_t h) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t h, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    return data_hash64(b, 8, h);
}

uint64_t data_tokenizer_hash(const Tokenizer *t) {
    uint64_t h = DATA_HASH_INIT;
    size_t n = tokenizer_vocab_size(t);
    h = hash_u64(h, n);
    h = hash_u64(h, (uint64_t)tokenizer_kind(t));
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *b = tokenizer_token_bytes(t, (int32_t)i, &len);
        h = hash_u64(h, (uint64_t)tokenizer_token_type(t, (int32_t)i));
        h = hash_u64(h, len);
        h = data_hash64(b, len, h);
    }
    size_t nm = tokenizer_n_merges(t);
    h = hash_u64(h, nm);
    for (size_t i = 0; i < nm; i++) {
        int32_t l, r;
        tokenizer_get_merge(t, i, &l, &r);
        h = hash_u64(h, (uint64_t)(uint32_t)l);
        h = hash_u64(h, (uint64_t)(uint32_t)r);
    }
    for (int role = 0; role < TOKEN_ROLE_COUNT; role++) h = hash_u64(h, (uint64_t)(int64_t)tokenizer_special_id(t, role));
    return h;
}

int64_t *data_token_byte_lengths(const Tokenizer *t) {
    size_t n = tokenizer_vocab_size(t);
    int64_t *len = xcalloc(n ? n : 1, sizeof(int64_t));
    Buf b;
    buf_init(&b);
    Err e;
    for (size_t i = 0; i < n; i++) {
        b.len = 0;
        if (tokenizer_token_piece(t, (int32_t)i, TOKENIZER_DECODE_SKIP_SPECIAL, &b, &e) == 0) len[i] = (int64_t)b.len;
    }
    buf_free(&b);
    return len;
}

// ---------------------------------------------------------------------------------------------------------------
// corpus checks

// Offset of the first byte that does not start a valid UTF-8 sequence (overlongs, surrogates and > U+10FFFF are
// invalid), or n when the text is valid.
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += len;
    }
    return n;
}

int data_check_corpus(const char *path, const void *data, size_t n, Err *e) {
    const uint8_t *p = data;
    if (n == 0) return ERR(e, "corpus '%s' is empty", path);
    const uint8_t *nul = memchr(p, 0, n);
    if (nul) return ERR(e, "corpus '%s' looks binary: NUL byte at offset %zu (give text files)", path, (size_t)(nul - p));
    size_t bad = utf8_invalid_at(p, n);
    if (bad < n) {
        size_t line = 1;
        for (size_t i = 0; i < bad; i++) line += p[i] == '\n';
        return ERR(e, "corpus '%s' is not valid UTF-8: byte 0x%02x at offset %zu (line %zu)", path, p[bad], bad, line);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// shard writing

typedef struct ShardInfo {
    char file[64];
    int split;
    int64_t tokens;
    uint64_t hash;
} ShardInfo;

typedef struct Writer {
    const DataPrepareOpts *o;
    int width;
    int64_t vocab;
    uint8_t *buf;      // header + up to shard_tokens tokens
    int64_t n;         // tokens in buf
    int split;         // split of the tokens in buf
    int counter[2];    // shards written per split
    ShardInfo *shards;
    size_t n_shards;
    uint64_t tokens[2], text_bytes[2];
    const int64_t *piece_len;
} Writer;

static int writer_flush(Writer *w, Err *e) {
    if (w->n == 0) return 0;
    ShardInfo si;
    memset(&si, 0, sizeof si);
    snprintf(si.file, sizeof si.file, "%s_%05d.bin", w->split == DATA_TRAIN ? "train" : "val", w->counter[w->split]++);
    si.split = w->split;
    si.tokens = w->n;
    uint8_t *h = w->buf;
    memcpy(h, SHARD_MAGIC, 8);
    uint64_t fields[3] = {(uint64_t)SHARD_VERSION | ((uint64_t)w->width << 32), (uint64_t)w->n, (uint64_t)w->vocab};
    for (int f = 0; f < 3; f++)
        for (int i = 0; i < 8; i++) h[8 + 8 * f + i] = (uint8_t)(fields[f] >> (8 * i));
    size_t bytes = (size_t)w->n * (size_t)w->width;
    si.hash = data_hash64(w->buf + DATA_SHARD_HEADER, bytes, DATA_HASH_INIT);
    Buf path;
    buf_init(&path);
    buf_printf(&path, "%s/%s", w->o->out_dir, si.file);
    int rc = file_write_atomic_bytes(path.data, w->buf, DATA_SHARD_HEADER + bytes, e);
    buf_free(&path);
    if (rc) return -1;
    w->shards = xrealloc(w->shards, (w->n_shards + 1) * sizeof *w->shards);
    w->shards[w->n_shards++] = si;
    w->n = 0;
    return 0;
}

static int writer_push(Writer *w, int split, const int32_t *ids, size_t n, Err *e) {
    if (split != w->split) {
        if (writer_flush(w, e)) return -1;
        w->split = split;
    }
    for (size_t i = 0; i < n; i++) {
        if (w->n == w->o->shard_tokens && writer_flush(w, e)) return -1;
        uint8_t *p = w->buf + DATA_SHARD_HEADER + (size_t)w->n * (size_t)w->width;
        uint32_t v = (uint32_t)ids[i];
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        if (w->width == 4) {
            p[2] = (uint8_t)(v >> 16);
            p[3] = (uint8_t)(v >> 24);
        }
        w->n++;
        w->text_bytes[split] += (uint64_t)w->piece_len[ids[i]];
    }
    w->tokens[split] += n;
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// pieces and parallel encoding

typedef struct Piece {
    const char *p;
    size_t n;
    bool bos, eos;
    int split;
    TokenIds ids;
} Piece;

typedef struct Batch {
    Piece *pieces;
    size_t n, cap, bytes;
    const Tokenizer *tok;
    int32_t bos, eos;
} Batch;

static void encode_worker(void *ctx, int ith, int nth) {
    Batch *b = ctx;
    Err e;
    for (size_t i = (size_t)ith; i < b->n; i += (size_t)nth) {
        Piece *pc = &b->pieces[i];
        pc->ids.n = 0;
        if (pc->bos) token_ids_push(&pc->ids, b->bos);
        // fails only for a tokenizer that is not finalized, which tokenizer_load never returns
        (void)tokenizer_encode(b->tok, pc->p, pc->n, TOKENIZE_ORDINARY, &pc->ids, &e);
        if (pc->eos) token_ids_push(&pc->ids, b->eos);
    }
}

typedef struct Prep {
    const DataPrepareOpts *o;
    Writer w;
    Batch b;
    bool cut_inside; // byte-level vocabularies: pieces may be cut at line starts inside a document
    uint64_t done, total, documents;
} Prep;

static int batch_run(Prep *pp, Err *e) {
    Batch *b = &pp->b;
    if (b->n == 0) return 0;
    if (b->n == 1) encode_worker(b, 0, 1);
    else threadpool_run(pp->o->pool, encode_worker, b);
    for (size_t i = 0; i < b->n; i++) {
        Piece *pc = &b->pieces[i];
        if (writer_push(&pp->w, pc->split, pc->ids.ids, pc->ids.n, e)) return -1;
        pp->done += pc->n;
    }
    b->n = 0;
    b->bytes = 0;
    if (pp->o->progress) pp->o->progress(pp->o->progress_ctx, pp->done, pp->total, pp->w.tokens[0] + pp->w.tokens[1]);
    return 0;
}

static int add_piece(Prep *pp, const char *p, size_t n, bool bos, bool eos, int split, Err *e) {
    Batch *b = &pp->b;
    if (b->n == b->cap) {
        size_t old = b->cap;
        b->cap = b->cap ? 2 * b->cap : 64;
        b->pieces = xrealloc(b->pieces, b->cap * sizeof *b->pieces);
        memset(b->pieces + old, 0, (b->cap - old) * sizeof *b->pieces);
    }
    Piece *pc = &b->pieces[b->n++];
    pc->p = p;
    pc->n = n;
    pc->bos = bos;
    pc->eos = eos;
    pc->split = split;
    b->bytes += n;
    if (b->bytes >= BATCH_BYTES || b->n >= 4096) return batch_run(pp, e);
    return 0;
}

// Cut point near `at` in [p, p+n): just after a newline that is followed by a non-space byte (a pre-token
// boundary for every byte-level split regex lossy knows), searching forward; n when there is none.
static size_t line_cut(const char *p, size_t n, size_t at) {
    for (size_t i = at; i + 1 < n; i++)
        if (p[i] == '\n' && p[i + 1] != '\n' && p[i + 1] != '\r' && p[i + 1] != ' ' && p[i + 1] != '\t') return i + 1;
    return n;
}

// One part of a document [p, p+n) that lies entirely in one split.
static int add_doc_part(Prep *pp, const char *p, size_t n, bool bos, bool eos, int split, Err *e) {
    while (pp->cut_inside && n > PIECE_BYTES) {
        size_t cut = line_cut(p, n, PIECE_BYTES);
        if (cut >= n) break;
        if (add_piece(pp, p, cut, bos, false, split, e)) return -1;
        p += cut;
        n -= cut;
        bos = false;
    }
    if (n == 0 && !bos && !eos) return 0;
    return add_piece(pp, p, n, bos, eos, split, e);
}

// A document at global byte offset g0; val_start is the global offset where the validation split begins.
static int add_document(Prep *pp, const char *p, size_t n, uint64_t g0, uint64_t val_start, Err *e) {
    if (n == 0) return 0;
    pp->documents++;
    bool has_bos = pp->b.bos >= 0, has_eos = pp->b.eos >= 0;
    if (g0 + n <= val_start) return add_doc_part(pp, p, n, has_bos, has_eos, DATA_TRAIN, e);
    if (g0 >= val_start) return add_doc_part(pp, p, n, has_bos, has_eos, DATA_VAL, e);
    // the split boundary falls inside this document: cut at a line start past it
    size_t cut = line_cut(p, n, (size_t)(val_start - g0));
    if (cut >= n) return add_doc_part(pp, p, n, has_bos, has_eos, DATA_TRAIN, e);
    if (add_doc_part(pp, p, cut, has_bos, false, DATA_TRAIN, e)) return -1;
    return add_doc_part(pp, p + cut, n - cut, false, has_eos, DATA_VAL, e);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static int add_file(Prep *pp, const char *p, size_t n, uint64_t g0, uint64_t val_start, Err *e) {
    const char *sep = pp->o->doc_sep;
    if (!sep || !*sep) return add_document(pp, p, n, g0, val_start, e);
    size_t sl = strlen(sep), pos = 0;
    while (pos <= n) {
        const char *hit = memmem(p + pos, n - pos, sep, sl);
        size_t end = hit ? (size_t)(hit - p) : n, a = pos, b = end;
        while (a < b && is_space(p[a])) a++;
        while (b > a && is_space(p[b - 1])) b--;
        if (add_document(pp, p + a, b - a, g0 + a, val_start, e)) return -1;
        if (!hit) break;
        pos = end + sl;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// manifest

static int write_manifest(const DataPrepareOpts *o, const Writer *w, const Tokenizer *tok, uint64_t tok_hash,
                          const char *const *files, const uint64_t *file_bytes, size_t n_files, uint64_t documents,
                          Err *e) {
    char hex[32];
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("lossy-tokens"));
    json_object_set_new(root, "version", json_integer(1));
    json_t *jt = json_object();
    json_object_set_new(jt, "file", json_string(DATA_TOKENIZER));
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)tok_hash);
    json_object_set_new(jt, "hash", json_string(hex));
    json_object_set_new(jt, "vocab_size", json_integer((json_int_t)tokenizer_vocab_size(tok)));
    json_object_set_new(jt, "bos_id", json_integer(tokenizer_special_id(tok, TOKEN_ID_BOS)));
    json_object_set_new(jt, "eos_id", json_integer(tokenizer_special_id(tok, TOKEN_ID_EOS)));
    json_object_set_new(jt, "source", json_string(o->tokenizer));
    json_object_set_new(root, "tokenizer", jt);
    json_object_set_new(root, "token_bytes", json_integer(w->width));
    json_object_set_new(root, "val_fraction", json_real(o->val_fraction));
    json_object_set_new(root, "doc_sep", o->doc_sep ? json_string(o->doc_sep) : json_null());
    json_object_set_new(root, "documents", json_integer((json_int_t)documents));
    static const char *names[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        json_t *js = json_object();
        json_object_set_new(js, "tokens", json_integer((json_int_t)w->tokens[s]));
        json_object_set_new(js, "bytes", json_integer((json_int_t)w->text_bytes[s]));
        json_object_set_new(root, names[s], js);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < w->n_shards; i++) {
        json_t *sh = json_object();
        json_object_set_new(sh, "file", json_string(w->shards[i].file));
        json_object_set_new(sh, "split", json_string(names[w->shards[i].split]));
        json_object_set_new(sh, "tokens", json_integer(w->shards[i].tokens));
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)w->shards[i].hash);
        json_object_set_new(sh, "hash", json_string(hex));
        json_array_append_new(arr, sh);
    }
    json_object_set_new(root, "shards", arr);
    json_t *src = json_array();
    for (size_t i = 0; i < n_files; i++) {
        json_t *f = json_object();
        json_t *name = json_string(files[i]);
        json_object_set_new(f, "path", name ? name : json_string("(path not UTF-8)"));
        json_object_set_new(f, "bytes", json_integer((json_int_t)file_bytes[i]));
        json_array_append_new(src, f);
    }
    json_object_set_new(root, "sources", src);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return ERR(e, "cannot serialise the manifest");
    Buf path;
    buf_init(&path);
    buf_printf(&path, "%s/%s", o->out_dir, DATA_MANIFEST);
    size_t len = strlen(text);
    text[len] = '\n'; // json_dumps' NUL becomes the final newline
    int rc = file_write_atomic_bytes(path.data, text, len + 1, e);
    free(text);
    buf_free(&path);
    return rc;
}

int data_prepare(const DataPrepareOpts *o, const char *const *files, size_t n_files, DataPrepareStats *st, Err *e) {
    memset(st, 0, sizeof *st);
    if (n_files == 0) return ERR(e, "no corpus files given");
    if (!(o->val_fraction >= 0 && o->val_fraction <= 0.5)) return ERR(e, "--val-fraction %g must be in [0, 0.5]", o->val_fraction);
    if (o->shard_tokens <= 0) return ERR(e, "--shard-tokens must be positive");
    Tokenizer *tok = NULL;
    if (tokenizer_load(o->tokenizer, &tok, e)) return err_prefix(e, "tokenizer '%s': ", o->tokenizer);
    size_t vocab = tokenizer_vocab_size(tok);
    int32_t bos = tokenizer_special_id(tok, TOKEN_ID_BOS), eos = tokenizer_special_id(tok, TOKEN_ID_EOS);
    if (eos == bos) eos = -1;
    int rc = -1;
    FileMap *maps = xcalloc(n_files, sizeof *maps);
    uint64_t *file_bytes = xcalloc(n_files, sizeof *file_bytes);
    Prep pp;
    memset(&pp, 0, sizeof pp);
    if (bos < 0 && eos < 0) {
        ERR(e, "tokenizer '%s' has neither a BOS nor an EOS token to separate documents", o->tokenizer);
        goto done;
    }
    if (vocab == 0 || vocab > (size_t)INT32_MAX) {
        ERR(e, "tokenizer '%s' has an unusable vocabulary size %zu", o->tokenizer, vocab);
        goto done;
    }
    if (path_exists(o->out_dir) && !path_is_dir(o->out_dir)) {
        ERR(e, "output '%s' exists and is not a directory", o->out_dir);
        goto done;
    }
    if (!path_exists(o->out_dir) && mkdir(o->out_dir, 0755) != 0) {
        ERR(e, "cannot create directory '%s': %s", o->out_dir, strerror(errno));
        goto done;
    }
    // an old manifest would describe shards this run is about to replace
    Buf mpath;
    buf_init(&mpath);
    buf_printf(&mpath, "%s/%s", o->out_dir, DATA_MANIFEST);
    if (path_exists(mpath.data) && unlink(mpath.data) != 0) {
        ERR(e, "cannot remove the old manifest '%s': %s", mpath.data, strerror(errno));
        buf_free(&mpath);
        goto done;
    }
    buf_free(&mpath);

    uint64_t total = 0;
    for (size_t i = 0; i < n_files; i++) {
        if (path_is_dir(files[i])) {
            ERR(e, "corpus '%s' is a directory (give the text files themselves)", files[i]);
            goto done;
        }
        if (filemap_open(&maps[i], files[i], e)) goto done;
        if (data_check_corpus(files[i], maps[i].data, maps[i].size, e)) goto done;
        file_bytes[i] = maps[i].size;
        total += maps[i].size;
    }
    uint64_t val_start = o->val_fraction > 0 ? (uint64_t)((double)total * (1.0 - o->val_fraction)) : UINT64_MAX;

    pp.o = o;
    pp.total = total;
    pp.cut_inside = tokenizer_kind(tok) == TOKENIZER_BPE_BYTES;
    pp.b.tok = tok;
    pp.b.bos = bos;
    pp.b.eos = eos;
    pp.w.o = o;
    pp.w.width = vocab <= 65536 ? 2 : 4;
    pp.w.vocab = (int64_t)vocab;
    size_t cap_bytes;
    if (!size_mul((size_t)o->shard_tokens, (size_t)pp.w.width, &cap_bytes) || !size_add(cap_bytes, DATA_SHARD_HEADER, &cap_bytes)) {
        ERR(e, "--shard-tokens %lld is too large", (long long)o->shard_tokens);
        goto done;
    }
    pp.w.buf = xmalloc(cap_bytes);
    pp.w.piece_len = data_token_byte_lengths(tok);
    uint64_t g = 0;
    for (size_t i = 0; i < n_files; i++) {
        if (add_file(&pp, (const char *)maps[i].data, maps[i].size, g, val_start, e) || batch_run(&pp, e)) {
            err_prefix(e, "corpus '%s': ", files[i]);
            goto done;
        }
        g += maps[i].size;
    }
    if (writer_flush(&pp.w, e)) goto done;
    if (pp.w.tokens[DATA_TRAIN] == 0) {
        ERR(e, "the corpus produced no training tokens");
        goto done;
    }
    Buf tpath;
    buf_init(&tpath);
    buf_printf(&tpath, "%s/%s", o->out_dir, DATA_TOKENIZER);
    int trc = tokenizer_write_gguf(tok, tpath.data, NULL, e);
    Tokenizer *back = NULL;
    if (trc == 0) trc = tokenizer_load(tpath.data, &back, e);
    // the trainer loads this copy: it must be the very vocabulary the shards were encoded with
    if (trc == 0 && data_tokenizer_hash(back) != data_tokenizer_hash(tok))
        trc = ERR(e, "the tokenizer does not survive a GGUF round trip (%s); cannot prepare data with it", tpath.data);
    tokenizer_free(back);
    buf_free(&tpath);
    if (trc) goto done;
    if (write_manifest(o, &pp.w, tok, data_tokenizer_hash(tok), files, file_bytes, n_files, pp.documents, e)) goto done;
    st->bytes = total;
    st->documents = pp.documents;
    for (int s = 0; s < 2; s++) {
        st->tokens[s] = pp.w.tokens[s];
        st->text_bytes[s] = pp.w.text_bytes[s];
    }
    st->n_shards = pp.w.n_shards;
    rc = 0;
done:
    for (size_t i = 0; i < pp.b.cap; i++) token_ids_free(&pp.b.pieces[i].ids);
    free(pp.b.pieces);
    free(pp.w.buf);
    free(pp.w.shards);
    free((void *)pp.w.piece_len);
    for (size_t i = 0; i < n_files; i++) filemap_close(&maps[i]);
    free(maps);
    free(file_bytes);
    tokenizer_free(tok);
    return rc;
}

// ---------------------------------------------------------------------------------------------------------------
// opening a dataset

static int json_get_u64(json_t *obj, const char *key, uint64_t max, uint64_t *out, const char *where, Err *e) {
    json_t *v = json_object_get(obj, key);
    if (!v || !json_is_integer(v)) return ERR(e, "%s: '%s' is missing or not an integer", where, key);
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max) return ERR(e, "%s: '%s' = %lld is out of range", where, key, (long long)x);
    *out = (uint64_t)x;
    return 0;
}

static int json_get_hash(json_t *obj, const char *key, uint64_t *out, const char *where, Err *e) {
    json_t *v = json_object_get(obj, key);
    const char *s = v ? json_string_value(v) : NULL;
    char *end = NULL;
    if (!s || strlen(s) != 16) return ERR(e, "%s: '%s' is missing or not a 16-digit hex hash", where, key);
    errno = 0;
    unsigned long long h = strtoull(s, &end, 16);
    if (errno || *end) return ERR(e, "%s: '%s' is not a hex hash", where, key);
    *out = h;
    return 0;
}

static int open_shard(Dataset *d, DataShard *s, uint64_t want_tokens, uint64_t want_hash, Err *e) {
    Buf path;
    buf_init(&path);
    buf_printf(&path, "%s/%s", d->dir, s->file);
    int rc = filemap_open(&s->map, path.data, e);
    buf_free(&path);
    if (rc) return -1;
    const uint8_t *p = s->map.data;
    size_t size = s->map.size;
    if (size < DATA_SHARD_HEADER || memcmp(p, SHARD_MAGIC, 8) != 0)
        return ERR(e, "shard '%s' is not a lossy token shard (bad header; %zu bytes)", s->file, size);
    uint32_t version = load_u32le(p + 8), width = load_u32le(p + 12);
    uint64_t n = load_u64le(p + 16), vocab = load_u64le(p + 24);
    if (version != SHARD_VERSION) return ERR(e, "shard '%s' has version %u (expected %d)", s->file, version, SHARD_VERSION);
    if ((int)width != d->token_bytes)
        return ERR(e, "shard '%s' stores %u-byte tokens but the manifest says %d", s->file, width, d->token_bytes);
    if ((int64_t)vocab != d->vocab_size)
        return ERR(e, "shard '%s' was encoded for a vocabulary of %llu tokens, the dataset's tokenizer has %lld", s->file,
                   (unsigned long long)vocab, (long long)d->vocab_size);
    if (n != want_tokens)
        return ERR(e, "shard '%s' holds %llu tokens but the manifest lists %llu", s->file, (unsigned long long)n,
                   (unsigned long long)want_tokens);
    size_t want_size;
    if (!size_mul((size_t)n, width, &want_size) || !size_add(want_size, DATA_SHARD_HEADER, &want_size) || size != want_size)
        return ERR(e, "shard '%s' is truncated or padded: %zu bytes, expected %llu header + %llu x %u", s->file, size,
                   (unsigned long long)DATA_SHARD_HEADER, (unsigned long long)n, width);
    s->tokens = p + DATA_SHARD_HEADER;
    s->n_tokens = (int64_t)n;
    if (data_hash64(s->tokens, (size_t)n * width, DATA_HASH_INIT) != want_hash)
        return ERR(e, "shard '%s' does not match its hash in the manifest (corrupted or from another preparation)", s->file);
    for (int64_t i = 0; i < s->n_tokens; i++) {
        int32_t id = dataset_token(d, s, i);
        if (id < 0 || id >= d->vocab_size)
            return ERR(e, "shard '%s': token id %d at position %lld is outside the vocabulary (%lld)", s->file, id,
                       (long long)i, (long long)d->vocab_size);
    }
    return 0;
}

int dataset_open(Dataset *d, const char *dir, Err *e) {
    memset(d, 0, sizeof *d);
    d->dir = xstrdup(dir);
    Buf path;
    buf_init(&path);
    buf_printf(&path, "%s/%s", dir, DATA_MANIFEST);
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL;
    int rc = -1;
    if (!path_is_dir(dir)) {
        ERR(e, "dataset '%s' is not a directory", dir);
        goto done;
    }
    if (!path_exists(path.data)) {
        ERR(e, "dataset '%s' has no %s (not prepared by `lossy data prepare`, or preparation did not finish)", dir, DATA_MANIFEST);
        goto done;
    }
    if (file_read_all(path.data, &text, &len, e)) goto done;
    d->manifest_hash = data_hash64(text, len, DATA_HASH_INIT);
    json_error_t je;
    root = json_loadb(text, len, 0, &je);
    if (!root || !json_is_object(root)) {
        ERR(e, "%s: invalid JSON at line %d: %s", path.data, je.line, root ? "not an object" : je.text);
        goto done;
    }
    const char *fmt = json_string_value(json_object_get(root, "format"));
    uint64_t version = 0, width = 0, vocab = 0;
    if (!fmt || strcmp(fmt, "lossy-tokens") != 0) {
        ERR(e, "%s: 'format' is not \"lossy-tokens\"", path.data);
        goto done;
    }
    if (json_get_u64(root, "version", 1000, &version, path.data, e)) goto done;
    if (version != 1) {
        ERR(e, "%s: manifest version %llu is not supported (expected 1)", path.data, (unsigned long long)version);
        goto done;
    }
    if (json_get_u64(root, "token_bytes", 8, &width, path.data, e)) goto done;
    if (width != 2 && width != 4) {
        ERR(e, "%s: token_bytes must be 2 or 4 (got %llu)", path.data, (unsigned long long)width);
        goto done;
    }
    d->token_bytes = (int)width;
    json_t *jt = json_object_get(root, "tokenizer");
    if (!json_is_object(jt)) {
        ERR(e, "%s: 'tokenizer' is missing", path.data);
        goto done;
    }
    if (json_get_u64(jt, "vocab_size", INT32_MAX, &vocab, path.data, e) || json_get_hash(jt, "hash", &d->tokenizer_hash, path.data, e))
        goto done;
    if (vocab == 0 || (width == 2 && vocab > 65536)) {
        ERR(e, "%s: vocab_size %llu does not fit %llu-byte tokens", path.data, (unsigned long long)vocab, (unsigned long long)width);
        goto done;
    }
    d->vocab_size = (int64_t)vocab;
    static const char *names[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        json_t *js = json_object_get(root, names[s]);
        if (!json_is_object(js)) {
            ERR(e, "%s: '%s' is missing", path.data, names[s]);
            goto done;
        }
        if (json_get_u64(js, "tokens", UINT64_MAX >> 1, &d->tokens[s], path.data, e) ||
            json_get_u64(js, "bytes", UINT64_MAX >> 1, &d->text_bytes[s], path.data, e))
            goto done;
    }
    // the tokenizer copy must be the one the shards were encoded with
    Buf tpath;
    buf_init(&tpath);
    buf_printf(&tpath, "%s/%s", dir, DATA_TOKENIZER);
    int trc = tokenizer_load(tpath.data, &d->tok, e);
    if (trc) err_prefix(e, "dataset tokenizer '%s': ", tpath.data);
    buf_free(&tpath);
    if (trc) goto done;
    if ((int64_t)tokenizer_vocab_size(d->tok) != d->vocab_size) {
        ERR(e, "%s: the manifest says %lld tokens but %s has %zu", dir, (long long)d->vocab_size, DATA_TOKENIZER,
            tokenizer_vocab_size(d->tok));
        goto done;
    }
    if (data_tokenizer_hash(d->tok) != d->tokenizer_hash) {
        ERR(e, "%s: %s does not match the tokenizer the shards were encoded with (hash %016llx, manifest %016llx)", dir,
            DATA_TOKENIZER, (unsigned long long)data_tokenizer_hash(d->tok), (unsigned long long)d->tokenizer_hash);
        goto done;
    }
    json_t *arr = json_object_get(root, "shards");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        ERR(e, "%s: 'shards' is missing or empty", path.data);
        goto done;
    }
    d->n_shards = json_array_size(arr);
    d->shards = xcalloc(d->n_shards, sizeof *d->shards);
    uint64_t sums[2] = {0, 0};
    for (size_t i = 0; i < d->n_shards; i++) {
        json_t *sh = json_array_get(arr, i);
        char where[64];
        snprintf(where, sizeof where, "%s shard %zu", DATA_MANIFEST, i);
        const char *file = json_string_value(json_object_get(sh, "file"));
        const char *split = json_string_value(json_object_get(sh, "split"));
        uint64_t n = 0, h = 0;
        if (!file || !*file || strchr(file, '/') || strcmp(file, "..") == 0) {
            ERR(e, "%s: 'file' is missing or not a plain file name", where);
            goto done;
        }
        if (!split || (strcmp(split, "train") != 0 && strcmp(split, "val") != 0)) {
            ERR(e, "%s: 'split' must be \"train\" or \"val\"", where);
            goto done;
        }
        if (json_get_u64(sh, "tokens", UINT64_MAX >> 4, &n, where, e) || json_get_hash(sh, "hash", &h, where, e)) goto done;
        DataShard *s = &d->shards[i];
        s->file = xstrdup(file);
        s->split = strcmp(split, "train") == 0 ? DATA_TRAIN : DATA_VAL;
        if (open_shard(d, s, n, h, e)) {
            err_prefix(e, "%s: ", dir);
            goto done;
        }
        sums[s->split] += n;
    }
    for (int s = 0; s < 2; s++)
        if (sums[s] != d->tokens[s]) {
            ERR(e, "%s: the %s shards hold %llu tokens but the manifest's total is %llu", path.data, names[s],
                (unsigned long long)sums[s], (unsigned long long)d->tokens[s]);
            goto done;
        }
    rc = 0;
done:
    if (root) json_decref(root);
    free(text);
    buf_free(&path);
    if (rc) dataset_close(d);
    return rc;
}

void dataset_close(Dataset *d) {
    for (size_t i = 0; i < d->n_shards; i++) {
        free(d->shards[i].file);
        filemap_close(&d->shards[i].map);
    }
    free(d->shards);
    tokenizer_free(d->tok);
    free(d->dir);
    memset(d, 0, sizeof *d);
}

// ---------------------------------------------------------------------------------------------------------------
// loader

// Lay out the windows of epoch st.epoch: phase, per-shard first window ids, permutation.
static void loader_build_epoch(DataLoader *l) {
    uint64_t want = l->st.epoch + 1;
    if (l->perm_epoch == want) return;
    TrainRng r;
    rng_seed(&r, l->st.seed, 1000 + l->st.epoch);
    for (int attempt = 0; attempt < 2; attempt++) {
        l->phase = (l->shuffle && attempt == 0) ? (int64_t)rng_below(&r, (uint64_t)l->T) : 0;
        int64_t total = 0;
        for (size_t i = 0; i < l->n_split_shards; i++) {
            int64_t n = l->d->shards[l->shard_idx[i]].n_tokens;
            l->shard_first[i] = total;
            if (n >= l->phase + l->T + 1) total += (n - l->phase - 1) / l->T;
        }
        l->shard_first[l->n_split_shards] = total;
        l->n_windows = total;
        if (total > 0) break; // a phase that leaves no window (tiny shards) falls back to phase 0
    }
    if (l->shuffle) {
        free(l->perm);
        l->perm = xmalloc_array((size_t)l->n_windows, sizeof(int64_t));
        for (int64_t i = 0; i < l->n_windows; i++) l->perm[i] = i;
        for (int64_t i = l->n_windows - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1), t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    }
    l->perm_epoch = want;
}

int data_loader_init(DataLoader *l, const Dataset *d, int split, int64_t T, bool shuffle, uint64_t seed, Err *e) {
    memset(l, 0, sizeof *l);
    l->d = d;
    l->split = split;
    l->T = T;
    l->shuffle = shuffle;
    l->st.seed = seed;
    if (T <= 0) return ERR(e, "sequence length must be positive");
    l->shard_idx = xcalloc(d->n_shards ? d->n_shards : 1, sizeof(size_t));
    for (size_t i = 0; i < d->n_shards; i++)
        if (d->shards[i].split == split) l->shard_idx[l->n_split_shards++] = i;
    l->shard_first = xcalloc(l->n_split_shards + 1, sizeof(int64_t));
    loader_build_epoch(l);
    if (l->n_windows == 0) {
        int64_t longest = 0;
        for (size_t i = 0; i < l->n_split_shards; i++)
            if (d->shards[l->shard_idx[i]].n_tokens > longest) longest = d->shards[l->shard_idx[i]].n_tokens;
        int rc = ERR(e, "the %s split of '%s' has no window of %lld tokens (its longest shard has %lld tokens)",
                     split == DATA_TRAIN ? "train" : "validation", d->dir, (long long)(T + 1), (long long)longest);
        data_loader_free(l);
        return rc;
    }
    return 0;
}

void data_loader_free(DataLoader *l) {
    free(l->shard_idx);
    free(l->shard_first);
    free(l->perm);
    memset(l, 0, sizeof *l);
}

int data_loader_set_state(DataLoader *l, const DataLoaderState *s, Err *e) {
    l->st = *s;
    l->perm_epoch = 0;
    loader_build_epoch(l);
    if ((int64_t)l->st.index > l->n_windows)
        return ERR(e, "data position %llu is past the %lld windows of epoch %llu (a different dataset or sequence length?)",
                   (unsigned long long)l->st.index, (long long)l->n_windows, (unsigned long long)l->st.epoch);
    return 0;
}

int64_t data_loader_epoch_windows(const DataLoader *l) { return l->n_windows; }

void data_loader_next(DataLoader *l, int64_t B, int32_t *inputs, int32_t *targets) {
    for (int64_t b = 0; b < B; b++) {
        if ((int64_t)l->st.index >= l->n_windows) {
            l->st.epoch++;
            l->st.index = 0;
            loader_build_epoch(l);
        }
        int64_t w = l->shuffle ? l->perm[l->st.index] : (int64_t)l->st.index;
        l->st.index++;
        // the shard holding window w: last shard whose first window id <= w
        size_t lo = 0, hi = l->n_split_shards;
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (l->shard_first[mid] <= w) lo = mid;
            else hi = mid;
        }
        while (lo + 1 < l->n_split_shards && l->shard_first[lo + 1] <= w) lo++;
        const DataShard *s = &l->d->shards[l->shard_idx[lo]];
        int64_t off = l->phase + (w - l->shard_first[lo]) * l->T;
        for (int64_t t = 0; t < l->T; t++) {
            inputs[b * l->T + t] = dataset_token(l->d, s, off + t);
            targets[b * l->T + t] = dataset_token(l->d, s, off + t + 1);
        }
    }
}
