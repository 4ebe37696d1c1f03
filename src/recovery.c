/*
 * recovery.c - start-up clean-up of the recovery modules and the small file
 * helpers they share (recovery_int.h).
 *
 * Owns recovery_on_open(): called by dv_db_open after every collection is
 * recovered. It removes what an interrupted recovery operation can leave:
 *   - <data>/.staging/ as a whole: every operation builds there and commits
 *     with one rename out of it, so anything still inside is uncommitted
 *     (half-built backup/import/restore) or already-committed garbage (a
 *     purge or hard delete renamed in, not yet removed);
 *   - collections/<name>/trash-info.json(.tmp): written just before a drop's
 *     rename or carried back by a restore; meaningless in a live collection;
 *     likewise import-overwrite, the mark of an overwriting import;
 * then finishes imports committed to .importing/<name>/ (import.c), and
 * purges expired trash entries (each audited).
 *
 * Invariant: every helper that commits does it with a rename followed by an
 * fsync of both parent directories; nothing here writes into a live
 * collection's files.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "db_int.h"
#include "err.h"
#include "io.h"
#include "recovery_int.h"

#define COPY_CHUNK (1 << 20)

static atomic_uint staging_seq;

dv_code rec_path(char *buf, size_t cap, dv_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return dv_errorf(err, DV_EINVAL, "recovery: path too long (%d bytes)", n);
    return DV_OK;
}

int rec_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int rec_is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void rec_free_names(char **names, size_t n)
{
    if (names)
        io_list_free(names, n);
}

dv_code rec_list_dir(const char *dir, char ***names_out, size_t *n_out, dv_err *err)
{
    if (!rec_exists(dir)) {
        *names_out = NULL;
        *n_out = 0;
        return DV_OK;
    }
    return io_list_dir(dir, names_out, n_out, err);
}

/* Parent directory of path into out ("." when there is no slash). */
static void parent_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, cap, ".");
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0)
        n = 1; /* "/x" -> "/" */
    if (n >= cap)
        n = cap - 1;
    memcpy(out, path, n);
    out[n] = '\0';
}

dv_code rec_mkdir_durable(const char *dir, dv_err *err)
{
    if (rec_is_dir(dir))
        return DV_OK;
    dv_code rc = io_mkdirs(dir, err);
    if (rc != DV_OK)
        return rc;
    char parent[REC_PATH_MAX];
    parent_of(dir, parent, sizeof parent);
    /* Without this a crash could forget the new directory, and with it a
     * later rename into it that was itself fsynced. */
    if (io_fsync_dir(parent) != 0)
        return dv_errorf(err, dv_code_from_errno(errno), "recovery: fsync %s: %s", parent, strerror(errno));
    return DV_OK;
}

dv_code rec_staging_name(const char *data_dir, const char *what, char *out, size_t cap, dv_err *err)
{
    char staging[REC_PATH_MAX];
    dv_code rc = rec_path(staging, sizeof staging, err, "%s/%s", data_dir, REC_STAGING);
    if (rc != DV_OK)
        return rc;
    if ((rc = rec_mkdir_durable(staging, err)) != DV_OK)
        return rc;
    for (int tries = 0; tries < 1000; tries++) {
        unsigned seq = atomic_fetch_add(&staging_seq, 1);
        rc = rec_path(out, cap, err, "%s/%s-%lld-%d-%u", staging, what, (long long)dv_now_ms(), (int)getpid(), seq);
        if (rc != DV_OK)
            return rc;
        if (!rec_exists(out))
            return DV_OK;
    }
    return dv_errorf(err, DV_EBUSY, "recovery: no free staging name under %s", staging);
}

dv_code rec_staging_dir(const char *data_dir, const char *what, char *out, size_t cap, dv_err *err)
{
    dv_code rc = rec_staging_name(data_dir, what, out, cap, err);
    if (rc != DV_OK)
        return rc;
    if (io_mkdir(out, 0755) != 0)
        return dv_errorf(err, dv_code_from_errno(errno), "recovery: mkdir %s: %s", out, strerror(errno));
    return DV_OK;
}

