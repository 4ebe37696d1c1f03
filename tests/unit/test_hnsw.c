/* test_hnsw.c - HNSW index: recall against exact search, deletes, encode /
 * decode round trip, hostile decode input, parallel build, filters and
 * searches concurrent with inserts. Fixed seeds; each recall test prints
 * the recall it measured. Smaller sizes under AddressSanitizer. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "t.h"
#include "dist.h"
#include "err.h"
#include "hnsw.h"
#include "hnsw_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define N_BASE 3000
#define N_QUERY 50
#else
#define N_BASE 20000
#define N_QUERY 200
#endif
#define DIM 128
#define K 10

/* ---- data --------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = (rng_state += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static float urand(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); }
static float nrand(void)
{
    float u = urand() + 1e-7f, v = urand();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* n clustered points (64 Gaussian clusters) in dim d. */
static float *make_clustered(size_t n, size_t d, uint64_t seed)
{
    rng_state = seed;
    size_t nc = 64;
    float *cent = malloc(nc * d * sizeof *cent);
    float *v = malloc(n * d * sizeof *v);
    for (size_t i = 0; i < nc * d; i++)
        cent[i] = nrand() * 3.0f;
    for (size_t i = 0; i < n; i++) {
        size_t c = rnd() % nc;
        for (size_t j = 0; j < d; j++)
            v[i * d + j] = cent[c * d + j] + nrand();
    }
    free(cent);
    return v;
}

static float l2(const float *a, const float *b, size_t d)
{
    float s = 0;
    for (size_t i = 0; i < d; i++) {
        float t = a[i] - b[i];
        s += t * t;
    }
    return s;
}

typedef int (*accept_fn)(void *ctx, uint32_t slot);

/* Exact k-NN by brute force over slots [0, n) that accept() takes. */
static size_t exact_knn(const float *base, size_t n, size_t d, const float *q, size_t k, accept_fn accept,
                        void *ctx, uint32_t *out)
{
    float bd[64];
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (accept && !accept(ctx, (uint32_t)i))
            continue;
        float dd = l2(base + i * d, q, d);
        if (nb == k && dd >= bd[nb - 1])
            continue;
        size_t j = nb < k ? nb++ : nb - 1;
        while (j > 0 && bd[j - 1] > dd) {
            bd[j] = bd[j - 1];
            out[j] = out[j - 1];
            j--;
        }
        bd[j] = dd;
        out[j] = (uint32_t)i;
    }
    return nb;
}

static double recall_of(const uint32_t *got, size_t ngot, const uint32_t *truth, size_t ntruth)
{
    size_t hit = 0;
    for (size_t i = 0; i < ntruth; i++)
        for (size_t j = 0; j < ngot; j++)
            if (got[j] == truth[i]) {
                hit++;
                break;
            }
    return ntruth ? (double)hit / (double)ntruth : 1.0;
}

static hnsw *build_index(const float *base, size_t n, size_t d, dv_metric metric, unsigned threads, uint64_t seed,
                         uint32_t m, uint32_t efc)
{
    hnsw_params p = {.dim = (uint32_t)d, .metric = metric, .m = m, .ef_construction = efc, .seed = seed};
    hnsw *h = NULL;
    if (hnsw_create(&p, n, &h, NULL) != DV_OK)
        return NULL;
    uint32_t *slots = malloc(n * sizeof *slots);
    for (size_t i = 0; i < n; i++) {
        slots[i] = (uint32_t)i;
        if (hnsw_set_vector(h, (uint32_t)i, base + i * d, NULL) != DV_OK)
            goto fail;
    }
    if (hnsw_build(h, slots, n, threads, NULL) != DV_OK)
        goto fail;
    free(slots);
    return h;
fail:
    free(slots);
    hnsw_destroy(h);
    return NULL;
}

/* Mean recall@K of h over the queries, against exact search over accepted slots. */
static double measure_recall(hnsw *h, const float *base, size_t n, const float *qs, size_t nq, size_t ef,
                             accept_fn accept, void *ctx)
{
    double sum = 0;
    for (size_t i = 0; i < nq; i++) {
        uint32_t got[K], truth[K];
        float gd[K];
        size_t ng = hnsw_search(h, qs + i * DIM, K, ef, (hnsw_filter_fn)accept, ctx, got, gd);
        size_t nt = exact_knn(base, n, DIM, qs + i * DIM, K, accept, ctx, truth);
        sum += recall_of(got, ng, truth, nt);
    }
    return sum / (double)nq;
}

/* The shared index: N_BASE clustered vectors, default parameters, serial. */
static float *g_base, *g_q;
static hnsw *g_h;
static void setup(void)
{
    if (g_h)
        return;
    g_base = make_clustered(N_BASE + N_QUERY, DIM, 42);
    g_q = g_base + (size_t)N_BASE * DIM; /* queries: same distribution, not indexed */
    double t0 = dv_mono_s();
    g_h = build_index(g_base, N_BASE, DIM, DV_METRIC_EUCLIDEAN, 1, 7, 0, 0);
    fprintf(stderr, "  built %d x %d serially in %.2f s\n", N_BASE, DIM, dv_mono_s() - t0);
}

/* Decode g_h's graph into a fresh index holding the same vectors. */
static hnsw *clone_index(hnsw *src, const float *base, size_t n)
{
    hnsw_params p = {.dim = DIM, .metric = DV_METRIC_EUCLIDEAN, .seed = 7};
    hnsw *h = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (hnsw_create(&p, n, &h, NULL) != DV_OK)
        return NULL;
    for (size_t i = 0; i < n; i++)
        hnsw_set_vector(h, (uint32_t)i, base + i * DIM, NULL);
    if (hnsw_encode_graph(src, &buf, &len, NULL) != DV_OK || hnsw_decode_graph(h, buf, len, NULL) != DV_OK) {
        free(buf);
        hnsw_destroy(h);
        return NULL;
    }
    free(buf);
    return h;
}

/* ---- tests --------------------------------------------------------- */

