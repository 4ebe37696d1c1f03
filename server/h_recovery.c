/*
 * h_recovery.c - handlers for the recovery routes (trash, restore, hard
 * delete, import and its background jobs, backups, audit) and the audit
 * helper used by every admin operation.
 *
 * Paths from outside are checked here before the engine sees them (the
 * engine checks again): collection names with dv_name_validate, backup ids
 * against a strict character set, import paths must be absolute, NUL-free,
 * lexically under an import root (or the data directory when none is
 * configured) and, once symlinks are resolved with realpath(), still under
 * it; anything else (including a path that does not exist) is 403 without a
 * file being opened (realpath() only stats and reads links).
 * Jobs: `POST /collections/import?wait=false` runs the import in a thread
 * and answers 202 with a job id; the job table keeps the newest finished
 * jobs (SRV_JOBS_MAX) and every running one; shutdown cancels running jobs
 * through the progress callback and joins their threads. Each job is also
 * kept as <data>/.jobs/<job_id>.json (written when it starts and when it
 * ends, atomically), so `GET /jobs/:id` still answers after a restart: a
 * job whose file still says "running" was interrupted by a crash, and says
 * so. Job files older than SRV_JOB_FILE_TTL_S are removed at start-up.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* ---- audit ------------------------------------------------------------------ */
void srv_audit(srv_req *r, const char *action, const char *collection, const char *outcome, const char *detail)
{
    dv_db *db = srv_db();
    /* One operation, one line: if the engine audited this action itself
     * (with this request's actor, see dv_audit_context_set), that line is
     * the record; the server writes one only for what the engine never saw
     * (creates, auth failures, requests refused before the engine call). */
    if (!db || dv_audit_context_wrote(action))
        return;
    dv_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.action = action;
    ev.collection = collection;
    ev.outcome = outcome;
    ev.actor = r->actor;
    ev.remote = r->remote;
    ev.route = r->route ? r->route->pattern : "unmatched";
    ev.detail = detail;
    dv_err err = {0};
    if (dv_audit_append(db, &ev, &err) != DV_OK) {
        char q[600];
        srv_log(SRV_LOG_WARN, "audit_failed", "action=%s code=%s msg=%s", action, dv_code_name(err.code),
                srv_log_quote(err.msg, q, sizeof q));
    }
}

static json_t *backup_json(const dv_backup_info *b)
{
    char c[40];
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "name", b->name, "backup_id", b->backup_id, "reason",
                     b->reason, "created_at", srv_iso_time(b->created_at_ms, c, sizeof c), "created_at_ms",
                     (json_int_t)b->created_at_ms, "vector_count", (json_int_t)b->vector_count, "size_bytes",
                     (json_int_t)b->size_bytes);
}

