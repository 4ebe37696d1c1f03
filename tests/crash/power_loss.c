/* power_loss.c - power loss at every Nth I/O call of a scripted workload.
 *
 * The workload (creates, batch upserts that add and replace, deletes,
 * checkpoints, a close) runs once with the I/O layer counting calls. Then,
 * for N in 1..total (every N with DVECDB_CRASH_ALL=1, else a spread sample),
 * it runs again in a fresh directory with IO_FAULT_CRASH armed at call N:
 * from that call on every I/O fails, the workload stops at its first failed
 * operation, the handle is closed, io_crash_apply() rewinds the files to
 * what was fsynced (sometimes keeping a torn prefix of the last write), and
 * the database is reopened without faults. Checked after each reopen:
 *   - the reopen succeeds and no collection is damaged;
 *   - every acknowledged operation is present: each collection, each id
 *     with its vector bit for bit and its metadata byte for byte, each
 *     delete absent;
 *   - the operation in flight at the crash is wholly present or wholly
 *     absent (never half a batch);
 *   - search recall@10 against exact search is >= 0.9, and writes work.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dvecdb.h"
#include "io.h"

#if defined(__SANITIZE_ADDRESS__)
#define SAMPLES 12
#else
#define SAMPLES 40
#endif

enum { DIM = 8, NPTS = 1400, NCOLL = 2 };
enum { OP_OPEN, OP_CREATE, OP_UPSERT, OP_DELETE, OP_CHECKPOINT, OP_CLOSE };

typedef struct op {
    int kind;
    int coll;      /* 0 = "c1", 1 = "c2" */
    int first, n;  /* point numbers first..first+n-1 */
    int gen;       /* value generation written by an upsert */
} op;

/* The script. Generations differ per batch, so old and new values differ. */
static const op script[] = {
    {OP_OPEN, 0, 0, 0, 0},
    {OP_CREATE, 0, 0, 0, 0},
    {OP_UPSERT, 0, 0, 1100, 1},
    {OP_UPSERT, 0, 1100, 40, 2},
    {OP_UPSERT, 0, 20, 40, 3},    /* replaces */
    {OP_DELETE, 0, 0, 15, 0},
    {OP_CHECKPOINT, 0, 0, 0, 0},
    {OP_CREATE, 1, 0, 0, 0},
    {OP_UPSERT, 1, 0, 30, 4},
    {OP_UPSERT, 0, 100, 50, 5},   /* replaces after the checkpoint */
    {OP_DELETE, 0, 200, 10, 0},
    {OP_UPSERT, 1, 10, 30, 6},    /* half replace, half new */
    {OP_CHECKPOINT, 1, 0, 0, 0},
    {OP_UPSERT, 0, 1140, 60, 7},
    {OP_DELETE, 1, 0, 5, 0},
    {OP_CHECKPOINT, 0, 0, 0, 0},
    {OP_UPSERT, 0, 1200, 200, 8},
    {OP_CLOSE, 0, 0, 0, 0},
};
#define N_OPS (sizeof script / sizeof script[0])

static const char *coll_name[NCOLL] = {"c1", "c2"};

/* Expected state: per collection, exists; per point, generation (0 = absent). */
typedef struct model {
    int exists[NCOLL];
    int gen[NCOLL][NPTS];
} model;

static void model_apply(model *m, const op *o)
{
    switch (o->kind) {
    case OP_CREATE: m->exists[o->coll] = 1; break;
    case OP_UPSERT:
        for (int k = o->first; k < o->first + o->n; k++)
            m->gen[o->coll][k] = o->gen;
        break;
    case OP_DELETE:
        for (int k = o->first; k < o->first + o->n; k++)
            m->gen[o->coll][k] = 0;
        break;
    default: break;
    }
}

static float value(int k, int gen, int j)
{
    uint32_t x = (uint32_t)(k * 2654435761u) ^ (uint32_t)(gen * 40503u) ^ (uint32_t)(j * 97u);
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return (float)(x % 20001) / 10000.0f - 1.0f;
}

static void id_of(int k, char *buf, size_t cap)
{
    snprintf(buf, cap, "pt-%d", k);
}

static int meta_of(int k, int gen, char *buf, size_t cap)
{
    return snprintf(buf, cap, "{\"k\":%d, \"gen\":%d}", k, gen);
}

static dv_db_options opts(void)
{
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_ALWAYS;
    o.checkpoint_wal_bytes = 0; /* checkpoints only where the script says */
    o.n_threads = 1;
    return o;
}

/* Run the script until an operation fails; returns the number of
 * acknowledged operations. The handle is always closed. */