TEST(create_rejects_out_of_range_parameters)
{
    hnsw *h = NULL;
    dv_err e = {0};
    hnsw_params p = {.dim = 0, .metric = DV_METRIC_EUCLIDEAN};
    CHECK(hnsw_create(&p, 10, &h, &e) == DV_EINVAL && h == NULL);
    p.dim = 4;
    p.m = 1;
    CHECK(hnsw_create(&p, 10, &h, &e) == DV_EINVAL);
    p.m = DV_HNSW_M_MAX + 1;
    CHECK(hnsw_create(&p, 10, &h, &e) == DV_EINVAL);
    p.m = 0;
    p.max_layer = DV_HNSW_MAX_LAYER_MAX + 1;
    CHECK(hnsw_create(&p, 10, &h, &e) == DV_EINVAL);
    p.max_layer = 0;
    p.ef_construction = DV_HNSW_EF_CONSTRUCTION_MAX + 1;
    CHECK(hnsw_create(&p, 10, &h, &e) == DV_EINVAL);
    p.ef_construction = 0;
    CHECK(hnsw_create(&p, 10, &h, &e) == DV_OK && h != NULL);
    CHECK(hnsw_count(h) == 0);
    uint32_t s;
    float q[4] = {0};
    CHECK(hnsw_search(h, q, 5, 10, NULL, NULL, &s, NULL) == 0);
    hnsw_destroy(h);
}

TEST(recall_at_10_default_parameters_is_at_least_0_95)
{
    setup();
    CHECK(g_h != NULL);
    CHECK(hnsw_count(g_h) == N_BASE);
    double r = measure_recall(g_h, g_base, N_BASE, g_q, N_QUERY, DV_HNSW_EF_SEARCH_DEFAULT, NULL, NULL);
    fprintf(stderr, "  recall@10 ef=%d: %.4f (mem %.1f MB)\n", DV_HNSW_EF_SEARCH_DEFAULT, r,
            (double)hnsw_mem_bytes(g_h) / 1e6);
    CHECKF(r >= 0.95, "recall %.4f", r);
}

TEST(results_are_sorted_and_distances_exact)
{
    setup();
    for (size_t i = 0; i < 20; i++) {
        uint32_t got[50];
        float gd[50];
        size_t n = hnsw_search(g_h, g_q + i * DIM, 50, 60, NULL, NULL, got, gd);
        CHECK(n == 50);
        for (size_t j = 0; j < n; j++) {
            CHECK(got[j] < N_BASE);
            float want = l2(g_base + (size_t)got[j] * DIM, g_q + i * DIM, DIM);
            CHECKF(fabsf(gd[j] - want) <= 1e-3f * (1 + want), "%g vs %g", gd[j], want);
            if (j)
                CHECK(gd[j] >= gd[j - 1]);
        }
    }
}

TEST(level_draw_follows_ml_one_over_ln_m)
{
    setup();
    /* P(level >= 1) = 1/M = 1/16 for mL = 1/ln(16). */
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(hnsw_encode_graph(g_h, &buf, &len, NULL));
    size_t off = 80, up = 0;
    for (size_t i = 0; i < N_BASE; i++) {
        uint32_t l = buf[off + 4];
        up += l > 0;
        off += 8;
        for (uint32_t lc = 0; lc <= l; lc++) {
            uint32_t c = buf[off] | buf[off + 1] << 8;
            off += 4 + 4 * (size_t)c;
        }
    }
    free(buf);
    double frac = (double)up / N_BASE;
    fprintf(stderr, "  fraction with level >= 1: %.4f (expected 0.0625)\n", frac);
    CHECKF(frac > 0.045 && frac < 0.08, "%.4f", frac);
}

TEST(serial_build_is_deterministic_under_a_fixed_seed)
{
    float *base = make_clustered(1500, 16, 3);
    hnsw *a = build_index(base, 1500, 16, DV_METRIC_EUCLIDEAN, 1, 99, 8, 64);
    hnsw *b = build_index(base, 1500, 16, DV_METRIC_EUCLIDEAN, 1, 99, 8, 64);
    CHECK(a && b);
    uint8_t *ba, *bb;
    size_t la, lb;
    CHECK_OK(hnsw_encode_graph(a, &ba, &la, NULL));
    CHECK_OK(hnsw_encode_graph(b, &bb, &lb, NULL));
    CHECK(la == lb && memcmp(ba, bb, la) == 0);
    free(ba);
    free(bb);
    hnsw_destroy(a);
    hnsw_destroy(b);
    free(base);
}

TEST(encode_decode_gives_identical_search_results)
{
    setup();
    hnsw *c = clone_index(g_h, g_base, N_BASE);
    CHECK(c != NULL);
    CHECK(hnsw_count(c) == hnsw_count(g_h));
    for (size_t i = 0; i < N_QUERY; i++) {
        uint32_t a[K], b[K];
        float ad[K], bd[K];
        size_t na = hnsw_search(g_h, g_q + i * DIM, K, 50, NULL, NULL, a, ad);
        size_t nb = hnsw_search(c, g_q + i * DIM, K, 50, NULL, NULL, b, bd);
        CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0 && memcmp(ad, bd, na * sizeof *ad) == 0);
    }
    uint8_t *b1, *b2;
    size_t l1, l2n;
    CHECK_OK(hnsw_encode_graph(g_h, &b1, &l1, NULL));
    CHECK_OK(hnsw_encode_graph(c, &b2, &l2n, NULL));
    CHECK(l1 == l2n && memcmp(b1, b2, l1) == 0);
    free(b1);
    free(b2);
    hnsw_destroy(c);
}

static int not_deleted(void *ctx, uint32_t s) { return !((const uint8_t *)ctx)[s]; }

