/*
 * audit.c - the audit log: <data>/audit.log, one JSON object per line.
 *
 * Owns audit_log() (the engine's own recovery events, which name the caller
 * a shell set with dv_audit_context_set), dv_audit_append() (shells add the
 * events the engine does not see: creates, auth failures, refusals before
 * the engine is called) and dv_audit_read(). One operation, one line: the
 * server writes its own line only if the engine wrote none for that action.
 *
 * Line format (keys always present, in this order; absent strings are null):
 *   {"time":"2026-11-25T20:06:03.123Z","action":"delete","collection":"docs",
 *    "outcome":"ok","actor":null,"remote":null,"route":null,"detail":"..."}
 * time is UTC with milliseconds; outcome is "ok" or a dv_code_name().
 *
 * Invariants:
 *   - a line is written with one write() on an O_APPEND descriptor and
 *     fsynced before dv_audit_append returns, so an acknowledged event
 *     survives a crash; lines of concurrent appenders never interleave
 *     (one process-wide mutex, and O_APPEND for other processes);
 *   - every string is escaped by jansson; bytes that are not valid UTF-8 are
 *     replaced by U+FFFD first (jansson refuses invalid UTF-8), and each
 *     field is cut to AUDIT_FIELD_MAX bytes on a character boundary, so a
 *     hostile route or remote string can neither break the line structure
 *     nor grow it without bound;
 *   - a line torn by a crash mid-write (no trailing newline) is closed with a
 *     newline by the next append, so it never swallows the next event;
 *     dv_audit_read skips a torn last line.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "err.h"
#include "io.h"
#include "utf8.h"

#define AUDIT_FILE "audit.log"
/* Bound per field: keeps one line well under a pipe/page and a reader's buffer. */
#define AUDIT_FIELD_MAX 2048
/* dv_audit_read reads the file backwards in chunks of this size. */
#define AUDIT_READ_CHUNK (64 * 1024)

static pthread_mutex_t audit_mu = PTHREAD_MUTEX_INITIALIZER;

/* The calling thread's audit context (dv_audit_context_set): who the
 * engine's own lines name, and which actions it wrote since it was set (a
 * few per operation at most: e.g. backup + delete + restore). */
#define AUDIT_CTX_ACTIONS 8
static __thread struct {
    const char *actor, *remote, *route;
    unsigned n_wrote;
    char wrote[AUDIT_CTX_ACTIONS][24];
} audit_ctx;

/* A JSON string for s (NULL -> JSON null): invalid UTF-8 replaced by U+FFFD,
 * cut to AUDIT_FIELD_MAX bytes on a character boundary. NULL on ENOMEM. */
static json_t *audit_string(const char *s)
{
    if (!s)
        return json_null();
    size_t n = strlen(s);
    char *clean = malloc(AUDIT_FIELD_MAX + 4);
    if (!clean)
        return NULL;
    size_t out = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_char_len(u + i, n - i);
        const char *src = l ? s + i : "\xEF\xBF\xBD";
        size_t sl = l ? l : 3;
        if (out + sl > AUDIT_FIELD_MAX)
            break;
        memcpy(clean + out, src, sl);
        out += sl;
        i += l ? l : 1;
    }
    json_t *j = json_stringn(clean, out);
    free(clean);
    return j;
}

/* "2026-11-25T20:06:03.123Z" for a Unix time in milliseconds. */
static void format_time(int64_t ms, char buf[32])
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    /* The modulos bound each field's width for the compiler; they never
     * change a value of a real date. */
    snprintf(buf, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
             (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000) % 1000u);
}

/* Render ev as one line of JSON text ending in '\n' (malloc'd). */
static dv_code audit_render(const dv_audit_event *ev, char **line_out, size_t *len_out, dv_err *err)
{
    char ts[32];
    format_time(dv_now_ms(), ts);
    json_t *o = json_object();
    if (!o)
        return dv_errorf(err, DV_ENOMEM, "audit: out of memory");
    const char *keys[] = {"action", "collection", "outcome", "actor", "remote", "route", "detail"};
    const char *vals[] = {ev->action, ev->collection, ev->outcome ? ev->outcome : "ok", ev->actor, ev->remote,
                          ev->route,  ev->detail};
    int bad = json_object_set_new(o, "time", json_string(ts)) != 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !bad; i++) {
        json_t *v = audit_string(vals[i]);
        bad = !v || json_object_set_new(o, keys[i], v) != 0;
    }
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text)
        return dv_errorf(err, DV_ENOMEM, "audit: out of memory rendering an event");
    size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (!line) {
        free(text);
        return dv_errorf(err, DV_ENOMEM, "audit: out of memory");
    }
    memcpy(line, text, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    free(text);
    *line_out = line;
    *len_out = n + 1;
    return DV_OK;
}

