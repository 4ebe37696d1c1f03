/*
 * backup.c - backups of a collection: create, list, delete, verify, and the
 * retention of automatic backups.
 *
 * On disk: <data>/.backups/<name>/<backup_id>/ holds a copy of the
 * collection directory (same layout, so it opens like a collection) plus
 * backup.json, written last:
 *   {"format":1, "name":..., "reason":..., "created_at_ms":...,
 *    "vector_count":..., "size_bytes":...,
 *    "files":[{"path":"vectors.bin","size":...,"xxh3":"<16 hex>"}, ...],
 *    "self_xxh3":"<16 hex>"}
 * self_xxh3 covers every other field (see manifest_self_hash), so a changed
 * count or checksum in the manifest itself is detected as well.
 * backup_id = "<UTC yyyymmddThhmmss.mmmZ>-<reason>", "-<n>" appended on a
 * collision; the id is the directory name and is not stored in the manifest.
 *
 * Invariants:
 *   - a backup is built in .staging and published by one rename (the commit
 *     point); a crash before it leaves staging debris (removed at open),
 *     never a half-written backup under .backups;
 *   - with the collection's writes paused after a checkpoint, immutable
 *     snapshot files are hard-linked (copied when the link fails, e.g.
 *     EXDEV) and the live WAL directory is copied: the backup is the state
 *     at one instant, consistent while writes continue before and after;
 *   - checksums are computed from the backup's own files after they are in
 *     place, so a verify compares against what was actually captured;
 *   - free space is checked before anything is copied: DV_ENOSPC with the
 *     numbers, and the staging directory is removed on every error;
 *   - automatic backups (reason other than "manual") are pruned to the
 *     newest backup_keep_auto per collection (at least one is always kept);
 *     manual ones stay until deleted.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#include "db_int.h"
#include "err.h"
#include "io.h"
#include "recovery_int.h"
#include "snap.h"

/* Slack on top of the bytes to copy: manifest, directory blocks. */
#define BACKUP_SPACE_MARGIN (1u << 20)
#define WAL_DIR "wal"

typedef struct bfile {
    char *path; /* relative to the backup dir */
    uint64_t size;
    uint64_t xxh3;
} bfile;

typedef struct bmanifest {
    char name[DV_NAME_MAX + 1];
    char reason[32];
    int64_t created_at_ms;
    uint64_t vector_count;
    uint64_t size_bytes;
    bfile *files;
    size_t n_files, cap_files;
} bmanifest;

static void manifest_free(bmanifest *m)
{
    for (size_t i = 0; i < m->n_files; i++)
        free(m->files[i].path);
    free(m->files);
    m->files = NULL;
    m->n_files = m->cap_files = 0;
}

static dv_code manifest_add(bmanifest *m, const char *path, uint64_t size, uint64_t xxh3, dv_err *err)
{
    if (m->n_files == m->cap_files) {
        size_t nc = m->cap_files ? m->cap_files * 2 : 16;
        bfile *nf = realloc(m->files, nc * sizeof *nf);
        if (!nf)
            return dv_errorf(err, DV_ENOMEM, "backup: out of memory");
        m->files = nf;
        m->cap_files = nc;
    }
    char *p = strdup(path);
    if (!p)
        return dv_errorf(err, DV_ENOMEM, "backup: out of memory");
    m->files[m->n_files++] = (bfile){p, size, xxh3};
    return DV_OK;
}

/* XXH3 over a canonical text of every manifest field but itself. */
static uint64_t manifest_self_hash(const bmanifest *m)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    char line[DV_NAME_MAX + 160];
    XXH3_64bits_reset(st);
    int n =
        snprintf(line, sizeof line, "dvecdb-backup 1\n%s\n%s\n%lld\n%llu\n%llu\n", m->name, m->reason,
                 (long long)m->created_at_ms, (unsigned long long)m->vector_count, (unsigned long long)m->size_bytes);
    XXH3_64bits_update(st, line, (size_t)n);
    for (size_t i = 0; i < m->n_files; i++) {
        n = snprintf(line, sizeof line, "\t%llu\t%016llx\n", (unsigned long long)m->files[i].size,
                     (unsigned long long)m->files[i].xxh3);
        XXH3_64bits_update(st, m->files[i].path, strlen(m->files[i].path));
        XXH3_64bits_update(st, line, (size_t)n);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static int reason_ok(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 31)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
            return 0;
    return 1;
}

