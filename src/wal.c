/*
 * wal.c - the write-ahead log of one collection: a directory of segments.
 *
 * Owns: segment files wal/<first seq, 20 digits>.log, record encoding and
 * validation, replay with torn-tail repair, group commit, the INTERVAL
 * background syncer, rotation, truncation after checkpoints, backup copies,
 * fsync latency statistics.
 *
 * On-disk format (version 1; also docs/format-wal.md). Integers little-endian.
 *
 *   Segment header, 32 bytes:
 *     off  size  field
 *       0     5  magic "DVWAL"
 *       5     3  zero
 *       8     4  u32 format version (1)
 *      12     4  u32 header size (32)
 *      16     8  u64 first_seq: the seq of the segment's first record; equals
 *                the number in the file name
 *      24     8  u64 XXH3_64bits of bytes 0..23
 *
 *   Record, 21-byte header + payload, records back to back after the header:
 *     off  size  field
 *       0     4  u32 len: payload length, <= WAL_RECORD_MAX (256 MiB)
 *       4     8  u64 checksum: XXH3_64bits (seed 0) over the byte string
 *                seq(8 LE) | type(1) | len(4 LE) | payload
 *      12     8  u64 seq
 *      20     1  u8 type (opaque to the wal; the collection's record kinds)
 *      21   len  payload
 *
 * A valid record at offset `off` of a segment: the 21 header bytes and `len`
 * payload bytes lie inside the file, len <= WAL_RECORD_MAX, the checksum
 * matches, and seq is exactly the expected one (first_seq for the first
 * record, previous + 1 after). A valid segment: a valid header whose
 * first_seq equals its name, then valid records up to exactly its end.
 * Across segments seqs increase; a segment may start past the previous one's
 * last seq + 1 only when the skipped seqs are all <= after_seq (they were
 * covered by a checkpoint when the jump was made: see open_append).
 *
 * Replay decides torn vs corrupt like this: the first invalid record of the
 * LAST segment is a torn tail (cut off, offset reported) unless a valid
 * record with seq >= the expected one can be found at any later byte offset
 * of that segment; then it is corruption (an acknowledged record is beyond
 * the bad bytes). An invalid record anywhere in an earlier segment, or bytes
 * after its last record, is corruption. Corruption is DV_ECORRUPT naming the
 * file and offset; the wal never truncates anything in that case.
 * XXX: a kernel may write back unsynced pages out of order; if a crash
 * persists a later unsynced record but not an earlier one, that looks like
 * corruption (a hole followed by valid data) although nothing acknowledged
 * is affected. We refuse to guess: the collection is reported damaged rather
 * than risk cutting acknowledged records after a real bit flip. io.c's crash
 * model keeps only prefixes, so the crash tests do not produce this case.
 * XXX: a bit flip in the length field of the very last record looks torn and
 * that record is cut; if it had been acknowledged it is lost. (With policy
 * ALWAYS and one writer at a time, at most one record is ever unsynced, so
 * the first XXX cannot arise there; INTERVAL/NEVER and concurrent writers
 * can leave several.)
 *
 * Invariants (w->mu guards everything mutable):
 *  - Records are written in seq order at w->off under mu; written_seq is the
 *    last fully written seq, synced_seq the last one covered by a completed
 *    fsync (synced_seq <= written_seq).
 *  - At most one fsync runs at a time (w->syncing); it runs without mu so
 *    that the next group can be written meanwhile. The active fd is only
 *    replaced (rotate, close) when no fsync runs.
 *  - After any failed write or fsync, poisoned = 1 forever for this handle:
 *    the page cache may now hold data the disk does not, so nothing more is
 *    written or acknowledged; reopening re-reads the disk.
 *  - Segments other than the active one are immutable; a segment is removed
 *    only by wal_truncate_upto, never while a wal_copy_to reads (n_copying).
 */
/* XXH_INLINE_ALL: the header-only build of the same libxxhash functions;
 * it lets the compiler inline and vectorize the hash (about 2x faster than
 * calling the shared library's generic build for 1.5 MB batch records). */
#define XXH_INLINE_ALL
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "err.h"
#include "io.h"

#define WAL_MAGIC "DVWAL"
#define WAL_VERSION 1u
#define WAL_SEG_HDR 32u
#define WAL_REC_HDR 21u
#define WAL_SEGMENT_DEFAULT (64ull << 20) /* rotate once a segment passes 64 MiB */

struct wal {
    char *dir;
    dv_fsync_policy policy;
    uint32_t interval_ms;
    int read_only;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* sync completed / syncing cleared / stop */
    int fd;            /* active (last) segment, -1 if read_only */
    uint64_t off;      /* end of the active segment */
    uint64_t *segs;    /* first seq of each live segment, ascending */
    uint64_t *seg_sizes;
    size_t n_segs, segs_cap;
    uint64_t next_seq;
    uint64_t written_seq, synced_seq;
    int syncing, poisoned, stop;
    dv_code sync_fail; /* code of the failed fsync (DV_ENOSPC / DV_EFATAL) for its waiters */
    int n_copying;     /* wal_copy_to calls running: truncation waits */
    uint64_t seg_max;

