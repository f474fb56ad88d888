// infer_kernels.cu — the CUDA kernels of inference (see infer_internal.h for the weight layout and the launchers).
//
// Decoding is memory-bound: every generated token reads every weight once, so the matvec is the kernel that
// matters. It runs as a persistent grid (every block resident at once): each warp walks its rows (one matrix, or
// gate and up together) in batches of 16-byte loads (LDG.128), the next batch always in flight while the current one
// is reduced, so the weights stream without a gap between rows; the input vector sits in shared memory, put there
// once per block by its prologue, which also applies the norm that precedes the product (RMSNorm or LayerNorm fused
// into the matvec; the statistics summed by one warp per state, no block-wide reductions) and,
// for Q8_0/Q4_0 weights, quantizes it to int8 blocks of 32 exactly as the CPU's matvec_act_prepare does, so the
// products are the same integer dot products (dp4a). The epilogue adds the bias and stores, adds into the residual
// stream (residual add fused into the output projections) or applies the MLP activation (SwiGLU fused with the
// gate/up products). One kernel template serves every weight dtype (a switch in the launcher, never copied code).
// Batched decoding (the server's slots) passes up to 8 states per launch: each weight load serves all of them.
//
// Attention, decoding ("flash decoding"): the context is split into chunks of keys (the chunk length depends only on
// the sequence's own n_ctx, so a sequence's result does not depend on what it is batched with; one tile of 32 keys up
// to 2048 positions, so a typical context gives many blocks); one block per (chunk, KV head, state) ropes the G query
// heads of that KV head and the current key, keeps online-softmax state per query head over tiles of keys staged in
// shared memory, and writes a partial (max, sum, unnormalised values); the last block of a (state, KV head) to finish
// (an atomic counter) combines the partials in chunk order, loading them all at once. A context that fits
// one chunk writes its output directly. Prompts: rope + cache store here, then cuBLAS batched GEMMs for Q K^T and P V
// (infer_model.cu) with the scaled, masked softmax kernel below between them; a tiled kernel with online softmax
// remains for score matrices too large for the scratch.
//
// Programmatic dependent launch (Hopper; LOSSY_CUDA_PDL=0 turns it off): the decoding kernels are launched so that
// they may start while the previous kernel finishes. Each issues the loads that do not depend on it (its first batch
// of weights; the attention's first tile of cached keys) before griddepcontrol.wait, and lets its own successor
// start only after that wait (so at most two kernels overlap). Every kernel launched this way waits before writing
// anything, so the order of writes is that of the stream.
// Norm statistics are summed in double, the rest is float in the CPU's order of operations where it matters.
#include <math.h>

#include <atomic>

#include "cuda/infer_internal.h"
#include "cuda/reduce.cuh"

#define MV_WARPS 8
#define MV_THREADS (MV_WARPS * 32)
#define MV_UNROLL 8 // 16-byte loads per lane in one batch of a single matrix (a 2048-wide f16 row)
#define MV_MAX_NS 8 // states per launch

// ---------------------------------------------------------------------------------------------------------------
// programmatic dependent launch

static int g_pdl = 0; // launch the decoding kernels with programmatic stream serialization (kernels_set_pdl)

void kernels_set_pdl(int on) { g_pdl = on; }

// Wait until the previous kernel in the stream has finished and its writes are visible (no-op without PDL).
static __device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Let the next kernel in the stream start launching (it still waits for this one before reading our results).
static __device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// A kernel launch, with the PDL attribute when pdl is set (and enabled).
template <typename... KArgs, typename... Args>
static cudaError_t klaunch(bool pdl, void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = st;
    cfg.attrs = at, cfg.numAttrs = pdl && g_pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k, ((KArgs)args)...);
}

// ---------------------------------------------------------------------------------------------------------------
// element access and activations

static __device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
static __device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// One element of a device matrix (embedding rows; not a hot path).
static __device__ float gmat_get(const GMat &w, int64_t row, int64_t col) {
    const uint8_t *r = w.q + row * w.ld;
    switch (w.dt) {
    case G_F32: return ((const float *)r)[col];
    case G_F16: return __half2float(((const __half *)r)[col]);
    case G_BF16: return __uint_as_float((uint32_t)((const uint16_t *)r)[col] << 16);
    case G_Q8: return (float)(int8_t)r[col] * __half2float(w.d[row * (w.kp / 32) + col / 32]);
    case G_Q4: {
        int64_t b = col / 32, j = col % 32;
        uint8_t byte = r[b * 16 + (j & 15)];
        int nib = j < 16 ? (byte & 15) : (byte >> 4);
        return (float)(nib - 8) * __half2float(w.d[row * (w.kp / 32) + b]);
    }
    }
    return 0.0f;
}

// config.h ActType: 0 SiLU, 1 GELU (tanh), 2 GELU (erf), 3 ReLU — the CPU formulas (kernels/activation.c).
static __device__ __forceinline__ float act_apply(int act, float v) {
    switch (act) {
    case 0: return v * (1.0f / (1.0f + expf(-v)));
    case 1: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case 2: return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    default: return v > 0.0f ? v : 0.0f;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// matvec

// Values per 16-byte chunk of a row.
template <int DT> struct Chunk {
    static constexpr int elems = DT == G_F32 ? 4 : (DT == G_F16 || DT == G_BF16) ? 8 : DT == G_Q8 ? 16 : 32;
    static constexpr bool quant = DT == G_Q8 || DT == G_Q4;
};

size_t mv_smem_bytes(int dt, int64_t kp, int ns) {
    if (dt == G_Q8 || dt == G_Q4) return (size_t)ns * ((size_t)kp + (size_t)kp / 32 * sizeof(float));
    return (size_t)ns * (size_t)kp * sizeof(float);
}

// Norm statistics of row x (C): r = 1/sqrt(var + eps) and the mean (LayerNorm) in double, as norm.c.
static __device__ void norm_stats(int pro, const float *x, int64_t C, float eps, double *red, float *r, float *mean) {
    *r = 1.0f;
    *mean = 0.0f;
    if (pro == PRO_RMS) {
        double ss = 0;
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x) ss += (double)x[i] * (double)x[i];
        ss = block_sum_d(ss, red);
        *r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    } else if (pro == PRO_LAYER) {
        double sm = 0;
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x) sm += (double)x[i];
        double m = block_sum_d(sm, red) / (double)C, sq = 0;
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
            double d = (double)x[i] - m;
            sq += d * d;
        }
        sq = block_sum_d(sq, red);
        *r = (float)(1.0 / sqrt(sq / (double)C + (double)eps));
        *mean = (float)m;
    }
}

static __device__ __forceinline__ float norm_apply(int pro, float v, float r, float mean, const float *w, const float *b, int64_t i) {
    if (pro == PRO_RMS) return (v * r) * w[i];
    if (pro == PRO_LAYER) {
        float h = (v - mean) * r;
        return b ? h * w[i] + b[i] : h * w[i];
    }
    return v;
}

