/*
 * io.c - the one door to the disk, with fault injection for tests.
 *
 * Owns: every open/read/write/fsync/truncate/rename/unlink/mkdir/rmdir/link
 * the engine makes, the composite helpers built on them (read a whole file,
 * atomic replace, mkdir -p, remove a tree, tree size, disk free), and the
 * fault injector with its power-loss model.
 *
 * Invariants:
 *  - Each primitive returns 0 (or a byte count) on success and -1 with errno
 *    set on failure, exactly like the syscall it wraps; the loops retry EINTR
 *    and short transfers, never a failed fsync.
 *  - Normal runs pay one relaxed atomic load per call (g_on == 0). Counting,
 *    fault firing and the crash model run only while a fault is armed.
 *  - The crash model (IO_FAULT_CRASH) records, while armed and before the
 *    crash fires, what a power loss could undo: data written to an inode
 *    since its last fsync, and namespace changes (create, mkdir, link,
 *    unlink, rmdir, rename) not yet covered by an fsync of their directory.
 *    io_crash_apply() then rolls the real files back to that state.
 *
 * The model, and where it is simpler than a real kernel:
 *  - Everything on disk when the fault is armed counts as durable.
 *    XXX: a file written just before arming is treated as fsynced.
 *  - File data: each inode has a synced length (its size at the first tracked
 *    touch, then its size at each fsync). After a crash it is cut back to that
 *    length, plus `torn` bytes of its unsynced tail when torn > 0; bytes
 *    overwritten or truncated inside the synced length are restored from an
 *    undo copy. XXX: a real disk may also persist unsynced writes out of
 *    order (a later page without an earlier one) or reorder sectors inside a
 *    torn write; we keep only a prefix, the common case for appends.
 *  - Namespace: an operation becomes durable when every directory it touched
 *    (both directories of a cross-directory rename) has been fsynced after
 *    it. Undo runs newest first. XXX: a journaling filesystem (ext4
 *    data=ordered) usually persists earlier metadata too; our model is the
 *    strict POSIX reading, which is harsher, so code that passes here is
 *    safe there. XXX: an fsync of a file does not make its directory entry
 *    durable here (it may on ext4); the engine must fsync the directory.
 *  - Undo works on the paths as they were when each operation ran. XXX: if
 *    a directory was renamed durably, non-durable operations made inside it
 *    under its old path are not undone (their paths no longer resolve to the
 *    same inode); a kernel could lose them. The model is lenient there.
 *  - An unlinked or replaced regular file is kept in memory (its content up
 *    to its synced length) so it can be put back; directories removed by
 *    rmdir come back empty. XXX: permissions and timestamps of restored
 *    files are not preserved (mode 0644), symlinks are not restored.
 *  - Directory listing, lstat and statvfs are not counted as calls and never
 *    fail by injection. XXX: a real EIO on readdir is not simulated.
 *  - io_crash_apply() must be called when no other thread is inside io_*.
 */
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "err.h"

/* ---- fault injector state ------------------------------------------ */

static atomic_int g_on; /* 0: fast path, nothing counted */
static atomic_uint_fast64_t g_calls;
static atomic_int g_kind; /* io_fault */
static atomic_uint_fast64_t g_nth;
static atomic_int g_sticky;
static atomic_int g_crashed;  /* crash fired: every call fails EIO */
static atomic_int g_tracking; /* crash armed and not yet fired */

/* Crash model state, guarded by g_mu. */
typedef struct undo_rec {
    uint64_t off;
    size_t len;
    uint8_t *data;
} undo_rec;

typedef struct inode_ent {
    dev_t dev;
    ino_t ino;
    int fd; /* dup'ed so the inode can be rewound after close/rename */
    uint64_t synced_len;
    int dirty;
    undo_rec *undo;
    size_t n_undo, undo_cap;
} inode_ent;

enum { OP_CREATE, OP_MKDIR, OP_LINK, OP_UNLINK, OP_RMDIR, OP_RENAME };

