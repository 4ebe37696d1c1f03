/* test_io.c - io pass-through, atomic replace, fault injection, crash model. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "t.h"
#include "io.h"

/* A fresh empty directory under /tmp for one test. */
static void fresh_dir(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/dv_test_io_%d_%s", (int)getpid(), tag);
    io_remove_tree(buf, NULL);
    mkdir(buf, 0755);
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

TEST(pwrite_then_pread_round_trips_and_short_read_at_eof)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "rw");
    snprintf(f, sizeof f, "%s/a", d);
    int fd = io_open(f, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_pwrite_full(fd, "hello world", 11, 0) == 0);
    CHECK(io_pwrite_full(fd, "W", 1, 6) == 0);
    char buf[32] = {0};
    CHECK(io_pread_full(fd, buf, sizeof buf, 0) == 11);
    CHECK(memcmp(buf, "hello World", 11) == 0);
    uint64_t sz;
    CHECK(io_fstat_size(fd, &sz) == 0 && sz == 11);
    CHECK(io_ftruncate(fd, 5) == 0);
    CHECK(io_fstat_size(fd, &sz) == 0 && sz == 5);
    CHECK(io_write_full(fd, "abc", 3) == 0); /* offset 0: never moved by pwrite */
    CHECK(io_pread_full(fd, buf, 5, 0) == 5 && memcmp(buf, "abclo", 5) == 0);
    CHECK(io_fsync(fd) == 0);
    CHECK(io_close(fd) == 0);
    io_remove_tree(d, NULL);
}

TEST(namespace_calls_pass_through)
{
    char d[256], a[300], b[300], c[300], sub[300];
    fresh_dir(d, sizeof d, "ns");
    snprintf(a, sizeof a, "%s/a", d);
    snprintf(b, sizeof b, "%s/b", d);
    snprintf(c, sizeof c, "%s/c", d);
    snprintf(sub, sizeof sub, "%s/sub", d);
    int fd = io_open(a, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_write_full(fd, "x", 1) == 0);
    io_close(fd);
    CHECK(io_link(a, b) == 0);
    CHECK(io_renameat_noreplace(a, b) == -1 && errno == EEXIST);
    CHECK(io_renameat_noreplace(a, c) == 0);
    CHECK(!exists(a) && exists(c));
    CHECK(io_unlink(b) == 0 && !exists(b)); /* b and c were one inode: rename would be a no-op */
    CHECK(io_unlink(b) == -1 && errno == ENOENT);
    CHECK(io_rename(c, b) == 0 && !exists(c) && exists(b));
    CHECK(io_mkdir(sub, 0755) == 0);
    CHECK(io_fsync_dir(sub) == 0);
    CHECK(io_rmdir(sub) == 0 && !exists(sub));
    CHECK(io_fsync_dir(d) == 0);
    io_remove_tree(d, NULL);
}

TEST(read_file_reports_absent_as_not_found)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    dv_err e = {0};
    CHECK(io_read_file("/tmp/dv_test_io_definitely_absent_file", &buf, &len, &e) == DV_ENOTFOUND);
    CHECK(buf == NULL);
}

TEST(atomic_replace_writes_new_content_and_leaves_no_temp)
{
    char d[256], f[300], t[300];
    fresh_dir(d, sizeof d, "atomic");
    snprintf(f, sizeof f, "%s/m.json", d);
    snprintf(t, sizeof t, "%s/m.json.tmp", d);
    dv_err e = {0};
    CHECK(io_write_file_atomic(d, "m.json", "old", 3, &e) == DV_OK);
    CHECK(io_write_file_atomic(d, "m.json", "newer", 5, &e) == DV_OK);
    uint8_t *buf;
    size_t len;
    CHECK(io_read_file(f, &buf, &len, &e) == DV_OK);
    CHECK(len == 5 && memcmp(buf, "newer", 5) == 0);
    free(buf);
    CHECK(!exists(t));
    io_remove_tree(d, NULL);
}