dv_code rec_rename_durable(const char *from, const char *to, int noreplace, dv_err *err)
{
    int r = noreplace ? io_renameat_noreplace(from, to) : io_rename(from, to);
    if (r != 0) {
        int e = errno;
        return dv_errorf(err, dv_code_from_errno(e), "recovery: rename %s -> %s: %s", from, to, strerror(e));
    }
    /* The rename is the commit point; until both directories are fsynced a
     * power loss could show the entry in both places or in neither. */
    char pf[REC_PATH_MAX], pt[REC_PATH_MAX];
    parent_of(from, pf, sizeof pf);
    parent_of(to, pt, sizeof pt);
    const char *bad = NULL;
    if (io_fsync_dir(pt) != 0)
        bad = pt;
    else if (strcmp(pf, pt) != 0 && io_fsync_dir(pf) != 0)
        bad = pf;
    if (!bad)
        return DV_OK;
    /* Not durable: report "not done" and make it so, by renaming back (best
     * effort; if that fails too the move stands, and the caller's error
     * says the state is uncertain). */
    int e = errno;
    if (io_rename(to, from) == 0) {
        (void)io_fsync_dir(pf);
        (void)io_fsync_dir(pt);
    }
    return dv_errorf(err, dv_code_from_errno(e), "recovery: fsync %s after rename %s -> %s: %s", bad, from, to,
                     strerror(e));
}

dv_code rec_discard(const char *data_dir, const char *path, dv_err *err)
{
    char dst[REC_PATH_MAX];
    dv_code rc = rec_staging_name(data_dir, "discard", dst, sizeof dst, err);
    if (rc != DV_OK)
        return rc;
    if ((rc = rec_rename_durable(path, dst, 1, err)) != DV_OK)
        return rc;
    /* Committed: a crash, or a failure to remove, from here on leaves
     * debris in .staging, removed at the next open. */
    (void)io_remove_tree(dst, NULL);
    return DV_OK;
}

dv_code rec_fsync_tree_dirs(const char *root, dv_err *err)
{
    char **names = NULL;
    size_t n = 0;
    dv_code rc = rec_list_dir(root, &names, &n, err);
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        char child[REC_PATH_MAX];
        if ((rc = rec_path(child, sizeof child, err, "%s/%s", root, names[i])) == DV_OK && rec_is_dir(child))
            rc = rec_fsync_tree_dirs(child, err);
    }
    rec_free_names(names, n);
    if (rc != DV_OK)
        return rc;
    /* The entries created in this directory (files, subdirectories) are not
     * durable until it is fsynced; the commit rename must not outrun them. */
    if (io_fsync_dir(root) != 0)
        return dv_errorf(err, dv_code_from_errno(errno), "recovery: fsync %s: %s", root, strerror(errno));
    return DV_OK;
}

dv_code rec_copy_file(const char *from, const char *to, dv_err *err)
{
    dv_code rc = DV_OK;
    int in = -1, out = -1;
    char *buf = malloc(COPY_CHUNK);
    if (!buf)
        return dv_errorf(err, DV_ENOMEM, "recovery: out of memory copying %s", from);
    if ((in = io_open(from, O_RDONLY | O_CLOEXEC, 0)) < 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "recovery: open %s: %s", from, strerror(errno));
        goto fail;
    }
    if ((out = io_open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "recovery: create %s: %s", to, strerror(errno));
        goto fail;
    }
    for (uint64_t off = 0;;) {
        ssize_t r = io_pread_full(in, buf, COPY_CHUNK, off);
        if (r < 0) {
            rc = dv_errorf(err, dv_code_from_errno(errno), "recovery: read %s at %llu: %s", from,
                           (unsigned long long)off, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        if (io_write_full(out, buf, (size_t)r) != 0) {
            rc = dv_errorf(err, dv_code_from_errno(errno), "recovery: write %s: %s", to, strerror(errno));
            goto fail;
        }
        off += (uint64_t)r;
        if (r < COPY_CHUNK)
            break;
    }
    /* The copy must be on disk before the rename that publishes it. */
    if (io_fsync(out) != 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "recovery: fsync %s: %s", to, strerror(errno));
        goto fail;
    }
fail:
    if (in >= 0)
        io_close(in);
    if (out >= 0)
        io_close(out);
    free(buf);
    return rc;
}