// Norm statistics of row x (C) computed by one warp (no block synchronisation): r and the mean in double, summed
// in an order that depends only on C (lane-strided, then the warp tree), so every state gets the same bits whatever
// it is batched with. Sixteen loads per lane are issued before any arithmetic (the row comes from L2).
static __device__ void norm_stats_warp(int pro, const float *x, int64_t C, float eps, float *r, float *mean) {
    const int lane = threadIdx.x & 31;
    *r = 1.0f;
    *mean = 0.0f;
    if (pro != PRO_RMS && pro != PRO_LAYER) return;
    double s1 = 0, m = 0;
    if (pro == PRO_LAYER) {
        for (int64_t i0 = 0; i0 < C; i0 += 32 * 16) {
            float v[16];
#pragma unroll
            for (int k = 0; k < 16; k++) v[k] = i0 + lane + 32 * k < C ? x[i0 + lane + 32 * k] : 0.0f;
#pragma unroll
            for (int k = 0; k < 16; k++) s1 += (double)v[k];
        }
        m = warp_sum_d(s1) / (double)C;
    }
    double sq = 0;
    for (int64_t i0 = 0; i0 < C; i0 += 32 * 16) {
        float v[16];
#pragma unroll
        for (int k = 0; k < 16; k++) v[k] = i0 + lane + 32 * k < C ? x[i0 + lane + 32 * k] : 0.0f;
#pragma unroll
        for (int k = 0; k < 16; k++)
            if (i0 + lane + 32 * k < C) {
                const double d = (double)v[k] - m;
                sq += d * d;
            }
    }
    sq = warp_sum_d(sq);
    *r = (float)(1.0 / sqrt(sq / (double)C + (double)eps));
    *mean = (float)m;
}

// The block's prologue, paid once per block of the persistent grid: each state's input row, normed, into shared
// memory (f32, or int8 blocks + scales). Warp w computes the norm statistics of states w, w + MV_WARPS, ... (all
// states at once, one warp each), then the whole block applies them. st: (MV_MAX_NS, 2) shared floats.
template <int DT>
static __device__ void mv_prologue(const MvArgs &a, uint8_t *smem, float *st) {
    const int64_t C = a.a.cols, kp = a.a.kp;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (a.pro != PRO_COPY) {
        for (int s = warp; s < a.nstates; s += blockDim.x >> 5) {
            float r, mean;
            norm_stats_warp(a.pro, a.x + (int64_t)s * a.ldx, C, a.eps, &r, &mean);
            if (lane == 0) st[2 * s] = r, st[2 * s + 1] = mean;
        }
        __syncthreads();
    }
    for (int s = 0; s < a.nstates; s++) {
        const float *x = a.x + (int64_t)s * a.ldx;
        const float r = a.pro != PRO_COPY ? st[2 * s] : 1.0f, mean = a.pro != PRO_COPY ? st[2 * s + 1] : 0.0f;
        if (!Chunk<DT>::quant) {
            float *xs = (float *)smem + (int64_t)s * kp;
#pragma unroll 8
            for (int64_t i = threadIdx.x; i < kp; i += blockDim.x) xs[i] = i < C ? norm_apply(a.pro, x[i], r, mean, a.nw, a.nb, i) : 0.0f;
        } else {
            // symmetric int8 per block of 32: d = max|x| / 127, q = round(x * 127 / max|x|) (kernels/matvec.c)
            int8_t *xq = (int8_t *)smem + (int64_t)s * kp;
            float *xd = (float *)(smem + (size_t)a.nstates * (size_t)kp) + (int64_t)s * (kp / 32);
#pragma unroll 4
            for (int64_t blk = warp; blk < kp / 32; blk += blockDim.x / 32) {
                int64_t i = blk * 32 + lane;
                float v = i < C ? norm_apply(a.pro, x[i], r, mean, a.nw, a.nb, i) : 0.0f;
                float amax = warp_max(fabsf(v));
                float id = amax > 0.0f ? 127.0f / amax : 0.0f;
                float qv = rintf(v * id);
                xq[i] = (int8_t)(qv > 127.0f ? 127 : qv < -127.0f ? -127 : (int)qv);
                if (lane == 0) xd[blk] = amax / 127.0f;
            }
        }
    }
    __syncthreads();
}

// acc[s] += the products of 16-byte chunk c of a row (its bytes in v) with each state's input.
template <int DT, int NS>
static __device__ __forceinline__ void mv_chunk(const uint4 &v, int64_t c, float wscale, const uint8_t *smem, int64_t kp,
                                                int nstates, float *acc) {
    if (DT == G_F32) {
        const float4 w = *(const float4 *)&v;
#pragma unroll
        for (int s = 0; s < NS; s++)
            if (s < nstates) {
                const float4 x = ((const float4 *)((const float *)smem + (int64_t)s * kp))[c];
                acc[s] = fmaf(w.x, x.x, fmaf(w.y, x.y, fmaf(w.z, x.z, fmaf(w.w, x.w, acc[s]))));
            }
    } else if (DT == G_F16 || DT == G_BF16) {
        float w[8];
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (DT == G_F16) {
                float2 f = __half22float2(*(const __half2 *)&u[j]);
                w[2 * j] = f.x, w[2 * j + 1] = f.y;
            } else {
                w[2 * j] = bf16_lo(u[j]), w[2 * j + 1] = bf16_hi(u[j]);
            }
        }
#pragma unroll
        for (int s = 0; s < NS; s++)
            if (s < nstates) {
                const float4 *xs = (const float4 *)((const float *)smem + (int64_t)s * kp) + 2 * c;
                const float4 x0 = xs[0], x1 = xs[1];
                float t = acc[s];
                t = fmaf(w[0], x0.x, t), t = fmaf(w[1], x0.y, t), t = fmaf(w[2], x0.z, t), t = fmaf(w[3], x0.w, t);
                t = fmaf(w[4], x1.x, t), t = fmaf(w[5], x1.y, t), t = fmaf(w[6], x1.z, t), t = fmaf(w[7], x1.w, t);
                acc[s] = t;
            }
    } else if (DT == G_Q8) {
        const float *xd = (const float *)(smem + (size_t)nstates * (size_t)kp);
#pragma unroll
        for (int s = 0; s < NS; s++)
            if (s < nstates) {
                const int4 x = ((const int4 *)((const int8_t *)smem + (int64_t)s * kp))[c];
                int is = __dp4a((int)v.x, x.x, 0);
                is = __dp4a((int)v.y, x.y, is);
                is = __dp4a((int)v.z, x.z, is);
                is = __dp4a((int)v.w, x.w, is);
                acc[s] += (float)is * (wscale * xd[(int64_t)s * (kp / 32) + (c >> 1)]);
            }
    } else { // G_Q4: chunk c is block c
        const float *xd = (const float *)(smem + (size_t)nstates * (size_t)kp);
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
        int lo[4], hi[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            lo[j] = (int)__vsub4(u[j] & 0x0f0f0f0fu, 0x08080808u);
            hi[j] = (int)__vsub4((u[j] >> 4) & 0x0f0f0f0fu, 0x08080808u);
        }
#pragma unroll
        for (int s = 0; s < NS; s++)
            if (s < nstates) {
                const int4 *xq = (const int4 *)((const int8_t *)smem + (int64_t)s * kp) + 2 * c;
                const int4 xa = xq[0], xb = xq[1]; // elements 0..15 and 16..31 of the block
                int is = __dp4a(lo[0], xa.x, 0);
                is = __dp4a(lo[1], xa.y, is);
                is = __dp4a(lo[2], xa.z, is);
                is = __dp4a(lo[3], xa.w, is);
                is = __dp4a(hi[0], xb.x, is);
                is = __dp4a(hi[1], xb.y, is);
                is = __dp4a(hi[2], xb.z, is);
                is = __dp4a(hi[3], xb.w, is);
                acc[s] += (float)is * (wscale * xd[(int64_t)s * (kp / 32) + c]);
            }
    }
}

