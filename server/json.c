/*
 * json.c - the response envelope, error codes, the dv_code -> HTTP status
 * table, request body parsing and a small JSON text builder.
 *
 * Every response body is {"success": bool, "data": ..., "error": null |
 * "message", "code": null | "stable_token"} (the original d-vecDB envelope
 * plus "code"). Invariants: a handler answers exactly once (the first answer
 * wins, later ones are dropped); request bodies are depth-checked before
 * jansson sees them (it recurses), must be a JSON object, and duplicate keys
 * are rejected (an ambiguous body is a bad body).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server.h"

/* ---- text builder ------------------------------------------------------ */
static int sb_grow(srv_buf *b, size_t need)
{
    if (b->oom)
        return -1;
    if (b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void sb_put(srv_buf *b, const char *s, size_t n)
{
    if (sb_grow(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(srv_buf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

void sb_printf(srv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sb_grow(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

size_t srv_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void sb_json_str(srv_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (sb_grow(b, n + 2) < 0)
        return;
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            /* Answers are always valid UTF-8: a byte that does not start a
             * valid sequence (e.g. from a %FF in a path echoed by an error
             * message) becomes U+FFFD. */
            size_t l = srv_utf8_len((const unsigned char *)s + i, n - i);
            if (l) {
                i += l;
                continue;
            }
            sb_put(b, s + run, i - run);
            sb_put(b, "\\ufffd", 6);
            run = ++i;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        sb_put(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c == '\n') {
            sb_put(b, "\\n", 2);
        } else {
            sb_put(b, esc, 6);
        }
        i++;
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

/* 10^0 .. 10^22: every one exact in a double. */
static const double pow10_d[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* x * 10^k for |k| <= 66 with at most three roundings (relative error below
 * 2^-51: far inside what the 9-digit rounding below tolerates). */
static double scale10(double x, int k)
{
    while (k > 22)
        x *= pow10_d[22], k -= 22;
    while (k < -22)
        x /= pow10_d[22], k += 22;
    return k >= 0 ? x * pow10_d[k] : x / pow10_d[-k];
}

/* A float32 as text with 9 significant digits (trailing zeros dropped),
 * which reads back as the same float32: %.9g's result without printf's
 * cost (it dominated answers carrying vectors). The scaled mantissa may be
 * one unit off in the 9th digit versus exact rounding; a 9-digit decimal one
 * unit away is still within half a float32 ulp (2^-24 relative > 1.5e-8), so
 * it still reads back bit-exact (checked over 10^7 random floats). */
static size_t fmt_f32(char *out, float f)
{
    char *o = out;
    if (f == 0.0f) {
        if (signbit(f)) {
            memcpy(o, "-0.0", 4);
            return 4;
        }
        *o = '0';
        return 1;
    }
    double x = (double)f;
    if (x < 0) {
        *o++ = '-';
        x = -x;
    }
    /* Decimal exponent estimate from the binary one (floor(b * log10 2) is
     * exact or one low); the mantissa range check below corrects it. */
    uint32_t bits;
    memcpy(&bits, &f, 4);
    int b2 = (int)((bits >> 23) & 0xff) - 127;
    int e = b2 > -127 ? (b2 * 78913) >> 18 : (int)floor(log10(x));
    uint64_t m = (uint64_t)(scale10(x, 8 - e) + 0.5);
    while (m >= 1000000000u) {
        e++;
        m = (uint64_t)(scale10(x, 8 - e) + 0.5);
    }
    while (m < 100000000u) {
        e--;
        m = (uint64_t)(scale10(x, 8 - e) + 0.5);
    }
    char d[9];
    for (int i = 8; i >= 0; i--) {
        d[i] = (char)('0' + m % 10);
        m /= 10;
    }
    int nd = 9;
    while (nd > 1 && d[nd - 1] == '0')
        nd--;
    if (e >= 0 && e < 9) {
        /* ddd.ddd or ddd */
        for (int i = 0; i <= e; i++)
            *o++ = i < nd ? d[i] : '0';
        if (nd > e + 1) {
            *o++ = '.';
            for (int i = e + 1; i < nd; i++)
                *o++ = d[i];
        }
    } else if (e < 0 && e >= -5) {
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > e; i--)
            *o++ = '0';
        for (int i = 0; i < nd; i++)
            *o++ = d[i];
    } else {
        *o++ = d[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++)
                *o++ = d[i];
        }
        *o++ = 'e';
        int ae = e;
        if (ae < 0) {
            *o++ = '-';
            ae = -ae;
        }
        if (ae >= 10)
            *o++ = (char)('0' + ae / 10);
        *o++ = (char)('0' + ae % 10);
    }
    return (size_t)(o - out);
}

void sb_float(srv_buf *b, float f)
{
    if (!isfinite(f)) {
        sb_put(b, "null", 4);
        return;
    }
    if (sb_grow(b, 24) < 0)
        return;
    b->len += fmt_f32(b->p + b->len, f);
    b->p[b->len] = '\0';
}

void sb_floats(srv_buf *b, const float *v, size_t n)
{
    sb_put(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_put(b, ",", 1);
        sb_float(b, v[i]);
    }
    sb_put(b, "]", 1);
}

void sb_free(srv_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- status mapping ------------------------------------------------------ */
/* The one table from engine codes to HTTP statuses (docs/api.md). */
static const struct {
    dv_code code;
    int status;
} status_table[] = {
    {DV_OK, 200},     {DV_EINVAL, 400},    {DV_EDIM, 400},     {DV_ENOTFOUND, 404},
    {DV_EEXIST, 409}, {DV_ECORRUPT, 409}, /* stored bytes failed validation: the resource's state forbids the operation
                                           */
    {DV_EIO, 500},    {DV_ENOSPC, 507},    {DV_EFATAL, 503}, /* poisoned after a failed write: read-only until restart
                                                              */
    {DV_ENOMEM, 503}, {DV_ENOTSUP, 400}, /* a valid but unsupported value (Float16, Int8, a format) */
    {DV_EBUSY, 409},  {DV_EPERM, 403},     {DV_EDAMAGED, 409}, /* the collection is damaged; restore it from a backup */
    {DV_ELIMIT, 413}, {DV_EREADONLY, 503},
};

int srv_status_of(dv_code c)
{
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].code == c)
            return status_table[i].status;
    return 500;
}

/* ---- replies ------------------------------------------------------------------ */
static void set_answer(srv_req *r, int status, char *body, size_t len, const char *type)
{
    if (r->answered) {
        free(body);
        return;
    }
    r->answered = 1;
    r->status = status;
    r->resp = body;
    r->resp_len = len;
    r->resp_type = type;
}

static void reply_oom(srv_req *r)
{
    static const char msg[] = "{\"success\":false,\"data\":null,\"error\":\"server: out of memory\","
                              "\"code\":\"out_of_memory\"}";
    char *p = strdup(msg);
    set_answer(r, 503, p, p ? sizeof msg - 1 : 0, NULL);
}

void srv_reply_raw(srv_req *r, int status, char *data_json, size_t len)
{
    static const char head[] = "{\"success\":true,\"data\":", tail[] = ",\"error\":null,\"code\":null}";
    if (!data_json) {
        reply_oom(r);
        return;
    }
    size_t n = sizeof head - 1 + len + sizeof tail - 1;
    char *p = malloc(n + 1);
    if (!p) {
        free(data_json);
        reply_oom(r);
        return;
    }
    memcpy(p, head, sizeof head - 1);
    memcpy(p + sizeof head - 1, data_json, len);
    memcpy(p + sizeof head - 1 + len, tail, sizeof tail);
    free(data_json);
    set_answer(r, status, p, n, NULL);
}

void srv_sb_begin(srv_buf *b, size_t hint)
{
    sb_grow(b, hint + 64);
    sb_puts(b, "{\"success\":true,\"data\":");
}

void srv_reply_sb(srv_req *r, int status, srv_buf *b)
{
    sb_puts(b, ",\"error\":null,\"code\":null}");
    if (b->oom) {
        sb_free(b);
        reply_oom(r);
        return;
    }
    set_answer(r, status, b->p, b->len, NULL);
    b->p = NULL; /* owned by the answer now */
    b->len = b->cap = 0;
}

void srv_reply_ok(srv_req *r, int status, json_t *data)
{
    if (!data)
        data = json_null();
    char *s = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(data);
    srv_reply_raw(r, status, s, s ? strlen(s) : 0);
}

void srv_reply_err(srv_req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_buf b = {0};
    sb_puts(&b, "{\"success\":false,\"data\":null,\"error\":");
    sb_json_str(&b, msg, strlen(msg));
    sb_puts(&b, ",\"code\":");
    sb_json_str(&b, code, strlen(code));
    sb_puts(&b, "}");
    if (b.oom) {
        sb_free(&b);
        reply_oom(r);
        return;
    }
    set_answer(r, status, b.p, b.len, NULL);
}

void srv_reply_dv(srv_req *r, const dv_err *err)
{
    dv_code c = err->code;
    srv_reply_err(r, srv_status_of(c), dv_code_name(c), "%s", err->msg[0] ? err->msg : dv_strerror(c));
}

void srv_reply_text(srv_req *r, int status, const char *type, char *text, size_t len)
{
    if (!text) {
        reply_oom(r);
        return;
    }
    set_answer(r, status, text, len, type);
}

/* ---- request bodies -------------------------------------------------------------- */
/* Maximum nesting of [ and { outside strings; -1 if above max (stops early). */
static int json_depth_ok(const char *s, size_t n, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return 0;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 1;
}

json_t *srv_body_object(srv_req *r, int allow_empty)
{
    return srv_body_object_ex(r, allow_empty, 0);
}

json_t *srv_body_object_ex(srv_req *r, int allow_empty, size_t flags)
{
    size_t n = r->body_len;
    const char *s = r->body ? r->body : "";
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    if (i == n) {
        if (allow_empty)
            return json_object();
        srv_reply_err(r, 400, "invalid_body", "request: a JSON object body is required");
        return NULL;
    }
    if (!json_depth_ok(s, n, SRV_JSON_DEPTH_MAX)) {
        srv_reply_err(r, 400, "json_too_deep", "request: JSON nested deeper than %d levels", SRV_JSON_DEPTH_MAX);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES | flags, &je);
    if (!j) {
        srv_reply_err(r, 400, "malformed_json", "request: malformed JSON at line %d, column %d (position %d): %s",
                      je.line, je.column, je.position, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_reply_err(r, 400, "invalid_body", "request: the body must be a JSON object");
        return NULL;
    }
    return j;
}

int srv_check_fields(srv_req *r, json_t *obj, const char *const *allowed, const char *where)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                ok = 1;
        if (!ok) {
            char q[128];
            srv_log_quote(key, q, sizeof q);
            srv_reply_err(r, 400, "unknown_field", "%s: unknown field %s", where, q);
            return -1;
        }
    }
    return 0;
}

int srv_get_str(srv_req *r, json_t *obj, const char *key, const char **out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        srv_reply_err(r, 400, "invalid_type", "request: field \"%s\" must be a string", key);
        return -1;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        srv_reply_err(r, 400, "invalid_argument", "request: field \"%s\" contains a NUL byte", key);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

/* An integer from a JSON integer or an integral real. */
static int json_to_u64(json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0)
            return -1;
        *out = (uint64_t)x;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d < 1.8e19) || d != floor(d))
            return -1;
        *out = (uint64_t)d;
        return 0;
    }
    return -1;
}

int srv_get_uint(srv_req *r, json_t *obj, const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    uint64_t x;
    if (json_to_u64(v, &x) < 0) {
        srv_reply_err(r, 400, "invalid_type", "request: field \"%s\" must be a non-negative integer", key);
        return -1;
    }
    if (x < min || x > max) {
        srv_reply_err(r, 400, "invalid_argument", "request: field \"%s\" = %llu is outside %llu..%llu", key,
                      (unsigned long long)x, (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = x;
    return 1;
}

int srv_get_bool(srv_req *r, json_t *obj, const char *key, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        srv_reply_err(r, 400, "invalid_type", "request: field \"%s\" must be true or false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

int srv_query_uint(srv_req *r, const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
    char buf[64];
    const char *s = srv_query(r, key, buf, sizeof buf);
    if (!s)
        return 0;
    char *end;
    if (!*s || *s == '-' || *s == '+' || *s == ' ') {
        srv_reply_err(r, 400, "invalid_argument", "request: query parameter \"%s\" must be a non-negative integer",
                      key);
        return -1;
    }
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno) {
        srv_reply_err(r, 400, "invalid_argument", "request: query parameter \"%s\" must be a non-negative integer",
                      key);
        return -1;
    }
    if (x < min || x > max) {
        srv_reply_err(r, 400, "invalid_argument", "request: query parameter \"%s\" = %llu is outside %llu..%llu", key,
                      x, (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = x;
    return 1;
}

int srv_query_bool(srv_req *r, const char *key, int *out)
{
    char buf[16];
    const char *s = srv_query(r, key, buf, sizeof buf);
    if (!s)
        return 0;
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcasecmp(s, "yes") == 0 || *s == '\0') {
        *out = 1;
        return 1;
    }
    if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcasecmp(s, "no") == 0) {
        *out = 0;
        return 1;
    }
    srv_reply_err(r, 400, "invalid_argument", "request: query parameter \"%s\" must be true or false", key);
    return -1;
}