TEST(recall_holds_after_deleting_30_percent_and_deleted_never_returned)
{
    setup();
    hnsw *h = clone_index(g_h, g_base, N_BASE);
    CHECK(h != NULL);
    uint8_t *del = calloc(N_BASE, 1);
    rng_state = 1234;
    size_t nd = 0;
    while (nd < N_BASE * 3 / 10) {
        uint32_t s = (uint32_t)(rnd() % N_BASE);
        if (del[s])
            continue;
        del[s] = 1;
        nd++;
        hnsw_mark_deleted(h, s);
    }
    CHECK(hnsw_count(h) == N_BASE - nd);
    CHECK(hnsw_has(h, 0) == !del[0]);
    /* Recall against exact search over the remaining points. */
    double sum = 0;
    for (size_t i = 0; i < N_QUERY; i++) {
        uint32_t got[K], truth[K];
        size_t ng = hnsw_search(h, g_q + i * DIM, K, DV_HNSW_EF_SEARCH_DEFAULT, NULL, NULL, got, NULL);
        for (size_t j = 0; j < ng; j++)
            CHECKF(!del[got[j]], "deleted slot %u returned", got[j]);
        size_t nt = exact_knn(g_base, N_BASE, DIM, g_q + i * DIM, K, not_deleted, del, truth);
        sum += recall_of(got, ng, truth, nt);
    }
    double r = sum / N_QUERY;
    fprintf(stderr, "  recall@10 after deleting %zu of %d: %.4f\n", nd, N_BASE, r);
    CHECKF(r >= 0.95, "recall %.4f", r);
    /* Wide searches, and searches from the deleted points themselves. */
    for (size_t i = 0; i < 200; i++) {
        uint32_t got[100];
        size_t ng = hnsw_search(h, g_base + (i * 97 % N_BASE) * DIM, 100, 150, NULL, NULL, got, NULL);
        CHECK(ng == 100);
        for (size_t j = 0; j < ng; j++)
            CHECKF(!del[got[j]], "deleted slot %u returned", got[j]);
    }
    /* The tombstones survive a round trip. */
    hnsw *c = clone_index(h, g_base, N_BASE);
    CHECK(c != NULL && hnsw_count(c) == N_BASE - nd);
    for (uint32_t s = 0; s < N_BASE; s++)
        CHECK(hnsw_has(c, s) == !del[s]);
    /* A tombstoned slot takes a new vector only through hnsw_reuse. */
    uint32_t ds = 0;
    while (!del[ds])
        ds++;
    CHECK(hnsw_set_vector(h, ds, g_base, NULL) == DV_EEXIST);
    hnsw_destroy(c);
    hnsw_destroy(h);
    free(del);
}

TEST(decode_drops_tombstones_whose_vectors_are_gone)
{
    float *base = make_clustered(2000, 16, 5);
    hnsw *h = build_index(base, 2000, 16, DV_METRIC_EUCLIDEAN, 1, 1, 8, 64);
    CHECK(h);
    for (uint32_t s = 0; s < 2000; s += 3)
        hnsw_mark_deleted(h, s);
    uint8_t *buf;
    size_t len;
    CHECK_OK(hnsw_encode_graph(h, &buf, &len, NULL));
    hnsw_params p = {.dim = 16, .metric = DV_METRIC_EUCLIDEAN, .m = 8, .ef_construction = 64, .seed = 1};
    hnsw *c = NULL;
    CHECK_OK(hnsw_create(&p, 2000, &c, NULL));
    for (uint32_t s = 0; s < 2000; s++)
        if (s % 3)
            hnsw_set_vector(c, s, base + (size_t)s * 16, NULL);
    dv_err e = {0};
    CHECK(hnsw_decode_graph(c, buf, len, &e) == DV_OK);
    CHECK(hnsw_count(c) == hnsw_count(h));
    for (size_t i = 0; i < 100; i++) {
        uint32_t got[K];
        size_t n = hnsw_search(c, base + i * 16, K, 50, NULL, NULL, got, NULL);
        CHECK(n == K);
        for (size_t j = 0; j < n; j++)
            CHECK(got[j] % 3 != 0);
    }
    /* Without the live vectors it is corruption. */
    hnsw *z = NULL;
    CHECK_OK(hnsw_create(&p, 2000, &z, NULL));
    CHECK(hnsw_decode_graph(z, buf, len, &e) == DV_ECORRUPT);
    CHECK(strstr(e.msg, "offset") != NULL);
    hnsw_destroy(z);
    free(buf);
    hnsw_destroy(c);
    hnsw_destroy(h);
    free(base);
}

/* A small graph for the hostile-input tests. */
#define SMALL_N 120
#define SMALL_D 4
static float *small_base;
static hnsw *small_fresh(void)
{
    hnsw_params p = {.dim = SMALL_D, .metric = DV_METRIC_EUCLIDEAN, .m = 4, .ef_construction = 16, .max_layer = 4, .seed = 5};
    hnsw *h = NULL;
    if (hnsw_create(&p, SMALL_N, &h, NULL) != DV_OK)
        return NULL;
    for (uint32_t s = 0; s < SMALL_N; s++)
        hnsw_set_vector(h, s, small_base + (size_t)s * SMALL_D, NULL);
    return h;
}
static hnsw *small_graph(void)
{
    if (!small_base)
        small_base = make_clustered(SMALL_N, SMALL_D, 11);
    hnsw *h = small_fresh();
    for (uint32_t s = 0; s < SMALL_N; s++)
        if (hnsw_link(h, s, NULL) != DV_OK)
            return NULL;
    for (uint32_t s = 0; s < SMALL_N; s += 10)
        hnsw_mark_deleted(h, s);
    return h;
}

/* Decoding `bad` into an index holding `good` must fail with DV_ECORRUPT and
 * leave the index encoding to exactly `good`. */
static int rejects_and_unchanged(hnsw *h, const uint8_t *bad, size_t blen, const uint8_t *good, size_t glen)
{
    dv_err e = {0};
    if (hnsw_decode_graph(h, bad, blen, &e) != DV_ECORRUPT)
        return 0;
    if (!strstr(e.msg, "offset"))
        return 0;
    uint8_t *now;
    size_t nlen;
    if (hnsw_encode_graph(h, &now, &nlen, NULL) != DV_OK)
        return 0;
    int same = nlen == glen && memcmp(now, good, glen) == 0;
    free(now);
    return same;
}

