// sched.c — slots, the bounded queue and the batching loop (see sched.h).
#include "serve/sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/util.h"

// Prompt tokens fed per scheduler iteration, over all slots: a new request's prompt is processed in pieces of at
// most this many tokens in the same pass as the other slots' decoding rows (model_forward_multi: one read of the
// weights for both), so a long prompt delays their next token by one piece (a few ms) instead of the whole prompt,
// and short prompts (the common case) still go through in one piece. Pieces are never a single token (the decoding
// path rounds differently), so a prompt leaves the same state however it is split (model.h).
#define SCHED_PREFILL_TOKENS 64

// Streamed text in the middle of a generation is signalled to the HTTP side at most this often (seconds): each
// signal wakes a connection thread that writes one server-sent event, and on a small machine under load those
// wake-ups (a context switch, a send, a client read per token) took CPU from the batched forward passes. 10 ms is
// below what a reader can see; a model slower than that per token still streams every token.
#define SCHED_STREAM_FLUSH_S 0.010

typedef struct Slot {
    ModelState st;
    Sampler smp;
    GenerateSeq g;
    ServeRequest *r; // NULL when free
    bool fresh;      // admitted this iteration: not set up yet
    int64_t fed;     // prompt tokens in the KV cache
    int64_t piece;   // prompt tokens in the pass being assembled (0: none)
    uint64_t order;  // admission number: prompts are fed oldest first
} Slot;

struct Sched {
    const Model *m;
    const Tokenizer *tok;
    int n_slots;
    Slot *slots;
    int64_t n_ctx;
    pthread_mutex_t mu;        // queue, slot assignment, refs, counters
    pthread_cond_t cv;
    ServeRequest **queue;      // ring (q_cap)
    size_t q_cap, q_head, q_len;
    int n_active;
    bool stopping;
    uint64_t n_served, n_cancelled;
    uint64_t n_admitted;
    pthread_t th;
    ModelState **batch_states; // (n_slots) scratch for model_forward_multi: the pass's sequences
    int64_t *batch_counts;     // (n_slots) their tokens
    int32_t *batch_tokens;     // (n_slots + SCHED_PREFILL_TOKENS) the tokens, sequence after sequence
    Slot **batch_slots;        // (n_slots)
    ThreadPool *pool;          // the model's: also samples the slots' next tokens in parallel
    Slot **cand;               // (n_slots) slots sampling this iteration
    int *cand_rc;              // (n_slots) generate_seq_next's result for each
    int32_t *cand_next;        // (n_slots) and the token it chose
    Err *cand_err;             // (n_slots)
};

static void notify(ServeRequest *r) {
    uint64_t one = 1;
    // the counter only saturates after 2^64 - 2 unread signals; EAGAIN then still leaves the fd readable
    ssize_t w = write(r->efd, &one, sizeof one);
    (void)w;
}

ServeRequest *serve_request_new(Err *e) {
    ServeRequest *r = xcalloc(1, sizeof *r);
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        ERR(e, "eventfd: %s", strerror(errno));
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    buf_init(&r->out);
    atomic_init(&r->cancel, false);
    r->refs = 1;
    r->max_tokens = 1;
    return r;
}

static void request_destroy(ServeRequest *r) {
    close(r->efd);
    pthread_mutex_destroy(&r->mu);
    buf_free(&r->out);
    token_ids_free(&r->prompt);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r);
}

// Drop one reference; the caller holds s->mu.
static void unref_locked(ServeRequest *r) {
    if (--r->refs == 0) request_destroy(r);
}

void sched_release(Sched *s, ServeRequest *r) {
    if (!r) return;
    atomic_store(&r->cancel, true);
    pthread_mutex_lock(&s->mu);
    unref_locked(r);
    pthread_mutex_unlock(&s->mu);
}

ServeFinish serve_request_take(ServeRequest *r, Buf *out) {
    uint64_t v;
    ssize_t rd = read(r->efd, &v, sizeof v); // clear the signal before looking, so none is lost
    (void)rd;
    pthread_mutex_lock(&r->mu);
    if (r->out.len) buf_append(out, r->out.data, r->out.len);
    r->out.len = 0;
    ServeFinish f = r->finish;
    pthread_mutex_unlock(&r->mu);
    return f;
}

