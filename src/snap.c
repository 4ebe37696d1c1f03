/*
 * snap.c - snapshot files of a collection: encode, write, validate, decode.
 *
 * Owns the formats of vectors-<gen>.bin, ids-<gen>.bin, index-<gen>.bin and
 * manifest.json (docs/format.md has the same tables). Integers are little
 * endian, written through explicit helpers; no struct is ever written.
 *
 * Data files share one container:
 *
 *   off  size  field
 *   0    8     magic: "DVVECS01" vectors | "DVIDS001" ids | "DVINDX01" index
 *   8    4     format version (SNAP_FILE_VERSION = 1)
 *   12   4     dim (vectors; 0 otherwise)
 *   16   4     vector type (dv_vtype; 0 = Float32)
 *   20   4     metric (dv_metric)
 *   24   8     count: records in the body (index: 0)
 *   32   8     body_size in bytes
 *   40   4     block_size (65536)
 *   44   4     record_size (vectors: 4 + 4*dim; 0 = variable)
 *   48   8     generation
 *   56   8     XXH3-64 of bytes 0..55
 *   64   body_size   body
 *   ...  8 * ceil(body_size / block_size)   XXH3-64 of each body block
 *
 * A file is valid when its size is exactly 64 + body_size + 8 * n_blocks, the
 * header checksum matches, and every block matches its checksum; the
 * manifest adds the size and XXH3-64 of the whole file. Block checksums are
 * what lets an error name an offset ("block at byte 131072").
 *
 * Bodies:
 *   vectors: count records of [u32 flags (bit 0 = live)][dim x f32]
 *   ids:     count records of [u8 flags (bit 0 = live)][u16 id_len][id]
 *            [u32 meta_len][meta]   (tombstones: id_len = meta_len = 0)
 *   index:   the bytes of hnsw_encode_graph (its own magic and checksum)
 *
 * manifest.json: a JSON object (keys in docs/format.md) with a "checksum"
 * member: the XXH3-64 (16 hex digits) of the compact, key-sorted JSON dump
 * of the object without that member.
 *
 * Invariants: a file is renamed into place only after it was fsynced; a
 * generation's files are all renamed and their directory fsynced before the
 * manifest naming them is written; once in place a file is never modified.
 */
#include "snap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "err.h"
#include "io.h"

/* Bulk hashing (file bodies, blocks) goes through libxxhash's run-time CPU
 * dispatch (AVX2 / AVX-512 when present; the hash values are the same by
 * design): the plain entry points run the library's baseline SSE2 build,
 * which hashed 500 MB of vectors in 2 x 33 ms at open against 17 + 9 ms. */
#if defined(__x86_64__) && defined(__has_include)
#if __has_include(<xxh_x86dispatch.h>)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#define SNAP_XXH3_DISPATCH 1
#endif
#endif
#ifdef SNAP_XXH3_DISPATCH
#define bulk_xxh3 XXH3_64bits_dispatch
#define bulk_xxh3_update XXH3_64bits_update_dispatch
#else
#define bulk_xxh3 XXH3_64bits
#define bulk_xxh3_update XXH3_64bits_update
#endif

#define HDR_SIZE 64
#define BLOCK_SIZE 65536u
/* Write buffer and read chunk: a multiple of BLOCK_SIZE. */
#define CHUNK (16u * BLOCK_SIZE)

static const char *const file_magic[SNAP_N_FILES] = {"DVVECS01", "DVIDS001", "DVINDX01"};
static const char *const file_kind[SNAP_N_FILES] = {"vectors", "ids", "index"};

/* ---- little-endian helpers ------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(p, u);
}

static float get_f32(const uint8_t *p)
{
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- header ---------------------------------------------------------- */

typedef struct file_hdr {
    int kind;
    uint32_t version, dim, vtype, metric;
    uint64_t count, body_size;
    uint32_t block_size, record_size;
    uint64_t gen;
} file_hdr;

static void hdr_encode(const file_hdr *h, uint8_t out[HDR_SIZE])
{
    memset(out, 0, HDR_SIZE);
    memcpy(out, file_magic[h->kind], 8);
    put_u32(out + 8, h->version);
    put_u32(out + 12, h->dim);
    put_u32(out + 16, h->vtype);
    put_u32(out + 20, h->metric);
    put_u64(out + 24, h->count);
    put_u64(out + 32, h->body_size);
    put_u32(out + 40, h->block_size);
    put_u32(out + 44, h->record_size);
    put_u64(out + 48, h->gen);
    put_u64(out + 56, XXH3_64bits(out, 56));
}

static uint64_t n_blocks_of(uint64_t body_size, uint32_t block_size)
{
    return (body_size + block_size - 1) / block_size;
}

/* Decode and check a header read from `path` as file kind `kind`. */
static dv_code hdr_decode(const uint8_t in[HDR_SIZE], int kind, const char *path, uint64_t file_size, file_hdr *h,
                          dv_err *err)
{
    if (memcmp(in, file_magic[kind], 8) != 0)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad magic at offset 0 (not a %s file)", path, file_kind[kind]);
    if (get_u64(in + 56) != XXH3_64bits(in, 56))
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: header checksum mismatch at offset 0 (bytes 0..63)", path);
    h->kind = kind;
    h->version = get_u32(in + 8);
    h->dim = get_u32(in + 12);
    h->vtype = get_u32(in + 16);
    h->metric = get_u32(in + 20);
    h->count = get_u64(in + 24);
    h->body_size = get_u64(in + 32);
    h->block_size = get_u32(in + 40);
    h->record_size = get_u32(in + 44);
    h->gen = get_u64(in + 48);
    if (h->version != SNAP_FILE_VERSION)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: unsupported format version %u at offset 8", path, h->version);
    if (h->block_size == 0 || h->block_size > (1u << 24) || CHUNK % h->block_size != 0)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad block size %u at offset 40", path, h->block_size);
    if (h->body_size > UINT64_MAX / 2)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad body size at offset 32", path);
    uint64_t want = HDR_SIZE + h->body_size + 8 * n_blocks_of(h->body_size, h->block_size);
    if (file_size != want)
        return dv_errorf(err, DV_ECORRUPT,
                         "snap: %s: file is %" PRIu64 " bytes, header says %" PRIu64
                         " (truncated or extended at offset %" PRIu64 ")",
                         path, file_size, want, file_size < want ? file_size : want);
    if (kind == SNAP_VECTORS) {
        if (h->dim == 0 || h->dim > DV_DIM_MAX || h->record_size != 4 + 4 * h->dim)
            return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad dim %u / record size %u at offset 12", path, h->dim,
                             h->record_size);
        if (h->body_size / h->record_size != h->count || h->body_size % h->record_size != 0)
            return dv_errorf(err, DV_ECORRUPT, "snap: %s: body size %" PRIu64 " does not hold %" PRIu64 " records",
                             path, h->body_size, h->count);
        if (h->vtype != DV_VTYPE_F32)
            return dv_errorf(err, DV_ECORRUPT, "snap: %s: unsupported vector type %u at offset 16", path, h->vtype);
        if (h->metric > DV_METRIC_MANHATTAN)
            return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad metric %u at offset 20", path, h->metric);
    }
    return DV_OK;
}

