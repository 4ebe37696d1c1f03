/* test_recovery.c - trash, backups, restore, hard delete, audit log and the
 * start-up clean-up, against the real engine; crash loops use io.c's
 * power-loss model (IO_FAULT_CRASH at every I/O call of an operation). */
#include <errno.h>
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "db_int.h"
#include "dvecdb.h"
#include "err.h"
#include "io.h"
#include "recovery_int.h"
#include "t.h"

#if defined(__SANITIZE_ADDRESS__)
#define QUICK 1
#else
#define QUICK 0
#endif

#define DIM 8

/* On tmpfs when there is one: the crash loops fsync thousands of times,
 * which costs minutes on a real disk and nothing in memory. */
static char *mkroot(void)
{
    struct stat st;
    char tmpl[64];
    snprintf(tmpl, sizeof tmpl, "%s/dvrec-XXXXXX", stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static void rm_rf(const char *p)
{
    io_remove_tree(p, NULL);
}

static dv_db *open_db(const char *dir, int64_t retention_s)
{
    dv_db_options o;
    dv_db_options_init(&o);
    o.trash_retention_s = retention_s;
    dv_db *db = NULL;
    dv_err e = {0};
    if (dv_db_open(dir, &o, &db, &e) != DV_OK) {
        fprintf(stderr, "open %s: %s\n", dir, e.msg);
        return NULL;
    }
    return db;
}

static void vec_for(uint32_t k, uint32_t seed, float *v)
{
    uint64_t x = (uint64_t)k * 2654435761u + seed * 97u + 1;
    for (int i = 0; i < DIM; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((x % 20001) / 10000.0 - 1.0);
    }
}

/* Create name (Euclidean, so vectors are stored bit-exact) with n points
 * "id-<k>" carrying metadata. */
static dv_code make_coll(dv_db *db, const char *name, uint32_t n, uint32_t seed)
{
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "%s", name);
    cfg.dim = DIM;
    cfg.metric = DV_METRIC_EUCLIDEAN;
    dv_err e = {0};
    dv_code rc = dv_coll_create(db, &cfg, &e);
    if (rc)
        return rc;
    dv_coll *c = NULL;
    if ((rc = dv_coll_open(db, name, &c, &e)))
        return rc;
    for (uint32_t b = 0; b < n && !rc; b += 100) {
        dv_point pts[100];
        char ids[100][32], metas[100][96];
        float vecs[100][DIM];
        uint32_t m = n - b < 100 ? n - b : 100;
        for (uint32_t i = 0; i < m; i++) {
            uint32_t k = b + i;
            snprintf(ids[i], sizeof ids[i], "id-%u", k);
            snprintf(metas[i], sizeof metas[i], "{\"k\":%u,\"tag\":\"t%u\",\"note\":\"caf\\u00e9 %u\"}", k, k % 7,
                     seed);
            vec_for(k, seed, vecs[i]);
            pts[i] = (dv_point){ids[i], vecs[i], metas[i], strlen(metas[i])};
        }
        rc = dv_coll_upsert(c, pts, m, &e);
    }
    dv_coll_close(c);
    if (rc)
        fprintf(stderr, "make_coll: %s\n", e.msg);
    return rc;
}

typedef struct rec_ref {
    char *id;
    float v[DIM];
    char *meta;
} rec_ref;

static int cmp_rec(const void *a, const void *b)
{
    return strcmp(((const rec_ref *)a)->id, ((const rec_ref *)b)->id);
}

/* XXH3 over sorted (id, vector bytes, metadata) of every point; 0 if absent. */
static uint64_t coll_sum(dv_db *db, const char *name, uint64_t *count)
{
    dv_coll *c = NULL;
    *count = 0;
    if (dv_coll_open(db, name, &c, NULL) != DV_OK)
        return 0;
    rec_ref *v = NULL;
    size_t n = 0, cap = 0;
    for (uint64_t off = 0;; off += 1000) {
        dv_result *r = NULL;
        if (dv_coll_scroll(c, off, 1000, 1, &r, NULL) != DV_OK)
            break;
        size_t got = r->n;
        for (size_t i = 0; i < got; i++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                v = realloc(v, cap * sizeof *v);
            }
            v[n].id = strdup(r->hits[i].id);
            memcpy(v[n].v, r->hits[i].vector, sizeof v[n].v);
            v[n].meta = r->hits[i].metadata ? strndup(r->hits[i].metadata, r->hits[i].metadata_len) : NULL;
            n++;
        }
        dv_result_free(r);
        if (got < 1000)
            break;
    }
    dv_coll_close(c);
    if (n)
        qsort(v, n, sizeof *v, cmp_rec);
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    for (size_t i = 0; i < n; i++) {
        XXH3_64bits_update(st, v[i].id, strlen(v[i].id) + 1);
        XXH3_64bits_update(st, v[i].v, sizeof v[i].v);
        if (v[i].meta)
            XXH3_64bits_update(st, v[i].meta, strlen(v[i].meta) + 1);
        free(v[i].id);
        free(v[i].meta);
    }
    free(v);
    uint64_t h = XXH3_64bits_digest(st) | 1;
    XXH3_freeState(st);
    *count = n;
    return h;
}

static int audit_has(dv_db *db, const char *action, const char *coll, const char *outcome)
{
    char **l = NULL;
    size_t n = 0;
    int found = 0;
    if (dv_audit_read(db, 1000, &l, &n, NULL) != DV_OK)
        return 0;
    for (size_t i = 0; i < n && !found; i++) {
        json_t *j = json_loads(l[i], 0, NULL);
        if (!j)
            continue;
        const char *a = json_string_value(json_object_get(j, "action"));
        const char *c = json_string_value(json_object_get(j, "collection"));
        const char *o = json_string_value(json_object_get(j, "outcome"));
        found = a && !strcmp(a, action) && (!coll || (c && !strcmp(c, coll))) && o && !strcmp(o, outcome);
        json_decref(j);
    }
    dv_audit_free(l, n);
    return found;
}

