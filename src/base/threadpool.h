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

// Split [0, n) into nth nearly equal contiguous parts; part ith is [*start, *end).
static inline void threadpool_split(int64_t n, int ith, int nth, int64_t *start, int64_t *end) {
    int64_t per = n / nth, rem = n % nth;
    *start = ith * per + (ith < rem ? ith : rem);
    *end = *start + per + (ith < rem ? 1 : 0);
}

#endif