/* ---- writer ---------------------------------------------------------- */

typedef struct writer {
    int fd;
    const char *path;
    uint8_t *buf;
    size_t len;
    XXH3_state_t *file_st; /* whole file */
    XXH3_state_t *blk_st;  /* current body block */
    uint64_t body_off;
    uint64_t *blk;
    size_t n_blk, blk_cap;
    uint64_t file_size;
} writer;

static dv_code w_flush(writer *w, dv_err *err)
{
    if (w->len == 0)
        return DV_OK;
    bulk_xxh3_update(w->file_st, w->buf, w->len);
    if (io_write_full(w->fd, w->buf, w->len) != 0) {
        int e = errno;
        return dv_errorf(err, dv_code_from_errno(e), "snap: write %s: %s", w->path, strerror(e));
    }
    w->file_size += w->len;
    w->len = 0;
    return DV_OK;
}

static dv_code w_raw(writer *w, const void *data, size_t n, dv_err *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        size_t room = CHUNK - w->len, take = n < room ? n : room;
        memcpy(w->buf + w->len, p, take);
        w->len += take;
        p += take;
        n -= take;
        if (w->len == CHUNK) {
            dv_code rc = w_flush(w, err);
            if (rc)
                return rc;
        }
    }
    return DV_OK;
}

/* Body bytes: also feed the per-block checksums. */
static dv_code w_body(writer *w, const void *data, size_t n, dv_err *err)
{
    const uint8_t *p = data;
    size_t left = n;
    while (left > 0) {
        uint64_t in_blk = w->body_off % BLOCK_SIZE;
        size_t take = BLOCK_SIZE - in_blk < left ? (size_t)(BLOCK_SIZE - in_blk) : left;
        bulk_xxh3_update(w->blk_st, p, take);
        w->body_off += take;
        p += take;
        left -= take;
        if (w->body_off % BLOCK_SIZE == 0) {
            if (w->n_blk == w->blk_cap) {
                size_t cap = w->blk_cap ? 2 * w->blk_cap : 64;
                uint64_t *nb = realloc(w->blk, cap * sizeof *nb);
                if (!nb)
                    return dv_errorf(err, DV_ENOMEM, "snap: write %s: out of memory", w->path);
                w->blk = nb;
                w->blk_cap = cap;
            }
            w->blk[w->n_blk++] = XXH3_64bits_digest(w->blk_st);
            XXH3_64bits_reset(w->blk_st);
        }
    }
    return w_raw(w, data, n, err);
}

/* Finish the body: the last partial block's checksum, then the trailer. */
static dv_code w_trailer(writer *w, dv_err *err)
{
    if (w->body_off % BLOCK_SIZE != 0) {
        if (w->n_blk == w->blk_cap) {
            uint64_t *nb = realloc(w->blk, (w->blk_cap + 1) * sizeof *nb);
            if (!nb)
                return dv_errorf(err, DV_ENOMEM, "snap: write %s: out of memory", w->path);
            w->blk = nb;
            w->blk_cap++;
        }
        w->blk[w->n_blk++] = XXH3_64bits_digest(w->blk_st);
    }
    for (size_t i = 0; i < w->n_blk; i++) {
        uint8_t b[8];
        put_u64(b, w->blk[i]);
        dv_code rc = w_raw(w, b, 8, err);
        if (rc)
            return rc;
    }
    return w_flush(w, err);
}

typedef struct gen_ctx {
    const char *dir;
    const dv_coll_config *cfg;
    uint64_t gen;
    const snap_source *src;
} gen_ctx;

/* Body encoders, one per file kind. */
static dv_code body_vectors(writer *w, const gen_ctx *g, dv_err *err)
{
    uint32_t dim = g->cfg->dim;
    uint8_t *rec = malloc(4 + 4 * (size_t)dim);
    if (!rec)
        return dv_errorf(err, DV_ENOMEM, "snap: write %s: out of memory", w->path);
    dv_code rc = DV_OK;
    for (uint64_t s = 0; s < g->src->n_slots && rc == DV_OK; s++) {
        const char *id, *meta;
        size_t id_len, meta_len;
        int live = g->src->record(g->src->ctx, s, &id, &id_len, &meta, &meta_len);
        const float *v = g->src->vector(g->src->ctx, s);
        put_u32(rec, live ? 1u : 0u);
        for (uint32_t i = 0; i < dim; i++)
            put_f32(rec + 4 + 4 * (size_t)i, v ? v[i] : 0.0f);
        rc = w_body(w, rec, 4 + 4 * (size_t)dim, err);
    }
    free(rec);
    return rc;
}

static uint64_t ids_body_size(const snap_source *src)
{
    uint64_t total = 0;
    for (uint64_t s = 0; s < src->n_slots; s++) {
        const char *id, *meta;
        size_t id_len = 0, meta_len = 0;
        if (!src->record(src->ctx, s, &id, &id_len, &meta, &meta_len))
            id_len = meta_len = 0;
        if (!meta)
            meta_len = 0;
        total += 1 + 2 + id_len + 4 + meta_len;
    }
    return total;
}