static size_t n_trash(dv_db *db)
{
    dv_trash_entry *t = NULL;
    size_t n = 0;
    if (dv_trash_list(db, &t, &n, NULL) != DV_OK)
        return (size_t)-1;
    dv_free(t);
    return n;
}

/* ---- audit ----------------------------------------------------------------- */

TEST(audit_append_escapes_hostile_strings_and_reads_newest_lines_oldest_first)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    dv_audit_event ev = {.action = "auth-failure", .remote = "10.0.0.1", .route = "GET /x\"\n\x01\xff{}",
                         .actor = "key-1", .detail = "back\\slash"};
    CHECK_OK(dv_audit_append(db, &ev, NULL));
    for (int i = 0; i < 5; i++) {
        char d[16];
        snprintf(d, sizeof d, "n%d", i);
        audit_log(db, "backup", "c1", DV_OK, d);
    }
    char **l = NULL;
    size_t n = 0;
    CHECK_OK(dv_audit_read(db, 3, &l, &n, NULL));
    CHECK(n == 3);
    CHECK(strstr(l[0], "\"n2\"") && strstr(l[2], "\"n4\""));
    dv_audit_free(l, n);
    CHECK_OK(dv_audit_read(db, 100, &l, &n, NULL));
    CHECK(n == 6);
    json_error_t je;
    json_t *j = json_loads(l[0], 0, &je);
    CHECKF(j, "line not JSON: %s", l[0]);
    CHECK(!strcmp(json_string_value(json_object_get(j, "route")), "GET /x\"\n\x01\xef\xbf\xbd{}"));
    CHECK(!strcmp(json_string_value(json_object_get(j, "actor")), "key-1"));
    CHECK(json_is_null(json_object_get(j, "collection")));
    const char *t = json_string_value(json_object_get(j, "time"));
    CHECK(t && strlen(t) == 24 && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    json_decref(j);
    CHECK(!strchr(l[0], '\n'));
    dv_audit_free(l, n);
    dv_audit_event bad = {0};
    CHECK(dv_audit_append(db, &bad, NULL) == DV_EINVAL);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* The engine's own lines name the caller a shell set for this thread, and
 * record which actions were written, until the context is cleared. */
TEST(audit_context_names_the_caller_in_engine_lines_and_records_what_was_written)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    dv_audit_context_set("admin", "10.1.2.3", "/collections/:name");
    CHECK(!dv_audit_context_wrote("backup"));
    audit_log(db, "backup", "c1", DV_OK, "with-context");
    CHECK(dv_audit_context_wrote("backup"));
    CHECK(!dv_audit_context_wrote("delete"));
    dv_audit_context_set(NULL, NULL, NULL);
    CHECK(!dv_audit_context_wrote("backup"));
    audit_log(db, "backup", "c1", DV_OK, "without-context");
    char **l = NULL;
    size_t n = 0;
    CHECK_OK(dv_audit_read(db, 2, &l, &n, NULL));
    CHECK(n == 2);
    json_t *a = json_loads(l[0], 0, NULL), *b = json_loads(l[1], 0, NULL);
    CHECK(a && b);
    CHECK(!strcmp(json_string_value(json_object_get(a, "actor")), "admin"));
    CHECK(!strcmp(json_string_value(json_object_get(a, "remote")), "10.1.2.3"));
    CHECK(!strcmp(json_string_value(json_object_get(a, "route")), "/collections/:name"));
    CHECK(!strcmp(json_string_value(json_object_get(b, "actor")), "engine"));
    CHECK(json_is_null(json_object_get(b, "remote")) && json_is_null(json_object_get(b, "route")));
    json_decref(a);
    json_decref(b);
    dv_audit_free(l, n);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(audit_torn_last_line_is_skipped_and_the_next_event_starts_a_new_line)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    audit_log(db, "create", "a", DV_OK, NULL);
    char p[4200];
    snprintf(p, sizeof p, "%s/audit.log", root);
    FILE *f = fopen(p, "a");
    CHECK(f);
    fputs("{\"time\":\"2026-", f); /* a crash mid-write */
    fclose(f);
    char **l = NULL;
    size_t n = 0;
    CHECK_OK(dv_audit_read(db, 10, &l, &n, NULL));
    CHECK(n == 1);
    dv_audit_free(l, n);
    audit_log(db, "delete", "a", DV_OK, NULL);
    CHECK_OK(dv_audit_read(db, 10, &l, &n, NULL));
    CHECK(n == 3);
    json_t *j = json_loads(l[2], 0, NULL);
    CHECK(j);
    CHECK(!strcmp(json_string_value(json_object_get(j, "action")), "delete"));
    json_decref(j);
    dv_audit_free(l, n);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(audit_read_of_a_long_log_returns_exactly_the_newest_lines)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    char p[4200];
    snprintf(p, sizeof p, "%s/audit.log", root);
    FILE *f = fopen(p, "a");
    CHECK(f);
    for (int i = 0; i < 20000; i++) /* ~1.4 MB: several read chunks */
        fprintf(f, "{\"action\":\"x\",\"i\":%d,\"pad\":\"%040d\"}\n", i, i);
    fclose(f);
    char **l = NULL;
    size_t n = 0;
    CHECK_OK(dv_audit_read(db, 5000, &l, &n, NULL));
    CHECK(n == 5000);
    CHECK(strstr(l[0], "\"i\":15000,") && strstr(l[4999], "\"i\":19999,"));
    dv_audit_free(l, n);
    CHECK_OK(dv_audit_read(db, 100000, &l, &n, NULL));
    CHECK(n == 20000);
    dv_audit_free(l, n);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- trash ------------------------------------------------------------------ */

TEST(drop_moves_the_collection_to_the_trash_and_restore_brings_it_back_identical)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "docs", 500, 1));
    uint64_t n0, sum0 = coll_sum(db, "docs", &n0);
    CHECK(n0 == 500);
    dv_trash_entry t;
    dv_err e = {0};
    double t0 = dv_mono_s();
    CHECK_OK(dv_coll_drop(db, "docs", &t, &e));
    double dt = dv_mono_s() - t0;
    CHECK(!strcmp(t.name, "docs"));
    CHECK(t.vector_count == 500);
    CHECK(t.size_bytes > 500 * DIM * 4);
    CHECK(t.expires_at_ms == t.deleted_at_ms + 86400 * 1000LL);
    CHECKF(dt < 1.0, "drop took %.3f s", dt);
    uint64_t n1;
    CHECK(coll_sum(db, "docs", &n1) == 0);
    dv_coll *c = NULL;
    CHECK(dv_coll_open(db, "docs", &c, NULL) == DV_ENOTFOUND);
    CHECK(n_trash(db) == 1);
    CHECK(audit_has(db, "delete", "docs", "ok"));
    /* never comes back by itself */
    CHECK_OK(dv_db_close(db, NULL));
    db = open_db(root, 86400);
    CHECK(db);
    CHECK(dv_coll_open(db, "docs", &c, NULL) == DV_ENOTFOUND);
    dv_trash_entry *v = NULL;
    size_t n = 0;
    CHECK_OK(dv_trash_list(db, &v, &n, NULL));
    CHECK(n == 1 && v[0].vector_count == 500 && !strcmp(v[0].trash_id, t.trash_id));
    dv_free(v);
    /* the name is free: a create starts empty */
    CHECK_OK(make_coll(db, "docs", 3, 9));
    CHECK(coll_sum(db, "docs", &n1) && n1 == 3);
    dv_restore_opts ro = {0};
    CHECK(dv_restore(db, "docs", &ro, NULL, &e) == DV_EEXIST);
    ro.new_name = "docs_restored";
    dv_coll_info info;
    CHECK_OK(dv_restore(db, "docs", &ro, &info, &e));
    CHECK(info.n_vectors == 500 && !strcmp(info.config.name, "docs_restored"));
    CHECK(coll_sum(db, "docs_restored", &n1) == sum0 && n1 == 500);
    CHECK(n_trash(db) == 0);
    CHECK(audit_has(db, "restore", "docs", "ok"));
    /* survives a restart under its new name, still identical */
    CHECK_OK(dv_db_close(db, NULL));
    db = open_db(root, 86400);
    CHECK(db);
    CHECK(coll_sum(db, "docs_restored", &n1) == sum0 && n1 == 500);
    char p[4200];
    snprintf(p, sizeof p, "%s/collections/docs_restored/%s", root, REC_TRASH_INFO);
    CHECK(!rec_exists(p));
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(restore_picks_the_newest_trash_entry_or_the_named_one)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "a", 10, 1));
    uint64_t n, s10 = coll_sum(db, "a", &n);
    dv_trash_entry t1, t2;
    CHECK_OK(dv_coll_drop(db, "a", &t1, NULL));
    CHECK_OK(make_coll(db, "a", 20, 2));
    uint64_t s20 = coll_sum(db, "a", &n);
    CHECK_OK(dv_coll_drop(db, "a", &t2, NULL));
    CHECK(strcmp(t1.trash_id, t2.trash_id) != 0);
    CHECK(dv_coll_drop(db, "a", NULL, NULL) == DV_ENOTFOUND);
    dv_restore_opts ro = {0};
    CHECK_OK(dv_restore(db, "a", &ro, NULL, NULL));
    CHECK(coll_sum(db, "a", &n) == s20 && n == 20);
    ro.backup_id = t1.trash_id;
    ro.new_name = "a_old";
    CHECK_OK(dv_restore(db, "a", &ro, NULL, NULL));
    CHECK(coll_sum(db, "a_old", &n) == s10 && n == 10);
    ro.backup_id = "a.123";
    ro.new_name = "zz";
    CHECK(dv_restore(db, "a", &ro, NULL, NULL) == DV_ENOTFOUND);
    ro.backup_id = NULL;
    CHECK(dv_restore(db, "nothing", &ro, NULL, NULL) == DV_ENOTFOUND);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(restore_with_overwrite_backs_up_and_trashes_the_live_collection)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "x", 30, 1));
    uint64_t n, s30 = coll_sum(db, "x", &n);
    CHECK_OK(dv_coll_drop(db, "x", NULL, NULL));
    CHECK_OK(make_coll(db, "x", 7, 2));
    uint64_t s7 = coll_sum(db, "x", &n);
    dv_restore_opts ro = {.overwrite = 1};
    CHECK_OK(dv_restore(db, "x", &ro, NULL, NULL));
    CHECK(coll_sum(db, "x", &n) == s30 && n == 30);
    dv_backup_info *b = NULL;
    size_t nb = 0;
    CHECK_OK(dv_backup_list(db, "x", &b, &nb, NULL));
    CHECK(nb == 1 && !strcmp(b[0].reason, "pre-restore-overwrite") && b[0].vector_count == 7);
    dv_free(b);
    /* the overwritten one is in the trash */
    ro = (dv_restore_opts){.new_name = "x7"};
    CHECK_OK(dv_restore(db, "x", &ro, NULL, NULL));
    CHECK(coll_sum(db, "x7", &n) == s7 && n == 7);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(expired_trash_is_purged_by_the_sweep_and_at_open_with_an_audit_line_each)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 1);
    CHECK(db);
    CHECK_OK(make_coll(db, "t1", 10, 1));
    CHECK_OK(make_coll(db, "t2", 10, 2));
    CHECK_OK(dv_coll_drop(db, "t1", NULL, NULL));
    size_t np = 99;
    CHECK_OK(dv_trash_purge_expired(db, &np, NULL));
    CHECK(np == 0 && n_trash(db) == 1);
    usleep(1100 * 1000);
    CHECK_OK(dv_coll_drop(db, "t2", NULL, NULL));
    CHECK_OK(dv_trash_purge_expired(db, &np, NULL));
    CHECK(np == 1 && n_trash(db) == 1);
    CHECK(audit_has(db, "purge", "t1", "ok"));
    char p[4200];
    snprintf(p, sizeof p, "%s/.deleted", root);
    char **names = NULL;
    size_t nn = 0;
    CHECK_OK(rec_list_dir(p, &names, &nn, NULL));
    CHECK(nn == 1 && !strncmp(names[0], "t2.", 3));
    rec_free_names(names, nn);
    CHECK_OK(dv_db_close(db, NULL));
    usleep(1100 * 1000);
    db = open_db(root, 1); /* the open sweeps */
    CHECK(db);
    CHECK(n_trash(db) == 0);
    CHECK(audit_has(db, "purge", "t2", "ok"));
    dv_restore_opts ro = {0};
    CHECK(dv_restore(db, "t2", &ro, NULL, NULL) == DV_ENOTFOUND);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- backups ----------------------------------------------------------------- */

