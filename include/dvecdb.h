/*
 * dvecdb.h - d-vecDB, an embeddable vector database.
 *
 * This header is the whole public interface of libdvecdb and its manual.
 * The server (server/) and the CLI (cli/) use nothing else.
 *
 * Model
 *   A database (dv_db) is a data directory holding named collections.
 *   A collection (dv_coll) holds vectors of one dimension and metric, each
 *   under a string id (1..DV_ID_MAX bytes of UTF-8) with optional JSON-object
 *   metadata. Searches use an HNSW graph index (exact search when a filter is
 *   selective or the collection is small).
 *
 * Durability
 *   Every write (upsert, delete) is appended to the collection's write-ahead
 *   log and, under the default fsync policy DV_FSYNC_ALWAYS, fsynced before
 *   the call returns DV_OK: an acknowledged write survives kill -9 and power
 *   loss. A batch is one WAL record: after a crash it is either wholly
 *   present or wholly absent. Checkpoints write immutable snapshot files
 *   (temp -> fsync -> rename -> fsync dir) and then cut the WAL.
 *   If a WAL or snapshot write or fsync fails, the collection is poisoned:
 *   further writes return DV_EFATAL until the database is reopened (reads
 *   continue). Nothing is silently retried.
 *
 * Nothing is destroyed by one call: dv_coll_drop() moves a collection to the
 *   trash (restorable for the retention period); permanent removal
 *   (dv_coll_hard_delete) and overwriting restores take a backup first unless
 *   the caller opts out.
 *
 * Errors
 *   Every fallible function returns a dv_code (DV_OK == 0, errors < 0) and
 *   takes a `dv_err *err` last; err may be NULL. On error err->code and
 *   err->msg ("module: what: detail") say what happened. A failing function
 *   leaves its out-parameters untouched.
 *
 * Ownership
 *   Arguments are borrowed for the duration of the call; the engine copies
 *   what it keeps. Results are library objects freed with their _free().
 *
 * Threads
 *   dv_db and dv_coll handles are safe to use from many threads at once.
 *   Searches and gets on one collection run in parallel; writes to one
 *   collection are serialized; writes to different collections do not
 *   block each other.
 */
#ifndef DVECDB_H
#define DVECDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DV_VERSION_STRING "0.1.0"

/* ---- limits -------------------------------------------------------- */
#define DV_NAME_MAX 64              /* collection name: [A-Za-z0-9_-]{1,64} */
#define DV_ID_MAX 256               /* vector id: 1..256 bytes of UTF-8, no NUL */
#define DV_DIM_MAX 65536            /* dimension: 1..65536 */
#define DV_METADATA_MAX (64 * 1024) /* metadata JSON text, bytes */
#define DV_K_MAX 10000              /* search k */
#define DV_EF_MAX 10000             /* search ef */

/* HNSW tunables: MIN / DEFAULT / MAX in one place. */
#define DV_HNSW_M_MIN 2
#define DV_HNSW_M_DEFAULT 16
#define DV_HNSW_M_MAX 128
#define DV_HNSW_EF_CONSTRUCTION_MIN 4
#define DV_HNSW_EF_CONSTRUCTION_DEFAULT 200
#define DV_HNSW_EF_CONSTRUCTION_MAX 4096
#define DV_HNSW_EF_SEARCH_MIN 1
#define DV_HNSW_EF_SEARCH_DEFAULT 50
#define DV_HNSW_EF_SEARCH_MAX DV_EF_MAX
#define DV_HNSW_MAX_LAYER_MIN 1
#define DV_HNSW_MAX_LAYER_DEFAULT 16
#define DV_HNSW_MAX_LAYER_MAX 32

/* ---- errors -------------------------------------------------------- */
typedef enum dv_code {
    DV_OK = 0,
    DV_EINVAL = -1,    /* bad argument or malformed input */
    DV_EDIM = -2,      /* vector dimension does not match the collection */
    DV_ENOTFOUND = -3, /* no such collection / id / backup / trash entry */
    DV_EEXIST = -4,    /* name already in use */
    DV_ECORRUPT = -5,  /* bytes on disk fail validation (message: file, offset) */
    DV_EIO = -6,       /* an I/O call failed */
    DV_ENOSPC = -7,    /* disk full (nothing acknowledged was lost) */
    DV_EFATAL = -8,    /* handle poisoned after a failed write/fsync; reopen */
    DV_ENOMEM = -9,    /* out of memory */
    DV_ENOTSUP = -10,  /* valid but not supported yet (e.g. Float16) */
    DV_EBUSY = -11,    /* operation conflicts with one in progress */
    DV_EPERM = -12,    /* path outside allowed roots, or forbidden */
    DV_EDAMAGED = -13, /* collection found damaged at open; restore it */
    DV_ELIMIT = -14,   /* a size/count limit was exceeded */
    DV_EREADONLY = -15 /* database opened read-only */
} dv_code;

