// chat_session.c — a multi-turn conversation over one KV cache (see chat_session.h): whole-conversation rendering,
// longest-common-prefix cache reuse, trimming on request, and generation through the GenerateSeq step API.
#include "sample/chat_session.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

// Prompt tokens fed per model_forward call: between calls a cancel request is honoured, so Ctrl-C during a long
// prompt does not wait for all of it. Large enough to keep prompt processing in big token blocks.
#define FEED_CHUNK 256

// Markers of each format that end the assistant's turn or start another one: the answer stops there, whether the
// marker comes as its control token (stop id) or spelled in ordinary tokens (stop string, e.g. a forced format on a
// vocabulary without the control tokens).
static const char *const *turn_markers(ChatFormat f) {
    static const char *const chatml[] = {"<|im_end|>", "<|im_start|>", NULL};
    static const char *const llama3[] = {"<|eot_id|>", "<|eom_id|>", "<|start_header_id|>", NULL};
    static const char *const lossy[] = {"<|end|>", "<|user|>", "<|system|>", "<|assistant|>", "<|tool_result|>", NULL};
    static const char *const inst[] = {"</s>", "[INST]", NULL};
    static const char *const none[] = {NULL};
    switch (f) {
    case CHAT_FORMAT_CHATML: return chatml;
    case CHAT_FORMAT_LLAMA3: return llama3;
    case CHAT_FORMAT_LOSSY: return lossy;
    case CHAT_FORMAT_LLAMA2:
    case CHAT_FORMAT_MISTRAL: return inst;
    default: return none;
    }
}

static void add_stop_id(ChatSession *cs, int32_t id) {
    if (id < 0) return;
    for (size_t i = 0; i < cs->n_stop_ids; i++)
        if (cs->stop_ids[i] == id) return;
    if (cs->n_stop_ids < CHAT_SESSION_MAX_STOP_IDS) cs->stop_ids[cs->n_stop_ids++] = id;
}

void chat_session_init(ChatSession *cs, ModelState *s, const Tokenizer *tok, const Chat *chat, Sampler *smp) {
    memset(cs, 0, sizeof *cs);
    cs->s = s;
    cs->tok = tok;
    cs->chat = chat;
    cs->smp = smp;
    model_state_reset(s);
    if (chat) {
        int32_t end[2];
        size_t n_end = chat_stop_ids(chat, end);
        for (size_t i = 0; i < n_end; i++) add_stop_id(cs, end[i]);
        for (const char *const *m = turn_markers(chat->fmt); *m; m++) add_stop_id(cs, tokenizer_find(tok, *m, strlen(*m)));
    }
}

static void free_msgs(ChatSession *cs, size_t from) {
    for (size_t i = from; i < cs->n_msgs; i++) free((char *)cs->msgs[i].content);
    cs->n_msgs = from;
}

void chat_session_free(ChatSession *cs) {
    free_msgs(cs, 0);
    free(cs->msgs);
    free(cs->system);
    token_ids_free(&cs->cached);
    memset(cs, 0, sizeof *cs);
}

void chat_session_set_system(ChatSession *cs, const char *text, size_t len) {
    free(cs->system);
    cs->system = NULL;
    cs->system_len = 0;
    if (!text || !len) return;
    Buf b;
    buf_init(&b);
    tokenizer_utf8_lossy(text, len, &b);
    buf_append(&b, "", 1);
    cs->system = b.data;
    cs->system_len = b.len - 1;
}

void chat_session_reset(ChatSession *cs) { free_msgs(cs, 0); }

// Messages are kept as valid UTF-8 (invalid bytes become U+FFFD): what is rendered to the model is then exactly
// what /save writes and what an API client would send back, even for an answer cut inside a character.
static void push_msg(ChatSession *cs, ChatRole role, const char *text, size_t len) {
    if (cs->n_msgs == cs->cap_msgs) {
        cs->cap_msgs = cs->cap_msgs ? 2 * cs->cap_msgs : 16;
        cs->msgs = xrealloc(cs->msgs, cs->cap_msgs * sizeof *cs->msgs);
    }
    Buf b;
    buf_init(&b);
    tokenizer_utf8_lossy(text ? text : "", len, &b);
    buf_append(&b, "", 1); // NUL-terminated for callers that print it
    cs->msgs[cs->n_msgs++] = (ChatMessage){role, b.data, b.len - 1};
}

void chat_session_add_message(ChatSession *cs, ChatRole role, const char *text, size_t len) { push_msg(cs, role, text, len); }

void chat_session_messages(const ChatSession *cs, ChatMessage **out, size_t *n) {
    size_t k = 0;
    *out = xmalloc((cs->n_msgs + 1) * sizeof **out);
    if (cs->system) (*out)[k++] = (ChatMessage){CHAT_ROLE_SYSTEM, cs->system, cs->system_len};
    for (size_t i = 0; i < cs->n_msgs; i++) (*out)[k++] = cs->msgs[i];
    *n = k;
}