TEST(backup_is_a_consistent_copy_that_verifies_and_restores_identically)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "b", 300, 3));
    uint64_t n, s0 = coll_sum(db, "b", &n);
    /* a write after the last checkpoint: must be in the backup via the WAL */
    dv_coll *c = NULL;
    CHECK_OK(dv_coll_open(db, "b", &c, NULL));
    float v[DIM] = {1, 2, 3, 4, 5, 6, 7, 8};
    dv_point pt = {"late", v, NULL, 0};
    CHECK_OK(dv_coll_upsert(c, &pt, 1, NULL));
    uint64_t s1 = coll_sum(db, "b", &n);
    CHECK(n == 301 && s1 != s0);
    dv_backup_info bi;
    dv_err e = {0};
    CHECK_OK(dv_backup_create(db, "b", NULL, &bi, &e));
    CHECK(!strcmp(bi.reason, "manual") && bi.vector_count == 301 && bi.size_bytes > 0);
    CHECK(strlen(bi.backup_id) == 27 && bi.backup_id[8] == 'T' && !strcmp(bi.backup_id + 20, "-manual"));
    /* writes continue after the backup */
    dv_point pt2 = {"later", v, NULL, 0};
    CHECK_OK(dv_coll_upsert(c, &pt2, 1, NULL));
    dv_coll_close(c);
    dv_backup_info vi;
    CHECK_OK(dv_backup_verify(db, "b", bi.backup_id, &vi, &e));
    CHECK(vi.vector_count == 301);
    dv_backup_info *list = NULL;
    size_t nl = 0;
    CHECK_OK(dv_backup_list(db, NULL, &list, &nl, NULL));
    CHECK(nl == 1 && !strcmp(list[0].backup_id, bi.backup_id) && !strcmp(list[0].name, "b"));
    dv_free(list);
    dv_restore_opts ro = {.source = DV_RESTORE_BACKUP, .backup_id = bi.backup_id, .new_name = "b2"};
    CHECK_OK(dv_restore(db, "b", &ro, NULL, &e));
    CHECK(coll_sum(db, "b2", &n) == s1 && n == 301);
    /* the restored copy is independent of the backup */
    CHECK_OK(dv_coll_open(db, "b2", &c, NULL));
    CHECK_OK(dv_coll_upsert(c, &pt2, 1, NULL));
    CHECK_OK(dv_coll_checkpoint(c, NULL));
    dv_coll_close(c);
    CHECK_OK(dv_backup_verify(db, "b", bi.backup_id, NULL, &e));
    CHECK(audit_has(db, "backup", "b", "ok"));
    CHECK_OK(dv_db_close(db, NULL));
    db = open_db(root, 86400);
    CHECK(coll_sum(db, "b2", &n) && n == 302);
    CHECK_OK(dv_backup_delete(db, "b", bi.backup_id, NULL));
    CHECK(dv_backup_verify(db, "b", bi.backup_id, NULL, NULL) == DV_ENOTFOUND);
    CHECK(dv_backup_delete(db, "b", "../../etc", NULL) == DV_EINVAL);
    CHECK(dv_backup_create(db, "nope", NULL, NULL, NULL) == DV_ENOTFOUND);
    CHECK(dv_backup_create(db, "b", "Bad Reason", NULL, NULL) == DV_EINVAL);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* Flip one byte of a file inside a backup (a copy first: the file may be a
 * hard link shared with the live collection). */