typedef struct ns_op {
    int kind;
    char *a, *b;          /* path (and rename target) */
    dev_t da_dev, db_dev; /* parent directories still waiting for an fsync */
    ino_t da_ino, db_ino;
    int pend_a, pend_b;
    dev_t dev; /* inode the op created/removed (for identity checks) */
    ino_t ino;
    int has_stash; /* a regular file that the op removed or replaced */
    int stash_dir; /* the replaced target was an (empty) directory */
    uint8_t *stash;
    size_t stash_len;
    dev_t stash_dev;
    ino_t stash_ino;
    int stash_tracked; /* its inode had unsynced data when stashed */
} ns_op;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static inode_ent *g_ents;
static size_t g_n_ents, g_ents_cap;
static ns_op *g_ops;
static size_t g_n_ops, g_ops_cap;

/* Slow path of the fault check: count the call and decide whether it fails. */
static int fault_slow(void)
{
    uint64_t n = atomic_fetch_add(&g_calls, 1) + 1;
    if (atomic_load(&g_crashed)) {
        errno = EIO;
        return -1;
    }
    int kind = atomic_load(&g_kind);
    uint64_t nth = atomic_load(&g_nth);
    if (kind == IO_FAULT_NONE || nth == 0 || n < nth)
        return 0;
    if (kind == IO_FAULT_CRASH) {
        atomic_store(&g_tracking, 0);
        atomic_store(&g_crashed, 1);
        errno = EIO;
        return -1;
    }
    if (n == nth || atomic_load(&g_sticky)) {
        errno = kind == IO_FAULT_ENOSPC ? ENOSPC : EIO;
        return -1;
    }
    return 0;
}

/* Start of every counted call; -1 (errno set) means "fail it". While a crash
 * fault is armed and has not fired, it returns with g_mu held (*locked = 1):
 * the call, its bookkeeping and the crash decision are then atomic, so a
 * crash point is a clean cut even with several threads doing I/O. */
static inline int enter(int *locked)
{
    *locked = 0;
    if (!atomic_load_explicit(&g_on, memory_order_relaxed))
        return 0;
    if (atomic_load(&g_tracking)) {
        pthread_mutex_lock(&g_mu);
        if (fault_slow() != 0) {
            int e = errno;
            pthread_mutex_unlock(&g_mu);
            errno = e;
            return -1;
        }
        if (atomic_load(&g_tracking)) {
            *locked = 1;
            return 0;
        }
        pthread_mutex_unlock(&g_mu);
        return 0;
    }
    return fault_slow();
}

/* End of a call begun by enter(); keeps errno. */
static inline void leave(int locked)
{
    if (locked) {
        int e = errno;
        pthread_mutex_unlock(&g_mu);
        errno = e;
    }
}

/* ---- crash model bookkeeping (g_mu held) ------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return -1;
    memset((char *)np + *cap * elem, 0, (nc - *cap) * elem);
    *p = np;
    *cap = nc;
    return 0;
}

static inode_ent *ent_find(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < g_n_ents; i++)
        if (g_ents[i].dev == dev && g_ents[i].ino == ino)
            return &g_ents[i];
    return NULL;
}

/* The entry of fd's inode, created at its first tracked touch with the
 * current size as its synced length. NULL on allocation failure. */
static inode_ent *ent_get(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    inode_ent *e = ent_find(st.st_dev, st.st_ino);
    if (e)
        return e;
    if (grow((void **)&g_ents, &g_ents_cap, g_n_ents + 1, sizeof *g_ents) != 0)
        return NULL;
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return NULL;
    e = &g_ents[g_n_ents++];
    memset(e, 0, sizeof *e);
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->fd = dfd;
    e->synced_len = (uint64_t)st.st_size;
    return e;
}

/* Save the durable bytes in [off, off+len) ∩ [0, synced_len) ∩ [0, cur size)
 * before they are overwritten or truncated away. */
static void ent_save_undo(inode_ent *e, int fd, uint64_t off, uint64_t len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return;
    uint64_t end = off + len;
    if (end > e->synced_len)
        end = e->synced_len;
    if (end > (uint64_t)st.st_size)
        end = (uint64_t)st.st_size;
    if (off >= end)
        return;
    size_t n = (size_t)(end - off);
    uint8_t *buf = malloc(n);
    if (!buf)
        return;
    ssize_t r = pread(fd, buf, n, (off_t)off);
    if (r <= 0 || grow((void **)&e->undo, &e->undo_cap, e->n_undo + 1, sizeof *e->undo) != 0) {
        free(buf);
        return;
    }
    e->undo[e->n_undo++] = (undo_rec){off, (size_t)r, buf};
}

