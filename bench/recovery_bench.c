/* recovery_bench.c - issue 5's recovery benchmark through the public API
 * (include/dvecdb.h, linked with build/libdvecdb.a). bench/section_recovery.sh
 * runs it; the data is bench/recovery_bench.h's clustered float32 set.
 *
 *   recovery_bench gen DIR N DIM
 *       DIR/vectors.bin in the ORIGINAL d-vecDB format (docs/recovery.md):
 *       per record u64 16, UUID, u64 dim, dim x f32, tag 1 and a two-entry
 *       map {"title": "incident <i>", "severity": 1..5}, the file pre-sized
 *       with zeros to 1 MiB doubled; DIR/index.bin 4096 zero bytes.
 *   recovery_bench run DATA ROOT ORPHAN N DIM REPS
 *       a database in DATA with import root ROOT: time reading ORPHAN's
 *       vectors.bin, import it (phases from the progress callback), then REPS
 *       x (soft delete, restore from the trash), a backup (time, logical size,
 *       blocks not shared with the live collection), its verification.
 *       Checks: imported == N, nothing skipped, sampled points bit-exact with
 *       their metadata, the collection identical (digest over ids, vectors,
 *       metadata) after every restore, the backup verifies with N vectors.
 *       Prints one JSON object; exits 1 when a check fails.
 *   recovery_bench restore DATA NAME REPS
 *       on a data dir `run` left behind: REPS x (soft delete, restore from
 *       the trash), then REPS x (close the database, open it again), wall
 *       and CPU seconds of each; the collection must stay identical
 *       (digest). Compares engine builds on the same files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "dvecdb.h"
#include "recovery_bench.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (every thread): unlike wall time, not
 * inflated by other jobs on a shared machine. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, const dv_err *e)
{
    fprintf(stderr, "recovery_bench: %s%s%s\n", what, e ? ": " : "", e ? e->msg : "");
    exit(1);
}

static int failed;
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "recovery_bench: check failed: " __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                                                       \
            failed = 1;                                                                                                \
        }                                                                                                              \
    } while (0)

/* ---- gen ------------------------------------------------------------------- */

static void put_u64(FILE *f, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    fwrite(b, 1, 8, f);
}

static void put_str(FILE *f, const char *s)
{
    put_u64(f, strlen(s));
    fwrite(s, 1, strlen(s), f);
}

static int gen(const char *dir, uint64_t n, uint32_t dim)
{
    char path[4096];
    double t0 = now_s();
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/vectors.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        die(path, NULL);
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    float *v = malloc((size_t)dim * sizeof(float));
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t u[16];
        char us[37], title[32];
        rb_uuid(RB_SEED, i, u, us);
        rb_point(RB_SEED, i, dim, v);
        put_u64(f, 16);
        fwrite(u, 1, 16, f);
        put_u64(f, dim);
        fwrite(v, sizeof(float), dim, f); /* little-endian host, as the original */
        fputc(1, f);
        put_u64(f, 2);
        snprintf(title, sizeof title, "incident %llu", (unsigned long long)i);
        put_str(f, "title");
        put_str(f, title);
        put_str(f, "severity");
        put_u64(f, 1 + i % 5);
        bytes += 8 + 16 + 8 + 4ull * dim + 1 + 8 + 8 + 5 + 8 + strlen(title) + 8 + 8 + 8;
    }
    free(v);
    uint64_t size = 1 << 20;
    while (size < bytes)
        size *= 2;
    if (fflush(f) != 0 || ftruncate(fileno(f), (off_t)size) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
        die("writing vectors.bin", NULL);
    snprintf(path, sizeof path, "%s/index.bin", dir);
    f = fopen(path, "wb");
    if (!f || ftruncate(fileno(f), 4096) != 0 || fclose(f) != 0)
        die("writing index.bin", NULL);
    printf("{\"what\":\"gen\",\"n\":%llu,\"dim\":%u,\"data_bytes\":%llu,\"file_bytes\":%llu,\"seconds\":%.3f}\n",
           (unsigned long long)n, dim, (unsigned long long)bytes, (unsigned long long)size, now_s() - t0);
    return 0;
}

/* ---- run ------------------------------------------------------------------- */

/* Order-independent digest of a collection: sum over points of XXH3(id,
 * vector bytes, metadata text). */
