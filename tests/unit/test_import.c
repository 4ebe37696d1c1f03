/* test_import.c - dv_import: the original d-vecDB's vectors.bin (written by a
 * generator below, byte for byte the bincode layout), our own collection
 * directory with and without manifest, .fvecs, .npy; path confinement
 * (>= 30 escape attempts, and inotify proves nothing outside the roots was
 * opened); cancel; crash at every I/O call of an import. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
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

static char *mkroot(void)
{
    struct stat st;
    char tmpl[64];
    snprintf(tmpl, sizeof tmpl, "%s/dvimp-XXXXXX", stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static void rm_rf(const char *p)
{
    io_remove_tree(p, NULL);
}

/* A db at <root>/data whose only import root is <root>/in. */
static dv_db *open_db(const char *root)
{
    char data[512], in[512];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(in, sizeof in, "%s/in", root);
    mkdir(in, 0755);
    const char *roots[] = {in};
    dv_db_options o;
    dv_db_options_init(&o);
    o.import_roots = roots;
    o.n_import_roots = 1;
    dv_db *db = NULL;
    dv_err e = {0};
    if (dv_db_open(data, &o, &db, &e) != DV_OK) {
        fprintf(stderr, "open: %s\n", e.msg);
        return NULL;
    }
    return db;
}

/* ---- the original format, written the way bincode wrote it ---------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void put(wbuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u64(wbuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    put(b, x, 8);
}

static void put_str(wbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

/* serde_json::Value through bincode: no type tag. */
static void put_value(wbuf *b, json_t *v)
{
    if (json_is_null(v))
        return;
    if (json_is_boolean(v)) {
        uint8_t x = json_is_true(v);
        put(b, &x, 1);
    } else if (json_is_integer(v)) {
        put_u64(b, (uint64_t)json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        uint64_t u;
        memcpy(&u, &d, 8);
        put_u64(b, u);
    } else if (json_is_string(v)) {
        put_str(b, json_string_value(v));
    } else if (json_is_array(v)) {
        put_u64(b, json_array_size(v));
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) put_value(b, e);
    } else {
        put_u64(b, json_object_size(v));
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            put_str(b, k);
            put_value(b, e);
        }
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct lrec {
    uint8_t uuid[16];
    float *v;
    json_t *meta; /* NULL: option tag 0 */
    uint64_t off;
} lrec;

static void uuid_str(const uint8_t *u, char *out)
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
             u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static const char *words[] = {"disk", "latency", "page", "outage", "café ☕", "db", "timeout", "retry", "tail",
                              "line\nbreak", "tab\there", "quote\"d"};

/* Metadata of the kind our users stored, keys in a random order (the
 * original used a HashMap). No 0 / 0.0 / "" / [] values: their 8 zero bytes
 * are ambiguous by nature (tested separately). */
static json_t *make_meta(uint32_t k)
{
    const char *keys[] = {"title", "severity", "score", "resolved", "assignee", "ts", "tags", "ratio"};
    json_t *vals[8];
    vals[0] = json_string(words[rnd() % 12]);
    vals[1] = json_integer(1 + (json_int_t)(rnd() % 5));
    vals[2] = json_real((double)(rnd() % 1000 + 1) / 997.0);
    vals[3] = json_boolean(rnd() & 1);
    vals[4] = k % 3 ? json_null() : json_string("alice");
    vals[5] = json_integer(1700000000000000000LL + (json_int_t)(rnd() % 1000000000));
    vals[6] = json_pack("[ss]", words[rnd() % 12], words[rnd() % 12]);
    vals[7] = json_real(-((double)(rnd() % 100000 + 1) * 1.5e-3));
    int order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int i = 7; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    json_t *o = json_object();
    for (int i = 0; i < 8; i++)
        json_object_set_new(o, keys[order[i]], vals[order[i]]);
    return o;
}

/* Write n records of dim floats to path: every 7th without metadata, the
 * last without metadata (so no value meets the zero tail), pre-sized to a
 * power of two >= 1 MiB with zeros. corrupt >= 0: damage that record's
 * header in place. */
static lrec *write_legacy(const char *path, uint32_t n, uint32_t dim, int corrupt, uint64_t *file_size)
{
    lrec *r = calloc(n, sizeof *r);
    wbuf b = {0};
    for (uint32_t k = 0; k < n; k++) {
        for (int i = 0; i < 16; i++)
            r[k].uuid[i] = (uint8_t)rnd();
        r[k].uuid[6] = (r[k].uuid[6] & 0x0f) | 0x40;
        r[k].v = malloc(dim * sizeof(float));
        for (uint32_t i = 0; i < dim; i++)
            r[k].v[i] = (float)((double)(int64_t)(rnd() % 2000001 - 1000000) / 7777.0);
        r[k].meta = (k % 7 == 3 || k == n - 1) ? NULL : make_meta(k);
        r[k].off = b.n;
        put_u64(&b, 16);
        put(&b, r[k].uuid, 16);
        put_u64(&b, dim);
        put(&b, r[k].v, dim * sizeof(float));
        uint8_t tag = r[k].meta != NULL;
        put(&b, &tag, 1);
        if (r[k].meta) {
            put_u64(&b, json_object_size(r[k].meta));
            const char *key;
            json_t *v;
            json_object_foreach(r[k].meta, key, v)
            {
                put_str(&b, key);
                put_value(&b, v);
            }
        }
    }
    if (corrupt >= 0 && (uint32_t)corrupt < n) {
        memset(b.p + r[corrupt].off + 20, 0xAB, 12); /* UUID tail and the dimension */
        /* and a record that follows one without metadata */
        uint32_t c2 = (uint32_t)corrupt + 3;
        while ((c2 - 1) % 7 != 3)
            c2++;
        if (c2 < n - 1)
            memset(b.p + r[c2].off + 20, 0xAB, 12);
    }
    size_t size = 1 << 20;
    while (size < b.n)
        size *= 2;
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.n, f);
    for (size_t i = b.n; i < size; i++)
        fputc(0, f);
    fclose(f);
    free(b.p);
    *file_size = size;
    return r;
}

static void free_legacy(lrec *r, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        free(r[k].v);
        json_decref(r[k].meta);
    }
    free(r);
}

static dv_code do_import(dv_db *db, const char *path, const char *name, uint32_t dim, dv_metric metric,
                         dv_import_report *rep, dv_err *e)
{
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    o.path = path;
    o.collection_name = name;
    o.dim = dim;
    o.has_metric = 1;
    o.metric = metric;
    o.vtype = DV_VTYPE_F32;
    return dv_import(db, &o, rep, e);
}

