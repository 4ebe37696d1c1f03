/* hnsw.c - HNSW index object: create/destroy/reserve, vector storage, the
 * level draw, the pool of per-search scratch contexts and memory accounting.
 *
 * Owns the layout described in hnsw_int.h. Invariants: cap only grows;
 * a slot's vector is written only while the slot is not linked and no
 * search runs (set_vector: nothing links to it yet; reuse: exclusive
 * access), so readers never see a vector change under them; a linked slot has levels[s] and
 * upper[s] (when levels[s] > 0) set before any other node links to it.
 * Level draw: level = floor(-ln(u) * mL), mL = 1 / ln(M), u from a
 * splitmix64 stream seeded with (seed, slot), capped at max_layer: the
 * same seed gives every slot the same level whatever the insert order or
 * thread count, so a serial build with a fixed seed is reproducible.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hnsw_int.h"

#define HUGE_SIZE ((size_t)2 << 20)
#define HUGE_MIN ((size_t)4 << 20)

static size_t round_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int hnsw_draw_level(const hnsw *h, uint32_t slot)
{
    uint64_t r = splitmix64(splitmix64(h->seed) ^ ((uint64_t)slot * 0xD1B54A32D192ED03ull));
    double u = (double)(r >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
    double l = -log(1.0 - u) * h->ml;
    if (!(l < (double)h->max_layer))
        return (int)h->max_layer;
    return (int)l;
}

/* Node blocks at least this big come from calloc (see l0_alloc): glibc's
 * mmap threshold never rises above 32 MiB, so such a calloc is always served
 * with fresh mmap'd pages and the alignment slack is never touched. */
#define CALLOC_MIN ((size_t)32 << 20)

/* A zeroed node block of `alloc` bytes, aligned to `align` (a large one
 * to 2 MiB and advised for transparent huge pages: searches jump between
 * random nodes, and with 4 KiB pages nearly every vector read is also a TLB
 * miss). *base is what to free.
 * A block of CALLOC_MIN or more comes from calloc, over-allocated by the
 * alignment: glibc hands it fresh zero pages and skips the clearing that
 * memset would do (4-6% of opening an 80,000 x 1536 collection), and the
 * bytes still count in malloc's statistics (the benchmarks' heap column);
 * its pages become resident as slots are used. A smaller block may come from
 * the heap, where calloc would clear the slack too: posix_memalign + memset,
 * all of it resident at once (as the soak's RSS bar expects). */
static uint8_t *l0_alloc(size_t alloc, size_t align, void **base)
{
    uint8_t *p;
    if (alloc >= CALLOC_MIN) {
        if (alloc > SIZE_MAX - align)
            return NULL;
        uint8_t *m = calloc(1, alloc + align);
        if (!m)
            return NULL;
        *base = m;
        p = (uint8_t *)round_up((size_t)(uintptr_t)m, align);
    } else {
        void *m = NULL;
        if (posix_memalign(&m, align, alloc) != 0)
            return NULL;
        *base = m;
        p = m;
    }
#ifdef MADV_HUGEPAGE
    if (align == HUGE_SIZE)
        (void)madvise(p, alloc, MADV_HUGEPAGE); /* advice only: failure just means small pages */
#endif
    if (alloc < CALLOC_MIN)
        memset(p, 0, alloc);
    return p;
}

/* Allocate the per-slot arrays for cap slots; zeroed. */
static dv_code alloc_arrays(hnsw *h, size_t cap, dv_err *err)
{
    size_t bytes = cap * h->node_size;
    if (cap && bytes / cap != h->node_size)
        return dv_errorf(err, DV_ENOMEM, "hnsw: capacity %zu too large", cap);
    size_t align = bytes >= HUGE_MIN ? HUGE_SIZE : 64;
    size_t alloc = round_up(bytes ? bytes : 64, align);
    if (alloc < bytes)
        return dv_errorf(err, DV_ENOMEM, "hnsw: capacity %zu too large", cap);
    void *base = NULL;
    uint8_t *l0 = l0_alloc(alloc, align, &base);
    if (!l0)
        return dv_errorf(err, DV_ENOMEM, "hnsw: allocating %zu bytes of nodes", bytes);
    h->l0 = l0;
    h->l0_base = base;
    h->l0_bytes = alloc;
    h->upper = calloc(cap ? cap : 1, sizeof *h->upper);
    h->levels = calloc(cap ? cap : 1, 1);
    h->flags = calloc(cap ? cap : 1, 1);
    h->locks = calloc(cap ? cap : 1, 1);
    if (!h->upper || !h->levels || !h->flags || !h->locks)
        return dv_errorf(err, DV_ENOMEM, "hnsw: allocating per-slot arrays for %zu slots", cap);
    h->cap = cap;
    return DV_OK;
}

