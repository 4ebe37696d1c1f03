/*
 * http.c - the CLI's HTTP layer: one keep-alive libcurl handle per thread,
 * single attempts (http_do), the retry policy (what is retryable, full-jitter
 * exponential backoff honouring Retry-After) and the server's JSON envelope
 * {"success","data","error","code"} (api_request / api_report).
 *
 * Invariants: an http_conn is used by one thread at a time; no signal is
 * raised by libcurl (CURLOPT_NOSIGNAL), so worker threads are safe; every
 * request body is sent with an explicit length and without
 * "Expect: 100-continue" (which would add a round trip per batch); on a
 * no_reuse or no_resend connection libcurl never re-sends a body by itself.
 */
#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct http_conn {
    CURL *h;
    int no_reuse;
    int no_resend;
};

/* libcurl silently re-sends a request when a reused keep-alive connection
 * dies before the answer: that retry has no backoff and is invisible to our
 * accounting. Two ways to keep every re-send ours: a fresh connection per
 * request (no_reuse), or keep-alive with a body libcurl cannot rewind
 * (no_resend, see body_read): the re-send then fails at once with
 * CURLE_SEND_FAIL_REWIND and the caller retries by its own rules. */
void http_conn_no_reuse(http_conn *c)
{
    c->no_reuse = 1;
}

void http_conn_no_resend(http_conn *c)
{
    c->no_resend = 1;
}

typedef struct body_cursor {
    const char *p;
    size_t left;
} body_cursor;

/* The request body through CURLOPT_READFUNCTION and no SEEKFUNCTION: libcurl
 * can read it once but not rewind it, so it cannot send it a second time. */
static size_t body_read(char *buf, size_t size, size_t n, void *ud)
{
    body_cursor *bc = ud;
    size_t k = size * n < bc->left ? size * n : bc->left;
    memcpy(buf, bc->p, k);
    bc->p += k;
    bc->left -= k;
    return k;
}

dv_code http_conn_create(http_conn **out, dv_err *err)
{
    http_conn *c = calloc(1, sizeof *c);
    if (!c)
        return dv_errorf(err, DV_ENOMEM, "http: out of memory");
    c->h = curl_easy_init();
    if (!c->h) {
        free(c);
        return dv_errorf(err, DV_ENOMEM, "http: curl_easy_init failed");
    }
    *out = c;
    return DV_OK;
}

void http_conn_destroy(http_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->h);
    free(c);
}

