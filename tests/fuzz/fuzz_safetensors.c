// fuzz_safetensors.c — libFuzzer target for the safetensors reader: any input must parse or fail with a message,
// never crash, and a parsed file's tensor views must lie inside the input with sizes matching dtype x shape.
// Build with `make fuzz`, run build/fuzz/fuzz_safetensors tests/corpus/safetensors.
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SafeTensors st;
    Err e;
    e.msg[0] = 0;
    if (st_parse(&st, data, size, "fuzz", &e) != 0) {
        if (!e.msg[0]) abort();
        return 0;
    }
    for (size_t i = 0; i < st.n_tensors; i++) {
        const STTensor *t = &st.tensors[i];
        if ((const uint8_t *)t->data < data || (const uint8_t *)t->data + t->nbytes > data + size) abort();
        if (t->n_elements * st_dtype_size(t->st_dtype) != t->nbytes) abort();
        if (st_find(&st, t->name) != t) abort();
        if (t->n_elements) (void)st_tensor_get(t, t->n_elements - 1);
    }
    st_close(&st);
    return 0;
}