TEST(truncated_encodings_are_rejected_and_leave_the_index_unchanged)
{
    hnsw *h = small_graph();
    CHECK(h);
    uint8_t *good;
    size_t len;
    CHECK_OK(hnsw_encode_graph(h, &good, &len, NULL));
    for (size_t cut = 0; cut < len; cut++)
        CHECKF(rejects_and_unchanged(h, good, cut, good, len), "prefix of %zu bytes", cut);
    hnsw_destroy(h);
    free(good);
}

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
#include <xxhash.h>
static void fix_checksums(uint8_t *b, size_t len)
{
    put64le(b + 64, XXH3_64bits(b + 80, len - 80));
    put64le(b + 72, XXH3_64bits(b, 72));
}

TEST(every_single_bit_flip_is_rejected)
{
    hnsw *h = small_graph();
    CHECK(h);
    uint8_t *good;
    size_t len;
    CHECK_OK(hnsw_encode_graph(h, &good, &len, NULL));
    uint8_t *bad = malloc(len);
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(bad, good, len);
            bad[i] ^= (uint8_t)(1u << bit);
            CHECKF(rejects_and_unchanged(h, bad, len, good, len), "flip at byte %zu bit %d", i, bit);
        }
    free(bad);
    free(good);
    hnsw_destroy(h);
}

/* With the checksums recomputed, structural checks alone must hold: each
 * flip either decodes into a graph that searches safely or is rejected. */
TEST(bit_flips_with_fixed_checksums_never_crash_and_never_yield_invalid_graphs)
{
    hnsw *h = small_graph();
    CHECK(h);
    uint8_t *good;
    size_t len;
    CHECK_OK(hnsw_encode_graph(h, &good, &len, NULL));
    uint8_t *bad = malloc(len);
    size_t rejected = 0, accepted = 0;
    for (size_t i = 0; i < len; i++) {
        if (i >= 64 && i < 80)
            continue; /* the checksums themselves */
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, good, len);
            bad[i] ^= (uint8_t)(1u << bit);
            fix_checksums(bad, len);
            hnsw *c = small_fresh();
            dv_err e = {0};
            dv_code rc = hnsw_decode_graph(c, bad, len, &e);
            if (rc == DV_OK) {
                accepted++;
                for (uint32_t q = 0; q < 10; q++) {
                    uint32_t got[5];
                    size_t n = hnsw_search(c, small_base + (size_t)q * SMALL_D, 5, 20, NULL, NULL, got, NULL);
                    for (size_t j = 0; j < n; j++)
                        CHECK(got[j] < SMALL_N && hnsw_has(c, got[j]));
                }
            } else {
                CHECKF(rc == DV_ECORRUPT, "rc %d at byte %zu", rc, i);
                rejected++;
            }
            hnsw_destroy(c);
        }
    }
    fprintf(stderr, "  %zu flips rejected, %zu decoded to valid graphs\n", rejected, accepted);
    CHECK(rejected > 0);
    free(bad);
    free(good);
    hnsw_destroy(h);
}

TEST(crafted_bad_links_levels_and_entry_are_rejected)
{
    hnsw *h = small_graph();
    CHECK(h);
    uint8_t *good;
    size_t len;
    CHECK_OK(hnsw_encode_graph(h, &good, &len, NULL));
    uint8_t *bad = malloc(len);
    hnsw *c = small_fresh();
    dv_err e = {0};
    /* First node's first layer-0 link -> out of range, then -> self. */
    size_t first_link = 80 + 8 + 4;
    uint32_t tests[] = {SMALL_N, 0xFFFFFFFFu, 0 /* self: node 0 */};
    for (size_t t = 0; t < 3; t++) {
        memcpy(bad, good, len);
        put32le(bad + first_link, tests[t]);
        fix_checksums(bad, len);
        CHECK(hnsw_decode_graph(c, bad, len, &e) == DV_ECORRUPT);
        CHECKF(strstr(e.msg, "offset 92") != NULL, "%s", e.msg);
    }
    /* Level above max_layer. */
    memcpy(bad, good, len);
    bad[80 + 4] = 5;
    fix_checksums(bad, len);
    CHECK(hnsw_decode_graph(c, bad, len, &e) == DV_ECORRUPT);
    /* Entry point not a node / wrong top level. */
    memcpy(bad, good, len);
    put32le(bad + 28, SMALL_N + 5);
    fix_checksums(bad, len);
    CHECK(hnsw_decode_graph(c, bad, len, &e) == DV_ECORRUPT);
    memcpy(bad, good, len);
    put32le(bad + 32, 9);
    fix_checksums(bad, len);
    CHECK(hnsw_decode_graph(c, bad, len, &e) == DV_ECORRUPT);
    /* Count above 2m. */
    memcpy(bad, good, len);
    put32le(bad + 88, 9);
    fix_checksums(bad, len);
    CHECK(hnsw_decode_graph(c, bad, len, &e) == DV_ECORRUPT);
    /* Slots beyond the capacity. */
    memcpy(bad, good, len);
    put64le(bad + 40, (uint64_t)SMALL_N + 1);
    fix_checksums(bad, len);
    CHECK(hnsw_decode_graph(c, bad, len, &e) == DV_ECORRUPT);
    /* Huge node count. */
    memcpy(bad, good, len);
    put64le(bad + 48, UINT64_MAX);
    fix_checksums(bad, len);
    CHECK(hnsw_decode_graph(c, bad, len, &e) == DV_ECORRUPT);
    /* And the good one still decodes. */
    CHECK(hnsw_decode_graph(c, good, len, &e) == DV_OK);
    CHECK(hnsw_count(c) == hnsw_count(h));
    hnsw_destroy(c);
    free(bad);
    free(good);
    hnsw_destroy(h);
}

