// cli_chat.c — choosing a model's chat format, and the setup from model file to ChatSession, for `lossy chat` and
// `lossy eval sft` (see cli_chat.h).
#include "cli/cli_chat.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli_device.h"

static bool has_token(const Tokenizer *tok, const char *s) { return tokenizer_find(tok, s, strlen(s)) >= 0; }

// The control token a format cannot do without, or NULL when its markers are plain text or BOS/EOS.
static const char *key_token(ChatFormat f) {
    switch (f) {
    case CHAT_FORMAT_CHATML: return "<|im_start|>";
    case CHAT_FORMAT_LLAMA3: return "<|start_header_id|>";
    case CHAT_FORMAT_LOSSY: return "<|assistant|>";
    default: return NULL;
    }
}

bool cli_chat_vocab_format(const Tokenizer *tok, ChatFormat *fmt) {
    *fmt = chat_format_from_vocab(tok);
    return key_token(*fmt) && has_token(tok, key_token(*fmt));
}

int cli_chat_choose_format(const char *name, const Model *m, const char *path, const Tokenizer *tok, ChatFormat *fmt,
                           bool *raw, char **tmpl, const char **why) {
    Err e;
    *raw = false;
    *fmt = CHAT_FORMAT_UNKNOWN;
    *tmpl = NULL;
    if (m->format == MODEL_FORMAT_GGUF ? chat_template_from_gguf(&m->gguf, tmpl, &e)
        : m->format == MODEL_FORMAT_HF ? chat_template_from_hf_dir(path, tmpl, &e) : 0)
        fprintf(stderr, "lossy: warning: chat template not read: %s\n", e.msg);
    if (name) {
        *why = "--chat-format";
        if (strcmp(name, "raw") == 0) {
            *raw = true;
            return EXIT_OK;
        }
        if (chat_format_from_name(name, fmt, &e)) return cli_errorf(EXIT_USAGE, "--chat-format", "%s, or raw", e.msg);
        const char *key = key_token(*fmt);
        if (key && !has_token(tok, key))
            fprintf(stderr, "lossy: warning: the vocabulary has no %s token: the %s markers will be ordinary text\n", key,
                    chat_format_name(*fmt));
        return EXIT_OK;
    }
    *fmt = chat_format_detect(*tmpl);
    *why = "the model's chat template";
    if (*fmt) return EXIT_OK;
    ChatFormat v;
    if (cli_chat_vocab_format(tok, &v)) {
        if (*tmpl)
            fprintf(stderr, "lossy: warning: the model's chat template is not one lossy recognises; using the "
                            "vocabulary's control tokens (%s; --chat-format to choose)\n", chat_format_name(v));
        *fmt = v;
        *why = "the vocabulary's control tokens";
        return EXIT_OK;
    }
    return cli_errorf(EXIT_USAGE, path,
                      "the model has %s and no chat control tokens in its vocabulary: it looks like a base model, "
                      "which continues text rather than answering. Use --chat-format raw to continue your text line by "
                      "line, or --chat-format NAME (chatml, llama2, llama3, mistral, lossy) to impose a chat layout",
                      *tmpl ? "a chat template lossy does not recognise" : "no chat template");
}

// Whether the running command's flag table has this flag (asking cli_flag_* for an undeclared one aborts).
static bool declares(const CliArgs *a, const char *name) {
    for (const CliFlag *f = a->cmd->flags; f->name; f++)
        if (strcmp(f->name, name) == 0) return true;
    return false;
}

int cli_chat_setup_init(ChatSetup *cs, const CliArgs *a, const char *model_path, const SamplerParams *sp, int n_threads) {
    memset(cs, 0, sizeof *cs);
    cs->why = "";
    Err e;
    if (declares(a, "device")) {
        int lrc = cli_device_load(a, &cs->model, model_path);
        if (lrc != EXIT_OK) return lrc;
    } else if (model_load(&cs->model, model_path, &e)) {
        return cli_fail(&e, model_path);
    }
    cs->model_ok = true;
    int rc = EXIT_OK;
    if (rc == EXIT_OK && tokenizer_load(model_path, &cs->tok, &e)) rc = cli_fail(&e, model_path);
    char *tmpl = NULL;
    if (rc == EXIT_OK)
        rc = cli_chat_choose_format(cli_flag_str(a, "chat-format"), &cs->model, model_path, cs->tok, &cs->fmt, &cs->raw,
                                    &tmpl, &cs->why);
    if (rc == EXIT_OK && !cs->raw) {
        if (chat_init(&cs->chat, cs->fmt, cs->tok, tmpl, &e)) rc = cli_fail(&e, model_path);
        else cs->chat_ok = true;
    }
    free(tmpl);
    if (rc == EXIT_OK) {
        cs->pool = threadpool_new(n_threads);
        if (model_state_init(&cs->state, &cs->model, cli_flag_int(a, "ctx"), cs->pool, &e)) rc = cli_fail(&e, model_path);
    }
    if (rc != EXIT_OK) {
        cli_chat_setup_free(cs);
        return rc;
    }
    sampler_init(&cs->smp, cs->model.cfg.vocab_size, sp);
    chat_session_init(&cs->session, &cs->state, cs->tok, cs->chat_ok ? &cs->chat : NULL, &cs->smp);
    cs->ready = true;
    return EXIT_OK;
}

void cli_chat_setup_free(ChatSetup *cs) {
    if (cs->ready) {
        chat_session_free(&cs->session);
        sampler_free(&cs->smp);
        model_state_free(&cs->state);
    }
    threadpool_free(cs->pool);
    if (cs->chat_ok) chat_free(&cs->chat);
    tokenizer_free(cs->tok);
    if (cs->model_ok) model_free(&cs->model);
    memset(cs, 0, sizeof *cs);
}