static void ent_free_undo(inode_ent *e)
{
    for (size_t i = 0; i < e->n_undo; i++)
        free(e->undo[i].data);
    free(e->undo);
    e->undo = NULL;
    e->n_undo = e->undo_cap = 0;
}

/* Parent directory identity of path (for matching io_fsync_dir). */
static int parent_id(const char *path, dev_t *dev, ino_t *ino)
{
    size_t n = strlen(path);
    char *p = malloc(n + 2);
    if (!p)
        return -1;
    memcpy(p, path, n + 1);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash)
        strcpy(p, ".");
    else if (slash == p)
        p[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    int rc = stat(p, &st);
    free(p);
    if (rc != 0)
        return -1;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

/* Read a regular file into memory, cut to the synced length of its inode
 * when that inode is tracked (what a power loss would have left of it). */
static int stash_file(const char *path, ns_op *op)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        op->stash_dir = 1;
        return 0;
    }
    if (!S_ISREG(st.st_mode))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    ssize_t r = buf ? pread(fd, buf, n, 0) : -1;
    close(fd);
    if (r < 0) {
        free(buf);
        return -1;
    }
    op->has_stash = 1;
    op->stash = buf;
    op->stash_len = (size_t)r;
    op->stash_dev = st.st_dev;
    op->stash_ino = st.st_ino;
    /* Only a tracked inode is rewound after restore; its entry's dup'ed fd
     * keeps the inode alive, so its number cannot be reused meanwhile. An
     * untracked one was wholly durable and is restored as stashed. */
    op->stash_tracked = ent_find(st.st_dev, st.st_ino) != NULL;
    return 0;
}

static ns_op *op_add(int kind, const char *a, const char *b)
{
    if (grow((void **)&g_ops, &g_ops_cap, g_n_ops + 1, sizeof *g_ops) != 0)
        return NULL;
    ns_op *op = &g_ops[g_n_ops];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->a = strdup(a);
    op->b = b ? strdup(b) : NULL;
    if (!op->a || (b && !op->b)) {
        free(op->a);
        free(op->b);
        return NULL;
    }
    if (parent_id(a, &op->da_dev, &op->da_ino) == 0)
        op->pend_a = 1;
    if (b && parent_id(b, &op->db_dev, &op->db_ino) == 0)
        op->pend_b = 1;
    g_n_ops++;
    return op;
}

static void op_set_ino(ns_op *op, const char *path)
{
    struct stat st;
    if (op && lstat(path, &st) == 0) {
        op->dev = st.st_dev;
        op->ino = st.st_ino;
    }
}

static void ops_free(void)
{
    for (size_t i = 0; i < g_n_ops; i++) {
        free(g_ops[i].a);
        free(g_ops[i].b);
        free(g_ops[i].stash);
    }
    free(g_ops);
    g_ops = NULL;
    g_n_ops = g_ops_cap = 0;
    for (size_t i = 0; i < g_n_ents; i++) {
        ent_free_undo(&g_ents[i]);
        close(g_ents[i].fd);
    }
    free(g_ents);
    g_ents = NULL;
    g_n_ents = g_ents_cap = 0;
}

/* ---- primitives ------------------------------------------------------- */

static void (*_Atomic g_open_hook)(const char *path);

void io_test_open_hook(void (*fn)(const char *path))
{
    atomic_store(&g_open_hook, fn);
}

int io_open(const char *path, int flags, int mode)
{
    void (*hook)(const char *) = atomic_load_explicit(&g_open_hook, memory_order_relaxed);
    if (hook)
        hook(path);
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return open(path, flags | O_CLOEXEC, mode);
    struct stat st;
    int existed = lstat(path, &st) == 0;
    /* O_TRUNC is data loss of the synced content: do it as a tracked truncate. */
    int fd = open(path, (flags & ~O_TRUNC) | O_CLOEXEC, mode);
    if (fd >= 0) {
        if (!existed && (flags & O_CREAT))
            op_set_ino(op_add(OP_CREATE, path, NULL), path);
        if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
            inode_ent *e = ent_get(fd);
            if (e) {
                ent_save_undo(e, fd, 0, e->synced_len);
                e->dirty = 1;
            }
            if (ftruncate(fd, 0) != 0) {
                int saved = errno;
                close(fd);
                fd = -1;
                errno = saved;
            }
        }
    }
    leave(L);
    return fd;
}

