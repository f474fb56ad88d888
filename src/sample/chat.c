// chat.c — chat formats (see chat.h): recognising a model's template, and rendering conversations to ids + a loss
// mask.
//
// A conversation is first laid out as a list of parts — control tokens (by spelling or by special role) and text —
// following the reference template of the format. Then consecutive text parts are encoded together with
// TOKENIZE_ORDINARY and control parts become their ids. The loss mask marks parts of assistant answers; after
// encoding a run of text, each token's byte span in the run (from the lengths of its decoded pieces) decides
// whether it belongs to an answer: a token overlapping answer bytes is trained on.
#include "sample/chat.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

// Phi-3's layout (one control token per role, <|end|> after every message), with lossy's tool-result token.
const char CHAT_TEMPLATE_LOSSY[] =
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}{{ '<|tool_result|>\\n' }}{% else %}{{ '<|' + message['role'] + '|>\\n' }}{% endif %}"
    "{{ message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

static const struct {
    const char *name;
    ChatFormat fmt;
} FORMAT_NAMES[] = {
    {"chatml", CHAT_FORMAT_CHATML}, {"llama2", CHAT_FORMAT_LLAMA2}, {"llama3", CHAT_FORMAT_LLAMA3},
    {"mistral", CHAT_FORMAT_MISTRAL}, {"lossy", CHAT_FORMAT_LOSSY}, {"qwen", CHAT_FORMAT_CHATML},
    {"phi3", CHAT_FORMAT_LOSSY},
};

const char *chat_format_name(ChatFormat f) {
    for (size_t i = 0; i < sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES; i++)
        if (FORMAT_NAMES[i].fmt == f) return FORMAT_NAMES[i].name;
    return "unknown";
}

int chat_format_from_name(const char *name, ChatFormat *out, Err *e) {
    for (size_t i = 0; i < sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES; i++)
        if (strcmp(FORMAT_NAMES[i].name, name) == 0) {
            *out = FORMAT_NAMES[i].fmt;
            return 0;
        }
    return ERR(e, "unknown chat format '%s' (chatml, llama2, llama3, mistral, lossy)", name);
}

ChatFormat chat_format_detect(const char *t) {
    if (!t) return CHAT_FORMAT_UNKNOWN;
    if (strstr(t, "<|im_start|>")) return CHAT_FORMAT_CHATML;
    if (strstr(t, "<|start_header_id|>") && strstr(t, "<|end_header_id|>")) return CHAT_FORMAT_LLAMA3;
    if (strstr(t, "<|assistant|>") && strstr(t, "<|end|>")) return CHAT_FORMAT_LOSSY;
    if (strstr(t, "[INST]")) return strstr(t, "<<SYS>>") ? CHAT_FORMAT_LLAMA2 : CHAT_FORMAT_MISTRAL;
    return CHAT_FORMAT_UNKNOWN;
}

static int32_t find_str(const Tokenizer *tok, const char *s) { return tokenizer_find(tok, s, strlen(s)); }

ChatFormat chat_format_from_vocab(const Tokenizer *tok) {
    if (find_str(tok, "<|im_start|>") >= 0 && find_str(tok, "<|im_end|>") >= 0) return CHAT_FORMAT_CHATML;
    if (find_str(tok, "<|start_header_id|>") >= 0 && find_str(tok, "<|eot_id|>") >= 0) return CHAT_FORMAT_LLAMA3;
    if (find_str(tok, "<|assistant|>") >= 0 && find_str(tok, "<|end|>") >= 0) return CHAT_FORMAT_LOSSY;
    return CHAT_FORMAT_CHATML;
}

static const char *const ROLE_NAMES[] = {"system", "user", "assistant", "tool"};

const char *chat_role_name(ChatRole r) { return (unsigned)r < 4 ? ROLE_NAMES[r] : "?"; }

int chat_role_from_name(const char *name, ChatRole *out) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, ROLE_NAMES[i]) == 0) {
            *out = (ChatRole)i;
            return 0;
        }
    if (strcmp(name, "developer") == 0) { // OpenAI's newer name for system instructions
        *out = CHAT_ROLE_SYSTEM;
        return 0;
    }
    return -1;
}

// ---- reading templates ----

int chat_template_from_gguf(const GGUFFile *g, char **out, Err *e) {
    *out = NULL;
    const GGUFKV *kv = gguf_find(g, "tokenizer.chat_template");
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_STRING)
        return ERR(e, "tokenizer.chat_template is a %s, expected a string (%s)", gguf_type_name(kv->type), g->name);
    *out = xstrndup(kv->v.str.ptr, kv->v.str.len);
    return 0;
}