static dv_code body_ids(writer *w, const gen_ctx *g, dv_err *err)
{
    for (uint64_t s = 0; s < g->src->n_slots; s++) {
        const char *id = NULL, *meta = NULL;
        size_t id_len = 0, meta_len = 0;
        int live = g->src->record(g->src->ctx, s, &id, &id_len, &meta, &meta_len);
        if (!live)
            id_len = meta_len = 0;
        if (!meta)
            meta_len = 0;
        uint8_t h[7];
        h[0] = live ? 1 : 0;
        put_u16(h + 1, (uint16_t)id_len);
        put_u32(h + 3, (uint32_t)meta_len);
        dv_code rc = w_body(w, h, 3, err);
        if (!rc && id_len)
            rc = w_body(w, id, id_len, err);
        if (!rc)
            rc = w_body(w, h + 3, 4, err);
        if (!rc && meta_len)
            rc = w_body(w, meta, meta_len, err);
        if (rc)
            return rc;
    }
    return DV_OK;
}

/* Write one file of the generation: temp -> fsync -> rename. The caller
 * fsyncs the directory once for all files of the generation. */
static dv_code write_one(const gen_ctx *g, int kind, snap_file_ref *ref, dv_err *err)
{
    char path[4096], tmp[4200], name[64];
    snprintf(name, sizeof name, "%s-%" PRIu64 ".bin", file_kind[kind], g->gen);
    if (snprintf(path, sizeof path, "%s/%s", g->dir, name) >= (int)sizeof path)
        return dv_errorf(err, DV_EINVAL, "snap: path too long: %s", g->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    file_hdr h = {.kind = kind,
                  .version = SNAP_FILE_VERSION,
                  .block_size = BLOCK_SIZE,
                  .gen = g->gen,
                  .vtype = (uint32_t)g->cfg->vtype,
                  .metric = (uint32_t)g->cfg->metric};
    if (kind == SNAP_VECTORS) {
        h.dim = g->cfg->dim;
        h.record_size = 4 + 4 * g->cfg->dim;
        h.count = g->src->n_slots;
        h.body_size = h.count * h.record_size;
    } else if (kind == SNAP_IDS) {
        h.count = g->src->n_slots;
        h.body_size = ids_body_size(g->src);
    } else {
        h.body_size = g->src->index_len;
    }

    writer w = {.fd = -1, .path = tmp};
    dv_code rc = DV_OK;
    w.buf = malloc(CHUNK);
    w.file_st = XXH3_createState();
    w.blk_st = XXH3_createState();
    if (!w.buf || !w.file_st || !w.blk_st) {
        rc = dv_errorf(err, DV_ENOMEM, "snap: write %s: out of memory", path);
        goto fail;
    }
    XXH3_64bits_reset(w.file_st);
    XXH3_64bits_reset(w.blk_st);
    /* A crash while writing leaves only this .tmp, removed by snap_cleanup. */
    w.fd = io_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w.fd < 0) {
        int e = errno;
        rc = dv_errorf(err, dv_code_from_errno(e), "snap: create %s: %s", tmp, strerror(e));
        goto fail;
    }
    uint8_t hb[HDR_SIZE];
    hdr_encode(&h, hb);
    rc = w_raw(&w, hb, HDR_SIZE, err);
    if (!rc) {
        if (kind == SNAP_VECTORS)
            rc = body_vectors(&w, g, err);
        else if (kind == SNAP_IDS)
            rc = body_ids(&w, g, err);
        else if (g->src->index_len)
            rc = w_body(&w, g->src->index, g->src->index_len, err);
    }
    if (!rc && w.body_off != h.body_size)
        rc = dv_errorf(err, DV_EINVAL, "snap: write %s: body is %" PRIu64 " bytes, expected %" PRIu64, path, w.body_off,
                       h.body_size);
    if (!rc)
        rc = w_trailer(&w, err);
    if (rc)
        goto fail;
    /* fsync before rename: a crash after the rename must not expose a name
     * bound to a partly written inode. */
    if (io_fsync(w.fd) != 0) {
        int e = errno;
        rc = dv_errorf(err, dv_code_from_errno(e), "snap: fsync %s: %s", tmp, strerror(e));
        goto fail;
    }
    io_close(w.fd);
    w.fd = -1;
    if (io_rename(tmp, path) != 0) {
        int e = errno;
        rc = dv_errorf(err, dv_code_from_errno(e), "snap: rename %s: %s", tmp, strerror(e));
        goto fail;
    }
    ref->present = 1;
    snprintf(ref->name, sizeof ref->name, "%s", name);
    ref->size = w.file_size;
    ref->xxh3 = XXH3_64bits_digest(w.file_st);
    free(w.buf);
    free(w.blk);
    XXH3_freeState(w.file_st);
    XXH3_freeState(w.blk_st);
    return DV_OK;
fail:
    if (w.fd >= 0) {
        io_close(w.fd);
        io_unlink(tmp); /* best effort; snap_cleanup removes it otherwise */
    }
    free(w.buf);
    free(w.blk);
    if (w.file_st)
        XXH3_freeState(w.file_st);
    if (w.blk_st)
        XXH3_freeState(w.blk_st);
    return rc;
}

dv_code snap_write_gen(const char *dir, const dv_coll_config *cfg, uint64_t gen, const snap_source *src,
                       snap_manifest *m, dv_err *err)
{
    gen_ctx g = {.dir = dir, .cfg = cfg, .gen = gen, .src = src};
    snap_file_ref refs[SNAP_N_FILES];
    memset(refs, 0, sizeof refs);
    for (int k = 0; k < SNAP_N_FILES; k++) {
        if (k == SNAP_INDEX && !src->index)
            continue;
        dv_code rc = write_one(&g, k, &refs[k], err);
        if (rc)
            return rc;
    }
    /* One directory fsync makes all three renames durable before the
     * manifest that names them can be: otherwise a crash could leave a
     * durable manifest pointing at files whose names were lost. */
    if (io_fsync_dir(dir) != 0) {
        int e = errno;
        return dv_errorf(err, dv_code_from_errno(e), "snap: fsync dir %s: %s", dir, strerror(e));
    }
    memcpy(m->files, refs, sizeof refs);
    m->gen = gen;
    m->n_slots = src->n_slots;
    return DV_OK;
}

/* ---- reader ---------------------------------------------------------- */

