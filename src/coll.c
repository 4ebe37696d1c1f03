/*
 * coll.c - one collection: ids <-> slots, metadata, WAL apply, search,
 * checkpoint, recovery at open.
 *
 * Owns the in-memory state described in coll_int.h and the WAL payload
 * formats of its records (little endian):
 *
 *   COLL_WAL_UPSERT_BATCH:  u32 count, u32 dim, then count x
 *       [u16 id_len][id][u32 meta_len][meta][dim x f32 vector as stored]
 *   COLL_WAL_DELETE_BATCH:  u32 count, then count x [u16 id_len][id]
 *
 * A batch is one record, so a crash leaves it wholly present or wholly
 * absent. Vectors are logged as stored (normalized for Cosine), so a replay
 * is bit-exact with what was acknowledged. Applying a record is idempotent
 * (upsert = replace, delete of an absent id = no-op); recovery replays only
 * records after the manifest's wal_seq anyway.
 *
 * Invariants:
 *  - Every batch is validated completely before anything is written; a
 *    rejected batch changes nothing.
 *  - Memory is reserved (slot arrays, id map, hnsw capacity, copies of ids
 *    and metadata) before the WAL append, so once the record is durable the
 *    in-memory apply cannot fail half-way.
 *  - A write is acknowledged only after wal_append returned DV_OK (durable
 *    per the fsync policy) and the change is applied in memory.
 *  - A failed WAL append or snapshot write poisons the collection: later
 *    writes return DV_EFATAL until it is reopened; reads continue.
 *  - Live slots are linked into the hnsw before the writer mutex is
 *    released, except during recovery, which links in one parallel build.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "coll_int.h"
#include "db_int.h"
#include "dist.h"
#include "err.h"
#include "io.h"
#include "snap.h"
#include "utf8.h"

#define MAP_TOMB UINT32_MAX
/* Filtered search: exact scan over the matches when there are at most this
 * many, or when they are under FLAT_FRACTION_DIV-th of the live points
 * (HNSW with a predicate degrades when few nodes pass it). */
#define FLAT_MATCH_MAX 2048
#define FLAT_FRACTION_DIV 10
/* Unfiltered search: collections this small are scanned exactly. */
#define FLAT_SMALL 1024
/* A single batch: at most this many points (and a WAL record under 1 GiB). */
#define BATCH_MAX 100000
#define RECORD_MAX (1ull << 30)
/* Batches at least this big are linked by hnsw_build on every thread. */
#define LINK_PARALLEL_MIN 64

/* ---- small helpers ------------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Validate one id: 1..DV_ID_MAX bytes of UTF-8 (NUL ends it). */
static dv_code id_check(const char *id, size_t idx, size_t *len_out, dv_err *err)
{
    if (!id)
        return dv_errorf(err, DV_EINVAL, "coll: point %zu: id is missing", idx);
    size_t n = strnlen(id, DV_ID_MAX + 1);
    if (n == 0)
        return dv_errorf(err, DV_EINVAL, "coll: point %zu: id is empty", idx);
    if (n > DV_ID_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: point %zu: id longer than %d bytes", idx, DV_ID_MAX);
    size_t bad = utf8_valid_prefix((const uint8_t *)id, n);
    if (bad != n)
        return dv_errorf(err, DV_EINVAL, "coll: point %zu: id is not valid UTF-8 (byte %zu)", idx, bad);
    *len_out = n;
    return DV_OK;
}

dv_code coll_config_normalize(dv_coll_config *cfg, dv_err *err)
{
    dv_code rc = dv_name_validate(cfg->name, err);
    if (rc)
        return rc;
    if (cfg->dim == 0 || cfg->dim > DV_DIM_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: dimension %u out of range 1..%d", cfg->dim, DV_DIM_MAX);
    if ((unsigned)cfg->metric > DV_METRIC_MANHATTAN)
        return dv_errorf(err, DV_EINVAL, "coll: unknown metric %d", (int)cfg->metric);
    if (cfg->vtype == DV_VTYPE_F16 || cfg->vtype == DV_VTYPE_I8)
        return dv_errorf(err, DV_ENOTSUP, "coll: vector type %s is not supported yet (use Float32)",
                         dv_vtype_name(cfg->vtype));
    if (cfg->vtype != DV_VTYPE_F32)
        return dv_errorf(err, DV_EINVAL, "coll: unknown vector type %d", (int)cfg->vtype);
    if (!cfg->m)
        cfg->m = DV_HNSW_M_DEFAULT;
    if (!cfg->ef_construction)
        cfg->ef_construction = DV_HNSW_EF_CONSTRUCTION_DEFAULT;
    if (!cfg->ef_search)
        cfg->ef_search = DV_HNSW_EF_SEARCH_DEFAULT;
    if (!cfg->max_layer)
        cfg->max_layer = DV_HNSW_MAX_LAYER_DEFAULT;
    if (cfg->m < DV_HNSW_M_MIN || cfg->m > DV_HNSW_M_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: m %u out of range %d..%d", cfg->m, DV_HNSW_M_MIN, DV_HNSW_M_MAX);
    if (cfg->ef_construction < DV_HNSW_EF_CONSTRUCTION_MIN || cfg->ef_construction > DV_HNSW_EF_CONSTRUCTION_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: ef_construction %u out of range %d..%d", cfg->ef_construction,
                         DV_HNSW_EF_CONSTRUCTION_MIN, DV_HNSW_EF_CONSTRUCTION_MAX);
    if (cfg->ef_search < DV_HNSW_EF_SEARCH_MIN || cfg->ef_search > DV_HNSW_EF_SEARCH_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: ef_search %u out of range %d..%d", cfg->ef_search,
                         DV_HNSW_EF_SEARCH_MIN, DV_HNSW_EF_SEARCH_MAX);
    if (cfg->max_layer < DV_HNSW_MAX_LAYER_MIN || cfg->max_layer > DV_HNSW_MAX_LAYER_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: max_layer %u out of range %d..%d", cfg->max_layer,
                         DV_HNSW_MAX_LAYER_MIN, DV_HNSW_MAX_LAYER_MAX);
    return DV_OK;
}

/* ---- id map ------------------------------------------------------------ */

/* Position of id in the map, or of the first free cell for it (*found 0). */
static uint32_t map_probe(const dv_coll *c, const char *id, size_t id_len, int *found)
{
    uint32_t mask = c->map_cap - 1;
    uint32_t i = (uint32_t)XXH3_64bits(id, id_len) & mask;
    uint32_t first_tomb = UINT32_MAX;
    for (;;) {
        uint32_t v = c->map[i];
        if (v == 0) {
            *found = 0;
            return first_tomb != UINT32_MAX ? first_tomb : i;
        }
        if (v == MAP_TOMB) {
            if (first_tomb == UINT32_MAX)
                first_tomb = i;
        } else {
            const char *s = c->slots[v - 1].id;
            if (strncmp(s, id, id_len) == 0 && s[id_len] == 0) {
                *found = 1;
                return i;
            }
        }
        i = (i + 1) & mask;
    }
}

/* Slot of a live id or UINT32_MAX. */
static uint32_t map_get(const dv_coll *c, const char *id, size_t id_len)
{
    if (!c->map_cap)
        return UINT32_MAX;
    int found;
    uint32_t i = map_probe(c, id, id_len, &found);
    return found ? c->map[i] - 1 : UINT32_MAX;
}

/* Make room so that `extra` more insertions keep the load under 70%
 * (counting tombstones, which a rehash drops). */
static dv_code map_reserve(dv_coll *c, uint64_t extra, dv_err *err)
{
    uint64_t need = (uint64_t)c->map_used + extra;
    if (c->map_cap && need * 10 < (uint64_t)c->map_cap * 7)
        return DV_OK;
    uint64_t cap = 16;
    while ((c->n_live + extra) * 10 >= cap * 7)
        cap *= 2;
    if (cap > (1ull << 31))
        return dv_errorf(err, DV_ELIMIT, "coll: too many ids");
    uint32_t *nm = calloc(cap, sizeof *nm);
    if (!nm)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory for the id map");
    uint32_t *old = c->map;
    uint32_t old_cap = c->map_cap;
    c->map = nm;
    c->map_cap = (uint32_t)cap;
    c->map_used = 0;
    for (uint32_t i = 0; i < old_cap; i++) {
        uint32_t v = old[i];
        if (v == 0 || v == MAP_TOMB)
            continue;
        const char *s = c->slots[v - 1].id;
        int found;
        uint32_t pos = map_probe(c, s, strlen(s), &found);
        c->map[pos] = v;
        c->map_used++;
    }
    free(old);
    return DV_OK;
}

/* Point id at slot (the map has room: map_reserve). */
static void map_put(dv_coll *c, const char *id, size_t id_len, uint32_t slot)
{
    int found;
    uint32_t i = map_probe(c, id, id_len, &found);
    if (!found && c->map[i] == 0)
        c->map_used++;
    c->map[i] = slot + 1;
}

static void map_del(dv_coll *c, const char *id, size_t id_len)
{
    if (!c->map_cap)
        return;
    int found;
    uint32_t i = map_probe(c, id, id_len, &found);
    if (found)
        c->map[i] = MAP_TOMB;
}

/* ---- slots ----------------------------------------------------------- */

/* Room for `extra` more slots in the arrays and in the hnsw; exclusive. */
static dv_code slots_reserve(dv_coll *c, uint64_t extra, dv_err *err)
{
    uint64_t need = (uint64_t)c->n_slots + extra;
    if (need >= UINT32_MAX - 1)
        return dv_errorf(err, DV_ELIMIT, "coll: %s: slot space exhausted (%" PRIu64 " slots)", c->name, need);
    if (need > c->slot_cap) {
        uint64_t cap = c->slot_cap ? c->slot_cap : 1024;
        while (cap < need)
            cap *= 2;
        if (cap >= UINT32_MAX)
            cap = UINT32_MAX - 1;
        uint32_t *nf = realloc(c->free_slots, cap * sizeof *nf);
        if (!nf)
            return dv_errorf(err, DV_ENOMEM, "coll: out of memory for %" PRIu64 " slots", cap);
        c->free_slots = nf;
        coll_slot *ns = realloc(c->slots, cap * sizeof *ns);
        if (!ns)
            return dv_errorf(err, DV_ENOMEM, "coll: out of memory for %" PRIu64 " slots", cap);
        memset(ns + c->slot_cap, 0, (cap - c->slot_cap) * sizeof *ns);
        c->slots = ns;
        c->slot_cap = (uint32_t)cap;
    }
    if (c->h && need > hnsw_capacity(c->h)) { /* no index yet: coll_open_at makes it */
        size_t cap = hnsw_capacity(c->h) ? hnsw_capacity(c->h) : 1024;
        while (cap < need)
            cap *= 2;
        dv_code rc = hnsw_reserve(c->h, cap, err);
        if (rc)
            return rc;
    }
    return map_reserve(c, extra, err);
}

/* Free a slot's point data (rw held exclusively). While a checkpoint
 * writes a slot of its view, the id and metadata text stay until it ends
 * (it reads them without a lock); the state says the slot is gone. */
static void slot_clear(dv_coll *c, coll_slot *s)
{
    if (s->pl) {
        c->payload_mem -= payload_mem_bytes(s->pl);
        payload_free(s->pl);
    }
    c->payload_mem -= s->meta_len;
    s->pl = NULL;
    uint32_t idx = (uint32_t)(s - c->slots);
    if (c->ckpt_running && idx < c->ckpt_n) {
        c->ckpt_defer[c->n_ckpt_defer++] = idx; /* once per slot: no reuse meanwhile */
        return;
    }
    free(s->id);
    free(s->meta);
    s->id = NULL;
    s->meta = NULL;
    s->meta_len = 0;
}

/* Tombstone slot s. In recovery (defer_index) the hnsw is told after the
 * parallel build, because s may not be linked yet. */
static void slot_tombstone(dv_coll *c, uint32_t s, int defer_index)
{
    coll_slot *sl = &c->slots[s];
    map_del(c, sl->id, strlen(sl->id));
    slot_clear(c, sl);
    sl->state = SLOT_DELETED;
    c->n_live--;
    c->n_deleted++;
    if (!defer_index && sl->linked) {
        hnsw_mark_deleted(c->h, s);
        /* free_slots has slot_cap entries: it always has room. */
        c->free_slots[c->n_free++] = s;
    }
}

/* A tombstoned slot for a new point, or UINT32_MAX (rw held exclusively).
 * Newest tombstone first (its memory is the warmest); never the hnsw's
 * entry point, which must keep its links while it routes searches. */
static uint32_t slot_take_free(dv_coll *c)
{
    /* A running checkpoint reads the vectors of its view without a lock. */
    if (c->n_free == 0 || c->ckpt_running)
        return UINT32_MAX;
    uint32_t i = c->n_free - 1, entry = hnsw_entry(c->h);
    if (c->free_slots[i] == entry) {
        if (i == 0)
            return UINT32_MAX;
        c->free_slots[i] = c->free_slots[i - 1];
        c->free_slots[i - 1] = entry;
    }
    c->n_free--;
    return c->free_slots[i];
}

/* The free list from the slots' states (after recovery linked them). */
static void free_list_rebuild(dv_coll *c)
{
    c->n_free = 0;
    for (uint32_t s = 0; s < c->n_slots; s++)
        if (c->slots[s].state == SLOT_DELETED && !hnsw_has(c->h, s))
            c->free_slots[c->n_free++] = s;
}

/* ---- prepared batches -------------------------------------------------- */

typedef struct prep {
    char *id;
    size_t id_len;
    char *meta;
    uint32_t meta_len;
    payload *pl;
    const float *v; /* into the caller's memory or b->vbuf */
} prep;

typedef struct batch {
    prep *p;
    size_t n;
    float *vbuf; /* normalized copies (Cosine) */
} batch;

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->p[i].id);
        free(b->p[i].meta);
        if (b->p[i].pl)
            payload_free(b->p[i].pl);
    }
    free(b->p);
    free(b->vbuf);
    memset(b, 0, sizeof *b);
}

