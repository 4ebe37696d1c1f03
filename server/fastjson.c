/*
 * fastjson.c - a fast path for the two hot request bodies: points (insert,
 * PUT, batch) and search.
 *
 * jansson builds a tree node per number and parses each through a
 * locale-aware strtod; for a 784-dimension batch that is ~2 us per number and
 * dominated the cost of an insert. This scanner reads the common shape of
 * those bodies directly into float arrays. It is strictly a fast path: it
 * never answers an error. On anything it does not fully understand (an
 * escape or non-ASCII byte in a key or id, an unknown or duplicate field, a
 * number outside the JSON grammar, too deep, trailing bytes, ...) it returns
 * 0 and the caller parses the body with jansson, which gives the exact error
 * (and its position). So both paths accept the same bodies and answer the
 * same errors. Metadata and filters are located by a balanced scan and then
 * parsed by jansson (they are small), so their validation is jansson's.
 * Invariants: the body is NUL-terminated (http.c) and never modified; every
 * output string is a copy; every number reads to the float32 the general
 * path stores, bit for bit ((float) of jansson's double; number_f32), so a
 * vector does not depend on which path read it (tests/unit/test_fastjson.c).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastjson.h"

typedef struct scan {
    const char *p, *end;
} scan;

static void ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static int eat(scan *s, char c)
{
    ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A string of printable ASCII without escapes; [*out, *out + *n). */
static int plain_string(scan *s, const char **out, size_t *n)
{
    ws(s);
    if (s->p >= s->end || *s->p != '"')
        return 0;
    const char *a = ++s->p;
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = (unsigned char)*s->p;
        if (c < 0x20 || c >= 0x7f || c == '\\')
            return 0;
        s->p++;
    }
    if (s->p >= s->end)
        return 0;
    *out = a;
    *n = (size_t)(s->p - a);
    s->p++;
    return 1;
}

/* One JSON number (RFC 8259 grammar checked first, so strtod never sees hex,
 * "inf" or "nan"). */
static int number(scan *s, double *out)
{
    ws(s);
    const char *p = s->p, *a = p;
    if (p < s->end && *p == '-')
        p++;
    if (p >= s->end)
        return 0;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return 0;
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return 0;
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    char *e;
    double d = strtod(a, &e);
    if (e != p)
        return 0;
    *out = d;
    s->p = p;
    return 1;
}

/* 10^0 .. 10^22: every one exact in a double (5^22 < 2^53). */
static const double pow10_d[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#if LDBL_MANT_DIG == 64
/* 10^0 .. 10^27, each exact in an x87 long double (5^27 < 2^64). */
static const long double pow10_ld[28] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
                                         1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
                                         1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};

/* The double nearest to m * 10^e10 (what strtod returns), through one
 * rounding to the 64-bit significand of an x87 long double: m and 10^|e10|
 * are exact there, so v = RN64(x). RN53(v) == RN53(x) unless v is exactly
 * halfway between two doubles (its low 11 significand bits 10000000000):
 * a double midpoint has 54 bits, so it fits in 64, and a v that is not one
 * lies on the same side of every midpoint as x. That case returns 0 (the
 * caller asks strtod). */
static int ld_nearest_double(uint64_t m, long e10, double *out)
{
    long double v = (long double)m;
    v = e10 >= 0 ? v * pow10_ld[e10] : v / pow10_ld[-e10];
    uint64_t sig;
    memcpy(&sig, &v, sizeof sig); /* x87 format: the explicit 64-bit significand first */
    if ((sig & 0x7ff) == 0x400)
        return 0;
    *out = (double)v;
    return 1;
}
#endif

/* One JSON number straight to float32, bit-identical to the general path's
 * (float)strtod(text) (jansson reads a double, the handler narrows it):
 * - up to 2^53 significant and a decimal exponent within +-22, m and 10^|e|
 *   are exact doubles and one IEEE multiply or divide gives the correctly
 *   rounded double (Clinger's fast path) - the digits every float32 or
 *   integer-valued client sends;
 * - up to 19 digits and +-27, the long double route above;
 * - anything else (more digits, larger exponents) through strtod itself.
 * The float32 is then that double narrowed, as on the general path. */