/* A backup id from outside names a directory: only [A-Za-z0-9._-], no
 * leading dot (so never "." or ".."), shorter than dv_backup_info.backup_id. */
static dv_code backup_id_check(const char *id, dv_err *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n >= sizeof(((dv_backup_info *)0)->backup_id) || id[0] == '.')
        return dv_errorf(err, DV_EINVAL, "backup: invalid backup id");
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return dv_errorf(err, DV_EINVAL, "backup: invalid backup id %.80s", id);
    }
    return DV_OK;
}

/* A manifest path must stay inside the backup: relative, no "." / ".."
 * component, no empty component. */
static int rel_path_ok(const char *p)
{
    if (!p[0] || p[0] == '/' || strlen(p) > 1024)
        return 0;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        if (!e)
            break;
        s = e + 1;
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Files of a collection directory that never belong in a backup: temp files
 * of an interrupted atomic write and our own trash marker. */
static int skip_name(const char *name)
{
    return ends_with(name, ".tmp") || strcmp(name, REC_TRASH_INFO) == 0;
}

/* ---- copying a collection tree ---------------------------------------- */

typedef struct clone_ctx {
    const char *data_dir;
    int copy_all; /* 1: copy every file (no links) */
    uint64_t n_linked, n_copied, bytes_copied;
} clone_ctx;

/* Link src to dst, or copy it when linking is impossible (other filesystem,
 * link count limit, a filesystem without hard links); the copy is preceded
 * by a free-space check. */
static dv_code link_or_copy(clone_ctx *cx, const char *src, const char *dst, dv_err *err)
{
    if (!cx->copy_all) {
        if (io_link(src, dst) == 0) {
            cx->n_linked++;
            return DV_OK;
        }
        if (errno != EXDEV && errno != EMLINK && errno != EPERM && errno != ENOTSUP)
            return dv_errorf(err, dv_code_from_errno(errno), "backup: link %s -> %s: %s", src, dst, strerror(errno));
    }
    uint64_t need = io_tree_size(src), avail = io_disk_free(cx->data_dir);
    if (avail < need + BACKUP_SPACE_MARGIN)
        return dv_errorf(err, DV_ENOSPC, "backup: copying %s needs %llu bytes, %llu free", src,
                         (unsigned long long)(need + BACKUP_SPACE_MARGIN), (unsigned long long)avail);
    dv_code rc = rec_copy_file(src, dst, err);
    if (rc == DV_OK) {
        cx->n_copied++;
        cx->bytes_copied += need;
    }
    return rc;
}

/* Recreate the tree src under dst (existing, empty): directories made,
 * files under the top-level wal/ copied, every other file linked. */
static dv_code clone_tree(clone_ctx *cx, const char *src, const char *dst, int in_wal, int top, dv_err *err)
{
    char **names = NULL;
    size_t n = 0;
    dv_code rc = rec_list_dir(src, &names, &n, err);
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        char s[REC_PATH_MAX], d[REC_PATH_MAX];
        if (skip_name(names[i]) || (top && strcmp(names[i], REC_BACKUP_MANIFEST) == 0))
            continue;
        if ((rc = rec_path(s, sizeof s, err, "%s/%s", src, names[i])) != DV_OK ||
            (rc = rec_path(d, sizeof d, err, "%s/%s", dst, names[i])) != DV_OK)
            break;
        if (rec_is_dir(s)) {
            if (io_mkdir(d, 0755) != 0) {
                rc = dv_errorf(err, dv_code_from_errno(errno), "backup: mkdir %s: %s", d, strerror(errno));
                break;
            }
            rc = clone_tree(cx, s, d, in_wal || (top && strcmp(names[i], WAL_DIR) == 0), 0, err);
        } else if (in_wal) {
            /* The live WAL is appended to in place: it must be copied. */
            clone_ctx copy = *cx;
            copy.copy_all = 1;
            rc = link_or_copy(&copy, s, d, err);
            cx->n_copied = copy.n_copied;
            cx->bytes_copied = copy.bytes_copied;
        } else {
            rc = link_or_copy(cx, s, d, err);
        }
    }
    rec_free_names(names, n);
    return rc;
}

/* Bytes clone_tree will copy: the WAL files (links are free). */
static uint64_t copy_bytes_needed(const char *coll_dir)
{
    char w[REC_PATH_MAX];
    if (rec_path(w, sizeof w, NULL, "%s/%s", coll_dir, WAL_DIR) != DV_OK)
        return 0;
    return io_tree_size(w);
}

