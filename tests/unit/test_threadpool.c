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

typedef struct {
    int64_t n, grain;
    atomic_int bad;  // pieces that were not [i0, i0 + grain) clipped to n, or a thread index out of range
    atomic_int *hits; // (n)
    int nt;
} ForCtx;

static void piece(void *vctx, int64_t i0, int64_t i1, int ith) {
    ForCtx *c = vctx;
    int64_t want = i0 + c->grain < c->n ? i0 + c->grain : c->n;
    if (i0 % c->grain != 0 || i1 != want || ith < 0 || ith >= c->nt) atomic_fetch_add(&c->bad, 1);
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&c->hits[i], 1);
}

// Dynamic pieces: every index exactly once per call, pieces aligned to the grain, for several pool sizes, grains
// that divide n or not, and n below one grain.
TEST(threadpool_for_covers_every_index_once) {
    const int64_t ns[] = {1, 7, 64, 1001};
    const int64_t grains[] = {1, 3, 8, 2000};
    for (int nt = 1; nt <= 3; nt++) {
        ThreadPool *p = threadpool_new(nt);
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t b = 0; b < sizeof grains / sizeof grains[0]; b++) {
                ForCtx c = {.n = ns[a], .grain = grains[b], .nt = nt};
                atomic_init(&c.bad, 0);
                c.hits = xcalloc((size_t)c.n, sizeof *c.hits);
                for (int run = 0; run < 300; run++) threadpool_for(p, c.n, c.grain, piece, &c);
                CHECKF(atomic_load(&c.bad) == 0, "n %lld grain %lld threads %d: %d bad pieces", (long long)c.n, (long long)c.grain, nt, atomic_load(&c.bad));
                for (int64_t i = 0; i < c.n; i++) CHECKF(atomic_load(&c.hits[i]) == 300, "index %lld hit %d times", (long long)i, atomic_load(&c.hits[i]));
                free(c.hits);
            }
        threadpool_free(p);
    }
}
