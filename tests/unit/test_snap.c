/* test_snap.c - snapshot files and recovery at open: round trip of every
 * file, a flipped byte in each file, truncated files, stray temp and
 * old-generation files, a torn or corrupt WAL. Each case opens or reports
 * as specified (damaged with file and offset) and leaves the other
 * collection untouched. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dvecdb.h"
#include "snap.h"
#include "t.h"
#include "tfs.h"

enum { N = 3000, DIM = 8 };

static float val(int k, int j)
{
    return (float)((k * 31 + j * 7) % 101) / 50.0f - 1.0f;
}

/* A data dir with collections "a" and "b" (N points each, metadata on
 * odd ones, 10 deleted), checkpointed by the close. */
static char *make_db(void)
{
    char *d = strdup("/tmp/dvecdb-test-snap-XXXXXX");
    if (!mkdtemp(d))
        abort();
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    dv_db *db;
    if (dv_db_open(d, &o, &db, NULL))
        abort();
    const char *names[2] = {"a", "b"};
    for (int ci = 0; ci < 2; ci++) {
        dv_coll_config c;
        memset(&c, 0, sizeof c);
        snprintf(c.name, sizeof c.name, "%s", names[ci]);
        c.dim = DIM;
        c.metric = DV_METRIC_EUCLIDEAN;
        dv_coll *h;
        if (dv_coll_create(db, &c, NULL) || dv_coll_open(db, names[ci], &h, NULL))
            abort();
        static float v[N][DIM];
        static char ids[N][16], metas[N][32];
        static dv_point p[N];
        for (int k = 0; k < N; k++) {
            for (int j = 0; j < DIM; j++)
                v[k][j] = val(k, j);
            snprintf(ids[k], sizeof ids[k], "p%d", k);
            snprintf(metas[k], sizeof metas[k], "{\"k\":%d}", k);
            p[k] = (dv_point){ids[k], v[k], k % 2 ? metas[k] : NULL, k % 2 ? strlen(metas[k]) : 0};
        }
        if (dv_coll_upsert(h, p, N, NULL))
            abort();
        const char *del[10];
        for (int i = 0; i < 10; i++)
            del[i] = ids[i * 7];
        if (dv_coll_delete(h, del, 10, NULL, NULL))
            abort();
        dv_coll_close(h);
    }
    if (dv_db_close(db, NULL))
        abort();
    return d;
}

static void flip(const char *p, off_t off)
{
    flip_bits(p, off, 0x10);
}

/* Open d and check: "a" is damaged with a message containing each needle,
 * "b" is intact with all its points. */
static void expect_a_damaged(int *t_failed_, const char *d, const char *needle1, const char *needle2)
{
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_info *list;
    size_t n;
    CHECK_OK(dv_db_list(db, &list, &n, &e));
    CHECK(n == 2);
    CHECK(strcmp(list[0].config.name, "a") == 0);
    CHECKF(list[0].damaged, "a not damaged");
    CHECKF(strstr(list[0].damage, needle1) && (!needle2 || strstr(list[0].damage, needle2)), "%s", list[0].damage);
    CHECK(!list[1].damaged && list[1].n_vectors == N - 10);
    dv_free(list);
    dv_coll *h;
    CHECK(dv_coll_open(db, "a", &h, &e) == DV_EDAMAGED);
    CHECK_OK(dv_coll_open(db, "b", &h, &e));
    dv_record *r;
    CHECK_OK(dv_coll_get(h, "p1", &r, &e));
    CHECK(r->vector[3] == val(1, 3) && strcmp(r->metadata, "{\"k\":1}") == 0);
    dv_record_free(r);
    dv_coll_close(h);
    CHECK_OK(dv_db_close(db, &e));
}

