// test_generate_stream.c — the text the step API (GenerateSeq) streams, against one tokenizer_decode of the whole
// output, for every tokenizer kind in the fixtures: sentencepiece (llama2 tokenizer.model, its llama2.c copy, the
// llama.cpp llama-spm GGUF vocabulary), byte-level BPE (GPT-2 encoder.json + vocab.bpe, its GGUF copy), and a
// tokenizer.json with byte fallback (Mistral). The scripted "model" is a one-hot logits vector per step, sampled
// greedily, so the sequence goes through the real sampling, stop rules and incremental decoding.
//
// Reference: decode(prompt + generated) with decode(prompt) cut off the front — what `lossy run` prints after the
// prompt. The streamed pieces must concatenate to it exactly, for random ids (byte pieces that form multi-byte
// characters, special tokens, bytes that make invalid UTF-8), for real texts re-encoded, with stop strings and an
// emitter that stops early; and the ids handed to the tokenizer must stay within the window per step.
#include <jansson.h>
#include <stdlib.h>

#include "model/config.h"
#include "sample/generate.h"
#include "fixture_tokenizer.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

// The tokenizers of the fixtures, by path (a directory: encoder.json + vocab.bpe).
static const char *const TOKENIZERS[] = {
    "tokenizers/llama2/tokenizer.model",
    "tokenizers/llama2/tokenizer.bin",
    "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf",
    "tokenizers/gpt2",
    "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf",
    "tokenizers/mistral/tokenizer.json",
};
#define N_TOKENIZERS (sizeof TOKENIZERS / sizeof *TOKENIZERS)

static bool utf8_ok(const char *s, size_t n) {
    Buf b;
    buf_init(&b);
    tokenizer_utf8_lossy(s, n, &b);
    bool ok = b.len == n && (n == 0 || memcmp(b.data, s, n) == 0);
    buf_free(&b);
    return ok;
}

// What the emitter saw.
typedef struct Seen {
    Buf text;
    size_t n_pieces;
    size_t stop_on;   // return false on this piece (1-based; 0: never)
    bool split_char;  // a piece ended inside a UTF-8 character
    bool after_stop;  // a piece came after the emitter said stop
} Seen;

static bool collect(void *ctx, const char *s, size_t n) {
    Seen *c = ctx;
    if (c->stop_on && c->n_pieces >= c->stop_on) c->after_stop = true;
    c->n_pieces++;
    buf_append(&c->text, s, n);
    if (!utf8_ok(s, n)) c->split_char = true;
    return !(c->stop_on && c->n_pieces == c->stop_on);
}

typedef struct Result {
    Seen seen;
    int64_t n_generated;
    bool stopped_by_string;
    size_t n_decode_ids;
    size_t shown;
} Result;

// Generate exactly gen[0, n_gen) after prompt (ignore_eos: special tokens are ordinary output here) through the
// step API, collecting the streamed text. Returns false (after recording a failure) when the run itself went wrong.
static bool stream(const Tokenizer *t, const int32_t *prompt, size_t n_prompt, const int32_t *gen, size_t n_gen,
                   const char *const *stop, size_t n_stop, size_t stop_on, Result *r) {
    memset(r, 0, sizeof *r);
    buf_init(&r->seen.text);
    r->seen.stop_on = stop_on;
    const int64_t V = (int64_t)tokenizer_vocab_size(t);
    ModelConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab_size = V;
    SamplerParams sp;
    sampler_params_default(&sp);
    sp.temperature = 0;
    Sampler smp;
    sampler_init(&smp, V, &sp);
    float *logits = xcalloc((size_t)V, sizeof *logits);
    GenerateOpts o = {.max_tokens = (int64_t)n_gen, .ignore_eos = true, .emit = collect, .emit_ctx = &r->seen,
                      .stop = stop, .n_stop = n_stop};
    GenerateSeq g;
    Err e;
    bool ok = generate_seq_init(&g, &cfg, t, &smp, prompt, (int64_t)n_prompt, 0, INT64_MAX, &o, &e) == 0;
    CHECKF(ok, "generate_seq_init: %s", e.msg);
    for (size_t i = 0; ok && i < n_gen; i++) {
        logits[gen[i]] = 1; // greedy: the scripted id
        int32_t next = -1;
        int rc = generate_seq_next(&g, logits, (int64_t)g.hist.n, INT64_MAX, &next, &e);
        logits[gen[i]] = 0;
        if (rc < 0) {
            test_fail_at(__FILE__, __LINE__, "generate_seq_next: %s", e.msg);
            ok = false;
        } else if (rc == 0) {
            break;
        } else if (next != gen[i]) {
            test_fail_at(__FILE__, __LINE__, "step %zu sampled %d, scripted %d", i, next, gen[i]);
            ok = false;
        }
    }
    if (ok) {
        generate_seq_finish(&g);
        r->n_generated = g.st.n_generated;
        r->stopped_by_string = g.st.stopped_by_string;
        r->n_decode_ids = g.n_decode_ids;
        r->shown = g.shown;
        generate_seq_free(&g);
    }
    free(logits);
    sampler_free(&smp);
    return ok;
}