/* Duplicate ids in one batch: keep[i] = 0 for every point a later point
 * with the same id replaces (the last one wins). */
static dv_code batch_dedupe(const dv_point *pts, size_t n, uint8_t *keep, dv_err *err)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    for (size_t i = n; i-- > 0;) {
        const char *id = pts[i].id;
        size_t h = (size_t)XXH3_64bits(id, strlen(id)) & (cap - 1);
        keep[i] = 1;
        while (tab[h]) {
            if (strcmp(pts[tab[h] - 1].id, id) == 0) {
                keep[i] = 0;
                break;
            }
            h = (h + 1) & (cap - 1);
        }
        if (keep[i])
            tab[h] = (uint32_t)i + 1;
    }
    free(tab);
    return DV_OK;
}

/* Validate every point and copy what the collection will keep. Nothing is
 * written; on error nothing is kept and err names the point. */
static dv_code batch_prepare(dv_coll *c, const dv_point *pts, size_t n, batch *b, dv_err *err)
{
    memset(b, 0, sizeof *b);
    if (n > BATCH_MAX)
        return dv_errorf(err, DV_ELIMIT, "coll: batch of %zu points exceeds the limit of %d", n, BATCH_MAX);
    if (!pts)
        return dv_errorf(err, DV_EINVAL, "coll: points missing");
    uint32_t dim = c->cfg.dim;
    for (size_t i = 0; i < n; i++) {
        size_t id_len;
        dv_code rc = id_check(pts[i].id, i, &id_len, err);
        if (rc)
            return rc;
        if (!pts[i].vector)
            return dv_errorf(err, DV_EINVAL, "coll: point %zu: vector is missing", i);
        if (!dist_all_finite(pts[i].vector, dim))
            return dv_errorf(err, DV_EINVAL, "coll: point %zu: vector contains NaN or Inf", i);
        if (!pts[i].metadata && pts[i].metadata_len)
            return dv_errorf(err, DV_EINVAL, "coll: point %zu: metadata length without metadata", i);
        if (pts[i].metadata_len > DV_METADATA_MAX)
            return dv_errorf(err, DV_ELIMIT, "coll: point %zu: metadata is %zu bytes, limit %d", i, pts[i].metadata_len,
                             DV_METADATA_MAX);
    }
    uint8_t *keep = malloc(n + 1);
    if (!keep)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    dv_code rc = batch_dedupe(pts, n, keep, err);
    size_t n_keep = 0;
    for (size_t i = 0; i < n; i++)
        n_keep += keep[i];
    if (!rc) {
        b->p = calloc(n_keep + 1, sizeof *b->p);
        if (c->cfg.metric == DV_METRIC_COSINE)
            b->vbuf = malloc((n_keep + 1) * (size_t)dim * sizeof(float));
        if (!b->p || (c->cfg.metric == DV_METRIC_COSINE && !b->vbuf))
            rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory for a batch of %zu", n);
    }
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        if (!keep[i])
            continue;
        prep *p = &b->p[b->n++];
        p->id_len = strlen(pts[i].id);
        p->id = strdup(pts[i].id);
        if (!p->id) {
            rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory");
            break;
        }
        if (pts[i].metadata && pts[i].metadata_len) {
            rc = payload_parse(pts[i].metadata, pts[i].metadata_len, &p->pl, err);
            if (rc) {
                rc = dv_err_wrap(err, rc, "coll: point %zu: metadata", i);
                break;
            }
            p->meta = malloc(pts[i].metadata_len + 1);
            if (!p->meta) {
                rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory");
                break;
            }
            memcpy(p->meta, pts[i].metadata, pts[i].metadata_len);
            p->meta[pts[i].metadata_len] = 0;
            p->meta_len = (uint32_t)pts[i].metadata_len;
        }
        if (b->vbuf) {
            float *v = b->vbuf + (b->n - 1) * (size_t)dim;
            memcpy(v, pts[i].vector, dim * sizeof(float));
            dist_normalize(v, dim);
            p->v = v;
        } else {
            p->v = pts[i].vector;
        }
    }
    free(keep);
    if (rc)
        batch_free(b);
    return rc;
}

/* Upsert record payload (format at the top of this file). */
static dv_code batch_encode(const dv_coll *c, const batch *b, uint8_t **out, size_t *len, dv_err *err)
{
    uint32_t dim = c->cfg.dim;
    uint64_t total = 8;
    for (size_t i = 0; i < b->n; i++)
        total += 2 + b->p[i].id_len + 4 + b->p[i].meta_len + 4ull * dim;
    if (total > RECORD_MAX)
        return dv_errorf(err, DV_ELIMIT, "coll: batch encodes to %" PRIu64 " bytes, limit %llu", total,
                         (unsigned long long)RECORD_MAX);
    uint8_t *buf = malloc(total);
    if (!buf)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory for a %" PRIu64 "-byte record", total);
    uint8_t *p = buf;
    put_u32(p, (uint32_t)b->n);
    put_u32(p + 4, dim);
    p += 8;
    for (size_t i = 0; i < b->n; i++) {
        const prep *q = &b->p[i];
        put_u16(p, (uint16_t)q->id_len);
        memcpy(p + 2, q->id, q->id_len);
        p += 2 + q->id_len;
        put_u32(p, q->meta_len);
        if (q->meta_len)
            memcpy(p + 4, q->meta, q->meta_len);
        p += 4 + q->meta_len;
        for (uint32_t j = 0; j < dim; j++) {
            uint32_t u;
            memcpy(&u, &q->v[j], 4);
            put_u32(p + 4 * (size_t)j, u);
        }
        p += 4ull * dim;
    }
    *out = buf;
    *len = (size_t)total;
    return DV_OK;
}

