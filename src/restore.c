/*
 * restore.c - dv_restore (from the trash or from a backup) and
 * dv_coll_hard_delete (permanent removal after a backup).
 *
 * Restore from the trash renames .deleted/<name>.<ms>/ back to
 * collections/<target>/ (O(1)); restore from a backup verifies it first,
 * rebuilds it in .staging (snapshot files hard-linked, WAL copied) and
 * renames that into collections/<target>/. Either way the engine then
 * attaches the directory like any collection at open: the index is loaded
 * if valid, else rebuilt, and the WAL replayed.
 *
 * Invariants:
 *   - the catalog lock is held from the existence check of the target to
 *     the attach, so no create/drop/import can slip in between;
 *   - each step commits with one rename: the restore rename itself, and with
 *     overwrite the drop of the old collection to the trash before it (after
 *     its pre-restore-overwrite backup); if the restore cannot be attached
 *     both renames are undone, so the call is all or nothing while the
 *     process lives; a crash between the two leaves the old collection in
 *     the trash and the target name free: nothing is lost (docs/recovery.md);
 *   - a backup that fails verification is never restored, and the live
 *     collection is not touched in that case (verification comes first);
 *   - a hard delete commits by renaming the collection into .staging, after
 *     its pre-hard-delete backup (unless skip_backup); every operation is
 *     audited.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "err.h"
#include "io.h"
#include "recovery_int.h"
#include "snap.h"

/* Remove the trash marker a restored directory carries (inert if left: the
 * next open removes it too). */
static void drop_trash_info(const char *dir)
{
    char p[REC_PATH_MAX];
    if (rec_path(p, sizeof p, NULL, "%s/%s", dir, REC_TRASH_INFO) == DV_OK && rec_exists(p) && io_unlink(p) == 0)
        (void)io_fsync_dir(dir);
}

/* Give the collection in dir the name `name` in its manifest.json (the
 * engine takes a collection's name from there). The manifest is replaced
 * atomically, by a new inode: a hard-linked copy elsewhere is untouched. */
static dv_code rename_manifest(const char *dir, const char *name, dv_err *err)
{
    snap_manifest m;
    dv_code rc = snap_manifest_read(dir, &m, err);
    if (rc != DV_OK)
        return rc;
    if (strcmp(m.cfg.name, name) == 0)
        return DV_OK;
    snprintf(m.cfg.name, sizeof m.cfg.name, "%s", name);
    return snap_manifest_write(dir, &m, err);
}

/* Put a collection dropped by this restore (overwrite) back in service. */
static void undo_drop(dv_db *db, const char *target, const dv_trash_entry *dropped)
{
    char from[REC_PATH_MAX], to[REC_PATH_MAX];
    const char *data = db_dir(db);
    if (rec_path(from, sizeof from, NULL, "%s/%s/%s", data, REC_TRASH, dropped->trash_id) != DV_OK ||
        rec_path(to, sizeof to, NULL, "%s/%s/%s", data, REC_COLLECTIONS, target) != DV_OK)
        return;
    if (rec_rename_durable(from, to, 1, NULL) == DV_OK) {
        drop_trash_info(to);
        (void)db_attach_locked(db, target, NULL);
    }
}

typedef struct restore_plan {
    const char *name, *target;
    const dv_restore_opts *o;
    dv_trash_entry entry; /* source trash entry */
    dv_backup_info pre;   /* pre-restore-overwrite backup, if taken */
    int took_backup;
    dv_trash_entry dropped; /* the overwritten collection, if any */
    int dropped_target;
} restore_plan;

