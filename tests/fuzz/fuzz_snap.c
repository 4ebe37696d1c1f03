/* fuzz_snap.c - libFuzzer target for the snapshot files a collection is
 * recovered from (src/snap.c): manifest.json, vectors-<gen>.bin,
 * ids-<gen>.bin, index-<gen>.bin, and the orphan-import reader of a lone
 * vectors.bin.
 *
 * Input: byte 0 = mode (low 3 bits mod 5) | 0x80 "fix checksums"; the rest
 * is the file.
 *   0 manifest.json -> snap_manifest_read (fix: recompute "checksum")
 *   1 vectors file  -> snap_load_vectors + snap_verify
 *   2 ids file      -> snap_load_ids + snap_verify
 *   3 index file    -> snap_load_index + snap_verify
 *   4 vectors file  -> snap_read_vectors_file (no manifest)
 * For 1..3 a manifest is built in memory naming the file with its true size
 * and whole-file XXH3 (what a manifest from the same checkpoint would say),
 * with dim/metric/count taken from the file's header; "fix" also recomputes
 * the header and block checksums, so the fuzzer reaches the record parsers.
 *
 * Checked beyond "no crash, no sanitizer report, no leak": errors carry a
 * message; records arrive in slot order with sane lengths (every byte handed
 * out is read, so ASan sees any out-of-bounds pointer); a manifest that
 * reads back is written and read again to the same values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <xxhash.h>

#include "snap.h"

static char dir[256], dir2[300];
static volatile uint8_t sink;

static void cleanup(void)
{
    char p[400];
    const char *names[] = {"manifest.json", "vectors-1.bin", "ids-1.bin", "index-1.bin", "lone.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", dir2, names[i]);
        unlink(p);
    }
}

static void remove_dirs(void)
{
    cleanup();
    rmdir(dir2);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/dv-fuzz-snap-XXXXXX", base);
    if (!mkdtemp(dir))
        abort();
    snprintf(dir2, sizeof dir2, "%s/again", dir);
    if (mkdir(dir2, 0700) != 0)
        abort();
    atexit(remove_dirs);
    return 0;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        abort();
    if (n && fwrite(b, 1, n, fp) != n)
        abort();
    fclose(fp);
}

/* The container of src/snap.c: 64-byte header (XXH3 of bytes 0..55 at 56),
 * body, then one XXH3 per block of the body. */
static void fix_container(uint8_t *b, size_t n)
{
    if (n < 64)
        return;
    uint64_t body = get64(b + 32);
    uint32_t bs = get32(b + 40);
    if (bs && bs <= (1u << 24) && body <= n) {
        uint64_t nb = (body + bs - 1) / bs;
        if (64 + body + 8 * nb == n)
            for (uint64_t i = 0; i < nb; i++) {
                uint64_t off = i * bs, len = body - off < bs ? body - off : bs;
                put64(b + 64 + body + 8 * i, XXH3_64bits(b + 64 + off, (size_t)len));
            }
    }
    put64(b + 56, XXH3_64bits(b, 56));
}

/* manifest.json's "checksum": XXH3 of the compact key-sorted dump without it. */
static char *fix_manifest(const uint8_t *b, size_t n)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)b, n, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    json_object_del(o, "checksum");
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s) {
        json_decref(o);
        return NULL;
    }
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH3_64bits(s, strlen(s)));
    free(s);
    json_object_set_new(o, "checksum", json_string(hex));
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int same_manifest(const snap_manifest *a, const snap_manifest *b)
{
    if (strcmp(a->cfg.name, b->cfg.name) || a->cfg.dim != b->cfg.dim || a->cfg.metric != b->cfg.metric ||
        a->cfg.vtype != b->cfg.vtype || a->cfg.m != b->cfg.m || a->cfg.ef_construction != b->cfg.ef_construction ||
        a->cfg.ef_search != b->cfg.ef_search || a->cfg.max_layer != b->cfg.max_layer ||
        a->created_at_ms != b->created_at_ms || a->gen != b->gen || a->wal_seq != b->wal_seq ||
        a->n_slots != b->n_slots || a->n_live != b->n_live)
        return 0;
    for (int k = 0; k < SNAP_N_FILES; k++)
        if (a->files[k].present != b->files[k].present || strcmp(a->files[k].name, b->files[k].name) ||
            a->files[k].size != b->files[k].size || a->files[k].xxh3 != b->files[k].xxh3)
            return 0;
    return 1;
}

typedef struct seen {
    uint64_t next;
    uint32_t dim;
} seen;

static dv_code on_vec(void *ctx, uint64_t slot, int live, const float *v, dv_err *err)
{
    (void)err;
    seen *s = ctx;
    if (slot != s->next++ || (live != 0 && live != 1))
        abort();
    uint8_t x = 0;
    for (uint32_t i = 0; i < s->dim; i++)
        x ^= ((const uint8_t *)&v[i])[0];
    sink = x;
    return DV_OK;
}

