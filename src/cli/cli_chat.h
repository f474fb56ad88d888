// cli_chat.h — what `lossy chat` and `lossy eval sft` share before their first turn: the rule that picks a model's
// chat format, and the setup built on it (model, tokenizer, format, threads, KV cache, sampler, ChatSession), so a
// test set is scored with exactly the rendering and the session a user chats with.
//
// Format rule: --chat-format NAME wins ("raw": no format, plain text continuation); else the template stored with the
// model (GGUF tokenizer.chat_template, Hugging Face tokenizer_config.json); else the vocabulary's control tokens. A
// model with none of these looks like a base model: the command refuses rather than guess, and says how to go on.
#ifndef LOSSY_CLI_CHAT_H
#define LOSSY_CLI_CHAT_H

#include <stdbool.h>

#include "base/threadpool.h"
#include "cli/cli.h"
#include "model/model.h"
#include "sample/chat.h"
#include "sample/chat_session.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

// The chat format the vocabulary's control tokens imply (*fmt, ChatML when none does); false when the vocabulary
// has no such tokens (a base model: the format's markers would be ordinary text).
bool cli_chat_vocab_format(const Tokenizer *tok, ChatFormat *fmt);

// name: the --chat-format value or NULL. On EXIT_OK: *raw, or *fmt (known); *why says where the format came from.
// Otherwise prints the error and returns EXIT_USAGE. Either way *tmpl is the stored template (malloc'ed, or NULL) for
// the caller to free. Warnings (an unrecognised template, a forced format whose control tokens are missing) go to stderr.
int cli_chat_choose_format(const char *name, const Model *m, const char *path, const Tokenizer *tok, ChatFormat *fmt,
                           bool *raw, char **tmpl, const char **why);

// A model ready to chat with. session borrows state, tok, chat and smp from this struct: set it up where it stays,
// never copy it.
typedef struct ChatSetup {
    Model model;
    Tokenizer *tok;
    bool raw;          // --chat-format raw: plain text continuation, no chat layout (session in raw mode)
    ChatFormat fmt;    // when !raw
    const char *why;   // where the format came from, for the command's banner (static text)
    Chat chat;         // when !raw
    ThreadPool *pool;
    ModelState state;  // n_ctx from --ctx
    Sampler smp;
    ChatSession session;
    bool model_ok, chat_ok, ready; // how far setup got, for cli_chat_setup_free
} ChatSetup;

// In order: load the model at model_path, move it to --device where the command's flag table declares that flag,
// load the model's tokenizer, choose the format (--chat-format, see above) and build it unless raw, start a pool of
// n_threads (0: all cores), a ModelState of --ctx positions, a sampler with *sp, and the session. Returns EXIT_OK, or
// the exit code after printing why (the path as context; a bad --chat-format or --device is a usage error) with
// everything already released. cli_chat_setup_free is safe either way.
int cli_chat_setup_init(ChatSetup *cs, const CliArgs *a, const char *model_path, const SamplerParams *sp, int n_threads);
void cli_chat_setup_free(ChatSetup *cs);

#endif