static size_t run_workload(const char *dir)
{
    dv_db *db = NULL;
    dv_db_options o = opts();
    static dv_point pts[NPTS];
    static char ids[NPTS][16], metas[NPTS][48];
    static float vecs[NPTS][DIM];
    size_t acked = 0;
    for (size_t i = 0; i < N_OPS; i++) {
        const op *p = &script[i];
        dv_code rc = DV_OK;
        dv_coll *c = NULL;
        if (p->kind != OP_OPEN && p->kind != OP_CREATE && p->kind != OP_CLOSE) {
            rc = dv_coll_open(db, coll_name[p->coll], &c, NULL);
            if (rc)
                break;
        }
        switch (p->kind) {
        case OP_OPEN: rc = dv_db_open(dir, &o, &db, NULL); break;
        case OP_CREATE: {
            dv_coll_config cfg;
            memset(&cfg, 0, sizeof cfg);
            snprintf(cfg.name, sizeof cfg.name, "%s", coll_name[p->coll]);
            cfg.dim = DIM;
            cfg.metric = DV_METRIC_EUCLIDEAN;
            rc = dv_coll_create(db, &cfg, NULL);
            break;
        }
        case OP_UPSERT:
            for (int i2 = 0; i2 < p->n; i2++) {
                int k = p->first + i2;
                id_of(k, ids[i2], sizeof ids[i2]);
                int ml = meta_of(k, p->gen, metas[i2], sizeof metas[i2]);
                for (int j = 0; j < DIM; j++)
                    vecs[i2][j] = value(k, p->gen, j);
                pts[i2] = (dv_point){ids[i2], vecs[i2], metas[i2], (size_t)ml};
            }
            rc = dv_coll_upsert(c, pts, (size_t)p->n, NULL);
            break;
        case OP_DELETE: {
            const char *del[NPTS];
            for (int i2 = 0; i2 < p->n; i2++) {
                id_of(p->first + i2, ids[i2], sizeof ids[i2]);
                del[i2] = ids[i2];
            }
            rc = dv_coll_delete(c, del, (size_t)p->n, NULL, NULL);
            break;
        }
        case OP_CHECKPOINT: rc = dv_coll_checkpoint(c, NULL); break;
        case OP_CLOSE:
            rc = dv_db_close(db, NULL);
            db = NULL;
            break;
        }
        if (c)
            dv_coll_close(c);
        if (rc)
            break;
        acked++;
    }
    if (db)
        dv_db_close(db, NULL); /* after a crash every I/O fails: changes nothing */
    return acked;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Compare one point with a generation (0 = absent): 1 if equal. */
static int point_is(dv_coll *c, int k, int gen)
{
    char id[16], meta[48];
    id_of(k, id, sizeof id);
    dv_record *r = NULL;
    dv_code rc = dv_coll_get(c, id, &r, NULL);
    if (gen == 0)
        return rc == DV_ENOTFOUND;
    if (rc)
        return 0;
    int ml = meta_of(k, gen, meta, sizeof meta);
    int ok = r->metadata && r->metadata_len == (size_t)ml && memcmp(r->metadata, meta, (size_t)ml) == 0;
    for (int j = 0; j < DIM && ok; j++) {
        float v = value(k, gen, j);
        ok = memcmp(&v, &r->vector[j], sizeof v) == 0;
    }
    dv_record_free(r);
    return ok;
}

/* Reopen and check against the models before (old) and after (new) the
 * operation in flight. Returns 0 or prints what failed. */
static int verify(const char *dir, const model *old, const model *nw, size_t n_call)
{
    dv_db *db;
    dv_err e;
    dv_db_options o = opts();
    if (dv_db_open(dir, &o, &db, &e)) {
        fprintf(stderr, "crash at call %zu: reopen failed: %s\n", n_call, e.msg);
        return -1;
    }
    int bad = 0;
    dv_coll_info *list;
    size_t n;
    if (dv_db_list(db, &list, &n, &e) == DV_OK) {
        for (size_t i = 0; i < n; i++)
            if (list[i].damaged) {
                fprintf(stderr, "crash at call %zu: %s damaged: %s\n", n_call, list[i].config.name, list[i].damage);
                bad = 1;
            }
        dv_free(list);
    }
    for (int ci = 0; ci < NCOLL && !bad; ci++) {
        dv_coll *c = NULL;
        dv_code rc = dv_coll_open(db, coll_name[ci], &c, &e);
        if (rc == DV_ENOTFOUND) {
            if (old->exists[ci]) {
                fprintf(stderr, "crash at call %zu: acknowledged collection %s lost\n", n_call, coll_name[ci]);
                bad = 1;
            }
            continue;
        }
        if (rc) {
            fprintf(stderr, "crash at call %zu: open %s: %s\n", n_call, coll_name[ci], e.msg);
            bad = 1;
            break;
        }
        /* Every point is in the old or the new state, and all points the
         * in-flight operation touches agree on which. */
        int n_old = 0, n_new = 0, n_diff = 0;
        for (int k = 0; k < NPTS && !bad; k++) {
            int is_old = point_is(c, k, old->gen[ci][k]);
            int is_new = point_is(c, k, nw->gen[ci][k]);
            if (!is_old && !is_new) {
                fprintf(stderr, "crash at call %zu: %s point %d is neither gen %d nor %d\n", n_call, coll_name[ci], k,
                        old->gen[ci][k], nw->gen[ci][k]);
                bad = 1;
            }
            if (old->gen[ci][k] != nw->gen[ci][k]) {
                n_diff++;
                n_old += is_old;
                n_new += is_new;
            }
        }
        if (!bad && n_diff && n_old != n_diff && n_new != n_diff) {
            fprintf(stderr, "crash at call %zu: %s: in-flight batch half applied (%d old, %d new of %d)\n", n_call,
                    coll_name[ci], n_old, n_new, n_diff);
            bad = 1;
        }
        /* Recall against exact search on the recovered index. */
        dv_coll_info in;
        if (!bad && dv_coll_info_get(c, &in, &e) == DV_OK && in.n_vectors >= 20) {
            double hit = 0, tot = 0;
            for (int q = 0; q < 10; q++) {
                float qv[DIM];
                for (int j = 0; j < DIM; j++)
                    qv[j] = value(q + 5000, 99, j);
                dv_search_params a = {.k = 10}, x = {.k = 10, .exact = 1};
                dv_result *ra, *rx;
                if (dv_coll_search(c, qv, &a, &ra, &e) || dv_coll_search(c, qv, &x, &rx, &e)) {
                    bad = 1;
                    break;
                }
                for (size_t i = 0; i < rx->n; i++)
                    for (size_t j = 0; j < ra->n; j++)
                        hit += strcmp(rx->hits[i].id, ra->hits[j].id) == 0;
                tot += (double)rx->n;
                dv_result_free(ra);
                dv_result_free(rx);
            }
            if (tot > 0 && hit / tot < 0.9) {
                fprintf(stderr, "crash at call %zu: %s recall %.3f\n", n_call, coll_name[ci], hit / tot);
                bad = 1;
            }
        }
        /* and the recovered collection takes writes */
        float v[DIM] = {0};
        dv_point p = {"after-crash", v, NULL, 0};
        if (!bad && dv_coll_upsert(c, &p, 1, &e) != DV_OK) {
            fprintf(stderr, "crash at call %zu: write after recovery: %s\n", n_call, e.msg);
            bad = 1;
        }
        dv_coll_close(c);
    }
    if (dv_db_close(db, &e) && !bad) {
        fprintf(stderr, "crash at call %zu: close after recovery: %s\n", n_call, e.msg);
        bad = 1;
    }
    return bad ? -1 : 0;
}

int main(void)
{
    char base[] = "/tmp/dvecdb-crash-XXXXXX";
    if (!mkdtemp(base))
        return 1;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/db", base);

    /* Size the loop: count the calls of a clean run. */
    io_fault_arm(IO_FAULT_NONE, 0, 0);
    size_t acked = run_workload(dir);
    uint64_t total = io_calls();
    io_fault_disarm();
    if (acked != N_OPS) {
        fprintf(stderr, "power_loss: clean run acknowledged %zu of %zu operations\n", acked, N_OPS);
        return 1;
    }
    model full;
    memset(&full, 0, sizeof full);
    for (size_t i = 0; i < N_OPS; i++)
        model_apply(&full, &script[i]);
    if (verify(dir, &full, &full, 0))
        return 1;
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);

    int all = getenv("DVECDB_CRASH_ALL") && atoi(getenv("DVECDB_CRASH_ALL")) == 1;
    uint64_t step = all || total <= SAMPLES ? 1 : total / SAMPLES;
    int failures = 0, runs = 0, torn_runs = 0;
    size_t min_acked = N_OPS, max_acked = 0;
    for (uint64_t n = 1; n <= total; n += step) {
        /* Alternate the power-loss flavour: clean cut, or a torn last write. */
        size_t torn = (runs % 3 == 0) ? 0 : (runs % 3 == 1 ? 7 : 333);
        io_fault_arm(IO_FAULT_CRASH, n, 1);
        acked = run_workload(dir);
        int crashed = io_crashed();
        io_crash_apply(torn);
        if (!crashed && acked != N_OPS) {
            fprintf(stderr, "crash at call %llu: workload failed without a crash\n", (unsigned long long)n);
            failures++;
        }
        model old, nw;
        memset(&old, 0, sizeof old);
        for (size_t i = 0; i < acked; i++)
            model_apply(&old, &script[i]);
        nw = old;
        if (acked < N_OPS)
            model_apply(&nw, &script[acked]);
        if (verify(dir, &old, &nw, (size_t)n))
            failures++;
        runs++;
        torn_runs += torn > 0;
        if (acked < min_acked)
            min_acked = acked;
        if (acked > max_acked)
            max_acked = acked;
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
    rmdir(base);
    fprintf(stderr,
            "power_loss: %llu I/O calls in the workload; %d crash points (%d with a torn write), "
            "acknowledged ops at crash %zu..%zu of %zu; %d failures\n",
            (unsigned long long)total, runs, torn_runs, min_acked, max_acked, N_OPS, failures);
    return failures ? 1 : 0;
}