/* Apply a prepared batch in memory (room reserved; rw held exclusively).
 * Ownership of ids/metadata/payloads moves into the slots. The new slots
 * are written to new_slots. Cannot fail once reserved. */
static void batch_apply(dv_coll *c, batch *b, uint32_t *new_slots, int defer_index)
{
    for (size_t i = 0; i < b->n; i++) {
        prep *p = &b->p[i];
        uint32_t old = map_get(c, p->id, p->id_len);
        if (old != UINT32_MAX)
            slot_tombstone(c, old, defer_index);
        uint32_t s = defer_index ? UINT32_MAX : slot_take_free(c);
        if (s != UINT32_MAX && hnsw_reuse(c->h, s, p->v, NULL) == DV_OK) {
            c->n_deleted--;
        } else {
            /* XXX: a refused reuse cannot happen (free slots are marked
             * deleted and never the entry point); if it did, the slot is
             * left out of the free list and a new one taken (reserved). */
            s = c->n_slots++;
            /* Cannot fail: s < capacity (slots_reserve). */
            hnsw_set_vector(c->h, s, p->v, NULL);
        }
        coll_slot *sl = &c->slots[s];
        memset(sl, 0, sizeof *sl);
        sl->id = p->id;
        sl->meta = p->meta;
        sl->meta_len = p->meta_len;
        sl->pl = p->pl;
        sl->state = SLOT_LIVE;
        if (sl->pl)
            c->payload_mem += payload_mem_bytes(sl->pl);
        c->payload_mem += sl->meta_len;
        p->id = NULL;
        p->meta = NULL;
        p->pl = NULL;
        map_put(c, sl->id, p->id_len, s);
        c->n_live++;
        if (new_slots)
            new_slots[i] = s;
    }
}

/* ---- poisoning ------------------------------------------------------- */

static void poison(dv_coll *c, dv_code code, const char *msg)
{
    if (atomic_exchange(&c->poisoned, 1) == 0) {
        /* The wal and snapshot writers report a full disk as DV_ENOSPC,
         * from write and from fsync alike (wal.h). */
        c->poison_code = code;
        snprintf(c->poison_msg, sizeof c->poison_msg, "%.255s", msg);
    }
}

/* The code a failed write returns: a full disk is DV_ENOSPC (the caller
 * may retry once space is back), anything else as the lower layer said. */
static dv_code poison_rc(dv_coll *c, dv_code rc, dv_err *err)
{
    if (c->poison_code == DV_ENOSPC && rc != DV_ENOSPC) {
        if (err)
            err->code = DV_ENOSPC;
        return DV_ENOSPC;
    }
    return rc;
}

static dv_code heal_after_enospc(dv_coll *c, dv_err *err);

/* Why a write cannot start, or DV_OK (wmu held). A collection poisoned by
 * a full disk heals itself once space is back (heal_after_enospc); any
 * other failure keeps it poisoned until the database is reopened. */
static dv_code write_gate(dv_coll *c, dv_err *err)
{
    if (c->read_only)
        return dv_errorf(err, DV_EREADONLY, "coll: %s: opened read-only", c->name);
    if (atomic_load(&c->detached))
        return dv_errorf(err, DV_ENOTFOUND, "coll: %s: collection was dropped or closed", c->name);
    if (atomic_load(&c->poisoned) && !(c->poison_code == DV_ENOSPC && heal_after_enospc(c, NULL) == DV_OK))
        return dv_errorf(err, DV_EFATAL, "coll: %s: writes refused after an I/O failure (%s); reopen the database",
                         c->name, c->poison_msg);
    return DV_OK;
}

/* ---- writes -------------------------------------------------------------- */

/* Link the new live slots into the graph (wmu held, concurrently with
 * searches per hnsw's contract). Big batches link on all threads. */
static dv_code link_new(dv_coll *c, uint32_t *slots, size_t n, dv_err *err)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (c->slots[slots[i]].state == SLOT_LIVE)
            slots[k++] = slots[i];
    dv_code rc = DV_OK;
    if (k >= LINK_PARALLEL_MIN && c->n_threads != 1) {
        rc = hnsw_build(c->h, slots, k, c->n_threads, err);
    } else {
        for (size_t i = 0; i < k && !rc; i++)
            rc = hnsw_link(c->h, slots[i], err);
    }
    if (rc)
        return rc;
    for (size_t i = 0; i < k; i++)
        c->slots[slots[i]].linked = 1;
    return DV_OK;
}

static dv_code upsert_impl(dv_coll *c, const dv_point *pts, size_t n, int use_wal, dv_err *err)
{
    dv_err local_err; /* poisoning keeps the cause even when the caller passes no err */
    if (!err)
        err = &local_err;
    batch b;
    dv_code rc = batch_prepare(c, pts, n, &b, err);
    if (rc)
        return rc;
    if (b.n == 0) {
        batch_free(&b);
        return DV_OK;
    }
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    uint32_t *new_slots = malloc(b.n * sizeof *new_slots);
    if (!new_slots) {
        batch_free(&b);
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    }
    if (use_wal) {
        rc = batch_encode(c, &b, &rec, &rec_len, err);
        if (rc)
            goto out;
    }
    pthread_mutex_lock(&c->wmu);
    rc = write_gate(c, err);
    if (rc)
        goto unlock;
    pthread_rwlock_wrlock(&c->rw);
    rc = slots_reserve(c, b.n, err);
    pthread_rwlock_unlock(&c->rw);
    if (rc)
        goto unlock;
    if (use_wal) {
        uint64_t seq = 0;
        rc = wal_append(c->w, COLL_WAL_UPSERT_BATCH, rec, rec_len, &seq, err);
        if (rc) {
            if (rc != DV_EINVAL && rc != DV_ELIMIT) {
                poison(c, rc, err ? err->msg : "wal append failed");
                rc = poison_rc(c, rc, err);
            }
            goto unlock;
        }
        c->last_seq = seq;
    } else {
        c->dirty = 1;
    }
    pthread_rwlock_wrlock(&c->rw);
    batch_apply(c, &b, new_slots, 0);
    pthread_rwlock_unlock(&c->rw);
    rc = link_new(c, new_slots, b.n, err);
    if (rc)
        /* The record is durable; the graph is incomplete until reopen. */
        poison(c, rc, err ? err->msg : "index link failed");
unlock:
    pthread_mutex_unlock(&c->wmu);
out:
    free(rec);
    free(new_slots);
    batch_free(&b);
    return rc;
}

dv_code dv_coll_upsert(dv_coll *c, const dv_point *pts, size_t n, dv_err *err)
{
    return upsert_impl(c, pts, n, 1, err);
}

dv_code coll_upsert_bulk(dv_coll *c, const dv_point *pts, size_t n, dv_err *err)
{
    return upsert_impl(c, pts, n, 0, err);
}

dv_code dv_coll_delete(dv_coll *c, const char *const *ids, size_t n, size_t *n_deleted, dv_err *err)
{
    dv_err local_err; /* poisoning keeps the cause even when the caller passes no err */
    if (!err)
        err = &local_err;
    if (n && !ids)
        return dv_errorf(err, DV_EINVAL, "coll: ids missing");
    if (n > BATCH_MAX)
        return dv_errorf(err, DV_ELIMIT, "coll: batch of %zu ids exceeds the limit of %d", n, BATCH_MAX);
    size_t total = 4;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        dv_code rc = id_check(ids[i], i, &l, err);
        if (rc)
            return rc;
        total += 2 + l;
    }
    uint8_t *rec = malloc(total);
    uint32_t *slots = malloc((n + 1) * sizeof *slots);
    if (!rec || !slots) {
        free(rec);
        free(slots);
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    }
    pthread_mutex_lock(&c->wmu);
    dv_code rc = write_gate(c, err);
    if (rc)
        goto unlock;
    /* Only ids present now go into the record (writers are serialized, so
     * "present" cannot change before the apply). */
    size_t cnt = 0, off = 4;
    pthread_rwlock_rdlock(&c->rw);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(ids[i]);
        uint32_t s = map_get(c, ids[i], l);
        if (s == UINT32_MAX)
            continue;
        int dup = 0;
        for (size_t j = 0; j < cnt && !dup; j++)
            dup = slots[j] == s;
        if (dup)
            continue;
        slots[cnt++] = s;
        put_u16(rec + off, (uint16_t)l);
        memcpy(rec + off + 2, ids[i], l);
        off += 2 + l;
    }
    pthread_rwlock_unlock(&c->rw);
    put_u32(rec, (uint32_t)cnt);
    if (cnt) {
        uint64_t seq = 0;
        rc = wal_append(c->w, COLL_WAL_DELETE_BATCH, rec, off, &seq, err);
        if (rc) {
            poison(c, rc, err ? err->msg : "wal append failed");
            rc = poison_rc(c, rc, err);
            goto unlock;
        }
        c->last_seq = seq;
        pthread_rwlock_wrlock(&c->rw);
        for (size_t i = 0; i < cnt; i++)
            slot_tombstone(c, slots[i], 0);
        pthread_rwlock_unlock(&c->rw);
    }
    if (n_deleted)
        *n_deleted = cnt;
unlock:
    pthread_mutex_unlock(&c->wmu);
    free(rec);
    free(slots);
    return rc;
}

/* ---- reads ------------------------------------------------------------------ */

