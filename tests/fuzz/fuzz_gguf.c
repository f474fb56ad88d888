// fuzz_gguf.c — libFuzzer target for the GGUF reader: any input must parse or fail with a message, never crash,
// and a parsed file's tensors must lie inside the input. Build with `make fuzz`, run build/fuzz/fuzz_gguf CORPUS.
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    GGUFFile g;
    Err e;
    if (gguf_parse(&g, data, size, "fuzz", &e) != 0) {
        if (!e.msg[0]) abort();
        return 0;
    }
    for (size_t i = 0; i < g.n_tensors; i++) {
        const GGUFTensor *t = &g.tensors[i];
        if ((const uint8_t *)t->data < data || (const uint8_t *)t->data + t->nbytes > data + size) abort();
    }
    for (size_t i = 0; i < g.n_kv; i++) {
        const GGUFKV *kv = &g.kv[i];
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type != GGUF_TYPE_STRING)
            for (uint64_t k = 0; k < kv->arr_count; k++) (void)gguf_arr_float(kv, k);
    }
    gguf_close(&g);
    return 0;
}
