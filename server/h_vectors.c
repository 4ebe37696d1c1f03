/*
 * h_vectors.c - handlers for vector writes, reads, scroll and search.
 *
 * Request bodies: a point is {id?, data | vector: [numbers], metadata?:
 * object | null}; unknown fields and wrong types are rejected (400) before the
 * engine is called, so a bad request changes nothing. Absent ids are
 * generated as UUIDv4 from a per-thread generator seeded from /dev/urandom.
 * Responses with vectors are written by hand (srv_buf): floats with 9
 * significant digits (read back bit-exact as float32) and metadata passed
 * through byte-exact as the engine stored it.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "fastjson.h"
#include "server.h"

/* ---- UUIDv4 ids ------------------------------------------------------------ */
static _Thread_local uint64_t rng_s[2];
static _Thread_local int rng_seeded;

/* xorshift128+, seeded once per thread from the kernel's CSPRNG. */
static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        if (getrandom(rng_s, sizeof rng_s, 0) != (ssize_t)sizeof rng_s) {
            int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
            ssize_t got = fd >= 0 ? read(fd, rng_s, sizeof rng_s) : -1;
            if (fd >= 0)
                close(fd);
            if (got != (ssize_t)sizeof rng_s) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                rng_s[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)pthread_self();
                rng_s[1] = (uint64_t)ts.tv_sec ^ 0xD1B54A32D192ED03ull;
            }
        }
        if (!rng_s[0] && !rng_s[1])
            rng_s[1] = 1;
        rng_seeded = 1;
    }
    uint64_t x = rng_s[0], y = rng_s[1];
    rng_s[0] = y;
    x ^= x << 23;
    rng_s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return rng_s[1] + y;
}