dv_code dv_coll_get(dv_coll *c, const char *id, dv_record **out, dv_err *err)
{
    size_t l = 0;
    dv_code rc = id_check(id, 0, &l, err);
    if (rc)
        return rc;
    uint32_t dim = c->cfg.dim;
    pthread_rwlock_rdlock(&c->rw);
    uint32_t s = map_get(c, id, l);
    if (s == UINT32_MAX) {
        pthread_rwlock_unlock(&c->rw);
        return dv_errorf(err, DV_ENOTFOUND, "coll: %s: id \"%.256s\" not found", c->name, id);
    }
    const coll_slot *sl = &c->slots[s];
    /* One block: record, vector, id, metadata (dv_record_free frees it). */
    size_t sz = sizeof(dv_record) + (size_t)dim * sizeof(float) + l + 1 + sl->meta_len + 1;
    dv_record *r = malloc(sz);
    if (!r) {
        pthread_rwlock_unlock(&c->rw);
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    }
    r->vector = (float *)(r + 1);
    memcpy(r->vector, hnsw_vector(c->h, s), (size_t)dim * sizeof(float));
    r->dim = dim;
    r->id = (char *)(r->vector + dim);
    memcpy(r->id, sl->id, l + 1);
    if (sl->meta) {
        r->metadata = r->id + l + 1;
        memcpy(r->metadata, sl->meta, sl->meta_len);
        r->metadata[sl->meta_len] = 0;
        r->metadata_len = sl->meta_len;
    } else {
        r->metadata = NULL;
        r->metadata_len = 0;
    }
    pthread_rwlock_unlock(&c->rw);
    *out = r;
    return DV_OK;
}

void dv_record_free(dv_record *rec)
{
    free(rec);
}

void dv_result_free(dv_result *r)
{
    free(r);
}

/* Copy hits for slots[0..n) into one malloc'd dv_result (rw held). */
static dv_code result_build(dv_coll *c, const uint32_t *slots, const float *dists, size_t n, int include_vectors,
                            dv_result **out, dv_err *err)
{
    uint32_t dim = c->cfg.dim;
    size_t sz = sizeof(dv_result) + n * sizeof(dv_hit);
    if (include_vectors)
        sz += n * (size_t)dim * sizeof(float);
    for (size_t i = 0; i < n; i++) {
        const coll_slot *sl = &c->slots[slots[i]];
        sz += strlen(sl->id) + 1 + (sl->meta ? sl->meta_len + 1 : 0);
    }
    dv_result *r = malloc(sz);
    if (!r)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory for %zu results", n);
    r->n = n;
    r->dim = dim;
    r->hits = (dv_hit *)(r + 1);
    float *vp = (float *)(r->hits + n);
    char *sp = (char *)(include_vectors ? vp + n * (size_t)dim : vp);
    for (size_t i = 0; i < n; i++) {
        const coll_slot *sl = &c->slots[slots[i]];
        dv_hit *h = &r->hits[i];
        h->distance = dists ? dist_report(c->cfg.metric, dists[i]) : 0.0f;
        size_t l = strlen(sl->id);
        memcpy(sp, sl->id, l + 1);
        h->id = sp;
        sp += l + 1;
        if (sl->meta) {
            memcpy(sp, sl->meta, sl->meta_len);
            sp[sl->meta_len] = 0;
            h->metadata = sp;
            h->metadata_len = sl->meta_len;
            sp += sl->meta_len + 1;
        } else {
            h->metadata = NULL;
            h->metadata_len = 0;
        }
        if (include_vectors) {
            memcpy(vp, hnsw_vector(c->h, slots[i]), (size_t)dim * sizeof(float));
            h->vector = vp;
            vp += dim;
        } else {
            h->vector = NULL;
        }
    }
    *out = r;
    return DV_OK;
}

/* Bounded max-heap of (dist, slot): the k best seen so far. */
typedef struct topk {
    size_t k, n;
    float *d;
    uint32_t *s;
} topk;

static int worse(float da, uint32_t sa, float db, uint32_t sb)
{
    return da > db || (da == db && sa > sb);
}

static void topk_push(topk *t, float d, uint32_t s)
{
    if (t->n < t->k) {
        size_t i = t->n++;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!worse(d, s, t->d[p], t->s[p]))
                break;
            t->d[i] = t->d[p];
            t->s[i] = t->s[p];
            i = p;
        }
        t->d[i] = d;
        t->s[i] = s;
        return;
    }
    if (!worse(t->d[0], t->s[0], d, s))
        return;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        float md = d;
        uint32_t ms = s;
        if (l < t->n && worse(t->d[l], t->s[l], md, ms)) {
            m = l;
            md = t->d[l];
            ms = t->s[l];
        }
        if (r < t->n && worse(t->d[r], t->s[r], md, ms))
            m = r;
        if (m == i)
            break;
        t->d[i] = t->d[m];
        t->s[i] = t->s[m];
        i = m;
    }
    t->d[i] = d;
    t->s[i] = s;
}

typedef struct pair {
    float d;
    uint32_t s;
} pair;

static int pair_cmp(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return x->s < y->s ? -1 : x->s > y->s;
}

/* Everything in the heap, nearest first, into slots/dists; the count. */
static size_t topk_drain(topk *t, uint32_t *slots, float *dists)
{
    pair *ps = malloc((t->n + 1) * sizeof *ps);
    if (!ps)
        return 0;
    for (size_t i = 0; i < t->n; i++)
        ps[i] = (pair){t->d[i], t->s[i]};
    qsort(ps, t->n, sizeof *ps, pair_cmp);
    for (size_t i = 0; i < t->n; i++) {
        slots[i] = ps[i].s;
        dists[i] = ps[i].d;
    }
    free(ps);
    return t->n;
}

/* Exact k-NN over `cand` (or every live slot when cand is NULL), keeping
 * those the filter accepts. rw held shared. */
static size_t exact_search(dv_coll *c, const float *q, size_t k, const filter *f, const uint32_t *cand, size_t n_cand,
                           uint32_t *slots, float *dists)
{
    dist_fn fn = dist_for_metric(c->cfg.metric);
    float *hd = malloc(k * sizeof *hd);
    uint32_t *hs = malloc(k * sizeof *hs);
    if (!hd || !hs) {
        free(hd);
        free(hs);
        return 0;
    }
    topk t = {.k = k, .d = hd, .s = hs};
    size_t n = cand ? n_cand : c->n_slots;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = cand ? cand[i] : (uint32_t)i;
        const coll_slot *sl = &c->slots[s];
        if (sl->state != SLOT_LIVE)
            continue;
        if (f && !cand && !filter_match(f, sl->pl))
            continue;
        topk_push(&t, fn(q, hnsw_vector(c->h, s), c->cfg.dim), s);
    }
    size_t got = topk_drain(&t, slots, dists);
    free(hd);
    free(hs);
    return got;
}

typedef struct filt_ctx {
    const dv_coll *c;
    const filter *f;
} filt_ctx;

static int hnsw_accept(void *ctx, uint32_t slot)
{
    filt_ctx *fc = ctx;
    const coll_slot *sl = &fc->c->slots[slot];
    return sl->state == SLOT_LIVE && filter_match(fc->f, sl->pl);
}

