// threadpool.h — one persistent pool of worker threads for every parallel loop in lossy.
//
// threadpool_run(pool, fn, ctx) calls fn(ctx, ith, nth) once on each of the pool's nth threads (the caller is thread
// 0) and returns when all are done. Threads are created once, at threadpool_new; a run costs no allocation and no
// thread creation, so the per-token path can call it for every matrix product. Workers spin briefly for the next
// run (the per-token path issues runs back to back) and then sleep on a condition variable.
#ifndef LOSSY_THREADPOOL_H
#define LOSSY_THREADPOOL_H

#include <stdint.h>

typedef struct ThreadPool ThreadPool;
typedef void (*ThreadFn)(void *ctx, int ith, int nth);

// n_threads <= 0: the number of online CPUs.
ThreadPool *threadpool_new(int n_threads);
void threadpool_free(ThreadPool *p);
int threadpool_size(const ThreadPool *p);
void threadpool_run(ThreadPool *p, ThreadFn fn, void *ctx);

// fn(ctx, i0, i1, ith) over [0, n) in pieces of `grain` (the last one shorter), handed out to the pool's threads
// as they come for them. With a static split a thread that the OS deschedules mid-run (a shared machine, a server's
// HTTP threads and clients on the same cores) stalls every other thread at the end of the run; here the others take
// over its remaining pieces and only the piece it holds is late. Which thread runs a piece varies from run to run,
// so fn's results must not depend on it (ith only selects per-thread scratch).
typedef void (*ThreadRangeFn)(void *ctx, int64_t i0, int64_t i1, int ith);
void threadpool_for(ThreadPool *p, int64_t n, int64_t grain, ThreadRangeFn fn, void *ctx);

// Split [0, n) into nth nearly equal contiguous parts; part ith is [*start, *end).
static inline void threadpool_split(int64_t n, int ith, int nth, int64_t *start, int64_t *end) {
    int64_t per = n / nth, rem = n % nth;
    *start = ith * per + (ith < rem ? ith : rem);
    *end = *start + per + (ith < rem ? 1 : 0);
}

#endif
