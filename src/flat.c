/* flat.c - exact (brute-force) k-nearest-neighbour search.
 *
 * Owns: flat_search, used for ground truth in tests, for small collections
 * and for filters so selective that a graph walk would visit mostly rejects.
 * Invariants: results are the k smallest (distance, label) pairs among the
 * accepted rows, ascending; ties on distance break by smaller label, so the
 * output is deterministic. A NaN distance counts as +Inf (never displaces a
 * real neighbour). No allocation: the caller's output arrays hold the heap. */
#include <math.h>
#include "dist.h"

/* (d1, l1) orders after (d2, l2)? */
static inline int after(float d1, uint32_t l1, float d2, uint32_t l2)
{
    return d1 > d2 || (d1 == d2 && l1 > l2);
}

/* Restore the max-heap property (worst at 0) below position i in a heap of n. */
static void sift_down(uint32_t *ids, float *ds, size_t n, size_t i)
{
    float d = ds[i];
    uint32_t l = ids[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && after(ds[c + 1], ids[c + 1], ds[c], ids[c]))
            c++;
        if (!after(ds[c], ids[c], d, l))
            break;
        ds[i] = ds[c];
        ids[i] = ids[c];
        i = c;
    }
    ds[i] = d;
    ids[i] = l;
}

static void sift_up(uint32_t *ids, float *ds, size_t i)
{
    float d = ds[i];
    uint32_t l = ids[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!after(d, l, ds[p], ids[p]))
            break;
        ds[i] = ds[p];
        ids[i] = ids[p];
        i = p;
    }
    ds[i] = d;
    ids[i] = l;
}

/* One pass over the rows keeping a bounded max-heap of the k best in
 * out_ids/out_dists, then an in-place heap sort to ascending order. */
size_t flat_search(const float *vecs, const uint32_t *ids, size_t n_rows, size_t dim, dist_fn fn, const float *q,
                   size_t k, dist_accept_fn accept, void *ctx, uint32_t *out_ids, float *out_dists)
{
    if (k == 0 || n_rows == 0 || dim == 0)
        return 0;
    size_t n = 0;
    for (size_t r = 0; r < n_rows; r++) {
        uint32_t label = ids ? ids[r] : (uint32_t)r;
        if (accept && !accept(ctx, label))
            continue;
        float d = fn(vecs + r * dim, q, dim);
        if (isnan(d))
            d = INFINITY;
        if (n < k) {
            out_dists[n] = d;
            out_ids[n] = label;
            sift_up(out_ids, out_dists, n);
            n++;
        } else if (after(out_dists[0], out_ids[0], d, label)) {
            out_dists[0] = d;
            out_ids[0] = label;
            sift_down(out_ids, out_dists, n, 0);
        }
    }
    for (size_t end = n; end > 1; end--) {
        float d = out_dists[0];
        uint32_t l = out_ids[0];
        out_dists[0] = out_dists[end - 1];
        out_ids[0] = out_ids[end - 1];
        out_dists[end - 1] = d;
        out_ids[end - 1] = l;
        sift_down(out_ids, out_dists, end - 1, 0);
    }
    return n;
}
