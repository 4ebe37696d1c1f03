/*
 * server.h - the pieces of vectordb-server shared between its files.
 *
 * vectordb-server is a thin shell over libdvecdb (include/dvecdb.h): it
 * parses HTTP + JSON, calls the engine, maps the dv_code to an HTTP status
 * and writes the {"success","data","error","code"} envelope. It owns no data.
 *
 * Files: main.c (flags, config file, env, lifecycle), http.c (libmicrohttpd
 * glue, limits, auth), routes.c (route table, matching, /openapi.json),
 * json.c (envelope, errors, status mapping, body parsing), h_*.c (handlers),
 * metrics.c (Prometheus text), log.c (structured log lines).
 */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dvecdb.h"

/* ---- configuration (main.c) ------------------------------------------- */
#define SRV_MAX_IMPORT_ROOTS 16
#define SRV_JSON_DEPTH_MAX 64 /* nesting of a request body; metadata included */

typedef struct srv_config {
    char data_dir[4096];
    char host[256];
    unsigned port;
    int log_level;     /* SRV_LOG_* */
    char api_key[256]; /* empty = no auth (loopback only) */
    char ro_key[256];  /* read-only key, optional */
    unsigned threads;  /* 0: a thread per connection; N: a pool of N epoll threads */
    dv_fsync_policy fsync;
    uint32_t fsync_interval_ms;
    uint64_t max_body;  /* bytes */
    unsigned max_batch; /* vectors per batch request */
    unsigned max_limit; /* search/scroll limit */
    unsigned max_ef;    /* search ef */
    char import_roots[SRV_MAX_IMPORT_ROOTS][4096];
    size_t n_import_roots;
    int64_t trash_retention_s;
    uint32_t backup_keep_auto;
    int allow_insecure;
    unsigned conn_timeout_s;
    unsigned shutdown_timeout_s; /* graceful stop deadline */
    unsigned max_connections;
    size_t conn_memory; /* --header-limit-kb in bytes (the connection buffer is twice that) */
    uint32_t m, ef_construction, ef_search, max_layer; /* [index] defaults for new collections */
} srv_config;

/* ---- global state ---------------------------------------------------- */
typedef struct srv_state {
    srv_config cfg;
    dv_db *db;       /* NULL until the open thread has finished */
    int ready;       /* atomic: db open and recovered */
    int open_failed; /* atomic */
    char open_error[512];
    int stopping; /* atomic: shutdown started */
    double started_mono;
    int64_t started_ms;
} srv_state;

extern srv_state g_srv;

/* The database if ready, else NULL (readers use atomics; see main.c). */
dv_db *srv_db(void);
int srv_stopping(void);

/* ---- logging (log.c) --------------------------------------------------- */
enum { SRV_LOG_ERROR = 0, SRV_LOG_WARN = 1, SRV_LOG_INFO = 2, SRV_LOG_DEBUG = 3 };
int64_t srv_now_ms(void); /* wall clock, ms since the epoch */
double srv_mono(void);    /* monotonic seconds */
int srv_log_level_parse(const char *s, int *out);
/* One line: ts=... level=... event=<event> <kv>; kv is preformatted
 * "key=value" pairs (use srv_log_quote for free text). */