TEST(random_multi_byte_corruption_never_crashes)
{
    hnsw *h = small_graph();
    CHECK(h);
    uint8_t *good;
    size_t len;
    CHECK_OK(hnsw_encode_graph(h, &good, &len, NULL));
    uint8_t *bad = malloc(len);
    rng_state = 77;
    for (int it = 0; it < 3000; it++) {
        memcpy(bad, good, len);
        int nflip = 1 + (int)(rnd() % 8);
        for (int f = 0; f < nflip; f++)
            bad[80 + rnd() % (len - 80)] = (uint8_t)rnd();
        if (it & 1)
            fix_checksums(bad, len);
        hnsw *c = small_fresh();
        dv_code rc = hnsw_decode_graph(c, bad, len, NULL);
        CHECK(rc == DV_OK || rc == DV_ECORRUPT);
        if (rc == DV_OK) {
            uint32_t got[5];
            size_t n = hnsw_search(c, small_base, 5, 20, NULL, NULL, got, NULL);
            for (size_t j = 0; j < n; j++)
                CHECK(hnsw_has(c, got[j]));
        }
        hnsw_destroy(c);
    }
    free(bad);
    free(good);
    hnsw_destroy(h);
}

TEST(parallel_build_with_2_threads_matches_serial_recall)
{
    setup();
    double t0 = dv_mono_s();
    hnsw *p = build_index(g_base, N_BASE, DIM, DV_METRIC_EUCLIDEAN, 2, 7, 0, 0);
    double dt = dv_mono_s() - t0;
    CHECK(p != NULL);
    CHECK(hnsw_count(p) == N_BASE);
    double rs = measure_recall(g_h, g_base, N_BASE, g_q, N_QUERY, DV_HNSW_EF_SEARCH_DEFAULT, NULL, NULL);
    double rp = measure_recall(p, g_base, N_BASE, g_q, N_QUERY, DV_HNSW_EF_SEARCH_DEFAULT, NULL, NULL);
    fprintf(stderr, "  2-thread build %.2f s; recall@10 serial %.4f, parallel %.4f\n", dt, rs, rp);
    CHECKF(rp >= rs - 0.01, "parallel %.4f serial %.4f", rp, rs);
    hnsw_destroy(p);
}

static int accept_mod7(void *ctx, uint32_t s)
{
    (void)ctx;
    return s % 7 == 3;
}

TEST(filtered_search_returns_only_accepted_slots)
{
    setup();
    double sum = 0;
    for (size_t i = 0; i < N_QUERY; i++) {
        uint32_t got[K], truth[K];
        size_t ng = hnsw_search(g_h, g_q + i * DIM, K, 100, accept_mod7, NULL, got, NULL);
        CHECK(ng == K);
        for (size_t j = 0; j < ng; j++)
            CHECKF(got[j] % 7 == 3, "slot %u passed the filter", got[j]);
        size_t nt = exact_knn(g_base, N_BASE, DIM, g_q + i * DIM, K, accept_mod7, NULL, truth);
        sum += recall_of(got, ng, truth, nt);
    }
    fprintf(stderr, "  filtered (1/7 of slots) recall@10 ef=100: %.4f\n", sum / N_QUERY);
    CHECKF(sum / N_QUERY >= 0.9, "%.4f", sum / N_QUERY);
}

static int accept_few(void *ctx, uint32_t s)
{
    (void)ctx;
    return s < 5;
}

TEST(filter_matching_few_slots_still_finds_them_all)
{
    setup();
    uint32_t got[K];
    size_t n = hnsw_search(g_h, g_q, K, 10, accept_few, NULL, got, NULL);
    CHECKF(n == 5, "%zu", n);
    for (size_t j = 0; j < n; j++)
        CHECK(got[j] < 5);
}

TEST(dot_metric_on_normalized_vectors_has_high_recall)
{
    size_t n = N_BASE / 4, nq = 100;
    float *v = make_clustered(n + nq, DIM, 8);
    for (size_t i = 0; i < n + nq; i++) {
        float s = 0;
        for (size_t j = 0; j < DIM; j++)
            s += v[i * DIM + j] * v[i * DIM + j];
        s = sqrtf(s);
        for (size_t j = 0; j < DIM; j++)
            v[i * DIM + j] /= s;
    }
    hnsw *h = build_index(v, n, DIM, DV_METRIC_COSINE, 1, 3, 0, 0);
    CHECK(h);
    /* For unit vectors the L2 order equals the cosine order. */
    double r = measure_recall(h, v, n, v + n * DIM, nq, 50, NULL, NULL);
    fprintf(stderr, "  cosine recall@10 ef=50: %.4f\n", r);
    CHECKF(r >= 0.95, "%.4f", r);
    uint32_t got[1];
    float d[1];
    CHECK(hnsw_search(h, v, 1, 10, NULL, NULL, got, d) == 1);
    CHECK(got[0] == 0 && fabsf(d[0] + 1.0f) < 1e-4f); /* internal distance -ip */
    hnsw_destroy(h);
    free(v);
}

static float neg_ip(const float *a, const float *b, size_t d)
{
    float s = 0;
    for (size_t i = 0; i < d; i++)
        s += a[i] * b[i];
    return -s;
}

