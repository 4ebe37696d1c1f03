/* hnsw.h - Hierarchical Navigable Small World graph (Malkov & Yashunin 2016).
 *
 * The index owns the vectors it stores (interleaved with layer-0 links for
 * cache locality). Slots (internal ids) are uint32 assigned by the caller,
 * 0 <= slot < capacity. Distances are "internal" (see dist.h): for Cosine
 * the caller stores normalized vectors and builds the index with DV_METRIC_DOT
 * semantics; the index itself never normalizes.
 *
 * Threads: hnsw_insert/hnsw_link may run concurrently with each other and
 * with hnsw_search (fine-grained per-node locks). hnsw_reserve,
 * hnsw_decode_graph and hnsw_destroy need exclusive access.
 * hnsw_mark_deleted may run concurrently with searches (and inserts).
 * Searches take no lock: they read link counts with acquire loads and may
 * or may not see an insert that is in progress; every slot a search returns
 * is linked, stored and was not deleted when it was examined.
 * hnsw_encode_graph may run beside searches, not beside writers.
 * hnsw_set_vector on one slot must not race with anything touching that slot.
 *
 * Slots: a slot moves empty -> stored (set_vector) -> linked (link) and may be
 * tombstoned (mark_deleted) at any point. A tombstoned slot takes a new
 * vector only through hnsw_reuse (set_vector/link on it return DV_EEXIST):
 * other nodes may still link to it, so it keeps its level and link lists
 * (a valid path for readers) until hnsw_link gives it new ones. Linking an
 * already linked slot is DV_EEXIST; a slot >= capacity is DV_EINVAL.
 */
#ifndef DV_HNSW_H
#define DV_HNSW_H
#include <stddef.h>
#include <stdint.h>
#include "dvecdb.h"

typedef struct hnsw hnsw;

typedef struct hnsw_params {
    uint32_t dim;
    dv_metric metric;         /* COSINE behaves as DOT here (caller normalizes) */
    uint32_t m;               /* 0 = DV_HNSW_M_DEFAULT; layer 0 keeps 2m links */
    uint32_t ef_construction; /* 0 = default */
    uint32_t max_layer;       /* 0 = default */
    uint64_t seed;            /* level draws; same seed + same serial order = same graph */
} hnsw_params;

dv_code hnsw_create(const hnsw_params *p, size_t capacity, hnsw **out, dv_err *err);
void hnsw_destroy(hnsw *h);
/* Grow capacity (never shrinks). Exclusive access. */
dv_code hnsw_reserve(hnsw *h, size_t capacity, dv_err *err);
size_t hnsw_capacity(const hnsw *h);

/* Store v at slot without linking it (used when loading a snapshot). */
dv_code hnsw_set_vector(hnsw *h, uint32_t slot, const float *v, dv_err *err);
/* Link the vector stored at slot into the graph. */
dv_code hnsw_link(hnsw *h, uint32_t slot, dv_err *err);
/* set_vector + link. */
dv_code hnsw_insert(hnsw *h, uint32_t slot, const float *v, dv_err *err);
/* Link many stored slots using n_threads threads (0 = all CPUs). The result
 * is a valid graph whatever the thread interleaving. */
dv_code hnsw_build(hnsw *h, const uint32_t *slots, size_t n, unsigned n_threads, dv_err *err);

const float *hnsw_vector(const hnsw *h, uint32_t slot);
int hnsw_has(const hnsw *h, uint32_t slot); /* stored (linked or not) and not deleted */
size_t hnsw_count(const hnsw *h);           /* live linked nodes */
size_t hnsw_mem_bytes(const hnsw *h);

/* Tombstone slot: never returned again; the graph stays navigable
 * (documented mechanism in hnsw_delete.c). */
void hnsw_mark_deleted(hnsw *h, uint32_t slot);

/* Give a tombstoned (or never stored) slot a new vector; link it next with
 * hnsw_link/hnsw_build, which replaces its link lists. Until then searches
 * may still pass through it (its old lists are valid links) and may return
 * it with its new vector. The slot keeps its level. Exclusive access: no
 * search, link or delete may run during the call. DV_EEXIST if the slot
 * is live, DV_EBUSY if it is the entry point, DV_EINVAL beyond capacity.
 * This is how a collection reuses the slots of deleted and replaced points
 * (bounded memory under upsert churn, as hnswlib's replace_deleted). */
dv_code hnsw_reuse(hnsw *h, uint32_t slot, const float *v, dv_err *err);
/* The entry point slot, or UINT32_MAX when the graph is empty. */
uint32_t hnsw_entry(const hnsw *h);

/* filter: return nonzero to accept a slot as a result (NULL = all); it may be
 * called from the searching thread only, at most once per visited slot.
 * ef is raised to k if smaller. Rejected and deleted slots are still
 * traversed; the search ends when it holds ef accepted results and no
 * candidate is nearer than the worst of them, or when the candidates run out.
 * A slot given a new vector by hnsw_reuse may be returned before its link
 * completes (its vector is whole; only its lists are in flux).
 * Returns the number of results (<= k), nearest first, internal distances;
 * out_dists may be NULL. Out of memory for scratch space returns 0. */
typedef int (*hnsw_filter_fn)(void *ctx, uint32_t slot);
size_t hnsw_search(const hnsw *h, const float *q, size_t k, size_t ef, hnsw_filter_fn filter, void *ctx,
                   uint32_t *out_slots, float *out_dists);

/* Graph (links, levels, entry point, tombstones; not vectors) to a malloc'd
 * buffer with magic, version and checksum; see docs/format-index.md. */
dv_code hnsw_encode_graph(const hnsw *h, uint8_t **buf, size_t *len, dv_err *err);
/* Replace the graph from buf, treating it as hostile: every count, level and
 * link is checked. DV_ECORRUPT with the offset on any violation; h unchanged then.
 * Vectors must already be stored (hnsw_set_vector) for every live linked slot
 * and the capacity must cover every slot in buf. A tombstoned node whose
 * vector is not stored is dropped with the links to it (the caller need not
 * keep deleted vectors). Slots stored but not in buf stay stored, unlinked. */
dv_code hnsw_decode_graph(hnsw *h, const uint8_t *buf, size_t len, dv_err *err);
#endif
