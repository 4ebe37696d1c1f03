/*
 * main.c - vectordb-server: flags, config file, environment, life cycle.
 *
 * Configuration precedence: command-line flags > DVECDB_* environment >
 * config file (-c FILE, TOML-style [server]/[storage]/[index], read with
 * inih) > built-in defaults. Every option is one row of `options` below, and
 * --help is generated from that table (docs/server.md documents the same).
 *
 * Life cycle: parse configuration -> refuse an unauthenticated non-loopback
 * bind -> start the HTTP listener (so /livez answers at once) -> open the
 * database in a thread (/readyz is 503 until recovery has finished) -> trash
 * sweeper thread -> wait for SIGTERM/SIGINT -> stop accepting, let in-flight
 * requests finish, stop background jobs, dv_db_close (checkpoints) -> exit 0.
 * Invariants: SIGTERM/SIGINT are blocked in every thread and taken only by
 * sigwait() in main; API keys never reach a log line.
 */
#include <errno.h>
#include <ini.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "server.h"

srv_state g_srv;

dv_db *srv_db(void)
{
    if (!__atomic_load_n(&g_srv.ready, __ATOMIC_ACQUIRE))
        return NULL;
    return g_srv.db;
}

int srv_stopping(void)
{
    return __atomic_load_n(&g_srv.stopping, __ATOMIC_ACQUIRE);
}

/* ---- option table ------------------------------------------------------- */
enum opt_kind { K_STR, K_UINT, K_BOOL, K_MB, K_DURATION, K_FSYNC, K_LEVEL, K_ROOT };

typedef struct opt_def {
    const char *flag; /* long flag without "--" */
    char short_flag;
    const char *keys; /* config file "section.key" names, space-separated */
    enum opt_kind kind;
    const char *def; /* default, as text (applied first) */
    const char *help;
} opt_def;

/* clang-format off */
static const opt_def options[] = {
    {"config",              'c', "",                                        K_STR,      "",          "config file (TOML-style [server]/[storage]/[index] sections)"},
    {"data-dir",            'd', "storage.data_dir server.data_dir",        K_STR,      "./data",    "data directory"},
    {"host",                0,   "server.host",                             K_STR,      "127.0.0.1", "address to listen on (non-loopback needs --api-key or --allow-insecure)"},
    {"rest-port",           0,   "server.rest_port server.port",            K_UINT,     "8080",      "HTTP port"},
    {"log-level",           0,   "server.log_level monitoring.log_level",   K_LEVEL,    "info",      "error | warn | info | debug"},
    {"api-key",             0,   "server.api_key",                          K_STR,      "",          "admin key: every route but /health /livez /readyz needs it"},
    {"read-only-api-key",   0,   "server.read_only_api_key",                K_STR,      "",          "read-only key: GET routes and search"},
    {"threads",             0,   "server.threads server.workers",           K_UINT,     "0",         "0: a thread per connection; N: a pool of N epoll threads"},
    {"fsync",               0,   "storage.fsync storage.fsync_policy",      K_FSYNC,    "always",    "WAL fsync policy: always | interval | never"},
    {"fsync-interval-ms",   0,   "storage.fsync_interval_ms",               K_UINT,     "100",       "period of --fsync interval"},
    {"max-body-mb",         0,   "server.max_body_mb",                      K_MB,       "64",        "largest request body, MiB (413 above, before reading it)"},
    {"max-batch",           0,   "server.max_batch",                        K_UINT,     "10000",     "most vectors in one batch request (413 above)"},
    {"max-limit",           0,   "server.max_limit",                        K_UINT,     "10000",     "largest search/scroll limit (400 above)"},
    {"max-ef",              0,   "server.max_ef",                           K_UINT,     "10000",     "largest search ef_search (400 above)"},
    {"import-root",         0,   "storage.import_root storage.import_roots",K_ROOT,     "",          "directory imports may read from (repeatable; none: the data dir only)"},
    {"trash-retention",     0,   "storage.trash_retention",                 K_DURATION, "24h",       "how long soft-deleted collections stay restorable (s/m/h/d suffix)"},
    {"backup-keep",         0,   "storage.backup_keep_auto storage.backup_keep", K_UINT, "5",        "automatic backups kept per collection"},
    {"allow-insecure",      0,   "server.allow_insecure",                   K_BOOL,     "false",     "allow a non-loopback --host without --api-key"},
    {"shutdown-timeout",    0,   "server.shutdown_timeout",                 K_UINT,     "9",         "seconds a graceful stop may take before the process exits(1) anyway"},
    {"conn-timeout",        0,   "server.connection_timeout",               K_UINT,     "30",        "idle connection timeout, seconds"},
    {"max-clients",         0,   "server.max_clients",                      K_UINT,     "1000",      "most simultaneous connections"},
    {"header-limit-kb",     0,   "server.header_limit_kb",                  K_UINT,     "64",        "request line + headers, KiB (431 above; connection buffer 2x)"},
    {"index-max-connections", 0, "index.max_connections index.m",           K_UINT,     "0",         "default HNSW M for new collections (0 = engine default 16)"},
    {"index-ef-construction", 0, "index.ef_construction",                   K_UINT,     "0",         "default ef_construction (0 = engine default 200)"},
    {"index-ef-search",     0,   "index.ef_search",                         K_UINT,     "0",         "default ef_search (0 = engine default 50)"},
    {"index-max-layer",     0,   "index.max_layer",                         K_UINT,     "0",         "default max_layer (0 = engine default 16)"},
};
/* clang-format on */
#define N_OPTIONS (sizeof options / sizeof options[0])

