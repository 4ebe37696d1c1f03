/* fuzz_wal.c - libFuzzer target for WAL replay (wal_open over segment files
 * that may be torn, corrupt or hostile).
 *
 * Input layout:
 *   byte 0   flags: bit 0 fix checksums (header and every record that fits,
 *            so the fuzzer gets past them and reaches the sequence, length
 *            and torn-vs-corrupt logic), bit 1 open read-only, bit 2 split
 *            the rest into two segments, bit 3 with bit 0: also force each
 *            record's seq to the expected one
 *   byte 1   after_seq (the checkpointed seq, 0..255)
 *   byte 2-3 split offset (LE, modulo the rest) when bit 2 is set
 *   rest     segment bytes; a segment file is named after the first_seq in
 *            its header (bytes 16..23) when that is 1..2^20, else 1.
 *
 * Checked beyond "no crash, no sanitizer report, no leak":
 *  - an error sets a message and leaves *out alone;
 *  - read-only open never changes a byte of the directory;
 *  - after a successful writable open, appending one record, closing and
 *    reopening read-only replays exactly the records of the first replay
 *    plus the new one, with no torn tail left (a torn tail was cut). */
#define XXH_STATIC_LINKING_ONLY
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "wal.h"

static char root[256];   /* private temp dir, made once */
static char waldir[300]; /* root/wal, emptied before every input */
static int debug;        /* FUZZ_DEBUG set: print each outcome */

static void clear_dir(const char *dir);

