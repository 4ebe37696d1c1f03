/* hnsw_int.h - internals shared by the hnsw*.c files (not a public contract).
 *
 * Memory layout
 *   l0:     one contiguous block of cap * node_size bytes, 64-byte aligned.
 *           Node s occupies [s * node_size, (s+1) * node_size):
 *             float    vec[dim]        at offset 0 (64-byte aligned)
 *             uint32_t n_links         at links_off
 *             uint32_t links[m0]       right after
 *           node_size is rounded up to 64 so every vector starts a cache line.
 *   upper:  upper[s] is NULL for level-0 nodes, else one malloc of
 *           level * (1 + m) uint32: for layer l >= 1 the list
 *           [count, links[m]] at (l - 1) * (1 + m).
 *   levels: levels[s] = the node's top layer (valid once linked).
 *   flags:  HNSW_F_* bits, read and written atomically.
 *
 * Concurrency
 *   Writers of a node's link list hold that node's spin lock (locks[s]) and
 *   publish with release stores (links first, count last). Readers take no
 *   lock: they load the count with acquire, clamp it to the layer's maximum
 *   and read the links; every value they can see is a linked slot whose
 *   vector, level and upper lists were written before it was linked.
 *   `top` packs (max_level + 1) << 32 | entry point in one atomic word so a
 *   reader never pairs an entry with a level it does not have; 0 = empty.
 *   glock serialises only the inserts that raise the max level.
 */
#ifndef DV_HNSW_INT_H
#define DV_HNSW_INT_H
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "dist.h"
#include "err.h"
#include "hnsw.h"

#define HNSW_NONE UINT32_MAX

/* REUSED: hnsw_reuse gave the slot a new vector; its level and (old) link
 * lists stay until hnsw_link rebuilds them. */
enum { HNSW_F_STORED = 1, HNSW_F_LINKED = 2, HNSW_F_DELETED = 4, HNSW_F_REUSED = 8 };

typedef struct hnsw_cand {
    float d;
    uint32_t id;
} hnsw_cand;

/* l2sq(a, b) over n floats; may stop early and return any value > bound
 * once the partial sum exceeds bound (partial sums only grow). */
typedef float (*hnsw_bdist_fn)(const float *a, const float *b, size_t n, float bound);

/* How a search computes its internal distances (hnsw_query_init):
 *   HNSW_D_PLAIN: the dist.h kernel of the metric, never bounded;
 *   HNSW_D_L2:    Euclidean through the bounded l2sq kernel;
 *   HNSW_D_UNIT:  Cosine/Dot while every stored vector has unit norm:
 *                 -<q,b> = (|q-b|^2 - |q|^2 - 1) / 2 exactly, so the bounded
 *                 l2sq kernel applies (qn1 = |q|^2 + 1). */
enum { HNSW_D_PLAIN = 0, HNSW_D_L2 = 1, HNSW_D_UNIT = 2 };
typedef struct hnsw_query {
    const float *q;
    float qn1;
    int mode;
} hnsw_query;

/* Per-search scratch, pooled: visited tags (epoch-stamped, never cleared
 * but on wrap), the candidate min-heap, the result max-heap and buffers
 * for the selection heuristic. */
typedef struct hnsw_ctx {
    struct hnsw_ctx *next;
    uint16_t *visited;
    uint16_t epoch;
    size_t vis_cap;
    hnsw_cand *cand;
    size_t cand_cap;
    hnsw_cand *res;
    size_t res_cap;
    hnsw_cand *work;  /* sorted candidates for the heuristic, res_cap long */
    hnsw_cand *sel;   /* m0 + 1 */
    hnsw_cand *nb;    /* m0 + 1: neighbour list being shrunk */
    hnsw_cand *nbsel; /* m0 + 1 */
} hnsw_ctx;

struct hnsw {
    uint32_t dim;
    dv_metric metric;
    uint32_t m;  /* max links per upper layer */
    uint32_t m0; /* max links on layer 0 = 2m */
    uint32_t efc;
    uint32_t max_layer;
    uint64_t seed;
    double ml;         /* 1 / ln(m) */
    dist_fn dist;      /* kernel giving the internal distance (dist.h) */
    hnsw_bdist_fn l2b; /* bounded l2sq kernel (hnsw_search.c) or NULL */
    int unit;          /* atomic: every stored vector has unit norm so far */

    size_t cap;
    size_t node_size;
    size_t links_off;
    uint8_t *l0;
    size_t l0_bytes; /* allocated size of l0 (rounded to the page size used) */
    void *l0_base;   /* what calloc returned (l0 is aligned inside it): free this */
    uint32_t **upper;
    uint8_t *levels;
    uint8_t *flags;
    uint8_t *locks;

