// infer_bench.cu — the device limits `lossy bench --device cuda` compares against (see infer.h): device-to-device
// copy bandwidth and the cuBLASLt bf16 GEMM rate, both timed with CUDA events after a warm-up.
#include <stdlib.h>
#include <string.h>

#include "cuda/blas.h"
#include "cuda/infer.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

extern "C" int cuda_measure_copy_bandwidth(size_t bytes, double *gb_s, Err *e) {
    *gb_s = 0;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    int rc = -1;
    float best = 0;
    do {
        cudaError_t ce = cudaMalloc(&a, bytes);
        if (ce == cudaSuccess) ce = cudaMalloc(&b, bytes);
        if (ce == cudaSuccess) ce = cudaMemset(a, 1, bytes);
        if (ce == cudaSuccess) ce = cudaEventCreate(&e0);
        if (ce == cudaSuccess) ce = cudaEventCreate(&e1);
        for (int r = -1; r < 8 && ce == cudaSuccess; r++) { // r = -1: warm-up
            ce = cudaEventRecord(e0);
            if (ce == cudaSuccess) ce = cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
            if (ce == cudaSuccess) ce = cudaEventRecord(e1);
            if (ce == cudaSuccess) ce = cudaEventSynchronize(e1);
            float ms = 0;
            if (ce == cudaSuccess) ce = cudaEventElapsedTime(&ms, e0, e1);
            if (ce == cudaSuccess && r >= 0 && (best == 0 || ms < best)) best = ms;
        }
        if (ce != cudaSuccess) {
            ERR(e, "CUDA: copy bandwidth: %s", cudaGetErrorString(ce));
            break;
        }
        *gb_s = best > 0 ? 2.0 * (double)bytes / (best / 1e3) / 1e9 : 0; // read + write
        rc = 0;
    } while (0);
    cudaFree(a);
    cudaFree(b);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaGetLastError();
    return rc;
}

// Values in [-1, 1): zeros would flatter the tensor cores' power draw and hence their clock.
__global__ static void fill_bf16(__nv_bfloat16 *p, size_t n, uint32_t seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 13, x *= 0x5bd1e995u, x ^= x >> 15;
        p[i] = __float2bfloat16((float)(x >> 8) / 8388608.0f - 1.0f);
    }
}

extern "C" int cuda_measure_gemm_bf16(int64_t n, double *gflop_s, Err *e) {
    *gflop_s = 0;
    const CudaBlas *B = cuda_blas_get(e);
    if (!B) return -1;
    const size_t elems = (size_t)n * (size_t)n, ws = 32u << 20;
    __nv_bfloat16 *a = NULL, *b = NULL, *c = NULL;
    void *work = NULL;
    cublasLtHandle_t lt = NULL;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0, rc = -1;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double ms[7];
    const cublasOperation_t tr = CUBLAS_OP_T;
    const float one = 1.0f, zero = 0.0f;
#define LT(call) do { cublasStatus_t s_ = (call); if (s_ != CUBLAS_STATUS_SUCCESS) { cuda_blas_err_at(e, __FILE__, __LINE__, #call, s_); goto out; } } while (0)
#define CU(call) do { cudaError_t c_ = (call); if (c_ != cudaSuccess) { ERR(e, "CUDA: %s: %s", #call, cudaGetErrorString(c_)); goto out; } } while (0)
    CU(cudaMalloc((void **)&a, elems * 2));
    CU(cudaMalloc((void **)&b, elems * 2));
    CU(cudaMalloc((void **)&c, elems * 2));
    CU(cudaMalloc(&work, ws));
    fill_bf16<<<1024, 256>>>(a, elems, 1u);
    fill_bf16<<<1024, 256>>>(b, elems, 2u);
    CU(cudaGetLastError());
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    LT(B->cublasLtCreate(&lt));
    LT(B->cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(B->cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr)); // the layout prompts use
    LT(B->cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)n, (uint64_t)n, n));
    LT(B->cublasLtMatmulPreferenceCreate(&pref));
    LT(B->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LT(B->cublasLtMatmulAlgoGetHeuristic(lt, op, la, la, la, la, pref, 1, &res, &nres));
    if (nres < 1) {
        ERR(e, "cuBLASLt has no bf16 GEMM algorithm for %lld^3", (long long)n);
        goto out;
    }
    for (int r = -2; r < 7; r++) { // two warm-ups
        CU(cudaEventRecord(e0));
        LT(B->cublasLtMatmul(lt, op, &one, a, la, b, la, &zero, c, la, c, la, &res.algo, work, ws, 0));
        CU(cudaEventRecord(e1));
        CU(cudaEventSynchronize(e1));
        float t = 0;
        CU(cudaEventElapsedTime(&t, e0, e1));
        if (r >= 0) ms[r] = t;
    }
    qsort(ms, 7, sizeof ms[0], cmp_double);
    *gflop_s = 2.0 * (double)n * (double)n * (double)n / (ms[3] / 1e3) / 1e9;
    rc = 0;
#undef LT
#undef CU
out:
    if (pref) B->cublasLtMatmulPreferenceDestroy(pref);
    if (la) B->cublasLtMatrixLayoutDestroy(la);
    if (op) B->cublasLtMatmulDescDestroy(op);
    if (lt) B->cublasLtDestroy(lt);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a), cudaFree(b), cudaFree(c), cudaFree(work);
    cudaGetLastError();
    return rc;
}
