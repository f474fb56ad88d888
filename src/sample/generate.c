// generate.c — prompt, then sample/forward until max_tokens, an end-of-generation token, or the emitter says stop.
//
// Text is streamed as the difference between successive decodes of the generated ids, so tokenizer decoders that
// look at neighbours (the first token's stripped space, byte-fallback sequences) print exactly what
// tokenizer_decode of the whole output gives.
#include "sample/generate.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

// prompt tokens decoded in front of the continuation (enough for any decoder's look-behind)
#define GENERATE_DECODE_CONTEXT 8

static bool is_eog(const ModelConfig *c, const Tokenizer *tok, int32_t id) {
    if (tok) return tokenizer_is_eog(tok, id);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return true;
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

int generate_run(ModelState *s, const Tokenizer *tok, Sampler *smp, const int32_t *prompt, int64_t n_prompt,
                 const GenerateOpts *o, TokenIds *out_ids, GenerateStats *st, Err *e) {
    memset(st, 0, sizeof *st);
    const ModelConfig *c = &s->m->cfg;
    const int64_t V = c->vocab_size;
    if (n_prompt < 1) return ERR(e, "empty prompt: at least one token is needed");
    if (s->pos + n_prompt > s->n_ctx)
        return ERR(e, "the prompt (%lld tokens) does not fit in the context (%lld tokens, %lld used); use a larger --ctx",
                   (long long)n_prompt, (long long)s->n_ctx, (long long)s->pos);
    for (int64_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) return ERR(e, "prompt token %lld is id %d, outside the vocabulary (%lld)", (long long)i, prompt[i], (long long)V);
    // history for the penalties: prompt + generated
    TokenIds hist = {0};
    for (int64_t i = 0; i < n_prompt; i++) token_ids_push(&hist, prompt[i]);
    double t0 = time_now();
    if (model_forward(s, prompt, n_prompt, e)) {
        token_ids_free(&hist);
        return -1;
    }
    st->n_prompt = n_prompt;
    st->prompt_seconds = time_now() - t0;
    double t1 = time_now();
    Buf text, full;
    buf_init(&text);
    buf_init(&full);
    size_t shown = 0; // bytes of text already emitted
    int rc = 0;
    const bool decode = tok && (o->emit || o->n_stop);
    // The continuation is decoded together with the last few prompt tokens, then the prompt's own text is cut off:
    // decoders that strip the first token's space (sentencepiece) would otherwise eat the space between the prompt
    // and the first generated word.
    const size_t n_ctx_tok = n_prompt < GENERATE_DECODE_CONTEXT ? (size_t)n_prompt : GENERATE_DECODE_CONTEXT;
    const size_t gen_start = hist.n, win_start = hist.n - n_ctx_tok;
    size_t prefix_len = 0;
    if (decode) {
        if (tokenizer_decode(tok, hist.ids + win_start, n_ctx_tok, TOKENIZER_DECODE_SKIP_SPECIAL, &full, e)) {
            token_ids_free(&hist);
            buf_free(&full);
            return -1;
        }
        prefix_len = full.len;
    }
    Buf prefix;
    buf_init(&prefix);
    buf_append(&prefix, full.data ? full.data : "", prefix_len);
    for (int64_t i = 0; i < o->max_tokens; i++) {
        int32_t id = sampler_sample(smp, s->logits, hist.ids, hist.n);
        if (!o->ignore_eos && is_eog(c, tok, id)) {
            st->stopped_by_eos = true;
            break;
        }
        token_ids_push(&hist, id);
        if (out_ids) token_ids_push(out_ids, id);
        st->n_generated++;
        if (decode) {
            // decode the whole continuation each time: decoders that look at neighbours (a stripped first space,
            // byte-fallback sequences) then stream exactly what one decode of the output gives
            full.len = 0;
            if (tokenizer_decode(tok, hist.ids + win_start, hist.n - win_start, TOKENIZER_DECODE_SKIP_SPECIAL, &full, e)) {
                rc = -1;
                break;
            }
            text.len = 0;
            if (full.len >= prefix_len && memcmp(full.data, prefix.data, prefix_len) == 0) {
                buf_append(&text, full.data + prefix_len, full.len - prefix_len);
            } else if (tokenizer_decode(tok, hist.ids + gen_start, hist.n - gen_start, TOKENIZER_DECODE_SKIP_SPECIAL, &text, e)) {
                rc = -1; // the prompt's text changed with what followed (a split character): decode alone
                break;
            }
            size_t stop_at = SIZE_MAX;
            for (size_t k = 0; k < o->n_stop; k++) {
                size_t sl = strlen(o->stop[k]);
                if (!sl) continue;
                const char *hit = memmem(text.data + shown, text.len - shown, o->stop[k], sl);
                if (hit && (size_t)(hit - text.data) < stop_at) stop_at = (size_t)(hit - text.data);
            }
            if (stop_at != SIZE_MAX) {
                if (o->emit && stop_at > shown) o->emit(o->emit_ctx, text.data + shown, stop_at - shown);
                shown = text.len = stop_at;
                st->stopped_by_string = true;
                break;
            }
            size_t end = safe_end(&text, shown, o);
            if (end > shown) {
                if (o->emit && !o->emit(o->emit_ctx, text.data + shown, end - shown)) break;
                shown = end;
            }
        }
        if (i + 1 == o->max_tokens) break;
        if (s->pos >= s->n_ctx) break; // context full: the caller sees n_generated < max_tokens
        if (model_forward(s, &id, 1, e)) {
            rc = -1;
            break;
        }
    }
    // flush what was held back (an unfinished character or a partial stop string that never completed)
    if (rc == 0 && o->emit && text.len > shown) o->emit(o->emit_ctx, text.data + shown, text.len - shown);
    st->gen_seconds = time_now() - t1;
    buf_free(&text);
    buf_free(&full);
    buf_free(&prefix);
    token_ids_free(&hist);
    return rc;
}
