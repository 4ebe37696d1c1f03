/*
 * import.c - dv_import: turn orphaned vector files into a new collection.
 *
 * Sources (auto-detected, or named by opts->format):
 *   "dvecdb"  our own collection directory. With manifest.json: the
 *             directory is copied as is (its config wins; a dim/metric in
 *             the request must agree) and renamed to the new name. Without:
 *             the newest vectors-<gen>.bin (or vectors.bin) is read with its
 *             ids-<gen>.bin when present (ids + metadata), else ids are the
 *             row numbers; the metric comes from the request or the header.
 *   "legacy"  the original d-vecDB's vectors.bin (import_legacy.c).
 *   "fvecs"   [i32 dim][dim x f32] per row; ids = row numbers.
 *   "npy"     NumPy .npy, 2-D, '<f4' or '<f8', C order; ids = row numbers.
 *
 * Security (DESIGN.md invariant 5): the path must not contain a ".."
 * component, must be shorter than PATH_MAX, and its realpath() must lie
 * under one of opts.import_roots (realpath'd, compared on a path-component
 * boundary), or under the data directory when no root is configured: else
 * DV_EPERM, and nothing outside the roots is opened. Inside a source
 * directory every file is opened by its realpath'd name after the same
 * check, with O_NOFOLLOW. The source is only ever read.
 *
 * Invariants (docs/recovery.md, "Import"):
 *   - decoded points are validated as an upsert would validate them and
 *     kept in memory; they become generation 1 of a new collection in
 *     .staging/import-<name>-... (vectors and ids files, no index, manifest
 *     last), so the data is durable before any index work;
 *   - commit of the data: under the catalog lock (the name checked again:
 *     live and no overwrite is DV_EEXIST) one rename to .importing/<name>;
 *     before it a crash leaves staging debris only, after it the next open
 *     finishes the import (import_finish_pending);
 *   - the index is built without any lock by opening that directory (the
 *     engine links every vector in one hnsw_build on every core) and made
 *     durable by a checkpoint;
 *   - placement, under the catalog lock: with overwrite, the live
 *     collection's pre-import backup (unless skip_backup) and its move to
 *     the trash, then the rename into collections/<name> and the attach. The
 *     name holds the old collection or the new one at every instant a crash
 *     can observe (counting the finish at open), never neither;
 *   - an error after the commit of the data undoes it (back into staging,
 *     the old collection out of the trash): an error means nothing imported;
 *   - free space is checked before anything is written (DV_ENOSPC with the
 *     numbers).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "db_int.h"
#include "dist.h"
#include "err.h"
#include "io.h"
#include "payload.h"
#include "recovery_int.h"
#include "snap.h"
#include "utf8.h"

#define IMP_WINDOW (8u << 20)
#define IMP_SPACE_MARGIN (16u << 20)

/* ---- reader ---------------------------------------------------------------- */

const uint8_t *imp_get(imp_reader *r, uint64_t off, size_t n)
{
    if (off > r->size || n > r->size - off)
        return NULL;
    if (off >= r->base && off + n <= r->base + r->len)
        return r->buf + (off - r->base);
    size_t want = n > IMP_WINDOW ? n : IMP_WINDOW;
    if (want > r->cap) {
        uint8_t *nb = realloc(r->buf, want);
        if (!nb) {
            r->io_failed = 1;
            r->io_errno = ENOMEM;
            return NULL;
        }
        r->buf = nb;
        r->cap = want;
    }
    uint64_t left = r->size - off;
    size_t take = left < r->cap ? (size_t)left : r->cap;
    ssize_t got = io_pread_full(r->fd, r->buf, take, off);
    if (got < 0 || (size_t)got < n) {
        r->io_failed = 1;
        r->io_errno = got < 0 ? errno : EIO;
        r->len = 0;
        return NULL;
    }
    r->base = off;
    r->len = (size_t)got;
    return r->buf;
}

static void reader_close(imp_reader *r)
{
    if (r->fd >= 0)
        io_close(r->fd);
    free(r->buf);
    r->fd = -1;
    r->buf = NULL;
}

/* ---- path checks --------------------------------------------------------- */

typedef struct roots {
    char **v;
    size_t n;
} roots;

static void roots_free(roots *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i]);
    free(r->v);
}

/* realpath() of every configured root (or of the data dir when none); a
 * root that does not resolve is left out (it cannot contain anything). */
static dv_code roots_load(dv_db *db, roots *out, dv_err *err)
{
    const dv_db_options *o = db_opts(db);
    size_t n = o->n_import_roots && o->import_roots ? o->n_import_roots : 1;
    out->v = calloc(n, sizeof *out->v);
    out->n = 0;
    if (!out->v)
        return dv_errorf(err, DV_ENOMEM, "import: out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *r = o->n_import_roots && o->import_roots ? o->import_roots[i] : db_dir(db);
        char *rp = r ? realpath(r, NULL) : NULL;
        if (rp)
            out->v[out->n++] = rp;
    }
    return DV_OK;
}

/* 1 if path (absolute, resolved) equals root or lies below it: the prefix
 * must end on a component boundary ("/data" does not contain "/data2"). */
static int under_root(const char *path, const char *root)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int under_any(const roots *r, const char *path)
{
    for (size_t i = 0; i < r->n; i++)
        if (under_root(path, r->v[i]))
            return 1;
    return 0;
}

/* Lexical checks on the path as given: not empty, not over-long, no ".."
 * component, no control characters (NUL cannot be inside a C string; the
 * server rejects an embedded NUL before calling us). */
static dv_code path_lexical_ok(const char *p, dv_err *err)
{
    size_t n = strnlen(p, PATH_MAX);
    if (n == 0)
        return dv_errorf(err, DV_EPERM, "import: empty path");
    if (n >= PATH_MAX)
        return dv_errorf(err, DV_EPERM, "import: path longer than %d bytes", PATH_MAX - 1);
    const char *s = p;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t cl = e ? (size_t)(e - s) : strlen(s);
        if (cl > NAME_MAX)
            return dv_errorf(err, DV_EPERM, "import: path component longer than %d bytes", NAME_MAX);
        if (cl == 2 && s[0] == '.' && s[1] == '.')
            return dv_errorf(err, DV_EPERM, "import: \"..\" is not allowed in an import path");
        if (!e)
            break;
        s = e + 1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return dv_errorf(err, DV_EPERM, "import: control character in the import path");
    return DV_OK;
}

/* Resolve path (symlinks included) and require it under a root; the
 * resolved path goes to out (malloc'd). */
static dv_code resolve_inside(const roots *r, const char *path, char **out, dv_err *err)
{
    dv_code rc = path_lexical_ok(path, err);
    if (rc != DV_OK)
        return rc;
    char *rp = realpath(path, NULL);
    if (!rp) {
        /* Do not tell apart "absent" and "outside": both are refused the
         * same way unless the parent resolves inside a root. */
        int e = errno;
        char *slash = strrchr(path, '/');
        if (e == ENOENT && slash) {
            char parent[PATH_MAX];
            size_t pl = (size_t)(slash - path);
            memcpy(parent, path, pl ? pl : 1);
            parent[pl ? pl : 1] = '\0';
            char *pp = realpath(parent, NULL);
            int inside = pp && under_any(r, pp);
            free(pp);
            if (inside)
                return dv_errorf(err, DV_ENOTFOUND, "import: %s: no such file or directory", path);
        }
        return dv_errorf(err, DV_EPERM, "import: %s is not under an import root", path);
    }
    if (!under_any(r, rp)) {
        free(rp);
        return dv_errorf(err, DV_EPERM, "import: %s resolves outside every import root", path);
    }
    *out = rp;
    return DV_OK;
}