static void ctx_free(hnsw_ctx *c)
{
    free(c->visited);
    free(c->cand);
    free(c->res);
    free(c->work);
    free(c->sel);
    free(c->nb);
    free(c->nbsel);
    free(c);
}

static void free_pool(hnsw *h)
{
    hnsw_ctx *c = h->pool;
    while (c) {
        hnsw_ctx *n = c->next;
        ctx_free(c);
        c = n;
    }
    h->pool = NULL;
    h->pool_n = 0;
}

dv_code hnsw_create(const hnsw_params *p, size_t capacity, hnsw **out, dv_err *err)
{
    if (!p || !out)
        return dv_errorf(err, DV_EINVAL, "hnsw: create: NULL argument");
    if (p->dim < 1 || p->dim > DV_DIM_MAX)
        return dv_errorf(err, DV_EINVAL, "hnsw: create: dimension %u out of 1..%u", p->dim, DV_DIM_MAX);
    if (p->metric > DV_METRIC_MANHATTAN)
        return dv_errorf(err, DV_EINVAL, "hnsw: create: unknown metric %d", (int)p->metric);
    uint32_t m = p->m ? p->m : DV_HNSW_M_DEFAULT;
    uint32_t efc = p->ef_construction ? p->ef_construction : DV_HNSW_EF_CONSTRUCTION_DEFAULT;
    uint32_t ml = p->max_layer ? p->max_layer : DV_HNSW_MAX_LAYER_DEFAULT;
    if (m < DV_HNSW_M_MIN || m > DV_HNSW_M_MAX)
        return dv_errorf(err, DV_EINVAL, "hnsw: create: m %u out of %u..%u", m, DV_HNSW_M_MIN, DV_HNSW_M_MAX);
    if (efc < DV_HNSW_EF_CONSTRUCTION_MIN || efc > DV_HNSW_EF_CONSTRUCTION_MAX)
        return dv_errorf(err, DV_EINVAL, "hnsw: create: ef_construction %u out of %u..%u", efc,
                         DV_HNSW_EF_CONSTRUCTION_MIN, DV_HNSW_EF_CONSTRUCTION_MAX);
    if (ml < DV_HNSW_MAX_LAYER_MIN || ml > DV_HNSW_MAX_LAYER_MAX)
        return dv_errorf(err, DV_EINVAL, "hnsw: create: max_layer %u out of %u..%u", ml, DV_HNSW_MAX_LAYER_MIN,
                         DV_HNSW_MAX_LAYER_MAX);
    if (capacity > HNSW_NONE)
        return dv_errorf(err, DV_ELIMIT, "hnsw: create: capacity %zu exceeds %u slots", capacity, HNSW_NONE);

    hnsw *h = calloc(1, sizeof *h);
    if (!h)
        return dv_errorf(err, DV_ENOMEM, "hnsw: create: out of memory");
    h->dim = p->dim;
    h->metric = p->metric;
    h->m = m;
    h->m0 = 2 * m;
    h->efc = efc;
    h->max_layer = ml;
    h->seed = p->seed;
    h->ml = 1.0 / log((double)m);
    h->dist = dist_for_metric(p->metric); /* the best CPU variant, internal distance */
    if (!h->dist) {
        free(h);
        return dv_errorf(err, DV_EINVAL, "hnsw: create: no kernel for metric %d", (int)p->metric);
    }
    h->l2b = hnsw_pick_l2b();
    h->unit = 1;
    h->links_off = (size_t)p->dim * sizeof(float);
    h->node_size = round_up(h->links_off + (1 + (size_t)h->m0) * sizeof(uint32_t), 64);
    pthread_mutex_init(&h->glock, NULL);
    pthread_mutex_init(&h->pool_lock, NULL);
    /* Keep as many scratch contexts as can run at once (a context holds a
     * visited table of 2 bytes per slot). The server runs a thread per
     * connection: without a bound the pool kept one per peak concurrent
     * search (a 30-minute soak's RSS stepped up with each new peak; 1,000
     * connections over 1M vectors would keep 2 GB). */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    h->pool_max = ncpu > 2 ? (size_t)ncpu * 2 : 4;
    dv_code rc = alloc_arrays(h, capacity, err);
    if (rc != DV_OK) {
        hnsw_destroy(h);
        return rc;
    }
    *out = h;
    return DV_OK;
}

void hnsw_destroy(hnsw *h)
{
    if (!h)
        return;
    if (h->upper)
        for (size_t s = 0; s < h->cap; s++)
            free(h->upper[s]);
    free(h->upper);
    free(h->l0_base);
    free(h->levels);
    free(h->flags);
    free(h->locks);
    free_pool(h);
    pthread_mutex_destroy(&h->glock);
    pthread_mutex_destroy(&h->pool_lock);
    free(h);
}

