/*
 * db.c - the database handle and catalog: a data directory of collections.
 *
 * Owns dv_db: open (recover every collection under <data>/collections/,
 * damaged ones listed but not served), create, lookup, list, stats, close,
 * the catalog hooks of db_int.h, and one background thread per database
 * that checkpoints collections whose WAL passed opts.checkpoint_wal_bytes
 * and fsyncs WALs under DV_FSYNC_INTERVAL.
 *
 * Invariants:
 *  - A name in the catalog is either a live collection (entry.c != NULL)
 *    or a damaged one (entry.c == NULL, entry.damage says why); both block
 *    a create of the same name (DV_EEXIST): never a silent re-create.
 *  - Create is atomic: the collection is built in <data>/.staging/ and
 *    renamed into collections/<name> (renameat2 NOREPLACE), then both
 *    parents are fsynced. A crash leaves it wholly present or only staging
 *    debris (removed at open by recovery_on_open).
 *  - One process per data directory: an exclusive flock on <data>/LOCK
 *    (not taken read-only).
 *  - Lock order: catalog -> list -> collection locks. The list lock guards
 *    the entries array; the catalog lock serializes create/drop/restore/...
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coll_int.h"
#include "db_int.h"
#include "err.h"
#include "io.h"
#include "snap.h"

typedef struct db_entry {
    char name[DV_NAME_MAX + 1];
    dv_coll *c;         /* NULL: damaged */
    dv_coll_config cfg; /* damaged: what the manifest said, if readable */
    int64_t created_at_ms;
    char damage[256];
} db_entry;

struct dv_db {
    char *path;
    char *coll_root;
    dv_db_options opts;
    char **roots;
    int lock_fd;

    pthread_mutex_t catalog;
    pthread_rwlock_t list;
    db_entry *e;
    size_t n, cap;

    pthread_t bg;
    int bg_started;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    int stop;
    atomic_uint staging_seq;
};

const char *db_dir(const dv_db *db)
{
    return db->path;
}

const dv_db_options *db_opts(const dv_db *db)
{
    return &db->opts;
}

const char *dv_db_path(const dv_db *db)
{
    return db->path;
}

void db_catalog_lock(dv_db *db)
{
    pthread_mutex_lock(&db->catalog);
}

void db_catalog_unlock(dv_db *db)
{
    pthread_mutex_unlock(&db->catalog);
}

