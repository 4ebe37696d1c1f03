/* engine_bench.c - benchmarks of the whole engine through include/dvecdb.h.
 *
 *   engine_bench ingest DATADIR PREFIX always|never N BATCH
 *       Durable ingest: upsert the first N vectors of PREFIX.base.fvecs in
 *       batches of BATCH into a new Cosine collection "ingest" of a fresh
 *       database, with that fsync policy. Reports vectors/s and the MB/s of
 *       vector data made durable (compare: dd conv=fdatasync, bench/run.sh).
 *   engine_bench load DATADIR PREFIX NAME euclidean|cosine
 *       Create collection NAME with every vector of PREFIX (batches of 1000,
 *       fsync never: this is set-up, not a measurement), then close the
 *       database (which checkpoints: snapshot files + index.bin).
 *   engine_bench reopen DATADIR NAME
 *       Time dv_db_open + dv_coll_open (recovery, snapshot and index load),
 *       then the time to read every file under collections/NAME with plain
 *       read(2) into one buffer, which bounds what a reopen can cost.
 *   engine_bench search DATADIR NAME PREFIX EF THREADS SECONDS
 *       In-process search QPS (k=10, one query per call) with THREADS threads
 *       for about SECONDS, cycling through the queries; recall@10 too.
 * Each prints one JSON line on stdout. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "bench_common.h"
#include "dvecdb.h"

static void check(dv_code rc, const dv_err *e, const char *what)
{
    if (rc != DV_OK) {
        fprintf(stderr, "engine_bench: %s: %s\n", what, e->msg);
        exit(1);
    }
}

static dv_point *make_points(const float *v, size_t dim, size_t from, size_t n, char (*ids)[16])
{
    dv_point *p = calloc(n, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "v%zu", from + i);
        p[i].id = ids[i];
        p[i].vector = v + (from + i) * dim;
    }
    return p;
}

static bench_vecs load_base(const char *prefix)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.base.fvecs", prefix);
    return bench_load_vecs(path);
}

static int cmd_ingest(char **a)
{
    bench_vecs base = load_base(a[1]);
    int always = strcmp(a[2], "always") == 0;
    size_t n = strtoul(a[3], NULL, 10), batch = strtoul(a[4], NULL, 10);
    if (n > base.n)
        n = base.n;
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = always ? DV_FSYNC_ALWAYS : DV_FSYNC_NEVER;
    o.checkpoint_wal_bytes = 1ull << 40; /* measure the WAL path, not checkpoints */
    dv_err e = {0};
    dv_db *db;
    check(dv_db_open(a[0], &o, &db, &e), &e, "open");
    dv_coll_config cfg = {.dim = (uint32_t)base.dim, .metric = DV_METRIC_COSINE};
    snprintf(cfg.name, sizeof cfg.name, "ingest");
    check(dv_coll_create(db, &cfg, &e), &e, "create");
    dv_coll *c;
    check(dv_coll_open(db, "ingest", &c, &e), &e, "coll open");
    char(*ids)[16] = malloc(batch * sizeof *ids);
    double t0 = bench_now(), worst = 0;
    for (size_t s = 0; s < n; s += batch) {
        size_t m = n - s < batch ? n - s : batch;
        dv_point *p = make_points(base.data, base.dim, s, m, ids);
        double b0 = bench_now();
        check(dv_coll_upsert(c, p, m, &e), &e, "upsert");
        double bt = bench_now() - b0;
        if (bt > worst)
            worst = bt;
        free(p);
    }
    double el = bench_now() - t0;
    dv_db_stats st;
    check(dv_db_stats_get(db, &st, &e), &e, "stats");
    double mb = (double)n * (double)base.dim * 4.0 / 1e6;
    printf("{\"what\":\"ingest\",\"fsync\":\"%s\",\"n\":%zu,\"dim\":%zu,\"batch\":%zu,\"seconds\":%.3f,"
           "\"vectors_per_s\":%.1f,\"mb_per_s\":%.2f,\"worst_batch_s\":%.4f,\"wal_fsyncs\":%llu,"
           "\"wal_fsync_s\":%.3f}\n",
           a[2], n, base.dim, batch, el, (double)n / el, mb / el, worst, (unsigned long long)st.wal_fsyncs,
           st.wal_fsync_seconds);
    dv_coll_close(c);
    check(dv_db_close(db, &e), &e, "close");
    free(ids);
    free(base.data);
    return 0;
}

static int cmd_load(char **a)
{
    bench_vecs base = load_base(a[1]);
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    dv_err e = {0};
    dv_db *db;
    check(dv_db_open(a[0], &o, &db, &e), &e, "open");
    dv_coll_config cfg = {.dim = (uint32_t)base.dim,
                          .metric = strcmp(a[3], "cosine") == 0 ? DV_METRIC_COSINE : DV_METRIC_EUCLIDEAN};
    snprintf(cfg.name, sizeof cfg.name, "%s", a[2]);
    check(dv_coll_create(db, &cfg, &e), &e, "create");
    dv_coll *c;
    check(dv_coll_open(db, a[2], &c, &e), &e, "coll open");
    size_t batch = 1000;
    char(*ids)[16] = malloc(batch * sizeof *ids);
    double t0 = bench_now();
    for (size_t s = 0; s < base.n; s += batch) {
        size_t m = base.n - s < batch ? base.n - s : batch;
        dv_point *p = make_points(base.data, base.dim, s, m, ids);
        check(dv_coll_upsert(c, p, m, &e), &e, "upsert");
        free(p);
    }
    double t1 = bench_now();
    dv_coll_close(c);
    check(dv_db_close(db, &e), &e, "close");
    printf("{\"what\":\"load\",\"n\":%zu,\"dim\":%zu,\"upsert_s\":%.3f,\"close_s\":%.3f}\n", base.n, base.dim,
           t1 - t0, bench_now() - t1);
    free(ids);
    free(base.data);
    return 0;
}

