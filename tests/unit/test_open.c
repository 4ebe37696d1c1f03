/* test_open.c - the fast open path (snap.c's streaming reader, coll.c's
 * loader, payload.c's direct metadata parser): what it hands out is exactly
 * what was written, and every byte is still checked before it is trusted.
 *   - ids records straddling the reader's pieces (small ones and 60 KB
 *     ones) come back byte-exact after a reopen;
 *   - a flipped byte past the first read piece of the ids file, in its last
 *     block, and anywhere in the vectors file marks the collection damaged
 *     naming the file and the block; so does a file whose blocks all match
 *     but whose whole-file checksum differs from the manifest's;
 *   - the manifest's checksums (computed through libxxhash's CPU dispatch)
 *     are the plain XXH3-64 of the files; a file whose record count
 *     disagrees with the manifest is refused before a single record is
 *     handed to the caller;
 *   - the direct metadata parser builds exactly the payload jansson's does
 *     (same bytes) and leaves everything else to it: fixed edge cases and
 *     20,000 random documents (half with one byte changed). */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "dvecdb.h"
#include "payload.h"
#include "snap.h"
#include "t.h"
#include "tfs.h"

enum { DIM = 4 };

/* Smaller runs under the sanitizers (make test runs both builds). */
#if defined(__SANITIZE_ADDRESS__)
#define SLOW 1
#else
#define SLOW 0
#endif

static float val(int k, int j)
{
    return (float)((k * 13 + j * 5) % 97) / 40.0f - 1.0f;
}

/* Metadata of point k: every 50th is ~60 KB (so records straddle the
 * reader's 256 KiB pieces in every way), the others short, some absent. */
static char *meta_of(int k, size_t *len)
{
    if (k % 5 == 3) {
        *len = 0;
        return NULL;
    }
    size_t pad = k % 50 == 1 && k < 1000 ? 60000 + (size_t)k : (size_t)(k % 37);
    char *m = malloc(pad + 64);
    int h = snprintf(m, 64, "{\"k\":%d,\"s\":\"", k);
    for (size_t i = 0; i < pad; i++)
        m[h + i] = (char)('a' + (k + i) % 26);
    snprintf(m + h + pad, 8, "\"}");
    *len = strlen(m);
    return m;
}

/* A data dir with collections "a" and "b", n points each. */
static char *make_db(int n)
{
    char *d = strdup("/tmp/dvecdb-test-open-XXXXXX");
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
        dv_point *p = calloc((size_t)n, sizeof *p);
        float *v = malloc((size_t)n * DIM * sizeof *v);
        char (*ids)[16] = malloc((size_t)n * 16);
        char **metas = calloc((size_t)n, sizeof *metas);
        for (int k = 0; k < n; k++) {
            for (int j = 0; j < DIM; j++)
                v[k * DIM + j] = val(k, j);
            snprintf(ids[k], 16, "id-%d", k);
            size_t ml;
            metas[k] = meta_of(k, &ml);
            p[k] = (dv_point){ids[k], v + k * DIM, metas[k], ml};
        }
        if (dv_coll_upsert(h, p, (size_t)n, NULL))
            abort();
        dv_coll_close(h);
        for (int k = 0; k < n; k++)
            free(metas[k]);
        free(metas);
        free(ids);
        free(v);
        free(p);
    }
    if (dv_db_close(db, NULL))
        abort();
    return d;
}

static void flip(const char *p, off_t off)
{
    flip_bits(p, off, 0x01);
}

/* 900 points load on one thread; 6000 with the ids file on a helper
 * thread beside the vectors (coll.c LOAD_PARALLEL_MIN). */
static const int sizes[2] = {900, 6000};