typedef struct dv_err {
    dv_code code;
    char msg[512];
} dv_err;

/* Static English name of a code ("DV_EDIM: dimension mismatch"). Never NULL. */
const char *dv_strerror(dv_code code);
/* Short stable token for a code, e.g. "dimension_mismatch", for APIs. */
const char *dv_code_name(dv_code code);

/* ---- enums ---------------------------------------------------------- */
typedef enum dv_metric {
    DV_METRIC_COSINE = 0,    /* distance = 1 - cos(a, b); vectors stored normalized */
    DV_METRIC_EUCLIDEAN = 1, /* distance = ||a - b||_2 (searched as L2 squared) */
    DV_METRIC_DOT = 2,       /* distance = -<a, b> (smaller is closer) */
    DV_METRIC_MANHATTAN = 3  /* distance = sum |a_i - b_i| */
} dv_metric;

typedef enum dv_vtype {
    DV_VTYPE_F32 = 0,
    DV_VTYPE_F16 = 1, /* rejected with DV_ENOTSUP for now */
    DV_VTYPE_I8 = 2   /* rejected with DV_ENOTSUP for now */
} dv_vtype;

/* Case-insensitive parse of "Cosine" / "Euclidean" / "DotProduct" /
 * "Manhattan" (also "l2", "ip", "dot", "l1"). DV_EINVAL if unknown. */
dv_code dv_metric_parse(const char *s, dv_metric *out, dv_err *err);
const char *dv_metric_name(dv_metric m);                           /* "Cosine", ... */
dv_code dv_vtype_parse(const char *s, dv_vtype *out, dv_err *err); /* "Float32", "float16", "Int8" */
const char *dv_vtype_name(dv_vtype t);

/* 0 if name matches [A-Za-z0-9_-]{1,64} and is not a reserved route word
 * ("deleted", "import", "backups"); else DV_EINVAL with the reason. */
dv_code dv_name_validate(const char *name, dv_err *err);

typedef enum dv_fsync_policy {
    DV_FSYNC_ALWAYS = 0,   /* fsync before every acknowledgement (default): nothing acknowledged is lost */
    DV_FSYNC_INTERVAL = 1, /* fsync every fsync_interval_ms: a crash loses at most that window */
    DV_FSYNC_NEVER = 2     /* leave it to the OS: a power loss can lose anything since the last checkpoint */
} dv_fsync_policy;

/* ---- database ------------------------------------------------------- */
typedef struct dv_db dv_db;
typedef struct dv_coll dv_coll;

typedef struct dv_db_options {
    dv_fsync_policy fsync;
    uint32_t fsync_interval_ms;      /* DV_FSYNC_INTERVAL period; default 100 */
    uint64_t checkpoint_wal_bytes;   /* background checkpoint when a WAL passes this; default 64 MiB */
    uint32_t n_threads;              /* index build threads; 0 = number of CPUs */
    int64_t trash_retention_s;       /* default 86400 (24 h) */
    uint32_t backup_keep_auto;       /* automatic backups kept per collection; default 5 */
    const char *const *import_roots; /* allowed roots for dv_import(); NULL/0 = data dir only */
    size_t n_import_roots;
    int read_only; /* open without writing anything */
} dv_db_options;

/* Fill *opts with the defaults above. */
void dv_db_options_init(dv_db_options *opts);

/* Open (creating if absent) the data directory `path` and recover every
 * collection: load its newest valid snapshot, replay its WAL, truncate a torn
 * WAL tail. A collection whose files fail validation is opened as damaged
 * (listed, dv_coll_open returns DV_EDAMAGED) and the others open normally.
 * Leftover staging/temp files from a crash are removed. Sweeps expired trash.
 * opts may be NULL for defaults. Errors: DV_EIO, DV_ENOMEM, DV_EINVAL. */
dv_code dv_db_open(const char *path, const dv_db_options *opts, dv_db **out, dv_err *err);

