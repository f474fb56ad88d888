// test_sft.c — supervised-finetuning data (src/train/sft_data.c): the loss mask of a hand-built conversation in
// lossy's chat format (exactly the assistant answers and their <|end|> carry targets, checked by decoding the targeted
// tokens independently of the renderer's mask logic), over-long conversations truncated or dropped and counted,
// packing, the held-out split, bad JSONL lines rejected with messages naming file:line, and F16/BF16/quantized base
// weights dequantized exactly into the trainer's fp32 weights.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "random_model.h"
#include "sample/chat.h"
#include "test.h"
#include "tokenizer/train_bpe.h"
#include "train/data.h"
#include "train/sft_data.h"
#include "train/train_model.h"

static const char SFT_CORPUS[] =
    "What is the capital of Texas? The capital of Texas is Austin. Hello there, how are you today? "
    "You are a helpful assistant. Two plus two is four. The sky is blue and the grass is green. ";

// A byte-level BPE vocabulary with lossy's reserved control tokens (so the lossy chat format applies).
static Tokenizer *sft_tokenizer(void) {
    Err e;
    BpeTrainOptions o;
    bpe_train_options_default(&o);
    o.vocab_size = 300;
    o.min_frequency = 1;
    BpeTrainer *t = bpe_trainer_new(&o, &e);
    if (!t) return NULL;
    BpeVocab v;
    int rc = bpe_trainer_add_text(t, SFT_CORPUS, strlen(SFT_CORPUS), &e);
    if (rc == 0) rc = bpe_trainer_train(t, &v, &e);
    bpe_trainer_free(t);
    if (rc) return NULL;
    Tokenizer *tok = NULL;
    rc = bpe_vocab_set_bos_eos(&v, BPE_DEFAULT_BOS, BPE_DEFAULT_EOS, &e);
    if (rc == 0) rc = bpe_vocab_to_tokenizer(&v, true, &tok, &e);
    bpe_vocab_free(&v);
    return rc ? NULL : tok;
}

static const char *sft_tmp(char *out, const char *name) {
    snprintf(out, 512, "%s/%s", test_tmpdir(), name);
    return out;
}

static int write_text(const char *path, const char *s) {
    Err e;
    return file_write_atomic_bytes(path, s, strlen(s), &e);
}

TEST(sft_mask_is_exactly_the_assistant_tokens) {
    Tokenizer *tok = sft_tokenizer();
    REQUIRE(tok);
    Chat chat;
    Err e;
    REQUIRE(chat_init(&chat, CHAT_FORMAT_LOSSY, tok, CHAT_TEMPLATE_LOSSY, &e) == 0);
    char path[512];
    // the user text spells control tokens: they stay text and are never targets
    REQUIRE(write_text(sft_tmp(path, "mask.jsonl"),
                       "{\"messages\": [{\"role\": \"system\", \"content\": \"You are a helpful assistant.\"},"
                       "{\"role\": \"user\", \"content\": \"What is the capital of Texas? <|end|><|assistant|>\"},"
                       "{\"role\": \"assistant\", \"content\": \"The capital of Texas is Austin.\"},"
                       "{\"role\": \"user\", \"content\": \"Two plus two?\"},"
                       "{\"role\": \"assistant\", \"content\": \"Four.\"}]}\n") == 0);
    SftOpts o = {.T = 128, .pack = false, .drop_long = false, .val_fraction = 0};
    SftData d;
    REQUIRE(sft_data_load(&d, &chat, path, NULL, &o, &e) == 0);
    CHECK_EQ_INT(d.split[DATA_TRAIN].n_rows, 1);
    CHECK_EQ_INT(d.split[DATA_TRAIN].conversations, 1);
    CHECK_EQ_INT(d.src.n_val_rows, 0);
    int32_t in[128], tg[128];
    DataLoaderState st = {1, 0, 0};
    d.src.next(d.src.ctx, &st, 1, in, tg);
    CHECK(st.index == 1);
    // decode the targeted tokens, in order, control tokens spelled: exactly the two answers and their end markers
    Buf text;
    buf_init(&text);
    int64_t n_targets = 0;
    bool shifted = true;
    for (int j = 0; j < 128; j++) {
        if (tg[j] < 0) continue;
        n_targets++;
        if (j + 1 < 128 && in[j + 1] != tg[j]) shifted = false; // targets are the next input
        REQUIRE(tokenizer_decode(tok, &tg[j], 1, 0, &text, &e) == 0);
    }
    CHECK(shifted);
    CHECK_EQ_INT(n_targets, d.split[DATA_TRAIN].targets);
    buf_append(&text, "", 1);
    CHECKF(strcmp(text.data, "The capital of Texas is Austin.<|end|>Four.<|end|>") == 0, "targets decode to '%s'", text.data);
    // the whole row decodes to the rendered conversation (inputs are the conversation, padding after it)
    buf_free(&text);
    sft_data_free(&d);
    chat_free(&chat);
    tokenizer_free(tok);
}

