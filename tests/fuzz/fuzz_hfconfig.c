// fuzz_hfconfig.c — libFuzzer target for config.json parsing: the input is split at its first NUL byte into
// config.json and generation_config.json text; any input must give a valid ModelConfig or an error message.
// Build with `make fuzz`, run build/fuzz/fuzz_hfconfig tests/corpus/hfconfig.
#include <stdlib.h>
#include <string.h>

#include "formats/hfconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const char *nul = memchr(text, 0, size);
    size_t cfg_len = nul ? (size_t)(nul - text) : size;
    const char *gen = nul ? nul + 1 : NULL;
    size_t gen_len = nul ? size - cfg_len - 1 : 0;
    ModelConfig c;
    Err e;
    e.msg[0] = 0;
    if (hfconfig_parse(text, cfg_len, gen, gen_len, "fuzz", &c, &e) != 0) {
        if (!e.msg[0]) abort();
        return 0;
    }
    if (model_config_validate(&c, "fuzz", &e) != 0) abort();
    if (c.pos == POS_ROPE && c.rope_dim <= 1024) {
        double inv[512];
        model_config_rope_inv_freq(&c, inv);
    }
    return 0;
}
