// train_plan.c — the GPU trainer's device memory layout and plan (see train_plan.h). Pure arithmetic: no CUDA.
#include "cuda/train_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

typedef struct Carve {
    GpuTrainLayout *L;
    bool overflow;
} Carve;

// Reserve n elements of elem bytes, 256-byte aligned, counted under kind.
static void take(Carve *cv, GpuBuf *b, GpuBufKind kind, int64_t n, size_t elem) {
    size_t bytes, padded, end;
    if (n < 0 || !size_mul((size_t)n, elem, &bytes) || !size_align_up(bytes, 256, &padded) ||
        !size_add(cv->L->arena, padded, &end)) {
        cv->overflow = true;
        return;
    }
    b->offset = cv->L->arena;
    b->bytes = bytes;
    cv->L->arena = end;
    cv->L->by_kind[kind] += padded;
}

static void take_layer(Carve *cv, GpuLayerBufs *s) {
    GpuTrainLayout *L = cv->L;
    const int64_t BT = L->BT, BHT = L->B * L->H * L->T;
    take(cv, &s->rstd1, GPU_MEM_ACTS, BT, 4);
    take(cv, &s->xn1, GPU_MEM_ACTS, BT * L->C, 2);
    take(cv, &s->qh, GPU_MEM_ACTS, BHT * L->hd, 2);
    take(cv, &s->kh, GPU_MEM_ACTS, BHT * L->hd, 2);
    take(cv, &s->vh, GPU_MEM_ACTS, BHT * L->hd, 2);
    if (L->attn == GPU_ATTN_FLASH) take(cv, &s->att, GPU_MEM_ACTS, BHT, 4);
    else take(cv, &s->att, GPU_MEM_ACTS, BHT * L->Tp, 2);
    take(cv, &s->atty, GPU_MEM_ACTS, BT * L->qd, 2);
    take(cv, &s->x_mid, GPU_MEM_ACTS, BT * L->C, 4);
    take(cv, &s->rstd2, GPU_MEM_ACTS, BT, 4);
    take(cv, &s->xn2, GPU_MEM_ACTS, BT * L->C, 2);
    take(cv, &s->gu, GPU_MEM_ACTS, BT * 2 * L->F, 2);
    take(cv, &s->h, GPU_MEM_ACTS, BT * L->F, 2);
}

