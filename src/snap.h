/* snap.h - snapshot files of a collection (vectors.bin, ids/payloads, index.bin,
 * manifest.json). Formats at the top of snap.c and in docs/format.md.
 * Written temp -> fsync -> rename -> fsync dir; immutable once in place.
 *
 * A checkpoint writes one *generation*: vectors-<gen>.bin, ids-<gen>.bin
 * (ids + metadata text) and index-<gen>.bin (the HNSW graph), then
 * manifest.json naming that generation, each file's size and XXH3-64, and
 * the WAL sequence number the snapshot covers. manifest.json is replaced
 * atomically and is the commit point: a crash before its rename leaves the
 * previous generation in force; files of other generations are debris that
 * snap_cleanup removes. Collection-level code (coll.c) decides what goes in;
 * this module only encodes, writes, validates and decodes.
 */
#ifndef DV_SNAP_H
#define DV_SNAP_H
#include <stddef.h>
#include <stdint.h>
#include "dvecdb.h"

/* Read a vectors.bin file alone (orphan import of our own format without a
 * manifest): validates header and checksum; *vecs is n x dim, malloc'd. */
dv_code snap_read_vectors_file(const char *path, uint32_t *dim, dv_metric *metric, uint64_t *n, float **vecs,
                               dv_err *err);

#define SNAP_MANIFEST "manifest.json"
#define SNAP_MANIFEST_VERSION 1
#define SNAP_FILE_VERSION 1

enum { SNAP_VECTORS = 0, SNAP_IDS = 1, SNAP_INDEX = 2, SNAP_N_FILES = 3 };

typedef struct snap_file_ref {
    int present;
    char name[64]; /* e.g. "vectors-3.bin" (no directory) */
    uint64_t size;
    uint64_t xxh3; /* XXH3-64 of the whole file */
} snap_file_ref;

typedef struct snap_manifest {
    dv_coll_config cfg; /* defaults filled in */
    int64_t created_at_ms;
    uint64_t gen;     /* 0: no snapshot files yet (empty collection) */
    uint64_t wal_seq; /* WAL records with seq <= this are in the snapshot */
    uint64_t n_slots; /* records in vectors/ids files (live + tombstoned) */
    uint64_t n_live;
    snap_file_ref files[SNAP_N_FILES];
} snap_manifest;

/* Write dir/manifest.json atomically (the checkpoint's commit point). */
dv_code snap_manifest_write(const char *dir, const snap_manifest *m, dv_err *err);
/* Parse and validate dir/manifest.json. DV_ENOTFOUND if absent,
 * DV_ECORRUPT (file, position) if malformed or its checksum fails. */
dv_code snap_manifest_read(const char *dir, snap_manifest *m, dv_err *err);

/* What a generation is written from. vector(slot) may return NULL for a
 * tombstoned slot whose vector is gone (zeros are written). record() returns
 * 1 for a live slot (id and meta set; meta may be NULL) and 0 for a
 * tombstone. index may be NULL (no index file: it is rebuilt at load). */
typedef struct snap_source {
    uint64_t n_slots;
    void *ctx;
    const float *(*vector)(void *ctx, uint64_t slot);
    int (*record)(void *ctx, uint64_t slot, const char **id, size_t *id_len, const char **meta, size_t *meta_len);
    const uint8_t *index;
    size_t index_len;
} snap_source;

/* Write the files of generation gen into dir (each temp -> fsync -> rename,
 * then one directory fsync) and fill m->files and m->n_slots. The manifest
 * is not touched: the caller commits with snap_manifest_write. */
dv_code snap_write_gen(const char *dir, const dv_coll_config *cfg, uint64_t gen, const snap_source *src,
                       snap_manifest *m, dv_err *err);

/* Decoding callbacks: return DV_OK to continue. */
typedef dv_code (*snap_vec_fn)(void *ctx, uint64_t slot, int live, const float *v, dv_err *err);
typedef dv_code (*snap_id_fn)(void *ctx, uint64_t slot, int live, const char *id, size_t id_len, const char *meta,
                              size_t meta_len, dv_err *err);

/* Stream the vectors file named by m, checking header, size, the record
 * count against m->n_slots (before any record is handed out), every block
 * checksum (before fn sees a byte of the block) and the whole-file checksum
 * (before DV_OK is returned). DV_ECORRUPT names file and offset. v points
 * into the read buffer: valid only during the call. */
dv_code snap_load_vectors(const char *dir, const snap_manifest *m, snap_vec_fn fn, void *ctx, dv_err *err);
/* Same for the ids file (id and metadata text per slot), decoded as it
 * streams: id and meta are valid only during the call. */
dv_code snap_load_ids(const char *dir, const snap_manifest *m, snap_id_fn fn, void *ctx, dv_err *err);
/* Validated body of the index file (hnsw_encode_graph bytes), malloc'd.
 * DV_ENOTFOUND when the manifest names none. */
dv_code snap_load_index(const char *dir, const snap_manifest *m, uint8_t **buf, size_t *len, dv_err *err);
/* Re-read every file the manifest names and check sizes and checksums
 * (backup verification). */
dv_code snap_verify(const char *dir, const snap_manifest *m, dv_err *err);
/* Remove *.tmp files and generation files the manifest does not name. */
dv_code snap_cleanup(const char *dir, const snap_manifest *m, dv_err *err);
#endif