// decode(prompt + gen[0, n_gen)) after decode(prompt), into out (reset).
static bool reference(const Tokenizer *t, const int32_t *prompt, size_t n_prompt, const int32_t *gen, size_t n_gen, Buf *out) {
    TokenIds all = {0};
    for (size_t i = 0; i < n_prompt; i++) token_ids_push(&all, prompt[i]);
    for (size_t i = 0; i < n_gen; i++) token_ids_push(&all, gen[i]);
    Buf p, f;
    buf_init(&p);
    buf_init(&f);
    Err e;
    bool ok = tokenizer_decode(t, prompt, n_prompt, TOKENIZER_DECODE_SKIP_SPECIAL, &p, &e) == 0 &&
              tokenizer_decode(t, all.ids, all.n, TOKENIZER_DECODE_SKIP_SPECIAL, &f, &e) == 0;
    CHECKF(ok, "decode: %s", e.msg);
    // the prompt's text is never changed by what follows it (the premise of "the text after the prompt")
    ok = ok && f.len >= p.len && memcmp(f.data, p.data ? p.data : "", p.len) == 0;
    CHECKF(!ok || f.len >= p.len, "the prompt's decode is not a prefix of the full decode");
    out->len = 0;
    if (ok) buf_append(out, f.data + p.len, f.len - p.len);
    buf_free(&p);
    buf_free(&f);
    token_ids_free(&all);
    return ok;
}

// The streamed text equals the reference, pieces never split a character of valid text, and the tokenizer saw at
// most the window per step.
static void check_stream(const Tokenizer *t, const char *name, const int32_t *prompt, size_t n_prompt,
                         const int32_t *gen, size_t n_gen, const char *what) {
    Buf ref;
    buf_init(&ref);
    Result r;
    if (reference(t, prompt, n_prompt, gen, n_gen, &ref) && stream(t, prompt, n_prompt, gen, n_gen, NULL, 0, 0, &r)) {
        CHECK_EQ_INT(r.n_generated, n_gen);
        if (r.seen.text.len != ref.len || memcmp(r.seen.text.data ? r.seen.text.data : "", ref.data ? ref.data : "", ref.len) != 0) {
            size_t i = 0;
            while (i < ref.len && i < r.seen.text.len && ref.data[i] == r.seen.text.data[i]) i++;
            test_fail_at(__FILE__, __LINE__, "%s, %s (%zu prompt + %zu ids): streamed %zu bytes, full decode %zu; first difference at byte %zu",
                         name, what, n_prompt, n_gen, r.seen.text.len, ref.len, i);
        }
        CHECKF(!utf8_ok(ref.data ? ref.data : "", ref.len) || !r.seen.split_char, "%s, %s: a piece split a character", name, what);
        const size_t bound = n_prompt + GENERATE_DECODE_CONTEXT + n_gen * (GENERATE_DECODE_CONTEXT + GENERATE_DECODE_WINDOW + 2);
        CHECKF(r.n_decode_ids <= bound, "%s, %s: %zu ids decoded for %zu generated (window bound %zu)", name, what,
               r.n_decode_ids, n_gen, bound);
        CHECK(r.n_decode_ids >= n_gen); // each generated id went through the tokenizer at least once
        buf_free(&r.seen.text);
    }
    buf_free(&ref);
}

// The token of one raw byte: "<0xXX>" in sentencepiece vocabularies, the single byte in byte-level ones.
static int32_t byte_token(const Tokenizer *t, unsigned b) {
    char s[8];
    snprintf(s, sizeof s, "<0x%02X>", b);
    int32_t id = tokenizer_find(t, s, 6);
    if (id < 0) {
        unsigned char c = (unsigned char)b;
        id = tokenizer_find(t, &c, 1);
    }
    return id;
}

