/* test_db.c - the database handle: restart preserves every collection, id,
 * vector (bit-exact) and metadata; create is never a re-create; damaged
 * collections are listed and the others served; names and options. */
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dvecdb.h"
#include "t.h"
#include "tfs.h"

static char *tmpdir(void)
{
    char *d = strdup("/tmp/dvecdb-test-db-XXXXXX");
    if (!mkdtemp(d))
        abort();
    return d;
}

static uint64_t rng_state = 42;
static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}

static dv_coll_config cfg_of(const char *name, uint32_t dim, dv_metric m)
{
    dv_coll_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.dim = dim;
    c.metric = m;
    c.vtype = DV_VTYPE_F32;
    return c;
}

TEST(names_parse_case_insensitively_and_reject_unknown)
{
    dv_metric m;
    dv_vtype t;
    CHECK(dv_metric_parse("cosine", &m, NULL) == DV_OK && m == DV_METRIC_COSINE);
    CHECK(dv_metric_parse("EUCLIDEAN", &m, NULL) == DV_OK && m == DV_METRIC_EUCLIDEAN);
    CHECK(dv_metric_parse("DotProduct", &m, NULL) == DV_OK && m == DV_METRIC_DOT);
    CHECK(dv_metric_parse("l1", &m, NULL) == DV_OK && m == DV_METRIC_MANHATTAN);
    CHECK(dv_metric_parse("hamming", &m, NULL) == DV_EINVAL);
    CHECK(strcmp(dv_metric_name(DV_METRIC_DOT), "DotProduct") == 0);
    CHECK(dv_vtype_parse("float16", &t, NULL) == DV_OK && t == DV_VTYPE_F16);
    CHECK(dv_vtype_parse("Int8", &t, NULL) == DV_OK && t == DV_VTYPE_I8);
    CHECK(dv_vtype_parse("double", &t, NULL) == DV_EINVAL);
    CHECK(strcmp(dv_vtype_name(DV_VTYPE_F32), "Float32") == 0);
    CHECK(dv_name_validate("my_coll-1", NULL) == DV_OK);
    CHECK(dv_name_validate("", NULL) == DV_EINVAL);
    CHECK(dv_name_validate("..", NULL) == DV_EINVAL);
    CHECK(dv_name_validate("a/b", NULL) == DV_EINVAL);
    CHECK(dv_name_validate("deleted", NULL) == DV_EINVAL);
    CHECK(dv_name_validate("import", NULL) == DV_EINVAL);
    CHECK(dv_name_validate("backups", NULL) == DV_EINVAL);
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = 0;
    CHECK(dv_name_validate(long_name, NULL) == DV_EINVAL);
    long_name[64] = 0;
    CHECK(dv_name_validate(long_name, NULL) == DV_OK);
    dv_db_options o;
    dv_db_options_init(&o);
    CHECK(o.fsync == DV_FSYNC_ALWAYS && o.fsync_interval_ms == 100 && o.checkpoint_wal_bytes == (64ull << 20));
    CHECK(o.trash_retention_s == 86400 && o.backup_keep_auto == 5 && !o.read_only);
}

TEST(create_existing_name_fails_with_eexist_and_keeps_data)
{
    char *d = tmpdir();
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_config c = cfg_of("docs", 4, DV_METRIC_EUCLIDEAN);
    CHECK_OK(dv_coll_create(db, &c, &e));
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "docs", &h, &e));
    float v[4] = {1, 2, 3, 4};
    dv_point p = {"a", v, NULL, 0};
    CHECK_OK(dv_coll_upsert(h, &p, 1, &e));
    CHECK(dv_coll_create(db, &c, &e) == DV_EEXIST);
    c.dim = 8; /* a different config does not make it a re-create either */
    CHECK(dv_coll_create(db, &c, &e) == DV_EEXIST);
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(h, &in, &e));
    CHECK(in.n_vectors == 1 && in.config.dim == 4);
    dv_coll_close(h);
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