/* Open a file inside a checked source: resolve again (a symlink in the
 * source may point anywhere) and refuse a final symlink at open time. */
static dv_code open_inside(const roots *r, const char *path, imp_reader *rd, dv_err *err)
{
    char *rp = NULL;
    dv_code rc = resolve_inside(r, path, &rp, err);
    if (rc != DV_OK)
        return rc;
    memset(rd, 0, sizeof *rd);
    rd->fd = io_open(rp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
    free(rp);
    if (rd->fd < 0)
        return dv_errorf(err, dv_code_from_errno(errno), "import: open %s: %s", path, strerror(errno));
    if (io_fstat_size(rd->fd, &rd->size) != 0) {
        int e = errno;
        reader_close(rd);
        return dv_errorf(err, dv_code_from_errno(e), "import: stat %s: %s", path, strerror(e));
    }
    rd->path = path;
    return DV_OK;
}

/* Every entry of a source tree must be a regular file or a directory whose
 * realpath stays inside the roots (symlinks that point out are refused
 * before anything in the tree is read). */
static dv_code tree_inside(const roots *r, const char *dir, int depth, uint64_t *bytes, dv_err *err)
{
    if (depth > 8)
        return dv_errorf(err, DV_EPERM, "import: %s: directory tree too deep", dir);
    char **names = NULL;
    size_t n = 0;
    dv_code rc = rec_list_dir(dir, &names, &n, err);
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        char p[REC_PATH_MAX];
        if ((rc = rec_path(p, sizeof p, err, "%s/%s", dir, names[i])) != DV_OK)
            break;
        char *rp = NULL;
        if ((rc = resolve_inside(r, p, &rp, err)) != DV_OK)
            break;
        struct stat st;
        if (stat(rp, &st) != 0)
            rc = dv_errorf(err, dv_code_from_errno(errno), "import: stat %s: %s", p, strerror(errno));
        else if (S_ISDIR(st.st_mode))
            rc = tree_inside(r, rp, depth + 1, bytes, err);
        else if (S_ISREG(st.st_mode))
            *bytes += (uint64_t)st.st_size;
        else
            rc = dv_errorf(err, DV_EPERM, "import: %s is neither a file nor a directory", p);
        free(rp);
    }
    rec_free_names(names, n);
    return rc;
}

/* ---- progress ------------------------------------------------------------- */

/* Tell the caller; DV_EBUSY when it asks to cancel. */
static dv_code job_progress(const dv_import_opts *o, const char *phase, uint64_t done, uint64_t total, dv_err *err)
{
    if (o->progress && o->progress(o->progress_ctx, phase, done, total) != 0)
        return dv_errorf(err, DV_EBUSY, "import: cancelled by the caller during %s", phase);
    return DV_OK;
}

/* ---- the sink: every decoded point, in memory ------------------------------ */

/* Points are validated the way dv_coll_upsert validates them (id, finite
 * vector, metadata a JSON object within the limit) and kept in arrival
 * order; a repeated id replaces the earlier point in place (the later record
 * wins). Cosine vectors are normalized here exactly as the engine does,
 * because the snapshot holds what the index holds. */
struct imp_sink {
    const dv_import_opts *o;
    uint32_t dim;
    int normalize;
    float *vecs; /* cap x dim, an anonymous mapping (vecs_bytes) */
    size_t vecs_bytes;
    char **ids;
    char **metas;
    uint32_t *meta_lens;
    size_t n, cap;
    uint32_t *ht;  /* open addressing: index + 1, 0 = empty */
    size_t ht_cap; /* power of two, > 2n */
};

static void sink_free(imp_sink *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->ids[i]);
        free(s->metas[i]);
    }
    if (s->vecs)
        munmap(s->vecs, s->vecs_bytes);
    free(s->ids);
    free(s->metas);
    free(s->meta_lens);
    free(s->ht);
    free(s);
}

static size_t sink_slot(const imp_sink *s, const char *id, size_t len)
{
    size_t mask = s->ht_cap - 1, h = (size_t)XXH3_64bits(id, len) & mask;
    while (s->ht[h] && strcmp(s->ids[s->ht[h] - 1], id) != 0)
        h = (h + 1) & mask;
    return h;
}

/* The vectors live in an anonymous mapping that grows with mremap (no
 * copy) and asks for transparent huge pages: filling hundreds of MB of fresh
 * 4 KiB pages was the import's main cost after the index (page faults, very
 * dear under a hypervisor; perf: 60% of the decode phase). */
static float *vecs_grow(imp_sink *s, size_t bytes)
{
    void *p = s->vecs ? mremap(s->vecs, s->vecs_bytes, bytes, MREMAP_MAYMOVE)
                      : mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without THP it is 4 KiB pages */
    s->vecs = p;
    s->vecs_bytes = bytes;
    return p;
}

static dv_code sink_grow(imp_sink *s, dv_err *err)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        float *v = vecs_grow(s, nc * s->dim * sizeof(float));
        char **a = realloc(s->ids, nc * sizeof *a);
        if (a)
            s->ids = a;
        char **b = realloc(s->metas, nc * sizeof *b);
        if (b)
            s->metas = b;
        uint32_t *l = realloc(s->meta_lens, nc * sizeof *l);
        if (l)
            s->meta_lens = l;
        if (!v || !a || !b || !l)
            return dv_errorf(err, DV_ENOMEM, "import: out of memory for %zu points", nc);
        s->cap = nc;
    }
    if ((s->n + 1) * 2 > s->ht_cap) {
        size_t nc = s->ht_cap ? s->ht_cap * 2 : 4096;
        uint32_t *t = calloc(nc, sizeof *t);
        if (!t)
            return dv_errorf(err, DV_ENOMEM, "import: out of memory");
        free(s->ht);
        s->ht = t;
        s->ht_cap = nc;
        for (size_t i = 0; i < s->n; i++)
            s->ht[sink_slot(s, s->ids[i], strlen(s->ids[i]))] = (uint32_t)i + 1;
    }
    return DV_OK;
}

dv_code imp_sink_add(imp_sink *s, const char *id, const float *v, const char *meta, size_t meta_len, dv_err *err)
{
    size_t il = strnlen(id, DV_ID_MAX + 1);
    if (il == 0 || il > DV_ID_MAX || utf8_valid_prefix((const uint8_t *)id, il) != il)
        return dv_errorf(err, DV_EINVAL, "import: id \"%.40s\" is empty, longer than %d bytes or not UTF-8", id,
                         DV_ID_MAX);
    if (!dist_all_finite(v, s->dim))
        return dv_errorf(err, DV_EINVAL, "import: %s: vector contains NaN or Inf", id);
    if (meta && meta_len > DV_METADATA_MAX)
        return dv_errorf(err, DV_ELIMIT, "import: %s: metadata is %zu bytes, limit %d", id, meta_len, DV_METADATA_MAX);
    if (meta && meta_len) {
        payload *pl = NULL;
        dv_code prc = payload_parse(meta, meta_len, &pl, err);
        if (prc != DV_OK)
            return dv_err_wrap(err, prc, "import: %s: metadata", id);
        payload_free(pl);
    }
    dv_code rc = sink_grow(s, err);
    if (rc != DV_OK)
        return rc;
    char *m = NULL;
    if (meta && meta_len) {
        if (!(m = malloc(meta_len + 1)))
            return dv_errorf(err, DV_ENOMEM, "import: out of memory");
        memcpy(m, meta, meta_len);
        m[meta_len] = '\0';
    }
    size_t h = sink_slot(s, id, il);
    size_t i;
    if (s->ht[h]) { /* the later record wins, in the earlier one's place */
        i = s->ht[h] - 1;
        free(s->metas[i]);
    } else {
        i = s->n;
        if (!(s->ids[i] = strndup(id, il))) {
            free(m);
            return dv_errorf(err, DV_ENOMEM, "import: out of memory");
        }
        s->ht[h] = (uint32_t)i + 1;
        s->n++;
    }
    s->metas[i] = m;
    s->meta_lens[i] = m ? (uint32_t)meta_len : 0;
    float *dst = s->vecs + i * s->dim;
    memcpy(dst, v, (size_t)s->dim * sizeof(float));
    if (s->normalize)
        (void)dist_normalize(dst, s->dim); /* as the engine's upsert does */
    return DV_OK;
}