static void remove_root(void)
{
    clear_dir(waldir);
    rmdir(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(root, sizeof root, "%s/dv-fuzz-wal-XXXXXX", base);
    if (!mkdtemp(root))
        abort();
    snprintf(waldir, sizeof waldir, "%s/wal", root);
    atexit(remove_root);
    debug = getenv("FUZZ_DEBUG") != NULL;
    return 0;
}

static void clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Hash of every file name and content in dir (order: readdir, summed). */
static uint64_t dir_hash(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t h = 0;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *fp = fopen(p, "rb");
        if (!fp)
            continue;
        uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        h += XXH3_64bits_withSeed(buf, n, XXH3_64bits(e->d_name, strlen(e->d_name)));
    }
    closedir(d);
    return h;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The format of src/wal.c (docs/format-wal.md): 32-byte segment header,
 * 21-byte record headers. Rewrites buf in place so checksums hold. */
static void fixup(uint8_t *buf, size_t size, int force_seq)
{
    if (size < 32)
        return;
    memcpy(buf, "DVWAL\0\0\0", 8);
    put32(buf + 8, 1);
    put32(buf + 12, 32);
    put64(buf + 24, XXH3_64bits(buf, 24));
    uint64_t want = get64(buf + 16);
    size_t off = 32;
    while (size - off >= 21) {
        uint8_t *h = buf + off;
        uint32_t len = get32(h);
        if (len > size - off - 21)
            break; /* left torn */
        if (force_seq)
            put64(h + 12, want);
        XXH3_state_t s;
        XXH3_INITSTATE(&s);
        XXH3_64bits_reset(&s);
        XXH3_64bits_update(&s, h + 12, 9);
        XXH3_64bits_update(&s, h, 4);
        XXH3_64bits_update(&s, h + 21, len);
        put64(h + 4, XXH3_64bits_digest(&s));
        off += 21 + (size_t)len;
        want = get64(h + 12) + 1;
    }
}

static int write_segment(uint8_t *buf, size_t size, int fix, int force_seq, uint64_t *first_out)
{
    if (fix)
        fixup(buf, size, force_seq);
    uint64_t first = size >= 24 ? get64(buf + 16) : 1;
    if (first == 0 || first > (1u << 20))
        first = 1;
    char p[400];
    snprintf(p, sizeof p, "%s/%020llu.log", waldir, (unsigned long long)first);
    FILE *fp = fopen(p, "wb");
    if (!fp)
        abort();
    if (size && fwrite(buf, 1, size, fp) != size)
        abort();
    fclose(fp);
    *first_out = first;
    return 0;
}

/* Replay log: (seq, type, len, content hash) of every applied record. */
typedef struct rec {
    uint64_t seq, hash;
    uint32_t len;
    uint8_t type;
} rec;
typedef struct rlog {
    rec *r;
    size_t n, cap;
} rlog;

static dv_code collect(void *ctx, uint64_t seq, uint8_t type, const uint8_t *payload, size_t len, dv_err *err)
{
    (void)err;
    rlog *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->r = realloc(l->r, l->cap * sizeof *l->r);
        if (!l->r)
            abort();
    }
    rec *r = &l->r[l->n++];
    r->seq = seq;
    r->hash = XXH3_64bits(payload, len);
    r->len = (uint32_t)len;
    r->type = type;
    return DV_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    int fix = data[0] & 1, ro = (data[0] >> 1) & 1, two = (data[0] >> 2) & 1, force_seq = (data[0] >> 3) & 1;
    uint64_t after = data[1];
    size_t split = (size_t)data[2] | (size_t)data[3] << 8;
    const uint8_t *body = data + 4;
    size_t n = size - 4;

    clear_dir(waldir);
    if (mkdir(waldir, 0700) != 0)
        abort();
    uint8_t *copy = malloc(n ? n : 1);
    if (n)
        memcpy(copy, body, n);
    uint64_t first1 = 0, first2 = 0;
    if (two && n) {
        split %= n;
        write_segment(copy, split, fix, force_seq, &first1);
        /* Same name twice would overwrite: the second one wins then. */
        write_segment(copy + split, n - split, fix, force_seq, &first2);
    } else {
        write_segment(copy, n, fix, force_seq, &first1);
    }
    free(copy);

    uint64_t before = dir_hash(waldir);
    rlog l1 = {0}, l2 = {0};
    wal *w = (wal *)(uintptr_t)0x1;
    int64_t torn = -2;
    dv_err err = {0};
    dv_code rc = wal_open(waldir, DV_FSYNC_NEVER, 0, after, ro, collect, &l1, &torn, &w, &err);
    if (debug)
        fprintf(stderr, "fuzz_wal: ro=%d after=%llu: rc=%d torn=%lld records=%zu %s\n", ro, (unsigned long long)after,
                rc, (long long)torn, l1.n, rc ? err.msg : "");
    if (rc != DV_OK) {
        if (w != (wal *)(uintptr_t)0x1 || err.code != rc || !err.msg[0])
            abort();
        if (ro && dir_hash(waldir) != before)
            abort(); /* read-only must not touch the directory */
        goto out;
    }
    /* Records are applied in seq order, each after after_seq. */
    for (size_t i = 0; i < l1.n; i++)
        if (l1.r[i].seq <= after || (i && l1.r[i].seq != l1.r[i - 1].seq + 1))
            abort();
    if (ro) {
        if (dir_hash(waldir) != before)
            abort();
        wal_close(w, NULL);
        goto out;
    }
    static const char payload[] = "fuzz-appended";
    uint64_t seq = 0;
    if (wal_append(w, 7, payload, sizeof payload - 1, &seq, &err) != DV_OK)
        abort();
    if (seq <= after || (l1.n && seq <= l1.r[l1.n - 1].seq))
        abort();
    if (wal_last_seq(w) != seq)
        abort();
    if (wal_close(w, &err) != DV_OK)
        abort();
    collect(&l1, seq, 7, (const uint8_t *)payload, sizeof payload - 1, NULL);

    /* Reopen: the same records plus the new one, and no torn tail now. */
    w = NULL;
    torn = -2;
    if (wal_open(waldir, DV_FSYNC_NEVER, 0, after, 1, collect, &l2, &torn, &w, &err) != DV_OK) {
        fprintf(stderr, "fuzz_wal: reopen after append failed: %s\n", err.msg);
        abort();
    }
    wal_close(w, NULL);
    if (torn != -1 || l2.n != l1.n)
        abort();
    for (size_t i = 0; i < l1.n; i++)
        if (l1.r[i].seq != l2.r[i].seq || l1.r[i].hash != l2.r[i].hash || l1.r[i].len != l2.r[i].len ||
            l1.r[i].type != l2.r[i].type)
            abort();
out:
    free(l1.r);
    free(l2.r);
    clear_dir(waldir);
    return 0;
}