static void uuid4(char out[37])
{
    uint8_t b[16];
    uint64_t a = rng_next(), c = rng_next();
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ---- parsing points ---------------------------------------------------------- */
typedef struct pointset {
    dv_point *pts;
    size_t n;
    float *floats; /* all vectors, back to back */
    char **owned;  /* generated ids and metadata texts, freed with the set */
    size_t n_owned;
} pointset;

static void pointset_free(pointset *ps)
{
    for (size_t i = 0; i < ps->n_owned; i++)
        free(ps->owned[i]);
    free(ps->owned);
    free(ps->pts);
    free(ps->floats);
    memset(ps, 0, sizeof *ps);
}

/* Check an id value: a string of 1..DV_ID_MAX bytes without NUL. */
static int check_id(srv_req *r, json_t *v, const char *where, const char **out)
{
    if (!json_is_string(v)) {
        srv_reply_err(r, 400, "invalid_type", "%s: \"id\" must be a string", where);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n == 0 || n > DV_ID_MAX || strlen(json_string_value(v)) != n) {
        srv_reply_err(r, 400, "invalid_id", "%s: id must be 1..%d bytes without NUL (got %zu bytes)", where, DV_ID_MAX,
                      n);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* Copy a JSON array of numbers into dst (dim floats, finite). */
static int parse_floats(srv_req *r, json_t *arr, float *dst, size_t dim, const char *where)
{
    for (size_t i = 0; i < dim; i++) {
        json_t *x = json_array_get(arr, i);
        if (!json_is_number(x)) {
            srv_reply_err(r, 400, "invalid_vector", "%s: element %zu is not a number", where, i);
            return -1;
        }
        double d = json_number_value(x);
        float f = (float)d;
        if (!isfinite(d) || !isfinite(f)) {
            srv_reply_err(r, 400, "invalid_vector", "%s: element %zu is not a finite float32", where, i);
            return -1;
        }
        dst[i] = f;
    }
    return 0;
}

/* The vector of a point or query: "data" or "vector" (or "query_vector"
 * for search), exactly one of them. */
static json_t *vector_field(srv_req *r, json_t *obj, const char *const *names, const char *where)
{
    json_t *found = NULL;
    const char *fname = NULL;
    for (size_t i = 0; names[i]; i++) {
        json_t *v = json_object_get(obj, names[i]);
        if (!v)
            continue;
        if (found) {
            srv_reply_err(r, 400, "invalid_body", "%s: give only one of \"%s\" and \"%s\"", where, fname, names[i]);
            return NULL;
        }
        found = v;
        fname = names[i];
    }
    if (!found) {
        srv_reply_err(r, 400, "invalid_body", "%s: the vector (\"%s\") is required", where, names[0]);
        return NULL;
    }
    if (!json_is_array(found) || json_array_size(found) == 0 || json_array_size(found) > DV_DIM_MAX) {
        srv_reply_err(r, 400, "invalid_vector", "%s: \"%s\" must be a non-empty array of at most %d numbers", where,
                      fname, DV_DIM_MAX);
        return NULL;
    }
    return found;
}

static int own(pointset *ps, char *s)
{
    ps->owned[ps->n_owned++] = s;
    return 0;
}

/* Parse the n point objects of items (array) or the single object one. The
 * path id, when given, is the id of a single point (PUT). */
static int parse_points(srv_req *r, json_t **items, size_t n, const char *path_id, uint32_t dim, pointset *ps)
{
    static const char *const fields[] = {"id", "data", "vector", "metadata", NULL};
    static const char *const vnames[] = {"data", "vector", NULL};
    ps->pts = calloc(n, sizeof *ps->pts);
    ps->floats = malloc(n * (size_t)dim * sizeof(float));
    ps->owned = calloc(2 * n, sizeof *ps->owned);
    if (!ps->pts || !ps->floats || !ps->owned) {
        srv_reply_err(r, 503, "out_of_memory", "server: out of memory for %zu points", n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char where[64];
        if (n > 1 || !path_id)
            snprintf(where, sizeof where, n > 1 ? "vectors[%zu]" : "vector", i);
        else
            snprintf(where, sizeof where, "vector");
        json_t *o = items[i];
        if (!json_is_object(o)) {
            srv_reply_err(r, 400, "invalid_type", "%s: must be an object", where);
            return -1;
        }
        if (srv_check_fields(r, o, fields, where) < 0)
            return -1;
        dv_point *p = &ps->pts[i];
        json_t *idv = json_object_get(o, "id");
        if (idv && !json_is_null(idv)) {
            if (check_id(r, idv, where, &p->id) < 0)
                return -1;
            if (path_id && strcmp(p->id, path_id) != 0) {
                srv_reply_err(r, 400, "invalid_id", "%s: body id differs from the id in the path", where);
                return -1;
            }
        } else if (path_id) {
            p->id = path_id;
        } else {
            char *id = malloc(37);
            if (!id) {
                srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
                return -1;
            }
            uuid4(id);
            own(ps, id);
            p->id = id;
        }
        json_t *vec = vector_field(r, o, vnames, where);
        if (!vec)
            return -1;
        if (json_array_size(vec) != dim) {
            srv_reply_err(r, 400, "dimension_mismatch", "%s: expected %u dimensions, got %zu", where, dim,
                          json_array_size(vec));
            return -1;
        }
        float *dst = ps->floats + i * (size_t)dim;
        if (parse_floats(r, vec, dst, dim, where) < 0)
            return -1;
        p->vector = dst;
        json_t *md = json_object_get(o, "metadata");
        if (md && !json_is_null(md)) {
            if (!json_is_object(md)) {
                srv_reply_err(r, 400, "invalid_metadata", "%s: \"metadata\" must be an object or null", where);
                return -1;
            }
            char *txt = json_dumps(md, JSON_COMPACT);
            if (!txt) {
                srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
                return -1;
            }
            own(ps, txt);
            if (strlen(txt) > DV_METADATA_MAX) {
                srv_reply_err(r, 413, "limit_exceeded", "%s: metadata of %zu bytes exceeds %d bytes", where,
                              strlen(txt), DV_METADATA_MAX);
                return -1;
            }
            p->metadata = txt;
            p->metadata_len = strlen(txt);
        }
    }
    ps->n = n;
    return 0;
}

/* The collection's dimension (for early, precise dimension errors). From
 * the immutable config: dv_coll_info_get would wait for the collection's
 * writer (it reads the WAL size under the writer mutex) and walk its
 * directory, which made every search wait for the batch insert in progress. */
static int coll_dim(srv_req *r, dv_coll *coll, uint32_t *dim)
{
    (void)r;
    dv_coll_config cfg;
    dv_coll_config_get(coll, &cfg);
    *dim = cfg.dim;
    return 0;
}

/* Answer the ids of a successful upsert: the id, or the array of ids. */
static void reply_ids(srv_req *r, int batch, const dv_point *pts, size_t n)
{
    if (!batch) {
        srv_reply_ok(r, 200, json_string(pts[0].id));
        return;
    }
    srv_buf sb = {0};
    srv_sb_begin(&sb, n * 40);
    sb_puts(&sb, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_puts(&sb, ",");
        sb_json_str(&sb, pts[i].id, strlen(pts[i].id));
    }
    sb_puts(&sb, "]");
    srv_reply_sb(r, 200, &sb);
}

/* The general path of insert, PUT and batch (jansson): parse, validate,
 * upsert, answer; every error is answered here with its precise message. */
static void upsert_slow(srv_req *r, int batch, const char *path_id)
{
    json_t *b = srv_body_object(r, 0);
    if (!b)
        return;
    dv_coll *coll = NULL;
    pointset ps;
    memset(&ps, 0, sizeof ps);
    json_t **items = NULL;
    size_t n = 1;
    if (batch) {
        static const char *const bfields[] = {"vectors", NULL};
        if (srv_check_fields(r, b, bfields, "batch") < 0)
            goto out;
        json_t *arr = json_object_get(b, "vectors");
        if (!json_is_array(arr)) {
            srv_reply_err(r, 400, "invalid_body", "batch: \"vectors\" must be an array");
            goto out;
        }
        n = json_array_size(arr);
        if (n == 0) {
            srv_reply_err(r, 400, "invalid_body", "batch: \"vectors\" is empty");
            goto out;
        }
        if (n > g_srv.cfg.max_batch) {
            srv_reply_err(r, 413, "limit_exceeded", "batch: %zu vectors exceed --max-batch %u", n, g_srv.cfg.max_batch);
            goto out;
        }
        items = malloc(n * sizeof *items);
        if (!items) {
            srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            items[i] = json_array_get(arr, i);
    } else {
        items = malloc(sizeof *items);
        if (!items) {
            srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
            goto out;
        }
        items[0] = b;
    }
    coll = srv_open_coll(r);
    if (!coll)
        goto out;
    uint32_t dim;
    if (coll_dim(r, coll, &dim) < 0 || parse_points(r, items, n, path_id, dim, &ps) < 0)
        goto out;
    dv_err err = {0};
    if (dv_coll_upsert(coll, ps.pts, ps.n, &err) != DV_OK) {
        srv_reply_dv(r, &err);
        goto out;
    }
    reply_ids(r, batch, ps.pts, ps.n);
out:
    if (coll)
        dv_coll_close(coll);
    pointset_free(&ps);
    free(items);
    json_decref(b);
}

/* The fast path (fastjson.c). Returns 1 if the request was answered, 0 to
 * let upsert_slow parse it again and word the error precisely. */
static int upsert_fast(srv_req *r, int batch, const char *path_id)
{
    fj_points fp;
    if (!r->body || !fj_parse_points(r->body, r->body_len, batch, &fp))
        return 0;
    int answered = 0;
    dv_coll *coll = NULL;
    dv_point *pts = NULL;
    char(*gen)[37] = NULL;
    if (batch && fp.n > g_srv.cfg.max_batch)
        goto out;
    for (size_t i = 0; i < fp.n; i++)
        if (path_id && fp.pts[i].id && strcmp(fp.pts[i].id, path_id) != 0)
            goto out;
    coll = srv_open_coll(r);
    if (!coll) {
        answered = 1;
        goto out;
    }
    uint32_t dim;
    if (coll_dim(r, coll, &dim) < 0) {
        answered = 1;
        goto out;
    }
    pts = calloc(fp.n, sizeof *pts);
    gen = malloc(fp.n * sizeof *gen);
    if (!pts || !gen)
        goto out;
    for (size_t i = 0; i < fp.n; i++) {
        const fj_point *q = &fp.pts[i];
        if (q->dim != dim)
            goto out;
        if (q->id) {
            pts[i].id = q->id;
        } else if (path_id) {
            pts[i].id = path_id;
        } else {
            uuid4(gen[i]);
            pts[i].id = gen[i];
        }
        pts[i].vector = fp.floats + q->float_off;
        pts[i].metadata = q->metadata;
        pts[i].metadata_len = q->metadata ? strlen(q->metadata) : 0;
    }
    answered = 1;
    dv_err err = {0};
    if (dv_coll_upsert(coll, pts, fp.n, &err) != DV_OK)
        srv_reply_dv(r, &err);
    else
        reply_ids(r, batch, pts, fp.n);
out:
    if (coll)
        dv_coll_close(coll);
    free(pts);
    free(gen);
    fj_points_free(&fp);
    return answered;
}

static void upsert_reply(srv_req *r, int batch, const char *path_id)
{
    if (!upsert_fast(r, batch, path_id))
        upsert_slow(r, batch, path_id);
}

void h_vec_insert(srv_req *r)
{
    upsert_reply(r, 0, NULL);
}

void h_vec_batch(srv_req *r)
{
    upsert_reply(r, 1, NULL);
}

void h_vec_put(srv_req *r)
{
    const char *id = r->params[1];
    size_t n = strlen(id);
    if (n == 0 || n > DV_ID_MAX) {
        srv_reply_err(r, 400, "invalid_id", "vector: id must be 1..%d bytes", DV_ID_MAX);
        return;
    }
    upsert_reply(r, 0, id);
}

/* {"id":..,"vector":[..],"metadata":..} of one record into sb. */
static void record_json(srv_buf *sb, const char *id, const float *v, uint32_t dim, const char *md, size_t md_len)
{
    sb_puts(sb, "{\"id\":");
    sb_json_str(sb, id, strlen(id));
    if (v) {
        sb_puts(sb, ",\"vector\":");
        sb_floats(sb, v, dim);
    }
    sb_puts(sb, ",\"metadata\":");
    if (md && md_len)
        sb_put(sb, md, md_len);
    else
        sb_puts(sb, "null");
    sb_puts(sb, "}");
}

static void reply_buf(srv_req *r, srv_buf *sb)
{
    srv_reply_sb(r, 200, sb);
}

void h_vec_get(srv_req *r)
{
    const char *id = r->params[1];
    if (strlen(id) > DV_ID_MAX) {
        srv_reply_err(r, 400, "invalid_id", "vector: id longer than %d bytes", DV_ID_MAX);
        return;
    }
    dv_coll *coll = srv_open_coll(r);
    if (!coll)
        return;
    dv_record *rec = NULL;
    dv_err err = {0};
    if (dv_coll_get(coll, id, &rec, &err) != DV_OK) {
        srv_reply_dv(r, &err);
    } else {
        srv_buf sb = {0};
        srv_sb_begin(&sb, (size_t)rec->dim * 16 + rec->metadata_len + 512);
        record_json(&sb, rec->id, rec->vector, rec->dim, rec->metadata, rec->metadata_len);
        reply_buf(r, &sb);
        dv_record_free(rec);
    }
    dv_coll_close(coll);
}

void h_vec_delete(srv_req *r)
{
    const char *id = r->params[1];
    if (strlen(id) > DV_ID_MAX) {
        srv_reply_err(r, 400, "invalid_id", "vector: id longer than %d bytes", DV_ID_MAX);
        return;
    }
    dv_coll *coll = srv_open_coll(r);
    if (!coll)
        return;
    size_t n = 0;
    dv_err err = {0};
    const char *ids[1] = {id};
    if (dv_coll_delete(coll, ids, 1, &n, &err) != DV_OK)
        srv_reply_dv(r, &err);
    else if (n == 0)
        srv_reply_err(r, 404, "not_found", "vector: no id %s in collection %s", id, r->params[0]);
    else
        srv_reply_ok(r, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
    dv_coll_close(coll);
}

void h_vec_batch_delete(srv_req *r)
{
    static const char *const fields[] = {"ids", NULL};
    json_t *b = srv_body_object(r, 0);
    if (!b)
        return;
    const char **ids = NULL;
    dv_coll *coll = NULL;
    if (srv_check_fields(r, b, fields, "delete") < 0)
        goto out;
    json_t *arr = json_object_get(b, "ids");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        srv_reply_err(r, 400, "invalid_body", "delete: \"ids\" must be a non-empty array of strings");
        goto out;
    }
    size_t n = json_array_size(arr);
    if (n > g_srv.cfg.max_batch) {
        srv_reply_err(r, 413, "limit_exceeded", "delete: %zu ids exceed --max-batch %u", n, g_srv.cfg.max_batch);
        goto out;
    }
    ids = malloc(n * sizeof *ids);
    if (!ids) {
        srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof where, "ids[%zu]", i);
        if (check_id(r, json_array_get(arr, i), where, &ids[i]) < 0)
            goto out;
    }
    coll = srv_open_coll(r);
    if (!coll)
        goto out;
    size_t deleted = 0;
    dv_err err = {0};
    if (dv_coll_delete(coll, ids, n, &deleted, &err) != DV_OK)
        srv_reply_dv(r, &err);
    else
        srv_reply_ok(r, 200, json_pack("{s:I, s:I}", "deleted", (json_int_t)deleted, "requested", (json_int_t)n));
out:
    if (coll)
        dv_coll_close(coll);
    free(ids);
    json_decref(b);
}

void h_vec_scroll(srv_req *r)
{
    uint64_t offset = 0, limit = 100;
    int include_vectors = 0;
    if (srv_query_uint(r, "offset", 0, UINT64_MAX / 2, &offset) < 0 ||
        srv_query_uint(r, "limit", 1, g_srv.cfg.max_limit, &limit) < 0 ||
        srv_query_bool(r, "include_vectors", &include_vectors) < 0)
        return;
    dv_coll *coll = srv_open_coll(r);
    if (!coll)
        return;
    dv_result *res = NULL;
    dv_err err = {0};
    if (dv_coll_scroll(coll, offset, (uint32_t)limit, include_vectors, &res, &err) != DV_OK) {
        srv_reply_dv(r, &err);
    } else {
        srv_buf sb = {0};
        size_t hint = res->n * (300 + (include_vectors ? (size_t)res->dim * 16 : 0));
        for (size_t i = 0; i < res->n; i++)
            hint += res->hits[i].metadata_len;
        srv_sb_begin(&sb, hint);
        sb_puts(&sb, "{\"vectors\":[");
        for (size_t i = 0; i < res->n; i++) {
            const dv_hit *h = &res->hits[i];
            if (i)
                sb_puts(&sb, ",");
            record_json(&sb, h->id, include_vectors ? h->vector : NULL, res->dim, h->metadata, h->metadata_len);
        }
        sb_printf(&sb, "],\"offset\":%llu,\"limit\":%llu,\"count\":%zu,\"next_offset\":", (unsigned long long)offset,
                  (unsigned long long)limit, res->n);
        if (res->n == limit)
            sb_printf(&sb, "%llu}", (unsigned long long)(offset + res->n));
        else
            sb_puts(&sb, "null}");
        reply_buf(r, &sb);
        dv_result_free(res);
    }
    dv_coll_close(coll);
}

/* A parsed search request, from either path. */
typedef struct search_req {
    float *q; /* owned */
    size_t dim;
    uint64_t limit, ef;
    int include_vectors, exact;
    char *filter; /* owned, compact JSON or NULL */
} search_req;

static void search_req_free(search_req *sr)
{
    free(sr->q);
    free(sr->filter);
}

/* limit / ef_search from the query string when the body did not give them
 * (the original accepted both). -1: answered. */
static int search_query_params(srv_req *r, search_req *sr, int has_limit, int has_ef)
{
    if (!has_limit && srv_query_uint(r, "limit", 1, g_srv.cfg.max_limit, &sr->limit) < 0)
        return -1;
    if (!has_ef && srv_query_uint(r, "ef_search", 1, g_srv.cfg.max_ef, &sr->ef) < 0)
        return -1;
    return 0;
}

/* Fast path: 1 parsed, 0 use the general path, -1 answered. */
static int search_parse_fast(srv_req *r, search_req *sr)
{
    fj_search fq;
    if (!r->body || !fj_parse_search(r->body, r->body_len, &fq))
        return 0;
    if ((fq.has_limit && fq.limit > g_srv.cfg.max_limit) || (fq.has_ef && fq.ef > g_srv.cfg.max_ef)) {
        fj_search_free(&fq);
        return 0;
    }
    sr->q = fq.vec.floats; /* take the query */
    fq.vec.floats = NULL;
    sr->dim = fq.dim;
    if (fq.has_limit)
        sr->limit = fq.limit;
    if (fq.has_ef)
        sr->ef = fq.ef;
    sr->include_vectors = fq.include_vectors;
    sr->exact = fq.exact;
    sr->filter = fq.filter;
    fq.filter = NULL;
    int has_limit = fq.has_limit, has_ef = fq.has_ef;
    fj_search_free(&fq);
    return search_query_params(r, sr, has_limit, has_ef) < 0 ? -1 : 1;
}

/* General path (jansson); 0 parsed, -1 answered with the precise error. */
static int search_parse_slow(srv_req *r, search_req *sr)
{
    static const char *const fields[] = {"vector", "query_vector",    "limit", "ef_search",
                                         "filter", "include_vectors", "exact", NULL};
    static const char *const vnames[] = {"query_vector", "vector", NULL};
    int rc = -1;
    json_t *b = srv_body_object(r, 0);
    if (!b)
        return -1;
    if (srv_check_fields(r, b, fields, "search") < 0)
        goto out;
    int lr = srv_get_uint(r, b, "limit", 1, g_srv.cfg.max_limit, &sr->limit);
    int er = lr < 0 ? -1 : srv_get_uint(r, b, "ef_search", 1, g_srv.cfg.max_ef, &sr->ef);
    if (lr < 0 || er < 0 || search_query_params(r, sr, lr > 0, er > 0) < 0)
        goto out;
    if (srv_get_bool(r, b, "include_vectors", &sr->include_vectors) < 0 || srv_get_bool(r, b, "exact", &sr->exact) < 0)
        goto out;
    json_t *f = json_object_get(b, "filter");
    if (f && !json_is_null(f)) {
        if (!json_is_object(f)) {
            srv_reply_err(r, 400, "invalid_filter", "search: \"filter\" must be an object");
            goto out;
        }
        sr->filter = json_dumps(f, JSON_COMPACT);
        if (!sr->filter) {
            srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
            goto out;
        }
    }
    json_t *vec = vector_field(r, b, vnames, "search");
    if (!vec)
        goto out;
    sr->dim = json_array_size(vec);
    sr->q = malloc(sr->dim * sizeof *sr->q);
    if (!sr->q) {
        srv_reply_err(r, 503, "out_of_memory", "server: out of memory");
        goto out;
    }
    if (parse_floats(r, vec, sr->q, sr->dim, "search") < 0)
        goto out;
    rc = 0;
out:
    json_decref(b);
    return rc;
}

void h_search(srv_req *r)
{
    search_req sr;
    memset(&sr, 0, sizeof sr);
    sr.limit = 10;
    dv_coll *coll = NULL;
    dv_result *res = NULL;
    int f = search_parse_fast(r, &sr);
    if (f < 0)
        goto out;
    if (f == 0) {
        search_req_free(&sr);
        memset(&sr, 0, sizeof sr);
        sr.limit = 10;
        if (search_parse_slow(r, &sr) < 0)
            goto out;
    }
    coll = srv_open_coll(r);
    if (!coll)
        goto out;
    uint32_t dim;
    if (coll_dim(r, coll, &dim) < 0)
        goto out;
    if (sr.dim != dim) {
        srv_reply_err(r, 400, "dimension_mismatch", "search: expected %u dimensions, got %zu", dim, sr.dim);
        goto out;
    }
    dv_search_params p;
    memset(&p, 0, sizeof p);
    p.k = (uint32_t)sr.limit;
    p.ef = (uint32_t)sr.ef;
    p.filter = sr.filter;
    p.filter_len = sr.filter ? strlen(sr.filter) : 0;
    p.include_vectors = sr.include_vectors;
    p.exact = sr.exact;
    dv_err err = {0};
    if (dv_coll_search(coll, sr.q, &p, &res, &err) != DV_OK) {
        if (err.code == DV_EINVAL && sr.filter)
            srv_reply_err(r, 400, "invalid_filter", "%s", err.msg);
        else
            srv_reply_dv(r, &err);
        goto out;
    }
    srv_buf sb = {0};
    srv_sb_begin(&sb, res->n * (300 + (sr.include_vectors ? (size_t)res->dim * 16 : 0)));
    sb_puts(&sb, "[");
    for (size_t i = 0; i < res->n; i++) {
        const dv_hit *h = &res->hits[i];
        if (i)
            sb_puts(&sb, ",");
        sb_puts(&sb, "{\"id\":");
        sb_json_str(&sb, h->id, strlen(h->id));
        sb_puts(&sb, ",\"distance\":");
        sb_float(&sb, h->distance);
        sb_puts(&sb, ",\"metadata\":");
        if (h->metadata && h->metadata_len)
            sb_put(&sb, h->metadata, h->metadata_len);
        else
            sb_puts(&sb, "null");
        if (sr.include_vectors && h->vector) {
            sb_puts(&sb, ",\"vector\":");
            sb_floats(&sb, h->vector, res->dim);
        }
        sb_puts(&sb, "}");
    }
    sb_puts(&sb, "]");
    reply_buf(r, &sb);
out:
    if (res)
        dv_result_free(res);
    if (coll)
        dv_coll_close(coll);
    search_req_free(&sr);
}