/* Closing never touches the disk, so it is neither counted nor failed: an
 * fd must be releasable even after a simulated crash. */
int io_close(int fd)
{
    return close(fd);
}

ssize_t io_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    int L;
    if (enter(&L))
        return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            leave(L);
            return -1;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    leave(L);
    return (ssize_t)done;
}

/* Record a pending data write of [off, off+len) on fd (g_mu held). */
static void track_write(int fd, uint64_t off, size_t len)
{
    inode_ent *e = ent_get(fd);
    if (!e)
        return;
    ent_save_undo(e, fd, off, len);
    e->dirty = 1;
}

static int pwrite_loop(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) { /* no progress on a regular file: never spin */
            errno = EIO;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

int io_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return pwrite_loop(fd, buf, len, off);
    track_write(fd, off, len);
    int rc = pwrite_loop(fd, buf, len, off);
    leave(L);
    return rc;
}

static int write_loop(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = write(fd, (const uint8_t *)buf + done, len - done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) { /* no progress on a regular file: never spin */
            errno = EIO;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

int io_write_full(int fd, const void *buf, size_t len)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return write_loop(fd, buf, len);
    off_t off;
    struct stat st;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0)
        off = st.st_size;
    else
        off = lseek(fd, 0, SEEK_CUR);
    if (off >= 0)
        track_write(fd, (uint64_t)off, len);
    int rc = write_loop(fd, buf, len);
    leave(L);
    return rc;
}

int io_fsync(int fd)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return fsync(fd);
    int rc = fsync(fd);
    struct stat st;
    if (rc == 0 && fstat(fd, &st) == 0) {
        inode_ent *e = ent_find(st.st_dev, st.st_ino);
        if (e) {
            e->synced_len = (uint64_t)st.st_size;
            e->dirty = 0;
            ent_free_undo(e);
        }
    }
    leave(L);
    return rc;
}

int io_ftruncate(int fd, uint64_t len)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return ftruncate(fd, (off_t)len);
    inode_ent *e = ent_get(fd);
    if (e) {
        if (len < e->synced_len)
            ent_save_undo(e, fd, len, e->synced_len - len);
        e->dirty = 1;
    }
    int rc = ftruncate(fd, (off_t)len);
    leave(L);
    return rc;
}

/* Shared by rename and rename-noreplace, g_mu held: do it and record the op
 * (stashing a replaced target). */
static int tracked_rename(const char *from, const char *to, int noreplace)
{
    ns_op tmp = {0};
    if (!noreplace && stash_file(to, &tmp) != 0)
        return -1;
    int rc = noreplace ? renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) : rename(from, to);
    if (rc == 0) {
        ns_op *op = op_add(OP_RENAME, from, to);
        if (op) {
            op->has_stash = tmp.has_stash;
            op->stash_dir = tmp.stash_dir;
            op->stash = tmp.stash;
            op->stash_len = tmp.stash_len;
            op->stash_dev = tmp.stash_dev;
            op->stash_ino = tmp.stash_ino;
            op->stash_tracked = tmp.stash_tracked;
            tmp.stash = NULL;
            op_set_ino(op, to);
        }
    }
    free(tmp.stash);
    return rc;
}

int io_rename(const char *from, const char *to)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return rename(from, to);
    int rc = tracked_rename(from, to, 0);
    leave(L);
    return rc;
}

int io_renameat_noreplace(const char *from, const char *to)
{
    int L;
    if (enter(&L))
        return -1;
    if (L) {
        int rc = tracked_rename(from, to, 1);
        leave(L);
        return rc;
    }
    int rc = renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
    if (rc != 0 && errno == EINVAL) {
        /* The filesystem lacks RENAME_NOREPLACE. For a file, link + unlink
         * gives the same no-replace guarantee (link fails with EEXIST). */
        struct stat st;
        if (lstat(from, &st) == 0 && !S_ISDIR(st.st_mode)) {
            if (link(from, to) != 0)
                return -1;
            return unlink(from);
        }
        /* XXX: for a directory on such a filesystem the check and the rename
         * are two steps; a concurrent creator of `to` could be replaced. */
        if (lstat(to, &st) == 0) {
            errno = EEXIST;
            return -1;
        }
        return rename(from, to);
    }
    return rc;
}

