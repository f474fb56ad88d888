// rng.h — the trainer's random numbers: a small, fully specified generator whose whole state is four words, so a
// checkpoint can store it and a resumed run draws exactly the numbers the uninterrupted run would have drawn.
//
// xoshiro256** (Blackman & Vigna) seeded through splitmix64; normals by Box-Muller in double. Used for weight
// initialisation, the data loader's shuffles and the training samples; each user owns its own TrainRng, so adding
// draws in one place (a sample) never shifts the numbers another place (the data order) sees.
#ifndef LOSSY_TRAIN_RNG_H
#define LOSSY_TRAIN_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct TrainRng {
    uint64_t s[4];
} TrainRng;

static inline uint64_t rng_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Seed from a 64-bit value and a stream id (different streams of one seed are independent sequences).
static inline void rng_seed(TrainRng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
    for (int i = 0; i < 4; i++) r->s[i] = rng_splitmix64(&x);
}

static inline uint64_t rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(TrainRng *r) {
    uint64_t *s = r->s;
    uint64_t result = rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return result;
}

// Uniform double in [0, 1) with 53 random bits.
static inline double rng_uniform(TrainRng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

// Uniform integer in [0, n) without modulo bias (n > 0).
static inline uint64_t rng_below(TrainRng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_next(r);
    while (x >= limit);
    return x % n;
}

// Standard normal (one Box-Muller draw per call; the second value is discarded to keep the state simple).
static inline double rng_normal(TrainRng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

#endif