dv_code dv_coll_search(dv_coll *c, const float *q, const dv_search_params *p, dv_result **out, dv_err *err)
{
    if (!q || !p || !out)
        return dv_errorf(err, DV_EINVAL, "coll: search: missing argument");
    if (p->k < 1 || p->k > DV_K_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: search: k %u out of range 1..%d", p->k, DV_K_MAX);
    if (p->ef > DV_EF_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: search: ef %u out of range 0..%d", p->ef, DV_EF_MAX);
    uint32_t dim = c->cfg.dim;
    if (!dist_all_finite(q, dim))
        return dv_errorf(err, DV_EINVAL, "coll: search: query vector contains NaN or Inf");
    filter *f = NULL;
    if (p->filter && p->filter_len) {
        dv_code rc = filter_compile(p->filter, p->filter_len, &f, err);
        if (rc)
            return rc;
        if (filter_matches_all(f)) {
            filter_free(f);
            f = NULL;
        }
    }
    size_t k = p->k;
    size_t ef = p->ef ? p->ef : c->cfg.ef_search;
    if (ef < k)
        ef = k;
    float *qn = malloc((size_t)dim * sizeof(float));
    uint32_t *slots = malloc(k * sizeof *slots);
    float *dists = malloc(k * sizeof *dists);
    uint32_t *matches = NULL;
    dv_code rc = DV_OK;
    if (!qn || !slots || !dists) {
        rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory");
        goto out;
    }
    memcpy(qn, q, (size_t)dim * sizeof(float));
    if (c->cfg.metric == DV_METRIC_COSINE)
        dist_normalize(qn, dim);

    pthread_rwlock_rdlock(&c->rw);
    size_t got = 0;
    if (c->n_live == 0) {
        got = 0;
    } else if (p->exact) {
        got = exact_search(c, qn, k, f, NULL, 0, slots, dists);
    } else if (f) {
        /* Count (and collect) the matches first: that picks the plan and
         * tells how many results a correct answer has. */
        matches = malloc(c->n_live * sizeof *matches);
        if (!matches) {
            pthread_rwlock_unlock(&c->rw);
            rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory");
            goto out;
        }
        size_t n_match = 0;
        for (uint32_t s = 0; s < c->n_slots; s++)
            if (c->slots[s].state == SLOT_LIVE && filter_match(f, c->slots[s].pl))
                matches[n_match++] = s;
        size_t want = n_match < k ? n_match : k;
        if (n_match == 0) {
            got = 0;
        } else if (n_match <= FLAT_MATCH_MAX || n_match * FLAT_FRACTION_DIV < c->n_live) {
            got = exact_search(c, qn, k, NULL, matches, n_match, slots, dists);
        } else {
            /* Fewer accepted nodes per visited node: widen the beam by the
             * inverse selectivity (at most FLAT_FRACTION_DIV times). */
            size_t ef2 = ef * (c->n_live / n_match);
            if (ef2 > DV_EF_MAX)
                ef2 = DV_EF_MAX;
            filt_ctx fc = {c, f};
            got = hnsw_search(c->h, qn, k, ef2, hnsw_accept, &fc, slots, dists);
            if (got < want)
                got = exact_search(c, qn, k, NULL, matches, n_match, slots, dists);
        }
    } else if (c->n_live <= FLAT_SMALL) {
        got = exact_search(c, qn, k, NULL, NULL, 0, slots, dists);
    } else {
        got = hnsw_search(c->h, qn, k, ef, NULL, NULL, slots, dists);
        size_t want = c->n_live < k ? c->n_live : k;
        if (got < want)
            got = exact_search(c, qn, k, NULL, NULL, 0, slots, dists);
    }
    rc = result_build(c, slots, dists, got, p->include_vectors, out, err);
    pthread_rwlock_unlock(&c->rw);
out:
    free(qn);
    free(slots);
    free(dists);
    free(matches);
    if (f)
        filter_free(f);
    return rc;
}

dv_code dv_coll_scroll(dv_coll *c, uint64_t offset, uint32_t limit, int include_vectors, dv_result **out, dv_err *err)
{
    if (limit > DV_K_MAX)
        return dv_errorf(err, DV_EINVAL, "coll: scroll: limit %u above %d", limit, DV_K_MAX);
    uint32_t *slots = malloc(((size_t)limit + 1) * sizeof *slots);
    if (!slots)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    pthread_rwlock_rdlock(&c->rw);
    /* Stable order: slot order of live points. XXX: the offset is found by a
     * linear scan; fine for paging at our sizes, not for deep offsets. */
    size_t n = 0;
    uint64_t skipped = 0;
    for (uint32_t s = 0; s < c->n_slots && n < limit; s++) {
        if (c->slots[s].state != SLOT_LIVE)
            continue;
        if (skipped < offset) {
            skipped++;
            continue;
        }
        slots[n++] = s;
    }
    dv_code rc = result_build(c, slots, NULL, n, include_vectors, out, err);
    pthread_rwlock_unlock(&c->rw);
    free(slots);
    return rc;
}

/* ---- info -------------------------------------------------------------------- */

static uint64_t mem_locked(const dv_coll *c)
{
    return sizeof *c + (uint64_t)c->slot_cap * sizeof(coll_slot) + (uint64_t)c->map_cap * 4 + c->payload_mem +
           c->n_live * 24 + hnsw_mem_bytes(c->h);
}

void coll_counts(dv_coll *c, uint64_t *n_live, uint64_t *mem_bytes)
{
    pthread_rwlock_rdlock(&c->rw);
    *n_live = c->n_live;
    *mem_bytes = mem_locked(c);
    pthread_rwlock_unlock(&c->rw);
}

void coll_wal_stats(dv_coll *c, wal_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->wmu);
    if (c->w)
        wal_stats_get(c->w, out);
    pthread_mutex_unlock(&c->wmu);
}

uint64_t coll_wal_bytes(dv_coll *c)
{
    wal_stats st;
    coll_wal_stats(c, &st);
    return st.bytes;
}

dv_code dv_coll_info_get(dv_coll *c, dv_coll_info *out, dv_err *err)
{
    (void)err;
    dv_coll_info in;
    memset(&in, 0, sizeof in);
    in.config = c->cfg;
    wal_stats st;
    coll_wal_stats(c, &st);
    in.wal_bytes = st.bytes;
    pthread_rwlock_rdlock(&c->rw);
    in.n_vectors = c->n_live;
    in.n_deleted = c->n_deleted;
    in.mem_bytes = mem_locked(c);
    in.last_seq = c->last_seq;
    pthread_rwlock_unlock(&c->rw);
    in.created_at_ms = c->created_at_ms;
    in.disk_bytes = io_tree_size(c->dir);
    *out = in;
    return DV_OK;
}

void dv_coll_config_get(const dv_coll *c, dv_coll_config *out)
{
    *out = c->cfg; /* immutable after open */
}

const char *coll_dir(const dv_coll *c)
{
    return c->dir;
}

/* ---- checkpoint ------------------------------------------------------------ */

/* One checkpoint's frozen view (see coll_int.h, Locks). */
typedef struct ckpt_job {
    dv_coll *c;
    uint64_t gen, wal_seq, n_live;
    uint32_t n_slots;
    uint8_t *live;  /* state of each slot of the view at the start */
    uint8_t *graph; /* the graph encoded at the start */
    size_t graph_len;
    int was_dirty;
    float *vbuf;     /* one vector, copied under the read lock */
    snap_manifest m; /* written by ckpt_write */
} ckpt_job;

static void ckpt_job_free(ckpt_job *j)
{
    free(j->live);
    free(j->graph);
    free(j->vbuf);
}

/* The vector of a slot of the view. hnsw_reserve may move every vector
 * meanwhile (under the exclusive lock), so it is copied under the shared
 * one; its bytes cannot change, as no slot is reused during a checkpoint. */
static const float *src_vector(void *ctx, uint64_t slot)
{
    ckpt_job *j = ctx;
    dv_coll *c = j->c;
    pthread_rwlock_rdlock(&c->rw);
    const float *v = hnsw_vector(c->h, (uint32_t)slot);
    if (v)
        memcpy(j->vbuf, v, (size_t)c->cfg.dim * sizeof(float));
    pthread_rwlock_unlock(&c->rw);
    return v ? j->vbuf : NULL;
}

/* The id and metadata of a slot live in the view. The strings stay valid
 * after the lock is dropped: a slot of the view tombstoned meanwhile keeps
 * them until the checkpoint ends (slot_clear). */
static int src_record(void *ctx, uint64_t slot, const char **id, size_t *id_len, const char **meta, size_t *meta_len)
{
    ckpt_job *j = ctx;
    if (!j->live[slot])
        return 0;
    dv_coll *c = j->c;
    pthread_rwlock_rdlock(&c->rw);
    const coll_slot *sl = &c->slots[slot];
    *id = sl->id;
    *meta = sl->meta;
    *meta_len = sl->meta_len;
    pthread_rwlock_unlock(&c->rw);
    *id_len = strlen(*id);
    return 1;
}

/* Wait (wmu held) until no checkpoint is writing without wmu. */
static void coll_wmu_quiesce(dv_coll *c)
{
    while (c->ckpt_running)
        pthread_cond_wait(&c->ckpt_cv, &c->wmu);
}

/* Start a checkpoint (wmu held, none running): cut the WAL, encode the
 * graph and capture the view. *nothing when there is nothing new. */
static dv_code ckpt_begin(dv_coll *c, ckpt_job *j, int *nothing, dv_err *err)
{
    memset(j, 0, sizeof *j);
    j->c = c;
    *nothing = 0;
    if (c->read_only)
        return dv_errorf(err, DV_EREADONLY, "coll: %s: opened read-only", c->name);
    dv_code rc = write_gate(c, err);
    if (rc)
        return rc;
    if (c->last_seq == c->ckpt_seq && !c->dirty) {
        *nothing = 1;
        return DV_OK;
    }
    j->live = malloc((size_t)c->n_slots + 1);
    j->vbuf = malloc((size_t)c->cfg.dim * sizeof(float));
    if (!j->live || !j->vbuf) {
        ckpt_job_free(j);
        return dv_errorf(err, DV_ENOMEM, "coll: %s: checkpoint: out of memory", c->name);
    }
    /* Later records go to a new segment, so every segment before it is
     * wholly covered by this checkpoint and can be removed afterwards. The
     * rotation fsyncs the old segment: every record of the view is durable. */
    rc = wal_rotate(c->w, err);
    if (rc) {
        ckpt_job_free(j);
        poison(c, rc, err ? err->msg : "wal rotate failed");
        return poison_rc(c, rc, err);
    }
    rc = hnsw_encode_graph(c->h, &j->graph, &j->graph_len, err);
    if (rc) {
        ckpt_job_free(j);
        return rc;
    }
    for (uint32_t s = 0; s < c->n_slots; s++)
        j->live[s] = c->slots[s].state == SLOT_LIVE;
    j->n_slots = c->n_slots;
    j->n_live = c->n_live;
    j->wal_seq = c->last_seq;
    j->gen = c->gen + 1;
    j->was_dirty = c->dirty;
    c->dirty = 0; /* writes without a WAL from now on set it again */
    return DV_OK;
}

/* Write the view's files and commit them with the manifest (no lock). */
static dv_code ckpt_write(dv_coll *c, ckpt_job *j, dv_err *err)
{
    snap_manifest *m = &j->m;
    memset(m, 0, sizeof *m);
    m->cfg = c->cfg;
    m->created_at_ms = c->created_at_ms;
    m->wal_seq = j->wal_seq;
    m->n_live = j->n_live;
    snap_source src = {.n_slots = j->n_slots,
                       .ctx = j,
                       .vector = src_vector,
                       .record = src_record,
                       .index = j->graph,
                       .index_len = j->graph_len};
    dv_code rc = snap_write_gen(c->dir, &c->cfg, j->gen, &src, m, err);
    if (!rc)
        rc = snap_manifest_write(c->dir, m, err);
    return rc;
}

/* Finish (wmu held): on success the new generation is in force, so the
 * WAL records it covers and the previous generation go. */
static dv_code ckpt_finish(dv_coll *c, ckpt_job *j, dv_code rc, dv_err *err)
{
    if (rc) {
        c->dirty |= j->was_dirty;
        if (rc != DV_ENOMEM) {
            poison(c, rc, err ? err->msg : "snapshot write failed");
            rc = poison_rc(c, rc, err);
        }
        return rc;
    }
    c->gen = j->gen;
    c->ckpt_seq = j->wal_seq;
    /* The manifest is durable: records <= ckpt_seq are no longer needed. */
    rc = wal_truncate_upto(c->w, c->ckpt_seq, err);
    if (rc) {
        poison(c, rc, err ? err->msg : "wal truncate failed");
        return poison_rc(c, rc, err);
    }
    /* Old generation files: harmless if this fails (removed at next open). */
    snap_cleanup(c->dir, &j->m, NULL);
    return DV_OK;
}

/* Write generation gen+1 and commit it with the manifest; then cut the WAL
 * and remove the previous generation. wmu held throughout, so nothing
 * mutates (close, backup, ENOSPC healing). */
dv_code coll_checkpoint_locked(dv_coll *c, dv_err *err)
{
    dv_err local_err; /* poisoning keeps the cause even when the caller passes no err */
    if (!err)
        err = &local_err;
    coll_wmu_quiesce(c);
    ckpt_job j;
    int nothing = 0;
    dv_code rc = ckpt_begin(c, &j, &nothing, err);
    if (rc || nothing)
        return rc;
    rc = ckpt_write(c, &j, err);
    rc = ckpt_finish(c, &j, rc, err);
    ckpt_job_free(&j);
    return rc;
}

/* The same without holding wmu while the files are written: writers go on
 * (a checkpoint of a large collection takes seconds). */
dv_code dv_coll_checkpoint(dv_coll *c, dv_err *err)
{
    dv_err local_err;
    if (!err)
        err = &local_err;
    pthread_mutex_lock(&c->wmu);
    coll_wmu_quiesce(c);
    ckpt_job j;
    int nothing = 0;
    dv_code rc = ckpt_begin(c, &j, &nothing, err);
    if (rc || nothing) {
        pthread_mutex_unlock(&c->wmu);
        return rc;
    }
    uint32_t *defer = malloc(((size_t)j.n_slots + 1) * sizeof *defer);
    if (!defer) {
        /* Not enough memory to let writers in: write it the blocking way. */
        rc = ckpt_write(c, &j, err);
    } else {
        pthread_rwlock_wrlock(&c->rw);
        c->ckpt_defer = defer;
        c->n_ckpt_defer = 0;
        c->ckpt_n = j.n_slots;
        c->ckpt_running = 1;
        pthread_rwlock_unlock(&c->rw);
        pthread_mutex_unlock(&c->wmu);
        rc = ckpt_write(c, &j, err);
        pthread_mutex_lock(&c->wmu);
        pthread_rwlock_wrlock(&c->rw);
        for (uint32_t i = 0; i < c->n_ckpt_defer; i++) {
            coll_slot *sl = &c->slots[c->ckpt_defer[i]];
            free(sl->id);
            free(sl->meta);
            sl->id = NULL;
            sl->meta = NULL;
            sl->meta_len = 0;
        }
        c->ckpt_running = 0;
        c->ckpt_n = 0;
        c->n_ckpt_defer = 0;
        c->ckpt_defer = NULL;
        pthread_rwlock_unlock(&c->rw);
        free(defer);
    }
    rc = ckpt_finish(c, &j, rc, err);
    pthread_cond_broadcast(&c->ckpt_cv);
    pthread_mutex_unlock(&c->wmu);
    ckpt_job_free(&j);
    /* The graph encoding and the snapshot buffers are the biggest
     * transient allocations of a long-running process; glibc keeps freed
     * heap pages (and raises its mmap threshold after a big block is
     * freed, so the next one comes from the heap too). Hand them back so
     * that resident memory follows the data, not the last checkpoint:
     * without this, a soak's RSS stepped up ~10% at each checkpoint. */
    malloc_trim(0);
    return rc;
}

dv_code coll_sync(dv_coll *c, dv_err *err)
{
    dv_err local_err; /* poisoning keeps the cause even when the caller passes no err */
    if (!err)
        err = &local_err;
    dv_code rc = DV_OK;
    pthread_mutex_lock(&c->wmu);
    if (c->w && !c->read_only && !atomic_load(&c->detached) && !atomic_load(&c->poisoned)) {
        rc = wal_sync(c->w, err);
        if (rc)
            poison(c, rc, err ? err->msg : "wal sync failed");
    }
    pthread_mutex_unlock(&c->wmu);
    return rc;
}

dv_code coll_with_writes_paused(dv_coll *c, int checkpoint_first, coll_paused_fn fn, void *ctx, dv_err *err)
{
    dv_err local_err; /* poisoning keeps the cause even when the caller passes no err */
    if (!err)
        err = &local_err;
    pthread_mutex_lock(&c->wmu);
    coll_wmu_quiesce(c); /* fn may copy or move the files a checkpoint writes */
    dv_code rc = DV_OK;
    if (atomic_load(&c->detached)) {
        rc = dv_errorf(err, DV_ENOTFOUND, "coll: %s: collection was dropped or closed", c->name);
    } else if (checkpoint_first && !c->read_only) {
        rc = coll_checkpoint_locked(c, err);
    } else if (c->w && !c->read_only && !atomic_load(&c->poisoned)) {
        rc = wal_sync(c->w, err);
        if (rc)
            poison(c, rc, err ? err->msg : "wal sync failed");
    }
    if (!rc)
        rc = fn(ctx, c->dir, err);
    pthread_mutex_unlock(&c->wmu);
    return rc;
}

dv_code coll_shutdown(dv_coll *c, int checkpoint, dv_err *err)
{
    dv_code rc = DV_OK;
    pthread_mutex_lock(&c->wmu);
    coll_wmu_quiesce(c);
    if (!atomic_load(&c->detached)) {
        if (checkpoint && !c->read_only && !atomic_load(&c->poisoned))
            rc = coll_checkpoint_locked(c, err);
        if (c->w) {
            dv_err e2;
            dv_code rc2 = wal_close(c->w, &e2);
            c->w = NULL;
            if (rc2 && !rc) {
                rc = rc2;
                if (err)
                    *err = e2;
            }
        }
        atomic_store(&c->detached, 1);
    }
    pthread_mutex_unlock(&c->wmu);
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------ */

void coll_ref(dv_coll *c)
{
    atomic_fetch_add(&c->refs, 1);
}

static void coll_free(dv_coll *c)
{
    if (c->w)
        wal_close(c->w, NULL);
    for (uint32_t s = 0; s < c->n_slots; s++) {
        coll_slot *sl = &c->slots[s];
        if (sl->pl)
            payload_free(sl->pl);
        free(sl->id);
        free(sl->meta);
    }
    free(c->slots);
    free(c->free_slots);
    free(c->map);
    if (c->h)
        hnsw_destroy(c->h);
    pthread_mutex_destroy(&c->wmu);
    pthread_cond_destroy(&c->ckpt_cv);
    pthread_rwlock_destroy(&c->rw);
    free(c->dir);
    free(c->name);
    free(c);
}

void dv_coll_close(dv_coll *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        coll_free(c);
}

static dv_coll *coll_alloc(const char *dir, const dv_coll_config *cfg, const dv_db_options *opts, int read_only)
{
    dv_coll *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->dir = strdup(dir);
    c->name = strdup(cfg->name);
    if (!c->dir || !c->name) {
        free(c->dir);
        free(c->name);
        free(c);
        return NULL;
    }
    c->cfg = *cfg;
    dv_db_options def;
    if (!opts) {
        dv_db_options_init(&def);
        opts = &def;
    }
    c->fsync = opts->fsync;
    c->fsync_interval_ms = opts->fsync_interval_ms;
    c->n_threads = opts->n_threads;
    c->read_only = read_only || opts->read_only;
    atomic_init(&c->refs, 1);
    atomic_init(&c->poisoned, 0);
    atomic_init(&c->detached, 0);
    pthread_mutex_init(&c->wmu, NULL);
    pthread_cond_init(&c->ckpt_cv, NULL);
    /* Writer preference: with the default (reader-preferring) lock a steady
     * stream of searches starves writers forever. No thread ever takes the
     * read side twice, so this cannot self-deadlock. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    return c;
}

static dv_code coll_make_index(dv_coll *c, size_t capacity, dv_err *err)
{
    hnsw_params hp = {.dim = c->cfg.dim,
                      .metric = c->cfg.metric == DV_METRIC_COSINE ? DV_METRIC_DOT : c->cfg.metric,
                      .m = c->cfg.m,
                      .ef_construction = c->cfg.ef_construction,
                      .max_layer = c->cfg.max_layer,
                      .seed = XXH3_64bits(c->cfg.name, strlen(c->cfg.name))};
    return hnsw_create(&hp, capacity < 1024 ? 1024 : capacity, &c->h, err);
}

dv_code coll_create_at(const char *dir, const dv_coll_config *cfg_in, const dv_db_options *opts, dv_coll **out,
                       dv_err *err)
{
    dv_coll_config cfg = *cfg_in;
    dv_code rc = coll_config_normalize(&cfg, err);
    if (rc)
        return rc;
    if (opts && opts->read_only)
        return dv_errorf(err, DV_EREADONLY, "coll: create %s: database opened read-only", cfg.name);
    /* mkdir fails if dir exists: never reuse another collection's files. */
    if (io_mkdir(dir, 0755) != 0) {
        int e = errno;
        return dv_errorf(err, e == EEXIST ? DV_EEXIST : dv_code_from_errno(e), "coll: create %s: %s", dir, strerror(e));
    }
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/wal", dir);
    if (io_mkdir(sub, 0755) != 0) {
        int e = errno;
        return dv_errorf(err, dv_code_from_errno(e), "coll: create %s: %s", sub, strerror(e));
    }
    snap_manifest m;
    memset(&m, 0, sizeof m);
    m.cfg = cfg;
    m.created_at_ms = dv_now_ms();
    /* The manifest write fsyncs dir, making wal/ durable too. */
    rc = snap_manifest_write(dir, &m, err);
    if (rc)
        return rc;
    /* The new directory entry itself lives in the parent: fsync it, or a
     * crash can lose the collection that create acknowledged. */
    char parent[4200];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = 0;
    else
        snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
    if (io_fsync_dir(parent) != 0) {
        int e = errno;
        return dv_errorf(err, dv_code_from_errno(e), "coll: create %s: fsync parent: %s", dir, strerror(e));
    }
    if (!out)
        return DV_OK;
    return coll_open_at(dir, opts, 0, out, err);
}

/* ---- recovery ---------------------------------------------------------------- */

/* What the loader fills while a collection opens. The ids file (then the
 * id map, then the index file) may be read on a helper thread while this
 * thread loads the vectors: load_vec writes only slot.state, n_slots and
 * the hnsw; the ids side writes only the other fields of the slots, the id
 * map and the id_* members here. Once both are done, ids_merge checks that
 * they agree slot by slot and sets the counts. */
typedef struct load_ctx {
    dv_coll *c;
    const char *dir;
    const snap_manifest *m;
    uint8_t *id_live;        /* per slot: the ids file holds a live record */
    uint64_t id_payload_mem; /* metadata bytes held (text + parsed) */
    uint64_t id_n_live;      /* live records in the ids file */
    dv_code ids_rc;
    dv_err ids_err;
    uint8_t *g; /* index file body (hnsw_encode_graph bytes) */
    size_t glen;
    dv_code g_rc;
    dv_err g_err;
} load_ctx;

static dv_code load_vec(void *ctx, uint64_t slot, int live, const float *v, dv_err *err)
{
    load_ctx *lc = ctx;
    dv_coll *c = lc->c;
    if (slot != c->n_slots)
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: vectors out of order at record %" PRIu64, lc->dir, slot);
    if (live && !dist_all_finite(v, c->cfg.dim))
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: vector record %" PRIu64 " is not finite", lc->dir, slot);
    dv_code rc = hnsw_set_vector(c->h, (uint32_t)slot, v, err);
    if (rc)
        return rc;
    /* Only the state: slots_reserve zeroed the slot, and the ids loader may
     * be filling its other fields right now. */
    c->slots[c->n_slots++].state = live ? SLOT_LIVE : SLOT_DELETED;
    return DV_OK;
}

static dv_code load_id(void *ctx, uint64_t slot, int live, const char *id, size_t id_len, const char *meta,
                       size_t meta_len, dv_err *err)
{
    load_ctx *lc = ctx;
    dv_coll *c = lc->c;
    if (slot >= lc->m->n_slots)
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: ids and vectors disagree about record %" PRIu64, lc->dir, slot);
    lc->id_live[slot] = live != 0;
    if (!live)
        return DV_OK;
    if (utf8_valid_prefix((const uint8_t *)id, id_len) != id_len)
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: id of record %" PRIu64 " is not UTF-8", lc->dir, slot);
    coll_slot *sl = &c->slots[slot];
    sl->id = strndup(id, id_len);
    if (!sl->id)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    if (meta) {
        dv_code rc = payload_parse(meta, meta_len, &sl->pl, err);
        if (rc)
            return dv_err_wrap(err, rc == DV_ENOMEM ? DV_ENOMEM : DV_ECORRUPT, "coll: %s: metadata of record %" PRIu64,
                               lc->dir, slot);
        sl->meta = malloc(meta_len + 1);
        if (!sl->meta)
            return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
        memcpy(sl->meta, meta, meta_len);
        sl->meta[meta_len] = 0;
        sl->meta_len = (uint32_t)meta_len;
        lc->id_payload_mem += payload_mem_bytes(sl->pl) + meta_len;
    }
    return DV_OK;
}

/* Every live id into the id map (sized for all of them by slots_reserve,
 * so it never grows here): one probe per id; a duplicate is corruption. */
static dv_code ids_map(load_ctx *lc, dv_err *err)
{
    dv_coll *c = lc->c;
    for (uint32_t s = 0; s < (uint32_t)lc->m->n_slots; s++) {
        if (!lc->id_live[s])
            continue;
        const char *id = c->slots[s].id;
        int found;
        uint32_t pos = map_probe(c, id, strlen(id), &found);
        if (found)
            return dv_errorf(err, DV_ECORRUPT, "coll: %s: id of record %u appears twice", lc->dir, s);
        c->map[pos] = s + 1;
        c->map_used++;
        lc->id_n_live++;
    }
    return DV_OK;
}

/* The ids file and the id map, then the index file's body (helper thread
 * or inline). */
static void *load_ids_and_index(void *arg)
{
    load_ctx *lc = arg;
    lc->ids_rc = snap_load_ids(lc->dir, lc->m, load_id, lc, &lc->ids_err);
    if (!lc->ids_rc)
        lc->ids_rc = ids_map(lc, &lc->ids_err);
    if (!lc->ids_rc && lc->m->n_slots)
        lc->g_rc = snap_load_index(lc->dir, lc->m, &lc->g, &lc->glen, &lc->g_err);
    return NULL;
}

/* Once vectors and ids are both loaded: they must agree slot by slot. */
static dv_code ids_merge(load_ctx *lc, dv_err *err)
{
    dv_coll *c = lc->c;
    for (uint32_t s = 0; s < c->n_slots; s++)
        if ((c->slots[s].state == SLOT_LIVE) != lc->id_live[s])
            return dv_errorf(err, DV_ECORRUPT, "coll: %s: ids and vectors disagree about record %u", lc->dir, s);
    c->n_live = lc->id_n_live;
    c->n_deleted = c->n_slots - lc->id_n_live;
    c->payload_mem += lc->id_payload_mem;
    return DV_OK;
}

/* Below this many records a collection is loaded on one thread. */
#define LOAD_PARALLEL_MIN 4096

/* Load the snapshot named by m into c (slots reserved, no index yet):
 * the vectors here, the ids and the index file on a helper thread when it
 * pays (several CPUs, a big collection, n_threads != 1) and no I/O fault
 * is armed (fault tests count calls: they must come in a fixed order). The
 * index body, when read, is left in lc->g for the caller to decode. */
static dv_code load_snapshot(load_ctx *lc, dv_err *err)
{
    dv_coll *c = lc->c;
    const snap_manifest *m = lc->m;
    lc->id_live = calloc((size_t)m->n_slots + 1, 1);
    if (!lc->id_live)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int par = c->n_threads != 1 && ncpu > 1 && m->n_slots >= LOAD_PARALLEL_MIN && !io_fault_active();
    pthread_t th;
    if (par && pthread_create(&th, NULL, load_ids_and_index, lc) != 0)
        par = 0;
    dv_code rc = coll_make_index(c, (size_t)m->n_slots + 1, err);
    if (!rc)
        rc = snap_load_vectors(lc->dir, m, load_vec, lc, err);
    if (par)
        pthread_join(th, NULL);
    else if (!rc)
        load_ids_and_index(lc);
    if (!rc && lc->ids_rc) {
        rc = lc->ids_rc;
        if (err)
            *err = lc->ids_err;
    }
    if (!rc)
        rc = ids_merge(lc, err);
    if (!rc && (c->n_slots != m->n_slots || c->n_live != m->n_live))
        rc = dv_errorf(err, DV_ECORRUPT,
                       "coll: %s: snapshot holds %" PRIu64 " live of %u records, manifest says %" PRIu64 " of %" PRIu64,
                       lc->dir, c->n_live, c->n_slots, m->n_live, m->n_slots);
    if (rc) {
        /* The ids loader may have filled slots the vectors never reached:
         * let coll_free see them all (slots_reserve zeroed the rest). */
        if (c->n_slots < m->n_slots)
            c->n_slots = (uint32_t)m->n_slots;
        free(lc->g);
        lc->g = NULL;
    }
    return rc;
}

/* Decode one WAL record into a batch (replay); hostile bytes. */
static dv_code replay_upsert(dv_coll *c, uint64_t seq, const uint8_t *p, size_t len, dv_err *err)
{
    uint32_t dim = c->cfg.dim;
    if (len < 8 || get_u32(p + 4) != dim)
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: wal record %" PRIu64 ": bad upsert header", c->name, seq);
    uint32_t n = get_u32(p);
    if (n > BATCH_MAX)
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: wal record %" PRIu64 ": count %u", c->name, seq, n);
    batch b = {0};
    b.p = calloc((size_t)n + 1, sizeof *b.p);
    float *vecs = malloc(((size_t)n + 1) * dim * sizeof(float));
    dv_code rc = DV_OK;
    if (!b.p || !vecs) {
        rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory replaying the wal");
        goto out;
    }
    b.vbuf = vecs;
    size_t off = 8;
    for (uint32_t i = 0; i < n; i++) {
        prep *q = &b.p[b.n];
        if (len - off < 2)
            goto bad;
        size_t il = get_u16(p + off);
        off += 2;
        if (il == 0 || il > DV_ID_MAX || len - off < il + 4 || memchr(p + off, 0, il) ||
            utf8_valid_prefix(p + off, il) != il)
            goto bad;
        q->id = strndup((const char *)p + off, il);
        q->id_len = il;
        b.n++;
        if (!q->id) {
            rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory replaying the wal");
            goto out;
        }
        off += il;
        size_t ml = get_u32(p + off);
        off += 4;
        if (ml > DV_METADATA_MAX || len - off < ml + 4ull * dim)
            goto bad;
        if (ml) {
            rc = payload_parse((const char *)p + off, ml, &q->pl, err);
            if (rc) {
                rc = dv_err_wrap(err, DV_ECORRUPT, "coll: %s: wal record %" PRIu64 " point %u", c->name, seq, i);
                goto out;
            }
            q->meta = malloc(ml + 1);
            if (!q->meta) {
                rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory replaying the wal");
                goto out;
            }
            memcpy(q->meta, p + off, ml);
            q->meta[ml] = 0;
            q->meta_len = (uint32_t)ml;
            off += ml;
        }
        float *v = vecs + (size_t)i * dim;
        for (uint32_t j = 0; j < dim; j++) {
            uint32_t u = get_u32(p + off + 4 * (size_t)j);
            memcpy(&v[j], &u, 4);
        }
        off += 4ull * dim;
        if (!dist_all_finite(v, dim))
            goto bad;
        q->v = v;
    }
    if (off != len)
        goto bad;
    /* Duplicate ids inside one record would break "the last one wins" only
     * if the writer had not deduplicated; batch_apply handles them anyway. */
    pthread_rwlock_wrlock(&c->rw);
    rc = slots_reserve(c, b.n, err);
    if (!rc)
        batch_apply(c, &b, NULL, 1);
    pthread_rwlock_unlock(&c->rw);
    goto out;
bad:
    rc = dv_errorf(err, DV_ECORRUPT, "coll: %s: wal record %" PRIu64 ": malformed upsert at byte %zu", c->name, seq,
                   off);
out:
    batch_free(&b);
    return rc;
}

static dv_code replay_delete(dv_coll *c, uint64_t seq, const uint8_t *p, size_t len, dv_err *err)
{
    if (len < 4)
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: wal record %" PRIu64 ": bad delete header", c->name, seq);
    uint32_t n = get_u32(p);
    size_t off = 4;
    /* Validate the whole record before applying any of it. */
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < 2)
            goto bad;
        size_t il = get_u16(p + off);
        if (il == 0 || il > DV_ID_MAX || len - off - 2 < il)
            goto bad;
        off += 2 + il;
    }
    if (off != len)
        goto bad;
    pthread_rwlock_wrlock(&c->rw);
    off = 4;
    for (uint32_t i = 0; i < n; i++) {
        size_t il = get_u16(p + off);
        uint32_t s = map_get(c, (const char *)p + off + 2, il);
        if (s != UINT32_MAX)
            slot_tombstone(c, s, 1);
        off += 2 + il;
    }
    pthread_rwlock_unlock(&c->rw);
    return DV_OK;
bad:
    return dv_errorf(err, DV_ECORRUPT, "coll: %s: wal record %" PRIu64 ": malformed delete at byte %zu", c->name, seq,
                     off);
}

