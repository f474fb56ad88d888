// train_kernels.cu — the GPU trainer's fused kernels (see train_kernels.h for the contract of each).
//
// Memory-bound kernels move 16 bytes per access (8 bf16 or 2 x 4 f32; train_plan.c guarantees widths that are
// multiples of 8 and 256-byte aligned buffers, so every row starts 16-byte aligned).
//
// Launch shapes: elementwise kernels use a grid-stride loop over int64 indices; row kernels use one warp per row
// (norms, attention softmax) or one block per row (cross-entropy over the vocabulary). Every cross-thread sum uses
// warp shuffles and a shared-memory tree of fixed shape, so results do not depend on scheduling.
#include <math.h>

#include "cuda/train_kernels.h"
#include "cuda/train_plan.h"

#define EW_THREADS 256

static unsigned ew_blocks(int64_t n, int64_t per_thread = 1) {
    int64_t b = cu_div_up(cu_div_up(n, per_thread), EW_THREADS);
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20; // grid-stride loops cover the rest
    return (unsigned)b;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Online softmax state (max m, sum s of exp(x - m)) merged across lanes.
__device__ __forceinline__ void warp_online(float &m, float &s) {
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        float mm = fmaxf(m, m2);
        s = (m == -INFINITY ? 0.0f : s * expf(m - mm)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mm));
        m = mm;
    }
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ double block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads(); // sh may be reused by a previous call
    if (lane == 0) sh[w] = v;
    __syncthreads();
    double t = lane < nw ? sh[lane] : 0.0;
    return warp_sum_d(t);
}

// 8 consecutive values at p (16-byte aligned for bf16, 32-byte for f32) as floats, and back.
__device__ __forceinline__ void ld8(float (&o)[8], const bf16 *p) {
    uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        o[2 * i] = f.x, o[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void ld8(float (&o)[8], const float *p) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
}
__device__ __forceinline__ void st8(bf16 *p, const float (&x)[8]) {
    uint4 u;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(x[2 * i], x[2 * i + 1]);
    *(uint4 *)p = u;
}
__device__ __forceinline__ void st8(float *p, const float (&x)[8]) {
    *(float4 *)p = make_float4(x[0], x[1], x[2], x[3]);
    *(float4 *)(p + 4) = make_float4(x[4], x[5], x[6], x[7]);
}

// ---------------------------------------------------------------------------------------------------------------
// embedding

__global__ void k_embed_fwd(float4 *x, const int32_t *tokens, const float4 *table, int64_t N, int64_t C4) {
    int64_t n_all = N * C4;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_all; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C4, c = i - r * C4;
        x[i] = table[(int64_t)tokens[r] * C4 + c];
    }
}

void tk_embed_fwd(cudaStream_t s, float *x, const int32_t *tokens, const float *table, int64_t N, int64_t C) {
    k_embed_fwd<<<ew_blocks(N * C / 4), EW_THREADS, 0, s>>>((float4 *)x, tokens, (const float4 *)table, N, C / 4);
}

__global__ void k_embed_bwd(float *dtable, const float *dx, const int32_t *order, const int32_t *start,
                            const int32_t *ids, int64_t C) {
    int64_t u = blockIdx.x;
    int32_t a = start[u], b = start[u + 1];
    float *row = dtable + (int64_t)ids[u] * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int32_t i = a; i < b; i++) acc += dx[(int64_t)order[i] * C + c];
        row[c] += acc;
    }
}

void tk_embed_bwd(cudaStream_t s, float *dtable, const float *dx, const int32_t *order, const int32_t *start,
                  const int32_t *ids, int64_t n_uniq, int64_t C) {
    if (n_uniq <= 0) return;
    k_embed_bwd<<<(unsigned)n_uniq, 256, 0, s>>>(dtable, dx, order, start, ids, C);
}

// ---------------------------------------------------------------------------------------------------------------
// RMSNorm