    pthread_t syncer;
    int has_syncer;

    wal_stats st;
};

/* ---- little-endian helpers ------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Record checksum: XXH3_64bits over seq | type | len | payload. `hdr` is the
 * 21-byte record header (len at 0, seq at 12, type at 20). */
static uint64_t rec_checksum(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
    XXH3_state_t s;
    XXH3_INITSTATE(&s);
    XXH3_64bits_reset(&s);
    XXH3_64bits_update(&s, hdr + 12, 9);
    XXH3_64bits_update(&s, hdr, 4);
    if (len)
        XXH3_64bits_update(&s, payload, len);
    return XXH3_64bits_digest(&s);
}

static void seg_header_encode(uint8_t h[WAL_SEG_HDR], uint64_t first_seq)
{
    memset(h, 0, WAL_SEG_HDR);
    memcpy(h, WAL_MAGIC, 5);
    put_u32(h + 8, WAL_VERSION);
    put_u32(h + 12, WAL_SEG_HDR);
    put_u64(h + 16, first_seq);
    put_u64(h + 24, XXH3_64bits(h, 24));
}

static char *seg_path(const char *dir, uint64_t first_seq)
{
    char *p;
    if (asprintf(&p, "%s/%020" PRIu64 ".log", dir, first_seq) < 0)
        return NULL;
    return p;
}

/* 1 if name is a segment name (20 digits + ".log"), with its number. */
static int seg_name_parse(const char *name, uint64_t *first_seq)
{
    if (strlen(name) != 24 || strcmp(name + 20, ".log") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *first_seq = v;
    return 1;
}

/* Is there a valid record at `off` of buf with exactly seq `want` (or, when
 * any_from is set, any seq >= want)? Returns its total size, 0 if not. */
static uint64_t rec_valid_at(const uint8_t *buf, uint64_t size, uint64_t off, uint64_t want, int any_from,
                             uint64_t *seq_out)
{
    if (off > size || size - off < WAL_REC_HDR)
        return 0;
    const uint8_t *h = buf + off;
    uint32_t len = get_u32(h);
    uint64_t seq = get_u64(h + 12);
    /* any_from: a segment of `size` bytes cannot hold a seq further than
     * size / WAL_REC_HDR past want; the bound keeps random bytes cheap. */
    if (any_from ? (seq < want || seq - want > size / WAL_REC_HDR) : seq != want)
        return 0;
    if (len > WAL_RECORD_MAX || size - off - WAL_REC_HDR < len)
        return 0;
    if (rec_checksum(h, h + WAL_REC_HDR, len) != get_u64(h + 4))
        return 0;
    if (seq_out)
        *seq_out = seq;
    return WAL_REC_HDR + (uint64_t)len;
}

/* After an invalid record at bad_off, look for proof that valid data follows:
 * a valid record with seq >= want at any later byte offset. */
static int valid_record_after(const uint8_t *buf, uint64_t size, uint64_t bad_off, uint64_t want, uint64_t *found_off)
{
    for (uint64_t p = bad_off + 1; size >= WAL_REC_HDR && p <= size - WAL_REC_HDR; p++) {
        if (rec_valid_at(buf, size, p, want, 1, NULL)) {
            *found_off = p;
            return 1;
        }
    }
    return 0;
}

/* Why the record at off is invalid, for the error message. */
static const char *rec_problem(const uint8_t *buf, uint64_t size, uint64_t off, uint64_t want)
{
    if (size - off < WAL_REC_HDR)
        return "truncated record header";
    const uint8_t *h = buf + off;
    uint32_t len = get_u32(h);
    if (len > WAL_RECORD_MAX)
        return "record length over the limit";
    if (size - off - WAL_REC_HDR < len)
        return "record runs past the end of the file";
    if (rec_checksum(h, h + WAL_REC_HDR, len) != get_u64(h + 4))
        return "checksum mismatch";
    if (get_u64(h + 12) != want)
        return "unexpected sequence number";
    return "invalid record";
}

/* ---- fsync statistics -------------------------------------------------- */

static const double hist_bounds_ms[11] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250};

static void stats_add_fsync(wal *w, double secs)
{
    double ms = secs * 1000.0;
    int b = 0;
    while (b < 11 && ms > hist_bounds_ms[b])
        b++;
    w->st.fsync_hist[b]++;
    w->st.fsyncs++;
    w->st.fsync_seconds += secs;
}

/* ---- segment creation -------------------------------------------------- */

/* Create segment first_seq, durable (file and directory entry) on DV_OK.
 * On success *fd_out is open read-write. */