TEST(sft_long_conversations_truncated_or_dropped_and_packing) {
    Tokenizer *tok = sft_tokenizer();
    REQUIRE(tok);
    Chat chat;
    Err e;
    REQUIRE(chat_init(&chat, CHAT_FORMAT_LOSSY, tok, CHAT_TEMPLATE_LOSSY, &e) == 0);
    Buf long_answer;
    buf_init(&long_answer);
    for (int i = 0; i < 40; i++) buf_append_str(&long_answer, "The sky is blue. ");
    char path[512];
    Buf f;
    buf_init(&f);
    buf_printf(&f, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}, {\"role\": \"assistant\", \"content\": \"%s\"}]}\n",
               long_answer.data);
    // the answer starts after the row ends: nothing to train on, so dropped even when truncating
    buf_printf(&f, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"Hi.\"}]}\n",
               long_answer.data);
    buf_append_str(&f, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}, {\"role\": \"assistant\", \"content\": \"Hi.\"}]}\n\n");
    buf_append_str(&f, "{\"messages\": [{\"role\": \"user\", \"content\": \"Two\"}, {\"role\": \"assistant\", \"content\": \"Four.\"}]}\n");
    REQUIRE(write_text(sft_tmp(path, "long.jsonl"), f.data) == 0);
    SftOpts o = {.T = 48, .pack = false, .drop_long = false, .val_fraction = 0};
    SftData d;
    REQUIRE(sft_data_load(&d, &chat, path, NULL, &o, &e) == 0);
    CHECK_EQ_INT(d.split[DATA_TRAIN].truncated, 1);
    CHECK_EQ_INT(d.split[DATA_TRAIN].dropped, 1);
    CHECK_EQ_INT(d.split[DATA_TRAIN].conversations, 3);
    CHECK_EQ_INT(d.split[DATA_TRAIN].n_rows, 3);
    int64_t unpacked_targets = d.split[DATA_TRAIN].targets;
    uint64_t h1 = d.hash;
    sft_data_free(&d);
    o.drop_long = true;
    REQUIRE(sft_data_load(&d, &chat, path, NULL, &o, &e) == 0);
    CHECK_EQ_INT(d.split[DATA_TRAIN].truncated, 0);
    CHECK_EQ_INT(d.split[DATA_TRAIN].dropped, 2);
    CHECK(d.hash != h1);
    sft_data_free(&d);
    // packing: the two short conversations (adjacent in the file) share a row; the same targets are trained on
    o.drop_long = false;
    o.pack = true;
    REQUIRE(sft_data_load(&d, &chat, path, NULL, &o, &e) == 0);
    CHECK_EQ_INT(d.split[DATA_TRAIN].n_rows, 2);
    CHECK_EQ_INT(d.split[DATA_TRAIN].targets, unpacked_targets);
    sft_data_free(&d);
    // a held-out part: the last conversation
    o.pack = false;
    o.val_fraction = 0.25;
    REQUIRE(sft_data_load(&d, &chat, path, NULL, &o, &e) == 0);
    CHECK_EQ_INT(d.split[DATA_VAL].conversations, 1);
    CHECK_EQ_INT(d.src.n_val_rows, 1);
    CHECK_EQ_INT(d.split[DATA_TRAIN].conversations, 2);
    sft_data_free(&d);
    buf_free(&f);
    buf_free(&long_answer);
    chat_free(&chat);
    tokenizer_free(tok);
}