static int number_f32(scan *s, float *out)
{
    ws(s);
    const char *p = s->p, *a = p, *end = s->end;
    int neg = 0, nd = 0, lost = 0;
    uint64_t m = 0;
    long e10 = 0;
    if (p < end && *p == '-')
        neg = 1, p++;
    if (p >= end)
        return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (nd < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nd++;
            } else {
                e10++;
                lost |= *p != '0';
            }
        }
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (m == 0 && *p == '0') {
                e10--; /* leading zeros are not significant */
            } else if (nd < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nd++;
                e10--;
            } else {
                lost |= *p != '0';
            }
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        long x = 0;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p == '-', p++;
        if (p >= end || *p < '0' || *p > '9')
            return 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (x < 100000)
                x = x * 10 + (*p - '0');
        e10 += eneg ? -x : x;
    }
    if (p - a >= 19 && !memchr(a, '.', (size_t)(p - a)) && !memchr(a, 'e', (size_t)(p - a)) &&
        !memchr(a, 'E', (size_t)(p - a))) {
        /* jansson refuses integers beyond int64 ("too big integer"): so do we
         * (by leaving the body to it), for identical answers. */
        errno = 0;
        char *ie;
        (void)strtoll(a, &ie, 10);
        if (errno == ERANGE)
            return 0;
    }
    double d;
    if (m == 0) {
        d = 0.0;
        if (p - a == 1 + neg) /* "0", "-0": jansson reads an integer, and the int 0 is +0.0 */
            neg = 0;
    } else if (FLT_EVAL_METHOD == 0 && !lost && m <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
        /* (FLT_EVAL_METHOD 0: the operation rounds to double, not wider) */
        d = e10 >= 0 ? (double)m * pow10_d[e10] : (double)m / pow10_d[-e10];
#if LDBL_MANT_DIG == 64
    } else if (!lost && e10 >= -27 && e10 <= 27 && ld_nearest_double(m, e10, &d)) {
        /* d set */
#endif
    } else {
        char *e;
        d = strtod(neg ? a + 1 : a, &e);
        if (e != p)
            return 0;
    }
    if (!isfinite(d))
        return 0;
    float f = (float)d;
    *out = neg ? -f : f;
    s->p = p;
    return 1;
}

static int literal(scan *s, const char *lit)
{
    ws(s);
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) >= n && memcmp(s->p, lit, n) == 0) {
        s->p += n;
        return 1;
    }
    return 0;
}

/* Skip one JSON value (structure only; jansson validates it later).
 * depth counts the levels already open around it. */
static int skip_value(scan *s, int depth)
{
    ws(s);
    if (s->p >= s->end)
        return 0;
    char c = *s->p;
    if (c == '"') {
        s->p++;
        while (s->p < s->end && *s->p != '"') {
            if (*s->p == '\\')
                s->p++;
            s->p++;
        }
        if (s->p >= s->end)
            return 0;
        s->p++;
        return 1;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (depth + 1 > FJ_DEPTH_MAX)
            return 0;
        s->p++;
        if (eat(s, close))
            return 1;
        for (;;) {
            if (c == '{') {
                ws(s);
                if (s->p >= s->end || *s->p != '"' || !skip_value(s, depth + 1) || !eat(s, ':'))
                    return 0;
            }
            if (!skip_value(s, depth + 1))
                return 0;
            if (eat(s, ','))
                continue;
            return eat(s, close);
        }
    }
    double d;
    return number(s, &d) || literal(s, "true") || literal(s, "false") || literal(s, "null");
}

/* A nested object value (metadata, filter): its text, validated by jansson,
 * as compact JSON (malloc'd) - or NULL text for JSON null. */
static int object_value(scan *s, int depth, char **text, size_t max_len)
{
    ws(s);
    if (literal(s, "null")) {
        *text = NULL;
        return 1;
    }
    if (s->p >= s->end || *s->p != '{')
        return 0;
    const char *a = s->p;
    if (!skip_value(s, depth))
        return 0;
    json_t *j = json_loadb(a, (size_t)(s->p - a), JSON_REJECT_DUPLICATES, NULL);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return 0;
    }
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!t || strlen(t) > max_len) {
        free(t);
        return 0;
    }
    *text = t;
    return 1;
}

/* Append the numbers of a JSON array to fp->floats; *count = how many. */
static int float_array(scan *s, fj_points *fp, size_t *count)
{
    if (!eat(s, '['))
        return 0;
    size_t n = 0;
    if (eat(s, ']'))
        return 0; /* empty: the general path words the error */
    for (;;) {
        float f;
        if (!number_f32(s, &f) || !isfinite(f) || n >= FJ_DIM_MAX)
            return 0;
        if (fp->n_floats == fp->floats_cap) {
            size_t cap = fp->floats_cap ? fp->floats_cap * 2 : 1024;
            float *nf = realloc(fp->floats, cap * sizeof *nf);
            if (!nf)
                return 0;
            fp->floats = nf;
            fp->floats_cap = cap;
        }
        fp->floats[fp->n_floats++] = f;
        n++;
        if (eat(s, ','))
            continue;
        if (!eat(s, ']'))
            return 0;
        *count = n;
        return 1;
    }
}

static int push_point(fj_points *fp)
{
    if (fp->n == fp->cap) {
        size_t cap = fp->cap ? fp->cap * 2 : 16;
        fj_point *np = realloc(fp->pts, cap * sizeof *np);
        if (!np)
            return 0;
        fp->pts = np;
        fp->cap = cap;
    }
    memset(&fp->pts[fp->n], 0, sizeof fp->pts[0]);
    fp->n++;
    return 1;
}

