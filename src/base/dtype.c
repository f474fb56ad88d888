// dtype.c — the table of GGML element types (see dtype.h). Sizes follow ggml's block structs.
#include "dtype.h"

#include <strings.h>

#include "util.h"

static const DTypeInfo TABLE[DT_COUNT] = {
    [DT_F32] = {"f32", 1, 4},        [DT_F16] = {"f16", 1, 2},          [DT_Q4_0] = {"q4_0", 32, 18},
    [DT_Q4_1] = {"q4_1", 32, 20},    [DT_Q5_0] = {"q5_0", 32, 22},      [DT_Q5_1] = {"q5_1", 32, 24},
    [DT_Q8_0] = {"q8_0", 32, 34},    [DT_Q8_1] = {"q8_1", 32, 36},      [DT_Q2_K] = {"q2_K", 256, 84},
    [DT_Q3_K] = {"q3_K", 256, 110},  [DT_Q4_K] = {"q4_K", 256, 144},    [DT_Q5_K] = {"q5_K", 256, 176},
    [DT_Q6_K] = {"q6_K", 256, 210},  [DT_Q8_K] = {"q8_K", 256, 292},    [DT_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [DT_IQ2_XS] = {"iq2_xs", 256, 74}, [DT_IQ3_XXS] = {"iq3_xxs", 256, 98}, [DT_IQ1_S] = {"iq1_s", 256, 50},
    [DT_IQ4_NL] = {"iq4_nl", 32, 18}, [DT_IQ3_S] = {"iq3_s", 256, 110}, [DT_IQ2_S] = {"iq2_s", 256, 82},
    [DT_IQ4_XS] = {"iq4_xs", 256, 136}, [DT_I8] = {"i8", 1, 1},         [DT_I16] = {"i16", 1, 2},
    [DT_I32] = {"i32", 1, 4},        [DT_I64] = {"i64", 1, 8},          [DT_F64] = {"f64", 1, 8},
    [DT_IQ1_M] = {"iq1_m", 256, 56}, [DT_BF16] = {"bf16", 1, 2},        [DT_TQ1_0] = {"tq1_0", 256, 54},
    [DT_TQ2_0] = {"tq2_0", 256, 66}, [DT_MXFP4] = {"mxfp4", 32, 17},
};

const DTypeInfo *dtype_info(uint32_t t) {
    if (t >= DT_COUNT || TABLE[t].name == NULL) return NULL;
    return &TABLE[t];
}

const char *dtype_name(uint32_t t) {
    const DTypeInfo *d = dtype_info(t);
    return d ? d->name : "unknown";
}

int dtype_from_name(const char *name) {
    for (int t = 0; t < DT_COUNT; t++)
        if (TABLE[t].name && strcasecmp(TABLE[t].name, name) == 0) return t;
    return -1;
}

int dtype_nbytes(uint32_t t, uint64_t n, size_t *out, Err *e) {
    const DTypeInfo *d = dtype_info(t);
    if (!d) return ERR(e, "unknown tensor type %u", t);
    if (n % d->block_size != 0)
        return ERR(e, "%llu elements is not a whole number of %s blocks of %u", (unsigned long long)n, d->name, d->block_size);
    uint64_t blocks = n / d->block_size;
    if (blocks > SIZE_MAX || !size_mul((size_t)blocks, d->type_size, out)) return ERR(e, "tensor size overflows");
    return 0;
}
