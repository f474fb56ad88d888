// test_ops.c — RMSNorm, LayerNorm, RoPE, activations, softmax/cross-entropy and embeddings against naive double
// references written here, and their backward passes against central finite differences of those references.
// Attention is in test_attention.c, matmul in test_matmul.c; the shared helpers are in ops_check.h.
#include "kernels/activation.h"
#include "kernels/embedding.h"
#include "kernels/fastmath.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "ops_check.h"
#include "test.h"

// ---------------------------------------------------------------------------------------------------------------
// fastmath: the vectorisable exp every softmax and activation uses

// Distance in units of the last place of the correctly rounded float result.
static double ulps(float got, double want) {
    float w = (float)want;
    double ulp = (double)nextafterf(fabsf(w), INFINITY) - fabsf(w);
    return fabs((double)got - want) / ulp;
}

TEST(ops_fastmath_exp_accuracy) {
    double worst = 0.0;
    float worst_x = 0.0f;
    // Every 4099th float (by bit pattern, so all exponents and many mantissa patterns) in [-87.3, 88.3].
    for (int sign = 0; sign < 2; sign++)
        for (uint32_t bits = 0; bits < 0x42B00000u; bits += 4099) {
            uint32_t b = bits | ((uint32_t)sign << 31);
            float x;
            memcpy(&x, &b, sizeof x);
            if (x < -87.3f || x > 88.3f) continue;
            double u = ulps(fm_expf(x), exp((double)x));
            if (u > worst) worst = u, worst_x = x;
        }
    CHECKF(worst <= 2.0, "fm_expf error %.3f ulp at %.9g", worst, (double)worst_x);
    CHECK(fm_expf(0.0f) == 1.0f);
    CHECK(fm_expf(-INFINITY) == 0.0f && fm_expf(-100.0f) == 0.0f);
    CHECK(isinf(fm_expf(INFINITY)) && isinf(fm_expf(89.0f)));
    CHECK(isnan(fm_expf(NAN)));
    CHECK(fm_sigmoidf(-100.0f) == 0.0f && fm_sigmoidf(100.0f) == 1.0f && fm_sigmoidf(0.0f) == 0.5f);
    for (float x = -10.0f; x <= 10.0f; x += 0.37f) {
        CHECK_NEAR(fm_tanhf(x), tanh((double)x), 2e-7);
        CHECK_NEAR(fm_sigmoidf(x), 1.0 / (1.0 + exp(-(double)x)), 2e-7 / (1.0 + exp(-(double)x)));
    }
    float row[37];
    ops_rand_fill(row, 37, 100.0f);
    row[11] = 500.0f;
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < 37; i++) m = fmax(m, row[i]), s += row[i];
    CHECK(fm_max_f32(row, 37) == (float)m && fm_max_f32(row, 0) == -INFINITY);
    CHECK_NEAR(fm_sum_f32(row, 37), s, 1e-9);
}

// ---------------------------------------------------------------------------------------------------------------
// RMSNorm

typedef struct NormCtx {
    double *x, *w, *b; // (N, C), (C), (C) or NULL
    const float *r;    // (N, C) loss weights
    double *out;       // (N, C) scratch
    int64_t N, C;
    double eps;
    bool layer;
} NormCtx;

static void ref_norm(NormCtx *c) {
    for (int64_t n = 0; n < c->N; n++) {
        const double *x = c->x + n * c->C;
        double mean = 0.0, ms = 0.0;
        if (c->layer) {
            for (int64_t i = 0; i < c->C; i++) mean += x[i];
            mean /= (double)c->C;
        }
        for (int64_t i = 0; i < c->C; i++) ms += (x[i] - mean) * (x[i] - mean);
        double inv = 1.0 / sqrt(ms / (double)c->C + c->eps);
        for (int64_t i = 0; i < c->C; i++)
            c->out[n * c->C + i] = (x[i] - mean) * inv * c->w[i] + (c->b ? c->b[i] : 0.0);
    }
}

