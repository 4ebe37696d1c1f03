/* hnsw_search.c - layer search (Malkov & Yashunin Algorithm 2), greedy
 * descent through the upper layers and k-NN search with a filter
 * (Algorithm 5).
 *
 * Readers take no locks (see hnsw_int.h): a link count is loaded with
 * acquire and clamped to the layer's maximum. Deleted slots and slots the
 * filter rejects are still traversed (they keep the graph navigable) but
 * never enter the result heap; the search keeps going until ef accepted
 * results are held and the nearest candidate is farther than the worst of
 * them, or the candidates run out.
 * Heaps are plain arrays: candidates a min-heap, results a max-heap.
 */
#include <float.h>
#include <string.h>

#include "hnsw_int.h"

/* The bounded l2sq kernel: the search discards a neighbour as soon as its
 * distance reaches the current ef-th best, so the kernel checks its partial
 * sum every 256 floats and stops once past the bound. dist_*.c owns the
 * SIMD variants (tested against scalar there); the scalar variant is not
 * used here because its double accumulation is slower than the plain kernel. */
hnsw_bdist_fn hnsw_pick_l2b(void)
{
    const dist_kernels *k = dist_best();
    return strcmp(k->name, "scalar") == 0 ? NULL : k->l2sq_bounded;
}

void hnsw_query_init(const hnsw *h, const float *q, int stored, hnsw_query *out)
{
    out->q = q;
    out->qn1 = 0;
    out->mode = HNSW_D_PLAIN;
    if (!h->l2b)
        return;
    if (h->metric == DV_METRIC_EUCLIDEAN) {
        out->mode = HNSW_D_L2;
    } else if ((h->metric == DV_METRIC_COSINE || h->metric == DV_METRIC_DOT) &&
               __atomic_load_n(&h->unit, __ATOMIC_RELAXED)) {
        out->mode = HNSW_D_UNIT;
        /* A stored vector has unit norm in this mode: skip computing it. */
        out->qn1 = stored ? 2.0f : 1.0f - h->dist(q, q, h->dim); /* dist is -ip */
    }
}

/* ---- heaps on arrays ------------------------------------------------ */

static inline void minheap_push(hnsw_cand *a, size_t *n, float d, uint32_t id)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) >> 1;
        if (a[p].d <= d)
            break;
        a[i] = a[p];
        i = p;
    }
    a[i].d = d;
    a[i].id = id;
}

static inline void minheap_pop(hnsw_cand *a, size_t *n)
{
    size_t len = --(*n);
    if (len == 0)
        return;
    hnsw_cand x = a[len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= len)
            break;
        size_t r = l + 1;
        size_t c = (r < len && a[r].d < a[l].d) ? r : l;
        if (a[c].d >= x.d)
            break;
        a[i] = a[c];
        i = c;
    }
    a[i] = x;
}

static inline void maxheap_push(hnsw_cand *a, size_t *n, float d, uint32_t id)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) >> 1;
        if (a[p].d >= d)
            break;
        a[i] = a[p];
        i = p;
    }
    a[i].d = d;
    a[i].id = id;
}

static inline void maxheap_pop(hnsw_cand *a, size_t *n)
{
    size_t len = --(*n);
    if (len == 0)
        return;
    hnsw_cand x = a[len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= len)
            break;
        size_t r = l + 1;
        size_t c = (r < len && a[r].d > a[l].d) ? r : l;
        if (a[c].d <= x.d)
            break;
        a[i] = a[c];
        i = c;
    }
    a[i] = x;
}

void hnsw_res_sorted(hnsw_ctx *c, size_t n)
{
    while (n > 0) {
        c->work[n - 1] = c->res[0];
        maxheap_pop(c->res, &n);
    }
}

/* ---- prefetch ------------------------------------------------------- */

/* Neighbours ahead whose vectors are prefetched, and how many cache lines
 * of each (the hardware streamer fetches the rest once it sees the run);
 * chosen by measurement on 784- and 1536-dim data (docs/benchmarks.md). */
#define PREFETCH_AHEAD 2
#define PREFETCH_LINES 8

static inline void prefetch_vec(const hnsw *h, uint32_t s)
{
    const char *p = (const char *)hnsw_vec(h, s);
    size_t nl = ((size_t)h->dim * sizeof(float) + 63) / 64;
    if (nl > PREFETCH_LINES)
        nl = PREFETCH_LINES;
    for (size_t i = 0; i < nl; i++)
        __builtin_prefetch(p + 64 * i, 0, 3);
}

/* New visited epoch; the tag table is cleared only when the epoch wraps. */
static inline uint16_t next_epoch(hnsw_ctx *c)
{
    if (++c->epoch == 0) {
        memset(c->visited, 0, c->vis_cap * sizeof *c->visited);
        c->epoch = 1;
    }
    return c->epoch;
}

