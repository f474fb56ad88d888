// generate.c — prompt, then sample/forward until max_tokens, an end-of-generation token, or the emitter says stop.
//
// Text is streamed as the difference between successive decodes of the generated ids, so tokenizer decoders that
// look at neighbours (the first token's stripped space, byte-fallback sequences) print exactly what
// tokenizer_decode of the whole output gives.
#include "sample/generate.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

int generate_run(ModelState *s, const Tokenizer *tok, Sampler *smp, const int32_t *prompt, int64_t n_prompt,
                 const GenerateOpts *o, TokenIds *out_ids, GenerateStats *st, Err *e) {
    memset(st, 0, sizeof *st);
    const int64_t V = s->m->cfg.vocab_size;
    if (n_prompt < 1) return ERR(e, "empty prompt: at least one token is needed");
    if (n_prompt >= s->n_ctx) return ERR(e, "prompt of %lld tokens does not fit the context (%lld)", (long long)n_prompt, (long long)s->n_ctx);
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
    Buf text, prev;
    buf_init(&text);
    buf_init(&prev);
    int rc = 0;
    const size_t gen_start = hist.n;
    for (int64_t i = 0; i < o->max_tokens; i++) {
        int32_t id = sampler_sample(smp, s->logits, hist.ids, hist.n);
        if (id < 0 || id >= V) {
            rc = ERR(e, "sampler returned id %d", id);
            break;
        }
        if (!o->ignore_eos && tok && tokenizer_is_eog(tok, id)) {
            st->stopped_by_eos = true;
            break;
        }
        token_ids_push(&hist, id);
        if (out_ids) token_ids_push(out_ids, id);
        st->n_generated++;
        if (o->emit && tok) {
            text.len = 0;
            if (tokenizer_decode(tok, hist.ids + gen_start, hist.n - gen_start, 0, &text, e)) {
                rc = -1;
                break;
            }
            // emit what is new; hold back an incomplete UTF-8 tail so characters are never split across calls
            size_t end = text.len;
            size_t k = end;
            while (k > 0 && k > end - 4 && ((unsigned char)text.data[k - 1] & 0xC0) == 0x80) k--;
            if (k > 0 && (unsigned char)text.data[k - 1] >= 0xC0) {
                unsigned char lead = (unsigned char)text.data[k - 1];
                size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
                if (end - (k - 1) < need) end = k - 1;
            }
            if (end > prev.len && (prev.len == 0 || memcmp(text.data, prev.data, prev.len) == 0)) {
                if (!o->emit(o->emit_ctx, text.data + prev.len, end - prev.len)) break;
                prev.len = 0;
                buf_append(&prev, text.data, end);
            }
        }
        if (i + 1 == o->max_tokens) break;
        if (s->pos >= s->n_ctx) break; // context full
        if (model_forward(s, &id, 1, e)) {
            rc = -1;
            break;
        }
    }
    // flush a held-back tail at the end (invalid UTF-8 is still output, byte for byte)
    if (rc == 0 && o->emit && text.len > prev.len) o->emit(o->emit_ctx, text.data + prev.len, text.len - prev.len);
    st->gen_seconds = time_now() - t1;
    buf_free(&text);
    buf_free(&prev);
    token_ids_free(&hist);
    return rc;
}