TEST(dot_metric_on_unnormalized_vectors_orders_by_inner_product)
{
    /* Vectors of norms 0.5..2: the unit-norm shortcut must switch itself
     * off and distances stay exactly -<q, v>. */
    size_t n = 3000, nq = 50, d = 32;
    float *v = make_clustered(n + nq, d, 12);
    for (size_t i = 0; i < n + nq; i++) {
        float s = 0;
        for (size_t j = 0; j < d; j++)
            s += v[i * d + j] * v[i * d + j];
        float scale = (0.5f + 1.5f * (float)(i % 7) / 6.0f) / sqrtf(s);
        for (size_t j = 0; j < d; j++)
            v[i * d + j] *= scale;
    }
    hnsw *h = build_index(v, n, d, DV_METRIC_DOT, 1, 3, 0, 0);
    CHECK(h);
    double sum = 0;
    for (size_t i = 0; i < nq; i++) {
        const float *q = v + (n + i) * d;
        uint32_t got[K], truth[K];
        float gd[K], bd[K];
        size_t ng = hnsw_search(h, q, K, 100, NULL, NULL, got, gd);
        CHECK(ng == K);
        for (size_t j = 0; j < ng; j++)
            CHECKF(fabsf(gd[j] - neg_ip(q, v + (size_t)got[j] * d, d)) < 1e-3f, "%g", gd[j]);
        /* exact by brute force over -ip */
        size_t nb = 0;
        for (size_t r = 0; r < n; r++) {
            float dd = neg_ip(q, v + r * d, d);
            if (nb == K && dd >= bd[nb - 1])
                continue;
            size_t j = nb < K ? nb++ : nb - 1;
            while (j > 0 && bd[j - 1] > dd) {
                bd[j] = bd[j - 1];
                truth[j] = truth[j - 1];
                j--;
            }
            bd[j] = dd;
            truth[j] = (uint32_t)r;
        }
        sum += recall_of(got, ng, truth, nb);
    }
    fprintf(stderr, "  dot (unnormalized) recall@10 ef=100: %.4f\n", sum / nq);
    CHECKF(sum / nq >= 0.9, "%.4f", sum / nq);
    hnsw_destroy(h);
    free(v);
}

typedef struct conc {
    hnsw *h;
    const float *base;
    size_t from, to;
    int stop;
    size_t n_search;
    int bad;
} conc;

static void *inserter(void *arg)
{
    conc *c = arg;
    for (size_t s = c->from; s < c->to; s++)
        if (hnsw_insert(c->h, (uint32_t)s, c->base + s * DIM, NULL) != DV_OK)
            __atomic_store_n(&c->bad, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    return NULL;
}

TEST(searches_concurrent_with_inserts_return_valid_slots)
{
    setup();
    size_t n = N_BASE / 2;
    hnsw_params p = {.dim = DIM, .metric = DV_METRIC_EUCLIDEAN, .seed = 4};
    hnsw *h = NULL;
    CHECK_OK(hnsw_create(&p, n, &h, NULL));
    for (uint32_t s = 0; s < n / 10; s++)
        CHECK_OK(hnsw_insert(h, s, g_base + (size_t)s * DIM, NULL));
    conc c = {.h = h, .base = g_base, .from = n / 10, .to = n};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, inserter, &c) == 0);
    size_t i = 0;
    int bad = 0;
    while (!__atomic_load_n(&c.stop, __ATOMIC_ACQUIRE)) {
        uint32_t got[K];
        float d[K];
        const float *q = g_q + (i++ % N_QUERY) * DIM;
        size_t ng = hnsw_search(h, q, K, 50, NULL, NULL, got, d);
        if (ng == 0)
            bad = 1;
        for (size_t j = 0; j < ng; j++) {
            if (got[j] >= n || !hnsw_has(h, got[j]))
                bad = 1;
            else if (fabsf(d[j] - l2(q, g_base + (size_t)got[j] * DIM, DIM)) > 1e-2f * (1 + d[j]))
                bad = 1;
            if (j && d[j] < d[j - 1])
                bad = 1;
        }
    }
    pthread_join(t, NULL);
    fprintf(stderr, "  %zu searches ran during %zu inserts\n", i, n - n / 10);
    CHECK(!bad && !c.bad);
    CHECK(hnsw_count(h) == n);
    double r = measure_recall(h, g_base, n, g_q, N_QUERY, 50, NULL, NULL);
    fprintf(stderr, "  recall@10 after concurrent inserts: %.4f\n", r);
    CHECKF(r >= 0.95, "%.4f", r);
    hnsw_destroy(h);
}

typedef struct delthr {
    hnsw *h;
    uint8_t *del; /* atomic bytes: 1 once the slot's delete has returned */
    size_t n;
    int stop;
} delthr;

static void *deleter(void *arg)
{
    delthr *d = arg;
    for (uint32_t s = 1; s < d->n; s += 3) {
        hnsw_mark_deleted(d->h, s);
        __atomic_store_n(&d->del[s], 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&d->stop, 1, __ATOMIC_RELEASE);
    return NULL;
}

TEST(searches_concurrent_with_deletes_never_return_slots_deleted_before_they_began)
{
    setup();
    hnsw *h = clone_index(g_h, g_base, N_BASE);
    CHECK(h != NULL);
    delthr d = {.h = h, .del = calloc(N_BASE, 1), .n = N_BASE};
    uint8_t *before = malloc(N_BASE);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, deleter, &d) == 0);
    size_t i = 0;
    int bad = 0;
    while (!__atomic_load_n(&d.stop, __ATOMIC_ACQUIRE)) {
        for (size_t s = 0; s < N_BASE; s++) /* deletes finished before this search */
            before[s] = __atomic_load_n(&d.del[s], __ATOMIC_ACQUIRE);
        uint32_t got[K];
        size_t ng = hnsw_search(h, g_q + (i++ % N_QUERY) * DIM, K, 50, NULL, NULL, got, NULL);
        if (ng != K)
            bad = 1;
        for (size_t j = 0; j < ng; j++)
            if (before[got[j]])
                bad = 1;
    }
    pthread_join(t, NULL);
    double r = measure_recall(h, g_base, N_BASE, g_q, N_QUERY, 50, not_deleted, d.del);
    fprintf(stderr, "  %zu searches during deletes; recall@10 over the rest after: %.4f\n", i, r);
    CHECK(!bad);
    CHECKF(r >= 0.95, "%.4f", r);
    free(before);
    free(d.del);
    hnsw_destroy(h);
}