int io_unlink(const char *path)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return unlink(path);
    ns_op tmp = {0};
    int rc = stash_file(path, &tmp);
    if (rc == 0)
        rc = unlink(path);
    if (rc == 0) {
        ns_op *op = op_add(OP_UNLINK, path, NULL);
        if (op) {
            op->has_stash = tmp.has_stash;
            op->stash = tmp.stash;
            op->stash_len = tmp.stash_len;
            op->stash_dev = tmp.stash_dev;
            op->stash_ino = tmp.stash_ino;
            op->stash_tracked = tmp.stash_tracked;
            tmp.stash = NULL;
        }
    }
    free(tmp.stash);
    leave(L);
    return rc;
}

int io_mkdir(const char *path, int mode)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return mkdir(path, (mode_t)mode);
    int rc = mkdir(path, (mode_t)mode);
    if (rc == 0)
        op_set_ino(op_add(OP_MKDIR, path, NULL), path);
    leave(L);
    return rc;
}

int io_rmdir(const char *path)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return rmdir(path);
    int rc = rmdir(path);
    if (rc == 0)
        op_add(OP_RMDIR, path, NULL);
    leave(L);
    return rc;
}

int io_link(const char *from, const char *to)
{
    int L;
    if (enter(&L))
        return -1;
    if (!L)
        return link(from, to);
    int rc = link(from, to);
    if (rc == 0)
        op_set_ino(op_add(OP_LINK, to, NULL), to);
    leave(L);
    return rc;
}

int io_fsync_dir(const char *dir)
{
    int L;
    if (enter(&L))
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        leave(L);
        return -1;
    }
    if (!L) {
        int rc = fsync(fd);
        int saved = errno;
        close(fd);
        errno = saved;
        return rc;
    }
    /* g_mu is held across the fsync: an operation recorded between the
     * fsync and the marking below must not be counted as durable. */
    int rc = fsync(fd);
    int saved = errno;
    struct stat st;
    if (rc == 0 && fstat(fd, &st) == 0) {
        for (size_t i = 0; i < g_n_ops; i++) {
            ns_op *op = &g_ops[i];
            if (op->pend_a && op->da_dev == st.st_dev && op->da_ino == st.st_ino)
                op->pend_a = 0;
            if (op->pend_b && op->db_dev == st.st_dev && op->db_ino == st.st_ino)
                op->pend_b = 0;
        }
    }
    leave(L);
    close(fd);
    errno = saved;
    return rc;
}