void srv_log(int level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Quote a value for a log line into buf ("..." with \" and \\ escaped,
 * control characters dropped). Returns buf. */
const char *srv_log_quote(const char *s, char *buf, size_t cap);

/* ---- requests and routes (http.c, routes.c) --------------------------------- */
enum srv_access {
    SRV_PUBLIC = 0, /* no key needed */
    SRV_READ = 1,   /* read-only or admin key */
    SRV_WRITE = 2,  /* admin key */
    SRV_ADMIN = 3   /* admin key; admin-only reads like /audit */
};
enum srv_role { SRV_ROLE_NONE = 0, SRV_ROLE_RO = 1, SRV_ROLE_ADMIN = 2 };

#define SRV_MAX_PARAMS 4

struct srv_req;
typedef void (*srv_handler)(struct srv_req *r);

typedef struct srv_route {
    const char *method;
    const char *pattern; /* "/collections/:name/vectors/:id" */
    srv_handler handler;
    int access;   /* enum srv_access */
    int needs_db; /* 503 not_ready until the database is open */
    int has_body; /* expects a JSON body (documented in openapi) */
    const char *summary;
} srv_route;

typedef struct srv_req {
    void *conn;                   /* struct MHD_Connection * */
    const srv_route *route;       /* NULL: no route matched */
    int route_idx;                /* index in the route table, -1 if none */
    char *params[SRV_MAX_PARAMS]; /* decoded path parameters, in pattern order */
    size_t n_params;
    char *body;
    size_t body_len, body_cap;
    size_t body_expect; /* Content-Length, 0 if none */
    int role;           /* enum srv_role */
    const char *actor;  /* "admin", "read-only", "anonymous" (never a key) */
    char remote[64];
    char method[8];
    double t0;
    int body_overflow;
    /* the answer */
    int status;
    char *resp; /* malloc'd body */
    size_t resp_len;
    const char *resp_type; /* content type; NULL = application/json */
    char allow[64];        /* Allow header for 405 */
    int answered;
} srv_req;

/* Route table (routes.c). */
extern const srv_route srv_routes[];
extern const size_t srv_n_routes;
/* Match method + raw path (no query). Returns the route index and fills
 * params (malloc'd, percent-decoded) or -1; *path_known is set when the path
 * matches some route with another method (-> 405, allow lists them).
 * -2: a path segment is invalid (bad escape, NUL). Pure: no MHD, no engine. */
int srv_route_match(const char *method, const char *path, char **params, size_t *n_params, int *path_known, char *allow,
                    size_t allow_cap);
/* The OpenAPI 3 document of the route table. */
json_t *srv_openapi(void);

/* Request helpers (http.c). */
const char *srv_header(srv_req *r, const char *name);
/* Query parameter, percent-decoded into buf; NULL if absent. */
const char *srv_query(srv_req *r, const char *name, char *buf, size_t cap);
void srv_param_free(srv_req *r);

/* ---- replies (json.c) ---------------------------------------------------------- */
/* Success: envelope with data (stolen; may be NULL -> null). */
void srv_reply_ok(srv_req *r, int status, json_t *data);
/* Success with data already serialized as JSON text (taken, malloc'd). */
void srv_reply_raw(srv_req *r, int status, char *data_json, size_t len);
/* Hand-written success answers without a copy: srv_sb_begin writes the
 * envelope's head (reserving hint bytes), the caller appends the data, and
 * srv_reply_sb closes the envelope and takes the buffer. */
struct srv_buf;
void srv_sb_begin(struct srv_buf *b, size_t hint);
void srv_reply_sb(srv_req *r, int status, struct srv_buf *b);
/* Error envelope: status, stable code token, message. */
void srv_reply_err(srv_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Error from the engine: status and code from the dv_code table. */
void srv_reply_dv(srv_req *r, const dv_err *err);
int srv_status_of(dv_code c);
/* Plain text reply (metrics). Takes text. */
void srv_reply_text(srv_req *r, int status, const char *type, char *text, size_t len);

/* Parse the body as a JSON object (depth-checked). On error replies 400 and
 * returns NULL. allow_empty: an empty body yields an empty object. */
json_t *srv_body_object(srv_req *r, int allow_empty);
/* Same with extra jansson decode flags (import: JSON_ALLOW_NUL, so a NUL in
 * a path is refused by the path policy rather than as malformed JSON). */
json_t *srv_body_object_ex(srv_req *r, int allow_empty, size_t flags);
/* Reject keys of obj not in the NULL-terminated list: replies 400 and returns -1. */
int srv_check_fields(srv_req *r, json_t *obj, const char *const *allowed, const char *where);
/* Typed getters: 1 found, 0 absent (or null), -1 wrong type/range (replied 400). */
int srv_get_str(srv_req *r, json_t *obj, const char *key, const char **out);
int srv_get_uint(srv_req *r, json_t *obj, const char *key, uint64_t min, uint64_t max, uint64_t *out);
int srv_get_bool(srv_req *r, json_t *obj, const char *key, int *out);
/* Unsigned query parameter; same convention as srv_get_uint. */
int srv_query_uint(srv_req *r, const char *key, uint64_t min, uint64_t max, uint64_t *out);
int srv_query_bool(srv_req *r, const char *key, int *out);

/* A growable byte string for hand-written JSON (hot paths). */
typedef struct srv_buf {
    char *p;
    size_t len, cap;
    int oom;
} srv_buf;
void sb_put(srv_buf *b, const char *s, size_t n);
void sb_puts(srv_buf *b, const char *s);
void sb_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_json_str(srv_buf *b, const char *s, size_t n); /* quoted, escaped, invalid UTF-8 -> U+FFFD */
/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid. */
size_t srv_utf8_len(const unsigned char *s, size_t n);
void sb_float(srv_buf *b, float f);                   /* shortest text that reads back bit-exact */
void sb_floats(srv_buf *b, const float *v, size_t n); /* [a,b,...] */
void sb_free(srv_buf *b);

/* ISO-8601 UTC text of a Unix time in ms, "2026-01-02T03:04:05.678Z". */
const char *srv_iso_time(int64_t ms, char *buf, size_t cap);

/* ---- audit (h_recovery.c) -------------------------------------------------------- */
/* Append an audit line with the request's actor and remote address. */
void srv_audit(srv_req *r, const char *action, const char *collection, const char *outcome, const char *detail);

/* ---- metrics (metrics.c) ---------------------------------------------------------- */
void srv_metrics_observe(int route_idx, const char *method, int status, double seconds);
char *srv_metrics_render(size_t *len_out);

/* ---- background work (h_recovery.c) ------------------------------------------------- */
int srv_jobs_init(void);
void srv_jobs_shutdown(void); /* cancel running jobs and join their threads */

/* ---- handlers ------------------------------------------------------------------------ */
void h_health(srv_req *r);
void h_livez(srv_req *r);
void h_readyz(srv_req *r);
void h_stats(srv_req *r);
void h_metrics(srv_req *r);
void h_openapi(srv_req *r);
void h_coll_list(srv_req *r);
void h_coll_create(srv_req *r);
void h_coll_get(srv_req *r);
void h_coll_stats(srv_req *r);
void h_coll_delete(srv_req *r);
void h_vec_insert(srv_req *r);
void h_vec_batch(srv_req *r);
void h_vec_batch_delete(srv_req *r);
void h_vec_scroll(srv_req *r);
void h_vec_get(srv_req *r);
void h_vec_put(srv_req *r);
void h_vec_delete(srv_req *r);
void h_search(srv_req *r);
void h_trash_list(srv_req *r);
void h_trash_cleanup(srv_req *r);
void h_restore(srv_req *r);
void h_hard_delete(srv_req *r);
void h_import(srv_req *r);
void h_job_get(srv_req *r);
void h_backup_create(srv_req *r);
void h_backup_list_coll(srv_req *r);
void h_backup_list_all(srv_req *r);
void h_backup_delete(srv_req *r);
void h_backup_verify(srv_req *r);
void h_audit(srv_req *r);

/* Open collection :name (params[0]); replies the error and returns NULL. */
dv_coll *srv_open_coll(srv_req *r);
/* JSON of a collection info (h_collections.c), used by restore too. */
json_t *srv_coll_info_json(const dv_coll_info *ci);
json_t *srv_trash_json(const dv_trash_entry *t);

#endif