// 16-byte loads per lane and matrix in one batch; the kernel keeps two batches in registers (the one being reduced
// and the next one in flight), so a lane has up to 16 loads (256 bytes) outstanding. A 2048-wide f16 row is one
// batch for a single matrix, two for gate/up (which read two matrices at once); more states need the registers for
// their products, so they keep fewer loads per batch.
template <int NS, bool GLU> struct MvUnroll { static constexpr int u = (NS <= 2 ? MV_UNROLL : MV_UNROLL / 2) / (GLU ? 2 : 1); };

// One batch of a row: chunks c0, c0 + 32, ... (U of them, those < nchunk) and their block scales.
template <int DT, int U>
static __device__ __forceinline__ void mv_load(const GMat &w, int64_t row, int64_t c0, uint4 (&v)[U], float (&sc)[U]) {
    const uint4 *p = (const uint4 *)(w.q + row * w.ld);
    const int64_t nchunk = w.ld >> 4;
    const __half *dr = Chunk<DT>::quant ? w.d + row * (w.kp / 32) : nullptr;
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int64_t c = c0 + 32 * u;
        if (c < nchunk) {
            v[u] = __ldg(p + c);
            if (Chunk<DT>::quant) sc[u] = __half2float(__ldg(dr + (DT == G_Q8 ? (c >> 1) : c)));
        }
    }
}

// The products of one batch (chunks c0, c0 + 32, ...) with every state's input, added to this lane's sums in chunk
// order: lane, lane + 32, ... over the whole row, whatever the batching (the caller reduces over the warp).
template <int DT, int NS, int U>
static __device__ __forceinline__ void mv_batch(const uint4 (&v)[U], const float (&sc)[U], int64_t c0, int64_t nchunk,
                                                const uint8_t *smem, int64_t kp, int nstates, float *acc) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int64_t c = c0 + 32 * u;
        if (c < nchunk) mv_chunk<DT, NS>(v[u], c, Chunk<DT>::quant ? sc[u] : 1.0f, smem, kp, nstates, acc);
    }
}

// A persistent grid (as many blocks as fit on the device at once, mv_launch): warp gw of the grid computes rows
// gw, gw + (all warps), ... The block's prologue (norm, quantization of the input) runs once, while the warp's first
// batch of weights is in flight; then each warp walks its rows batch by batch, issuing the next batch's loads (the
// rest of this row or the start of its next row) before reducing the current one, so the weights stream without a
// gap between rows. GLU: a.epi == EPI_GLU (two matrices per row), a template parameter so the other kernels keep no
// registers for b.
template <int DT, int NS, bool GLU>
__global__ void __launch_bounds__(MV_THREADS, 2) mv_kernel(const MvArgs a) {
    constexpr int U = MvUnroll<NS, GLU>::u;
    constexpr int UB = GLU ? U : 1;
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ float st[2 * MV_MAX_NS];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t rows = a.a.rows, nchunk = a.a.ld >> 4, nbatch = (nchunk + 32 * U - 1) / (32 * U);
    const int64_t wstride = (int64_t)gridDim.x * MV_WARPS;
    int64_t row = (int64_t)blockIdx.x * MV_WARPS + warp, bt = 0; // this warp's current row and batch (warp-uniform)
    // The weights do not depend on the previous kernel: the first batch (of both matrices for gate/up) is in flight
    // while the previous kernel finishes and while the prologue runs.
    uint4 va[U], vb[UB], na[U], nb[UB];
    float sa[U], sb[UB], nsa[U], nsb[UB];
    if (row < rows) {
        mv_load<DT, U>(a.a, row, lane, va, sa);
        if (GLU) mv_load<DT, U>(a.b, row, lane, *(uint4(*)[U])vb, *(float(*)[U])sb);
    }
    pdl_wait();
    pdl_trigger();
    mv_prologue<DT>(a, smem, st);
    float acc[NS], accb[NS];
#pragma unroll
    for (int s = 0; s < NS; s++) acc[s] = 0.0f, accb[s] = 0.0f;
    while (row < rows) {
        int64_t nrow = row, nbt = bt + 1;
        if (nbt == nbatch) nrow += wstride, nbt = 0;
        if (nrow < rows) {
            mv_load<DT, U>(a.a, nrow, lane + nbt * 32 * U, na, nsa);
            if (GLU) mv_load<DT, U>(a.b, nrow, lane + nbt * 32 * U, *(uint4(*)[U])nb, *(float(*)[U])nsb);
        }
        const int64_t c0 = lane + bt * 32 * U;
        mv_batch<DT, NS, U>(va, sa, c0, nchunk, smem, a.a.kp, a.nstates, acc);
        if (GLU) mv_batch<DT, NS, U>(*(uint4(*)[U])vb, *(float(*)[U])sb, c0, nchunk, smem, a.a.kp, a.nstates, accb);
        if (nbt == 0) { // the row is complete
#pragma unroll
            for (int s = 0; s < NS; s++) {
                acc[s] = warp_sum(acc[s]);
                if (GLU) accb[s] = warp_sum(accb[s]);
            }
            if (lane == 0) {
                const float ba = a.bias_a ? a.bias_a[row] : 0.0f;
#pragma unroll
                for (int s = 0; s < NS; s++) {
                    if (s >= a.nstates) break;
                    float v = acc[s] + ba, *y = a.y + (int64_t)s * a.ldy + row;
                    if (GLU) {
                        float u = accb[s] + (a.bias_b ? a.bias_b[row] : 0.0f);
                        *y = act_apply(a.act, v) * u;
                    } else {
                        switch (a.epi) {
                        case EPI_STORE: *y = v; break;
                        case EPI_ADD: *y += v; break;
                        default: *y = act_apply(a.act, v); break;
                        }
                    }
                }
            }
#pragma unroll
            for (int s = 0; s < NS; s++) acc[s] = 0.0f, accb[s] = 0.0f;
        }
#pragma unroll
        for (int u = 0; u < U; u++) va[u] = na[u], sa[u] = nsa[u];
#pragma unroll
        for (int u = 0; u < UB; u++) vb[u] = nb[u], sb[u] = nsb[u];
        row = nrow, bt = nbt;
    }
}

