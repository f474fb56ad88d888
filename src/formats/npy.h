// npy.h — NumPy .npy files (version 1.0, little-endian float32, C order): what `lossy logits` writes and what the
// reference logits in the fixtures are.
#ifndef LOSSY_NPY_H
#define LOSSY_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

// Write data (rows, cols) atomically.
int npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, Err *e);
// Read a 1-D or 2-D '<f4' array; *cols is 1 for 1-D. The caller frees *out.
int npy_read_f32(const char *path, float **out, int64_t *rows, int64_t *cols, Err *e);

#endif