__global__ void k_rmsnorm_fwd(bf16 *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps) {
    int64_t row = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + row * C;
    float ss = 0.0f, v[8], wv[8];
    for (int64_t c = 8 * lane; c < C; c += 256) {
        ld8(v, xr + c);
#pragma unroll
        for (int i = 0; i < 8; i++) ss += v[i] * v[i];
    }
    ss = warp_sum(ss);
    float r = (float)(1.0 / sqrt((double)ss / (double)C + (double)eps));
    if (lane == 0) rstd[row] = r;
    bf16 *o = out + row * C;
    for (int64_t c = 8 * lane; c < C; c += 256) {
        ld8(v, xr + c);
        ld8(wv, w + c);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = (v[i] * r) * wv[i];
        st8(o + c, v);
    }
}

void tk_rmsnorm_fwd(cudaStream_t s, bf16 *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                    float eps) {
    k_rmsnorm_fwd<<<(unsigned)cu_div_up(N, 8), 256, 0, s>>>(out, rstd, x, w, N, C, eps);
}

// One block per GPU_NORM_BLOCK rows: the rows' input gradients (a warp per row), then this block's partial of the
// weight gradient (a thread per column, rows in order).
__global__ void k_rmsnorm_bwd(float *d_res, bf16 *d_res16, float *part, const float *dout, const float *x,
                              const float *w, const float *rstd, int64_t N, int64_t C, bool overwrite) {
    int64_t r0 = (int64_t)blockIdx.x * GPU_NORM_BLOCK, r1 = r0 + GPU_NORM_BLOCK < N ? r0 + GPU_NORM_BLOCK : N;
    int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int64_t row = r0 + (threadIdx.x >> 5); row < r1; row += nw) {
        const float *g = dout + row * C, *xr = x + row * C;
        float r = rstd[row], dot = 0.0f, gv[8], xv[8], wv[8], dv[8];
        for (int64_t c = 8 * lane; c < C; c += 256) {
            ld8(gv, g + c), ld8(xv, xr + c), ld8(wv, w + c);
#pragma unroll
            for (int i = 0; i < 8; i++) dot += gv[i] * wv[i] * xv[i];
        }
        dot = warp_sum(dot);
        float k = r * r * r * dot / (float)C;
        float *dr = d_res + row * C;
        bf16 *dr16 = d_res16 + row * C;
        for (int64_t c = 8 * lane; c < C; c += 256) {
            ld8(gv, g + c), ld8(xv, xr + c), ld8(wv, w + c);
            if (!overwrite) ld8(dv, dr + c);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float dx = r * wv[i] * gv[i] - k * xv[i];
                dv[i] = overwrite ? dx : dv[i] + dx;
            }
            st8(dr + c, dv);
            st8(dr16 + c, dv);
        }
    }
    float *pr = part + (int64_t)blockIdx.x * C;
    for (int64_t c = 4 * (int64_t)threadIdx.x; c < C; c += 4 * (int64_t)blockDim.x) {
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int64_t row = r0; row < r1; row++) {
            float4 a = *(const float4 *)(dout + row * C + c), b = *(const float4 *)(x + row * C + c);
            float rr = rstd[row];
            acc.x += a.x * b.x * rr, acc.y += a.y * b.y * rr, acc.z += a.z * b.z * rr, acc.w += a.w * b.w * rr;
        }
        *(float4 *)(pr + c) = acc;
    }
}

// dw[c] += sum over blocks of part[blk][c]: 32 columns x 8 partial sums per block, combined in a fixed tree.
__global__ void k_norm_reduce(float *dw, const float *part, int64_t nblk, int64_t C) {
    __shared__ float sh[8][33];
    int64_t c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < C)
        for (int64_t b = threadIdx.y; b < nblk; b += 8) acc += part[b * C + c];
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = ((sh[0][threadIdx.x] + sh[1][threadIdx.x]) + (sh[2][threadIdx.x] + sh[3][threadIdx.x])) +
                  ((sh[4][threadIdx.x] + sh[5][threadIdx.x]) + (sh[6][threadIdx.x] + sh[7][threadIdx.x]));
        dw[c] += t;
    }
}

