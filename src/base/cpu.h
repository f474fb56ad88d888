// cpu.h — CPU feature detection, for runtime kernel dispatch and `lossy --version`.
#ifndef LOSSY_CPU_H
#define LOSSY_CPU_H

#include <stdbool.h>
#include <stddef.h>

typedef struct CpuFeatures {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16, avx_vnni;
    int n_cores; // online logical CPUs
} CpuFeatures;

const CpuFeatures *cpu_features(void);
void cpu_features_string(char *out, size_t n);

#endif
