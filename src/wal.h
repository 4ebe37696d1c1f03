/* wal.h - append-only write-ahead log, one per collection (a directory of segments).
 *
 * Record = header (length, checksum, seq, type) + payload; format in wal.c and
 * docs/format-wal.md. Sequence numbers are assigned by wal_append, strictly
 * increasing across segments and reopenings.
 *
 * Group commit: concurrent wal_append callers share one fsync; each returns
 * only when its own record is durable (policy ALWAYS). A failed write or
 * fsync poisons the wal: that append returns the I/O error (DV_EIO, DV_ENOSPC;
 * for a failed fsync DV_ENOSPC if its errno was ENOSPC, else DV_EFATAL, and
 * the same code to every appender waiting on that fsync), and
 * every later append, sync and rotate returns DV_EFATAL until the wal is
 * closed and reopened (reopen re-reads the disk and cuts a half-written record).
 *
 * Threads: every function may be called from many threads at once on one
 * handle, except wal_close (no other call may be in progress or follow).
 */
#ifndef DV_WAL_H
#define DV_WAL_H
#include <stddef.h>
#include <stdint.h>
#include "dvecdb.h"

typedef struct wal wal;

/* Largest payload of one record; wal_append rejects more with DV_ELIMIT. */
#define WAL_RECORD_MAX (256u << 20)

typedef struct wal_stats {
    uint64_t bytes; /* total size of live segments */
    uint64_t fsyncs;
    double fsync_seconds;
    uint64_t fsync_hist[12]; /* same buckets as dv_db_stats.wal_fsync_hist; one count per bucket, not cumulative */
} wal_stats;

/* Callback for replay: return DV_OK to continue, else stop with that code. */
typedef dv_code (*wal_apply_fn)(void *ctx, uint64_t seq, uint8_t type, const uint8_t *payload, size_t len, dv_err *err);

/* Open dir (create if absent), replaying every valid record with seq > after_seq
 * through apply, in order. A torn or checksum-failing record at the tail
 * of the last segment is truncated away (reported through *torn_off, -1 if none).
 * A bad record followed by valid ones is corruption: DV_ECORRUPT naming file
 * and offset. read_only: replay only, never truncate or write. */
dv_code wal_open(const char *dir, dv_fsync_policy policy, uint32_t interval_ms, uint64_t after_seq, int read_only,
                 wal_apply_fn apply, void *ctx, int64_t *torn_off, wal **out, dv_err *err);
/* Append one record; *seq_out gets its sequence number. Durable on return per policy. */
dv_code wal_append(wal *w, uint8_t type, const void *payload, size_t len, uint64_t *seq_out, dv_err *err);
/* The two halves of wal_append, so a caller that serializes its writers with
 * its own lock can still share fsyncs: write the record under that lock with
 * wal_append_nowait (returns once the record is written, in seq order), drop
 * the lock, then wal_wait_durable(seq) (policy ALWAYS: returns once an fsync
 * covering seq completed; INTERVAL/NEVER: at once). Acknowledge only after
 * wal_wait_durable returned DV_OK. Errors as wal_append; DV_EINVAL for a seq
 * never written. */
dv_code wal_append_nowait(wal *w, uint8_t type, const void *payload, size_t len, uint64_t *seq_out, dv_err *err);
dv_code wal_wait_durable(wal *w, uint64_t seq, dv_err *err);
/* Last assigned sequence number (0 if none ever). */
uint64_t wal_last_seq(const wal *w);
/* Start a new segment; later records go there. Used before a checkpoint so
 * that segments wholly <= a checkpointed seq can be removed. */
dv_code wal_rotate(wal *w, dv_err *err);
/* Remove segments whose every record has seq <= upto (after a durable checkpoint). */
dv_code wal_truncate_upto(wal *w, uint64_t upto, dv_err *err);
/* fsync now (INTERVAL policy background thread, clean close). */
dv_code wal_sync(wal *w, dv_err *err);
void wal_stats_get(const wal *w, wal_stats *out);
int wal_poisoned(const wal *w);
/* Sync and close; the handle is freed in every case. DV_EFATAL if the wal was
 * poisoned (records written after the last good fsync may be lost). */
dv_code wal_close(wal *w, dv_err *err);
/* Copy the live segments into dst_dir (backups), fsyncing the copies. */
dv_code wal_copy_to(wal *w, const char *dst_dir, dv_err *err);
/* Rotate once the active segment reaches `bytes` (default 64 MiB). Tests use
 * small values to exercise rotation. */
void wal_set_segment_bytes(wal *w, uint64_t bytes);
#endif
