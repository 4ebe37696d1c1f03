/* hnsw_delete.c - deletion: tombstone + neighbour repair.
 *
 * Mechanism. hnsw_mark_deleted sets the slot's DELETED flag: from then on
 * no search returns it and no insert picks it as a neighbour, but the node
 * keeps its own links and stays traversable, so paths through it still
 * work (the graph never loses connectivity at the moment of a delete).
 * Then, on every layer of the node, each live out-neighbour n that links
 * back to the deleted node d gets that link replaced by the nearest of d's
 * live neighbours that n does not already link to (and that is not n) -
 * the edge n -> d -> r becomes n -> r. If no such replacement exists the
 * link to d is kept (d stays a working bridge). This mends the edges the
 * HNSW graph almost always has in both directions; in-links from nodes d
 * does not link to are left pointing at the tombstone, which is harmless
 * because tombstones are traversed like filtered-out nodes.
 * Cost: at most m0 * m0 distances per layer-0 delete.
 *
 * A tombstoned slot is never reused (hnsw_set_vector refuses it): its
 * vector must stay valid while links to it remain. The entry point may be
 * a tombstone; it still routes searches.
 * Concurrency: runs beside searches and inserts; each list is edited under
 * its node's lock with single atomic stores, so a lock-free reader sees
 * either the old or the new link.
 */
#include "hnsw_int.h"

/* Replace n's link to d on layer lc (see above). dl/dn: d's links snapshot. */
static void repair_one(hnsw *h, uint32_t n, uint32_t d, const uint32_t *dl, uint32_t dn, unsigned lc)
{
    uint32_t maxn = lc ? h->m : h->m0;
    hnsw_lock(h, n);
    uint32_t *ll = hnsw_links(h, n, lc);
    uint32_t cnt = ll[0];
    if (cnt > maxn)
        cnt = maxn;
    uint32_t pos = HNSW_NONE;
    for (uint32_t j = 0; j < cnt; j++)
        if (ll[1 + j] == d)
            pos = j;
    if (pos == HNSW_NONE) {
        hnsw_unlock(h, n);
        return;
    }
    const float *nv = hnsw_vec(h, n);
    uint32_t best = HNSW_NONE;
    float bestd = 0;
    for (uint32_t i = 0; i < dn; i++) {
        uint32_t r = dl[i];
        if (r == n || (hnsw_flags(h, r) & HNSW_F_DELETED))
            continue;
        int dup = 0;
        for (uint32_t j = 0; j < cnt && !dup; j++)
            dup = ll[1 + j] == r;
        if (dup)
            continue;
        float dist = hnsw_distance(h, nv, hnsw_vec(h, r));
        if (best == HNSW_NONE || dist < bestd) {
            best = r;
            bestd = dist;
        }
    }
    if (best != HNSW_NONE)
        __atomic_store_n(&ll[1 + pos], best, __ATOMIC_RELEASE);
    hnsw_unlock(h, n);
}

void hnsw_mark_deleted(hnsw *h, uint32_t slot)
{
    if (slot >= h->cap)
        return;
    uint8_t old = __atomic_fetch_or(&h->flags[slot], HNSW_F_DELETED, __ATOMIC_ACQ_REL);
    if (!(old & HNSW_F_STORED) || (old & HNSW_F_DELETED))
        return;
    if (!(old & HNSW_F_LINKED))
        return;
    __atomic_sub_fetch(&h->n_live, 1, __ATOMIC_RELAXED);
    uint32_t dl[2 * DV_HNSW_M_MAX];
    for (int lc = h->levels[slot]; lc >= 0; lc--) {
        uint32_t maxn = lc ? h->m : h->m0;
        hnsw_lock(h, slot);
        const uint32_t *ll = hnsw_links(h, slot, (unsigned)lc);
        uint32_t dn = ll[0] > maxn ? maxn : ll[0];
        for (uint32_t j = 0; j < dn; j++)
            dl[j] = ll[1 + j];
        hnsw_unlock(h, slot);
        for (uint32_t j = 0; j < dn; j++)
            if (!(hnsw_flags(h, dl[j]) & HNSW_F_DELETED))
                repair_one(h, dl[j], slot, dl, dn, (unsigned)lc);
    }
}
