/* test_dist.c - every SIMD kernel agrees with the scalar reference; metric
 * mapping, reporting, normalization and the finite check. */
#include <math.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include "t.h"
#include "dist.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

enum { K_L2, K_IP, K_L1, K_NIP };
static const char *const kname[] = {"l2sq", "ip", "l1", "nip"};

static dist_fn pick(const dist_kernels *k, int which)
{
    return which == K_L2 ? k->l2sq : which == K_IP ? k->ip : which == K_L1 ? k->l1 : k->nip;
}

/* Sum of |term| in double: the scale of the sum's rounding error. */
static double magnitude(int which, const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += which == K_L2 ? d * d : which == K_L1 ? fabs(d) : fabs((double)a[i] * b[i]);
    }
    return s;
}

/* 1e-5 relative; the floor 1e-6 * sum|term| only matters for an inner
 * product that cancels to near zero (for l2sq and l1, sum|term| = result). */
static int close_enough(double ref, double got, double mag)
{
    return fabs(got - ref) <= 1e-5 * fmax(fabs(ref), 0.1 * mag);
}

static const char *const simd_names[] = {"avx2", "avx512"};

/* Returns the number of variant x kernel x dim checks that failed (and
 * prints the first few); a, b get offsets 1..15 floats from a 64-byte line. */
static int compare_dim(const dist_kernels *v, size_t n, size_t off, float scale)
{
    static float abuf[4096 + 64] __attribute__((aligned(64)));
    static float bbuf[4096 + 64] __attribute__((aligned(64)));
    float *a = abuf + off, *b = bbuf + (off * 7) % 16;
    for (size_t i = 0; i < n; i++) {
        a[i] = frand() * scale;
        b[i] = frand() * scale;
    }
    int bad = 0;
    for (int w = K_L2; w <= K_NIP; w++) {
        double ref = pick(&dist_scalar_kernels, w)(a, b, n);
        double got = pick(v, w)(a, b, n);
        if (!close_enough(ref, got, magnitude(w, a, b, n))) {
            if (bad++ < 5)
                fprintf(stderr, "  %s %s n=%zu: scalar %.9g got %.9g\n", v->name, kname[w], n, ref, got);
        }
    }
    return bad;
}

TEST(every_cpu_variant_matches_scalar_on_dims_1_to_512_unaligned)
{
    int n_variants = 0;
    for (size_t s = 0; s < 2; s++) {
        const dist_kernels *v = dist_variant(simd_names[s]);
        if (!v)
            continue;
        n_variants++;
        int bad = 0;
        for (size_t n = 1; n <= 512; n++)
            bad += compare_dim(v, n, 1 + n % 15, 1.0f);
        CHECKF(bad == 0, "%s: %d mismatches", v->name, bad);
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        CHECKF(n_variants == 2, "cpu has avx512 but only %d variants ran", n_variants);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECKF(n_variants >= 1, "cpu has avx2+fma but no variant ran");
#endif
    fprintf(stderr, "  %d SIMD variants checked\n", n_variants);
}

TEST(every_cpu_variant_matches_scalar_on_sampled_dims_to_4096)
{
    static const size_t dims[] = {513, 527, 600, 767, 768, 769, 784, 1000, 1023, 1024, 1025,
                                  1535, 1536, 1537, 2047, 2048, 3071, 3072, 3073, 4000, 4095, 4096};
    for (size_t s = 0; s < 2; s++) {
        const dist_kernels *v = dist_variant(simd_names[s]);
        if (!v)
            continue;
        int bad = 0;
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
            bad += compare_dim(v, dims[i], i % 16, 1.0f);
            bad += compare_dim(v, dims[i], (i + 5) % 16, 1000.0f); /* large values */
        }
        for (int r = 0; r < 40; r++) /* random dims and offsets */
            bad += compare_dim(v, 513 + (size_t)((frand() + 1.0f) * 1791.0f), (size_t)r % 16, 3.0f);
        CHECKF(bad == 0, "%s: %d mismatches", v->name, bad);
    }
}

/* A vector whose last float ends a readable page, followed by an unmapped
 * one: a kernel that reads a single byte past n faults. Proves the masked
 * tails (and the 8/16-wide steps) never over-read. */
TEST(kernels_never_read_past_the_last_element)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t *m = mmap(NULL, (size_t)pg * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(mprotect(m + pg * 2, (size_t)pg, PROT_NONE) == 0);
    float *end = (float *)(void *)(m + pg * 2);
    const char *names[] = {"scalar", "avx2", "avx512"};
    for (size_t s = 0; s < 3; s++) {
        const dist_kernels *v = dist_variant(names[s]);
        if (!v)
            continue;
        for (size_t n = 1; n <= 200; n++) {
            float *a = end - n, *b = (float *)(void *)(m + pg) - n;
            for (size_t i = 0; i < n; i++) {
                a[i] = frand();
                b[i] = frand();
            }
            for (int w = K_L2; w <= K_NIP; w++) { /* a guarded as first and as second argument */
                (void)pick(v, w)(a, b, n);
                (void)pick(v, w)(b, a, n);
            }
            (void)v->l2sq_bounded(a, b, n, INFINITY);
            (void)v->l2sq_bounded(b, a, n, INFINITY);
        }
    }
    munmap(m, (size_t)pg * 3);
}

