// checkpoint.c — saving and restoring training checkpoints as GGUF files (see checkpoint.h).
#include "train/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"

// fsync the directory holding path, so the rename that published the file survives a power loss.
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd); // best effort: some filesystems refuse fsync on directories
        close(fd);
    }
    free(dir);
}

int checkpoint_save(const char *path, const TrainModel *m, const AdamW *opt, const Tokenizer *tok,
                    const CheckpointMeta *meta, Err *e) {
    GGUFWriter *w = train_model_gguf_writer(m, tok, "lossy training checkpoint", e);
    if (!w) return err_prefix(e, "checkpoint '%s': ", path);
    char hex[32];
    gguf_writer_set_u32(w, "lossy.checkpoint.version", CHECKPOINT_VERSION);
    gguf_writer_set_i64(w, "lossy.train.step", meta->step);
    gguf_writer_set_i64(w, "lossy.train.tokens_seen", meta->tokens_seen);
    gguf_writer_set_f64(w, "lossy.train.elapsed_s", meta->elapsed);
    uint64_t ls[3] = {meta->loader.seed, meta->loader.epoch, meta->loader.index};
    gguf_writer_set_arr(w, "lossy.train.loader", GGUF_TYPE_UINT64, ls, 3);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)meta->manifest_hash);
    gguf_writer_set_str(w, "lossy.train.manifest_hash", hex);
    gguf_writer_set_str(w, "lossy.train.opts", meta->opts_json ? meta->opts_json : "{}");
    gguf_writer_set_f64(w, "lossy.train.train_loss", meta->train_loss);
    gguf_writer_set_f64(w, "lossy.train.val_loss", meta->val_loss);
    gguf_writer_set_i64(w, "lossy.adam.t", opt->t);
    int64_t ne[1] = {(int64_t)m->n_params};
    int rc = gguf_writer_add_tensor(w, "lossy.adam.m", DT_F32, 1, ne, opt->m, e);
    if (rc == 0) rc = gguf_writer_add_tensor(w, "lossy.adam.v", DT_F32, 1, ne, opt->v, e);
    if (rc == 0) rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    if (rc) return err_prefix(e, "writing checkpoint '%s' (the previous checkpoint, if any, is unchanged): ", path);
    sync_parent_dir(path);
    return 0;
}

static int get_i64(const GGUFFile *g, const char *key, int64_t *out, Err *e) {
    if (gguf_get_int(g, key, out, e)) return err_prefix(e, "checkpoint %s: ", g->name);
    return 0;
}

int checkpoint_open(Checkpoint *c, const char *path, Err *e) {
    memset(c, 0, sizeof *c);
    if (gguf_open(&c->g, path, e)) return -1;
    const GGUFFile *g = &c->g;
    int64_t version = 0;
    if (!gguf_find(g, "lossy.checkpoint.version")) {
        gguf_close(&c->g);
        return ERR(e, "'%s' is not a lossy training checkpoint (no lossy.checkpoint.version key)", path);
    }
    if (get_i64(g, "lossy.checkpoint.version", &version, e)) goto fail;
    if (version != CHECKPOINT_VERSION) {
        ERR(e, "checkpoint '%s' has version %lld; this lossy reads version %d", path, (long long)version, CHECKPOINT_VERSION);
        goto fail;
    }
    if (model_config_from_gguf(g, &c->cfg, e) || train_config_check(&c->cfg, e)) {
        err_prefix(e, "checkpoint '%s': ", path);
        goto fail;
    }
    CheckpointMeta *mt = &c->meta;
    if (get_i64(g, "lossy.train.step", &mt->step, e) || get_i64(g, "lossy.train.tokens_seen", &mt->tokens_seen, e)) goto fail;
    if (gguf_get_float(g, "lossy.train.elapsed_s", &mt->elapsed, e) || gguf_get_float(g, "lossy.train.train_loss", &mt->train_loss, e) ||
        gguf_get_float(g, "lossy.train.val_loss", &mt->val_loss, e)) {
        err_prefix(e, "checkpoint '%s': ", path);
        goto fail;
    }
    if (mt->step < 0 || mt->tokens_seen < 0) {
        ERR(e, "checkpoint '%s': negative step or token count", path);
        goto fail;
    }
    const GGUFKV *ls;
    if (gguf_get_arr(g, "lossy.train.loader", GGUF_TYPE_UINT64, &ls, e) || ls->arr_count != 3) {
        ERR(e, "checkpoint '%s': lossy.train.loader must be an array of 3 u64", path);
        goto fail;
    }
    mt->loader.seed = (uint64_t)gguf_arr_int(ls, 0);
    mt->loader.epoch = (uint64_t)gguf_arr_int(ls, 1);
    mt->loader.index = (uint64_t)gguf_arr_int(ls, 2);
    GStr s;
    if (gguf_get_str(g, "lossy.train.manifest_hash", &s, e) || s.len != 16) {
        ERR(e, "checkpoint '%s': lossy.train.manifest_hash is missing or malformed", path);
        goto fail;
    }
    char hex[17];
    memcpy(hex, s.ptr, 16);
    hex[16] = 0;
    char *end;
    mt->manifest_hash = strtoull(hex, &end, 16);
    if (*end) {
        ERR(e, "checkpoint '%s': lossy.train.manifest_hash is not hex", path);
        goto fail;
    }
    if (gguf_get_str(g, "lossy.train.opts", &s, e)) {
        err_prefix(e, "checkpoint '%s': ", path);
        goto fail;
    }
    c->opts_json = xstrndup(s.ptr, s.len);
    mt->opts_json = c->opts_json;
    return 0;
fail:
    checkpoint_close(c);
    return -1;
}

int checkpoint_restore(const Checkpoint *c, TrainModel *m, AdamW *opt, Err *e) {
    if (train_model_load_weights(m, &c->g, e)) return -1;
    static const char *names[2] = {"lossy.adam.m", "lossy.adam.v"};
    float *dst[2] = {opt->m, opt->v};
    for (int i = 0; i < 2; i++) {
        const GGUFTensor *t = gguf_find_tensor(&c->g, names[i]);
        if (!t) return ERR(e, "checkpoint %s: tensor '%s' is missing", c->g.name, names[i]);
        if (t->type != DT_F32 || t->n_elements != (uint64_t)m->n_params || t->n_dims != 1)
            return ERR(e, "checkpoint %s: tensor '%s' should be %zu F32 values (it has %llu of %s)", c->g.name, names[i],
                       m->n_params, (unsigned long long)t->n_elements, dtype_name(t->type));
        memcpy(dst[i], t->data, m->n_params * sizeof(float));
    }
    int64_t t = 0;
    if (get_i64(&c->g, "lossy.adam.t", &t, e)) return -1;
    if (t < 0) return ERR(e, "checkpoint %s: lossy.adam.t is negative", c->g.name);
    opt->t = t;
    return 0;
}

void checkpoint_close(Checkpoint *c) {
    if (c->g.name || c->g.base) gguf_close(&c->g);
    free(c->opts_json);
    memset(c, 0, sizeof *c);
}