#define MV_FOR_NS(DT, X) X(DT, 1, false) X(DT, 2, false) X(DT, 4, false) X(DT, 8, false) \
    X(DT, 1, true) X(DT, 2, true) X(DT, 4, true) X(DT, 8, true)
#define MV_FOR_ALL(X) MV_FOR_NS(G_F32, X) MV_FOR_NS(G_F16, X) MV_FOR_NS(G_BF16, X) MV_FOR_NS(G_Q8, X) MV_FOR_NS(G_Q4, X)

// ---------------------------------------------------------------------------------------------------------------
// attention

static __device__ __forceinline__ int64_t first_visible(int64_t t, int64_t window) {
    return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
}

#define AD_WARPS 4
#define AD_THREADS (AD_WARPS * 32)
#define AD_TK 32 // keys per tile (one per lane when scoring)

int64_t attn_grid_splits(int64_t max_ctx) {
    const int64_t n = cu_div_up(max_ctx, ATTN_MIN_CHUNK);
    return n < 1 ? 1 : n > ATTN_MAX_SPLIT ? ATTN_MAX_SPLIT : n;
}

// Floats at the start of the decode attention's shared memory: the value and key tiles (key rows padded to hd + 1),
// which the combining block then reuses for its weights (G, ATTN_MAX_SPLIT) and 1 / L (G).
static __host__ __device__ __forceinline__ int64_t ad_region0(int64_t hd, int64_t G) {
    const int64_t tiles = AD_TK * (2 * hd + 1), comb = G * (ATTN_MAX_SPLIT + 1);
    return tiles > comb ? tiles : comb;
}

size_t attn_decode_smem_bytes(int64_t hd, int64_t G) {
    // region 0, q and o of the G heads, m and l, the current key and value
    return (size_t)(ad_region0(hd, G) + 2 * G * hd + 2 * G + 2 * hd) * sizeof(float);
}

size_t attn_partial_floats(int64_t H, int64_t hd) { return (size_t)H * ATTN_MAX_SPLIT * (size_t)(hd + 2); }

// Keys [t0, t1] of one KV head into the tiles (rows t - t0; key rows padded to hd + 1 floats); the current position
// `pos` is skipped (it is not in the cache yet: the caller puts it in from the kernel's own k, v), rows past t1 are 0.
static __device__ __forceinline__ void ad_load_tile(const float *kb, const float *vb, int64_t hd, int64_t t0, int64_t t1,
                                                    int64_t pos, float *kt, float *vt) {
    const int64_t n = AD_TK * hd;
    if ((hd & 3) == 0) { // rows t0.. are contiguous and 16-byte aligned: float4 loads
        const float4 *k4 = (const float4 *)(kb + t0 * hd), *v4 = (const float4 *)(vb + t0 * hd);
#pragma unroll 4
        for (int64_t j = threadIdx.x; j < n / 4; j += blockDim.x) {
            const int64_t r = (4 * j) / hd, d = (4 * j) % hd, t = t0 + r;
            const bool ok = t <= t1 && t != pos;
            const float4 kv = ok ? __ldg(k4 + j) : make_float4(0.f, 0.f, 0.f, 0.f);
            const float4 vv = ok ? __ldg(v4 + j) : make_float4(0.f, 0.f, 0.f, 0.f);
            float *kr = kt + r * (hd + 1) + d;
            kr[0] = kv.x, kr[1] = kv.y, kr[2] = kv.z, kr[3] = kv.w;
            *(float4 *)(vt + r * hd + d) = vv;
        }
    } else {
#pragma unroll 4
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
            const int64_t r = j / hd, d = j % hd, t = t0 + r;
            const bool ok = t <= t1 && t != pos;
            kt[r * (hd + 1) + d] = ok ? kb[t * hd + d] : 0.0f;
            vt[r * hd + d] = ok ? vb[t * hd + d] : 0.0f;
        }
    }
}

// grid (S): cos and sin of every rope pair at state s's position, once per step for all layers (the angle in double
// as the CPU computes it, then rounded to float).
__global__ void rope_table_kernel(const AttnShape sh, const SeqDev *seq, float2 *cs) {
    pdl_wait();
    pdl_trigger();
    const int64_t half = sh.rope_dim / 2, pos = seq[blockIdx.x].pos;
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
        double sd, cd;
        sincos((double)pos * sh.inv_freq[i], &sd, &cd);
        cs[blockIdx.x * half + i] = make_float2((float)cd, (float)sd);
    }
}