/* Grow every per-slot array to capacity; the old arrays are kept until all
 * new ones exist so a failure leaves h as it was. */
dv_code hnsw_reserve(hnsw *h, size_t capacity, dv_err *err)
{
    if (capacity <= h->cap)
        return DV_OK;
    if (capacity > HNSW_NONE)
        return dv_errorf(err, DV_ELIMIT, "hnsw: reserve: capacity %zu exceeds %u slots", capacity, HNSW_NONE);
    hnsw n = *h;
    n.l0 = NULL;
    n.upper = NULL;
    n.levels = n.flags = n.locks = NULL;
    dv_code rc = alloc_arrays(&n, capacity, err);
    if (rc != DV_OK) {
        free(n.l0 ? n.l0_base : NULL);
        free(n.upper);
        free(n.levels);
        free(n.flags);
        free(n.locks);
        return rc;
    }
    memcpy(n.l0, h->l0, h->cap * h->node_size);
    memcpy(n.upper, h->upper, h->cap * sizeof *h->upper);
    memcpy(n.levels, h->levels, h->cap);
    memcpy(n.flags, h->flags, h->cap);
    free(h->l0_base);
    free(h->upper);
    free(h->levels);
    free(h->flags);
    free(h->locks);
    h->l0 = n.l0;
    h->l0_base = n.l0_base;
    h->l0_bytes = n.l0_bytes;
    h->upper = n.upper;
    h->levels = n.levels;
    h->flags = n.flags;
    h->locks = n.locks;
    h->cap = capacity;
    free_pool(h); /* visited tables are sized by capacity */
    return DV_OK;
}

size_t hnsw_capacity(const hnsw *h)
{
    return h->cap;
}

/* Norm check of a vector entering the index (see hnsw_int.h HNSW_D_UNIT). */
static void note_norm(hnsw *h, const float *v)
{
    if ((h->metric == DV_METRIC_COSINE || h->metric == DV_METRIC_DOT) && __atomic_load_n(&h->unit, __ATOMIC_RELAXED)) {
        /* HNSW_D_UNIT is exact only over unit vectors; one exception turns
         * it off for good (and ends the checking). 1e-4 admits float
         * rounding of normalized input; the SIMD kernel's float sum is off
         * by ~1e-6 at most here, far inside that. It was a scalar double
         * loop: ~1.3 us per 1536-dim vector, 0.1 s of an 80,000-vector open. */
        float n2 = -dist_best()->nip(v, v, h->dim);
        if (!(n2 >= 1.0f - 1e-4f && n2 <= 1.0f + 1e-4f))
            __atomic_store_n(&h->unit, 0, __ATOMIC_RELAXED);
    }
}

dv_code hnsw_set_vector(hnsw *h, uint32_t slot, const float *v, dv_err *err)
{
    if (slot >= h->cap)
        return dv_errorf(err, DV_EINVAL, "hnsw: set_vector: slot %u beyond capacity %zu", slot, h->cap);
    uint8_t f = hnsw_flags(h, slot);
    if (f & (HNSW_F_LINKED | HNSW_F_DELETED))
        return dv_errorf(err, DV_EEXIST, "hnsw: set_vector: slot %u is %s", slot,
                         (f & HNSW_F_DELETED) ? "tombstoned (use a new slot)" : "already linked");
    memcpy((float *)hnsw_vec(h, slot), v, (size_t)h->dim * sizeof(float));
    note_norm(h, v);
    __atomic_or_fetch(&h->flags[slot], HNSW_F_STORED, __ATOMIC_RELEASE);
    return DV_OK;
}

/* A tombstone that was linked keeps its level, upper lists and layer-0
 * list: readers that reach it through stale in-links after the caller
 * releases exclusive access still find valid links (hnsw_link replaces
 * them layer by layer). Never freeing upper[s] here is what makes that
 * safe. A slot never linked (or dropped by decode) starts afresh. */
dv_code hnsw_reuse(hnsw *h, uint32_t slot, const float *v, dv_err *err)
{
    if (slot >= h->cap)
        return dv_errorf(err, DV_EINVAL, "hnsw: reuse: slot %u beyond capacity %zu", slot, h->cap);
    uint8_t f = hnsw_flags(h, slot);
    if ((f & HNSW_F_STORED) && !(f & HNSW_F_DELETED))
        return dv_errorf(err, DV_EEXIST, "hnsw: reuse: slot %u is live", slot);
    uint64_t top = __atomic_load_n(&h->top, __ATOMIC_ACQUIRE);
    if (top != 0 && hnsw_top_entry(top) == slot)
        return dv_errorf(err, DV_EBUSY, "hnsw: reuse: slot %u is the entry point", slot);
    memcpy((float *)hnsw_vec(h, slot), v, (size_t)h->dim * sizeof(float));
    note_norm(h, v);
    uint8_t nf = HNSW_F_STORED;
    /* Linked once, or reused again before its relink: old lists in place. */
    if ((f & (HNSW_F_STORED | HNSW_F_LINKED)) == (HNSW_F_STORED | HNSW_F_LINKED) || (f & HNSW_F_REUSED))
        nf |= HNSW_F_REUSED;
    __atomic_store_n(&h->flags[slot], nf, __ATOMIC_RELEASE);
    return DV_OK;
}