void tk_rmsnorm_bwd(cudaStream_t s, float *d_res, bf16 *d_res16, float *dw, float *part, const float *dout,
                    const float *x, const float *w, const float *rstd, int64_t N, int64_t C, bool overwrite) {
    int64_t nblk = cu_div_up(N, GPU_NORM_BLOCK);
    k_rmsnorm_bwd<<<(unsigned)nblk, 256, 0, s>>>(d_res, d_res16, part, dout, x, w, rstd, N, C, overwrite);
    k_norm_reduce<<<(unsigned)cu_div_up(C, 32), dim3(32, 8), 0, s>>>(dw, part, nblk, C);
}

// ---------------------------------------------------------------------------------------------------------------
// rotary embeddings and head layouts

// One thread per 8 consecutive columns of a qkv row (hd % 8 == 0, so the 8 never straddle a head): a 16-byte load,
// rope on its 4 pairs when they are q or k columns inside the rotary dims, 16-byte stores to each head that reads it.
__global__ void k_rope_split_fwd(bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, const float *cosv, const float *sinv,
                                 int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t rd) {
    const int64_t half_rd = rd / 2, qd = H * hd, kvd = Hkv * hd, D3 = qd + 2 * kvd, g = H / Hkv, D8 = D3 / 8;
    const int64_t n = B * T * D8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / D8, col = (i - row * D8) * 8, b = row / T, t = row - b * T;
        float x[8];
        ld8(x, qkv + row * D3 + col);
        const int which = col < qd ? 0 : col < qd + kvd ? 1 : 2; // q, k, v
        const int64_t off = which == 0 ? col : which == 1 ? col - qd : col - qd - kvd, head = off / hd, d = off - head * hd;
        if (which < 2)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int64_t p = d / 2 + j;
                if (p < half_rd) {
                    const float c = cosv[t * half_rd + p], sn = sinv[t * half_rd + p], a = x[2 * j], bb = x[2 * j + 1];
                    x[2 * j] = a * c - bb * sn;
                    x[2 * j + 1] = a * sn + bb * c;
                }
            }
        bf16 *dst = which == 0 ? q : which == 1 ? k : v;
        const int64_t h0 = which == 0 ? head : head * g, h1 = which == 0 ? head + 1 : (head + 1) * g;
        for (int64_t h = h0; h < h1; h++) st8(dst + ((b * H + h) * T + t) * hd + d, x);
    }
}

void tk_rope_split_fwd(cudaStream_t s, bf16 *q, bf16 *k, bf16 *v, const bf16 *qkv, const float *cosv, const float *sinv,
                       int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t rd) {
    const int64_t D3 = (H + 2 * Hkv) * hd;
    k_rope_split_fwd<<<ew_blocks(B * T * (D3 / 8)), EW_THREADS, 0, s>>>(q, k, v, qkv, cosv, sinv, B, T, H, Hkv, hd, rd);
}

// The adjoint, also 8 columns of a dqkv row per thread; k/v columns sum their heads in head order.
__global__ void k_rope_merge_bwd(bf16 *dqkv, const bf16 *dq, const bf16 *dk, const bf16 *dv, const float *cosv,
                                 const float *sinv, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                                 int64_t rd) {
    const int64_t half_rd = rd / 2, qd = H * hd, kvd = Hkv * hd, D3 = qd + 2 * kvd, g = H / Hkv, D8 = D3 / 8;
    const int64_t n = B * T * D8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / D8, col = (i - row * D8) * 8, b = row / T, t = row - b * T;
        const int which = col < qd ? 0 : col < qd + kvd ? 1 : 2; // q, k, v
        const int64_t off = which == 0 ? col : which == 1 ? col - qd : col - qd - kvd, head = off / hd, d = off - head * hd;
        float x[8];
        if (which == 0) {
            ld8(x, dq + ((b * H + head) * T + t) * hd + d);
        } else {
            const bf16 *src = which == 1 ? dk : dv;
#pragma unroll
            for (int j = 0; j < 8; j++) x[j] = 0.0f;
            for (int64_t h = head * g; h < (head + 1) * g; h++) {
                float y[8];
                ld8(y, src + ((b * H + h) * T + t) * hd + d);
#pragma unroll
                for (int j = 0; j < 8; j++) x[j] += y[j];
            }
        }
        if (which < 2)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int64_t p = d / 2 + j;
                if (p < half_rd) { // the transpose of the rotation
                    const float c = cosv[t * half_rd + p], sn = sinv[t * half_rd + p], a = x[2 * j], bb = x[2 * j + 1];
                    x[2 * j] = a * c + bb * sn;
                    x[2 * j + 1] = -a * sn + bb * c;
                }
            }
        st8(dqkv + row * D3 + col, x);
    }
}