dv_code imp_sink_progress(imp_sink *s, const char *phase, uint64_t done, uint64_t total, dv_err *err)
{
    return job_progress(s->o, phase, done, total, err);
}

static const float *sink_vector(void *ctx, uint64_t slot)
{
    imp_sink *s = ctx;
    return s->vecs + slot * s->dim;
}

static int sink_record(void *ctx, uint64_t slot, const char **id, size_t *id_len, const char **meta, size_t *meta_len)
{
    imp_sink *s = ctx;
    *id = s->ids[slot];
    *id_len = strlen(s->ids[slot]);
    *meta = s->metas[slot];
    *meta_len = s->meta_lens[slot];
    return 1;
}

static int all_finite(const float *v, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* ---- the job ------------------------------------------------------------- */

typedef struct imp_job {
    dv_db *db;
    const dv_import_opts *o;
    const roots *r;
    char *src; /* realpath of opts->path */
    int src_is_dir;
    char stage[REC_PATH_MAX];   /* .staging/import-<name>-...: being built */
    char pending[REC_PATH_MAX]; /* .importing/<name>: committed, being indexed/placed */
    int committed;              /* the data is in pending */
    dv_coll_config cfg;
    imp_sink *sink;
    dv_import_report rep;
    double t_durable, t_index; /* seconds from the start */
} imp_job;

static dv_code cfg_for(imp_job *j, uint32_t dim, dv_metric metric, dv_coll_config *cfg, dv_err *err);

/* Reserve the staging name and make the sink for cfg. */
static dv_code job_begin(imp_job *j, const dv_coll_config *cfg, dv_err *err)
{
    char what[DV_NAME_MAX + 16];
    snprintf(what, sizeof what, "import-%s", j->o->collection_name);
    dv_code rc = rec_staging_name(db_dir(j->db), what, j->stage, sizeof j->stage, err);
    if (rc != DV_OK)
        return rc;
    imp_sink *s = calloc(1, sizeof *s);
    if (!s)
        return dv_errorf(err, DV_ENOMEM, "import: out of memory");
    s->o = j->o;
    s->dim = cfg->dim;
    s->normalize = cfg->metric == DV_METRIC_COSINE;
    j->cfg = *cfg;
    j->sink = s;
    return DV_OK;
}

static void job_free_sink(imp_job *j)
{
    sink_free(j->sink);
    j->sink = NULL;
}

/* Write the sink as generation 1 of a new collection in staging: the
 * engine's own empty collection (coll_create_at) gets a vectors and an ids
 * file but no index (the open that follows builds it on every core in one
 * pass), then the manifest naming them. Each file is written temp -> fsync
 * -> rename and the manifest last: after this the data is durable, and the
 * rename into .importing commits it. */
static dv_code job_write_snapshot(imp_job *j, dv_err *err)
{
    imp_sink *s = j->sink;
    dv_coll *c = NULL;
    dv_code rc = job_progress(j->o, "write", 0, s->n, err);
    if (rc == DV_OK)
        rc = coll_create_at(j->stage, &j->cfg, db_opts(j->db), &c, err);
    if (rc != DV_OK)
        return rc;
    dv_coll_close(c);
    j->rep.imported = s->n;
    if (s->n == 0)
        return DV_OK;
    snap_manifest m;
    if ((rc = snap_manifest_read(j->stage, &m, err)) != DV_OK)
        return rc;
    snap_source src = {.n_slots = s->n, .ctx = s, .vector = sink_vector, .record = sink_record};
    if ((rc = snap_write_gen(j->stage, &m.cfg, 1, &src, &m, err)) != DV_OK)
        return rc;
    m.gen = 1;
    m.n_live = s->n;
    if ((rc = snap_manifest_write(j->stage, &m, err)) != DV_OK)
        return rc;
    return job_progress(j->o, "write", s->n, s->n, err);
}

/* ---- commit: .staging -> .importing/<name> -> collections/<name> --------- */

/* The flags of an overwriting import, kept inside the committed directory
 * so that an open after a crash finishes it the same way. */
typedef struct imp_finish {
    int overwrite, skip_backup;
    int took_backup;
    dv_backup_info backup; /* pre-import */
    int dropped;
    dv_trash_entry old; /* the replaced collection, now in the trash */
} imp_finish;

static dv_code write_mark(const char *dir, int skip_backup, dv_err *err)
{
    const char *t = skip_backup ? "overwrite skip_backup\n" : "overwrite\n";
    return io_write_file_atomic(dir, REC_IMPORT_MARK, t, strlen(t), err);
}

static void read_mark(const char *dir, imp_finish *f)
{
    char p[REC_PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    memset(f, 0, sizeof *f);
    if (rec_path(p, sizeof p, NULL, "%s/%s", dir, REC_IMPORT_MARK) != DV_OK ||
        io_read_file(p, &buf, &len, NULL) != DV_OK)
        return;
    f->overwrite = len >= 9 && memcmp(buf, "overwrite", 9) == 0;
    f->skip_backup = f->overwrite && len >= 21 && memcmp(buf + 9, " skip_backup", 12) == 0;
    free(buf);
}

/* Remove the mark from a collection that is now live (inert if a crash
 * leaves it: the next open removes it too). */
static void drop_mark(const char *dir)
{
    char p[REC_PATH_MAX];
    if (rec_path(p, sizeof p, NULL, "%s/%s", dir, REC_IMPORT_MARK) == DV_OK && rec_exists(p) && io_unlink(p) == 0)
        (void)io_fsync_dir(dir);
}

/* The commit point of the data: under the catalog lock (no create of the
 * name can slip in when overwrite is off), rename the complete, fsynced
 * staging directory to .importing/<name>. From here a crash no longer loses
 * the import: the next open finishes it (recovery.c). */
static dv_code commit_pending(imp_job *j, dv_err *err)
{
    const char *name = j->o->collection_name;
    char dir[REC_PATH_MAX];
    dv_code rc;
    if ((rc = rec_path(dir, sizeof dir, err, "%s/%s", db_dir(j->db), REC_IMPORTING)) != DV_OK ||
        (rc = rec_path(j->pending, sizeof j->pending, err, "%s/%s", dir, name)) != DV_OK)
        return rc;
    if (j->o->overwrite && (rc = write_mark(j->stage, j->o->skip_backup, err)) != DV_OK)
        return rc;
    if ((rc = rec_fsync_tree_dirs(j->stage, err)) != DV_OK || (rc = rec_mkdir_durable(dir, err)) != DV_OK)
        return rc;
    db_catalog_lock(j->db);
    if (!j->o->overwrite && db_has_locked(j->db, name)) {
        rc = dv_errorf(err, DV_EEXIST, "import: a collection named %s exists (pass overwrite to replace it)", name);
    } else {
        rc = rec_rename_durable(j->stage, j->pending, 1, err);
        if (rc == DV_EEXIST)
            rc = dv_errorf(err, DV_EBUSY, "import: another import into %s is being finished", name);
        else if (rc == DV_OK)
            j->committed = 1;
    }
    db_catalog_unlock(j->db);
    return rc;
}

/* An error after the commit: take the directory back into staging (the
 * caller removes it), so that an error still means "nothing imported".
 * XXX: if even that rename fails, the import stays committed and the next
 * open finishes it, although this call reported an error. */
static void uncommit(imp_job *j)
{
    if (j->committed && rec_rename_durable(j->pending, j->stage, 1, NULL) == DV_OK)
        j->committed = 0;
}

/* Build the index of the committed data on every core (the engine's open
 * links every vector that has no index in one hnsw_build) and make it
 * durable with a checkpoint. No lock is held meanwhile. */
static dv_code index_pending(imp_job *j, dv_err *err)
{
    dv_coll *c = NULL;
    dv_code rc = job_progress(j->o, "index", 0, j->rep.imported, err);
    if (rc == DV_OK)
        rc = coll_open_at(j->pending, db_opts(j->db), 0, &c, err);
    if (rc != DV_OK)
        return rc;
    dv_coll_info info;
    rc = dv_coll_checkpoint(c, err);
    if (rc == DV_OK && (rc = dv_coll_info_get(c, &info, err)) == DV_OK)
        j->rep.imported = info.n_vectors;
    dv_coll_close(c);
    if (rc == DV_OK)
        rc = job_progress(j->o, "index", j->rep.imported, j->rep.imported, err);
    return rc;
}

/* Put an old collection that this import moved to the trash back. */
static void undo_drop(dv_db *db, const char *name, const dv_trash_entry *old)
{
    char from[REC_PATH_MAX], to[REC_PATH_MAX], info[REC_PATH_MAX];
    if (rec_path(from, sizeof from, NULL, "%s/%s/%s", db_dir(db), REC_TRASH, old->trash_id) != DV_OK ||
        rec_path(to, sizeof to, NULL, "%s/%s/%s", db_dir(db), REC_COLLECTIONS, name) != DV_OK ||
        rec_path(info, sizeof info, NULL, "%s/%s", to, REC_TRASH_INFO) != DV_OK)
        return;
    if (rec_rename_durable(from, to, 1, NULL) == DV_OK) {
        if (io_unlink(info) == 0)
            (void)io_fsync_dir(to);
        (void)db_attach_locked(db, name, NULL);
    }
}

/* Catalog lock held. Place .importing/<name> as collections/<name>: if the
 * name is live (overwrite only), its pre-import backup first (unless
 * skip_backup) and its move to the trash (its own commit), then the rename
 * (the commit of the replacement) and the attach. On error nothing changed:
 * the import is still in .importing and the old collection live. */
static dv_code finish_locked(dv_db *db, const char *name, const char *pend, dv_coll *held, imp_finish *f, dv_err *err)
{
    char live[REC_PATH_MAX], cdir[REC_PATH_MAX];
    dv_code rc;
    if ((rc = rec_path(cdir, sizeof cdir, err, "%s/%s", db_dir(db), REC_COLLECTIONS)) != DV_OK ||
        (rc = rec_path(live, sizeof live, err, "%s/%s", cdir, name)) != DV_OK)
        return rc;
    if (db_has_locked(db, name)) {
        if (!f->overwrite)
            return dv_errorf(err, DV_EEXIST, "import: a collection named %s was created meanwhile", name);
        if (!f->skip_backup) {
            if (!held)
                return dv_errorf(err, DV_EDAMAGED,
                                 "import: %s cannot be backed up before the overwrite (damaged?); pass skip_backup",
                                 name);
            if ((rc = backup_create_held(db, name, held, "pre-import", &f->backup, err)) != DV_OK)
                return dv_err_wrap(err, rc, "import: pre-import backup of %s", name);
            f->took_backup = 1;
        }
        /* The old collection goes to the trash, never away. */
        if ((rc = trash_drop_locked(db, name, held, &f->old, err)) != DV_OK)
            return dv_err_wrap(err, rc, "import: moving the old %s to the trash", name);
        f->dropped = 1;
    }
    if ((rc = rec_mkdir_durable(cdir, err)) != DV_OK)
        goto undo;
    /* The commit point of the replacement: the name holds the new collection.
     * A crash before it leaves the old one live, or (after the drop above)
     * the import in .importing, which the next open renames into place. */
    if ((rc = rec_rename_durable(pend, live, 1, err)) != DV_OK)
        goto undo;
    drop_mark(live);
    if ((rc = db_attach_locked(db, name, err)) != DV_OK) {
        rc = dv_err_wrap(err, rc, "import: opening the imported %s", name);
        if (db_has_locked(db, name)) /* registered as damaged */
            (void)db_detach_locked(db, name, NULL);
        if (rec_rename_durable(live, pend, 1, NULL) == DV_OK && f->overwrite)
            (void)write_mark(pend, f->skip_backup, NULL);
        goto undo;
    }
    return DV_OK;
undo:
    if (f->dropped && !rec_exists(live))
        undo_drop(db, name, &f->old);
    f->dropped = 0;
    return rc;
}

/* Move a committed import that cannot take its name (created meanwhile,
 * no overwrite; found at open) into the trash: restorable under another
 * name, never thrown away. */
static dv_code pending_to_trash(dv_db *db, const char *name, const char *pend, char *trash_id, size_t cap, dv_err *err)
{
    char trash[REC_PATH_MAX], dst[REC_PATH_MAX];
    snap_manifest m;
    uint64_t count = snap_manifest_read(pend, &m, NULL) == DV_OK ? m.n_live : 0;
    int64_t ms = dv_now_ms();
    dv_code rc;
    if ((rc = rec_path(trash, sizeof trash, err, "%s/%s", db_dir(db), REC_TRASH)) != DV_OK ||
        (rc = rec_mkdir_durable(trash, err)) != DV_OK ||
        (rc = rec_write_trash_info(pend, name, count, ms, err)) != DV_OK)
        return rc;
    for (int tries = 0;; tries++, ms++) {
        if ((rc = rec_path(dst, sizeof dst, err, "%s/%s.%lld", trash, name, (long long)ms)) != DV_OK)
            return rc;
        rc = rec_rename_durable(pend, dst, 1, err);
        if (rc != DV_EEXIST || tries > 1000)
            break;
    }
    if (rc == DV_OK)
        snprintf(trash_id, cap, "%s.%lld", name, (long long)ms);
    return rc;
}

/* Audit the parts of a finish: the pre-import backup and the old
 * collection's move to the trash (as restore does), then prune. */
static void audit_finish(dv_db *db, const char *name, const imp_finish *f)
{
    if (f->took_backup)
        audit_log(db, "backup", name, DV_OK, f->backup.backup_id);
    if (f->dropped)
        audit_log(db, "delete", name, DV_OK, f->old.trash_id);
}

dv_code import_finish_pending(dv_db *db, const char *name, dv_err *err)
{
    char pend[REC_PATH_MAX];
    dv_code rc = rec_path(pend, sizeof pend, err, "%s/%s/%s", db_dir(db), REC_IMPORTING, name);
    if (rc != DV_OK)
        return rc;
    if (dv_name_validate(name, NULL) != DV_OK || !rec_is_dir(pend))
        return dv_errorf(err, DV_EINVAL, "import: %s is not a pending import", pend);
    imp_finish f;
    read_mark(pend, &f);
    dv_coll *held = NULL;
    if (f.overwrite && dv_coll_open(db, name, &held, NULL) != DV_OK)
        held = NULL;
    char trash_id[DV_NAME_MAX + 32] = "";
    db_catalog_lock(db);
    rc = finish_locked(db, name, pend, held, &f, err);
    if (rc == DV_EEXIST)
        rc = pending_to_trash(db, name, pend, trash_id, sizeof trash_id, err);
    db_catalog_unlock(db);
    if (held)
        dv_coll_close(held);
    audit_finish(db, name, &f);
    char detail[sizeof(dv_err) + 256];
    snprintf(detail, sizeof detail, "finished at open%s%s%s%s%s%s", f.took_backup ? " backup_id=" : "",
             f.took_backup ? f.backup.backup_id : "", f.dropped ? " replaced_to_trash=" : "",
             f.dropped ? f.old.trash_id : "", trash_id[0] ? " name taken, import moved to the trash as " : "",
             trash_id);
    audit_log(db, "import", name, rc, detail);
    if (f.took_backup)
        (void)backup_prune_auto(db, name, NULL);
    return rc;
}

/* The free-space check before anything is written. */
static dv_code space_check(dv_db *db, uint64_t need, dv_err *err)
{
    uint64_t avail = io_disk_free(db_dir(db));
    need += IMP_SPACE_MARGIN;
    if (avail < need)
        return dv_errorf(err, DV_ENOSPC, "import: need about %llu bytes, %llu free", (unsigned long long)need,
                         (unsigned long long)avail);
    return DV_OK;
}

/* Open the copied directory read-only before it is committed: proof that
 * it opens, and its count. */
static dv_code count_dir(dv_db *db, const char *dir, uint64_t *n, dv_err *err)
{
    dv_coll *c = NULL;
    dv_code rc = coll_open_at(dir, db_opts(db), 1, &c, err);
    if (rc != DV_OK)
        return rc;
    dv_coll_info info;
    rc = dv_coll_info_get(c, &info, err);
    dv_coll_close(c);
    if (rc == DV_OK)
        *n = info.n_vectors;
    return rc;
}

/* ---- format readers ------------------------------------------------------ */

static dv_code cfg_for(imp_job *j, uint32_t dim, dv_metric metric, dv_coll_config *cfg, dv_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->name, sizeof cfg->name, "%s", j->o->collection_name);
    if (j->o->dim && dim && j->o->dim != dim)
        return dv_errorf(err, DV_EINVAL, "import: the request says dimension %u, the file has %u", j->o->dim, dim);
    cfg->dim = dim ? dim : j->o->dim;
    if (cfg->dim == 0 || cfg->dim > DV_DIM_MAX)
        return dv_errorf(err, DV_EINVAL, "import: dimension %u out of range 1..%u", cfg->dim, DV_DIM_MAX);
    cfg->metric = j->o->has_metric ? j->o->metric : metric;
    cfg->vtype = j->o->vtype;
    if (cfg->vtype != DV_VTYPE_F32)
        return dv_errorf(err, DV_ENOTSUP, "import: vector type %s is not supported yet", dv_vtype_name(cfg->vtype));
    return DV_OK;
}

static dv_code import_fvecs(imp_job *j, dv_err *err)
{
    imp_reader rd;
    dv_code rc = open_inside(j->r, j->src, &rd, err);
    if (rc != DV_OK)
        return rc;
    const uint8_t *p = imp_get(&rd, 0, 4);
    uint32_t dim = 0;
    if (p)
        memcpy(&dim, p, 4); /* XXX: assumes a little-endian host, like the .fvecs files themselves */
    uint64_t rec = 4 + 4 * (uint64_t)dim;
    dv_coll_config cfg;
    if (!p || dim == 0 || dim > DV_DIM_MAX || rd.size % rec != 0) {
        rc = dv_errorf(err, DV_EINVAL, "import: %s: not an .fvecs file (first dim %u, size %llu)", j->src, dim,
                       (unsigned long long)rd.size);
        goto out;
    }
    if ((rc = cfg_for(j, dim, DV_METRIC_EUCLIDEAN, &cfg, err)) != DV_OK ||
        (rc = space_check(j->db, rd.size * 2, err)) != DV_OK || (rc = job_begin(j, &cfg, err)) != DV_OK)
        goto out;
    uint64_t n = rd.size / rec;
    float *v = malloc((size_t)dim * sizeof(float));
    if (!v) {
        rc = dv_errorf(err, DV_ENOMEM, "import: out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < n && rc == DV_OK; i++) {
        const uint8_t *r = imp_get(&rd, i * rec, (size_t)rec);
        if (!r) {
            rc = dv_errorf(err, DV_EIO, "import: read %s at %llu: %s", j->src, (unsigned long long)(i * rec),
                           strerror(rd.io_errno));
            break;
        }
        uint32_t d;
        memcpy(&d, r, 4);
        memcpy(v, r + 4, (size_t)dim * 4);
        j->rep.bytes_scanned += rec;
        if (d != dim || !all_finite(v, dim)) {
            j->rep.skipped++; /* a row of another dimension or with NaN/Inf */
            continue;
        }
        char id[24];
        snprintf(id, sizeof id, "%llu", (unsigned long long)i);
        rc = imp_sink_add(j->sink, id, v, NULL, 0, err);
        if (rc == DV_OK && (i & 4095) == 0)
            rc = imp_sink_progress(j->sink, "read", i * rec, rd.size, err);
    }
    free(v);
out:
    reader_close(&rd);
    return rc;
}

/* Parse the .npy header dict: descr '<f4' | '<f8', fortran_order False,
 * shape (n, d). */
static dv_code npy_header(const char *src, const char *h, size_t len, int *item, uint64_t *n, uint64_t *d, dv_err *err)
{
    char text[1024];
    if (len >= sizeof text)
        return dv_errorf(err, DV_EINVAL, "import: %s: .npy header too long", src);
    memcpy(text, h, len);
    text[len] = '\0';
    const char *descr = strstr(text, "'descr'");
    const char *fo = strstr(text, "'fortran_order'");
    const char *shape = strstr(text, "'shape'");
    if (!descr || !fo || !shape)
        return dv_errorf(err, DV_EINVAL, "import: %s: malformed .npy header", src);
    descr = strchr(descr + 7, '\'');
    if (descr && (!strncmp(descr, "'<f4'", 5) || !strncmp(descr, "'=f4'", 5)))
        *item = 4;
    else if (descr && (!strncmp(descr, "'<f8'", 5) || !strncmp(descr, "'=f8'", 5)))
        *item = 8;
    else
        return dv_errorf(err, DV_EINVAL, "import: %s: .npy dtype must be little-endian float32 or float64", src);
    fo = strchr(fo + 15, ':');
    while (fo && (*fo == ':' || *fo == ' '))
        fo++;
    if (!fo || strncmp(fo, "False", 5) != 0)
        return dv_errorf(err, DV_EINVAL, "import: %s: .npy must be in C order (fortran_order False)", src);
    shape = strchr(shape + 7, '(');
    unsigned long long a = 0, b = 0;
    char close = 0;
    if (!shape || sscanf(shape, "(%llu , %llu %c", &a, &b, &close) != 3 || close != ')')
        return dv_errorf(err, DV_EINVAL, "import: %s: .npy shape must be 2-D (rows, dim)", src);
    *n = a;
    *d = b;
    return DV_OK;
}

static dv_code import_npy(imp_job *j, dv_err *err)
{
    imp_reader rd;
    dv_code rc = open_inside(j->r, j->src, &rd, err);
    if (rc != DV_OK)
        return rc;
    const uint8_t *p = imp_get(&rd, 0, 10);
    dv_coll_config cfg;
    float *v = NULL;
    if (!p || memcmp(p, "\x93NUMPY", 6) != 0 || p[6] < 1 || p[6] > 3) {
        rc = dv_errorf(err, DV_EINVAL, "import: %s: not a .npy file", j->src);
        goto out;
    }
    uint64_t hl, hoff;
    if (p[6] == 1) {
        hl = (uint64_t)p[8] | (uint64_t)p[9] << 8;
        hoff = 10;
    } else {
        const uint8_t *q = imp_get(&rd, 0, 12);
        if (!q) {
            rc = dv_errorf(err, DV_EINVAL, "import: %s: truncated .npy header", j->src);
            goto out;
        }
        hl = (uint64_t)q[8] | (uint64_t)q[9] << 8 | (uint64_t)q[10] << 16 | (uint64_t)q[11] << 24;
        hoff = 12;
    }
    const uint8_t *h = hl <= 65536 ? imp_get(&rd, hoff, (size_t)hl) : NULL;
    int item = 0;
    uint64_t n = 0, d = 0;
    if (!h) {
        rc = dv_errorf(err, DV_EINVAL, "import: %s: truncated .npy header", j->src);
        goto out;
    }
    if ((rc = npy_header(j->src, (const char *)h, (size_t)hl, &item, &n, &d, err)) != DV_OK)
        goto out;
    uint64_t data = hoff + hl;
    if (d == 0 || d > DV_DIM_MAX || (n && (rd.size - data) / n / (uint64_t)item < d) ||
        rd.size - data != n * d * (uint64_t)item) {
        rc = dv_errorf(err, DV_EINVAL, "import: %s: shape (%llu, %llu) does not match the file size %llu", j->src,
                       (unsigned long long)n, (unsigned long long)d, (unsigned long long)rd.size);
        goto out;
    }
    if ((rc = cfg_for(j, (uint32_t)d, DV_METRIC_EUCLIDEAN, &cfg, err)) != DV_OK ||
        (rc = space_check(j->db, n * d * 4 * 2, err)) != DV_OK || (rc = job_begin(j, &cfg, err)) != DV_OK)
        goto out;
    if (!(v = malloc((size_t)d * sizeof(float)))) {
        rc = dv_errorf(err, DV_ENOMEM, "import: out of memory");
        goto out;
    }
    size_t row = (size_t)d * (size_t)item;
    for (uint64_t i = 0; i < n && rc == DV_OK; i++) {
        const uint8_t *r = imp_get(&rd, data + i * row, row);
        if (!r) {
            rc = dv_errorf(err, DV_EIO, "import: read %s: %s", j->src, strerror(rd.io_errno));
            break;
        }
        /* XXX: little-endian host assumed, as for every on-disk float here. */
        if (item == 4) {
            memcpy(v, r, row);
        } else {
            for (uint64_t k = 0; k < d; k++) {
                double x;
                memcpy(&x, r + 8 * k, 8);
                v[k] = (float)x; /* out-of-range doubles become inf: skipped below */
            }
        }
        j->rep.bytes_scanned += row;
        if (!all_finite(v, (uint32_t)d)) {
            j->rep.skipped++;
            continue;
        }
        char id[24];
        snprintf(id, sizeof id, "%llu", (unsigned long long)i);
        rc = imp_sink_add(j->sink, id, v, NULL, 0, err);
        if (rc == DV_OK && (i & 4095) == 0)
            rc = imp_sink_progress(j->sink, "read", i * row, rd.size, err);
    }
out:
    free(v);
    reader_close(&rd);
    return rc;
}

static dv_code import_legacy_file(imp_job *j, const char *file, dv_err *err)
{
    imp_reader rd;
    dv_code rc = open_inside(j->r, file, &rd, err);
    if (rc != DV_OK)
        return rc;
    uint32_t dim = j->o->dim;
    const uint8_t *p = imp_get(&rd, 0, 32);
    if (!dim && p && legacy_sniff(p, 32))
        dim = (uint32_t)(p[24] | p[25] << 8 | p[26] << 16 | (uint32_t)p[27] << 24);
    dv_coll_config cfg;
    legacy_stats st = {0};
    /* The original has no metric on disk: the request's, Cosine otherwise
     * (the original's default). */
    if ((rc = cfg_for(j, dim, DV_METRIC_COSINE, &cfg, err)) != DV_OK ||
        (rc = space_check(j->db, rd.size * 2, err)) != DV_OK || (rc = job_begin(j, &cfg, err)) != DV_OK)
        goto out;
    rc = legacy_import(&rd, &dim, j->sink, &st, err);
    j->rep.skipped += st.skipped;
    j->rep.bytes_scanned += st.bytes_scanned;
out:
    reader_close(&rd);
    return rc;
}

/* Newest "<kind>-<gen>.bin" (or "<kind>.bin") in dir; 0 if none. */
static int find_gen_file(const char *dir, const char *kind, char *out, size_t cap, uint64_t *gen)
{
    char **names = NULL;
    size_t n = 0;
    int found = 0;
    uint64_t best = 0;
    if (rec_list_dir(dir, &names, &n, NULL) != DV_OK)
        return 0;
    size_t kl = strlen(kind);
    for (size_t i = 0; i < n; i++) {
        const char *s = names[i];
        if (strncmp(s, kind, kl) != 0)
            continue;
        uint64_t g = 0;
        if (!strcmp(s + kl, ".bin")) {
            g = 0;
        } else if (s[kl] == '-' && s[kl + 1] >= '0' && s[kl + 1] <= '9') {
            char *end;
            g = strtoull(s + kl + 1, &end, 10);
            if (strcmp(end, ".bin") != 0)
                continue;
        } else {
            continue;
        }
        if (!found || g > best) {
            best = g;
            found = 1;
            snprintf(out, cap, "%s/%s", dir, s);
        }
    }
    rec_free_names(names, n);
    *gen = best;
    return found;
}

/* Own format with manifest: copy the directory into staging, give it the
 * new name, prove it opens. */
static dv_code import_own_dir(imp_job *j, uint64_t tree_bytes, dv_err *err)
{
    snap_manifest m;
    dv_code rc = snap_manifest_read(j->src, &m, err);
    if (rc != DV_OK)
        return rc;
    if (j->o->dim && j->o->dim != m.cfg.dim)
        return dv_errorf(err, DV_EINVAL, "import: the request says dimension %u, the manifest %u", j->o->dim,
                         m.cfg.dim);
    if (j->o->has_metric && j->o->metric != m.cfg.metric)
        return dv_errorf(err, DV_EINVAL, "import: the request says metric %s, the manifest %s",
                         dv_metric_name(j->o->metric), dv_metric_name(m.cfg.metric));
    if ((rc = space_check(j->db, tree_bytes, err)) != DV_OK)
        return rc;
    char what[DV_NAME_MAX + 16];
    snprintf(what, sizeof what, "import-%s", j->o->collection_name);
    if ((rc = rec_staging_dir(db_dir(j->db), what, j->stage, sizeof j->stage, err)) != DV_OK)
        return rc;
    /* Copy, never link: the source is outside our control and may change. */
    char **names = NULL;
    size_t n = 0;
    if ((rc = rec_list_dir(j->src, &names, &n, err)) != DV_OK)
        return rc;
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        char s[REC_PATH_MAX], d[REC_PATH_MAX];
        const char *nm = names[i];
        size_t l = strlen(nm);
        if ((l > 4 && !strcmp(nm + l - 4, ".tmp")) || !strcmp(nm, REC_TRASH_INFO) || !strcmp(nm, REC_BACKUP_MANIFEST) ||
            !strcmp(nm, REC_IMPORT_MARK))
            continue;
        if ((rc = rec_path(s, sizeof s, err, "%s/%s", j->src, nm)) != DV_OK ||
            (rc = rec_path(d, sizeof d, err, "%s/%s", j->stage, nm)) != DV_OK)
            break;
        if (rec_is_dir(s)) {
            /* one level: the WAL directory */
            char **sub = NULL;
            size_t ns = 0;
            if (io_mkdir(d, 0755) != 0) {
                rc = dv_errorf(err, dv_code_from_errno(errno), "import: mkdir %s: %s", d, strerror(errno));
                break;
            }
            rc = rec_list_dir(s, &sub, &ns, err);
            for (size_t k = 0; k < ns && rc == DV_OK; k++) {
                char s2[REC_PATH_MAX], d2[REC_PATH_MAX];
                if ((rc = rec_path(s2, sizeof s2, err, "%s/%s", s, sub[k])) == DV_OK &&
                    (rc = rec_path(d2, sizeof d2, err, "%s/%s", d, sub[k])) == DV_OK && !rec_is_dir(s2))
                    rc = rec_copy_file(s2, d2, err);
            }
            rec_free_names(sub, ns);
        } else {
            rc = rec_copy_file(s, d, err);
        }
        j->rep.bytes_scanned += io_tree_size(d);
    }
    rec_free_names(names, n);
    if (rc != DV_OK)
        return rc;
    if (strcmp(m.cfg.name, j->o->collection_name) != 0) {
        /* The directory name and the manifest's name must agree. */
        snprintf(m.cfg.name, sizeof m.cfg.name, "%s", j->o->collection_name);
        if ((rc = snap_manifest_write(j->stage, &m, err)) != DV_OK)
            return rc;
    }
    return DV_OK;
}

/* Own format without manifest: vectors file (+ ids file of the same gen). */
typedef struct own_ids {
    char **ids;
    char **metas;
    size_t *meta_lens;
    uint64_t n;
} own_ids;

static dv_code own_id_cb(void *ctx, uint64_t slot, int live, const char *id, size_t id_len, const char *meta,
                         size_t meta_len, dv_err *err)
{
    own_ids *o = ctx;
    if (slot >= o->n)
        return dv_errorf(err, DV_ECORRUPT, "import: ids file has more records than the vectors file");
    if (!live)
        return DV_OK;
    o->ids[slot] = strndup(id, id_len);
    o->metas[slot] = meta ? strndup(meta, meta_len) : NULL;
    o->meta_lens[slot] = meta_len;
    if (!o->ids[slot] || (meta && !o->metas[slot]))
        return dv_errorf(err, DV_ENOMEM, "import: out of memory");
    return DV_OK;
}

typedef struct own_vec_ctx {
    imp_job *j;
    own_ids *ids;
} own_vec_ctx;

static dv_code own_vec_cb(void *ctx, uint64_t slot, int live, const float *v, dv_err *err)
{
    own_vec_ctx *x = ctx;
    imp_job *j = x->j;
    if (!live)
        return DV_OK;
    j->rep.bytes_scanned += 4 + 4 * (uint64_t)j->sink->dim;
    if (!all_finite(v, j->sink->dim)) {
        j->rep.skipped++;
        return DV_OK;
    }
    char idbuf[24];
    const char *id = NULL, *meta = NULL;
    size_t ml = 0;
    if (x->ids) {
        if (slot >= x->ids->n || !x->ids->ids[slot]) {
            j->rep.skipped++; /* live vector without an id record */
            return DV_OK;
        }
        id = x->ids->ids[slot];
        meta = x->ids->metas[slot];
        ml = x->ids->meta_lens[slot];
    } else {
        snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)slot);
        id = idbuf;
    }
    return imp_sink_add(j->sink, id, v, meta, ml, err);
}