static dv_code on_id(void *ctx, uint64_t slot, int live, const char *id, size_t id_len, const char *meta,
                     size_t meta_len, dv_err *err)
{
    (void)err;
    seen *s = ctx;
    if (slot != s->next++ || id_len > DV_ID_MAX || meta_len > DV_METADATA_MAX || (live && id_len == 0))
        abort();
    uint8_t x = 0;
    for (size_t i = 0; i < id_len; i++)
        x ^= (uint8_t)id[i];
    for (size_t i = 0; i < meta_len; i++)
        x ^= (uint8_t)meta[i];
    sink = x;
    return DV_OK;
}

static void check_err(dv_code rc, const dv_err *e)
{
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "fuzz_snap: rc=%d %s\n", rc, rc ? e->msg : "");
    if (rc != DV_OK && (e->code != rc || !e->msg[0]))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = (data[0] & 7) % 5, fix = data[0] & 0x80;
    size_t n = size - 1;
    uint8_t *b = malloc(n ? n : 1);
    if (n)
        memcpy(b, data + 1, n);
    char path[400];
    dv_err err = {0};
    dv_code rc;
    cleanup();

    if (mode == 0) {
        snprintf(path, sizeof path, "%s/manifest.json", dir);
        char *fixed = fix ? fix_manifest(b, n) : NULL;
        if (fixed)
            write_file(path, (const uint8_t *)fixed, strlen(fixed));
        else
            write_file(path, b, n);
        free(fixed);
        snap_manifest m, m2;
        rc = snap_manifest_read(dir, &m, &err);
        check_err(rc, &err);
        if (rc == DV_OK) {
            if (snap_manifest_write(dir2, &m, &err) != DV_OK || snap_manifest_read(dir2, &m2, &err) != DV_OK) {
                fprintf(stderr, "fuzz_snap: manifest round trip: %s\n", err.msg);
                abort();
            }
            if (!same_manifest(&m, &m2))
                abort();
        }
        free(b);
        return 0;
    }

    if (fix)
        fix_container(b, n);
    if (mode == 4) {
        snprintf(path, sizeof path, "%s/lone.bin", dir);
        write_file(path, b, n);
        uint32_t dim = 0;
        dv_metric metric;
        uint64_t count = 0;
        float *vecs = NULL;
        rc = snap_read_vectors_file(path, &dim, &metric, &count, &vecs, &err);
        check_err(rc, &err);
        if (rc == DV_OK) {
            if (dim == 0 || dim > DV_DIM_MAX || (unsigned)metric > DV_METRIC_MANHATTAN)
                abort();
            uint8_t x = 0;
            for (uint64_t i = 0; i < count * dim; i++)
                x ^= ((const uint8_t *)&vecs[i])[0];
            sink = x;
            free(vecs);
        }
        free(b);
        return 0;
    }

    static const char *const kind[4] = {"", "vectors", "ids", "index"};
    int k = mode == 1 ? SNAP_VECTORS : mode == 2 ? SNAP_IDS : SNAP_INDEX;
    snap_manifest m;
    memset(&m, 0, sizeof m);
    snprintf(m.cfg.name, sizeof m.cfg.name, "f");
    uint32_t hdim = n >= 64 ? get32(b + 12) : 0;
    uint32_t hmetric = n >= 64 ? get32(b + 20) : 0;
    m.cfg.dim = hdim >= 1 && hdim <= DV_DIM_MAX ? hdim : 1;
    m.cfg.metric = hmetric <= DV_METRIC_MANHATTAN ? (dv_metric)hmetric : DV_METRIC_COSINE;
    m.gen = 1;
    m.n_slots = n >= 64 ? get64(b + 24) : 0;
    snprintf(m.files[k].name, sizeof m.files[k].name, "%s-1.bin", kind[mode]);
    m.files[k].present = 1;
    m.files[k].size = n;
    m.files[k].xxh3 = XXH3_64bits(b, n);
    snprintf(path, sizeof path, "%s/%s", dir, m.files[k].name);
    write_file(path, b, n);
    free(b);

    seen s = {0, m.cfg.dim};
    if (k == SNAP_VECTORS) {
        rc = snap_load_vectors(dir, &m, on_vec, &s, &err);
        check_err(rc, &err);
        if (rc == DV_OK && s.next != m.n_slots)
            abort();
    } else if (k == SNAP_IDS) {
        rc = snap_load_ids(dir, &m, on_id, &s, &err);
        check_err(rc, &err);
        if (rc == DV_OK && s.next != m.n_slots)
            abort();
    } else {
        uint8_t *ib = NULL;
        size_t il = 0;
        rc = snap_load_index(dir, &m, &ib, &il, &err);
        check_err(rc, &err);
        if (rc == DV_OK) {
            if (il > n)
                abort();
            uint8_t x = 0;
            for (size_t i = 0; i < il; i++)
                x ^= ib[i];
            sink = x;
            free(ib);
        }
    }
    dv_code vr = snap_verify(dir, &m, &err);
    check_err(vr, &err);
    /* verify checks what the load checks but the records: a file that
     * loads also verifies */
    if (rc == DV_OK && vr != DV_OK)
        abort();
    return 0;
}