TEST(legacy_vectors_bin_imports_every_intact_record_bit_exact_with_metadata_and_skips_the_damaged_one)
{
    char *root = mkroot();
    dv_db *db = open_db(root);
    CHECK(db);
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/in/orphan", root);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/vectors.bin", dir);
    uint32_t n = QUICK ? 300 : 2000, dim = 24;
    uint64_t size;
    lrec *r = write_legacy(path, n, dim, (int)n / 2, &size);
    char idx[600];
    snprintf(idx, sizeof idx, "%s/index.bin", dir);
    FILE *f = fopen(idx, "wb");
    for (int i = 0; i < 4096; i++)
        fputc(0, f);
    fclose(f);
    struct stat st0;
    stat(path, &st0);
    dv_import_report rep;
    dv_err e = {0};
    CHECK_OK(do_import(db, dir, "incidents", 0, DV_METRIC_EUCLIDEAN, &rep, &e));
    CHECK(!strcmp(rep.format, "legacy"));
    uint32_t c2 = n / 2 + 3;
    while ((c2 - 1) % 7 != 3)
        c2++;
    CHECKF(rep.imported == n - 2 && rep.skipped == 2, "imported %llu skipped %llu", (unsigned long long)rep.imported,
           (unsigned long long)rep.skipped);
    CHECK(rep.bytes_scanned > 0 && rep.bytes_scanned <= size);
    dv_coll *c = NULL;
    CHECK_OK(dv_coll_open(db, "incidents", &c, NULL));
    dv_coll_info info;
    CHECK_OK(dv_coll_info_get(c, &info, NULL));
    CHECK(info.n_vectors == n - 2 && info.config.dim == dim);
    uint32_t checked = 0, with_meta = 0;
    for (uint32_t k = 0; k < n; k++) {
        char id[37];
        uuid_str(r[k].uuid, id);
        dv_record *rec = NULL;
        dv_code rc = dv_coll_get(c, id, &rec, NULL);
        if (k == n / 2 || k == c2) {
            CHECK(rc == DV_ENOTFOUND);
            continue;
        }
        CHECKF(rc == DV_OK, "record %u (%s) missing", k, id);
        CHECKF(memcmp(rec->vector, r[k].v, dim * sizeof(float)) == 0, "record %u vector differs", k);
        if (r[k].meta) {
            json_error_t je;
            json_t *got = rec->metadata ? json_loadb(rec->metadata, rec->metadata_len, 0, &je) : NULL;
            CHECKF(got && json_equal(got, r[k].meta), "record %u metadata: got %.*s", k,
                   rec->metadata ? (int)rec->metadata_len : 4, rec->metadata ? rec->metadata : "null");
            json_decref(got);
            with_meta++;
        } else {
            CHECK(rec->metadata == NULL);
        }
        dv_record_free(rec);
        checked++;
    }
    CHECK(checked == n - 2 && with_meta > n / 2);
    dv_coll_close(c);
    /* the source is never modified */
    struct stat st1;
    stat(path, &st1);
    CHECK(st1.st_size == st0.st_size && st1.st_mtime == st0.st_mtime);
    /* the name is now live */
    CHECK(do_import(db, dir, "incidents", 0, DV_METRIC_EUCLIDEAN, NULL, NULL) == DV_EEXIST);
    /* a request dimension that disagrees with the records imports nothing */
    CHECK(do_import(db, dir, "other", dim + 1, DV_METRIC_EUCLIDEAN, &rep, NULL) == DV_OK);
    CHECK(rep.imported == 0);
    /* survives a restart */
    CHECK_OK(dv_db_close(db, NULL));
    db = open_db(root);
    CHECK_OK(dv_coll_open(db, "incidents", &c, NULL));
    CHECK_OK(dv_coll_info_get(c, &info, NULL));
    CHECK(info.n_vectors == n - 2);
    dv_coll_close(c);
    dv_db_close(db, NULL);
    free_legacy(r, n);
    rm_rf(root);
    free(root);
}

/* Records with the given metadata (the last one gets the UUID 01..10, the
 * others 0xA0+i...), written raw, then zero_tail zero bytes. */
static void write_many(const char *path, json_t **metas, size_t n, size_t zero_tail)
{
    wbuf b = {0};
    for (size_t r = 0; r < n; r++) {
        uint8_t u[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        if (r + 1 < n)
            for (int i = 0; i < 16; i++)
                u[i] = (uint8_t)(0xA0 + r + i);
        float v[2] = {0.5f, -2.0f};
        put_u64(&b, 16);
        put(&b, u, 16);
        put_u64(&b, 2);
        put(&b, v, 8);
        uint8_t tag = 1;
        put(&b, &tag, 1);
        put_u64(&b, json_object_size(metas[r]));
        const char *k;
        json_t *x;
        json_object_foreach(metas[r], k, x)
        {
            put_str(&b, k);
            put_value(&b, x);
        }
    }
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.n, f);
    for (size_t i = 0; i < zero_tail; i++)
        fputc(0, f);
    fclose(f);
    free(b.p);
}

static void write_one(const char *path, json_t *meta, size_t zero_tail)
{
    write_many(path, &meta, 1, zero_tail);
}

static json_t *imported_meta(dv_db *db, const char *name)
{
    dv_coll *c = NULL;
    dv_record *rec = NULL;
    json_t *j = NULL;
    if (dv_coll_open(db, name, &c, NULL) == DV_OK &&
        dv_coll_get(c, "01020304-0506-0708-090a-0b0c0d0e0f10", &rec, NULL) == DV_OK && rec->metadata)
        j = json_loadb(rec->metadata, rec->metadata_len, 0, NULL);
    dv_record_free(rec);
    if (c)
        dv_coll_close(c);
    return j;
}