static dv_code import_own_files(imp_job *j, const char *vec_path, uint64_t gen, dv_err *err)
{
    uint32_t dim = 0;
    dv_metric metric = DV_METRIC_COSINE;
    uint64_t n = 0;
    float *vecs = NULL;
    imp_reader rd;
    /* Opened once through the checked path so a symlink escape is refused
     * before snap reads the file by name. */
    dv_code rc = open_inside(j->r, vec_path, &rd, err);
    if (rc != DV_OK)
        return rc;
    uint64_t vsize = rd.size;
    const uint8_t *h = imp_get(&rd, 0, 64);
    uint64_t slots = 0;
    if (h) {
        dim = (uint32_t)h[12] | (uint32_t)h[13] << 8 | (uint32_t)h[14] << 16 | (uint32_t)h[15] << 24;
        metric = (dv_metric)h[20];
        for (int i = 7; i >= 0; i--)
            slots = slots << 8 | h[24 + i];
    }
    reader_close(&rd);
    dv_coll_config cfg;
    if ((rc = cfg_for(j, dim, metric, &cfg, err)) != DV_OK || (rc = space_check(j->db, vsize * 2, err)) != DV_OK)
        return rc;
    /* ids-<gen>.bin: ids and metadata per slot, when it survived. */
    char ids_path[REC_PATH_MAX];
    snprintf(ids_path, sizeof ids_path, "%s/ids-%llu.bin", j->src, (unsigned long long)gen);
    own_ids ids = {0};
    int have_ids = 0;
    if (gen && rec_exists(ids_path) && slots && slots <= UINT32_MAX) {
        imp_reader ir;
        if ((rc = open_inside(j->r, ids_path, &ir, err)) != DV_OK)
            return rc;
        reader_close(&ir);
        snap_manifest fm;
        memset(&fm, 0, sizeof fm);
        fm.cfg = cfg;
        fm.n_slots = slots;
        snprintf(fm.files[SNAP_IDS].name, sizeof fm.files[SNAP_IDS].name, "ids-%llu.bin", (unsigned long long)gen);
        fm.files[SNAP_IDS].present = 1;
        if ((rc = rec_hash_file(ids_path, &fm.files[SNAP_IDS].size, &fm.files[SNAP_IDS].xxh3, err)) != DV_OK)
            return rc;
        ids.n = slots;
        ids.ids = calloc(slots, sizeof *ids.ids);
        ids.metas = calloc(slots, sizeof *ids.metas);
        ids.meta_lens = calloc(slots, sizeof *ids.meta_lens);
        if (!ids.ids || !ids.metas || !ids.meta_lens)
            rc = dv_errorf(err, DV_ENOMEM, "import: out of memory");
        else
            rc = snap_load_ids(j->src, &fm, own_id_cb, &ids, err);
        have_ids = rc == DV_OK;
        if (rc != DV_OK && rc != DV_ENOMEM)
            rc = DV_OK; /* a damaged ids file: fall back to row numbers */
    }
    if (rc == DV_OK)
        rc = job_begin(j, &cfg, err);
    if (rc == DV_OK) {
        snap_manifest fm;
        memset(&fm, 0, sizeof fm);
        fm.cfg = cfg;
        fm.cfg.metric = (dv_metric)metric; /* the file's own metric, for its header check */
        fm.n_slots = slots;
        const char *base = strrchr(vec_path, '/');
        snprintf(fm.files[SNAP_VECTORS].name, sizeof fm.files[SNAP_VECTORS].name, "%s", base ? base + 1 : vec_path);
        fm.files[SNAP_VECTORS].present = 1;
        rc = rec_hash_file(vec_path, &fm.files[SNAP_VECTORS].size, &fm.files[SNAP_VECTORS].xxh3, err);
        own_vec_ctx x = {j, have_ids ? &ids : NULL};
        if (rc == DV_OK)
            rc = snap_load_vectors(j->src, &fm, own_vec_cb, &x, err);
    }
    for (uint64_t i = 0; i < ids.n && ids.ids; i++) {
        free(ids.ids[i]);
        free(ids.metas[i]);
    }
    free(ids.ids);
    free(ids.metas);
    free(ids.meta_lens);
    free(vecs);
    (void)n;
    return rc;
}