// grid (splits, Hkv, S): chunk `split` of the keys visible to state s's current token, for the G query heads of KV
// head blockIdx.y. rcs: (S, rope_dim / 2) from rope_table_kernel; part: (S, Hkv, ATTN_MAX_SPLIT, G, hd + 2) partials
// [m, l, o (hd)]; cnt: (S, Hkv) zeros.
__global__ void __launch_bounds__(AD_THREADS, 4) attn_decode_kernel(const AttnShape sh, int64_t layer, const SeqDev *seq,
                                                                 const float2 *rcs, const float *qkv, float *out, float *part,
                                                                 int *cnt) {
    extern __shared__ __align__(16) float fsm[];
    __shared__ int last;
    const int64_t H = sh.H, Hkv = sh.Hkv, hd = sh.hd, G = H / Hkv, QKV = (H + 2 * Hkv) * hd;
    const int64_t split = blockIdx.x, kvh = blockIdx.y, s = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const SeqDev sd = seq[s];
    const int64_t pos = sd.pos, n_ctx = sd.n_ctx, ch = attn_chunk_keys(n_ctx);
    const int64_t lo = first_visible(pos, sh.window), sp_first = lo / ch, sp_last = pos / ch;
    if (split < sp_first || split > sp_last) { // no key of this state in this chunk
        pdl_wait();
        pdl_trigger();
        return;
    }
    const int64_t k0 = split * ch > lo ? split * ch : lo, k1 = split * ch + ch - 1 < pos ? split * ch + ch - 1 : pos;
    const float scale = (float)(1.0 / sqrt((double)hd));
    // the value tile first: its float4 stores need 16-byte alignment whatever G and hd are; the last block reuses the
    // tiles' space for the combine weights
    float *vt = fsm, *kt = vt + AD_TK * hd, *qs = fsm + ad_region0(hd, G), *os = qs + G * hd, *ms = os + G * hd, *ls = ms + G;
    float *kc = ls + G, *vc = kc + hd;
    const size_t head_off = ((size_t)layer * (size_t)Hkv + (size_t)kvh) * (size_t)n_ctx * (size_t)hd;
    const float *kb = sd.k + head_off, *vb = sd.v + head_off;
    // the first tile of cached keys does not depend on the previous kernel
    ad_load_tile(kb, vb, hd, k0, k0 + AD_TK - 1 < k1 ? k0 + AD_TK - 1 : k1, pos, kt, vt);
    pdl_wait();
    pdl_trigger();
    const float *row = qkv + s * QKV;
    for (int64_t j = tid; j < G * hd; j += blockDim.x) qs[j] = row[kvh * G * hd + j];
    for (int64_t d = tid; d < hd; d += blockDim.x) kc[d] = row[(H + kvh) * hd + d], vc[d] = row[(H + Hkv + kvh) * hd + d];
    for (int64_t j = tid; j < G; j += blockDim.x) ms[j] = -INFINITY, ls[j] = 0.0f;
    for (int64_t j = tid; j < G * hd; j += blockDim.x) os[j] = 0.0f;
    __syncthreads();
    if (sh.rope) { // the pairs of the G query heads and of the key, over all threads
        const int64_t half = sh.rope_dim / 2;
        const bool neox = sh.rope == 2;
        for (int64_t j = tid; j < (G + 1) * half; j += blockDim.x) {
            const int64_t hh = j / half, i = j % half;
            float *x = hh < G ? qs + hh * hd : kc;
            const float2 r = rcs[s * half + i];
            const int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
            const float a = x[ia], b = x[ib];
            x[ia] = a * r.x - b * r.y;
            x[ib] = a * r.y + b * r.x;
        }
        __syncthreads();
    }
    if (split == sp_last) // the one block holding the current position stores its key and value
        for (int64_t d = tid; d < hd; d += blockDim.x) {
            sd.k[head_off + (size_t)pos * hd + d] = kc[d];
            sd.v[head_off + (size_t)pos * hd + d] = vc[d];
        }
    for (int64_t t0 = k0; t0 <= k1; t0 += AD_TK) {
        const int64_t t1 = t0 + AD_TK - 1 < k1 ? t0 + AD_TK - 1 : k1;
        if (t0 != k0) {
            __syncthreads(); // the previous tile is consumed
            ad_load_tile(kb, vb, hd, t0, t1, pos, kt, vt);
        }
        if (pos >= t0 && pos <= t1)
            for (int64_t d = tid; d < hd; d += blockDim.x) kt[(pos - t0) * (hd + 1) + d] = kc[d], vt[(pos - t0) * hd + d] = vc[d];
        __syncthreads();
        const int64_t key = t0 + lane;
        const bool valid = key <= t1;
        for (int64_t j = warp; j < G; j += AD_WARPS) {
            // score = (q . k) * scale, as the CPU (kernels/attention.c) scales after the dot product
            float sc = -INFINITY;
            if (valid) {
                const float *q = qs + j * hd, *k = kt + lane * (hd + 1);
                float acc = 0.0f;
                for (int64_t d = 0; d < hd; d++) acc = fmaf(q[d], k[d], acc);
                sc = acc * scale;
            }
            const float mold = ms[j], tmax = warp_max(sc), mnew = fmaxf(mold, tmax), corr = expf(mold - mnew);
            const float p = valid ? expf(sc - mnew) : 0.0f;
            const float psum = warp_sum(p), lold = ls[j];
            float o[ATTN_MAX_HD / 32]; // this lane's dims lane, lane + 32, ...
#pragma unroll
            for (int dd = 0; dd < ATTN_MAX_HD / 32; dd++) o[dd] = lane + 32 * dd < hd ? os[j * hd + lane + 32 * dd] * corr : 0.0f;
            for (int kk = 0; kk < AD_TK; kk++) {
                const float pk = __shfl_sync(0xffffffffu, p, kk);
                const float *vr = vt + kk * hd + lane;
#pragma unroll
                for (int dd = 0; dd < ATTN_MAX_HD / 32; dd++)
                    if (lane + 32 * dd < hd) o[dd] = fmaf(pk, vr[32 * dd], o[dd]);
            }
#pragma unroll
            for (int dd = 0; dd < ATTN_MAX_HD / 32; dd++)
                if (lane + 32 * dd < hd) os[j * hd + lane + 32 * dd] = o[dd];
            __syncwarp();
            if (lane == 0) ms[j] = mnew, ls[j] = lold * corr + psum;
        }
    }
    __syncthreads();
    const int64_t nused = sp_last - sp_first + 1;
    if (nused == 1) { // the whole context in this chunk
        for (int64_t j = tid; j < G * hd; j += blockDim.x) out[s * H * hd + kvh * G * hd + j] = os[j] / ls[j / hd];
        return;
    }
    float *pp = part + (((size_t)s * (size_t)Hkv + (size_t)kvh) * ATTN_MAX_SPLIT) * (size_t)G * (size_t)(hd + 2);
    const size_t pstride = (size_t)G * (size_t)(hd + 2); // one split's partials
    for (int64_t j = tid; j < G; j += blockDim.x) pp[split * pstride + j * (hd + 2)] = ms[j], pp[split * pstride + j * (hd + 2) + 1] = ls[j];
    for (int64_t j = tid; j < G * hd; j += blockDim.x) pp[split * pstride + (j / hd) * (hd + 2) + 2 + j % hd] = os[j];
    __threadfence(); // the partials are visible device-wide before the counter says so
    __syncthreads();
    int *c = cnt + s * Hkv + kvh;
    if (tid == 0) last = atomicAdd(c, 1) == (int)(nused - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    // The last block combines the partials: per query head, one warp loads every chunk's (m, l) at once (a lane per
    // chunk), takes the max and the weights exp(m_i - M) into shared memory (the tiles are free now) and the sum
    // 1 / L; then each thread sums its (head, dim) values over the chunks in chunk order, the loads independent of
    // each other. The order of every sum depends only on the number of chunks (the state's own context).
    float *wsm = fsm, *isum = fsm + G * ATTN_MAX_SPLIT; // (G, ATTN_MAX_SPLIT) weights, (G) 1 / L
    const float *pf = pp + sp_first * pstride;
    for (int64_t j = warp; j < G; j += AD_WARPS) {
        constexpr int PL = ATTN_MAX_SPLIT / 32;
        float mi[PL], li[PL], M = -INFINITY;
#pragma unroll
        for (int k = 0; k < PL; k++) {
            const int64_t i = lane + 32 * k;
            mi[k] = i < nused ? __ldcg(pf + i * pstride + j * (hd + 2)) : -INFINITY;
            li[k] = i < nused ? __ldcg(pf + i * pstride + j * (hd + 2) + 1) : 0.0f;
            M = fmaxf(M, mi[k]);
        }
        M = warp_max(M);
        float ls = 0.0f;
#pragma unroll
        for (int k = 0; k < PL; k++) {
            const int64_t i = lane + 32 * k;
            if (i < nused) {
                const float w = expf(mi[k] - M);
                wsm[j * ATTN_MAX_SPLIT + i] = w;
                ls = fmaf(li[k], w, ls);
            }
        }
        const float L = warp_sum(ls);
        if (lane == 0) isum[j] = 1.0f / L;
    }
    __syncthreads();
    for (int64_t el = tid; el < G * hd; el += blockDim.x) {
        const int64_t j = el / hd, d = el % hd;
        const float *q = pf + j * (hd + 2) + 2 + d, *w = wsm + j * ATTN_MAX_SPLIT;
        float o = 0.0f;
#pragma unroll 8
        for (int64_t i = 0; i < nused; i++) o = fmaf(__ldcg(q + i * pstride), w[i], o);
        out[s * H * hd + kvh * G * hd + el] = o * isum[j];
    }
    if (tid == 0) *c = 0; // ready for the next step
}

// grid (T): rope of q and k heads of token t in place, then k and v into the cache at pos0 + t.
__global__ void rope_store_kernel(const AttnShape sh, int64_t layer, float *kc, float *vc, int64_t n_ctx, int64_t pos0,
                                  float *qkv) {
    const int64_t H = sh.H, Hkv = sh.Hkv, hd = sh.hd, QKV = (H + 2 * Hkv) * hd, t = blockIdx.x, pos = pos0 + t;
    float *row = qkv + t * QKV;
    if (sh.rope) {
        const int64_t half = sh.rope_dim / 2, total = (H + Hkv) * half;
        const bool neox = sh.rope == 2;
        for (int64_t j = threadIdx.x; j < total; j += blockDim.x) {
            const int64_t head = j / half, i = j % half;
            float *x = row + head * hd; // q heads, then k heads right after them
            double sd_, cd_;
            sincos((double)pos * sh.inv_freq[i], &sd_, &cd_);
            const float c = (float)cd_, sn = (float)sd_;
            int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
            float a = x[ia], b = x[ib];
            x[ia] = a * c - b * sn;
            x[ib] = a * sn + b * c;
        }
        __syncthreads();
    }
    for (int64_t j = threadIdx.x; j < Hkv * hd; j += blockDim.x) {
        const int64_t g = j / hd, d = j % hd;
        const size_t off = (((size_t)layer * (size_t)Hkv + (size_t)g) * (size_t)n_ctx + (size_t)pos) * (size_t)hd + (size_t)d;
        kc[off] = row[(H + g) * hd + d];
        vc[off] = row[(H + Hkv + g) * hd + d];
    }
}

#define AP_QT 16    // queries per block
#define AP_KT 32    // keys per tile (one per lane)
#define AP_WARPS 4  // each warp owns AP_QT / AP_WARPS queries
#define AP_QPW (AP_QT / AP_WARPS)
#define AP_MAXD (ATTN_MAX_HD / 32)

size_t attn_prompt_smem_bytes(int64_t hd) {
    return (size_t)(AP_QT * hd + AP_KT * (hd + 1) + AP_KT * hd) * sizeof(float);
}

// grid (ceil(T / AP_QT), H): causal attention with online softmax over key tiles held in shared memory.
__global__ void __launch_bounds__(AP_WARPS * 32) attn_prompt_kernel(const AttnShape sh, int64_t layer, const float *kc,
                                                                    const float *vc, int64_t n_ctx, int64_t pos0, int64_t T,
                                                                    const float *qkv, float *out) {
    extern __shared__ __align__(16) float fsm[];
    const int64_t H = sh.H, Hkv = sh.Hkv, hd = sh.hd, G = H / Hkv, QKV = (H + 2 * Hkv) * hd;
    const int64_t h = blockIdx.y, g = h / G, t0 = (int64_t)blockIdx.x * AP_QT;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float *Qs = fsm, *Ks = Qs + AP_QT * hd, *Vs = Ks + AP_KT * (hd + 1);
    const float scale = (float)(1.0 / sqrt((double)hd));
    for (int64_t j = tid; j < AP_QT * hd; j += blockDim.x) {
        const int64_t qi = j / hd, d = j % hd;
        Qs[j] = t0 + qi < T ? qkv[(t0 + qi) * QKV + h * hd + d] * scale : 0.0f;
    }
    const size_t head_off = ((size_t)layer * (size_t)Hkv + (size_t)g) * (size_t)n_ctx * (size_t)hd;
    const float *kb = kc + head_off, *vb = vc + head_off;
    const int64_t tq_last = (t0 + AP_QT < T ? t0 + AP_QT : T) - 1;
    const int64_t khi = pos0 + tq_last, klo = first_visible(pos0 + t0, sh.window);
    float m[AP_QPW], l[AP_QPW], acc[AP_QPW][AP_MAXD];
#pragma unroll
    for (int j = 0; j < AP_QPW; j++) {
        m[j] = -INFINITY, l[j] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < AP_MAXD; dd++) acc[j][dd] = 0.0f;
    }
    for (int64_t kt = klo; kt <= khi; kt += AP_KT) {
        __syncthreads(); // the previous tile is consumed (and Qs written, on the first pass)
        for (int64_t j = tid; j < AP_KT * hd; j += blockDim.x) {
            const int64_t r = j / hd, d = j % hd, key = kt + r;
            const bool ok = key <= khi;
            Ks[r * (hd + 1) + d] = ok ? kb[key * hd + d] : 0.0f;
            Vs[r * hd + d] = ok ? vb[key * hd + d] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < AP_QPW; j++) {
            const int64_t qi = warp * AP_QPW + j, tq = t0 + qi;
            if (tq >= T) continue; // uniform over the warp
            const int64_t qpos = pos0 + tq, key = kt + lane;
            const bool valid = key <= qpos && key >= first_visible(qpos, sh.window);
            float sc = -INFINITY;
            if (valid) {
                const float *q = Qs + qi * hd, *k = Ks + lane * (hd + 1);
                float a = 0.0f;
                for (int64_t d = 0; d < hd; d++) a += q[d] * k[d];
                sc = a;
            }
            const float tmax = warp_max(sc);
            if (tmax == -INFINITY) continue; // no visible key in this tile for this query
            const float mnew = fmaxf(m[j], tmax), corr = expf(m[j] - mnew);
            const float p = valid ? expf(sc - mnew) : 0.0f;
            l[j] = l[j] * corr + warp_sum(p);
#pragma unroll
            for (int dd = 0; dd < AP_MAXD; dd++) acc[j][dd] *= corr;
            for (int jj = 0; jj < AP_KT; jj++) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
                for (int dd = 0; dd < AP_MAXD; dd++) {
                    const int64_t d = lane + 32 * dd;
                    if (d < hd) acc[j][dd] += pj * Vs[jj * hd + d];
                }
            }
            m[j] = mnew;
        }
    }