static dv_code replay_apply(void *ctx, uint64_t seq, uint8_t type, const uint8_t *payload_bytes, size_t len,
                            dv_err *err)
{
    dv_coll *c = ctx;
    if (seq <= c->last_seq)
        return DV_OK; /* already in the snapshot (idempotent replay) */
    dv_code rc;
    if (type == COLL_WAL_UPSERT_BATCH)
        rc = replay_upsert(c, seq, payload_bytes, len, err);
    else if (type == COLL_WAL_DELETE_BATCH)
        rc = replay_delete(c, seq, payload_bytes, len, err);
    else
        rc = dv_errorf(err, DV_ECORRUPT, "coll: %s: wal record %" PRIu64 " has unknown type %u", c->name, seq, type);
    if (!rc)
        c->last_seq = seq;
    return rc;
}

static void note(dv_coll *c, const char *fmt, const char *arg)
{
    size_t l = strlen(c->recovery_note);
    if (l + 3 >= sizeof c->recovery_note)
        return;
    if (l) {
        c->recovery_note[l++] = ';';
        c->recovery_note[l++] = ' ';
    }
    snprintf(c->recovery_note + l, sizeof c->recovery_note - l, fmt, arg);
}

/* Link every live slot that is not linked yet (recovery), in parallel, then
 * tell the index about tombstones it has not seen. */