/* Index of name in the entries, or -1 (list lock held). */
static ssize_t find_entry(dv_db *db, const char *name)
{
    for (size_t i = 0; i < db->n; i++)
        if (strcmp(db->e[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

int db_has_locked(dv_db *db, const char *name)
{
    pthread_rwlock_rdlock(&db->list);
    int has = find_entry(db, name) >= 0;
    pthread_rwlock_unlock(&db->list);
    return has;
}

/* Append an entry (list lock taken here). */
static dv_code add_entry(dv_db *db, const db_entry *ent, dv_err *err)
{
    pthread_rwlock_wrlock(&db->list);
    if (db->n == db->cap) {
        size_t cap = db->cap ? 2 * db->cap : 16;
        db_entry *ne = realloc(db->e, cap * sizeof *ne);
        if (!ne) {
            pthread_rwlock_unlock(&db->list);
            return dv_errorf(err, DV_ENOMEM, "db: out of memory");
        }
        db->e = ne;
        db->cap = cap;
    }
    db->e[db->n++] = *ent;
    pthread_rwlock_unlock(&db->list);
    return DV_OK;
}

/* Open collections/<name> into an entry: live, or damaged with the reason.
 * Only out-of-memory fails. */
static dv_code load_entry(dv_db *db, const char *name, db_entry *ent, dv_err *err)
{
    memset(ent, 0, sizeof *ent);
    snprintf(ent->name, sizeof ent->name, "%s", name);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", db->coll_root, name);
    dv_err e = {0};
    dv_code rc = coll_open_at(dir, &db->opts, db->opts.read_only, &ent->c, &e);
    if (rc == DV_OK) {
        ent->cfg = ent->c->cfg;
        ent->created_at_ms = ent->c->created_at_ms;
        return DV_OK;
    }
    if (rc == DV_ENOMEM) {
        if (err)
            *err = e;
        return rc;
    }
    ent->c = NULL;
    snprintf(ent->damage, sizeof ent->damage, "%.255s", e.msg);
    snap_manifest m;
    if (snap_manifest_read(dir, &m, NULL) == DV_OK) {
        ent->cfg = m.cfg;
        ent->created_at_ms = m.created_at_ms;
    }
    snprintf(ent->cfg.name, sizeof ent->cfg.name, "%s", name);
    return DV_OK;
}

/* ---- background thread --------------------------------------------- */

/* Every period: fsync WALs (INTERVAL policy) and checkpoint collections
 * whose WAL passed the threshold. Works on referenced handles outside the
 * list lock so that catalog changes never wait for a checkpoint. */
static void *bg_main(void *arg)
{
    dv_db *db = arg;
    uint32_t period_ms = db->opts.fsync == DV_FSYNC_INTERVAL ? db->opts.fsync_interval_ms : 200;
    if (period_ms == 0)
        period_ms = 100;
    if (period_ms > 200)
        period_ms = 200;
    pthread_mutex_lock(&db->bg_mu);
    while (!db->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)period_ms * 1000000ull;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&db->bg_cv, &db->bg_mu, &ts);
        if (db->stop)
            break;
        pthread_mutex_unlock(&db->bg_mu);

        pthread_rwlock_rdlock(&db->list);
        size_t n = db->n;
        dv_coll **cs = calloc(n + 1, sizeof *cs);
        size_t k = 0;
        for (size_t i = 0; cs && i < n; i++) {
            if (db->e[i].c) {
                coll_ref(db->e[i].c);
                cs[k++] = db->e[i].c;
            }
        }
        pthread_rwlock_unlock(&db->list);
        for (size_t i = 0; i < k; i++) {
            dv_coll *c = cs[i];
            if (db->opts.fsync == DV_FSYNC_INTERVAL)
                (void)coll_sync(c, NULL);
            if (db->opts.checkpoint_wal_bytes && !atomic_load(&c->poisoned) && !atomic_load(&c->detached) &&
                coll_wal_bytes(c) >= db->opts.checkpoint_wal_bytes)
                (void)dv_coll_checkpoint(c, NULL); /* a failure poisons c; writers see it */
            dv_coll_close(c);
        }
        free(cs);
        pthread_mutex_lock(&db->bg_mu);
    }
    pthread_mutex_unlock(&db->bg_mu);
    return NULL;
}

/* ---- open / close ----------------------------------------------------- */

static void db_free(dv_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        if (db->e[i].c)
            dv_coll_close(db->e[i].c);
    free(db->e);
    for (size_t i = 0; i < db->opts.n_import_roots; i++)
        free(db->roots ? db->roots[i] : NULL);
    free(db->roots);
    if (db->lock_fd >= 0)
        close(db->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&db->catalog);
    pthread_rwlock_destroy(&db->list);
    pthread_mutex_destroy(&db->bg_mu);
    pthread_cond_destroy(&db->bg_cv);
    free(db->path);
    free(db->coll_root);
    free(db);
}

static int is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

dv_code dv_db_open(const char *path, const dv_db_options *opts, dv_db **out, dv_err *err)
{
    if (!path || !path[0] || !out)
        return dv_errorf(err, DV_EINVAL, "db: open: missing path");
    dv_db *db = calloc(1, sizeof *db);
    if (!db)
        return dv_errorf(err, DV_ENOMEM, "db: out of memory");
    db->lock_fd = -1;
    pthread_mutex_init(&db->catalog, NULL);
    pthread_rwlock_init(&db->list, NULL);
    pthread_mutex_init(&db->bg_mu, NULL);
    pthread_cond_init(&db->bg_cv, NULL);
    atomic_init(&db->staging_seq, 0);
    dv_code rc = DV_OK;
    if (opts)
        db->opts = *opts;
    else
        dv_db_options_init(&db->opts);
    /* Deep copy of the import roots: the caller's array is borrowed. */
    size_t nr = db->opts.import_roots ? db->opts.n_import_roots : 0;
    db->opts.n_import_roots = 0;
    db->roots = calloc(nr + 1, sizeof *db->roots);
    if (!db->roots)
        goto nomem;
    for (size_t i = 0; i < nr; i++) {
        db->roots[i] = strdup(db->opts.import_roots[i]);
        if (!db->roots[i])
            goto nomem;
        db->opts.n_import_roots = i + 1;
    }
    db->opts.import_roots = (const char *const *)db->roots;
    db->path = strdup(path);
    if (!db->path || asprintf(&db->coll_root, "%s/collections", path) < 0) {
        db->coll_root = NULL;
        goto nomem;
    }
    if (!db->opts.read_only) {
        rc = io_mkdirs(db->coll_root, err);
        if (rc)
            goto fail;
        char lock[4200];
        snprintf(lock, sizeof lock, "%s/LOCK", path);
        db->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (db->lock_fd < 0) {
            int e = errno;
            rc = dv_errorf(err, dv_code_from_errno(e), "db: open %s: %s", lock, strerror(e));
            goto fail;
        }
        /* Two processes writing one WAL would corrupt it: refuse. */
        if (flock(db->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            rc = dv_errorf(err, e == EWOULDBLOCK ? DV_EBUSY : dv_code_from_errno(e),
                           "db: %s is in use by another process or handle", path);
            goto fail;
        }
    } else if (!is_dir(path)) {
        rc = dv_errorf(err, DV_ENOTFOUND, "db: %s: no such data directory", path);
        goto fail;
    }

    char **names = NULL;
    size_t n_names = 0;
    if (is_dir(db->coll_root)) {
        rc = io_list_dir(db->coll_root, &names, &n_names, err);
        if (rc)
            goto fail;
    }
    for (size_t i = 0; i < n_names && rc == DV_OK; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", db->coll_root, names[i]);
        /* Anything that is not a valid name or a directory is not ours. */
        if (dv_name_validate(names[i], NULL) != DV_OK || !is_dir(dir))
            continue;
        db_entry ent;
        rc = load_entry(db, names[i], &ent, err);
        if (!rc) {
            rc = add_entry(db, &ent, err);
            if (rc && ent.c)
                dv_coll_close(ent.c);
        }
    }
    io_list_free(names, n_names);
    if (rc)
        goto fail;

    if (!db->opts.read_only) {
        /* What recovery did or found goes to the audit log (the engine
         * never prints). */
        for (size_t i = 0; i < db->n; i++) {
            if (!db->e[i].c)
                audit_log(db, "damaged", db->e[i].name, DV_EDAMAGED, db->e[i].damage);
            else if (db->e[i].c->recovery_note[0])
                audit_log(db, "recover", db->e[i].name, DV_OK, db->e[i].c->recovery_note);
        }
        dv_err e2 = {0};
        rc = recovery_on_open(db, &e2);
        if (rc == DV_ENOMEM) {
            if (err)
                *err = e2;
            goto fail;
        }
        rc = DV_OK; /* leftovers stay until the next open; never block an open */
        if (pthread_create(&db->bg, NULL, bg_main, db) != 0) {
            rc = dv_errorf(err, DV_ENOMEM, "db: cannot start the background thread");
            goto fail;
        }
        db->bg_started = 1;
    }
    *out = db;
    return DV_OK;
nomem:
    rc = dv_errorf(err, DV_ENOMEM, "db: out of memory");
fail:
    for (size_t i = 0; i < db->n; i++)
        if (db->e[i].c)
            coll_shutdown(db->e[i].c, 0, NULL);
    db_free(db);
    return rc;
}

dv_code dv_db_close(dv_db *db, dv_err *err)
{
    if (!db)
        return DV_OK;
    if (db->bg_started) {
        pthread_mutex_lock(&db->bg_mu);
        db->stop = 1;
        pthread_cond_signal(&db->bg_cv);
        pthread_mutex_unlock(&db->bg_mu);
        pthread_join(db->bg, NULL);
    }
    dv_code first = DV_OK;
    for (size_t i = 0; i < db->n; i++) {
        if (!db->e[i].c)
            continue;
        dv_err e = {0};
        dv_code rc = coll_shutdown(db->e[i].c, 1, &e);
        if (rc && !first) {
            first = rc;
            if (err)
                *err = e;
        }
    }
    db_free(db);
    return first;
}

/* ---- catalog ------------------------------------------------------------ */

dv_code db_detach_locked(dv_db *db, const char *name, dv_err *err)
{
    pthread_rwlock_wrlock(&db->list);
    ssize_t i = find_entry(db, name);
    if (i < 0) {
        pthread_rwlock_unlock(&db->list);
        return dv_errorf(err, DV_ENOTFOUND, "db: no collection named %s", name);
    }
    db_entry ent = db->e[i];
    db->e[i] = db->e[--db->n];
    pthread_rwlock_unlock(&db->list);
    if (!ent.c)
        return DV_OK;
    /* Checkpoint so that the files alone hold everything (a drop moves the
     * directory; a restore copies it). A poisoned collection cannot
     * checkpoint: its WAL still holds every acknowledged write. */
    dv_err e = {0};
    dv_code rc = coll_shutdown(ent.c, 1, &e);
    if (rc && rc != DV_EFATAL && !atomic_load(&ent.c->poisoned)) {
        /* Put it back into service: nothing was changed on disk. */
        if (err)
            *err = e;
        /* The WAL was closed by coll_shutdown: reopen from disk. */
        dv_coll_close(ent.c);
        db_entry again;
        if (load_entry(db, name, &again, NULL) == DV_OK)
            (void)add_entry(db, &again, NULL);
        return rc;
    }
    dv_coll_close(ent.c);
    return DV_OK;
}

dv_code db_attach_locked(dv_db *db, const char *name, dv_err *err)
{
    dv_code rc = dv_name_validate(name, err);
    if (rc)
        return rc;
    if (db_has_locked(db, name))
        return dv_errorf(err, DV_EEXIST, "db: collection %s is already open", name);
    db_entry ent;
    rc = load_entry(db, name, &ent, err);
    if (rc)
        return rc;
    rc = add_entry(db, &ent, err);
    if (rc) {
        if (ent.c)
            dv_coll_close(ent.c);
        return rc;
    }
    if (!ent.c)
        return dv_errorf(err, DV_EDAMAGED, "db: collection %s is damaged: %s", name, ent.damage);
    if (ent.c->recovery_note[0])
        audit_log(db, "recover", name, DV_OK, ent.c->recovery_note);
    return DV_OK;
}

dv_code dv_coll_create(dv_db *db, const dv_coll_config *cfg_in, dv_err *err)
{
    if (!db || !cfg_in)
        return dv_errorf(err, DV_EINVAL, "db: create: missing argument");
    dv_coll_config cfg = *cfg_in;
    dv_code rc = coll_config_normalize(&cfg, err);
    if (rc)
        return rc;
    if (db->opts.read_only)
        return dv_errorf(err, DV_EREADONLY, "db: create %s: database opened read-only", cfg.name);
    char staging[4200], tmp[4300], dst[4200];
    snprintf(staging, sizeof staging, "%s/.staging", db->path);
    snprintf(tmp, sizeof tmp, "%s/create-%s-%" PRId64 "-%u", staging, cfg.name, dv_now_ms(),
             atomic_fetch_add(&db->staging_seq, 1));
    snprintf(dst, sizeof dst, "%s/%s", db->coll_root, cfg.name);
    db_catalog_lock(db);
    if (db_has_locked(db, cfg.name)) {
        rc = dv_errorf(err, DV_EEXIST, "db: collection %s already exists", cfg.name);
        goto out;
    }
    rc = io_mkdirs(staging, err);
    if (rc)
        goto out;
    /* Built aside, then one rename: a crash leaves all or nothing. */
    rc = coll_create_at(tmp, &cfg, &db->opts, NULL, err);
    if (rc)
        goto cleanup;
    if (io_renameat_noreplace(tmp, dst) != 0) {
        int e = errno;
        rc = dv_errorf(err, e == EEXIST || e == ENOTEMPTY ? DV_EEXIST : dv_code_from_errno(e), "db: create %s: %s",
                       cfg.name, e == EEXIST ? "a directory of that name exists" : strerror(e));
        goto cleanup;
    }
    /* Both directory entries changed: fsync both, or a crash could bring
     * the collection back into staging (where open would delete it). */
    if (io_fsync_dir(db->coll_root) != 0 || io_fsync_dir(staging) != 0) {
        int e = errno;
        rc = dv_errorf(err, dv_code_from_errno(e), "db: create %s: fsync: %s", cfg.name, strerror(e));
        goto out;
    }
    db_entry ent;
    rc = load_entry(db, cfg.name, &ent, err);
    if (!rc && !ent.c)
        rc = dv_errorf(err, DV_EIO, "db: create %s: reopen failed: %s", cfg.name, ent.damage);
    if (!rc)
        rc = add_entry(db, &ent, err);
    goto out;
cleanup:
    (void)io_remove_tree(tmp, NULL); /* staging debris; also removed at open */
out:
    db_catalog_unlock(db);
    return rc;
}

dv_code dv_coll_open(dv_db *db, const char *name, dv_coll **out, dv_err *err)
{
    if (!db || !name || !out)
        return dv_errorf(err, DV_EINVAL, "db: open collection: missing argument");
    pthread_rwlock_rdlock(&db->list);
    ssize_t i = find_entry(db, name);
    if (i < 0) {
        pthread_rwlock_unlock(&db->list);
        return dv_errorf(err, DV_ENOTFOUND, "db: no collection named %.64s", name);
    }
    if (!db->e[i].c) {
        dv_code rc = dv_errorf(err, DV_EDAMAGED, "db: collection %s is damaged: %s", name, db->e[i].damage);
        pthread_rwlock_unlock(&db->list);
        return rc;
    }
    coll_ref(db->e[i].c);
    *out = db->e[i].c;
    pthread_rwlock_unlock(&db->list);
    return DV_OK;
}

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const dv_coll_info *)a)->config.name, ((const dv_coll_info *)b)->config.name);
}

