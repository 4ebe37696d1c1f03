/*
 * routes.c - the route table, path matching and /openapi.json.
 *
 * Owns the list of REST routes: every route the server answers is one row
 * here, and /openapi.json is generated from these rows, so the document
 * lists exactly the routes that exist. Matching is pure (no MHD, no engine)
 * so the fuzz target can drive it directly.
 * Invariants: literal routes come before parameter routes of the same shape
 * (first match wins: GET /collections/deleted is not GET /collections/:name);
 * path parameters are percent-decoded per segment and never contain NUL or
 * '/'-less garbage beyond what the handlers validate.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* clang-format off */
const srv_route srv_routes[] = {
    /* method   pattern                                   handler              access      db body summary */
    {"GET",    "/health",                                 h_health,            SRV_PUBLIC, 0, 0, "Liveness and version (no key needed)"},
    {"GET",    "/livez",                                  h_livez,             SRV_PUBLIC, 0, 0, "The process is up (no key needed)"},
    {"GET",    "/readyz",                                 h_readyz,            SRV_PUBLIC, 0, 0, "503 until the database is open and recovered (no key needed)"},
    {"GET",    "/stats",                                  h_stats,             SRV_READ,   1, 0, "Database statistics"},
    {"GET",    "/metrics",                                h_metrics,           SRV_READ,   0, 0, "Prometheus metrics (text format)"},
    {"GET",    "/openapi.json",                           h_openapi,           SRV_READ,   0, 0, "This document"},
    {"GET",    "/collections",                            h_coll_list,         SRV_READ,   1, 0, "List collection names (?detail=true: objects)"},
    {"POST",   "/collections",                            h_coll_create,       SRV_WRITE,  1, 1, "Create a collection"},
    {"GET",    "/collections/deleted",                    h_trash_list,        SRV_READ,   1, 0, "List soft-deleted collections (the trash)"},
    {"POST",   "/collections/deleted/cleanup",            h_trash_cleanup,     SRV_WRITE,  1, 0, "Purge expired trash entries now"},
    {"POST",   "/collections/import",                     h_import,            SRV_WRITE,  1, 1, "Import orphaned collection files (?wait=false: 202 + job)"},
    {"GET",    "/collections/:name",                      h_coll_get,          SRV_READ,   1, 0, "Collection config and stats"},
    {"DELETE", "/collections/:name",                      h_coll_delete,       SRV_WRITE,  1, 0, "Soft delete: move the collection to the trash"},
    {"GET",    "/collections/:name/stats",                h_coll_stats,        SRV_READ,   1, 0, "Collection statistics"},
    {"POST",   "/collections/:name/restore",              h_restore,           SRV_WRITE,  1, 1, "Restore from the trash or a backup"},
    {"DELETE", "/collections/:name/hard-delete",          h_hard_delete,       SRV_WRITE,  1, 0, "Permanent removal after a backup (?skip_backup=true)"},
    {"POST",   "/collections/:name/backup",               h_backup_create,     SRV_WRITE,  1, 0, "Take a backup now"},
    {"GET",    "/collections/:name/backups",              h_backup_list_coll,  SRV_READ,   1, 0, "Backups of one collection, newest first"},
    {"POST",   "/collections/:name/vectors",              h_vec_insert,        SRV_WRITE,  1, 1, "Insert or replace one vector"},
    {"GET",    "/collections/:name/vectors",              h_vec_scroll,        SRV_READ,   1, 0, "Page through vectors (?offset=&limit=&include_vectors=)"},
    {"POST",   "/collections/:name/vectors/batch",        h_vec_batch,         SRV_WRITE,  1, 1, "Insert or replace vectors as one atomic batch"},
    {"POST",   "/collections/:name/vectors/delete",       h_vec_batch_delete,  SRV_WRITE,  1, 1, "Delete vectors by ids"},
    {"GET",    "/collections/:name/vectors/:id",          h_vec_get,           SRV_READ,   1, 0, "One vector with its metadata"},
    {"PUT",    "/collections/:name/vectors/:id",          h_vec_put,           SRV_WRITE,  1, 1, "Insert or replace the vector with this id"},
    {"DELETE", "/collections/:name/vectors/:id",          h_vec_delete,        SRV_WRITE,  1, 0, "Delete one vector"},
    {"POST",   "/collections/:name/search",               h_search,            SRV_READ,   1, 1, "k nearest neighbours (?limit=&ef_search= also accepted)"},
    {"GET",    "/backups",                                h_backup_list_all,   SRV_READ,   1, 0, "Backups of every collection, newest first"},
    {"DELETE", "/backups/:name/:backup_id",               h_backup_delete,     SRV_WRITE,  1, 0, "Delete one backup"},
    {"POST",   "/backups/:name/:backup_id/verify",        h_backup_verify,     SRV_WRITE,  1, 0, "Re-read a backup and check every checksum and count"},
    {"GET",    "/jobs/:id",                               h_job_get,           SRV_READ,   1, 0, "State of a background job (import ?wait=false)"},
    {"GET",    "/audit",                                  h_audit,             SRV_ADMIN,  1, 0, "Newest audit log lines (?limit=), admin key only"},
};
/* clang-format on */
const size_t srv_n_routes = sizeof srv_routes / sizeof srv_routes[0];

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode [s, s+n) into a new string; NULL on a bad escape, a NUL or
 * invalid UTF-8. */
static char *decode_segment(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            int a = hexval((unsigned char)s[i + 1]), b = hexval((unsigned char)s[i + 2]);
            if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(a * 16 + b);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    /* Names and ids are UTF-8: refuse anything else here, once. */
    for (size_t i = 0; i < o;) {
        size_t l = srv_utf8_len((const unsigned char *)out + i, o - i);
        if (!l) {
            free(out);
            return NULL;
        }
        i += l;
    }
    return out;
}

