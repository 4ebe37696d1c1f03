/* fuzz_backup.c - libFuzzer target for backup manifests (backup.json, read
 * by dv_backup_verify and dv_backup_list in src/backup.c): a backup
 * directory is outside input as soon as it sits on a disk.
 *
 * Once per process: a database in a temp dir with collection "c" (8 points
 * with metadata) and one real backup of it. Per input: its backup.json is
 * replaced by the input, then verify and list run. Byte 0 bit 0: first
 * recompute "self_xxh3" the way backup.c does; bit 1: also set each file
 * entry's size and xxh3 from the real file of that path in the backup (when
 * there is one, path without ".."). So the fuzzer reaches the checks behind
 * the checksums: paths, stray files, the copy opening as a collection, the
 * vector count.
 *
 * Checked beyond "no crash, no sanitizer report, no leak": errors carry a
 * message; a verify that passes reports the collection's real vector count;
 * the unmodified manifest verifies (first input of every run); list always
 * succeeds and shows the backup (a damaged one included, or skipped, but
 * never a failure of the whole list). */
#define XXH_STATIC_LINKING_ONLY
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "dvecdb.h"

static char root[256], mpath[512];
static dv_db *db;
static uint8_t *orig;
static size_t orig_len;
static char backup_id[64];
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
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(orig);
}

static void write_manifest(const uint8_t *b, size_t n)
{
    FILE *fp = fopen(mpath, "wb");
    if (!fp)
        abort();
    if (n && fwrite(b, 1, n, fp) != n)
        abort();
    fclose(fp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/dv-fuzz-backup-XXXXXX", base);
    if (!mkdtemp(root))
        abort();
    atexit(teardown);
    dv_db_options o;
    dv_db_options_init(&o);
    o.fsync = DV_FSYNC_NEVER;
    o.n_threads = 1;
    dv_err err = {0};
    if (dv_db_open(root, &o, &db, &err) != DV_OK)
        goto fail;
    dv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "c");
    cfg.dim = 4;
    cfg.metric = DV_METRIC_EUCLIDEAN;
    cfg.m = 4;
    cfg.ef_construction = 16;
    if (dv_coll_create(db, &cfg, &err) != DV_OK)
        goto fail;
    dv_coll *c = NULL;
    if (dv_coll_open(db, "c", &c, &err) != DV_OK)
        goto fail;
    char ids[8][16];
    float v[8][4];
    dv_point pts[8];
    for (int i = 0; i < 8; i++) {
        snprintf(ids[i], sizeof ids[i], "p%d", i);
        for (int d = 0; d < 4; d++)
            v[i][d] = (float)(i * 4 + d);
        pts[i] = (dv_point){ids[i], v[i], "{\"k\": 1}", 8};
    }
    if (dv_coll_upsert(c, pts, 8, &err) != DV_OK)
        goto fail;
    dv_coll_close(c);
    dv_backup_info bi;
    if (dv_backup_create(db, "c", "manual", &bi, &err) != DV_OK)
        goto fail;
    snprintf(backup_id, sizeof backup_id, "%s", bi.backup_id);
    snprintf(mpath, sizeof mpath, "%s/.backups/c/%s/backup.json", root, backup_id);
    FILE *fp = fopen(mpath, "rb");
    if (!fp)
        abort();
    orig = malloc(1 << 20);
    orig_len = fread(orig, 1, 1 << 20, fp);
    fclose(fp);
    if (getenv("FUZZ_BACKUP_PRINT")) /* to make seeds from a real manifest */
        fwrite(orig, 1, orig_len, stdout);
    return 0;
fail:
    fprintf(stderr, "fuzz_backup: setup: %s\n", err.msg);
    abort();
}

/* self_xxh3 as backup.c's manifest_self_hash computes it, from the JSON
 * fields; NULL when the fields do not have the shape it hashes. */
/* Size and XXH3 of <backup dir>/<rel>; -1 if it cannot be read. */
static int real_file(const char *rel, uint64_t *size, uint64_t *h)
{
    if (strstr(rel, ".."))
        return -1;
    char p[1200];
    snprintf(p, sizeof p, "%.*s/%s", (int)(strlen(mpath) - strlen("/backup.json")), mpath, rel);
    FILE *fp = fopen(p, "rb");
    if (!fp)
        return -1;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad)
        return -1;
    *size = n;
    *h = XXH3_64bits(buf, n);
    return 0;
}