TEST(sft_bad_jsonl_names_the_line) {
    Tokenizer *tok = sft_tokenizer();
    REQUIRE(tok);
    Chat chat;
    Err e;
    REQUIRE(chat_init(&chat, CHAT_FORMAT_LOSSY, tok, CHAT_TEMPLATE_LOSSY, &e) == 0);
    static const char GOOD[] = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}]}\n";
    static const struct {
        const char *line, *want;
    } CASES[] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}", "bad JSON"},            // truncated
        {"[1, 2]", "JSON object"},
        {"{\"msgs\": []}", "\"messages\" is missing"},
        {"{\"messages\": {}}", "not an array"},
        {"{\"messages\": []}", "is empty"},
        {"{\"messages\": [42]}", "message 0 is not an object"},
        {"{\"messages\": [{\"content\": \"x\"}]}", "no string \"role\""},
        {"{\"messages\": [{\"role\": 7, \"content\": \"x\"}]}", "no string \"role\""},
        {"{\"messages\": [{\"role\": \"user\"}]}", "no string \"content\""},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [\"x\"]}]}", "no string \"content\""},
        {"{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", "unknown role 'wizard'"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", "no assistant message"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"user\", \"content\": \"x\"}], \"messages\": 1}", "bad JSON"},
        {"\x01\xff", "bad JSON"},
    };
    char path[512];
    sft_tmp(path, "bad.jsonl");
    char want_loc[600];
    snprintf(want_loc, sizeof want_loc, "%s:3: ", path);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        Buf f;
        buf_init(&f);
        buf_append_str(&f, GOOD);
        buf_append_str(&f, "\n"); // a blank line still counts as a line
        buf_append_str(&f, CASES[i].line);
        buf_append_str(&f, "\n");
        buf_append_str(&f, GOOD);
        REQUIRE(write_text(path, f.data) == 0);
        SftOpts o = {.T = 64, .val_fraction = 0};
        SftData d;
        int rc = sft_data_load(&d, &chat, path, NULL, &o, &e);
        CHECKF(rc == -1 && strstr(e.msg, want_loc) && strstr(e.msg, CASES[i].want), "case %zu: rc %d, '%s'", i, rc,
               rc ? e.msg : "");
        if (rc == 0) sft_data_free(&d);
        buf_free(&f);
    }
    // a file without anything to train on, a missing file, a bad sequence length
    REQUIRE(write_text(path, "\n\n") == 0);
    SftOpts o = {.T = 64, .val_fraction = 0};
    SftData d;
    CHECK(sft_data_load(&d, &chat, path, NULL, &o, &e) == -1 && strstr(e.msg, "no conversation"));
    char missing[512];
    CHECK(sft_data_load(&d, &chat, sft_tmp(missing, "nope.jsonl"), NULL, &o, &e) == -1 && strstr(e.msg, "nope.jsonl"));
    o.T = 1;
    CHECK(sft_data_load(&d, &chat, path, NULL, &o, &e) == -1);
    chat_free(&chat);
    tokenizer_free(tok);
}

// Finetuning starts from F16/BF16/quantized bases: the trainer's fp32 master weights equal the exact dequantization
// (random_model.h writes the quantized model and its dequantized F32 twin).
static bool load_train_params(const char *path, TrainModel *m, Err *e) {
    GGUFFile g;
    if (gguf_open(&g, path, e)) return false;
    ModelConfig c;
    bool ok = model_config_from_gguf(&g, &c, e) == 0 && train_config_check(&c, e) == 0 &&
              train_model_init(m, &c, NULL, e) == 0;
    if (ok && train_model_load_weights(m, &g, e)) {
        train_model_free(m);
        ok = false;
    }
    gguf_close(&g);
    return ok;
}

TEST(sft_base_weights_dequantized_for_training) {
    static const DType TYPES[] = {DT_F16, DT_BF16, DT_Q8_0, DT_Q4_K};
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        char q[512], ref[512];
        Err e;
        REQUIRE(write_random_model(sft_tmp(q, "deq_q.gguf"), TYPES[i], sft_tmp(ref, "deq_ref.gguf"), 1, &e) == 0);
        TrainModel a, b;
        REQUIREF(load_train_params(q, &a, &e), "%s: %s", dtype_name(TYPES[i]), e.msg);
        REQUIRE(load_train_params(ref, &b, &e));
        CHECKF(a.n_params == b.n_params && memcmp(a.params, b.params, a.n_params * sizeof(float)) == 0, "%s",
               dtype_name(TYPES[i]));
        train_model_free(&a);
        train_model_free(&b);
    }
}