enum { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };
static int roots_src = SRC_DEFAULT; /* the source that last set the import roots */

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !*v) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* "24h", "30m", "90s", "2d", "1.5h", "3600" (seconds) -> seconds. */
static int parse_duration(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || x < 0)
        return -1;
    double mul = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    else if (*end == 'd')
        mul = 86400, end++;
    if (*end || x * mul > 1e12)
        return -1;
    *out = (int64_t)(x * mul + 0.5);
    return 0;
}

static int parse_uint(const char *v, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!*v || *v == '-')
        return -1;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x > max)
        return -1;
    *out = x;
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *v)
{
    snprintf(dst, cap, "%s", v);
}

/* Apply one option value from a source. 0 or -1 with a message on stderr. */
static int apply(const opt_def *o, const char *v, int src, const char *where)
{
    srv_config *c = &g_srv.cfg;
    unsigned long long u = 0;
    int b = 0;
    const char *f = o->flag;
    switch (o->kind) {
    case K_STR:
        if (strlen(v) >= 255 && strcmp(f, "data-dir") != 0 && strcmp(f, "config") != 0)
            goto bad;
        if (!strcmp(f, "data-dir"))
            copy_str(c->data_dir, sizeof c->data_dir, v);
        else if (!strcmp(f, "host"))
            copy_str(c->host, sizeof c->host, v);
        else if (!strcmp(f, "api-key"))
            copy_str(c->api_key, sizeof c->api_key, v);
        else if (!strcmp(f, "read-only-api-key"))
            copy_str(c->ro_key, sizeof c->ro_key, v);
        return 0;
    case K_UINT:
    case K_MB:
        if (parse_uint(v, UINT32_MAX, &u) < 0)
            goto bad;
        if (!strcmp(f, "rest-port")) {
            if (u > 65535)
                goto bad;
            c->port = (unsigned)u;
        } else if (!strcmp(f, "threads"))
            c->threads = (unsigned)u;
        else if (!strcmp(f, "fsync-interval-ms"))
            c->fsync_interval_ms = (uint32_t)u;
        else if (!strcmp(f, "max-body-mb")) {
            if (u == 0 || u > 1024 * 1024)
                goto bad;
            c->max_body = (uint64_t)u << 20;
        } else if (!strcmp(f, "max-batch"))
            c->max_batch = u ? (unsigned)u : 1;
        else if (!strcmp(f, "max-limit"))
            c->max_limit = u == 0 || u > DV_K_MAX ? DV_K_MAX : (unsigned)u;
        else if (!strcmp(f, "max-ef"))
            c->max_ef = u == 0 || u > DV_EF_MAX ? DV_EF_MAX : (unsigned)u;
        else if (!strcmp(f, "backup-keep"))
            c->backup_keep_auto = (uint32_t)u;
        else if (!strcmp(f, "shutdown-timeout"))
            c->shutdown_timeout_s = u ? (unsigned)u : 1;
        else if (!strcmp(f, "conn-timeout"))
            c->conn_timeout_s = (unsigned)u;
        else if (!strcmp(f, "max-clients"))
            c->max_connections = u ? (unsigned)u : 1;
        else if (!strcmp(f, "header-limit-kb")) {
            if (u < 4 || u > 65536)
                goto bad;
            c->conn_memory = (size_t)u << 10;
        } else if (!strcmp(f, "index-max-connections"))
            c->m = (uint32_t)u;
        else if (!strcmp(f, "index-ef-construction"))
            c->ef_construction = (uint32_t)u;
        else if (!strcmp(f, "index-ef-search"))
            c->ef_search = (uint32_t)u;
        else if (!strcmp(f, "index-max-layer"))
            c->max_layer = (uint32_t)u;
        return 0;
    case K_BOOL:
        if (parse_bool(v, &b) < 0)
            goto bad;
        c->allow_insecure = b;
        return 0;
    case K_DURATION:
        if (parse_duration(v, &c->trash_retention_s) < 0)
            goto bad;
        return 0;
    case K_FSYNC:
        if (!strcasecmp(v, "always"))
            c->fsync = DV_FSYNC_ALWAYS;
        else if (!strcasecmp(v, "interval"))
            c->fsync = DV_FSYNC_INTERVAL;
        else if (!strcasecmp(v, "never"))
            c->fsync = DV_FSYNC_NEVER;
        else
            goto bad;
        return 0;
    case K_LEVEL:
        if (srv_log_level_parse(v, &c->log_level) < 0)
            goto bad;
        return 0;
    case K_ROOT: {
        /* A source replaces the list of a lower-precedence source; within a
         * source, each occurrence adds (env/file: ':' or ',' separated). */
        if (src != roots_src) {
            c->n_import_roots = 0;
            roots_src = src;
        }
        char tmp[8192];
        copy_str(tmp, sizeof tmp, v);
        char *save = NULL;
        for (char *t = strtok_r(tmp, src == SRC_FLAG ? "" : ":,", &save); t;
             t = strtok_r(NULL, src == SRC_FLAG ? "" : ":,", &save)) {
            while (*t == ' ')
                t++;
            if (!*t)
                continue;
            if (c->n_import_roots >= SRV_MAX_IMPORT_ROOTS || strlen(t) >= sizeof c->import_roots[0]) {
                fprintf(stderr, "vectordb-server: %s: too many or too long import roots\n", where);
                return -1;
            }
            copy_str(c->import_roots[c->n_import_roots++], sizeof c->import_roots[0], t);
        }
        return 0;
    }
    }
bad:
    /* Never echo the value: it may be a key. */
    fprintf(stderr, "vectordb-server: %s: invalid value for %s\n", where, o->flag);
    return -1;
}

