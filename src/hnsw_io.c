/* hnsw_io.c - encode / decode of the graph (links, levels, entry point,
 * tombstones; not the vectors). Byte layout: docs/format-index.md.
 *
 * Decode treats the buffer as hostile. Nothing in h changes until every
 * field has been checked: header checksum, configuration, body length and
 * checksum, then two passes over the node records (structure and levels;
 * then every link: in range, a recorded node, level high enough, not a
 * self-link, no duplicate in one list) and the entry point. Any violation
 * returns DV_ECORRUPT naming the byte offset. Only after that are the new
 * upper-layer lists allocated (an ENOMEM still leaves h as it was), and
 * the graph is swapped in.
 * A tombstoned node whose vector is not stored (the caller dropped the
 * vectors of deleted points) is removed on decode together with the links
 * to it; a live node without a stored vector is corruption.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "hnsw_int.h"

#define HDR_SIZE 80
#define FMT_VERSION 1
static const uint8_t MAGIC[8] = {'D', 'V', 'H', 'N', 'S', 'W', 'G', 'R'};
#define NODE_DELETED 1u

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint32_t list_count(const hnsw *h, uint32_t s, unsigned lc)
{
    uint32_t n = __atomic_load_n(&hnsw_links(h, s, lc)[0], __ATOMIC_ACQUIRE);
    uint32_t maxn = lc ? h->m : h->m0;
    return n > maxn ? maxn : n;
}

/* Needs no concurrent writer (searches may run). */
dv_code hnsw_encode_graph(const hnsw *h, uint8_t **buf, size_t *len, dv_err *err)
{
    uint64_t top = __atomic_load_n(&h->top, __ATOMIC_ACQUIRE);
    size_t body = 0, n_nodes = 0, n_slots = 0;
    for (size_t s = 0; s < h->cap; s++) {
        if (!(hnsw_flags(h, (uint32_t)s) & HNSW_F_LINKED))
            continue;
        n_nodes++;
        n_slots = s + 1;
        body += 8;
        for (unsigned lc = 0; lc <= h->levels[s]; lc++)
            body += 4 + 4 * (size_t)list_count(h, (uint32_t)s, lc);
    }
    uint8_t *b = malloc(HDR_SIZE + body);
    if (!b)
        return dv_errorf(err, DV_ENOMEM, "hnsw: encode: %zu bytes", HDR_SIZE + body);
    uint8_t *p = b + HDR_SIZE;
    for (size_t s = 0; s < h->cap; s++) {
        uint8_t f = hnsw_flags(h, (uint32_t)s);
        if (!(f & HNSW_F_LINKED))
            continue;
        put32(p, (uint32_t)s);
        p[4] = h->levels[s];
        p[5] = (f & HNSW_F_DELETED) ? NODE_DELETED : 0;
        p[6] = p[7] = 0;
        p += 8;
        for (unsigned lc = 0; lc <= h->levels[s]; lc++) {
            const uint32_t *ll = hnsw_links(h, (uint32_t)s, lc);
            uint32_t n = list_count(h, (uint32_t)s, lc);
            put32(p, n);
            p += 4;
            for (uint32_t j = 0; j < n; j++, p += 4)
                put32(p, ll[1 + j]);
        }
    }
    memcpy(b, MAGIC, 8);
    put32(b + 8, FMT_VERSION);
    put32(b + 12, h->dim);
    put32(b + 16, (uint32_t)h->metric);
    put32(b + 20, h->m);
    put32(b + 24, h->max_layer);
    put32(b + 28, top ? hnsw_top_entry(top) : HNSW_NONE);
    put32(b + 32, top ? (uint32_t)hnsw_top_level(top) : 0);
    put32(b + 36, 0);
    put64(b + 40, n_slots);
    put64(b + 48, n_nodes);
    put64(b + 56, body);
    put64(b + 64, XXH3_64bits(b + HDR_SIZE, body));
    put64(b + 72, XXH3_64bits(b, 72));
    *buf = b;
    *len = HDR_SIZE + body;
    return DV_OK;
}

#define CORRUPT(off, ...)                              \
    do {                                               \
        rc = dv_errorf(err, DV_ECORRUPT, __VA_ARGS__); \
        (void)(off);                                   \
        goto fail;                                     \
    } while (0)

