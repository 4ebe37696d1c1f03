/* recovery_int.h - helpers shared by the recovery modules (recovery.c, trash.c,
 * backup.c, restore.c, import.c, import_legacy.c). Not part of any contract.
 *
 * Directory names under the data dir (docs/recovery.md):
 *   collections/<name>/            live (the engine's)
 *   .deleted/<name>.<unix_ms>/     trash entries
 *   .backups/<name>/<backup_id>/   backups
 *   .staging/<what>-<ms>-<n>/      work in progress; removed at open
 *   .importing/<name>/             committed imports being indexed/placed;
 *                                  finished at open
 */
#ifndef DV_RECOVERY_INT_H
#define DV_RECOVERY_INT_H
#include <stddef.h>
#include <stdint.h>

#include "dvecdb.h"

#define REC_PATH_MAX 4096
#define REC_COLLECTIONS "collections"
#define REC_TRASH ".deleted"
#define REC_BACKUPS ".backups"
#define REC_STAGING ".staging"
/* Committed imports: .importing/<name>/ is a complete collection that
 * replaces (or becomes) collections/<name>; finished at open if a crash
 * interrupted the import. */
#define REC_IMPORTING ".importing"
/* In an .importing/<name>/ directory: "overwrite[ skip_backup]\n" when the
 * import may replace a live collection (absent: it may not). */
#define REC_IMPORT_MARK "import-overwrite"
/* Written into collections/<name>/ just before the rename into the trash
 * (vector count and time of the drop); removed again by a restore. */
#define REC_TRASH_INFO "trash-info.json"
/* The last file written into a backup: sizes and checksums of all others. */
#define REC_BACKUP_MANIFEST "backup.json"

