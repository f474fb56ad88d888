// cpu.c — detect instruction-set extensions once (x86 via the compiler's cpuid builtins; others report none).
#include "cpu.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static CpuFeatures g_features;
static int g_detected;

const CpuFeatures *cpu_features(void) {
    if (g_detected) return &g_features;
    CpuFeatures f;
    memset(&f, 0, sizeof f);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512_vnni = __builtin_cpu_supports("avx512vnni");
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
    f.avx_vnni = __builtin_cpu_supports("avxvnni");
#endif
    f.f16c = f.avx2; // every AVX2 CPU lossy targets has F16C; kernels check avx2
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    f.n_cores = n > 0 ? (int)n : 1;
    g_features = f;
    g_detected = 1;
    return &g_features;
}

void cpu_features_string(char *out, size_t n) {
    const CpuFeatures *f = cpu_features();
    snprintf(out, n, "%d threads;%s%s%s%s%s%s%s", f->n_cores, f->avx2 ? " avx2" : "", f->fma ? " fma" : "",
             f->avx512f ? " avx512f" : "", f->avx512bw ? " avx512bw" : "", f->avx512_vnni ? " avx512_vnni" : "",
             f->avx512_bf16 ? " avx512_bf16" : "", f->avx_vnni ? " avx_vnni" : "");
}