void http_resp_free(http_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    http_resp *r = ud;
    size_t len = size * n;
    char *nb = realloc(r->body, r->body_len + len + 1);
    if (!nb)
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    memcpy(nb + r->body_len, p, len);
    r->body = nb;
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

/* Retry-After is either delay-seconds or an HTTP-date (RFC 9110 10.2.3);
 * fractional seconds are accepted too. */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    http_resp *r = ud;
    size_t len = size * n;
    static const char key[] = "retry-after:";
    if (len > sizeof key - 1 && !strncasecmp(p, key, sizeof key - 1)) {
        char v[128];
        size_t vl = len - (sizeof key - 1);
        if (vl >= sizeof v)
            vl = sizeof v - 1;
        memcpy(v, p + sizeof key - 1, vl);
        v[vl] = '\0';
        char *s = v;
        while (*s == ' ' || *s == '\t')
            s++;
        for (char *e = s + strlen(s); e > s && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ');)
            *--e = '\0';
        char *end;
        double d = strtod(s, &end);
        if (end != s && *end == '\0' && isfinite(d) && d >= 0) {
            r->retry_after_s = d;
        } else {
            time_t t = curl_getdate(s, NULL);
            if (t > 0) {
                double dd = difftime(t, time(NULL));
                r->retry_after_s = dd > 0 ? dd : 0;
            }
        }
    }
    return len;
}

dv_code http_do(http_conn *c, const char *method, const char *url, const char *bearer, const char *body,
                size_t body_len, double timeout_s, http_resp *r, dv_err *err)
{
    free(r->body);
    memset(r, 0, sizeof *r);
    r->retry_after_s = -1;
    CURL *h = c->h;
    curl_easy_reset(h); /* keeps the connection cache: keep-alive survives */
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    char auth[1024];
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_s < 10 ? timeout_s * 1000 : 10000));
    curl_easy_setopt(h, CURLOPT_USERAGENT, "vectordb-cli/" DV_VERSION_STRING);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (c->no_reuse)
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    body_cursor bc = {body, body_len};
    if (body && c->no_resend) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, body_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &bc);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (strcmp(method, "GET") && !(body && !strcmp(method, "POST")))
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "POST") && !body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (!r->body) {
        r->body = calloc(1, 1);
        if (!r->body)
            return dv_errorf(err, DV_ENOMEM, "http: out of memory");
    }
    if (cc != CURLE_OK) {
        r->curl_code = cc;
        r->status = 0;
        snprintf(r->curl_msg, sizeof r->curl_msg, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        return dv_errorf(err, DV_EIO, "http: %s %s: %s", method, url, r->curl_msg);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    return DV_OK;
}

int http_retryable(const http_resp *r)
{
    if (r->status == 0) {
        /* A malformed URL or an unsupported scheme will not heal by waiting. */
        return r->curl_code != CURLE_URL_MALFORMAT && r->curl_code != CURLE_UNSUPPORTED_PROTOCOL &&
               r->curl_code != CURLE_OUT_OF_MEMORY;
    }
    return r->status == 429 || (r->status >= 500 && r->status <= 599);
}

/* xorshift64*: small, fast, per-thread state; quality is ample for jitter. */
uint64_t http_rng_next(uint64_t *rng)
{
    uint64_t x = *rng ? *rng : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double http_backoff_s(unsigned attempt, double base_s, double cap_s, double retry_after_s, uint64_t *rng)
{
    double ceil_s = base_s * ldexp(1.0, attempt > 60 ? 60 : (int)attempt);
    if (ceil_s > cap_s)
        ceil_s = cap_s;
    double u = (double)(http_rng_next(rng) >> 11) / 9007199254740992.0; /* [0, 1) */
    double d = u * ceil_s;
    /* The server said when to come back: never earlier; a hostile or broken
     * value is bounded so an ingest cannot hang for hours on one header. */
    if (retry_after_s >= 0) {
        double ra = retry_after_s > 300 ? 300 : retry_after_s;
        if (d < ra)
            d = ra;
    }
    return d;
}

void http_sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR && !cli_interrupted)
        ;
}

void http_describe(const http_resp *r, char *buf, size_t cap)
{
    if (r->status == 0)
        snprintf(buf, cap, "connection: %s", r->curl_msg[0] ? r->curl_msg : "failed");
    else
        snprintf(buf, cap, "HTTP %ld", r->status);
}

void http_escape(const char *s, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(buf);
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 4 < cap; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~') {
            buf[n++] = (char)*p;
        } else {
            buf[n++] = '%';
            buf[n++] = hex[*p >> 4];
            buf[n++] = hex[*p & 15];
        }
    }
    buf[n] = '\0';
}

/* ---- the envelope --------------------------------------------------- */

/* The simple commands share one connection (single-threaded). */
static http_conn *g_conn;

void api_res_free(api_res *res)
{
    json_decref(res->root);
    memset(res, 0, sizeof *res);
}

