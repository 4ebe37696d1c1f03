/* dist.h - float32 distance kernels with runtime SIMD dispatch.
 *
 * Kernels return the raw quantity; the metric's distance is built on top:
 *   Euclidean: l2sq (sqrt only when reported), Cosine: 1 - ip over
 *   normalized vectors (normalized once at insert), Dot: -ip, Manhattan: l1.
 * Inputs need not be aligned. n >= 1. */
#ifndef DV_DIST_H
#define DV_DIST_H
#include <stddef.h>
#include "dvecdb.h"

typedef float (*dist_fn)(const float *a, const float *b, size_t n);
/* l2sq that may stop early: returns exactly l2sq(a, b, n) of the same variant
 * when that is <= bound; otherwise some partial sum s with bound < s <=
 * l2sq(a, b, n) (the sum of squares only grows, so a partial sum over the
 * bound proves the whole one is). Checked every 256 floats. For a search that
 * drops any candidate farther than its current worst result. */
typedef float (*dist_bfn)(const float *a, const float *b, size_t n, float bound);

typedef struct dist_kernels {
    const char *name; /* "scalar", "avx2", "avx512", "neon" */
    dist_fn l2sq;
    dist_fn ip;
    dist_fn l1;
    dist_fn nip;           /* -ip: the internal distance of COSINE and DOT (smaller = nearer) */
    dist_bfn l2sq_bounded; /* for unit vectors, l2sq = 2 + 2 * nip: usable for COSINE too */
} dist_kernels;

/* The variants, defined in dist_scalar.c / dist_avx2.c / dist_avx512.c.
 * Use dist_best() / dist_variant(): these say nothing about the CPU. */
extern const dist_kernels dist_scalar_kernels;
#if defined(__x86_64__)
extern const dist_kernels dist_avx2_kernels;
extern const dist_kernels dist_avx512_kernels;
#endif

/* The best variant for this CPU, chosen once (thread-safe): avx512 > avx2 >
 * scalar. Env DVECDB_SIMD=scalar|avx2|avx512 caps the choice (benchmarks,
 * debugging); a name the CPU cannot run is ignored. */
const dist_kernels *dist_best(void);
/* A named variant, or NULL if not compiled in or the CPU lacks it (tests). */
const dist_kernels *dist_variant(const char *name);

/* Kernel whose value orders neighbours for metric m (smaller = nearer):
 * EUCLIDEAN -> l2sq, COSINE/DOT -> nip (-ip, its own kernel), MANHATTAN -> l1.
 * Search code works in this "internal distance". */
dist_fn dist_for_metric(dv_metric m); /* NULL for an unknown metric */
/* internal distance -> reported distance (sqrt for L2, 1+x for cosine, x for dot, x for L1). */
float dist_report(dv_metric m, float internal);

/* Scale v to unit L2 norm in place (norm computed in double); returns 1, or 0
 * for a zero vector, which is left as is. */
int dist_normalize(float *v, size_t n);
/* 1 if every value is finite. */
int dist_all_finite(const float *v, size_t n);

/* Exact k-NN over rows: vecs is n_rows x dim, row i has label ids[i] (or i if ids
 * NULL); accept(ctx, label) filters (NULL = all). Writes up to k results
 * nearest first; returns the count. */
typedef int (*dist_accept_fn)(void *ctx, uint32_t label);
size_t flat_search(const float *vecs, const uint32_t *ids, size_t n_rows, size_t dim, dist_fn fn, const float *q,
                   size_t k, dist_accept_fn accept, void *ctx, uint32_t *out_ids, float *out_dists);
#endif