static dv_code link_unlinked(dv_coll *c, dv_err *err)
{
    uint32_t *todo = malloc(((size_t)c->n_slots + 1) * sizeof *todo);
    if (!todo)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    size_t n = 0;
    for (uint32_t s = 0; s < c->n_slots; s++)
        if (c->slots[s].state == SLOT_LIVE && !c->slots[s].linked)
            todo[n++] = s;
    dv_code rc = n ? hnsw_build(c->h, todo, n, c->n_threads, err) : DV_OK;
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            c->slots[todo[i]].linked = 1;
        for (uint32_t s = 0; s < c->n_slots; s++)
            if (c->slots[s].state == SLOT_DELETED && hnsw_has(c->h, s))
                hnsw_mark_deleted(c->h, s);
        free_list_rebuild(c);
    }
    free(todo);
    return rc;
}

/* After ENOSPC (wmu held): what a reopen would do, in place. Reopen the
 * WAL from disk (cutting a torn record, replaying a complete record whose
 * fsync failed: it was never acknowledged, so applying it is allowed),
 * then write a full checkpoint so that every segment written before the
 * failure - whose page-cache state is no longer trusted - is removed.
 * Any failure leaves the collection poisoned. */
static dv_code heal_after_enospc(dv_coll *c, dv_err *err)
{
    coll_wmu_quiesce(c); /* it replaces the WAL a running checkpoint will cut */
    /* Rough need: the snapshot is rewritten whole. */
    uint64_t need = (uint64_t)c->n_slots * (4ull * c->cfg.dim + 64) + (16ull << 20);
    if (io_disk_free(c->dir) < need)
        return dv_errorf(err, DV_ENOSPC, "coll: %s: still short of disk space", c->name);
    if (c->w) {
        wal_close(c->w, NULL);
        c->w = NULL;
    }
    char wdir[4200];
    snprintf(wdir, sizeof wdir, "%s/wal", c->dir);
    int64_t torn = -1;
    dv_code rc = wal_open(wdir, c->fsync, c->fsync_interval_ms, c->last_seq, 0, replay_apply, c, &torn, &c->w, err);
    if (rc)
        return rc;
    if (wal_last_seq(c->w) > c->last_seq)
        c->last_seq = wal_last_seq(c->w);
    rc = link_unlinked(c, err);
    if (rc)
        return rc;
    atomic_store(&c->poisoned, 0);
    c->dirty = 1;
    rc = coll_checkpoint_locked(c, err); /* poisons again on failure */
    return rc;
}