void tk_rope_merge_bwd(cudaStream_t s, bf16 *dqkv, const bf16 *dq, const bf16 *dk, const bf16 *dv,
                       const float *cosv, const float *sinv, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                       int64_t rd) {
    const int64_t D3 = (H + 2 * Hkv) * hd;
    k_rope_merge_bwd<<<ew_blocks(B * T * (D3 / 8)), EW_THREADS, 0, s>>>(dqkv, dq, dk, dv, cosv, sinv, B, T, H, Hkv, hd,
                                                                        rd);
}

__global__ void k_heads_permute(uint4 *dst, const uint4 *src, int64_t B, int64_t T, int64_t H, int64_t n8,
                                bool to_rows) {
    const int64_t n = B * T * H * n8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = i % n8, h = (i / n8) % H, t = (i / (n8 * H)) % T, b = i / (n8 * H * T);
        int64_t rows = ((b * T + t) * H + h) * n8 + j, heads = ((b * H + h) * T + t) * n8 + j;
        if (to_rows) dst[rows] = src[heads];
        else dst[heads] = src[rows];
    }
}

void tk_heads_permute(cudaStream_t s, bf16 *dst, const bf16 *src, int64_t B, int64_t T, int64_t H, int64_t hd,
                      bool to_rows) {
    int64_t n8 = hd / 8; // hd % 8 == 0 (train_plan.c): 16-byte vectors
    k_heads_permute<<<ew_blocks(B * T * H * n8), EW_THREADS, 0, s>>>((uint4 *)dst, (const uint4 *)src, B, T, H, n8,
                                                                     to_rows);
}

// ---------------------------------------------------------------------------------------------------------------
// attention softmax (the scores come from cuBLASLt with the 1/sqrt(hd) scale folded into alpha)

__global__ void k_softmax_causal_fwd(bf16 *att, int64_t rows, int64_t T, int64_t Tp) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    int64_t t = r % T;
    bf16 *p = att + r * Tp;
    float m = -INFINITY, s = 0.0f;
    for (int64_t j = lane; j <= t; j += 32) {
        float x = __bfloat162float(p[j]);
        if (x > m) {
            s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    warp_online(m, s);
    float inv = 1.0f / s;
    for (int64_t j = lane; j < Tp; j += 32)
        p[j] = __float2bfloat16(j <= t ? expf(__bfloat162float(p[j]) - m) * inv : 0.0f);
}

void tk_softmax_causal_fwd(cudaStream_t s, bf16 *att, int64_t BH, int64_t T, int64_t Tp) {
    int64_t rows = BH * T;
    k_softmax_causal_fwd<<<(unsigned)cu_div_up(rows, 8), 256, 0, s>>>(att, rows, T, Tp);
}

__global__ void k_softmax_causal_bwd(bf16 *datt, const bf16 *att, int64_t rows, int64_t T, int64_t Tp, float scale) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    int64_t t = r % T;
    const bf16 *p = att + r * Tp;
    bf16 *d = datt + r * Tp;
    float dot = 0.0f;
    for (int64_t j = lane; j <= t; j += 32) dot += __bfloat162float(p[j]) * __bfloat162float(d[j]);
    dot = warp_sum(dot);
    for (int64_t j = lane; j < Tp; j += 32) {
        float v = 0.0f;
        if (j <= t) v = __bfloat162float(p[j]) * (__bfloat162float(d[j]) - dot) * scale;
        d[j] = __float2bfloat16(v);
    }
}