static int check_name(srv_req *r, const char *name)
{
    dv_err err = {0};
    if (dv_name_validate(name, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return -1;
    }
    return 0;
}

/* Backup ids are "<UTC time>-<reason>": letters, digits, '.', '_', ':', '-'. */
static int check_backup_id(srv_req *r, const char *id)
{
    size_t n = strlen(id);
    int ok = n > 0 && n < 64 && strstr(id, "..") == NULL && id[0] != '.';
    for (size_t i = 0; ok && i < n; i++) {
        char c = id[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
             c == ':' || c == '-';
    }
    if (!ok)
        srv_reply_err(r, 400, "invalid_argument", "backup: malformed backup id");
    return ok ? 0 : -1;
}

/* ---- trash ---------------------------------------------------------------------- */
void h_trash_list(srv_req *r)
{
    dv_trash_entry *ents = NULL;
    size_t n = 0;
    dv_err err = {0};
    if (dv_trash_list(srv_db(), &ents, &n, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, srv_trash_json(&ents[i]));
    dv_free(ents);
    srv_reply_ok(r, 200, arr);
}

void h_trash_cleanup(srv_req *r)
{
    size_t n = 0;
    dv_err err = {0};
    dv_code c = dv_trash_purge_expired(srv_db(), &n, &err);
    char d[32];
    snprintf(d, sizeof d, "purged=%zu", n);
    srv_audit(r, "purge", NULL, dv_code_name(c), d);
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    srv_log(SRV_LOG_INFO, "trash_purged", "entries=%zu by=%s", n, r->actor);
    srv_reply_ok(r, 200, json_pack("{s:I}", "purged", (json_int_t)n));
}

/* ---- restore / hard delete -------------------------------------------------------- */
void h_restore(srv_req *r)
{
    static const char *const fields[] = {"source",    "backup_id",   "trash_id", "new_name",
                                         "overwrite", "skip_backup", NULL};
    const char *name = r->params[0];
    if (check_name(r, name) < 0)
        return;
    json_t *b = srv_body_object(r, 1);
    if (!b)
        return;
    const char *source = NULL, *backup_id = NULL, *trash_id = NULL, *new_name = NULL;
    int overwrite = 0, skip_backup = 0;
    dv_restore_opts o;
    memset(&o, 0, sizeof o);
    if (srv_check_fields(r, b, fields, "restore") < 0 || srv_get_str(r, b, "source", &source) < 0 ||
        srv_get_str(r, b, "backup_id", &backup_id) < 0 || srv_get_str(r, b, "trash_id", &trash_id) < 0 ||
        srv_get_str(r, b, "new_name", &new_name) < 0 || srv_get_bool(r, b, "overwrite", &overwrite) < 0 ||
        srv_get_bool(r, b, "skip_backup", &skip_backup) < 0)
        goto out;
    if (!source)
        o.source = backup_id ? DV_RESTORE_BACKUP : DV_RESTORE_TRASH;
    else if (!strcmp(source, "deleted") || !strcmp(source, "trash"))
        o.source = DV_RESTORE_TRASH;
    else if (!strcmp(source, "backup"))
        o.source = DV_RESTORE_BACKUP;
    else {
        srv_reply_err(r, 400, "invalid_argument", "restore: \"source\" must be \"deleted\" or \"backup\"");
        goto out;
    }
    if (o.source == DV_RESTORE_BACKUP) {
        if (!backup_id) {
            srv_reply_err(r, 400, "invalid_body", "restore: \"backup_id\" is required with source \"backup\"");
            goto out;
        }
        if (check_backup_id(r, backup_id) < 0)
            goto out;
        o.backup_id = backup_id;
    } else {
        if (trash_id && check_backup_id(r, trash_id) < 0)
            goto out;
        o.backup_id = trash_id;
    }
    if (new_name && check_name(r, new_name) < 0)
        goto out;
    o.new_name = new_name;
    o.overwrite = overwrite;
    o.skip_backup = skip_backup;
    dv_coll_info ci;
    memset(&ci, 0, sizeof ci);
    dv_err err = {0};
    dv_code c = dv_restore(srv_db(), name, &o, &ci, &err);
    srv_audit(r, "restore", new_name ? new_name : name, dv_code_name(c),
              o.source == DV_RESTORE_BACKUP ? backup_id : "trash");
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        goto out;
    }
    json_t *info = srv_coll_info_json(&ci);
    json_object_set_new(info, "restored_from", json_string(o.source == DV_RESTORE_BACKUP ? "backup" : "deleted"));
    srv_reply_ok(r, 200, info);
out:
    json_decref(b);
}

void h_hard_delete(srv_req *r)
{
    const char *name = r->params[0];
    int skip = 0;
    if (check_name(r, name) < 0 || srv_query_bool(r, "skip_backup", &skip) < 0)
        return;
    dv_backup_info bi;
    memset(&bi, 0, sizeof bi);
    dv_err err = {0};
    dv_code c = dv_coll_hard_delete(srv_db(), name, skip, &bi, &err);
    srv_audit(r, "hard-delete", name, dv_code_name(c), skip ? "skip_backup" : bi.backup_id);
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    srv_reply_ok(r, 200,
                 json_pack("{s:s, s:b, s:o}", "name", name, "hard_deleted", 1, "backup",
                           skip || !bi.backup_id[0] ? json_null() : backup_json(&bi)));
}

/* ---- import path policy ------------------------------------------------------------------ */
/* Lexically normalise an absolute path ("//", ".", ".." removed) into out. */
static int normalize_path(const char *in, char *out, size_t cap)
{
    if (in[0] != '/')
        return -1;
    size_t o = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
        } else {
            if (o + 1 + n + 1 > cap)
                return -1;
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

static int path_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* 1 if path lies under one of the allowed roots (each root resolved). */
static int under_roots(const char *path)
{
    const srv_config *c = &g_srv.cfg;
    char root[PATH_MAX];
    if (c->n_import_roots == 0)
        return realpath(c->data_dir, root) && path_under(path, root);
    for (size_t i = 0; i < c->n_import_roots; i++)
        if (realpath(c->import_roots[i], root) && path_under(path, root))
            return 1;
    return 0;
}

/* The import path policy (see the top of this file). 0, or -1 answered. */
static int check_import_path(srv_req *r, json_t *v, const char **out)
{
    if (!json_is_string(v)) {
        srv_reply_err(r, 400, "invalid_type", "import: \"orphaned_path\" must be a string");
        return -1;
    }
    const char *p = json_string_value(v);
    size_t n = json_string_length(v);
    char norm[PATH_MAX], real[PATH_MAX];
    if (n == 0 || strlen(p) != n || n >= PATH_MAX) {
        srv_reply_err(r, 403, "forbidden", "import: path refused (empty, NUL byte or longer than %d bytes)",
                      PATH_MAX - 1);
        return -1;
    }
    if (p[0] != '/' || normalize_path(p, norm, sizeof norm) < 0 || !under_roots(norm)) {
        srv_reply_err(r, 403, "forbidden", "import: path is not an absolute path under an import root");
        return -1;
    }
    if (!realpath(norm, real)) {
        /* Unresolvable is refused like outside: one answer for every path
         * that is not an existing file or directory under a root. */
        srv_reply_err(r, 403, "forbidden", "import: path cannot be resolved (%s)",
                      errno == ENOENT || errno == ENOTDIR ? "it does not exist" : "not accessible");
        return -1;
    }
    if (!under_roots(real)) {
        srv_reply_err(r, 403, "forbidden", "import: path resolves (through a symlink) outside the import roots");
        return -1;
    }
    *out = p;
    return 0;
}

/* ---- jobs --------------------------------------------------------------------------------- */
#define SRV_JOBS_MAX 64

typedef struct srv_job {
    char id[40];
    int state; /* 0 running, 1 succeeded, 2 failed */
    char phase[32];
    uint64_t done, total;
    int64_t created_ms, finished_ms;
    json_t *result;
    int status;
    char code[40];
    char error[512];
    pthread_t th;
    int joined;
    /* import arguments, owned */
    char *path, *coll, *format;
    dv_import_opts opts;
    char actor[16], remote[64];
} srv_job;

static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;
static srv_job *jobs[SRV_JOBS_MAX];

/* Finished job files are kept this long (a week): long enough to look at
 * an import's outcome after a week-end, short enough not to pile up. */
#define SRV_JOB_FILE_TTL_S (7 * 86400)
#define SRV_JOBS_DIR ".jobs"

/* "job-" and 16 lowercase hex digits: the only names a job file can have
 * (checked before a route parameter becomes part of a path). */
static int job_id_valid(const char *id)
{
    if (strncmp(id, "job-", 4) != 0 || strlen(id) != 20)
        return 0;
    for (const char *p = id + 4; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

/* Remove job files older than SRV_JOB_FILE_TTL_S (and temp files a crash
 * left behind). Best effort: a failure only leaves a file for next time. */
int srv_jobs_init(void)
{
    char dir[PATH_MAX];
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", g_srv.cfg.data_dir, SRV_JOBS_DIR) >= sizeof dir)
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (strstr(e->d_name, ".tmp") || now - st.st_mtime > SRV_JOB_FILE_TTL_S)
            (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    return 0;
}

static void job_free(srv_job *j)
{
    json_decref(j->result);
    free(j->path);
    free(j->coll);
    free(j->format);
    free(j);
}

static int job_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    srv_job *j = ctx;
    pthread_mutex_lock(&jobs_mu);
    snprintf(j->phase, sizeof j->phase, "%s", phase ? phase : "");
    j->done = done;
    j->total = total;
    pthread_mutex_unlock(&jobs_mu);
    return srv_stopping(); /* nonzero cancels the import at shutdown */
}

/* The import's answer; backup_id and replaced_trash_id are null unless an
 * overwrite replaced a live collection. */
static json_t *import_report_json(const char *coll, const dv_import_report *rep)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I}", "collection", coll, "format", rep->format, "imported",
                          (json_int_t)rep->imported, "skipped", (json_int_t)rep->skipped, "bytes_scanned",
                          (json_int_t)rep->bytes_scanned);
    json_object_set_new(o, "backup_id", rep->backup_id[0] ? json_string(rep->backup_id) : json_null());
    json_object_set_new(o, "replaced_trash_id",
                        rep->replaced_trash_id[0] ? json_string(rep->replaced_trash_id) : json_null());
    return o;
}

static void job_persist(srv_job *j);

static void *job_main(void *arg)
{
    srv_job *j = arg;
    dv_import_report rep;
    memset(&rep, 0, sizeof rep);
    dv_err err = {0};
    dv_audit_context_set(j->actor, j->remote, "/collections/import");
    dv_code c = dv_import(g_srv.db, &j->opts, &rep, &err);
    if (!dv_audit_context_wrote("import")) {
        dv_audit_event ev = {"import", j->coll, dv_code_name(c), j->actor, j->remote, "/collections/import", j->path};
        dv_audit_append(g_srv.db, &ev, NULL);
    }
    dv_audit_context_set(NULL, NULL, NULL);
    pthread_mutex_lock(&jobs_mu);
    j->finished_ms = srv_now_ms();
    if (c == DV_OK) {
        j->state = 1;
        j->status = 200;
        j->result = import_report_json(j->coll, &rep);
        snprintf(j->phase, sizeof j->phase, "done");
    } else {
        j->state = 2;
        j->status = srv_status_of(c);
        snprintf(j->code, sizeof j->code, "%s", dv_code_name(c));
        snprintf(j->error, sizeof j->error, "%s", err.msg[0] ? err.msg : dv_strerror(c));
    }
    pthread_mutex_unlock(&jobs_mu);
    job_persist(j);
    char q[600];
    srv_log(SRV_LOG_INFO, "job_finished", "job=%s collection=%s code=%s imported=%llu msg=%s", j->id, j->coll,
            dv_code_name(c), (unsigned long long)rep.imported, srv_log_quote(j->error, q, sizeof q));
    return NULL;
}

/* Take a free slot (evicting the oldest finished job). jobs_mu held. */
static int job_slot(void)
{
    int oldest = -1;
    for (int i = 0; i < SRV_JOBS_MAX; i++) {
        if (!jobs[i])
            return i;
        if (jobs[i]->state != 0 && (oldest < 0 || jobs[i]->finished_ms < jobs[oldest]->finished_ms))
            oldest = i;
    }
    if (oldest >= 0) {
        if (!jobs[oldest]->joined)
            pthread_join(jobs[oldest]->th, NULL);
        job_free(jobs[oldest]);
        jobs[oldest] = NULL;
    }
    return oldest;
}

void srv_jobs_shutdown(void)
{
    /* srv_stopping() is already set: running imports cancel at their next
     * progress call. Join outside the lock (job_main takes it). */
    for (int i = 0; i < SRV_JOBS_MAX; i++) {
        pthread_mutex_lock(&jobs_mu);
        srv_job *j = jobs[i];
        jobs[i] = NULL;
        pthread_mutex_unlock(&jobs_mu);
        if (!j)
            continue;
        if (!j->joined)
            pthread_join(j->th, NULL);
        job_free(j);
    }
}

static json_t *job_json(const srv_job *j)
{
    static const char *const states[] = {"running", "succeeded", "failed"};
    char c[40];
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:s}", "job_id", j->id, "kind", "import", "state",
                          states[j->state], "phase", j->phase, "done", (json_int_t)j->done, "total",
                          (json_int_t)j->total, "progress",
                          j->state == 1 ? 1.0
                          : j->total    ? (double)j->done / (double)j->total
                                        : 0.0,
                          "created_at", srv_iso_time(j->created_ms, c, sizeof c));
    json_object_set_new(o, "collection", json_string(j->coll));
    json_object_set(o, "result", j->result ? j->result : json_null());
    if (j->state == 2) {
        json_object_set_new(o, "error", json_string(j->error));
        json_object_set_new(o, "code", json_string(j->code));
        json_object_set_new(o, "status", json_integer(j->status));
    }
    return o;
}