static size_t rnd(size_t n) { return (size_t)(test_rand_u64() % n); }

// Append one random segment: a random id, a character as byte pieces, a special token, a stray byte (invalid
// UTF-8), a word with its leading space, or a run of special tokens.
static void push_random_segment(const Tokenizer *t, TokenIds *v) {
    const size_t V = tokenizer_vocab_size(t);
    switch (rnd(7)) {
    case 0:
    case 1: token_ids_push(v, (int32_t)rnd(V)); break;
    case 2: { // one character of 2-4 bytes, as byte tokens
        static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xd0\x96", "\xf0\x90\x8d\x88"};
        const char *c = chars[rnd(sizeof chars / sizeof *chars)];
        for (size_t i = 0; c[i]; i++) {
            int32_t id = byte_token(t, (unsigned char)c[i]);
            if (id >= 0) token_ids_push(v, id);
        }
        break;
    }
    case 3: { // special tokens: BOS, EOS, UNK, or any CONTROL id
        int32_t id = tokenizer_special_id(t, (TokenRole)rnd(3));
        if (id < 0) id = (int32_t)rnd(V);
        token_ids_push(v, id);
        break;
    }
    case 4: { // a stray lead or continuation byte
        int32_t id = byte_token(t, 0x80 + (unsigned)rnd(0x80));
        if (id >= 0) token_ids_push(v, id);
        break;
    }
    case 5: { // a word after a space ("▁word" / "Ġword" style) or a lone space
        static const char *const words[] = {" the", " world", " ", "  ", " a", "\n"};
        const char *w = words[rnd(sizeof words / sizeof *words)];
        Err e;
        if (tokenizer_encode(t, w, strlen(w), TOKENIZE_ORDINARY, v, &e)) test_fail_at(__FILE__, __LINE__, "encode: %s", e.msg);
        break;
    }
    default: { // a run of special tokens longer than the look-behind context
        int32_t id = tokenizer_special_id(t, TOKEN_ID_EOS);
        if (id < 0) id = tokenizer_special_id(t, TOKEN_ID_BOS);
        for (size_t i = 0, n = GENERATE_DECODE_CONTEXT + rnd(2 * GENERATE_DECODE_CONTEXT); id >= 0 && i < n; i++) token_ids_push(v, id);
        break;
    }
    }
}

TEST(generate_stream_random_ids_equal_full_decode) {
    for (size_t k = 0; k < N_TOKENIZERS; k++) {
        Tokenizer *t = fixture_tokenizer(TOKENIZERS[k]);
        if (!t) continue;
        for (int trial = 0; trial < 12; trial++) {
            TokenIds prompt = {0}, gen = {0};
            // prompts: one id, a few segments, or text followed by a long run of special tokens
            size_t n_seg = trial % 3 == 0 ? 0 : 1 + rnd(6);
            if (trial % 3 == 0) token_ids_push(&prompt, (int32_t)rnd(tokenizer_vocab_size(t)));
            for (size_t i = 0; i < n_seg; i++) push_random_segment(t, &prompt);
            if (prompt.n == 0) token_ids_push(&prompt, 0);
            while (gen.n < 40 + (size_t)trial * 15) push_random_segment(t, &gen);
            char what[64];
            snprintf(what, sizeof what, "random trial %d", trial);
            check_stream(t, TOKENIZERS[k], prompt.ids, prompt.n, gen.ids, gen.n, what);
            token_ids_free(&prompt);
            token_ids_free(&gen);
        }
        tokenizer_free(t);
    }
}

// Real texts (the reference strings: whitespace runs, CJK, emoji, control bytes, code), encoded, then streamed back
// from every split point into prompt and continuation, with and without BOS.
TEST(generate_stream_real_texts_equal_full_decode) {
    json_t *j = fixture_reference_encodings();
    REQUIRE(j);
    const json_t *strings = json_object_get(j, "strings");
    REQUIRE(json_array_size(strings) >= 40);
    for (size_t k = 0; k < N_TOKENIZERS; k++) {
        Tokenizer *t = fixture_tokenizer(TOKENIZERS[k]);
        if (!t) continue;
        for (size_t i = 0; i < json_array_size(strings); i++) {
            const json_t *s = json_array_get(strings, i);
            TokenIds ids = {0};
            Err e;
            const int mode = i % 2 ? TOKENIZE_ADD_SPECIAL : 0;
            REQUIREF(tokenizer_encode(t, json_string_value(s), json_string_length(s), mode, &ids, &e) == 0, "encode: %s", e.msg);
            for (size_t split = 1; split < ids.n; split += 1 + ids.n / 7) {
                char what[64];
                snprintf(what, sizeof what, "string %zu split at %zu", i, split);
                check_stream(t, TOKENIZERS[k], ids.ids, split, ids.ids + split, ids.n - split, what);
            }
            token_ids_free(&ids);
        }
        tokenizer_free(t);
    }
    json_decref(j);
}