int gpu_layout_init(GpuTrainLayout *L, const ModelConfig *c, int64_t B, int64_t T, bool recompute, GpuAttn attn,
                    Err *e) {
    memset(L, 0, sizeof *L);
    if (B <= 0 || T <= 0) return ERR(e, "batch %lld x %lld must be positive", (long long)B, (long long)T);
    if (T > c->n_ctx_train)
        return ERR(e, "sequence length %lld exceeds the model's context %lld", (long long)T, (long long)c->n_ctx_train);
    if (c->n_layer <= 0 || c->n_embd <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 || c->n_head % c->n_head_kv != 0 ||
        c->head_dim <= 0 || c->n_ff <= 0 || c->vocab_size <= 0)
        return ERR(e, "model shape is not trainable on the GPU");
    if (c->n_embd % 8 || c->n_ff % 8 || c->head_dim % 8)
        return ERR(e, "the GPU trainer needs the width (%lld), MLP width (%lld) and head size (%lld) to be multiples of 8",
                   (long long)c->n_embd, (long long)c->n_ff, (long long)c->head_dim);
    if (c->rope_dim <= 0 || c->rope_dim > c->head_dim || c->rope_dim % 2)
        return ERR(e, "rotary dimension %lld must be even and at most the head size", (long long)c->rope_dim);
    int64_t BT;
    if (!i64_mul(B, T, &BT) || BT > ((int64_t)1 << 28) || B > ((int64_t)1 << 20))
        return ERR(e, "batch %lld x %lld is too large", (long long)B, (long long)T);
    L->L = c->n_layer, L->C = c->n_embd, L->F = c->n_ff, L->H = c->n_head, L->Hkv = c->n_head_kv, L->hd = c->head_dim;
    L->V = c->vocab_size, L->Vp = round_up(L->V, 8), L->B = B, L->T = T, L->Tp = round_up(T, 8), L->BT = BT;
    L->qd = L->H * L->hd, L->kvd = L->Hkv * L->hd, L->D3 = L->qd + 2 * L->kvd;
    L->recompute = recompute;
    L->attn = attn;
    // the output head in row chunks of at most 2^30 logits (2 GiB of bf16)
    int64_t R = ((int64_t)1 << 30) / L->Vp;
    if (R < 1) R = 1;
    L->head_rows = R < BT ? R : BT;
    L->n_norm_blocks = (BT + GPU_NORM_BLOCK - 1) / GPU_NORM_BLOCK;

    // parameters: the CPU order, groups aligned
    L->n_tensors = (size_t)(3 + 9 * L->L - (c->tied_embeddings ? 1 : 0));
    L->tensor_off = xcalloc(L->n_tensors, sizeof(size_t));
    size_t off = 0, ti = 0;
    const size_t C = (size_t)L->C, F = (size_t)L->F, V = (size_t)L->V, qd = (size_t)L->qd, kvd = (size_t)L->kvd;
#define PARAM(count, new_group)                                                   \
    do {                                                                          \
        if (new_group) off = (off + GPU_PARAM_ALIGN - 1) / GPU_PARAM_ALIGN * GPU_PARAM_ALIGN; \
        L->tensor_off[ti++] = off;                                                \
        off += (count);                                                           \
    } while (0)
    PARAM(V * C, true);
    if (!c->tied_embeddings) PARAM(V * C, true);
    PARAM(C, true);
    for (int64_t l = 0; l < L->L; l++) {
        PARAM(C, true);          // attn_norm
        PARAM(qd * C, true);     // q
        PARAM(kvd * C, false);   // k (fused with q)
        PARAM(kvd * C, false);   // v
        PARAM(C * qd, true);     // o
        PARAM(C, true);          // ffn_norm
        PARAM(F * C, true);      // gate
        PARAM(F * C, false);     // up (fused with gate)
        PARAM(C * F, true);      // down
    }
#undef PARAM
    L->n_padded = (off + GPU_PARAM_ALIGN - 1) / GPU_PARAM_ALIGN * GPU_PARAM_ALIGN;
    if (L->n_padded > ((size_t)1 << 33)) {
        gpu_layout_free(L);
        return ERR(e, "model too large for the GPU trainer");
    }
    Carve cv = {L, false};
    const int64_t np = (int64_t)L->n_padded;
    take(&cv, &L->params, GPU_MEM_WEIGHTS, np, 4);
    take(&cv, &L->params16, GPU_MEM_WEIGHTS, np, 2);
    take(&cv, &L->decay_chunks, GPU_MEM_WEIGHTS, np / GPU_PARAM_ALIGN, 1);
    take(&cv, &L->grads, GPU_MEM_GRADS, np, 4);
    take(&cv, &L->adam_m, GPU_MEM_OPTIM, np, 4);
    take(&cv, &L->adam_v, GPU_MEM_OPTIM, np, 4);
    L->resid = xcalloc((size_t)(L->L + 1), sizeof(GpuBuf));
    for (int64_t l = 0; l <= L->L; l++) take(&cv, &L->resid[l], GPU_MEM_ACTS, BT * L->C, 4);
    L->n_sets = recompute ? 1 : L->L;
    L->layer = xcalloc((size_t)L->n_sets, sizeof(GpuLayerBufs));
    for (int64_t s = 0; s < L->n_sets; s++) take_layer(&cv, &L->layer[s]);
    take(&cv, &L->rstd_f, GPU_MEM_ACTS, BT, 4);
    take(&cv, &L->xf, GPU_MEM_ACTS, BT * L->C, 2);
    const int64_t BHT = B * L->H * T;
    take(&cv, &L->qkv, GPU_MEM_SCRATCH, BT * L->D3, 2);
    const bool flash = attn == GPU_ATTN_FLASH;
    take(&cv, &L->oh, GPU_MEM_SCRATCH, flash ? 0 : BHT * L->hd, 2); // flash writes O in the rows Wo reads
    if (flash) take(&cv, &L->datt, GPU_MEM_SCRATCH, BHT, 4);
    else take(&cv, &L->datt, GPU_MEM_SCRATCH, BHT * L->Tp, 2);
    take(&cv, &L->dqh, GPU_MEM_SCRATCH, BHT * L->hd, 2);
    take(&cv, &L->dkh, GPU_MEM_SCRATCH, BHT * L->hd, 2);
    take(&cv, &L->dvh, GPU_MEM_SCRATCH, BHT * L->hd, 2);
    take(&cv, &L->d_res, GPU_MEM_SCRATCH, BT * L->C, 4);
    take(&cv, &L->d_res16, GPU_MEM_SCRATCH, BT * L->C, 2);
    take(&cv, &L->dxn, GPU_MEM_SCRATCH, BT * L->C, 4);
    take(&cv, &L->dh, GPU_MEM_SCRATCH, BT * L->F, 2);
    take(&cv, &L->dgu, GPU_MEM_SCRATCH, BT * 2 * L->F, 2);
    take(&cv, &L->logits, GPU_MEM_SCRATCH, L->head_rows * L->Vp, 2);
    take(&cv, &L->row_loss, GPU_MEM_SCRATCH, BT, 4);
    take(&cv, &L->norm_part, GPU_MEM_SCRATCH, L->n_norm_blocks * L->C, 4);
    take(&cv, &L->rope_cs, GPU_MEM_SCRATCH, T * L->hd, 4);
    take(&cv, &L->tokens, GPU_MEM_SCRATCH, BT, 4);
    take(&cv, &L->targets, GPU_MEM_SCRATCH, BT, 4);
    take(&cv, &L->emb_order, GPU_MEM_SCRATCH, BT, 4);
    take(&cv, &L->emb_start, GPU_MEM_SCRATCH, BT + 1, 4);
    take(&cv, &L->emb_ids, GPU_MEM_SCRATCH, BT, 4);
    take(&cv, &L->red, GPU_MEM_SCRATCH, GPU_RED_SLOTS, 8);
    take(&cv, &L->workspace, GPU_MEM_SCRATCH, (int64_t)GPU_WORKSPACE_BYTES, 1);
    if (cv.overflow) {
        gpu_layout_free(L);
        return ERR(e, "GPU memory for batch %lld x %lld overflows", (long long)B, (long long)T);
    }
    return 0;
}