static double norm_loss(void *ctx) {
    NormCtx *c = ctx;
    ref_norm(c);
    return ops_weighted_sum(c->out, c->r, c->N * c->C);
}

static void check_norm(bool layer, bool with_bias) {
    const int64_t N = 5, C = 37;
    const float eps = 1e-5f;
    float *x = ops_rand_new(N * C, 2.0f);
    for (int64_t i = 0; i < C; i++) x[2 * C + i] += 3.0f; // a row with a large mean: LayerNorm's two-pass variance
    float *w = ops_rand_new(C, 1.5f), *b = with_bias ? ops_rand_new(C, 0.5f) : NULL;
    float *r = ops_rand_new(N * C, 1.0f);
    float *out = xmalloc_array(N * C, sizeof(float)), *mean = xmalloc_array(N, sizeof(float));
    float *rstd = xmalloc_array(N, sizeof(float));
    NormCtx c = {ops_to_double(x, N * C), ops_to_double(w, C), b ? ops_to_double(b, C) : NULL, r,
                 xmalloc_array(N * C, sizeof(double)), N, C, eps, layer};

    if (layer) layernorm_forward(out, mean, rstd, x, w, b, N, C, eps);
    else rmsnorm_forward(out, rstd, x, w, N, C, eps);
    ref_norm(&c);
    OPS_CHECK_CLOSE("norm forward", out, NULL, c.out, N * C, 1e-6);
    double *want_rstd = xmalloc_array(N, sizeof(double));
    for (int64_t n = 0; n < N; n++) {
        double m = 0.0, v = 0.0;
        for (int64_t i = 0; i < C; i++) m += layer ? c.x[n * C + i] / (double)C : 0.0;
        for (int64_t i = 0; i < C; i++) v += (c.x[n * C + i] - m) * (c.x[n * C + i] - m);
        want_rstd[n] = 1.0 / sqrt(v / (double)C + eps);
        if (layer) CHECK_NEAR(mean[n], m, 1e-6 * (1.0 + fabs(m)));
    }
    OPS_CHECK_CLOSE("norm rstd", rstd, NULL, want_rstd, N, 1e-6);

    // In place (out aliases x) gives the same values.
    float *inplace = ops_copy(x, N * C);
    if (layer) layernorm_forward(inplace, NULL, NULL, inplace, w, b, N, C, eps);
    else rmsnorm_forward(inplace, NULL, inplace, w, N, C, eps);
    CHECK(memcmp(inplace, out, (size_t)(N * C) * sizeof(float)) == 0);

    // Backward: gradients accumulate onto what the buffers held.
    float *dx = ops_rand_new(N * C, 1.0f), *dw = ops_rand_new(C, 1.0f), *db = ops_rand_new(C, 1.0f);
    float *dx0 = ops_copy(dx, N * C), *dw0 = ops_copy(dw, C), *db0 = ops_copy(db, C);
    if (layer) layernorm_backward(dx, dw, b ? db : NULL, r, x, w, mean, rstd, N, C);
    else rmsnorm_backward(dx, dw, r, x, w, rstd, N, C);
    double *g = xmalloc_array(N * C, sizeof(double));
    ops_fd_grad(g, c.x, N * C, norm_loss, &c);
    OPS_CHECK_CLOSE("norm dx", dx, dx0, g, N * C, 1e-5);
    ops_fd_grad(g, c.w, C, norm_loss, &c);
    OPS_CHECK_CLOSE("norm dweight", dw, dw0, g, C, 1e-5);
    if (b) {
        ops_fd_grad(g, c.b, C, norm_loss, &c);
        OPS_CHECK_CLOSE("norm dbias", db, db0, g, C, 1e-5);
    }
    free(x), free(w), free(b), free(r), free(out), free(mean), free(rstd), free(inplace), free(want_rstd);
    free(dx), free(dw), free(db), free(dx0), free(dw0), free(db0), free(g);
    free(c.x), free(c.w), free(c.b), free(c.out);
}

