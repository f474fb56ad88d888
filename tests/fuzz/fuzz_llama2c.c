// fuzz_llama2c.c — libFuzzer target for the llama2.c checkpoint reader: parse or fail with a message; parsed
// tensors (and version-2 scales) must lie inside the input. Build with `make fuzz`.
#include <stdlib.h>
#include <string.h>

#include "formats/llama2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Llama2cFile f;
    Err e;
    e.msg[0] = 0;
    if (llama2c_parse(&f, data, size, "fuzz", &e) != 0) {
        if (!e.msg[0]) abort();
        return 0;
    }
    for (size_t i = 0; i < f.n_tensors; i++) {
        const L2CTensor *t = &f.tensors[i];
        size_t extra = t->scales ? t->n_elements / (size_t)f.group_size * 4 : 0;
        if (t->offset + t->nbytes + extra > size) abort();
    }
    ModelConfig c;
    if (llama2c_model_config(&f, &c, &e) != 0) abort();
    llama2c_close(&f);
    return 0;
}