/* Called with consecutive validated pieces of the body. */
typedef dv_code (*body_fn)(void *ctx, const uint8_t *p, size_t n, dv_err *err);

/* Read piece: a multiple of the block size (which divides CHUNK). Small
 * enough that a piece read by pread is still in the L2 cache while its
 * blocks are hashed and fn decodes it: each byte comes from memory once. */
#define READ_PIECE (256u * 1024u)

/* Open path, validate header, size, every block checksum and (when ref is
 * set) the whole-file checksum against the manifest; stream the body
 * through fn. The blocks of a piece are checked before fn sees any of its
 * bytes, and each block is hashed for the whole-file checksum in the same
 * pass (while it is in cache). With dst set, the body is read straight into
 * dst (at least body_size bytes) instead of a bounce buffer; fn may be NULL.
 * check, when set, runs on the decoded header before any body byte is read. */
static dv_code read_file(const char *path, int kind, const snap_file_ref *ref, file_hdr *h,
                         dv_code (*check)(void *ctx, const file_hdr *h, dv_err *err), body_fn fn, void *ctx,
                         uint8_t *dst, dv_err *err)
{
    uint8_t *trailer = NULL, *own = NULL;
    XXH3_state_t *st = NULL;
    dv_code rc = DV_OK;
    int fd = io_open(path, O_RDONLY, 0);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return dv_errorf(err, DV_ECORRUPT, "snap: %s: missing (named by the manifest)", path);
        return dv_errorf(err, dv_code_from_errno(e), "snap: open %s: %s", path, strerror(e));
    }
    uint64_t size;
    if (io_fstat_size(fd, &size) != 0) {
        int e = errno;
        rc = dv_errorf(err, dv_code_from_errno(e), "snap: stat %s: %s", path, strerror(e));
        goto out;
    }
    if (ref && size != ref->size) {
        rc = dv_errorf(err, DV_ECORRUPT,
                       "snap: %s: file is %" PRIu64 " bytes, manifest says %" PRIu64
                       " (truncated or extended at offset %" PRIu64 ")",
                       path, size, ref->size, size < ref->size ? size : ref->size);
        goto out;
    }
    uint8_t hb[HDR_SIZE];
    if (size < HDR_SIZE) {
        rc = dv_errorf(err, DV_ECORRUPT, "snap: %s: truncated header (%" PRIu64 " bytes at offset 0)", path, size);
        goto out;
    }
    ssize_t r = io_pread_full(fd, hb, HDR_SIZE, 0);
    if (r != HDR_SIZE) {
        int e = r < 0 ? errno : EIO;
        rc = dv_errorf(err, dv_code_from_errno(e), "snap: read %s: %s", path, strerror(e));
        goto out;
    }
    rc = hdr_decode(hb, kind, path, size, h, err);
    if (!rc && check)
        rc = check(ctx, h, err);
    if (rc)
        goto out;
    uint64_t n_blk = n_blocks_of(h->body_size, h->block_size);
    size_t piece = h->block_size >= READ_PIECE ? h->block_size : READ_PIECE;
    uint8_t *buf = dst ? dst : (own = malloc(piece));
    trailer = malloc(n_blk * 8 + 1);
    if (ref)
        st = XXH3_createState();
    if (!buf || !trailer || (ref && !st)) {
        rc = dv_errorf(err, DV_ENOMEM, "snap: read %s: out of memory", path);
        goto out;
    }
    r = io_pread_full(fd, trailer, n_blk * 8, HDR_SIZE + h->body_size);
    if (r < 0 || (uint64_t)r != n_blk * 8) {
        int e = r < 0 ? errno : EIO;
        rc = dv_errorf(err, dv_code_from_errno(e), "snap: read %s: %s", path, strerror(e));
        goto out;
    }
    if (st) {
        XXH3_64bits_reset(st);
        XXH3_64bits_update(st, hb, HDR_SIZE);
    }
    for (uint64_t off = 0; off < h->body_size;) {
        size_t take = h->body_size - off < piece ? (size_t)(h->body_size - off) : piece;
        uint8_t *p = dst ? dst + off : buf;
        r = io_pread_full(fd, p, take, HDR_SIZE + off);
        if (r < 0 || (size_t)r != take) {
            int e = r < 0 ? errno : EIO;
            rc = dv_errorf(err, dv_code_from_errno(e), "snap: read %s at offset %" PRIu64 ": %s", path, HDR_SIZE + off,
                           strerror(e));
            goto out;
        }
        for (size_t b = 0; b < take; b += h->block_size) {
            size_t bl = take - b < h->block_size ? take - b : h->block_size;
            uint64_t bi = (off + b) / h->block_size;
            if (bulk_xxh3(p + b, bl) != get_u64(trailer + 8 * bi)) {
                rc =
                    dv_errorf(err, DV_ECORRUPT,
                              "snap: %s: checksum mismatch in block %" PRIu64 " (file offset %" PRIu64 "..%" PRIu64 ")",
                              path, bi, HDR_SIZE + off + b, HDR_SIZE + off + b + bl - 1);
                goto out;
            }
            if (st)
                bulk_xxh3_update(st, p + b, bl);
        }
        if (fn && (rc = fn(ctx, p, take, err)) != DV_OK)
            goto out;
        off += take;
    }
    if (st) {
        bulk_xxh3_update(st, trailer, n_blk * 8);
        if (XXH3_64bits_digest(st) != ref->xxh3) {
            rc = dv_errorf(err, DV_ECORRUPT, "snap: %s: whole-file checksum differs from the manifest's", path);
            goto out;
        }
    }
out:
    io_close(fd);
    free(own);
    free(trailer);
    if (st)
        XXH3_freeState(st);
    return rc;
}

/* Fixed-size vector records, reassembled only when one straddles two
 * pieces; otherwise handed to fn in place. */
typedef struct vec_rd {
    const char *path;
    uint32_t dim;
    uint64_t want_count; /* UINT64_MAX: whatever the header says */
    uint8_t *rec;
    size_t have;
    uint64_t slot;
    float *v;
    snap_vec_fn fn;
    void *ctx;
} vec_rd;