static uint64_t digest(dv_db *db, const char *name, uint64_t *count)
{
    dv_coll *c = NULL;
    dv_err e = {0};
    if (dv_coll_open(db, name, &c, &e) != DV_OK)
        die("open for digest", &e);
    uint64_t h = 0;
    *count = 0;
    XXH3_state_t *st = XXH3_createState();
    for (uint64_t off = 0;;) {
        dv_result *r = NULL;
        if (dv_coll_scroll(c, off, 1000, 1, &r, &e) != DV_OK)
            die("scroll", &e);
        for (size_t i = 0; i < r->n; i++) {
            XXH3_64bits_reset(st);
            XXH3_64bits_update(st, r->hits[i].id, strlen(r->hits[i].id) + 1);
            XXH3_64bits_update(st, r->hits[i].vector, r->dim * sizeof(float));
            if (r->hits[i].metadata)
                XXH3_64bits_update(st, r->hits[i].metadata, r->hits[i].metadata_len);
            h += XXH3_64bits_digest(st);
        }
        size_t got = r->n;
        dv_result_free(r);
        *count += got;
        off += got;
        if (got < 1000)
            break;
    }
    XXH3_freeState(st);
    dv_coll_close(c);
    return h;
}

/* Sampled points come back bit-exact under their UUID with their metadata. */
static void check_samples(dv_db *db, const char *name, uint64_t n, uint32_t dim)
{
    dv_coll *c = NULL;
    dv_err e = {0};
    if (dv_coll_open(db, name, &c, &e) != DV_OK)
        die("open for samples", &e);
    float *v = malloc((size_t)dim * sizeof(float));
    uint64_t picks[] = {0, n / 3, n / 2, n - 1};
    for (size_t k = 0; k < 4; k++) {
        uint8_t u[16];
        char us[37], title[48];
        rb_uuid(RB_SEED, picks[k], u, us);
        rb_point(RB_SEED, picks[k], dim, v);
        dv_record *rec = NULL;
        if (dv_coll_get(c, us, &rec, &e) != DV_OK) {
            CHECK(0, "point %llu (%s) missing: %s", (unsigned long long)picks[k], us, e.msg);
            continue;
        }
        snprintf(title, sizeof title, "\"title\":\"incident %llu\"", (unsigned long long)picks[k]);
        CHECK(rec->dim == dim && memcmp(rec->vector, v, (size_t)dim * sizeof(float)) == 0,
              "point %llu: vector differs", (unsigned long long)picks[k]);
        CHECK(rec->metadata && strstr(rec->metadata, title) && strstr(rec->metadata, "\"severity\":"),
              "point %llu: metadata %s", (unsigned long long)picks[k], rec->metadata ? rec->metadata : "(none)");
        dv_record_free(rec);
    }
    free(v);
    dv_coll_close(c);
}

/* Bytes of blocks a backup holds on its own: files not hard-linked
 * elsewhere (link count 1), plus directories. */
static uint64_t own_blocks(const char *dir)
{
    uint64_t b = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat st;
    if (!d)
        return 0;
    if (stat(dir, &st) == 0)
        b += (uint64_t)st.st_blocks * 512;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            b += own_blocks(p);
        else if (st.st_nlink == 1)
            b += (uint64_t)st.st_blocks * 512;
    }
    closedir(d);
    return b;
}

static double phase_t[8], phase_cpu[8];
static const char *phase_names[] = {"read", "write", "index", "index_done", "commit"};
static double t_import0, cpu_import0;

