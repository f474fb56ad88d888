// test_gpu_train.c — the GPU trainer (`--device cuda`) against the CPU trainer, and its memory plan.
//
// gpu_train_plan_*: the plan arithmetic (src/cuda/train_plan.c), pure C, runs everywhere.
// The others need a CUDA device and are SKIPPED (not passed) without one:
//   - gradients of one micro-batch on a small random model (GQA, untied and tied heads, masked targets, T not a
//     multiple of 8) against the fp32 CPU backward: relative L2 error per tensor below GRAD_TOL = 5e-2. bf16 keeps 8
//     bits of mantissa (relative rounding 2^-9 ~ 0.2%); a gradient passes through ~10 bf16 roundings of activations
//     and weights, so ~1% is expected and 5% leaves margin while an indexing bug gives errors of order 1;
//   - --recompute gives bit-identical gradients (the recomputed forward is the same computation), and two runs of
//     one micro-batch are bit-identical (no atomics);
//   - 20 training steps through train_run: each step's loss within LOSS_TOL = 2% of the CPU run's;
//   - resume exactness on the GPU: stopped after 5 steps and resumed = uninterrupted, bit for bit (weights, Adam m, v);
//   - a GPU checkpoint resumes on the CPU and a CPU checkpoint on the GPU (transfers are exact; the continued runs
//     end within LOSS_TOL of the single-device runs).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/train_plan.h"
#include "test.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/train_model.h"
#include "train/trainer.h"
#include "train_test_util.h"
#ifdef LOSSY_CUDA
#include "cuda/cuda.h"
#include "cuda/train_gpu.h"
#endif

#define GRAD_TOL 5e-2
#define LOSS_TOL 2e-2

// ---------------------------------------------------------------------------------------------------------------
// plan arithmetic (CPU)

static void gpt2_config(ModelConfig *c) {
    Err e;
    if (train_config_llama(c, 50304, 12, 768, 12, 12, 0, 1024, true, &e)) test_fail_at(__FILE__, __LINE__, "%s", e.msg);
}

