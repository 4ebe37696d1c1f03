/* io.h - every disk call of the engine goes through here.
 *
 * A test build can inject faults: fail the Nth call with EIO or ENOSPC, or
 * "crash" at the Nth call: from then on every call fails with EIO, and
 * io_crash_apply() rewinds files to what was fsynced (optionally keeping a
 * torn prefix of the last unsynced write) to simulate power loss.
 * Functions return 0 or -1 with errno set, like the syscalls they wrap,
 * except where a dv_code is stated.
 */
#ifndef DV_IO_H
#define DV_IO_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "dvecdb.h"

int io_open(const char *path, int flags, int mode);
int io_close(int fd);
ssize_t io_pread_full(int fd, void *buf, size_t len,
                      uint64_t off); /* loops; returns bytes read (< len only at EOF) or -1 */
int io_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int io_write_full(int fd, const void *buf, size_t len);
int io_fsync(int fd); /* fdatasync is not enough for new files: full fsync */
int io_ftruncate(int fd, uint64_t len);
int io_rename(const char *from, const char *to);
int io_renameat_noreplace(const char *from, const char *to); /* fails EEXIST if `to` exists */
int io_unlink(const char *path);
int io_mkdir(const char *path, int mode);
int io_rmdir(const char *path);
int io_link(const char *from, const char *to);
int io_fsync_dir(const char *dir);
int io_fstat_size(int fd, uint64_t *size);

/* Read a whole file into a malloc'd buffer. dv_code; DV_ENOTFOUND if absent. */
dv_code io_read_file(const char *path, uint8_t **buf, size_t *len, dv_err *err);
/* Replace dir/name atomically with buf: write dir/name.tmp, fsync, rename,
 * fsync dir. After DV_OK the new content is durable; on error the old file is intact. */
dv_code io_write_file_atomic(const char *dir, const char *name, const void *buf, size_t len, dv_err *err);
/* mkdir -p; remove a tree (used only on staging/trash/backup dirs). */
dv_code io_mkdirs(const char *path, dv_err *err);
dv_code io_remove_tree(const char *path, dv_err *err);
/* Sum of file sizes under path. */
uint64_t io_tree_size(const char *path); /* hard links inside the tree count once */
uint64_t io_disk_free(const char *path);
/* Names in dir (without "." and ".."), sorted by strcmp, in a malloc'd array
 * freed with io_list_free. Counted as one call (can be failed by a fault). */
dv_code io_list_dir(const char *dir, char ***names, size_t *n_names, dv_err *err);
void io_list_free(char **names, size_t n_names);

/* ---- fault injection (tests) ---- */
typedef enum io_fault { IO_FAULT_NONE, IO_FAULT_EIO, IO_FAULT_ENOSPC, IO_FAULT_CRASH } io_fault;
/* Arm a fault at the call numbered `nth` (1-based, counting every io_* call
 * that touches the disk from now on). IO_FAULT_EIO/ENOSPC fail that call
 * only (sticky=0) or every call from then (sticky=1). */
void io_fault_arm(io_fault kind, uint64_t nth, int sticky);
/* io_fault_arm(IO_FAULT_NONE, 0, 0) only counts calls (to size a crash loop).
 * Unarmed, nothing is counted: the fast path is one atomic load. io_close is
 * never counted or failed. io_crash_apply() requires every other thread to be
 * out of io_* (join them first). The model and its limits: top of io.c. */
void io_fault_disarm(void);
uint64_t io_calls(void); /* calls counted since the last arm/reset */
/* 1 while a fault (or call counting) is armed: code that could spread its
 * I/O over several threads stays on one, so call numbers are deterministic. */
int io_fault_active(void);
int io_crashed(void);
/* After an IO_FAULT_CRASH: cut every file written since its last fsync back
 * to its synced length (keeping `torn` extra bytes of the last write when
 * torn > 0), undo unsynced renames/creates that were not followed by a dir
 * fsync, then disarm. Tracking is on only while a crash fault is armed. */
void io_crash_apply(size_t torn);
/* io_crash_apply() may also be called while the crash point has not been
 * reached: it then simulates a power loss at that moment. */
/* With a crash fault armed (nth may be 0: "never by count"), lose power now:
 * every later call fails with EIO; the tracked state is kept for
 * io_crash_apply(). Safe to call while other threads do I/O. */
void io_crash_now(void);
/* Tests: call fn(path) at the start of every io_open (from the opening
 * thread), e.g. to hold a checkpoint inside its file writes; NULL removes it. */
void io_test_open_hook(void (*fn)(const char *path));
#endif