int io_fstat_size(int fd, uint64_t *size)
{
    int L;
    if (enter(&L))
        return -1;
    struct stat st;
    int rc = fstat(fd, &st);
    leave(L);
    if (rc != 0)
        return -1;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* ---- composite helpers ------------------------------------------------ */

dv_code io_read_file(const char *path, uint8_t **buf, size_t *len, dv_err *err)
{
    int fd = io_open(path, O_RDONLY, 0);
    if (fd < 0) {
        int e = errno;
        return dv_errorf(err, e == ENOENT ? DV_ENOTFOUND : dv_code_from_errno(e), "io: open %s: %s", path, strerror(e));
    }
    uint64_t size;
    uint8_t *b = NULL;
    if (io_fstat_size(fd, &size) != 0)
        goto fail_errno;
    if (size > SIZE_MAX - 1) {
        io_close(fd);
        return dv_errorf(err, DV_ENOMEM, "io: read %s: file too large (%llu bytes)", path, (unsigned long long)size);
    }
    b = malloc((size_t)size + 1); /* +1: never malloc(0); callers may NUL-terminate */
    if (!b) {
        io_close(fd);
        return dv_errorf(err, DV_ENOMEM, "io: read %s: out of memory for %llu bytes", path, (unsigned long long)size);
    }
    ssize_t r = io_pread_full(fd, b, (size_t)size, 0);
    if (r < 0)
        goto fail_errno;
    io_close(fd);
    b[r] = 0;
    *buf = b;
    *len = (size_t)r;
    return DV_OK;
fail_errno:;
    int e = errno;
    free(b);
    io_close(fd);
    return dv_errorf(err, dv_code_from_errno(e), "io: read %s: %s", path, strerror(e));
}

/* Crash-safe replacement of dir/name. Each step names the crash it prevents. */
dv_code io_write_file_atomic(const char *dir, const char *name, const void *buf, size_t len, dv_err *err)
{
    char *tmp = NULL, *dst = NULL;
    const char *what = "open";
    int fd = -1;
    if (asprintf(&tmp, "%s/%s.tmp", dir, name) < 0) {
        tmp = NULL;
        return dv_errorf(err, DV_ENOMEM, "io: atomic write %s/%s: out of memory", dir, name);
    }
    if (asprintf(&dst, "%s/%s", dir, name) < 0) {
        free(tmp);
        return dv_errorf(err, DV_ENOMEM, "io: atomic write %s/%s: out of memory", dir, name);
    }
    /* Write the new content beside the old file: a crash now leaves the old
     * file untouched and at most a stray .tmp (removed by recovery). */
    fd = io_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        goto fail;
    what = "write";
    if (io_write_full(fd, buf, len) != 0)
        goto fail;
    /* fsync before rename: otherwise a crash after the rename became durable
     * could leave `name` pointing at an empty or partly written inode. */
    what = "fsync";
    if (io_fsync(fd) != 0)
        goto fail;
    io_close(fd);
    fd = -1;
    /* rename is atomic: a reader (or a crash) sees the old or the new file. */
    what = "rename";
    if (io_rename(tmp, dst) != 0)
        goto fail;
    /* fsync the directory: without it a crash can bring back the old name
     * binding even though we returned success. */
    what = "fsync dir";
    if (io_fsync_dir(dir) != 0) {
        int e = errno;
        free(tmp);
        free(dst);
        return dv_errorf(err, dv_code_from_errno(e), "io: atomic write %s/%s: fsync dir: %s", dir, name, strerror(e));
    }
    free(tmp);
    free(dst);
    return DV_OK;
fail:;
    int e = errno;
    if (fd >= 0)
        io_close(fd);
    /* Best effort, through io_ so that nothing touches the disk after a
     * simulated crash: the old file is intact either way. */
    io_unlink(tmp);
    free(tmp);
    free(dst);
    return dv_errorf(err, dv_code_from_errno(e), "io: atomic write %s/%s: %s: %s", dir, name, what, strerror(e));
}

/* Return the parent of path in a new string ("." when there is none). */
static char *dir_of(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash) {
        free(p);
        return strdup(".");
    }
    if (slash == p)
        p[1] = '\0';
    else
        *slash = '\0';
    return p;
}

/* mkdir -p. Each directory we create is made durable by fsyncing its parent,
 * so a crash right after we return cannot lose the path. */
dv_code io_mkdirs(const char *path, dv_err *err)
{
    char *p = strdup(path);
    if (!p)
        return dv_errorf(err, DV_ENOMEM, "io: mkdirs %s: out of memory", path);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char save = p[i];
        p[i] = '\0';
        if (io_mkdir(p, 0755) == 0) {
            char *parent = dir_of(p);
            /* A new directory entry is not durable until its parent is fsynced. */
            int rc = parent ? io_fsync_dir(parent) : -1;
            int e = parent ? errno : ENOMEM;
            free(parent);
            if (rc != 0) {
                dv_code c = dv_errorf(err, dv_code_from_errno(e), "io: mkdirs %s: fsync parent of %s: %s", path, p,
                                      strerror(e));
                free(p);
                return c;
            }
        } else if (errno != EEXIST) {
            int e = errno;
            dv_code c = dv_errorf(err, dv_code_from_errno(e), "io: mkdirs %s: mkdir %s: %s", path, p, strerror(e));
            free(p);
            return c;
        } else {
            struct stat st;
            if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
                dv_code c = dv_errorf(err, DV_EEXIST, "io: mkdirs %s: %s exists and is not a directory", path, p);
                free(p);
                return c;
            }
        }
        p[i] = save;
    }
    free(p);
    return DV_OK;
}