static char *fix_self(const uint8_t *b, size_t n, int fix_files)
{
    json_t *o = json_loadb((const char *)b, n, 0, NULL);
    if (fix_files && json_is_array(json_object_get(o, "files"))) {
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(o, "files"), i, f) {
            const char *p = json_string_value(json_object_get(f, "path"));
            uint64_t sz, h;
            if (!json_is_object(f) || !p || real_file(p, &sz, &h) != 0)
                continue;
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
            json_object_set_new(f, "size", json_integer((json_int_t)sz));
            json_object_set_new(f, "xxh3", json_string(hex));
        }
    }
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *reason = json_string_value(json_object_get(o, "reason"));
    json_t *ca = json_object_get(o, "created_at_ms"), *vc = json_object_get(o, "vector_count"),
           *sb = json_object_get(o, "size_bytes"), *files = json_object_get(o, "files");
    char *out = NULL;
    if (!name || strlen(name) > DV_NAME_MAX || !reason || strlen(reason) > 31 || !json_is_integer(ca) ||
        !json_is_integer(vc) || !json_is_integer(sb) || !json_is_array(files))
        goto done;
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_64bits_reset(&st);
    char line[DV_NAME_MAX + 160];
    int k = snprintf(line, sizeof line, "dvecdb-backup 1\n%s\n%s\n%lld\n%llu\n%llu\n", name, reason,
                     (long long)json_integer_value(ca), (unsigned long long)json_integer_value(vc),
                     (unsigned long long)json_integer_value(sb));
    XXH3_64bits_update(&st, line, (size_t)k);
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) {
        const char *p = json_string_value(json_object_get(f, "path"));
        const char *hx = json_string_value(json_object_get(f, "xxh3"));
        json_t *sz = json_object_get(f, "size");
        if (!p || !hx || !json_is_integer(sz))
            goto done;
        unsigned long long h = strtoull(hx, NULL, 16);
        k = snprintf(line, sizeof line, "\t%llu\t%016llx\n", (unsigned long long)json_integer_value(sz), h);
        XXH3_64bits_update(&st, p, strlen(p));
        XXH3_64bits_update(&st, line, (size_t)k);
    }
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH3_64bits_digest(&st));
    json_object_set_new(o, "self_xxh3", json_string(hex));
    out = json_dumps(o, JSON_COMPACT);
done:
    json_decref(o);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dv_err err = {0};
    dv_backup_info bi;
    if (n_run++ == 0) {
        /* The untouched manifest verifies: the harness is sound. */
        write_manifest(orig, orig_len);
        if (dv_backup_verify(db, "c", backup_id, &bi, &err) != DV_OK || bi.vector_count != 8) {
            fprintf(stderr, "fuzz_backup: the real backup does not verify: %s\n", err.msg);
            abort();
        }
    }
    if (n_run % 4096 == 0) {
        char p[400];
        snprintf(p, sizeof p, "%s/audit.log", root);
        if (truncate(p, 0) != 0) { /* verify appends an audit line each time */
        }
    }
    if (size < 1)
        return 0;
    char *fixed = (data[0] & 1) ? fix_self(data + 1, size - 1, data[0] & 2) : NULL;
    if (fixed)
        write_manifest((const uint8_t *)fixed, strlen(fixed));
    else
        write_manifest(data + 1, size - 1);
    free(fixed);

    dv_code rc = dv_backup_verify(db, "c", backup_id, &bi, &err);
    if (rc != DV_OK && (err.code != rc || !err.msg[0]))
        abort();
    if (rc == DV_OK && bi.vector_count != 8)
        abort(); /* the copy holds 8 vectors: a manifest saying otherwise must fail */
    dv_backup_info *list = NULL;
    size_t n = 0;
    if (dv_backup_list(db, "c", &list, &n, &err) != DV_OK) {
        fprintf(stderr, "fuzz_backup: list failed over one bad manifest: %s\n", err.msg);
        abort();
    }
    if (n != 1 || strcmp(list[0].backup_id, backup_id) != 0)
        abort(); /* a damaged backup is listed, never hidden */
    dv_free(list);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "fuzz_backup: verify rc=%d %s\n", rc, rc ? err.msg : "");
    return 0;
}