static bool emit_to_request(void *ctx, const char *text, size_t len) {
    ServeRequest *r = ctx;
    const double now = time_now();
    pthread_mutex_lock(&r->mu);
    buf_append(&r->out, text, len);
    if (r->t_first == 0) r->t_first = now;
    const bool wake = now - r->t_notify >= SCHED_STREAM_FLUSH_S; // t_notify = 0 before the first text
    if (wake) r->t_notify = now;
    r->unsent = !wake;
    pthread_mutex_unlock(&r->mu);
    if (wake) notify(r);
    return !atomic_load(&r->cancel);
}

// Signal the requests whose text has waited SCHED_STREAM_FLUSH_S (a slot that is between emits: a UTF-8 sequence
// or a possible stop string held back).
static void flush_stale(Sched *s) {
    const double now = time_now();
    for (int i = 0; i < s->n_slots; i++) {
        ServeRequest *r = s->slots[i].r;
        if (!r) continue;
        pthread_mutex_lock(&r->mu);
        const bool wake = r->unsent && now - r->t_notify >= SCHED_STREAM_FLUSH_S;
        if (wake) r->t_notify = now, r->unsent = false;
        pthread_mutex_unlock(&r->mu);
        if (wake) notify(r);
    }
}

// End the slot's request: publish the outcome, free the slot. Called by the scheduler thread only. The counters
// change before the client is told, so a client that asks /health right after its answer sees its request counted.
static void slot_finish(Sched *s, Slot *sl, ServeFinish f, const char *error) {
    ServeRequest *r = sl->r;
    if (f != SERVE_ERROR && f != SERVE_CANCELLED) generate_seq_finish(&sl->g);
    pthread_mutex_lock(&s->mu);
    sl->r = NULL;
    s->n_active--;
    s->n_served++;
    if (f == SERVE_CANCELLED) s->n_cancelled++;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&r->mu);
    r->finish = f;
    r->n_generated = sl->g.st.n_generated;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    pthread_mutex_unlock(&r->mu);
    notify(r);
    generate_seq_free(&sl->g);
    pthread_mutex_lock(&s->mu);
    unref_locked(r);
    pthread_mutex_unlock(&s->mu);
}

// Feed the prompt of a newly admitted request. Returns false when the request already ended.
static bool slot_start(Sched *s, Slot *sl) {
    ServeRequest *r = sl->r;
    Err e;
    r->t_start = time_now();
    if (atomic_load(&r->cancel)) return slot_finish(s, sl, SERVE_CANCELLED, NULL), false;
    if (r->deadline > 0 && r->t_start > r->deadline) return slot_finish(s, sl, SERVE_TIMEOUT, NULL), false;
    if (r->prompt.n == 0) return slot_finish(s, sl, SERVE_ERROR, "empty prompt"), false;
    model_state_reset(&sl->st);
    sl->smp.p = r->sp;
    sampler_reseed(&sl->smp, r->sp.seed);
    GenerateOpts o = {.max_tokens = r->max_tokens, .ignore_eos = r->ignore_eos, .emit = emit_to_request, .emit_ctx = r,
                      .stop = (const char *const *)r->stop, .n_stop = r->n_stop,
                      .stop_ids = r->stop_ids, .n_stop_ids = r->n_stop_ids};
    if (generate_seq_init(&sl->g, &s->m->cfg, s->tok, &sl->smp, r->prompt.ids, (int64_t)r->prompt.n, 0, sl->st.n_ctx, &o, &e))
        return slot_finish(s, sl, SERVE_ERROR, e.msg), false;
    pthread_mutex_lock(&r->mu);
    r->n_prompt = (int64_t)r->prompt.n;
    pthread_mutex_unlock(&r->mu);
    sl->fed = 0;
    return true;
}

// Whether the slot's request ended by cancellation or its time limit (then the slot is free again).
static bool slot_check_ended(Sched *s, Slot *sl) {
    ServeRequest *r = sl->r;
    if (atomic_load(&r->cancel)) return slot_finish(s, sl, SERVE_CANCELLED, NULL), true;
    if (r->deadline > 0 && time_now() > r->deadline) return slot_finish(s, sl, SERVE_TIMEOUT, NULL), true;
    return false;
}