TEST(legacy_values_that_cannot_be_told_apart_are_kept_raw_never_guessed)
{
    char *root = mkroot();
    dv_db *db = open_db(root);
    CHECK(db);
    char path[600];
    snprintf(path, sizeof path, "%s/in/zero.bin", root);
    /* an integer 0 is 8 zero bytes: also 0.0, "", [] and {} */
    json_t *m = json_pack("{s:s, s:i, s:s}", "a", "first", "retries", 0, "z", "last");
    write_one(path, m, 1 << 20);
    CHECK_OK(do_import(db, path, "z0", 2, DV_METRIC_EUCLIDEAN, NULL, NULL));
    json_t *got = imported_meta(db, "z0");
    CHECK(got);
    CHECK(json_is_string(json_object_get(got, "a")) && !strcmp(json_string_value(json_object_get(got, "a")), "first"));
    CHECK(json_is_string(json_object_get(got, "z")) && !strcmp(json_string_value(json_object_get(got, "z")), "last"));
    CHECK(!json_object_get(got, "retries"));
    const char *raw = json_string_value(json_object_get(json_object_get(got, "_legacy_raw"), "retries"));
    CHECK(raw && !strcmp(raw, "0000000000000000"));
    json_decref(got);
    json_decref(m);
    /* a last value of false / null runs into the zero tail: which one it
     * was is unknowable; the strings before it still come back (the keys
     * are known from the records before it) */
    snprintf(path, sizeof path, "%s/in/tail.bin", root);
    json_t *ms[4];
    ms[0] = json_pack("{s:s, s:b, s:i}", "name", "one", "flag", 1, "n", 5);
    ms[1] = json_pack("{s:i, s:s, s:b}", "n", 7, "name", "two", "flag", 1);
    ms[2] = json_pack("{s:b, s:i, s:s}", "flag", 1, "n", 9, "name", "three");
    ms[3] = json_pack("{s:s, s:i, s:b}", "name", "kept", "n", 3, "flag", 0);
    write_many(path, ms, 4, 4096);
    CHECK_OK(do_import(db, path, "zt", 2, DV_METRIC_EUCLIDEAN, NULL, NULL));
    got = imported_meta(db, "zt");
    CHECK(got);
    CHECKF(json_is_string(json_object_get(got, "name")) &&
               !strcmp(json_string_value(json_object_get(got, "name")), "kept"),
           "got %s", json_dumps(got, 0));
    CHECK(json_integer_value(json_object_get(got, "n")) == 3);
    CHECK(!json_object_get(got, "flag"));
    CHECK(json_object_get(json_object_get(got, "_legacy_raw"), "flag"));
    json_decref(got);
    for (int i = 0; i < 4; i++)
        json_decref(ms[i]);
    /* with no zero tail (the file ends right after the record) it is exact */
    snprintf(path, sizeof path, "%s/in/exact.bin", root);
    m = json_pack("{s:s, s:b, s:n, s:f, s:I}", "name", "x", "flag", 1, "none", "f", 2.5, "big", (json_int_t)-42);
    write_one(path, m, 0);
    CHECK_OK(do_import(db, path, "ze", 2, DV_METRIC_EUCLIDEAN, NULL, NULL));
    got = imported_meta(db, "ze");
    CHECKF(got && json_equal(got, m), "got %s", got ? json_dumps(got, 0) : "null");
    json_decref(got);
    json_decref(m);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- .fvecs / .npy ---------------------------------------------------------- */

TEST(fvecs_and_npy_float32_float64_import_with_row_numbers_as_ids)
{
    char *root = mkroot();
    dv_db *db = open_db(root);
    CHECK(db);
    char path[600];
    uint32_t dim = 5, n = 40;
    float v[40][5];
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++)
            v[i][j] = (float)(i * 10 + j) / 3.0f;
    snprintf(path, sizeof path, "%s/in/base.fvecs", root);
    FILE *f = fopen(path, "wb");
    for (uint32_t i = 0; i < n; i++) {
        float row[5];
        memcpy(row, v[i], sizeof row);
        if (i == 7)
            row[2] = NAN;
        fwrite(&dim, 4, 1, f);
        fwrite(row, 4, dim, f);
    }
    fclose(f);
    dv_import_report rep;
    dv_err e = {0};
    CHECK_OK(do_import(db, path, "fv", 0, DV_METRIC_EUCLIDEAN, &rep, &e));
    CHECK(!strcmp(rep.format, "fvecs") && rep.imported == n - 1 && rep.skipped == 1);
    dv_coll *c = NULL;
    dv_record *rec = NULL;
    CHECK_OK(dv_coll_open(db, "fv", &c, NULL));
    CHECK_OK(dv_coll_get(c, "39", &rec, NULL));
    CHECK(memcmp(rec->vector, v[39], sizeof v[39]) == 0);
    dv_record_free(rec);
    CHECK(dv_coll_get(c, "7", &rec, NULL) == DV_ENOTFOUND);
    dv_coll_close(c);
    /* .npy, version 1 header, float32 then float64 */
    for (int item = 4; item <= 8; item += 4) {
        char hdr[128];
        int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f%d', 'fortran_order': False, 'shape': (%u, %u), }", item, n,
                          dim);
        int pad = 64 - (10 + hl + 1) % 64;
        snprintf(path, sizeof path, "%s/in/base%d.npy", root, item);
        f = fopen(path, "wb");
        fwrite("\x93NUMPY\x01\x00", 1, 8, f);
        uint16_t total = (uint16_t)(hl + pad + 1);
        fwrite(&total, 2, 1, f);
        fwrite(hdr, 1, (size_t)hl, f);
        for (int i = 0; i < pad; i++)
            fputc(' ', f);
        fputc('\n', f);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < dim; j++) {
                if (item == 4) {
                    fwrite(&v[i][j], 4, 1, f);
                } else {
                    double d = v[i][j];
                    fwrite(&d, 8, 1, f);
                }
            }
        fclose(f);
        char name[16];
        snprintf(name, sizeof name, "np%d", item);
        memset(&e, 0, sizeof e);
        CHECKF(do_import(db, path, name, dim, DV_METRIC_EUCLIDEAN, &rep, &e) == DV_OK, "%s", e.msg);
        CHECK(!strcmp(rep.format, "npy") && rep.imported == n && rep.skipped == 0);
        CHECK_OK(dv_coll_open(db, name, &c, NULL));
        CHECK_OK(dv_coll_get(c, "12", &rec, NULL));
        CHECK(memcmp(rec->vector, v[12], sizeof v[12]) == 0);
        dv_record_free(rec);
        dv_coll_close(c);
    }
    /* a shape that does not match the bytes, a 3-D array, a wrong dim */
    snprintf(path, sizeof path, "%s/in/bad.npy", root);
    f = fopen(path, "wb");
    const char *bad = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, 5), }";
    uint16_t bl = (uint16_t)strlen(bad);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&bl, 2, 1, f);
    fwrite(bad, 1, bl, f);
    fclose(f);
    CHECK(do_import(db, path, "bad", 0, DV_METRIC_EUCLIDEAN, NULL, NULL) == DV_EINVAL);
    snprintf(path, sizeof path, "%s/in/base.fvecs", root);
    CHECK(do_import(db, path, "bad", 6, DV_METRIC_EUCLIDEAN, NULL, NULL) == DV_EINVAL);
    char lst[600];
    snprintf(lst, sizeof lst, "%s/data/collections/bad", root);
    CHECK(!rec_exists(lst));
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- our own format ---------------------------------------------------------- */

static uint64_t tree_hash(const char *dir)
{
    char **names = NULL;
    size_t n = 0;
    uint64_t h = 0;
    if (rec_list_dir(dir, &names, &n, NULL) != DV_OK)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        uint64_t sz = 0, x = 0;
        if (rec_is_dir(p))
            x = tree_hash(p);
        else
            rec_hash_file(p, &sz, &x, NULL);
        h = h * 31 + XXH3_64bits(names[i], strlen(names[i])) + x + sz;
    }
    rec_free_names(names, n);
    return h;
}

