/*
 * http.c - libmicrohttpd glue: the access handler, limits, authentication,
 * per-request state, and the one place that frees it.
 *
 * Request life cycle (libmicrohttpd calls the access handler several times
 * per request):
 *   1st call  headers only: match the route (404/405), check the key (401),
 *             the role against the route (403), readiness (503) and the
 *             Content-Length (413) - all BEFORE any byte of the body is read;
 *             an early answer makes libmicrohttpd discard the body and close.
 *   next      body chunks appended to r->body, never beyond --max-body-mb
 *             (a chunked body that grows past it closes the connection).
 *   last      the route's handler runs and the answer is queued.
 *   completed request_completed(): metrics, the log line, free everything.
 * Invariants: the handler runs at most once per request; keys are compared in
 * constant time and never logged or echoed; path parameters are decoded per
 * segment here (libmicrohttpd's own unescaping is turned off) so an encoded
 * '/' stays inside its segment.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "server.h"

static struct MHD_Daemon *daemon_h;
static MHD_socket listen_fd = MHD_INVALID_SOCKET;
static long active_requests; /* atomic: requests between 1st call and completion */

const char *srv_header(srv_req *r, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)r->conn, MHD_HEADER_KIND, name);
}

static int hexv(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

const char *srv_query(srv_req *r, const char *name, char *buf, size_t cap)
{
    const char *v = MHD_lookup_connection_value((struct MHD_Connection *)r->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return NULL;
    /* libmicrohttpd's unescaping is off (see no_unescape): decode here. */
    size_t o = 0;
    for (size_t i = 0; v[i] && o + 1 < cap; i++) {
        if (v[i] == '%' && v[i + 1] && v[i + 2] && hexv(v[i + 1]) >= 0 && hexv(v[i + 2]) >= 0) {
            char c = (char)(hexv(v[i + 1]) * 16 + hexv(v[i + 2]));
            if (c == '\0')
                break; /* a NUL ends the value rather than hiding what follows */
            buf[o++] = c;
            i += 2;
        } else {
            buf[o++] = v[i] == '+' ? ' ' : v[i];
        }
    }
    buf[o] = '\0';
    return buf;
}

/* Keep the raw text: routes.c and srv_query decode per segment / value. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls, (void)c;
    return strlen(s);
}

void srv_param_free(srv_req *r)
{
    for (size_t i = 0; i < SRV_MAX_PARAMS; i++) {
        free(r->params[i]);
        r->params[i] = NULL;
    }
    r->n_params = 0;
}

/* Constant-time equality of a presented key with a configured one: the time
 * depends only on the configured key's length. */
static int key_equal(const char *given, const char *want)
{
    size_t gl = strlen(given), wl = strlen(want);
    unsigned char diff = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++) {
        unsigned char g = i < gl ? (unsigned char)given[i] : 0;
        diff |= g ^ (unsigned char)want[i];
    }
    return diff == 0;
}

/* The presented key: "Authorization: Bearer <key>", "api-key: <key>" or
 * "X-API-Key: <key>"; NULL if none. */
static const char *presented_key(srv_req *r)
{
    const char *a = srv_header(r, "Authorization");
    if (a) {
        while (*a == ' ')
            a++;
        if (strncasecmp(a, "Bearer ", 7) == 0) {
            a += 7;
            while (*a == ' ')
                a++;
            return a;
        }
    }
    const char *k = srv_header(r, "api-key");
    if (!k)
        k = srv_header(r, "X-API-Key");
    return k;
}

/* Decide the role of the request from its key. Returns 0, or -1 when a key
 * is required and missing/wrong (answered 401). */
static int authenticate(srv_req *r, int required)
{
    const srv_config *c = &g_srv.cfg;
    if (!c->api_key[0]) {
        r->role = SRV_ROLE_ADMIN;
        r->actor = "anonymous";
        return 0;
    }
    const char *k = presented_key(r);
    r->role = SRV_ROLE_NONE;
    r->actor = "anonymous";
    if (k && key_equal(k, c->api_key)) {
        r->role = SRV_ROLE_ADMIN;
        r->actor = "admin";
    } else if (k && c->ro_key[0] && key_equal(k, c->ro_key)) {
        r->role = SRV_ROLE_RO;
        r->actor = "read-only";
    }
    if (!required || r->role != SRV_ROLE_NONE)
        return 0;
    r->actor = k ? "invalid-key" : "anonymous";
    srv_reply_err(r, 401, "unauthorized", "auth: %s",
                  k ? "invalid API key" : "missing API key (Authorization: Bearer <key> or api-key header)");
    srv_audit(r, "auth-failure", NULL, "unauthorized", k ? "invalid key" : "missing key");
    return -1;
}

static void fill_remote(srv_req *r, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    strcpy(r->remote, "-");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->remote, sizeof r->remote);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->remote, sizeof r->remote);
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