/* Write the job's state to <data>/.jobs/<id>.json: temp file, fsync,
 * rename, fsync of the directory, so a crash leaves the old state or the
 * new one. Best effort: a failure is logged and the job goes on (its
 * in-memory state still answers until a restart). Called without jobs_mu. */
static void job_persist(srv_job *j)
{
    pthread_mutex_lock(&jobs_mu);
    json_t *o = job_json(j);
    pthread_mutex_unlock(&jobs_mu);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char dir[PATH_MAX], tmp[PATH_MAX + 64], path[PATH_MAX + 64];
    int fd = -1, ok = 0;
    if (!text || (size_t)snprintf(dir, sizeof dir, "%s/%s", g_srv.cfg.data_dir, SRV_JOBS_DIR) >= sizeof dir)
        goto out;
    snprintf(tmp, sizeof tmp, "%s/%s.json.tmp", dir, j->id);
    snprintf(path, sizeof path, "%s/%s.json", dir, j->id);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        goto out;
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out;
        off += (size_t)w;
    }
    /* The file's bytes before its name: a power loss after the rename must
     * not leave an empty job file that hides the job's outcome. */
    if (fsync(fd) != 0)
        goto out;
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0)
        goto out;
    /* The rename itself: without it the job's last state can revert. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ok = fsync(dfd) == 0;
        close(dfd);
    }
out:
    if (fd >= 0) {
        close(fd);
        (void)unlink(tmp);
    }
    if (!ok)
        srv_log(SRV_LOG_WARN, "job_persist_failed", "job=%s errno=%d msg=\"%s\"", j->id, errno, strerror(errno));
    free(text);
}

static void job_file_remove(const char *id)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s/%s.json", g_srv.cfg.data_dir, SRV_JOBS_DIR, id) < sizeof path)
        (void)unlink(path);
}

/* A job of an earlier run of the server, from its file; NULL if none. A
 * job that was running when that server died is reported "interrupted". */