/* Checkpoint every collection and free the handle. Collection handles still
 * open become invalid. Returns the first error met (the handle is freed anyway). */
dv_code dv_db_close(dv_db *db, dv_err *err);

typedef struct dv_db_stats {
    uint32_t n_collections;
    uint32_t n_damaged;
    uint64_t n_vectors;  /* sum over collections */
    uint64_t disk_bytes; /* data dir, collections only */
    uint64_t mem_bytes;
    uint64_t disk_free_bytes;    /* free space of the data dir's filesystem */
    uint64_t wal_fsyncs;         /* fsyncs of WAL files since open */
    double wal_fsync_seconds;    /* total time in those fsyncs */
    uint64_t wal_fsync_hist[12]; /* counts with latency <= 0.1,0.25,0.5,1,2.5,5,10,25,50,100,250,+inf ms */
    int poisoned;                /* a collection refused writes after an I/O failure */
} dv_db_stats;

dv_code dv_db_stats_get(dv_db *db, dv_db_stats *out, dv_err *err);
const char *dv_db_path(const dv_db *db);

/* ---- collections ------------------------------------------------------ */
typedef struct dv_coll_config {
    char name[DV_NAME_MAX + 1];
    uint32_t dim;
    dv_metric metric;
    dv_vtype vtype;
    uint32_t m;               /* 0 = default */
    uint32_t ef_construction; /* 0 = default */
    uint32_t ef_search;       /* 0 = default; used when a search passes ef 0 */
    uint32_t max_layer;       /* 0 = default */
} dv_coll_config;

typedef struct dv_coll_info {
    dv_coll_config config; /* with defaults filled in */
    uint64_t n_vectors;    /* live vectors */
    uint64_t n_deleted;    /* tombstoned slots waiting for reuse by later upserts */
    uint64_t disk_bytes;
    uint64_t mem_bytes;
    uint64_t wal_bytes;
    uint64_t last_seq; /* last WAL sequence number applied */
    int64_t created_at_ms;
    int damaged; /* 1: failed validation at open, see damage */
    char damage[256];
} dv_coll_info;

/* Create an empty collection. DV_EEXIST if the name is live (never a
 * re-create); DV_EINVAL on a bad name/dim/metric; DV_ENOTSUP for F16/I8.
 * Durable on return (directory and manifest fsynced). */
dv_code dv_coll_create(dv_db *db, const dv_coll_config *cfg, dv_err *err);

/* Get a reference-counted handle; release with dv_coll_close(). The handle
 * stays valid (reads keep working) even if the collection is dropped
 * meanwhile; writes then return DV_ENOTFOUND. */
dv_code dv_coll_open(dv_db *db, const char *name, dv_coll **out, dv_err *err);
void dv_coll_close(dv_coll *coll);

/* Names and infos of every live collection (damaged ones included, flagged).
 * Free with dv_free(). */
dv_code dv_db_list(dv_db *db, dv_coll_info **out, size_t *n_out, dv_err *err);
dv_code dv_coll_info_get(dv_coll *coll, dv_coll_info *out, dv_err *err);
/* The collection's configuration (defaults filled in). It never changes
 * after create, so this takes no lock and never waits for a writer or a
 * checkpoint - unlike dv_coll_info_get, which measures the files and the
 * WAL. Use it on hot paths (e.g. to check a query's dimension). */
void dv_coll_config_get(const dv_coll *coll, dv_coll_config *out);

/* Write a checkpoint now (snapshot + WAL cut). */
dv_code dv_coll_checkpoint(dv_coll *coll, dv_err *err);

/* ---- writes ------------------------------------------------------------ */
typedef struct dv_point {
    const char *id;       /* NUL-terminated, 1..DV_ID_MAX bytes UTF-8 */
    const float *vector;  /* dim floats, finite */
    const char *metadata; /* JSON object text or NULL; kept byte-exact */
    size_t metadata_len;  /* bytes of metadata (0 with NULL) */
} dv_point;

/* Insert or replace n points as one atomic batch. Every point is validated
 * first (id, dimension, NaN/Inf, metadata is a JSON object <= DV_METADATA_MAX);
 * on any error nothing is written (err names the index of the bad point).
 * Duplicate ids within a batch: the last one wins. */
dv_code dv_coll_upsert(dv_coll *coll, const dv_point *pts, size_t n, dv_err *err);

