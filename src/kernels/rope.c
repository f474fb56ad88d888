// rope.c — rotary position embeddings: frequency table (with linear and Llama 3.1 scaling), rotation, inverse.
//
// Frequencies and angles are computed in double and rounded once to the float cos/sin tables, so a position far
// into a long context (Llama 3.1 runs to 131072) still gets an angle accurate to float precision. The rotation
// itself is float: two products and a sum per output, the same operations as the reference implementations.
#include "kernels/rope.h"

#include <math.h>

void rope_inv_freq(const RopeFreqSpec *spec, double *inv_freq) {
    int64_t half = spec->rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = pow(spec->theta, -(double)(2 * i) / (double)spec->rope_dim);
        if (spec->scaling == ROPE_FREQ_LINEAR) {
            f /= spec->factor;
        } else if (spec->scaling == ROPE_FREQ_LLAMA3) {
            // Long wavelengths (more than the original context / low_freq_factor) are slowed by the factor so they
            // stay inside the range seen in training; short ones are kept; the band between blends linearly in
            // orig_ctx / wavelength.
            double wavelen = 2.0 * M_PI / f;
            double low_wavelen = spec->orig_ctx / spec->low_freq_factor;
            double high_wavelen = spec->orig_ctx / spec->high_freq_factor;
            if (wavelen > low_wavelen) {
                f /= spec->factor;
            } else if (wavelen >= high_wavelen) {
                double s = (spec->orig_ctx / wavelen - spec->low_freq_factor) /
                           (spec->high_freq_factor - spec->low_freq_factor);
                f = (1.0 - s) * f / spec->factor + s * f;
            }
        }
        inv_freq[i] = f;
    }
}

void rope_cos_sin(float *cos_out, float *sin_out, const double *inv_freq, const int64_t *pos, int64_t T,
                  int64_t rope_dim) {
    int64_t half = rope_dim / 2;
    for (int64_t t = 0; t < T; t++) {
        double p = (double)pos[t];
        for (int64_t i = 0; i < half; i++) {
            double a = p * inv_freq[i];
            cos_out[t * half + i] = (float)cos(a);
            sin_out[t * half + i] = (float)sin(a);
        }
    }
}

// Rotate every pair by (cos, sin * sign): sign +1 is the forward rotation, -1 its inverse (the transpose).
static void rope_apply(float *out, const float *x, const float *cos_tab, const float *sin_tab, int64_t T,
                       int64_t n_head, int64_t head_dim, int64_t rope_dim, bool neox, float sign) {
    int64_t half = rope_dim / 2;
    // Interleaved: pair i is (2i, 2i+1); neox: pair i is (i, i + half).
    int64_t a_step = neox ? 1 : 2, b_off = neox ? half : 1;
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos_tab + t * half; // (rope_dim/2)
        const float *s = sin_tab + t * half; // (rope_dim/2)
        for (int64_t h = 0; h < n_head; h++) {
            const float *xv = x + (t * n_head + h) * head_dim; // (head_dim)
            float *ov = out + (t * n_head + h) * head_dim;     // (head_dim)
            for (int64_t i = 0; i < half; i++) {
                int64_t ia = i * a_step, ib = ia + b_off;
                float a = xv[ia], b = xv[ib], sn = sign * s[i];
                ov[ia] = a * c[i] - b * sn;
                ov[ib] = a * sn + b * c[i];
            }
            if (ov != xv)
                for (int64_t i = rope_dim; i < head_dim; i++) ov[i] = xv[i];
        }
    }
}

void rope_forward(float *out, const float *x, const float *cos_tab, const float *sin_tab, int64_t T, int64_t n_head,
                  int64_t head_dim, int64_t rope_dim, bool neox) {
    rope_apply(out, x, cos_tab, sin_tab, T, n_head, head_dim, rope_dim, neox, 1.0f);
}

void rope_backward(float *dx, const float *dout, const float *cos_tab, const float *sin_tab, int64_t T,
                   int64_t n_head, int64_t head_dim, int64_t rope_dim, bool neox) {
    rope_apply(dx, dout, cos_tab, sin_tab, T, n_head, head_dim, rope_dim, neox, -1.0f);
}