    uint64_t top; /* atomic; see above */
    pthread_mutex_t glock;
    pthread_mutex_t pool_lock;
    hnsw_ctx *pool;
    size_t pool_n, pool_max; /* contexts kept; more are freed on return */

    size_t n_live;      /* atomic: linked and not deleted */
    size_t upper_bytes; /* atomic */
};

static inline const float *hnsw_vec(const hnsw *h, uint32_t s)
{
    return (const float *)(h->l0 + (size_t)s * h->node_size);
}

static inline uint32_t *hnsw_links(const hnsw *h, uint32_t s, unsigned lc)
{
    if (lc == 0)
        return (uint32_t *)(h->l0 + (size_t)s * h->node_size + h->links_off);
    return h->upper[s] + (size_t)(lc - 1) * (1 + h->m);
}

static inline float hnsw_distance(const hnsw *h, const float *a, const float *b)
{
    return h->dist(a, b, h->dim);
}

/* Internal distance from the query to v; when it is >= bound the value
 * returned is only guaranteed to be >= bound as well. */
static inline float hnsw_qdist(const hnsw *h, const hnsw_query *q, const float *v, float bound)
{
    switch (q->mode) {
    case HNSW_D_L2:
        return h->l2b(q->q, v, h->dim, bound);
    case HNSW_D_UNIT:
        return (h->l2b(q->q, v, h->dim, 2.0f * bound + q->qn1) - q->qn1) * 0.5f;
    default:
        return h->dist(q->q, v, h->dim);
    }
}

static inline uint32_t hnsw_top_entry(uint64_t top)
{
    return (uint32_t)top;
}
static inline int hnsw_top_level(uint64_t top)
{
    return (int)(top >> 32) - 1;
}
static inline uint64_t hnsw_top_pack(uint32_t entry, int level)
{
    return (uint64_t)(level + 1) << 32 | entry;
}

static inline uint8_t hnsw_flags(const hnsw *h, uint32_t s)
{
    return __atomic_load_n(&h->flags[s], __ATOMIC_ACQUIRE);
}

static inline void hnsw_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline void hnsw_lock(hnsw *h, uint32_t s)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(&h->locks[s], 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&h->locks[s], __ATOMIC_RELAXED)) {
            if (++spins > 64) {
                sched_yield();
                spins = 0;
            } else {
                hnsw_cpu_relax();
            }
        }
    }
}

static inline void hnsw_unlock(hnsw *h, uint32_t s)
{
    __atomic_store_n(&h->locks[s], 0, __ATOMIC_RELEASE);
}

/* hnsw.c */
int hnsw_draw_level(const hnsw *h, uint32_t slot);
hnsw_ctx *hnsw_ctx_get(const hnsw *h, size_t ef);
void hnsw_ctx_put(const hnsw *h, hnsw_ctx *c);
/* Make room for n candidates in c->cand; 0 on failure. */
int hnsw_ctx_grow_cand(hnsw_ctx *c, size_t n);

/* hnsw_search.c */
/* The bounded l2sq kernel for this CPU (NULL: none, use HNSW_D_PLAIN). */
hnsw_bdist_fn hnsw_pick_l2b(void);
/* stored: q is a vector stored in h (unit norm known in HNSW_D_UNIT). */
void hnsw_query_init(const hnsw *h, const float *q, int stored, hnsw_query *out);
/* Greedy walk on layer lc (ef = 1) from *cur; updates *cur / *curd. */
void hnsw_greedy(const hnsw *h, const hnsw_query *q, unsigned lc, uint32_t *cur, float *curd);
/* Best-first search of layer lc from ep. Leaves up to ef accepted nodes in
 * c->res (a max-heap, n returned). Deleted slots and `exclude` are traversed
 * but never accepted; filter (if any) decides the rest. *nearest gets the
 * nearest node visited, accepted or not. */
size_t hnsw_search_layer(const hnsw *h, hnsw_ctx *c, const hnsw_query *q, uint32_t ep, float epd, size_t ef,
                         unsigned lc, hnsw_filter_fn filter, void *fctx, uint32_t exclude, hnsw_cand *nearest);
/* Pop the max-heap c->res (n entries) into c->work ascending. */
void hnsw_res_sorted(hnsw_ctx *c, size_t n);

/* hnsw_insert.c */
/* Algorithm 4: from cand[0..n) sorted ascending by distance to the base
 * point, keep those nearer to the base than to every kept one, up to max.
 * Writes to out, returns the count. */
size_t hnsw_select(const hnsw *h, const hnsw_cand *cand, size_t n, size_t max, hnsw_cand *out);

#endif