TEST(ops_rmsnorm_forward_backward) { check_norm(false, false); }
TEST(ops_layernorm_forward_backward) {
    check_norm(true, true);
    check_norm(true, false);
}

// ---------------------------------------------------------------------------------------------------------------
// RoPE

// Reference rotation written from the two published formulas rather than from pair indices:
//   neox (Hugging Face): out = x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), rotate_half(x) = cat(-x2, x1)
//   interleaved (GPT-J / llama.cpp): view x as complex numbers x[2i] + i x[2i+1], multiply by e^(i angle_i).
typedef struct RopeCtx {
    double *x;            // (T, H, D)
    const double *inv;    // (R/2)
    const int64_t *pos;   // (T)
    const float *r;       // (T, H, D)
    double *out;          // (T, H, D)
    int64_t T, H, D, R;
    bool neox;
} RopeCtx;

static void ref_rope(RopeCtx *c) {
    int64_t half = c->R / 2;
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t h = 0; h < c->H; h++) {
            const double *x = c->x + (t * c->H + h) * c->D;
            double *o = c->out + (t * c->H + h) * c->D;
            for (int64_t d = c->R; d < c->D; d++) o[d] = x[d];
            if (c->neox) {
                for (int64_t d = 0; d < c->R; d++) {
                    double ang = (double)c->pos[t] * c->inv[d % half];
                    double rot = d < half ? -x[d + half] : x[d - half];
                    o[d] = x[d] * cos(ang) + rot * sin(ang);
                }
            } else {
                for (int64_t i = 0; i < half; i++) {
                    double ang = (double)c->pos[t] * c->inv[i];
                    double complex_re = x[2 * i], complex_im = x[2 * i + 1];
                    o[2 * i] = complex_re * cos(ang) - complex_im * sin(ang);
                    o[2 * i + 1] = complex_re * sin(ang) + complex_im * cos(ang);
                }
            }
        }
}

static double rope_loss(void *ctx) {
    RopeCtx *c = ctx;
    ref_rope(c);
    return ops_weighted_sum(c->out, c->r, c->T * c->H * c->D);
}

static void check_rope(int64_t D, int64_t R, bool neox) {
    const int64_t T = 5, H = 3, half = R / 2;
    const int64_t pos[5] = {0, 7, 3, 100, 4095};
    RopeFreqSpec spec = {.rope_dim = R, .theta = 10000.0, .scaling = ROPE_FREQ_NONE, .factor = 1.0};
    double *inv = xmalloc_array(half, sizeof(double));
    rope_inv_freq(&spec, inv);
    for (int64_t i = 0; i < half; i++) CHECK_NEAR(inv[i], 1.0 / pow(10000.0, 2.0 * i / R), 1e-15);
    float *cs = xmalloc_array(T * half, sizeof(float)), *sn = xmalloc_array(T * half, sizeof(float));
    rope_cos_sin(cs, sn, inv, pos, T, R);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < half; i++) {
            CHECK_NEAR(cs[t * half + i], cos(pos[t] * inv[i]), 1e-7);
            CHECK_NEAR(sn[t * half + i], sin(pos[t] * inv[i]), 1e-7);
        }

    int64_t n = T * H * D;
    float *x = ops_rand_new(n, 1.0f), *r = ops_rand_new(n, 1.0f), *out = xmalloc_array(n, sizeof(float));
    RopeCtx c = {ops_to_double(x, n), inv, pos, r, xmalloc_array(n, sizeof(double)), T, H, D, R, neox};
    rope_forward(out, x, cs, sn, T, H, D, R, neox);
    ref_rope(&c);
    OPS_CHECK_CLOSE(neox ? "rope neox forward" : "rope interleaved forward", out, NULL, c.out, n, 1e-6);
    for (int64_t t = 0; t < T; t++) // pass-through dims untouched
        for (int64_t h = 0; h < H; h++)
            for (int64_t d = R; d < D; d++) CHECK(out[(t * H + h) * D + d] == x[(t * H + h) * D + d]);

    // In place equals out of place.
    float *inplace = ops_copy(x, n);
    rope_forward(inplace, inplace, cs, sn, T, H, D, R, neox);
    CHECK(memcmp(inplace, out, (size_t)n * sizeof(float)) == 0);

    // Backward is the inverse rotation: forward then backward gives x back.
    rope_backward(inplace, inplace, cs, sn, T, H, D, R, neox);
    double *xd = ops_to_double(x, n);
    OPS_CHECK_CLOSE("rope backward(forward(x)) = x", inplace, NULL, xd, n, 1e-6);

    // Backward against finite differences of the reference.
    float *dx = xmalloc_array(n, sizeof(float));
    rope_backward(dx, r, cs, sn, T, H, D, R, neox);
    double *g = xmalloc_array(n, sizeof(double));
    ops_fd_grad(g, c.x, n, rope_loss, &c);
    OPS_CHECK_CLOSE("rope dx", dx, NULL, g, n, 1e-5);
    free(inv), free(cs), free(sn), free(x), free(r), free(out), free(c.x), free(c.out), free(inplace), free(xd);
    free(dx), free(g);
}