static dv_code vec_check(void *ctx, const file_hdr *h, dv_err *err)
{
    vec_rd *vr = ctx;
    if (vr->want_count != UINT64_MAX && h->count != vr->want_count)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: %" PRIu64 " records, manifest says %" PRIu64, vr->path, h->count,
                         vr->want_count);
    return DV_OK;
}

/* One whole record at rec: flags, then the vector (little endian). On a
 * little-endian host a 4-byte aligned vector is passed without a copy. */
static dv_code vec_emit(vec_rd *vr, const uint8_t *rec, dv_err *err)
{
    size_t rs = 4 + 4 * (size_t)vr->dim;
    uint32_t flags = get_u32(rec);
    if (flags > 1)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad flags %u in record %" PRIu64 " (offset %" PRIu64 ")",
                         vr->path, flags, vr->slot, HDR_SIZE + vr->slot * rs);
    const float *v = vr->v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (((uintptr_t)(rec + 4) & (_Alignof(float) - 1)) == 0)
        v = (const float *)(const void *)(rec + 4);
    else
#endif
        for (uint32_t i = 0; i < vr->dim; i++)
            vr->v[i] = get_f32(rec + 4 + 4 * (size_t)i);
    dv_code rc = vr->fn(vr->ctx, vr->slot, (int)(flags & 1), v, err);
    if (rc)
        return rc;
    vr->slot++;
    return DV_OK;
}

static dv_code vec_piece(void *ctx, const uint8_t *p, size_t n, dv_err *err)
{
    vec_rd *vr = ctx;
    size_t rs = 4 + 4 * (size_t)vr->dim;
    while (n > 0) {
        if (vr->have == 0 && n >= rs) {
            dv_code rc = vec_emit(vr, p, err);
            if (rc)
                return rc;
            p += rs;
            n -= rs;
            continue;
        }
        size_t take = rs - vr->have < n ? rs - vr->have : n;
        memcpy(vr->rec + vr->have, p, take);
        vr->have += take;
        p += take;
        n -= take;
        if (vr->have == rs) {
            vr->have = 0;
            dv_code rc = vec_emit(vr, vr->rec, err);
            if (rc)
                return rc;
        }
    }
    return DV_OK;
}

static dv_code stream_vectors(const char *path, const snap_file_ref *ref, const dv_coll_config *cfg,
                              uint64_t want_count, file_hdr *h, snap_vec_fn fn, void *ctx, dv_err *err)
{
    /* The header is needed before the records: peek at it. */
    uint8_t hb[HDR_SIZE];
    int fd = io_open(path, O_RDONLY, 0);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return dv_errorf(err, ref ? DV_ECORRUPT : DV_ENOTFOUND, "snap: %s: missing", path);
        return dv_errorf(err, dv_code_from_errno(e), "snap: open %s: %s", path, strerror(e));
    }
    uint64_t size = 0;
    ssize_t r = io_fstat_size(fd, &size) == 0 ? io_pread_full(fd, hb, HDR_SIZE, 0) : -1;
    int e = errno;
    io_close(fd);
    if (r < 0)
        return dv_errorf(err, dv_code_from_errno(e), "snap: read %s: %s", path, strerror(e));
    if (r != HDR_SIZE)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: truncated header (%" PRIu64 " bytes at offset 0)", path, size);
    dv_code rc = hdr_decode(hb, SNAP_VECTORS, path, size, h, err);
    if (rc)
        return rc;
    if (cfg && (h->dim != cfg->dim || h->metric != (uint32_t)cfg->metric))
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: header says dim %u metric %u, manifest dim %u metric %u", path,
                         h->dim, h->metric, cfg->dim, (unsigned)cfg->metric);
    vec_rd vr = {.path = path, .dim = h->dim, .want_count = want_count, .fn = fn, .ctx = ctx};
    vr.rec = malloc(4 + 4 * (size_t)h->dim);
    vr.v = malloc(4 * (size_t)h->dim);
    if (!vr.rec || !vr.v) {
        free(vr.rec);
        free(vr.v);
        return dv_errorf(err, DV_ENOMEM, "snap: read %s: out of memory", path);
    }
    rc = read_file(path, SNAP_VECTORS, ref, h, vec_check, vec_piece, &vr, NULL, err);
    free(vr.rec);
    free(vr.v);
    return rc;
}

static dv_code file_path(char *out, size_t cap, const char *dir, const snap_file_ref *ref, dv_err *err)
{
    if (snprintf(out, cap, "%s/%s", dir, ref->name) >= (int)cap)
        return dv_errorf(err, DV_EINVAL, "snap: path too long: %s", dir);
    return DV_OK;
}

dv_code snap_load_vectors(const char *dir, const snap_manifest *m, snap_vec_fn fn, void *ctx, dv_err *err)
{
    const snap_file_ref *ref = &m->files[SNAP_VECTORS];
    if (!ref->present)
        return m->n_slots ? dv_errorf(err, DV_ECORRUPT, "snap: %s/manifest.json names no vectors file", dir) : DV_OK;
    char path[4200];
    dv_code rc = file_path(path, sizeof path, dir, ref, err);
    if (rc)
        return rc;
    file_hdr h;
    /* The record count is checked against the manifest before any record
     * is handed out: a caller sizes its arrays from the manifest. */
    return stream_vectors(path, ref, &m->cfg, m->n_slots, &h, fn, ctx, err);
}

/* Whole body of a file read into one malloc'd buffer. */
static dv_code read_body(const char *path, int kind, const snap_file_ref *ref, file_hdr *h, uint8_t **out, dv_err *err)
{
    /* The size is checked against the manifest before any allocation; the
     * body is read straight into the buffer (no bounce copy). */
    if (ref->size < HDR_SIZE)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: manifest size %" PRIu64 " too small", path, ref->size);
    uint8_t *b = malloc(ref->size - HDR_SIZE + 1);
    if (!b)
        return dv_errorf(err, DV_ENOMEM, "snap: read %s: out of memory", path);
    dv_code rc = read_file(path, kind, ref, h, NULL, NULL, NULL, b, err);
    if (rc) {
        free(b);
        return rc;
    }
    *out = b;
    return DV_OK;
}

/* Variable-size ids records decoded as the pieces stream by; a record that
 * straddles two pieces is gathered in `carry` (at most one record long). */