/* The locked part of dv_restore. */
static dv_code restore_locked(dv_db *db, restore_plan *pl, dv_coll *held, dv_err *err)
{
    const char *data = db_dir(db);
    char live[REC_PATH_MAX], src[REC_PATH_MAX], stage[REC_PATH_MAX];
    dv_code rc;
    stage[0] = '\0';
    if ((rc = rec_path(live, sizeof live, err, "%s/%s/%s", data, REC_COLLECTIONS, pl->target)) != DV_OK)
        return rc;
    if (db_has_locked(db, pl->target)) {
        if (!pl->o->overwrite)
            return dv_errorf(err, DV_EEXIST,
                             "restore: a collection named %s exists (restore under new_name, or overwrite)",
                             pl->target);
        if (!pl->o->skip_backup) {
            if (!held)
                return dv_errorf(err, DV_EDAMAGED,
                                 "restore: %s cannot be backed up before the overwrite (damaged?); pass skip_backup",
                                 pl->target);
            if ((rc = backup_create_held(db, pl->target, held, "pre-restore-overwrite", &pl->pre, err)) != DV_OK)
                return dv_err_wrap(err, rc, "restore: pre-restore-overwrite backup of %s", pl->target);
            pl->took_backup = 1;
        }
        /* The old collection goes to the trash, never away. */
        if ((rc = trash_drop_locked(db, pl->target, held, &pl->dropped, err)) != DV_OK)
            return dv_err_wrap(err, rc, "restore: moving the old %s to the trash", pl->target);
        pl->dropped_target = 1;
    }
    if (pl->o->source == DV_RESTORE_TRASH) {
        if ((rc = rec_path(src, sizeof src, err, "%s/%s/%s", data, REC_TRASH, pl->entry.trash_id)) != DV_OK)
            goto undo;
        if (!rec_is_dir(src)) {
            rc = dv_errorf(err, DV_ENOTFOUND, "restore: trash entry %s is gone (purged?)", pl->entry.trash_id);
            goto undo;
        }
        /* A different name: the manifest must carry it before the rename
         * (harmless if a crash leaves it so inside the trash entry). */
        if (strcmp(pl->name, pl->target) != 0 && (rc = rename_manifest(src, pl->target, err)) != DV_OK)
            goto undo;
        /* The commit point: O(1) whatever the size. */
        if ((rc = rec_rename_durable(src, live, 1, err)) != DV_OK)
            goto undo;
        drop_trash_info(live);
    } else {
        char what[DV_NAME_MAX + 16];
        snprintf(what, sizeof what, "restore-%s", pl->target);
        if ((rc = rec_staging_dir(data, what, stage, sizeof stage, err)) != DV_OK)
            goto undo;
        if ((rc = backup_materialize(db, pl->name, pl->o->backup_id, stage, err)) != DV_OK ||
            (strcmp(pl->name, pl->target) != 0 && (rc = rename_manifest(stage, pl->target, err)) != DV_OK) ||
            (rc = rec_fsync_tree_dirs(stage, err)) != DV_OK)
            goto undo;
        /* The commit point: the complete copy appears under its name at once. */
        if ((rc = rec_rename_durable(stage, live, 1, err)) != DV_OK)
            goto undo;
        stage[0] = '\0';
    }
    if ((rc = db_attach_locked(db, pl->target, err)) != DV_OK) {
        rc = dv_err_wrap(err, rc, "restore: opening the restored %s", pl->target);
        /* A damaged collection is registered even though the attach fails:
         * take it out of the catalog before moving its directory away. */
        if (db_has_locked(db, pl->target))
            (void)db_detach_locked(db, pl->target, NULL);
        /* Not attached: take the directory back out of collections/. */
        if (pl->o->source == DV_RESTORE_TRASH) {
            if (rec_rename_durable(live, src, 1, NULL) != DV_OK)
                goto undo;
            /* back in the trash: rewrite its marker with the original count */
            (void)rec_write_trash_info(src, pl->name, pl->entry.vector_count, pl->entry.deleted_at_ms, NULL);
        } else {
            (void)rec_discard(data, live, NULL);
        }
        goto undo;
    }
    return DV_OK;
undo:
    if (stage[0])
        (void)io_remove_tree(stage, NULL);
    if (pl->dropped_target && !rec_exists(live))
        undo_drop(db, pl->target, &pl->dropped);
    pl->dropped_target = 0;
    return rc;
}