TEST(ops_rope_layouts_partial_and_backward) {
    check_rope(10, 10, false);
    check_rope(10, 10, true);
    check_rope(14, 6, false); // partial rotary: the last 8 dims pass through
    check_rope(14, 6, true);
}

// The two layouts are the same rotation up to a permutation of the head dims: the interleaved vector with dims
// reordered (0, 2, 4, ..., 1, 3, 5, ...) — what llama.cpp's converter undoes — rotates like the neox one.
TEST(ops_rope_layouts_are_a_permutation) {
    const int64_t T = 3, H = 2, D = 8, R = 8, half = R / 2;
    const int64_t pos[3] = {1, 5, 9};
    RopeFreqSpec spec = {.rope_dim = R, .theta = 10000.0, .scaling = ROPE_FREQ_NONE, .factor = 1.0};
    double inv[4];
    rope_inv_freq(&spec, inv);
    float cs[3 * 4], sn[3 * 4];
    rope_cos_sin(cs, sn, inv, pos, T, R);
    float x[3 * 2 * 8], xp[3 * 2 * 8], a[3 * 2 * 8], b[3 * 2 * 8];
    ops_rand_fill(x, T * H * D, 1.0f);
    for (int64_t v = 0; v < T * H; v++)
        for (int64_t i = 0; i < half; i++) {
            xp[v * D + i] = x[v * D + 2 * i];
            xp[v * D + half + i] = x[v * D + 2 * i + 1];
        }
    rope_forward(a, x, cs, sn, T, H, D, R, false);
    rope_forward(b, xp, cs, sn, T, H, D, R, true);
    for (int64_t v = 0; v < T * H; v++)
        for (int64_t i = 0; i < half; i++) {
            CHECK(a[v * D + 2 * i] == b[v * D + i]);
            CHECK(a[v * D + 2 * i + 1] == b[v * D + half + i]);
        }
}