static int on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    (void)ctx;
    double t = now_s() - t_import0, c = cpu_s() - cpu_import0;
    for (int i = 0; i < 5; i++)
        if (!strcmp(phase, phase_names[i]) && phase_t[i] < 0) {
            phase_t[i] = t;
            phase_cpu[i] = c;
        }
    if (!strcmp(phase, "index") && done == total && done > 0) {
        phase_t[3] = t;
        phase_cpu[3] = c;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run(const char *data, const char *root, const char *orphan, uint64_t n, uint32_t dim, int reps)
{
    const char *roots[] = {root};
    dv_db_options o;
    dv_db_options_init(&o);
    o.import_roots = roots;
    o.n_import_roots = 1;
    dv_db *db = NULL;
    dv_err e = {0};
    if (dv_db_open(data, &o, &db, &e) != DV_OK)
        die("open", &e);

    /* reading the orphan alone (page cache as warm as for the import) */
    char path[4096];
    snprintf(path, sizeof path, "%s/vectors.bin", orphan);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path, NULL);
    char *buf = malloc(1 << 20);
    uint64_t fbytes = 0, xs = 0;
    double t0 = now_s(), c0 = cpu_s();
    for (ssize_t got; (got = read(fd, buf, 1 << 20)) > 0;) {
        fbytes += (uint64_t)got;
        xs += (uint8_t)buf[got - 1];
    }
    double t_read = now_s() - t0, cpu_read = cpu_s() - c0;
    close(fd);
    free(buf);

    /* import */
    for (int i = 0; i < 8; i++)
        phase_t[i] = -1;
    dv_import_opts io;
    memset(&io, 0, sizeof io);
    io.path = orphan;
    io.collection_name = "bench";
    io.dim = dim;
    io.has_metric = 1;
    io.metric = DV_METRIC_EUCLIDEAN;
    io.vtype = DV_VTYPE_F32;
    io.progress = on_progress;
    dv_import_report rep;
    t_import0 = now_s();
    cpu_import0 = cpu_s();
    if (dv_import(db, &io, &rep, &e) != DV_OK)
        die("import", &e);
    double t_import = now_s() - t_import0, cpu_import = cpu_s() - cpu_import0;
    CHECK(rep.imported == n && rep.skipped == 0, "imported %llu skipped %llu of %llu",
          (unsigned long long)rep.imported, (unsigned long long)rep.skipped, (unsigned long long)n);
    check_samples(db, "bench", n, dim);
    uint64_t cnt0, d0 = digest(db, "bench", &cnt0);
    CHECK(cnt0 == n, "collection holds %llu points, expected %llu", (unsigned long long)cnt0, (unsigned long long)n);
    dv_coll *c = NULL;
    dv_coll_info info;
    if (dv_coll_open(db, "bench", &c, &e) != DV_OK || dv_coll_info_get(c, &info, &e) != DV_OK)
        die("info", &e);
    dv_coll_close(c);

    /* soft delete and restore from the trash, reps times */
    double t_drop[16], t_rest[16];
    if (reps > 16)
        reps = 16;
    for (int r = 0; r < reps; r++) {
        dv_trash_entry te;
        t0 = now_s();
        if (dv_coll_drop(db, "bench", &te, &e) != DV_OK)
            die("drop", &e);
        t_drop[r] = now_s() - t0;
        CHECK(te.vector_count == n, "trash entry says %llu vectors", (unsigned long long)te.vector_count);
        dv_restore_opts ro;
        memset(&ro, 0, sizeof ro);
        ro.source = DV_RESTORE_TRASH;
        dv_coll_info ri;
        t0 = now_s();
        if (dv_restore(db, "bench", &ro, &ri, &e) != DV_OK)
            die("restore", &e);
        t_rest[r] = now_s() - t0;
        CHECK(ri.n_vectors == n, "restored %llu vectors", (unsigned long long)ri.n_vectors);
    }
    uint64_t cnt1, d1 = digest(db, "bench", &cnt1);
    CHECK(cnt1 == n && d1 == d0, "restored collection differs (%llu points, digest %016llx vs %016llx)",
          (unsigned long long)cnt1, (unsigned long long)d1, (unsigned long long)d0);

    /* backup: time, logical size, blocks of its own */
    dv_backup_info bi;
    t0 = now_s();
    if (dv_backup_create(db, "bench", "manual", &bi, &e) != DV_OK)
        die("backup", &e);
    double t_backup = now_s() - t0;
    CHECK(bi.vector_count == n, "backup says %llu vectors", (unsigned long long)bi.vector_count);
    char bdir[4096];
    snprintf(bdir, sizeof bdir, "%s/.backups/bench/%s", data, bi.backup_id);
    uint64_t own = own_blocks(bdir);
    dv_backup_info vi;
    t0 = now_s();
    dv_code vrc = dv_backup_verify(db, "bench", bi.backup_id, &vi, &e);
    double t_verify = now_s() - t0;
    CHECK(vrc == DV_OK && vi.vector_count == n, "verify: %s", e.msg);
    if (dv_db_close(db, &e) != DV_OK)
        die("close", &e);

    qsort(t_drop, (size_t)reps, sizeof(double), cmp_d);
    qsort(t_rest, (size_t)reps, sizeof(double), cmp_d);
    printf("{\"what\":\"recovery\",\"n\":%llu,\"dim\":%u,\"file_bytes\":%llu,\"read_s\":%.4f,"
           "\"read_cpu_s\":%.4f,"
           "\"import\":{\"seconds\":%.3f,\"read_decode_s\":%.3f,\"durable_s\":%.3f,\"index_s\":%.3f,"
           "\"place_s\":%.3f,\"imported\":%llu,\"skipped\":%llu,\"bytes_scanned\":%llu},"
           "\"import_cpu\":{\"seconds\":%.3f,\"read_decode_s\":%.3f,\"durable_s\":%.3f,\"index_s\":%.3f},"
           "\"collection_disk_bytes\":%llu,\"reps\":%d,",
           (unsigned long long)n, dim, (unsigned long long)fbytes, t_read, cpu_read, t_import, phase_t[1],
           phase_t[2], phase_t[3] - phase_t[2], t_import - phase_t[3], (unsigned long long)rep.imported,
           (unsigned long long)rep.skipped, (unsigned long long)rep.bytes_scanned, cpu_import, phase_cpu[1],
           phase_cpu[2], phase_cpu[3] - phase_cpu[2], (unsigned long long)info.disk_bytes, reps);
    printf("\"drop_s\":[");
    for (int r = 0; r < reps; r++)
        printf("%s%.4f", r ? "," : "", t_drop[r]);
    printf("],\"restore_s\":[");
    for (int r = 0; r < reps; r++)
        printf("%s%.4f", r ? "," : "", t_rest[r]);
    printf("],\"backup_s\":%.4f,\"backup_size_bytes\":%llu,\"backup_own_bytes\":%llu,\"verify_s\":%.3f,"
           "\"identical_after_restore\":%s,\"checks_failed\":%d,\"xs\":%llu}\n",
           t_backup, (unsigned long long)bi.size_bytes, (unsigned long long)own, t_verify, d1 == d0 ? "true" : "false",
           failed, (unsigned long long)(xs & 1));
    return failed ? 1 : 0;
}

