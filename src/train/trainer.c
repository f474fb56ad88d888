// trainer.c — the training loop (see trainer.h): pretraining on a prepared dataset, or finetuning on a TrainSource
// (masked targets) with the same loop, evaluation, logs, checkpoints and export.
#include "train/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "kernels/matmul_mt.h"
#include "sample/sampler.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/plot.h"
#include "train/train_model.h"
#ifdef LOSSY_CUDA
#include "cuda/train_gpu.h"
#endif

void train_opts_default(TrainOpts *o) {
    memset(o, 0, sizeof *o);
    o->n_layer = 6;
    o->n_embd = 288;
    o->n_head = 6;
    o->seq_len = 256;
    o->tied = true;
    o->batch = 16;
    o->grad_accum = 1;
    o->lr.kind = LR_COSINE;
    o->lr.lr = 1e-3;
    o->lr.min_lr = 1e-4;
    o->lr.warmup = -1; // auto: min(100, a tenth of the run)
    o->lr.decay_frac = 0.2;
    o->weight_decay = 0.1;
    o->grad_clip = 1.0;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->adam_eps = 1e-8;
    o->eval_every = 250;
    o->eval_tokens = 65536;
    o->sample_tokens = 128;
    o->ckpt_every = 1000;
    o->seed = 1337;
}

// ---------------------------------------------------------------------------------------------------------------
// options <-> JSON

#define OPT_INTS(X)                                                                                                  \
    X(n_layer) X(n_embd) X(n_head) X(n_head_kv) X(n_ff) X(seq_len) X(steps) X(tokens) X(batch) X(seq) X(grad_accum) \
    X(eval_every) X(eval_tokens) X(sample_every) X(sample_tokens) X(ckpt_every)
#define OPT_REALS(X) X(minutes) X(weight_decay) X(grad_clip) X(beta1) X(beta2) X(adam_eps)

char *train_opts_to_json(const TrainOpts *o) {
    json_t *j = json_object();
#define SET_INT(f) json_object_set_new(j, #f, json_integer((json_int_t)o->f));
#define SET_REAL(f) json_object_set_new(j, #f, json_real(o->f));
    OPT_INTS(SET_INT)
    OPT_REALS(SET_REAL)
#undef SET_INT
#undef SET_REAL
    json_object_set_new(j, "tied", json_boolean(o->tied));
    json_object_set_new(j, "schedule", json_string(lr_schedule_name(o->lr.kind)));
    json_object_set_new(j, "lr", json_real(o->lr.lr));
    json_object_set_new(j, "min_lr", json_real(o->lr.min_lr));
    json_object_set_new(j, "warmup", json_integer(o->lr.warmup));
    json_object_set_new(j, "decay_frac", json_real(o->lr.decay_frac));
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed); // a u64 does not fit json_int_t
    json_object_set_new(j, "seed", json_string(seed));
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

int train_opts_from_json(TrainOpts *o, const char *text, Err *e) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j || !json_is_object(j)) {
        if (j) json_decref(j);
        return ERR(e, "training options are not a JSON object: %s", je.text);
    }
    json_t *v;
