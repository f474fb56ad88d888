// sft_data.c — JSONL conversations -> masked training rows for `lossy sft` (see sft_data.h).
#include "train/sft_data.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "train/data.h"
#include "train/rng.h"

// Grow an array to count elements of size bytes (aborts on overflow, like xmalloc).
static void *grow(void *p, size_t count, size_t size) {
    size_t bytes;
    if (!size_mul(count, size, &bytes)) abort();
    return xrealloc(p, bytes);
}

// ---------------------------------------------------------------------------------------------------------------
// parsing

void sft_conversation_free(SftConversation *c) {
    free(c->msgs);
    if (c->root) json_decref((json_t *)c->root);
    memset(c, 0, sizeof *c);
}

int sft_parse_line(const char *line, size_t len, SftConversation *out, Err *e) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return ERR(e, "bad JSON at column %d: %s", je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ERR(e, "expected a JSON object with a \"messages\" array");
    }
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs || !json_is_array(msgs)) {
        json_decref(root);
        return ERR(e, "\"messages\" is missing or not an array");
    }
    size_t n = json_array_size(msgs);
    if (n == 0) {
        json_decref(root);
        return ERR(e, "\"messages\" is empty");
    }
    out->root = root;
    out->msgs = xmalloc_array(n, sizeof *out->msgs);
    out->n = n;
    bool has_assistant = false;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) {
            sft_conversation_free(out);
            return ERR(e, "message %zu is not an object", i);
        }
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!role || !json_is_string(role)) {
            sft_conversation_free(out);
            return ERR(e, "message %zu has no string \"role\"", i);
        }
        if (!content || !json_is_string(content)) {
            sft_conversation_free(out);
            return ERR(e, "message %zu (%s) has no string \"content\"", i, json_string_value(role));
        }
        ChatRole r;
        if (chat_role_from_name(json_string_value(role), &r)) {
            Err tmp;
            ERR(&tmp, "message %zu has an unknown role '%s' (system, user, assistant, tool)", i,
                json_string_value(role));
            sft_conversation_free(out);
            *e = tmp;
            return -1;
        }
        has_assistant |= r == CHAT_ROLE_ASSISTANT;
        out->msgs[i] = (ChatMessage){r, json_string_value(content), json_string_length(content)};
    }
    if (!has_assistant) {
        sft_conversation_free(out);
        return ERR(e, "the conversation has no assistant message (nothing to train on)");
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// rendering and row layout

typedef struct Rendered {
    int32_t *ids;
    uint8_t *mask;
    size_t n;
} Rendered;

typedef struct RenderedList {
    Rendered *v;
    size_t n, cap;
} RenderedList;

static void rendered_list_free(RenderedList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].ids), free(l->v[i].mask);
    free(l->v);
    memset(l, 0, sizeof *l);
}

// Every conversation of a JSONL file, rendered; errors name path:line.
static int render_file(const char *path, const Chat *chat, RenderedList *out, Err *e) {
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len, e)) return -1;
    const char *p = text, *end = text + len;
    int64_t lineno = 0;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        size_t n = (size_t)((nl ? nl : end) - p);
        lineno++;
        bool blank = true;
        for (size_t i = 0; i < n && blank; i++) blank = p[i] == ' ' || p[i] == '\t' || p[i] == '\r';
        if (!blank) {
            SftConversation c;
            TokenIds ids = {0};
            uint8_t *mask = NULL;
            if (sft_parse_line(p, n, &c, e)) {
                rc = err_prefix(e, "%s:%lld: ", path, (long long)lineno);
                break;
            }
            if (chat_render(chat, c.msgs, c.n, false, &ids, &mask, NULL, e)) {
                rc = err_prefix(e, "%s:%lld: ", path, (long long)lineno);
            } else {
                if (out->n == out->cap) {
                    out->cap = out->cap ? 2 * out->cap : 64;
                    out->v = grow(out->v, out->cap, sizeof *out->v);
                }
                out->v[out->n++] = (Rendered){ids.ids, mask, ids.n};
                ids.ids = NULL;
                mask = NULL;
            }
            token_ids_free(&ids);
            free(mask);
            sft_conversation_free(&c);
        }
        p = next;
    }
    free(text);
    return rc;
}

static int64_t count_targets(const uint8_t *mask, size_t n) {
    int64_t k = 0;
    for (size_t i = 1; i < n; i++) k += mask[i] != 0; // token 0 is never a target (nothing predicts it)
    return k;
}