// Tokenizer k and the ids of Moby-Dick's first `bytes` bytes (0: all of moby20k) in `mode`, or NULL (test failed).
static Tokenizer *moby_ids(const json_t *ref, size_t k, size_t bytes, int mode, TokenIds *ids) {
    const json_t *moby = json_object_get(ref, "moby20k");
    Tokenizer *t = json_is_string(moby) ? fixture_tokenizer(TOKENIZERS[k]) : NULL;
    Err e;
    size_t n = bytes && bytes < json_string_length(moby) ? bytes : json_string_length(moby);
    if (t && tokenizer_encode(t, json_string_value(moby), n, mode, ids, &e) == 0) return t;
    test_fail_at(__FILE__, __LINE__, "moby20k with %s: %s", TOKENIZERS[k], t ? e.msg : "no text or tokenizer");
    tokenizer_free(t);
    return NULL;
}

// 3000 tokens of Moby-Dick: the stream equals the full decode, and the tokenizer saw a bounded number of ids per step
// (decoding the whole continuation each step would hand it about 4.5 million).
TEST(generate_stream_long_output_uses_window) {
    json_t *j = fixture_reference_encodings();
    REQUIRE(j);
    for (size_t k = 0; k < N_TOKENIZERS; k++) {
        TokenIds ids = {0};
        Tokenizer *t = moby_ids(j, k, 0, TOKENIZE_ADD_SPECIAL, &ids);
        if (!t) continue;
        REQUIRE(ids.n >= 3020);
        check_stream(t, TOKENIZERS[k], ids.ids, 20, ids.ids + 20, 3000, "moby-dick 3000 tokens");
        token_ids_free(&ids);
        tokenizer_free(t);
    }
    json_decref(j);
}

// Stop strings: the stream is the full decode cut before the first occurrence, and ends at the first token whose
// text completes it; a stop string that never occurs holds nothing back at the end.
TEST(generate_stream_stop_strings) {
    json_t *j = fixture_reference_encodings();
    REQUIRE(j);
    for (size_t k = 0; k < N_TOKENIZERS; k++) {
        TokenIds ids = {0};
        Tokenizer *t = moby_ids(j, k, 6000, 0, &ids);
        if (!t) continue;
        REQUIRE(ids.n > 700);
        const size_t n_prompt = 5, n_gen = 600;
        const int32_t *gen = ids.ids + n_prompt;
        Buf ref, part;
        buf_init(&ref);
        buf_init(&part);
        REQUIRE(reference(t, ids.ids, n_prompt, gen, n_gen, &ref));
        for (int trial = 0; trial < 8; trial++) {
            // a stop string taken from the text (3..12 bytes from a random place), plus one that never occurs
            size_t at = 50 + rnd(ref.len - 100), sl = 3 + rnd(10);
            char stop_s[16];
            memcpy(stop_s, ref.data + at, sl);
            stop_s[sl] = 0;
            if (strlen(stop_s) != sl) continue; // no NUL in the middle
            const char *stops[2] = {"\x01never\x01", stop_s};
            const char *first = memmem(ref.data, ref.len, stop_s, sl);
            REQUIRE(first);
            const size_t cut = (size_t)(first - ref.data);
            // the first token whose decode contains the stop string
            size_t want_n = 0;
            for (size_t n = 1; n <= n_gen && !want_n; n++) {
                REQUIRE(reference(t, ids.ids, n_prompt, gen, n, &part));
                if (memmem(part.data, part.len, stop_s, sl)) want_n = n;
            }
            Result r;
            REQUIRE(stream(t, ids.ids, n_prompt, gen, n_gen, stops, 2, 0, &r));
            CHECK(r.stopped_by_string);
            CHECK_EQ_INT(r.n_generated, want_n);
            CHECKF(r.seen.text.len == cut && memcmp(r.seen.text.data ? r.seen.text.data : "", ref.data, cut) == 0,
                   "%s: stop \"%s\": streamed %zu bytes, want %zu", TOKENIZERS[k], stop_s, r.seen.text.len, cut);
            CHECK_EQ_INT(r.shown, cut);
            buf_free(&r.seen.text);
        }
        // only the stop string that never occurs: everything comes out, the last held-back bytes at the finish
        const char *never[1] = {" \x01\x02"};
        Result r;
        REQUIRE(stream(t, ids.ids, n_prompt, gen, n_gen, never, 1, 0, &r));
        CHECK(!r.stopped_by_string);
        CHECK(r.seen.text.len == ref.len && memcmp(r.seen.text.data, ref.data, ref.len) == 0);
        buf_free(&r.seen.text);
        buf_free(&ref);
        buf_free(&part);
        token_ids_free(&ids);
        tokenizer_free(t);
    }
    json_decref(j);
}

