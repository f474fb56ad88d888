// load.c — tokenizer_load(): find the tokenizer in a file or directory and hand it to the right format loader.
//
// Detection looks at the content first (GGUF magic, JSON, protobuf) and falls back to the file name, so a renamed
// file still loads; a directory is searched for the files each format uses.
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int load_dir(const char *dir, Tokenizer **out, Err *e) {
    char *p = path_join(dir, "tokenizer.json");
    int rc;
    if (path_exists(p)) {
        rc = tokenizer_load_hf_json(p, out, e);
        free(p);
        return rc;
    }
    free(p);
    char *enc = path_join(dir, "encoder.json"), *bpe = path_join(dir, "vocab.bpe");
    if (path_exists(enc) && path_exists(bpe)) {
        rc = tokenizer_load_gpt2_files(enc, bpe, out, e);
        free(enc);
        free(bpe);
        return rc;
    }
    free(enc);
    free(bpe);
    p = path_join(dir, "tokenizer.model");
    if (path_exists(p)) {
        rc = tokenizer_load_spm_model(p, out, e);
        free(p);
        return rc;
    }
    free(p);
    p = path_join(dir, "tokenizer.bin");
    if (path_exists(p)) {
        rc = tokenizer_load_llama2c(p, out, e);
        free(p);
        return rc;
    }
    free(p);
    return ERR(e, "no tokenizer found in directory %s (looked for tokenizer.json, encoder.json + vocab.bpe, "
                  "tokenizer.model, tokenizer.bin)", dir);
}

int tokenizer_load(const char *path, Tokenizer **out, Err *e) {
    *out = NULL;
    if (!path || !*path) return ERR(e, "no tokenizer path given");
    if (path_is_dir(path)) return load_dir(path, out, e);
    if (!path_exists(path)) {
        // tiktoken encodings may be named rather than given as a path
        static const char *const names[] = {"cl100k_base", "o200k_base", "r50k_base", "p50k_base", "p50k_edit", NULL};
        for (size_t i = 0; names[i]; i++)
            if (strcmp(path, names[i]) == 0) return tokenizer_load_tiktoken(path, out, e);
        return ERR(e, "tokenizer file not found: %s", path);
    }
    uint8_t head[8] = {0};
    size_t got = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ERR(e, "cannot open %s", path);
    got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (got >= 4 && memcmp(head, "GGUF", 4) == 0) return tokenizer_load_gguf_path(path, out, e);
    if (str_ends_with(path, ".tiktoken")) return tokenizer_load_tiktoken(path, out, e);
    if (str_ends_with(path, ".model")) return tokenizer_load_spm_model(path, out, e);
    if (str_ends_with(path, ".bin")) return tokenizer_load_llama2c(path, out, e);
    if (str_ends_with(path, "encoder.json")) {
        // GPT-2's encoder.json needs its vocab.bpe next to it
        size_t n = strlen(path);
        char *bpe = xmalloc(n + 16);
        memcpy(bpe, path, n - strlen("encoder.json"));
        strcpy(bpe + n - strlen("encoder.json"), "vocab.bpe");
        int rc = path_exists(bpe) ? tokenizer_load_gpt2_files(path, bpe, out, e)
                                  : ERR(e, "%s: GPT-2 encoder.json needs vocab.bpe beside it", path);
        free(bpe);
        return rc;
    }
    size_t k = 0;
    while (k < got && (head[k] == ' ' || head[k] == '\n' || head[k] == '\r' || head[k] == '\t')) k++;
    if (str_ends_with(path, ".json") || (k < got && head[k] == '{')) return tokenizer_load_hf_json(path, out, e);
    if (got >= 1 && head[0] == 0x0a) return tokenizer_load_spm_model(path, out, e); // protobuf field 1, length-delimited
    return ERR(e, "%s: unrecognised tokenizer format (expected GGUF, tokenizer.json, tokenizer.model, tokenizer.bin, "
                  ".tiktoken, or a directory)", path);
}
