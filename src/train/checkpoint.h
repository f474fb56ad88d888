// checkpoint.h — training checkpoints: everything a run needs to continue exactly where it stopped.
//
// A checkpoint is a GGUF file: the model exactly as the final export writes it (llama.* keys, tokenizer, F32
// weights under their GGUF names — `lossy run` loads a checkpoint too), plus
//   tensors  lossy.adam.m, lossy.adam.v   AdamW moments, flat (n_params) in the trainer's parameter order
//   keys     lossy.checkpoint.version, lossy.train.step, .tokens_seen, .elapsed_s, .loader (u64[3]: seed, epoch,
//            index), .manifest_hash, .opts (the training options as JSON), .train_loss, .val_loss
// Writing goes through gguf_writer_write (temp file, fsync, rename) and then fsyncs the directory, so a crash or a
// full disk leaves the previous checkpoint intact: the file at the path is always a complete checkpoint.
#ifndef LOSSY_TRAIN_CHECKPOINT_H
#define LOSSY_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "base/err.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/train_model.h"

#define CHECKPOINT_VERSION 1

typedef struct CheckpointMeta {
    int64_t step;            // optimizer updates done
    int64_t tokens_seen;     // training tokens consumed
    double elapsed;          // seconds of training so far (time budgets continue across resumes)
    DataLoaderState loader;  // the training loader's position
    uint64_t manifest_hash;  // the dataset it was trained on
    const char *opts_json;   // training options (borrowed when saving; owned by Checkpoint when loaded)
    double train_loss, val_loss; // last values (NAN when none)
} CheckpointMeta;

int checkpoint_save(const char *path, const TrainModel *m, const AdamW *opt, const Tokenizer *tok,
                    const CheckpointMeta *meta, Err *e);

typedef struct Checkpoint {
    GGUFFile g;
    ModelConfig cfg;
    CheckpointMeta meta;
    char *opts_json; // owned copy (meta.opts_json points here)
} Checkpoint;

// Open and validate a checkpoint (keys present and typed, model config trainable). The tensors are read later.
int checkpoint_open(Checkpoint *c, const char *path, Err *e);
// Copy weights and optimizer state into m and opt (m initialised from c->cfg, opt sized for m).
int checkpoint_restore(const Checkpoint *c, TrainModel *m, AdamW *opt, Err *e);
void checkpoint_close(Checkpoint *c);

#endif