/* The checksum the collection's own manifest (checksummed itself) records
 * for a top-level snapshot file of this size; 0 if it records none. */
static int known_hash(const snap_manifest *sm, const char *name, uint64_t size, uint64_t *h)
{
    for (int k = 0; sm && k < SNAP_N_FILES; k++)
        if (sm->files[k].present && !strcmp(sm->files[k].name, name) && sm->files[k].size == size) {
            *h = sm->files[k].xxh3;
            return 1;
        }
    return 0;
}

/* Call visit(ctx, rel_path, full_path, name, err) for every regular file
 * under root/rel, depth first, skipping the backup's own manifest at the
 * top level. The one directory walk of backups (hashing a new backup,
 * checking a backup for strays). */
typedef dv_code (*tree_visit)(void *ctx, const char *rel, const char *full, const char *name, int top, dv_err *err);
static dv_code walk_tree(const char *root, const char *rel, tree_visit visit, void *ctx, dv_err *err)
{
    char dir[REC_PATH_MAX];
    dv_code rc =
        rel[0] ? rec_path(dir, sizeof dir, err, "%s/%s", root, rel) : rec_path(dir, sizeof dir, err, "%s", root);
    if (rc != DV_OK)
        return rc;
    char **names = NULL;
    size_t n = 0;
    if ((rc = rec_list_dir(dir, &names, &n, err)) != DV_OK)
        return rc;
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        char r[REC_PATH_MAX], full[REC_PATH_MAX];
        if (!rel[0] && strcmp(names[i], REC_BACKUP_MANIFEST) == 0)
            continue;
        rc = rel[0] ? rec_path(r, sizeof r, err, "%s/%s", rel, names[i]) : rec_path(r, sizeof r, err, "%s", names[i]);
        if (rc == DV_OK)
            rc = rec_path(full, sizeof full, err, "%s/%s", root, r);
        if (rc != DV_OK)
            break;
        rc = rec_is_dir(full) ? walk_tree(root, r, visit, ctx, err) : visit(ctx, r, full, names[i], !rel[0], err);
    }
    rec_free_names(names, n);
    return rc;
}

typedef struct {
    bmanifest *m;
    const snap_manifest *sm;
} hash_ctx;

/* Add one file to the manifest being built: top-level snapshot files that
 * were hard-linked take the XXH3 their collection manifest recorded when
 * they were written (they are immutable, so re-reading hundreds of MB would
 * only re-prove the engine's own write: verify re-reads them all);
 * everything else (WAL copies, the manifest) is read and hashed. */
static dv_code hash_file(void *ctx, const char *rel, const char *full, const char *name, int top, dv_err *err)
{
    hash_ctx *hc = ctx;
    struct stat st;
    uint64_t size = 0, h = 0;
    dv_code rc;
    if (top && lstat(full, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1 &&
        known_hash(hc->sm, name, (uint64_t)st.st_size, &h)) {
        size = (uint64_t)st.st_size;
        rc = manifest_add(hc->m, rel, size, h, err);
    } else if ((rc = rec_hash_file(full, &size, &h, err)) == DV_OK) {
        rc = manifest_add(hc->m, rel, size, h, err);
    }
    hc->m->size_bytes += size;
    return rc;
}

static dv_code hash_tree(bmanifest *m, const snap_manifest *sm, const char *root, dv_err *err)
{
    hash_ctx hc = {m, sm};
    return walk_tree(root, "", hash_file, &hc, err);
}

/* ---- manifest text -------------------------------------------------------- */

static dv_code manifest_write(const char *dir, const bmanifest *m, dv_err *err)
{
    char hex[17];
    json_t *files = json_array(), *o = NULL;
    if (!files)
        goto nomem;
    for (size_t i = 0; i < m->n_files; i++) {
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)m->files[i].xxh3);
        json_t *f =
            json_pack("{s:s, s:I, s:s}", "path", m->files[i].path, "size", (json_int_t)m->files[i].size, "xxh3", hex);
        if (!f || json_array_append_new(files, f) != 0)
            goto nomem;
    }
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)manifest_self_hash(m));
    o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:O, s:s}", "format", 1, "name", m->name, "reason", m->reason,
                  "created_at_ms", (json_int_t)m->created_at_ms, "vector_count", (json_int_t)m->vector_count,
                  "size_bytes", (json_int_t)m->size_bytes, "files", files, "self_xxh3", hex);
    if (!o)
        goto nomem;
    char *text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(o);
    json_decref(files);
    if (!text)
        return dv_errorf(err, DV_ENOMEM, "backup: out of memory writing the manifest");
    dv_code rc = io_write_file_atomic(dir, REC_BACKUP_MANIFEST, text, strlen(text), err);
    free(text);
    return rc;