/* Delete ids (absent ids are ignored and not counted). Atomic, durable. */
dv_code dv_coll_delete(dv_coll *coll, const char *const *ids, size_t n, size_t *n_deleted, dv_err *err);

/* ---- reads ------------------------------------------------------------- */
typedef struct dv_record {
    char *id;
    float *vector; /* dim floats as stored (normalized for Cosine) */
    uint32_t dim;
    char *metadata; /* NULL if none */
    size_t metadata_len;
} dv_record;

/* Copy of one point; DV_ENOTFOUND if absent. Free with dv_record_free().
 * The record and everything it points to (id, vector, metadata) are one
 * allocation: free only the record, never its fields one by one. */
dv_code dv_coll_get(dv_coll *coll, const char *id, dv_record **out, dv_err *err);
void dv_record_free(dv_record *rec);

typedef struct dv_search_params {
    uint32_t k;         /* 1..DV_K_MAX */
    uint32_t ef;        /* 0 = collection default; raised to k if smaller */
    const char *filter; /* JSON filter text or NULL; see docs/api.md */
    size_t filter_len;
    int include_vectors;
    int exact; /* 1: brute force (ground truth) */
} dv_search_params;

typedef struct dv_hit {
    const char *id;
    float distance;       /* per dv_metric; ascending in results */
    const char *metadata; /* NULL if none */
    size_t metadata_len;
    const float *vector; /* NULL unless include_vectors */
} dv_hit;

typedef struct dv_result {
    size_t n;
    uint32_t dim;
    dv_hit *hits;
} dv_result;

/* k nearest neighbours of q (dim floats), nearest first. With a filter,
 * returns min(k, matches) results: it switches to exact search over the
 * matches when the filter is selective. DV_EINVAL for a malformed filter.
 * Free the result with dv_result_free(). */
dv_code dv_coll_search(dv_coll *coll, const float *q, const dv_search_params *p, dv_result **out, dv_err *err);

/* Page through points in a stable internal order (slot order: stable while
 * nothing is written; a point written later may take a freed slot and so
 * appear before older ones); hits carry distance 0.
 * A dv_result and all its hits' ids, metadata and vectors are one
 * allocation freed by dv_result_free(); never free the fields. */
dv_code dv_coll_scroll(dv_coll *coll, uint64_t offset, uint32_t limit, int include_vectors, dv_result **out,
                       dv_err *err);
void dv_result_free(dv_result *r);

/* Free arrays returned by list functions. */
void dv_free(void *p);

/* ---- recovery: trash, backups, restore, import, audit ------------------- */
typedef struct dv_trash_entry {
    char name[DV_NAME_MAX + 1];
    char trash_id[DV_NAME_MAX + 32]; /* "<name>.<unix_ms>" */
    int64_t deleted_at_ms;
    int64_t expires_at_ms;
    uint64_t vector_count;
    uint64_t size_bytes;
} dv_trash_entry;

/* Soft delete: atomic rename into <data>/.deleted/<name>.<unix_ms>/ (O(1)).
 * out may be NULL. */
dv_code dv_coll_drop(dv_db *db, const char *name, dv_trash_entry *out, dv_err *err);
dv_code dv_trash_list(dv_db *db, dv_trash_entry **out, size_t *n_out, dv_err *err);
/* Purge expired entries now; *n_purged may be NULL. Each purge is audited. */
dv_code dv_trash_purge_expired(dv_db *db, size_t *n_purged, dv_err *err);

typedef struct dv_backup_info {
    char name[DV_NAME_MAX + 1];
    char backup_id[64]; /* "<UTC yyyymmddThhmmss.mmmZ>-<reason>" */
    char reason[32];    /* manual, pre-hard-delete, pre-restore-overwrite, pre-import, ... */
    int64_t created_at_ms;
    uint64_t vector_count;
    uint64_t size_bytes;
} dv_backup_info;

/* Consistent backup while writes continue: hard links of the immutable
 * snapshot files + a copy of the live WAL; manifest written last.
 * reason NULL = "manual". */
dv_code dv_backup_create(dv_db *db, const char *name, const char *reason, dv_backup_info *out, dv_err *err);
/* name NULL = every collection's backups. Newest first. */
dv_code dv_backup_list(dv_db *db, const char *name, dv_backup_info **out, size_t *n_out, dv_err *err);
dv_code dv_backup_delete(dv_db *db, const char *name, const char *backup_id, dv_err *err);
/* Re-read every file of a backup and check checksums and counts.
 * DV_ECORRUPT names the bad file. */
