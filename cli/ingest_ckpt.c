/*
 * ingest_ckpt.c - the ingest checkpoint file and input identity.
 *
 * The checkpoint (default <input>.dvecdb-ckpt) is one JSON document:
 *   {"format": "dvecdb-ingest-checkpoint", "version": 1,
 *    "input": {"path", "size", "head_xxh3_128", "head_bytes"},
 *    "collection": NAME,
 *    "position": {"record", "offset", "line"},   every record below `record`
 *                                                 is acknowledged or failed
 *    "acked": [[start, end], ...],               acknowledged ranges above it
 *    "totals": {"sent", "failed", "retried"}, "complete": bool,
 *    "updated_at_ms": ...}
 * Invariant: the file on disk is always a complete document, old or new,
 * never a torn mix (temp file, fsync, rename, fsync directory).
 *
 * Derived ids: a record without an id of its own gets a UUIDv8 (RFC 9562
 * custom version) made of the XXH3-128 hash of "dvecdb-ingest-v1", the input
 * size, the head hash and the record number: re-sending the same record
 * always upserts the same id, whatever the path or the run.
 * XXX: the identity covers the size and the first MiB only: a file edited in
 * place beyond its first MiB without changing size keeps its ids (and its
 * checkpoint), and a file that grows gets all-new derived ids. Records that
 * must keep their ids across edits should carry their own.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

dv_code ckpt_ident_of(const char *path, ckpt_ident *out, dv_err *err)
{
    ckpt_ident id;
    memset(&id, 0, sizeof id);
    char *rp = realpath(path, NULL);
    if (!rp)
        return dv_errorf(err, DV_EIO, "ingest: realpath %s: %s", path, strerror(errno));
    snprintf(id.path, sizeof id.path, "%s", rp);
    free(rp);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dv_errorf(err, DV_EIO, "ingest: open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return dv_errorf(err, DV_EIO, "ingest: stat %s: %s", path, strerror(errno));
    }
    id.size = (uint64_t)st.st_size;
    char *buf = malloc(CKPT_HEAD_BYTES);
    if (!buf) {
        close(fd);
        return dv_errorf(err, DV_ENOMEM, "ingest: out of memory");
    }
    size_t got = 0;
    while (got < CKPT_HEAD_BYTES) {
        ssize_t k = read(fd, buf + got, CKPT_HEAD_BYTES - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            free(buf);
            close(fd);
            return dv_errorf(err, DV_EIO, "ingest: read %s: %s", path, strerror(errno));
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    XXH128_hash_t h = XXH3_128bits(buf, got);
    free(buf);
    snprintf(id.head, sizeof id.head, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
    *out = id;
    return DV_OK;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void ckpt_derive_id(const ckpt_ident *id, uint64_t recno, char out[37])
{
    unsigned char m[16 + 8 + 32 + 8];
    memcpy(m, "dvecdb-ingest-v1", 16);
    put_le64(m + 16, id->size);
    memcpy(m + 24, id->head, 32);
    put_le64(m + 56, recno);
    XXH128_hash_t h = XXH3_128bits(m, sizeof m);
    unsigned char b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(h.high64 >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(h.low64 >> (56 - 8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x80); /* version 8: custom */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10xx: RFC 9562 */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

static dv_code write_all(int fd, const char *p, size_t n, const char *path, dv_err *err)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return dv_errorf(err, DV_EIO, "ingest: checkpoint: write %s: %s", path, strerror(errno));
        p += k;
        n -= (size_t)k;
    }
    return DV_OK;
}

dv_code ckpt_render(const ckpt_state *st, char **out, dv_err *err)
{
    json_t *acked = json_array();
    for (size_t i = 0; i < st->n_acked; i++)
        json_array_append_new(acked, json_pack("[I,I]", (json_int_t)st->acked[i].start, (json_int_t)st->acked[i].end));
    json_t *doc =
        json_pack("{s:s, s:i, s:{s:s, s:I, s:s, s:I}, s:s, s:{s:I, s:I, s:I}, s:o, s:{s:I, s:I, s:I}, "
                  "s:b, s:I}",
                  "format", "dvecdb-ingest-checkpoint", "version", 1, "input", "path", st->ident.path, "size",
                  (json_int_t)st->ident.size, "head_xxh3_128", st->ident.head, "head_bytes",
                  (json_int_t)CKPT_HEAD_BYTES, "collection", st->collection, "position", "record",
                  (json_int_t)st->record, "offset", (json_int_t)st->offset, "line", (json_int_t)st->line, "acked",
                  acked, "totals", "sent", (json_int_t)st->sent, "failed", (json_int_t)st->failed, "retried",
                  (json_int_t)st->retried, "complete", st->complete, "updated_at_ms", (json_int_t)dv_now_ms());
    if (!doc)
        return dv_errorf(err, DV_ENOMEM, "ingest: checkpoint: cannot build the document");
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!text)
        return dv_errorf(err, DV_ENOMEM, "ingest: checkpoint: out of memory");
    *out = text;
    return DV_OK;
}