/* Append one rendered line to dir/audit.log: O_APPEND, one write, fsync.
 * Caller holds audit_mu. */
static dv_code audit_write_line(const char *dir, const char *line, size_t len, dv_err *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, AUDIT_FILE) >= sizeof path)
        return dv_errorf(err, DV_EINVAL, "audit: data dir path too long");
    int created = 0;
    int fd = io_open(path, O_RDWR | O_APPEND | O_CLOEXEC, 0); /* read: the last byte */
    if (fd < 0 && errno == ENOENT) {
        fd = io_open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        created = 1;
    }
    if (fd < 0)
        return dv_errorf(err, dv_code_from_errno(errno), "audit: open %s: %s", path, strerror(errno));
    dv_code rc = DV_OK;
    uint64_t size = 0;
    if (io_fstat_size(fd, &size) != 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "audit: stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (size > 0) {
        /* A crash mid-write can leave a last line without its newline: close
         * it so this event starts a line of its own and stays parseable. */
        char last = '\n';
        if (io_pread_full(fd, &last, 1, size - 1) == 1 && last != '\n' && io_write_full(fd, "\n", 1) != 0) {
            rc = dv_errorf(err, dv_code_from_errno(errno), "audit: write %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    if (io_write_full(fd, line, len) != 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "audit: write %s: %s", path, strerror(errno));
        goto fail;
    }
    /* The event is acknowledged only once on disk: without this fsync a power
     * loss could drop the record of a delete that did happen. */
    if (io_fsync(fd) != 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "audit: fsync %s: %s", path, strerror(errno));
        goto fail;
    }
    io_close(fd);
    fd = -1;
    /* A new file's directory entry must be durable too, or a crash could lose
     * the whole log file while its fsynced content sits in an orphan inode. */
    if (created && io_fsync_dir(dir) != 0)
        return dv_errorf(err, dv_code_from_errno(errno), "audit: fsync dir %s: %s", dir, strerror(errno));
    return DV_OK;
fail:
    if (fd >= 0)
        io_close(fd);
    return rc;
}

dv_code dv_audit_append(dv_db *db, const dv_audit_event *ev, dv_err *err)
{
    if (!db || !ev || !ev->action || !ev->action[0])
        return dv_errorf(err, DV_EINVAL, "audit: an event needs an action");
    if (db_opts(db)->read_only)
        return dv_errorf(err, DV_EREADONLY, "audit: database is open read-only");
    char *line = NULL;
    size_t len = 0;
    dv_code rc = audit_render(ev, &line, &len, err);
    if (rc != DV_OK)
        return rc;
    pthread_mutex_lock(&audit_mu);
    rc = audit_write_line(db_dir(db), line, len, err);
    pthread_mutex_unlock(&audit_mu);
    free(line);
    return rc;
}

void dv_audit_context_set(const char *actor, const char *remote, const char *route)
{
    audit_ctx.actor = actor;
    audit_ctx.remote = remote;
    audit_ctx.route = route;
    audit_ctx.n_wrote = 0;
}

int dv_audit_context_wrote(const char *action)
{
    if (!action)
        return 0;
    for (unsigned i = 0; i < audit_ctx.n_wrote && i < AUDIT_CTX_ACTIONS; i++)
        if (!strncmp(audit_ctx.wrote[i], action, sizeof audit_ctx.wrote[i]))
            return 1;
    return 0;
}

/* The engine's own events, naming the thread's caller when a shell set one
 * (else actor "engine": start-up recovery, the sweeper). A failure to audit
 * does not undo or fail the operation that already happened (its commit
 * point is behind us); the error is dropped here on purpose. */
void audit_log(dv_db *db, const char *action, const char *collection, dv_code outcome, const char *detail)
{
    if (!db || db_opts(db)->read_only)
        return;
    dv_audit_event ev = {
        .action = action,
        .collection = collection,
        .outcome = dv_code_name(outcome),
        .actor = audit_ctx.actor ? audit_ctx.actor : "engine",
        .remote = audit_ctx.remote,
        .route = audit_ctx.route,
        .detail = detail,
    };
    (void)dv_audit_append(db, &ev, NULL);
    if (audit_ctx.n_wrote < AUDIT_CTX_ACTIONS)
        snprintf(audit_ctx.wrote[audit_ctx.n_wrote++], sizeof audit_ctx.wrote[0], "%s", action);
}

/* Collect the last `limit` newline-terminated lines of buf[0..n) into
 * lines[] (oldest first). When buf does not start at file offset 0 its first
 * line may be partial and is never taken. */