// Add to the pass (n sequences, *rows tokens so far) pieces of up to budget prompt tokens in all, of slots still
// processing their prompts, oldest request first. Returns the new number of sequences.
static int prefill(Sched *s, int n, int64_t *rows, int64_t budget) {
    int64_t used = 0;
    for (;;) {
        Slot *sl = NULL;
        for (int i = 0; i < s->n_slots; i++) {
            Slot *c = &s->slots[i];
            if (c->r && !c->fresh && c->fed < (int64_t)c->r->prompt.n && c->piece == 0 && (!sl || c->order < sl->order)) sl = c;
        }
        if (!sl || budget - used < 2) return n;
        if (slot_check_ended(s, sl)) continue;
        const int64_t left = (int64_t)sl->r->prompt.n - sl->fed;
        int64_t take = left < budget - used ? left : budget - used;
        if (left - take == 1) take--; // never leave a single token for the next piece
        memcpy(s->batch_tokens + *rows, sl->r->prompt.ids + sl->fed, (size_t)take * sizeof(int32_t));
        sl->piece = take;
        s->batch_states[n] = &sl->st;
        s->batch_counts[n] = take;
        s->batch_slots[n++] = sl;
        *rows += take;
        used += take;
    }
}

// Candidates [i0, i1): their next tokens.
static void sample_range(void *ctx, int64_t i0, int64_t i1, int ith) {
    Sched *s = ctx;
    for (int64_t i = i0; i < i1; i++) {
        Slot *sl = s->cand[i];
        s->cand_rc[i] = generate_seq_next(&sl->g, sl->st.logits, sl->st.pos, sl->st.n_ctx, &s->cand_next[i], &s->cand_err[i]);
    }
}