/* Under the bound: bit-identical to the variant's l2sq. Over it: a partial
 * sum that is itself over the bound and not above the full sum. And it
 * does stop early on long vectors (else it is just a slower l2sq). */
TEST(bounded_l2sq_is_exact_under_the_bound_and_stops_early_over_it)
{
    static float abuf[4096 + 16], bbuf[4096 + 16];
    const char *names[] = {"scalar", "avx2", "avx512"};
    static const size_t big[] = {600, 784, 1000, 1536, 2048, 3000, 4096};
    for (size_t s = 0; s < 3; s++) {
        const dist_kernels *v = dist_variant(names[s]);
        if (!v)
            continue;
        CHECK(v->l2sq_bounded != NULL);
        size_t n_early = 0, n_long_tight = 0;
        for (size_t t = 0; t < 512 + 7; t++) {
            size_t n = t < 512 ? t + 1 : big[t - 512];
            float *a = abuf + t % 16, *b = bbuf + (t * 3) % 16;
            for (size_t i = 0; i < n; i++) {
                a[i] = frand();
                b[i] = frand();
            }
            float full = v->l2sq(a, b, n);
            const float bounds[] = {INFINITY, full, nextafterf(full, 0.0f), full * 0.5f, full * 0.1f, 0.0f};
            for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
                float r = v->l2sq_bounded(a, b, n, bounds[k]);
                if (r <= bounds[k]) {
                    CHECKF(r == full, "%s n=%zu bound %g: %.9g != l2sq %.9g", v->name, n, bounds[k], r, full);
                } else {
                    CHECKF(full > bounds[k] && r <= full, "%s n=%zu bound %g: got %.9g, l2sq %.9g", v->name, n,
                           bounds[k], r, full);
                    if (r < full)
                        n_early++;
                }
                if (n >= 512 && k == 4)
                    n_long_tight++;
            }
        }
        CHECKF(n_early >= n_long_tight, "%s: stopped early %zu times, expected at least %zu", v->name, n_early,
               n_long_tight);
    }
}

TEST(identical_vectors_are_at_exactly_zero_l2_and_l1)
{
    float a[333];
    for (size_t i = 0; i < 333; i++)
        a[i] = frand() * 10.0f;
    const char *names[] = {"scalar", "avx2", "avx512"};
    for (size_t s = 0; s < 3; s++) {
        const dist_kernels *v = dist_variant(names[s]);
        if (!v)
            continue;
        for (size_t n = 1; n <= 333; n += 17) {
            CHECKF(v->l2sq(a, a, n) == 0.0f, "%s n=%zu", v->name, n);
            CHECKF(v->l1(a, a, n) == 0.0f, "%s n=%zu", v->name, n);
        }
    }
}

TEST(nip_is_exactly_minus_ip_in_every_variant)
{
    float a[300], b[300];
    for (size_t i = 0; i < 300; i++) {
        a[i] = frand();
        b[i] = frand();
    }
    const char *names[] = {"scalar", "avx2", "avx512"};
    for (size_t s = 0; s < 3; s++) {
        const dist_kernels *v = dist_variant(names[s]);
        if (!v)
            continue;
        for (size_t n = 1; n <= 300; n += 7)
            CHECKF(v->nip(a, b, n) == -v->ip(a, b, n), "%s n=%zu", v->name, n);
    }
}

TEST(scalar_kernels_compute_the_textbook_values)
{
    const float a[3] = {1, 2, 3}, b[3] = {4, -6, 8};
    CHECK(dist_scalar_kernels.l2sq(a, b, 3) == 9 + 64 + 25);
    CHECK(dist_scalar_kernels.ip(a, b, 3) == 4 - 12 + 24);
    CHECK(dist_scalar_kernels.nip(a, b, 3) == -(4 - 12 + 24));
    CHECK(dist_scalar_kernels.l1(a, b, 3) == 3 + 8 + 5);
}