typedef struct ids_rd {
    const char *path;
    uint64_t want_count;
    const file_hdr *h;
    uint64_t slot;
    uint64_t off; /* body offset of the next record (or of the one in carry) */
    uint8_t *carry;
    size_t have, carry_cap;
    snap_id_fn fn;
    void *ctx;
} ids_rd;

#define IDREC_MAX (3u + DV_ID_MAX + 4u + DV_METADATA_MAX)

static dv_code ids_check(void *ctx, const file_hdr *h, dv_err *err)
{
    ids_rd *r = ctx;
    if (h->count != r->want_count)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: %" PRIu64 " records, manifest says %" PRIu64, r->path, h->count,
                         r->want_count);
    return DV_OK;
}

static dv_code ids_bad(const ids_rd *r, dv_err *err)
{
    return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad record %" PRIu64 " at offset %" PRIu64, r->path, r->slot,
                     (uint64_t)HDR_SIZE + r->off);
}

/* Length of the record starting at p (avail bytes there): 0 while it is not
 * known yet, SIZE_MAX when the fields read so far are invalid. Every length
 * is checked before it is used: the body is hostile. */
static size_t idrec_len(const uint8_t *p, size_t avail)
{
    if (avail < 3)
        return 0;
    uint8_t flags = p[0];
    size_t id_len = get_u16(p + 1);
    if (flags > 1 || id_len > DV_ID_MAX || (flags == 1 && id_len == 0) || (flags == 0 && id_len != 0))
        return SIZE_MAX;
    if (avail < 3 + id_len + 4)
        return 0;
    size_t meta_len = get_u32(p + 3 + id_len);
    if (meta_len > DV_METADATA_MAX || (flags == 0 && meta_len != 0))
        return SIZE_MAX;
    return 3 + id_len + 4 + meta_len;
}

/* Decode one whole record of len bytes at p. */
static dv_code idrec_emit(ids_rd *r, const uint8_t *p, size_t len, dv_err *err)
{
    uint8_t flags = p[0];
    size_t id_len = get_u16(p + 1);
    const char *id = (const char *)p + 3;
    size_t meta_len = len - 3 - id_len - 4;
    const char *meta = meta_len ? (const char *)p + 3 + id_len + 4 : NULL;
    if (memchr(id, 0, id_len))
        return ids_bad(r, err);
    dv_code rc = r->fn(r->ctx, r->slot, flags & 1, id, id_len, meta, meta_len, err);
    if (rc)
        return rc;
    r->slot++;
    r->off += len;
    return DV_OK;
}

static dv_code ids_piece(void *ctx, const uint8_t *p, size_t n, dv_err *err)
{
    ids_rd *r = ctx;
    while (n > 0) {
        if (r->slot >= r->h->count)
            return dv_errorf(err, DV_ECORRUPT, "snap: %s: %" PRIu64 " trailing body bytes at offset %" PRIu64, r->path,
                             r->h->body_size - r->off, (uint64_t)HDR_SIZE + r->off);
        if (r->have == 0) {
            size_t len = idrec_len(p, n);
            if (len == SIZE_MAX)
                return ids_bad(r, err);
            if (len && len <= n) {
                dv_code rc = idrec_emit(r, p, len, err);
                if (rc)
                    return rc;
                p += len;
                n -= len;
                continue;
            }
        }
        /* Gather a straddling record: first its fixed part, then the rest. */
        if (!r->carry) {
            r->carry = malloc(IDREC_MAX);
            if (!r->carry)
                return dv_errorf(err, DV_ENOMEM, "snap: read %s: out of memory", r->path);
        }
        size_t len = idrec_len(r->carry, r->have);
        if (len == SIZE_MAX)
            return ids_bad(r, err);
        size_t want = len ? len : r->have < 3 ? 3 : 3 + (size_t)get_u16(r->carry + 1) + 4;
        size_t take = want - r->have < n ? want - r->have : n;
        memcpy(r->carry + r->have, p, take);
        r->have += take;
        p += take;
        n -= take;
        len = idrec_len(r->carry, r->have);
        if (len == SIZE_MAX)
            return ids_bad(r, err);
        if (len && r->have == len) {
            r->have = 0;
            dv_code rc = idrec_emit(r, r->carry, len, err);
            if (rc)
                return rc;
        }
    }
    return DV_OK;
}

dv_code snap_load_ids(const char *dir, const snap_manifest *m, snap_id_fn fn, void *ctx, dv_err *err)
{
    const snap_file_ref *ref = &m->files[SNAP_IDS];
    if (!ref->present)
        return m->n_slots ? dv_errorf(err, DV_ECORRUPT, "snap: %s/manifest.json names no ids file", dir) : DV_OK;
    char path[4200];
    dv_code rc = file_path(path, sizeof path, dir, ref, err);
    if (rc)
        return rc;
    file_hdr h;
    ids_rd r = {.path = path, .want_count = m->n_slots, .h = &h, .fn = fn, .ctx = ctx};
    rc = read_file(path, SNAP_IDS, ref, &h, ids_check, ids_piece, &r, NULL, err);
    /* The body ended inside a record, or before every record. */
    if (!rc && (r.have || r.slot != h.count))
        rc = ids_bad(&r, err);
    free(r.carry);
    return rc;
}

dv_code snap_load_index(const char *dir, const snap_manifest *m, uint8_t **buf, size_t *len, dv_err *err)
{
    const snap_file_ref *ref = &m->files[SNAP_INDEX];
    if (!ref->present)
        return dv_errorf(err, DV_ENOTFOUND, "snap: %s: no index file in the manifest", dir);
    char path[4200];
    dv_code rc = file_path(path, sizeof path, dir, ref, err);
    if (rc)
        return rc;
    file_hdr h;
    uint8_t *body = NULL;
    rc = read_body(path, SNAP_INDEX, ref, &h, &body, err);
    if (rc)
        return rc;
    *buf = body;
    *len = (size_t)h.body_size;
    return DV_OK;
}