// Lay out conversations [first, last) of l into s.
static void layout(SftSplit *s, const RenderedList *l, size_t first, size_t last, const SftOpts *o, int32_t pad) {
    const size_t W = (size_t)o->T + 1;
    size_t cap = 16;
    s->rows = xmalloc_array(cap, W * sizeof(int32_t));
    s->target = xmalloc_array(cap, W);
    size_t fill = W; // tokens used in the current (last) row; W: no open row
    for (size_t i = first; i < last; i++) {
        const Rendered *r = &l->v[i];
        size_t n = r->n;
        if (n > W) {
            if (o->drop_long || count_targets(r->mask, W) == 0) {
                s->dropped++;
                continue;
            }
            s->truncated++;
            n = W;
        }
        if (count_targets(r->mask, n) == 0) { // e.g. an empty assistant answer after truncation rules
            s->dropped++;
            continue;
        }
        if (!o->pack || fill + n > W) { // open a new padded row
            if ((size_t)s->n_rows == cap) {
                cap *= 2;
                s->rows = grow(s->rows, cap, W * sizeof(int32_t));
                s->target = grow(s->target, cap, W);
            }
            int32_t *row = s->rows + (size_t)s->n_rows * W;
            for (size_t j = 0; j < W; j++) row[j] = pad;
            memset(s->target + (size_t)s->n_rows * W, 0, W);
            s->n_rows++;
            fill = 0;
        }
        int32_t *row = s->rows + (size_t)(s->n_rows - 1) * W;
        uint8_t *tgt = s->target + (size_t)(s->n_rows - 1) * W;
        memcpy(row + fill, r->ids, n * sizeof(int32_t));
        for (size_t j = 0; j < n; j++) tgt[fill + j] = r->mask[j] != 0 && fill + j > 0;
        fill += n;
        s->conversations++;
    }
    for (int64_t k = 0; k < s->n_rows; k++) s->targets += count_targets(s->target + (size_t)k * W, W);
}

// (n, T) inputs and targets from rows idx[0..n) of s (idx NULL: rows first..first+n).
static void fill_batch(const SftData *d, const SftSplit *s, const int64_t *idx, int64_t first, int64_t n,
                       int32_t *inputs, int32_t *targets) {
    const int64_t T = d->T, W = T + 1;
    for (int64_t b = 0; b < n; b++) {
        int64_t r = idx ? idx[b] : first + b;
        const int32_t *row = s->rows + r * W;
        const uint8_t *tgt = s->target + r * W;
        for (int64_t j = 0; j < T; j++) {
            inputs[b * T + j] = row[j];
            targets[b * T + j] = tgt[j + 1] ? row[j + 1] : -1;
        }
    }
}

static void build_perm(SftData *d, uint64_t seed, uint64_t epoch) {
    int64_t n = d->split[DATA_TRAIN].n_rows;
    TrainRng r;
    rng_seed(&r, seed, 0x5f7u + epoch);
    for (int64_t i = 0; i < n; i++) d->perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = d->perm[i];
        d->perm[i] = d->perm[j];
        d->perm[j] = t;
    }
    d->perm_seed = seed;
    d->perm_epoch = epoch + 1;
}

static void src_next(void *ctx, DataLoaderState *st, int64_t B, int32_t *inputs, int32_t *targets) {
    SftData *d = ctx;
    const int64_t n = d->split[DATA_TRAIN].n_rows;
    for (int64_t b = 0; b < B; b++) {
        if (st->index >= (uint64_t)n) st->epoch++, st->index = 0;
        if (d->perm_epoch != st->epoch + 1 || d->perm_seed != st->seed) build_perm(d, st->seed, st->epoch);
        int64_t r = d->perm[st->index++];
        fill_batch(d, &d->split[DATA_TRAIN], &r, 0, 1, inputs + b * d->T, targets + b * d->T);
    }
}

static void src_val_rows(void *ctx, int64_t first, int64_t n, int32_t *inputs, int32_t *targets) {
    SftData *d = ctx;
    fill_batch(d, &d->split[DATA_VAL], NULL, first, n, inputs, targets);
}