/* Audit a restore refused before anything was touched. */
static void audit_restore_refused(dv_db *db, const char *name, const dv_restore_opts *o, dv_code rc, const dv_err *err)
{
    char detail[sizeof(dv_err) + 160];
    snprintf(detail, sizeof detail, "source=%s id=%.64s error=%s", o->source == DV_RESTORE_BACKUP ? "backup" : "trash",
             o->backup_id ? o->backup_id : "(newest)", err ? err->msg : dv_strerror(rc));
    audit_log(db, "restore", name, rc, detail);
}

dv_code dv_restore(dv_db *db, const char *name, const dv_restore_opts *opts, dv_coll_info *restored_as, dv_err *err)
{
    static const dv_restore_opts defaults = {0};
    dv_code rc;
    if (!db || !name)
        return dv_errorf(err, DV_EINVAL, "restore: missing argument");
    const dv_restore_opts *o = opts ? opts : &defaults;
    restore_plan pl = {.name = name, .target = o->new_name ? o->new_name : name, .o = o};
    if ((rc = dv_name_validate(name, err)) != DV_OK ||
        (o->new_name && (rc = dv_name_validate(o->new_name, err)) != DV_OK))
        return rc;
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "restore: database is read-only");
    if (o->source != DV_RESTORE_TRASH && o->source != DV_RESTORE_BACKUP)
        return dv_errorf(err, DV_EINVAL, "restore: unknown source %d", (int)o->source);
    if (o->source == DV_RESTORE_BACKUP) {
        if (!o->backup_id)
            return dv_errorf(err, DV_EINVAL, "restore: a backup_id is required to restore from a backup");
        /* Before anything else: a backup that fails verification is never
         * restored, and the live collection stays untouched. */
        if ((rc = dv_backup_verify(db, name, o->backup_id, NULL, err)) != DV_OK) {
            rc = dv_err_wrap(err, rc, "restore: backup %s of %s failed verification", o->backup_id, name);
            audit_restore_refused(db, name, o, rc, err);
            return rc;
        }
    } else if ((rc = trash_find(db, name, o->backup_id, &pl.entry, err)) != DV_OK) {
        audit_restore_refused(db, name, o, rc, err);
        return rc;
    }
    dv_coll *held = NULL;
    if (o->overwrite && dv_coll_open(db, pl.target, &held, NULL) != DV_OK)
        held = NULL;
    db_catalog_lock(db);
    rc = restore_locked(db, &pl, held, err);
    db_catalog_unlock(db);
    if (held)
        dv_coll_close(held);

    char detail[sizeof(dv_err) + 320];
    int k = snprintf(detail, sizeof detail, "source=%s id=%s target=%s",
                     o->source == DV_RESTORE_BACKUP ? "backup" : "trash",
                     o->source == DV_RESTORE_BACKUP ? o->backup_id : pl.entry.trash_id, pl.target);
    if (pl.took_backup && k > 0 && (size_t)k < sizeof detail)
        k += snprintf(detail + k, sizeof detail - (size_t)k, " pre_backup=%s", pl.pre.backup_id);
    if (pl.dropped_target && k > 0 && (size_t)k < sizeof detail)
        k += snprintf(detail + k, sizeof detail - (size_t)k, " replaced_to_trash=%s", pl.dropped.trash_id);
    if (rc != DV_OK && k > 0 && (size_t)k < sizeof detail)
        snprintf(detail + k, sizeof detail - (size_t)k, " error=%s", err ? err->msg : dv_strerror(rc));
    if (pl.took_backup)
        audit_log(db, "backup", pl.target, DV_OK, pl.pre.backup_id);
    if (pl.dropped_target)
        audit_log(db, "delete", pl.target, DV_OK, pl.dropped.trash_id);
    audit_log(db, "restore", name, rc, detail);
    if (pl.took_backup)
        (void)backup_prune_auto(db, pl.target, NULL);
    if (rc != DV_OK)
        return rc;
    if (restored_as) {
        dv_coll *c = NULL;
        dv_err e2;
        memset(restored_as, 0, sizeof *restored_as);
        if (dv_coll_open(db, pl.target, &c, &e2) == DV_OK) {
            (void)dv_coll_info_get(c, restored_as, NULL);
            dv_coll_close(c);
        } else {
            snprintf(restored_as->config.name, sizeof restored_as->config.name, "%s", pl.target);
        }
    }
    return DV_OK;
}