TEST(gpu_train_plan_arithmetic) {
    ModelConfig c;
    gpt2_config(&c);
    GpuTrainLayout L, L8, Lr, Lf;
    Err e;
    REQUIREF(gpu_layout_init(&L, &c, 16, 1024, false, GPU_ATTN_GEMM, &e) == 0, "%s", e.msg);
    REQUIREF(gpu_layout_init(&L8, &c, 8, 1024, false, GPU_ATTN_GEMM, &e) == 0, "%s", e.msg);
    REQUIREF(gpu_layout_init(&Lr, &c, 16, 1024, true, GPU_ATTN_GEMM, &e) == 0, "%s", e.msg);
    REQUIREF(gpu_layout_init(&Lf, &c, 16, 1024, false, GPU_ATTN_FLASH, &e) == 0, "%s", e.msg);
    // parameters: the CPU count plus at most one alignment pad per group
    const double V = 50304, C = 768, F = 2048, Lyr = 12;
    size_t n_cpu = (size_t)(V * C + C + Lyr * (2 * C + 4 * C * C + 3 * C * F));
    CHECK_EQ_INT(c.n_ff, 2048);
    CHECK(L.n_padded >= n_cpu && L.n_padded < n_cpu + (size_t)(3 + 7 * 12) * GPU_PARAM_ALIGN);
    CHECK_EQ_INT(L.n_tensors, 3 + 9 * 12 - 1);
    CHECK_EQ_INT(L.by_kind[GPU_MEM_GRADS], (L.n_padded * 4 + 255) / 256 * 256);
    CHECK_EQ_INT(L.by_kind[GPU_MEM_OPTIM], 2 * L.by_kind[GPU_MEM_GRADS]);
    // fused weights stay adjacent: q|k|v and gate|up
    size_t q = L.tensor_off[2 + 1], k = L.tensor_off[2 + 2], v = L.tensor_off[2 + 3];
    CHECK(k == q + (size_t)(C * C) && v == k + (size_t)(C * C));
    CHECK(L.tensor_off[2 + 7] == L.tensor_off[2 + 6] + (size_t)(F * C));
    for (size_t i = 0; i < L.n_tensors; i++) CHECK(i == 0 || L.tensor_off[i] > L.tensor_off[i - 1]);
    CHECK_EQ_INT(L.tensor_off[2] % GPU_PARAM_ALIGN, 0);
    // the attention probabilities of one layer: B*H*T*Tp bf16; with flash one f32 logsumexp per row instead, the
    // backward's row sums in place of dP, and no per-head output copy
    CHECK_EQ_INT(L.layer[0].att.bytes, (size_t)16 * 12 * 1024 * 1024 * 2);
    CHECK_EQ_INT(L.datt.bytes, (size_t)16 * 12 * 1024 * 1024 * 2);
    CHECK_EQ_INT(Lf.layer[0].att.bytes, (size_t)16 * 12 * 1024 * 4);
    CHECK_EQ_INT(Lf.layer[11].att.bytes, (size_t)16 * 12 * 1024 * 4);
    CHECK_EQ_INT(Lf.datt.bytes, (size_t)16 * 12 * 1024 * 4);
    CHECK_EQ_INT(Lf.oh.bytes, 0);
    CHECK_EQ_INT(Lf.layer[0].qh.bytes, L.layer[0].qh.bytes);
    CHECK_EQ_INT(Lf.by_kind[GPU_MEM_WEIGHTS], L.by_kind[GPU_MEM_WEIGHTS]);
    // 12 layers of B*H*T*(Tp*2 - 4) bytes fewer activations (each buffer rounds up to 256 bytes)
    CHECK_EQ_INT(L.by_kind[GPU_MEM_ACTS] - Lf.by_kind[GPU_MEM_ACTS], (size_t)12 * 16 * 12 * 1024 * (1024 * 2 - 4));
    CHECK_EQ_INT(L.head_rows, 16 * 1024); // 16384 x 50304 logits < 2^30: one chunk
    // the categories add up to the arena; buffers are aligned and inside it
    size_t sum = 0;
    for (int i = 0; i < GPU_MEM_KINDS; i++) sum += L.by_kind[i];
    CHECK_EQ_INT(sum, L.arena);
    const GpuBuf *bufs[] = {&L.params, &L.params16, &L.grads, &L.adam_m, &L.adam_v, &L.logits, &L.workspace, &L.red,
                            &L.layer[11].h, &L.resid[12], &L.xf, &L.datt};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        CHECK_EQ_INT(bufs[i]->offset % 256, 0);
        CHECK(bufs[i]->offset + bufs[i]->bytes <= L.arena);
        for (size_t j = 0; j < i; j++) // no two overlap
            CHECK(bufs[i]->offset >= bufs[j]->offset + bufs[j]->bytes || bufs[j]->offset >= bufs[i]->offset + bufs[i]->bytes);
    }
    // activations are proportional to the batch; recompute keeps one layer set plus the residual stream
    double ratio = (double)L.by_kind[GPU_MEM_ACTS] / (double)L8.by_kind[GPU_MEM_ACTS];
    CHECK_NEAR(ratio, 2.0, 1e-3);
    CHECK(Lr.by_kind[GPU_MEM_ACTS] * 5 < L.by_kind[GPU_MEM_ACTS]);
    CHECK_EQ_INT(Lr.by_kind[GPU_MEM_WEIGHTS], L.by_kind[GPU_MEM_WEIGHTS]);
    // the largest batch that fits
    size_t need16 = gpu_plan_bytes(&c, 16, 1024, false, GPU_ATTN_GEMM);
    CHECK_EQ_INT(need16, L.arena + GPU_RESERVE_BYTES);
    CHECK_EQ_INT(gpu_plan_bytes(&c, 16, 1024, false, GPU_ATTN_FLASH), Lf.arena + GPU_RESERVE_BYTES);
    CHECK_EQ_INT(gpu_plan_max_batch(&c, 1024, false, GPU_ATTN_GEMM, need16, 64), 16);
    CHECK_EQ_INT(gpu_plan_max_batch(&c, 1024, false, GPU_ATTN_GEMM, need16 - 1, 64), 15);
    CHECK_EQ_INT(gpu_plan_max_batch(&c, 1024, false, GPU_ATTN_GEMM, need16, 8), 8);
    CHECK_EQ_INT(gpu_plan_max_batch(&c, 1024, false, GPU_ATTN_GEMM, (size_t)1 << 20, 64), 0);
    CHECK(gpu_plan_max_batch(&c, 1024, true, GPU_ATTN_GEMM, need16, 64) > 16);
    CHECK(gpu_plan_max_batch(&c, 1024, false, GPU_ATTN_FLASH, need16, 64) > 16);
    char line[640];
    gpu_plan_describe(&L, (size_t)140e9, line, sizeof line);
    CHECKF(strstr(line, "batch 16 x 1024, gemm attention") && strstr(line, "of 140.00 GB free"), "%s", line);
    gpu_plan_describe(&Lf, (size_t)140e9, line, sizeof line);
    CHECKF(strstr(line, "batch 16 x 1024, flash attention"), "%s", line);
    gpu_layout_free(&L);
    gpu_layout_free(&L8);
    gpu_layout_free(&Lr);
    gpu_layout_free(&Lf);
}