void tk_softmax_causal_bwd(cudaStream_t s, bf16 *datt, const bf16 *att, int64_t BH, int64_t T, int64_t Tp, float scale) {
    int64_t rows = BH * T;
    k_softmax_causal_bwd<<<(unsigned)cu_div_up(rows, 8), 256, 0, s>>>(datt, att, rows, T, Tp, scale);
}

// ---------------------------------------------------------------------------------------------------------------
// SwiGLU

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// 8 columns per thread (F % 8 == 0)
__global__ void k_swiglu_fwd(bf16 *h, const bf16 *gu, int64_t N, int64_t F) {
    const int64_t F8 = F / 8, n = N * F8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / F8, j = (i - r * F8) * 8;
        float g[8], u[8];
        ld8(g, gu + r * 2 * F + j), ld8(u, gu + r * 2 * F + F + j);
#pragma unroll
        for (int t = 0; t < 8; t++) g[t] = g[t] * sigmoid_f(g[t]) * u[t];
        st8(h + r * F + j, g);
    }
}

void tk_swiglu_fwd(cudaStream_t s, bf16 *h, const bf16 *gu, int64_t N, int64_t F) {
    k_swiglu_fwd<<<ew_blocks(N * F / 8), EW_THREADS, 0, s>>>(h, gu, N, F);
}

__global__ void k_swiglu_bwd(bf16 *dgu, const bf16 *dh, const bf16 *gu, int64_t N, int64_t F) {
    const int64_t F8 = F / 8, n = N * F8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / F8, j = (i - r * F8) * 8;
        float g[8], u[8], d[8], dg[8];
        ld8(g, gu + r * 2 * F + j), ld8(u, gu + r * 2 * F + F + j), ld8(d, dh + r * F + j);
#pragma unroll
        for (int t = 0; t < 8; t++) {
            float sg = sigmoid_f(g[t]);
            dg[t] = d[t] * u[t] * sg * (1.0f + g[t] * (1.0f - sg));
            u[t] = d[t] * g[t] * sg;
        }
        st8(dgu + r * 2 * F + j, dg);
        st8(dgu + r * 2 * F + F + j, u);
    }
}

void tk_swiglu_bwd(cudaStream_t s, bf16 *dgu, const bf16 *dh, const bf16 *gu, int64_t N, int64_t F) {
    k_swiglu_bwd<<<ew_blocks(N * F / 8), EW_THREADS, 0, s>>>(dgu, dh, gu, N, F);
}

// ---------------------------------------------------------------------------------------------------------------
// cross-entropy over the vocabulary: one block per row, online max/sum in one read, the gradient in a second pass

#define XENT_THREADS 512