TEST(snapshot_files_round_trip_through_write_and_load)
{
    char *d = make_db();
    char man_dir[512];
    snprintf(man_dir, sizeof man_dir, "%s/collections/a", d);
    snap_manifest m;
    dv_err e;
    CHECK_OK(snap_manifest_read(man_dir, &m, &e));
    CHECK(m.gen >= 1 && m.n_slots == N && m.n_live == N - 10 && m.cfg.dim == DIM);
    CHECK(m.files[SNAP_VECTORS].present && m.files[SNAP_IDS].present && m.files[SNAP_INDEX].present);
    CHECK_OK(snap_verify(man_dir, &m, &e));
    char vp[1024];
    CHECK(find_file(d, "a", "vectors-", vp, sizeof vp) == 0);
    uint32_t dim;
    dv_metric met;
    uint64_t n;
    float *vecs;
    CHECK_OK(snap_read_vectors_file(vp, &dim, &met, &n, &vecs, &e));
    CHECK(dim == DIM && met == DV_METRIC_EUCLIDEAN && n == N - 10);
    /* live records in slot order: p1..p6, p8, ... (p0, p7, ... deleted) */
    CHECK(vecs[0] == val(1, 0) && vecs[DIM * 6] == val(8, 0));
    free(vecs);
    /* reopen: everything back, the index loaded (no rebuild note) */
    dv_db *db;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "a", &h, &e));
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(h, &in, &e));
    CHECK(in.n_vectors == N - 10 && in.n_deleted == 10);
    for (int k = 0; k < N; k += 97) {
        char id[16];
        snprintf(id, sizeof id, "p%d", k);
        dv_record *r;
        dv_code rc = dv_coll_get(h, id, &r, &e);
        if (k % 7 == 0 && k / 7 < 10) {
            CHECK(rc == DV_ENOTFOUND);
            continue;
        }
        CHECK_OK(rc);
        for (int j = 0; j < DIM; j++)
            CHECK(r->vector[j] == val(k, j));
        dv_record_free(r);
    }
    dv_coll_close(h);
    char **lines;
    size_t nl;
    CHECK_OK(dv_audit_read(db, 100, &lines, &nl, &e));
    for (size_t i = 0; i < nl; i++)
        CHECKF(!strstr(lines[i], "index rebuilt"), "%s", lines[i]);
    dv_audit_free(lines, nl);
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

TEST(flipped_byte_in_vectors_file_marks_only_that_collection_damaged)
{
    const char *where[] = {"header", "body", "trailer"};
    for (int w = 0; w < 3; w++) {
        char *d = make_db();
        char p[1024];
        CHECK(find_file(d, "a", "vectors-", p, sizeof p) == 0);
        off_t sz = file_size(p);
        off_t off = w == 0 ? 20 : w == 1 ? 64 + 70000 : sz - 3;
        flip(p, off);
        expect_a_damaged(t_failed_, d, "vectors-", w == 2 ? "checksum" : "offset");
        if (*t_failed_)
            fprintf(stderr, "  (flip in %s)\n", where[w]);
        rm_rf(d);
        free(d);
        if (*t_failed_)
            return;
    }
}

TEST(flipped_byte_in_ids_file_names_file_and_offset)
{
    char *d = make_db();
    char p[1024];
    CHECK(find_file(d, "a", "ids-", p, sizeof p) == 0);
    flip(p, 64 + 5000);
    expect_a_damaged(t_failed_, d, "ids-", "offset 64..");
    rm_rf(d);
    free(d);
}

TEST(flipped_byte_in_manifest_marks_damaged)
{
    char *d = make_db();
    char p[1024];
    CHECK(find_file(d, "a", "manifest.json", p, sizeof p) == 0);
    flip(p, file_size(p) / 2);
    expect_a_damaged(t_failed_, d, "manifest.json", NULL);
    rm_rf(d);
    free(d);
}

TEST(flipped_byte_in_index_file_rebuilds_the_index_and_loses_nothing)
{
    char *d = make_db();
    char p[1024];
    CHECK(find_file(d, "a", "index-", p, sizeof p) == 0);
    flip(p, 64 + 100);
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "a", &h, &e));
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(h, &in, &e));
    CHECK(in.n_vectors == N - 10 && !in.damaged);
    float q[DIM];
    for (int j = 0; j < DIM; j++)
        q[j] = val(100, j);
    dv_search_params sp = {.k = 1};
    dv_result *r;
    CHECK_OK(dv_coll_search(h, q, &sp, &r, &e));
    CHECK(r->n == 1 && r->hits[0].distance == 0.0f);
    dv_result_free(r);
    dv_coll_close(h);
    char **lines;
    size_t nl;
    int noted = 0;
    CHECK_OK(dv_audit_read(db, 100, &lines, &nl, &e));
    for (size_t i = 0; i < nl; i++)
        noted |= strstr(lines[i], "index rebuilt") && strstr(lines[i], "index-") != NULL;
    dv_audit_free(lines, nl);
    CHECK(noted);
    CHECK_OK(dv_db_close(db, &e));
    /* the rebuilt index was written by the close's checkpoint */
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

TEST(truncated_snapshot_files_mark_damaged_naming_the_file)
{
    const char *prefixes[] = {"vectors-", "ids-"};
    for (int i = 0; i < 2; i++) {
        char *d = make_db();
        char p[1024];
        CHECK(find_file(d, "a", prefixes[i], p, sizeof p) == 0);
        CHECK(truncate(p, file_size(p) - 1) == 0);
        expect_a_damaged(t_failed_, d, prefixes[i], "truncated");
        rm_rf(d);
        free(d);
    }
    /* a manifest cut in half is malformed JSON, reported with its position */
    char *d = make_db();
    char p[1024];
    CHECK(find_file(d, "a", "manifest.json", p, sizeof p) == 0);
    CHECK(truncate(p, file_size(p) / 2) == 0);
    expect_a_damaged(t_failed_, d, "manifest.json", "offset");
    rm_rf(d);
    free(d);
}