static int tamper(const char *path)
{
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.t", path);
    if (rec_copy_file(path, tmp, NULL) != DV_OK || rename(tmp, path) != 0)
        return -1;
    FILE *f = fopen(path, "r+b");
    if (!f)
        return -1;
    fseek(f, 70, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 70, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
    return 0;
}

/* Newest "vectors-<gen>.bin" of a live collection into out; 0 if none. */
static int live_vectors_file(const char *root, const char *name, char *out, size_t cap)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/collections/%s", root, name);
    char **names = NULL;
    size_t n = 0;
    int found = 0;
    if (rec_list_dir(dir, &names, &n, NULL) != DV_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strncmp(names[i], "vectors-", 8)) {
            snprintf(out, cap, "%s/%s", dir, names[i]);
            found = 1;
        }
    rec_free_names(names, n);
    return found;
}

TEST(a_backup_takes_snapshot_checksums_from_the_manifest_so_verify_catches_a_file_damaged_before_it)
{
    /* Hard-linked snapshot files are not re-read by a backup (their XXH3 is
     * the one the engine recorded when it wrote them): a live file damaged
     * in place before the backup is shared by the backup, and verify, which
     * re-reads every byte, names it. An undamaged one verifies. */
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "h", 300, 5));
    dv_backup_info good, bad;
    dv_err e = {0};
    CHECK_OK(dv_backup_create(db, "h", NULL, &good, &e));
    CHECK_OK(dv_backup_verify(db, "h", good.backup_id, NULL, &e));
    char vec[700];
    CHECK(live_vectors_file(root, "h", vec, sizeof vec));
    FILE *f = fopen(vec, "r+b"); /* in place: the backup shares this inode */
    CHECK(f != NULL);
    if (f) {
        fseek(f, 100, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, 100, SEEK_SET);
        fputc(ch ^ 0x33, f);
        fclose(f);
    }
    CHECK_OK(dv_backup_create(db, "h", NULL, &bad, &e));
    CHECK(dv_backup_verify(db, "h", bad.backup_id, NULL, &e) == DV_ECORRUPT);
    const char *base = strrchr(vec, '/') + 1;
    CHECKF(strstr(e.msg, base) != NULL, "%s", e.msg);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* A file in a backup that its manifest does not list (at the top or in a
 * subdirectory) would be carried into a restored collection: verify refuses
 * the backup, naming the file; removing the file makes it verify again. */