TEST(gpu_train_plan_refuses_bad_shapes) {
    ModelConfig c;
    Err e;
    GpuTrainLayout L;
    REQUIRE(train_config_llama(&c, 300, 2, 36, 6, 6, 96, 64, true, &e) == 0); // head size 6
    CHECK(gpu_layout_init(&L, &c, 2, 32, false, GPU_ATTN_GEMM, &e) != 0);
    CHECKF(strstr(e.msg, "multiples of 8"), "%s", e.msg);
    REQUIRE(train_config_llama(&c, 300, 2, 64, 4, 2, 0, 64, true, &e) == 0);
    CHECK(gpu_layout_init(&L, &c, 2, 65, false, GPU_ATTN_FLASH, &e) != 0); // longer than the context
    CHECK(gpu_layout_init(&L, &c, 0, 32, false, GPU_ATTN_GEMM, &e) != 0);
    CHECK_EQ_INT(gpu_plan_bytes(&c, 2, 65, false, GPU_ATTN_GEMM), 0);
    REQUIREF(gpu_layout_init(&L, &c, 3, 20, false, GPU_ATTN_GEMM, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(L.Tp, 24);
    CHECK_EQ_INT(L.Vp, 304);
    CHECK_EQ_INT(L.D3, 64 + 2 * 32);
    gpu_layout_free(&L);
}

// ---------------------------------------------------------------------------------------------------------------
// GPU against CPU

#ifdef LOSSY_CUDA
static bool have_gpu(char *why, size_t n) { return cuda_device_count(why, n) > 0; }
#define NEED_GPU()                                             \
    do {                                                       \
        char why_[256];                                        \
        if (!have_gpu(why_, sizeof why_)) TEST_SKIP("no CUDA device: %s", why_); \
    } while (0)
#else
#define NEED_GPU() TEST_SKIP("built without CUDA")
#endif

#ifdef LOSSY_CUDA
// One micro-batch on the GPU from m's weights: gradients (CPU layout), step loss, gradient norm, row losses of an
// evaluation pass. lr 0 keeps the weights, so the update call only reports loss and norm. The attention route comes
// from LOSSY_ATTN; the trainer must report `attn`.
static int gpu_grads(const TrainModel *m, const int32_t *tok, const int32_t *tgt, int64_t B, int64_t T, float scale,
                     bool recompute, const char *attn, float *grads, double *loss, double *gnorm, float *row_loss,
                     Err *e) {
    GpuTrain *g;
    if (gpu_train_new(&g, m, B, T, recompute, NULL, 0, e)) return -1;
    GpuAdamParams ap = {0.0, 0.9, 0.95, 1e-8, 0.0, 0.0, 1};
    int rc = strcmp(gpu_train_attention(g), attn) == 0
                 ? 0
                 : ERR(e, "the trainer runs attention route '%s', expected '%s'", gpu_train_attention(g), attn);
    if (rc == 0) rc = gpu_train_upload(g, m->params, NULL, NULL, e);
    if (rc == 0) rc = gpu_train_zero_grad(g, e);
    if (rc == 0) rc = gpu_train_micro_step(g, tok, tgt, B, T, scale, (double)scale, e);
    if (rc == 0) rc = gpu_train_update(g, &ap, loss, gnorm, e);
    if (rc == 0) rc = gpu_train_download_grads(g, grads, e);
    if (rc == 0 && row_loss) rc = gpu_train_eval(g, tok, tgt, B, T, row_loss, e);
    gpu_train_free(g);
    return rc;
}
#endif

#ifdef LOSSY_CUDA
// Gradients of one micro-batch (width C, H heads of which Hkv key/value heads, B x T tokens) on the GPU with attention
// route `attn` against the CPU, for untied and tied output heads.
static void grads_vs_cpu(int64_t C, int64_t H, int64_t Hkv, int64_t B, int64_t T, const char *attn) {
    REQUIRE(setenv("LOSSY_ATTN", attn, 1) == 0); // tests run forked: the setting ends with this test
    for (int tied = 0; tied < 2; tied++) {
        ModelConfig c;
        Err e;
        REQUIRE(train_config_llama(&c, 320, 2, C, H, Hkv, 0, T < 64 ? 64 : T, tied, &e) == 0);
        TrainModel m;
        REQUIREF(train_model_init(&m, &c, NULL, &e) == 0, "%s", e.msg);
        train_model_init_weights(&m, 7 + (uint64_t)tied);
        // larger weights than the 0.02 init so the gradients are not all tiny
        for (size_t i = 0; i < m.n_params; i++) m.params[i] *= 4.0f;
        for (size_t i = 0; i < m.n_pinfo; i++)
            if (m.pinfo[i].n_dims == 1)
                for (size_t j = 0; j < m.pinfo[i].count; j++) m.params[m.pinfo[i].offset + j] = 0.25f * (1.0f + test_rand_uniform());
        const int64_t BT = B * T;
        int32_t *tok = xmalloc_array((size_t)BT, sizeof(int32_t)), *tgt = xmalloc_array((size_t)BT, sizeof(int32_t));
        int64_t counted = 0;
        for (int64_t i = 0; i < BT; i++) {
            tok[i] = (int32_t)(test_rand_u64() % 320);
            tgt[i] = (i % 7 == 3) ? -1 : (int32_t)(test_rand_u64() % 320);
            counted += tgt[i] >= 0;
        }
        float scale = 1.0f / (float)counted;
        REQUIREF(train_model_reserve(&m, B, T, &e) == 0, "%s", e.msg);
        train_model_zero_grad(&m);
        double cpu_loss = train_model_forward_backward(&m, tok, tgt, B, T, scale) * (double)BT / (double)counted;
        double cpu_norm = grad_global_norm(NULL, m.grads, m.n_params);
        float *cpu_rows = xmalloc_array((size_t)BT, sizeof(float)), *rows = xmalloc_array((size_t)BT, sizeof(float));
        train_model_forward(&m, tok, tgt, B, T, cpu_rows);
        float *g1 = xmalloc_array(m.n_params, sizeof(float)), *g2 = xmalloc_array(m.n_params, sizeof(float));
        float *g3 = xmalloc_array(m.n_params, sizeof(float));
        double loss, norm, loss2, norm2;
        REQUIREF(gpu_grads(&m, tok, tgt, B, T, scale, false, attn, g1, &loss, &norm, rows, &e) == 0, "%s", e.msg);
        fprintf(stderr, "%s attention, tied %d: loss cpu %.6f gpu %.6f, norm cpu %.6f gpu %.6f\n", attn, tied, cpu_loss, loss, cpu_norm, norm);
        CHECKF(fabs(loss - cpu_loss) <= LOSS_TOL * cpu_loss, "loss %.6f vs CPU %.6f", loss, cpu_loss);
        CHECKF(fabs(norm - cpu_norm) <= GRAD_TOL * cpu_norm, "gradient norm %.6f vs CPU %.6f", norm, cpu_norm);
        for (size_t i = 0; i < m.n_pinfo; i++) {
            const TrainParam *p = &m.pinfo[i];
            double r = test_rel_l2(g1 + p->offset, m.grads + p->offset, p->count);
            if (r > GRAD_TOL / 4) fprintf(stderr, "  %-24s rel L2 %.4f\n", p->name, r);
            CHECKF(r <= GRAD_TOL, "tied %d: %s: gradient relative L2 error %.4f > %.2g", tied, p->name, r, GRAD_TOL);
        }
        double row_err = 0;
        for (int64_t i = 0; i < BT; i++) row_err = fmax(row_err, fabs((double)rows[i] - cpu_rows[i]));
        CHECKF(row_err < 0.05, "evaluation row losses differ by %.4f", row_err);
        for (int64_t i = 0; i < BT; i++)
            if (tgt[i] < 0) CHECK(rows[i] == 0.0f);
        // recompute: the same computation, so the same bits; and a second run gives the same bits
        REQUIREF(gpu_grads(&m, tok, tgt, B, T, scale, true, attn, g2, &loss2, &norm2, NULL, &e) == 0, "%s", e.msg);
        CHECK(memcmp(g1, g2, m.n_params * sizeof(float)) == 0 && loss == loss2 && norm == norm2);
        REQUIREF(gpu_grads(&m, tok, tgt, B, T, scale, false, attn, g3, &loss2, &norm2, NULL, &e) == 0, "%s", e.msg);
        CHECK(memcmp(g1, g3, m.n_params * sizeof(float)) == 0 && loss == loss2);
        free(g1), free(g2), free(g3);
        free(tok), free(tgt), free(cpu_rows), free(rows);
        train_model_free(&m);
    }
}
#endif

TEST(gpu_train_grads_match_cpu) {
    NEED_GPU();
#ifdef LOSSY_CUDA
    grads_vs_cpu(64, 4, 2, 3, 20, "gemm");
#endif
}

// The flash kernels (head size 64 here; GQA through the repeated k/v heads) inside the whole model, with T = 100
// crossing a 64-row tile boundary; same tolerances as the GEMM route, and the same bit-exact repeat/recompute checks.
TEST(gpu_flash_model_grads_match_cpu) {
    NEED_GPU();
#ifdef LOSSY_CUDA
    grads_vs_cpu(256, 4, 2, 2, 100, "flash");
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// through train_run

static void tiny_opts(TrainOpts *o, const char *device) {
    train_opts_default(o);
    o->n_layer = 2, o->n_embd = 64, o->n_head = 4, o->n_head_kv = 2, o->n_ff = 0, o->seq_len = 64;
    o->batch = 4, o->seq = 32, o->steps = 20;
    o->eval_every = 0, o->ckpt_every = 0, o->peak_gflops = 1;
    o->lr.lr = 3e-3, o->lr.min_lr = 3e-4;
    o->device = device;
}

static int run(const TrainOpts *o, const char *data, const char *out, const char *resume, TrainResult *r, Err *e) {
    ThreadPool *pool = threadpool_new(2);
    TrainIO io = {.data_dir = data, .out_path = out, .resume = resume, .pool = pool};
    int rc = train_run(o, &io, r, e);
    threadpool_free(pool);
    return rc;
}

// The loss column of a training CSV log (rows with a loss), at most max values.
static int read_losses(const char *csv, double *out, int max) {
    char *text;
    size_t len;
    Err e;
    if (file_read_all(csv, &text, &len, &e)) return -1;
    int n = 0;
    char *save = NULL;
    bool header = true;
    for (char *line = strtok_r(text, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
        if (header) {
            header = false;
            continue;
        }
        const char *p = line;
        for (int f = 0; f < 4 && p; f++) { // step,tokens,elapsed_s,lr,loss
            p = strchr(p, ',');
            if (p) p++;
        }
        if (p && *p && *p != ',') out[n++] = strtod(p, NULL);
    }
    free(text);
    return n;
}

TEST(gpu_train_loss_curve_matches_cpu) {
    NEED_GPU();
    char ds[512], a[512], b[512], la[512], lb[512];
    REQUIRE(tt_make_dataset("ds", 60000, 300, ds) == 0);
    TrainOpts o;
    TrainResult r;
    Err e;
    tiny_opts(&o, "cpu");
    REQUIREF(run(&o, ds, tt_path(a, "cpu.gguf"), NULL, &r, &e) == 0, "%s", e.msg);
    tiny_opts(&o, "cuda");
    REQUIREF(run(&o, ds, tt_path(b, "gpu.gguf"), NULL, &r, &e) == 0, "%s", e.msg);
    double lc[32], lg[32];
    int nc = read_losses(tt_path(la, "cpu.csv"), lc, 32), ng = read_losses(tt_path(lb, "gpu.csv"), lg, 32);
    CHECK_EQ_INT(nc, 20);
    CHECK_EQ_INT(ng, 20);
    for (int i = 0; i < nc && i < ng; i++) {
        fprintf(stderr, "step %2d: cpu %.4f gpu %.4f\n", i + 1, lc[i], lg[i]);
        CHECKF(fabs(lc[i] - lg[i]) <= LOSS_TOL * lc[i], "step %d: loss %.4f on the GPU vs %.4f on the CPU", i + 1, lg[i], lc[i]);
    }
    CHECK(lg[ng - 1] < lg[0] - 0.5); // it learns
}

TEST(gpu_train_resume_is_bit_exact) {
    NEED_GPU();
    char ds[512], a[512], b[512], c[512], ck[512], cka[512];
    REQUIRE(tt_make_dataset("ds", 60000, 300, ds) == 0);
    TrainOpts o;
    tiny_opts(&o, "cuda");
    o.steps = 12, o.grad_accum = 2, o.eval_every = 5, o.eval_tokens = 1024, o.sample_every = 7, o.sample_tokens = 8;
    TrainResult r;
    Err e;
    REQUIREF(run(&o, ds, tt_path(a, "a.gguf"), NULL, &r, &e) == 0, "%s", e.msg);
    CHECK(!r.interrupted && r.steps == 12 && isfinite(r.val_loss));
    o.stop_after = 5;
    REQUIREF(run(&o, ds, tt_path(b, "b.gguf"), NULL, &r, &e) == 0, "%s", e.msg);
    CHECK(r.interrupted && r.steps == 5);
    o.stop_after = 0;
    REQUIREF(run(&o, ds, b, tt_path(ck, "b.ckpt.gguf"), &r, &e) == 0, "%s", e.msg);
    CHECK(!r.interrupted && r.steps == 12);
    CHECK(tt_same_tensors(a, b));
    CHECK(tt_same_tensors(tt_path(cka, "a.ckpt.gguf"), ck)); // weights and both AdamW moments
    o.seed = 99; // the comparison can fail
    REQUIREF(run(&o, ds, tt_path(c, "c.gguf"), NULL, &r, &e) == 0, "%s", e.msg);
    CHECK(!tt_same_tensors(a, c));
}

TEST(gpu_train_checkpoints_cross_devices) {
    NEED_GPU();
    char ds[512], p[512], ck[512];
    REQUIRE(tt_make_dataset("ds", 60000, 300, ds) == 0);
    TrainOpts o;
    TrainResult r;
    Err e;
    double full[2];
    const char *dev[2] = {"cpu", "cuda"};
    for (int d = 0; d < 2; d++) { // uninterrupted runs on each device
        char name[32];
        snprintf(name, sizeof name, "full_%s.gguf", dev[d]);
        tiny_opts(&o, dev[d]);
        o.steps = 10;
        REQUIREF(run(&o, ds, tt_path(p, name), NULL, &r, &e) == 0, "%s", e.msg);
        full[d] = r.train_loss;
    }
    for (int d = 0; d < 2; d++) { // 5 steps on one device, the other 5 on the other
        char name[32], ckname[48];
        snprintf(name, sizeof name, "x_%s.gguf", dev[d]);
        snprintf(ckname, sizeof ckname, "x_%s.ckpt.gguf", dev[d]);
        tiny_opts(&o, dev[d]);
        o.steps = 10, o.stop_after = 5;
        REQUIREF(run(&o, ds, tt_path(p, name), NULL, &r, &e) == 0, "%s", e.msg);
        CHECK(r.interrupted && r.steps == 5);
        tiny_opts(&o, dev[1 - d]);
        o.steps = 10;
        REQUIREF(run(&o, ds, p, tt_path(ck, ckname), &r, &e) == 0, "%s", e.msg);
        CHECK(!r.interrupted && r.steps == 10);
        fprintf(stderr, "%s then %s: loss %.4f; %s alone %.4f\n", dev[d], dev[1 - d], r.train_loss, dev[1 - d], full[1 - d]);
        CHECKF(fabs(r.train_loss - full[1 - d]) <= LOSS_TOL * full[1 - d], "%s -> %s: final loss %.4f vs %.4f",
               dev[d], dev[1 - d], r.train_loss, full[1 - d]);
    }
#ifdef LOSSY_CUDA
    // the transfer itself is exact: a checkpoint's weights and moments go to the GPU and come back bit for bit
    Checkpoint c;
    char q[512];
    REQUIREF(checkpoint_open(&c, tt_path(q, "x_cpu.ckpt.gguf"), &e) == 0, "%s", e.msg);
    TrainModel m;
    AdamW opt;
    REQUIREF(train_model_init(&m, &c.cfg, NULL, &e) == 0, "%s", e.msg);
    adamw_init(&opt, m.n_params, 0.9, 0.95, 1e-8, 0.1);
    REQUIREF(checkpoint_restore(&c, &m, &opt, &e) == 0, "%s", e.msg);
    GpuTrain *g;
    REQUIREF(gpu_train_new(&g, &m, 2, 32, false, NULL, 0, &e) == 0, "%s", e.msg);
    float *w = xmalloc_array(m.n_params, sizeof(float)), *mm = xmalloc_array(m.n_params, sizeof(float));
    float *vv = xmalloc_array(m.n_params, sizeof(float));
    CHECK(gpu_train_upload(g, m.params, opt.m, opt.v, &e) == 0 && gpu_train_download(g, w, mm, vv, &e) == 0);
    CHECK(memcmp(w, m.params, m.n_params * 4) == 0 && memcmp(mm, opt.m, m.n_params * 4) == 0 &&
          memcmp(vv, opt.v, m.n_params * 4) == 0);
    gpu_train_free(g);
    free(w), free(mm), free(vv);
    adamw_free(&opt);
    train_model_free(&m);
    checkpoint_close(&c);
#endif
}

TEST(gpu_train_refuses_a_batch_that_does_not_fit) {
    NEED_GPU();
#ifdef LOSSY_CUDA
    ModelConfig c;
    Err e;
    REQUIRE(train_config_llama(&c, 320, 2, 64, 4, 2, 0, 64, true, &e) == 0);
    TrainModel m;
    REQUIREF(train_model_init(&m, &c, NULL, &e) == 0, "%s", e.msg);
    GpuTrain *g = NULL;
    char plan[640];
    // 2^20 sequences of 64 tokens: terabytes of activations
    CHECK(gpu_train_new(&g, &m, (int64_t)1 << 20, 64, false, plan, sizeof plan, &e) != 0);
    CHECK(g == NULL);
    CHECKF(strstr(e.msg, "largest batch that fits is") && strstr(e.msg, "GPU memory plan"), "%s", e.msg);
    CHECKF(strstr(plan, "GPU memory plan: weights"), "%s", plan);
    train_model_free(&m);
#endif
}
