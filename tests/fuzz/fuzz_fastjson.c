/* fuzz_fastjson.c - differential libFuzzer target for the server's fast
 * request-body scanner (server/fastjson.c) against jansson.
 *
 * The fast path promises to accept only bodies that the general (jansson)
 * path reads the same way. Input: byte 0 picks the parser (mod 3: one point,
 * a batch {"vectors": [...]}, a search body); the rest is the body,
 * NUL-terminated as http.c hands it over. Whenever the fast parser accepts,
 * the body must also parse with jansson (duplicates rejected, as the general
 * path does) to an object that says the same thing:
 *  - points: same number of points; each id equal (absent/null = NULL);
 *    the same count of numbers in "data"/"vector", each bit-identical to
 *    (float) of jansson's double (the invariant fastjson.c's header states:
 *    both paths store the same float32);
 *    metadata equal as JSON (json_equal);
 *  - search: the same vector (same rule), limit / ef_search equal to the
 *    number jansson reads, include_vectors / exact equal, filter json_equal.
 * Plus: no crash, no sanitizer report, no leak. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/fastjson.h"

static void fail(const char *what, const char *body)
{
    fprintf(stderr, "fuzz_fastjson: fast path and jansson disagree: %s\nbody: %s\n", what, body);
    abort();
}

/* a and b the same float32, bit for bit (so -0 differs from 0). */
static int close_f32(float a, float b)
{
    uint32_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y;
}

static int same_floats(const json_t *arr, const float *v, size_t n)
{
    if (!json_is_array(arr) || json_array_size(arr) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(arr, i);
        if (!json_is_number(x) || !close_f32((float)json_number_value(x), v[i]))
            return 0;
    }
    return 1;
}

/* Metadata / filter: NULL text <-> absent or null; else equal objects. */
static int same_object(const json_t *j, const char *text)
{
    if (!text)
        return !j || json_is_null(j);
    json_t *t = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    int ok = t && json_is_object(j) && json_equal(t, (json_t *)j);
    json_decref(t);
    return ok;
}

static void check_point(const json_t *o, const fj_points *fp, const fj_point *pt, const char *body)
{
    if (!json_is_object(o))
        fail("a point is not an object", body);
    const json_t *id = json_object_get(o, "id");
    if (pt->id) {
        if (!json_is_string(id) || strcmp(json_string_value(id), pt->id) != 0 ||
            json_string_length(id) != strlen(pt->id))
            fail("id", body);
    } else if (id && !json_is_null(id)) {
        fail("id given but not read", body);
    }
    const json_t *vec = json_object_get(o, "data");
    if (!vec)
        vec = json_object_get(o, "vector");
    if (!same_floats(vec, fp->floats + pt->float_off, pt->dim))
        fail("vector", body);
    if (!same_object(json_object_get(o, "metadata"), pt->metadata))
        fail("metadata", body);
}

static int same_uint(const json_t *j, uint64_t v)
{
    return json_is_number(j) && json_number_value(j) == (double)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    size_t len = size - 1;
    char *body = malloc(len + 1);
    if (len)
        memcpy(body, data + 1, len);
    body[len] = '\0';

    if (mode < 2) {
        fj_points fp;
        memset(&fp, 0, sizeof fp);
        int ok = fj_parse_points(body, len, mode, &fp);
        if (getenv("FUZZ_DEBUG"))
            fprintf(stderr, "fuzz_fastjson: points fast path %s\n", ok ? "accepted" : "declined");
        if (ok) {
            json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
            if (!json_is_object(j))
                fail("jansson refuses a body the fast path accepted", body);
            if (mode == 0) {
                if (fp.n != 1)
                    fail("one point expected", body);
                check_point(j, &fp, &fp.pts[0], body);
            } else {
                const json_t *arr = json_object_get(j, "vectors");
                if (!json_is_array(arr) || json_array_size(arr) != fp.n || json_object_size(j) != 1)
                    fail("batch shape", body);
                for (size_t i = 0; i < fp.n; i++)
                    check_point(json_array_get(arr, i), &fp, &fp.pts[i], body);
            }
            json_decref(j);
            fj_points_free(&fp);
        }
    } else {
        fj_search q;
        memset(&q, 0, sizeof q);
        int ok = fj_parse_search(body, len, &q);
        if (getenv("FUZZ_DEBUG"))
            fprintf(stderr, "fuzz_fastjson: search fast path %s\n", ok ? "accepted" : "declined");
        if (ok) {
            json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
            if (!json_is_object(j))
                fail("jansson refuses a body the fast path accepted", body);
            const json_t *vec = json_object_get(j, "vector");
            if (!vec)
                vec = json_object_get(j, "query_vector");
            if (!q.has_vector || !same_floats(vec, q.vec.floats, q.dim))
                fail("search vector", body);
            if (q.has_limit != (json_object_get(j, "limit") != NULL) ||
                (q.has_limit && !same_uint(json_object_get(j, "limit"), q.limit)))
                fail("limit", body);
            if (q.has_ef != (json_object_get(j, "ef_search") != NULL) ||
                (q.has_ef && !same_uint(json_object_get(j, "ef_search"), q.ef)))
                fail("ef_search", body);
            const json_t *iv = json_object_get(j, "include_vectors"), *ex = json_object_get(j, "exact");
            if (q.include_vectors != json_is_true(iv) || (iv && !json_is_boolean(iv)))
                fail("include_vectors", body);
            if (q.exact != json_is_true(ex) || (ex && !json_is_boolean(ex)))
                fail("exact", body);
            if (!same_object(json_object_get(j, "filter"), q.filter))
                fail("filter", body);
            json_decref(j);
            fj_search_free(&q);
        }
    }
    free(body);
    return 0;
}