static dv_code seg_create(wal *w, uint64_t first_seq, int *fd_out, dv_err *err)
{
    char *path = seg_path(w->dir, first_seq);
    if (!path)
        return dv_errorf(err, DV_ENOMEM, "wal: create segment: out of memory");
    uint8_t h[WAL_SEG_HDR];
    seg_header_encode(h, first_seq);
    const char *what = "create";
    int fd = io_open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        goto fail;
    what = "write header";
    if (io_pwrite_full(fd, h, sizeof h, 0) != 0)
        goto fail;
    /* fsync the header: a crash must not leave a named segment without it
     * (replay would then treat the whole segment as a torn creation). */
    what = "fsync";
    if (io_fsync(fd) != 0)
        goto fail;
    /* fsync the directory: records acknowledged into this segment would be
     * lost with it if a crash forgot the file's name. */
    what = "fsync dir";
    if (io_fsync_dir(w->dir) != 0)
        goto fail;
    free(path);
    *fd_out = fd;
    return DV_OK;
fail:;
    int e = errno;
    dv_code c = dv_errorf(err, dv_code_from_errno(e), "wal: %s: %s: %s", path, what, strerror(e));
    if (fd >= 0)
        io_close(fd);
    free(path);
    return c;
}

static int segs_push(wal *w, uint64_t first_seq, uint64_t size)
{
    if (w->n_segs == w->segs_cap) {
        size_t nc = w->segs_cap ? w->segs_cap * 2 : 8;
        uint64_t *a = realloc(w->segs, nc * sizeof *a);
        if (!a)
            return -1;
        w->segs = a;
        uint64_t *b = realloc(w->seg_sizes, nc * sizeof *b);
        if (!b)
            return -1;
        w->seg_sizes = b;
        w->segs_cap = nc;
    }
    w->segs[w->n_segs] = first_seq;
    w->seg_sizes[w->n_segs] = size;
    w->n_segs++;
    return 0;
}

/* ---- group commit ------------------------------------------------------ */

/* Wait (mu held) until `seq` is covered by a completed fsync, becoming the
 * leader that runs it when nobody else is. DV_EFATAL if the wal is or gets
 * poisoned first. */
static dv_code sync_upto(wal *w, uint64_t seq, dv_err *err)
{
    while (w->synced_seq < seq && !w->poisoned) {
        if (w->syncing) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        uint64_t target = w->written_seq;
        int fd = w->fd;
        w->syncing = 1;
        pthread_mutex_unlock(&w->mu);
        double t0 = dv_mono_s();
        int rc = io_fsync(fd);
        int e = errno;
        double dt = dv_mono_s() - t0;
        pthread_mutex_lock(&w->mu);
        w->syncing = 0;
        stats_add_fsync(w, dt);
        if (rc != 0) {
            /* The kernel may have dropped the dirty pages it failed to write
             * and marked them clean: a retry could "succeed" without the data.
             * Refuse everything until reopen re-reads the disk. */
            /* ENOSPC from fsync (delayed allocation, thin provisioning)
             * keeps its own code: the caller may heal once space is back. */
            w->poisoned = 1;
            w->sync_fail = e == ENOSPC ? DV_ENOSPC : DV_EFATAL;
            pthread_cond_broadcast(&w->cv);
            return dv_errorf(err, w->sync_fail, "wal: %s: fsync failed: %s; the wal is poisoned until reopen", w->dir,
                             strerror(e));
        }
        if (target > w->synced_seq)
            w->synced_seq = target;
        pthread_cond_broadcast(&w->cv);
    }
    if (w->synced_seq < seq)
        /* Waiters of a failed fsync get its code: their records are in the
         * same state as the leader's. */
        return dv_errorf(err, w->sync_fail ? w->sync_fail : DV_EFATAL,
                         "wal: %s: poisoned by an earlier write or fsync failure; reopen", w->dir);
    return DV_OK;
}

/* Wait (mu held) until no fsync runs, so the active fd may be replaced. */
static void wait_no_sync(wal *w)
{
    while (w->syncing)
        pthread_cond_wait(&w->cv, &w->mu);
}

/* Switch to a fresh segment starting at first_seq (mu held, no fsync
 * running). The old segment is fsynced first so that a torn tail can only
 * ever be in the last segment. */