#define GET_INT(f) \
    if ((v = json_object_get(j, #f)) && json_is_integer(v)) o->f = (int64_t)json_integer_value(v);
#define GET_REAL(f) \
    if ((v = json_object_get(j, #f)) && json_is_number(v)) o->f = json_number_value(v);
    OPT_INTS(GET_INT)
    OPT_REALS(GET_REAL)
#undef GET_INT
#undef GET_REAL
    if ((v = json_object_get(j, "tied")) && json_is_boolean(v)) o->tied = json_is_true(v);
    if ((v = json_object_get(j, "schedule")) && json_is_string(v)) (void)lr_schedule_parse(json_string_value(v), &o->lr.kind);
    if ((v = json_object_get(j, "lr")) && json_is_number(v)) o->lr.lr = json_number_value(v);
    if ((v = json_object_get(j, "min_lr")) && json_is_number(v)) o->lr.min_lr = json_number_value(v);
    if ((v = json_object_get(j, "warmup")) && json_is_integer(v)) o->lr.warmup = (int64_t)json_integer_value(v);
    if ((v = json_object_get(j, "decay_frac")) && json_is_number(v)) o->lr.decay_frac = json_number_value(v);
    if ((v = json_object_get(j, "seed")) && json_is_string(v)) o->seed = strtoull(json_string_value(v), NULL, 10);
    json_decref(j);
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// peak measurement

double train_measure_peak_gflops(ThreadPool *pool, double seconds) {
    const int64_t M = 1024, N = 1024, K = 512;
    float *A = xmalloc_array((size_t)(M * K), sizeof(float)), *B = xmalloc_array((size_t)(K * N), sizeof(float));
    float *C = xmalloc_array((size_t)(M * N), sizeof(float));
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 13) * 0.01f;
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)((i * 5) % 11) * 0.01f;
    matmul_gemm_mt(pool, M, N, K, A, K, 1, B, N, 1, C, N, false); // warm-up: page faults, caches
    double best = 0, t_end = time_now() + seconds;
    do {
        double t0 = time_now();
        matmul_gemm_mt(pool, M, N, K, A, K, 1, B, N, 1, C, N, false);
        double dt = time_now() - t0, g = 2.0 * (double)M * N * K / dt / 1e9;
        if (g > best) best = g;
    } while (time_now() < t_end);
    free(A), free(B), free(C);
    return best;
}

// ---------------------------------------------------------------------------------------------------------------
// the run

typedef struct Trainer {
    const TrainOpts *o;
    const TrainIO *io;
    Dataset ds;               // pretraining data (unused with a source)
    const TrainSource *src;   // or a finetuning source
    DataLoaderState src_st;   // the source's position
    const Tokenizer *tok;     // ds.tok or src->tok
    int64_t vocab;
    uint64_t data_hash;       // ds.manifest_hash or src->hash
    TrainModel m;
    AdamW opt;
    DataLoader train, val;
    bool has_val;
    int64_t B, T, K, total_steps, warmup;
    bool time_budget;
    int64_t *byte_len;   // (V) bytes each token decodes to
    int32_t *inputs, *targets; // (B*T)
    float *row_loss;     // (B*T)
    FILE *log;
    char *ckpt_path, *log_path, *plot_path, *opts_json;
    double flops_per_token, peak;
    CheckpointMeta meta;
    Buf line;
    bool gpu;                 // --device cuda: steps, evaluation and the weights live on the GPU (gpu_train_*)
#ifdef LOSSY_CUDA
    GpuTrain *g;
#endif
} Trainer;

// GPU runs: bring the weights (and with opt, the AdamW moments) back into the CPU model for a checkpoint, a sample
// or the export. CPU runs: nothing to do.
static int sync_to_cpu(Trainer *t, bool opt, Err *e) {
#ifdef LOSSY_CUDA
    if (t->gpu) return gpu_train_download(t->g, t->m.params, opt ? t->opt.m : NULL, opt ? t->opt.v : NULL, e);
#endif
    (void)t, (void)opt, (void)e;
    return 0;
}

static void emit(Trainer *t, TrainEventKind kind, int64_t step) {
    if (t->io->on_event) {
        TrainEvent ev = {kind, t->line.data ? t->line.data : "", step};
        t->io->on_event(t->io->event_ctx, &ev);
    }
    t->line.len = 0;
    if (t->line.data) t->line.data[0] = 0;
}

static char *derived_path(const char *out, const char *given, const char *suffix) {
    if (given) return xstrdup(given);
    Buf b;
    buf_init(&b);
    size_t n = strlen(out);
    if (str_ends_with(out, ".gguf")) n -= 5;
    buf_append(&b, out, n);
    buf_append_str(&b, suffix);
    return b.data;
}

static void fmt_duration(char *out, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(out, n, "?");
    else if (s < 60) snprintf(out, n, "%.0fs", s);
    else if (s < 3600) snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

// The next training micro-batch into t->inputs / t->targets; *counted = the targets that count (all B*T when
// pretraining, the unmasked ones with a source). Returns its gradient scale: grad_scale when pretraining, with a
// source the mean over the counted targets (0: a micro-batch without any contributes nothing).
static float next_micro_batch(Trainer *t, float grad_scale, int64_t *counted) {
    if (!t->src) {
        data_loader_next(&t->train, t->B, t->inputs, t->targets);
        *counted = t->B * t->T;
        return grad_scale;
    }
    t->src->next(t->src->ctx, &t->src_st, t->B, t->inputs, t->targets);
    int64_t n = 0;
    for (int64_t i = 0; i < t->B * t->T; i++) n += t->targets[i] >= 0;
    *counted = n;
    return n > 0 ? 1.0f / ((float)n * (float)t->K) : 0.0f;
}

// Mean loss per token and bits per byte over the first eval_tokens of the validation split.
// With a source: every validation row (eval_tokens is not a limit), counted targets only.
static int evaluate(Trainer *t, double *loss, double *bpb, Err *e) {
    int64_t windows;
    if (t->src) {
        windows = t->src->n_val_rows;
    } else {
        windows = t->o->eval_tokens / t->T;
        if (windows < 1) windows = 1;
        if (windows > data_loader_epoch_windows(&t->val)) windows = data_loader_epoch_windows(&t->val);
        DataLoaderState st0 = {0, 0, 0};
        Err se;
        (void)data_loader_set_state(&t->val, &st0, &se);
    }
    double nats = 0, text_nats = 0, bytes = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < windows; i += t->B) {
        int64_t b = windows - i < t->B ? windows - i : t->B;
        if (t->src) t->src->val_rows(t->src->ctx, i, b, t->inputs, t->targets);
        else data_loader_next(&t->val, b, t->inputs, t->targets);
#ifdef LOSSY_CUDA
        if (t->gpu) {
            if (gpu_train_eval(t->g, t->inputs, t->targets, b, t->T, t->row_loss, e)) return -1;
        } else
#endif
            train_model_forward(&t->m, t->inputs, t->targets, b, t->T, t->row_loss);
        for (int64_t r = 0; r < b * t->T; r++) {
            if (t->targets[r] < 0) continue; // masked: not part of the loss
            nats += t->row_loss[r];
            int64_t nb = t->byte_len[t->targets[r]];
            if (nb > 0) {
                text_nats += t->row_loss[r];
                bytes += (double)nb;
            }
            count++;
        }
    }
    *loss = count > 0 ? nats / (double)count : NAN;
    *bpb = bytes > 0 ? text_nats / log(2.0) / bytes : NAN;
    return 0;
}

static int sample(Trainer *t, int64_t step, Err *e) {
    // GPU runs sample on the CPU from the current weights (activations for one row only)
    if (t->gpu && (sync_to_cpu(t, false, e) || train_model_reserve(&t->m, 1, t->T, e))) return -1;
    const Tokenizer *tok = t->tok;
    int32_t start = tokenizer_special_id(tok, TOKEN_ID_BOS);
    if (start < 0) start = tokenizer_special_id(tok, TOKEN_ID_EOS);
    if (start < 0) return 0;
    int64_t max_new = t->o->sample_tokens < t->T - 1 ? t->o->sample_tokens : t->T - 1;
    int32_t *ids = xmalloc_array((size_t)(max_new + 1), sizeof(int32_t));
    float *logits = xmalloc_array((size_t)t->m.cfg.vocab_size, sizeof(float));
    ids[0] = start;
    int64_t n = 1;
    SamplerParams sp;
    sampler_params_default(&sp);
    sp.seed = t->o->seed ^ (uint64_t)step; // the sample depends on the step, never on the run's history
    Sampler s;
    sampler_init(&s, t->m.cfg.vocab_size, &sp);
    while (n <= max_new) {
        train_model_next_logits(&t->m, ids, n, logits);
        int32_t id = sampler_sample(&s, logits, ids, (size_t)n);
        if (tokenizer_is_eog(tok, id)) break;
        ids[n++] = id;
    }
    sampler_free(&s);
    Buf text;
    buf_init(&text);
    Err de;
    if (tokenizer_decode(tok, ids + 1, (size_t)(n - 1), TOKENIZER_DECODE_SKIP_SPECIAL, &text, &de) == 0) {
        buf_printf(&t->line, "sample at step %lld:\n", (long long)step);
        tokenizer_utf8_lossy(text.data ? text.data : "", text.len, &t->line);
        emit(t, TRAIN_EV_SAMPLE, step);
    }
    buf_free(&text);
    free(ids);
    free(logits);
    return 0;
}

static int save_checkpoint(Trainer *t, Err *e) {
    if (sync_to_cpu(t, true, e)) return -1;
    t->meta.loader = t->src ? t->src_st : t->train.st;
    t->meta.opts_json = t->opts_json;
    if (checkpoint_save(t->ckpt_path, &t->m, &t->opt, t->tok, &t->meta, e)) return -1;
    buf_printf(&t->line, "checkpoint: step %lld written to %s", (long long)t->meta.step, t->ckpt_path);
    emit(t, TRAIN_EV_CHECKPOINT, t->meta.step);
    return 0;
}

// Keep the log's header and the rows up to `step` (a resumed run rewrites what came after its checkpoint).
static int truncate_log(const char *path, int64_t step, Err *e) {
    if (!path_exists(path)) return 0;
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, e)) return -1;
    Buf keep;
    buf_init(&keep);
    const char *p = text, *end = text + len;
    bool header = true;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if (header || strtoll(p, NULL, 10) <= step) buf_append(&keep, p, (size_t)(next - p));
        header = false;
        p = next;
    }
    int rc = file_write_atomic_bytes(path, keep.data ? keep.data : "", keep.len, e);
    buf_free(&keep);
    free(text);
    return rc;
}

static int export_model(Trainer *t, const TrainResult *r, Err *e) {
    if (sync_to_cpu(t, false, e)) return -1;
    char name[64];
    if (t->o->name) snprintf(name, sizeof name, "%s", t->o->name);
    else snprintf(name, sizeof name, "lossy-%lldx%lld", (long long)t->m.cfg.n_layer, (long long)t->m.cfg.n_embd);
    GGUFWriter *w = train_model_gguf_writer(&t->m, t->tok, name, e);
    if (!w) return -1;
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)t->data_hash);
    gguf_writer_set_str(w, "lossy.train.data_manifest_hash", hex);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)data_tokenizer_hash(t->tok));
    gguf_writer_set_str(w, "lossy.train.tokenizer_hash", hex);
    gguf_writer_set_str(w, "lossy.train.data", t->src ? t->src->desc : t->io->data_dir);
    if (t->src && t->src->export_keys && t->src->export_keys(t->src->ctx, w, e)) {
        gguf_writer_free(w);
        return -1;
    }
    gguf_writer_set_str(w, "lossy.train.opts", t->opts_json);
    gguf_writer_set_i64(w, "lossy.train.steps", r->steps);
    gguf_writer_set_i64(w, "lossy.train.tokens", r->tokens);
    gguf_writer_set_f64(w, "lossy.train.seconds", t->meta.elapsed);
    gguf_writer_set_f64(w, "lossy.train.final_train_loss", r->train_loss);
    if (isfinite(r->val_loss)) gguf_writer_set_f64(w, "lossy.train.final_val_loss", r->val_loss);
    if (isfinite(r->val_bpb)) gguf_writer_set_f64(w, "lossy.train.final_val_bpb", r->val_bpb);
    int rc = gguf_writer_write(w, t->io->out_path, e);
    gguf_writer_free(w);
    return rc;
}

