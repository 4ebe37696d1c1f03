/* enospc.c - the disk fills up in the middle of writes (injected ENOSPC).
 *
 * For several points inside an upsert, a delete and a checkpoint, the I/O
 * layer fails every call from the Nth on with ENOSPC ("the disk is full").
 * Checked: the failing call returns DV_ENOSPC (or DV_EFATAL once the
 * collection is poisoned) with a clear message; nothing acknowledged before
 * is lost (reads keep working and see every acknowledged write); once space
 * returns, writes resume on the same handle (the collection heals itself:
 * reopen of its WAL + full checkpoint) and a reopen of the database finds
 * every acknowledged write.
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

enum { DIM = 8, B = 40 };

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int batch(dv_coll *c, int b, dv_err *e)
{
    dv_point p[B];
    char ids[B][32];
    float v[B][DIM];
    for (int i = 0; i < B; i++) {
        snprintf(ids[i], sizeof ids[i], "b%d-%d", b, i);
        for (int j = 0; j < DIM; j++)
            v[i][j] = (float)(b * B + i) + (float)j * 0.01f;
        p[i] = (dv_point){ids[i], v[i], "{\"x\":1}", 7};
    }
    return dv_coll_upsert(c, p, B, e);
}

/* Number of acknowledged batches found exactly (stops at the first gap). */
static int count_batches(dv_coll *c, int upto)
{
    for (int b = 0; b < upto; b++) {
        for (int i = 0; i < B; i++) {
            char id[32];
            snprintf(id, sizeof id, "b%d-%d", b, i);
            dv_record *r;
            if (dv_coll_get(c, id, &r, NULL))
                return b;
            int ok = r->vector[0] == (float)(b * B + i) && r->metadata_len == 7;
            dv_record_free(r);
            if (!ok)
                return b;
        }
    }
    return upto;
}

/* One scenario: `before` batches acknowledged, then the disk fills at the
 * nth I/O call of operation `what` (0 upsert, 1 delete, 2 checkpoint). */
static int scenario(const char *dir, int what, uint64_t nth)
{
    int fail = 0;
    dv_db *db;
    dv_err e;
    dv_db_options o;
    dv_db_options_init(&o);
    o.checkpoint_wal_bytes = 0;
    if (dv_db_open(dir, &o, &db, &e))
        return 1;
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "full");
    cfg.dim = DIM;
    cfg.metric = DV_METRIC_EUCLIDEAN;
    dv_coll *c;
    if (dv_coll_create(db, &cfg, &e) || dv_coll_open(db, "full", &c, &e))
        return 1;
    int acked = 0;
    for (; acked < 5; acked++)
        if (batch(c, acked, &e))
            return 1;
    float vv[DIM] = {0};
    dv_point victim = {"victim", vv, NULL, 0};
    if (dv_coll_upsert(c, &victim, 1, &e))
        return 1;
    io_fault_arm(IO_FAULT_ENOSPC, nth, 1);
    dv_code rc;
    if (what == 0) {
        rc = batch(c, acked, &e);
    } else if (what == 1) {
        const char *ids[] = {"victim"};
        rc = dv_coll_delete(c, ids, 1, NULL, &e);
    } else {
        rc = dv_coll_checkpoint(c, &e);
    }
    uint64_t calls = io_calls();
    if (rc == DV_OK && calls >= nth) {
        fprintf(stderr, "enospc: op %d call %llu: succeeded on a full disk\n", what, (unsigned long long)nth);
        fail = 1;
    }
    if (rc == DV_OK && what == 0)
        acked++; /* the fault landed after the operation's last call */
    if (rc != DV_OK && rc != DV_ENOSPC) {
        fprintf(stderr, "enospc: op %d call %llu: rc %d, want DV_ENOSPC: %s\n", what, (unsigned long long)nth, rc,
                e.msg);
        fail = 1;
    }
    /* Still full: writes are refused, reads see everything acknowledged. */
    if (rc != DV_OK) {
        dv_code rc2 = batch(c, 100, &e);
        if (rc2 == DV_OK) {
            fprintf(stderr, "enospc: op %d call %llu: write accepted while full\n", what, (unsigned long long)nth);
            fail = 1;
        }
        dv_db_stats st;
        if (dv_db_stats_get(db, &st, &e) == DV_OK && !st.poisoned) {
            fprintf(stderr, "enospc: op %d call %llu: stats.poisoned not set\n", what, (unsigned long long)nth);
            fail = 1;
        }
    }
    if (count_batches(c, acked) != acked) {
        fprintf(stderr, "enospc: op %d call %llu: acknowledged batch lost while full\n", what,
                (unsigned long long)nth);
        fail = 1;
    }
    /* Space returns: writes resume on the same handle. */
    io_fault_disarm();
    rc = batch(c, acked, &e);
    if (rc != DV_OK) {
        fprintf(stderr, "enospc: op %d call %llu: write after space returned: %s\n", what, (unsigned long long)nth,
                e.msg);
        fail = 1;
    } else {
        acked++;
    }
    dv_coll_close(c);
    if (dv_db_close(db, &e)) {
        fprintf(stderr, "enospc: op %d call %llu: close: %s\n", what, (unsigned long long)nth, e.msg);
        fail = 1;
    }
    /* Reopen finds every acknowledged batch. */
    if (dv_db_open(dir, &o, &db, &e)) {
        fprintf(stderr, "enospc: op %d call %llu: reopen: %s\n", what, (unsigned long long)nth, e.msg);
        return 1;
    }
    if (dv_coll_open(db, "full", &c, &e)) {
        fprintf(stderr, "enospc: op %d call %llu: reopen collection: %s\n", what, (unsigned long long)nth, e.msg);
        dv_db_close(db, NULL);
        return 1;
    }
    int found = count_batches(c, acked);
    if (found != acked) {
        fprintf(stderr, "enospc: op %d call %llu: after reopen %d of %d batches\n", what, (unsigned long long)nth,
                found, acked);
        fail = 1;
    }
    dv_coll_close(c);
    dv_db_close(db, NULL);
    return fail;
}

int main(void)
{
    char base[] = "/tmp/dvecdb-enospc-XXXXXX";
    if (!mkdtemp(base))
        return 1;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/db", base);
    int failures = 0, runs = 0;
    /* An upsert is ~2 calls (append, fsync); a checkpoint ~20. */
    for (int what = 0; what < 3; what++) {
        uint64_t max = what == 2 ? 24 : 3;
        for (uint64_t nth = 1; nth <= max; nth++) {
            failures += scenario(dir, what, nth);
            runs++;
            nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        }
    }
    rmdir(base);
    fprintf(stderr, "enospc: %d scenarios, %d failures\n", runs, failures);
    return failures ? 1 : 0;
}
