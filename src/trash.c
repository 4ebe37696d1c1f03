/*
 * trash.c - soft delete (dv_coll_drop), the trash listing and the purge of
 * expired entries.
 *
 * On disk a trash entry is the collection directory itself, renamed from
 * collections/<name>/ to .deleted/<name>.<unix_ms>/ (the trash id), with a
 * small trash-info.json (vector count, time of the drop) written into it just
 * before the rename.
 *
 * Invariants:
 *   - a drop commits with exactly one rename (O(1) whatever the size) after
 *     the engine has detached the collection; before it the collection is
 *     live (and the stray trash-info.json is removed at the next open),
 *     after it the entry is in the trash;
 *   - the time in the trash id is the deletion time; expires_at is computed
 *     from the current trash_retention_s, so a changed retention applies to
 *     entries already in the trash;
 *   - a purge commits with one rename of the entry into .staging (under the
 *     catalog lock, so it cannot race a restore of the same entry), then
 *     removes the tree; a crash in between leaves staging debris only;
 *   - every drop and every purge is audited.
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

static int64_t expires_at(const dv_db *db, int64_t deleted_at_ms)
{
    int64_t r = db_opts(db)->trash_retention_s;
    if (r < 0)
        return INT64_MAX; /* negative retention: never expires */
    return deleted_at_ms + r * 1000;
}

/* Fill e from the trash directory <data>/.deleted/<trash_id>; -1 if the
 * name is not a trash id or not a directory. */
static int entry_load(const dv_db *db, const char *trash_dir, const char *trash_id, dv_trash_entry *e)
{
    char path[REC_PATH_MAX];
    memset(e, 0, sizeof *e);
    if (strlen(trash_id) >= sizeof e->trash_id || rec_parse_trash_id(trash_id, e->name, &e->deleted_at_ms) != 0)
        return -1;
    if (rec_path(path, sizeof path, NULL, "%s/%s", trash_dir, trash_id) != DV_OK || !rec_is_dir(path))
        return -1;
    snprintf(e->trash_id, sizeof e->trash_id, "%s", trash_id);
    int64_t info_at = 0;
    rec_read_trash_info(path, &e->vector_count, &info_at);
    snap_manifest m;
    if (e->vector_count == 0 && snap_manifest_read(path, &m, NULL) == DV_OK)
        e->vector_count = m.n_live; /* no marker (dropped by hand?): the last checkpoint's count */
    e->expires_at_ms = expires_at(db, e->deleted_at_ms);
    e->size_bytes = io_tree_size(path);
    return 0;
}

