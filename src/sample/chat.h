// chat.h — chat formats: turn a conversation (OpenAI `messages`) into the token ids a chat model was trained on.
//
// Supported formats, each rendering exactly what its reference Jinja template produces (the strings are spelled out
// in chat.c and checked by tests/unit/test_chat.c):
//   chatml   <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n           (Qwen, many others)
//   llama2   <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ...   (Llama-2-chat)
//   llama3   <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> ...
//   mistral  <s>[INST] user [/INST]answer</s>[INST] ...                                  (Mistral-7B-Instruct)
//   lossy    <|system|>\nsys<|end|>\n<|user|>\nuser<|end|>\n<|assistant|>\n             (lossy's own models; the
//            same layout as Phi-3, so llama.cpp recognises lossy's stored template too)
// The format is chosen by recognising distinctive substrings of the template stored with the model (GGUF
// `tokenizer.chat_template`, Hugging Face `tokenizer_config.json`); no template code is ever executed. Without a
// template the vocabulary's control tokens decide, and chatml is the fallback.
//
// Injection safety: template control tokens (<|im_start|>, <s>, <|eot_id|>, ...) are added as ids, and every piece of
// message text is encoded with TOKENIZE_ORDINARY, so text that spells a control token stays text. Consecutive text
// pieces between two control tokens (template text and message text) are encoded together, as the reference
// tokenizes the rendered string, so ids match the reference for ordinary text. A control spelling the vocabulary
// lacks is rendered as ordinary text (e.g. chatml on a small base model).
#ifndef LOSSY_CHAT_H
#define LOSSY_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/util.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

typedef enum ChatFormat {
    CHAT_FORMAT_UNKNOWN = 0,
    CHAT_FORMAT_CHATML,
    CHAT_FORMAT_LLAMA2,
    CHAT_FORMAT_LLAMA3,
    CHAT_FORMAT_MISTRAL,
    CHAT_FORMAT_LOSSY,
} ChatFormat;

typedef enum ChatRole { CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT, CHAT_ROLE_TOOL } ChatRole;

typedef struct ChatMessage {
    ChatRole role;
    const char *content; // UTF-8, need not be NUL-terminated
    size_t len;
} ChatMessage;

// The Jinja template lossy stores in the GGUF files it trains (tokenizer.chat_template), matching CHAT_FORMAT_LOSSY.
extern const char CHAT_TEMPLATE_LOSSY[];

const char *chat_format_name(ChatFormat f);
// "chatml" (also "qwen"), "llama2", "llama3", "mistral", "lossy" (also "phi3"); -1 with e naming the choices.
int chat_format_from_name(const char *name, ChatFormat *out, Err *e);
// Recognise a template's text; CHAT_FORMAT_UNKNOWN when nothing distinctive is found.
ChatFormat chat_format_detect(const char *tmpl);
// Without a template: from the vocabulary's control tokens; chatml when nothing fits.
ChatFormat chat_format_from_vocab(const Tokenizer *tok);
const char *chat_role_name(ChatRole r);
int chat_role_from_name(const char *name, ChatRole *out); // "developer" is taken as system; -1 when unknown

// The chat template stored with a model: GGUF key tokenizer.chat_template, or a Hugging Face directory's
// tokenizer_config.json "chat_template" (a string, or a list of {name, template} where "default" wins).
// *out is a malloc'ed string, or NULL when the model has none (not an error).
int chat_template_from_gguf(const GGUFFile *g, char **out, Err *e);
int chat_template_from_hf_dir(const char *dir, char **out, Err *e);
// Either, from a model path (a GGUF file or a Hugging Face directory; other paths have no template).
int chat_template_from_path(const char *path, char **out, Err *e);

typedef struct Chat {
    ChatFormat fmt;
    const Tokenizer *tok;  // borrowed
    char *default_system;  // chatml templates that insert a system message when none is given (Qwen2), or NULL
    int32_t end_ids[2];    // end-of-turn ids the model emits after an answer (stop tokens), -1 when unused
} Chat;

// tmpl (may be NULL) is only used for details of the format (a default system message). fmt must be known.
int chat_init(Chat *c, ChatFormat fmt, const Tokenizer *tok, const char *tmpl, Err *e);
void chat_free(Chat *c);

// Render a conversation. ids receives the token ids (appended). mask (may be NULL) receives a malloc'ed array of
// ids->n bytes, 1 where the token belongs to an assistant answer or its end-of-turn marker (what SFT trains on),
// else 0. text (may be NULL) receives the rendered string, control tokens written with their spellings, as the
// reference template would print it. add_generation_prompt appends the opening of an assistant turn.
// Errors: a role the format cannot express (tool messages in llama2/mistral), no messages.
int chat_render(const Chat *c, const ChatMessage *msgs, size_t n, bool add_generation_prompt, TokenIds *ids,
                uint8_t **mask, Buf *text, Err *e);

// End-of-turn ids to stop generation at (besides the tokenizer's own end-of-generation ids): count written to out.
size_t chat_stop_ids(const Chat *c, int32_t out[2]);

#endif
