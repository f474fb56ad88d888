// matvec_impl.h — private to the matvec kernels: the per-path kernel tables (matvec.c, matvec_avx2.c,
// matvec_avx512.c). A kernel computes y[0..nrows) from nrows rows starting at w, row_stride bytes apart.
#ifndef LOSSY_MATVEC_IMPL_H
#define LOSSY_MATVEC_IMPL_H

#include "kernels/matvec.h"

typedef void (*MatvecRowsFn)(const uint8_t *w, size_t row_stride, int64_t nrows, const MatvecAct *a, float *y);

// Indexed by DType; NULL entries fall back to the scalar kernel.
typedef struct MatvecKernels {
    MatvecRowsFn fn[DT_COUNT];
} MatvecKernels;

#if defined(__x86_64__)
#define LOSSY_MATVEC_X86 1
void matvec_kernels_avx2(MatvecKernels *k);
void matvec_kernels_avx512(MatvecKernels *k);
#endif

#endif