TEST(ops_rope_llama3_and_linear_frequencies) {
    // Llama 3.1 8B's rope parameters.
    const int64_t R = 128, half = R / 2;
    const double theta = 500000.0, factor = 8.0, low = 1.0, high = 4.0, orig = 8192.0;
    RopeFreqSpec spec = {R, theta, ROPE_FREQ_LLAMA3, factor, low, high, orig};
    double got[64];
    rope_inv_freq(&spec, got);
    int bands[3] = {0, 0, 0};
    for (int64_t i = 0; i < half; i++) {
        // transformers' _compute_llama3_parameters, element by element.
        double f = 1.0 / pow(theta, (double)(2 * i) / (double)R);
        double wavelen = 2.0 * M_PI / f;
        double want;
        if (wavelen < orig / high) {
            want = f;
            bands[0]++;
        } else if (wavelen > orig / low) {
            want = f / factor;
            bands[2]++;
        } else {
            double smooth = (orig / wavelen - low) / (high - low);
            want = (1.0 - smooth) * f / factor + smooth * f;
            bands[1]++;
        }
        CHECKF(fabs(got[i] - want) <= 1e-12 * want, "llama3 inv_freq[%lld] = %.17g, want %.17g", (long long)i, got[i],
               want);
    }
    CHECKF(bands[0] > 0 && bands[1] > 0 && bands[2] > 0, "bands %d %d %d: every branch exercised", bands[0], bands[1],
           bands[2]);
    CHECK(got[0] == 1.0);                                                 // highest frequency untouched
    CHECK_NEAR(got[half - 1], pow(theta, -(double)(R - 2) / R) / factor, 1e-18); // lowest slowed by the factor

    RopeFreqSpec lin = {.rope_dim = 64, .theta = 10000.0, .scaling = ROPE_FREQ_LINEAR, .factor = 4.0};
    double l[32];
    rope_inv_freq(&lin, l);
    for (int64_t i = 0; i < 32; i++) CHECK_NEAR(l[i], pow(10000.0, -(double)(2 * i) / 64.0) / 4.0, 1e-15);
}

// ---------------------------------------------------------------------------------------------------------------
// Activations

typedef enum { A_SILU, A_GELU_TANH, A_GELU_ERF, A_RELU, A_SWIGLU } ActKind;

typedef struct ActCtx {
    double *x, *u; // (n), (n) (u only for SwiGLU)
    const float *r;
    int64_t n;
    ActKind kind;
} ActCtx;

static double ref_act(ActKind k, double x) {
    switch (k) {
    case A_SILU:
    case A_SWIGLU: return x / (1.0 + exp(-x));
    case A_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case A_GELU_ERF: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case A_RELU: return x > 0 ? x : 0.0;
    }
    return 0.0;
}

static double act_loss(void *ctx) {
    ActCtx *c = ctx;
    double s = 0.0;
    for (int64_t i = 0; i < c->n; i++) s += ref_act(c->kind, c->x[i]) * (c->kind == A_SWIGLU ? c->u[i] : 1.0) * c->r[i];
    return s;
}

static void check_act(ActKind kind) {
    const int64_t n = 103;
    float *x = ops_rand_new(n, 6.0f), *u = ops_rand_new(n, 2.0f), *r = ops_rand_new(n, 1.0f);
    if (kind == A_RELU)
        for (int64_t i = 0; i < n; i++)
            if (fabsf(x[i]) < 1e-3f) x[i] = 0.5f; // keep finite differences away from the kink
    x[0] = 20.0f, x[1] = -20.0f;                  // saturated tails
    float *out = xmalloc_array(n, sizeof(float));
    switch (kind) {
    case A_SILU: silu_forward(out, x, n); break;
    case A_GELU_TANH: gelu_tanh_forward(out, x, n); break;
    case A_GELU_ERF: gelu_erf_forward(out, x, n); break;
    case A_RELU: relu_forward(out, x, n); break;
    case A_SWIGLU: swiglu_forward(out, x, u, n); break;
    }
    double *want = xmalloc_array(n, sizeof(double));
    for (int64_t i = 0; i < n; i++) want[i] = ref_act(kind, x[i]) * (kind == A_SWIGLU ? u[i] : 1.0);
    OPS_CHECK_CLOSE("activation forward", out, NULL, want, n, 1e-6);

    float *dx = ops_rand_new(n, 1.0f), *du = ops_rand_new(n, 1.0f), *dx0 = ops_copy(dx, n), *du0 = ops_copy(du, n);
    switch (kind) {
    case A_SILU: silu_backward(dx, r, x, n); break;
    case A_GELU_TANH: gelu_tanh_backward(dx, r, x, n); break;
    case A_GELU_ERF: gelu_erf_backward(dx, r, x, n); break;
    case A_RELU: relu_backward(dx, r, x, n); break;
    case A_SWIGLU: swiglu_backward(dx, du, r, x, u, n); break;
    }
    ActCtx c = {ops_to_double(x, n), ops_to_double(u, n), r, n, kind};
    double *g = xmalloc_array(n, sizeof(double));
    ops_fd_grad(g, c.x, n, act_loss, &c);
    OPS_CHECK_CLOSE("activation dx", dx, dx0, g, n, 1e-5);
    if (kind == A_SWIGLU) {
        ops_fd_grad(g, c.u, n, act_loss, &c);
        OPS_CHECK_CLOSE("swiglu dup", du, du0, g, n, 1e-5);
    }
    free(x), free(u), free(r), free(out), free(want), free(dx), free(du), free(dx0), free(du0), free(c.x), free(c.u);
    free(g);
}

