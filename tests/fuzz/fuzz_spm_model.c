// fuzz_spm_model.c — libFuzzer target for the sentencepiece tokenizer.model loader (src/tokenizer/load_spm.c): any
// input must load or fail with a message, never crash; a loaded tokenizer must encode and decode text (part of the
// input itself, so invalid UTF-8 and special spellings reach the encoder) with every id inside the vocabulary.
// Build with `make fuzz`; run build/fuzz/fuzz_spm_model CORPUS_DIR (seed it with a real or small tokenizer.model).
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer *t = NULL;
    Err e;
    e.msg[0] = 0;
    if (tokenizer_parse_spm_model(data, size, "fuzz.model", &t, &e) != 0) {
        if (!e.msg[0] || t) abort();
        return 0;
    }
    if (!t) abort();
    size_t nv = tokenizer_vocab_size(t);
    static const char fixed[] = "Hello  w\xc3\xb6rld\n\t<s></s><unk> 12345 \xf0\x9f\x98\x80\xff";
    const char *texts[2] = {fixed, (const char *)data};
    size_t lens[2] = {sizeof fixed - 1, size < 256 ? size : 256};
    for (int k = 0; k < 2; k++) {
        for (int mode = 0; mode < 4; mode++) {
            TokenIds ids = {0};
            if (tokenizer_encode(t, texts[k], lens[k], mode, &ids, &e) != 0) abort();
            for (size_t i = 0; i < ids.n; i++)
                if (ids.ids[i] < 0 || (size_t)ids.ids[i] >= nv) abort();
            Buf out;
            buf_init(&out);
            if (tokenizer_decode(t, ids.ids, ids.n, 0, &out, &e) != 0) abort();
            buf_free(&out);
            token_ids_free(&ids);
        }
    }
    tokenizer_free(t);
    return 0;
}
