// generate.c — prompt, then sample/forward until max_tokens, an end-of-generation token, a stop string, or the
// emitter says stop. The per-token logic lives in the step API (GenerateSeq) so that `lossy run` (generate_run) and
// the server's batched scheduler share it, token for token.
//
// Text is streamed as the difference between successive decodes, so tokenizer decoders that look at neighbours (the
// first token's stripped space, byte-fallback sequences, byte-level pieces of one character) print exactly what
// tokenizer_decode of the whole output gives. The decodes are incremental (text-generation-inference's
// prefix/read offsets, adapted): ids before an anchor have final text, and a step decodes the look-behind context
// plus the ids from the anchor, then keeps what follows the context's own text. The context is the last
// GENERATE_DECODE_CONTEXT ids whose piece is not empty: an id that decodes to nothing (a skipped special token, an
// empty entry) adds nothing to any decode here, so a run of them can neither hide the text before it from the
// decoder (which strips the first space only at the start of the text) nor widen the window. At the start the
// context comes from the prompt, so the space between the prompt and the first generated word survives.
#include "sample/generate.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static bool is_eog(const GenerateSeq *g, int32_t id) {
    for (size_t i = 0; i < g->o.n_stop_ids; i++)
        if (g->o.stop_ids[i] == id) return true;
    if (g->tok) return tokenizer_is_eog(g->tok, id);
    for (int i = 0; i < g->cfg->n_eos; i++)
        if (g->cfg->eos_ids[i] == id) return true;
    return false;
}