TEST(a_file_added_to_a_backup_fails_verify_naming_it)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "s", 50, 4));
    dv_backup_info bi;
    CHECK_OK(dv_backup_create(db, "s", NULL, &bi, NULL));
    CHECK_OK(dv_backup_verify(db, "s", bi.backup_id, NULL, NULL));
    const char *extra[] = {"extra.bin", "wal/extra-segment"};
    for (size_t i = 0; i < 2; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/.backups/s/%s/%s", root, bi.backup_id, extra[i]);
        FILE *f = fopen(path, "wb");
        CHECKF(f, "cannot create %s", path);
        if (!f)
            continue;
        fputs("not ours", f);
        fclose(f);
        dv_err e = {0};
        CHECK(dv_backup_verify(db, "s", bi.backup_id, NULL, &e) == DV_ECORRUPT);
        CHECKF(strstr(e.msg, extra[i]) && strstr(e.msg, "not in the manifest"), "message: %s", e.msg);
        CHECK(unlink(path) == 0);
        CHECK_OK(dv_backup_verify(db, "s", bi.backup_id, NULL, NULL));
    }
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(a_tampered_backup_fails_verify_and_restore_naming_the_file_and_leaves_the_live_collection_alone)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "v", 200, 4));
    dv_backup_info bi;
    CHECK_OK(dv_backup_create(db, "v", NULL, &bi, NULL));
    CHECK_OK(make_coll(db, "w", 5, 5));
    uint64_t n, sv = coll_sum(db, "v", &n);
    char bdir[4200];
    snprintf(bdir, sizeof bdir, "%s/.backups/v/%s", root, bi.backup_id);
    char **names = NULL;
    size_t nn = 0;
    CHECK_OK(rec_list_dir(bdir, &names, &nn, NULL));
    char victim[4300] = "";
    for (size_t i = 0; i < nn; i++)
        if (!strncmp(names[i], "vectors-", 8))
            snprintf(victim, sizeof victim, "%s/%s", bdir, names[i]);
    rec_free_names(names, nn);
    CHECK(victim[0]);
    CHECK(tamper(victim) == 0);
    dv_err e = {0};
    CHECK(dv_backup_verify(db, "v", bi.backup_id, NULL, &e) == DV_ECORRUPT);
    CHECKF(strstr(e.msg, strrchr(victim, '/') + 1), "message does not name the file: %s", e.msg);
    dv_restore_opts ro = {.source = DV_RESTORE_BACKUP, .backup_id = bi.backup_id, .overwrite = 1};
    memset(&e, 0, sizeof e);
    CHECK(dv_restore(db, "v", &ro, NULL, &e) == DV_ECORRUPT);
    CHECKF(strstr(e.msg, strrchr(victim, '/') + 1), "message does not name the file: %s", e.msg);
    CHECK(coll_sum(db, "v", &n) == sv && n == 200);
    CHECK(n_trash(db) == 0);
    CHECK(audit_has(db, "restore", "v", "corrupt"));
    /* a forged count in the manifest is caught by its own checksum */
    CHECK_OK(dv_backup_create(db, "w", NULL, &bi, NULL));
    char man[4300];
    snprintf(man, sizeof man, "%s/.backups/w/%s/backup.json", root, bi.backup_id);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(io_read_file(man, &buf, &len, NULL));
    char *p = strstr((char *)buf, "\"vector_count\": 5");
    CHECK(p);
    p[16] = '6';
    FILE *f = fopen(man, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
    CHECK(dv_backup_verify(db, "w", bi.backup_id, NULL, &e) == DV_ECORRUPT);
    CHECKF(strstr(e.msg, "backup.json"), "%s", e.msg);
    /* a listed backup stays listed even when damaged */
    dv_backup_info *list = NULL;
    size_t nl = 0;
    CHECK_OK(dv_backup_list(db, "w", &list, &nl, NULL));
    CHECK(nl == 1 && !strcmp(list[0].reason, "damaged"));
    dv_free(list);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(automatic_backups_keep_the_newest_n_per_collection_and_manual_ones_stay)
{
    char *root = mkroot();
    dv_db_options o;
    dv_db_options_init(&o);
    o.backup_keep_auto = 2;
    dv_db *db = NULL;
    CHECK_OK(dv_db_open(root, &o, &db, NULL));
    CHECK_OK(make_coll(db, "r", 5, 1));
    dv_backup_info m1, a[4];
    CHECK_OK(dv_backup_create(db, "r", "manual", &m1, NULL));
    for (int i = 0; i < 4; i++)
        CHECK_OK(dv_backup_create(db, "r", "pre-import", &a[i], NULL));
    dv_backup_info *list = NULL;
    size_t nl = 0;
    CHECK_OK(dv_backup_list(db, "r", &list, &nl, NULL));
    CHECK(nl == 3);
    int seen_manual = 0, seen_a3 = 0, seen_a2 = 0;
    for (size_t i = 0; i < nl; i++) {
        seen_manual |= !strcmp(list[i].backup_id, m1.backup_id);
        seen_a3 |= !strcmp(list[i].backup_id, a[3].backup_id);
        seen_a2 |= !strcmp(list[i].backup_id, a[2].backup_id);
    }
    CHECK(seen_manual && seen_a3 && seen_a2);
    CHECK(list[0].created_at_ms >= list[nl - 1].created_at_ms);
    dv_free(list);
    CHECK(audit_has(db, "backup-expire", "r", "ok"));
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

typedef struct writer_arg {
    dv_db *db;
    int stop; /* atomic: set by the test, read by the writer (TSan-clean) */
    int n_batches;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    dv_coll *c = NULL;
    if (dv_coll_open(w->db, "busy", &c, NULL) != DV_OK)
        return NULL;
    for (int b = 0; !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) && b < 2000; b++) {
        dv_point pts[20];
        char ids[20][32];
        float v[20][DIM];
        for (int i = 0; i < 20; i++) {
            snprintf(ids[i], sizeof ids[i], "w%d-%d", b, i);
            vec_for((uint32_t)(b * 20 + i), 5, v[i]);
            pts[i] = (dv_point){ids[i], v[i], NULL, 0};
        }
        if (dv_coll_upsert(c, pts, 20, NULL) != DV_OK)
            break;
        w->n_batches++;
    }
    dv_coll_close(c);
    return NULL;
}

TEST(backups_taken_while_writes_continue_are_each_a_consistent_snapshot)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "busy", 100, 1));
    writer_arg w = {.db = db};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer_main, &w) == 0);
    dv_backup_info b[4];
    for (int i = 0; i < 4; i++) {
        usleep(20 * 1000);
        CHECK_OK(dv_backup_create(db, "busy", NULL, &b[i], NULL));
    }
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    CHECK(w.n_batches > 0);
    for (int i = 0; i < 4; i++) {
        dv_err e = {0};
        /* verify opens the copy and checks its count against the manifest:
         * a backup torn by a concurrent write would fail here */
        CHECKF(dv_backup_verify(db, "busy", b[i].backup_id, NULL, &e) == DV_OK, "%s", e.msg);
        CHECK((b[i].vector_count - 100) % 20 == 0); /* whole batches only */
        if (i)
            CHECK(b[i].vector_count >= b[i - 1].vector_count);
    }
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(a_failing_write_during_a_backup_leaves_no_partial_backup_and_no_staging)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "f", 40, 1));
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    dv_backup_info bi;
    CHECK_OK(dv_backup_create(db, "f", NULL, &bi, NULL));
    uint64_t calls = io_calls();
    io_fault_disarm();
    CHECK_OK(dv_backup_delete(db, "f", bi.backup_id, NULL));
    int failed = 0;
    for (uint64_t k = 1; k <= calls; k++) {
        io_fault_arm(k % 2 ? IO_FAULT_ENOSPC : IO_FAULT_EIO, k, 0);
        dv_err e = {0};
        dv_code rc = dv_backup_create(db, "f", NULL, &bi, &e);
        io_fault_disarm();
        dv_backup_info *list = NULL;
        size_t n = 0;
        CHECK_OK(dv_backup_list(db, "f", &list, &n, NULL));
        if (rc != DV_OK) {
            failed++;
            CHECKF(n == 0, "call %llu failed (%s) but a backup is listed", (unsigned long long)k, e.msg);
        } else {
            CHECK(n == 1);
            CHECK_OK(dv_backup_verify(db, "f", list[0].backup_id, NULL, NULL));
            CHECK_OK(dv_backup_delete(db, "f", list[0].backup_id, NULL));
        }
        dv_free(list);
        char st[4200];
        snprintf(st, sizeof st, "%s/.staging", root);
        char **names = NULL;
        size_t nn = 0;
        CHECK_OK(rec_list_dir(st, &names, &nn, NULL));
        rec_free_names(names, nn);
        CHECKF(nn == 0, "call %llu: staging left behind", (unsigned long long)k);
        uint64_t cnt;
        if (coll_sum(db, "f", &cnt) == 0 || cnt != 40) {
            /* a failed checkpoint poisons the collection until reopen */
            (void)dv_db_close(db, NULL); /* its checkpoint may fail: poisoned */
            db = open_db(root, 86400);
            CHECK(db);
        }
    }
    CHECK(failed > 0);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- hard delete ----------------------------------------------------------- */