uint32_t hnsw_entry(const hnsw *h)
{
    uint64_t top = __atomic_load_n(&h->top, __ATOMIC_ACQUIRE);
    return top ? hnsw_top_entry(top) : UINT32_MAX;
}

const float *hnsw_vector(const hnsw *h, uint32_t slot)
{
    if (slot >= h->cap || !(hnsw_flags(h, slot) & HNSW_F_STORED))
        return NULL;
    return hnsw_vec(h, slot);
}

int hnsw_has(const hnsw *h, uint32_t slot)
{
    if (slot >= h->cap)
        return 0;
    uint8_t f = hnsw_flags(h, slot);
    return (f & HNSW_F_STORED) && !(f & HNSW_F_DELETED);
}

size_t hnsw_count(const hnsw *h)
{
    return __atomic_load_n(&h->n_live, __ATOMIC_RELAXED);
}

size_t hnsw_mem_bytes(const hnsw *h)
{
    size_t b = sizeof *h + h->l0_bytes + h->cap * (sizeof *h->upper + 3);
    b += __atomic_load_n(&h->upper_bytes, __ATOMIC_RELAXED);
    pthread_mutex_lock((pthread_mutex_t *)&h->pool_lock);
    for (const hnsw_ctx *c = h->pool; c; c = c->next)
        b += sizeof *c + c->vis_cap * sizeof(uint16_t) +
             (c->cand_cap + 2 * c->res_cap + 3 * (h->m0 + 1)) * sizeof(hnsw_cand);
    pthread_mutex_unlock((pthread_mutex_t *)&h->pool_lock);
    return b;
}

int hnsw_ctx_grow_cand(hnsw_ctx *c, size_t n)
{
    if (n <= c->cand_cap)
        return 1;
    size_t cap = c->cand_cap * 2 > n ? c->cand_cap * 2 : n;
    hnsw_cand *p = realloc(c->cand, cap * sizeof *p);
    if (!p)
        return 0;
    c->cand = p;
    c->cand_cap = cap;
    return 1;
}

/* Take a scratch context able to hold ef results (NULL when out of memory).
 * Contexts live in a mutex-guarded free list; hnsw is logically const for
 * searches, the pool is its only mutable part. */
hnsw_ctx *hnsw_ctx_get(const hnsw *hc, size_t ef)
{
    hnsw *h = (hnsw *)hc;
    hnsw_ctx *c;
    pthread_mutex_lock(&h->pool_lock);
    c = h->pool;
    if (c) {
        h->pool = c->next;
        h->pool_n--;
    }
    pthread_mutex_unlock(&h->pool_lock);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return NULL;
        c->vis_cap = h->cap;
        c->visited = calloc(h->cap ? h->cap : 1, sizeof *c->visited);
        c->sel = malloc((h->m0 + 1) * sizeof *c->sel);
        c->nb = malloc((h->m0 + 1) * sizeof *c->nb);
        c->nbsel = malloc((h->m0 + 1) * sizeof *c->nbsel);
        if (!c->visited || !c->sel || !c->nb || !c->nbsel) {
            free(c->visited);
            free(c->sel);
            free(c->nb);
            free(c->nbsel);
            free(c);
            return NULL;
        }
    }
    if (c->res_cap < ef + 2) {
        size_t cap = ef + 2 < 64 ? 64 : ef + 2;
        hnsw_cand *r = realloc(c->res, cap * sizeof *r);
        if (!r)
            goto fail;
        c->res = r;
        hnsw_cand *w = realloc(c->work, cap * sizeof *w);
        if (!w)
            goto fail;
        c->work = w;
        c->res_cap = cap;
    }
    if (!hnsw_ctx_grow_cand(c, 2 * ef + h->m0 + 2))
        goto fail;
    return c;
fail:
    hnsw_ctx_put(h, c);
    return NULL;
}

void hnsw_ctx_put(const hnsw *hc, hnsw_ctx *c)
{
    hnsw *h = (hnsw *)hc;
    pthread_mutex_lock(&h->pool_lock);
    if (h->pool_n >= h->pool_max || c->vis_cap != h->cap) {
        pthread_mutex_unlock(&h->pool_lock);
        ctx_free(c);
        return;
    }
    c->next = h->pool;
    h->pool = c;
    h->pool_n++;
    pthread_mutex_unlock(&h->pool_lock);
}
