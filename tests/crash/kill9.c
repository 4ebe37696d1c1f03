/* kill9.c - a writer process is killed with SIGKILL at random moments.
 *
 * Each round forks a child that opens the database (fsync ALWAYS, a small
 * checkpoint threshold so background checkpoints run too), then upserts
 * batches of BATCH points with ids "b<batch>-<i>" and, after each
 * acknowledged batch, writes the batch number to a pipe (every 7th batch it
 * also checkpoints explicitly). The parent kills it after a random delay,
 * drains the pipe, reopens the database in-process and checks: the reopen
 * succeeds, every acknowledged batch is present with bit-exact vectors and
 * metadata, and the batch in flight is wholly present or wholly absent.
 * The next round continues after the highest batch found.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "dvecdb.h"

#if defined(__SANITIZE_ADDRESS__)
#define ROUNDS 20
#else
#define ROUNDS 30
#endif

enum { DIM = 16, BATCH = 25, MAX_BATCHES = 100000 };

static float value(int b, int i, int j)
{
    uint32_t x = (uint32_t)b * 2654435761u ^ (uint32_t)i * 40503u ^ (uint32_t)j * 97u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return (float)(x % 20001) / 10000.0f - 1.0f;
}

static dv_db_options opts(void)
{
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_ALWAYS;
    o.checkpoint_wal_bytes = 64 * 1024;
    return o;
}

static void child(const char *dir, int start, int fd)
{
    dv_db *db;
    dv_err e;
    dv_db_options o = opts();
    if (dv_db_open(dir, &o, &db, &e)) {
        fprintf(stderr, "child: open: %s\n", e.msg);
        _exit(2);
    }
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "k");
    cfg.dim = DIM;
    cfg.metric = DV_METRIC_COSINE;
    dv_code rc = dv_coll_create(db, &cfg, &e);
    if (rc && rc != DV_EEXIST)
        _exit(3);
    if (rc == DV_OK) {
        int zero = -1; /* "the collection exists" */
        if (write(fd, &zero, sizeof zero) != sizeof zero)
            _exit(4);
    }
    dv_coll *c;
    if (dv_coll_open(db, "k", &c, &e))
        _exit(5);
    for (int b = start; b < MAX_BATCHES; b++) {
        dv_point p[BATCH];
        char ids[BATCH][24], metas[BATCH][48];
        float v[BATCH][DIM];
        for (int i = 0; i < BATCH; i++) {
            snprintf(ids[i], sizeof ids[i], "b%d-%d", b, i);
            int ml = snprintf(metas[i], sizeof metas[i], "{\"b\":%d,\"i\":%d}", b, i);
            for (int j = 0; j < DIM; j++)
                v[i][j] = value(b, i, j);
            p[i] = (dv_point){ids[i], v[i], metas[i], (size_t)ml};
        }
        if (dv_coll_upsert(c, p, BATCH, &e)) {
            fprintf(stderr, "child: upsert: %s\n", e.msg);
            _exit(6);
        }
        if (write(fd, &b, sizeof b) != sizeof b)
            _exit(7);
        if (b % 7 == 6 && dv_coll_checkpoint(c, &e))
            _exit(8);
    }
    _exit(0);
}

/* 1 if batch b is wholly present and exact, 0 if wholly absent, -1 if
 * half there or changed. */