/* Does the pattern match the path segment-wise? Fills params when they are
 * given; returns 1 match, 0 no match, -1 bad segment (a parameter failed to
 * decode). */
static int match_pattern(const char *pat, const char *path, char **params, size_t *n_params)
{
    size_t np = 0;
    const char *p = pat, *u = path;
    int rc = 1;
    while (*p && *u) {
        if (*p != '/' || *u != '/') {
            rc = 0;
            goto out;
        }
        p++, u++;
        const char *pe = strchr(p, '/'), *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p), ul = ue ? (size_t)(ue - u) : strlen(u);
        if (*p == ':') {
            if (ul == 0) {
                rc = 0;
                goto out;
            }
            if (params) {
                char *v = decode_segment(u, ul);
                if (!v || np >= SRV_MAX_PARAMS) {
                    free(v);
                    rc = -1;
                    goto out;
                }
                params[np] = v;
            }
            np++;
        } else if (pl != ul || memcmp(p, u, pl) != 0) {
            rc = 0;
            goto out;
        }
        p += pl, u += ul;
    }
    if (*p || *u)
        rc = 0;
out:
    if (rc != 1 && params) {
        for (size_t i = 0; i < np && i < SRV_MAX_PARAMS; i++) {
            free(params[i]);
            params[i] = NULL;
        }
        np = 0;
    }
    if (n_params)
        *n_params = rc == 1 ? np : 0;
    return rc;
}

int srv_route_match(const char *method, const char *path, char **params, size_t *n_params, int *path_known, char *allow,
                    size_t allow_cap)
{
    *path_known = 0;
    if (allow_cap)
        allow[0] = '\0';
    /* A trailing slash is the same resource ("/collections/" == "/collections"). */
    char tmp[8192];
    size_t len = strlen(path);
    if (len >= sizeof tmp)
        return -1;
    memcpy(tmp, path, len + 1);
    while (len > 1 && tmp[len - 1] == '/')
        tmp[--len] = '\0';
    for (size_t i = 0; i < srv_n_routes; i++) {
        const srv_route *rt = &srv_routes[i];
        if (strcmp(rt->method, method) != 0 && !(strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0))
            continue;
        int m = match_pattern(rt->pattern, tmp, params, n_params);
        if (m == 1)
            return (int)i;
        if (m < 0)
            return -2;
    }
    for (size_t i = 0; i < srv_n_routes; i++) {
        if (match_pattern(srv_routes[i].pattern, tmp, NULL, NULL) == 1) {
            *path_known = 1;
            size_t al = strlen(allow);
            if (allow_cap && !strstr(allow, srv_routes[i].method) && al + strlen(srv_routes[i].method) + 3 < allow_cap)
                snprintf(allow + al, allow_cap - al, "%s%s", al ? ", " : "", srv_routes[i].method);
        }
    }
    return -1;
}

static const char *access_name(int a)
{
    switch (a) {
    case SRV_PUBLIC:
        return "public";
    case SRV_READ:
        return "read";
    case SRV_WRITE:
        return "write";
    default:
        return "admin";
    }
}

/* "/collections/:name" -> "/collections/{name}", collecting parameter names. */
static void openapi_path(const char *pat, char *out, size_t cap, json_t *params)
{
    size_t o = 0;
    for (const char *p = pat; *p && o + 2 < cap;) {
        if (*p == ':') {
            const char *e = strchr(p, '/');
            size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)n, p + 1);
            o += (size_t)snprintf(out + o, cap - o, "{%s}", name);
            json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in", "path", "required",
                                                    1, "schema", "type", "string"));
            p += n + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
}

json_t *srv_openapi(void)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < srv_n_routes; i++) {
        const srv_route *rt = &srv_routes[i];
        char path[256], lower[8];
        json_t *params = json_array();
        openapi_path(rt->pattern, path, sizeof path, params);
        size_t k = 0;
        for (; rt->method[k] && k < sizeof lower - 1; k++)
            lower[k] = (char)tolower((unsigned char)rt->method[k]);
        lower[k] = '\0';
        json_t *item = json_object_get(paths, path);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, path, item);
        }
        json_t *op =
            json_pack("{s:s, s:o, s:s, s:b, s:{s:{s:s}, s:{s:s}, s:{s:s}}}", "summary", rt->summary, "parameters",
                      params, "x-dvecdb-access", access_name(rt->access), "x-dvecdb-needs-db", rt->needs_db,
                      "responses", "200", "description", "success envelope", "4XX", "description",
                      "error envelope with a stable code", "5XX", "description", "error envelope with a stable code");
        if (rt->access != SRV_PUBLIC)
            json_object_set_new(op, "security", json_pack("[{s:[]}, {s:[]}]", "bearer", "apiKeyHeader"));
        else
            json_object_set_new(op, "security", json_array());
        if (rt->has_body)
            json_object_set_new(op, "requestBody",
                                json_pack("{s:b, s:{s:{s:{s:s}}}}", "required",
                                          strcmp(rt->method, "POST") == 0 && rt->handler != h_restore, "content",
                                          "application/json", "schema", "type", "object"));
        json_object_set_new(item, lower, op);
    }
    return json_pack("{s:s, s:{s:s, s:s}, s:o, s:{s:{s:{s:s, s:s}, s:{s:s, s:s, s:s}}}}", "openapi", "3.0.3", "info",
                     "title", "d-vecDB REST API", "version", DV_VERSION_STRING, "paths", paths, "components",
                     "securitySchemes", "bearer", "type", "http", "scheme", "bearer", "apiKeyHeader", "type", "apiKey",
                     "in", "header", "name", "api-key");
}