dv_code dv_db_list(dv_db *db, dv_coll_info **out, size_t *n_out, dv_err *err)
{
    pthread_rwlock_rdlock(&db->list);
    size_t n = db->n;
    dv_coll_info *v = calloc(n + 1, sizeof *v);
    dv_coll **cs = calloc(n + 1, sizeof *cs);
    if (!v || !cs) {
        pthread_rwlock_unlock(&db->list);
        free(v);
        free(cs);
        return dv_errorf(err, DV_ENOMEM, "db: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        v[i].config = db->e[i].cfg;
        v[i].created_at_ms = db->e[i].created_at_ms;
        if (db->e[i].c) {
            coll_ref(db->e[i].c);
            cs[i] = db->e[i].c;
        } else {
            v[i].damaged = 1;
            snprintf(v[i].damage, sizeof v[i].damage, "%s", db->e[i].damage);
        }
    }
    pthread_rwlock_unlock(&db->list);
    for (size_t i = 0; i < n; i++) {
        if (cs[i]) {
            dv_coll_info_get(cs[i], &v[i], NULL);
            dv_coll_close(cs[i]);
        }
    }
    free(cs);
    qsort(v, n, sizeof *v, info_cmp);
    *out = v;
    *n_out = n;
    return DV_OK;
}

dv_code dv_db_stats_get(dv_db *db, dv_db_stats *out, dv_err *err)
{
    dv_db_stats st;
    memset(&st, 0, sizeof st);
    pthread_rwlock_rdlock(&db->list);
    size_t n = db->n;
    dv_coll **cs = calloc(n + 1, sizeof *cs);
    if (!cs) {
        pthread_rwlock_unlock(&db->list);
        return dv_errorf(err, DV_ENOMEM, "db: out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (db->e[i].c) {
            coll_ref(db->e[i].c);
            cs[k++] = db->e[i].c;
        } else {
            st.n_damaged++;
        }
    }
    st.n_collections = (uint32_t)n;
    pthread_rwlock_unlock(&db->list);
    for (size_t i = 0; i < k; i++) {
        uint64_t live, mem;
        coll_counts(cs[i], &live, &mem);
        st.n_vectors += live;
        st.mem_bytes += mem;
        wal_stats ws;
        coll_wal_stats(cs[i], &ws);
        st.wal_fsyncs += ws.fsyncs;
        st.wal_fsync_seconds += ws.fsync_seconds;
        for (int b = 0; b < 12; b++)
            st.wal_fsync_hist[b] += ws.fsync_hist[b];
        if (atomic_load(&cs[i]->poisoned))
            st.poisoned = 1;
        dv_coll_close(cs[i]);
    }
    free(cs);
    st.disk_bytes = io_tree_size(db->coll_root);
    st.disk_free_bytes = io_disk_free(db->path);
    *out = st;
    return DV_OK;
}