TEST(ops_activations_forward_backward) {
    check_act(A_SILU);
    check_act(A_GELU_TANH);
    check_act(A_GELU_ERF);
    check_act(A_RELU);
    check_act(A_SWIGLU);
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax and cross-entropy

TEST(ops_softmax_stable_rows) {
    const int64_t N = 4, V = 53;
    float *x = ops_rand_new(N * V, 5.0f);
    for (int64_t j = 0; j < V; j++) x[1 * V + j] += 1000.0f; // would overflow exp without the max shift
    for (int64_t j = 0; j < V; j++) x[2 * V + j] -= 1000.0f;
    double *want = xmalloc_array(N * V, sizeof(double));
    for (int64_t n = 0; n < N; n++) {
        double m = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < V; j++) m = fmax(m, x[n * V + j]);
        for (int64_t j = 0; j < V; j++) s += exp((double)x[n * V + j] - m);
        for (int64_t j = 0; j < V; j++) want[n * V + j] = exp((double)x[n * V + j] - m) / s;
    }
    softmax_forward(x, N, V);
    OPS_CHECK_CLOSE("softmax", x, NULL, want, N * V, 1e-6);
    free(x), free(want);
}

typedef struct XentCtx {
    double *logits;     // (N, V)
    const int32_t *tgt; // (N)
    int64_t N, V;
    int32_t ignore;
} XentCtx;

// Mean over counted rows of logsumexp - logit[target].
static double xent_loss(void *ctx) {
    XentCtx *c = ctx;
    double total = 0.0;
    int64_t count = 0;
    for (int64_t n = 0; n < c->N; n++) {
        if (c->tgt[n] == c->ignore) continue;
        const double *l = c->logits + n * c->V;
        double m = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < c->V; j++) m = fmax(m, l[j]);
        for (int64_t j = 0; j < c->V; j++) s += exp(l[j] - m);
        total += m + log(s) - l[c->tgt[n]];
        count++;
    }
    return count ? total / (double)count : 0.0;
}