static int check_shape(const ModelConfig *c, const TrainOpts *o, Err *e) {
    if (c->n_layer != o->n_layer || c->n_embd != o->n_embd || c->n_head != o->n_head ||
        (o->n_head_kv > 0 && c->n_head_kv != o->n_head_kv) || (o->n_ff > 0 && c->n_ff != o->n_ff) ||
        c->n_ctx_train != o->seq_len || c->tied_embeddings != o->tied)
        return ERR(e, "the checkpoint's model (%lld layers, width %lld, %lld/%lld heads, ffn %lld, context %lld, %s) differs "
                      "from the model flags (%lld layers, width %lld, %lld heads, context %lld, %s)",
                   (long long)c->n_layer, (long long)c->n_embd, (long long)c->n_head, (long long)c->n_head_kv,
                   (long long)c->n_ff, (long long)c->n_ctx_train, c->tied_embeddings ? "tied" : "untied",
                   (long long)o->n_layer, (long long)o->n_embd, (long long)o->n_head, (long long)o->seq_len,
                   o->tied ? "tied" : "untied");
    return 0;
}

// Model config and weights: from a checkpoint, an initial GGUF, or the flags with random weights.
static int setup_model(Trainer *t, Checkpoint *ck, Err *e) {
    const TrainOpts *o = t->o;
    ModelConfig cfg;
    GGUFFile init;
    memset(&init, 0, sizeof init);
    if (ck) {
        cfg = ck->cfg;
        if (check_shape(&cfg, o, e)) return -1;
        if (ck->meta.manifest_hash != t->data_hash)
            return ERR(e, "checkpoint '%s' was trained on another dataset (hash %016llx; '%s' has %016llx)",
                       t->io->resume, (unsigned long long)ck->meta.manifest_hash,
                       t->src ? t->src->desc : t->io->data_dir, (unsigned long long)t->data_hash);
    } else if (t->io->init) {
        if (gguf_open(&init, t->io->init, e)) return -1;
        if (model_config_from_gguf(&init, &cfg, e) || train_config_check(&cfg, e)) {
            gguf_close(&init);
            return err_prefix(e, "--init '%s': ", t->io->init);
        }
    } else if (train_config_llama(&cfg, t->vocab, o->n_layer, o->n_embd, o->n_head, o->n_head_kv, o->n_ff,
                                  o->seq_len, o->tied, e)) {
        return -1;
    }
    if (cfg.vocab_size != t->vocab) {
        if (init.name) gguf_close(&init);
        return ERR(e, "the model has a vocabulary of %lld tokens but the data's tokenizer has %lld",
                   (long long)cfg.vocab_size, (long long)t->vocab);
    }
    int rc = train_model_init(&t->m, &cfg, t->io->pool, e);
    if (rc == 0) adamw_init(&t->opt, t->m.n_params, o->beta1, o->beta2, o->adam_eps, o->weight_decay);
    if (rc == 0) {
        if (ck) rc = checkpoint_restore(ck, &t->m, &t->opt, e);
        else if (t->io->init) rc = train_model_load_weights(&t->m, &init, e);
        else train_model_init_weights(&t->m, o->seed);
    }
    if (init.name) gguf_close(&init);
    return rc;
}