TEST(best_variant_is_the_widest_the_cpu_runs_and_stable)
{
    const dist_kernels *b = dist_best();
    CHECK(b != NULL && b == dist_best());
    CHECK(b->l2sq && b->ip && b->l1 && b->nip && b->l2sq_bounded);
    CHECK(dist_variant("scalar") == &dist_scalar_kernels);
    CHECK(dist_variant("no-such-variant") == NULL);
    CHECK(dist_variant(NULL) == NULL);
    if (!getenv("DVECDB_SIMD")) {
        const dist_kernels *want = dist_variant("avx512");
        if (!want)
            want = dist_variant("avx2");
        if (!want)
            want = &dist_scalar_kernels;
        CHECKF(b == want, "best is %s, want %s", b->name, want->name);
    }
}

TEST(metric_maps_to_its_kernel_and_reported_distance)
{
    const dist_kernels *k = dist_best();
    CHECK(dist_for_metric(DV_METRIC_EUCLIDEAN) == k->l2sq);
    CHECK(dist_for_metric(DV_METRIC_COSINE) == k->nip);
    CHECK(dist_for_metric(DV_METRIC_DOT) == k->nip);
    CHECK(dist_for_metric(DV_METRIC_MANHATTAN) == k->l1);
    CHECK(dist_for_metric((dv_metric)99) == NULL);

    float a[2] = {3, 0}, b[2] = {0, 4};
    CHECK(dist_report(DV_METRIC_EUCLIDEAN, dist_for_metric(DV_METRIC_EUCLIDEAN)(a, b, 2)) == 5.0f);
    CHECK(dist_report(DV_METRIC_MANHATTAN, dist_for_metric(DV_METRIC_MANHATTAN)(a, b, 2)) == 7.0f);
    float c[2] = {2, 5};
    CHECK(dist_report(DV_METRIC_DOT, dist_for_metric(DV_METRIC_DOT)(a, c, 2)) == -6.0f);
    /* cosine over normalized vectors: orthogonal -> 1, same -> 0, opposite -> 2 */
    float u[2] = {1, 0}, w[2] = {0, 1}, o[2] = {-1, 0};
    dist_fn cf = dist_for_metric(DV_METRIC_COSINE);
    CHECK(dist_report(DV_METRIC_COSINE, cf(u, w, 2)) == 1.0f);
    CHECK(dist_report(DV_METRIC_COSINE, cf(u, u, 2)) == 0.0f);
    CHECK(dist_report(DV_METRIC_COSINE, cf(u, o, 2)) == 2.0f);
    CHECK(dist_report(DV_METRIC_EUCLIDEAN, 0.0f) == 0.0f);
    CHECK(!isnan(dist_report(DV_METRIC_EUCLIDEAN, -1e-7f)));
}

TEST(normalize_gives_unit_norm_and_keeps_direction)
{
    float v[777], orig[777];
    for (size_t i = 0; i < 777; i++)
        orig[i] = v[i] = frand() * 50.0f;
    CHECK(dist_normalize(v, 777) == 1);
    double s = 0;
    for (size_t i = 0; i < 777; i++)
        s += (double)v[i] * v[i];
    CHECKF(fabs(s - 1.0) < 1e-6, "norm^2 %.9g", s);
    double r = orig[0] / v[0];
    for (size_t i = 0; i < 777; i++)
        CHECKF(fabs(orig[i] / r - v[i]) < 1e-6, "i=%zu", i);

    /* huge and tiny values: no overflow or underflow (the norm is in double) */
    float big[4] = {1e30f, 1e30f, -1e30f, 1e30f}, tiny[2] = {1e-30f, 0};
    CHECK(dist_normalize(big, 4) == 1);
    CHECK(fabsf(big[0] - 0.5f) < 1e-6f && fabsf(big[2] + 0.5f) < 1e-6f);
    CHECK(dist_normalize(tiny, 2) == 1);
    CHECK(tiny[0] == 1.0f && tiny[1] == 0.0f);
}

TEST(normalize_leaves_a_zero_vector_alone)
{
    float z[5] = {0, 0, -0.0f, 0, 0};
    CHECK(dist_normalize(z, 5) == 0);
    for (size_t i = 0; i < 5; i++)
        CHECK(z[i] == 0.0f);
}

TEST(all_finite_rejects_nan_and_inf_anywhere)
{
    float v[100];
    for (size_t i = 0; i < 100; i++)
        v[i] = frand() * 3e38f;
    v[7] = 3.4028235e38f;   /* FLT_MAX is finite */
    v[8] = 1e-45f;          /* denormal is finite */
    v[9] = -0.0f;
    CHECK(dist_all_finite(v, 100) == 1);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (size_t b = 0; b < 3; b++)
        for (size_t pos = 0; pos < 100; pos += 33) {
            float keep = v[pos];
            v[pos] = bad[b];
            CHECKF(dist_all_finite(v, 100) == 0, "bad %zu at %zu", b, pos);
            CHECK(dist_all_finite(v, pos) == 1); /* only the prefix before it */
            v[pos] = keep;
        }
}

T_MAIN()