TEST(ops_softmax_cross_entropy_forward_backward) {
    const int64_t N = 6, V = 41;
    const int32_t ignore = -100;
    int32_t tgt[6] = {3, ignore, 40, 0, ignore, 17};
    float *logits = ops_rand_new(N * V, 4.0f);
    for (int64_t j = 0; j < V; j++) logits[3 * V + j] += 500.0f;
    float losses[6], lse[6];
    int64_t counted = -1;
    double mean = softmax_xent_forward(logits, tgt, N, V, ignore, losses, lse, &counted);
    XentCtx c = {ops_to_double(logits, N * V), tgt, N, V, ignore};
    CHECK_EQ_INT(counted, 4);
    CHECK_NEAR(mean, xent_loss(&c), 1e-6);
    CHECK(losses[1] == 0.0f && losses[4] == 0.0f);
    double sum = 0.0;
    for (int64_t n = 0; n < N; n++) sum += losses[n];
    CHECK_NEAR(sum / 4.0, mean, 1e-5);

    // Backward of the mean loss: scale = 1 / counted. Out of place, then in place over the logits.
    float *d = xmalloc_array(N * V, sizeof(float));
    softmax_xent_backward(d, logits, lse, tgt, N, V, ignore, 1.0f / (float)counted);
    double *g = xmalloc_array(N * V, sizeof(double));
    ops_fd_grad(g, c.logits, N * V, xent_loss, &c);
    OPS_CHECK_CLOSE("xent dlogits", d, NULL, g, N * V, 1e-5);
    for (int64_t j = 0; j < V; j++) CHECK(d[1 * V + j] == 0.0f);
    softmax_xent_backward(logits, logits, lse, tgt, N, V, ignore, 1.0f / (float)counted);
    CHECK(memcmp(logits, d, (size_t)(N * V) * sizeof(float)) == 0);

    // A target out of range is loud (NaN), not skipped.
    int32_t bad[1] = {V};
    float one_loss;
    CHECK(isnan(softmax_xent_forward(d, bad, 1, V, ignore, &one_loss, NULL, NULL)));
    // No counted rows: loss 0, count 0.
    int32_t none[2] = {ignore, ignore};
    CHECK(softmax_xent_forward(d, none, 2, V, ignore, NULL, NULL, &counted) == 0.0 && counted == 0);
    free(logits), free(c.logits), free(d), free(g);
}

// ---------------------------------------------------------------------------------------------------------------
// Embeddings

TEST(ops_embedding_forward_backward) {
    const int64_t vocab = 11, n_pos = 9, C = 7, N = 6;
    const int32_t tok[6] = {3, 0, 10, 3, 5, 3}; // repeated ids: the backward must add, not overwrite
    const int64_t pos[6] = {0, 1, 2, 8, 4, 2};
    float *wte = ops_rand_new(vocab * C, 1.0f), *wpe = ops_rand_new(n_pos * C, 1.0f);
    float *out = xmalloc_array(N * C, sizeof(float)), *out2 = xmalloc_array(N * C, sizeof(float));
    embedding_forward(out, tok, pos, wte, wpe, N, C);
    embedding_forward(out2, tok, NULL, wte, NULL, N, C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) {
            CHECK(out[n * C + i] == wte[tok[n] * C + i] + wpe[pos[n] * C + i]);
            CHECK(out2[n * C + i] == wte[tok[n] * C + i]);
        }
    embedding_add_positions(out2, pos, wpe, N, C);
    CHECK(memcmp(out, out2, (size_t)(N * C) * sizeof(float)) == 0);

    // L = sum(out * R) is linear in the tables: dL/dwte[v] = sum of R rows whose token is v.
    float *r = ops_rand_new(N * C, 1.0f);
    float *dwte = ops_rand_new(vocab * C, 1.0f), *dwpe = ops_rand_new(n_pos * C, 1.0f);
    float *dwte0 = ops_copy(dwte, vocab * C), *dwpe0 = ops_copy(dwpe, n_pos * C);
    embedding_backward(dwte, dwpe, r, tok, pos, N, C);
    double *gte = xcalloc(vocab * C, sizeof(double)), *gpe = xcalloc(n_pos * C, sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) {
            gte[tok[n] * C + i] += r[n * C + i];
            gpe[pos[n] * C + i] += r[n * C + i];
        }
    OPS_CHECK_CLOSE("embedding dwte", dwte, dwte0, gte, vocab * C, 1e-6);
    OPS_CHECK_CLOSE("embedding dwpe", dwpe, dwpe0, gpe, n_pos * C, 1e-6);
    free(wte), free(wpe), free(out), free(out2), free(r), free(dwte), free(dwpe), free(dwte0), free(dwpe0), free(gte);
    free(gpe);
}