dv_code snap_verify(const char *dir, const snap_manifest *m, dv_err *err)
{
    for (int k = 0; k < SNAP_N_FILES; k++) {
        const snap_file_ref *ref = &m->files[k];
        if (!ref->present)
            continue;
        char path[4200];
        dv_code rc = file_path(path, sizeof path, dir, ref, err);
        if (rc)
            return rc;
        file_hdr h;
        rc = read_file(path, k, ref, &h, NULL, NULL, NULL, NULL, err);
        if (rc)
            return rc;
        if (k != SNAP_INDEX && h.count != m->n_slots)
            return dv_errorf(err, DV_ECORRUPT, "snap: %s: %" PRIu64 " records, manifest says %" PRIu64, path, h.count,
                             m->n_slots);
    }
    return DV_OK;
}

/* ---- orphan import ---------------------------------------------------- */

typedef struct orphan_ctx {
    uint32_t dim;
    uint64_t n;
    float *vecs;
} orphan_ctx;

static dv_code orphan_vec(void *ctx, uint64_t slot, int live, const float *v, dv_err *err)
{
    (void)slot;
    (void)err;
    orphan_ctx *o = ctx;
    if (!live)
        return DV_OK;
    memcpy(o->vecs + o->n * o->dim, v, 4 * (size_t)o->dim);
    o->n++;
    return DV_OK;
}

dv_code snap_read_vectors_file(const char *path, uint32_t *dim, dv_metric *metric, uint64_t *n, float **vecs,
                               dv_err *err)
{
    /* Validate the header once to size the output, then stream. */
    uint8_t hb[HDR_SIZE];
    int fd = io_open(path, O_RDONLY, 0);
    if (fd < 0) {
        int e = errno;
        return dv_errorf(err, e == ENOENT ? DV_ENOTFOUND : dv_code_from_errno(e), "snap: open %s: %s", path,
                         strerror(e));
    }
    uint64_t size = 0;
    ssize_t r = io_fstat_size(fd, &size) == 0 ? io_pread_full(fd, hb, HDR_SIZE, 0) : -1;
    int e = errno;
    io_close(fd);
    if (r < 0)
        return dv_errorf(err, dv_code_from_errno(e), "snap: read %s: %s", path, strerror(e));
    if (r != HDR_SIZE)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: truncated header (%" PRIu64 " bytes at offset 0)", path, size);
    file_hdr h;
    dv_code rc = hdr_decode(hb, SNAP_VECTORS, path, size, &h, err);
    if (rc)
        return rc;
    orphan_ctx o = {.dim = h.dim};
    o.vecs = malloc(h.count * h.dim * sizeof(float) + 1);
    if (!o.vecs)
        return dv_errorf(err, DV_ENOMEM, "snap: read %s: out of memory for %" PRIu64 " vectors", path, h.count);
    rc = stream_vectors(path, NULL, NULL, UINT64_MAX, &h, orphan_vec, &o, err);
    if (rc) {
        free(o.vecs);
        return rc;
    }
    *dim = h.dim;
    *metric = (dv_metric)h.metric;
    *n = o.n;
    *vecs = o.vecs;
    return DV_OK;
}

/* ---- manifest ----------------------------------------------------------- */

static json_t *manifest_to_json(const snap_manifest *m)
{
    json_t *files = json_object();
    for (int k = 0; k < SNAP_N_FILES; k++) {
        const snap_file_ref *f = &m->files[k];
        if (!f->present)
            continue;
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, f->xxh3);
        json_object_set_new(files, file_kind[k],
                            json_pack("{s:s, s:I, s:s}", "name", f->name, "size", (json_int_t)f->size, "xxh3", hex));
    }
    return json_pack("{s:s, s:i, s:s, s:I, s:s, s:s, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:o}", "format",
                     "dvecdb-collection", "version", SNAP_MANIFEST_VERSION, "name", m->cfg.name, "dimension",
                     (json_int_t)m->cfg.dim, "distance_metric", dv_metric_name(m->cfg.metric), "vector_type",
                     dv_vtype_name(m->cfg.vtype), "hnsw", "m", (json_int_t)m->cfg.m, "ef_construction",
                     (json_int_t)m->cfg.ef_construction, "ef_search", (json_int_t)m->cfg.ef_search, "max_layer",
                     (json_int_t)m->cfg.max_layer, "created_at_ms", (json_int_t)m->created_at_ms, "generation",
                     (json_int_t)m->gen, "wal_seq", (json_int_t)m->wal_seq, "n_slots", (json_int_t)m->n_slots,
                     "n_vectors", (json_int_t)m->n_live, "files", files);
}

static uint64_t json_checksum(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    uint64_t h = s ? XXH3_64bits(s, strlen(s)) : 0;
    free(s);
    return h;
}

dv_code snap_manifest_write(const char *dir, const snap_manifest *m, dv_err *err)
{
    json_t *o = manifest_to_json(m);
    if (!o)
        return dv_errorf(err, DV_ENOMEM, "snap: manifest %s: out of memory", dir);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, json_checksum(o));
    json_object_set_new(o, "checksum", json_string(hex));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    if (!text)
        return dv_errorf(err, DV_ENOMEM, "snap: manifest %s: out of memory", dir);
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps's NUL becomes the final newline */
    /* temp -> fsync -> rename -> fsync dir (io_write_file_atomic): the
     * commit point of a checkpoint; a crash leaves the old or the new one. */
    dv_code rc = io_write_file_atomic(dir, SNAP_MANIFEST, text, len + 1, err);
    free(text);
    return rc;
}

