// test_threadpool.c — every thread runs once per run, splits cover the range exactly, many runs back to back.
#include <stdatomic.h>
#include <stdlib.h>

#include "base/threadpool.h"
#include "test.h"

typedef struct {
    atomic_int calls;
    atomic_int mask;
    int64_t n;
    int32_t *hits; // (n)
} Ctx;

static void work(void *vctx, int ith, int nth) {
    Ctx *c = vctx;
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_or(&c->mask, 1 << ith);
    int64_t s, e;
    threadpool_split(c->n, ith, nth, &s, &e);
    for (int64_t i = s; i < e; i++) c->hits[i]++;
}

TEST(threadpool_runs_each_thread_and_covers_range) {
    for (int nt = 1; nt <= 4; nt++) {
        ThreadPool *p = threadpool_new(nt);
        REQUIRE(threadpool_size(p) == nt);
        Ctx c;
        c.n = 1001;
        c.hits = xcalloc((size_t)c.n, sizeof *c.hits);
        for (int run = 0; run < 2000; run++) {
            atomic_store(&c.calls, 0);
            atomic_store(&c.mask, 0);
            threadpool_run(p, work, &c);
            if (atomic_load(&c.calls) != nt || atomic_load(&c.mask) != (1 << nt) - 1) {
                CHECKF(0, "run %d with %d threads: %d calls", run, nt, atomic_load(&c.calls));
                break;
            }
        }
        for (int64_t i = 0; i < c.n; i++) CHECKF(c.hits[i] == 2000, "index %lld hit %d times", (long long)i, c.hits[i]);
        free(c.hits);
        threadpool_free(p);
    }
    int64_t s, e;
    threadpool_split(10, 2, 3, &s, &e);
    CHECK(s == 7 && e == 10);
    threadpool_split(2, 2, 3, &s, &e);
    CHECK(s == 2 && e == 2);
}