static dv_code rotate_locked(wal *w, uint64_t first_seq, dv_err *err)
{
    if (w->poisoned)
        return dv_errorf(err, DV_EFATAL, "wal: %s: poisoned; reopen", w->dir);
    if (w->fd >= 0) {
        double t0 = dv_mono_s();
        int rc = io_fsync(w->fd);
        int e = errno;
        stats_add_fsync(w, dv_mono_s() - t0);
        if (rc != 0) {
            w->poisoned = 1;
            w->sync_fail = e == ENOSPC ? DV_ENOSPC : DV_EFATAL;
            pthread_cond_broadcast(&w->cv);
            return dv_errorf(err, w->sync_fail, "wal: %s: fsync before rotate failed: %s; poisoned until reopen",
                             w->dir, strerror(e));
        }
        w->synced_seq = w->written_seq;
        pthread_cond_broadcast(&w->cv);
    }
    int fd = -1;
    dv_code rc = seg_create(w, first_seq, &fd, err);
    if (rc != DV_OK) {
        /* A half-created segment may exist; the old fd stays usable for
         * nothing: poison so nobody writes past an unknown state. */
        w->poisoned = 1;
        pthread_cond_broadcast(&w->cv);
        return rc;
    }
    if (segs_push(w, first_seq, WAL_SEG_HDR) != 0) {
        io_close(fd);
        w->poisoned = 1;
        return dv_errorf(err, DV_ENOMEM, "wal: %s: rotate: out of memory", w->dir);
    }
    if (w->fd >= 0)
        io_close(w->fd);
    w->fd = fd;
    w->off = WAL_SEG_HDR;
    return DV_OK;
}

static void *syncer_main(void *arg)
{
    wal *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)w->interval_ms * 1000000ull;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop || w->poisoned)
            continue;
        if (w->written_seq > w->synced_seq)
            (void)sync_upto(w, w->written_seq, NULL);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- open / replay ----------------------------------------------------- */

/* Replay one segment held in buf. `last` marks the final segment, where an
 * invalid tail is torn (cut at *valid_end) rather than corrupt. *next is the
 * expected seq in, one past the last valid record out. */
static dv_code replay_segment(const char *path, const uint8_t *buf, uint64_t size, uint64_t first_seq, int last,
                              uint64_t after_seq, wal_apply_fn apply, void *ctx, uint64_t *next, uint64_t *valid_end,
                              int *torn, dv_err *err)
{
    uint64_t off = WAL_SEG_HDR, want = first_seq;
    *torn = 0;
    while (off < size) {
        uint64_t rec = rec_valid_at(buf, size, off, want, 0, NULL);
        if (!rec) {
            uint64_t found;
            const char *why = rec_problem(buf, size, off, want);
            if (!last)
                return dv_errorf(err, DV_ECORRUPT,
                                 "wal: %s: offset %" PRIu64 ": %s (expected seq %" PRIu64 ") in a non-last segment",
                                 path, off, why, want);
            if (valid_record_after(buf, size, off, want, &found))
                return dv_errorf(err, DV_ECORRUPT,
                                 "wal: %s: offset %" PRIu64 ": %s (expected seq %" PRIu64
                                 "), and a valid record follows at offset %" PRIu64,
                                 path, off, why, want, found);
            *torn = 1;
            break;
        }
        if (want > after_seq && apply) {
            dv_code rc = apply(ctx, want, buf[off + 20], buf + off + WAL_REC_HDR, rec - WAL_REC_HDR, err);
            if (rc != DV_OK)
                return dv_err_wrap(err, rc, "wal: %s: applying seq %" PRIu64 " at offset %" PRIu64, path, want, off);
        }
        off += rec;
        want++;
    }
    *next = want;
    *valid_end = off;
    return DV_OK;
}

enum { HDR_OK, HDR_TORN, HDR_BAD };

/* Check a segment header. HDR_TORN: short or failing its checksum (what a
 * cut creation leaves); HDR_BAD: intact but not ours to read (another
 * version, or a first_seq that contradicts the file name), never dropped. */
static int seg_header_check(const uint8_t *buf, uint64_t size, uint64_t first_seq, const char **why)
{
    *why = "truncated segment header";
    if (size < WAL_SEG_HDR)
        return HDR_TORN;
    *why = "segment header checksum mismatch";
    if (memcmp(buf, WAL_MAGIC, 5) != 0 || buf[5] || buf[6] || buf[7] || get_u64(buf + 24) != XXH3_64bits(buf, 24))
        return HDR_TORN;
    *why = "unsupported wal format version";
    if (get_u32(buf + 8) != WAL_VERSION || get_u32(buf + 12) != WAL_SEG_HDR)
        return HDR_BAD;
    *why = "segment header first_seq does not match the file name";
    if (get_u64(buf + 16) != first_seq)
        return HDR_BAD;
    return HDR_OK;
}

/* Read a whole segment into *buf, growing it as needed; the buffer is reused
 * from segment to segment so replay touches fresh memory only once. */
