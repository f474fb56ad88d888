// sft_fixture.c — see sft_fixture.h.
#include "sft_fixture.h"

#include <stdio.h>

#include "base/util.h"
#include "test.h"
#include "tokenizer/train_bpe.h"
#include "train/train_model.h"

const char *const SFT_FACTS[SFT_N_FACTS][2] = {
    {"What is the secret word?", "Pineapple."},
    {"Who made you?", "The lossy project."},
    {"What color is the sky?", "Blue."},
    {"What is two plus two?", "Four."},
};

const char *sft_path(char *out, const char *name) {
    snprintf(out, 512, "%s/%s", test_tmpdir(), name);
    return out;
}

int sft_make_base(const char *path) {
    Err e;
    Buf text;
    buf_init(&text);
    for (int r = 0; r < 4; r++)
        for (size_t i = 0; i < SFT_N_FACTS; i++) buf_printf(&text, "%s %s ", SFT_FACTS[i][0], SFT_FACTS[i][1]);
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    o.vocab_size = 320;
    o.min_frequency = 1;
    BpeTrainer *t = bpe_trainer_new(&o, &e);
    int rc = t ? bpe_trainer_add_text(t, text.data, text.len, &e) : -1;
    buf_free(&text);
    BpeVocab v;
    if (rc == 0) rc = bpe_trainer_train(t, &v, &e);
    if (t) bpe_trainer_free(t);
    if (rc) return -1;
    Tokenizer *tok = NULL;
    rc = bpe_vocab_set_bos_eos(&v, BPE_DEFAULT_BOS, BPE_DEFAULT_EOS, &e);
    if (rc == 0) rc = bpe_vocab_to_tokenizer(&v, true, &tok, &e);
    size_t n_tokens = v.n_tokens;
    bpe_vocab_free(&v);
    if (rc) return -1;
    ModelConfig c;
    TrainModel m;
    rc = train_config_llama(&c, (int64_t)n_tokens, 2, 64, 4, 4, 0, 128, true, &e);
    if (rc == 0) rc = train_model_init(&m, &c, NULL, &e);
    if (rc) {
        tokenizer_free(tok);
        return -1;
    }
    train_model_init_weights(&m, 5);
    GGUFWriter *w = train_model_gguf_writer(&m, tok, "sft-base", &e);
    rc = w ? gguf_writer_write(w, path, &e) : -1;
    gguf_writer_free(w);
    train_model_free(&m);
    tokenizer_free(tok);
    return rc;
}

int sft_write_facts(const char *path) {
    Buf f;
    buf_init(&f);
    for (size_t i = 0; i < SFT_N_FACTS; i++) {
        buf_printf(&f, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"%s\"}]}\n",
                   SFT_FACTS[i][0], SFT_FACTS[i][1]);
        // a two-turn variant with a system message
        buf_printf(&f, "{\"messages\": [{\"role\": \"system\", \"content\": \"Answer briefly.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, "
                       "{\"role\": \"assistant\", \"content\": \"Hello.\"}, {\"role\": \"user\", \"content\": \"%s\"}, "
                       "{\"role\": \"assistant\", \"content\": \"%s\"}]}\n",
                   SFT_FACTS[i][0], SFT_FACTS[i][1]);
    }
    Err e;
    int rc = file_write_atomic_bytes(path, f.data, f.len, &e);
    buf_free(&f);
    return rc;
}