TEST(atomic_replace_failing_at_any_call_keeps_old_content)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "atomicfail");
    snprintf(f, sizeof f, "%s/m", d);
    dv_err e = {0};
    CHECK(io_write_file_atomic(d, "m", "old", 3, &e) == DV_OK);
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    CHECK(io_write_file_atomic(d, "m", "new!", 4, &e) == DV_OK);
    uint64_t n = io_calls();
    io_fault_disarm();
    CHECK(n >= 5); /* open, write, fsync, rename, fsync dir */
    for (uint64_t k = 1; k <= n; k++) {
        CHECK(io_write_file_atomic(d, "m", "old", 3, &e) == DV_OK);
        io_fault_arm(IO_FAULT_EIO, k, 0);
        dv_code rc = io_write_file_atomic(d, "m", "new!", 4, &e);
        io_fault_disarm();
        uint8_t *buf;
        size_t len;
        CHECK(io_read_file(f, &buf, &len, &e) == DV_OK);
        if (rc == DV_OK) {
            CHECKF(len == 4 && memcmp(buf, "new!", 4) == 0, "k=%llu", (unsigned long long)k);
        } else {
            CHECK(rc == DV_EIO);
            /* The last step (fsync dir) fails after the rename: new content
             * is in place but not known durable; earlier failures keep old. */
            CHECKF((len == 3 && memcmp(buf, "old", 3) == 0) || (k == n && len == 4), "k=%llu len=%zu",
                   (unsigned long long)k, len);
        }
        free(buf);
    }
    io_remove_tree(d, NULL);
}

TEST(mkdirs_creates_nested_and_accepts_existing)
{
    char d[256], p[400], f[450];
    fresh_dir(d, sizeof d, "mkdirs");
    snprintf(p, sizeof p, "%s/a/b/c", d);
    dv_err e = {0};
    CHECK(io_mkdirs(p, &e) == DV_OK);
    CHECK(io_mkdirs(p, &e) == DV_OK);
    snprintf(f, sizeof f, "%s/f", p);
    int fd = io_open(f, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_write_full(fd, "12345", 5) == 0);
    io_close(fd);
    CHECK(io_mkdirs(f, &e) == DV_EEXIST);
    CHECK(io_tree_size(d) == 5);
    char l[500];
    snprintf(l, sizeof l, "%s/link", d);
    CHECK(io_link(f, l) == 0);
    CHECK(io_tree_size(d) == 5); /* one inode, two names: counted once */
    CHECK(io_tree_size(l) == 5);
    CHECK(io_disk_free(d) > 0);
    CHECK(io_remove_tree(d, &e) == DV_OK);
    CHECK(!exists(d));
    CHECK(io_remove_tree(d, &e) == DV_OK);
}

TEST(list_dir_is_sorted)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "list");
    const char *names[] = {"c", "a", "b"};
    for (int i = 0; i < 3; i++) {
        snprintf(f, sizeof f, "%s/%s", d, names[i]);
        int fd = io_open(f, O_WRONLY | O_CREAT, 0644);
        CHECK(fd >= 0);
        io_close(fd);
    }
    char **v;
    size_t n;
    CHECK(io_list_dir(d, &v, &n, NULL) == DV_OK);
    CHECK(n == 3 && !strcmp(v[0], "a") && !strcmp(v[1], "b") && !strcmp(v[2], "c"));
    io_list_free(v, n);
    io_remove_tree(d, NULL);
}

TEST(eio_at_call_n_fails_only_that_call)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "eio");
    snprintf(f, sizeof f, "%s/a", d);
    int fd = io_open(f, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);
    io_fault_arm(IO_FAULT_EIO, 3, 0);
    CHECK(io_pwrite_full(fd, "a", 1, 0) == 0);
    CHECK(io_pwrite_full(fd, "b", 1, 1) == 0);
    errno = 0;
    CHECK(io_fsync(fd) == -1 && errno == EIO);
    CHECK(io_calls() == 3);
    CHECK(io_pwrite_full(fd, "c", 1, 2) == 0);
    CHECK(io_fsync(fd) == 0);
    CHECK(!io_crashed());
    io_fault_disarm();
    io_close(fd);
    CHECK(file_size(f) == 3);
    io_remove_tree(d, NULL);
}