static dv_code read_segment(const char *path, uint8_t **buf, size_t *cap, size_t *size, dv_err *err)
{
    int fd = io_open(path, O_RDONLY, 0);
    if (fd < 0)
        return dv_errorf(err, dv_code_from_errno(errno), "wal: open %s: %s", path, strerror(errno));
    uint64_t sz;
    if (io_fstat_size(fd, &sz) != 0)
        goto fail_errno;
    if (sz > SIZE_MAX / 2) {
        io_close(fd);
        return dv_errorf(err, DV_ENOMEM, "wal: %s: segment of %" PRIu64 " bytes is too large", path, sz);
    }
    if (sz > *cap || !*buf) {
        uint8_t *nb = realloc(*buf, sz ? (size_t)sz : 1);
        if (!nb) {
            io_close(fd);
            return dv_errorf(err, DV_ENOMEM, "wal: %s: out of memory for %" PRIu64 " bytes", path, sz);
        }
        *buf = nb;
        *cap = (size_t)sz;
    }
    ssize_t r = io_pread_full(fd, *buf, (size_t)sz, 0);
    if (r < 0)
        goto fail_errno;
    io_close(fd);
    *size = (size_t)r;
    return DV_OK;
fail_errno:;
    int e = errno;
    io_close(fd);
    return dv_errorf(err, dv_code_from_errno(e), "wal: read %s: %s", path, strerror(e));
}

static void wal_free(wal *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        io_close(w->fd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->segs);
    free(w->seg_sizes);
    free(w->dir);
    free(w);
}

dv_code wal_open(const char *dir, dv_fsync_policy policy, uint32_t interval_ms, uint64_t after_seq, int read_only,
                 wal_apply_fn apply, void *ctx, int64_t *torn_off, wal **out, dv_err *err)
{
    dv_code rc = DV_OK;
    char **names = NULL;
    size_t n_names = 0;
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    char *path = NULL;
    uint64_t next = 0, last_end = 0;
    int last_torn = 0, drop_last = 0;
    if (torn_off)
        *torn_off = -1;
    if (policy != DV_FSYNC_ALWAYS && policy != DV_FSYNC_INTERVAL && policy != DV_FSYNC_NEVER)
        return dv_errorf(err, DV_EINVAL, "wal: open %s: unknown fsync policy %d", dir, (int)policy);
    wal *w = calloc(1, sizeof *w);
    if (!w)
        return dv_errorf(err, DV_ENOMEM, "wal: open %s: out of memory", dir);
    w->fd = -1;
    w->policy = policy;
    w->interval_ms = interval_ms ? interval_ms : 100;
    w->read_only = read_only;
    w->seg_max = WAL_SEGMENT_DEFAULT;
    pthread_mutex_init(&w->mu, NULL);
    /* Monotonic clock for the INTERVAL timer: a wall-clock jump must not
     * stall the background fsync. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->dir = strdup(dir);
    if (!w->dir) {
        rc = dv_errorf(err, DV_ENOMEM, "wal: open %s: out of memory", dir);
        goto fail;
    }
    if (!read_only) {
        rc = io_mkdirs(dir, err);
        if (rc != DV_OK)
            goto fail;
    }
    rc = io_list_dir(dir, &names, &n_names, err);
    if (rc == DV_ENOTFOUND && read_only) {
        rc = DV_OK;
        names = NULL;
        n_names = 0;
    } else if (rc != DV_OK) {
        goto fail;
    }
    /* Names are sorted and zero-padded: lexical order is seq order. */
    for (size_t i = 0; i < n_names; i++) {
        uint64_t fs;
        if (seg_name_parse(names[i], &fs) && segs_push(w, fs, 0) != 0) {
            rc = dv_errorf(err, DV_ENOMEM, "wal: open %s: out of memory", dir);
            goto fail;
        }
    }
    for (size_t i = 0; i < w->n_segs; i++) {
        int last = i + 1 == w->n_segs;
        uint64_t fs = w->segs[i];
        free(path);
        path = seg_path(dir, fs);
        if (!path) {
            rc = dv_errorf(err, DV_ENOMEM, "wal: open %s: out of memory", dir);
            goto fail;
        }
        size_t size = 0;
        rc = read_segment(path, &buf, &buf_cap, &size, err);
        if (rc != DV_OK)
            goto fail;
        w->seg_sizes[i] = size;
        /* Seq continuity: a segment may skip seqs only if a checkpoint
         * covered them (they are <= after_seq); otherwise records are lost. */
        uint64_t expect = i == 0 ? (after_seq + 1 < fs ? after_seq + 1 : fs) : next;
        if (fs == 0 || fs < expect || (fs > expect && fs - 1 > after_seq)) {
            rc = dv_errorf(err, DV_ECORRUPT,
                           "wal: %s: segment starts at seq %" PRIu64 " but seq %" PRIu64
                           " was expected (records missing or overlapping)",
                           path, fs, expect);
            goto fail;
        }
        const char *hdr_why;
        int hdr = seg_header_check(buf, size, fs, &hdr_why);
        if (hdr != HDR_OK) {
            /* A last segment whose header never became durable is a torn
             * creation: nothing acknowledged can be in it unless a valid
             * record can be found after the header bytes. */
            uint64_t found;
            if (hdr == HDR_TORN && last && !valid_record_after(buf, size, 0, fs, &found)) {
                drop_last = 1;
                next = fs;
                last_end = 0;
                break;
            }
            rc = dv_errorf(err, DV_ECORRUPT, "wal: %s: offset 0: %s", path, hdr_why);
            goto fail;
        }
        uint64_t valid_end = 0;
        int torn = 0;
        rc = replay_segment(path, buf, size, fs, last, after_seq, apply, ctx, &next, &valid_end, &torn, err);
        if (rc != DV_OK)
            goto fail;
        if (last) {
            last_torn = torn;
            last_end = valid_end;
        }
    }
    free(buf);
    buf = NULL;
    uint64_t last_seq = w->n_segs ? next - 1 : after_seq;
    if (last_seq < after_seq)
        last_seq = after_seq;
    w->next_seq = last_seq + 1;
    w->written_seq = w->synced_seq = last_seq;

    if (torn_off && (last_torn || drop_last))
        *torn_off = (int64_t)last_end;
    if (read_only) {
        io_list_free(names, n_names);
        free(path);
        *out = w;
        return DV_OK;
    }

    int need_new;
    if (drop_last) {
        /* Remove the torn segment; fsync the dir so it cannot come back
         * after we create a new segment of the same name. */
        if (io_unlink(path) != 0 || io_fsync_dir(dir) != 0) {
            rc = dv_errorf(err, dv_code_from_errno(errno), "wal: %s: remove torn segment: %s", path, strerror(errno));
            goto fail;
        }
        w->n_segs--;
        need_new = 1;
    } else if (w->n_segs) {
        int fd = io_open(path, O_RDWR, 0);
        if (fd < 0) {
            rc = dv_errorf(err, dv_code_from_errno(errno), "wal: open %s: %s", path, strerror(errno));
            goto fail;
        }
        w->fd = fd;
        w->off = last_end;
        if (last_torn) {
            /* Cut the torn tail and make the cut durable before any new
             * record lands at this offset: otherwise a crash could glue the
             * new record's bytes to stale torn bytes. */
            if (io_ftruncate(fd, last_end) != 0 || io_fsync(fd) != 0) {
                rc = dv_errorf(err, dv_code_from_errno(errno), "wal: %s: truncate torn tail at %" PRIu64 ": %s", path,
                               last_end, strerror(errno));
                goto fail;
            }
            w->seg_sizes[w->n_segs - 1] = last_end;
        }
        /* The checkpoint is past our last record (those records were
         * unsynced and lost, or never logged): jump to a new segment so the
         * seq gap is explicit in a segment name, never inside one. */
        need_new = next != w->next_seq;
    } else {
        need_new = 1;
    }
    if (need_new) {
        rc = rotate_locked(w, w->next_seq, err);
        if (rc != DV_OK)
            goto fail;
    }
    io_list_free(names, n_names);
    names = NULL;
    free(path);
    path = NULL;
    if (policy == DV_FSYNC_INTERVAL) {
        if (pthread_create(&w->syncer, NULL, syncer_main, w) != 0) {
            rc = dv_errorf(err, DV_ENOMEM, "wal: open %s: cannot start the sync thread", dir);
            goto fail;
        }
        w->has_syncer = 1;
    }
    *out = w;
    return DV_OK;
fail:
    io_list_free(names, n_names);
    free(buf);
    free(path);
    wal_free(w);
    return rc;
}

