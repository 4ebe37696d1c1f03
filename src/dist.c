/* dist.c - distance dispatch, metric mapping, normalization, finite check.
 *
 * Owns: the one-time choice of kernel variant for this CPU (dist_best), the
 * mapping from a metric to the kernel that orders neighbours and back to the
 * distance reported to users, dist_normalize and dist_all_finite.
 *
 * "Exact where cheaper" - the choices, each exact up to float rounding:
 *  - Cosine is the inner product of unit vectors: cos(a, b) = <a/|a|, b/|b|>.
 *    Vectors (and each query) are normalized once, at insert/search entry,
 *    so the hot loop runs one dot product instead of a dot product and two
 *    norms per pair. Internal distance -ip (nip), reported as 1 + nip = 1 - cos.
 *  - Euclidean is searched as squared L2: sqrt is monotonic, so the order of
 *    neighbours is the same; sqrt is taken only on the k reported results.
 *  - Dot is searched and reported as -ip (smaller = nearer); nip is its own
 *    kernel (not a wrapper around ip), so no extra indirect call.
 *  - L2 through precomputed norms (|a|^2 + |b|^2 - 2<a,b>) is NOT used: it is
 *    no cheaper in the SIMD loop (one FMA per element either way) and it
 *    loses precision by cancellation for near neighbours.
 *
 * Invariants: dist_best() returns the same pointer for the life of the
 * process; every variant agrees with dist_scalar_kernels to 1e-5 relative
 * (tests/unit/test_dist.c), so results do not depend on the CPU beyond
 * float rounding. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dist.h"

static const dist_kernels *g_best;
static pthread_once_t g_best_once = PTHREAD_ONCE_INIT;

/* 1 if the CPU (and OS, which must save the wide registers: libgcc checks
 * XCR0 before reporting avx/avx512) can run the named variant. */
static int cpu_can_run(const char *name)
{
    if (strcmp(name, "scalar") == 0)
        return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

const dist_kernels *dist_variant(const char *name)
{
    if (!name || !cpu_can_run(name))
        return NULL;
    if (strcmp(name, "scalar") == 0)
        return &dist_scalar_kernels;
#if defined(__x86_64__)
    if (strcmp(name, "avx2") == 0)
        return &dist_avx2_kernels;
    if (strcmp(name, "avx512") == 0)
        return &dist_avx512_kernels;
#endif
    return NULL;
}

/* Best first; DVECDB_SIMD names the best variant allowed. */
static void pick_best(void)
{
    static const char *const order[] = {"avx512", "avx2", "scalar"};
    const char *cap = getenv("DVECDB_SIMD");
    size_t start = 0;
    for (size_t i = 0; cap && i < sizeof order / sizeof order[0]; i++)
        if (strcmp(cap, order[i]) == 0)
            start = i;
    g_best = &dist_scalar_kernels;
    for (size_t i = start; i < sizeof order / sizeof order[0]; i++) {
        const dist_kernels *k = dist_variant(order[i]);
        if (k) {
            g_best = k;
            break;
        }
    }
}

const dist_kernels *dist_best(void)
{
    pthread_once(&g_best_once, pick_best);
    return g_best;
}

dist_fn dist_for_metric(dv_metric m)
{
    const dist_kernels *k = dist_best();
    switch (m) {
    case DV_METRIC_EUCLIDEAN:
        return k->l2sq;
    case DV_METRIC_COSINE:
    case DV_METRIC_DOT:
        return k->nip;
    case DV_METRIC_MANHATTAN:
        return k->l1;
    }
    return NULL;
}

float dist_report(dv_metric m, float internal)
{
    switch (m) {
    case DV_METRIC_EUCLIDEAN:
        /* rounding can leave l2sq a hair below 0 only in theory (it is a sum
         * of squares), but never report a NaN */
        return internal > 0.0f ? sqrtf(internal) : 0.0f;
    case DV_METRIC_COSINE:
        return 1.0f + internal;
    case DV_METRIC_DOT:
    case DV_METRIC_MANHATTAN:
        return internal;
    }
    return internal;
}

int dist_normalize(float *v, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * (double)v[i];
    if (s == 0.0)
        return 0;
    double inv = 1.0 / sqrt(s);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((double)v[i] * inv);
    return 1;
}

/* Exponent bits all ones = Inf or NaN; a bit test, no FP compare, so it is
 * also right under -ffast-math. */
int dist_all_finite(const float *v, size_t n)
{
    /* Branch-free over blocks of 64 so the compiler vectorizes it (it runs
     * over every vector at open: a per-element early exit made it 11% of
     * reopening Fashion-MNIST). A float is NaN or infinite iff its exponent
     * bits are all ones. */
    size_t i = 0;
    while (i < n) {
        size_t m = n - i < 64 ? n - i : 64;
        uint32_t bad = 0;
        for (size_t j = 0; j < m; j++) {
            uint32_t u;
            memcpy(&u, &v[i + j], sizeof u);
            bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        if (bad)
            return 0;
        i += m;
    }
    return 1;
}