dv_code dv_backup_verify(dv_db *db, const char *name, const char *backup_id, dv_backup_info *out, dv_err *err);

typedef enum dv_restore_source { DV_RESTORE_TRASH = 0, DV_RESTORE_BACKUP = 1 } dv_restore_source;
typedef struct dv_restore_opts {
    dv_restore_source source;
    const char *backup_id; /* DV_RESTORE_BACKUP: required; trash: optional trash_id (default newest) */
    const char *new_name;  /* restore under another name; NULL = same name */
    int overwrite;         /* replace a live collection of that name (backup taken first) */
    int skip_backup;
} dv_restore_opts;

/* Restore; DV_EEXIST if the target name is live and !overwrite. The index is
 * loaded if valid, else rebuilt. *restored_as may be NULL. */
dv_code dv_restore(dv_db *db, const char *name, const dv_restore_opts *opts, dv_coll_info *restored_as, dv_err *err);

/* Permanent removal (after a pre-hard-delete backup unless skip_backup;
 * backup_out may be NULL and is zeroed when skipped). */
dv_code dv_coll_hard_delete(dv_db *db, const char *name, int skip_backup, dv_backup_info *backup_out, dv_err *err);

typedef int (*dv_progress_fn)(void *ctx, const char *phase, uint64_t done, uint64_t total);

typedef struct dv_import_opts {
    const char *path; /* directory or file; must resolve under an import root */
    const char *collection_name;
    uint32_t dim; /* 0 = take from manifest (own format) / file header */
    int has_metric;
    dv_metric metric;
    dv_vtype vtype;
    const char *format; /* NULL/"auto", "dvecdb", "legacy", "fvecs", "npy" */
    int skip_backup;
    dv_progress_fn progress; /* may be NULL; return nonzero to cancel */
    void *progress_ctx;
    int overwrite; /* replace a live collection of that name: a pre-import
                      backup first (unless skip_backup), the old one goes
                      to the trash; 0: DV_EEXIST if the name is live */
} dv_import_opts;

typedef struct dv_import_report {
    char format[16];
    uint64_t imported;
    uint64_t skipped;
    uint64_t bytes_scanned;
    char backup_id[64];                       /* overwrite: the pre-import backup ("" if none) */
    char replaced_trash_id[DV_NAME_MAX + 32]; /* overwrite: trash id of the old collection ("" if none) */
} dv_import_report;

/* Import an orphaned collection into a new collection (DV_EEXIST if live,
 * unless opts->overwrite). The data is committed (durable) before the index
 * is built; a crash at any point leaves the old collection or the new one
 * (finished at the next open), never neither. Never modifies the source.
 * DV_EPERM if the path escapes the import roots. */
dv_code dv_import(dv_db *db, const dv_import_opts *opts, dv_import_report *out, dv_err *err);

typedef struct dv_audit_event {
    const char *action;     /* create, delete, restore, import, backup, hard-delete, purge, auth-failure, ... */
    const char *collection; /* may be NULL */
    const char *outcome;    /* "ok" or an error code name */
    const char *actor;      /* key id (never the key), may be NULL */
    const char *remote;     /* remote address, may be NULL */
    const char *route;      /* may be NULL */
    const char *detail;     /* may be NULL */
} dv_audit_event;

/* Append one JSON line to <data>/audit.log (the engine audits its own
 * recovery operations; shells add actor/remote through this call). */
dv_code dv_audit_append(dv_db *db, const dv_audit_event *ev, dv_err *err);
/* Who is asking, for the engine's own audit lines (delete, restore, backup,
 * hard-delete, purge, import, ...) written by the calling thread until the
 * next call: a shell sets it around each request so that those lines carry
 * the caller's key id, address and route instead of actor "engine". The
 * strings are not copied: they must outlive the operation. All NULL clears
 * the context (and its record of what was written). */
void dv_audit_context_set(const char *actor, const char *remote, const char *route);
/* 1 if the engine wrote an audit line with this action on the calling
 * thread since the last dv_audit_context_set(): a shell that audits a
 * refused request itself checks this first, so one operation never gets
 * two lines. */
int dv_audit_context_wrote(const char *action);
/* Newest `limit` lines, oldest first; free with dv_audit_free(). */
dv_code dv_audit_read(dv_db *db, size_t limit, char ***lines_out, size_t *n_out, dv_err *err);
void dv_audit_free(char **lines, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* DVECDB_H */