TEST(create_rejects_bad_config_and_unsupported_types)
{
    char *d = tmpdir();
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_config c = cfg_of("x", 0, DV_METRIC_COSINE);
    CHECK(dv_coll_create(db, &c, &e) == DV_EINVAL);
    c = cfg_of("bad/name", 4, DV_METRIC_COSINE);
    CHECK(dv_coll_create(db, &c, &e) == DV_EINVAL);
    c = cfg_of("half", 4, DV_METRIC_COSINE);
    c.vtype = DV_VTYPE_F16;
    CHECK(dv_coll_create(db, &c, &e) == DV_ENOTSUP);
    CHECKF(strstr(e.msg, "Float16") && strstr(e.msg, "not supported yet"), "%s", e.msg);
    c.vtype = DV_VTYPE_I8;
    CHECK(dv_coll_create(db, &c, &e) == DV_ENOTSUP);
    c = cfg_of("m", 4, (dv_metric)9);
    CHECK(dv_coll_create(db, &c, &e) == DV_EINVAL);
    c = cfg_of("m", 4, DV_METRIC_DOT);
    c.m = 1000;
    CHECK(dv_coll_create(db, &c, &e) == DV_EINVAL);
    dv_coll_info *list;
    size_t n;
    CHECK_OK(dv_db_list(db, &list, &n, &e));
    CHECK(n == 0);
    dv_free(list);
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

/* Write a few collections with every metric, close (or not), reopen, and
 * compare every id, vector bit for bit and metadata byte for byte. */
static void restart_roundtrip(int *t_failed_, int checkpoint_at_close)
{
    char *d = tmpdir();
    dv_db *db;
    dv_err e;
    enum { NC = 4, N = 300, DIM = 13 };
    static float vecs[NC][N][DIM];
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    const char *names[NC] = {"cos", "l2", "dot", "l1"};
    for (int ci = 0; ci < NC; ci++) {
        dv_coll_config c = cfg_of(names[ci], DIM, (dv_metric)ci);
        CHECK_OK(dv_coll_create(db, &c, &e));
        dv_coll *h;
        CHECK_OK(dv_coll_open(db, names[ci], &h, &e));
        for (int b = 0; b < 3; b++) {
            dv_point pts[100];
            char ids[100][32], metas[100][64];
            for (int i = 0; i < 100; i++) {
                int k = b * 100 + i;
                for (int j = 0; j < DIM; j++)
                    vecs[ci][k][j] = frand();
                snprintf(ids[i], sizeof ids[i], "id-%d-\xc3\xa9", k);
                snprintf(metas[i], sizeof metas[i], "{\"k\": %d,  \"s\":\"x\\u00e9\" }", k);
                pts[i] = (dv_point){ids[i], vecs[ci][k], k % 3 ? metas[i] : NULL, k % 3 ? strlen(metas[i]) : 0};
            }
            CHECK_OK(dv_coll_upsert(h, pts, 100, &e));
        }
        /* store what the engine returns (normalized for cosine) */
        for (int k = 0; k < N; k++) {
            char id[32];
            snprintf(id, sizeof id, "id-%d-\xc3\xa9", k);
            dv_record *r;
            CHECK_OK(dv_coll_get(h, id, &r, &e));
            memcpy(vecs[ci][k], r->vector, sizeof vecs[ci][k]);
            dv_record_free(r);
        }
        const char *del[] = {"id-7-\xc3\xa9", "id-8-\xc3\xa9", "nope"};
        size_t nd = 0;
        CHECK_OK(dv_coll_delete(h, del, 3, &nd, &e));
        CHECK(nd == 2);
        dv_coll_close(h);
    }
    if (checkpoint_at_close) {
        CHECK_OK(dv_db_close(db, &e));
    } else {
        /* Before any checkpoint the WAL alone must carry everything: a
         * read-only open beside the writer replays it from disk. */
        dv_db_options o;
        dv_db_options_init(&o);
        o.read_only = 1;
        dv_db *ro;
        CHECK_OK(dv_db_open(d, &o, &ro, &e));
        dv_coll *h;
        CHECK_OK(dv_coll_open(ro, "l2", &h, &e));
        dv_coll_info in;
        CHECK_OK(dv_coll_info_get(h, &in, &e));
        CHECKF(in.n_vectors == N - 2, "%llu", (unsigned long long)in.n_vectors);
        dv_coll_close(h);
        CHECK_OK(dv_db_close(ro, &e));
        CHECK_OK(dv_db_close(db, &e));
    }
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_info *list;
    size_t n;
    CHECK_OK(dv_db_list(db, &list, &n, &e));
    CHECK(n == NC);
    for (size_t i = 0; i < n; i++)
        CHECK(!list[i].damaged && list[i].n_vectors == N - 2 && list[i].config.dim == DIM);
    dv_free(list);
    for (int ci = 0; ci < NC; ci++) {
        dv_coll *h;
        CHECK_OK(dv_coll_open(db, names[ci], &h, &e));
        dv_coll_info in;
        CHECK_OK(dv_coll_info_get(h, &in, &e));
        CHECK(in.config.metric == (dv_metric)ci);
        for (int k = 0; k < N; k++) {
            char id[32], meta[64];
            snprintf(id, sizeof id, "id-%d-\xc3\xa9", k);
            snprintf(meta, sizeof meta, "{\"k\": %d,  \"s\":\"x\\u00e9\" }", k);
            dv_record *r = NULL;
            dv_code rc = dv_coll_get(h, id, &r, &e);
            if (k == 7 || k == 8) {
                CHECK(rc == DV_ENOTFOUND);
                continue;
            }
            CHECK_OK(rc);
            CHECK(memcmp(r->vector, vecs[ci][k], sizeof vecs[ci][k]) == 0);
            if (k % 3) {
                CHECK(r->metadata && r->metadata_len == strlen(meta) && memcmp(r->metadata, meta, strlen(meta)) == 0);
            } else {
                CHECK(r->metadata == NULL);
            }
            dv_record_free(r);
        }
        /* and the index works after the restart */
        dv_search_params sp = {.k = 5};
        dv_result *res;
        CHECK_OK(dv_coll_search(h, vecs[ci][10], &sp, &res, &e));
        CHECK(res->n == 5);
        /* its own nearest neighbour (not so for DotProduct: a longer vector
         * can have a larger inner product) */
        if (ci != DV_METRIC_DOT)
            CHECK(strcmp(res->hits[0].id, "id-10-\xc3\xa9") == 0);
        dv_result_free(res);
        dv_coll_close(h);
    }
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

TEST(restart_preserves_collections_ids_vectors_bit_exact_and_metadata)
{
    restart_roundtrip(t_failed_, 1);
}

TEST(wal_alone_recovers_everything_before_any_checkpoint)
{
    restart_roundtrip(t_failed_, 0);
}

TEST(second_open_of_the_same_directory_is_refused)
{
    char *d = tmpdir();
    dv_db *db, *db2;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    CHECK(dv_db_open(d, NULL, &db2, &e) == DV_EBUSY);
    CHECK_OK(dv_db_close(db, &e));
    CHECK_OK(dv_db_open(d, NULL, &db2, &e));
    CHECK_OK(dv_db_close(db2, &e));
    rm_rf(d);
    free(d);
}

TEST(damaged_collection_is_listed_and_refused_while_others_open)
{
    char *d = tmpdir();
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_config c1 = cfg_of("good", 3, DV_METRIC_EUCLIDEAN), c2 = cfg_of("bad", 3, DV_METRIC_EUCLIDEAN);
    CHECK_OK(dv_coll_create(db, &c1, &e));
    CHECK_OK(dv_coll_create(db, &c2, &e));
    float v[3] = {1, 2, 3};
    dv_point p = {"p", v, NULL, 0};
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "good", &h, &e));
    CHECK_OK(dv_coll_upsert(h, &p, 1, &e));
    dv_coll_close(h);
    CHECK_OK(dv_db_close(db, &e));
    /* Flip a byte inside bad's manifest. */
    char path[512];
    snprintf(path, sizeof path, "%s/collections/bad/manifest.json", d);
    FILE *f = fopen(path, "r+b");
    CHECK(f);
    fseek(f, 40, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(ch ^ 0x01, f);
    fclose(f);
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_info *list;
    size_t n;
    CHECK_OK(dv_db_list(db, &list, &n, &e));
    CHECK(n == 2);
    CHECK(strcmp(list[0].config.name, "bad") == 0 && list[0].damaged);
    CHECKF(strstr(list[0].damage, "manifest.json"), "%s", list[0].damage);
    CHECK(strcmp(list[1].config.name, "good") == 0 && !list[1].damaged && list[1].n_vectors == 1);
    dv_free(list);
    CHECK(dv_coll_open(db, "bad", &h, &e) == DV_EDAMAGED);
    CHECK(dv_coll_create(db, &c2, &e) == DV_EEXIST); /* never a silent re-create */
    dv_db_stats st;
    CHECK_OK(dv_db_stats_get(db, &st, &e));
    CHECK(st.n_collections == 2 && st.n_damaged == 1 && st.n_vectors == 1 && !st.poisoned);
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

TEST(read_only_open_writes_nothing)
{
    char *d = tmpdir();
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_config c = cfg_of("r", 2, DV_METRIC_DOT);
    CHECK_OK(dv_coll_create(db, &c, &e));
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "r", &h, &e));
    float v[2] = {1, 0};
    dv_point p = {"p", v, NULL, 0};
    CHECK_OK(dv_coll_upsert(h, &p, 1, &e));
    dv_coll_close(h);
    dv_db_options o;
    dv_db_options_init(&o);
    o.read_only = 1;
    dv_db *ro;
    CHECK_OK(dv_db_open(d, &o, &ro, &e));
    CHECK_OK(dv_coll_open(ro, "r", &h, &e));
    CHECK(dv_coll_upsert(h, &p, 1, &e) == DV_EREADONLY);
    CHECK(dv_coll_checkpoint(h, &e) == DV_EREADONLY);
    c = cfg_of("s", 2, DV_METRIC_DOT);
    CHECK(dv_coll_create(ro, &c, &e) == DV_EREADONLY);
    dv_record *r;
    CHECK_OK(dv_coll_get(h, "p", &r, &e));
    dv_record_free(r);
    dv_coll_close(h);
    CHECK_OK(dv_db_close(ro, &e));
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
}

T_MAIN()