dv_code rec_hash_file(const char *path, uint64_t *size, uint64_t *xxh3, dv_err *err)
{
    dv_code rc = DV_OK;
    XXH3_state_t *st = XXH3_createState();
    char *buf = malloc(COPY_CHUNK);
    int fd = -1;
    if (!st || !buf) {
        rc = dv_errorf(err, DV_ENOMEM, "recovery: out of memory hashing %s", path);
        goto fail;
    }
    XXH3_64bits_reset(st);
    if ((fd = io_open(path, O_RDONLY | O_CLOEXEC, 0)) < 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "recovery: open %s: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t off = 0;
    for (;;) {
        ssize_t r = io_pread_full(fd, buf, COPY_CHUNK, off);
        if (r < 0) {
            rc =
                dv_errorf(err, DV_EIO, "recovery: read %s at %llu: %s", path, (unsigned long long)off, strerror(errno));
            goto fail;
        }
        XXH3_64bits_update(st, buf, (size_t)r);
        off += (uint64_t)r;
        if (r < COPY_CHUNK)
            break;
    }
    *size = off;
    *xxh3 = XXH3_64bits_digest(st);
fail:
    if (fd >= 0)
        io_close(fd);
    free(buf);
    XXH3_freeState(st);
    return rc;
}

static int name_chars_ok(const char *s, size_t n)
{
    if (n == 0 || n > DV_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int rec_parse_trash_id(const char *id, char name[DV_NAME_MAX + 1], int64_t *ms)
{
    const char *dot = strrchr(id, '.');
    if (!dot || !name_chars_ok(id, (size_t)(dot - id)))
        return -1;
    const char *p = dot + 1;
    if (!*p || strlen(p) > 18)
        return -1;
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    memcpy(name, id, (size_t)(dot - id));
    name[dot - id] = '\0';
    *ms = v;
    return 0;
}

void rec_read_trash_info(const char *dir, uint64_t *vector_count, int64_t *deleted_at_ms)
{
    char path[REC_PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    *vector_count = 0;
    *deleted_at_ms = 0;
    if (rec_path(path, sizeof path, NULL, "%s/%s", dir, REC_TRASH_INFO) != DV_OK ||
        io_read_file(path, &buf, &len, NULL) != DV_OK)
        return;
    json_t *j = json_loadb((const char *)buf, len, 0, NULL);
    free(buf);
    if (!j)
        return;
    json_t *vc = json_object_get(j, "vector_count"), *da = json_object_get(j, "deleted_at_ms");
    if (json_is_integer(vc) && json_integer_value(vc) >= 0)
        *vector_count = (uint64_t)json_integer_value(vc);
    if (json_is_integer(da))
        *deleted_at_ms = json_integer_value(da);
    json_decref(j);
}

dv_code rec_write_trash_info(const char *dir, const char *name, uint64_t vector_count, int64_t deleted_at_ms,
                             dv_err *err)
{
    json_t *j = json_pack("{s:i, s:s, s:I, s:I}", "format", 1, "name", name, "vector_count", (json_int_t)vector_count,
                          "deleted_at_ms", (json_int_t)deleted_at_ms);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return dv_errorf(err, DV_ENOMEM, "recovery: out of memory writing trash info");
    dv_code rc = io_write_file_atomic(dir, REC_TRASH_INFO, text, strlen(text), err);
    free(text);
    return rc;
}

void rec_format_compact_time(int64_t ms, char out[32])
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 32, "%04u%02u%02uT%02u%02u%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
             (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000) % 1000u);
}

/* Remove trash-info leftovers from live collections: a drop that crashed
 * before its rename, or a restore that crashed before removing it. */
static dv_code clean_live_leftovers(const char *data_dir, dv_err *err)
{
    char cdir[REC_PATH_MAX];
    dv_code rc = rec_path(cdir, sizeof cdir, err, "%s/%s", data_dir, REC_COLLECTIONS);
    if (rc != DV_OK)
        return rc;
    char **names = NULL;
    size_t n = 0;
    if ((rc = rec_list_dir(cdir, &names, &n, err)) != DV_OK)
        return rc;
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        const char *leftovers[] = {REC_TRASH_INFO, REC_TRASH_INFO ".tmp", REC_IMPORT_MARK, REC_IMPORT_MARK ".tmp"};
        for (size_t k = 0; k < 4 && rc == DV_OK; k++) {
            char p[REC_PATH_MAX], d[REC_PATH_MAX];
            if (rec_path(p, sizeof p, NULL, "%s/%s/%s", cdir, names[i], leftovers[k]) != DV_OK || !rec_exists(p))
                continue;
            if (io_unlink(p) != 0 && errno != ENOENT) {
                rc = dv_errorf(err, dv_code_from_errno(errno), "recovery: remove %s: %s", p, strerror(errno));
                break;
            }
            /* Not a commit point: the file is inert; the fsync only keeps the
             * clean-up from being redone after a crash. */
            if (rec_path(d, sizeof d, NULL, "%s/%s", cdir, names[i]) == DV_OK)
                (void)io_fsync_dir(d);
        }
    }
    rec_free_names(names, n);
    return rc;
}

/* Imports whose data was committed to .importing/<name> before a crash:
 * finish each one (import_finish_pending). One that fails stays there,
 * audited, and is retried at the next open; it never blocks the open. */
static void finish_imports(dv_db *db)
{
    char dir[REC_PATH_MAX];
    char **names = NULL;
    size_t n = 0;
    if (rec_path(dir, sizeof dir, NULL, "%s/%s", db_dir(db), REC_IMPORTING) != DV_OK ||
        rec_list_dir(dir, &names, &n, NULL) != DV_OK)
        return;
    for (size_t i = 0; i < n; i++)
        if (dv_name_validate(names[i], NULL) == DV_OK)
            (void)import_finish_pending(db, names[i], NULL);
    rec_free_names(names, n);
}

dv_code recovery_on_open(dv_db *db, dv_err *err)
{
    const dv_db_options *opts = db_opts(db);
    if (opts->read_only)
        return DV_OK;
    const char *dir = db_dir(db);
    char staging[REC_PATH_MAX];
    dv_code rc = rec_path(staging, sizeof staging, err, "%s/%s", dir, REC_STAGING);
    if (rc != DV_OK)
        return rc;
    if (rec_exists(staging)) {
        /* Everything in staging is either uncommitted work or committed
         * garbage (see the top of this file): removing it all is correct. */
        if ((rc = io_remove_tree(staging, err)) != DV_OK)
            return dv_err_wrap(err, rc, "recovery: cleaning %s", staging);
        if (io_fsync_dir(dir) != 0)
            return dv_errorf(err, dv_code_from_errno(errno), "recovery: fsync %s: %s", dir, strerror(errno));
    }
    if ((rc = clean_live_leftovers(dir, err)) != DV_OK)
        return rc;
    finish_imports(db);
    /* An expired entry that cannot be purged now stays in the trash (it is
     * audited with its error and retried by the next sweep); it must not
     * keep the database from opening. */
    (void)dv_trash_purge_expired(db, NULL, NULL);
    return DV_OK;
}