/* Everything decided from the request line and headers. Returns 1 if an
 * answer is already set (the body will not be read). */
static int first_call(srv_req *r, const char *url, const char *method)
{
    /* --header-limit-kb is enforced here, with the JSON envelope: the
     * connection buffer is twice that (srv_http_start), so libmicrohttpd's
     * own 431 (an HTML page) is left for headers above twice the limit. */
    size_t hbytes = strlen(method) + strlen(url) + 12; /* request line */
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, add_header_size, &hbytes);
    if (hbytes > g_srv.cfg.conn_memory) {
        srv_reply_err(
            r, 431, "headers_too_large",
            "request: %zu bytes of request line and headers exceed the limit of %zu bytes (--header-limit-kb)", hbytes,
            g_srv.cfg.conn_memory);
        return 1;
    }
    int path_known = 0;
    int idx = srv_route_match(method, url, r->params, &r->n_params, &path_known, r->allow, sizeof r->allow);
    if (idx == -2) {
        if (authenticate(r, 1) < 0)
            return 1;
        srv_reply_err(r, 400, "invalid_argument", "request: malformed path segment (bad percent-escape or NUL)");
        return 1;
    }
    if (idx < 0) {
        /* Unknown routes answer 401 to a caller without a key: no probing. */
        if (authenticate(r, 1) < 0)
            return 1;
        if (path_known)
            srv_reply_err(r, 405, "method_not_allowed", "request: %s not allowed here (allowed: %s)", method, r->allow);
        else
            srv_reply_err(r, 404, "route_not_found", "request: no route for %s", method);
        return 1;
    }
    r->route_idx = idx;
    r->route = &srv_routes[idx];
    if (authenticate(r, r->route->access != SRV_PUBLIC) < 0)
        return 1;
    if ((r->route->access == SRV_WRITE || r->route->access == SRV_ADMIN) && r->role != SRV_ROLE_ADMIN) {
        srv_reply_err(r, 403, "forbidden", "auth: this route needs the admin key");
        srv_audit(r, "auth-failure", NULL, "forbidden", r->route->pattern);
        return 1;
    }
    if (r->route->needs_db && !srv_db()) {
        if (__atomic_load_n(&g_srv.open_failed, __ATOMIC_ACQUIRE))
            srv_reply_err(r, 503, "not_ready", "server: the database failed to open: %s", g_srv.open_error);
        else
            srv_reply_err(r, 503, "not_ready", "server: the database is still opening (recovery in progress)");
        return 1;
    }
    const char *cl = srv_header(r, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || *end || n > g_srv.cfg.max_body) {
            srv_reply_err(r, 413, "body_too_large", "request: body of %s bytes exceeds the limit of %llu bytes", cl,
                          (unsigned long long)g_srv.cfg.max_body);
            return 1;
        }
        /* Size the buffer once: no realloc copies while a large body arrives
         * (allocated lazily with the first chunk, so a client that announces
         * a size and sends nothing costs nothing). */
        r->body_expect = (size_t)n;
    }
    return 0;
}