/* ---- dispatcher ---------------------------------------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Decide the format of a file by its name and first bytes. */
static const char *sniff_file(const roots *r, const char *path)
{
    if (ends_with(path, ".fvecs"))
        return "fvecs";
    if (ends_with(path, ".npy"))
        return "npy";
    imp_reader rd;
    if (open_inside(r, path, &rd, NULL) != DV_OK)
        return NULL;
    const uint8_t *p = imp_get(&rd, 0, 32);
    const char *f = NULL;
    if (p && !memcmp(p, "DVVECS01", 8))
        f = "dvecdb";
    else if (p && !memcmp(p, "\x93NUMPY", 6))
        f = "npy";
    else if (p && legacy_sniff(p, 32))
        f = "legacy";
    reader_close(&rd);
    return f;
}

static dv_code run_job(imp_job *j, dv_err *err)
{
    const char *fmt = j->o->format && strcmp(j->o->format, "auto") != 0 ? j->o->format : NULL;
    char file[REC_PATH_MAX];
    uint64_t gen = 0;
    dv_code rc;
    if (j->src_is_dir) {
        uint64_t tree_bytes = 0;
        if ((rc = tree_inside(j->r, j->src, 0, &tree_bytes, err)) != DV_OK)
            return rc;
        char man[REC_PATH_MAX];
        if ((rc = rec_path(man, sizeof man, err, "%s/%s", j->src, SNAP_MANIFEST)) != DV_OK)
            return rc;
        int has_manifest = rec_exists(man);
        int has_vec = find_gen_file(j->src, "vectors", file, sizeof file, &gen);
        const char *kind = has_vec ? sniff_file(j->r, file) : NULL;
        if (!fmt)
            fmt = has_manifest ? "dvecdb" : kind;
        if (!fmt)
            return dv_errorf(err, DV_EINVAL, "import: %s: no manifest.json and no recognisable vectors file", j->src);
        snprintf(j->rep.format, sizeof j->rep.format, "%s", fmt);
        if (!strcmp(fmt, "dvecdb") && has_manifest)
            return import_own_dir(j, tree_bytes, err);
        if (!has_vec)
            return dv_errorf(err, DV_EINVAL, "import: %s: no vectors file", j->src);
        if (!strcmp(fmt, "dvecdb"))
            return import_own_files(j, file, gen, err);
        if (!strcmp(fmt, "legacy"))
            return import_legacy_file(j, file, err);
        return dv_errorf(err, DV_EINVAL, "import: format %s needs a file path, not a directory", fmt);
    }
    if (!fmt)
        fmt = sniff_file(j->r, j->src);
    if (!fmt)
        return dv_errorf(err, DV_EINVAL, "import: %s: unrecognised file format", j->src);
    snprintf(j->rep.format, sizeof j->rep.format, "%s", fmt);
    if (!strcmp(fmt, "fvecs"))
        return import_fvecs(j, err);
    if (!strcmp(fmt, "npy"))
        return import_npy(j, err);
    if (!strcmp(fmt, "legacy"))
        return import_legacy_file(j, j->src, err);
    if (!strcmp(fmt, "dvecdb")) {
        const char *base = strrchr(j->src, '/');
        uint64_t g = 0;
        if (base && sscanf(base + 1, "vectors-%llu.bin", (unsigned long long *)&g) != 1)
            g = 0;
        char dir[REC_PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", base ? (int)(base - j->src) : 1, base ? j->src : ".");
        char *keep = j->src;
        j->src = dir;
        rc = import_own_files(j, keep, g, err);
        j->src = keep;
        return rc;
    }
    return dv_errorf(err, DV_EINVAL, "import: unknown format \"%.32s\" (auto, dvecdb, legacy, fvecs, npy)", fmt);
}

dv_code dv_import(dv_db *db, const dv_import_opts *opts, dv_import_report *out, dv_err *err)
{
    dv_code rc;
    if (!db || !opts || !opts->path || !opts->collection_name)
        return dv_errorf(err, DV_EINVAL, "import: path and collection_name are required");
    if ((rc = dv_name_validate(opts->collection_name, err)) != DV_OK)
        return rc;
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "import: database is read-only");
    const char *name = opts->collection_name;
    roots r = {0};
    imp_job j;
    memset(&j, 0, sizeof j);
    j.db = db;
    j.o = opts;
    j.r = &r;
    imp_finish f;
    memset(&f, 0, sizeof f);
    if ((rc = roots_load(db, &r, err)) != DV_OK)
        return rc;
    double t0 = dv_mono_s();
    if ((rc = resolve_inside(&r, opts->path, &j.src, err)) != DV_OK)
        goto done;
    j.src_is_dir = rec_is_dir(j.src);
    db_catalog_lock(db);
    int live = db_has_locked(db, name);
    db_catalog_unlock(db);
    if (live && !opts->overwrite) {
        rc = dv_errorf(err, DV_EEXIST, "import: a collection named %s exists (pass overwrite to replace it)", name);
        goto done;
    }
    rc = run_job(&j, err);
    int built = j.sink != NULL;
    if (rc == DV_OK && built)
        rc = job_write_snapshot(&j, err);
    job_free_sink(&j);
    /* A copied directory is opened once before it is committed: proof
     * that it opens, and its count. */
    if (rc == DV_OK && !built)
        rc = count_dir(db, j.stage, &j.rep.imported, err);
    if (rc == DV_OK)
        rc = commit_pending(&j, err);
    j.t_durable = dv_mono_s() - t0;
    if (rc == DV_OK)
        rc = index_pending(&j, err);
    j.t_index = dv_mono_s() - t0 - j.t_durable;
    if (rc == DV_OK)
        rc = job_progress(opts, "commit", 0, 1, err);
    if (rc == DV_OK) {
        f.overwrite = opts->overwrite;
        f.skip_backup = opts->skip_backup;
        dv_coll *held = NULL;
        if (f.overwrite && dv_coll_open(db, name, &held, NULL) != DV_OK)
            held = NULL;
        db_catalog_lock(db);
        rc = finish_locked(db, name, j.pending, held, &f, err);
        if (rc == DV_OK)
            j.committed = 0; /* placed */
        db_catalog_unlock(db);
        if (held)
            dv_coll_close(held);
        audit_finish(db, name, &f);
    }
    if (rc != DV_OK)
        uncommit(&j);
done:
    if (j.stage[0] && rc != DV_OK && !j.committed)
        (void)io_remove_tree(j.stage, NULL); /* not done: nothing half-written remains */
    if (f.took_backup)
        snprintf(j.rep.backup_id, sizeof j.rep.backup_id, "%s", f.backup.backup_id);
    if (f.dropped)
        snprintf(j.rep.replaced_trash_id, sizeof j.rep.replaced_trash_id, "%s", f.old.trash_id);
    char detail[sizeof(dv_err) + 640];
    snprintf(detail, sizeof detail,
             "path=%.200s format=%s imported=%llu skipped=%llu bytes_scanned=%llu durable_s=%.3f index_s=%.3f "
             "seconds=%.3f%s%s%s%s%s%s",
             opts->path, j.rep.format[0] ? j.rep.format : "?", (unsigned long long)j.rep.imported,
             (unsigned long long)j.rep.skipped, (unsigned long long)j.rep.bytes_scanned, j.t_durable, j.t_index,
             dv_mono_s() - t0, j.rep.backup_id[0] ? " backup_id=" : "", j.rep.backup_id,
             j.rep.replaced_trash_id[0] ? " replaced_to_trash=" : "", j.rep.replaced_trash_id,
             rc == DV_OK ? "" : " error=", rc == DV_OK ? "" : (err ? err->msg : dv_strerror(rc)));
    audit_log(db, "import", name, rc, detail);
    if (f.took_backup)
        (void)backup_prune_auto(db, name, NULL);
    free(j.src);
    roots_free(&r);
    if (rc == DV_OK && out)
        *out = j.rep;
    return rc;
}
