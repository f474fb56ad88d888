// blas.cu — dlopen loader for cuBLAS/cuBLASLt (see blas.h for why they are not linked).
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/blas.h"

static CudaBlas g_blas;
static int g_blas_state; // 0 not tried, 1 loaded, -1 failed
static char g_blas_msg[512];
static pthread_mutex_t g_blas_lock = PTHREAD_MUTEX_INITIALIZER;

// Try LOSSY_CUBLAS_DIR, the default search path (ld.so.cache, LD_LIBRARY_PATH, rpath), then CUDA_HOME and the usual
// toolkit folder. RTLD_GLOBAL so cuBLAS finds the cuBLASLt we loaded rather than a second copy.
static void *blas_open(const char *soname) {
    const char *dirs[3] = {getenv("LOSSY_CUBLAS_DIR"), getenv("CUDA_HOME"), "/usr/local/cuda"};
    char path[1024];
    if (dirs[0]) {
        snprintf(path, sizeof path, "%s/%s", dirs[0], soname);
        void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
        if (h) return h;
    }
    void *h = dlopen(soname, RTLD_NOW | RTLD_GLOBAL);
    if (h) return h;
    for (int i = 1; i < 3; i++) {
        if (!dirs[i]) continue;
        snprintf(path, sizeof path, "%s/lib64/%s", dirs[i], soname);
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
        if (h) return h;
    }
    return NULL;
}

static int blas_load(void) {
    void *lt = blas_open("libcublasLt.so." LOSSY_STR(CUBLAS_VER_MAJOR));
    void *bl = lt ? blas_open("libcublas.so." LOSSY_STR(CUBLAS_VER_MAJOR)) : NULL;
    if (!lt || !bl) {
        snprintf(g_blas_msg, sizeof g_blas_msg, "cannot load libcublasLt.so.%d / libcublas.so.%d (%s); set "
                 "LOSSY_CUBLAS_DIR to the folder holding them", CUBLAS_VER_MAJOR, CUBLAS_VER_MAJOR, dlerror());
        return -1;
    }
#define LOSSY_BLAS_SYM(lib, name)                                                                                  \
    g_blas.name = (decltype(g_blas.name))dlsym(lib, #name);                                                        \
    if (!g_blas.name) {                                                                                            \
        snprintf(g_blas_msg, sizeof g_blas_msg, "symbol %s missing from the cuBLAS libraries", #name);             \
        return -1;                                                                                                 \
    }
#define LOSSY_BLAS_SYM_BL(name) LOSSY_BLAS_SYM(bl, name)
#define LOSSY_BLAS_SYM_LT(name) LOSSY_BLAS_SYM(lt, name)
    LOSSY_CUBLAS_FUNCS(LOSSY_BLAS_SYM_BL)
    LOSSY_CUBLASLT_FUNCS(LOSSY_BLAS_SYM_LT)
    LOSSY_BLAS_SYM_BL(cublasGemmEx)
    LOSSY_BLAS_SYM_BL(cublasGemmStridedBatchedEx)
    return 0;
}

const CudaBlas *cuda_blas_get(Err *e) {
    pthread_mutex_lock(&g_blas_lock);
    if (g_blas_state == 0) g_blas_state = blas_load() == 0 ? 1 : -1;
    int st = g_blas_state;
    pthread_mutex_unlock(&g_blas_lock);
    if (st < 0) {
        ERR(e, "%s", g_blas_msg);
        return NULL;
    }
    return &g_blas;
}

int cuda_blas_err_at(Err *e, const char *file, int line, const char *what, cublasStatus_t st) {
    const char *s = g_blas.cublasGetStatusString ? g_blas.cublasGetStatusString(st) : "cuBLAS error";
    return err_set_at(e, file, line, "cuBLAS: %s: %s (status %d)", what, s, (int)st);
}