#pragma unroll
    for (int j = 0; j < AP_QPW; j++) {
        const int64_t qi = warp * AP_QPW + j, tq = t0 + qi;
        if (tq >= T) continue;
        const float inv = l[j] > 0.0f ? 1.0f / l[j] : 0.0f;
#pragma unroll
        for (int dd = 0; dd < AP_MAXD; dd++) {
            const int64_t d = lane + 32 * dd;
            if (d < hd) out[tq * H * hd + h * hd + d] = acc[j][dd] * inv;
        }
    }
}

// One warp per row of scores S (rows, ld): row r is query tq0 + r % nq (position pos0 + tq0 + r % nq) of some head,
// columns the keys 0 .. nk-1. The visible keys [first_visible(qpos), qpos] become the scaled, stable softmax
// (scores arrive scaled: the GEMM's alpha), every other column of [0, nk) becomes 0 (the P V GEMM reads them).
__global__ void attn_softmax_kernel(float *S, int64_t ld, int64_t rows, int64_t nq, int64_t tq0, int64_t pos0, int64_t nk,
                                    int64_t window) {
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (r >= rows) return;
    float *x = S + r * ld;
    const int64_t qpos = pos0 + tq0 + r % nq, lo = first_visible(qpos, window);
    float m = -INFINITY;
    for (int64_t i = lo + lane; i <= qpos; i += 32) m = fmaxf(m, x[i]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int64_t i = lo + lane; i <= qpos; i += 32) {
        const float ev = expf(x[i] - m);
        x[i] = ev;
        sum += ev;
    }
    const float inv = (float)(1.0 / (double)warp_sum(sum));
    for (int64_t i = lane; i < nk; i += 32) x[i] = i >= lo && i <= qpos ? x[i] * inv : 0.0f;
}