static int get_uint(json_t *o, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_hex64(const char *s, uint64_t *out)
{
    if (!s || strlen(s) != 16)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return 0;
}

dv_code snap_manifest_read(const char *dir, snap_manifest *m, dv_err *err)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, SNAP_MANIFEST) >= (int)sizeof path)
        return dv_errorf(err, DV_EINVAL, "snap: path too long: %s", dir);
    uint8_t *text = NULL;
    size_t len = 0;
    dv_code rc = io_read_file(path, &text, &len, err);
    if (rc)
        return rc;
    json_error_t je;
    json_t *o = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!o)
        return dv_errorf(err, DV_ECORRUPT, "snap: %s: malformed JSON at offset %d (line %d): %s", path, je.position,
                         je.line, je.text);
    snap_manifest mm;
    memset(&mm, 0, sizeof mm);
    const char *what = "not an object";
    uint64_t sum, u;
    json_t *cs = json_is_object(o) ? json_object_get(o, "checksum") : NULL;
    if (!json_is_object(o))
        goto bad;
    what = "checksum";
    if (!json_is_string(cs) || parse_hex64(json_string_value(cs), &sum) != 0)
        goto bad;
    json_object_del(o, "checksum");
    if (json_checksum(o) != sum) {
        json_decref(o);
        return dv_errorf(
            err, DV_ECORRUPT,
            "snap: %s: checksum mismatch (the file was altered; offset unknown, the manifest has one checksum)", path);
    }
    what = "format";
    const char *fmt = json_string_value(json_object_get(o, "format"));
    if (!fmt || strcmp(fmt, "dvecdb-collection") != 0)
        goto bad;
    what = "version";
    if (get_uint(o, "version", UINT32_MAX, &u) || u != SNAP_MANIFEST_VERSION)
        goto bad;
    what = "name";
    const char *name = json_string_value(json_object_get(o, "name"));
    if (!name || dv_name_validate(name, NULL) != DV_OK)
        goto bad;
    snprintf(mm.cfg.name, sizeof mm.cfg.name, "%s", name);
    what = "dimension";
    if (get_uint(o, "dimension", DV_DIM_MAX, &u) || u == 0)
        goto bad;
    mm.cfg.dim = (uint32_t)u;
    what = "distance_metric";
    if (dv_metric_parse(json_string_value(json_object_get(o, "distance_metric")), &mm.cfg.metric, NULL))
        goto bad;
    what = "vector_type";
    if (dv_vtype_parse(json_string_value(json_object_get(o, "vector_type")), &mm.cfg.vtype, NULL))
        goto bad;
    json_t *hn = json_object_get(o, "hnsw");
    what = "hnsw";
    if (!json_is_object(hn) || get_uint(hn, "m", DV_HNSW_M_MAX, &u))
        goto bad;
    mm.cfg.m = (uint32_t)u;
    if (get_uint(hn, "ef_construction", DV_HNSW_EF_CONSTRUCTION_MAX, &u))
        goto bad;
    mm.cfg.ef_construction = (uint32_t)u;
    if (get_uint(hn, "ef_search", DV_HNSW_EF_SEARCH_MAX, &u))
        goto bad;
    mm.cfg.ef_search = (uint32_t)u;
    if (get_uint(hn, "max_layer", DV_HNSW_MAX_LAYER_MAX, &u))
        goto bad;
    mm.cfg.max_layer = (uint32_t)u;
    what = "created_at_ms";
    if (get_uint(o, "created_at_ms", INT64_MAX, &u))
        goto bad;
    mm.created_at_ms = (int64_t)u;
    what = "generation";
    if (get_uint(o, "generation", INT64_MAX, &mm.gen))
        goto bad;
    what = "wal_seq";
    if (get_uint(o, "wal_seq", INT64_MAX, &mm.wal_seq))
        goto bad;
    what = "n_slots";
    if (get_uint(o, "n_slots", UINT32_MAX, &mm.n_slots))
        goto bad;
    what = "n_vectors";
    if (get_uint(o, "n_vectors", mm.n_slots, &mm.n_live))
        goto bad;
    json_t *files = json_object_get(o, "files");
    what = "files";
    if (!json_is_object(files))
        goto bad;
    for (int k = 0; k < SNAP_N_FILES; k++) {
        json_t *f = json_object_get(files, file_kind[k]);
        if (!f)
            continue;
        what = file_kind[k];
        const char *fname = json_string_value(json_object_get(f, "name"));
        char want[64];
        snprintf(want, sizeof want, "%s-%" PRIu64 ".bin", file_kind[k], mm.gen);
        /* The name must be exactly this generation's: never a path. */
        if (!fname || strcmp(fname, want) != 0)
            goto bad;
        snprintf(mm.files[k].name, sizeof mm.files[k].name, "%s", fname);
        if (get_uint(f, "size", INT64_MAX, &mm.files[k].size) ||
            parse_hex64(json_string_value(json_object_get(f, "xxh3")), &mm.files[k].xxh3))
            goto bad;
        mm.files[k].present = 1;
    }
    json_decref(o);
    *m = mm;
    return DV_OK;
bad:
    json_decref(o);
    return dv_errorf(err, DV_ECORRUPT, "snap: %s: bad or missing \"%s\"", path, what);
}

/* ---- cleanup ------------------------------------------------------------ */

static int is_gen_file(const char *name)
{
    for (int k = 0; k < SNAP_N_FILES; k++) {
        size_t kl = strlen(file_kind[k]);
        if (strncmp(name, file_kind[k], kl) != 0 || name[kl] != '-')
            continue;
        const char *p = name + kl + 1;
        if (*p < '0' || *p > '9')
            continue;
        while (*p >= '0' && *p <= '9')
            p++;
        if (strcmp(p, ".bin") == 0)
            return 1;
    }
    return 0;
}

dv_code snap_cleanup(const char *dir, const snap_manifest *m, dv_err *err)
{
    char **names = NULL;
    size_t n = 0;
    dv_code rc = io_list_dir(dir, &names, &n, err);
    if (rc)
        return rc;
    int removed = 0;
    for (size_t i = 0; i < n && rc == DV_OK; i++) {
        const char *nm = names[i];
        size_t l = strlen(nm);
        int stray = l > 4 && strcmp(nm + l - 4, ".tmp") == 0;
        if (!stray && is_gen_file(nm)) {
            stray = 1;
            for (int k = 0; k < SNAP_N_FILES; k++)
                if (m->files[k].present && strcmp(m->files[k].name, nm) == 0)
                    stray = 0;
        }
        if (!stray)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        if (io_unlink(path) != 0 && errno != ENOENT) {
            int e = errno;
            rc = dv_errorf(err, dv_code_from_errno(e), "snap: remove stray %s: %s", path, strerror(e));
        }
        removed++;
    }
    io_list_free(names, n);
    /* Not needed for safety (a stray that comes back is removed again), but
     * keeps a crash from resurrecting files and wasting space. */
    if (rc == DV_OK && removed && io_fsync_dir(dir) != 0) {
        int e = errno;
        rc = dv_errorf(err, dv_code_from_errno(e), "snap: fsync dir %s: %s", dir, strerror(e));
    }
    return rc;
}
