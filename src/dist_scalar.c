/* dist_scalar.c - the portable reference kernels.
 *
 * Owns: dist_scalar_kernels, the variant every SIMD variant is tested
 * against, and the fallback on CPUs without AVX2+FMA.
 * Invariant: each kernel accumulates in double, so it is the most exact
 * variant (the SIMD ones must agree with it to 1e-5 relative). Four
 * independent accumulators let the adds overlap (a single chain waits the
 * full add latency per element); in double the order barely matters. */
#include "dist.h"

static float l2sq_scalar(const float *a, const float *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double d0 = (double)a[i] - b[i], d1 = (double)a[i + 1] - b[i + 1];
        double d2 = (double)a[i + 2] - b[i + 2], d3 = (double)a[i + 3] - b[i + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < n; i++) {
        double d = (double)a[i] - b[i];
        s0 += d * d;
    }
    return (float)((s0 + s1) + (s2 + s3));
}

/* l2sq_scalar's loop with a look at the partial sum every 256 floats; the
 * accumulators are the same, so an unabandoned result is identical. */
static float l2sq_bounded_scalar(const float *a, const float *b, size_t n, float bound)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    while (i + 4 <= n) {
        double d0 = (double)a[i] - b[i], d1 = (double)a[i + 1] - b[i + 1];
        double d2 = (double)a[i + 2] - b[i + 2], d3 = (double)a[i + 3] - b[i + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
        i += 4;
        if ((i & 255) == 0 && i < n) {
            float part = (float)((s0 + s1) + (s2 + s3));
            if (part > bound)
                return part;
        }
    }
    for (; i < n; i++) {
        double d = (double)a[i] - b[i];
        s0 += d * d;
    }
    return (float)((s0 + s1) + (s2 + s3));
}

static double ip_sum(const float *a, const float *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)a[i] * b[i];
        s1 += (double)a[i + 1] * b[i + 1];
        s2 += (double)a[i + 2] * b[i + 2];
        s3 += (double)a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += (double)a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static float ip_scalar(const float *a, const float *b, size_t n)
{
    return (float)ip_sum(a, b, n);
}

static float nip_scalar(const float *a, const float *b, size_t n)
{
    return (float)-ip_sum(a, b, n);
}

static inline double absd(double x)
{
    return x < 0 ? -x : x;
}

static float l1_scalar(const float *a, const float *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += absd((double)a[i] - b[i]);
        s1 += absd((double)a[i + 1] - b[i + 1]);
        s2 += absd((double)a[i + 2] - b[i + 2]);
        s3 += absd((double)a[i + 3] - b[i + 3]);
    }
    for (; i < n; i++)
        s0 += absd((double)a[i] - b[i]);
    return (float)((s0 + s1) + (s2 + s3));
}

const dist_kernels dist_scalar_kernels = {
    .name = "scalar",
    .l2sq = l2sq_scalar,
    .ip = ip_scalar,
    .l1 = l1_scalar,
    .nip = nip_scalar,
    .l2sq_bounded = l2sq_bounded_scalar,
};