nomem:
    json_decref(files);
    return dv_errorf(err, DV_ENOMEM, "backup: out of memory writing the manifest");
}

static int parse_hex64(const char *s, uint64_t *out)
{
    if (!s || strlen(s) != 16)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* Read and check <dir>/backup.json: structure, paths, self checksum.
 * DV_ECORRUPT naming the file and what is wrong. */
static dv_code manifest_read(const char *dir, bmanifest *m, dv_err *err)
{
    char path[REC_PATH_MAX];
    memset(m, 0, sizeof *m);
    dv_code rc = rec_path(path, sizeof path, err, "%s/%s", dir, REC_BACKUP_MANIFEST);
    if (rc != DV_OK)
        return rc;
    uint8_t *buf = NULL;
    size_t len = 0;
    if ((rc = io_read_file(path, &buf, &len, err)) != DV_OK)
        return rc == DV_ENOTFOUND ? dv_errorf(err, DV_ECORRUPT, "backup: %s: missing", path) : rc;
    json_error_t je;
    json_t *o = json_loadb((const char *)buf, len, 0, &je);
    free(buf);
    if (!o)
        return dv_errorf(err, DV_ECORRUPT, "backup: %s: not JSON at offset %d: %s", path, je.position, je.text);
    json_t *files = json_object_get(o, "files");
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *reason = json_string_value(json_object_get(o, "reason"));
    json_t *ca = json_object_get(o, "created_at_ms"), *vc = json_object_get(o, "vector_count"),
           *sb = json_object_get(o, "size_bytes");
    uint64_t self = 0;
    if (json_integer_value(json_object_get(o, "format")) != 1 || !name || strlen(name) > DV_NAME_MAX || !reason ||
        strlen(reason) >= sizeof m->reason || !json_is_integer(ca) || !json_is_integer(vc) ||
        json_integer_value(vc) < 0 || !json_is_integer(sb) || json_integer_value(sb) < 0 || !json_is_array(files) ||
        parse_hex64(json_string_value(json_object_get(o, "self_xxh3")), &self) != 0) {
        json_decref(o);
        return dv_errorf(err, DV_ECORRUPT, "backup: %s: missing or malformed fields", path);
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->reason, sizeof m->reason, "%s", reason);
    m->created_at_ms = json_integer_value(ca);
    m->vector_count = (uint64_t)json_integer_value(vc);
    m->size_bytes = (uint64_t)json_integer_value(sb);
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f)
    {
        const char *p = json_string_value(json_object_get(f, "path"));
        json_t *sz = json_object_get(f, "size");
        uint64_t h = 0;
        if (!p || !rel_path_ok(p) || !json_is_integer(sz) || json_integer_value(sz) < 0 ||
            parse_hex64(json_string_value(json_object_get(f, "xxh3")), &h) != 0) {
            rc = dv_errorf(err, DV_ECORRUPT, "backup: %s: file entry %zu malformed", path, i);
            break;
        }
        if ((rc = manifest_add(m, p, (uint64_t)json_integer_value(sz), h, err)) != DV_OK)
            break;
    }
    json_decref(o);
    if (rc == DV_OK && manifest_self_hash(m) != self)
        rc = dv_errorf(err, DV_ECORRUPT, "backup: %s: manifest checksum mismatch (edited?)", path);
    if (rc != DV_OK)
        manifest_free(m);
    return rc;
}

/* ---- create --------------------------------------------------------------- */

typedef struct paused_ctx {
    clone_ctx cx;
    const char *stage;
    uint64_t vector_count;
} paused_ctx;

/* With the collection's writes paused after a checkpoint: check space, link
 * the snapshot files, copy the WAL, read the count. */