void hnsw_greedy(const hnsw *h, const hnsw_query *q, unsigned lc, uint32_t *cur, float *curd)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        const uint32_t *ll = hnsw_links(h, *cur, lc);
        uint32_t n = __atomic_load_n(&ll[0], __ATOMIC_ACQUIRE);
        if (n > h->m)
            n = h->m;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t id = __atomic_load_n(&ll[1 + j], __ATOMIC_RELAXED);
            if (j + 1 < n)
                prefetch_vec(h, __atomic_load_n(&ll[2 + j], __ATOMIC_RELAXED));
            float d = hnsw_qdist(h, q, hnsw_vec(h, id), *curd);
            if (d < *curd) {
                *curd = d;
                *cur = id;
                changed = 1;
            }
        }
    }
}

size_t hnsw_search_layer(const hnsw *h, hnsw_ctx *c, const hnsw_query *q, uint32_t ep, float epd, size_t ef,
                         unsigned lc, hnsw_filter_fn filter, void *fctx, uint32_t exclude, hnsw_cand *nearest)
{
    uint16_t *vis = c->visited;
    uint16_t tag = next_epoch(c);
    hnsw_cand *cand = c->cand;
    hnsw_cand *res = c->res;
    size_t nc = 0, nr = 0;
    uint32_t maxn = lc ? h->m : h->m0;
    const uint8_t *flags = h->flags;

    vis[ep] = tag;
    minheap_push(cand, &nc, epd, ep);
    nearest->d = epd;
    nearest->id = ep;
    if (ep != exclude && !(__atomic_load_n(&flags[ep], __ATOMIC_RELAXED) & HNSW_F_DELETED) &&
        (!filter || filter(fctx, ep)))
        maxheap_push(res, &nr, epd, ep);
    float bound = nr >= ef ? res[0].d : FLT_MAX;

    while (nc > 0) {
        hnsw_cand cur = cand[0];
        if (cur.d > bound)
            break;
        minheap_pop(cand, &nc);
        const uint32_t *ll = hnsw_links(h, cur.id, lc);
        uint32_t n = __atomic_load_n(&ll[0], __ATOMIC_ACQUIRE);
        if (n > maxn)
            n = maxn;
        if (!hnsw_ctx_grow_cand(c, nc + n)) /* XXX: out of memory mid-search: return what we have */
            break;
        cand = c->cand;
        /* Gather the unvisited neighbours first, so the vectors of the next
         * ones can be prefetched while the current distance is computed. */
        uint32_t ids[2 * DV_HNSW_M_MAX];
        uint32_t nn = 0;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t id = __atomic_load_n(&ll[1 + j], __ATOMIC_ACQUIRE);
            if (vis[id] == tag)
                continue;
            vis[id] = tag;
            ids[nn++] = id;
        }
        for (uint32_t j = 0; j < nn && j < PREFETCH_AHEAD; j++)
            prefetch_vec(h, ids[j]);
        for (uint32_t j = 0; j < nn; j++) {
            uint32_t id = ids[j];
            if (j + PREFETCH_AHEAD < nn)
                prefetch_vec(h, ids[j + PREFETCH_AHEAD]);
            float d = hnsw_qdist(h, q, hnsw_vec(h, id), bound);
            if (d < nearest->d && id != exclude) {
                nearest->d = d;
                nearest->id = id;
            }
            if (d < bound) {
                minheap_push(cand, &nc, d, id);
                if (id != exclude && !(__atomic_load_n(&flags[id], __ATOMIC_RELAXED) & HNSW_F_DELETED) &&
                    (!filter || filter(fctx, id))) {
                    maxheap_push(res, &nr, d, id);
                    if (nr > ef)
                        maxheap_pop(res, &nr);
                    if (nr >= ef)
                        bound = res[0].d;
                }
            }
        }
    }
    return nr;
}

size_t hnsw_search(const hnsw *h, const float *q, size_t k, size_t ef, hnsw_filter_fn filter, void *ctx,
                   uint32_t *out_slots, float *out_dists)
{
    if (k == 0)
        return 0;
    uint64_t top = __atomic_load_n(&h->top, __ATOMIC_ACQUIRE);
    if (top == 0)
        return 0;
    if (ef < k)
        ef = k;
    hnsw_ctx *c = hnsw_ctx_get(h, ef);
    if (!c) /* XXX: no error channel in this signature; out of memory reads as no results */
        return 0;
    hnsw_query hq;
    hnsw_query_init(h, q, 0, &hq);
    uint32_t cur = hnsw_top_entry(top);
    float curd = hnsw_qdist(h, &hq, hnsw_vec(h, cur), FLT_MAX);
    for (int lc = hnsw_top_level(top); lc > 0; lc--)
        hnsw_greedy(h, &hq, (unsigned)lc, &cur, &curd);
    hnsw_cand nearest;
    size_t n = hnsw_search_layer(h, c, &hq, cur, curd, ef, 0, filter, ctx, HNSW_NONE, &nearest);
    hnsw_res_sorted(c, n);
    if (n > k)
        n = k;
    for (size_t i = 0; i < n; i++) {
        out_slots[i] = c->work[i].id;
        if (out_dists)
            out_dists[i] = c->work[i].d;
    }
    hnsw_ctx_put(h, c);
    return n;
}
