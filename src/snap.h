/* snap.h - snapshot files of a collection (vectors.bin, ids/payloads, index.bin,
 * manifest.json). Formats at the top of snap.c and in docs/format.md.
 * Written temp -> fsync -> rename -> fsync dir; immutable once in place. */
#ifndef DV_SNAP_H
#define DV_SNAP_H
#include <stddef.h>
#include <stdint.h>
#include "dvecdb.h"

/* Read a vectors.bin file alone (orphan import of our own format without a
 * manifest): validates header and checksum; *vecs is n x dim, malloc'd. */
dv_code snap_read_vectors_file(const char *path, uint32_t *dim, dv_metric *metric, uint64_t *n,
                               float **vecs, dv_err *err);
#endif
