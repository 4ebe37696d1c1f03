/*
 * metrics.c - request counters and latency histograms, and the Prometheus
 * text exposition of /metrics.
 *
 * Names carry the dvecdb_ prefix and base units (seconds, bytes). Labels are
 * bounded: route is the route's pattern ("/collections/:name"), never an id
 * or a collection name from a URL; method is one of a fixed set; status is an
 * HTTP status. Only dvecdb_collection_vectors is labelled by collection name
 * (names are validated [A-Za-z0-9_-]{1,64}, one series per live collection).
 * Counters are lock-free (__atomic adds); a scrape reads them without locks,
 * so a scrape may see a request counted before its histogram bucket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define MAX_ROUTES 64
static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "OTHER"};
#define N_METHODS 6
static const int statuses[] = {200, 202, 400, 401, 403, 404, 405, 409, 413, 415, 431, 500, 501, 503, 507, 0};
#define N_STATUS (sizeof statuses / sizeof statuses[0]) /* the last slot counts any other status */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

static uint64_t req_count[MAX_ROUTES + 1][N_METHODS][N_STATUS];
static uint64_t lat_bucket[MAX_ROUTES + 1][N_BUCKETS + 1]; /* non-cumulative; last = +Inf */
static uint64_t lat_count[MAX_ROUTES + 1];
static uint64_t lat_sum_ns[MAX_ROUTES + 1];

static size_t method_idx(const char *m)
{
    for (size_t i = 0; i < N_METHODS - 1; i++)
        if (strcmp(methods[i], m) == 0)
            return i;
    return N_METHODS - 1;
}

static size_t status_idx(int s)
{
    for (size_t i = 0; i < N_STATUS - 1; i++)
        if (statuses[i] == s)
            return i;
    return N_STATUS - 1;
}