static void *sched_main(void *arg) {
    Sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_active == 0 && s->q_len == 0) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        for (int i = 0; i < s->n_slots && s->q_len; i++) {
            Slot *sl = &s->slots[i];
            if (sl->r) continue;
            sl->r = s->queue[s->q_head];
            s->q_head = (s->q_head + 1) % s->q_cap;
            s->q_len--;
            sl->fresh = true;
            sl->order = s->n_admitted++;
            s->n_active++;
        }
        pthread_mutex_unlock(&s->mu);

        for (int i = 0; i < s->n_slots; i++) {
            Slot *sl = &s->slots[i];
            if (sl->r && sl->fresh) {
                sl->fresh = false;
                slot_start(s, sl);
            }
        }
        // one pass: a decoding row for every slot past its prompt, then prompt pieces. The slots sample their next
        // tokens (and stream their text) in parallel: that work is theirs alone.
        int nc = 0;
        for (int i = 0; i < s->n_slots; i++) {
            Slot *sl = &s->slots[i];
            if (!sl->r || sl->fed < (int64_t)sl->r->prompt.n) continue; // free, or its prompt is still being fed
            if (slot_check_ended(s, sl)) continue;
            s->cand[nc++] = sl;
        }
        threadpool_for(s->pool, nc, 1, sample_range, s);
        int n = 0;
        int64_t rows = 0;
        for (int i = 0; i < nc; i++) {
            Slot *sl = s->cand[i];
            int rc = s->cand_rc[i];
            if (rc == 1) {
                s->batch_states[n] = &sl->st;
                s->batch_counts[n] = 1;
                s->batch_tokens[rows++] = s->cand_next[i];
                s->batch_slots[n++] = sl;
            } else if (rc < 0) {
                slot_finish(s, sl, SERVE_ERROR, s->cand_err[i].msg);
            } else {
                const GenerateStats *st = &sl->g.st;
                ServeFinish f = st->stopped_by_eos || st->stopped_by_string ? SERVE_STOP
                              : sl->g.emitter_stopped ? SERVE_CANCELLED : SERVE_LENGTH;
                slot_finish(s, sl, f, NULL);
            }
        }
        n = prefill(s, n, &rows, SCHED_PREFILL_TOKENS);
        if (n) {
            Err e;
            if (model_forward_multi(s->batch_states, s->batch_tokens, s->batch_counts, n, &e)) {
                for (int i = 0; i < n; i++) slot_finish(s, s->batch_slots[i], SERVE_ERROR, e.msg);
            } else {
                for (int i = 0; i < n; i++) s->batch_slots[i]->fed += s->batch_slots[i]->piece;
            }
            for (int i = 0; i < n; i++) s->batch_slots[i]->piece = 0;
        }
        flush_stale(s);
    }
    // shutting down: end what runs and what waits
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].r) slot_finish(s, &s->slots[i], SERVE_CANCELLED, NULL);
    pthread_mutex_lock(&s->mu);
    while (s->q_len) {
        ServeRequest *r = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        pthread_mutex_lock(&r->mu);
        r->finish = SERVE_CANCELLED;
        pthread_mutex_unlock(&r->mu);
        notify(r);
        unref_locked(r);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

Sched *sched_new(const Model *m, const Tokenizer *tok, int n_slots, int64_t n_ctx, size_t queue_cap, ThreadPool *pool,
                 Err *e) {
    if (n_slots < 1 || n_slots > 256) return ERR(e, "--parallel must be 1 to 256 (got %d)", n_slots), NULL;
    if (queue_cap > 100000) return ERR(e, "--queue must be at most 100000 (got %zu)", queue_cap), NULL;
    Sched *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->tok = tok;
    s->n_slots = n_slots;
    s->slots = xcalloc((size_t)n_slots, sizeof *s->slots);
    for (int i = 0; i < n_slots; i++) {
        if (model_state_init(&s->slots[i].st, m, n_ctx, pool, e)) {
            for (int k = 0; k < i; k++) {
                model_state_free(&s->slots[k].st);
                sampler_free(&s->slots[k].smp);
            }
            free(s->slots);
            free(s);
            return NULL;
        }
        SamplerParams sp;
        sampler_params_default(&sp);
        sampler_init(&s->slots[i].smp, m->cfg.vocab_size, &sp);
    }
    s->n_ctx = s->slots[0].st.n_ctx;
    // the ring holds waiting requests plus, transiently, those about to take a free slot
    s->q_cap = queue_cap + (size_t)n_slots;
    s->queue = xcalloc(s->q_cap, sizeof *s->queue);
    s->batch_states = xcalloc((size_t)n_slots, sizeof *s->batch_states);
    s->batch_counts = xcalloc((size_t)n_slots, sizeof *s->batch_counts);
    s->batch_tokens = xcalloc((size_t)n_slots + SCHED_PREFILL_TOKENS, sizeof *s->batch_tokens);
    s->batch_slots = xcalloc((size_t)n_slots, sizeof *s->batch_slots);
    s->pool = pool;
    s->cand = xcalloc((size_t)n_slots, sizeof *s->cand);
    s->cand_rc = xcalloc((size_t)n_slots, sizeof *s->cand_rc);
    s->cand_next = xcalloc((size_t)n_slots, sizeof *s->cand_next);
    s->cand_err = xcalloc((size_t)n_slots, sizeof *s->cand_err);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = pthread_create(&s->th, NULL, sched_main, s);
    if (rc) {
        ERR(e, "cannot start the scheduler thread: %s", strerror(rc));
        s->th = 0;
        sched_free(s);
        return NULL;
    }
    return s;
}

void sched_free(Sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->th) pthread_join(s->th, NULL);
    for (int i = 0; i < s->n_slots; i++) {
        model_state_free(&s->slots[i].st);
        sampler_free(&s->slots[i].smp);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->slots);
    free(s->queue);
    free(s->batch_states);
    free(s->batch_tokens);
    free(s->batch_counts);
    free(s->cand);
    free(s->cand_rc);
    free(s->cand_next);
    free(s->cand_err);
    free(s->batch_slots);
    free(s);
}

int64_t sched_n_ctx(const Sched *s) { return s->n_ctx; }

void sched_stats(Sched *s, SchedStats *st) {
    pthread_mutex_lock(&s->mu);
    st->n_slots = s->n_slots;
    st->n_active = s->n_active;
    st->n_queued = s->q_len;
    st->queue_cap = s->q_cap - (size_t)s->n_slots;
    st->n_served = s->n_served;
    st->n_cancelled = s->n_cancelled;
    pthread_mutex_unlock(&s->mu);
}

int sched_submit(Sched *s, ServeRequest *r) {
    pthread_mutex_lock(&s->mu);
    // room: a free slot not yet claimed by a queued request, or a place in the waiting queue
    size_t busy = (size_t)s->n_active + s->q_len;
    bool room = s->q_len < s->q_cap && busy < s->q_cap;
    if (s->stopping || !room) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    r->t_submit = time_now();
    r->refs++;
    s->queue[(s->q_head + s->q_len) % s->q_cap] = r;
    s->q_len++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}