int chat_template_from_hf_dir(const char *dir, char **out, Err *e) {
    *out = NULL;
    Buf p;
    buf_init(&p);
    // newer transformers save the template on its own
    buf_printf(&p, "%s/chat_template.jinja", dir);
    if (path_exists(p.data)) {
        size_t n;
        int rc = file_read_all(p.data, out, &n, e);
        buf_free(&p);
        return rc;
    }
    p.len = 0;
    buf_printf(&p, "%s/tokenizer_config.json", dir);
    if (!path_exists(p.data)) {
        buf_free(&p);
        return 0;
    }
    json_error_t je;
    json_t *j = json_load_file(p.data, 0, &je);
    if (!j) {
        ERR(e, "%s: line %d: %s", p.data, je.line, je.text);
        buf_free(&p);
        return -1;
    }
    const json_t *t = json_object_get(j, "chat_template");
    if (json_is_string(t)) {
        *out = xstrdup(json_string_value(t));
    } else if (json_is_array(t)) {
        // a list of named templates: "default" is the one used for chat
        size_t i;
        const json_t *v;
        json_array_foreach(t, i, v) {
            const char *nm = json_string_value(json_object_get(v, "name"));
            const char *tx = json_string_value(json_object_get(v, "template"));
            if (tx && (!*out || (nm && strcmp(nm, "default") == 0))) {
                free(*out);
                *out = xstrdup(tx);
            }
        }
    } else if (t && !json_is_null(t)) {
        ERR(e, "%s: chat_template is neither a string nor a list of templates", p.data);
        json_decref(j);
        buf_free(&p);
        return -1;
    }
    json_decref(j);
    buf_free(&p);
    return 0;
}

int chat_template_from_path(const char *path, char **out, Err *e) {
    *out = NULL;
    if (path_is_dir(path)) return chat_template_from_hf_dir(path, out, e);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "GGUF", 4) != 0) return 0;
    GGUFFile g;
    if (gguf_open(&g, path, e)) return -1;
    int rc = chat_template_from_gguf(&g, out, e);
    gguf_close(&g);
    return rc;
}

// ---- Chat ----

// A chatml template that writes a literal system message when the conversation has none (Qwen2's
// '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'): the literal, or NULL. Only a plain literal is
// taken (no quotes, braces, concatenation or escapes other than \n inside it), so no template logic is guessed.
static char *chatml_default_system(const char *t) {
    static const char *const heads[] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
    for (size_t h = 0; h < 2; h++) {
        const char *p = t;
        while ((p = strstr(p, heads[h]))) {
            p += strlen(heads[h]);
            const char *end = strstr(p, "<|im_end|>");
            if (!end) break;
            bool plain = end > p;
            for (const char *q = p; q < end && plain; q++)
                if (strchr("'\"{}+", *q) || (*q == '\\' && !(q + 1 < end && q[1] == 'n'))) plain = false;
            if (plain) {
                Buf b;
                buf_init(&b);
                for (const char *q = p; q < end; q++) {
                    if (*q == '\\') {
                        buf_append(&b, "\n", 1);
                        q++;
                    } else {
                        buf_append(&b, q, 1);
                    }
                }
                return b.data;
            }
        }
    }
    return NULL;
}

int chat_init(Chat *c, ChatFormat fmt, const Tokenizer *tok, const char *tmpl, Err *e) {
    memset(c, 0, sizeof *c);
    if (fmt == CHAT_FORMAT_UNKNOWN || (int)fmt < 0 || fmt > CHAT_FORMAT_LOSSY) return ERR(e, "chat format not set");
    c->fmt = fmt;
    c->tok = tok;
    c->end_ids[0] = c->end_ids[1] = -1;
    const char *end = fmt == CHAT_FORMAT_CHATML ? "<|im_end|>" : fmt == CHAT_FORMAT_LLAMA3 ? "<|eot_id|>"
                    : fmt == CHAT_FORMAT_LOSSY ? "<|end|>" : NULL;
    if (end) c->end_ids[0] = find_str(tok, end);
    if (fmt == CHAT_FORMAT_LLAMA3) c->end_ids[1] = find_str(tok, "<|eom_id|>");
    if (fmt == CHAT_FORMAT_CHATML && tmpl) c->default_system = chatml_default_system(tmpl);
    return 0;
}

void chat_free(Chat *c) {
    free(c->default_system);
    memset(c, 0, sizeof *c);
}