TEST(ids_records_straddling_read_pieces_come_back_byte_exact)
{
  for (int si = 0; si < 2; si++) {
    const int NPTS = sizes[si];
    char *d = make_db(NPTS);
    char p[1024];
    CHECK(find_file(d, "a", "ids-", p, sizeof p) == 0);
    CHECKF(file_size(p) > 3 * 256 * 1024, "ids file only %lld bytes", (long long)file_size(p));
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll *h;
    CHECK_OK(dv_coll_open(db, "a", &h, &e));
    dv_coll_info in;
    CHECK_OK(dv_coll_info_get(h, &in, &e));
    CHECK(in.n_vectors == (uint64_t)NPTS);
    for (int k = 0; k < NPTS; k++) {
        char id[16];
        snprintf(id, sizeof id, "id-%d", k);
        dv_record *r;
        CHECK_OK(dv_coll_get(h, id, &r, &e));
        size_t ml;
        char *m = meta_of(k, &ml);
        CHECKF(m ? (r->metadata && r->metadata_len == ml && memcmp(r->metadata, m, ml) == 0) : !r->metadata,
               "point %d: metadata differs", k);
        for (int j = 0; j < DIM; j++)
            CHECK(r->vector[j] == val(k, j));
        free(m);
        dv_record_free(r);
    }
    /* the parsed form is there too: a filter on it finds the point */
    float q[DIM];
    for (int j = 0; j < DIM; j++)
        q[j] = val(1, j);
    dv_search_params sp;
    memset(&sp, 0, sizeof sp);
    sp.k = 3;
    sp.filter = "{\"k\": 451}";
    sp.filter_len = strlen(sp.filter);
    dv_result *res;
    CHECK_OK(dv_coll_search(h, q, &sp, &res, &e));
    CHECK(res->n == 1 && strcmp(res->hits[0].id, "id-451") == 0);
    dv_result_free(res);
    dv_coll_close(h);
    CHECK_OK(dv_db_close(db, &e));
    rm_rf(d);
    free(d);
  }
}

/* Open d: "a" must be damaged naming needle (and needle2 if set), "b" intact. */
static void expect_a_damaged(int *t_failed_, const char *d, const char *needle, const char *needle2, int NPTS)
{
    dv_db *db;
    dv_err e;
    CHECK_OK(dv_db_open(d, NULL, &db, &e));
    dv_coll_info *list;
    size_t n;
    CHECK_OK(dv_db_list(db, &list, &n, &e));
    CHECK(n == 2 && strcmp(list[0].config.name, "a") == 0);
    CHECKF(list[0].damaged && strstr(list[0].damage, needle) && (!needle2 || strstr(list[0].damage, needle2)),
           "damage: %s", list[0].damage);
    CHECK(!list[1].damaged && list[1].n_vectors == (uint64_t)NPTS);
    dv_free(list);
    CHECK_OK(dv_db_close(db, &e));
}

TEST(a_flipped_byte_anywhere_past_the_first_piece_marks_the_collection_damaged)
{
    const char *files[] = {"ids-", "ids-", "vectors-", "vectors-", "vectors-", "vectors-"};
    for (int si = 0; si < 2; si++) {
        const int NPTS = sizes[si];
        char *d = make_db(NPTS);
        for (int w = 0; w < 6; w++) {
            if (SLOW && (w == 1 || w == 4))
                continue; /* sanitizers: fewer cases */
            char p[1024];
            CHECK(find_file(d, "a", files[w], p, sizeof p) == 0);
            off_t sz = file_size(p);
            /* ids: inside the third piece, and in the last body block;
             * vectors (20-byte records): mid-body and the last record byte */
            int nblk = (int)((sz - 64) / (65536 + 8)) + 1;
            off_t off = w == 0 ? 64 + 2 * 256 * 1024 + 4321 : w == 1 ? sz - 8 * nblk - 100
                      : w == 2 ? 64 + 9000 : w == 3 ? 64 + (off_t)NPTS * 20 - 1
                      : w == 4 ? 64 + (off_t)(NPTS / 2) * 20 - 1
                      : NPTS * 20 > 65536 ? 64 + 65536 : 64; /* a block's first byte */
            flip(p, off);
            /* the block's own checksum caught it: the message names the offset */
            expect_a_damaged(t_failed_, d, files[w], "checksum mismatch in block", NPTS);
            flip(p, off); /* the same bit back: intact again for the next case */
            if (*t_failed_) {
                fprintf(stderr, "  (%d points, case %d, offset %lld)\n", NPTS, w, (long long)off);
                return;
            }
        }
        {
            dv_db *db;
            dv_err e;
            CHECK_OK(dv_db_open(d, NULL, &db, &e));
            dv_coll_info *list;
            size_t n;
            CHECK_OK(dv_db_list(db, &list, &n, &e));
            CHECKF(n == 2 && !list[0].damaged && list[0].n_vectors == (uint64_t)NPTS, "a after the flip back: %s",
                   list[0].damage);
            dv_free(list);
            CHECK_OK(dv_db_close(db, &e));
        }
        rm_rf(d);
        free(d);
    }
}