/* Depth-first removal; symlinks are removed, never followed. The caller
 * fsyncs the parent if the removal must be durable. */
dv_code io_remove_tree(const char *path, dv_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return DV_OK;
        return dv_errorf(err, dv_code_from_errno(errno), "io: remove %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (io_unlink(path) != 0 && errno != ENOENT)
            return dv_errorf(err, dv_code_from_errno(errno), "io: remove %s: %s", path, strerror(errno));
        return DV_OK;
    }
    DIR *d = opendir(path);
    if (!d)
        return dv_errorf(err, dv_code_from_errno(errno), "io: remove %s: opendir: %s", path, strerror(errno));
    struct dirent *de;
    dv_code rc = DV_OK;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *child;
        if (asprintf(&child, "%s/%s", path, de->d_name) < 0) {
            rc = dv_errorf(err, DV_ENOMEM, "io: remove %s: out of memory", path);
            break;
        }
        rc = io_remove_tree(child, err);
        free(child);
        if (rc != DV_OK)
            break;
    }
    closedir(d);
    if (rc != DV_OK)
        return rc;
    if (io_rmdir(path) != 0 && errno != ENOENT)
        return dv_errorf(err, dv_code_from_errno(errno), "io: remove %s: rmdir: %s", path, strerror(errno));
    return DV_OK;
}

typedef struct ino_set {
    struct {
        dev_t dev;
        ino_t ino;
    } * v;
    size_t n, cap;
} ino_set;

/* 1 if (dev, ino) was already in the set (added otherwise). Linear: only
 * files with several links go in, and trees are small. */
static int ino_seen(ino_set *s, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].dev == dev && s->v[i].ino == ino)
            return 1;
    if (grow((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v) == 0) {
        s->v[s->n].dev = dev;
        s->v[s->n].ino = ino;
        s->n++;
    }
    return 0;
}

static uint64_t tree_size(const char *path, ino_set *seen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (S_ISREG(st.st_mode))
        return st.st_nlink > 1 && ino_seen(seen, st.st_dev, st.st_ino) ? 0 : (uint64_t)st.st_size;
    if (!S_ISDIR(st.st_mode))
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t sum = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *child;
        if (asprintf(&child, "%s/%s", path, de->d_name) < 0)
            break;
        sum += tree_size(child, seen);
        free(child);
    }
    closedir(d);
    return sum;
}

/* Sum of st_size of regular files under path (symlinks not followed); a
 * file hard-linked several times inside the tree counts once, so backups
 * made of links are not counted twice. XXX: st_size, not allocated blocks
 * (sparse files count their apparent size). */
uint64_t io_tree_size(const char *path)
{
    ino_set seen = {0};
    uint64_t sum = tree_size(path, &seen);
    free(seen.v);
    return sum;
}