static dv_code backup_paused(void *vctx, const char *dir, dv_err *err)
{
    paused_ctx *p = vctx;
    uint64_t need = copy_bytes_needed(dir) + BACKUP_SPACE_MARGIN, avail = io_disk_free(p->cx.data_dir);
    if (avail < need)
        return dv_errorf(err, DV_ENOSPC, "backup: need %llu bytes, %llu free", (unsigned long long)need,
                         (unsigned long long)avail);
    dv_code rc = clone_tree(&p->cx, dir, p->stage, 0, 1, err);
    if (rc != DV_OK)
        return rc;
    /* After the checkpoint, with writes paused, the manifest's count is the
     * collection's (the WAL holds nothing newer). dv_coll_info_get would
     * wait for the writer lock held around this callback. */
    snap_manifest m;
    if ((rc = snap_manifest_read(dir, &m, err)) != DV_OK)
        return rc;
    p->vector_count = m.n_live;
    return DV_OK;
}

static void info_from_manifest(const bmanifest *m, const char *id, dv_backup_info *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", m->name);
    snprintf(out->backup_id, sizeof out->backup_id, "%s", id);
    snprintf(out->reason, sizeof out->reason, "%s", m->reason);
    out->created_at_ms = m->created_at_ms;
    out->vector_count = m->vector_count;
    out->size_bytes = m->size_bytes;
}

dv_code backup_create_held(dv_db *db, const char *name, dv_coll *c, const char *reason, dv_backup_info *out,
                           dv_err *err)
{
    const char *data = db_dir(db);
    char parent[REC_PATH_MAX], stage[REC_PATH_MAX], dst[REC_PATH_MAX], id[64], what[DV_NAME_MAX + 16];
    bmanifest m;
    memset(&m, 0, sizeof m);
    dv_code rc;
    stage[0] = '\0';
    if ((rc = rec_path(parent, sizeof parent, err, "%s/%s/%s", data, REC_BACKUPS, name)) != DV_OK)
        return rc;
    snprintf(what, sizeof what, "backup-%s", name);
    if ((rc = rec_staging_dir(data, what, stage, sizeof stage, err)) != DV_OK)
        return rc;
    paused_ctx p = {.cx = {.data_dir = data}, .stage = stage};
    if ((rc = coll_with_writes_paused(c, 1, backup_paused, &p, err)) != DV_OK)
        goto fail;
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.reason, sizeof m.reason, "%s", reason);
    m.created_at_ms = dv_now_ms();
    m.vector_count = p.vector_count;
    snap_manifest sm;
    int have_sm = snap_manifest_read(stage, &sm, NULL) == DV_OK;
    if ((rc = hash_tree(&m, have_sm ? &sm : NULL, stage, err)) != DV_OK)
        goto fail;
    /* The manifest last, then every directory of the copy: a backup is
     * published only complete. */
    if ((rc = manifest_write(stage, &m, err)) != DV_OK || (rc = rec_fsync_tree_dirs(stage, err)) != DV_OK)
        goto fail;
    if ((rc = rec_mkdir_durable(parent, err)) != DV_OK)
        goto fail;
    char ts[32];
    rec_format_compact_time(m.created_at_ms, ts);
    for (int k = 1;; k++) {
        if (k == 1)
            snprintf(id, sizeof id, "%s-%s", ts, reason);
        else
            snprintf(id, sizeof id, "%s-%s-%d", ts, reason, k);
        if ((rc = rec_path(dst, sizeof dst, err, "%s/%s", parent, id)) != DV_OK)
            goto fail;
        /* The commit point of the backup. */
        rc = rec_rename_durable(stage, dst, 1, err);
        if (rc != DV_EEXIST || k > 1000)
            break;
    }
    if (rc != DV_OK)
        goto fail;
    if (out)
        info_from_manifest(&m, id, out);
    manifest_free(&m);
    return DV_OK;
fail:
    manifest_free(&m);
    if (stage[0])
        (void)io_remove_tree(stage, NULL); /* uncommitted: nothing half-written remains */
    return rc;
}