static const opt_def *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].flag) == len && !strncmp(options[i].flag, name, len))
            return &options[i];
    return NULL;
}

/* inih callback: [section] key = value. Unknown keys are warned about and
 * ignored (the original's files carry grpc_port, prometheus_port, ...). */
static int ini_cb(void *user, const char *section, const char *key, const char *value)
{
    const char *file = user;
    char want[160], val[4096];
    snprintf(want, sizeof want, "%s.%s", section, key);
    /* TOML strings are quoted: "x" -> x. */
    size_t vl = strlen(value);
    if (vl >= 2 && (value[0] == '"' || value[0] == '\'') && value[vl - 1] == value[0])
        snprintf(val, sizeof val, "%.*s", (int)(vl - 2), value + 1);
    else
        snprintf(val, sizeof val, "%s", value);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *k = options[i].keys;
        size_t wl = strlen(want);
        for (const char *p = strstr(k, want); p; p = strstr(p + 1, want)) {
            if ((p == k || p[-1] == ' ') && (p[wl] == ' ' || p[wl] == '\0')) {
                char where[300];
                snprintf(where, sizeof where, "%s: [%s] %s", file, section, key);
                return apply(&options[i], val, SRC_FILE, where) == 0;
            }
        }
    }
    fprintf(stderr, "vectordb-server: %s: ignoring unknown setting [%s] %s\n", file, section, key);
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vectordb-server [options]\n\n"
            "d-vecDB REST server %s.\n\n"
            "Precedence: flags > environment (DVECDB_*) > config file > defaults.\n"
            "Each --flag-name has the environment variable DVECDB_FLAG_NAME (DVECDB_IMPORT_ROOT takes a\n"
            "':'-separated list); the config file keys are given as [section] key.\n\n",
            DV_VERSION_STRING);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_def *o = &options[i];
        char flag[64], env[64];
        snprintf(flag, sizeof flag, "%s%c%s--%s%s", o->short_flag ? "-" : "", o->short_flag ? o->short_flag : ' ',
                 o->short_flag ? ", " : "  ", o->flag, o->kind == K_BOOL ? "" : " V");
        if (!o->short_flag)
            snprintf(flag, sizeof flag, "    --%s%s", o->flag, o->kind == K_BOOL ? "" : " V");
        size_t e = (size_t)snprintf(env, sizeof env, "DVECDB_");
        for (const char *p = o->flag; *p && e + 1 < sizeof env; p++)
            env[e++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        env[e] = '\0';
        fprintf(f, "  %-30s %s\n", flag, o->help);
        fprintf(f, "  %-30s default: %s; env: %s", "", *o->def ? o->def : "(none)", env);
        if (*o->keys) {
            char first[64];
            snprintf(first, sizeof first, "%s", o->keys);
            char *sp = strchr(first, ' ');
            if (sp)
                *sp = '\0';
            char *dot = strchr(first, '.');
            if (dot) {
                *dot = '\0';
                fprintf(f, "; file: [%s] %s", first, dot + 1);
            }
        }
        fprintf(f, "\n");
    }
    fprintf(f, "  -h, --help                     this text\n  -V, --version                  print the version\n");
}