// ---------------------------------------------------------------------------------------------------------------
// small elementwise kernels

__global__ void embed_kernel(const GMat tok, const GMat pos_tab, int has_pos, const SeqDev *seq, const int32_t *tokens,
                             const int64_t *pos, float *x, int64_t C) {
    pdl_wait(); // the previous kernel may still read x
    pdl_trigger();
    const int64_t s = blockIdx.x;
    const int64_t t = tokens ? tokens[s] : seq[s].token, p = pos ? pos[s] : seq[s].pos;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        float v = gmat_get(tok, t, i);
        if (has_pos) v += gmat_get(pos_tab, p, i);
        x[s * C + i] = v;
    }
}

__global__ void norm_rows_kernel(int pro, const float *x, const float *w, const float *b, float eps, int64_t C, float *out) {
    __shared__ double red[32];
    const float *xr = x + (int64_t)blockIdx.x * C;
    float r, mean;
    norm_stats(pro, xr, C, eps, red, &r, &mean);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) out[(int64_t)blockIdx.x * C + i] = norm_apply(pro, xr[i], r, mean, w, b, i);
}

// The row-wise elementwise kernels run on grid (column blocks, rows): no division per element.
__global__ void add_bias_kernel(float *y, int64_t ld, const float *bias, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[(int64_t)blockIdx.y * ld + i] += bias[i];
}

__global__ void mlp_middle_kernel(int gated, int act, float *hb, const float *hb2, const float *bg, const float *bu, int64_t F) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, j = (int64_t)blockIdx.y * F + i;
    if (i >= F) return;
    const float u = hb2[j] + (bu ? bu[i] : 0.0f);
    if (gated) hb[j] = act_apply(act, hb[j] + (bg ? bg[i] : 0.0f)) * u;
    else hb[j] = act_apply(act, u);
}

__global__ void to_half_kernel(int bf16, const float *x, int64_t ldx, int64_t K, void *out, int64_t ldo) {
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (k >= K) return;
    const float v = x[t * ldx + k];
    if (bf16) ((__nv_bfloat16 *)out)[t * ldo + k] = __float2bfloat16_rn(v);
    else ((__half *)out)[t * ldo + k] = __float2half_rn(v);
}

// One thread per block of 32 values: its 16 (Q4) or 32 (Q8) quant bytes and scale in, 64 bytes of f16 out.
__global__ void dequant_f16_kernel(const GMat w, __half *out) {
    const int64_t nb = w.kp / 32, n = w.rows * nb;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = j / nb, b = j % nb;
        const float d = __half2float(w.d[j]);
        __half2 h[16];
        if (w.dt == G_Q8) {
            const int4 *q = (const int4 *)(w.q + row * w.ld + b * 32);
            const int4 qa = q[0], qb = q[1];
            const int8_t *a = (const int8_t *)&qa, *c = (const int8_t *)&qb;
#pragma unroll
            for (int i = 0; i < 8; i++) h[i] = __floats2half2_rn((float)a[2 * i] * d, (float)a[2 * i + 1] * d);
#pragma unroll
            for (int i = 0; i < 8; i++) h[8 + i] = __floats2half2_rn((float)c[2 * i] * d, (float)c[2 * i + 1] * d);
        } else {
            const int4 qa = *(const int4 *)(w.q + row * w.ld + b * 16);
            const uint8_t *a = (const uint8_t *)&qa;
#pragma unroll
            for (int i = 0; i < 8; i++) { // element j in the low nibble of byte j, j + 16 in the high one
                h[i] = __floats2half2_rn((float)((a[2 * i] & 15) - 8) * d, (float)((a[2 * i + 1] & 15) - 8) * d);
                h[8 + i] = __floats2half2_rn((float)((a[2 * i] >> 4) - 8) * d, (float)((a[2 * i + 1] >> 4) - 8) * d);
            }
        }
        int4 *o = (int4 *)(out + row * w.kp + b * 32);
#pragma unroll
        for (int i = 0; i < 4; i++) o[i] = *(const int4 *)&h[4 * i];
    }
}

// ---------------------------------------------------------------------------------------------------------------
// launchers

