/* test_coll.c - one collection through the public API: every call, input
 * validation that changes nothing, upsert semantics, metadata byte-exact,
 * filters with recall at 50/10/1/0.1% selectivity, concurrent searches
 * beside a writer, and the outside-the-catalog hooks of db_int.h. */
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_int.h"
#include "io.h"
#include "dvecdb.h"
#include "t.h"
#include "tfs.h"

#if defined(__SANITIZE_ADDRESS__)
#define SMALL 1
#else
#define SMALL 0
#endif

static uint64_t rng_state = 7;
static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}

typedef struct fixture {
    char *dir;
    dv_db *db;
    dv_coll *c;
} fixture;

static int fx_open(fixture *f, const char *name, uint32_t dim, dv_metric m)
{
    f->dir = strdup("/tmp/dvecdb-test-coll-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    dv_err e;
    /* Durability is test_db's and the crash tests' subject: skip fsyncs. */
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    if (dv_db_open(f->dir, &o, &f->db, &e))
        return -1;
    dv_coll_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.dim = dim;
    c.metric = m;
    if (dv_coll_create(f->db, &c, &e) || dv_coll_open(f->db, name, &f->c, &e))
        return -1;
    return 0;
}

static void fx_close(fixture *f)
{
    if (f->c)
        dv_coll_close(f->c);
    if (f->db)
        dv_db_close(f->db, NULL);
    rm_rf(f->dir);
    free(f->dir);
}

static uint64_t count_of(dv_coll *c)
{
    dv_coll_info in;
    if (dv_coll_info_get(c, &in, NULL))
        return UINT64_MAX;
    return in.n_vectors;
}

TEST(upsert_get_delete_roundtrip_with_exact_metadata)
{
    fixture f = {0};
    CHECK(fx_open(&f, "c", 4, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    float v1[4] = {1, 2, 3, 4}, v2[4] = {-1, 0.5f, 0, 2};
    const char *meta = "{ \"b\" :1,\"a\":[1, 2.50,\"x\"] }"; /* odd spacing and order kept */
    dv_point pts[2] = {{"first", v1, meta, strlen(meta)}, {"550e8400-e29b-41d4-a716-446655440000", v2, NULL, 0}};
    CHECK_OK(dv_coll_upsert(f.c, pts, 2, &e));
    CHECK(count_of(f.c) == 2);
    dv_record *r;
    CHECK_OK(dv_coll_get(f.c, "first", &r, &e));
    CHECK(r->dim == 4 && memcmp(r->vector, v1, sizeof v1) == 0);
    CHECK(r->metadata_len == strlen(meta) && memcmp(r->metadata, meta, strlen(meta)) == 0);
    CHECK(strcmp(r->id, "first") == 0);
    dv_record_free(r);
    CHECK_OK(dv_coll_get(f.c, "550e8400-e29b-41d4-a716-446655440000", &r, &e));
    CHECK(r->metadata == NULL && r->metadata_len == 0);
    dv_record_free(r);
    CHECK(dv_coll_get(f.c, "missing", &r, &e) == DV_ENOTFOUND);
    const char *ids[] = {"first", "missing", "first"};
    size_t nd = 99;
    CHECK_OK(dv_coll_delete(f.c, ids, 3, &nd, &e));
    CHECK(nd == 1);
    CHECK(dv_coll_get(f.c, "first", &r, &e) == DV_ENOTFOUND);
    CHECK(count_of(f.c) == 1);
    /* deleting only absent ids writes nothing and counts 0 */
    CHECK_OK(dv_coll_delete(f.c, ids, 1, &nd, &e));
    CHECK(nd == 0);
    fx_close(&f);
}

TEST(upsert_of_existing_id_replaces_vector_and_metadata)
{
    fixture f = {0};
    CHECK(fx_open(&f, "c", 2, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    float a[2] = {1, 1}, b[2] = {5, 5};
    dv_point p = {"x", a, "{\"v\":1}", 7};
    CHECK_OK(dv_coll_upsert(f.c, &p, 1, &e));
    p = (dv_point){"x", b, NULL, 0};
    CHECK_OK(dv_coll_upsert(f.c, &p, 1, &e));
    CHECK(count_of(f.c) == 1);
    dv_record *r;
    CHECK_OK(dv_coll_get(f.c, "x", &r, &e));
    CHECK(r->vector[0] == 5 && r->metadata == NULL);
    dv_record_free(r);
    /* search finds only the new version */
    dv_search_params sp = {.k = 10, .exact = 1};
    dv_result *res;
    CHECK_OK(dv_coll_search(f.c, a, &sp, &res, &e));
    CHECK(res->n == 1 && strcmp(res->hits[0].id, "x") == 0);
    CHECK(fabsf(res->hits[0].distance - sqrtf(32.0f)) < 1e-5f);
    dv_result_free(res);
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(f.c, &in, &e));
    CHECK(in.n_deleted == 1 && in.last_seq == 2);
    fx_close(&f);
}

TEST(duplicate_ids_in_one_batch_last_one_wins)
{
    fixture f = {0};
    CHECK(fx_open(&f, "c", 2, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    float a[2] = {1, 0}, b[2] = {2, 0}, c2[2] = {3, 0};
    dv_point p[3] = {{"d", a, "{\"n\":1}", 7}, {"o", b, NULL, 0}, {"d", c2, "{\"n\":3}", 7}};
    CHECK_OK(dv_coll_upsert(f.c, p, 3, &e));
    CHECK(count_of(f.c) == 2);
    dv_record *r;
    CHECK_OK(dv_coll_get(f.c, "d", &r, &e));
    CHECK(r->vector[0] == 3 && r->metadata && strcmp(r->metadata, "{\"n\":3}") == 0);
    dv_record_free(r);
    fx_close(&f);
}

TEST(invalid_points_are_rejected_naming_the_index_and_change_nothing)
{
    fixture f = {0};
    CHECK(fx_open(&f, "c", 3, DV_METRIC_COSINE) == 0);
    dv_err e;
    float ok[3] = {1, 2, 3}, nan_v[3] = {1, NAN, 3}, inf_v[3] = {INFINITY, 0, 0};
    dv_point seed = {"seed", ok, NULL, 0};
    CHECK_OK(dv_coll_upsert(f.c, &seed, 1, &e));
    dv_coll_info before;
    CHECK_OK(dv_coll_info_get(f.c, &before, &e));
    char long_id[300];
    memset(long_id, 'i', 257);
    long_id[257] = 0;
    struct {
        dv_point bad;
        dv_code code;
        const char *needle;
    } cases[] = {
        {{"n", nan_v, NULL, 0}, DV_EINVAL, "NaN"},
        {{"n", inf_v, NULL, 0}, DV_EINVAL, "NaN or Inf"},
        {{"", ok, NULL, 0}, DV_EINVAL, "empty"},
        {{NULL, ok, NULL, 0}, DV_EINVAL, "missing"},
        {{long_id, ok, NULL, 0}, DV_EINVAL, "256"},
        {{"bad\xff utf8", ok, NULL, 0}, DV_EINVAL, "UTF-8"},
        {{"overlong\xc0\xaf", ok, NULL, 0}, DV_EINVAL, "UTF-8"},
        {{"m", ok, "[1,2]", 5}, DV_EINVAL, "metadata"},
        {{"m", ok, "{\"a\":", 5}, DV_EINVAL, "metadata"},
        {{"m", ok, NULL, 4}, DV_EINVAL, "metadata"},
        {{"v", NULL, NULL, 0}, DV_EINVAL, "vector"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dv_point batch[3] = {{"fine-1", ok, NULL, 0}, {"fine-2", ok, "{}", 2}, cases[i].bad};
        dv_code rc = dv_coll_upsert(f.c, batch, 3, &e);
        CHECKF(rc == cases[i].code, "case %zu: rc %d (%s)", i, rc, e.msg);
        CHECKF(strstr(e.msg, "point 2") && strstr(e.msg, cases[i].needle), "case %zu: %s", i, e.msg);
    }
    char *big = malloc(DV_METADATA_MAX + 10);
    memset(big, ' ', DV_METADATA_MAX + 9);
    big[0] = '{';
    big[DV_METADATA_MAX + 8] = '}';
    dv_point bp = {"big", ok, big, DV_METADATA_MAX + 9};
    CHECK(dv_coll_upsert(f.c, &bp, 1, &e) == DV_ELIMIT);
    free(big);
    dv_coll_info after;
    CHECK_OK(dv_coll_info_get(f.c, &after, &e));
    CHECK(after.n_vectors == 1 && after.last_seq == before.last_seq && after.wal_bytes == before.wal_bytes);
    dv_record *r;
    CHECK(dv_coll_get(f.c, "fine-1", &r, &e) == DV_ENOTFOUND);
    /* bad search parameters */
    dv_search_params sp = {.k = 0};
    dv_result *res;
    CHECK(dv_coll_search(f.c, ok, &sp, &res, &e) == DV_EINVAL);
    sp.k = DV_K_MAX + 1;
    CHECK(dv_coll_search(f.c, ok, &sp, &res, &e) == DV_EINVAL);
    sp.k = 1;
    CHECK(dv_coll_search(f.c, nan_v, &sp, &res, &e) == DV_EINVAL);
    sp.filter = "{\"must\": 3";
    sp.filter_len = strlen(sp.filter);
    CHECK(dv_coll_search(f.c, ok, &sp, &res, &e) == DV_EINVAL);
    fx_close(&f);
}

TEST(search_distances_follow_each_metric)
{
    const dv_metric ms[4] = {DV_METRIC_COSINE, DV_METRIC_EUCLIDEAN, DV_METRIC_DOT, DV_METRIC_MANHATTAN};
    for (int mi = 0; mi < 4; mi++) {
        fixture f = {0};
        CHECK(fx_open(&f, "m", 2, ms[mi]) == 0);
        dv_err e;
        float a[2] = {3, 4}, q[2] = {1, 0};
        dv_point p = {"a", a, NULL, 0};
        CHECK_OK(dv_coll_upsert(f.c, &p, 1, &e));
        dv_search_params sp = {.k = 1, .include_vectors = 1};
        dv_result *res;
        CHECK_OK(dv_coll_search(f.c, q, &sp, &res, &e));
        CHECK(res->n == 1 && res->dim == 2 && res->hits[0].vector);
        float d = res->hits[0].distance, want = 0;
        switch (ms[mi]) {
        case DV_METRIC_COSINE: want = 1.0f - 0.6f; break;
        case DV_METRIC_EUCLIDEAN: want = sqrtf(4 + 16); break;
        case DV_METRIC_DOT: want = -3.0f; break;
        case DV_METRIC_MANHATTAN: want = 2 + 4; break;
        }
        CHECKF(fabsf(d - want) < 1e-5f, "metric %d: %g vs %g", mi, d, want);
        if (ms[mi] == DV_METRIC_COSINE) /* stored normalized */
            CHECK(fabsf(res->hits[0].vector[0] - 0.6f) < 1e-6f && fabsf(res->hits[0].vector[1] - 0.8f) < 1e-6f);
        dv_result_free(res);
        fx_close(&f);
    }
}

TEST(scroll_pages_through_live_points_in_stable_order)
{
    fixture f = {0};
    CHECK(fx_open(&f, "s", 2, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    dv_point p[50];
    char ids[50][16];
    float v[50][2];
    for (int i = 0; i < 50; i++) {
        snprintf(ids[i], sizeof ids[i], "p%d", i);
        v[i][0] = (float)i;
        v[i][1] = 0;
        p[i] = (dv_point){ids[i], v[i], NULL, 0};
    }
    CHECK_OK(dv_coll_upsert(f.c, p, 50, &e));
    const char *del[] = {"p3", "p4"};
    CHECK_OK(dv_coll_delete(f.c, del, 2, NULL, &e));
    int seen[50] = {0}, total = 0;
    for (uint64_t off = 0;; off += 7) {
        dv_result *r;
        CHECK_OK(dv_coll_scroll(f.c, off, 7, 1, &r, &e));
        for (size_t i = 0; i < r->n; i++) {
            int k = atoi(r->hits[i].id + 1);
            CHECK(!seen[k] && r->hits[i].vector[0] == (float)k && r->hits[i].distance == 0);
            seen[k] = 1;
            total++;
        }
        size_t n = r->n;
        dv_result_free(r);
        if (n < 7)
            break;
    }
    CHECK(total == 48 && !seen[3] && !seen[4]);
    fx_close(&f);
}

/* The soak's pattern: a fixed id space rewritten many times over. Slots of
 * replaced and deleted points are reused, so slots, memory and disk stay
 * near the live count instead of growing with every write; the state and
 * search quality stay exact, also after a checkpoint and a reopen. */
#define CH_IDS (SMALL ? 600 : 2000)
#define CH_DIM 32
#define CH_ROUNDS 30

static void ch_vec(float *v, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int j = 0; j < CH_DIM; j++) {
        x ^= x >> 33;
        x *= 0xFF51AFD7ED558CCDull;
        x ^= x >> 29;
        v[j] = (float)((x >> 40) & 0xFFFF) / 65536.0f;
    }
}

/* Every id holds exactly its latest vector, deleted ids are absent, and a
 * search for each of 100 live vectors finds it first. */
static int ch_check(dv_coll *c, const uint64_t *ver, const uint8_t *live)
{
    int bad = 0;
    uint64_t n_live = 0;
    char id[16];
    float v[CH_DIM];
    for (int i = 0; i < CH_IDS; i++) {
        snprintf(id, sizeof id, "id%d", i);
        dv_record *r = NULL;
        dv_code rc = dv_coll_get(c, id, &r, NULL);
        if (!live[i]) {
            bad |= rc != DV_ENOTFOUND;
            continue;
        }
        n_live++;
        ch_vec(v, ver[i]);
        if (rc != DV_OK || memcmp(r->vector, v, sizeof v) != 0)
            bad = 1;
        dv_record_free(r);
    }
    bad |= count_of(c) != n_live;
    int found = 0, tried = 0;
    for (int i = 0; i < CH_IDS && tried < 100; i += 7) {
        if (!live[i])
            continue;
        tried++;
        ch_vec(v, ver[i]);
        dv_search_params sp = {.k = 10, .ef = 64};
        dv_result *r = NULL;
        if (dv_coll_search(c, v, &sp, &r, NULL) != DV_OK)
            return 1;
        snprintf(id, sizeof id, "id%d", i);
        found += r->n > 0 && strcmp(r->hits[0].id, id) == 0;
        dv_result_free(r);
    }
    if (found < tried * 98 / 100) {
        fprintf(stderr, "  self-search found %d of %d\n", found, tried);
        bad = 1;
    }
    return bad;
}

TEST(rewriting_a_fixed_id_space_30_times_reuses_slots_and_keeps_memory_and_disk_flat)
{
    fixture f = {0};
    CHECK(fx_open(&f, "churn", CH_DIM, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    uint64_t *ver = calloc(CH_IDS, sizeof *ver);
    uint8_t *live = calloc(CH_IDS, 1);
    char (*ids)[16] = calloc(CH_IDS, 16);
    float *vs = malloc((size_t)CH_IDS * CH_DIM * sizeof *vs);
    dv_point *pts = calloc(CH_IDS, sizeof *pts);
    uint64_t next_ver = 1;
    for (int i = 0; i < CH_IDS; i++) {
        snprintf(ids[i], 16, "id%d", i);
        ver[i] = next_ver++;
        live[i] = 1;
        ch_vec(vs + (size_t)i * CH_DIM, ver[i]);
        pts[i] = (dv_point){ids[i], vs + (size_t)i * CH_DIM, NULL, 0};
    }
    CHECK_OK(dv_coll_upsert(f.c, pts, CH_IDS, &e));
    CHECK_OK(dv_coll_checkpoint(f.c, &e));
    dv_coll_info base;
    CHECK_OK(dv_coll_info_get(f.c, &base, &e));
    rng_state = 11;
    size_t batch = CH_IDS / 4;
    uint64_t max_slots = 0;
    dv_coll_info warm;
    memset(&warm, 0, sizeof warm);
    for (int round = 0; round < CH_ROUNDS; round++) {
        /* a quarter of the ids rewritten (deleted ones come back)... */
        size_t n = 0;
        for (size_t k = 0; k < batch; k++) {
            int i = (int)((uint64_t)((frand() + 1.0f) * 0.5f * CH_IDS) % CH_IDS);
            int dup = 0;
            for (size_t j = 0; j < n && !dup; j++)
                dup = pts[j].id == ids[i];
            if (dup)
                continue;
            ver[i] = next_ver++;
            live[i] = 1;
            ch_vec(vs + n * CH_DIM, ver[i]);
            pts[n] = (dv_point){ids[i], vs + n * CH_DIM, NULL, 0};
            n++;
        }
        CHECK_OK(dv_coll_upsert(f.c, pts, n, &e));
        /* ...and a twentieth deleted */
        const char *del[CH_IDS / 20];
        for (int k = 0; k < CH_IDS / 20; k++) {
            int i = (int)((uint64_t)((frand() + 1.0f) * 0.5f * CH_IDS) % CH_IDS);
            del[k] = ids[i];
            live[i] = 0;
        }
        CHECK_OK(dv_coll_delete(f.c, del, CH_IDS / 20, NULL, &e));
        if (round % 10 == 9)
            CHECK_OK(dv_coll_checkpoint(f.c, &e));
        dv_coll_info in;
        CHECK_OK(dv_coll_info_get(f.c, &in, &e));
        if (round == 9)
            warm = in; /* capacity has grown for the batch size by now */
        if (in.n_vectors + in.n_deleted > max_slots)
            max_slots = in.n_vectors + in.n_deleted;
    }
    CHECK(ch_check(f.c, ver, live) == 0);
    CHECK_OK(dv_coll_checkpoint(f.c, &e));
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(f.c, &in, &e));
    fprintf(stderr, "  %d rounds over %d ids: peak slots %" PRIu64 ", memory %" PRIu64 " (round 10) -> %" PRIu64
            " bytes, disk %" PRIu64 " (first checkpoint) -> %" PRIu64 " bytes\n", CH_ROUNDS, CH_IDS, max_slots,
            warm.mem_bytes, in.mem_bytes, base.disk_bytes, in.disk_bytes);
    /* Without reuse: CH_IDS + 30 x (a quarter + a twentieth) slots. */
    CHECKF(max_slots <= (uint64_t)CH_IDS + batch + 1, "peak slots %" PRIu64, max_slots);
    CHECKF(in.mem_bytes <= warm.mem_bytes * 105 / 100, "memory %" PRIu64 " vs %" PRIu64, in.mem_bytes,
           warm.mem_bytes);
    CHECKF(in.disk_bytes <= base.disk_bytes * 13 / 10 + 65536, "disk %" PRIu64 " vs %" PRIu64, in.disk_bytes,
           base.disk_bytes);
    /* The same state after a reopen (snapshot + tombstones + free list). */
    dv_coll_close(f.c);
    f.c = NULL;
    CHECK_OK(dv_db_close(f.db, &e));
    f.db = NULL;
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    CHECK_OK(dv_db_open(f.dir, &o, &f.db, &e));
    CHECK_OK(dv_coll_open(f.db, "churn", &f.c, &e));
    CHECK(ch_check(f.c, ver, live) == 0);
    /* and writes after the reopen reuse the tombstones left before it */
    dv_coll_info before;
    CHECK_OK(dv_coll_info_get(f.c, &before, &e));
    size_t n = 0;
    for (int i = 0; i < CH_IDS && n < before.n_deleted; i++) {
        if (live[i])
            continue;
        ver[i] = next_ver++;
        live[i] = 1;
        ch_vec(vs + n * CH_DIM, ver[i]);
        pts[n] = (dv_point){ids[i], vs + n * CH_DIM, NULL, 0};
        n++;
    }
    CHECK_OK(dv_coll_upsert(f.c, pts, n, &e));
    dv_coll_info after;
    CHECK_OK(dv_coll_info_get(f.c, &after, &e));
    CHECKF(after.n_vectors + after.n_deleted == before.n_vectors + before.n_deleted, "slots %" PRIu64 " -> %" PRIu64,
           before.n_vectors + before.n_deleted, after.n_vectors + after.n_deleted);
    CHECK(ch_check(f.c, ver, live) == 0);
    free(pts);
    free(vs);
    free(ids);
    free(live);
    free(ver);
    fx_close(&f);
}

/* Checkpoints write their files without holding the writer lock: writes
 * go on meanwhile (upserts of new and existing ids, deletes), and what
 * they wrote is all there after a reopen, with nothing of the checkpoint's
 * view lost or mixed up. */
typedef struct ckw {
    dv_coll *c;
    atomic_int done;       /* writes completed */
    int n_ids;
    uint64_t *ver;      /* latest acknowledged version per id, 0 = deleted */
    atomic_int stop;
    int writes, bad;
} ckw;

static void *ck_writer(void *arg)
{
    ckw *w = arg;
    uint64_t x = 99, next = 1000000;
    char ids[16][16];
    float vs[16][CH_DIM];
    while (!atomic_load(&w->stop)) {
        dv_point pts[16];
        int n = 0;
        for (int k = 0; k < 16; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int i = (int)((x >> 33) % (uint64_t)w->n_ids);
            snprintf(ids[n], sizeof ids[n], "id%d", i);
            int seen = 0;
            for (int j = 0; j < n; j++)
                seen |= strcmp(ids[j], ids[n]) == 0;
            if (seen)
                continue;
            ch_vec(vs[n], next + (uint64_t)n);
            pts[n] = (dv_point){ids[n], vs[n], NULL, 0};
            n++;
        }
        dv_code rc;
        if ((x >> 20) % 4 == 0) {
            const char *del[16];
            for (int j = 0; j < n; j++)
                del[j] = ids[j];
            rc = dv_coll_delete(w->c, del, (size_t)n, NULL, NULL);
            if (rc == DV_OK)
                for (int j = 0; j < n; j++)
                    w->ver[atoi(ids[j] + 2)] = 0;
        } else {
            rc = dv_coll_upsert(w->c, pts, (size_t)n, NULL);
            if (rc == DV_OK)
                for (int j = 0; j < n; j++)
                    w->ver[atoi(ids[j] + 2)] = next + (uint64_t)j;
        }
        next += 16;
        if (rc != DV_OK)
            w->bad = 1;
        w->writes++;
        atomic_fetch_add(&w->done, 1);
    }
    return NULL;
}

/* io_open hook: when the checkpointing thread opens a snapshot file, hold
 * it there until the writer has completed 5 more writes (or 10 s). */
static ckw *g_ckw;
static pthread_t g_ckpt_thread;
static atomic_int g_held, g_progressed;
static void ck_hold(const char *path)
{
    if (!pthread_equal(pthread_self(), g_ckpt_thread) || !strstr(path, "/vectors-"))
        return;
    atomic_fetch_add(&g_held, 1);
    int start = atomic_load(&g_ckw->done);
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(&g_ckw->done) >= start + 5) {
            atomic_fetch_add(&g_progressed, 1);
            return;
        }
        usleep(1000);
    }
}

TEST(writes_go_on_during_a_checkpoint_and_all_survive_a_reopen)
{
    fixture f = {0};
    CHECK(fx_open(&f, "ck", CH_DIM, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    int n_ids = SMALL ? 3000 : 20000;
    ckw w = {.c = f.c, .n_ids = n_ids, .ver = calloc((size_t)n_ids, sizeof(uint64_t))};
    /* a collection big enough for a checkpoint to take a while */
    char (*ids)[16] = calloc((size_t)n_ids, 16);
    float *vs = malloc((size_t)n_ids * CH_DIM * sizeof *vs);
    dv_point *pts = calloc((size_t)n_ids, sizeof *pts);
    for (int i = 0; i < n_ids; i++) {
        snprintf(ids[i], 16, "id%d", i);
        w.ver[i] = (uint64_t)i + 1;
        ch_vec(vs + (size_t)i * CH_DIM, w.ver[i]);
        pts[i] = (dv_point){ids[i], vs + (size_t)i * CH_DIM, NULL, 0};
    }
    CHECK_OK(dv_coll_upsert(f.c, pts, (size_t)n_ids, &e));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, ck_writer, &w) == 0);
    g_ckw = &w;
    g_ckpt_thread = pthread_self();
    atomic_store(&g_held, 0);
    atomic_store(&g_progressed, 0);
    io_test_open_hook(ck_hold);
    int n_ckpt = 0;
    for (int k = 0; k < 6; k++) {
        dv_code rc = dv_coll_checkpoint(f.c, &e);
        CHECKF(rc == DV_OK, "checkpoint %d: %s", k, e.msg);
        n_ckpt++;
        usleep(5000);
    }
    io_test_open_hook(NULL);
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    fprintf(stderr, "  %d writes beside %d checkpoints; held %d times inside the file writes, writes went on in %d\n",
            w.writes, n_ckpt, atomic_load(&g_held), atomic_load(&g_progressed));
    CHECK(!w.bad);
    /* A checkpoint holding the writer lock throughout: 0 of 6. */
    CHECK(atomic_load(&g_held) == n_ckpt);
    CHECK(atomic_load(&g_progressed) == n_ckpt);
    /* What is on disk now - the last of those checkpoints plus the WAL
     * after it, as recovery after a crash would read it (a read-only open
     * beside the live handle: no final checkpoint) - and then the state
     * after a clean close and reopen: every id as last acknowledged. */
    char cdir[512];
    snprintf(cdir, sizeof cdir, "%s/collections/ck", f.dir);
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    dv_coll *ro = NULL;
    CHECK_OK(coll_open_at(cdir, &o, 1, &ro, &e));
    for (int pass = 0; pass < 2; pass++) {
        dv_coll *c = pass == 0 ? ro : f.c;
        int wrong = 0;
        uint64_t n_live = 0;
        float v[CH_DIM];
        for (int i = 0; i < n_ids; i++) {
            dv_record *r = NULL;
            dv_code rc = dv_coll_get(c, ids[i], &r, NULL);
            if (!w.ver[i]) {
                wrong += rc != DV_ENOTFOUND;
                continue;
            }
            n_live++;
            ch_vec(v, w.ver[i]);
            wrong += rc != DV_OK || memcmp(r->vector, v, sizeof v) != 0;
            dv_record_free(r);
        }
        CHECKF(wrong == 0, "pass %d: %d ids wrong", pass, wrong);
        CHECK(count_of(c) == n_live);
        if (pass == 0) {
            dv_coll_close(ro);
            dv_coll_close(f.c);
            f.c = NULL;
            CHECK_OK(dv_db_close(f.db, &e));
            f.db = NULL;
            CHECK_OK(dv_db_open(f.dir, &o, &f.db, &e));
            CHECK_OK(dv_coll_open(f.db, "ck", &f.c, &e));
        }
    }
    free(pts);
    free(vs);
    free(ids);
    free(w.ver);
    fx_close(&f);
}

/* recall@10 of filtered HNSW search against exact search with the same
 * filter, at four selectivities; every query must return min(10, matches). */
TEST(filtered_search_recall_at_50_10_1_and_0_1_percent_selectivity)
{
    const int n = SMALL ? 4000 : 12000, dim = 24, nq = SMALL ? 20 : 50;
    fixture f = {0};
    CHECK(fx_open(&f, "r", (uint32_t)dim, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    float *vs = malloc((size_t)n * dim * sizeof(float));
    for (int i = 0; i < n * dim; i++)
        vs[i] = frand();
    enum { B = 500 };
    dv_point p[B];
    char ids[B][16], metas[B][48];
    for (int b = 0; b < n; b += B) {
        for (int i = 0; i < B; i++) {
            int k = b + i;
            snprintf(ids[i], sizeof ids[i], "v%d", k);
            snprintf(metas[i], sizeof metas[i], "{\"bucket\": %d, \"tag\": \"t%d\"}", k % 1000, k % 7);
            p[i] = (dv_point){ids[i], vs + (size_t)k * dim, metas[i], strlen(metas[i])};
        }
        CHECK_OK(dv_coll_upsert(f.c, p, B, &e));
    }
    const int lt[4] = {500, 100, 10, 1};
    for (int s = 0; s < 4; s++) {
        char filt[128];
        snprintf(filt, sizeof filt, "{\"must\": [{\"key\": \"bucket\", \"range\": {\"lt\": %d}}]}", lt[s]);
        size_t matches = (size_t)n / 1000 * (size_t)lt[s];
        size_t want = matches < 10 ? matches : 10;
        double hit = 0, tot = 0;
        for (int qi = 0; qi < nq; qi++) {
            float q[64];
            for (int j = 0; j < dim; j++)
                q[j] = frand();
            dv_search_params sp = {.k = 10, .filter = filt, .filter_len = strlen(filt)};
            dv_result *approx, *exact;
            CHECK_OK(dv_coll_search(f.c, q, &sp, &approx, &e));
            sp.exact = 1;
            CHECK_OK(dv_coll_search(f.c, q, &sp, &exact, &e));
            CHECKF(approx->n == want && exact->n == want, "sel %d: %zu/%zu results, want %zu", lt[s], approx->n,
                   exact->n, want);
            for (size_t i = 0; i < approx->n; i++) {
                int k = atoi(approx->hits[i].id + 1);
                CHECK(k % 1000 < lt[s]); /* the filter holds */
                if (i)
                    CHECK(approx->hits[i].distance >= approx->hits[i - 1].distance);
                for (size_t j = 0; j < exact->n; j++)
                    if (strcmp(exact->hits[j].id, approx->hits[i].id) == 0)
                        hit++;
            }
            tot += (double)exact->n;
            dv_result_free(approx);
            dv_result_free(exact);
        }
        double recall = hit / tot;
        fprintf(stderr, "  selectivity %.1f%%: recall@10 %.3f\n", lt[s] / 10.0, recall);
        CHECKF(recall >= 0.95, "selectivity %d/1000: recall %.3f", lt[s], recall);
    }
    /* the original equality-map form works too */
    const char *eq = "{\"tag\": \"t3\"}";
    dv_search_params sp = {.k = 20, .filter = eq, .filter_len = strlen(eq)};
    dv_result *r;
    CHECK_OK(dv_coll_search(f.c, vs, &sp, &r, &e));
    CHECK(r->n == 20);
    for (size_t i = 0; i < r->n; i++)
        CHECK(atoi(r->hits[i].id + 1) % 7 == 3 && strstr(r->hits[i].metadata, "\"t3\""));
    dv_result_free(r);
    /* unfiltered recall on the same data */
    double hit = 0, tot = 0;
    for (int qi = 0; qi < nq; qi++) {
        float q[64];
        for (int j = 0; j < dim; j++)
            q[j] = frand();
        dv_search_params a = {.k = 10}, x = {.k = 10, .exact = 1};
        dv_result *ra, *rx;
        CHECK_OK(dv_coll_search(f.c, q, &a, &ra, &e));
        CHECK_OK(dv_coll_search(f.c, q, &x, &rx, &e));
        CHECK(ra->n == 10 && rx->n == 10);
        for (size_t i = 0; i < 10; i++)
            for (size_t j = 0; j < 10; j++)
                hit += strcmp(ra->hits[i].id, rx->hits[j].id) == 0;
        tot += 10;
        dv_result_free(ra);
        dv_result_free(rx);
    }
    fprintf(stderr, "  unfiltered: recall@10 %.3f\n", hit / tot);
    CHECK(hit / tot >= 0.95);
    free(vs);
    fx_close(&f);
}

typedef struct conc {
    dv_coll *c;
    int dim;
    atomic_int stop;
    atomic_int errors;
    atomic_long searches;
} conc;

static void *searcher(void *arg)
{
    conc *cc = arg;
    uint64_t st = (uint64_t)pthread_self();
    float q[16];
    while (!atomic_load(&cc->stop)) {
        for (int j = 0; j < cc->dim; j++) {
            st = st * 6364136223846793005ull + 1;
            q[j] = (float)((st >> 40) & 0xFFFF) / 65536.0f;
        }
        dv_search_params sp = {.k = 5};
        if (atomic_load(&cc->searches) % 3 == 0) {
            sp.filter = "{\"w\": 1}";
            sp.filter_len = strlen(sp.filter);
        }
        dv_result *r;
        dv_err e;
        if (dv_coll_search(cc->c, q, &sp, &r, &e) != DV_OK) {
            atomic_fetch_add(&cc->errors, 1);
            continue;
        }
        for (size_t i = 0; i < r->n; i++)
            if (!r->hits[i].id || r->hits[i].id[0] != 'k' || (i && r->hits[i].distance < r->hits[i - 1].distance))
                atomic_fetch_add(&cc->errors, 1);
        dv_result_free(r);
        dv_record *rec;
        if (dv_coll_get(cc->c, "k0", &rec, &e) == DV_OK)
            dv_record_free(rec);
        atomic_fetch_add(&cc->searches, 1);
    }
    return NULL;
}

TEST(four_searchers_run_beside_a_writer)
{
    fixture f = {0};
    const int dim = 16, batches = SMALL ? 20 : 60;
    CHECK(fx_open(&f, "cc", (uint32_t)dim, DV_METRIC_COSINE) == 0);
    conc cc = {.c = f.c, .dim = dim};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, searcher, &cc);
    dv_err e;
    int ok = 1;
    for (int b = 0; b < batches && ok; b++) {
        dv_point p[50];
        char ids[50][16];
        float v[50][16];
        for (int i = 0; i < 50; i++) {
            /* ids repeat across batches: upserts replace while searches run */
            snprintf(ids[i], sizeof ids[i], "k%d", (b * 50 + i) % 1500);
            for (int j = 0; j < dim; j++)
                v[i][j] = frand();
            p[i] = (dv_point){ids[i], v[i], i % 2 ? "{\"w\":1}" : NULL, i % 2 ? 7 : 0};
        }
        ok = dv_coll_upsert(f.c, p, 50, &e) == DV_OK;
        if (b % 10 == 9) {
            const char *d[] = {"k1", "k2"};
            ok = ok && dv_coll_delete(f.c, d, 2, NULL, &e) == DV_OK;
        }
        if (b == batches / 2)
            ok = ok && dv_coll_checkpoint(f.c, &e) == DV_OK;
    }
    atomic_store(&cc.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECKF(ok, "%s", e.msg);
    CHECK(atomic_load(&cc.errors) == 0);
    CHECK(atomic_load(&cc.searches) > 0);
    fprintf(stderr, "  %ld searches during %d batches\n", (long)atomic_load(&cc.searches), batches);
    fx_close(&f);
}

TEST(handle_survives_detach_reads_work_writes_fail)
{
    fixture f = {0};
    CHECK(fx_open(&f, "d", 2, DV_METRIC_EUCLIDEAN) == 0);
    dv_err e;
    float v[2] = {1, 2};
    dv_point p = {"a", v, NULL, 0};
    CHECK_OK(dv_coll_upsert(f.c, &p, 1, &e));
    db_catalog_lock(f.db);
    CHECK(db_has_locked(f.db, "d"));
    CHECK_OK(db_detach_locked(f.db, "d", &e));
    CHECK(!db_has_locked(f.db, "d"));
    db_catalog_unlock(f.db);
    dv_record *r;
    CHECK_OK(dv_coll_get(f.c, "a", &r, &e));
    dv_record_free(r);
    CHECK(dv_coll_upsert(f.c, &p, 1, &e) == DV_ENOTFOUND);
    dv_coll *h2;
    CHECK(dv_coll_open(f.db, "d", &h2, &e) == DV_ENOTFOUND);
    /* attach reopens it from its files: the checkpoint at detach kept all */
    db_catalog_lock(f.db);
    CHECK_OK(db_attach_locked(f.db, "d", &e));
    db_catalog_unlock(f.db);
    CHECK_OK(dv_coll_open(f.db, "d", &h2, &e));
    CHECK_OK(dv_coll_get(h2, "a", &r, &e));
    CHECK(r->vector[1] == 2);
    dv_record_free(r);
    dv_coll_close(h2);
    fx_close(&f);
}

static dv_code paused_cb(void *ctx, const char *dir, dv_err *err)
{
    (void)err;
    int *calls = ctx;
    struct stat st;
    char p[4200];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    if (stat(p, &st) == 0)
        (*calls)++;
    return DV_OK;
}

TEST(outside_catalog_create_bulk_checkpoint_and_read_only_open)
{
    char *d = strdup("/tmp/dvecdb-test-coll-XXXXXX");
    CHECK(mkdtemp(d));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/staged", d);
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "staged");
    cfg.dim = 3;
    cfg.metric = DV_METRIC_MANHATTAN;
    dv_err e;
    dv_coll *c;
    CHECK_OK(coll_create_at(dir, &cfg, NULL, &c, &e));
    CHECK(coll_create_at(dir, &cfg, NULL, NULL, &e) == DV_EEXIST);
    CHECK(strcmp(coll_dir(c), dir) == 0);
    float v[3] = {1, 2, 3};
    dv_point p[2] = {{"a", v, "{\"x\":1}", 7}, {"b", v, NULL, 0}};
    CHECK_OK(coll_upsert_bulk(c, p, 2, &e));
    int calls = 0;
    CHECK_OK(coll_with_writes_paused(c, 1, paused_cb, &calls, &e));
    CHECK(calls == 1);
    dv_coll_close(c);
    /* read-only open sees the checkpointed bulk data and changes no file */
    struct stat before;
    char man[4300];
    snprintf(man, sizeof man, "%s/manifest.json", dir);
    CHECK(stat(man, &before) == 0);
    CHECK_OK(coll_open_at(dir, NULL, 1, &c, &e));
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(c, &in, &e));
    CHECK(in.n_vectors == 2 && in.config.metric == DV_METRIC_MANHATTAN);
    CHECK(dv_coll_upsert(c, p, 1, &e) == DV_EREADONLY);
    dv_coll_close(c);
    struct stat after;
    CHECK(stat(man, &after) == 0 && after.st_mtime == before.st_mtime && after.st_ino == before.st_ino);
    rm_rf(d);
    free(d);
}

T_MAIN()
