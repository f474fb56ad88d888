// train_flash.cu — flash-style causal attention forward/backward (see train_flash.h).
//
// Tensor-core fragments (PTX m16n8k16, bf16 in, f32 accumulate; g = lane / 4, c = lane % 4):
//   A (16 x 16, rows x k): a0 (row g, k 2c..2c+1), a1 (row g+8, same k), a2 (row g, k 2c+8..), a3 (row g+8, k 2c+8..)
//   B (16 x 8, k x n):     b0 (k 2c..2c+1, col g), b1 (k 2c+8.., col g)
//   C (16 x 8):            c0, c1 (row g, cols 2c, 2c+1), c2, c3 (row g+8, same cols)
// so two adjacent C tiles of a score block are, packed to bf16 pairs, exactly the A fragment of the next product
// (P V, dS K, ...): probabilities never leave registers. Operands come from shared memory through ldmatrix (.trans for
// k-major storage). Shared rows are padded by 8 elements (16 bytes), which makes the 8 row addresses of every
// ldmatrix fall into distinct bank groups.
//
// Work split: each block has 4 warps of 16 rows (queries in the forward and the dQ kernel, keys in the dK/dV kernel);
// the tile loop over the other side is double-buffered with cp.async. The softmax runs in base 2 (scores times
// scale * log2 e); lse is stored in natural log. Rows at or past T are zero-filled on load and never stored; keys past
// T only appear above the diagonal of valid queries and are masked by causality.
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "base/util.h"
}
#include "cuda/cuda.h"
#include "cuda/train_flash.h"

typedef __nv_bfloat16 bf16;

#define FL_THREADS 128
#define LOG2E 1.4426950408889634f

// ---------------------------------------------------------------------------------------------------------------
// PTX helpers

__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, asynchronously; zero-filled when !valid (no global read then).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(unsigned (&r)[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); // .x (lo) is the lower address = the lower column
    return *(unsigned *)&v;
}

// A fragment of the 16 x 16 block at (r0, c0) of a row-major shared tile with row stride S; also the B fragments of
// two n-tiles (c0, c0 + 8) of a k-major tile [k][n] when loaded with .trans.
__device__ __forceinline__ const bf16 *frag_a_addr(const bf16 *tile, int S, int r0, int c0) {
    int lane = threadIdx.x & 31;
    return tile + (r0 + (lane & 15)) * S + c0 + (lane >> 4) * 8;
}
// B fragments (b0, b1 of n-tile n0, then b0, b1 of n-tile n0 + 8) for k-block k0 of an n-major tile [n][k].
__device__ __forceinline__ const bf16 *frag_bn_addr(const bf16 *tile, int S, int n0, int k0) {
    int lane = threadIdx.x & 31;
    return tile + (n0 + (lane & 7) + ((lane >> 4) << 3)) * S + k0 + ((lane >> 3) & 1) * 8;
}