static dv_code split_tail(const char *buf, size_t n, int at_file_start, size_t limit, char ***lines_out, size_t *n_out,
                          dv_err *err)
{
    /* Ignore an unterminated last line (torn by a crash). */
    size_t end = n;
    while (end > 0 && buf[end - 1] != '\n')
        end--;
    size_t starts_cap = limit, n_lines = 0;
    size_t *starts = malloc((starts_cap ? starts_cap : 1) * sizeof *starts);
    size_t *lens = malloc((starts_cap ? starts_cap : 1) * sizeof *lens);
    char **lines = NULL;
    if (!starts || !lens)
        goto nomem;
    /* Walk backwards line by line. */
    size_t pos = end;
    while (pos > 0 && n_lines < limit) {
        size_t line_end = pos - 1; /* index of this line's '\n' */
        size_t s = line_end;
        while (s > 0 && buf[s - 1] != '\n')
            s--;
        if (s == 0 && !at_file_start)
            break; /* partial first line of a chunk */
        if (line_end > s) {
            starts[n_lines] = s;
            lens[n_lines] = line_end - s;
            n_lines++;
        }
        pos = s;
    }
    lines = calloc(n_lines ? n_lines : 1, sizeof *lines);
    if (!lines)
        goto nomem;
    for (size_t i = 0; i < n_lines; i++) {
        size_t src = n_lines - 1 - i;
        lines[i] = strndup(buf + starts[src], lens[src]);
        if (!lines[i]) {
            dv_audit_free(lines, i);
            lines = NULL;
            goto nomem;
        }
    }
    free(starts);
    free(lens);
    *lines_out = lines;
    *n_out = n_lines;
    return DV_OK;
nomem:
    free(starts);
    free(lens);
    free(lines);
    return dv_errorf(err, DV_ENOMEM, "audit: out of memory reading the log");
}

/* Reads backwards from the end in growing chunks until `limit` whole lines
 * are in memory or the file start is reached: cost follows limit, not the
 * size of a long-lived log. */
dv_code dv_audit_read(dv_db *db, size_t limit, char ***lines_out, size_t *n_out, dv_err *err)
{
    if (!db || !lines_out || !n_out)
        return dv_errorf(err, DV_EINVAL, "audit: read: missing argument");
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", db_dir(db), AUDIT_FILE) >= sizeof path)
        return dv_errorf(err, DV_EINVAL, "audit: data dir path too long");
    if (limit == 0) {
        char **none = calloc(1, sizeof *none);
        if (!none)
            return dv_errorf(err, DV_ENOMEM, "audit: out of memory");
        *lines_out = none;
        *n_out = 0;
        return DV_OK;
    }
    int fd = io_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0 && errno == ENOENT) {
        char **none = calloc(1, sizeof *none);
        if (!none)
            return dv_errorf(err, DV_ENOMEM, "audit: out of memory");
        *lines_out = none;
        *n_out = 0;
        return DV_OK;
    }
    if (fd < 0)
        return dv_errorf(err, dv_code_from_errno(errno), "audit: open %s: %s", path, strerror(errno));
    dv_code rc = DV_OK;
    char *buf = NULL;
    uint64_t size = 0;
    if (io_fstat_size(fd, &size) != 0) {
        rc = dv_errorf(err, dv_code_from_errno(errno), "audit: stat %s: %s", path, strerror(errno));
        goto fail;
    }
    size_t have = 0;
    uint64_t off = size;
    for (;;) {
        uint64_t want = have < AUDIT_READ_CHUNK ? AUDIT_READ_CHUNK : have; /* double each round */
        if (want > off)
            want = off;
        char *nb = malloc(have + want + 1);
        if (!nb) {
            rc = dv_errorf(err, DV_ENOMEM, "audit: out of memory reading %s", path);
            goto fail;
        }
        ssize_t r = io_pread_full(fd, nb, want, off - want);
        if (r < 0 || (uint64_t)r != want) {
            free(nb);
            rc = dv_errorf(err, DV_EIO, "audit: read %s at %llu: %s", path, (unsigned long long)(off - want),
                           r < 0 ? strerror(errno) : "short read");
            goto fail;
        }
        if (have)
            memcpy(nb + want, buf, have);
        free(buf);
        buf = nb;
        have += want;
        off -= want;
        size_t nl = 0;
        for (size_t i = 0; i < have; i++)
            nl += buf[i] == '\n';
        /* limit + 1 newlines guarantee `limit` whole lines after the first. */
        if (off == 0 || nl > limit)
            break;
    }
    io_close(fd);
    fd = -1;
    rc = split_tail(buf ? buf : "", have, off == 0, limit, lines_out, n_out, err);
fail:
    if (fd >= 0)
        io_close(fd);
    free(buf);
    return rc;
}

void dv_audit_free(char **lines, size_t n)
{
    if (!lines)
        return;
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}