// How much of text[from, len) can be shown now: never split a UTF-8 character, never show a tail that may be the
// start of a stop string.
static size_t safe_end(const Buf *text, size_t from, const GenerateOpts *o) {
    size_t end = text->len, k = end;
    while (k > from && k + 4 > end && ((unsigned char)text->data[k - 1] & 0xC0) == 0x80) k--;
    if (k > from && (unsigned char)text->data[k - 1] >= 0xC0) {
        unsigned char lead = (unsigned char)text->data[k - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (end - (k - 1) < need) end = k - 1;
    }
    size_t hold = 0;
    for (size_t i = 0; i < o->n_stop; i++) {
        size_t sl = strlen(o->stop[i]);
        for (size_t n = sl > 0 ? sl - 1 : 0; n > hold; n--)
            if (n <= end - from && memcmp(text->data + end - n, o->stop[i], n) == 0) {
                hold = n;
                break;
            }
    }
    return end - hold;
}

// Add ids to the look-behind context, keeping the last GENERATE_DECODE_CONTEXT that produce text.
static int ctx_push(GenerateSeq *g, const int32_t *ids, size_t n, Err *e) {
    for (size_t i = 0; i < n; i++) {
        g->full.len = 0;
        if (tokenizer_token_piece(g->tok, ids[i], TOKENIZER_DECODE_SKIP_SPECIAL, &g->full, e)) return -1;
        g->n_decode_ids++;
        if (g->full.len == 0) continue;
        if (g->n_ctx == GENERATE_DECODE_CONTEXT) memmove(g->ctx, g->ctx + 1, --g->n_ctx * sizeof *g->ctx);
        g->ctx[g->n_ctx++] = ids[i];
    }
    return 0;
}

// tokenizer_decode appending to out, counted.
static int decode_ids(GenerateSeq *g, const int32_t *ids, size_t n, Buf *out, Err *e) {
    g->n_decode_ids += n;
    return tokenizer_decode(g->tok, ids, n, TOKENIZER_DECODE_SKIP_SPECIAL, out, e);
}

// Bring text up to date with hist: decode the context and the ids from the anchor, keep what follows the context's
// text; then move the anchor to the end once the window is full. *keep: the length of text that did not change.
static int update_text(GenerateSeq *g, size_t *keep, Err *e) {
    TokenIds *w = &g->win;
    w->n = 0;
    for (size_t i = 0; i < g->n_ctx; i++) token_ids_push(w, g->ctx[i]);
    for (size_t i = g->anchor; i < g->hist.n; i++) token_ids_push(w, g->hist.ids[i]);
    g->full.len = 0;
    if (decode_ids(g, w->ids, w->n, &g->full, e)) return -1;
    size_t skip = g->prefix.len;
    if (g->full.len < skip || memcmp(g->full.data, g->prefix.data ? g->prefix.data : "", skip) != 0) {
        // the context's text changed with what followed (no decoder here does that): decode the rest alone
        g->full.len = skip = 0;
        if (decode_ids(g, g->hist.ids + g->anchor, g->hist.n - g->anchor, &g->full, e)) return -1;
    }
    const size_t n_add = g->full.len - skip, n_old = g->text.len - g->anchor_text;
    const char *add = g->full.data + skip, *old = n_old ? g->text.data + g->anchor_text : "";
    size_t same = 0;
    while (same < n_add && same < n_old && add[same] == old[same]) same++;
    *keep = g->anchor_text + same;
    g->text.len = *keep;
    buf_append(&g->text, add + same, n_add - same);
    if (g->hist.n - g->anchor < GENERATE_DECODE_WINDOW) return 0;
    if (ctx_push(g, g->hist.ids + g->anchor, g->hist.n - g->anchor, e)) return -1;
    g->anchor = g->hist.n;
    g->anchor_text = g->text.len;
    g->prefix.len = 0;
    return decode_ids(g, g->ctx, g->n_ctx, &g->prefix, e);
}

int generate_seq_init(GenerateSeq *g, const ModelConfig *cfg, const Tokenizer *tok, Sampler *smp,
                      const int32_t *prompt, int64_t n_prompt, int64_t pos, int64_t n_ctx, const GenerateOpts *o,
                      Err *e) {
    memset(g, 0, sizeof *g);
    const int64_t V = cfg->vocab_size;
    if (n_prompt < 1) return ERR(e, "empty prompt: at least one token is needed");
    if (pos + n_prompt > n_ctx)
        return ERR(e, "the prompt (%lld tokens) does not fit in the context (%lld tokens, %lld used); use a larger --ctx",
                   (long long)n_prompt, (long long)n_ctx, (long long)pos);
    for (int64_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) return ERR(e, "prompt token %lld is id %d, outside the vocabulary (%lld)", (long long)i, prompt[i], (long long)V);
    g->cfg = cfg;
    g->tok = tok;
    g->smp = smp;
    g->o = *o;
    for (int64_t i = 0; i < n_prompt; i++) token_ids_push(&g->hist, prompt[i]);
    g->gen_start = g->anchor = g->hist.n;
    buf_init(&g->text);
    buf_init(&g->full);
    buf_init(&g->prefix);
    g->decode = tok && (o->emit || o->n_stop);
    if (g->decode && (ctx_push(g, prompt, (size_t)n_prompt, e) || decode_ids(g, g->ctx, g->n_ctx, &g->prefix, e))) {
        generate_seq_free(g);
        return -1;
    }
    g->st.n_prompt = n_prompt;
    g->done = o->max_tokens <= 0;
    return 0;
}

int generate_seq_next(GenerateSeq *g, float *logits, int64_t pos, int64_t n_ctx, int32_t *next, Err *e) {
    if (g->done) return 0;
    const GenerateOpts *o = &g->o;
    int32_t id = sampler_sample(g->smp, logits, g->hist.ids, g->hist.n);
    if (!o->ignore_eos && is_eog(g, id)) {
        g->st.stopped_by_eos = true;
        g->done = true;
        return 0;
    }
    token_ids_push(&g->hist, id);
    g->st.n_generated++;
    if (g->decode) {
        Buf *text = &g->text;
        size_t keep;
        if (update_text(g, &keep, e)) {
            g->done = true;
            g->emitter_stopped = true; // nothing more to flush after a failure
            return -1;
        }
        // only a match that ends in the new bytes (after keep) is new; none starts before what was shown
        size_t stop_at = SIZE_MAX;
        for (size_t k = 0; k < o->n_stop; k++) {
            size_t sl = strlen(o->stop[k]);
            if (!sl) continue;
            size_t from = keep >= sl ? keep - sl + 1 : 0;
            if (from < g->shown) from = g->shown;
            if (from >= text->len) continue;
            const char *hit = memmem(text->data + from, text->len - from, o->stop[k], sl);
            if (hit && (size_t)(hit - text->data) < stop_at) stop_at = (size_t)(hit - text->data);
        }
        if (stop_at != SIZE_MAX) {
            if (o->emit && stop_at > g->shown) o->emit(o->emit_ctx, text->data + g->shown, stop_at - g->shown);
            g->shown = text->len = stop_at;
            g->st.stopped_by_string = true;
            g->done = true;
            return 0;
        }
        size_t end = safe_end(text, g->shown, o);
        if (end > g->shown) {
            if (o->emit && !o->emit(o->emit_ctx, text->data + g->shown, end - g->shown)) {
                g->shown = end;
                g->emitter_stopped = true;
                g->done = true;
                return 0;
            }
            g->shown = end;
        }
    }
    if (g->st.n_generated >= o->max_tokens || pos >= n_ctx) { // the caller sees n_generated < max_tokens
        g->done = true;
        return 0;
    }
    *next = id;
    return 1;
}

void generate_seq_finish(GenerateSeq *g) {
    if (g->emitter_stopped || !g->o.emit || g->text.len <= g->shown) return;
    g->o.emit(g->o.emit_ctx, g->text.data + g->shown, g->text.len - g->shown);
    g->shown = g->text.len;
}

void generate_seq_free(GenerateSeq *g) {
    token_ids_free(&g->hist);
    token_ids_free(&g->win);
    buf_free(&g->text);
    buf_free(&g->full);
    buf_free(&g->prefix);
    memset(g, 0, sizeof *g);
}

int generate_run(ModelState *s, const Tokenizer *tok, Sampler *smp, const int32_t *prompt, int64_t n_prompt,
                 const GenerateOpts *o, TokenIds *out_ids, GenerateStats *st, Err *e) {
    memset(st, 0, sizeof *st);
    GenerateSeq g;
    if (generate_seq_init(&g, &s->m->cfg, tok, smp, prompt, n_prompt, s->pos, s->n_ctx, o, e)) return -1;
    double t0 = time_now();
    if (model_forward(s, prompt, n_prompt, e)) {
        generate_seq_free(&g);
        return -1;
    }
    st->prompt_seconds = time_now() - t0;
    double t1 = time_now();
    int rc = 0;
    for (;;) {
        int32_t id;
        int r = generate_seq_next(&g, s->logits, s->pos, s->n_ctx, &id, e);
        if (r < 0) rc = -1;
        if (r <= 0) break;
        if (model_forward(s, &id, 1, e)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) generate_seq_finish(&g);
    if (out_ids)
        for (size_t i = g.gen_start; i < g.hist.n; i++) token_ids_push(out_ids, g.hist.ids[i]);
    st->n_prompt = g.st.n_prompt;
    st->n_generated = g.st.n_generated;
    st->stopped_by_eos = g.st.stopped_by_eos;
    st->stopped_by_string = g.st.stopped_by_string;
    st->gen_seconds = time_now() - t1;
    generate_seq_free(&g);
    return rc;
}
