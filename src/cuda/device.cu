// device.cu — CUDA device discovery for `lossy --version` and for the `--device cuda` checks of later commands.
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda/cuda.h"

extern "C" int cuda_device_count(char *why, size_t why_len) {
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        if (why && why_len) snprintf(why, why_len, "%s", cudaGetErrorString(rc));
        cudaGetLastError(); // clear the sticky error so later calls start clean
        return 0;
    }
    if (n == 0 && why && why_len) snprintf(why, why_len, "no CUDA device found");
    return n;
}

extern "C" int cuda_device_describe(int i, char *out, size_t out_len) {
    cudaDeviceProp p;
    cudaError_t rc = cudaGetDeviceProperties(&p, i);
    if (rc != cudaSuccess) {
        snprintf(out, out_len, "device %d: %s", i, cudaGetErrorString(rc));
        return -1;
    }
    snprintf(out, out_len, "device %d: %s, compute %d.%d, %.1f GiB", i, p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}
