/* fuzz_http.c - libFuzzer target for request handling through the server's
 * route layer: path matching and percent-decoding (srv_route_match), JSON
 * request bodies and every handler behind them, against a real database.
 *
 * Input: up to 8 requests separated by NUL bytes, each
 *     METHOD SP PATH LF BODY
 * (the body may be empty). Every input gets a fresh database in a temp dir
 * (fsync policy never) holding collection "c" (dim 4, Euclidean) with 8
 * points "p0".."p7" with metadata; the requests run in order, as the admin,
 * without headers or query strings (the libmicrohttpd connection is NULL:
 * srv_header/srv_query find nothing). The server's main.c is replaced by the
 * three globals below.
 *
 * Checked beyond "no crash, no sanitizer report, no leak":
 *  - route matching returns -2, -1 or a valid index, with as many decoded
 *    parameters as the pattern has, none empty or containing '/' raw;
 *  - every handler answers exactly once with a status in 200..599 and never
 *    500 (bad input is a 4xx: DESIGN.md invariant 6);
 *  - a JSON answer is the envelope {"success", "data", "error", "code"} with
 *    success == (status < 400). */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../server/server.h"

/* main.c's globals, without main(). */
srv_state g_srv;
dv_db *srv_db(void)
{
    return g_srv.db;
}
int srv_stopping(void)
{
    return 0;
}

#define MAX_REQUESTS 8

static char root[256];
static unsigned long n_run;
static int debug;
/* FUZZ_HTTP_SKIP="backup,hard-delete": skip routes whose pattern contains
 * one of these words (exploratory runs past a known hang); unset in replay. */
static const char *skip;
/* FUZZ_HTTP_LAX_UTF8 set: accept answers with invalid UTF-8 (exploratory
 * runs past the known bug crash-error-message-invalid-utf8). */