dv_code api_request(const cli_ctx *ctx, const char *method, const char *path, json_t *body, api_res *res)
{
    dv_err err = {0};
    memset(res, 0, sizeof *res);
    if (!g_conn && http_conn_create(&g_conn, &err)) {
        snprintf(res->transport, sizeof res->transport, "%s", err.msg);
        return DV_ENOMEM;
    }
    char url[4096];
    snprintf(url, sizeof url, "%s%s", ctx->url, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    http_resp r = {0};
    uint64_t rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&r;
    int is_get = !strcmp(method, "GET");
    dv_code rc = DV_OK;
    for (unsigned attempt = 0;; attempt++) {
        if (ctx->verbose)
            fprintf(stderr, "> %s %s\n", method, url);
        rc = http_do(g_conn, method, url, ctx->api_key, text, text ? strlen(text) : 0, ctx->timeout_s, &r, &err);
        if (ctx->verbose && r.status)
            fprintf(stderr, "< HTTP %ld (%zu bytes)\n", r.status, r.body_len);
        /* Only reads are retried here: a write that timed out may have been
         * applied, and the operator must decide (ingest has its own rules). */
        if (!is_get || attempt >= 2 || !(r.status == 0 ? http_retryable(&r) : r.status == 429 || r.status == 503))
            break;
        double d = http_backoff_s(attempt, 0.2, 2.0, r.retry_after_s, &rng);
        if (ctx->verbose)
            fprintf(stderr, "  retrying in %.2f s\n", d);
        http_sleep_s(d);
    }
    free(text);
    res->status = r.status;
    if (rc != DV_OK) {
        snprintf(res->transport, sizeof res->transport, "%s", r.curl_msg);
        http_resp_free(&r);
        return rc;
    }
    json_error_t je;
    res->root = r.body_len ? json_loadb(r.body, r.body_len, 0, &je) : NULL;
    if (!res->root && r.body_len) {
        snprintf(res->transport, sizeof res->transport, "response is not JSON (HTTP %ld): %.120s", r.status, r.body);
    }
    http_resp_free(&r);
    json_t *succ = NULL;
    if (json_is_object(res->root)) {
        res->data = json_object_get(res->root, "data");
        succ = json_object_get(res->root, "success");
        json_t *e = json_object_get(res->root, "error");
        json_t *c = json_object_get(res->root, "code");
        res->error = json_is_string(e) ? json_string_value(e) : NULL;
        res->code = json_is_string(c) ? json_string_value(c) : NULL;
    } else if (res->root) {
        res->data = res->root; /* a bare JSON value: accept it as the data */
    }
    if (res->status < 200 || res->status > 299 || json_is_false(succ))
        return DV_EINVAL;
    if (!res->root && res->status != 204)
        return DV_EINVAL;
    return DV_OK;
}

/* What to do next, by status and code: the message a tired operator needs. */
static const char *hint_for(const cli_ctx *ctx, const api_res *res)
{
    const char *code = res->code ? res->code : "";
    switch (res->status) {
    case 0:
        (void)ctx;
        return "is vectordb-server running and reachable? check --url or DVECDB_URL";
    case 400:
        return "fix the request (see the message) and try again";
    case 401:
        return "pass the server's API key with --api-key or DVECDB_API_KEY";
    case 403:
        if (strstr(code, "read") || strstr(code, "key") || strstr(code, "auth"))
            return "this key may not do that: use the admin API key";
        return "the operation is not permitted (import paths must lie under --import-root)";
    case 404:
        return "check the name: 'vectordb-cli collections list' shows live collections, "
               "'vectordb-cli trash list' deleted ones, 'vectordb-cli backup list' backups";
    case 409:
        return "the name is taken: pick another name, or use --new-name where offered";
    case 413:
        return "the request is too large: use smaller batches";
    case 429:
        return "the server is rate limiting: wait and try again";
    case 503:
        return "the server is not ready or is read-only after a disk failure: check its log";
    case 507:
        return "the server's disk is full: free space, then try again";
    default:
        if (res->status >= 500)
            return "server error: check the server log";
        return NULL;
    }
}

int api_report(const cli_ctx *ctx, const char *what, const api_res *res)
{
    if (res->status == 0)
        fprintf(stderr, "vectordb-cli: %s: cannot reach %s: %s\n", what, ctx->url,
                res->transport[0] ? res->transport : "connection failed");
    else if (res->error)
        fprintf(stderr, "vectordb-cli: %s: %s (HTTP %ld%s%s)\n", what, res->error, res->status,
                res->code ? ", code " : "", res->code ? res->code : "");
    else if (res->transport[0])
        fprintf(stderr, "vectordb-cli: %s: %s\n", what, res->transport);
    else
        fprintf(stderr, "vectordb-cli: %s: failed with HTTP %ld\n", what, res->status);
    const char *hint = hint_for(ctx, res);
    if (hint)
        fprintf(stderr, "  next: %s\n", hint);
    return CLI_FAIL;
}

int api_run(const cli_ctx *ctx, const char *what, const char *method, const char *path, json_t *body, api_show_fn show)
{
    api_res res;
    if (api_request(ctx, method, path, body, &res) != DV_OK) {
        int rc = api_report(ctx, what, &res);
        api_res_free(&res);
        return rc;
    }
    if (ctx->json)
        out_json(res.data ? res.data : json_null());
    else if (show)
        show(ctx, res.data);
    else
        out_auto(ctx, res.data);
    api_res_free(&res);
    return CLI_OK;
}
