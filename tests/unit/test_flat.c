/* test_flat.c - flat_search equals a naive sort of every distance, with and
 * without labels and an accept filter; ties break by label. */
#include <math.h>
#include <stdint.h>
#include "t.h"
#include "dist.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float frand(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }

typedef struct { float d; uint32_t l; } pair;
static int cmp_pair(const void *x, const void *y)
{
    const pair *a = x, *b = y;
    if (a->d != b->d)
        return a->d < b->d ? -1 : 1;
    return a->l < b->l ? -1 : a->l > b->l;
}

static int accept_mod3(void *ctx, uint32_t label)
{
    (*(size_t *)ctx)++;
    return label % 3 == 0;
}
static int accept_none(void *ctx, uint32_t label)
{
    (void)ctx;
    (void)label;
    return 0;
}

enum { N = 1500, DIM = 37, NQ = 12 };
static float vecs[N * DIM], qs[NQ * DIM];
static uint32_t labels[N];
static pair all[N];
static uint32_t out_ids[N + 10];
static float out_d[N + 10];

/* Compare flat_search with sorting every (accepted) distance, for one query. */
static int check_query(const float *q, dist_fn fn, size_t k, const uint32_t *ids, int filter)
{
    size_t n_all = 0;
    for (size_t r = 0; r < N; r++) {
        uint32_t l = ids ? ids[r] : (uint32_t)r;
        if (filter && l % 3 != 0)
            continue;
        all[n_all].d = fn(vecs + r * DIM, q, DIM);
        all[n_all++].l = l;
    }
    qsort(all, n_all, sizeof all[0], cmp_pair);
    size_t calls = 0;
    size_t got = flat_search(vecs, ids, N, DIM, fn, q, k, filter ? accept_mod3 : NULL, &calls, out_ids, out_d);
    size_t want = k < n_all ? k : n_all;
    if (got != want) {
        fprintf(stderr, "  k=%zu: got %zu results, want %zu\n", k, got, want);
        return 0;
    }
    if (filter && calls != N) {
        fprintf(stderr, "  accept called %zu times, want once per row (%d)\n", calls, N);
        return 0;
    }
    for (size_t i = 0; i < got; i++)
        if (out_ids[i] != all[i].l || out_d[i] != all[i].d) {
            fprintf(stderr, "  k=%zu rank %zu: got (%u, %g) want (%u, %g)\n", k, i, out_ids[i], out_d[i],
                    all[i].l, all[i].d);
            return 0;
        }
    return 1;
}

static void fill(void)
{
    for (size_t i = 0; i < N * DIM; i++)
        vecs[i] = frand();
    for (size_t i = 0; i < NQ * DIM; i++)
        qs[i] = frand();
    /* labels: a random permutation of 1000..1000+N */
    for (uint32_t i = 0; i < N; i++)
        labels[i] = 1000 + i;
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = rnd() % (i + 1), t = labels[i];
        labels[i] = labels[j];
        labels[j] = t;
    }
}

TEST(flat_search_equals_naive_sort_for_every_metric_and_k)
{
    fill();
    static const size_t ks[] = {1, 2, 10, 100, 999, N, N + 7};
    const dv_metric ms[] = {DV_METRIC_EUCLIDEAN, DV_METRIC_DOT, DV_METRIC_MANHATTAN};
    for (size_t m = 0; m < 3; m++)
        for (size_t q = 0; q < NQ; q++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                CHECKF(check_query(qs + q * DIM, dist_for_metric(ms[m]), ks[ki], NULL, 0), "metric %d q %zu",
                       (int)ms[m], q);
}

TEST(flat_search_reports_labels_and_applies_the_filter)
{
    fill();
    dist_fn fn = dist_for_metric(DV_METRIC_EUCLIDEAN);
    for (size_t q = 0; q < NQ; q++) {
        CHECK(check_query(qs + q * DIM, fn, 10, labels, 0));
        CHECK(check_query(qs + q * DIM, fn, 10, labels, 1));
        CHECK(check_query(qs + q * DIM, fn, 10, NULL, 1));
        CHECK(check_query(qs + q * DIM, fn, 600, labels, 1)); /* > the 500 accepted */
    }
}

TEST(flat_search_with_nothing_accepted_or_k_zero_returns_nothing)
{
    fill();
    dist_fn fn = dist_for_metric(DV_METRIC_EUCLIDEAN);
    CHECK(flat_search(vecs, NULL, N, DIM, fn, qs, 10, accept_none, NULL, out_ids, out_d) == 0);
    CHECK(flat_search(vecs, NULL, N, DIM, fn, qs, 0, NULL, NULL, out_ids, out_d) == 0);
    CHECK(flat_search(vecs, NULL, 0, DIM, fn, qs, 10, NULL, NULL, out_ids, out_d) == 0);
}

TEST(flat_search_breaks_distance_ties_by_smaller_label)
{
    /* 40 copies of one row, labelled in descending order: all at distance 0 */
    static float rows[40 * 4];
    static uint32_t ids[40];
    for (uint32_t r = 0; r < 40; r++) {
        for (size_t j = 0; j < 4; j++)
            rows[r * 4 + j] = (float)j;
        ids[r] = 100 - r;
    }
    float q[4] = {0, 1, 2, 3};
    size_t got = flat_search(rows, ids, 40, 4, dist_for_metric(DV_METRIC_EUCLIDEAN), q, 5, NULL, NULL, out_ids,
                             out_d);
    CHECK(got == 5);
    for (uint32_t i = 0; i < 5; i++)
        CHECKF(out_ids[i] == 61 + i && out_d[i] == 0.0f, "rank %u: %u", i, out_ids[i]);
}

TEST(flat_search_ranks_nan_distances_last)
{
    float rows[3 * 2] = {0, 0, NAN, 0, 5, 5};
    float q[2] = {0, 0};
    size_t got = flat_search(rows, NULL, 3, 2, dist_for_metric(DV_METRIC_EUCLIDEAN), q, 3, NULL, NULL, out_ids, out_d);
    CHECK(got == 3);
    CHECK(out_ids[0] == 0 && out_ids[1] == 2 && out_ids[2] == 1);
    CHECK(isinf(out_d[2]));
    got = flat_search(rows, NULL, 3, 2, dist_for_metric(DV_METRIC_EUCLIDEAN), q, 2, NULL, NULL, out_ids, out_d);
    CHECK(got == 2 && out_ids[0] == 0 && out_ids[1] == 2);
}

T_MAIN()
