// cli_chat.h — how a command picks a model's chat format: the one rule `lossy chat` and `lossy eval sft` share, so a
// test set is scored with exactly the rendering a user chats with.
//
// --chat-format NAME wins ("raw": no format, plain text continuation); else the template stored with the model (GGUF
// tokenizer.chat_template, Hugging Face tokenizer_config.json); else the vocabulary's control tokens. A model with
// none of these looks like a base model: the command refuses rather than guess, and says how to go on.
#ifndef LOSSY_CLI_CHAT_H
#define LOSSY_CLI_CHAT_H

#include <stdbool.h>

#include "cli/cli.h"
#include "model/model.h"
#include "sample/chat.h"
#include "tokenizer/tokenizer.h"

// name: the --chat-format value or NULL. On EXIT_OK: *raw, or *fmt (known); *why says where the format came from.
// Otherwise prints the error and returns EXIT_USAGE. Either way *tmpl is the stored template (malloc'ed, or NULL) for
// the caller to free. Warnings (an unrecognised template, a forced format whose control tokens are missing) go to stderr.
int cli_chat_choose_format(const char *name, const Model *m, const char *path, const Tokenizer *tok, ChatFormat *fmt,
                           bool *raw, char **tmpl, const char **why);

#endif