static int src_export_keys(void *ctx, GGUFWriter *w, Err *e) {
    (void)e;
    SftData *d = ctx;
    if (d->chat_template) gguf_writer_set_str(w, "tokenizer.chat_template", d->chat_template);
    gguf_writer_set_str(w, "lossy.sft.chat_format", chat_format_name(d->format));
    if (d->base_path) gguf_writer_set_str(w, "lossy.sft.base", d->base_path);
    if (d->data_path) gguf_writer_set_str(w, "lossy.sft.data", d->data_path);
    if (d->val_path) gguf_writer_set_str(w, "lossy.sft.val", d->val_path);
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)d->hash);
    gguf_writer_set_str(w, "lossy.sft.data_hash", hex);
    gguf_writer_set_i64(w, "lossy.sft.seq", d->T);
    gguf_writer_set_i64(w, "lossy.sft.train_conversations", d->split[DATA_TRAIN].conversations);
    gguf_writer_set_i64(w, "lossy.sft.val_conversations", d->split[DATA_VAL].conversations);
    gguf_writer_set_i64(w, "lossy.sft.train_targets", d->split[DATA_TRAIN].targets);
    gguf_writer_set_i64(w, "lossy.sft.truncated", d->split[0].truncated + d->split[1].truncated);
    gguf_writer_set_i64(w, "lossy.sft.dropped", d->split[0].dropped + d->split[1].dropped);
    return 0;
}

void sft_data_free(SftData *d) {
    for (int s = 0; s < 2; s++) free(d->split[s].rows), free(d->split[s].target);
    free(d->perm);
    memset(d, 0, sizeof *d);
}

int sft_data_load(SftData *d, const Chat *chat, const char *train_path, const char *val_path, const SftOpts *o,
                  Err *e) {
    memset(d, 0, sizeof *d);
    if (o->T < 2 || o->T > (int64_t)1 << 24)
        return ERR(e, "sequence length %lld out of range [2, 16M]", (long long)o->T);
    if (!(o->val_fraction >= 0 && o->val_fraction <= 0.5))
        return ERR(e, "the validation fraction must be in [0, 0.5]");
    d->T = o->T;
    int32_t pad = tokenizer_special_id(chat->tok, TOKEN_ID_PAD);
    if (pad < 0) pad = tokenizer_special_id(chat->tok, TOKEN_ID_EOS);
    if (pad < 0) pad = 0; // pad positions are never targets; the id only has to be valid
    d->pad_id = pad;
    RenderedList tr = {0}, va = {0};
    int rc = render_file(train_path, chat, &tr, e);
    if (rc == 0 && val_path) rc = render_file(val_path, chat, &va, e);
    if (rc == 0) {
        size_t n_val = 0;
        if (!val_path && o->val_fraction > 0 && tr.n >= 2) {
            n_val = (size_t)((double)tr.n * o->val_fraction + 0.5);
            if (n_val < 1) n_val = 1;
        }
        layout(&d->split[DATA_TRAIN], &tr, 0, tr.n - n_val, o, pad);
        if (val_path) layout(&d->split[DATA_VAL], &va, 0, va.n, o, pad);
        else layout(&d->split[DATA_VAL], &tr, tr.n - n_val, tr.n, o, pad);
        if (d->split[DATA_TRAIN].targets == 0)
            rc = ERR(e, "%s: no conversation with assistant tokens to train on (%zu read)", train_path, tr.n);
    }
    rendered_list_free(&tr);
    rendered_list_free(&va);
    if (rc) {
        sft_data_free(d);
        return -1;
    }
    uint64_t h = data_hash64(&d->T, sizeof d->T, DATA_HASH_INIT);
    for (int s = 0; s < 2; s++) {
        size_t cells = (size_t)d->split[s].n_rows * (size_t)(d->T + 1);
        h = data_hash64(&d->split[s].n_rows, sizeof d->split[s].n_rows, h);
        h = data_hash64(d->split[s].rows, cells * sizeof(int32_t), h);
        h = data_hash64(d->split[s].target, cells, h);
    }
    d->hash = h;
    d->perm = xmalloc_array((size_t)d->split[DATA_TRAIN].n_rows, sizeof(int64_t));
    d->src = (TrainSource){.ctx = d,
                           .tok = chat->tok,
                           .hash = h,
                           .desc = train_path,
                           .T = d->T,
                           .n_val_rows = d->split[DATA_VAL].targets > 0 ? d->split[DATA_VAL].n_rows : 0,
                           .train_targets = d->split[DATA_TRAIN].targets,
                           .val_targets = d->split[DATA_VAL].targets,
                           .next = src_next,
                           .val_rows = src_val_rows,
                           .export_keys = src_export_keys};
    return 0;
}
