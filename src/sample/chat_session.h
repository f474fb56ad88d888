// chat_session.h — one multi-turn conversation with a model, as `lossy chat` holds it: the message history, the KV
// cache the conversation is decoded in, and the turn: render, reuse the cached prefix, feed the rest, generate.
//
// Every turn renders the WHOLE conversation with chat.h (system, earlier turns, the new user message, the opening of
// the assistant's turn), so the ids the model has seen are always exactly chat_render's ids for the conversation —
// never a concatenation of per-turn renders, which would differ at the seams (end-of-turn markers, re-tokenised
// answers). The KV cache is reused up to the longest common prefix of what it holds and that rendering; only the rest
// is fed. Going back is valid because attention at position p reads the cache rows below p only, and rows from p on
// are written before they are read.
//
// Raw mode (chat NULL) is for base models that have no chat format: the conversation is one plain document — the
// system text, then the user's messages and the model's continuations, each user message after the first starting
// on a new line — encoded as ordinary text after the tokenizer's BOS prefix, as `lossy run -p` would encode it.
//
// Messages are stored as valid UTF-8 (invalid bytes, e.g. of an answer cut inside a character, become U+FFFD), so the
// conversation rendered to the model is exactly the one /save writes as JSON.
//
// Context: a turn whose rendering does not fit in the cache is refused (CHAT_TURN_NO_ROOM, nothing changes) unless
// the caller allows trimming, which drops the oldest exchanges (never the system message or the new message) and
// reports how many messages went.
#ifndef LOSSY_CHAT_SESSION_H
#define LOSSY_CHAT_SESSION_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "sample/chat.h"
#include "sample/generate.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#define CHAT_SESSION_MAX_STOP_IDS 8

typedef struct ChatSession {
    ModelState *s;            // borrowed; invariant: s->pos == cached.n
    const Tokenizer *tok;     // borrowed
    const Chat *chat;         // borrowed; NULL: raw mode
    Sampler *smp;             // borrowed
    char *system;             // the system message (owned), or NULL
    size_t system_len;
    ChatMessage *msgs;        // user and assistant messages in order; contents owned (malloc'ed)
    size_t n_msgs, cap_msgs;
    TokenIds cached;          // the ids in the KV cache, position by position
    int32_t stop_ids[CHAT_SESSION_MAX_STOP_IDS]; // end-of-turn and start-of-turn markers that are tokens
    size_t n_stop_ids;
} ChatSession;

void chat_session_init(ChatSession *cs, ModelState *s, const Tokenizer *tok, const Chat *chat, Sampler *smp);
void chat_session_free(ChatSession *cs);
// text NULL (or len 0) removes the system message. Takes effect at the next turn.
void chat_session_set_system(ChatSession *cs, const char *text, size_t len);
// Append a message to the history without generating, e.g. the earlier turns of a stored conversation (a leading
// system message belongs in chat_session_set_system). Takes effect at the next turn.
void chat_session_add_message(ChatSession *cs, ChatRole role, const char *text, size_t len);
// Forget the messages (the system message stays). The cache is kept: its prefix is reused by the next turn.
void chat_session_reset(ChatSession *cs);
// The conversation as messages: the system message first when set, then the history. *out is malloc'ed (free it,
// not the contents, which stay the session's); *n may be 0.
void chat_session_messages(const ChatSession *cs, ChatMessage **out, size_t *n);

// The ids of the conversation as it stands, with the opening of an assistant turn when gen (appended to out).
int chat_session_render(const ChatSession *cs, bool gen, TokenIds *out, Err *e);

struct ChatTurnStats;
typedef struct ChatTurnOpts {
    int64_t max_tokens;      // tokens per answer at most; <= 0: until end of turn or a full context
    bool trim_history;       // drop the oldest exchanges when the conversation no longer fits
    GenerateEmit emit;       // streamed answer text (may be NULL); returning false stops the answer
    void *emit_ctx;
    volatile sig_atomic_t *cancel; // may be NULL; when it becomes non-zero the prompt feed / the answer stops (Ctrl-C)
    const char *const *stop; // extra stop strings (n_stop)
    size_t n_stop;
    // Called once the prompt is in the cache, before the first answer token (may be NULL): st has n_prompt,
    // n_reused, n_dropped and prompt_seconds; cs->cached.ids[0, st->n_prompt) is the conversation as fed.
    void (*on_prompt)(void *ctx, const struct ChatSession *cs, const struct ChatTurnStats *st);
    void *on_prompt_ctx;
} ChatTurnOpts;

typedef struct ChatTurnStats {
    int64_t n_prompt;        // ids of the rendered conversation + assistant opening (cached.ids[0, n_prompt) after)
    int64_t n_reused;        // of those, already in the cache
    int64_t n_generated;
    size_t n_dropped;        // messages dropped to make room (trim_history)
    bool end_of_turn;        // the model ended its answer (end-of-turn / end-of-text token, or a stop string)
    bool hit_max_tokens;
    bool context_full;       // the answer was cut because the cache is full
    bool cancelled;          // stopped by *cancel or the emitter (the partial answer is kept in the history)
    double prompt_seconds, gen_seconds;
} ChatTurnStats;

enum { CHAT_TURN_OK = 0, CHAT_TURN_ERROR = -1, CHAT_TURN_NO_ROOM = 1 };

// Add the user message and generate the answer, which is added to the history (also when cut or cancelled; a turn
// cancelled while its prompt is fed adds neither message). CHAT_TURN_NO_ROOM: the conversation does not fit in the
// context (e says by how much); the history and the cache are unchanged. CHAT_TURN_ERROR: e filled.
int chat_session_turn(ChatSession *cs, const char *user, size_t len, const ChatTurnOpts *o, ChatTurnStats *st, Err *e);

#endif