TEST(stray_temp_and_old_generation_files_are_removed_at_open)
{
    char *d = make_db();
    const char *strays[] = {"vectors-999.bin", "ids-0.bin", "index-12.bin.tmp", "manifest.json.tmp", "x.tmp"};
    char p[1024];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/collections/a/%s", d, strays[i]);
        FILE *f = fopen(p, "w");
        CHECK(f);
        fputs("junk", f);
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/collections/a/notes.txt", d); /* not ours: kept */
    FILE *f = fopen(p, "w");
    CHECK(f);
    fclose(f);
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "a", &h, &e));
    dv_coll_close(h);
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/collections/a/%s", d, strays[i]);
        CHECKF(access(p, F_OK) != 0, "%s survived", strays[i]);
    }
    snprintf(p, sizeof p, "%s/collections/a/notes.txt", d);
    CHECK(access(p, F_OK) == 0);
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

/* The WAL segment of collection a (the last one). */
static int wal_file(const char *d, char *out, size_t cap)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/collections/a/wal", d);
    DIR *dd = opendir(dir);
    if (!dd)
        return -1;
    struct dirent *de;
    char best[256] = "";
    while ((de = readdir(dd)))
        if (strstr(de->d_name, ".log") && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof best, "%.200s", de->d_name);
    closedir(dd);
    if (!best[0])
        return -1;
    snprintf(out, cap, "%s/%.200s", dir, best);
    return 0;
}

TEST(torn_wal_tail_is_truncated_and_logged_and_acknowledged_records_stay)
{
    /* The state a crash leaves: 3 records in a's WAL after its snapshot.
     * Write them (fsynced: policy ALWAYS), copy a's directory aside, close
     * (its checkpoint cuts the WAL), then put the copy back. */
    char *d = make_db();
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "a", &h, &e));
    for (int b = 0; b < 3; b++) {
        float w[DIM] = {9, 9, 9, 9, 9, 9, 9, (float)b};
        char id[16];
        snprintf(id, sizeof id, "wal-%d", b);
        dv_point extra = {id, w, "{\"w\":1}", 7};
        CHECK_OK(dv_coll_upsert(h, &extra, 1, &e));
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp -a %s/collections/a %s/saved-a", d, d);
    CHECK(system(cmd) == 0);
    dv_coll_close(h);
    CHECK_OK(dv_db_close(db, &e));
    snprintf(cmd, sizeof cmd, "rm -rf %s/collections/a && cp -a %s/saved-a %s/collections/a", d, d, d);
    CHECK(system(cmd) == 0);
    char wf[1024];
    CHECK(wal_file(d, wf, sizeof wf) == 0);
    /* tear the last record: drop its final 5 bytes */
    CHECK(truncate(wf, file_size(wf) - 5) == 0);
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_code orc = dv_coll_open(db, "a", &h, &e);
    CHECKF(orc == DV_OK, "%s", e.msg);
    dv_record *r;
    CHECK_OK(dv_coll_get(h, "wal-0", &r, &e));
    dv_record_free(r);
    CHECK_OK(dv_coll_get(h, "wal-1", &r, &e));
    dv_record_free(r);
    CHECK(dv_coll_get(h, "wal-2", &r, &e) == DV_ENOTFOUND); /* the torn one */
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(h, &in, &e));
    CHECK(in.n_vectors == N - 10 + 2);
    /* and writes continue after the cut */
    float w[DIM] = {1};
    dv_point p = {"after", w, NULL, 0};
    CHECK_OK(dv_coll_upsert(h, &p, 1, &e));
    dv_coll_close(h);
    char **lines;
    size_t nl;
    int noted = 0;
    CHECK_OK(dv_audit_read(db, 100, &lines, &nl, &e));
    for (size_t i = 0; i < nl; i++)
        noted |= strstr(lines[i], "torn tail") != NULL;
    dv_audit_free(lines, nl);
    CHECK(noted);
    CHECK_OK(dv_db_close(db, &e));
    /* mid-WAL corruption is damage, not a torn tail */
    CHECK(system(cmd) == 0);
    CHECK(wal_file(d, wf, sizeof wf) == 0);
    flip(wf, 40);
    expect_a_damaged(t_failed_, d, "wal", "offset");
    rm_rf(d);
    free(d);
}

T_MAIN()