static uint64_t coll_digest(dv_db *db, const char *name, uint64_t *count)
{
    dv_coll *c = NULL;
    *count = 0;
    if (dv_coll_open(db, name, &c, NULL) != DV_OK)
        return 0;
    uint64_t h = 0;
    for (uint64_t off = 0;; off += 500) {
        dv_result *r = NULL;
        if (dv_coll_scroll(c, off, 500, 1, &r, NULL) != DV_OK)
            break;
        for (size_t i = 0; i < r->n; i++) {
            /* order-independent: sum of per-point hashes */
            XXH3_state_t *st = XXH3_createState();
            XXH3_64bits_reset(st);
            XXH3_64bits_update(st, r->hits[i].id, strlen(r->hits[i].id));
            XXH3_64bits_update(st, r->hits[i].vector, r->dim * sizeof(float));
            if (r->hits[i].metadata)
                XXH3_64bits_update(st, r->hits[i].metadata, r->hits[i].metadata_len);
            h += XXH3_64bits_digest(st);
            XXH3_freeState(st);
        }
        size_t got = r->n;
        *count += got;
        dv_result_free(r);
        if (got < 500)
            break;
    }
    dv_coll_close(c);
    return h;
}

TEST(own_collection_directory_imports_identically_with_or_without_its_manifest)
{
    char *root = mkroot();
    char other[600];
    snprintf(other, sizeof other, "%s/in/olddata", root);
    dv_db *odb = NULL;
    CHECK_OK(dv_db_open(other, NULL, &odb, NULL));
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "src");
    cfg.dim = 16;
    cfg.metric = DV_METRIC_COSINE;
    CHECK_OK(dv_coll_create(odb, &cfg, NULL));
    dv_coll *c = NULL;
    CHECK_OK(dv_coll_open(odb, "src", &c, NULL));
    for (int b = 0; b < 3; b++) {
        dv_point pts[50];
        char ids[50][16], metas[50][48];
        float vecs[50][16];
        for (int i = 0; i < 50; i++) {
            snprintf(ids[i], 16, "p%d", b * 50 + i);
            snprintf(metas[i], 48, "{\"n\":%d,\"s\":\"x%d\"}", b * 50 + i, i);
            for (int j = 0; j < 16; j++)
                vecs[i][j] = (float)((b * 50 + i) * 16 + j % 7) + 0.25f;
            pts[i] = (dv_point){ids[i], vecs[i], metas[i], strlen(metas[i])};
        }
        CHECK_OK(dv_coll_upsert(c, pts, 50, NULL));
        if (b == 1)
            CHECK_OK(dv_coll_checkpoint(c, NULL)); /* (the close checkpoints the rest) */
    }
    dv_coll_close(c);
    uint64_t n0, d0 = coll_digest(odb, "src", &n0);
    CHECK(n0 == 150);
    CHECK_OK(dv_db_close(odb, NULL));
    dv_db *db = open_db(root);
    CHECK(db);
    char src[700];
    snprintf(src, sizeof src, "%s/collections/src", other);
    uint64_t h0 = tree_hash(src);
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    o.path = src;
    o.collection_name = "copy";
    dv_import_report rep;
    dv_err e = {0};
    CHECKF(dv_import(db, &o, &rep, &e) == DV_OK, "%s", e.msg);
    CHECK(!strcmp(rep.format, "dvecdb") && rep.imported == 150);
    uint64_t n1, d1 = coll_digest(db, "copy", &n1);
    CHECK(n1 == 150 && d1 == d0);
    CHECK(tree_hash(src) == h0); /* never modifies the source */
    dv_coll_info info;
    CHECK_OK(dv_coll_open(db, "copy", &c, NULL));
    CHECK_OK(dv_coll_info_get(c, &info, NULL));
    CHECK(!strcmp(info.config.name, "copy") && info.config.metric == DV_METRIC_COSINE);
    dv_coll_close(c);
    /* request fields must agree with the manifest */
    o.collection_name = "copy2";
    o.dim = 17;
    CHECK(dv_import(db, &o, NULL, &e) == DV_EINVAL);
    o.dim = 16;
    o.has_metric = 1;
    o.metric = DV_METRIC_DOT;
    CHECK(dv_import(db, &o, NULL, &e) == DV_EINVAL);
    /* without the manifest: the snapshot files (ids + metadata kept) */
    char orphan[700], cmd[2400];
    snprintf(orphan, sizeof orphan, "%s/in/orphan2", root);
    snprintf(cmd, sizeof cmd, "cp -r %s %s && rm %s/manifest.json", src, orphan, orphan);
    CHECK(system(cmd) == 0);
    o.path = orphan;
    o.collection_name = "nomanifest";
    o.has_metric = 0;
    o.dim = 0;
    CHECKF(dv_import(db, &o, &rep, &e) == DV_OK, "%s", e.msg);
    CHECKF(!strcmp(rep.format, "dvecdb") && rep.imported == 150, "%s %llu", rep.format, (unsigned long long)rep.imported);
    CHECK_OK(dv_coll_open(db, "nomanifest", &c, NULL));
    dv_record *rec = NULL;
    CHECK_OK(dv_coll_get(c, "p42", &rec, NULL));
    CHECK(rec->metadata && !strncmp(rec->metadata, "{\"n\":42,", 8));
    dv_record_free(rec);
    dv_coll_close(c);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- confinement ------------------------------------------------------------ */

