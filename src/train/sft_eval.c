// sft_eval.c — exact-match scoring of a chat model on held-out conversations (see sft_eval.h).
#include "train/sft_eval.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

// ---------------------------------------------------------------------------------------------------------------
// loading

static void item_free(SftEvalItem *it) {
    sft_conversation_free(&it->conv);
    free(it->category);
}

void sft_eval_set_free(SftEvalSet *s) {
    for (size_t i = 0; i < s->n; i++) item_free(&s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

// The row's category (see sft_eval.h); *out NULL when it has none.
static int item_category(const json_t *root, char **out, Err *e) {
    *out = NULL;
    const json_t *c = json_object_get(root, "category");
    if (c) {
        if (!json_is_string(c)) return ERR(e, "\"category\" must be a string");
        *out = xstrndup(json_string_value(c), json_string_length(c));
        return 0;
    }
    const json_t *meta = json_object_get(root, "meta");
    if (!json_is_object(meta)) return 0;
    const json_t *kind = json_object_get(meta, "kind"), *turns = json_object_get(meta, "turns");
    if (json_is_string(kind) && strcmp(json_string_value(kind), "multi") == 0) {
        *out = xstrdup("multi_turn");
        return 0;
    }
    size_t n = json_is_array(turns) ? json_array_size(turns) : 0;
    const json_t *type = n ? json_object_get(json_array_get(turns, n - 1), "type") : NULL;
    if (json_is_string(type)) *out = xstrndup(json_string_value(type), json_string_length(type));
    return 0;
}

static int load_item(const char *line, size_t len, SftEvalItem *it, Err *e) {
    memset(it, 0, sizeof *it);
    if (sft_parse_line(line, len, &it->conv, e)) return -1;
    size_t ref = it->conv.n;
    while (ref > 0 && it->conv.msgs[ref - 1].role != CHAT_ROLE_ASSISTANT) ref--;
    it->ref = ref - 1; // sft_parse_line guarantees an assistant message
    if (it->ref == 0 || it->conv.msgs[it->ref - 1].role != CHAT_ROLE_USER) {
        item_free(it);
        return ERR(e, "the last assistant message (the reference answer) must follow a user message");
    }
    if (item_category(it->conv.root, &it->category, e)) {
        item_free(it);
        return -1;
    }
    return 0;
}

int sft_eval_set_load(SftEvalSet *s, const char *path, Err *e) {
    memset(s, 0, sizeof *s);
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, e)) return -1;
    const char *p = text, *end = text + len;
    int64_t lineno = 0;
    size_t cap = 0;
    int rc = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        lineno++;
        bool blank = true;
        for (size_t i = 0; i < n && blank; i++) blank = p[i] == ' ' || p[i] == '\t' || p[i] == '\r';
        if (!blank) {
            if (s->n == cap) {
                cap = cap ? 2 * cap : 64;
                s->items = xrealloc(s->items, cap * sizeof *s->items); // cap <= 2 x the lines of a file in memory
            }
            if (load_item(p, n, &s->items[s->n], e)) {
                rc = err_prefix(e, "%s:%lld: ", path, (long long)lineno);
                break;
            }
            s->items[s->n++].line = lineno;
        }
        p = nl ? nl + 1 : end;
    }
    free(text);
    if (rc == 0 && s->n == 0) rc = ERR(e, "%s: no conversations (one JSON {\"messages\": [...]} per line)", path);
    if (rc) sft_eval_set_free(s);
    return rc;
}

// ---------------------------------------------------------------------------------------------------------------
// matching

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static void trim(const char **s, size_t *n) {
    while (*n && is_space(**s)) ++*s, --*n;
    while (*n && is_space((*s)[*n - 1])) --*n;
}