/* {"id"?, "data"|"vector", "metadata"?} at nesting depth `depth`. */
static int point_object(scan *s, fj_points *fp, int depth)
{
    if (!eat(s, '{') || !push_point(fp))
        return 0;
    fj_point *pt = &fp->pts[fp->n - 1];
    pt->float_off = fp->n_floats;
    int seen_id = 0, seen_vec = 0, seen_md = 0;
    if (eat(s, '}'))
        return 0;
    for (;;) {
        const char *k;
        size_t kn;
        if (!plain_string(s, &k, &kn) || !eat(s, ':'))
            return 0;
        if (kn == 2 && !memcmp(k, "id", 2) && !seen_id) {
            seen_id = 1;
            ws(s);
            if (literal(s, "null")) {
                pt->id = NULL;
            } else {
                const char *v;
                size_t vn;
                if (!plain_string(s, &v, &vn) || vn == 0 || vn > FJ_ID_MAX)
                    return 0;
                pt->id = strndup(v, vn);
                if (!pt->id)
                    return 0;
            }
        } else if (((kn == 4 && !memcmp(k, "data", 4)) || (kn == 6 && !memcmp(k, "vector", 6))) && !seen_vec) {
            seen_vec = 1;
            pt->float_off = fp->n_floats;
            if (!float_array(s, fp, &pt->dim))
                return 0;
        } else if (kn == 8 && !memcmp(k, "metadata", 8) && !seen_md) {
            seen_md = 1;
            if (!object_value(s, depth + 1, &pt->metadata, FJ_METADATA_MAX))
                return 0;
        } else {
            return 0; /* unknown or repeated field: the general path answers */
        }
        if (eat(s, ','))
            continue;
        if (!eat(s, '}'))
            return 0;
        return seen_vec;
    }
}

static int at_end(scan *s)
{
    ws(s);
    return s->p == s->end;
}

void fj_points_free(fj_points *fp)
{
    for (size_t i = 0; i < fp->n; i++) {
        free(fp->pts[i].id);
        free(fp->pts[i].metadata);
    }
    free(fp->pts);
    free(fp->floats);
    memset(fp, 0, sizeof *fp);
}

int fj_parse_points(const char *body, size_t len, int batch, fj_points *out)
{
    scan s = {body, body + len};
    fj_points fp;
    memset(&fp, 0, sizeof fp);
    int ok = 0;
    if (!batch) {
        ok = point_object(&s, &fp, 0) && at_end(&s);
    } else if (eat(&s, '{')) {
        const char *k;
        size_t kn;
        if (plain_string(&s, &k, &kn) && kn == 7 && !memcmp(k, "vectors", 7) && eat(&s, ':') && eat(&s, '[') &&
            !eat(&s, ']')) {
            for (;;) {
                if (!point_object(&s, &fp, 2))
                    break;
                if (eat(&s, ','))
                    continue;
                ok = eat(&s, ']') && eat(&s, '}') && at_end(&s);
                break;
            }
        }
    }
    if (!ok) {
        fj_points_free(&fp);
        return 0;
    }
    *out = fp;
    return 1;
}

int fj_parse_search(const char *body, size_t len, fj_search *out)
{
    scan s = {body, body + len};
    fj_search q;
    memset(&q, 0, sizeof q);
    int seen[7] = {0};
    static const char *const keys[] = {"vector",          "query_vector", "limit", "ef_search",
                                       "include_vectors", "exact",        "filter"};
    if (!eat(&s, '{') || eat(&s, '}'))
        goto bail;
    for (;;) {
        const char *k;
        size_t kn;
        if (!plain_string(&s, &k, &kn) || !eat(&s, ':'))
            goto bail;
        int which = -1;
        for (int i = 0; i < 7; i++)
            if (strlen(keys[i]) == kn && !memcmp(keys[i], k, kn))
                which = i;
        if (which < 0 || seen[which])
            goto bail;
        seen[which] = 1;
        double d;
        switch (which) {
        case 0:
        case 1:
            if (q.has_vector || !float_array(&s, &q.vec, &q.dim))
                goto bail;
            q.has_vector = 1;
            break;
        case 2:
        case 3:
            /* Plain positive integers only; anything else goes the general way. */
            if (!number(&s, &d) || d < 1 || d > 1e9 || d != floor(d))
                goto bail;
            if (which == 2)
                q.limit = (uint64_t)d, q.has_limit = 1;
            else
                q.ef = (uint64_t)d, q.has_ef = 1;
            break;
        case 4:
        case 5: {
            int v;
            if (literal(&s, "true"))
                v = 1;
            else if (literal(&s, "false"))
                v = 0;
            else
                goto bail;
            if (which == 4)
                q.include_vectors = v;
            else
                q.exact = v;
            break;
        }
        case 6:
            if (!object_value(&s, 1, &q.filter, (size_t)-1))
                goto bail;
            break;
        }
        if (eat(&s, ','))
            continue;
        if (!eat(&s, '}') || !at_end(&s) || !q.has_vector)
            goto bail;
        *out = q;
        return 1;
    }
bail:
    fj_search_free(&q);
    return 0;
}

void fj_search_free(fj_search *q)
{
    fj_points_free(&q->vec);
    free(q->filter);
    memset(q, 0, sizeof *q);
}