static int render_raw(const ChatSession *cs, TokenIds *out, Err *e) {
    const int32_t *pre, *suf;
    size_t n_pre, n_suf;
    tokenizer_get_template(cs->tok, &pre, &n_pre, &suf, &n_suf);
    for (size_t i = 0; i < n_pre; i++) token_ids_push(out, pre[i]);
    Buf doc;
    buf_init(&doc);
    if (cs->system) {
        buf_append(&doc, cs->system, cs->system_len);
        buf_append(&doc, "\n", 1);
    }
    for (size_t i = 0; i < cs->n_msgs; i++) {
        if (cs->msgs[i].role == CHAT_ROLE_USER && i > 0) buf_append(&doc, "\n", 1);
        buf_append(&doc, cs->msgs[i].content, cs->msgs[i].len);
    }
    int rc = doc.len ? tokenizer_encode(cs->tok, doc.data, doc.len, TOKENIZE_ORDINARY, out, e) : 0;
    buf_free(&doc);
    return rc;
}

int chat_session_render(const ChatSession *cs, bool gen, TokenIds *out, Err *e) {
    if (!cs->chat) return render_raw(cs, out, e);
    ChatMessage *m;
    size_t n;
    chat_session_messages(cs, &m, &n);
    int rc = chat_render(cs->chat, m, n, gen, out, NULL, NULL, e);
    free(m);
    return rc;
}

// Drop the oldest exchange: the first user message and everything before the next user message. The last message
// (the one being answered) is never dropped. Returns the number of messages removed (0: nothing left to drop).
static size_t drop_oldest(ChatSession *cs) {
    if (cs->n_msgs < 2) return 0;
    size_t end = 1;
    while (end < cs->n_msgs - 1 && cs->msgs[end].role != CHAT_ROLE_USER) end++;
    for (size_t i = 0; i < end; i++) free((char *)cs->msgs[i].content);
    memmove(cs->msgs, cs->msgs + end, (cs->n_msgs - end) * sizeof *cs->msgs);
    cs->n_msgs -= end;
    return end;
}

typedef struct EmitCtx {
    const ChatTurnOpts *o;
    bool cancelled;
} EmitCtx;

static bool emit_turn(void *ctx, const char *text, size_t len) {
    EmitCtx *c = ctx;
    if (c->o->cancel && *c->o->cancel) {
        c->cancelled = true;
        return false;
    }
    if (c->o->emit && !c->o->emit(c->o->emit_ctx, text, len)) {
        c->cancelled = true;
        return false;
    }
    return true;
}

