// fuzz_tokenizer_json.c — libFuzzer target for the Hugging Face tokenizer.json loader and the encoder behind it:
// any input must load or fail with a message, never crash; a loaded tokenizer must encode and decode text (taken
// from the tail of the input, so the fuzzer varies it too) without crashing, with every id inside the vocabulary.
// Build with `make fuzz`, run build/fuzz/fuzz_tokenizer_json [CORPUS_DIR] (seed it with small tokenizer.json files).
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // the JSON ends at the first NUL byte; what follows is the text to encode
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "Hello world <s> 123 \xc3\xa9\xff";
    size_t text_len = nul ? size - json_len - 1 : strlen(text);
    Tokenizer *t = NULL;
    Err e;
    e.msg[0] = 0;
    if (tokenizer_parse_hf_json((const char *)data, json_len, "fuzz.json", &t, &e) != 0) {
        if (!e.msg[0] || t) abort();
        return 0;
    }
    for (int mode = 0; mode < 4; mode++) {
        TokenIds ids = {0};
        if (tokenizer_encode(t, text, text_len, mode, &ids, &e) == 0) {
            for (size_t i = 0; i < ids.n; i++)
                if (ids.ids[i] < 0 || (size_t)ids.ids[i] >= tokenizer_vocab_size(t)) abort();
            if ((mode & TOKENIZE_ORDINARY))
                for (size_t i = 0; i < ids.n; i++)
                    if (tokenizer_token_type(t, ids.ids[i]) == TOKEN_CONTROL &&
                        ids.ids[i] != tokenizer_special_id(t, TOKEN_ID_UNK)) {
                        // a control token may come only from the template (or be the UNK of unknown characters)
                        const int32_t *pre, *suf;
                        size_t np, ns;
                        tokenizer_get_template(t, &pre, &np, &suf, &ns);
                        if (!(mode & TOKENIZE_ADD_SPECIAL) || (i >= np && i + ns < ids.n)) abort();
                    }
            Buf out;
            buf_init(&out);
            if (tokenizer_decode(t, ids.ids, ids.n, mode & 1, &out, &e) != 0) abort();
            buf_free(&out);
        }
        token_ids_free(&ids);
    }
    tokenizer_free(t);
    return 0;
}