TEST(enospc_sticky_fails_every_later_call_until_disarm)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "nospc");
    snprintf(f, sizeof f, "%s/a", d);
    int fd = io_open(f, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);
    io_fault_arm(IO_FAULT_ENOSPC, 2, 1);
    CHECK(io_write_full(fd, "a", 1) == 0);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        CHECK(io_write_full(fd, "b", 1) == -1 && errno == ENOSPC);
    }
    dv_err e = {0};
    CHECK(io_write_file_atomic(d, "x", "y", 1, &e) == DV_ENOSPC);
    CHECK(strstr(e.msg, "x") != NULL);
    io_fault_disarm();
    CHECK(io_write_full(fd, "c", 1) == 0);
    io_close(fd);
    CHECK(file_size(f) == 2);
    io_remove_tree(d, NULL);
}

TEST(unarmed_calls_are_not_counted)
{
    char d[256];
    fresh_dir(d, sizeof d, "count");
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    CHECK(io_fsync_dir(d) == 0);
    CHECK(io_fsync_dir(d) == 0);
    CHECK(io_calls() == 2);
    io_fault_disarm();
    CHECK(io_fsync_dir(d) == 0);
    CHECK(io_calls() == 2);
    io_remove_tree(d, NULL);
}

TEST(crash_keeps_only_fsynced_data)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "crash1");
    snprintf(f, sizeof f, "%s/a", d);
    int fd = io_open(f, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_fsync_dir(d) == 0);
    io_fault_arm(IO_FAULT_CRASH, 5, 0);
    CHECK(io_pwrite_full(fd, "synced", 6, 0) == 0);
    CHECK(io_fsync(fd) == 0);
    CHECK(io_pwrite_full(fd, "-lost-data", 10, 6) == 0);
    CHECK(io_pwrite_full(fd, "SY", 2, 0) == 0); /* overwrite inside the synced part */
    errno = 0;
    CHECK(io_fsync(fd) == -1 && errno == EIO); /* call 5: power lost */
    CHECK(io_crashed());
    CHECK(io_pwrite_full(fd, "x", 1, 0) == -1 && errno == EIO);
    CHECK(io_open(f, O_RDONLY, 0) == -1);
    io_close(fd);
    io_crash_apply(0);
    CHECK(!io_crashed());
    uint8_t *buf;
    size_t len;
    CHECK(io_read_file(f, &buf, &len, NULL) == DV_OK);
    CHECKF(len == 6 && memcmp(buf, "synced", 6) == 0, "len=%zu", len);
    free(buf);
    io_remove_tree(d, NULL);
}

TEST(crash_with_torn_keeps_that_many_unsynced_bytes)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "crash2");
    snprintf(f, sizeof f, "%s/a", d);
    int fd = io_open(f, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_pwrite_full(fd, "base", 4, 0) == 0);
    CHECK(io_fsync(fd) == 0);
    CHECK(io_fsync_dir(d) == 0);
    io_fault_arm(IO_FAULT_CRASH, 3, 0);
    CHECK(io_write_full(fd, "ABCDEFGH", 8) == 0); /* fd offset is 0: overwrites base + appends */
    CHECK(io_ftruncate(fd, 2) == 0);             /* cuts synced data: must come back */
    CHECK(io_pwrite_full(fd, "xy", 2, 8) == -1);
    io_close(fd);
    io_crash_apply(3);
    uint8_t *buf;
    size_t len;
    CHECK(io_read_file(f, &buf, &len, NULL) == DV_OK);
    /* file had 2 bytes at the crash (< synced 4): restored to exactly "base" */
    CHECKF(len == 4 && memcmp(buf, "base", 4) == 0, "len=%zu", len);
    free(buf);

    fd = io_open(f, O_RDWR, 0);
    CHECK(fd >= 0);
    io_fault_arm(IO_FAULT_CRASH, 2, 0);
    CHECK(io_pwrite_full(fd, "0123456789", 10, 4) == 0);
    CHECK(io_fsync(fd) == -1);
    io_close(fd);
    io_crash_apply(3);
    CHECK(io_read_file(f, &buf, &len, NULL) == DV_OK);
    CHECKF(len == 7 && memcmp(buf, "base012", 7) == 0, "len=%zu", len);
    free(buf);
    io_remove_tree(d, NULL);
}