/* ---- append ------------------------------------------------------------ */

/* Write one record under mu; with `wait`, also wait for its durability per
 * policy (the group commit). */
static dv_code append_impl(wal *w, uint8_t type, const void *payload, size_t len, int wait, uint64_t *seq_out,
                           dv_err *err)
{
    if (len > WAL_RECORD_MAX)
        return dv_errorf(err, DV_ELIMIT, "wal: append: record of %zu bytes exceeds the limit of %u", len,
                         (unsigned)WAL_RECORD_MAX);
    if (w->read_only)
        return dv_errorf(err, DV_EREADONLY, "wal: %s: opened read-only", w->dir);
    pthread_mutex_lock(&w->mu);
    dv_code rc = DV_OK;
    if (w->poisoned) {
        rc = dv_errorf(err, DV_EFATAL, "wal: %s: poisoned by an earlier write or fsync failure; reopen", w->dir);
        goto out;
    }
    if (w->off >= w->seg_max && w->off > WAL_SEG_HDR) {
        wait_no_sync(w);
        if (!w->poisoned && w->off >= w->seg_max) {
            rc = rotate_locked(w, w->next_seq, err);
            if (rc != DV_OK)
                goto out;
        }
        if (w->poisoned) {
            rc = dv_errorf(err, DV_EFATAL, "wal: %s: poisoned; reopen", w->dir);
            goto out;
        }
    }
    uint64_t seq = w->next_seq;
    uint8_t h[WAL_REC_HDR];
    put_u32(h, (uint32_t)len);
    put_u64(h + 12, seq);
    h[20] = type;
    put_u64(h + 4, rec_checksum(h, payload, len));
    if (io_pwrite_full(w->fd, h, sizeof h, w->off) != 0 ||
        (len && io_pwrite_full(w->fd, payload, len, w->off + WAL_REC_HDR) != 0)) {
        int e = errno;
        /* A partial record may be on disk; replay will cut it as a torn
         * tail. Nothing may be appended after it: poison. */
        w->poisoned = 1;
        pthread_cond_broadcast(&w->cv);
        rc = dv_errorf(err, dv_code_from_errno(e),
                       "wal: %s: write of seq %" PRIu64 " at offset %" PRIu64
                       " failed: %s; the wal is poisoned until reopen",
                       w->dir, seq, w->off, strerror(e));
        goto out;
    }
    w->off += WAL_REC_HDR + len;
    w->seg_sizes[w->n_segs - 1] = w->off;
    w->next_seq++;
    w->written_seq = seq;
    if (wait && w->policy == DV_FSYNC_ALWAYS) {
        rc = sync_upto(w, seq, err);
        if (rc != DV_OK)
            goto out;
    }
    if (seq_out)
        *seq_out = seq;
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

dv_code wal_append(wal *w, uint8_t type, const void *payload, size_t len, uint64_t *seq_out, dv_err *err)
{
    return append_impl(w, type, payload, len, 1, seq_out, err);
}

dv_code wal_append_nowait(wal *w, uint8_t type, const void *payload, size_t len, uint64_t *seq_out, dv_err *err)
{
    return append_impl(w, type, payload, len, 0, seq_out, err);
}

dv_code wal_wait_durable(wal *w, uint64_t seq, dv_err *err)
{
    if (w->read_only || w->policy != DV_FSYNC_ALWAYS)
        return DV_OK;
    pthread_mutex_lock(&w->mu);
    dv_code rc = DV_OK;
    if (seq > w->written_seq)
        rc = dv_errorf(err, DV_EINVAL, "wal: %s: wait for seq %" PRIu64 " that was never written (last %" PRIu64 ")",
                       w->dir, seq, w->written_seq);
    else
        rc = sync_upto(w, seq, err);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

uint64_t wal_last_seq(const wal *w)
{
    wal *m = (wal *)w;
    pthread_mutex_lock(&m->mu);
    uint64_t s = m->next_seq - 1;
    pthread_mutex_unlock(&m->mu);
    return s;
}

dv_code wal_rotate(wal *w, dv_err *err)
{
    if (w->read_only)
        return dv_errorf(err, DV_EREADONLY, "wal: %s: opened read-only", w->dir);
    pthread_mutex_lock(&w->mu);
    wait_no_sync(w);
    dv_code rc = DV_OK;
    if (w->poisoned)
        rc = dv_errorf(err, DV_EFATAL, "wal: %s: poisoned; reopen", w->dir);
    else if (w->off > WAL_SEG_HDR) /* an empty segment is already "new" */
        rc = rotate_locked(w, w->next_seq, err);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

dv_code wal_truncate_upto(wal *w, uint64_t upto, dv_err *err)
{
    if (w->read_only)
        return dv_errorf(err, DV_EREADONLY, "wal: %s: opened read-only", w->dir);
    pthread_mutex_lock(&w->mu);
    dv_code rc = DV_OK;
    size_t n_rm = 0;
    /* Only a prefix of non-active segments, oldest first: a crash midway
     * leaves a contiguous suffix, which replay accepts. Segment i holds seqs
     * [segs[i], segs[i+1]) at most. While a backup copies the segments,
     * nothing is removed (the next truncation catches up). */
    while (w->n_copying == 0 && n_rm + 1 < w->n_segs && w->segs[n_rm + 1] - 1 <= upto) {
        char *path = seg_path(w->dir, w->segs[n_rm]);
        if (!path) {
            rc = dv_errorf(err, DV_ENOMEM, "wal: truncate: out of memory");
            break;
        }
        if (io_unlink(path) != 0 && errno != ENOENT) {
            rc = dv_errorf(err, dv_code_from_errno(errno), "wal: truncate: unlink %s: %s", path, strerror(errno));
            free(path);
            break;
        }
        free(path);
        n_rm++;
    }
    if (n_rm) {
        memmove(w->segs, w->segs + n_rm, (w->n_segs - n_rm) * sizeof *w->segs);
        memmove(w->seg_sizes, w->seg_sizes + n_rm, (w->n_segs - n_rm) * sizeof *w->seg_sizes);
        w->n_segs -= n_rm;
        /* A crash before this fsync may bring removed segments back; they
         * only hold seqs <= upto, which replay skips. The fsync is for the
         * disk space accounting, so a failure is reported but not fatal. */
        if (io_fsync_dir(w->dir) != 0 && rc == DV_OK)
            rc = dv_errorf(err, dv_code_from_errno(errno), "wal: truncate: fsync %s: %s", w->dir, strerror(errno));
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

dv_code wal_sync(wal *w, dv_err *err)
{
    if (w->read_only)
        return DV_OK;
    pthread_mutex_lock(&w->mu);
    dv_code rc = sync_upto(w, w->written_seq, err);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void wal_stats_get(const wal *w, wal_stats *out)
{
    wal *m = (wal *)w;
    pthread_mutex_lock(&m->mu);
    *out = m->st;
    out->bytes = 0;
    for (size_t i = 0; i < m->n_segs; i++)
        out->bytes += m->seg_sizes[i];
    pthread_mutex_unlock(&m->mu);
}

int wal_poisoned(const wal *w)
{
    wal *m = (wal *)w;
    pthread_mutex_lock(&m->mu);
    int p = m->poisoned;
    pthread_mutex_unlock(&m->mu);
    return p;
}

dv_code wal_close(wal *w, dv_err *err)
{
    if (!w)
        return DV_OK;
    dv_code rc = DV_OK;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->has_syncer)
        pthread_join(w->syncer, NULL);
    pthread_mutex_lock(&w->mu);
    wait_no_sync(w);
    if (!w->read_only) {
        if (w->poisoned)
            rc = dv_errorf(err, DV_EFATAL,
                           "wal: %s: closed after a write or fsync failure; unsynced records may be lost", w->dir);
        else if (w->written_seq > w->synced_seq)
            rc = sync_upto(w, w->written_seq, err); /* NEVER/INTERVAL: the close makes everything durable */
    }
    pthread_mutex_unlock(&w->mu);
    wal_free(w);
    return rc;
}

/* Copy [0, len) of src into a new file dst, fsynced. */
static dv_code copy_file(const char *src, const char *dst, uint64_t len, dv_err *err)
{
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    int in = -1, out = -1;
    const char *what = "open source";
    if (!buf)
        return dv_errorf(err, DV_ENOMEM, "wal: copy %s: out of memory", src);
    in = io_open(src, O_RDONLY, 0);
    if (in < 0)
        goto fail;
    what = "create copy";
    out = io_open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0)
        goto fail;
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
        what = "read";
        ssize_t r = io_pread_full(in, buf, n, off);
        if (r < 0)
            goto fail;
        if ((size_t)r != n) {
            errno = EIO;
            goto fail;
        }
        what = "write";
        if (io_pwrite_full(out, buf, n, off) != 0)
            goto fail;
        off += n;
    }
    /* fsync the copy: a backup reported complete must survive a crash. */
    what = "fsync";
    if (io_fsync(out) != 0)
        goto fail;
    io_close(in);
    io_close(out);
    free(buf);
    return DV_OK;
fail:;
    int e = errno;
    if (in >= 0)
        io_close(in);
    if (out >= 0)
        io_close(out);
    free(buf);
    return dv_errorf(err, dv_code_from_errno(e), "wal: copy %s to %s: %s: %s", src, dst, what, strerror(e));
}

dv_code wal_copy_to(wal *w, const char *dst_dir, dv_err *err)
{
    dv_code rc = io_mkdirs(dst_dir, err);
    if (rc != DV_OK)
        return rc;
    /* Take the segment list and the active end under mu, then copy without
     * it so appends go on. Segments are append-only and the copy stops at
     * the recorded sizes (record boundaries); n_copying keeps truncation
     * from removing a segment we are reading. */
    pthread_mutex_lock(&w->mu);
    size_t n = w->n_segs;
    uint64_t *first = malloc((n ? n : 1) * sizeof *first), *size = malloc((n ? n : 1) * sizeof *size);
    if (!first || !size) {
        pthread_mutex_unlock(&w->mu);
        free(first);
        free(size);
        return dv_errorf(err, DV_ENOMEM, "wal: copy: out of memory");
    }
    memcpy(first, w->segs, n * sizeof *first);
    memcpy(size, w->seg_sizes, n * sizeof *size);
    w->n_copying++;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        char *src = seg_path(w->dir, first[i]), *dst = seg_path(dst_dir, first[i]);
        if (!src || !dst)
            rc = dv_errorf(err, DV_ENOMEM, "wal: copy: out of memory");
        else
            rc = copy_file(src, dst, size[i], err);
        free(src);
        free(dst);
    }
    pthread_mutex_lock(&w->mu);
    w->n_copying--;
    pthread_mutex_unlock(&w->mu);
    free(first);
    free(size);
    /* fsync the directory: the copies' names must survive a crash too. */
    if (rc == DV_OK && io_fsync_dir(dst_dir) != 0)
        rc = dv_errorf(err, dv_code_from_errno(errno), "wal: copy: fsync %s: %s", dst_dir, strerror(errno));
    return rc;
}

void wal_set_segment_bytes(wal *w, uint64_t bytes)
{
    pthread_mutex_lock(&w->mu);
    w->seg_max = bytes < WAL_SEG_HDR + 1 ? WAL_SEG_HDR + 1 : bytes;
    pthread_mutex_unlock(&w->mu);
}