TEST(import_paths_outside_the_roots_are_refused_and_never_opened)
{
    char *root = mkroot();
    dv_db *db = open_db(root);
    CHECK(db);
    char in[512], out[512], p[1200];
    snprintf(in, sizeof in, "%s/in", root);
    snprintf(out, sizeof out, "%s/secret", root);
    mkdir(out, 0755);
    snprintf(p, sizeof p, "%s/vectors.bin", out);
    uint64_t sz;
    free_legacy(write_legacy(p, 5, 4, -1, &sz), 5);
    snprintf(p, sizeof p, "%s/x.fvecs", out);
    FILE *f = fopen(p, "wb");
    uint32_t d = 1;
    float x = 1;
    fwrite(&d, 4, 1, f);
    fwrite(&x, 4, 1, f);
    fclose(f);
    /* symlinks inside the root pointing out, and a sibling with the root's prefix */
    snprintf(p, sizeof p, "%s/link_dir", in);
    CHECK(symlink(out, p) == 0);
    snprintf(p, sizeof p, "%s/link_file.fvecs", in);
    char target[1200];
    snprintf(target, sizeof target, "%s/x.fvecs", out);
    CHECK(symlink(target, p) == 0);
    snprintf(p, sizeof p, "%s/mixed", in);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/mixed/vectors.bin", in);
    snprintf(target, sizeof target, "%s/vectors.bin", out);
    CHECK(symlink(target, p) == 0);
    snprintf(p, sizeof p, "%s/in2", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/in2/v.fvecs", root);
    f = fopen(p, "wb");
    fwrite(&d, 4, 1, f);
    fwrite(&x, 4, 1, f);
    fclose(f);
    int ino = inotify_init1(IN_NONBLOCK);
    CHECK(ino >= 0);
    CHECK(inotify_add_watch(ino, out, IN_OPEN | IN_ACCESS) >= 0);
    char in2[600];
    snprintf(in2, sizeof in2, "%s/in2", root);
    CHECK(inotify_add_watch(ino, in2, IN_OPEN | IN_ACCESS) >= 0);

    char longname[600], longpath[5000], deep[4200];
    memset(longname, 'a', 300);
    longname[300] = 0;
    memset(longpath, 0, sizeof longpath);
    snprintf(longpath, sizeof longpath, "%s/", in);
    while (strlen(longpath) < 4200)
        strcat(longpath, "b/");
    snprintf(deep, sizeof deep, "%s/%s", in, longname);
    char att[40][1300];
    int na = 0;
#define ATT(...) snprintf(att[na++], sizeof att[0], __VA_ARGS__)
    ATT("%s/../secret", in);
    ATT("%s/../secret/vectors.bin", in);
    ATT("%s/./../secret", in);
    ATT("%s/link_dir/../../secret", in);
    ATT("%s/..", in);
    ATT("..");
    ATT("../../../../etc/passwd");
    ATT("%s", out);
    ATT("%s/vectors.bin", out);
    ATT("%s/x.fvecs", out);
    ATT("/etc/passwd");
    ATT("/etc");
    ATT("/");
    ATT("/proc/self/environ");
    ATT("/dev/zero");
    ATT("%s/link_dir", in);
    ATT("%s/link_dir/vectors.bin", in);
    ATT("%s/link_dir/x.fvecs", in);
    ATT("%s/link_file.fvecs", in);
    ATT("%s/mixed", in);
    ATT("%s/in2/v.fvecs", root);        /* a sibling sharing the root's prefix */
    ATT("%s/in2", root);
    ATT("%s", root);                    /* the parent of the root */
    ATT("%s/data", root);               /* the data dir is not a root here */
    ATT("%s/%%2e%%2e/secret", in);      /* "encoded" dots are a literal, absent name */
    ATT("%s/..%%2fsecret", in);
    ATT("%s/....//secret", in);
    ATT("%s/%s", in, longname);         /* a component over NAME_MAX */
    ATT("%s", "");
    ATT("%s/a\x01"
        "b",
        in);                            /* control characters */
    ATT("%s/\n/../secret", in);
    ATT("secret");                      /* relative to the cwd, outside */
    ATT("%s/nonexistent/../../secret", in);
    int n_perm = 0;
    for (int i = 0; i < na; i++) {
        dv_import_opts o;
        memset(&o, 0, sizeof o);
        o.path = att[i];
        o.collection_name = "evil";
        o.dim = 4;
        dv_err e = {0};
        dv_code rc = dv_import(db, &o, NULL, &e);
        /* an absent name inside the root is "not found", never opened either */
        int ok = rc == DV_EPERM || (rc == DV_ENOTFOUND && strncmp(att[i], in, strlen(in)) == 0);
        CHECKF(ok, "attempt %d (%s) returned %d: %s", i, att[i], rc, e.msg);
        n_perm += rc == DV_EPERM;
    }
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    o.path = longpath;
    o.collection_name = "evil";
    CHECK(dv_import(db, &o, NULL, NULL) == DV_EPERM);
    n_perm++;
    CHECKF(n_perm >= 30, "only %d refused with DV_EPERM", n_perm);
    char evbuf[4096];
    ssize_t got = read(ino, evbuf, sizeof evbuf);
    CHECKF(got < 0 && errno == EAGAIN, "a file outside the roots was opened (%zd bytes of inotify events)", got);
    close(ino);
    dv_coll *c = NULL;
    CHECK(dv_coll_open(db, "evil", &c, NULL) == DV_ENOTFOUND);
    /* the same file through a legitimate path works */
    snprintf(p, sizeof p, "%s/ok.fvecs", in);
    f = fopen(p, "wb");
    fwrite(&d, 4, 1, f);
    fwrite(&x, 4, 1, f);
    fclose(f);
    o.path = p;
    CHECK_OK(dv_import(db, &o, NULL, NULL));
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(import_without_configured_roots_accepts_only_paths_inside_the_data_dir)
{
    char *root = mkroot();
    char data[512], p[700];
    snprintf(data, sizeof data, "%s/data", root);
    dv_db *db = NULL;
    CHECK_OK(dv_db_open(data, NULL, &db, NULL));
    snprintf(p, sizeof p, "%s/drop/a.fvecs", data);
    CHECK_OK(io_mkdirs(strrchr(p, '/') ? data : data, NULL));
    char d2[600];
    snprintf(d2, sizeof d2, "%s/drop", data);
    mkdir(d2, 0755);
    FILE *f = fopen(p, "wb");
    uint32_t d = 2;
    float x[2] = {1, 2};
    fwrite(&d, 4, 1, f);
    fwrite(x, 4, 2, f);
    fclose(f);
    CHECK_OK(do_import(db, p, "inside", 0, DV_METRIC_EUCLIDEAN, NULL, NULL));
    snprintf(p, sizeof p, "%s/b.fvecs", root);
    f = fopen(p, "wb");
    fwrite(&d, 4, 1, f);
    fwrite(x, 4, 2, f);
    fclose(f);
    CHECK(do_import(db, p, "outside", 0, DV_METRIC_EUCLIDEAN, NULL, NULL) == DV_EPERM);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* ---- cancel, crash ------------------------------------------------------------ */

/* Entries in <data>/<sub> (0 when it does not exist). */
static size_t dir_entries(const char *data, const char *sub)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", data, sub);
    char **names = NULL;
    size_t n = 0;
    if (rec_list_dir(p, &names, &n, NULL) != DV_OK)
        return (size_t)-1;
    rec_free_names(names, n);
    return n;
}

static int cancel_at_index(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    int *calls = ctx;
    (*calls)++;
    return strcmp(phase, "index") == 0;
}

TEST(a_cancelled_import_leaves_no_collection_and_no_staging)
{
    char *root = mkroot();
    dv_db *db = open_db(root);
    CHECK(db);
    char path[600];
    snprintf(path, sizeof path, "%s/in/v.bin", root);
    uint64_t sz;
    free_legacy(write_legacy(path, 50, 8, -1, &sz), 50);
    int calls = 0;
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    o.path = path;
    o.collection_name = "cx";
    o.progress = cancel_at_index;
    o.progress_ctx = &calls;
    dv_err e = {0};
    CHECK(dv_import(db, &o, NULL, &e) == DV_EBUSY);
    CHECK(calls >= 2);
    dv_coll *c = NULL;
    CHECK(dv_coll_open(db, "cx", &c, NULL) == DV_ENOTFOUND);
    char st[600];
    snprintf(st, sizeof st, "%s/data/.staging", root);
    char **names = NULL;
    size_t n = 0;
    CHECK_OK(rec_list_dir(st, &names, &n, NULL));
    CHECK(n == 0);
    rec_free_names(names, n);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* eio: fail one call with EIO instead of crashing: the import is then
 * done exactly when it returned DV_OK. */
static void import_fault_loop(int eio, int *t_failed_);

TEST(crash_at_every_io_call_of_an_import_leaves_all_or_nothing)
{
    import_fault_loop(0, t_failed_);
}

TEST(an_io_error_at_any_call_of_an_import_means_nothing_was_imported)
{
    import_fault_loop(1, t_failed_);
}

static void import_fault_loop(int eio, int *t_failed_)
{
    char *root = mkroot();
    char path[600], in[512];
    snprintf(in, sizeof in, "%s/in", root);
    mkdir(in, 0755);
    snprintf(path, sizeof path, "%s/in/v.bin", root);
    uint64_t sz;
    uint32_t n = 40;
    free_legacy(write_legacy(path, n, 8, -1, &sz), n);
    const char *roots[] = {in};
    dv_db_options o;
    dv_db_options_init(&o);
    o.import_roots = roots;
    o.n_import_roots = 1;
    uint64_t calls = 0;
    int n_done = 0, n_undone = 0;
    for (uint64_t k = 0; k == 0 || k <= calls + 1; k += (k == 0 ? 1 : (QUICK && calls > 20 ? calls / 20 : 1))) {
        char data[600];
        snprintf(data, sizeof data, "%s/d%llu", root, (unsigned long long)k);
        dv_db *db = NULL;
        CHECK_OK(dv_db_open(data, &o, &db, NULL));
        if (k == 0)
            io_fault_arm(IO_FAULT_NONE, 0, 0);
        else
            io_fault_arm(eio ? IO_FAULT_EIO : IO_FAULT_CRASH, k, eio ? 0 : 1);
        dv_import_opts io;
        memset(&io, 0, sizeof io);
        io.path = path;
        io.collection_name = "imp";
        dv_code rc = dv_import(db, &io, NULL, NULL);
        if (k == 0) {
            calls = io_calls();
            io_fault_disarm();
            CHECK(rc == DV_OK);
            dv_db_close(db, NULL);
            rm_rf(data);
            continue;
        }
        if (eio)
            io_fault_disarm();
        dv_db_close(db, NULL);
        if (!eio)
            io_crash_apply(k % 2 ? 0 : 5);
        db = NULL;
        CHECKF(dv_db_open(data, &o, &db, NULL) == DV_OK, "reopen after crash at %llu", (unsigned long long)k);
        dv_coll *c = NULL;
        dv_code orc = dv_coll_open(db, "imp", &c, NULL);
        if (orc == DV_OK) {
            dv_coll_info info;
            CHECK_OK(dv_coll_info_get(c, &info, NULL));
            CHECKF(info.n_vectors == n, "crash at %llu: %llu vectors", (unsigned long long)k,
                   (unsigned long long)info.n_vectors);
            dv_coll_close(c);
            n_done++;
            CHECKF(!eio || rc == DV_OK, "EIO at %llu: error %d returned but the import is done", (unsigned long long)k, rc);
        } else {
            CHECKF(orc == DV_ENOTFOUND, "crash at %llu: open returned %d", (unsigned long long)k, orc);
            n_undone++;
            CHECKF(!eio || rc != DV_OK, "EIO at %llu: ok returned but nothing imported", (unsigned long long)k);
        }
        CHECK(dir_entries(data, ".staging") == 0 && dir_entries(data, ".importing") == 0);
        dv_db_close(db, NULL);
        rm_rf(data);
    }
    fprintf(stderr, "  import (%s): %llu fault points: %d done, %d undone\n", eio ? "EIO" : "crash",
            (unsigned long long)calls, n_done, n_undone);
    CHECK(n_done > 0 && n_undone > 0);
    rm_rf(root);
    free(root);
}

/* ---- import over a live collection (overwrite) ---------------------------------- */

/* A live collection "imp" of n_old points "old<i>" (dim 8), checkpointed. */
static void make_old(dv_db *db, uint32_t n_old, int *t_failed_)
{
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "imp");
    cfg.dim = 8;
    cfg.metric = DV_METRIC_EUCLIDEAN;
    CHECK_OK(dv_coll_create(db, &cfg, NULL));
    dv_coll *c = NULL;
    CHECK_OK(dv_coll_open(db, "imp", &c, NULL));
    dv_point *p = calloc(n_old, sizeof *p);
    char(*ids)[16] = calloc(n_old, 16), (*metas)[32] = calloc(n_old, 32);
    float *v = calloc((size_t)n_old * 8, sizeof(float));
    for (uint32_t i = 0; i < n_old; i++) {
        snprintf(ids[i], 16, "old%u", i);
        snprintf(metas[i], 32, "{\"old\":%u}", i);
        for (int k = 0; k < 8; k++)
            v[i * 8 + (uint32_t)k] = (float)(i * 8 + (uint32_t)k) * 0.5f;
        p[i] = (dv_point){ids[i], v + i * 8, metas[i], strlen(metas[i])};
    }
    CHECK_OK(dv_coll_upsert(c, p, n_old, NULL));
    free(p);
    free(ids);
    free(metas);
    free(v);
    CHECK_OK(dv_coll_checkpoint(c, NULL));
    dv_coll_close(c);
}

static int has_id(dv_db *db, const char *name, const char *id)
{
    dv_coll *c = NULL;
    dv_record *r = NULL;
    if (dv_coll_open(db, name, &c, NULL) != DV_OK)
        return 0;
    int ok = dv_coll_get(c, id, &r, NULL) == DV_OK;
    dv_record_free(r);
    dv_coll_close(c);
    return ok;
}

TEST(import_over_a_live_collection_needs_overwrite_then_backs_it_up_trashes_it_and_replaces_it)
{
    char *root = mkroot();
    dv_db *db = open_db(root);
    CHECK(db);
    make_old(db, 30, t_failed_);
    uint64_t n_old, d_old = coll_digest(db, "imp", &n_old);
    CHECK(n_old == 30);
    char path[600];
    snprintf(path, sizeof path, "%s/in/v.bin", root);
    uint64_t sz;
    lrec *recs = write_legacy(path, 40, 8, -1, &sz);
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    o.path = path;
    o.collection_name = "imp";
    o.has_metric = 1;
    o.metric = DV_METRIC_EUCLIDEAN;
    dv_import_report rep;
    dv_err e = {0};
    /* without overwrite: refused, nothing changed, no backup taken */
    CHECK(dv_import(db, &o, &rep, &e) == DV_EEXIST);
    CHECKF(strstr(e.msg, "overwrite") != NULL, "%s", e.msg);
    uint64_t n1, d1 = coll_digest(db, "imp", &n1);
    CHECK(n1 == 30 && d1 == d_old);
    dv_backup_info *bl = NULL;
    size_t nb = 0;
    CHECK_OK(dv_backup_list(db, "imp", &bl, &nb, NULL));
    CHECK(nb == 0);
    dv_free(bl);
    /* with overwrite: pre-import backup of the old one, old one to the trash */
    o.overwrite = 1;
    memset(&rep, 0, sizeof rep);
    CHECKF(dv_import(db, &o, &rep, &e) == DV_OK, "%s", e.msg);
    CHECK(rep.imported == 40 && rep.skipped == 0);
    CHECKF(strstr(rep.backup_id, "-pre-import") != NULL, "backup id %s", rep.backup_id);
    CHECKF(!strncmp(rep.replaced_trash_id, "imp.", 4), "trash id %s", rep.replaced_trash_id);
    CHECK(!has_id(db, "imp", "old0"));
    char uid[40];
    uuid_str(recs[39].uuid, uid);
    CHECK(has_id(db, "imp", uid));
    uint64_t n2;
    (void)coll_digest(db, "imp", &n2);
    CHECK(n2 == 40);
    dv_backup_info bi;
    CHECK_OK(dv_backup_verify(db, "imp", rep.backup_id, &bi, NULL));
    CHECK(bi.vector_count == 30 && !strcmp(bi.reason, "pre-import"));
    dv_trash_entry *tl = NULL;
    size_t nt = 0;
    CHECK_OK(dv_trash_list(db, &tl, &nt, NULL));
    CHECK(nt == 1 && !strcmp(tl[0].trash_id, rep.replaced_trash_id) && tl[0].vector_count == 30);
    dv_free(tl);
    /* the backup restores the old collection exactly */
    dv_restore_opts ro = {.source = DV_RESTORE_BACKUP, .backup_id = rep.backup_id, .new_name = "was"};
    CHECK_OK(dv_restore(db, "imp", &ro, NULL, NULL));
    uint64_t n3, d3 = coll_digest(db, "was", &n3);
    CHECK(n3 == 30 && d3 == d_old);
    /* no mark and nothing pending is left behind; the audit line names both */
    char mark[700];
    snprintf(mark, sizeof mark, "%s/data/collections/imp/%s", root, REC_IMPORT_MARK);
    CHECK(!rec_exists(mark));
    char data[600];
    snprintf(data, sizeof data, "%s/data", root);
    CHECK(dir_entries(data, ".importing") == 0 && dir_entries(data, ".staging") == 0);
    char **lines = NULL;
    size_t nl = 0;
    CHECK_OK(dv_audit_read(db, 20, &lines, &nl, NULL));
    int saw = 0;
    for (size_t i = 0; i < nl; i++)
        saw |= strstr(lines[i], "\"action\":\"import\"") && strstr(lines[i], rep.backup_id) &&
               strstr(lines[i], rep.replaced_trash_id) && strstr(lines[i], "\"outcome\":\"ok\"");
    CHECK(saw);
    dv_audit_free(lines, nl);
    /* skip_backup: no backup, the replaced collection still goes to the trash */
    o.skip_backup = 1;
    memset(&rep, 0, sizeof rep);
    CHECKF(dv_import(db, &o, &rep, &e) == DV_OK, "%s", e.msg);
    CHECK(rep.backup_id[0] == '\0' && rep.replaced_trash_id[0] != '\0');
    CHECK_OK(dv_backup_list(db, "imp", &bl, &nb, NULL));
    CHECK(nb == 1); /* only the first pre-import backup */
    dv_free(bl);
    CHECK_OK(dv_trash_list(db, &tl, &nt, NULL));
    CHECK(nt == 2);
    dv_free(tl);
    /* overwrite of a name that is not live is a plain import */
    o.collection_name = "fresh";
    memset(&rep, 0, sizeof rep);
    CHECKF(dv_import(db, &o, &rep, &e) == DV_OK, "%s", e.msg);
    CHECK(rep.imported == 40 && !rep.backup_id[0] && !rep.replaced_trash_id[0]);
    free_legacy(recs, 40);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

TEST(an_import_committed_before_a_crash_is_finished_at_the_next_open)
{
    /* The state a crash leaves right after the data commit: the complete
     * collection in .importing/<name> with the overwrite mark, the old one
     * still live. The open must back up and trash the old one and place
     * the new one, indexing it. */
    char *root = mkroot();
    dv_db *db = open_db(root);
    CHECK(db);
    make_old(db, 12, t_failed_);
    char path[600];
    snprintf(path, sizeof path, "%s/in/v.bin", root);
    uint64_t sz;
    free_legacy(write_legacy(path, 25, 8, -1, &sz), 25);
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    o.path = path;
    o.collection_name = "other";
    CHECK_OK(dv_import(db, &o, NULL, NULL));
    CHECK_OK(dv_db_close(db, NULL));
    char from[700], to[700], cmd[3200];
    snprintf(from, sizeof from, "%s/data/collections/other", root);
    snprintf(to, sizeof to, "%s/data/.importing/imp", root);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/data/.importing && mv %s %s && printf 'overwrite\\n' > %s/%s", root, from, to,
             to, REC_IMPORT_MARK);
    CHECK(system(cmd) == 0);
    db = open_db(root);
    CHECK(db);
    uint64_t n;
    (void)coll_digest(db, "imp", &n);
    CHECK(n == 25 && !has_id(db, "imp", "old0"));
    dv_coll *c = NULL;
    CHECK(dv_coll_open(db, "other", &c, NULL) == DV_ENOTFOUND);
    dv_backup_info *bl = NULL;
    size_t nb = 0;
    CHECK_OK(dv_backup_list(db, "imp", &bl, &nb, NULL));
    CHECK(nb == 1 && !strcmp(bl[0].reason, "pre-import") && bl[0].vector_count == 12);
    dv_free(bl);
    dv_trash_entry *tl = NULL;
    size_t nt = 0;
    CHECK_OK(dv_trash_list(db, &tl, &nt, NULL));
    CHECK(nt == 1 && tl[0].vector_count == 12);
    dv_free(tl);
    char data[600];
    snprintf(data, sizeof data, "%s/data", root);
    CHECK(dir_entries(data, ".importing") == 0);
    /* a committed import without the mark whose name is taken goes to the
     * trash, restorable: never thrown away, never replacing anything */
    CHECK_OK(dv_db_close(db, NULL));
    db = open_db(root);
    o.collection_name = "third";
    CHECK_OK(dv_import(db, &o, NULL, NULL));
    CHECK_OK(dv_db_close(db, NULL));
    snprintf(from, sizeof from, "%s/data/collections/third", root);
    snprintf(cmd, sizeof cmd, "mv %s %s", from, to);
    CHECK(system(cmd) == 0);
    db = open_db(root);
    CHECK(db);
    (void)coll_digest(db, "imp", &n);
    CHECK(n == 25);
    CHECK_OK(dv_trash_list(db, &tl, &nt, NULL));
    CHECK(nt == 2 && !strcmp(tl[0].name, "imp") && tl[0].vector_count == 25);
    dv_free(tl);
    CHECK(dir_entries(data, ".importing") == 0);
    dv_db_close(db, NULL);
    rm_rf(root);
    free(root);
}

/* Crash (or EIO) at every I/O call of an import that overwrites "imp":
 * after reopening, "imp" is the old collection (30 points, identical) or
 * the new one (40), never absent; when new, the old one is in the trash
 * and its pre-import backup verifies; nothing is left in .staging or
 * .importing. With EIO the import is done exactly when it returned DV_OK. */
static void overwrite_fault_loop(int eio, int *t_failed_)
{
    char *root = mkroot();
    char path[600], in[512];
    snprintf(in, sizeof in, "%s/in", root);
    mkdir(in, 0755);
    snprintf(path, sizeof path, "%s/in/v.bin", root);
    uint64_t sz;
    uint32_t n = 40, n_old = 30;
    free_legacy(write_legacy(path, n, 8, -1, &sz), n);
    const char *roots[] = {in};
    dv_db_options o;
    dv_db_options_init(&o);
    o.import_roots = roots;
    o.n_import_roots = 1;
    uint64_t calls = 0, d_old = 0;
    int n_done = 0, n_undone = 0, n_at_open = 0;
    for (uint64_t k = 0; k == 0 || k <= calls + 1; k += (k == 0 ? 1 : (QUICK && calls > 20 ? calls / 20 : 1))) {
        char data[600];
        snprintf(data, sizeof data, "%s/d%llu", root, (unsigned long long)k);
        dv_db *db = NULL;
        CHECK_OK(dv_db_open(data, &o, &db, NULL));
        make_old(db, n_old, t_failed_);
        uint64_t cnt;
        uint64_t d = coll_digest(db, "imp", &cnt);
        if (k == 0)
            d_old = d;
        if (k == 0)
            io_fault_arm(IO_FAULT_NONE, 0, 0);
        else
            io_fault_arm(eio ? IO_FAULT_EIO : IO_FAULT_CRASH, k, eio ? 0 : 1);
        dv_import_opts io;
        memset(&io, 0, sizeof io);
        io.path = path;
        io.collection_name = "imp";
        io.has_metric = 1;
        io.metric = DV_METRIC_EUCLIDEAN;
        io.overwrite = 1;
        dv_code rc = dv_import(db, &io, NULL, NULL);
        if (k == 0) {
            calls = io_calls();
            io_fault_disarm();
            CHECK(rc == DV_OK);
            dv_db_close(db, NULL);
            rm_rf(data);
            continue;
        }
        if (eio)
            io_fault_disarm();
        dv_db_close(db, NULL);
        if (!eio)
            io_crash_apply(k % 2 ? 0 : 5);
        db = NULL;
        CHECKF(dv_db_open(data, &o, &db, NULL) == DV_OK, "reopen after fault at %llu", (unsigned long long)k);
        uint64_t got = 0, dg = coll_digest(db, "imp", &got);
        dv_trash_entry *tl = NULL;
        size_t nt = 0;
        CHECK_OK(dv_trash_list(db, &tl, &nt, NULL));
        if (got == n) {
            n_done++;
            CHECKF(!eio || rc == DV_OK, "EIO at %llu: error %d returned but the import is done", (unsigned long long)k,
                   rc);
            CHECKF(nt == 1 && tl[0].vector_count == n_old, "fault at %llu: %zu trash entries", (unsigned long long)k, nt);
            if (rc != DV_OK)
                n_at_open++;
        } else {
            CHECKF(got == n_old && dg == d_old, "fault at %llu: imp has %llu points (old %u, new %u)",
                   (unsigned long long)k, (unsigned long long)got, n_old, n);
            CHECKF(nt == 0, "fault at %llu: undone but %zu trash entries", (unsigned long long)k, nt);
            CHECKF(!eio || rc != DV_OK, "EIO at %llu: ok returned but nothing imported", (unsigned long long)k);
            n_undone++;
        }
        dv_free(tl);
        dv_backup_info *bl = NULL;
        size_t nb = 0;
        CHECK_OK(dv_backup_list(db, "imp", &bl, &nb, NULL));
        for (size_t i = 0; i < nb; i++) {
            dv_err ve = {0};
            CHECKF(dv_backup_verify(db, "imp", bl[i].backup_id, NULL, &ve) == DV_OK, "fault at %llu: %s",
                   (unsigned long long)k, ve.msg);
            CHECK(bl[i].vector_count == n_old && !strcmp(bl[i].reason, "pre-import"));
        }
        /* Replaced: backed up first (twice when a crash fell between the
         * backup and the replacement: the open backs up again). */
        CHECKF(got != n || nb == 1 || (nb == 2 && rc != DV_OK), "fault at %llu: replaced with %zu backups",
               (unsigned long long)k, nb);
        dv_free(bl);
        CHECK(dir_entries(data, ".staging") == 0 && dir_entries(data, ".importing") == 0);
        dv_db_close(db, NULL);
        rm_rf(data);
    }
    fprintf(stderr, "  import overwrite (%s): %llu fault points: %d done (%d finished at open), %d undone\n",
            eio ? "EIO" : "crash", (unsigned long long)calls, n_done, n_at_open, n_undone);
    CHECK(n_done > 0 && n_undone > 0);
    if (!eio)
        CHECK(n_at_open > 0);
    rm_rf(root);
    free(root);
}

TEST(crash_at_every_io_call_of_an_overwriting_import_leaves_the_old_or_the_new_collection)
{
    overwrite_fault_loop(0, t_failed_);
}

TEST(an_io_error_at_any_call_of_an_overwriting_import_means_not_done_and_the_old_collection_intact)
{
    overwrite_fault_loop(1, t_failed_);
}

T_MAIN()
