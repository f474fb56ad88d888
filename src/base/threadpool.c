// threadpool.c — persistent worker threads with a generation counter (see threadpool.h).
//
// Waiting (a worker for the next run, the caller for the workers to finish) goes in three stages:
//   1. spin on the atomic for up to SPIN_NS: decoding issues runs microseconds apart, and a futex round trip would
//      cost more than the work of a small product;
//   2. sched_yield for up to YIELD_NS: on a machine with more runnable threads than cores (shared build machines,
//      a pool larger than the core count) the thread we wait for may be waiting for our core, and spinning would
//      burn the time slice it needs;
//   3. block on a condition variable.
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cpu.h"
#include "base/util.h"

#define SPIN_NS 50000    // 50 us
#define YIELD_NS 2000000 // 2 ms

// threadpool_for: each thread starts on its own contiguous share of the pieces (one memory stream per thread, an
// atomic counter no other thread touches until it runs out of work), then helps the others from where they are.
typedef struct ForShare {
    _Alignas(64) atomic_int_fast64_t next; // first index of the share not yet handed out
    int64_t end;
} ForShare;

struct ThreadPool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    ThreadFn fn;
    void *ctx;
    atomic_uint_fast64_t generation; // bumped once per run
    atomic_int pending;              // workers still running the current run
    atomic_int stop;
    ForShare *shares;                // (n) threadpool_for's per-thread shares
};

typedef struct {
    ThreadPool *p;
    int ith;
} WorkerArg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// Spin, then yield, while cond(p, arg) holds; returns whether it still holds (the caller then blocks).
static bool wait_busy(ThreadPool *p, bool (*cond)(ThreadPool *, uint64_t), uint64_t arg) {
    if (!cond(p, arg)) return false;
    int64_t t0 = now_ns();
    for (unsigned i = 1;; i++) {
        cpu_relax();
        if (!cond(p, arg)) return false;
        if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) break;
    }
    while (now_ns() - t0 < YIELD_NS) {
        sched_yield();
        if (!cond(p, arg)) return false;
    }
    return true;
}

static bool no_new_run(ThreadPool *p, uint64_t seen) {
    return atomic_load(&p->generation) == seen && !atomic_load(&p->stop);
}

static bool workers_busy(ThreadPool *p, uint64_t unused) {
    (void)unused;
    return atomic_load(&p->pending) > 0;
}

static void *worker(void *arg) {
    WorkerArg *wa = arg;
    ThreadPool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        if (wait_busy(p, no_new_run, seen)) {
            pthread_mutex_lock(&p->mu);
            while (no_new_run(p, seen)) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->generation);
        p->fn(p->ctx, ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

ThreadPool *threadpool_new(int n_threads) {
    if (n_threads <= 0) n_threads = cpu_features()->n_cores;
    if (n_threads > 512) n_threads = 512;
    ThreadPool *p = xcalloc(1, sizeof *p);
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    p->threads = xcalloc((size_t)n_threads, sizeof *p->threads);
    p->shares = aligned_alloc(64, (size_t)n_threads * sizeof *p->shares);
    if (!p->shares) {
        fprintf(stderr, "lossy: fatal: out of memory allocating the thread pool (%s:%d)\n", __FILE__, __LINE__);
        abort();
    }
    for (int i = 1; i < n_threads; i++) {
        WorkerArg *wa = xmalloc(sizeof *wa);
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            // fewer threads than asked is still correct: shrink the pool
            free(wa);
            p->n = i;
            break;
        }
    }
    return p;
}

void threadpool_free(ThreadPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p->shares);
    free(p);
}

int threadpool_size(const ThreadPool *p) { return p ? p->n : 1; }

void threadpool_run(ThreadPool *p, ThreadFn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    if (wait_busy(p, workers_busy, 0)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

typedef struct ForJob {
    ThreadRangeFn fn;
    void *ctx;
    int64_t n, grain;
    ForShare *shares; // (nth)
} ForJob;

static void for_worker(void *ctx, int ith, int nth) {
    ForJob *j = ctx;
    for (int k = 0; k < nth; k++) {
        ForShare *sh = &j->shares[(ith + k) % nth];
        for (;;) {
            int64_t i0 = atomic_fetch_add(&sh->next, j->grain);
            if (i0 >= sh->end) break;
            j->fn(j->ctx, i0, i0 + j->grain < sh->end ? i0 + j->grain : sh->end, ith);
        }
    }
}

void threadpool_for(ThreadPool *p, int64_t n, int64_t grain, ThreadRangeFn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int nth = p && n > grain ? p->n : 1;
    ForShare one;
    ForJob j = {fn, ctx, n, grain, nth > 1 ? p->shares : &one};
    const int64_t pieces = (n + grain - 1) / grain;
    for (int t = 0; t < nth; t++) { // shares start and end on piece boundaries
        int64_t a, b;
        threadpool_split(pieces, t, nth, &a, &b);
        atomic_init(&j.shares[t].next, a * grain);
        j.shares[t].end = b * grain < n ? b * grain : n;
    }
    if (nth == 1) for_worker(&j, 0, 1);
    else threadpool_run(p, for_worker, &j);
}