size_t chat_stop_ids(const Chat *c, int32_t out[2]) {
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (c->end_ids[i] >= 0) out[n++] = c->end_ids[i];
    return n;
}

// ---- rendering ----

typedef struct Part {
    int32_t id;        // control token id, or -1 for text
    const char *s;     // text, or the control token's spelling (for the rendered string)
    size_t n;
    bool train;        // part of an assistant answer
} Part;

typedef struct Parts {
    Part *v;
    size_t n, cap;
    char **owned;      // strings made while laying out (stripped / combined contents)
    size_t n_owned, cap_owned;
} Parts;

static void parts_push(Parts *p, int32_t id, const char *s, size_t n, bool train) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 32;
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->n++] = (Part){id, s, n, train};
}

static const char *parts_own(Parts *p, char *s) {
    if (p->n_owned == p->cap_owned) {
        p->cap_owned = p->cap_owned ? 2 * p->cap_owned : 8;
        p->owned = xrealloc(p->owned, p->cap_owned * sizeof *p->owned);
    }
    p->owned[p->n_owned++] = s;
    return s;
}

static void parts_free(Parts *p) {
    for (size_t i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->v);
}

static void text(Parts *p, const char *s, size_t n, bool train) {
    if (n) parts_push(p, -1, s, n, train);
}
static void lit(Parts *p, const char *s, bool train) { text(p, s, strlen(s), train); }

// A control token by spelling: its id when the vocabulary has it, else the spelling as ordinary text.
static void ctrl(Parts *p, const Tokenizer *tok, const char *spelling, bool train) {
    parts_push(p, find_str(tok, spelling), spelling, strlen(spelling), train);
}

// A control token by role (BOS/EOS), with a spelling to look up when the role is unset; nothing when neither exists.
static void ctrl_role(Parts *p, const Tokenizer *tok, TokenRole role, const char *spelling, bool train) {
    int32_t id = tokenizer_special_id(tok, role);
    if (id < 0 && spelling) id = find_str(tok, spelling);
    if (id < 0) return;
    size_t n;
    const char *s = tokenizer_token_bytes(tok, id, &n);
    parts_push(p, id, s, n, train);
}

// The tokenizer's own ADD_SPECIAL prefix (BOS for vocabularies that add one), for formats whose template has no BOS.
static void add_prefix(Parts *p, const Tokenizer *tok) {
    const int32_t *pre, *suf;
    size_t n_pre, n_suf;
    tokenizer_get_template(tok, &pre, &n_pre, &suf, &n_suf);
    for (size_t i = 0; i < n_pre; i++) {
        size_t n;
        const char *s = tokenizer_token_bytes(tok, pre[i], &n);
        parts_push(p, pre[i], s, n, false);
    }
}

static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }

// Jinja's trim / Python's str.strip() (ASCII whitespace).
static void strip(const char **s, size_t *n) {
    while (*n && is_space(**s)) (*s)++, (*n)--;
    while (*n && is_space((*s)[*n - 1])) (*n)--;
}

static int layout_llama2(Parts *p, const Chat *c, const ChatMessage *m, size_t n, Err *e) {
    // <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] {user} [/INST]
    // (HF Llama-2-chat: the system block is part of the first user content, and the whole content is stripped)
    const Tokenizer *tok = c->tok;
    const char *sys = NULL;
    size_t sys_n = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = m[i].content;
        size_t len = m[i].len;
        switch (m[i].role) {
        case CHAT_ROLE_SYSTEM:
            sys = s;
            sys_n = len;
            if (i + 1 < n) break;
            s = "", len = 0; // a trailing system message: an instruction with no user text
            // fall through
        case CHAT_ROLE_USER: {
            if (sys) {
                Buf b;
                buf_init(&b);
                buf_append_str(&b, "<<SYS>>\n");
                buf_append(&b, sys, sys_n);
                buf_append_str(&b, "\n<</SYS>>\n\n");
                buf_append(&b, s, len);
                s = parts_own(p, b.data);
                len = b.len;
                sys = NULL;
            }
            strip(&s, &len);
            ctrl_role(p, tok, TOKEN_ID_BOS, "<s>", false);
            lit(p, "[INST] ", false);
            text(p, s, len, false);
            lit(p, " [/INST]", false);
            break;
        }
        case CHAT_ROLE_ASSISTANT:
            strip(&s, &len);
            lit(p, " ", true);
            text(p, s, len, true);
            lit(p, " ", true);
            ctrl_role(p, tok, TOKEN_ID_EOS, "</s>", true);
            break;
        case CHAT_ROLE_TOOL:
            return ERR(e, "message %zu: the llama2 chat format has no tool messages", i);
        }
    }
    return 0;
}