TEST(a_file_differing_from_the_manifests_whole_file_checksum_marks_damaged)
{
    /* every block matches its trailer, only the manifest's whole-file
     * XXH3-64 differs: checked on the serial and on the split load */
    for (int si = 0; si < 2; si++) {
        const int NPTS = sizes[si];
        char *d = make_db(NPTS);
        char dir[512];
        snprintf(dir, sizeof dir, "%s/collections/a", d);
        for (int k = 0; k < 2; k++) {
            snap_manifest m, bad;
            dv_err e;
            CHECK_OK(snap_manifest_read(dir, &m, &e));
            bad = m;
            bad.files[k == 0 ? SNAP_VECTORS : SNAP_IDS].xxh3 ^= 1;
            CHECK_OK(snap_manifest_write(dir, &bad, &e));
            expect_a_damaged(t_failed_, d, "whole-file checksum differs", NULL, NPTS);
            CHECK_OK(snap_manifest_write(dir, &m, &e));
            if (*t_failed_) {
                fprintf(stderr, "  (%d points, %s)\n", NPTS, k == 0 ? "vectors" : "ids");
                return;
            }
        }
        rm_rf(d);
        free(d);
    }
}

static int n_calls;
static dv_code count_vec(void *ctx, uint64_t slot, int live, const float *v, dv_err *err)
{
    (void)ctx, (void)slot, (void)live, (void)v, (void)err;
    n_calls++;
    return DV_OK;
}

static dv_code count_id(void *ctx, uint64_t slot, int live, const char *id, size_t id_len, const char *meta,
                        size_t meta_len, dv_err *err)
{
    (void)ctx, (void)slot, (void)live, (void)id, (void)id_len, (void)meta, (void)meta_len, (void)err;
    n_calls++;
    return DV_OK;
}

TEST(file_checksums_are_plain_xxh3_and_a_count_differing_from_the_manifest_is_refused_first)
{
    char *d = make_db(50);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/collections/a", d);
    snap_manifest m;
    dv_err e;
    CHECK_OK(snap_manifest_read(dir, &m, &e));
    CHECK(m.n_slots == 50);
    /* the files were hashed through libxxhash's CPU dispatch: the values
     * are the plain XXH3-64 of the files */
    for (int k = 0; k < SNAP_N_FILES; k++) {
        char fp[1024];
        snprintf(fp, sizeof fp, "%s/%s", dir, m.files[k].name);
        FILE *f = fopen(fp, "rb");
        CHECK(f && m.files[k].present);
        uint8_t *buf = malloc(m.files[k].size + 1);
        CHECK(fread(buf, 1, m.files[k].size + 1, f) == m.files[k].size);
        fclose(f);
        CHECKF(XXH3_64bits(buf, m.files[k].size) == m.files[k].xxh3, "%s", fp);
        free(buf);
    }
    n_calls = 0;
    CHECK_OK(snap_load_vectors(dir, &m, count_vec, NULL, &e));
    CHECK_OK(snap_load_ids(dir, &m, count_id, NULL, &e));
    CHECK(n_calls == 100);
    /* the manifest (checksums still matching its files) says one fewer */
    m.n_slots = 49;
    n_calls = 0;
    CHECK(snap_load_vectors(dir, &m, count_vec, NULL, &e) == DV_ECORRUPT);
    CHECKF(strstr(e.msg, "50 records, manifest says 49"), "%s", e.msg);
    CHECK(snap_load_ids(dir, &m, count_id, NULL, &e) == DV_ECORRUPT);
    CHECKF(strstr(e.msg, "50 records, manifest says 49"), "%s", e.msg);
    CHECK(n_calls == 0);
    rm_rf(d);
    free(d);
}