dv_code coll_open_at(const char *dir, const dv_db_options *opts, int read_only, dv_coll **out, dv_err *err)
{
    snap_manifest m;
    dv_code rc = snap_manifest_read(dir, &m, err);
    if (rc == DV_ENOTFOUND)
        return dv_errorf(err, DV_ECORRUPT, "coll: %s: manifest.json is missing", dir);
    if (rc)
        return rc;
    dv_coll_config cfg = m.cfg;
    rc = coll_config_normalize(&cfg, err);
    if (rc)
        return dv_err_wrap(err, rc == DV_ENOTSUP ? DV_ENOTSUP : DV_ECORRUPT, "coll: %s/manifest.json", dir);
    dv_coll *c = coll_alloc(dir, &cfg, opts, read_only);
    if (!c)
        return dv_errorf(err, DV_ENOMEM, "coll: out of memory");
    c->created_at_ms = m.created_at_ms;
    c->gen = m.gen;
    c->ckpt_seq = c->last_seq = m.wal_seq;
    load_ctx lc = {.c = c, .dir = dir, .m = &m};
    /* The slot arrays and the id map first (no index yet: the helper
     * thread of load_snapshot starts on the ids while the index is made). */
    rc = slots_reserve(c, m.n_slots, err);
    if (!rc)
        rc = load_snapshot(&lc, err);
    free(lc.id_live);
    if (rc)
        goto fail;
    if (m.n_slots) {
        /* The graph is derived data: if it is missing or fails validation it
         * is rebuilt from the vectors (and written at the next checkpoint). */
        dv_err ie = lc.g_err;
        dv_code irc = lc.g_rc;
        if (!irc)
            irc = hnsw_decode_graph(c->h, lc.g, lc.glen, &ie);
        free(lc.g);
        lc.g = NULL;
        if (!irc) {
            for (uint32_t s = 0; s < c->n_slots && !irc; s++) {
                int has = hnsw_has(c->h, s);
                if (has != (c->slots[s].state == SLOT_LIVE))
                    irc = dv_errorf(&ie, DV_ECORRUPT, "index disagrees with the ids about slot %u", s);
            }
        }
        if (!irc) {
            for (uint32_t s = 0; s < c->n_slots; s++)
                c->slots[s].linked = 1;
        } else {
            note(c, "index rebuilt from vectors (%.200s)", ie.msg);
            hnsw_destroy(c->h);
            c->h = NULL;
            rc = coll_make_index(c, (size_t)m.n_slots + 1, err);
            if (rc)
                goto fail;
            /* Re-store every vector: the loader fills a fresh index. */
            uint32_t n_slots = c->n_slots;
            c->n_slots = 0;
            uint64_t n_live = c->n_live, n_deleted = c->n_deleted;
            coll_slot *saved = malloc(((size_t)n_slots + 1) * sizeof *saved);
            if (!saved) {
                rc = dv_errorf(err, DV_ENOMEM, "coll: out of memory");
                goto fail;
            }
            memcpy(saved, c->slots, (size_t)n_slots * sizeof *saved);
            rc = snap_load_vectors(dir, &m, load_vec, &lc, err);
            memcpy(c->slots, saved, (size_t)n_slots * sizeof *saved);
            free(saved);
            c->n_slots = n_slots;
            c->n_live = n_live;
            c->n_deleted = n_deleted;
            if (rc)
                goto fail;
            c->dirty = 1;
        }
    }
    /* Replay the WAL after the snapshot. */
    char wdir[4200];
    snprintf(wdir, sizeof wdir, "%s/wal", dir);
    struct stat st;
    if (!c->read_only || stat(wdir, &st) == 0) {
        int64_t torn = -1;
        rc =
            wal_open(wdir, c->fsync, c->fsync_interval_ms, m.wal_seq, c->read_only, replay_apply, c, &torn, &c->w, err);
        if (rc)
            goto fail;
        if (torn >= 0) {
            char buf[64];
            snprintf(buf, sizeof buf, "%" PRId64, torn);
            note(c, "wal: torn tail truncated at offset %s", buf);
        }
        if (wal_last_seq(c->w) > c->last_seq)
            c->last_seq = wal_last_seq(c->w);
    }
    rc = link_unlinked(c, err);
    if (rc)
        goto fail;
    if (!c->read_only)
        snap_cleanup(dir, &m, NULL); /* stray temp/old-generation files */
    *out = c;
    return DV_OK;
fail:
    coll_free(c);
    return rc;
}