dv_code dv_backup_create(dv_db *db, const char *name, const char *reason, dv_backup_info *out, dv_err *err)
{
    dv_code rc;
    if (!db || !name)
        return dv_errorf(err, DV_EINVAL, "backup: missing argument");
    if ((rc = dv_name_validate(name, err)) != DV_OK)
        return rc;
    if (!reason)
        reason = "manual";
    if (!reason_ok(reason))
        return dv_errorf(err, DV_EINVAL, "backup: reason must match [a-z0-9-]{1,31}");
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "backup: database is read-only");
    dv_coll *c = NULL;
    if ((rc = dv_coll_open(db, name, &c, err)) != DV_OK)
        return rc;
    dv_backup_info info;
    rc = backup_create_held(db, name, c, reason, &info, err);
    dv_coll_close(c);
    char detail[sizeof(dv_err) + 160];
    if (rc == DV_OK)
        snprintf(detail, sizeof detail, "backup_id=%s reason=%s vector_count=%llu size_bytes=%llu", info.backup_id,
                 reason, (unsigned long long)info.vector_count, (unsigned long long)info.size_bytes);
    else
        snprintf(detail, sizeof detail, "reason=%s error=%s", reason, err ? err->msg : dv_strerror(rc));
    audit_log(db, "backup", name, rc, detail);
    if (rc != DV_OK)
        return rc;
    if (strcmp(reason, "manual") != 0)
        (void)backup_prune_auto(db, name, NULL); /* the new backup exists whatever the prune does */
    if (out)
        *out = info;
    return DV_OK;
}

/* ---- list / delete / verify ---------------------------------------------- */

/* "yyyymmddThhmmss.mmmZ..." -> ms, 0 if it does not parse. */
static int64_t time_from_id(const char *id)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    if (sscanf(id, "%4d%2d%2dT%2d%2d%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Append the backups of one collection to *v. A backup whose manifest does
 * not parse is listed with reason "damaged" (verify names the problem),
 * never hidden. */
static dv_code list_one(const char *data, const char *name, dv_backup_info **v, size_t *n, size_t *cap, dv_err *err)
{
    char dir[REC_PATH_MAX];
    dv_code rc = rec_path(dir, sizeof dir, err, "%s/%s/%s", data, REC_BACKUPS, name);
    if (rc != DV_OK)
        return rc;
    char **ids = NULL;
    size_t n_ids = 0;
    if ((rc = rec_list_dir(dir, &ids, &n_ids, err)) != DV_OK)
        return rc;
    for (size_t i = 0; i < n_ids && rc == DV_OK; i++) {
        char bdir[REC_PATH_MAX];
        if (backup_id_check(ids[i], NULL) != DV_OK ||
            rec_path(bdir, sizeof bdir, NULL, "%s/%s", dir, ids[i]) != DV_OK || !rec_is_dir(bdir))
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            dv_backup_info *nv = realloc(*v, nc * sizeof *nv);
            if (!nv) {
                rc = dv_errorf(err, DV_ENOMEM, "backup: list: out of memory");
                break;
            }
            *v = nv;
            *cap = nc;
        }
        bmanifest m;
        if (manifest_read(bdir, &m, NULL) == DV_OK) {
            info_from_manifest(&m, ids[i], &(*v)[*n]);
            manifest_free(&m);
        } else {
            dv_backup_info *b = &(*v)[*n];
            memset(b, 0, sizeof *b);
            snprintf(b->name, sizeof b->name, "%s", name);
            snprintf(b->backup_id, sizeof b->backup_id, "%s", ids[i]);
            snprintf(b->reason, sizeof b->reason, "damaged");
            b->created_at_ms = time_from_id(ids[i]);
            b->size_bytes = io_tree_size(bdir);
        }
        (*n)++;
    }
    rec_free_names(ids, n_ids);
    return rc;
}

static int cmp_backup_newest_first(const void *a, const void *b)
{
    const dv_backup_info *x = a, *y = b;
    if (x->created_at_ms != y->created_at_ms)
        return x->created_at_ms > y->created_at_ms ? -1 : 1;
    int c = strcmp(y->backup_id, x->backup_id);
    return c ? c : strcmp(x->name, y->name);
}

dv_code dv_backup_list(dv_db *db, const char *name, dv_backup_info **out, size_t *n_out, dv_err *err)
{
    if (!db || !out || !n_out)
        return dv_errorf(err, DV_EINVAL, "backup: list: missing argument");
    dv_code rc;
    if (name && (rc = dv_name_validate(name, err)) != DV_OK)
        return rc;
    const char *data = db_dir(db);
    dv_backup_info *v = NULL;
    size_t n = 0, cap = 0;
    if (name) {
        rc = list_one(data, name, &v, &n, &cap, err);
    } else {
        char root[REC_PATH_MAX];
        char **names = NULL;
        size_t n_names = 0;
        if ((rc = rec_path(root, sizeof root, err, "%s/%s", data, REC_BACKUPS)) == DV_OK)
            rc = rec_list_dir(root, &names, &n_names, err);
        for (size_t i = 0; i < n_names && rc == DV_OK; i++)
            if (dv_name_validate(names[i], NULL) == DV_OK)
                rc = list_one(data, names[i], &v, &n, &cap, err);
        rec_free_names(names, n_names);
    }
    if (rc != DV_OK) {
        free(v);
        return rc;
    }
    if (!v && !(v = calloc(1, sizeof *v)))
        return dv_errorf(err, DV_ENOMEM, "backup: list: out of memory");
    qsort(v, n, sizeof *v, cmp_backup_newest_first);
    *out = v;
    *n_out = n;
    return DV_OK;
}

/* Path of an existing backup directory, arguments validated. */
static dv_code backup_dir(dv_db *db, const char *name, const char *id, char *out, size_t cap, dv_err *err)
{
    dv_code rc;
    if (!name || !id)
        return dv_errorf(err, DV_EINVAL, "backup: missing name or backup id");
    if ((rc = dv_name_validate(name, err)) != DV_OK || (rc = backup_id_check(id, err)) != DV_OK)
        return rc;
    if ((rc = rec_path(out, cap, err, "%s/%s/%s/%s", db_dir(db), REC_BACKUPS, name, id)) != DV_OK)
        return rc;
    if (!rec_is_dir(out))
        return dv_errorf(err, DV_ENOTFOUND, "backup: no backup %s of %s", id, name);
    return DV_OK;
}

dv_code dv_backup_delete(dv_db *db, const char *name, const char *backup_id, dv_err *err)
{
    if (!db)
        return dv_errorf(err, DV_EINVAL, "backup: delete: missing argument");
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "backup: database is read-only");
    char dir[REC_PATH_MAX];
    dv_code rc = backup_dir(db, name, backup_id, dir, sizeof dir, err);
    if (rc != DV_OK)
        return rc;
    /* Renamed into staging first: a crash never leaves half a backup listed. */
    rc = rec_discard(db_dir(db), dir, err);
    char detail[sizeof(dv_err) + 192];
    snprintf(detail, sizeof detail, "backup_id=%s%s%s", backup_id,
             rc == DV_OK ? "" : " error=", rc == DV_OK ? "" : (err ? err->msg : dv_strerror(rc)));
    audit_log(db, "backup-delete", name, rc, detail);
    return rc;
}