dv_code trash_drop_locked(dv_db *db, const char *name, dv_coll *held, dv_trash_entry *out, dv_err *err)
{
    const char *dir = db_dir(db);
    char live[REC_PATH_MAX], trash[REC_PATH_MAX], dst[REC_PATH_MAX];
    dv_code rc;
    if (!db_has_locked(db, name))
        return dv_errorf(err, DV_ENOTFOUND, "trash: drop: no collection named %s", name);
    if ((rc = rec_path(live, sizeof live, err, "%s/%s/%s", dir, REC_COLLECTIONS, name)) != DV_OK ||
        (rc = rec_path(trash, sizeof trash, err, "%s/%s", dir, REC_TRASH)) != DV_OK)
        return rc;
    if ((rc = rec_mkdir_durable(trash, err)) != DV_OK)
        return rc;
    /* Checkpoint and close: from here the engine does not touch the directory. */
    if ((rc = db_detach_locked(db, name, err)) != DV_OK)
        return dv_err_wrap(err, rc, "trash: drop %s", name);
    uint64_t count = 0;
    dv_coll_info info;
    snap_manifest m;
    if (held && dv_coll_info_get(held, &info, NULL) == DV_OK)
        count = info.n_vectors;
    else if (snap_manifest_read(live, &m, NULL) == DV_OK)
        count = m.n_live; /* damaged or no handle: what its last checkpoint said */
    int64_t ms = dv_now_ms();
    if ((rc = rec_write_trash_info(live, name, count, ms, err)) != DV_OK)
        goto undo;
    for (int tries = 0;; tries++) {
        if ((rc = rec_path(dst, sizeof dst, err, "%s/%s.%lld", trash, name, (long long)ms)) != DV_OK)
            goto undo;
        /* The commit point of the drop: one rename, whatever the size. */
        rc = rec_rename_durable(live, dst, 1, err);
        if (rc != DV_EEXIST || tries > 1000)
            break;
        ms++; /* dropped twice within one millisecond: next free id */
    }
    if (rc != DV_OK)
        goto undo;
    if (out) {
        char id[REC_PATH_MAX];
        snprintf(id, sizeof id, "%s.%lld", name, (long long)ms);
        if (entry_load(db, trash, id, out) != 0)
            memset(out, 0, sizeof *out);
        out->vector_count = count;
    }
    return DV_OK;
undo:
    /* Nothing was committed: put the collection back into service. */
    if (rec_exists(live)) {
        char info_path[REC_PATH_MAX];
        if (rec_path(info_path, sizeof info_path, NULL, "%s/%s", live, REC_TRASH_INFO) == DV_OK)
            (void)io_unlink(info_path);
        dv_err e2;
        (void)db_attach_locked(db, name, &e2);
    }
    return rc;
}

dv_code dv_coll_drop(dv_db *db, const char *name, dv_trash_entry *out, dv_err *err)
{
    dv_code rc;
    if (!db || !name)
        return dv_errorf(err, DV_EINVAL, "trash: drop: missing argument");
    if ((rc = dv_name_validate(name, err)) != DV_OK)
        return rc;
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "trash: drop %s: database is read-only", name);
    /* A handle taken before the catalog lock gives the final count after the
     * detach (detached handles keep serving reads). A damaged collection has
     * no handle and drops with count 0. */
    dv_coll *held = NULL;
    rc = dv_coll_open(db, name, &held, NULL);
    if (rc != DV_OK)
        held = NULL;
    dv_trash_entry e;
    db_catalog_lock(db);
    rc = trash_drop_locked(db, name, held, &e, err);
    db_catalog_unlock(db);
    if (held)
        dv_coll_close(held);
    char detail[sizeof err->msg + 256];
    if (rc == DV_OK)
        snprintf(detail, sizeof detail, "trash_id=%s vector_count=%llu size_bytes=%llu", e.trash_id,
                 (unsigned long long)e.vector_count, (unsigned long long)e.size_bytes);
    else
        snprintf(detail, sizeof detail, "%s", err ? err->msg : dv_strerror(rc));
    if (rc != DV_ENOTFOUND)
        audit_log(db, "delete", name, rc, detail);
    if (rc == DV_OK && out)
        *out = e;
    return rc;
}

static int cmp_entry_newest_first(const void *a, const void *b)
{
    const dv_trash_entry *x = a, *y = b;
    if (x->deleted_at_ms != y->deleted_at_ms)
        return x->deleted_at_ms > y->deleted_at_ms ? -1 : 1;
    return strcmp(x->name, y->name);
}