void srv_metrics_observe(int route_idx, const char *method, int status, double seconds)
{
    size_t ri = route_idx >= 0 && route_idx < MAX_ROUTES ? (size_t)route_idx : MAX_ROUTES;
    __atomic_add_fetch(&req_count[ri][method_idx(method)][status_idx(status)], 1, __ATOMIC_RELAXED);
    size_t b = 0;
    while (b < N_BUCKETS && seconds > buckets[b])
        b++;
    __atomic_add_fetch(&lat_bucket[ri][b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&lat_count[ri], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&lat_sum_ns[ri], (uint64_t)(seconds * 1e9), __ATOMIC_RELAXED);
}

static const char *route_label(size_t ri)
{
    return ri < srv_n_routes ? srv_routes[ri].pattern : "unmatched";
}

static void render_http(srv_buf *b)
{
    sb_puts(b, "# HELP dvecdb_http_requests_total HTTP requests answered, by route pattern, method and status.\n"
               "# TYPE dvecdb_http_requests_total counter\n");
    for (size_t ri = 0; ri <= MAX_ROUTES; ri++) {
        if (ri >= srv_n_routes && ri != MAX_ROUTES)
            continue;
        for (size_t m = 0; m < N_METHODS; m++)
            for (size_t s = 0; s < N_STATUS; s++) {
                uint64_t n = __atomic_load_n(&req_count[ri][m][s], __ATOMIC_RELAXED);
                if (!n)
                    continue;
                if (statuses[s])
                    sb_printf(b, "dvecdb_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                              route_label(ri), methods[m], statuses[s], (unsigned long long)n);
                else
                    sb_printf(b, "dvecdb_http_requests_total{route=\"%s\",method=\"%s\",status=\"other\"} %llu\n",
                              route_label(ri), methods[m], (unsigned long long)n);
            }
    }
    sb_puts(b, "# HELP dvecdb_http_request_duration_seconds Time from the request's headers to its completion.\n"
               "# TYPE dvecdb_http_request_duration_seconds histogram\n");
    for (size_t ri = 0; ri <= MAX_ROUTES; ri++) {
        if (ri >= srv_n_routes && ri != MAX_ROUTES)
            continue;
        uint64_t count = __atomic_load_n(&lat_count[ri], __ATOMIC_RELAXED);
        if (!count)
            continue;
        uint64_t cum = 0;
        for (size_t i = 0; i <= N_BUCKETS; i++) {
            cum += __atomic_load_n(&lat_bucket[ri][i], __ATOMIC_RELAXED);
            if (i < N_BUCKETS)
                sb_printf(b, "dvecdb_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                          route_label(ri), buckets[i], (unsigned long long)cum);
            else
                sb_printf(b, "dvecdb_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                          route_label(ri), (unsigned long long)cum);
        }
        sb_printf(b, "dvecdb_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n", route_label(ri),
                  (double)__atomic_load_n(&lat_sum_ns[ri], __ATOMIC_RELAXED) * 1e-9);
        sb_printf(b, "dvecdb_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route_label(ri),
                  (unsigned long long)cum);
    }
}

/* Engine-side series: WAL fsync latency, vectors per collection, disk. */
static void render_db(srv_buf *b, dv_db *db)
{
    static const double fs_le[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25};
    dv_db_stats st;
    dv_err err;
    if (dv_db_stats_get(db, &st, &err) == DV_OK) {
        sb_puts(b, "# HELP dvecdb_wal_fsync_duration_seconds Time spent in fsync of WAL files.\n"
                   "# TYPE dvecdb_wal_fsync_duration_seconds histogram\n");
        uint64_t cum = 0;
        for (size_t i = 0; i < 12; i++) {
            cum += st.wal_fsync_hist[i];
            if (i < 11)
                sb_printf(b, "dvecdb_wal_fsync_duration_seconds_bucket{le=\"%g\"} %llu\n", fs_le[i],
                          (unsigned long long)cum);
            else
                sb_printf(b, "dvecdb_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        sb_printf(b, "dvecdb_wal_fsync_duration_seconds_sum %.9f\n", st.wal_fsync_seconds);
        sb_printf(b, "dvecdb_wal_fsync_duration_seconds_count %llu\n", (unsigned long long)st.wal_fsyncs);
        sb_printf(b,
                  "# HELP dvecdb_disk_free_bytes Free space of the data directory's filesystem.\n"
                  "# TYPE dvecdb_disk_free_bytes gauge\ndvecdb_disk_free_bytes %llu\n",
                  (unsigned long long)st.disk_free_bytes);
        sb_printf(b,
                  "# HELP dvecdb_disk_bytes Bytes used by live collections.\n"
                  "# TYPE dvecdb_disk_bytes gauge\ndvecdb_disk_bytes %llu\n",
                  (unsigned long long)st.disk_bytes);
        sb_printf(b,
                  "# HELP dvecdb_read_only 1 if a collection refuses writes after an I/O failure (restart needed).\n"
                  "# TYPE dvecdb_read_only gauge\ndvecdb_read_only %d\n",
                  st.poisoned ? 1 : 0);
        sb_printf(b,
                  "# HELP dvecdb_collections_damaged Collections that failed validation at open.\n"
                  "# TYPE dvecdb_collections_damaged gauge\ndvecdb_collections_damaged %u\n",
                  st.n_damaged);
    }
    dv_coll_info *infos = NULL;
    size_t n = 0;
    if (dv_db_list(db, &infos, &n, &err) == DV_OK) {
        sb_puts(b, "# HELP dvecdb_collection_vectors Live vectors per collection.\n"
                   "# TYPE dvecdb_collection_vectors gauge\n");
        for (size_t i = 0; i < n; i++)
            sb_printf(b, "dvecdb_collection_vectors{collection=\"%s\"} %llu\n", infos[i].config.name,
                      (unsigned long long)infos[i].n_vectors);
        dv_free(infos);
    }
}

char *srv_metrics_render(size_t *len_out)
{
    srv_buf b = {0};
    sb_printf(&b,
              "# HELP dvecdb_build_info Build information.\n# TYPE dvecdb_build_info gauge\n"
              "dvecdb_build_info{version=\"%s\"} 1\n",
              DV_VERSION_STRING);
    dv_db *db = srv_db();
    sb_printf(&b,
              "# HELP dvecdb_ready 1 once the database is open and recovered.\n# TYPE dvecdb_ready gauge\n"
              "dvecdb_ready %d\n",
              db ? 1 : 0);
    sb_printf(&b,
              "# HELP dvecdb_uptime_seconds Seconds since the server started.\n# TYPE dvecdb_uptime_seconds gauge\n"
              "dvecdb_uptime_seconds %.3f\n",
              srv_mono() - g_srv.started_mono);
    render_http(&b);
    if (db)
        render_db(&b, db);
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    *len_out = b.len;
    return b.p;
}