TEST(crash_undoes_unsynced_create_but_keeps_dir_synced_create)
{
    char d[256], a[300], b[300], sub[300], sf[350];
    fresh_dir(d, sizeof d, "crash3");
    snprintf(a, sizeof a, "%s/a", d);
    snprintf(b, sizeof b, "%s/b", d);
    snprintf(sub, sizeof sub, "%s/sub", d);
    snprintf(sf, sizeof sf, "%s/f", sub);
    io_fault_arm(IO_FAULT_CRASH, 100, 0);
    int fd = io_open(a, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_write_full(fd, "aa", 2) == 0);
    CHECK(io_fsync(fd) == 0);
    io_close(fd);
    CHECK(io_fsync_dir(d) == 0); /* a is durable */
    fd = io_open(b, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_write_full(fd, "bb", 2) == 0);
    CHECK(io_fsync(fd) == 0); /* data synced, but no dir fsync: b may vanish */
    io_close(fd);
    CHECK(io_mkdir(sub, 0755) == 0);
    fd = io_open(sf, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    io_close(fd);
    CHECK(io_fsync_dir(sub) == 0); /* f durable in sub, but sub itself is not */
    CHECK(io_crashed() == 0);
    io_crash_apply(0);
    CHECK(exists(a) && file_size(a) == 2);
    CHECK(!exists(b));
    CHECK(!exists(sub));
    io_remove_tree(d, NULL);
}

TEST(crash_undoes_unsynced_rename_and_unlink)
{
    char d[256], a[300], b[300], c[300];
    fresh_dir(d, sizeof d, "crash4");
    snprintf(a, sizeof a, "%s/a", d);
    snprintf(b, sizeof b, "%s/b", d);
    snprintf(c, sizeof c, "%s/c", d);
    dv_err e = {0};
    CHECK(io_write_file_atomic(d, "a", "AAA", 3, &e) == DV_OK);
    CHECK(io_write_file_atomic(d, "c", "CC", 2, &e) == DV_OK);
    io_fault_arm(IO_FAULT_CRASH, 1000, 0);
    /* Replace a by a new file via rename, without fsyncing the dir. */
    int fd = io_open(b, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(io_write_full(fd, "BBBB", 4) == 0);
    CHECK(io_fsync(fd) == 0);
    io_close(fd);
    CHECK(io_rename(b, a) == 0);
    CHECK(io_unlink(c) == 0);
    CHECK(file_size(a) == 4 && !exists(b) && !exists(c));
    io_crash_apply(0);
    uint8_t *buf;
    size_t len;
    CHECK(io_read_file(a, &buf, &len, NULL) == DV_OK);
    CHECKF(len == 3 && memcmp(buf, "AAA", 3) == 0, "len=%zu", len);
    free(buf);
    CHECK(io_read_file(c, &buf, &len, NULL) == DV_OK);
    CHECK(len == 2 && memcmp(buf, "CC", 2) == 0);
    free(buf);
    CHECK(!exists(b)); /* b's creation was not durable either */

    /* Same again with the dir fsync: everything sticks. */
    io_fault_arm(IO_FAULT_CRASH, 1000, 0);
    CHECK(io_write_file_atomic(d, "a", "NEW", 3, &e) == DV_OK);
    CHECK(io_unlink(c) == 0);
    CHECK(io_fsync_dir(d) == 0);
    io_crash_apply(0);
    CHECK(io_read_file(a, &buf, &len, NULL) == DV_OK);
    CHECK(len == 3 && memcmp(buf, "NEW", 3) == 0);
    free(buf);
    CHECK(!exists(c));
    io_remove_tree(d, NULL);
}

TEST(crash_at_every_call_of_atomic_replace_leaves_old_or_new)
{
    char d[256], f[300];
    fresh_dir(d, sizeof d, "crash5");
    snprintf(f, sizeof f, "%s/m", d);
    dv_err e = {0};
    CHECK(io_write_file_atomic(d, "m", "old", 3, &e) == DV_OK);
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    CHECK(io_write_file_atomic(d, "m", "new!", 4, &e) == DV_OK);
    uint64_t n = io_calls();
    io_fault_disarm();
    for (uint64_t k = 1; k <= n + 1; k++) {
        CHECK(io_write_file_atomic(d, "m", "old", 3, &e) == DV_OK);
        io_fault_arm(IO_FAULT_CRASH, k, 0);
        dv_code rc = io_write_file_atomic(d, "m", "new!", 4, &e);
        io_crash_apply(k % 3); /* vary the torn amount */
        uint8_t *buf;
        size_t len;
        CHECK(io_read_file(f, &buf, &len, &e) == DV_OK);
        int is_old = len == 3 && !memcmp(buf, "old", 3), is_new = len == 4 && !memcmp(buf, "new!", 4);
        free(buf);
        CHECKF(is_old || is_new, "k=%llu len=%zu", (unsigned long long)k, len);
        if (rc == DV_OK)
            CHECKF(is_new, "acknowledged replace lost at k=%llu", (unsigned long long)k);
    }
    io_remove_tree(d, NULL);
}

TEST(crash_restores_unlinked_file_with_only_its_synced_data)
{
    char d[256], a[300];
    fresh_dir(d, sizeof d, "crash6");
    snprintf(a, sizeof a, "%s/a", d);
    dv_err e = {0};
    CHECK(io_write_file_atomic(d, "a", "durable", 7, &e) == DV_OK);
    io_fault_arm(IO_FAULT_CRASH, 1000, 0);
    int fd = io_open(a, O_RDWR, 0);
    CHECK(fd >= 0);
    CHECK(io_pwrite_full(fd, "-unsynced", 9, 7) == 0);
    CHECK(io_pwrite_full(fd, "D", 1, 0) == 0);
    io_close(fd);
    CHECK(io_unlink(a) == 0); /* never made durable by a dir fsync */
    io_crash_apply(0);
    uint8_t *buf;
    size_t len;
    CHECK(io_read_file(a, &buf, &len, NULL) == DV_OK);
    CHECKF(len == 7 && memcmp(buf, "durable", 7) == 0, "len=%zu", len);
    free(buf);
    io_remove_tree(d, NULL);
}

TEST(crash_keeps_cross_directory_rename_only_when_both_dirs_synced)
{
    char d[256], x[300], y[300], xf[350], yf[350];
    fresh_dir(d, sizeof d, "crash7");
    snprintf(x, sizeof x, "%s/x", d);
    snprintf(y, sizeof y, "%s/y", d);
    snprintf(xf, sizeof xf, "%s/f", x);
    snprintf(yf, sizeof yf, "%s/f", y);
    dv_err e = {0};
    CHECK(io_mkdirs(x, &e) == DV_OK && io_mkdirs(y, &e) == DV_OK);
    CHECK(io_write_file_atomic(x, "f", "F", 1, &e) == DV_OK);
    for (int mode = 0; mode < 3; mode++) {
        io_fault_arm(IO_FAULT_CRASH, 1000, 0);
        CHECK(io_rename(xf, yf) == 0);
        if (mode >= 1)
            CHECK(io_fsync_dir(y) == 0);
        if (mode >= 2)
            CHECK(io_fsync_dir(x) == 0);
        io_crash_apply(0);
        if (mode < 2) {
            CHECKF(exists(xf) && !exists(yf), "mode %d", mode);
        } else {
            CHECK(!exists(xf) && exists(yf));
        }
    }
    io_remove_tree(d, NULL);
}

T_MAIN()