int chat_session_turn(ChatSession *cs, const char *user, size_t len, const ChatTurnOpts *o, ChatTurnStats *st, Err *e) {
    memset(st, 0, sizeof *st);
    ModelState *s = cs->s;
    const int64_t n_ctx = s->n_ctx;
    const int64_t max_tokens = o->max_tokens > 0 ? o->max_tokens : INT64_MAX;
    push_msg(cs, CHAT_ROLE_USER, user, len);

    // Render. Without trimming the conversation must leave room for one answer token; with it, the oldest exchanges
    // go until an answer of a useful length fits too (a quarter of the context at most), as long as the system
    // message and the new message alone fit — checked first, so a refused turn leaves the history as it was.
    TokenIds r = {0};
    if (chat_session_render(cs, true, &r, e)) {
        free_msgs(cs, cs->n_msgs - 1);
        token_ids_free(&r);
        return CHAT_TURN_ERROR;
    }
    const int64_t room = o->trim_history ? (max_tokens < n_ctx / 4 ? max_tokens : n_ctx / 4) : 1;
    if ((int64_t)r.n + 1 > n_ctx || (o->trim_history && (int64_t)r.n + room > n_ctx && cs->n_msgs > 1)) {
        size_t full_n = r.n;
        if (o->trim_history && cs->n_msgs > 1) { // how much the system message + the new message alone take
            ChatMessage *keep = cs->msgs;
            size_t keep_n = cs->n_msgs;
            cs->msgs = keep + keep_n - 1;
            cs->n_msgs = 1;
            r.n = 0;
            int rc = chat_session_render(cs, true, &r, e);
            cs->msgs = keep;
            cs->n_msgs = keep_n;
            if (rc) {
                free_msgs(cs, cs->n_msgs - 1);
                token_ids_free(&r);
                return CHAT_TURN_ERROR;
            }
        }
        if ((int64_t)r.n + 1 > n_ctx) {
            if (cs->n_msgs > 1 && !o->trim_history)
                ERR(e, "the context is full: the conversation with the new message needs %zu tokens and the context "
                       "holds %lld",
                    full_n, (long long)n_ctx);
            else
                ERR(e, "the message needs %zu tokens with %s and the context holds %lld", r.n,
                    cs->system ? "the system message and the chat markers" : "its chat markers", (long long)n_ctx);
            free_msgs(cs, cs->n_msgs - 1);
            token_ids_free(&r);
            return CHAT_TURN_NO_ROOM;
        }
        for (;;) { // trimming: the new message alone fits, so this ends
            r.n = 0;
            if (chat_session_render(cs, true, &r, e)) {
                free_msgs(cs, cs->n_msgs - 1);
                token_ids_free(&r);
                return CHAT_TURN_ERROR;
            }
            if ((int64_t)r.n + room <= n_ctx || cs->n_msgs == 1) break;
            st->n_dropped += drop_oldest(cs);
        }
    }
    st->n_prompt = (int64_t)r.n;

    // Reuse the cached prefix; at least one id is fed, for the logits of the answer's first token
    size_t lcp = 0;
    while (lcp < cs->cached.n && lcp < r.n && cs->cached.ids[lcp] == r.ids[lcp]) lcp++;
    if (lcp == r.n) lcp--;
    cs->cached.n = lcp;
    s->pos = (int64_t)lcp;
    st->n_reused = (int64_t)lcp;
    double t0 = time_now();
    for (size_t i = lcp; i < r.n;) {
        if (o->cancel && *o->cancel) {
            st->cancelled = true;
            free_msgs(cs, cs->n_msgs - 1);
            token_ids_free(&r);
            st->prompt_seconds = time_now() - t0;
            return CHAT_TURN_OK;
        }
        size_t n = r.n - i < FEED_CHUNK ? r.n - i : FEED_CHUNK;
        if (model_forward(s, r.ids + i, (int64_t)n, e)) {
            // the cache holds an unknown part of the chunk: forget it
            model_state_reset(s);
            cs->cached.n = 0;
            free_msgs(cs, cs->n_msgs - 1);
            token_ids_free(&r);
            return CHAT_TURN_ERROR;
        }
        for (size_t k = 0; k < n; k++) token_ids_push(&cs->cached, r.ids[i + k]);
        i += n;
    }
    st->prompt_seconds = time_now() - t0;
    if (o->on_prompt) o->on_prompt(o->on_prompt_ctx, cs, st);

    // Generate. The whole conversation is the sequence's history (penalty window, decode context); it is already in
    // the cache, so the position check of generate_seq_init is made against the start.
    EmitCtx ec = {o, false};
    const char *stops_buf[16];
    const char **stops = stops_buf;
    size_t n_stops = 0, cap = sizeof stops_buf / sizeof *stops_buf;
    const char *const *markers = cs->chat ? turn_markers(cs->chat->fmt) : NULL;
    size_t n_markers = 0;
    while (markers && markers[n_markers]) n_markers++;
    if (n_markers + o->n_stop > cap) stops = xmalloc((n_markers + o->n_stop) * sizeof *stops);
    for (size_t i = 0; i < n_markers; i++) stops[n_stops++] = markers[i];
    for (size_t i = 0; i < o->n_stop; i++) stops[n_stops++] = o->stop[i];
    GenerateOpts go = {.max_tokens = max_tokens, .emit = emit_turn, .emit_ctx = &ec, .stop = stops, .n_stop = n_stops,
                       .stop_ids = cs->stop_ids, .n_stop_ids = cs->n_stop_ids};
    GenerateSeq g;
    int rc = CHAT_TURN_OK;
    if (generate_seq_init(&g, &s->m->cfg, cs->tok, cs->smp, r.ids, (int64_t)r.n, 0, n_ctx, &go, e)) {
        if (stops != stops_buf) free(stops);
        free_msgs(cs, cs->n_msgs - 1);
        token_ids_free(&r);
        return CHAT_TURN_ERROR;
    }
    double t1 = time_now();
    for (;;) {
        if (o->cancel && *o->cancel) {
            ec.cancelled = true;
            break;
        }
        int32_t id;
        int k = generate_seq_next(&g, s->logits, s->pos, n_ctx, &id, e);
        if (k < 0) rc = CHAT_TURN_ERROR;
        if (k <= 0) break;
        if (model_forward(s, &id, 1, e)) {
            model_state_reset(s);
            cs->cached.n = 0;
            rc = CHAT_TURN_ERROR;
            break;
        }
        token_ids_push(&cs->cached, id);
    }
    if (rc == CHAT_TURN_OK && !ec.cancelled) generate_seq_finish(&g);
    st->gen_seconds = time_now() - t1;
    st->n_generated = g.st.n_generated;
    st->cancelled = ec.cancelled;
    st->end_of_turn = g.st.stopped_by_eos || g.st.stopped_by_string;
    st->hit_max_tokens = !st->end_of_turn && !st->cancelled && g.st.n_generated >= max_tokens;
    st->context_full = !st->end_of_turn && !st->cancelled && !st->hit_max_tokens && s->pos >= n_ctx;
    if (rc == CHAT_TURN_OK) {
        // the answer is the text that was shown (cut at a stop string, or where the user stopped it)
        push_msg(cs, CHAT_ROLE_ASSISTANT, g.text.data, g.shown);
    } else {
        free_msgs(cs, cs->n_msgs - 1);
    }
    generate_seq_free(&g);
    if (stops != stops_buf) free(stops);
    token_ids_free(&r);
    return rc;
}