static json_t *job_from_file(const char *id)
{
    char path[PATH_MAX];
    if (!job_id_valid(id) ||
        (size_t)snprintf(path, sizeof path, "%s/%s/%s.json", g_srv.cfg.data_dir, SRV_JOBS_DIR, id) >= sizeof path)
        return NULL;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    const char *st = json_string_value(json_object_get(o, "state"));
    if (st && !strcmp(st, "running")) {
        json_object_set_new(o, "state", json_string("interrupted"));
        json_object_set_new(o, "error",
                            json_string("the server stopped while this import ran (crash or kill); an import whose "
                                        "data was committed was finished at start-up, else nothing was imported: "
                                        "check the collection (GET /collections/<name>) and import again if needed"));
        json_object_set_new(o, "code", json_string("interrupted"));
    }
    json_object_set_new(o, "from_previous_run", json_true());
    return o;
}

void h_job_get(srv_req *r)
{
    pthread_mutex_lock(&jobs_mu);
    json_t *o = NULL;
    for (int i = 0; i < SRV_JOBS_MAX && !o; i++)
        if (jobs[i] && !strcmp(jobs[i]->id, r->params[0]))
            o = job_json(jobs[i]);
    pthread_mutex_unlock(&jobs_mu);
    if (!o)
        o = job_from_file(r->params[0]);
    if (!o)
        srv_reply_err(r, 404, "not_found", "jobs: no job with this id");
    else
        srv_reply_ok(r, 200, o);
}