dv_code ckpt_write(const char *path, const char *text, dv_err *err)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    dv_code rc = DV_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = dv_errorf(err, DV_EIO, "ingest: checkpoint: create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((rc = write_all(fd, text, strlen(text), tmp, err)) || (rc = write_all(fd, "\n", 1, tmp, err)))
        goto fail_fd;
    /* Without this fsync a crash after the rename could leave the new name
     * pointing at a file whose data never reached the disk (empty/torn). */
    if (fsync(fd)) {
        rc = dv_errorf(err, DV_EIO, "ingest: checkpoint: fsync %s: %s", tmp, strerror(errno));
        goto fail_fd;
    }
    close(fd);
    fd = -1;
    /* rename() atomically replaces the old checkpoint: a reader (or a crash)
     * sees the old document or the new one, never a mix. */
    if (rename(tmp, path)) {
        rc = dv_errorf(err, DV_EIO, "ingest: checkpoint: rename %s: %s", path, strerror(errno));
        goto fail;
    }
    /* fsync of the directory makes the rename itself durable: without it a
     * power loss could bring back the previous checkpoint, and the batches
     * acknowledged since would be sent again (harmless upserts, but wasted). */
    char dirbuf[PATH_MAX];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return DV_OK;
fail_fd:
    close(fd);
fail:
    unlink(tmp);
    return rc;
}

dv_code ckpt_save(const char *path, const ckpt_state *st, dv_err *err)
{
    char *text = NULL;
    dv_code rc = ckpt_render(st, &text, err);
    if (rc == DV_OK)
        rc = ckpt_write(path, text, err);
    free(text);
    return rc;
}

static int get_u64(json_t *o, const char *k, uint64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

dv_code ckpt_load(const char *path, ckpt_state *st, dv_err *err)
{
    json_error_t je;
    memset(st, 0, sizeof *st);
    if (access(path, F_OK))
        return dv_errorf(err, DV_ENOTFOUND, "ingest: no checkpoint at %s", path);
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc)
        return dv_errorf(err, DV_ECORRUPT, "ingest: checkpoint %s: line %d: %s", path, je.line, je.text);
    dv_code rc = DV_OK;
    json_t *in = json_object_get(doc, "input");
    json_t *pos = json_object_get(doc, "position");
    json_t *tot = json_object_get(doc, "totals");
    const char *fmt = json_string_value(json_object_get(doc, "format"));
    const char *p = json_string_value(json_object_get(in, "path"));
    const char *h = json_string_value(json_object_get(in, "head_xxh3_128"));
    const char *c = json_string_value(json_object_get(doc, "collection"));
    json_t *acked = json_object_get(doc, "acked");
    if (!fmt || strcmp(fmt, "dvecdb-ingest-checkpoint") || !p || !h || strlen(h) != 32 || !c ||
        get_u64(in, "size", &st->ident.size) || get_u64(pos, "record", &st->record) ||
        get_u64(pos, "offset", &st->offset) || get_u64(pos, "line", &st->line) || !json_is_array(acked)) {
        rc = dv_errorf(err, DV_ECORRUPT, "ingest: %s is not a d-vecDB ingest checkpoint", path);
        goto done;
    }
    snprintf(st->ident.path, sizeof st->ident.path, "%s", p);
    snprintf(st->ident.head, sizeof st->ident.head, "%s", h);
    snprintf(st->collection, sizeof st->collection, "%s", c);
    get_u64(tot, "sent", &st->sent);
    get_u64(tot, "failed", &st->failed);
    get_u64(tot, "retried", &st->retried);
    st->complete = json_is_true(json_object_get(doc, "complete"));
    st->n_acked = json_array_size(acked);
    st->acked = st->n_acked ? calloc(st->n_acked, sizeof *st->acked) : NULL;
    if (st->n_acked && !st->acked) {
        rc = dv_errorf(err, DV_ENOMEM, "ingest: out of memory");
        goto done;
    }
    for (size_t i = 0; i < st->n_acked; i++) {
        json_t *r = json_array_get(acked, i);
        json_t *a = json_array_get(r, 0), *b = json_array_get(r, 1);
        if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 ||
            json_integer_value(b) < json_integer_value(a)) {
            rc = dv_errorf(err, DV_ECORRUPT, "ingest: checkpoint %s: bad acked range %zu", path, i);
            goto done;
        }
        st->acked[i].start = (uint64_t)json_integer_value(a);
        st->acked[i].end = (uint64_t)json_integer_value(b);
    }
done:
    json_decref(doc);
    if (rc)
        ckpt_state_free(st);
    return rc;
}

void ckpt_state_free(ckpt_state *st)
{
    free(st->acked);
    st->acked = NULL;
    st->n_acked = 0;
}

dv_code ckpt_check(const ckpt_state *st, const ckpt_ident *now, const char *collection, dv_err *err)
{
    if (st->ident.size != now->size || strcmp(st->ident.head, now->head))
        return dv_errorf(err, DV_EINVAL,
                         "ingest: the checkpoint belongs to a different input (%s, %llu bytes, "
                         "head %s); this file is %llu bytes, head %s",
                         st->ident.path, (unsigned long long)st->ident.size, st->ident.head,
                         (unsigned long long)now->size, now->head);
    if (strcmp(st->collection, collection))
        return dv_errorf(err, DV_EINVAL, "ingest: the checkpoint is for collection '%s', not '%s'", st->collection,
                         collection);
    if (st->record > 0 && st->offset > now->size)
        return dv_errorf(err, DV_EINVAL, "ingest: checkpoint offset past the end of the input");
    return DV_OK;
}