TEST(reserve_grows_capacity_and_keeps_the_graph)
{
    float *base = make_clustered(3000, 16, 21);
    hnsw_params p = {.dim = 16, .metric = DV_METRIC_EUCLIDEAN, .seed = 2};
    hnsw *h = NULL;
    CHECK_OK(hnsw_create(&p, 10, &h, NULL));
    dv_err e = {0};
    CHECK(hnsw_insert(h, 10, base, &e) == DV_EINVAL);
    for (uint32_t s = 0; s < 3000; s++) {
        if (s >= hnsw_capacity(h))
            CHECK_OK(hnsw_reserve(h, hnsw_capacity(h) * 2, NULL));
        CHECK_OK(hnsw_insert(h, s, base + (size_t)s * 16, NULL));
    }
    CHECK(hnsw_count(h) == 3000);
    CHECK(hnsw_insert(h, 5, base, &e) == DV_EEXIST);
    for (uint32_t q = 0; q < 50; q++) {
        uint32_t got[1];
        CHECK(hnsw_search(h, base + (size_t)q * 16, 1, 20, NULL, NULL, got, NULL) == 1);
        CHECK(got[0] == q);
    }
    hnsw_destroy(h);
    free(base);
}

/* ---- slot reuse ------------------------------------------------------ */

/* Replace `n_rounds` times a tenth of the n points: delete them, then give
 * their slots new vectors from pool (cur[] tracks the vector of each slot). */
typedef struct churn {
    hnsw *h;
    float *cur;       /* n * DIM: the vector each slot holds now */
    const float *pool;
    size_t n, pool_n, next;
    unsigned threads;
} churn;

static int churn_round(churn *ch, uint8_t *mark)
{
    size_t nd = ch->n / 10;
    uint32_t *slots = malloc(nd * sizeof *slots);
    memset(mark, 0, ch->n);
    size_t k = 0;
    uint32_t entry = hnsw_entry(ch->h);
    while (k < nd) {
        uint32_t s = (uint32_t)(rnd() % ch->n);
        if (mark[s])
            continue;
        mark[s] = 1;
        hnsw_mark_deleted(ch->h, s);
        if (s != entry) /* the entry point is never reused */
            slots[k++] = s;
        else
            nd--;
    }
    int bad = 0;
    for (size_t i = 0; i < k; i++) {
        const float *v = ch->pool + (ch->next++ % ch->pool_n) * DIM;
        if (hnsw_reuse(ch->h, slots[i], v, NULL) != DV_OK)
            bad = 1;
        memcpy(ch->cur + (size_t)slots[i] * DIM, v, DIM * sizeof(float));
        mark[slots[i]] = 0;
    }
    if (hnsw_build(ch->h, slots, k, ch->threads, NULL) != DV_OK)
        bad = 1;
    free(slots);
    return bad;
}

TEST(reused_slots_keep_recall_after_replacing_every_point_twice)
{
    setup();
    size_t n = N_BASE / 2;
    hnsw *h = build_index(g_base, n, DIM, DV_METRIC_EUCLIDEAN, 2, 9, 0, 0);
    CHECK(h != NULL);
    size_t cap = hnsw_capacity(h);
    float *cur = malloc(n * DIM * sizeof *cur);
    memcpy(cur, g_base, n * DIM * sizeof *cur);
    /* New vectors: the other half of the data set, so every round moves
     * points across the clusters. */
    churn ch = {.h = h, .cur = cur, .pool = g_base + n * DIM, .n = n, .pool_n = N_BASE - n, .threads = 2};
    uint8_t *mark = calloc(n, 1);
    rng_state = 99;
    int bad = 0;
    for (int round = 0; round < 20; round++)
        bad |= churn_round(&ch, mark);
    CHECK(!bad);
    CHECK(hnsw_capacity(h) == cap);
    /* Every deleted slot of the last round that could not be reused (the
     * entry point) is still a tombstone; all others are live. */
    size_t live = 0;
    for (uint32_t s = 0; s < n; s++)
        live += hnsw_has(h, s) != 0;
    CHECK(hnsw_count(h) == live);
    CHECKF(live >= n - 1, "%zu live of %zu", live, n);
    double r = measure_recall(h, cur, n, g_q, N_QUERY, DV_HNSW_EF_SEARCH_DEFAULT, not_deleted, mark);
    fprintf(stderr, "  recall@10 after 20 rounds replacing 10%% of %zu points in reused slots: %.4f\n", n, r);
    CHECKF(r >= 0.95, "recall %.4f", r);
    /* The graph survives an encode/decode round trip with the new vectors. */
    hnsw_params p = {.dim = DIM, .metric = DV_METRIC_EUCLIDEAN, .seed = 9};
    hnsw *c = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(hnsw_create(&p, n, &c, NULL));
    for (uint32_t s = 0; s < n; s++)
        hnsw_set_vector(c, s, cur + (size_t)s * DIM, NULL);
    CHECK_OK(hnsw_encode_graph(h, &buf, &len, NULL));
    CHECK_OK(hnsw_decode_graph(c, buf, len, NULL));
    double rc = measure_recall(c, cur, n, g_q, N_QUERY, DV_HNSW_EF_SEARCH_DEFAULT, not_deleted, mark);
    CHECKF(fabs(rc - r) < 1e-9, "decoded recall %.4f vs %.4f", rc, r);
    free(buf);
    hnsw_destroy(c);
    free(mark);
    free(cur);
    hnsw_destroy(h);
}

TEST(reuse_refuses_live_slots_the_entry_point_and_out_of_range)
{
    float *base = make_clustered(300, 16, 31);
    hnsw_params p = {.dim = 16, .metric = DV_METRIC_EUCLIDEAN, .seed = 3};
    hnsw *h = NULL;
    CHECK_OK(hnsw_create(&p, 300, &h, NULL));
    for (uint32_t s = 0; s < 200; s++)
        CHECK_OK(hnsw_insert(h, s, base + (size_t)s * 16, NULL));
    dv_err e = {0};
    CHECK(hnsw_reuse(h, 5, base, &e) == DV_EEXIST);
    CHECK(hnsw_reuse(h, 300, base, &e) == DV_EINVAL);
    uint32_t entry = hnsw_entry(h);
    CHECK(entry < 200);
    hnsw_mark_deleted(h, entry);
    CHECK(hnsw_reuse(h, entry, base, &e) == DV_EBUSY);
    /* A slot never stored is taken like set_vector would. */
    CHECK_OK(hnsw_reuse(h, 250, base + 250 * 16, NULL));
    CHECK_OK(hnsw_link(h, 250, NULL));
    /* A reused slot is linked again, once. */
    uint32_t s = entry == 7 ? 8 : 7;
    hnsw_mark_deleted(h, s);
    CHECK(hnsw_count(h) == 199);
    CHECK_OK(hnsw_reuse(h, s, base + 260 * 16, NULL));
    CHECK(hnsw_has(h, s));
    CHECK_OK(hnsw_link(h, s, NULL));
    CHECK(hnsw_link(h, s, &e) == DV_EEXIST);
    CHECK(hnsw_count(h) == 200);
    uint32_t got[1];
    CHECK(hnsw_search(h, base + 260 * 16, 1, 20, NULL, NULL, got, NULL) == 1 && got[0] == s);
    hnsw_destroy(h);
    free(base);
}