static int lax_utf8;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static void rm_rf(const char *p)
{
    nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_root(void)
{
    rm_rf(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/dv-fuzz-http-XXXXXX", base);
    if (!mkdtemp(root))
        abort();
    atexit(remove_root);
    debug = getenv("FUZZ_DEBUG") != NULL;
    skip = getenv("FUZZ_HTTP_SKIP");
    lax_utf8 = getenv("FUZZ_HTTP_LAX_UTF8") != NULL;
    srv_config *c = &g_srv.cfg;
    c->log_level = debug ? SRV_LOG_DEBUG : -1;
    c->fsync = DV_FSYNC_NEVER;
    c->max_body = 1 << 20;
    c->max_batch = 64;
    c->max_limit = 100;
    c->max_ef = 200;
    c->trash_retention_s = 3600;
    c->m = 4;
    c->ef_construction = 16;
    c->ef_search = 16;
    c->max_layer = 4;
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    return 0;
}

static void open_db(const char *dir)
{
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    o.n_threads = 1;
    dv_err err = {0};
    if (dv_db_open(dir, &o, &g_srv.db, &err) != DV_OK) {
        fprintf(stderr, "fuzz_http: dv_db_open: %s\n", err.msg);
        abort();
    }
    g_srv.ready = 1;
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "c");
    cfg.dim = 4;
    cfg.metric = DV_METRIC_EUCLIDEAN;
    cfg.m = 4;
    cfg.ef_construction = 16;
    if (dv_coll_create(g_srv.db, &cfg, &err) != DV_OK) {
        fprintf(stderr, "fuzz_http: dv_coll_create: %s\n", err.msg);
        abort();
    }
    dv_coll *coll = NULL;
    if (dv_coll_open(g_srv.db, "c", &coll, &err) != DV_OK)
        abort();
    static const char *const meta[4] = {"{\"color\": \"red\", \"n\": 1}", "{\"color\": \"blue\", \"n\": 2}",
                                        "{\"tags\": [\"a\", \"b\"], \"nested\": {\"x\": 1.5}}", NULL};
    char ids[8][16];
    float v[8][4];
    dv_point pts[8];
    for (int i = 0; i < 8; i++) {
        snprintf(ids[i], sizeof ids[i], "p%d", i);
        for (int d = 0; d < 4; d++)
            v[i][d] = (float)((i * 7 + d * 3) % 11) - 5.0f;
        pts[i].id = ids[i];
        pts[i].vector = v[i];
        pts[i].metadata = meta[i % 4];
        pts[i].metadata_len = meta[i % 4] ? strlen(meta[i % 4]) : 0;
    }
    if (dv_coll_upsert(coll, pts, 8, &err) != DV_OK) {
        fprintf(stderr, "fuzz_http: dv_coll_upsert: %s\n", err.msg);
        abort();
    }
    dv_coll_close(coll);
}

static void close_db(void)
{
    dv_err err = {0};
    g_srv.ready = 0;
    if (dv_db_close(g_srv.db, &err) != DV_OK && debug)
        fprintf(stderr, "fuzz_http: dv_db_close: %s\n", err.msg);
    g_srv.db = NULL;
}

static int count_params(const char *pattern)
{
    int n = 0;
    for (const char *p = pattern; *p; p++)
        n += *p == ':';
    return n;
}

static int skipped(const char *pattern)
{
    char words[256];
    snprintf(words, sizeof words, "%s", skip);
    for (char *save = NULL, *w = strtok_r(words, ",", &save); w; w = strtok_r(NULL, ",", &save))
        if (*w && strstr(pattern, w))
            return 1;
    return 0;
}

/* Run one request "METHOD PATH\nBODY" (len bytes, not NUL-terminated). */
static void run_request(const char *text, size_t len)
{
    const char *sp = memchr(text, ' ', len);
    if (!sp || sp == text || (size_t)(sp - text) >= 8)
        return;
    const char *nl = memchr(sp, '\n', len - (size_t)(sp - text));
    size_t path_len = (nl ? (size_t)(nl - sp) : len - (size_t)(sp - text)) - 1;
    if (path_len == 0 || path_len > 2048)
        return;
    srv_req r;
    memset(&r, 0, sizeof r);
    memcpy(r.method, text, (size_t)(sp - text));
    char *path = strndup(sp + 1, path_len);
    if (!path)
        return;
    if (strlen(path) != path_len) { /* NUL inside: not a request line */
        free(path);
        return;
    }
    int known = 0;
    int idx = srv_route_match(r.method, path, r.params, &r.n_params, &known, r.allow, sizeof r.allow);
    if (idx < -2 || idx >= (int)srv_n_routes)
        abort();
    if (idx < 0) {
        if (r.n_params)
            srv_param_free(&r);
        free(path);
        return;
    }
    r.route = &srv_routes[idx];
    r.route_idx = idx;
    if (skip && skipped(r.route->pattern)) {
        srv_param_free(&r);
        free(path);
        return;
    }
    if ((int)r.n_params != count_params(r.route->pattern))
        abort();
    for (size_t i = 0; i < r.n_params; i++)
        if (!r.params[i] || !r.params[i][0])
            abort();
    r.role = SRV_ROLE_ADMIN;
    r.actor = "admin";
    snprintf(r.remote, sizeof r.remote, "fuzz");
    size_t body_len = nl ? len - (size_t)(nl + 1 - text) : 0;
    if (body_len) {
        r.body = malloc(body_len + 1);
        memcpy(r.body, nl + 1, body_len);
        r.body[body_len] = '\0';
        r.body_len = body_len;
        r.body_cap = body_len + 1;
    }
    r.route->handler(&r);
    if (debug)
        fprintf(stderr, "fuzz_http: %s %s -> %d %.*s\n", r.method, path, r.status, (int)(r.resp_len > 300 ? 300 : r.resp_len),
                r.resp ? r.resp : "");
    if (!r.answered || r.status < 200 || r.status > 599)
        abort();
    if (r.status == 500) {
        fprintf(stderr, "fuzz_http: %s %s -> 500: %.*s\n", r.method, path, (int)r.resp_len, r.resp ? r.resp : "");
        abort();
    }
    if (!r.resp_type) {
        json_error_t je;
        if (lax_utf8)
            for (size_t i = 0; i < r.resp_len; i++)
                if ((unsigned char)r.resp[i] >= 0x80)
                    r.resp[i] = '?';
        json_t *j = json_loadb(r.resp, r.resp_len, 0, &je);
        json_t *ok = j ? json_object_get(j, "success") : NULL;
        if (!json_is_object(j) || !json_is_boolean(ok) || !json_object_get(j, "data") ||
            !json_object_get(j, "error") || json_is_true(ok) != (r.status < 400)) {
            fprintf(stderr, "fuzz_http: %s %s -> %d: bad envelope: %.*s\n", r.method, path, r.status,
                    (int)r.resp_len, r.resp ? r.resp : "");
            abort();
        }
        json_decref(j);
    }
    srv_param_free(&r);
    free(r.body);
    free(r.resp);
    free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/db%lu", root, n_run++);
    open_db(dir);
    const char *p = (const char *)data, *end = p + size;
    for (int i = 0; i < MAX_REQUESTS && p < end; i++) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        size_t n = z ? (size_t)(z - p) : (size_t)(end - p);
        run_request(p, n);
        p += n + 1;
    }
    close_db();
    rm_rf(dir);
    return 0;
}