static int grid_for(int64_t n, int threads) {
    int64_t b = cu_div_up(n, threads);
    return (int)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

int kernels_set_smem_limit(size_t bytes, Err *e) {
#define MV_ATTR(DT, NS, GLU) CU_TRY(e, cudaFuncSetAttribute(mv_kernel<DT, NS, GLU>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    MV_FOR_ALL(MV_ATTR)
#undef MV_ATTR
    CU_TRY(e, cudaFuncSetAttribute(attn_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    CU_TRY(e, cudaFuncSetAttribute(attn_prompt_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return 0;
}

template <int DT, int NS, bool GLU>
static int mv_launch_one(const MvArgs &a, size_t smem, int n_sm, cudaStream_t st, Err *e) {
    // A persistent grid: every block resident at once (blocks per SM from the occupancy calculator for this kernel's
    // registers and this launch's shared memory), each paying its prologue once; never more blocks than rows / warps.
    // The grid (so which warp computes which row) does not change any row's arithmetic: batching stays bit-exact.
    // (Cached per kernel for the last shared-memory size: any grid size is correct, this one is just the fastest.)
    static std::atomic<int64_t> cache{-1}; // smem * 256 + blocks per SM
    const int64_t c = cache.load(std::memory_order_relaxed);
    int per_sm = 0;
    if (c >= 0 && (size_t)(c >> 8) == smem) {
        per_sm = (int)(c & 255);
    } else {
        CU_TRY(e, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mv_kernel<DT, NS, GLU>, MV_THREADS, smem));
        if (per_sm < 1) per_sm = 1;
        if (per_sm > 255) per_sm = 255;
        cache.store((int64_t)smem * 256 + per_sm, std::memory_order_relaxed);
    }
    int64_t blocks = cu_div_up(a.a.rows, MV_WARPS), cap = (int64_t)n_sm * per_sm;
    if (blocks > cap) blocks = cap;
    CU_TRY(e, klaunch(true, mv_kernel<DT, NS, GLU>, dim3((unsigned)blocks), dim3(MV_THREADS), smem, st, a));
    return 0;
}

int mv_launch(const MvArgs &a, size_t smem_max, int n_sm, cudaStream_t st, Err *e) {
    if (a.nstates < 1) return 0;
    if (a.a.dt < 0 || a.a.dt >= G_NDT) return ERR(e, "matvec: bad weight dtype %d", a.a.dt);
    int fit = MV_MAX_NS;
    while (fit > 1 && mv_smem_bytes(a.a.dt, a.a.kp, fit) > smem_max) fit /= 2;
    if (mv_smem_bytes(a.a.dt, a.a.kp, 1) > smem_max)
        return ERR(e, "matvec: rows of %lld values need more shared memory than the device has", (long long)a.a.kp);
    for (int s0 = 0; s0 < a.nstates; s0 += fit) {
        MvArgs b = a;
        b.nstates = a.nstates - s0 < fit ? a.nstates - s0 : fit;
        b.x = a.x + (int64_t)s0 * a.ldx;
        b.y = a.y + (int64_t)s0 * a.ldy;
        const size_t smem = mv_smem_bytes(a.a.dt, a.a.kp, b.nstates);
        const int ns = b.nstates <= 1 ? 1 : b.nstates <= 2 ? 2 : b.nstates <= 4 ? 4 : 8;
        int rc = -1;
#define MV_CASE(DT, NS, GLU) \
    if (a.a.dt == DT && ns == NS && (a.epi == EPI_GLU) == GLU) rc = mv_launch_one<DT, NS, GLU>(b, smem, n_sm, st, e);
        MV_FOR_ALL(MV_CASE)
#undef MV_CASE
        if (rc) return -1;
    }
    return 0;
}

int embed_launch(const GMat &tok, const GMat *pos_tab, const SeqDev *seq, const int32_t *tokens, const int64_t *pos,
                 int64_t S, float *x, int64_t C, cudaStream_t st, Err *e) {
    CU_TRY(e, klaunch(seq != nullptr, embed_kernel, dim3((unsigned)S), dim3(256), 0, st, tok, pos_tab ? *pos_tab : tok,
                      (int)(pos_tab != nullptr), seq, tokens, pos, x, C));
    return 0;
}

int rope_table_launch(const AttnShape &sh, const SeqDev *seq, int64_t S, float2 *cs, cudaStream_t st, Err *e) {
    if (!sh.rope) return 0;
    CU_TRY(e, klaunch(true, rope_table_kernel, dim3((unsigned)S), dim3(64), 0, st, sh, seq, cs));
    return 0;
}

int attn_decode_launch(const AttnShape &sh, int64_t layer, const SeqDev *seq, const float2 *rope_cs, int64_t S, const float *qkv,
                       float *out, float *part, int *cnt, int64_t max_ctx, cudaStream_t st, Err *e) {
    if (sh.hd > ATTN_MAX_HD) return ERR(e, "attention: head_dim %lld > %d", (long long)sh.hd, ATTN_MAX_HD);
    const dim3 grid((unsigned)attn_grid_splits(max_ctx), (unsigned)sh.Hkv, (unsigned)S);
    CU_TRY(e, klaunch(true, attn_decode_kernel, grid, dim3(AD_THREADS), attn_decode_smem_bytes(sh.hd, sh.H / sh.Hkv), st, sh,
                      layer, seq, rope_cs, qkv, out, part, cnt));
    return 0;
}

int attn_softmax_launch(float *S, int64_t ld, int64_t rows, int64_t nq, int64_t tq0, int64_t pos0, int64_t nk, int64_t window,
                        cudaStream_t st, Err *e) {
    attn_softmax_kernel<<<(unsigned)cu_div_up(rows, 8), 256, 0, st>>>(S, ld, rows, nq, tq0, pos0, nk, window);
    CU_TRY_LAUNCH(e);
    return 0;
}

int rope_store_launch(const AttnShape &sh, int64_t layer, float *kc, float *vc, int64_t n_ctx, int64_t pos0, int64_t T,
                      float *qkv, cudaStream_t st, Err *e) {
    rope_store_kernel<<<(unsigned)T, 256, 0, st>>>(sh, layer, kc, vc, n_ctx, pos0, qkv);
    CU_TRY_LAUNCH(e);
    return 0;
}

int attn_prompt_launch(const AttnShape &sh, int64_t layer, const float *kc, const float *vc, int64_t n_ctx, int64_t pos0,
                       int64_t T, const float *qkv, float *out, cudaStream_t st, Err *e) {
    if (sh.hd > ATTN_MAX_HD) return ERR(e, "attention: head_dim %lld > %d", (long long)sh.hd, ATTN_MAX_HD);
    dim3 grid((unsigned)cu_div_up(T, AP_QT), (unsigned)sh.H);
    attn_prompt_kernel<<<grid, AP_WARPS * 32, attn_prompt_smem_bytes(sh.hd), st>>>(sh, layer, kc, vc, n_ctx, pos0, T, qkv, out);
    CU_TRY_LAUNCH(e);
    return 0;
}

int norm_rows_launch(int pro, const float *x, const float *w, const float *b, float eps, int64_t T, int64_t C, float *out,
                     cudaStream_t st, Err *e) {
    norm_rows_kernel<<<(unsigned)T, 256, 0, st>>>(pro, x, w, b, eps, C, out);
    CU_TRY_LAUNCH(e);
    return 0;
}

int add_bias_launch(float *y, int64_t ld, const float *bias, int64_t T, int64_t n, cudaStream_t st, Err *e) {
    if (T > 65535) return ERR(e, "bias: %lld rows", (long long)T);
    add_bias_kernel<<<dim3((unsigned)cu_div_up(n, 256), (unsigned)T), 256, 0, st>>>(y, ld, bias, n);
    CU_TRY_LAUNCH(e);
    return 0;
}

int mlp_middle_launch(int gated, int act, float *hb, const float *hb2, const float *bg, const float *bu, int64_t T,
                      int64_t F, cudaStream_t st, Err *e) {
    if (T > 65535) return ERR(e, "mlp: %lld rows", (long long)T);
    mlp_middle_kernel<<<dim3((unsigned)cu_div_up(F, 256), (unsigned)T), 256, 0, st>>>(gated, act, hb, hb2, bg, bu, F);
    CU_TRY_LAUNCH(e);
    return 0;
}

int to_half_launch(int bf16, const float *x, int64_t ldx, int64_t T, int64_t K, void *out, int64_t ldo, cudaStream_t st,
                   Err *e) {
    if (T > 65535) return ERR(e, "to half: %lld rows", (long long)T);
    to_half_kernel<<<dim3((unsigned)cu_div_up(K, 256), (unsigned)T), 256, 0, st>>>(bf16, x, ldx, K, out, ldo);
    CU_TRY_LAUNCH(e);
    return 0;
}

int dequant_f16_launch(const GMat &w, __half *out, cudaStream_t st, Err *e) {
    dequant_f16_kernel<<<grid_for(w.rows * (w.kp / 32), 256), 256, 0, st>>>(w, out);
    CU_TRY_LAUNCH(e);
    return 0;
}
