/* tfs.h - file-system helpers shared by the unit tests that build data
 * directories and damage their files (test_coll, test_db, test_import,
 * test_open, test_recovery, test_snap). static inline: a test that uses
 * only some of them compiles without unused-function warnings. */
#ifndef DV_TFS_H
#define DV_TFS_H
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int tfs_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* rm -rf p (no symlinks followed). */
static inline void rm_rf(const char *p)
{
    nftw(p, tfs_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Path of the (last listed) file in d/collections/coll/ whose name starts
 * with prefix, into out; 0, or -1 if there is none. */
static inline int find_file(const char *d, const char *coll, const char *prefix, char *out, size_t cap)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/collections/%s", d, coll);
    DIR *dd = opendir(dir);
    if (!dd)
        return -1;
    struct dirent *de;
    int found = -1;
    while ((de = readdir(dd))) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(out, cap, "%s/%.200s", dir, de->d_name);
            found = 0;
        }
    }
    closedir(dd);
    return found;
}

static inline off_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

/* XOR the byte at off of file p with mask (in place; aborts on I/O error:
 * a test that cannot damage its file must not pass). */
static inline void flip_bits(const char *p, off_t off, unsigned char mask)
{
    int fd = open(p, O_RDWR);
    unsigned char b;
    if (fd < 0 || pread(fd, &b, 1, off) != 1)
        abort();
    b ^= mask;
    if (pwrite(fd, &b, 1, off) != 1)
        abort();
    close(fd);
}
#endif