/* Read every regular file under dir (recursively) into buf; returns bytes. */
static size_t read_tree(const char *dir, char *buf, size_t cap)
{
    size_t total = 0;
    DIR *d = opendir(dir);
    if (!d)
        bench_die("cannot open directory", dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            total += read_tree(p, buf, cap);
        } else if (S_ISREG(st.st_mode)) {
            int fd = open(p, O_RDONLY);
            if (fd < 0)
                continue;
            ssize_t r;
            while ((r = read(fd, buf, cap)) > 0)
                total += (size_t)r;
            close(fd);
        }
    }
    closedir(d);
    return total;
}

static int cmd_reopen(char **a)
{
    dv_err e = {0};
    dv_db *db;
    dv_coll *c;
    double best_open = 1e30;
    uint64_t n_vec = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = bench_now();
        check(dv_db_open(a[0], NULL, &db, &e), &e, "open");
        check(dv_coll_open(db, a[1], &c, &e), &e, "coll open");
        double el = bench_now() - t0;
        if (el < best_open)
            best_open = el;
        dv_coll_info info;
        check(dv_coll_info_get(c, &info, &e), &e, "info");
        n_vec = info.n_vectors;
        dv_coll_close(c);
        check(dv_db_close(db, &e), &e, "close");
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/collections/%s", a[0], a[1]);
    size_t cap = 8u << 20;
    char *buf = malloc(cap);
    double best_read = 1e30;
    size_t bytes = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = bench_now();
        bytes = read_tree(dir, buf, cap);
        double el = bench_now() - t0;
        if (el < best_read)
            best_read = el;
    }
    free(buf);
    printf("{\"what\":\"reopen\",\"n_vectors\":%llu,\"open_s\":%.4f,\"read_files_s\":%.4f,\"bytes\":%zu}\n",
           (unsigned long long)n_vec, best_open, best_read, bytes);
    return 0;
}

typedef struct search_job {
    dv_coll *c;
    const float *q;
    size_t nq, dim, start;
    const int32_t *gt;
    size_t gt_dim;
    uint32_t ef;
    double until;
    size_t done;
    double recall_sum;
    size_t recall_n;
} search_job;

/* Ids are "v<row>": the row number is the ground truth's id. */
static void *search_worker(void *arg)
{
    search_job *j = arg;
    dv_search_params p = {.k = BENCH_K, .ef = j->ef};
    dv_err e = {0};
    for (size_t i = j->start; bench_now() < j->until; i++) {
        size_t qi = i % j->nq;
        dv_result *r;
        check(dv_coll_search(j->c, j->q + qi * j->dim, &p, &r, &e), &e, "search");
        if (i - j->start < j->nq) { /* first lap: recall */
            uint32_t ids[BENCH_K];
            for (size_t h = 0; h < r->n && h < BENCH_K; h++)
                ids[h] = (uint32_t)strtoul(r->hits[h].id + 1, NULL, 10);
            j->recall_sum += bench_recall(ids, r->n, j->gt + qi * j->gt_dim, BENCH_K);
            j->recall_n++;
        }
        dv_result_free(r);
        j->done++;
    }
    return NULL;
}

static int cmd_search(char **a)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.query.fvecs", a[2]);
    bench_vecs qv = bench_load_vecs(path);
    snprintf(path, sizeof path, "%s.gt.ivecs", a[2]);
    bench_vecs gt = bench_load_vecs(path);
    uint32_t ef = (uint32_t)strtoul(a[3], NULL, 10);
    size_t nt = strtoul(a[4], NULL, 10);
    double secs = atof(a[5]);
    dv_err e = {0};
    dv_db *db;
    dv_coll *c;
    check(dv_db_open(a[0], NULL, &db, &e), &e, "open");
    check(dv_coll_open(db, a[1], &c, &e), &e, "coll open");
    search_job jobs[64];
    pthread_t th[64];
    if (nt < 1 || nt > 64)
        nt = 1;
    double t0 = bench_now();
    for (size_t t = 0; t < nt; t++) {
        jobs[t] = (search_job){c, qv.data, qv.n, qv.dim, t * qv.n / nt, gt.data, gt.dim, ef, t0 + secs, 0, 0, 0};
        pthread_create(&th[t], NULL, search_worker, &jobs[t]);
    }
    size_t done = 0, rn = 0;
    double rs = 0;
    for (size_t t = 0; t < nt; t++) {
        pthread_join(th[t], NULL);
        done += jobs[t].done;
        rs += jobs[t].recall_sum;
        rn += jobs[t].recall_n;
    }
    double el = bench_now() - t0;
    printf("{\"what\":\"search\",\"ef\":%u,\"threads\":%zu,\"queries\":%zu,\"seconds\":%.3f,\"qps\":%.1f,"
           "\"recall\":%.4f}\n",
           ef, nt, done, el, (double)done / el, rn ? rs / (double)rn : 0.0);
    dv_coll_close(c);
    check(dv_db_close(db, &e), &e, "close");
    free(qv.data);
    free(gt.data);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 8 && strcmp(argv[1], "search") == 0)
        return cmd_search(argv + 2);
    if (argc >= 7 && strcmp(argv[1], "ingest") == 0)
        return cmd_ingest(argv + 2);
    if (argc >= 6 && strcmp(argv[1], "load") == 0)
        return cmd_load(argv + 2);
    if (argc >= 4 && strcmp(argv[1], "reopen") == 0)
        return cmd_reopen(argv + 2);
    fprintf(stderr, "usage: engine_bench ingest|load|reopen|search ... (see the comment at the top)\n");
    return 2;
}