/* ---- import ------------------------------------------------------------------------------- */
void h_import(srv_req *r)
{
    static const char *const fields[] = {"orphaned_path",   "collection_name", "dimension",
                                         "distance_metric", "vector_type",     "format",
                                         "skip_backup",     "overwrite",       NULL};
    int wait = 1, skip_q = 0, over_q = 0;
    if (srv_query_bool(r, "wait", &wait) < 0 || srv_query_bool(r, "skip_backup", &skip_q) < 0 ||
        srv_query_bool(r, "overwrite", &over_q) < 0)
        return;
    json_t *b = srv_body_object_ex(r, 0, JSON_ALLOW_NUL);
    if (!b)
        return;
    const char *path = NULL, *coll = NULL, *metric = NULL, *vtype = NULL, *format = NULL;
    uint64_t dim = 0;
    int skip = skip_q, over = over_q;
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    dv_err err = {0};
    if (srv_check_fields(r, b, fields, "import") < 0)
        goto out;
    json_t *pv = json_object_get(b, "orphaned_path");
    if (!pv) {
        srv_reply_err(r, 400, "invalid_body", "import: \"orphaned_path\" is required");
        goto out;
    }
    int cr = srv_get_str(r, b, "collection_name", &coll);
    if (cr < 0)
        goto out;
    if (cr == 0) {
        srv_reply_err(r, 400, "invalid_body", "import: \"collection_name\" is required");
        goto out;
    }
    if (check_name(r, coll) < 0 || srv_get_uint(r, b, "dimension", 0, DV_DIM_MAX, &dim) < 0 ||
        srv_get_str(r, b, "distance_metric", &metric) < 0 || srv_get_str(r, b, "vector_type", &vtype) < 0 ||
        srv_get_str(r, b, "format", &format) < 0 || srv_get_bool(r, b, "skip_backup", &skip) < 0 ||
        srv_get_bool(r, b, "overwrite", &over) < 0)
        goto out;
    if (metric) {
        if (dv_metric_parse(metric, &o.metric, &err) != DV_OK) {
            srv_reply_dv(r, &err);
            goto out;
        }
        o.has_metric = 1;
    }
    o.vtype = DV_VTYPE_F32;
    if (vtype && dv_vtype_parse(vtype, &o.vtype, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        goto out;
    }
    if (check_import_path(r, pv, &path) < 0) {
        srv_audit(r, "import", coll, "forbidden", "path refused");
        goto out;
    }
    o.path = path;
    o.collection_name = coll;
    o.dim = (uint32_t)dim;
    o.format = format;
    o.skip_backup = skip;
    o.overwrite = over;
    if (wait) {
        dv_import_report rep;
        memset(&rep, 0, sizeof rep);
        dv_code c = dv_import(srv_db(), &o, &rep, &err);
        srv_audit(r, "import", coll, dv_code_name(c), path);
        if (c != DV_OK)
            srv_reply_dv(r, &err);
        else
            srv_reply_ok(r, 200, import_report_json(coll, &rep));
        goto out;
    }
    srv_job *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path)) || !(j->coll = strdup(coll)) || (format && !(j->format = strdup(format)))) {
        if (j)
            job_free(j);
        srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
        goto out;
    }
    snprintf(j->id, sizeof j->id, "job-%016llx", (unsigned long long)srv_now_ms() * 1000003ull ^ (uintptr_t)j);
    snprintf(j->phase, sizeof j->phase, "queued");
    snprintf(j->actor, sizeof j->actor, "%s", r->actor);
    snprintf(j->remote, sizeof j->remote, "%s", r->remote);
    j->created_ms = srv_now_ms();
    j->opts = o;
    j->opts.path = j->path;
    j->opts.collection_name = j->coll;
    j->opts.format = j->format;
    j->opts.progress = job_progress;
    j->opts.progress_ctx = j;
    /* Its "running" file before its thread: the thread's final write must
     * be the last one. */
    job_persist(j);
    pthread_mutex_lock(&jobs_mu);
    int slot = job_slot();
    if (slot < 0 || srv_stopping() || pthread_create(&j->th, NULL, job_main, j) != 0) {
        pthread_mutex_unlock(&jobs_mu);
        job_file_remove(j->id);
        job_free(j);
        srv_reply_err(r, 503, "busy", "jobs: too many running jobs or shutting down");
        goto out;
    }
    jobs[slot] = j;
    json_t *resp = json_pack("{s:s, s:s, s:s}", "job_id", j->id, "status_url", "", "state", "running");
    char url[80];
    snprintf(url, sizeof url, "/jobs/%s", j->id);
    json_object_set_new(resp, "status_url", json_string(url));
    pthread_mutex_unlock(&jobs_mu);
    srv_reply_ok(r, 202, resp);