static int layout_mistral(Parts *p, const Chat *c, const ChatMessage *m, size_t n, Err *e) {
    // <s>[INST] {user} [/INST]{answer}</s>[INST] {user} [/INST]   (Mistral-7B-Instruct v0.1/v0.2)
    // A system message has no place in that template; it is put before the next user text with a blank line, as
    // Mistral's later templates do.
    const Tokenizer *tok = c->tok;
    ctrl_role(p, tok, TOKEN_ID_BOS, "<s>", false);
    const char *sys = NULL;
    size_t sys_n = 0;
    for (size_t i = 0; i < n; i++) {
        switch (m[i].role) {
        case CHAT_ROLE_SYSTEM:
            sys = m[i].content;
            sys_n = m[i].len;
            if (i + 1 == n) {
                lit(p, "[INST] ", false);
                text(p, sys, sys_n, false);
                lit(p, " [/INST]", false);
            }
            break;
        case CHAT_ROLE_USER:
            lit(p, "[INST] ", false);
            if (sys) {
                text(p, sys, sys_n, false);
                lit(p, "\n\n", false);
                sys = NULL;
            }
            text(p, m[i].content, m[i].len, false);
            lit(p, " [/INST]", false);
            break;
        case CHAT_ROLE_ASSISTANT:
            text(p, m[i].content, m[i].len, true);
            ctrl_role(p, tok, TOKEN_ID_EOS, "</s>", true);
            break;
        case CHAT_ROLE_TOOL:
            return ERR(e, "message %zu: the mistral chat format has no tool messages", i);
        }
    }
    return 0;
}

static void layout_llama3(Parts *p, const Chat *c, const ChatMessage *m, size_t n, bool gen) {
    // <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>...
    const Tokenizer *tok = c->tok;
    ctrl_role(p, tok, TOKEN_ID_BOS, "<|begin_of_text|>", false);
    for (size_t i = 0; i < n; i++) {
        bool a = m[i].role == CHAT_ROLE_ASSISTANT;
        const char *s = m[i].content;
        size_t len = m[i].len;
        strip(&s, &len);
        ctrl(p, tok, "<|start_header_id|>", false);
        lit(p, chat_role_name(m[i].role), false);
        ctrl(p, tok, "<|end_header_id|>", false);
        lit(p, "\n\n", false);
        text(p, s, len, a);
        ctrl(p, tok, "<|eot_id|>", a);
    }
    if (gen) {
        ctrl(p, tok, "<|start_header_id|>", false);
        lit(p, "assistant", false);
        ctrl(p, tok, "<|end_header_id|>", false);
        lit(p, "\n\n", false);
    }
}

static void layout_chatml(Parts *p, const Chat *c, const ChatMessage *m, size_t n, bool gen) {
    // <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
    const Tokenizer *tok = c->tok;
    add_prefix(p, tok);
    if (c->default_system && (n == 0 || m[0].role != CHAT_ROLE_SYSTEM)) {
        ctrl(p, tok, "<|im_start|>", false);
        lit(p, "system\n", false);
        lit(p, c->default_system, false);
        ctrl(p, tok, "<|im_end|>", false);
        lit(p, "\n", false);
    }
    for (size_t i = 0; i < n; i++) {
        bool a = m[i].role == CHAT_ROLE_ASSISTANT;
        ctrl(p, tok, "<|im_start|>", false);
        lit(p, chat_role_name(m[i].role), false);
        lit(p, "\n", false);
        text(p, m[i].content, m[i].len, a);
        ctrl(p, tok, "<|im_end|>", a);
        lit(p, "\n", false);
    }
    if (gen) {
        ctrl(p, tok, "<|im_start|>", false);
        lit(p, "assistant\n", false);
    }
}

static void layout_lossy(Parts *p, const Chat *c, const ChatMessage *m, size_t n, bool gen) {
    // <|system|>\n{content}<|end|>\n<|user|>\n{content}<|end|>\n ... <|assistant|>\n   (CHAT_TEMPLATE_LOSSY)
    static const char *const role_tok[] = {"<|system|>", "<|user|>", "<|assistant|>", "<|tool_result|>"};
    const Tokenizer *tok = c->tok;
    add_prefix(p, tok);
    for (size_t i = 0; i < n; i++) {
        bool a = m[i].role == CHAT_ROLE_ASSISTANT;
        ctrl(p, tok, role_tok[m[i].role], false);
        lit(p, "\n", false);
        text(p, m[i].content, m[i].len, a);
        ctrl(p, tok, "<|end|>", a);
        lit(p, "\n", false);
    }
    if (gen) {
        ctrl(p, tok, "<|assistant|>", false);
        lit(p, "\n", false);
    }
}