TEST(hard_delete_takes_a_backup_first_unless_skipped_and_removes_the_directory)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "h", 50, 1));
    uint64_t n, s = coll_sum(db, "h", &n);
    dv_backup_info b;
    dv_err e = {0};
    CHECK_OK(dv_coll_hard_delete(db, "h", 0, &b, &e));
    CHECK(!strcmp(b.reason, "pre-hard-delete") && b.vector_count == 50);
    char p[4200];
    snprintf(p, sizeof p, "%s/collections/h", root);
    CHECK(!rec_exists(p));
    CHECK(n_trash(db) == 0);
    CHECK(audit_has(db, "hard-delete", "h", "ok"));
    CHECK_OK(dv_backup_verify(db, "h", b.backup_id, NULL, &e));
    dv_restore_opts ro = {.source = DV_RESTORE_BACKUP, .backup_id = b.backup_id};
    CHECK_OK(dv_restore(db, "h", &ro, NULL, &e));
    CHECK(coll_sum(db, "h", &n) == s && n == 50);
    memset(&b, 0x55, sizeof b);
    CHECK_OK(dv_coll_hard_delete(db, "h", 1, &b, &e));
    CHECK(b.backup_id[0] == 0 && b.vector_count == 0);
    dv_backup_info *list = NULL;
    size_t nl = 0;
    CHECK_OK(dv_backup_list(db, "h", &list, &nl, NULL));
    CHECK(nl == 1);
    dv_free(list);
    CHECK(dv_coll_hard_delete(db, "h", 0, NULL, NULL) == DV_ENOTFOUND);
    CHECK(dv_coll_hard_delete(db, "../x", 0, NULL, NULL) == DV_EINVAL);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- start-up clean-up -------------------------------------------------------- */