// An emitter that says stop: generation ends there, what was shown is a prefix of the full decode, and nothing is
// emitted after (not even at the finish).
TEST(generate_stream_emitter_stop) {
    for (size_t k = 0; k < N_TOKENIZERS; k++) {
        Tokenizer *t = fixture_tokenizer(TOKENIZERS[k]);
        if (!t) continue;
        const char *text = "It was the best of times, it was the worst of times; \xe4\xb8\xad\xe6\x96\x87 and \xf0\x9f\x98\x80 too.";
        TokenIds ids = {0};
        Err e;
        REQUIREF(tokenizer_encode(t, text, strlen(text), 0, &ids, &e) == 0, "encode: %s", e.msg);
        REQUIRE(ids.n > 12);
        Buf ref;
        buf_init(&ref);
        REQUIRE(reference(t, ids.ids, 2, ids.ids + 2, ids.n - 2, &ref));
        Result r;
        REQUIRE(stream(t, ids.ids, 2, ids.ids + 2, ids.n - 2, NULL, 0, 3, &r));
        CHECK_EQ_INT(r.seen.n_pieces, 3);
        CHECK(!r.seen.after_stop);
        CHECK(r.n_generated < (int64_t)ids.n - 2);
        CHECK_EQ_INT(r.shown, r.seen.text.len);
        CHECK(r.seen.text.len < ref.len && memcmp(r.seen.text.data, ref.data, r.seen.text.len) == 0);
        buf_free(&r.seen.text);
        buf_free(&ref);
        token_ids_free(&ids);
        tokenizer_free(t);
    }
}

// A prompt whose text is followed by more special tokens than the look-behind context holds: the continuation's
// first space is not the start of the text, so it stays (the decoder strips a leading space only there). Decoding
// the last 8 prompt ids as context, as before, saw no text in front and dropped it.
TEST(generate_stream_space_after_special_run) {
    Tokenizer *t = fixture_tokenizer("tokenizers/llama2/tokenizer.model");
    REQUIRE(t);
    TokenIds prompt = {0}, gen = {0};
    Err e;
    REQUIRE(tokenizer_encode(t, "Hello", 5, 0, &prompt, &e) == 0);
    const int32_t bos = tokenizer_special_id(t, TOKEN_ID_BOS);
    REQUIRE(bos >= 0);
    for (int i = 0; i < GENERATE_DECODE_CONTEXT + 2; i++) token_ids_push(&prompt, bos);
    REQUIRE(tokenizer_encode(t, "world", 5, 0, &gen, &e) == 0); // "▁world": sentencepiece prepends the space
    Buf ref;
    buf_init(&ref);
    REQUIRE(reference(t, prompt.ids, prompt.n, gen.ids, gen.n, &ref));
    CHECK_EQ_STR(ref.data, " world");
    Result r;
    REQUIRE(stream(t, prompt.ids, prompt.n, gen.ids, gen.n, NULL, 0, 0, &r));
    CHECK_EQ_STR(r.seen.text.data, " world");
    buf_free(&r.seen.text);
    // with nothing but special tokens before it, the space is the start of the text and goes
    Result r2;
    REQUIRE(stream(t, &bos, 1, gen.ids, gen.n, NULL, 0, 0, &r2));
    CHECK_EQ_STR(r2.seen.text.data, "world");
    buf_free(&r2.seen.text);
    buf_free(&ref);
    token_ids_free(&prompt);
    token_ids_free(&gen);
    tokenizer_free(t);
}