typedef struct reusethr {
    churn *ch;
    uint8_t *mark;
    pthread_rwlock_t *rw;
    int rounds, bad, stop;
} reusethr;

/* The collection's pattern: delete + reuse under the exclusive lock, link
 * under the shared one (beside searches). */
static void *reuser(void *arg)
{
    reusethr *r = arg;
    churn *ch = r->ch;
    size_t nd = ch->n / 20;
    uint32_t *slots = malloc(nd * sizeof *slots);
    for (int round = 0; round < r->rounds; round++) {
        pthread_rwlock_wrlock(r->rw);
        uint32_t entry = hnsw_entry(ch->h);
        size_t k = 0;
        for (size_t i = 0; i < nd; i++) {
            uint32_t s = (uint32_t)(rnd() % ch->n);
            int dup = 0;
            for (size_t j = 0; j < k && !dup; j++)
                dup = slots[j] == s;
            if (s == entry || dup || !hnsw_has(ch->h, s))
                continue;
            hnsw_mark_deleted(ch->h, s);
            const float *v = ch->pool + (ch->next++ % ch->pool_n) * DIM;
            if (hnsw_reuse(ch->h, s, v, NULL) != DV_OK)
                r->bad = 1;
            memcpy(ch->cur + (size_t)s * DIM, v, DIM * sizeof(float));
            slots[k++] = s;
        }
        pthread_rwlock_unlock(r->rw);
        pthread_rwlock_rdlock(r->rw);
        if (hnsw_build(ch->h, slots, k, 1, NULL) != DV_OK)
            r->bad = 1;
        pthread_rwlock_unlock(r->rw);
    }
    free(slots);
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    return NULL;
}

TEST(searches_concurrent_with_relinking_reused_slots_return_exact_distances)
{
    setup();
    size_t n = N_BASE / 4;
    hnsw *h = build_index(g_base, n, DIM, DV_METRIC_EUCLIDEAN, 2, 5, 0, 0);
    CHECK(h != NULL);
    float *cur = malloc(n * DIM * sizeof *cur);
    memcpy(cur, g_base, n * DIM * sizeof *cur);
    churn ch = {.h = h, .cur = cur, .pool = g_base + n * DIM, .n = n, .pool_n = N_BASE - n, .threads = 1};
    pthread_rwlock_t rw;
    pthread_rwlock_init(&rw, NULL);
    rng_state = 77;
    reusethr r = {.ch = &ch, .rw = &rw, .rounds = 30};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, reuser, &r) == 0);
    size_t i = 0;
    int bad = 0;
    while (!__atomic_load_n(&r.stop, __ATOMIC_ACQUIRE)) {
        uint32_t got[K];
        float d[K];
        const float *q = g_q + (i++ % N_QUERY) * DIM;
        pthread_rwlock_rdlock(&rw);
        size_t ng = hnsw_search(h, q, K, 50, NULL, NULL, got, d);
        if (ng != K)
            bad = 1;
        for (size_t j = 0; j < ng; j++) {
            if (got[j] >= n || !hnsw_has(h, got[j]))
                bad = 1;
            else if (fabsf(d[j] - l2(q, cur + (size_t)got[j] * DIM, DIM)) > 1e-2f * (1 + d[j]))
                bad = 1;
        }
        pthread_rwlock_unlock(&rw);
    }
    pthread_join(t, NULL);
    CHECK(!r.bad);
    CHECK(!bad);
    double rec = measure_recall(h, cur, n, g_q, N_QUERY, 50, NULL, NULL);
    fprintf(stderr, "  %zu searches beside 30 rounds of reuse; recall@10 after: %.4f\n", i, rec);
    CHECKF(rec >= 0.95, "%.4f", rec);
    pthread_rwlock_destroy(&rw);
    free(cur);
    hnsw_destroy(h);
}

/* Many threads searching at once: contexts beyond the pool's bound are
 * freed when returned, so memory does not keep the peak concurrency. */
typedef struct hammer {
    hnsw *h;
    int n;
} hammer;

static void *hammer_searches(void *arg)
{
    hammer *hm = arg;
    for (int i = 0; i < hm->n; i++) {
        uint32_t got[K];
        hnsw_search(hm->h, g_q + (size_t)(i % N_QUERY) * DIM, K, 100, NULL, NULL, got, NULL);
    }
    return NULL;
}

TEST(scratch_pool_keeps_a_bounded_number_of_contexts_after_32_concurrent_searchers)
{
    setup();
    hammer hm = {.h = g_h, .n = 200};
    pthread_t t[32];
    for (int i = 0; i < 32; i++)
        CHECK(pthread_create(&t[i], NULL, hammer_searches, &hm) == 0);
    for (int i = 0; i < 32; i++)
        pthread_join(t[i], NULL);
    size_t kept = 0;
    for (const hnsw_ctx *c = g_h->pool; c; c = c->next)
        kept++;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t bound = ncpu > 2 ? (size_t)ncpu * 2 : 4;
    fprintf(stderr, "  %zu scratch contexts kept after 32 threads x 200 searches (bound %zu)\n", kept, bound);
    CHECKF(kept <= bound, "%zu contexts kept", kept);
    CHECK(kept >= 1);
}

T_MAIN()