/* REPS x (soft delete, restore from the trash), then REPS x (close the
 * database, open it again: every collection loaded as at a server start),
 * on a data dir a `run` left behind; the collection must stay identical. */
static int restore_only(const char *data, const char *name, int reps)
{
    dv_db *db = NULL;
    dv_err e = {0};
    double t0 = now_s();
    if (dv_db_open(data, NULL, &db, &e) != DV_OK)
        die("open", &e);
    double t_first = now_s() - t0;
    uint64_t cnt0, d0 = digest(db, name, &cnt0);
    double t_rest[16], c_rest[16], t_open[16], c_open[16];
    if (reps > 16)
        reps = 16;
    for (int r = 0; r < reps; r++) {
        dv_trash_entry te;
        if (dv_coll_drop(db, name, &te, &e) != DV_OK)
            die("drop", &e);
        dv_restore_opts ro;
        memset(&ro, 0, sizeof ro);
        ro.source = DV_RESTORE_TRASH;
        t0 = now_s();
        double c0 = cpu_s();
        if (dv_restore(db, name, &ro, NULL, &e) != DV_OK)
            die("restore", &e);
        t_rest[r] = now_s() - t0;
        c_rest[r] = cpu_s() - c0;
    }
    for (int r = 0; r < reps; r++) {
        if (dv_db_close(db, &e) != DV_OK)
            die("close", &e);
        t0 = now_s();
        double c0 = cpu_s();
        if (dv_db_open(data, NULL, &db, &e) != DV_OK)
            die("reopen", &e);
        t_open[r] = now_s() - t0;
        c_open[r] = cpu_s() - c0;
    }
    uint64_t cnt1, d1 = digest(db, name, &cnt1);
    CHECK(cnt1 == cnt0 && d1 == d0, "collection differs after the restores and reopens");
    if (dv_db_close(db, &e) != DV_OK)
        die("close", &e);
    printf("{\"what\":\"restore_only\",\"n\":%llu,\"first_open_s\":%.4f,", (unsigned long long)cnt0, t_first);
    const char *keys[4] = {"restore_s", "restore_cpu_s", "reopen_s", "reopen_cpu_s"};
    double *vals[4] = {t_rest, c_rest, t_open, c_open};
    for (int k = 0; k < 4; k++) {
        printf("\"%s\":[", keys[k]);
        for (int r = 0; r < reps; r++)
            printf("%s%.4f", r ? "," : "", vals[k][r]);
        printf("],");
    }
    printf("\"identical\":%s,\"checks_failed\":%d}\n", d1 == d0 ? "true" : "false", failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "restore"))
        return restore_only(argv[2], argv[3], atoi(argv[4]));
    if (argc == 5 && !strcmp(argv[1], "gen"))
        return gen(argv[2], strtoull(argv[3], NULL, 10), (uint32_t)atoi(argv[4]));
    if (argc == 8 && !strcmp(argv[1], "run"))
        return run(argv[2], argv[3], argv[4], strtoull(argv[5], NULL, 10), (uint32_t)atoi(argv[6]), atoi(argv[7]));
    fprintf(stderr, "usage: %s gen DIR N DIM | run DATA ROOT ORPHAN N DIM REPS | restore DATA NAME REPS\n", argv[0]);
    return 2;
}