static int batch_state(dv_coll *c, int b)
{
    int present = 0, absent = 0;
    for (int i = 0; i < BATCH; i++) {
        char id[24], meta[48];
        snprintf(id, sizeof id, "b%d-%d", b, i);
        int ml = snprintf(meta, sizeof meta, "{\"b\":%d,\"i\":%d}", b, i);
        dv_record *r;
        dv_code rc = dv_coll_get(c, id, &r, NULL);
        if (rc == DV_ENOTFOUND) {
            absent++;
            continue;
        }
        if (rc)
            return -1;
        /* Cosine stores normalized vectors: bit-exact against the input
         * normalized by the engine's own routine. */
        float v[DIM];
        for (int j = 0; j < DIM; j++)
            v[j] = value(b, i, j);
        dist_normalize(v, DIM);
        int ok = r->metadata_len == (size_t)ml && memcmp(r->metadata, meta, (size_t)ml) == 0 &&
                 memcmp(r->vector, v, sizeof v) == 0;
        dv_record_free(r);
        if (!ok)
            return -1;
        present++;
    }
    return present == BATCH ? 1 : absent == BATCH ? 0 : -1;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void)
{
    /* DVECDB_KILL9_ROUNDS overrides the round count (make reliability-report runs 200) */
    const char *env_rounds = getenv("DVECDB_KILL9_ROUNDS");
    int rounds = env_rounds && atoi(env_rounds) > 0 ? atoi(env_rounds) : ROUNDS;
    char base[] = "/tmp/dvecdb-kill9-XXXXXX";
    if (!mkdtemp(base))
        return 1;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/db", base);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int next = 0, acked_max = -1, failures = 0, created = 0;
    long total_acked = 0;
    /* the exact vectors of acknowledged batches are checked every round */
    for (int round = 0; round < rounds; round++) {
        int fds[2];
        if (pipe(fds))
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child(dir, next, fds[1]);
        }
        close(fds[1]);
        /* 5..305 ms: lands in the open, upserts, fsyncs and checkpoints */
        struct timespec ts = {0, (long)(5 + rand() % 300) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
            fprintf(stderr, "kill9: round %d: child exited early (status %d)\n", round, st);
            failures++;
        }
        int b, round_acked = 0;
        while (read(fds[0], &b, sizeof b) == sizeof b) {
            if (b == -1) {
                created = 1;
                continue;
            }
            if (b > acked_max)
                acked_max = b;
            round_acked++;
        }
        close(fds[0]);
        total_acked += round_acked;

        dv_db *db;
        dv_err e;
        dv_db_options o = opts();
        if (dv_db_open(dir, &o, &db, &e)) {
            fprintf(stderr, "kill9: round %d: reopen failed: %s\n", round, e.msg);
            failures++;
            break;
        }
        dv_coll *c;
        dv_code rc = dv_coll_open(db, "k", &c, &e);
        if (rc == DV_ENOTFOUND && !created) {
            dv_db_close(db, NULL);
            continue; /* killed before the create was acknowledged */
        }
        if (rc) {
            fprintf(stderr, "kill9: round %d: open collection: %s\n", round, e.msg);
            failures++;
            dv_db_close(db, NULL);
            break;
        }
        for (int k = 0; k <= acked_max; k++) {
            if (batch_state(c, k) != 1) {
                fprintf(stderr, "kill9: round %d: acknowledged batch %d lost or changed\n", round, k);
                failures++;
                break;
            }
        }
        /* the batch in flight: all or nothing */
        int s = batch_state(c, acked_max + 1);
        if (s < 0) {
            fprintf(stderr, "kill9: round %d: batch %d half applied\n", round, acked_max + 1);
            failures++;
        }
        if (s == 1)
            acked_max++; /* durable though unacknowledged: now part of the state */
        dv_coll_info in;
        if (dv_coll_info_get(c, &in, &e) == DV_OK && in.n_vectors != (uint64_t)(acked_max + 1) * BATCH) {
            fprintf(stderr, "kill9: round %d: %llu vectors, expected %d\n", round,
                    (unsigned long long)in.n_vectors, (acked_max + 1) * BATCH);
            failures++;
        }
        next = acked_max + 1;
        dv_coll_close(c);
        if (dv_db_close(db, &e)) {
            fprintf(stderr, "kill9: round %d: close: %s\n", round, e.msg);
            failures++;
        }
        if (failures)
            break;
    }
    fprintf(stderr, "kill9: %d rounds, %ld batches acknowledged (%d in the store), %d failures\n", rounds,
            total_acked, acked_max + 1, failures);
    nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return failures ? 1 : 0;
}