dv_code dv_trash_list(dv_db *db, dv_trash_entry **out, size_t *n_out, dv_err *err)
{
    if (!db || !out || !n_out)
        return dv_errorf(err, DV_EINVAL, "trash: list: missing argument");
    char trash[REC_PATH_MAX];
    dv_code rc = rec_path(trash, sizeof trash, err, "%s/%s", db_dir(db), REC_TRASH);
    if (rc != DV_OK)
        return rc;
    char **names = NULL;
    size_t n = 0;
    if ((rc = rec_list_dir(trash, &names, &n, err)) != DV_OK)
        return rc;
    dv_trash_entry *v = calloc(n ? n : 1, sizeof *v);
    if (!v) {
        rec_free_names(names, n);
        return dv_errorf(err, DV_ENOMEM, "trash: list: out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (entry_load(db, trash, names[i], &v[k]) == 0)
            k++;
    rec_free_names(names, n);
    qsort(v, k, sizeof *v, cmp_entry_newest_first);
    *out = v;
    *n_out = k;
    return DV_OK;
}

dv_code trash_find(dv_db *db, const char *name, const char *trash_id, dv_trash_entry *out, dv_err *err)
{
    dv_trash_entry *v = NULL;
    size_t n = 0;
    dv_code rc = dv_trash_list(db, &v, &n, err);
    if (rc != DV_OK)
        return rc;
    rc = DV_ENOTFOUND;
    for (size_t i = 0; i < n; i++) { /* newest first */
        if (trash_id ? strcmp(v[i].trash_id, trash_id) == 0 : (name && strcmp(v[i].name, name) == 0)) {
            if (name && strcmp(v[i].name, name) != 0)
                break; /* the id belongs to another collection */
            *out = v[i];
            rc = DV_OK;
            break;
        }
    }
    free(v);
    if (rc != DV_OK)
        return trash_id ? dv_errorf(err, rc, "trash: no trash entry %s for %s", trash_id, name ? name : "?")
                        : dv_errorf(err, rc, "trash: no trash entry for %s", name ? name : "?");
    return DV_OK;
}

dv_code dv_trash_purge_expired(dv_db *db, size_t *n_purged, dv_err *err)
{
    if (!db)
        return dv_errorf(err, DV_EINVAL, "trash: purge: missing argument");
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "trash: purge: database is read-only");
    dv_trash_entry *v = NULL;
    size_t n = 0, purged = 0;
    dv_code rc = dv_trash_list(db, &v, &n, err), first = DV_OK;
    if (rc != DV_OK)
        return rc;
    const char *dir = db_dir(db);
    int64_t now = dv_now_ms();
    for (size_t i = 0; i < n; i++) {
        if (v[i].expires_at_ms > now)
            continue;
        char path[REC_PATH_MAX], staged[REC_PATH_MAX], detail[sizeof(dv_err) + 256];
        dv_err e = {0};
        rc = rec_path(path, sizeof path, &e, "%s/%s/%s", dir, REC_TRASH, v[i].trash_id);
        if (rc == DV_OK) {
            char what[DV_NAME_MAX + 40];
            snprintf(what, sizeof what, "purge-%s", v[i].name);
            /* The commit point: once renamed into staging the entry is gone
             * from the trash; the catalog lock keeps a concurrent restore of
             * this entry from racing the rename. */
            db_catalog_lock(db);
            if (!rec_is_dir(path))
                rc = dv_errorf(&e, DV_ENOTFOUND, "trash: %s vanished (restored meanwhile)", v[i].trash_id);
            else
                rc = rec_staging_name(dir, what, staged, sizeof staged, &e);
            if (rc == DV_OK)
                rc = rec_rename_durable(path, staged, 1, &e);
            db_catalog_unlock(db);
            /* Committed: the entry is out of the trash. If the removal
             * fails, the remains go with .staging at the next open. */
            if (rc == DV_OK)
                (void)io_remove_tree(staged, NULL);
        }
        if (rc == DV_ENOTFOUND)
            continue; /* restored or purged by someone else meanwhile */
        snprintf(detail, sizeof detail, "trash_id=%s size_bytes=%llu%s%s", v[i].trash_id,
                 (unsigned long long)v[i].size_bytes, rc == DV_OK ? "" : " error=", rc == DV_OK ? "" : e.msg);
        audit_log(db, "purge", v[i].name, rc, detail);
        if (rc == DV_OK)
            purged++;
        else if (first == DV_OK) {
            first = rc;
            if (err)
                *err = e;
        }
    }
    free(v);
    if (n_purged)
        *n_purged = purged;
    return first;
}
