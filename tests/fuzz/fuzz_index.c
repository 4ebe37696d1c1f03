/* fuzz_index.c - libFuzzer target for hnsw_decode_graph (index.bin is read
 * from disk and must be treated as hostile).
 *
 * Every input is decoded into a fresh index of capacity 64, dim 4, L2,
 * m = 4, max_layer 4, whose slots 0..47 hold fixed vectors (48..63 are
 * empty, so links and nodes pointing there are corrupt unless tombstoned).
 *
 * Input: byte 0 flags - bit 0: before decoding, set the body length field
 * and both XXH3 checksums so that the fuzzer reaches the structural checks;
 * then the index.bin bytes (docs/format-index.md).
 *
 * Checked beyond "no crash, no sanitizer report, no leak":
 *  - an error is DV_ECORRUPT (or DV_ENOMEM) with a message;
 *  - a decoded graph is usable: searches return valid, live, distinct slots
 *    in ascending distance; insert and delete work on it;
 *  - decode is canonical: encode(decode(x)) decodes again and re-encodes to
 *    the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "hnsw.h"

#define CAP 64
#define N_STORED 48
#define DIM 4

static float vecs[CAP][DIM];

static const hnsw_params PARAMS = {
    .dim = DIM, .metric = DV_METRIC_EUCLIDEAN, .m = 4, .ef_construction = 16, .max_layer = 4, .seed = 7};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    uint64_t x = 88172645463325252ull; /* xorshift64: fixed vectors */
    for (int i = 0; i < CAP; i++)
        for (int d = 0; d < DIM; d++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vecs[i][d] = (float)(x % 2000) / 100.0f - 10.0f;
        }
    return 0;
}

static hnsw *fresh(void)
{
    hnsw *h = NULL;
    if (hnsw_create(&PARAMS, CAP, &h, NULL) != DV_OK)
        abort();
    for (uint32_t s = 0; s < N_STORED; s++)
        if (hnsw_set_vector(h, s, vecs[s], NULL) != DV_OK)
            abort();
    return h;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Searches on a decoded graph must return sane results. */
static void check_search(const hnsw *h)
{
    uint32_t slots[10];
    float dists[10];
    for (int q = 0; q < 4; q++) {
        size_t n = hnsw_search(h, vecs[q * 13 % CAP], 10, 20, NULL, NULL, slots, dists);
        if (n > 10 || n > hnsw_count(h))
            abort();
        for (size_t i = 0; i < n; i++) {
            if (slots[i] >= CAP || !hnsw_has(h, slots[i]))
                abort();
            if (i && dists[i] < dists[i - 1])
                abort();
            for (size_t j = 0; j < i; j++)
                if (slots[j] == slots[i])
                    abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fix = data[0] & 1;
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    if (len)
        memcpy(buf, data + 1, len);
    if (fix && len >= 80) {
        put64(buf + 56, len - 80);
        put64(buf + 64, XXH3_64bits(buf + 80, len - 80));
        put64(buf + 72, XXH3_64bits(buf, 72));
    }

    hnsw *h = fresh();
    dv_err err = {0};
    dv_code rc = hnsw_decode_graph(h, buf, len, &err);
    free(buf);
    if (getenv("FUZZ_DEBUG"))
        fprintf(stderr, "fuzz_index: decode rc=%d nodes=%zu %s\n", rc, hnsw_count(h), rc ? err.msg : "");
    if (rc != DV_OK) {
        if ((rc != DV_ECORRUPT && rc != DV_ENOMEM) || err.code != rc || !err.msg[0])
            abort();
        /* A failed decode leaves the index usable (and empty here). */
        check_search(h);
        hnsw_destroy(h);
        return 0;
    }
    check_search(h);

    uint8_t *e1 = NULL, *e2 = NULL;
    size_t n1 = 0, n2 = 0;
    if (hnsw_encode_graph(h, &e1, &n1, &err) != DV_OK)
        abort();
    hnsw *h2 = fresh();
    if (hnsw_decode_graph(h2, e1, n1, &err) != DV_OK) {
        fprintf(stderr, "fuzz_index: re-decode of an encoded graph failed: %s\n", err.msg);
        abort();
    }
    if (hnsw_encode_graph(h2, &e2, &n2, &err) != DV_OK)
        abort();
    if (n1 != n2 || memcmp(e1, e2, n1) != 0)
        abort();
    free(e1);
    free(e2);
    hnsw_destroy(h2);

    /* The graph accepts writes: link an unlinked stored slot, insert into
     * an empty one, tombstone a node; searches stay sane. */
    for (uint32_t s = 0; s < N_STORED; s++) {
        if (!hnsw_has(h, s))
            continue;
        dv_code lr = hnsw_link(h, s, &err); /* DV_EEXIST when already linked */
        if (lr != DV_OK && lr != DV_EEXIST)
            abort();
    }
    for (uint32_t s = N_STORED; s < CAP; s++) {
        dv_code ir = hnsw_insert(h, s, vecs[s], &err);
        if (ir == DV_OK)
            break;
        if (ir != DV_EEXIST) /* a tombstoned slot is never reused */
            abort();
    }
    check_search(h);
    hnsw_mark_deleted(h, 0);
    check_search(h);
    hnsw_destroy(h);
    return 0;
}
