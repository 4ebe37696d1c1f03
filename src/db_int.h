/* db_int.h - internal hooks between the catalog (db.c, coll.c) and the
 * recovery modules (trash.c, backup.c, import.c, audit.c).
 *
 * Layout (docs/format.md): <data>/collections/<name>/, <data>/.deleted/<name>.<ms>/,
 * <data>/.backups/<name>/<id>/, <data>/.staging/ (cleaned at open), <data>/audit.log.
 */
#ifndef DV_DB_INT_H
#define DV_DB_INT_H
#include "dvecdb.h"

const char *db_dir(const dv_db *db);
const dv_db_options *db_opts(const dv_db *db); /* deep copy owned by db */

/* The catalog lock serializes create/drop/restore/import/hard-delete. */
void db_catalog_lock(dv_db *db);
void db_catalog_unlock(dv_db *db);

/* With the catalog lock held: 1 if name is a live collection. */
int db_has_locked(dv_db *db, const char *name);
/* With the catalog lock held: checkpoint and close collections/<name>, remove
 * it from the catalog. Afterwards nothing in the engine touches that
 * directory; open dv_coll handles keep serving reads from memory and their
 * writes fail with DV_ENOTFOUND. */
dv_code db_detach_locked(dv_db *db, const char *name, dv_err *err);
/* With the catalog lock held: open (recover) collections/<name> and register it. */
dv_code db_attach_locked(dv_db *db, const char *name, dv_err *err);

/* Collections outside the catalog (staging for import, backup verify). */
/* Create an empty collection in directory dir (must not exist). */
dv_code coll_create_at(const char *dir, const dv_coll_config *cfg, const dv_db_options *opts, dv_coll **out,
                       dv_err *err);
/* Open and recover the collection in dir; read_only: never write to dir
 * (verifies checksums, replays the WAL in memory). */
dv_code coll_open_at(const char *dir, const dv_db_options *opts, int read_only, dv_coll **out, dv_err *err);
/* Upsert without per-batch fsync (bulk load into staging): durable only after
 * coll_checkpoint. Same validation as dv_coll_upsert. */
dv_code coll_upsert_bulk(dv_coll *c, const dv_point *pts, size_t n, dv_err *err);
/* Run fn with this collection's writes paused, after a checkpoint when
 * checkpoint_first; fn sees a quiescent directory (snapshot files immutable,
 * WAL synced). */
typedef dv_code (*coll_paused_fn)(void *ctx, const char *coll_dir, dv_err *err);
dv_code coll_with_writes_paused(dv_coll *c, int checkpoint_first, coll_paused_fn fn, void *ctx, dv_err *err);
const char *coll_dir(const dv_coll *c);

/* Engine-internal audit (recovery modules call it; see dv_audit_append). */
void audit_log(dv_db *db, const char *action, const char *collection, dv_code outcome, const char *detail);

/* Recovery hooks called by db.c: at open (after collections are recovered)
 * remove staging leftovers and sweep expired trash. */
dv_code recovery_on_open(dv_db *db, dv_err *err);
#endif