// ROWS rows of a strided tensor (row stride st elements), starting at row r0, into a padded shared tile; rows >= T
// become zeros.
template <int HD, int ROWS>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int64_t st, int r0, int T) {
    constexpr int CPR = HD / 8, S = HD + 8;
    static_assert((ROWS * CPR) % FL_THREADS == 0, "tile load does not divide evenly");
#pragma unroll
    for (int i = 0; i < ROWS * CPR / FL_THREADS; i++) {
        int c = threadIdx.x + i * FL_THREADS, r = c / CPR, cc = c % CPR, row = r0 + r;
        bool ok = row < T;
        cp_async16(dst + r * S + cc * 8, src + (int64_t)(ok ? row : 0) * st + cc * 8, ok);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// forward: a block per (64 queries, b*h); key tiles 0 .. the diagonal

template <int HD>
__global__ void __launch_bounds__(FL_THREADS) k_flash_fwd(FlashView o, float *lse, FlashView q, FlashView k,
                                                          FlashView v, int H, int T, float sl2) {
    constexpr int S = HD + 8, KB = HD / 16, ND = HD / 8, BR = 64, BC = 64;
    extern __shared__ __align__(16) unsigned char fl_smem[];
    bf16 *Qs = (bf16 *)fl_smem, *Ks = Qs + BR * S, *Vs = Ks + 2 * BC * S;
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const int qt = (int)gridDim.y - 1 - (int)blockIdx.y; // the longest rows first
    const int q0 = qt * BR, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c4 = lane & 3;
    const bf16 *qg = q.p + b * q.sb + h * q.sh, *kg = k.p + b * k.sb + h * k.sh, *vg = v.p + b * v.sb + h * v.sh;

    load_tile<HD, BR>(Qs, qg, q.st, q0, T);
    load_tile<HD, BC>(Ks, kg, k.st, 0, T);
    load_tile<HD, BC>(Vs, vg, v.st, 0, T);
    cp_async_commit();

    float oacc[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    unsigned qf[KB][4];
    const int row_a = q0 + warp * 16 + g; // this thread's rows: row_a and row_a + 8

    for (int j = 0; j <= qt; j++) {
        const int buf = j & 1;
        if (j < qt) {
            load_tile<HD, BC>(Ks + (buf ^ 1) * BC * S, kg, k.st, (j + 1) * BC, T);
            load_tile<HD, BC>(Vs + (buf ^ 1) * BC * S, vg, v.st, (j + 1) * BC, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (j == 0)
#pragma unroll
            for (int kb = 0; kb < KB; kb++) ldsm_x4(qf[kb], frag_a_addr(Qs, S, warp * 16, kb * 16));
        const bf16 *Kb = Ks + buf * BC * S, *Vb = Vs + buf * BC * S;
        float s[BC / 8][4];
#pragma unroll
        for (int i = 0; i < BC / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int kb = 0; kb < KB; kb++)
#pragma unroll
            for (int np = 0; np < BC / 16; np++) {
                unsigned bfr[4];
                ldsm_x4(bfr, frag_bn_addr(Kb, S, np * 16, kb * 16));
                mma16816(s[2 * np], qf[kb], bfr[0], bfr[1]);
                mma16816(s[2 * np + 1], qf[kb], bfr[2], bfr[3]);
            }
        const bool diag = j == qt;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float x = s[nt][2 * r + e] * sl2;
                    if (diag && j * BC + nt * 8 + 2 * c4 + e > row_a + 8 * r) x = -INFINITY;
                    s[nt][2 * r + e] = x;
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mn = fmaxf(m[r], mx); // finite: key 0 .. the row itself are never masked
            const float alpha = exp2f(m[r] - mn);
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float p = exp2f(s[nt][2 * r + e] - mn);
                    s[nt][2 * r + e] = p;
                    sum += p;
                }
            l[r] = l[r] * alpha + sum; // this thread's columns only; the quad's partials are added at the end
            m[r] = mn;
#pragma unroll
            for (int nd = 0; nd < ND; nd++) oacc[nd][2 * r] *= alpha, oacc[nd][2 * r + 1] *= alpha;
        }
        // O += P V
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            unsigned a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < ND / 2; dp++) {
                unsigned bfr[4];
                ldsm_x4_t(bfr, frag_a_addr(Vb, S, kk * 16, dp * 16));
                mma16816(oacc[2 * dp], a, bfr[0], bfr[1]);
                mma16816(oacc[2 * dp + 1], a, bfr[2], bfr[3]);
            }
        }
        __syncthreads(); // the next iteration's loads overwrite the other buffer, read in this one's previous
    }
    bf16 *og = o.p + b * o.sb + h * o.sh;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = row_a + 8 * r;
        if (row >= T) continue;
        const float inv = 1.0f / sum;
        bf16 *orow = og + (int64_t)row * o.st + 2 * c4;
#pragma unroll
        for (int nd = 0; nd < ND; nd++)
            *(unsigned *)(orow + nd * 8) = pack_bf16(oacc[nd][2 * r] * inv, oacc[nd][2 * r + 1] * inv);
        if (c4 == 0) lse[(int64_t)bh * T + row] = (m[r] + log2f(sum)) * (1.0f / LOG2E);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// backward

// dsum[bh, t] = sum_d dout * o (f32 from the bf16 values): HD / 8 lanes per row, 16-byte loads, a fixed shuffle tree.
template <int HD>
__global__ void k_flash_dsum(float *dsum, FlashView o, FlashView dout, int H, int T, int64_t rows) {
    constexpr int LPR = HD / 8, RPW = 32 / LPR;
    const int lane = threadIdx.x & 31;
    const int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    const int64_t r = warp * RPW + lane / LPR;
    float acc = 0.0f;
    if (r < rows) {
        const int64_t bh = r / T, t = r % T, b = bh / H, h = bh % H;
        const int d = (lane % LPR) * 8;
        uint4 x = *(const uint4 *)(o.p + b * o.sb + h * o.sh + t * o.st + d);
        uint4 y = *(const uint4 *)(dout.p + b * dout.sb + h * dout.sh + t * dout.st + d);
        const __nv_bfloat162 *xp = (const __nv_bfloat162 *)&x, *yp = (const __nv_bfloat162 *)&y;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 a = __bfloat1622float2(xp[i]), c = __bfloat1622float2(yp[i]);
            acc += a.x * c.x + a.y * c.y;
        }
    }
#pragma unroll
    for (int off = LPR / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (r < rows && lane % LPR == 0) dsum[r] = acc;
}

// dK, dV: a block per (64 keys, b*h), query tiles of QT from the diagonal to the end. Works on transposed scores
// S^T = K Q^T (keys x queries), so P^T and dS^T are directly the A operands of dV += P^T dO and dK += dS^T Q.
// The warp's K and V fragments stay in registers for the whole block, and each query tile is walked 16 queries at a
// time (scores, probabilities, then their dV/dK products), so only 16 score columns are live at once: that keeps the
// kernel under MINB blocks per SM's register share without spilling. Every sum runs in the same order as computing
// the whole tile's scores first would.
template <int HD, int QT, int MINB>
__global__ void __launch_bounds__(FL_THREADS, MINB) k_flash_bwd_dkv(FlashView dk, FlashView dv, FlashView q, FlashView k,
                                                              FlashView v, FlashView dout, const float *lse,
                                                              const float *dsum, int H, int T, float sl2,
                                                              float scale) {
    constexpr int S = HD + 8, KB = HD / 16, ND = HD / 8, BK = 64;
    extern __shared__ __align__(16) unsigned char fl_smem[];
    bf16 *Ks = (bf16 *)fl_smem, *Vs = Ks + BK * S, *Qs = Vs + BK * S, *Os = Qs + 2 * QT * S; // Os: dout tiles
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const int kt = blockIdx.y, k0 = kt * BK; // the first key tiles have the most queries: scheduled first
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c4 = lane & 3;
    const bf16 *qg = q.p + b * q.sb + h * q.sh, *kg = k.p + b * k.sb + h * k.sh, *vg = v.p + b * v.sb + h * v.sh;
    const bf16 *dg = dout.p + b * dout.sb + h * dout.sh;
    const float *lse_r = lse + (int64_t)bh * T, *dsum_r = dsum + (int64_t)bh * T;
    const int n_qt = (T + QT - 1) / QT, it0 = k0 / QT;

    load_tile<HD, BK>(Ks, kg, k.st, k0, T);
    load_tile<HD, BK>(Vs, vg, v.st, k0, T);
    load_tile<HD, QT>(Qs, qg, q.st, it0 * QT, T);
    load_tile<HD, QT>(Os, dg, dout.st, it0 * QT, T);
    cp_async_commit();

    float dka[ND][4], dva[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[i][e] = dva[i][e] = 0.0f;
    const int key_a = k0 + warp * 16 + g; // this thread's keys: key_a, key_a + 8
    constexpr bool FREG = HD <= 64;       // K, V fragments held in registers (at 128 they would not fit)
    unsigned kf[FREG ? KB : 1][4], vf[FREG ? KB : 1][4]; // A fragments of this warp's 16 keys (K and V rows)

    for (int it = it0; it < n_qt; it++) {
        const int buf = (it - it0) & 1, q0 = it * QT;
        if (it + 1 < n_qt) {
            load_tile<HD, QT>(Qs + (buf ^ 1) * QT * S, qg, q.st, q0 + QT, T);
            load_tile<HD, QT>(Os + (buf ^ 1) * QT * S, dg, dout.st, q0 + QT, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if constexpr (FREG) {
            if (it == it0)
#pragma unroll
                for (int kb = 0; kb < KB; kb++) {
                    ldsm_x4(kf[kb], frag_a_addr(Ks, S, warp * 16, kb * 16));
                    ldsm_x4(vf[kb], frag_a_addr(Vs, S, warp * 16, kb * 16));
                }
        }
        const bf16 *Qb = Qs + buf * QT * S, *Db = Os + buf * QT * S;
        const bool need_mask = q0 < k0 + BK - 1;
#pragma unroll 1 // unrolled, the compiler overlaps chunks and spills under the MINB register cap
        for (int kk = 0; kk < QT / 16; kk++) { // queries q0 + 16 kk .. + 15: n-tiles 2 kk, 2 kk + 1
            float st[2][4], dp[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[i][e] = dp[i][e] = 0.0f;
#pragma unroll
            for (int kb = 0; kb < KB; kb++) {
                unsigned ka[4], va[4], bq[4], bd[4];
                if constexpr (FREG) {
#pragma unroll
                    for (int i = 0; i < 4; i++) ka[i] = kf[kb][i], va[i] = vf[kb][i];
                } else {
                    ldsm_x4(ka, frag_a_addr(Ks, S, warp * 16, kb * 16));
                    ldsm_x4(va, frag_a_addr(Vs, S, warp * 16, kb * 16));
                }
                ldsm_x4(bq, frag_bn_addr(Qb, S, kk * 16, kb * 16));
                ldsm_x4(bd, frag_bn_addr(Db, S, kk * 16, kb * 16));
                mma16816(st[0], ka, bq[0], bq[1]);
                mma16816(st[1], ka, bq[2], bq[3]);
                mma16816(dp[0], va, bd[0], bd[1]);
                mma16816(dp[1], va, bd[2], bd[3]);
            }
#pragma unroll
            for (int t = 0; t < 2; t++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int qi = q0 + (2 * kk + t) * 8 + 2 * c4 + e;
                    const bool valid = qi < T;
                    const float l2 = valid ? __ldg(lse_r + qi) * LOG2E : INFINITY, ds = valid ? __ldg(dsum_r + qi) : 0.0f;
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        float p = exp2f(st[t][2 * r + e] * sl2 - l2);
                        if (need_mask && key_a + 8 * r > qi) p = 0.0f;
                        st[t][2 * r + e] = p;
                        dp[t][2 * r + e] = p * (dp[t][2 * r + e] - ds);
                    }
                }
            // dV += P^T dO, dK += dS^T Q over these 16 queries
            unsigned pa[4] = {pack_bf16(st[0][0], st[0][1]), pack_bf16(st[0][2], st[0][3]), pack_bf16(st[1][0], st[1][1]),
                              pack_bf16(st[1][2], st[1][3])};
            unsigned sa[4] = {pack_bf16(dp[0][0], dp[0][1]), pack_bf16(dp[0][2], dp[0][3]), pack_bf16(dp[1][0], dp[1][1]),
                              pack_bf16(dp[1][2], dp[1][3])};
#pragma unroll
            for (int dpi = 0; dpi < ND / 2; dpi++) {
                unsigned bd[4], bq[4];
                ldsm_x4_t(bd, frag_a_addr(Db, S, kk * 16, dpi * 16));
                ldsm_x4_t(bq, frag_a_addr(Qb, S, kk * 16, dpi * 16));
                mma16816(dva[2 * dpi], pa, bd[0], bd[1]);
                mma16816(dva[2 * dpi + 1], pa, bd[2], bd[3]);
                mma16816(dka[2 * dpi], sa, bq[0], bq[1]);
                mma16816(dka[2 * dpi + 1], sa, bq[2], bq[3]);
            }
        }
        __syncthreads();
    }
    bf16 *dkg = dk.p + b * dk.sb + h * dk.sh, *dvg = dv.p + b * dv.sb + h * dv.sh;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int key = key_a + 8 * r;
        if (key >= T) continue;
        bf16 *kr = dkg + (int64_t)key * dk.st + 2 * c4, *vr = dvg + (int64_t)key * dv.st + 2 * c4;
#pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            *(unsigned *)(kr + nd * 8) = pack_bf16(dka[nd][2 * r] * scale, dka[nd][2 * r + 1] * scale);
            *(unsigned *)(vr + nd * 8) = pack_bf16(dva[nd][2 * r], dva[nd][2 * r + 1]);
        }
    }
}

// dQ: a block per (64 queries, b*h), key tiles of KT from 0 to the diagonal. As in the dK/dV kernel, the warp's Q and
// dO fragments stay in registers and each key tile is walked 16 keys at a time.
template <int HD, int KT, int MINB>
__global__ void __launch_bounds__(FL_THREADS, MINB) k_flash_bwd_dq(FlashView dq, FlashView q, FlashView k, FlashView v,
                                                             FlashView dout, const float *lse, const float *dsum,
                                                             int H, int T, float sl2, float scale) {
    constexpr int S = HD + 8, KB = HD / 16, ND = HD / 8, BR = 64;
    extern __shared__ __align__(16) unsigned char fl_smem[];
    bf16 *Qs = (bf16 *)fl_smem, *Os = Qs + BR * S, *Ks = Os + BR * S, *Vs = Ks + 2 * KT * S;
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const int qt = (int)gridDim.y - 1 - (int)blockIdx.y, q0 = qt * BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c4 = lane & 3;
    const bf16 *qg = q.p + b * q.sb + h * q.sh, *kg = k.p + b * k.sb + h * k.sh, *vg = v.p + b * v.sb + h * v.sh;
    const bf16 *dg = dout.p + b * dout.sb + h * dout.sh;
    const int row_a = q0 + warp * 16 + g;
    float l2[2], ds[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row_a + 8 * r;
        l2[r] = row < T ? lse[(int64_t)bh * T + row] * LOG2E : INFINITY;
        ds[r] = row < T ? dsum[(int64_t)bh * T + row] : 0.0f;
    }
    const int n_kt = (q0 + BR - 1) / KT + 1; // key tiles up to the last row of this query tile

    load_tile<HD, BR>(Qs, qg, q.st, q0, T);
    load_tile<HD, BR>(Os, dg, dout.st, q0, T);
    load_tile<HD, KT>(Ks, kg, k.st, 0, T);
    load_tile<HD, KT>(Vs, vg, v.st, 0, T);
    cp_async_commit();

    float dqa[ND][4];
#pragma unroll
    for (int i = 0; i < ND; i++) dqa[i][0] = dqa[i][1] = dqa[i][2] = dqa[i][3] = 0.0f;
    constexpr bool FREG = HD <= 64; // Q, dO fragments held in registers (at 128 they would not fit)
    unsigned qf[FREG ? KB : 1][4], df[FREG ? KB : 1][4]; // A fragments of this warp's 16 query rows (Q and dO)

    for (int j = 0; j < n_kt; j++) {
        const int buf = j & 1, kbase = j * KT;
        if (j + 1 < n_kt) {
            load_tile<HD, KT>(Ks + (buf ^ 1) * KT * S, kg, k.st, kbase + KT, T);
            load_tile<HD, KT>(Vs + (buf ^ 1) * KT * S, vg, v.st, kbase + KT, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if constexpr (FREG) {
            if (j == 0)
#pragma unroll
                for (int kb = 0; kb < KB; kb++) {
                    ldsm_x4(qf[kb], frag_a_addr(Qs, S, warp * 16, kb * 16));
                    ldsm_x4(df[kb], frag_a_addr(Os, S, warp * 16, kb * 16));
                }
        }
        const bf16 *Kb = Ks + buf * KT * S, *Vb = Vs + buf * KT * S;
        const bool need_mask = kbase + KT - 1 > q0;
#pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) { // keys kbase + 16 kk .. + 15: n-tiles 2 kk, 2 kk + 1
            float s[2][4], dp[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.0f;
#pragma unroll
            for (int kb = 0; kb < KB; kb++) {
                unsigned qa[4], da[4], bk[4], bv[4];
                if constexpr (FREG) {
#pragma unroll
                    for (int i = 0; i < 4; i++) qa[i] = qf[kb][i], da[i] = df[kb][i];
                } else {
                    ldsm_x4(qa, frag_a_addr(Qs, S, warp * 16, kb * 16));
                    ldsm_x4(da, frag_a_addr(Os, S, warp * 16, kb * 16));
                }
                ldsm_x4(bk, frag_bn_addr(Kb, S, kk * 16, kb * 16));
                ldsm_x4(bv, frag_bn_addr(Vb, S, kk * 16, kb * 16));
                mma16816(s[0], qa, bk[0], bk[1]);
                mma16816(s[1], qa, bk[2], bk[3]);
                mma16816(dp[0], da, bv[0], bv[1]);
                mma16816(dp[1], da, bv[2], bv[3]);
            }
#pragma unroll
            for (int t = 0; t < 2; t++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int key = kbase + (2 * kk + t) * 8 + 2 * c4 + e;
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        float p = exp2f(s[t][2 * r + e] * sl2 - l2[r]);
                        if (need_mask && key > row_a + 8 * r) p = 0.0f;
                        dp[t][2 * r + e] = p * (dp[t][2 * r + e] - ds[r]);
                    }
                }
            // dQ += dS K over these 16 keys
            unsigned sa[4] = {pack_bf16(dp[0][0], dp[0][1]), pack_bf16(dp[0][2], dp[0][3]), pack_bf16(dp[1][0], dp[1][1]),
                              pack_bf16(dp[1][2], dp[1][3])};
#pragma unroll
            for (int dpi = 0; dpi < ND / 2; dpi++) {
                unsigned bk[4];
                ldsm_x4_t(bk, frag_a_addr(Kb, S, kk * 16, dpi * 16));
                mma16816(dqa[2 * dpi], sa, bk[0], bk[1]);
                mma16816(dqa[2 * dpi + 1], sa, bk[2], bk[3]);
            }
        }
        __syncthreads();
    }
    bf16 *dqg = dq.p + b * dq.sb + h * dq.sh;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row_a + 8 * r;
        if (row >= T) continue;
        bf16 *qr = dqg + (int64_t)row * dq.st + 2 * c4;
#pragma unroll
        for (int nd = 0; nd < ND; nd++)
            *(unsigned *)(qr + nd * 8) = pack_bf16(dqa[nd][2 * r] * scale, dqa[nd][2 * r + 1] * scale);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// launchers

// Tile sizes per head size: the dK/dV query tile and the dQ key tile shrink at 128 so the accumulators stay in
// registers.
// MINB_*: blocks per SM the backward kernels are compiled for (their register cap: 65536 / (128 MINB) per thread).
template <int HD> struct FlashCfg {
    static constexpr int QT = HD >= 128 ? 32 : 64, KT = HD >= 128 ? 32 : 64, S = HD + 8;
    static constexpr int MINB_DKV = HD >= 128 ? 2 : 3, MINB_DQ = HD >= 128 ? 3 : 4;
    static constexpr size_t fwd_smem = (size_t)(64 + 4 * 64) * S * sizeof(bf16);
    static constexpr size_t dkv_smem = (size_t)(2 * 64 + 4 * QT) * S * sizeof(bf16);
    static constexpr size_t dq_smem = (size_t)(2 * 64 + 4 * KT) * S * sizeof(bf16);
};

template <int HD>
static void fwd_launch(cudaStream_t s, FlashView o, float *lse, FlashView q, FlashView k, FlashView v, int64_t BH,
                       int64_t H, int64_t T, float sl2) {
    typedef FlashCfg<HD> C;
    cudaFuncSetAttribute(k_flash_fwd<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::fwd_smem);
    dim3 grid((unsigned)BH, (unsigned)cu_div_up(T, 64));
    k_flash_fwd<HD><<<grid, FL_THREADS, C::fwd_smem, s>>>(o, lse, q, k, v, (int)H, (int)T, sl2);
}

template <int HD>
static void bwd_launch(cudaStream_t s, FlashView dq, FlashView dk, FlashView dv, float *dsum, FlashView q,
                       FlashView k, FlashView v, FlashView o, FlashView dout, const float *lse, int64_t BH, int64_t H,
                       int64_t T, float sl2, float scale) {
    typedef FlashCfg<HD> C;
    const int64_t rows = BH * T, rows_per_block = 256 / (HD / 8);
    k_flash_dsum<HD><<<(unsigned)cu_div_up(rows, rows_per_block), 256, 0, s>>>(dsum, o, dout, (int)H, (int)T, rows);
    cudaFuncSetAttribute(k_flash_bwd_dkv<HD, C::QT, C::MINB_DKV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         (int)C::dkv_smem);
    k_flash_bwd_dkv<HD, C::QT, C::MINB_DKV><<<dim3((unsigned)BH, (unsigned)cu_div_up(T, 64)), FL_THREADS, C::dkv_smem, s>>>(
        dk, dv, q, k, v, dout, lse, dsum, (int)H, (int)T, sl2, scale);
    cudaFuncSetAttribute(k_flash_bwd_dq<HD, C::KT, C::MINB_DQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         (int)C::dq_smem);
    k_flash_bwd_dq<HD, C::KT, C::MINB_DQ><<<dim3((unsigned)BH, (unsigned)cu_div_up(T, 64)), FL_THREADS, C::dq_smem, s>>>(
        dq, q, k, v, dout, lse, dsum, (int)H, (int)T, sl2, scale);
}

extern "C" bool flash_attn_supported(int64_t hd) { return hd == 64 || hd == 128; }

void flash_attn_fwd(cudaStream_t s, FlashView o, float *lse, FlashView q, FlashView k, FlashView v, int64_t B,
                    int64_t H, int64_t T, int64_t hd, float scale) {
    const float sl2 = scale * LOG2E;
    if (hd == 64) fwd_launch<64>(s, o, lse, q, k, v, B * H, H, T, sl2);
    else if (hd == 128) fwd_launch<128>(s, o, lse, q, k, v, B * H, H, T, sl2);
}

void flash_attn_bwd(cudaStream_t s, FlashView dq, FlashView dk, FlashView dv, float *dsum, FlashView q, FlashView k,
                    FlashView v, FlashView o, FlashView dout, const float *lse, int64_t B, int64_t H, int64_t T,
                    int64_t hd, float scale) {
    const float sl2 = scale * LOG2E;
    if (hd == 64) bwd_launch<64>(s, dq, dk, dv, dsum, q, k, v, o, dout, lse, B * H, H, T, sl2, scale);
    else if (hd == 128) bwd_launch<128>(s, dq, dk, dv, dsum, q, k, v, o, dout, lse, B * H, H, T, sl2, scale);
}

// ---------------------------------------------------------------------------------------------------------------
// host test entry

static void to_bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = fp32_to_bf16(src[i]);
}
static void from_bf16(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(src[i]);
}

static int host_run(const float *q, const float *k, const float *v, const float *dout, int64_t B, int64_t H,
                    int64_t T, int64_t hd, float *out, float *lse, float *dq, float *dk, float *dv, char **dev,
                    uint16_t *h16, Err *e) {
    const size_t n = (size_t)(B * H * T * hd), nr = (size_t)(B * H * T);
    // dev: q, k, v, o, dout, dq, dk, dv (n bf16 each), then lse, dsum (nr f32 each)
    CU_TRY(e, cudaMalloc((void **)dev, 8 * n * 2 + 2 * nr * 4 + 256));
    bf16 *d[8];
    for (int i = 0; i < 8; i++) d[i] = (bf16 *)(*dev + (size_t)i * n * 2);
    float *d_lse = (float *)(*dev + 8 * n * 2), *d_dsum = d_lse + nr;
    const float *src[5] = {q, k, v, NULL, dout};
    for (int i = 0; i < 5; i++) {
        if (!src[i]) continue;
        to_bf16(h16, src[i], n);
        CU_TRY(e, cudaMemcpy(d[i], h16, n * 2, cudaMemcpyHostToDevice));
    }
    FlashView heads[8], rows[8];
    for (int i = 0; i < 8; i++) {
        heads[i] = {d[i], H * T * hd, T * hd, hd};
        rows[i] = {d[i], T * H * hd, hd, H * hd};
    }
    const float scale = (float)(1.0 / sqrt((double)hd));
    flash_attn_fwd(0, rows[3], d_lse, heads[0], heads[1], heads[2], B, H, T, hd, scale);
    CU_TRY_LAUNCH(e);
    if (dout) {
        flash_attn_bwd(0, heads[5], heads[6], heads[7], d_dsum, heads[0], heads[1], heads[2], rows[3], rows[4], d_lse,
                       B, H, T, hd, scale);
        CU_TRY_LAUNCH(e);
    }
    CU_TRY(e, cudaDeviceSynchronize());
    CU_TRY(e, cudaMemcpy(h16, d[3], n * 2, cudaMemcpyDeviceToHost));
    from_bf16(out, h16, n);
    CU_TRY(e, cudaMemcpy(lse, d_lse, nr * 4, cudaMemcpyDeviceToHost));
    if (dout) {
        float *dst[3] = {dq, dk, dv};
        for (int i = 0; i < 3; i++) {
            CU_TRY(e, cudaMemcpy(h16, d[5 + i], n * 2, cudaMemcpyDeviceToHost));
            from_bf16(dst[i], h16, n);
        }
    }
    return 0;
}

extern "C" int flash_attn_host_run(const float *q, const float *k, const float *v, const float *dout, int64_t B,
                                   int64_t H, int64_t T, int64_t hd, float *out, float *lse, float *dq, float *dk,
                                   float *dv, Err *e) {
    if (!flash_attn_supported(hd)) return ERR(e, "flash attention: head size %lld is not supported", (long long)hd);
    if (B <= 0 || H <= 0 || T <= 0 || B * H > ((int64_t)1 << 24) || T > ((int64_t)1 << 20))
        return ERR(e, "flash attention: bad shape %lld x %lld x %lld", (long long)B, (long long)H, (long long)T);
    if (dout && (!dq || !dk || !dv)) return ERR(e, "flash attention: the backward needs dq, dk and dv");
    char why[256];
    if (cuda_device_count(why, sizeof why) < 1) return ERR(e, "no CUDA device: %s", why);
    char *dev = NULL;
    uint16_t *h16 = (uint16_t *)xmalloc_array((size_t)(B * H * T * hd), sizeof(uint16_t));
    int rc = host_run(q, k, v, dout, B, H, T, hd, out, lse, dq, dk, dv, &dev, h16, e);
    if (dev) cudaFree(dev);
    free(h16);
    return rc;
}
