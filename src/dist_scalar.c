/* dist_scalar.c - the portable reference kernels.
 *
 * Owns: dist_scalar_kernels, the variant every SIMD variant is tested
 * against, and the fallback on CPUs without AVX2+FMA.
 * Invariant: each kernel accumulates in double, so it is the most exact
 * variant (the SIMD ones must agree with it to 1e-5 relative); this costs
 * little on the CPUs that actually run it, where memory is the bottleneck. */
#include "dist.h"

static float l2sq_scalar(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return (float)s;
}

static double ip_sum(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

static float ip_scalar(const float *a, const float *b, size_t n)
{
    return (float)ip_sum(a, b, n);
}

static float nip_scalar(const float *a, const float *b, size_t n)
{
    return (float)-ip_sum(a, b, n);
}

static float l1_scalar(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d < 0 ? -d : d;
    }
    return (float)s;
}

const dist_kernels dist_scalar_kernels = {
    .name = "scalar", .l2sq = l2sq_scalar, .ip = ip_scalar, .l1 = l1_scalar, .nip = nip_scalar,
};
