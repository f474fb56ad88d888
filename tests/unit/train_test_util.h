// train_test_util.h — helpers shared by the training tests (test_train_*.c, tests/e2e/test_train_cli.c): a small
// byte-level BPE vocabulary trained on the fly, corpus files cut from Tiny Shakespeare, datasets prepared from them,
// and file utilities.
#ifndef LOSSY_TESTS_TRAIN_TEST_UTIL_H
#define LOSSY_TESTS_TRAIN_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "test.h"
#include "tokenizer/train_bpe.h"
#include "tokenizer/write_tokenizer.h"
#include "train/data.h"

// <tmp>/name (static buffer per call site is the caller's: out must hold 512 bytes).
static inline const char *tt_path(char *out, const char *name) {
    snprintf(out, 512, "%s/%s", test_tmpdir(), name);
    return out;
}

// Bytes [off, off+n) of Tiny Shakespeare (clamped), malloc'ed and NUL-terminated; NULL (test failed) when missing.
static inline char *tt_shakespeare(size_t off, size_t n, size_t *len) {
    const char *p = fixture_path("corpora/tinyshakespeare.txt");
    if (!p) return NULL;
    char *all;
    size_t total;
    Err e;
    if (file_read_all(p, &all, &total, &e)) return NULL;
    if (off > total) off = total;
    if (n > total - off) n = total - off;
    char *s = xmalloc(n + 1);
    memcpy(s, all + off, n);
    s[n] = 0;
    free(all);
    *len = n;
    return s;
}

static inline int tt_write(const char *path, const void *data, size_t n) {
    Err e;
    return file_write_atomic_bytes(path, data, n, &e);
}

// A byte-level BPE vocabulary of `vocab` ids (with lossy's default special tokens, BOS <|bos|>, EOS <|endoftext|>)
// trained on text, written as a vocabulary GGUF at path. 0 on success.
static inline int tt_make_tokenizer(const char *path, const char *text, size_t len, size_t vocab) {
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    o.vocab_size = vocab;
    Err e;
    BpeTrainer *t = bpe_trainer_new(&o, &e);
    if (!t) return -1;
    BpeVocab v;
    int rc = bpe_trainer_add_text(t, text, len, &e);
    if (rc == 0) rc = bpe_trainer_train(t, &v, &e);
    bpe_trainer_free(t);
    if (rc) return -1;
    Tokenizer *tok = NULL;
    rc = bpe_vocab_set_bos_eos(&v, BPE_DEFAULT_BOS, BPE_DEFAULT_EOS, &e);
    if (rc == 0) rc = bpe_vocab_to_tokenizer(&v, true, &tok, &e);
    if (rc == 0) rc = tokenizer_write_gguf(tok, path, "test", &e);
    tokenizer_free(tok);
    bpe_vocab_free(&v);
    return rc;
}

static inline bool tt_same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    Err e;
    bool ok = file_read_all(a, &x, &nx, &e) == 0 && file_read_all(b, &y, &ny, &e) == 0 && nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return ok;
}

// Tokenizer (vocab) trained on the first `bytes` of Tiny Shakespeare, dataset prepared from them with 10% held out,
// at <tmp>/name (written into dir, 512 bytes). 0 on success.
static inline int tt_make_dataset(const char *name, size_t bytes, size_t vocab, char *dir) {
    char tok[512], c[512];
    size_t n;
    char *sh = tt_shakespeare(0, bytes, &n);
    if (!sh) return -1;
    int rc = tt_make_tokenizer(tt_path(tok, "tok.gguf"), sh, n, vocab);
    if (rc == 0) rc = tt_write(tt_path(c, "corpus.txt"), sh, n);
    free(sh);
    if (rc) return -1;
    const char *files[1] = {c};
    DataPrepareOpts o = {tok, tt_path(dir, name), 0.1, NULL, 1 << 20, NULL, NULL, NULL};
    DataPrepareStats st;
    Err e;
    rc = data_prepare(&o, files, 1, &st, &e);
    if (rc) test_fail_at(__FILE__, __LINE__, "%s", e.msg);
    return rc;
}

// Every tensor of GGUF files a and b has the same bytes (metadata such as timings may differ).
static inline bool tt_same_tensors(const char *a, const char *b) {
    GGUFFile ga, gb;
    Err e;
    if (gguf_open(&ga, a, &e)) return false;
    if (gguf_open(&gb, b, &e)) {
        gguf_close(&ga);
        return false;
    }
    bool ok = ga.n_tensors == gb.n_tensors;
    for (size_t i = 0; ok && i < ga.n_tensors; i++) {
        const GGUFTensor *t = &ga.tensors[i], *u = gguf_find_tensor(&gb, t->name);
        ok = u && u->nbytes == t->nbytes && memcmp(u->data, t->data, t->nbytes) == 0;
    }
    gguf_close(&ga);
    gguf_close(&gb);
    return ok;
}

#endif
