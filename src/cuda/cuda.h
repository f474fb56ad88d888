// cuda.h — the C interface to lossy's CUDA code (src/cuda/*.cu, compiled only where nvcc exists).
//
// C code calls these only under #ifdef LOSSY_CUDA. Without a GPU at run time they report that clearly instead of
// failing later: a build with CUDA support must still pass every CPU test on a machine with no GPU.
#ifndef LOSSY_CUDA_H
#define LOSSY_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Number of usable CUDA devices (0 when there is no driver or no GPU). When 0, why[] says why.
int cuda_device_count(char *why, size_t why_len);
// One line about device i: name, compute capability, memory. 0 on success, -1 on failure (message in out).
int cuda_device_describe(int i, char *out, size_t out_len);

#ifdef __cplusplus
}
#endif

#endif
