// blas.h — cuBLAS and cuBLASLt, loaded at run time with dlopen the first time a GPU path needs them.
//
// Why not link them: libcublasLt is ~540 MB and costs ~90 ms of dynamic relocation on every start of `lossy`, GPU or
// not (the test suite starts lossy hundreds of times), and a lossy built where nvcc exists must still start on a
// machine whose CUDA libraries are missing. Each entry point used is a typed pointer (decltype of the real
// prototype), so calls are type-checked exactly as if linked. Only .cu files include this.
#ifndef LOSSY_CUDA_BLAS_H
#define LOSSY_CUDA_BLAS_H

#include <cublasLt.h>
#include <cublas_v2.h>

#include "cuda/cuda_common.h"

#define LOSSY_CUBLAS_FUNCS(X)                                                                                      \
    X(cublasCreate_v2) X(cublasDestroy_v2) X(cublasSetStream_v2) X(cublasSetMathMode) X(cublasSetWorkspace_v2)      \
    X(cublasGetStatusString)
#define LOSSY_CUBLASLT_FUNCS(X)                                                                                    \
    X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtMatmul) X(cublasLtMatmulDescCreate)                             \
    X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute) X(cublasLtMatrixLayoutCreate)                   \
    X(cublasLtMatrixLayoutDestroy) X(cublasLtMatrixLayoutSetAttribute) X(cublasLtMatmulPreferenceCreate)           \
    X(cublasLtMatmulPreferenceDestroy) X(cublasLtMatmulPreferenceSetAttribute)                                     \
    X(cublasLtMatmulAlgoGetHeuristic)

typedef struct CudaBlas {
#define LOSSY_BLAS_PTR(name) decltype(&::name) name;
    LOSSY_CUBLAS_FUNCS(LOSSY_BLAS_PTR)
    LOSSY_CUBLASLT_FUNCS(LOSSY_BLAS_PTR)
#undef LOSSY_BLAS_PTR
    // C++ overloads these two (cudaDataType vs cublasComputeType_t compute type); the library exports the latter.
    cublasStatus_t (*cublasGemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                                   const void *, cudaDataType, int, const void *, cudaDataType, int, const void *,
                                   void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    cublasStatus_t (*cublasGemmStridedBatchedEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                                 const void *, const void *, cudaDataType, int, long long int,
                                                 const void *, cudaDataType, int, long long int, const void *, void *,
                                                 cudaDataType, int, long long int, int, cublasComputeType_t,
                                                 cublasGemmAlgo_t);
} CudaBlas;

// The loaded libraries (process-wide, loaded once, thread-safe). NULL with e filled when they cannot be loaded
// (the message names the libraries tried; LOSSY_CUBLAS_DIR overrides where to look first).
const CudaBlas *cuda_blas_get(Err *e);

// "<what>: <cuBLAS status string>" into e; returns -1. For `if (st != CUBLAS_STATUS_SUCCESS) return cuda_blas_err(...)`.
int cuda_blas_err_at(Err *e, const char *file, int line, const char *what, cublasStatus_t st);
#define CUBLAS_TRY(e, call)                                                                                        \
    do {                                                                                                           \
        cublasStatus_t cublas_try_st_ = (call);                                                                    \
        if (cublas_try_st_ != CUBLAS_STATUS_SUCCESS) return cuda_blas_err_at((e), __FILE__, __LINE__, #call, cublas_try_st_); \
    } while (0)

#endif