static void trainer_free(Trainer *t) {
#ifdef LOSSY_CUDA
    gpu_train_free(t->g);
#endif
    if (t->log) fclose(t->log);
    data_loader_free(&t->train);
    data_loader_free(&t->val);
    adamw_free(&t->opt);
    train_model_free(&t->m);
    dataset_close(&t->ds);
    free(t->byte_len);
    free(t->inputs);
    free(t->targets);
    free(t->row_loss);
    free(t->ckpt_path);
    free(t->log_path);
    free(t->plot_path);
    free(t->opts_json);
    buf_free(&t->line);
}

int train_run(const TrainOpts *o, const TrainIO *io, TrainResult *r, Err *e) {
    memset(r, 0, sizeof *r);
    r->val_loss = r->val_bpb = r->train_loss = NAN;
    Trainer t;
    memset(&t, 0, sizeof t);
    t.o = o;
    t.io = io;
    buf_init(&t.line);
    Checkpoint ck;
    memset(&ck, 0, sizeof ck);
    bool resumed = io->resume != NULL;
    int rc = -1;
    if (o->batch <= 0 || o->grad_accum <= 0) {
        ERR(e, "--batch and --grad-accum must be positive");
        goto done;
    }
    if (!(o->lr.lr > 0) || !(o->lr.min_lr >= 0) || !(o->grad_clip >= 0) || !(o->weight_decay >= 0) ||
        !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->adam_eps > 0)) {
        ERR(e, "optimizer settings out of range (need lr > 0, min-lr >= 0, grad-clip >= 0, weight-decay >= 0, betas in [0, 1))");
        goto done;
    }
    t.src = io->source;
    if (t.src) {
        t.tok = t.src->tok;
        t.vocab = (int64_t)tokenizer_vocab_size(t.tok);
        t.data_hash = t.src->hash;
    } else {
        if (dataset_open(&t.ds, io->data_dir, e)) goto done;
        t.tok = t.ds.tok;
        t.vocab = t.ds.vocab_size;
        t.data_hash = t.ds.manifest_hash;
    }
    if (resumed && checkpoint_open(&ck, io->resume, e)) goto done;
    if (setup_model(&t, resumed ? &ck : NULL, e)) goto done;
    t.B = o->batch;
    t.K = o->grad_accum;
    t.T = t.src ? t.src->T : o->seq > 0 ? o->seq : t.m.cfg.n_ctx_train;
    if (t.T > t.m.cfg.n_ctx_train) {
        ERR(e, "--seq %lld is longer than the model's context %lld (--seq-len)", (long long)t.T, (long long)t.m.cfg.n_ctx_train);
        goto done;
    }
    t.gpu = o->device && strcmp(o->device, "cuda") == 0;
    if (o->device && !t.gpu && strcmp(o->device, "cpu") != 0) {
        ERR(e, "unknown device '%s' (cpu or cuda)", o->device);
        goto done;
    }
    if (t.gpu) {
#ifdef LOSSY_CUDA
        char plan[640];
        int grc = gpu_train_new(&t.g, &t.m, t.B, t.T, o->recompute, plan, sizeof plan, e);
        if (plan[0]) {
            buf_printf(&t.line, "%s", plan);
            emit(&t, TRAIN_EV_INFO, t.meta.step);
        }
        if (grc || gpu_train_upload(t.g, t.m.params, t.opt.m, t.opt.v, e)) goto done;
#else
        ERR(e, "--device cuda: this lossy was built without CUDA (nvcc was not found when it was compiled)");
        goto done;
#endif
    } else if (train_model_reserve(&t.m, t.B, t.T, e)) {
        goto done;
    }
    t.has_val = false;
    if (t.src) {
        t.src_st = (DataLoaderState){o->seed, 0, 0};
        t.has_val = o->eval_tokens > 0 && t.src->n_val_rows > 0;
    } else if (data_loader_init(&t.train, &t.ds, DATA_TRAIN, t.T, true, o->seed, e)) {
        goto done;
    } else if (o->eval_tokens > 0 && t.ds.tokens[DATA_VAL] > (uint64_t)t.T) {
        Err ve;
        t.has_val = data_loader_init(&t.val, &t.ds, DATA_VAL, t.T, false, 0, &ve) == 0;
    }
    int64_t per_step = t.B * t.T * t.K;
    if (o->steps > 0) t.total_steps = o->steps;
    else if (o->tokens > 0) t.total_steps = (o->tokens + per_step - 1) / per_step;
    else if (o->minutes > 0) t.total_steps = INT64_MAX, t.time_budget = true;
    else {
        ERR(e, "say how long to train: --steps, --tokens or --minutes");
        goto done;
    }
    t.warmup = o->lr.warmup;
    if (t.warmup < 0) {
        t.warmup = 100;
        if (!t.time_budget && t.total_steps / 10 < t.warmup) t.warmup = t.total_steps / 10;
    }
    t.byte_len = data_token_byte_lengths(t.tok);
    t.inputs = xmalloc_array((size_t)(t.B * t.T), sizeof(int32_t));
    t.targets = xmalloc_array((size_t)(t.B * t.T), sizeof(int32_t));
    t.row_loss = xmalloc_array((size_t)(t.B * t.T), sizeof(float));
    t.ckpt_path = derived_path(io->out_path, io->ckpt_path, ".ckpt.gguf");
    t.log_path = derived_path(io->out_path, io->log_path, ".csv");
    t.plot_path = derived_path(io->out_path, io->plot_path, ".svg");
    t.opts_json = train_opts_to_json(o);
    t.meta.manifest_hash = t.data_hash;
    t.meta.train_loss = t.meta.val_loss = NAN;
    if (resumed) {
        t.meta.step = ck.meta.step;
        t.meta.tokens_seen = ck.meta.tokens_seen;
        t.meta.elapsed = ck.meta.elapsed;
        t.meta.train_loss = ck.meta.train_loss;
        t.meta.val_loss = ck.meta.val_loss;
        DataLoaderState st = ck.meta.loader;
        if (st.seed != o->seed) {
            ERR(e, "the checkpoint's data order was drawn with seed %llu, not --seed %llu", (unsigned long long)st.seed,
                (unsigned long long)o->seed);
            goto done;
        }
        if (t.src) t.src_st = st;
        else if (data_loader_set_state(&t.train, &st, e)) goto done;
        if (truncate_log(t.log_path, t.meta.step, e)) goto done;
        checkpoint_close(&ck);
    }
    bool continue_log = resumed && path_exists(t.log_path);
    t.log = fopen(t.log_path, continue_log ? "a" : "w");
    if (!t.log) {
        ERR(e, "cannot write the log '%s': %s", t.log_path, strerror(errno));
        goto done;
    }
    if (!continue_log) fprintf(t.log, "step,tokens,elapsed_s,lr,loss,grad_norm,tok_per_s,val_loss,val_bpb\n");

    const ModelConfig *c = &t.m.cfg;
    t.flops_per_token = 6.0 * (double)train_model_matmul_params(&t.m) + 12.0 * (double)c->n_layer * (double)c->n_embd * (double)t.T;
    if (o->peak_gflops > 0) {
        t.peak = o->peak_gflops;
    } else if (t.gpu) {
#ifdef LOSSY_CUDA
        double tf = 0;
        if (gpu_measure_bf16_tflops(0.3, &tf, e)) goto done;
        t.peak = tf * 1e3;
#endif
    } else {
        t.peak = train_measure_peak_gflops(io->pool, 0.3);
    }
    buf_printf(&t.line, "model: %lld layers, width %lld, %lld heads (%lld kv), ffn %lld, context %lld, vocab %lld, %s embeddings: %.2fM parameters",
               (long long)c->n_layer, (long long)c->n_embd, (long long)c->n_head, (long long)c->n_head_kv, (long long)c->n_ff,
               (long long)c->n_ctx_train, (long long)c->vocab_size, c->tied_embeddings ? "tied" : "untied",
               (double)t.m.n_params / 1e6);
    emit(&t, TRAIN_EV_INFO, t.meta.step);
    buf_printf(&t.line, "data: %llu train / %llu val %s; batch %lld x %lld x %lld accum = %lld tokens per step; %s",
               (unsigned long long)(t.src ? (uint64_t)t.src->train_targets : t.ds.tokens[DATA_TRAIN]),
               (unsigned long long)(t.src ? (uint64_t)t.src->val_targets : t.ds.tokens[DATA_VAL]),
               t.src ? "target tokens (masked)" : "tokens", (long long)t.B,
               (long long)t.T, (long long)t.K, (long long)per_step,
               t.time_budget ? "time budget" : "");
    if (!t.time_budget) buf_printf(&t.line, "%lld steps", (long long)t.total_steps);
    if (t.gpu)
        buf_printf(&t.line, "; %.1f GFLOP per step; peak %.0f GFLOP/s (cuBLASLt bf16 GEMM on the GPU)%s",
                   t.flops_per_token * (double)per_step / 1e9, t.peak, resumed ? "; resumed" : "");
    else
        buf_printf(&t.line, "; %.1f GFLOP per step; peak %.0f GFLOP/s (our GEMM, %d threads); memory %.2f GB%s",
                   t.flops_per_token * (double)per_step / 1e9, t.peak, threadpool_size(io->pool),
                   (double)(t.m.act_bytes + 4 * t.m.n_params * sizeof(float)) / 1e9, resumed ? "; resumed" : "");
    emit(&t, TRAIN_EV_INFO, t.meta.step);
    if (!t.has_val && o->eval_tokens > 0) {
        buf_printf(&t.line, "note: the validation split has fewer than %lld tokens: no evaluation", (long long)(t.T + 1));
        emit(&t, TRAIN_EV_INFO, t.meta.step);
    }

    double budget = o->minutes * 60.0, run_start = time_now(), elapsed0 = t.meta.elapsed;
    double compute = 0, last_print = 0, window_tokens = 0, window_time = 0;
    int64_t steps_here = 0, first_step = t.meta.step;
    double last_val = NAN, last_bpb = NAN;
    int64_t last_eval_step = -1;
    const float grad_scale = 1.0f / (float)(t.B * t.T * t.K);
    while (t.meta.step < t.total_steps) {
        double elapsed = elapsed0 + (time_now() - run_start);
        if (t.time_budget && elapsed >= budget) break;
        if (o->stop_after > 0 && steps_here >= o->stop_after) {
            r->interrupted = true;
            break;
        }
        if (io->stop && *io->stop) {
            r->interrupted = true;
            break;
        }
        double t0 = time_now();
        double progress = t.time_budget ? elapsed / budget
                                        : (double)(t.meta.step - t.warmup) / (double)(t.total_steps - t.warmup > 0 ? t.total_steps - t.warmup : 1);
        LrSpec spec = o->lr;
        spec.warmup = t.warmup;
        double lr = lr_at(&spec, t.meta.step, progress);
        double loss = 0, gnorm = 0;
#ifdef LOSSY_CUDA
        if (t.gpu) {
            // the same micro-batches and scales as below; the loss is summed on the GPU, read once per step
            if (gpu_train_zero_grad(t.g, e)) goto done;
            for (int64_t k = 0; k < t.K; k++) {
                int64_t counted;
                float scale = next_micro_batch(&t, grad_scale, &counted);
                double weight = counted > 0 ? 1.0 / ((double)counted * (double)t.K) : 0.0;
                if (gpu_train_micro_step(t.g, t.inputs, t.targets, t.B, t.T, scale, weight, e)) goto done;
            }
            GpuAdamParams ap = {lr, t.opt.beta1, t.opt.beta2, t.opt.eps, t.opt.weight_decay, o->grad_clip, t.opt.t + 1};
            if (gpu_train_update(t.g, &ap, &loss, &gnorm, e)) goto done;
            if (!isfinite(loss) || !isfinite(gnorm)) { // the GPU left the weights unchanged
                ERR(e, "training diverged at step %lld (loss %g, gradient norm %g): try a lower --lr or --grad-clip",
                    (long long)t.meta.step + 1, loss, gnorm);
                goto done;
            }
            t.opt.t++;
        } else
#endif
        {
            train_model_zero_grad(&t.m);
            for (int64_t k = 0; k < t.K; k++) {
                int64_t counted;
                float scale = next_micro_batch(&t, grad_scale, &counted);
                double mean_all = train_model_forward_backward(&t.m, t.inputs, t.targets, t.B, t.T, scale);
                // masked targets: the forward's mean is over all B*T positions; rescale to the counted ones
                if (!t.src) loss += mean_all;
                else if (counted > 0) loss += mean_all * (double)(t.B * t.T) / (double)counted;
            }
            loss /= (double)t.K;
            gnorm = grad_global_norm(io->pool, t.m.grads, t.m.n_params);
            if (!isfinite(loss) || !isfinite(gnorm)) {
                ERR(e, "training diverged at step %lld (loss %g, gradient norm %g): try a lower --lr or --grad-clip",
                    (long long)t.meta.step + 1, loss, gnorm);
                goto done;
            }
            float clip = (o->grad_clip > 0 && gnorm > o->grad_clip) ? (float)(o->grad_clip / gnorm) : 1.0f;
            adamw_step(&t.opt, &t.m, lr, clip, io->pool);
        }
        double dt = time_now() - t0;
        compute += dt;
        window_time += dt;
        window_tokens += (double)per_step;
        t.meta.step++;
        t.meta.tokens_seen += per_step;
        t.meta.train_loss = loss;
        t.meta.elapsed = elapsed0 + (time_now() - run_start);
        steps_here++;
        r->train_loss = loss;

        bool last = t.meta.step == t.total_steps;
        bool do_eval = t.has_val && o->eval_every > 0 && (t.meta.step % o->eval_every == 0 || last);
        if (do_eval) {
            if (evaluate(&t, &last_val, &last_bpb, e)) goto done;
            last_eval_step = t.meta.step;
            t.meta.val_loss = last_val;
            r->val_loss = last_val;
            r->val_bpb = last_bpb;
        }
        double tps = window_time > 0 ? window_tokens / window_time : 0;
        fprintf(t.log, "%lld,%lld,%.3f,%.6g,%.6f,%.6f,%.1f,", (long long)t.meta.step, (long long)t.meta.tokens_seen,
                t.meta.elapsed, lr, loss, gnorm, tps);
        if (do_eval) fprintf(t.log, "%.6f,%.6f\n", last_val, last_bpb);
        else fprintf(t.log, ",\n");
        fflush(t.log);
        double now = time_now();
        if (do_eval || last || t.meta.step == first_step + 1 || now - last_print >= 1.0) {
            double gflops = tps * t.flops_per_token / 1e9;
            double eta = t.time_budget ? budget - t.meta.elapsed
                                       : (double)(t.total_steps - t.meta.step) * (compute / (double)steps_here);
            char eta_s[32];
            fmt_duration(eta_s, sizeof eta_s, eta);
            if (t.time_budget) buf_printf(&t.line, "step %lld", (long long)t.meta.step);
            else buf_printf(&t.line, "step %lld/%lld", (long long)t.meta.step, (long long)t.total_steps);
            buf_printf(&t.line, " | loss %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | %.1f GFLOP/s (%.0f%% of peak)", loss, lr,
                       gnorm, tps, gflops, t.peak > 0 ? 100.0 * gflops / t.peak : 0.0);
            if (do_eval) buf_printf(&t.line, " | val %.4f, %.3f bpb", last_val, last_bpb);
            buf_printf(&t.line, " | ETA %s", eta_s);
            emit(&t, do_eval ? TRAIN_EV_EVAL : TRAIN_EV_STEP, t.meta.step);
            last_print = now;
            window_time = window_tokens = 0;
        }
        if (do_eval) {
            Err pe;
            (void)plot_csv_to_svg(t.log_path, t.plot_path, t.src ? "lossy sft" : "lossy train", &pe); // the curve is a convenience
        }
        if (o->sample_every > 0 && t.meta.step % o->sample_every == 0 && sample(&t, t.meta.step, e)) goto done;
        if (o->ckpt_every > 0 && t.meta.step % o->ckpt_every == 0 && !last && save_checkpoint(&t, e)) goto done;
    }
    // the final evaluation (also with eval_every 0)
    if (t.has_val && last_eval_step != t.meta.step && !r->interrupted && t.meta.step > first_step) {
        if (evaluate(&t, &last_val, &last_bpb, e)) goto done;
        t.meta.val_loss = last_val;
        r->val_loss = last_val;
        r->val_bpb = last_bpb;
        // a row of its own (no training columns) so the log and the curve end with it
        fprintf(t.log, "%lld,%lld,%.3f,,,,,%.6f,%.6f\n", (long long)t.meta.step, (long long)t.meta.tokens_seen,
                t.meta.elapsed, last_val, last_bpb);
        fflush(t.log);
        buf_printf(&t.line, "final evaluation: val %.4f, %.3f bpb", last_val, last_bpb);
        emit(&t, TRAIN_EV_EVAL, t.meta.step);
    }
    r->steps = t.meta.step;
    r->tokens = t.meta.tokens_seen;
    r->seconds = time_now() - run_start;
    if (save_checkpoint(&t, e)) goto done;
    {
        Err pe;
        if (plot_csv_to_svg(t.log_path, t.plot_path, t.src ? "lossy sft" : "lossy train", &pe) == 0) {
            buf_printf(&t.line, "loss curve: %s (log: %s)", t.plot_path, t.log_path);
            emit(&t, TRAIN_EV_INFO, t.meta.step);
        }
    }
    if (!r->interrupted) {
        if (export_model(&t, r, e)) goto done;
        buf_printf(&t.line, "model written to %s", io->out_path);
        emit(&t, TRAIN_EV_INFO, t.meta.step);
    }
    rc = 0;
done:
    checkpoint_close(&ck);
    trainer_free(&t);
    return rc;
}