void gpu_layout_free(GpuTrainLayout *L) {
    free(L->tensor_off);
    free(L->resid);
    free(L->layer);
    L->tensor_off = NULL;
    L->resid = NULL;
    L->layer = NULL;
}

size_t gpu_plan_bytes(const ModelConfig *c, int64_t B, int64_t T, bool recompute, GpuAttn attn) {
    GpuTrainLayout L;
    Err e;
    if (gpu_layout_init(&L, c, B, T, recompute, attn, &e)) return 0;
    size_t total = L.arena + GPU_RESERVE_BYTES;
    gpu_layout_free(&L);
    return total;
}

int64_t gpu_plan_max_batch(const ModelConfig *c, int64_t T, bool recompute, GpuAttn attn, size_t free_bytes,
                           int64_t b_max) {
    // the plan grows with B: binary search for the last B that fits
    int64_t lo = 0, hi = b_max;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        size_t need = gpu_plan_bytes(c, mid, T, recompute, attn);
        if (need != 0 && need <= free_bytes) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

void gpu_plan_describe(const GpuTrainLayout *L, size_t free_bytes, char *out, size_t out_len) {
    const double G = 1e9;
    size_t ws = L->workspace.bytes, scratch = L->by_kind[GPU_MEM_SCRATCH] - (ws + 255) / 256 * 256;
    snprintf(out, out_len,
             "GPU memory plan: weights %.2f GB (fp32 master + bf16 copy), gradients %.2f GB, optimizer %.2f GB, "
             "activations %.2f GB (batch %lld x %lld, %s attention%s), scratch %.2f GB, workspace + reserve %.2f GB = "
             "%.2f GB of %.2f GB free",
             (double)L->by_kind[GPU_MEM_WEIGHTS] / G, (double)L->by_kind[GPU_MEM_GRADS] / G,
             (double)L->by_kind[GPU_MEM_OPTIM] / G, (double)L->by_kind[GPU_MEM_ACTS] / G, (long long)L->B,
             (long long)L->T, L->attn == GPU_ATTN_FLASH ? "flash" : "gemm", L->recompute ? ", recompute" : "", (double)scratch / G,
             (double)(ws + GPU_RESERVE_BYTES) / G, (double)(L->arena + GPU_RESERVE_BYTES) / G, (double)free_bytes / G);
}
