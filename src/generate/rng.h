/* xoshiro256** (Blackman & Vigna, 2018) seeded through splitmix64: a small, well-known
 * generator. State lives in the caller's struct (one per session); no global state. */
#ifndef LM_GENERATE_RNG_H
#define LM_GENERATE_RNG_H
#include <stdint.h>

typedef struct lm_rng {
    uint64_t s[4];
} lm_rng;

static inline uint64_t lm_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void lm_rng_seed(lm_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = lm_splitmix64(&seed);
}

static inline uint64_t lm_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t lm_rng_next(lm_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = lm_rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = lm_rng_rotl(s[3], 45);
    return out;
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double lm_rng_uniform(lm_rng *r) { return (double)(lm_rng_next(r) >> 11) * 0x1.0p-53; }

#endif