/* Every regular file under root must be listed in m (besides backup.json):
 * a stray file would be carried into a restored collection. */
static dv_code stray_check(void *ctx, const char *rel, const char *full, const char *name, int top, dv_err *err)
{
    (void)name, (void)top;
    const bmanifest *m = ctx;
    for (size_t k = 0; k < m->n_files; k++)
        if (strcmp(m->files[k].path, rel) == 0)
            return DV_OK;
    return dv_errorf(err, DV_ECORRUPT, "backup: %s: file not in the manifest", full);
}

static dv_code check_no_strays(const bmanifest *m, const char *root, dv_err *err)
{
    return walk_tree(root, "", stray_check, (void *)m, err);
}

/* The checks of dv_backup_verify on a directory (no audit). */
static dv_code verify_dir(dv_db *db, const char *dir, const char *id, dv_backup_info *out, dv_err *err)
{
    bmanifest m;
    dv_code rc = manifest_read(dir, &m, err);
    if (rc != DV_OK)
        return rc;
    for (size_t i = 0; i < m.n_files && rc == DV_OK; i++) {
        char path[REC_PATH_MAX];
        uint64_t size = 0, h = 0;
        if ((rc = rec_path(path, sizeof path, err, "%s/%s", dir, m.files[i].path)) != DV_OK)
            break;
        if (!rec_exists(path) || rec_is_dir(path)) {
            rc = dv_errorf(err, DV_ECORRUPT, "backup: %s: missing", path);
            break;
        }
        if ((rc = rec_hash_file(path, &size, &h, err)) != DV_OK)
            break;
        if (size != m.files[i].size)
            rc = dv_errorf(err, DV_ECORRUPT, "backup: %s: size %llu, manifest says %llu", path,
                           (unsigned long long)size, (unsigned long long)m.files[i].size);
        else if (h != m.files[i].xxh3)
            rc = dv_errorf(err, DV_ECORRUPT, "backup: %s: checksum %016llx, manifest says %016llx", path,
                           (unsigned long long)h, (unsigned long long)m.files[i].xxh3);
    }
    if (rc == DV_OK)
        rc = check_no_strays(&m, dir, err);
    if (rc == DV_OK) {
        /* Open the copy as the engine would, without writing to it: the
         * snapshot validates and the WAL replays; the count must match. */
        dv_coll *c = NULL;
        rc = coll_open_at(dir, db_opts(db), 1, &c, err);
        if (rc != DV_OK) {
            rc = dv_err_wrap(err, DV_ECORRUPT, "backup: %s: does not open", dir);
        } else {
            dv_coll_info info;
            rc = dv_coll_info_get(c, &info, err);
            if (rc == DV_OK && info.n_vectors != m.vector_count)
                rc = dv_errorf(err, DV_ECORRUPT, "backup: %s: holds %llu vectors, manifest says %llu", dir,
                               (unsigned long long)info.n_vectors, (unsigned long long)m.vector_count);
            dv_coll_close(c);
        }
    }
    if (rc == DV_OK && out)
        info_from_manifest(&m, id, out);
    manifest_free(&m);
    return rc;
}