TEST(open_removes_staging_debris_and_trash_markers_left_in_live_collections)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "s", 5, 1));
    CHECK_OK(dv_db_close(db, NULL));
    char p[4200];
    snprintf(p, sizeof p, "%s/.staging/import-x-1-2-3/wal", root);
    CHECK_OK(io_mkdirs(p, NULL));
    snprintf(p, sizeof p, "%s/collections/s", root);
    CHECK_OK(rec_write_trash_info(p, "s", 5, 1, NULL));
    db = open_db(root, 86400);
    CHECK(db);
    snprintf(p, sizeof p, "%s/.staging", root);
    CHECK(!rec_exists(p));
    snprintf(p, sizeof p, "%s/collections/s/%s", root, REC_TRASH_INFO);
    CHECK(!rec_exists(p));
    uint64_t n;
    CHECK(coll_sum(db, "s", &n) && n == 5);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(read_only_database_refuses_recovery_writes)
{
    char *root = mkroot();
    dv_db *db = open_db(root, 86400);
    CHECK(db);
    CHECK_OK(make_coll(db, "ro", 5, 1));
    CHECK_OK(dv_db_close(db, NULL));
    dv_db_options o;
    dv_db_options_init(&o);
    o.read_only = 1;
    CHECK_OK(dv_db_open(root, &o, &db, NULL));
    CHECK(dv_coll_drop(db, "ro", NULL, NULL) == DV_EREADONLY);
    CHECK(dv_backup_create(db, "ro", NULL, NULL, NULL) == DV_EREADONLY);
    CHECK(dv_coll_hard_delete(db, "ro", 1, NULL, NULL) == DV_EREADONLY);
    dv_audit_event ev = {.action = "x"};
    CHECK(dv_audit_append(db, &ev, NULL) == DV_EREADONLY);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- crash at every I/O call ----------------------------------------------------- */

typedef enum { OP_DROP, OP_RESTORE_TRASH, OP_BACKUP, OP_RESTORE_BACKUP, OP_HARD_DELETE, OP_PURGE } crash_op;

static const char *op_name(crash_op op)
{
    static const char *n[] = {"drop", "restore-trash", "backup", "restore-backup", "hard-delete", "purge"};
    return n[op];
}

/* Build the starting state for op in a fresh dir; the collection "c" holds
 * 60 points with sum *s. Returns the db (open) and, for restores, the id. */
static dv_db *crash_setup(const char *root, crash_op op, uint64_t *s, char *id, size_t id_cap)
{
    dv_db *db = open_db(root, op == OP_PURGE ? 0 : 86400);
    if (!db || make_coll(db, "c", 60, 7) != DV_OK)
        return NULL;
    uint64_t n;
    *s = coll_sum(db, "c", &n);
    id[0] = '\0';
    if (op == OP_RESTORE_TRASH || op == OP_PURGE) {
        dv_trash_entry t;
        if (dv_coll_drop(db, "c", &t, NULL) != DV_OK)
            return NULL;
        snprintf(id, id_cap, "%s", t.trash_id);
    }
    if (op == OP_RESTORE_BACKUP) {
        dv_backup_info b;
        if (dv_backup_create(db, "c", NULL, &b, NULL) != DV_OK || dv_coll_hard_delete(db, "c", 1, NULL, NULL))
            return NULL;
        snprintf(id, id_cap, "%s", b.backup_id);
    }
    return db;
}

static dv_code crash_run(dv_db *db, crash_op op, const char *id)
{
    dv_restore_opts ro = {0};
    switch (op) {
    case OP_DROP:
        return dv_coll_drop(db, "c", NULL, NULL);
    case OP_RESTORE_TRASH:
        return dv_restore(db, "c", &ro, NULL, NULL);
    case OP_BACKUP:
        return dv_backup_create(db, "c", NULL, NULL, NULL);
    case OP_RESTORE_BACKUP:
        ro.source = DV_RESTORE_BACKUP;
        ro.backup_id = id;
        return dv_restore(db, "c", &ro, NULL, NULL);
    case OP_HARD_DELETE:
        return dv_coll_hard_delete(db, "c", 0, NULL, NULL);
    case OP_PURGE:
        return dv_trash_purge_expired(db, NULL, NULL);
    }
    return DV_EINVAL;
}

/* After reopen: the operation is wholly done or wholly undone. Returns a
 * description of the violation or NULL. */
static const char *crash_check(dv_db *db, crash_op op, uint64_t s, int *done)
{
    uint64_t n;
    uint64_t live = coll_sum(db, "c", &n);
    size_t nt = n_trash(db);
    dv_backup_info *b = NULL;
    size_t nb = 0;
    if (dv_backup_list(db, "c", &b, &nb, NULL) != DV_OK)
        return "backup list failed";
    int verified = 1;
    for (size_t i = 0; i < nb; i++)
        verified &= dv_backup_verify(db, "c", b[i].backup_id, NULL, NULL) == DV_OK && b[i].vector_count == 60;
    dv_free(b);
    if (!verified)
        return "a listed backup does not verify";
    switch (op) {
    case OP_DROP:
    case OP_RESTORE_TRASH:
        if (live && (live != s || nt != 0))
            return "live collection changed or also in the trash";
        if (!live && nt != 1)
            return "collection neither live nor in the trash";
        *done = op == OP_DROP ? !live : !!live;
        if (!live) { /* the trash entry must restore identically */
            dv_restore_opts ro = {0};
            if (dv_restore(db, "c", &ro, NULL, NULL) != DV_OK || coll_sum(db, "c", &n) != s)
                return "trash entry does not restore identically";
        }
        return NULL;
    case OP_BACKUP:
        if (live != s)
            return "live collection changed by a backup";
        *done = nb == 1;
        return nb <= 1 ? NULL : "more than one backup";
    case OP_RESTORE_BACKUP:
        if (live && live != s)
            return "restored collection differs";
        if (nb != 1)
            return "the source backup is gone";
        *done = !!live;
        return NULL;
    case OP_HARD_DELETE:
        if (live && live != s)
            return "live collection changed";
        *done = !live;
        if (!live && nb != 1)
            return "hard delete committed without its backup";
        return nb <= 1 ? NULL : "more than one backup";
    case OP_PURGE:
        if (live)
            return "purge brought a collection back";
        *done = nt == 0;
        if (nt == 1) {
            dv_restore_opts ro = {0};
            if (dv_restore(db, "c", &ro, NULL, NULL) != DV_OK || coll_sum(db, "c", &n) != s)
                return "half-purged trash entry";
        }
        return nt <= 1 ? NULL : "trash grew";
    }
    return "unknown op";
}

static int crash_loop(crash_op op, int *t_failed_)
{
    char *root = mkroot();
    char dir[4200], id[128];
    uint64_t s;
    /* Count the I/O calls of the operation once. */
    snprintf(dir, sizeof dir, "%s/count", root);
    dv_db *db = crash_setup(dir, op, &s, id, sizeof id);
    if (!db) {
        fprintf(stderr, "  %s: setup failed\n", op_name(op));
        *t_failed_ = 1;
        return 0;
    }
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    dv_code rc = crash_run(db, op, id);
    uint64_t calls = io_calls();
    io_fault_disarm();
    dv_db_close(db, NULL);
    if (rc != DV_OK) {
        fprintf(stderr, "  %s: op failed without a fault: %d\n", op_name(op), rc);
        *t_failed_ = 1;
        return 0;
    }
    uint64_t step = QUICK && calls > 15 ? calls / 15 : 1; /* sampled under the sanitizers */
    int n_done = 0, n_undone = 0;
    for (uint64_t k = 1; k <= calls + 1; k += step) {
        snprintf(dir, sizeof dir, "%s/k%llu", root, (unsigned long long)k);
        db = crash_setup(dir, op, &s, id, sizeof id);
        if (!db) {
            fprintf(stderr, "  %s: setup failed at k=%llu\n", op_name(op), (unsigned long long)k);
            *t_failed_ = 1;
            return 0;
        }
        io_fault_arm(IO_FAULT_CRASH, k, 1);
        (void)crash_run(db, op, id);
        dv_db_close(db, NULL); /* joins the background thread; its writes fail after the crash */
        io_crash_apply(k % 3 == 0 ? 7 : 0);
        /* reopened with a long retention, so the open's own sweep does not
         * finish an interrupted purge for us */
        db = open_db(dir, 86400);
        if (!db) {
            fprintf(stderr, "  %s: reopen failed after a crash at call %llu\n", op_name(op), (unsigned long long)k);
            *t_failed_ = 1;
            return 0;
        }
        int done = 0;
        const char *why = crash_check(db, op, s, &done);
        char staging[4300];
        snprintf(staging, sizeof staging, "%s/.staging", dir);
        dv_db_close(db, NULL);
        if (why) {
            fprintf(stderr, "  %s: crash at call %llu of %llu: %s\n", op_name(op), (unsigned long long)k,
                    (unsigned long long)calls, why);
            *t_failed_ = 1;
            return 0;
        }
        n_done += done;
        n_undone += !done;
        rm_rf(dir);
    }
    fprintf(stderr, "  %s: %llu crash points: %d done, %d undone\n", op_name(op), (unsigned long long)calls, n_done,
            n_undone);
    rm_rf(root);
    free(root);
    /* Both outcomes must occur: an early crash undoes, the last one is done. */
    return n_done > 0 && n_undone > 0;
}

/* EIO at each I/O call of op in turn (the call fails, later ones work):
 * after a reopen the operation is done exactly when it returned DV_OK. */
static int eio_loop(crash_op op, int *t_failed_)
{
    char *root = mkroot();
    char dir[4200], id[128];
    uint64_t s;
    snprintf(dir, sizeof dir, "%s/count", root);
    dv_db *db = crash_setup(dir, op, &s, id, sizeof id);
    if (!db) {
        *t_failed_ = 1;
        return 0;
    }
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    dv_code rc = crash_run(db, op, id);
    uint64_t calls = io_calls();
    io_fault_disarm();
    dv_db_close(db, NULL);
    if (rc != DV_OK) {
        *t_failed_ = 1;
        return 0;
    }
    uint64_t step = QUICK && calls > 15 ? calls / 15 : 1;
    int n_err = 0;
    for (uint64_t k = 1; k <= calls; k += step) {
        snprintf(dir, sizeof dir, "%s/k%llu", root, (unsigned long long)k);
        db = crash_setup(dir, op, &s, id, sizeof id);
        if (!db) {
            *t_failed_ = 1;
            return 0;
        }
        io_fault_arm(IO_FAULT_EIO, k, 0);
        rc = crash_run(db, op, id);
        io_fault_disarm();
        dv_db_close(db, NULL);
        db = open_db(dir, 86400);
        int done = 0;
        const char *why = db ? crash_check(db, op, s, &done) : "reopen failed";
        if (db)
            dv_db_close(db, NULL);
        if (!why && (rc == DV_OK) != done)
            why = rc == DV_OK ? "returned ok but is not done" : "returned an error but is done";
        if (why) {
            fprintf(stderr, "  %s: EIO at call %llu of %llu (rc %d): %s\n", op_name(op), (unsigned long long)k,
                    (unsigned long long)calls, rc, why);
            *t_failed_ = 1;
            return 0;
        }
        n_err += rc != DV_OK;
        rm_rf(dir);
    }
    fprintf(stderr, "  %s: %llu io calls, %d failed cleanly\n", op_name(op), (unsigned long long)calls, n_err);
    rm_rf(root);
    free(root);
    return n_err > 0;
}

TEST(an_io_error_anywhere_in_drop_restore_backup_hard_delete_purge_means_not_done)
{
    CHECK(eio_loop(OP_DROP, t_failed_));
    CHECK(eio_loop(OP_RESTORE_TRASH, t_failed_));
    CHECK(eio_loop(OP_BACKUP, t_failed_));
    CHECK(eio_loop(OP_RESTORE_BACKUP, t_failed_));
    CHECK(eio_loop(OP_HARD_DELETE, t_failed_));
    CHECK(eio_loop(OP_PURGE, t_failed_));
}

TEST(crash_at_every_io_call_of_a_drop_leaves_it_done_or_undone)
{
    CHECK(crash_loop(OP_DROP, t_failed_));
}

TEST(crash_at_every_io_call_of_a_restore_from_trash_leaves_it_done_or_undone)
{
    CHECK(crash_loop(OP_RESTORE_TRASH, t_failed_));
}

TEST(crash_at_every_io_call_of_a_backup_leaves_no_partial_backup)
{
    CHECK(crash_loop(OP_BACKUP, t_failed_));
}

TEST(crash_at_every_io_call_of_a_restore_from_backup_leaves_it_done_or_undone)
{
    CHECK(crash_loop(OP_RESTORE_BACKUP, t_failed_));
}

TEST(crash_at_every_io_call_of_a_hard_delete_never_loses_data_without_a_backup)
{
    CHECK(crash_loop(OP_HARD_DELETE, t_failed_));
}

TEST(crash_at_every_io_call_of_a_purge_leaves_the_entry_whole_or_gone)
{
    CHECK(crash_loop(OP_PURGE, t_failed_));
}

T_MAIN()
