// serve_batch_bench.c — the cost of one batched decoding step (model_forward_batch over S states, what `lossy serve`
// runs per token with S busy slots) against S single steps (model_forward of one token per state, what S requests
// served one after another would cost). Prints, for S = 1, 2, 4, 8: ms per batched step, ms for S single steps and
// the ratio, and ms per prompt of PROMPT tokens. Best of several repeats (the machine is shared).
//
//   cc -O2 -Isrc bench/serve_batch_bench.c build/release/liblossy.a -lpcre2-8 -ljansson -lutf8proc -lm -lpthread \
//      -o build/serve_batch_bench   (add -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lstdc++ in CUDA builds)
//   build/serve_batch_bench MODEL.gguf [THREADS=2] [CONTEXT=64] [PROMPT=32]
// CONTEXT: tokens already in each state's cache when the steps are timed (attention cost grows with it).
#include <stdio.h>
#include <stdlib.h>

#include "base/util.h"
#include "model/model.h"

#define MAX_S 8

static double best_of(int reps, double (*fn)(void *), void *ctx) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = fn(ctx);
        if (t < best) best = t;
    }
    return best;
}

typedef struct Ctx {
    ModelState *st[MAX_S];
    int64_t S, ctx_len, steps;
    int32_t tok[MAX_S];
    int32_t prompt[512];
    int64_t n_prompt;
    Err e;
} Ctx;

static void rewind_states(Ctx *c) {
    for (int64_t k = 0; k < c->S; k++) c->st[k]->pos = c->ctx_len;
}

static double run_batched(void *p) {
    Ctx *c = p;
    rewind_states(c);
    double t0 = time_now();
    for (int64_t i = 0; i < c->steps; i++)
        if (model_forward_batch(c->st, c->tok, c->S, &c->e)) fprintf(stderr, "%s\n", c->e.msg), exit(1);
    return (time_now() - t0) / (double)c->steps;
}

static double run_single(void *p) {
    Ctx *c = p;
    rewind_states(c);
    double t0 = time_now();
    for (int64_t i = 0; i < c->steps; i++)
        for (int64_t k = 0; k < c->S; k++)
            if (model_forward(c->st[k], &c->tok[k], 1, &c->e)) fprintf(stderr, "%s\n", c->e.msg), exit(1);
    return (time_now() - t0) / (double)c->steps;
}

static double run_prompt(void *p) {
    Ctx *c = p;
    double t0 = time_now();
    model_state_reset(c->st[0]);
    if (model_forward(c->st[0], c->prompt, c->n_prompt, &c->e)) fprintf(stderr, "%s\n", c->e.msg), exit(1);
    return time_now() - t0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [THREADS=2] [CONTEXT=64] [PROMPT=32]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    Ctx c = {.ctx_len = argc > 3 ? atoll(argv[3]) : 64, .n_prompt = argc > 4 ? atoll(argv[4]) : 32, .steps = 16};
    if (c.n_prompt < 1 || c.n_prompt > 512 || c.ctx_len < 1) return fprintf(stderr, "bad CONTEXT or PROMPT\n"), 2;
    Model m;
    if (model_load(&m, argv[1], &c.e)) return fprintf(stderr, "%s\n", c.e.msg), 1;
    ThreadPool *pool = threadpool_new(threads);
    ModelState states[MAX_S];
    int32_t *fill = xmalloc_array((size_t)c.ctx_len, sizeof *fill);
    for (int64_t i = 0; i < c.ctx_len; i++) fill[i] = (int32_t)((i * 7 + 3) % m.cfg.vocab_size);
    for (int64_t i = 0; i < c.n_prompt; i++) c.prompt[i] = (int32_t)((i * 11 + 5) % m.cfg.vocab_size);
    for (int k = 0; k < MAX_S; k++) {
        if (model_state_init(&states[k], &m, c.ctx_len + c.steps + 1 > c.n_prompt ? c.ctx_len + c.steps + 1 : c.n_prompt, pool, &c.e) ||
            model_forward(&states[k], fill, c.ctx_len, &c.e))
            return fprintf(stderr, "%s\n", c.e.msg), 1;
        c.st[k] = &states[k];
        c.tok[k] = (int32_t)((k * 13 + 1) % m.cfg.vocab_size);
    }
    printf("model %s: %lld layers, dim %lld, %.1f MB of weights per token; %d threads, %lld tokens of context\n", argv[1],
           (long long)m.cfg.n_layer, (long long)m.cfg.n_embd, (double)model_weight_bytes(&m) / 1e6, threads, (long long)c.ctx_len);
    printf("%4s %14s %16s %8s %14s\n", "S", "batched ms", "S singles ms", "ratio", "batch tok/s");
    for (int64_t S = 1; S <= MAX_S; S *= 2) {
        c.S = S;
        double tb = best_of(40, run_batched, &c), ts = best_of(40, run_single, &c);
        printf("%4lld %14.3f %16.3f %8.2f %14.0f\n", (long long)S, tb * 1e3, ts * 1e3, ts / tb, (double)S / tb);
    }
    double tp = best_of(5, run_prompt, &c);
    printf("prompt of %lld tokens: %.3f ms (%.0f tok/s)\n", (long long)c.n_prompt, tp * 1e3, (double)c.n_prompt / tp);
    for (int k = 0; k < MAX_S; k++) model_state_free(&states[k]);
    free(fill);
    threadpool_free(pool);
    model_free(&m);
    return 0;
}