typedef struct Range {
    size_t lo, hi;
} Range;

// Encode one run of text; tokens overlapping a trained byte range get mask 1.
static int flush_run(const Tokenizer *tok, Buf *run, const Range *tr, size_t n_tr, TokenIds *ids, Buf *mask, Err *e) {
    if (run->len == 0) return 0;
    size_t first = ids->n;
    if (tokenizer_encode(tok, run->data, run->len, TOKENIZE_ORDINARY, ids, e)) return -1;
    if (mask) {
        Buf piece;
        buf_init(&piece);
        size_t off = 0;
        for (size_t i = first; i < ids->n; i++) {
            piece.len = 0;
            if (tokenizer_token_piece(tok, ids->ids[i], i == first ? TOKENIZER_DECODE_FIRST : 0, &piece, e)) {
                buf_free(&piece);
                return -1;
            }
            // a normalizer that is not undone by the decoder (NFC, lowercase) can make the spans drift; clamping
            // keeps the mask approximately right in that case
            size_t lo = off < run->len ? off : run->len, hi = off + piece.len < run->len ? off + piece.len : run->len;
            if (hi == lo && hi < run->len) hi = lo + 1;
            uint8_t bit = 0;
            for (size_t k = 0; k < n_tr && !bit; k++)
                if (tr[k].lo < hi && lo < tr[k].hi) bit = 1;
            buf_append(mask, &bit, 1);
            off += piece.len;
        }
        buf_free(&piece);
    }
    run->len = 0;
    return 0;
}

int chat_render(const Chat *c, const ChatMessage *msgs, size_t n, bool add_generation_prompt, TokenIds *ids,
                uint8_t **mask_out, Buf *text_out, Err *e) {
    if (mask_out) *mask_out = NULL;
    if (n == 0) return ERR(e, "no messages to render");
    for (size_t i = 0; i < n; i++)
        if ((unsigned)msgs[i].role > CHAT_ROLE_TOOL) return ERR(e, "message %zu: invalid role", i);
    Parts p = {0};
    int rc = 0;
    switch (c->fmt) {
    case CHAT_FORMAT_LLAMA2: rc = layout_llama2(&p, c, msgs, n, e); break;
    case CHAT_FORMAT_MISTRAL: rc = layout_mistral(&p, c, msgs, n, e); break;
    case CHAT_FORMAT_LLAMA3: layout_llama3(&p, c, msgs, n, add_generation_prompt); break;
    case CHAT_FORMAT_CHATML: layout_chatml(&p, c, msgs, n, add_generation_prompt); break;
    case CHAT_FORMAT_LOSSY: layout_lossy(&p, c, msgs, n, add_generation_prompt); break;
    default: rc = ERR(e, "chat format not set");
    }
    if (rc) {
        parts_free(&p);
        return -1;
    }
    const size_t first_id = ids->n;
    Buf run, mask;
    buf_init(&run);
    buf_init(&mask);
    Range *tr = NULL;
    size_t n_tr = 0, cap_tr = 0;
    for (size_t i = 0; i < p.n && rc == 0; i++) {
        const Part *q = &p.v[i];
        if (text_out) buf_append(text_out, q->s, q->n);
        if (q->id >= 0) {
            rc = flush_run(c->tok, &run, tr, n_tr, ids, mask_out ? &mask : NULL, e);
            n_tr = 0;
            token_ids_push(ids, q->id);
            uint8_t bit = q->train;
            if (mask_out) buf_append(&mask, &bit, 1);
        } else {
            if (q->train) {
                if (n_tr == cap_tr) {
                    cap_tr = cap_tr ? 2 * cap_tr : 8;
                    tr = xrealloc(tr, cap_tr * sizeof *tr);
                }
                tr[n_tr++] = (Range){run.len, run.len + q->n};
            }
            buf_append(&run, q->s, q->n);
        }
    }
    if (rc == 0) rc = flush_run(c->tok, &run, tr, n_tr, ids, mask_out ? &mask : NULL, e);
    if (rc == 0 && mask_out) {
        size_t n_new = ids->n - first_id;
        *mask_out = xmalloc(n_new ? n_new : 1);
        if (n_new) memcpy(*mask_out, mask.data, n_new);
    }
    free(tr);
    buf_free(&run);
    buf_free(&mask);
    parts_free(&p);
    return rc;
}