dv_code dv_backup_verify(dv_db *db, const char *name, const char *backup_id, dv_backup_info *out, dv_err *err)
{
    if (!db)
        return dv_errorf(err, DV_EINVAL, "backup: verify: missing argument");
    char dir[REC_PATH_MAX];
    dv_code rc = backup_dir(db, name, backup_id, dir, sizeof dir, err);
    if (rc != DV_OK)
        return rc;
    dv_backup_info info;
    rc = verify_dir(db, dir, backup_id, &info, err);
    char detail[sizeof(dv_err) + 192];
    snprintf(detail, sizeof detail, "backup_id=%s%s%s", backup_id,
             rc == DV_OK ? "" : " error=", rc == DV_OK ? "" : (err ? err->msg : dv_strerror(rc)));
    audit_log(db, "backup-verify", name, rc, detail);
    if (rc == DV_OK && out)
        *out = info;
    return rc;
}

dv_code backup_prune_auto(dv_db *db, const char *name, dv_err *err)
{
    dv_backup_info *v = NULL;
    size_t n = 0;
    dv_code rc = dv_backup_list(db, name, &v, &n, err), first = DV_OK;
    if (rc != DV_OK)
        return rc;
    uint32_t keep = db_opts(db)->backup_keep_auto;
    if (keep == 0)
        keep = 1; /* the backup just taken before a destructive call must survive it */
    uint32_t seen = 0;
    for (size_t i = 0; i < n; i++) { /* newest first */
        if (!strcmp(v[i].reason, "manual") || !strcmp(v[i].reason, "damaged"))
            continue;
        if (++seen <= keep)
            continue;
        char dir[REC_PATH_MAX], detail[sizeof(dv_err) + 192];
        dv_err e = {0};
        rc = rec_path(dir, sizeof dir, &e, "%s/%s/%s/%s", db_dir(db), REC_BACKUPS, name, v[i].backup_id);
        if (rc == DV_OK)
            rc = rec_discard(db_dir(db), dir, &e);
        snprintf(detail, sizeof detail, "backup_id=%s retention=%u%s%s", v[i].backup_id, keep,
                 rc == DV_OK ? "" : " error=", rc == DV_OK ? "" : e.msg);
        audit_log(db, "backup-expire", name, rc, detail);
        if (rc != DV_OK && first == DV_OK) {
            first = rc;
            if (err)
                *err = e;
        }
    }
    free(v);
    return first;
}

dv_code backup_materialize(dv_db *db, const char *name, const char *backup_id, const char *dst_dir, dv_err *err)
{
    char dir[REC_PATH_MAX];
    dv_code rc = backup_dir(db, name, backup_id, dir, sizeof dir, err);
    if (rc != DV_OK)
        return rc;
    uint64_t need = copy_bytes_needed(dir) + BACKUP_SPACE_MARGIN, avail = io_disk_free(db_dir(db));
    if (avail < need)
        return dv_errorf(err, DV_ENOSPC, "restore: need %llu bytes, %llu free", (unsigned long long)need,
                         (unsigned long long)avail);
    /* Snapshot files are immutable in the backup and in the restored
     * collection alike, so they are shared by hard links; the WAL copy is
     * copied again because the restored collection appends to it. */
    clone_ctx cx = {.data_dir = db_dir(db)};
    return clone_tree(&cx, dir, dst_dir, 0, 1, err);
}