dv_code hnsw_decode_graph(hnsw *h, const uint8_t *buf, size_t len, dv_err *err)
{
    dv_code rc = DV_OK;
    uint8_t *lvl = NULL;    /* per slot: level, 0xFF = not a node */
    uint8_t *drop = NULL;   /* per slot: node removed on decode */
    uint32_t *stamp = NULL; /* per slot: duplicate-link detection */
    uint32_t **nup = NULL;  /* new upper lists, per slot */
    size_t n_slots = 0;

    if (!buf || len < HDR_SIZE)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: %zu bytes, header needs %d at offset 0", len, HDR_SIZE);
    if (memcmp(buf, MAGIC, 8) != 0)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: bad magic at offset 0");
    if (XXH3_64bits(buf, 72) != get64(buf + 72))
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: header checksum mismatch at offset 72");
    uint32_t ver = get32(buf + 8);
    if (ver != FMT_VERSION)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: unknown version %u at offset 8", ver);
    if (get32(buf + 12) != h->dim)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: dimension %u at offset 12, index has %u", get32(buf + 12),
                         h->dim);
    if (get32(buf + 16) != (uint32_t)h->metric)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: metric %u at offset 16, index has %d", get32(buf + 16),
                         (int)h->metric);
    if (get32(buf + 20) != h->m)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: m %u at offset 20, index has %u", get32(buf + 20), h->m);
    if (get32(buf + 24) != h->max_layer)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: max_layer %u at offset 24, index has %u", get32(buf + 24),
                         h->max_layer);
    uint32_t entry = get32(buf + 28);
    uint32_t top_level = get32(buf + 32);
    if (get32(buf + 36) != 0)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: reserved field nonzero at offset 36");
    uint64_t ns = get64(buf + 40), n_nodes = get64(buf + 48), body = get64(buf + 56);
    if (ns > h->cap)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: %llu slots at offset 40 exceed capacity %zu",
                         (unsigned long long)ns, h->cap);
    n_slots = (size_t)ns;
    if (n_nodes > n_slots)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: %llu nodes at offset 48 for %zu slots",
                         (unsigned long long)n_nodes, n_slots);
    if (body != len - HDR_SIZE)
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: body length %llu at offset 56, buffer holds %zu",
                         (unsigned long long)body, len - HDR_SIZE);
    if (XXH3_64bits(buf + HDR_SIZE, len - HDR_SIZE) != get64(buf + 64))
        return dv_errorf(err, DV_ECORRUPT, "hnsw: decode: body checksum mismatch at offset 64");

    lvl = malloc(n_slots ? n_slots : 1);
    drop = calloc(n_slots ? n_slots : 1, 1);
    stamp = calloc(n_slots ? n_slots : 1, sizeof *stamp);
    nup = calloc(n_slots ? n_slots : 1, sizeof *nup);
    if (!lvl || !drop || !stamp || !nup) {
        rc = dv_errorf(err, DV_ENOMEM, "hnsw: decode: scratch for %zu slots", n_slots);
        goto fail;
    }
    memset(lvl, 0xFF, n_slots ? n_slots : 1);

    /* Pass 1: record structure, slots, levels, counts. */
    size_t off = HDR_SIZE;
    uint64_t prev = 0;
    uint32_t seen_top = 0;
    for (uint64_t i = 0; i < n_nodes; i++) {
        if (len - off < 8)
            CORRUPT(off, "hnsw: decode: node %llu truncated at offset %zu", (unsigned long long)i, off);
        uint32_t s = get32(buf + off);
        uint32_t l = buf[off + 4], fl = buf[off + 5];
        if (s >= n_slots || (i > 0 && s <= prev))
            CORRUPT(off, "hnsw: decode: slot %u out of order or range at offset %zu", s, off);
        if (l > h->max_layer)
            CORRUPT(off, "hnsw: decode: level %u above max_layer %u at offset %zu", l, h->max_layer, off + 4);
        if ((fl & ~NODE_DELETED) || buf[off + 6] || buf[off + 7])
            CORRUPT(off, "hnsw: decode: bad node flags at offset %zu", off + 5);
        int stored = (hnsw_flags(h, s) & HNSW_F_STORED) != 0;
        if (!stored && !(fl & NODE_DELETED))
            CORRUPT(off, "hnsw: decode: node %u has no stored vector (offset %zu)", s, off);
        drop[s] = !stored;
        prev = s;
        lvl[s] = (uint8_t)l;
        if (l > seen_top)
            seen_top = l;
        off += 8;
        for (uint32_t lc = 0; lc <= l; lc++) {
            if (len - off < 4)
                CORRUPT(off, "hnsw: decode: link count truncated at offset %zu", off);
            uint32_t c = get32(buf + off);
            uint32_t maxn = lc ? h->m : h->m0;
            if (c > maxn)
                CORRUPT(off, "hnsw: decode: %u links on layer %u (max %u) at offset %zu", c, lc, maxn, off);
            off += 4;
            if ((len - off) / 4 < c)
                CORRUPT(off, "hnsw: decode: links truncated at offset %zu", off);
            off += 4 * (size_t)c;
        }
    }
    if (off != len)
        CORRUPT(off, "hnsw: decode: %zu trailing bytes at offset %zu", len - off, off);
    if (n_nodes == 0) {
        if (entry != HNSW_NONE || top_level != 0)
            CORRUPT(28, "hnsw: decode: entry point %u in an empty graph at offset 28", entry);
    } else {
        if (entry >= n_slots || lvl[entry] == 0xFF)
            CORRUPT(28, "hnsw: decode: entry point %u is not a node (offset 28)", entry);
        if (top_level != seen_top || lvl[entry] != top_level)
            CORRUPT(32, "hnsw: decode: top level %u at offset 32, entry has %u, highest node %u", top_level, lvl[entry],
                    seen_top);
    }

    /* Pass 2: every link. stamp[t] = index of the list (+1) that last held t. */
    off = HDR_SIZE;
    uint32_t list_no = 0;
    for (uint64_t i = 0; i < n_nodes; i++) {
        uint32_t s = get32(buf + off);
        uint32_t l = buf[off + 4];
        off += 8;
        for (uint32_t lc = 0; lc <= l; lc++) {
            uint32_t c = get32(buf + off);
            off += 4;
            list_no++;
            for (uint32_t j = 0; j < c; j++, off += 4) {
                uint32_t t = get32(buf + off);
                if (t >= n_slots || lvl[t] == 0xFF)
                    CORRUPT(off, "hnsw: decode: link to %u, not a node, at offset %zu", t, off);
                if (lvl[t] < lc)
                    CORRUPT(off, "hnsw: decode: link to %u on layer %u above its level %u at offset %zu", t, lc, lvl[t],
                            off);
                if (t == s)
                    CORRUPT(off, "hnsw: decode: self-link of %u at offset %zu", s, off);
                if (stamp[t] == list_no)
                    CORRUPT(off, "hnsw: decode: duplicate link to %u at offset %zu", t, off);
                stamp[t] = list_no;
            }
        }
    }

    /* Allocate the new upper lists before touching h. */
    size_t upper_bytes = 0;
    off = HDR_SIZE;
    for (uint64_t i = 0; i < n_nodes; i++) {
        uint32_t s = get32(buf + off);
        uint32_t l = buf[off + 4];
        off += 8;
        for (uint32_t lc = 0; lc <= l; lc++)
            off += 4 + 4 * (size_t)get32(buf + off);
        if (l > 0 && !drop[s]) {
            size_t bytes = (size_t)l * (1 + h->m) * sizeof(uint32_t);
            nup[s] = calloc(1, bytes);
            if (!nup[s]) {
                rc = dv_errorf(err, DV_ENOMEM, "hnsw: decode: upper layers of slot %u", s);
                goto fail;
            }
            upper_bytes += bytes;
        }
    }

    /* Commit: nothing below can fail. A node's layer-0 count is written by
     * the loop after this one: clearing it here too would fetch every
     * node's cache line twice (the vectors loaded before evicted them). */
    for (size_t s = 0; s < h->cap; s++) {
        free(h->upper[s]);
        h->upper[s] = s < n_slots ? nup[s] : NULL;
        h->levels[s] = 0;
        if (s >= n_slots || lvl[s] == 0xFF || drop[s])
            hnsw_links(h, (uint32_t)s, 0)[0] = 0;
        h->flags[s] &= (uint8_t) ~(HNSW_F_LINKED | HNSW_F_DELETED);
    }
    size_t live = 0;
    uint32_t new_entry = HNSW_NONE;
    int new_top = -1;
    off = HDR_SIZE;
    for (uint64_t i = 0; i < n_nodes; i++) {
        uint32_t s = get32(buf + off);
        uint32_t l = buf[off + 4];
        int del = buf[off + 5] & NODE_DELETED;
        off += 8;
        if (drop[s]) {
            h->flags[s] |= HNSW_F_DELETED;
            for (uint32_t lc = 0; lc <= l; lc++)
                off += 4 + 4 * (size_t)get32(buf + off);
            continue;
        }
        h->levels[s] = (uint8_t)l;
        /* Nodes come in slot order, one cache miss each: fetch ahead. */
        if ((size_t)s + 4 < h->cap)
            __builtin_prefetch(hnsw_links(h, s + 4, 0), 1);
        for (uint32_t lc = 0; lc <= l; lc++) {
            uint32_t c = get32(buf + off);
            off += 4;
            uint32_t *ll = hnsw_links(h, s, lc);
            uint32_t k = 0;
            for (uint32_t j = 0; j < c; j++, off += 4) {
                uint32_t t = get32(buf + off);
                if (!drop[t])
                    ll[1 + k++] = t;
            }
            ll[0] = k;
        }
        h->flags[s] |= (uint8_t)(HNSW_F_LINKED | (del ? HNSW_F_DELETED : 0));
        if (!del)
            live++;
        if ((int)l > new_top) {
            new_top = (int)l;
            new_entry = s;
        }
    }
    if (n_nodes > 0 && !drop[entry])
        new_entry = entry, new_top = (int)lvl[entry];
    h->upper_bytes = upper_bytes;
    h->n_live = live;
    __atomic_store_n(&h->top, new_entry == HNSW_NONE ? 0 : hnsw_top_pack(new_entry, new_top), __ATOMIC_RELEASE);
    free(lvl);
    free(drop);
    free(stamp);
    free(nup);
    return DV_OK;

fail:
    if (nup)
        for (size_t s = 0; s < n_slots; s++)
            free(nup[s]);
    free(lvl);
    free(drop);
    free(stamp);
    free(nup);
    return rc;
}