dv_code dv_coll_hard_delete(dv_db *db, const char *name, int skip_backup, dv_backup_info *backup_out, dv_err *err)
{
    dv_code rc;
    if (!db || !name)
        return dv_errorf(err, DV_EINVAL, "hard-delete: missing argument");
    if ((rc = dv_name_validate(name, err)) != DV_OK)
        return rc;
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "hard-delete: database is read-only");
    const char *data = db_dir(db);
    char live[REC_PATH_MAX], staged[REC_PATH_MAX];
    if ((rc = rec_path(live, sizeof live, err, "%s/%s/%s", data, REC_COLLECTIONS, name)) != DV_OK)
        return rc;
    dv_coll *held = NULL;
    dv_code orc = dv_coll_open(db, name, &held, err);
    if (orc == DV_ENOTFOUND)
        return orc;
    if (orc != DV_OK) {
        held = NULL;
        if (!skip_backup)
            return dv_err_wrap(err, orc, "hard-delete: %s cannot be backed up first; pass skip_backup", name);
    }
    dv_backup_info b;
    memset(&b, 0, sizeof b);
    int took = 0;
    staged[0] = '\0';
    db_catalog_lock(db);
    if (!db_has_locked(db, name)) {
        rc = dv_errorf(err, DV_ENOTFOUND, "hard-delete: no collection named %s", name);
        goto unlock;
    }
    if (!skip_backup) {
        /* Taken under the catalog lock: nothing can replace the collection
         * between its backup and its removal. */
        if ((rc = backup_create_held(db, name, held, "pre-hard-delete", &b, err)) != DV_OK) {
            rc = dv_err_wrap(err, rc, "hard-delete: pre-hard-delete backup of %s", name);
            goto unlock;
        }
        took = 1;
    }
    if ((rc = db_detach_locked(db, name, err)) != DV_OK)
        goto unlock;
    char what[DV_NAME_MAX + 16];
    snprintf(what, sizeof what, "hard-delete-%s", name);
    if ((rc = rec_staging_name(data, what, staged, sizeof staged, err)) == DV_OK)
        rc = rec_rename_durable(live, staged, 1, err); /* the commit point */
    if (rc != DV_OK) {
        staged[0] = '\0';
        (void)db_attach_locked(db, name, NULL);
    }
unlock:
    db_catalog_unlock(db);
    if (held)
        dv_coll_close(held);
    if (staged[0])
        (void)io_remove_tree(staged, NULL); /* committed: leftovers go at the next open */
    if (took)
        audit_log(db, "backup", name, DV_OK, b.backup_id);
    char detail[sizeof(dv_err) + 128];
    snprintf(detail, sizeof detail, "backup_id=%s%s%s", took ? b.backup_id : "(skipped)",
             rc == DV_OK ? "" : " error=", rc == DV_OK ? "" : (err ? err->msg : dv_strerror(rc)));
    audit_log(db, "hard-delete", name, rc, detail);
    if (took)
        (void)backup_prune_auto(db, name, NULL);
    if (rc != DV_OK)
        return rc;
    if (backup_out)
        *backup_out = b;
    return DV_OK;
}
