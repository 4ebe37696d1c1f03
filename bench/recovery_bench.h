/* recovery_bench.h - the synthetic data of the recovery benchmark, shared by
 * bench/recovery_bench.c (the engine) and bench/recovery_bench.cpp (native
 * hnswlib), so that both index exactly the same vectors without a second
 * copy on disk.
 *
 * Clustered float32: RB_CLUSTERS centres uniform in [-1, 1]^dim, each point
 * its centre plus noise (sum of two uniforms, +-0.3), from xorshift64 with
 * a fixed seed: point i depends only on (seed, i), so any subset can be
 * regenerated to check what came back. */
#ifndef RECOVERY_BENCH_H
#define RECOVERY_BENCH_H
#include <stdint.h>
#include <stdio.h>

#define RB_CLUSTERS 64
#define RB_SEED 20261125u

static inline uint64_t rb_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static inline float rb_unit(uint64_t *s) /* [-1, 1) */
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((double)(*s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* Point i (dim floats) into v. */
static inline void rb_point(uint64_t seed, uint64_t i, uint32_t dim, float *v)
{
    uint64_t c = rb_mix(seed ^ (i * 0x9E3779B97F4A7C15ull)) % RB_CLUSTERS;
    uint64_t sc = rb_mix(seed * 31 + c + 1) | 1, sn = rb_mix(seed * 17 + i + 0x1234567) | 1;
    for (uint32_t k = 0; k < dim; k++)
        v[k] = rb_unit(&sc) + 0.15f * (rb_unit(&sn) + rb_unit(&sn));
}

/* The UUID of point i (version-4 bits set) and its canonical string. */
static inline void rb_uuid(uint64_t seed, uint64_t i, uint8_t u[16], char s[37])
{
    uint64_t a = rb_mix(seed + 2 * i + 11), b = rb_mix(seed + 2 * i + 12);
    for (int k = 0; k < 8; k++) {
        u[k] = (uint8_t)(a >> (8 * k));
        u[8 + k] = (uint8_t)(b >> (8 * k));
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(s, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
             u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}
#endif
