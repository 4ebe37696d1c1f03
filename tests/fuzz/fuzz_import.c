/* fuzz_import.c - libFuzzer target for import path normalisation (dv_import
 * in src/import.c): the import path comes from a client and must resolve
 * under an import root - no "..", no symlink escape (DESIGN.md invariant 5).
 *
 * Once per process, in a temp dir T:
 *   T/roots/in/                  the only import root
 *       good.fvecs, sub/deep.fvecs, link_in -> good.fvecs,
 *       link_out -> T/outside/secret.fvecs, dir_out -> T/outside
 *   T/roots/in2/evil.fvecs       a sibling whose name extends the root's
 *   T/outside/secret.fvecs       must never be imported
 *   T/data/                      the database (import_roots = T/roots/in)
 * (Relative paths resolve from the working directory, outside the root.)
 *
 * Input: byte 0 picks a prefix (mod 4: none, "T/roots/in/", "T/",
 * "T/roots/in"), the rest (up to a NUL) is the path. Each input imports into
 * a new collection, removed again after a success.
 *
 * Checked beyond "no crash, no sanitizer report, no leak": an import that
 * succeeds was given a path whose realpath lies under T/roots/in (the root
 * itself or below, never T/roots/in2 or T/outside); every refusal carries a
 * message; the vectors of T/outside/secret.fvecs never arrive. */
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dvecdb.h"

static char T[256], root_in[512];
static dv_db *db;
static unsigned long n_run;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static void teardown(void)
{
    if (db)
        dv_db_close(db, NULL);
    db = NULL;
    nftw(T, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* n vectors of dimension d, all components = value. */
static void write_fvecs(const char *path, int n, int d, float value)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        abort();
    for (int i = 0; i < n; i++) {
        int32_t dd = d;
        fwrite(&dd, 4, 1, fp);
        for (int k = 0; k < d; k++) {
            float v = value + (float)i;
            fwrite(&v, 4, 1, fp);
        }
    }
    fclose(fp);
}

static void mk(const char *fmt, const char *a)
{
    char p[700];
    snprintf(p, sizeof p, fmt, T, a);
    if (mkdir(p, 0700) != 0)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(T, sizeof T, "%s/dv-fuzz-import-XXXXXX", base);
    if (!mkdtemp(T))
        abort();
    atexit(teardown);
    mk("%s/%s", "roots");
    mk("%s/%s", "roots/in");
    mk("%s/%s", "roots/in/sub");
    mk("%s/%s", "roots/in2");
    mk("%s/%s", "outside");
    char p[700], q[700];
    snprintf(p, sizeof p, "%s/roots/in/good.fvecs", T);
    write_fvecs(p, 3, 2, 1.0f);
    snprintf(p, sizeof p, "%s/roots/in/sub/deep.fvecs", T);
    write_fvecs(p, 2, 2, 5.0f);
    snprintf(p, sizeof p, "%s/roots/in2/evil.fvecs", T);
    write_fvecs(p, 2, 2, 666.0f);
    snprintf(p, sizeof p, "%s/outside/secret.fvecs", T);
    write_fvecs(p, 2, 2, 777.0f);
    snprintf(p, sizeof p, "%s/roots/in/link_in", T);
    if (symlink("good.fvecs", p) != 0)
        abort();
    snprintf(p, sizeof p, "%s/roots/in/link_out", T);
    snprintf(q, sizeof q, "%s/outside/secret.fvecs", T);
    if (symlink(q, p) != 0)
        abort();
    snprintf(p, sizeof p, "%s/roots/in/dir_out", T);
    snprintf(q, sizeof q, "%s/outside", T);
    if (symlink(q, p) != 0)
        abort();
    snprintf(root_in, sizeof root_in, "%s/roots/in", T);
    char *rr = realpath(root_in, NULL); /* /dev/shm may itself be a link */
    if (!rr)
        abort();
    snprintf(root_in, sizeof root_in, "%s", rr);
    free(rr);

    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    o.n_threads = 1;
    const char *roots[1] = {root_in};
    o.import_roots = roots;
    o.n_import_roots = 1;
    snprintf(p, sizeof p, "%s/data", T);
    dv_err err = {0};
    if (dv_db_open(p, &o, &db, &err) != DV_OK) {
        fprintf(stderr, "fuzz_import: dv_db_open: %s\n", err.msg);
        abort();
    }
    return 0;
}

static int under_root(const char *rp)
{
    size_t n = strlen(root_in);
    return strncmp(rp, root_in, n) == 0 && (rp[n] == '\0' || rp[n] == '/');
}

/* 1 if any imported vector carries the outside file's values (777, 778). */
static int got_secret(const char *name)
{
    dv_coll *c = NULL;
    if (dv_coll_open(db, name, &c, NULL) != DV_OK)
        return 0;
    int found = 0;
    dv_result *res = NULL;
    if (dv_coll_scroll(c, 0, 1000, 1, &res, NULL) == DV_OK) {
        for (size_t i = 0; i < res->n; i++)
            if (res->hits[i].vector && (res->hits[i].vector[0] == 777.0f || res->hits[i].vector[0] == 778.0f ||
                                        res->hits[i].vector[0] == 666.0f || res->hits[i].vector[0] == 667.0f))
                found = 1;
        dv_result_free(res);
    }
    dv_coll_close(c);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const pre[4] = {"", "/roots/in/", "/", "/roots/in"};
    int k = data[0] % 4;
    char path[PATH_MAX + 64];
    size_t n = 0;
    if (k) {
        n = (size_t)snprintf(path, sizeof path, "%s%s", T, pre[k]);
    }
    size_t take = size - 1;
    const uint8_t *z = memchr(data + 1, 0, take);
    if (z)
        take = (size_t)(z - (data + 1));
    if (take > PATH_MAX + 32 - n)
        take = PATH_MAX + 32 - n;
    memcpy(path + n, data + 1, take);
    path[n + take] = '\0';

    char name[32];
    snprintf(name, sizeof name, "i%lu", n_run++);
    dv_import_opts o;
    memset(&o, 0, sizeof o);
    o.path = path;
    o.collection_name = name;
    o.has_metric = 1;
    o.metric = DV_METRIC_EUCLIDEAN;
    o.skip_backup = 1;
    dv_import_report rep;
    dv_err err = {0};
    dv_code rc = dv_import(db, &o, &rep, &err);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "fuzz_import: %s -> %d %s\n", path, rc, rc ? err.msg : "");
    if (rc != DV_OK) {
        if (err.code != rc || !err.msg[0])
            abort();
        return 0;
    }
    char *rp = realpath(path, NULL);
    if (!rp || !under_root(rp)) {
        fprintf(stderr, "fuzz_import: imported from %s (resolves to %s), outside the root %s\n", path,
                rp ? rp : "?", root_in);
        abort();
    }
    free(rp);
    if (got_secret(name)) {
        fprintf(stderr, "fuzz_import: %s brought in vectors from outside the root\n", path);
        abort();
    }
    if (dv_coll_hard_delete(db, name, 1, NULL, &err) != DV_OK) {
        fprintf(stderr, "fuzz_import: hard delete %s: %s\n", name, err.msg);
        abort();
    }
    return 0;
}