/* snprintf into buf; DV_EINVAL "path too long" when it does not fit. */
dv_code rec_path(char *buf, size_t cap, dv_err *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 1 if path exists (lstat), 0 if not. */
int rec_exists(const char *path);
/* 1 if path is a directory (not following a symlink). */
int rec_is_dir(const char *path);
/* Sorted entry names of dir without "." and ".."; a missing dir is empty. */
dv_code rec_list_dir(const char *dir, char ***names, size_t *n, dv_err *err);
void rec_free_names(char **names, size_t n);
/* mkdir -p dir, then fsync its parent so the new entry survives a crash. */
dv_code rec_mkdir_durable(const char *dir, dv_err *err);
/* A path <data>/.staging/<what>-<ms>-<pid>-<n> that does not exist yet
 * (.staging is created if needed). */
dv_code rec_staging_name(const char *data_dir, const char *what, char *out, size_t cap, dv_err *err);
/* A fresh empty directory <data>/.staging/<what>-<ms>-<n> (path into out). */
dv_code rec_staging_dir(const char *data_dir, const char *what, char *out, size_t cap, dv_err *err);
/* rename(from, to) (failing with DV_EEXIST if to exists when noreplace),
 * then fsync both parent directories: the commit point of every recovery
 * operation. DV_OK: done and durable. An error: not done (when an fsync
 * fails after the rename, the rename is undone, best effort). */
dv_code rec_rename_durable(const char *from, const char *to, int noreplace, dv_err *err);
/* Crash-safe removal of a tree: rename it into .staging (the commit point),
 * then delete it. A crash mid-delete leaves only staging debris. */
dv_code rec_discard(const char *data_dir, const char *path, dv_err *err);
/* fsync every directory of a tree built in staging, deepest first, before
 * the rename that publishes it. */
dv_code rec_fsync_tree_dirs(const char *root, dv_err *err);
/* Copy a regular file (fsynced; to must not exist). */
dv_code rec_copy_file(const char *from, const char *to, dv_err *err);
/* Size and XXH3-64 of a file, reading it fully. */
dv_code rec_hash_file(const char *path, uint64_t *size, uint64_t *xxh3, dv_err *err);
/* Split "<name>.<ms>" (a trash id); 0 on success. */
int rec_parse_trash_id(const char *id, char name[DV_NAME_MAX + 1], int64_t *ms);
/* Read the trash-info file of a directory (0 fields when absent). */
void rec_read_trash_info(const char *dir, uint64_t *vector_count, int64_t *deleted_at_ms);
/* Write the trash-info file into dir (atomic, fsynced). */
dv_code rec_write_trash_info(const char *dir, const char *name, uint64_t vector_count, int64_t deleted_at_ms,
                             dv_err *err);
/* UTC "yyyymmddThhmmss.mmmZ" of ms (20 chars + NUL). */
void rec_format_compact_time(int64_t ms, char out[32]);

/* Drop with the catalog lock already held (dv_coll_drop, restore with
 * overwrite). held: a handle of that collection opened before the lock, used
 * for its final vector count after the detach (may be NULL: count 0). */
dv_code trash_drop_locked(dv_db *db, const char *name, dv_coll *held, dv_trash_entry *out, dv_err *err);
/* Find a trash entry: by trash_id, or the newest of name when id is NULL. */
dv_code trash_find(dv_db *db, const char *name, const char *trash_id, dv_trash_entry *out, dv_err *err);
/* Backup of a collection through a handle the caller holds (restore with
 * overwrite, hard delete and import call it with the catalog lock held: it
 * takes no catalog lock). Not audited, no retention: the callers do both. */
dv_code backup_create_held(dv_db *db, const char *name, dv_coll *c, const char *reason, dv_backup_info *out,
                           dv_err *err);
/* Apply automatic-backup retention for one collection. */
dv_code backup_prune_auto(dv_db *db, const char *name, dv_err *err);
/* Copy a verified backup's files (all but its manifest) into an empty dir. */
dv_code backup_materialize(dv_db *db, const char *name, const char *backup_id, const char *dst_dir, dv_err *err);

/* ---- import (import.c, import_legacy.c) ---- */

/* A forward reader over one source file with a sliding window: views stay
 * valid until the next imp_get. */
typedef struct imp_reader {
    const char *path;
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t base; /* file offset of buf[0] */
    size_t len;    /* valid bytes in buf */
    int io_failed; /* a read failed (errno in io_errno) */
    int io_errno;
} imp_reader;

/* n bytes at off, or NULL past EOF or on a read error (io_failed set). */
const uint8_t *imp_get(imp_reader *r, uint64_t off, size_t n);

/* Where decoded points go: kept in memory (a repeated id replaces the
 * earlier point), then written as one snapshot generation. */
typedef struct imp_sink imp_sink;
/* Add one point (copied); DV_OK or the error that aborts the import. */
dv_code imp_sink_add(imp_sink *s, const char *id, const float *v, const char *meta, size_t meta_len, dv_err *err);
/* Report progress ("read", bytes done of total); DV_EBUSY if cancelled. */
dv_code imp_sink_progress(imp_sink *s, const char *phase, uint64_t done, uint64_t total, dv_err *err);

typedef struct legacy_stats {
    uint64_t imported, skipped, bytes_scanned;
    uint64_t meta_ambiguous; /* records with values kept under _legacy_raw */
} legacy_stats;

/* Decode an original d-vecDB vectors.bin (format: top of import_legacy.c).
 * *dim: expected dimension, 0 = take it from the first record header.
 * Every intact record goes to the sink; damaged ones are skipped. */
dv_code legacy_import(imp_reader *r, uint32_t *dim, imp_sink *sink, legacy_stats *st, dv_err *err);
/* 1 if the first bytes look like an original-format record header. */
int legacy_sniff(const uint8_t *p, size_t n);

/* Finish the import committed to .importing/<name> before a crash (called
 * at open): backup and trash the live collection when the import was an
 * overwrite, then rename it into collections/<name> and attach it (the
 * index is built then if it was not yet). If the name was taken and the
 * import was no overwrite, it goes to the trash instead. Audited. */
dv_code import_finish_pending(dv_db *db, const char *name, dv_err *err);
#endif