/* Build the configuration from defaults, file, environment and flags. */
static int load_config(int argc, char **argv)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (apply(&options[i], options[i].def, SRC_DEFAULT, "default") < 0)
            return -1;
    /* Pass 1: only find -c/--config, --help, --version. */
    const char *cfg_file = getenv("DVECDB_CONFIG");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("vectordb-server %s\n", DV_VERSION_STRING);
            exit(0);
        }
        if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc)
            cfg_file = argv[++i];
        else if (!strncmp(a, "--config=", 9))
            cfg_file = a + 9;
    }
    if (cfg_file && *cfg_file) {
        int rc = ini_parse(cfg_file, ini_cb, (void *)cfg_file);
        if (rc != 0) {
            if (rc < 0)
                fprintf(stderr, "vectordb-server: cannot read config file %s\n", cfg_file);
            else
                fprintf(stderr, "vectordb-server: %s: error on line %d\n", cfg_file, rc);
            return -1;
        }
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        size_t e = (size_t)snprintf(env, sizeof env, "DVECDB_");
        for (const char *p = options[i].flag; *p && e + 1 < sizeof env; p++)
            env[e++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        env[e] = '\0';
        const char *v = getenv(env);
        if (v && strcmp(options[i].flag, "config") != 0 && apply(&options[i], v, SRC_ENV, env) < 0)
            return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const opt_def *o = NULL;
        const char *val = NULL;
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            o = find_flag(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
            if (eq)
                val = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            for (size_t k = 0; k < N_OPTIONS; k++)
                if (options[k].short_flag == a[1])
                    o = &options[k];
        }
        if (!o) {
            fprintf(stderr, "vectordb-server: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (!val) {
            if (o->kind == K_BOOL) {
                val = "true";
            } else {
                if (i + 1 >= argc) {
                    fprintf(stderr, "vectordb-server: %s needs a value\n", a);
                    return -1;
                }
                val = argv[++i];
            }
        }
        if (!strcmp(o->flag, "config"))
            continue;
        char where[80];
        snprintf(where, sizeof where, "flag --%s", o->flag);
        if (apply(o, val, SRC_FLAG, where) < 0)
            return -1;
    }
    return 0;
}

/* ---- background threads ---------------------------------------------------- */
static pthread_t open_thread, sweep_thread;
static int sweep_started;
static pthread_mutex_t sweep_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweep_cv;

/* Purge expired trash at start and then periodically (every minute, more
 * often when the retention itself is shorter, so short retentions expire on
 * time). */
static void *sweep_main(void *arg)
{
    (void)arg;
    int64_t ret = g_srv.cfg.trash_retention_s;
    int64_t period = ret / 2 < 60 ? (ret / 2 < 1 ? 1 : ret / 2) : 60;
    pthread_mutex_lock(&sweep_mu);
    while (!srv_stopping()) {
        pthread_mutex_unlock(&sweep_mu);
        size_t n = 0;
        dv_err err = {0};
        dv_code rc = dv_trash_purge_expired(g_srv.db, &n, &err);
        char q[600];
        if (rc != DV_OK)
            srv_log(SRV_LOG_WARN, "trash_sweep_failed", "code=%s msg=%s", dv_code_name(rc),
                    srv_log_quote(err.msg, q, sizeof q));
        else if (n)
            srv_log(SRV_LOG_INFO, "trash_purged", "entries=%zu", n);
        pthread_mutex_lock(&sweep_mu);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += period;
        while (!srv_stopping()) {
            if (pthread_cond_timedwait(&sweep_cv, &sweep_mu, &ts) == ETIMEDOUT)
                break;
        }
    }
    pthread_mutex_unlock(&sweep_mu);
    return NULL;
}

static void *open_main(void *arg)
{
    (void)arg;
    const srv_config *c = &g_srv.cfg;
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = c->fsync;
    o.fsync_interval_ms = c->fsync_interval_ms;
    o.trash_retention_s = c->trash_retention_s;
    o.backup_keep_auto = c->backup_keep_auto;
    const char *roots[SRV_MAX_IMPORT_ROOTS];
    for (size_t i = 0; i < c->n_import_roots; i++)
        roots[i] = c->import_roots[i];
    o.import_roots = c->n_import_roots ? roots : NULL;
    o.n_import_roots = c->n_import_roots;
    double t0 = srv_mono();
    dv_db *db = NULL;
    dv_err err = {0};
    char q[600];
    dv_code rc = dv_db_open(c->data_dir, &o, &db, &err);
    if (rc != DV_OK) {
        snprintf(g_srv.open_error, sizeof g_srv.open_error, "%s", err.msg[0] ? err.msg : dv_strerror(rc));
        __atomic_store_n(&g_srv.open_failed, 1, __ATOMIC_RELEASE);
        srv_log(SRV_LOG_ERROR, "db_open_failed", "data_dir=%s code=%s msg=%s", srv_log_quote(c->data_dir, q, sizeof q),
                dv_code_name(rc), srv_log_quote(g_srv.open_error, q + 300, 300));
        return NULL;
    }
    g_srv.db = db;
    dv_db_stats st;
    memset(&st, 0, sizeof st);
    dv_db_stats_get(db, &st, NULL);
    __atomic_store_n(&g_srv.ready, 1, __ATOMIC_RELEASE);
    srv_log(SRV_LOG_INFO, "ready", "collections=%u damaged=%u vectors=%llu open_ms=%.1f", st.n_collections,
            st.n_damaged, (unsigned long long)st.n_vectors, (srv_mono() - t0) * 1e3);
    pthread_mutex_lock(&sweep_mu);
    if (!srv_stopping() && pthread_create(&sweep_thread, NULL, sweep_main, NULL) == 0)
        sweep_started = 1;
    pthread_mutex_unlock(&sweep_mu);
    return NULL;
}

/* Graceful stop has a deadline: if an engine call never returns (or the
 * final checkpoint is too slow), leave anyway. Safe: every acknowledged write
 * is already in a fsynced WAL, and recovery replays it at the next start. */
static void *watchdog_main(void *arg)
{
    (void)arg;
    struct timespec ts = {(time_t)g_srv.cfg.shutdown_timeout_s, 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    srv_log(SRV_LOG_ERROR, "shutdown_timeout", "seconds=%u action=exit", g_srv.cfg.shutdown_timeout_s);
    _exit(1);
    return NULL;
}

int main(int argc, char **argv)
{
    /* Block the stop signals before any thread exists: every thread inherits
     * the mask, and only sigwait() below takes them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A thread per connection: glibc gives new threads new malloc arenas
     * until there are 8 per CPU, each keeping its own free memory, so RSS
     * climbed for the first half hour of a soak as connections came and
     * went (14 arenas of ~180 KiB after 5 minutes). One arena per CPU stops
     * that within the first minutes and costs no contention on threads
     * that cannot run at once anyway. MALLOC_ARENA_MAX, if set, wins. */
    if (!getenv("MALLOC_ARENA_MAX")) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        mallopt(M_ARENA_MAX, ncpu > 1 ? (int)ncpu : 1);
    }

    g_srv.started_mono = srv_mono();
    g_srv.started_ms = srv_now_ms();
    g_srv.cfg.log_level = SRV_LOG_INFO;
    if (load_config(argc, argv) < 0)
        return 2;
    srv_config *c = &g_srv.cfg;
    if (srv_n_routes > 64) {
        fprintf(stderr, "vectordb-server: route table larger than the metrics table\n");
        return 1;
    }
    if (!c->api_key[0] && c->ro_key[0]) {
        fprintf(stderr, "vectordb-server: --read-only-api-key needs --api-key too\n");
        return 2;
    }
    if (!c->api_key[0] && !c->allow_insecure && !srv_is_loopback(c->host)) {
        fprintf(stderr,
                "vectordb-server: refusing to listen on non-loopback address %s without --api-key "
                "(pass --allow-insecure to override)\n",
                c->host);
        return 2;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sweep_cv, &ca);
    pthread_condattr_destroy(&ca);

    char q[4200];
    srv_log(SRV_LOG_INFO, "starting",
            "version=%s host=%s port=%u data_dir=%s threads=%u fsync=%s auth=%s read_only_key=%s "
            "max_body_bytes=%llu trash_retention_s=%lld import_roots=%zu",
            DV_VERSION_STRING, c->host, c->port, srv_log_quote(c->data_dir, q, sizeof q), c->threads,
            c->fsync == DV_FSYNC_ALWAYS     ? "always"
            : c->fsync == DV_FSYNC_INTERVAL ? "interval"
                                            : "never",
            c->api_key[0] ? "on" : "off", c->ro_key[0] ? "on" : "off", (unsigned long long)c->max_body,
            (long long)c->trash_retention_s, c->n_import_roots);
    if (srv_jobs_init() < 0 || srv_http_start() < 0)
        return 1;
    srv_log(SRV_LOG_INFO, "listening", "host=%s port=%u", c->host, c->port);
    if (pthread_create(&open_thread, NULL, open_main, NULL) != 0) {
        srv_log(SRV_LOG_ERROR, "thread_failed", "what=open");
        srv_http_stop(0);
        return 1;
    }

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    double t0 = srv_mono();
    srv_log(SRV_LOG_INFO, "shutdown_started", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog_main, NULL) == 0)
        pthread_detach(wd);
    pthread_mutex_lock(&sweep_mu);
    __atomic_store_n(&g_srv.stopping, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&sweep_cv);
    pthread_mutex_unlock(&sweep_mu);
    srv_http_stop(g_srv.cfg.shutdown_timeout_s / 2.0);
    pthread_join(open_thread, NULL);
    if (sweep_started)
        pthread_join(sweep_thread, NULL);
    srv_jobs_shutdown();
    int rc = 0;
    if (g_srv.db) {
        dv_err err = {0};
        __atomic_store_n(&g_srv.ready, 0, __ATOMIC_RELEASE);
        dv_code cr = dv_db_close(g_srv.db, &err);
        g_srv.db = NULL;
        if (cr != DV_OK) {
            srv_log(SRV_LOG_ERROR, "db_close_failed", "code=%s msg=%s", dv_code_name(cr),
                    srv_log_quote(err.msg, q, sizeof q));
            rc = 1;
        }
    }
    srv_log(SRV_LOG_INFO, "stopped", "shutdown_ms=%.1f", (srv_mono() - t0) * 1e3);
    return rc;
}