__global__ void __launch_bounds__(XENT_THREADS) k_xent(bf16 *logits, float *loss, const int32_t *targets, int64_t V,
                                                       int64_t ld, float scale, bool backward) {
    __shared__ float shm[XENT_THREADS / 32], shs[XENT_THREADS / 32];
    int64_t row = blockIdx.x;
    bf16 *x = logits + row * ld;
    int32_t tgt = targets[row];
    const int64_t V8 = V / 8; // 16-byte chunks (ld % 8 == 0), then a scalar tail
    if (tgt == -1) {
        if (threadIdx.x == 0) loss[row] = 0.0f;
        if (backward) {
            const float z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t c = threadIdx.x; c < V8; c += blockDim.x) st8(x + 8 * c, z);
            for (int64_t j = 8 * V8 + threadIdx.x; j < V; j += blockDim.x) x[j] = __float2bfloat16(0.0f);
        }
        return;
    }
    float m = -INFINITY, s = 0.0f;
    for (int64_t c = threadIdx.x; c < V8; c += blockDim.x) {
        float v[8];
        ld8(v, x + 8 * c);
        float cm = v[0];
#pragma unroll
        for (int i = 1; i < 8; i++) cm = fmaxf(cm, v[i]);
        const float mn = fmaxf(m, cm);
        float acc = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) acc += expf(v[i] - mn);
        s = (m == -INFINITY ? 0.0f : s * expf(m - mn)) + acc;
        m = mn;
    }
    for (int64_t j = 8 * V8 + threadIdx.x; j < V; j += blockDim.x) {
        float v = __bfloat162float(x[j]);
        if (v > m) {
            s = (m == -INFINITY ? 0.0f : s * expf(m - v)) + 1.0f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }
    warp_online(m, s);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) shm[w] = m, shs[w] = s;
    __syncthreads();
    if (w == 0) {
        m = lane < XENT_THREADS / 32 ? shm[lane] : -INFINITY;
        s = lane < XENT_THREADS / 32 ? shs[lane] : 0.0f;
        warp_online(m, s);
        if (lane == 0) shm[0] = m, shs[0] = s;
    }
    __syncthreads();
    float lse = shm[0] + logf(shs[0]);
    bool valid = tgt >= 0 && tgt < V;
    if (threadIdx.x == 0) loss[row] = valid ? lse - __bfloat162float(x[tgt]) : NAN;
    if (!backward) return;
    __syncthreads(); // x[tgt] is read above before any thread overwrites it
    for (int64_t c = threadIdx.x; c < V8; c += blockDim.x) {
        float v[8];
        ld8(v, x + 8 * c);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            float d = valid ? expf(v[i] - lse) * scale : NAN;
            if (8 * c + i == tgt) d -= scale;
            v[i] = d;
        }
        st8(x + 8 * c, v);
    }
    for (int64_t j = 8 * V8 + threadIdx.x; j < V; j += blockDim.x) {
        float d = valid ? expf(__bfloat162float(x[j]) - lse) * scale : NAN;
        if (j == tgt) d -= scale;
        x[j] = __float2bfloat16(d);
    }
}

void tk_xent(cudaStream_t s, bf16 *logits, float *loss, const int32_t *targets, int64_t N, int64_t V, int64_t ld,
             float scale, bool backward) {
    if (N <= 0) return;
    k_xent<<<(unsigned)N, XENT_THREADS, 0, s>>>(logits, loss, targets, V, ld, scale, backward);
}

__global__ void k_loss_accum(double *red, int slot, const float *loss, int64_t N, double weight) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) acc += (double)loss[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) red[slot] += weight * acc;
}

void tk_loss_accum(cudaStream_t s, double *red, int slot, const float *loss, int64_t N, double weight) {
    k_loss_accum<<<1, 1024, 0, s>>>(red, slot, loss, N, weight);
}

// ---------------------------------------------------------------------------------------------------------------
// gradient norm, AdamW

__global__ void k_sumsq_blocks(double *red, const float *g, int64_t n, int64_t chunk) {
    __shared__ double sh[32];
    int64_t lo = blockIdx.x * chunk, hi = lo + chunk < n ? lo + chunk : n;
    double acc = 0.0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) acc += (double)g[i] * (double)g[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) red[blockIdx.x] = acc;
}

__global__ void k_sumsq_finish(double *red, int norm_slot, int64_t nb) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < nb; i += blockDim.x) acc += red[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) red[norm_slot] = sqrt(acc);
}

void tk_grad_norm(cudaStream_t s, double *red, int norm_slot, const float *g, int64_t n, int64_t nb) {
    int64_t chunk = cu_div_up(n, nb);
    k_sumsq_blocks<<<(unsigned)nb, 512, 0, s>>>(red, g, n, chunk);
    k_sumsq_finish<<<1, 1024, 0, s>>>(red, norm_slot, nb);
}

// The CPU update (optim.c adam_one) operation by operation, each rounded separately (no FMA contraction), so a GPU
// step from the same gradients gives the CPU's parameters.
struct AdamK {
    float scale, c1, c2, shrink_decay;
};

__device__ __forceinline__ float adam_elem(float p, float gi, float &m, float &v, float shrink, const TkAdam &a,
                                           const AdamK &k) {
    gi = __fmul_rn(gi, k.scale);
    float mi = __fadd_rn(__fmul_rn(a.b1, m), __fmul_rn(k.c1, gi));
    float vi = __fadd_rn(__fmul_rn(a.b2, v), __fmul_rn(k.c2, __fmul_rn(gi, gi)));
    m = mi;
    v = vi;
    float num = __fmul_rn(a.lr, __fmul_rn(mi, a.inv_bc1));
    float den = __fadd_rn(__fsqrt_rn(__fmul_rn(vi, a.inv_bc2)), a.eps);
    return __fsub_rn(__fmul_rn(p, shrink), __fdiv_rn(num, den));
}