static enum MHD_Result queue_answer(struct MHD_Connection *conn, srv_req *r)
{
    if (!r->answered)
        srv_reply_err(r, 500, "internal", "server: the handler gave no answer");
    struct MHD_Response *resp = MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        return MHD_NO;
    r->resp = NULL; /* owned by the response now */
    MHD_add_response_header(resp, "Content-Type", r->resp_type ? r->resp_type : "application/json");
    if (r->status == 405 && r->allow[0])
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    (void)cls, (void)version;
    srv_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        __atomic_add_fetch(&active_requests, 1, __ATOMIC_ACQ_REL);
        r->conn = conn;
        r->t0 = srv_mono();
        r->route_idx = -1;
        r->actor = "anonymous";
        snprintf(r->method, sizeof r->method, "%s", method);
        fill_remote(r, conn);
        if (first_call(r, url, method))
            return queue_answer(conn, r);
        return MHD_YES;
    }
    if (r->answered) {
        *upload_data_size = 0; /* already answered: discard the rest */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (r->body_len + n > g_srv.cfg.max_body) {
            /* A body without (or lying about) Content-Length grew past the
             * limit: drop the connection rather than read on. */
            r->body_overflow = 1;
            r->status = 413;
            return MHD_NO;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : r->body_expect ? r->body_expect + 1 : 4096;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            char *p = realloc(r->body, cap);
            if (!p)
                return MHD_NO;
            r->body = p;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* The engine's own audit lines for this request name its caller. */
    dv_audit_context_set(r->actor, r->remote, r->route->pattern);
    r->route->handler(r);
    dv_audit_context_set(NULL, NULL, NULL);
    return queue_answer(conn, r);
}

/* The one place where a request's memory is freed; also records metrics
 * and writes the request's log line. */
static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn;
    srv_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    double dt = srv_mono() - r->t0;
    const char *route = r->route ? r->route->pattern : "unmatched";
    const char *method = r->route ? r->route->method : r->method;
    if (r->status) {
        srv_metrics_observe(r->route_idx, method, r->status, dt);
        srv_log(SRV_LOG_INFO, "request", "method=%s route=%s status=%d duration_ms=%.3f remote=%s actor=%s%s",
                r->method, route, r->status, dt * 1e3, r->remote, r->actor,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    }
    srv_param_free(r);
    free(r->body);
    free(r->resp);
    free(r);
    __atomic_sub_fetch(&active_requests, 1, __ATOMIC_ACQ_REL);
}

/* Resolve host:port to one socket address; 0 or -1. */
int srv_resolve(const char *host, unsigned port, struct sockaddr_storage *out, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
        return -1;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int srv_is_loopback(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (srv_resolve(host, 0, &ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return 0;
}

/* libmicrohttpd's own diagnostics go through our log format. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512], q[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    srv_log(SRV_LOG_DEBUG, "http", "msg=%s", srv_log_quote(msg, q, sizeof q));
}

int srv_http_start(void)
{
    const srv_config *c = &g_srv.cfg;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (srv_resolve(c->host, c->port, &ss, &sl) < 0) {
        srv_log(SRV_LOG_ERROR, "listen_failed", "host=%s port=%u reason=\"cannot resolve host\"", c->host, c->port);
        return -1;
    }
    /* Threading. A pool thread serves many connections one request at a
     * time, so a search on a connection that shares its thread with a batch
     * insert waits for the whole insert (hundreds of ms for 256 x 1536):
     * measured beside a writer, 16 paced search connections had p50 12-13 ms
     * and p99 119-172 ms with a pool of 2, 5 ms and 72-84 ms with a thread
     * per connection, and 25% more searches; search-only throughput was no
     * lower. So the default is a thread per connection (bounded by
     * --max-clients; an idle one costs a sleeping thread); --threads N keeps
     * the epoll pool for many mostly idle connections. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    flags |= c->threads ? MHD_USE_EPOLL : (MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL);
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &ss},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)request_completed, NULL},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)no_unescape, NULL},
        /* Twice the header limit: headers up to the limit plus a margin fit,
         * so first_call() can refuse them with a JSON answer. */
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(2 * c->conn_memory), NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)c->conn_timeout_s, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)c->max_connections, NULL},
        {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, NULL},
        {c->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)c->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    daemon_h = MHD_start_daemon(flags, (uint16_t)c->port, NULL, NULL, access_handler, NULL, MHD_OPTION_ARRAY, opts,
                                MHD_OPTION_END);
    if (!daemon_h) {
        srv_log(SRV_LOG_ERROR, "listen_failed",
                "host=%s port=%u reason=\"cannot start the HTTP listener (port in use?)\"", c->host, c->port);
        return -1;
    }
    return 0;
}

/* Graceful stop: stop accepting, let in-flight requests finish (up to
 * wait_s seconds), then stop the daemon (joins its threads). */
void srv_http_stop(double wait_s)
{
    if (!daemon_h)
        return;
    listen_fd = MHD_quiesce_daemon(daemon_h);
    double t_end = srv_mono() + wait_s;
    while (__atomic_load_n(&active_requests, __ATOMIC_ACQUIRE) > 0 && srv_mono() < t_end)
        usleep(10 * 1000);
    long left = __atomic_load_n(&active_requests, __ATOMIC_ACQUIRE);
    MHD_stop_daemon(daemon_h);
    daemon_h = NULL;
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    srv_log(SRV_LOG_INFO, "http_stopped", "unfinished_requests=%ld", left);
}
