/* fuzz_readers.c - libFuzzer target for the ingest input readers of
 * vectordb-cli (cli/ingest_readers.c: JSONL, CSV, .npy, .fvecs), which read
 * files users hand us.
 *
 * Input: byte 0 picks the format (mod 5: auto-detect, jsonl, csv, npy,
 * fvecs); the rest is written to a temp file and read to the end (at most
 * 4096 records).
 *
 * Checked beyond "no crash, no sanitizer report, no leak":
 *  - records are numbered 0, 1, 2, ...; a malformed record carries an error
 *    and no vector; every vector has dim >= 1 and only finite values;
 *  - resuming is exact: rd_seek to the position saved after the first
 *    record (rd_tell, record number, line) yields the same records as the
 *    uninterrupted read (the property ingest checkpoints rely on). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "../../cli/cli.h"

#define MAX_RECORDS 4096

static char path[300];

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/dv-fuzz-readers-%d", base, (int)getpid());
    atexit(remove_file);
    return 0;
}

/* What a record says, as one hash (id, vector, text, metadata, error-ness). */
static uint64_t rec_hash(const rd_record *r)
{
    XXH64_state_t st, *s = &st;
    XXH64_reset(s, r->recno);
    if (r->id)
        XXH64_update(s, r->id, strlen(r->id) + 1);
    if (r->vec)
        XXH64_update(s, r->vec, (size_t)r->dim * sizeof(float));
    if (r->text)
        XXH64_update(s, r->text, strlen(r->text) + 1);
    if (r->metadata) {
        char *m = json_dumps(r->metadata, JSON_COMPACT | JSON_SORT_KEYS);
        if (m) {
            XXH64_update(s, m, strlen(m));
            free(m);
        }
    }
    uint8_t e = r->error != NULL;
    XXH64_update(s, &e, 1);
    return XXH64_digest(s);
}

static void check_record(const rd_record *r, uint64_t want_recno)
{
    if (r->recno != want_recno)
        abort();
    if (r->error) {
        if (r->vec)
            abort(); /* a malformed record carries no vector */
        return;
    }
    if (r->vec) {
        if (r->dim == 0)
            abort();
        for (uint32_t i = 0; i < r->dim; i++)
            if (!isfinite(r->vec[i]))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const rd_format fmts[5] = {RD_AUTO, RD_JSONL, RD_CSV, RD_NPY, RD_FVECS};
    rd_format fmt = fmts[data[0] % 5];
    FILE *fp = fopen(path, "wb");
    if (!fp)
        abort();
    if (size > 1 && fwrite(data + 1, 1, size - 1, fp) != size - 1)
        abort();
    fclose(fp);

    rd_reader *r = (rd_reader *)(uintptr_t)0x1;
    dv_err err = {0};
    dv_code rc = rd_open(path, fmt, &r, &err);
    if (rc != DV_OK) {
        if (r != (rd_reader *)(uintptr_t)0x1 || err.code != rc || !err.msg[0])
            abort();
        return 0;
    }
    uint64_t hashes[MAX_RECORDS];
    uint64_t tell1 = 0, line1 = 0;
    size_t n = 0;
    rd_record rec;
    memset(&rec, 0, sizeof rec);
    int k = 0;
    while (n < MAX_RECORDS && (k = rd_next(r, &rec, &err)) == 1) {
        check_record(&rec, n);
        hashes[n++] = rec_hash(&rec);
        if (n == 1) {
            tell1 = rd_tell(r);
            line1 = rd_line(r);
        }
    }
    uint64_t total = rd_total(r);
    if (k == 0 && total && n != total && n < MAX_RECORDS)
        abort(); /* npy/fvecs: the header's count is what is read */
    rd_record_clear(&rec);

    rd_close(r);

    /* Resume after the first record with a new reader, as `ingest --resume`
     * does. */
    if (n >= 2 && k == 0) {
        if (rd_open(path, fmt, &r, &err) != DV_OK)
            abort();
        if (rd_seek(r, tell1, 1, line1, &err) != DV_OK) {
            fprintf(stderr, "fuzz_readers: seek to a saved position failed: %s\n", err.msg);
            abort();
        }
        size_t m = 1;
        while (m < n && (k = rd_next(r, &rec, &err)) == 1) {
            check_record(&rec, m);
            if (rec_hash(&rec) != hashes[m])
                abort();
            m++;
        }
        if (m != n)
            abort();
        rd_record_clear(&rec);
        rd_close(r);
    }
    return 0;
}