void sft_eval_normalize(const char *s, size_t n, Buf *out) {
    trim(&s, &n);
    if (n && s[n - 1] == '.') {
        n--;
        trim(&s, &n);
    }
    utf8proc_uint8_t *folded = NULL;
    utf8proc_ssize_t r = n ? utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &folded,
                                          (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD))
                           : 0;
    if (r > 0) {
        buf_append(out, folded, (size_t)r);
    } else { // not valid UTF-8 (or empty): fold ASCII only
        for (size_t i = 0; i < n; i++) {
            char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
            buf_append(out, &c, 1);
        }
    }
    free(folded);
    buf_append(out, "", 1);
    out->len--;
}

bool sft_eval_match(const char *answer, size_t answer_len, const char *reference, size_t reference_len) {
    Buf a, b;
    buf_init(&a);
    buf_init(&b);
    sft_eval_normalize(answer, answer_len, &a);
    sft_eval_normalize(reference, reference_len, &b);
    bool same = a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
    buf_free(&a);
    buf_free(&b);
    return same;
}

// ---------------------------------------------------------------------------------------------------------------
// running

static void tally_add(SftEvalTally *t, const SftEvalOutcome *o) {
    t->n++;
    t->correct += o->correct;
    t->ended += o->ended;
    t->too_long += o->too_long;
}

static SftEvalTally *category_tally(SftEvalResult *r, const char *name) {
    for (size_t i = 0; i < r->n_cats; i++)
        if (strcmp(r->cats[i].name, name) == 0) return &r->cats[i];
    r->cats = xrealloc(r->cats, (r->n_cats + 1) * sizeof *r->cats);
    SftEvalTally *t = &r->cats[r->n_cats++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    return t;
}

int sft_eval_run(ChatSession *cs, const SftEvalSet *set, size_t limit, int64_t max_tokens, SftEvalEach each,
                 void *ctx, SftEvalResult *r, Err *e) {
    memset(r, 0, sizeof *r);
    const size_t n = limit && limit < set->n ? limit : set->n;
    const ChatTurnOpts to = {.max_tokens = max_tokens};
    double t0 = time_now();
    for (size_t i = 0; i < n; i++) {
        const SftEvalItem *it = &set->items[i];
        const ChatMessage *m = it->conv.msgs;
        // the prompt: a leading system message, the earlier turns as history, then the user message being answered
        chat_session_reset(cs);
        size_t first = 0;
        if (m[0].role == CHAT_ROLE_SYSTEM && it->ref > 1) chat_session_set_system(cs, m[0].content, m[0].len), first = 1;
        else chat_session_set_system(cs, NULL, 0);
        for (size_t k = first; k + 1 < it->ref; k++) chat_session_add_message(cs, m[k].role, m[k].content, m[k].len);
        const ChatMessage *u = &m[it->ref - 1];
        ChatTurnStats st;
        int rc = chat_session_turn(cs, u->content, u->len, &to, &st, e);
        if (rc == CHAT_TURN_ERROR) {
            sft_eval_result_free(r);
            return err_prefix(e, "line %lld: ", (long long)it->line);
        }
        SftEvalOutcome o = {.item = it, .answer = "", .too_long = rc == CHAT_TURN_NO_ROOM};
        if (rc == CHAT_TURN_OK) {
            const ChatMessage *a = &cs->msgs[cs->n_msgs - 1];
            o.answer = a->content;
            o.answer_len = a->len;
            o.ended = st.end_of_turn;
            o.n_generated = st.n_generated;
            o.correct = sft_eval_match(a->content, a->len, m[it->ref].content, m[it->ref].len);
        }
        r->generated += o.n_generated;
        tally_add(&r->total, &o);
        if (it->category) tally_add(category_tally(r, it->category), &o);
        if (each) each(ctx, i, &o);
    }
    r->seconds = time_now() - t0;
    return 0;
}

void sft_eval_result_free(SftEvalResult *r) {
    for (size_t i = 0; i < r->n_cats; i++) free(r->cats[i].name);
    free(r->cats);
    memset(r, 0, sizeof *r);
}