// 4 parameters per thread with 16-byte loads (a group of 4 never straddles a GPU_PARAM_ALIGN chunk), scalar tail.
__global__ void k_adamw(float *p, bf16 *p16, const float *g, float *m, float *v, const uint8_t *decay_chunk,
                        const double *norm, int64_t n, TkAdam a) {
    double nrm = *norm;
    if (!isfinite(nrm)) return;
    AdamK k;
    k.scale = (a.clip > 0 && nrm > a.clip) ? (float)(a.clip / nrm) : 1.0f;
    k.c1 = __fsub_rn(1.0f, a.b1), k.c2 = __fsub_rn(1.0f, a.b2);
    k.shrink_decay = __fsub_rn(1.0f, __fmul_rn(a.lr, a.wd));
    const int64_t n4 = n / 4, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 pv = ((const float4 *)p)[i], gv = ((const float4 *)g)[i], mv = ((float4 *)m)[i], vv = ((float4 *)v)[i];
        float shrink = (a.wd != 0.0f && decay_chunk[4 * i / GPU_PARAM_ALIGN]) ? k.shrink_decay : 1.0f;
        pv.x = adam_elem(pv.x, gv.x, mv.x, vv.x, shrink, a, k);
        pv.y = adam_elem(pv.y, gv.y, mv.y, vv.y, shrink, a, k);
        pv.z = adam_elem(pv.z, gv.z, mv.z, vv.z, shrink, a, k);
        pv.w = adam_elem(pv.w, gv.w, mv.w, vv.w, shrink, a, k);
        ((float4 *)p)[i] = pv, ((float4 *)m)[i] = mv, ((float4 *)v)[i] = vv;
        __nv_bfloat162 lo = __floats2bfloat162_rn(pv.x, pv.y), hi = __floats2bfloat162_rn(pv.z, pv.w);
        uint2 u;
        u.x = *(unsigned *)&lo, u.y = *(unsigned *)&hi;
        ((uint2 *)p16)[i] = u;
    }
    for (int64_t i = 4 * n4 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
        float shrink = (a.wd != 0.0f && decay_chunk[i / GPU_PARAM_ALIGN]) ? k.shrink_decay : 1.0f;
        float np = adam_elem(p[i], g[i], m[i], v[i], shrink, a, k);
        p[i] = np;
        p16[i] = __float2bfloat16(np);
    }
}

void tk_adamw(cudaStream_t s, float *p, bf16 *p16, const float *g, float *m, float *v, const uint8_t *decay_chunk,
              const double *norm, int64_t n, TkAdam a) {
    k_adamw<<<ew_blocks(n, 16), EW_THREADS, 0, s>>>(p, p16, g, m, v, decay_chunk, norm, n, a);
}

__global__ void k_cast_bf16(bf16 *dst, const float *src, int64_t n) {
    const int64_t n8 = n / 8, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += stride) {
        float v[8];
        ld8(v, src + 8 * i);
        st8(dst + 8 * i, v);
    }
    for (int64_t i = 8 * n8 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16(src[i]);
}

void tk_cast_bf16(cudaStream_t s, bf16 *dst, const float *src, int64_t n) {
    k_cast_bf16<<<ew_blocks(n, 16), EW_THREADS, 0, s>>>(dst, src, n);
}

// splitmix64 of (seed + index): uniform in [-1, 1), independent of the launch shape.
__global__ void k_fill_random_bf16(bf16 *dst, int64_t n, uint64_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        dst[i] = __float2bfloat16((float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
    }
}

void tk_fill_random_bf16(cudaStream_t s, bf16 *dst, int64_t n, uint64_t seed) {
    k_fill_random_bf16<<<ew_blocks(n, 4), EW_THREADS, 0, s>>>(dst, n, seed);
}
