// sched.h — the server's scheduler: N slots decoding together, fed from a bounded queue (continuous batching).
//
// One scheduler thread owns the model work. Each slot has its own ModelState (KV cache) and Sampler. Every
// iteration it admits queued requests into free slots, feeds a bounded piece of the waiting prompts (oldest first,
// so a long prompt never stalls the other slots' decoding for more than one piece), then samples one token for every
// slot whose prompt is in (the shared GenerateSeq logic of `lossy run`: penalties, stop strings, UTF-8-safe text)
// and steps all of them with one model_forward_batch call (each weight read once for all slots). A slot whose request ends — end of turn, stop string, token or time
// limit, cancellation — is refilled on the next iteration while the others keep going. A slot runs the same
// forward/sample sequence as `lossy run`, so a request's text depends only on its prompt, settings and seed.
//
// Requests are shared by two owners, the HTTP side and the scheduler (reference counted). The scheduler appends
// generated text to the request under its lock and signals the request's eventfd; the HTTP side polls that fd
// together with its socket, so a client disconnect is seen at once and cancels the request (freeing its slot).
// The first text and the end are signalled at once; text in between at most every SCHED_STREAM_FLUSH_S, so a fast
// model streams a few tokens per event instead of waking the connection's thread (and its client) for every token.
#ifndef LOSSY_SERVE_SCHED_H
#define LOSSY_SERVE_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "model/model.h"
#include "sample/generate.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

typedef enum ServeFinish {
    SERVE_RUNNING = 0,
    SERVE_STOP,      // end-of-turn token or stop string
    SERVE_LENGTH,    // max_tokens or the context is full
    SERVE_TIMEOUT,   // the per-request time limit (reported to clients as "length")
    SERVE_CANCELLED, // the client went away
    SERVE_ERROR,
} ServeFinish;

typedef struct ServeRequest {
    // ---- input, set before sched_submit, read-only afterwards ----
    TokenIds prompt;
    SamplerParams sp;
    int64_t max_tokens;
    bool ignore_eos;
    char **stop;            // owned (n_stop)
    size_t n_stop;
    int32_t stop_ids[4];    // extra end-of-generation ids (chat end-of-turn)
    size_t n_stop_ids;
    double deadline;        // time_now() limit; 0 = none

    // ---- output, under mu ----
    pthread_mutex_t mu;
    Buf out;                // text generated and not yet taken by the HTTP side
    ServeFinish finish;
    char error[256];
    int64_t n_prompt, n_generated;
    double t_submit, t_start, t_first; // queued; slot assigned; first token sampled (time_now)
    double t_notify;        // when the HTTP side was last signalled new text
    bool unsent;            // text appended since then

    atomic_bool cancel;     // set by the HTTP side
    int efd;                // eventfd, readable when out/finish changed
    int refs;               // under the scheduler's lock
} ServeRequest;

typedef struct Sched Sched;

typedef struct SchedStats {
    int n_slots, n_active;
    size_t n_queued, queue_cap;
    uint64_t n_served;    // requests ended (any way)
    uint64_t n_cancelled; // of which ended by their client going away
} SchedStats;

// n_ctx <= 0: the model's context (capped at 4096). The tokenizer decodes text and supplies end-of-generation ids.
Sched *sched_new(const Model *m, const Tokenizer *tok, int n_slots, int64_t n_ctx, size_t queue_cap, ThreadPool *pool,
                 Err *e);
// Cancel everything, stop the thread, free the slots.
void sched_free(Sched *s);
int64_t sched_n_ctx(const Sched *s);
void sched_stats(Sched *s, SchedStats *st);

// A new request with refs = 1 (the caller's), its eventfd open; NULL with e filled when no fd is left.
ServeRequest *serve_request_new(Err *e);
// Queue it (the scheduler takes a reference). -1 when the queue is full (the caller answers 503).
int sched_submit(Sched *s, ServeRequest *r);
// Drop the caller's reference (cancelling the request when it is still running).
void sched_release(Sched *s, ServeRequest *r);
// Move the pending text into out (appending) and return the finish state, under the request's lock.
ServeFinish serve_request_take(ServeRequest *r, Buf *out);

#endif