/* The direct parser against jansson on one text: whenever it takes the
 * text, jansson accepts it too and builds the same bytes. Returns 1 if the
 * direct parser took it. */
static int same_as_jansson(int *t_failed_, const char *text, size_t len)
{
    payload *a = NULL, *b = NULL;
    dv_err e = {0};
    int r = payload_parse_direct(text, len, &a);
    dv_code rc = payload_parse_jansson(text, len, &b, &e);
    if (r == 1) {
        if (rc != DV_OK || !payload_same(a, b)) {
            fprintf(stderr, "  text (%zu bytes): %.*s\n  jansson: %s\n", len, (int)len, text,
                    rc ? e.msg : "ok, different payload");
            *t_failed_ = 1;
        }
    }
    /* payload_parse itself agrees with jansson on the outcome */
    payload *c = NULL;
    dv_err e2 = {0};
    dv_code rc2 = payload_parse(text, len, &c, &e2);
    if (rc2 != rc || (rc == DV_OK && !payload_same(c, b))) {
        fprintf(stderr, "  payload_parse %d vs jansson %d on: %.*s\n", rc2, rc, (int)len, text);
        *t_failed_ = 1;
    }
    if (a)
        payload_free(a);
    if (b)
        payload_free(b);
    if (c)
        payload_free(c);
    return r == 1;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* A random JSON value (mostly valid) of bounded depth into b. */
static void gen_value(char *b, size_t *n, size_t cap, int depth)
{
    static const char *const atoms[] = {"0", "-0", "1", "-17", "123456789012345678", "9223372036854775807",
                                        "-9223372036854775808", "9223372036854775808", "1.5", "-0.25e3",
                                        "1E+2", "1e-400", "1e400", "3.14159265358979", "true", "false", "null",
                                        "\"\"", "\"abc\"", "\"caf\xc3\xa9\"", "\"\xe2\x82\xac\"",
                                        "\"\xf0\x9f\x98\x80\"", "\"a\\nb\"", "\"\\u00e9\"", "\"x y\""};
    if (*n + 64 > cap)
        return;
    int k = depth < 4 ? (int)rnd(10) : 0;
    if (k < 6) {
        const char *a = atoms[rnd(sizeof atoms / sizeof *atoms)];
        *n += (size_t)snprintf(b + *n, cap - *n, "%s", a);
    } else {
        int obj = k < 9;
        b[(*n)++] = obj ? '{' : '[';
        int m = (int)rnd(5);
        for (int i = 0; i < m && *n + 64 < cap; i++) {
            if (i)
                *n += (size_t)snprintf(b + *n, cap - *n, "%s", rnd(4) ? "," : " , ");
            if (obj)
                *n += (size_t)snprintf(b + *n, cap - *n, "\"%c%s\":", 'a' + (int)rnd(4), rnd(3) ? "" : "k");
            gen_value(b, n, cap, depth + 1);
        }
        b[(*n)++] = obj ? '}' : ']';
    }
    b[*n] = 0;
}

TEST(direct_metadata_parser_builds_what_jansson_builds_and_leaves_it_the_rest)
{
    static const char *const cases[] = {
        "{}", " {\"a\":1} ", "{\"title\":\"incident 42\",\"severity\":3}", "{\"b\":1,\"a\":2,\"c\":[1,2,{\"d\":null}]}",
        "{\"a\":{\"b\":{\"c\":[true,false,null,-1.5e-3]}}}", "{\"k\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
        "{\"a\":1,\"a\":2}", "{\"a\":\"x\\\"y\"}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}",
        "{\"a\":tru}", "{\"a\":truex}", "{\"a\":true1}", "{\"a\":nul}", "{\"a\":1,}", "{,}", "{\"a\"}", "{\"a\":}",
        "[1,2]", "\"s\"", "1", "", " ", "{} {}", "{}x", "{\"a\":\"\x01\"}", "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xe0\x80\xaf\"}", "{\"a\":\"\xc3\"}",
        "{\"a\":\"\xff\"}", "{\"a\":99999999999999999999}", "{\"a\":-99999999999999999999}", "{\"a\":1e999}",
        "{\"a\":-1e999}", "{\"a\":4.9e-324}", "{\"a\":[[],{}]}", "{\"\":0}", "{\"a\":[1,,2]}", "{\"a\" : [ 1 , 2 ] }",
        "\t{\n\"a\"\r:\t1}\n", "{\"a\":1}\0",
    };
    int direct = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len = strlen(cases[i]) + (strcmp(cases[i], "{\"a\":1}") == 0 && i == sizeof cases / sizeof *cases - 1);
        direct += same_as_jansson(t_failed_, cases[i], len);
        if (*t_failed_)
            return;
    }
    CHECKF(direct >= 8, "the direct parser took only %d of the fixed cases", direct);
    /* UTF-8 in strings: every two-byte sequence, the edges of the three-
     * and four-byte ones (overlongs, surrogates, > U+10FFFF, bad trails) */
    {
        static const uint8_t trail[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
        char doc[16];
        int utf8_direct = 0;
        for (int b0 = 0x80; b0 <= 0xFF; b0++) {
            for (int b1 = 0; b1 <= 0xFF; b1 += SLOW ? 3 : 1) {
                int n = snprintf(doc, sizeof doc, "{\"s\":\"%c%c\"}", b0, b1 ? b1 : 'x');
                utf8_direct += same_as_jansson(t_failed_, doc, (size_t)n);
            }
            for (size_t i = 0; i < sizeof trail; i++)
                for (size_t j = 0; j < sizeof trail; j++) {
                    if (!trail[i] || !trail[j])
                        continue;
                    int n = snprintf(doc, sizeof doc, "{\"s\":\"%c%c%c\"}", b0, trail[i], trail[j]);
                    utf8_direct += same_as_jansson(t_failed_, doc, (size_t)n);
                    n = snprintf(doc, sizeof doc, "{\"s\":\"%c%c%c%c\"}", b0, trail[i], trail[j], 0x80 + (int)j);
                    utf8_direct += same_as_jansson(t_failed_, doc, (size_t)n);
                }
            if (*t_failed_)
                return;
        }
        CHECKF(utf8_direct > 1000, "the direct parser took only %d UTF-8 documents", utf8_direct);
    }
    /* typical metadata goes the direct way */
    static const char typical[] = "{\"title\":\"incident 42\",\"severity\":3}";
    CHECK(same_as_jansson(t_failed_, typical, strlen(typical)));
    /* random documents, and each with one byte changed */
    static char buf[600];
    int took = 0, total = 0;
    for (int it = 0; it < (SLOW ? 4000 : 20000); it++) {
        size_t n = 0;
        buf[n++] = '{';
        int m = (int)rnd(6);
        for (int i = 0; i < m; i++) {
            if (i)
                buf[n++] = ',';
            n += (size_t)snprintf(buf + n, sizeof buf - n, "\"%c\":", 'a' + (int)rnd(6));
            gen_value(buf, &n, sizeof buf - 80, 1);
        }
        buf[n++] = '}';
        buf[n] = 0;
        if (it & 1 && n > 2) {
            static const char subst[] = "{}[]\",:0-e.tn \\\x80\xc3";
            buf[rnd((uint32_t)n)] = subst[rnd(sizeof subst - 1)];
        }
        took += same_as_jansson(t_failed_, buf, n);
        total++;
        if (*t_failed_)
            return;
    }
    CHECKF(took > total / 4, "the direct parser took %d of %d random documents", took, total);
}

T_MAIN()
