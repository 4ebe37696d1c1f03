/* coll_int.h - collection internals shared by coll.c (the collection) and
 * db.c (the catalog). Not a contract for other modules: they use db_int.h.
 *
 * A collection in memory:
 *   slots      0..n_slots-1; a slot holds one version of one point (id,
 *              metadata text + parsed payload, a vector in the hnsw). An
 *              upsert of an existing id tombstones the old slot and takes
 *              another; a delete tombstones. A tombstoned slot keeps its
 *              vector and links (the graph may route through it) until a
 *              later upsert takes it from the free list (hnsw_reuse), so
 *              n_slots stays near the peak live count however many upserts
 *              and deletes a collection sees. The hnsw entry point is never
 *              taken. During WAL replay tombstones are not reused (the index
 *              learns of them only after the parallel build); the free list
 *              is rebuilt from the slots when recovery has linked them.
 *   id map     open addressing (XXH3 of the id), value = slot + 1.
 *   hnsw       owns the vectors (normalized for Cosine, built with DOT).
 *
 * Locks, always taken in this order: db list lock -> wmu -> rw.
 *   wmu   serializes writers, checkpoints and coll_with_writes_paused.
 *         dv_coll_checkpoint holds it only to begin and to end: in between
 *         (ckpt_running) writers go on while the snapshot files are written
 *         from a frozen view - the graph encoded at the start, the live
 *         flags of the first ckpt_n slots captured, no slot reused, and the
 *         id/metadata text of slots tombstoned meanwhile kept (ckpt_defer)
 *         until the end. Everything else that takes wmu waits for the end
 *         (coll_wmu_quiesced).
 *   rw    shared: search/get/scroll/info; exclusive: changing slot arrays,
 *         the id map and hnsw capacity. hnsw_link runs under wmu only,
 *         concurrently with searches (hnsw's concurrent-link contract).
 */
#ifndef DV_COLL_INT_H
#define DV_COLL_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dvecdb.h"
#include "hnsw.h"
#include "payload.h"
#include "wal.h"

/* WAL record types of a collection (payload formats: top of coll.c). */
#define COLL_WAL_UPSERT_BATCH 1
#define COLL_WAL_DELETE_BATCH 2

/* slot.state */
#define SLOT_LIVE 1u    /* id maps here */
#define SLOT_DELETED 2u /* tombstoned (vector kept for navigation) */

typedef struct coll_slot {
    char *id;   /* NUL-terminated; NULL once tombstoned */
    char *meta; /* metadata text, NULL if none */
    uint32_t meta_len;
    uint8_t state;
    uint8_t linked; /* linked into the hnsw graph */
    payload *pl;    /* parsed metadata, NULL if none */
} coll_slot;

struct dv_coll {
    char *dir;
    char *name;
    dv_coll_config cfg; /* defaults filled in */
    dv_fsync_policy fsync;
    uint32_t fsync_interval_ms;
    unsigned n_threads;
    int read_only;
    int64_t created_at_ms;

    atomic_int refs;
    pthread_mutex_t wmu;
    pthread_rwlock_t rw;

    wal *w;
    hnsw *h;

    coll_slot *slots;
    uint32_t n_slots, slot_cap;
    uint32_t *free_slots; /* tombstoned slots ready for reuse; slot_cap long */
    uint32_t n_free;
    uint32_t *map; /* slot + 1; 0 empty; MAP_TOMB removed */
    uint32_t map_cap, map_used;
    uint64_t n_live, n_deleted;

    uint64_t last_seq; /* last WAL seq applied in memory */
    uint64_t ckpt_seq; /* WAL seq covered by the manifest */
    uint64_t gen;      /* snapshot generation named by the manifest */
    int dirty;         /* changes not in a snapshot (bulk loads, compaction) */
    uint64_t payload_mem;

    /* a checkpoint writing its files without wmu (see Locks above) */
    int ckpt_running;
    pthread_cond_t ckpt_cv; /* signalled (wmu) when it ends */
    uint32_t ckpt_n;        /* slots in its view */
    uint32_t *ckpt_defer;   /* slots tombstoned meanwhile: id/meta freed at the end */
    uint32_t n_ckpt_defer;

    atomic_int poisoned; /* a WAL/snapshot write failed: writes -> DV_EFATAL */
    dv_code poison_code;
    char poison_msg[256];
    atomic_int detached; /* removed from the catalog: writes -> DV_ENOTFOUND */

    /* what recovery did at open (torn tail, index rebuilt), for the audit log */
    char recovery_note[512];
};

/* Fill cfg's zero fields with defaults and validate it (name, dim, metric,
 * vtype, HNSW bounds). DV_ENOTSUP for Float16/Int8. */
dv_code coll_config_normalize(dv_coll_config *cfg, dv_err *err);
/* Checkpoint with wmu already held. */
dv_code coll_checkpoint_locked(dv_coll *c, dv_err *err);
/* WAL bytes not yet covered by a checkpoint (0 when no WAL). */
uint64_t coll_wal_bytes(dv_coll *c);
/* fsync the WAL (interval policy thread). */
dv_code coll_sync(dv_coll *c, dv_err *err);
/* Final close of a catalog collection: checkpoint unless read-only or
 * poisoned, close the WAL; the handle keeps serving reads from memory. */
dv_code coll_shutdown(dv_coll *c, int checkpoint, dv_err *err);
void coll_ref(dv_coll *c);
/* Live vector count and memory use without taking a handle. */
void coll_counts(dv_coll *c, uint64_t *n_live, uint64_t *mem_bytes);
void coll_wal_stats(dv_coll *c, wal_stats *out);
#endif