out:
    json_decref(b);
}

/* ---- backups -------------------------------------------------------------------------------- */
void h_backup_create(srv_req *r)
{
    const char *name = r->params[0];
    if (check_name(r, name) < 0)
        return;
    dv_backup_info bi;
    memset(&bi, 0, sizeof bi);
    dv_err err = {0};
    dv_code c = dv_backup_create(srv_db(), name, "manual", &bi, &err);
    srv_audit(r, "backup", name, dv_code_name(c), c == DV_OK ? bi.backup_id : NULL);
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    srv_reply_ok(r, 200, backup_json(&bi));
}

static void backup_list(srv_req *r, const char *name)
{
    dv_backup_info *bs = NULL;
    size_t n = 0;
    dv_err err = {0};
    if (dv_backup_list(srv_db(), name, &bs, &n, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, backup_json(&bs[i]));
    dv_free(bs);
    srv_reply_ok(r, 200, arr);
}

void h_backup_list_coll(srv_req *r)
{
    if (check_name(r, r->params[0]) < 0)
        return;
    backup_list(r, r->params[0]);
}

void h_backup_list_all(srv_req *r)
{
    backup_list(r, NULL);
}

void h_backup_delete(srv_req *r)
{
    const char *name = r->params[0], *id = r->params[1];
    if (check_name(r, name) < 0 || check_backup_id(r, id) < 0)
        return;
    dv_err err = {0};
    dv_code c = dv_backup_delete(srv_db(), name, id, &err);
    srv_audit(r, "backup-delete", name, dv_code_name(c), id);
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    srv_reply_ok(r, 200, json_pack("{s:s, s:s, s:b}", "name", name, "backup_id", id, "deleted", 1));
}

void h_backup_verify(srv_req *r)
{
    const char *name = r->params[0], *id = r->params[1];
    if (check_name(r, name) < 0 || check_backup_id(r, id) < 0)
        return;
    dv_backup_info bi;
    memset(&bi, 0, sizeof bi);
    dv_err err = {0};
    dv_code c = dv_backup_verify(srv_db(), name, id, &bi, &err);
    srv_audit(r, "backup-verify", name, dv_code_name(c), id);
    if (c != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    json_t *o = backup_json(&bi);
    json_object_set_new(o, "valid", json_true());
    srv_reply_ok(r, 200, o);
}

/* ---- audit --------------------------------------------------------------------------------- */
void h_audit(srv_req *r)
{
    uint64_t limit = 100;
    if (srv_query_uint(r, "limit", 1, 10000, &limit) < 0)
        return;
    char **lines = NULL;
    size_t n = 0;
    dv_err err = {0};
    if (dv_audit_read(srv_db(), (size_t)limit, &lines, &n, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_loads(lines[i], JSON_REJECT_DUPLICATES, NULL);
        json_array_append_new(arr, o ? o : json_string(lines[i]));
    }
    dv_audit_free(lines, n);
    srv_reply_ok(r, 200, arr);
}