uint64_t io_disk_free(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv) != 0)
        return 0;
    return (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

dv_code io_list_dir(const char *dir, char ***names, size_t *n_names, dv_err *err)
{
    int L;
    if (enter(&L))
        return dv_errorf(err, dv_code_from_errno(errno), "io: list %s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    leave(L); /* the listing below only reads */
    if (!d) {
        int e = errno;
        return dv_errorf(err, dv_code_from_errno(e), "io: list %s: %s", dir, strerror(e));
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *s = strdup(de->d_name);
        if (!s || grow((void **)&v, &cap, n + 1, sizeof *v) != 0) {
            free(s);
            closedir(d);
            io_list_free(v, n);
            return dv_errorf(err, DV_ENOMEM, "io: list %s: out of memory", dir);
        }
        v[n++] = s;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_str);
    *names = v;
    *n_names = n;
    return DV_OK;
}

void io_list_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ---- fault injection API ---------------------------------------------- */

void io_fault_arm(io_fault kind, uint64_t nth, int sticky)
{
    pthread_mutex_lock(&g_mu);
    ops_free();
    atomic_store(&g_calls, 0);
    atomic_store(&g_crashed, 0);
    atomic_store(&g_kind, (int)kind);
    atomic_store(&g_nth, nth);
    atomic_store(&g_sticky, sticky);
    atomic_store(&g_tracking, kind == IO_FAULT_CRASH);
    atomic_store(&g_on, 1);
    pthread_mutex_unlock(&g_mu);
}

void io_fault_disarm(void)
{
    pthread_mutex_lock(&g_mu);
    atomic_store(&g_on, 0);
    atomic_store(&g_tracking, 0);
    atomic_store(&g_crashed, 0);
    atomic_store(&g_kind, IO_FAULT_NONE);
    ops_free();
    pthread_mutex_unlock(&g_mu);
}

void io_crash_now(void)
{
    /* g_mu: tracked calls hold it for their whole duration, so this is a
     * clean cut between two calls. */
    pthread_mutex_lock(&g_mu);
    if (atomic_load(&g_kind) == IO_FAULT_CRASH) {
        atomic_store(&g_tracking, 0);
        atomic_store(&g_crashed, 1);
    }
    pthread_mutex_unlock(&g_mu);
}

uint64_t io_calls(void)
{
    return atomic_load(&g_calls);
}

int io_fault_active(void)
{
    return atomic_load(&g_on);
}

int io_crashed(void)
{
    return atomic_load(&g_crashed);
}

/* Cut/restore one inode's content (through fd) to what a power loss leaves. */
static void rewind_fd(const inode_ent *e, int fd, size_t torn)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return;
    uint64_t cur = (uint64_t)st.st_size, keep = e->synced_len;
    if (cur > keep)
        keep += (cur - keep) < torn ? (cur - keep) : torn;
    if (ftruncate(fd, (off_t)keep) != 0)
        return;
    for (size_t i = e->n_undo; i-- > 0;)
        if (pwrite_loop(fd, e->undo[i].data, e->undo[i].len, e->undo[i].off) != 0)
            return;
}

/* Recreate a stashed regular file at path, then rewind it like its inode. */
static void restore_stash(const ns_op *op, const char *path, size_t torn)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (pwrite_loop(fd, op->stash, op->stash_len, 0) == 0) {
        const inode_ent *e = op->stash_tracked ? ent_find(op->stash_dev, op->stash_ino) : NULL;
        if (e && e->dirty)
            rewind_fd(e, fd, torn);
    }
    close(fd);
}

/* Remove a tree without counting or tracking (used by the undo of mkdir). */
static void raw_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char *child;
            if (asprintf(&child, "%s/%s", path, de->d_name) < 0)
                break;
            raw_remove_tree(child);
            free(child);
        }
        closedir(d);
    }
    rmdir(path);
}

static int same_inode(const char *path, dev_t dev, ino_t ino)
{
    struct stat st;
    return lstat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

void io_crash_apply(size_t torn)
{
    pthread_mutex_lock(&g_mu);
    atomic_store(&g_tracking, 0);
    /* 1. File data: rewind every inode written since its last fsync. */
    for (size_t i = 0; i < g_n_ents; i++)
        if (g_ents[i].dirty)
            rewind_fd(&g_ents[i], g_ents[i].fd, torn);
    /* 2. Namespace: undo non-durable operations, newest first. */
    for (size_t i = g_n_ops; i-- > 0;) {
        ns_op *op = &g_ops[i];
        if (!op->pend_a && !op->pend_b)
            continue;
        switch (op->kind) {
        case OP_CREATE:
        case OP_LINK:
            if (same_inode(op->a, op->dev, op->ino))
                unlink(op->a);
            break;
        case OP_MKDIR:
            if (same_inode(op->a, op->dev, op->ino))
                raw_remove_tree(op->a);
            break;
        case OP_UNLINK:
            if (op->has_stash)
                restore_stash(op, op->a, torn);
            break;
        case OP_RMDIR:
            mkdir(op->a, 0755);
            break;
        case OP_RENAME:
            /* XXX: the rename is undone as a whole even if one of two
             * directories was fsynced; a kernel might persist half. */
            if (same_inode(op->b, op->dev, op->ino) && rename(op->b, op->a) == 0) {
                if (op->has_stash)
                    restore_stash(op, op->b, torn);
                else if (op->stash_dir)
                    mkdir(op->b, 0755);
            }
            break;
        }
    }
    ops_free();
    atomic_store(&g_on, 0);
    atomic_store(&g_crashed, 0);
    atomic_store(&g_kind, IO_FAULT_NONE);
    pthread_mutex_unlock(&g_mu);
}
