// hnswlib_bench.cpp - the same measurements as dvecdb_bench.c, for hnswlib
// (Debian's libhnswlib-dev headers, compiled here with -O3 -march=native so
// it gets its AVX-512 kernels). Our own driver; only the hnswlib API is used.
//
// Usage: hnswlib_bench DATA_PREFIX euclidean|cosine EF_LIST REPS THREADS_LIST
// Build = constructing HierarchicalNSW + addPoint for every vector, with
// THREADS workers pulling the next index from an atomic counter (how
// hnswlib's own Python binding parallelizes add_items). Memory: RSS delta
// over the first build, plus an estimate from hnswlib's own fields. Cosine
// data is already unit-norm, so it is searched with InnerProductSpace.
#include <atomic>
#include <thread>
#include <vector>

#include <hnswlib/hnswlib.h>

#include "bench_common.h"

static size_t hnswlib_bytes(const hnswlib::HierarchicalNSW<float> &h)
{
    size_t b = h.max_elements_ * h.size_data_per_element_;        // level 0: links + vector + label
    b += h.max_elements_ * (sizeof(void *) + sizeof(int) + sizeof(std::mutex)); // linkLists_, levels, locks
    for (size_t i = 0; i < h.cur_element_count; i++)
        if (h.element_levels_[i] > 0)
            b += h.size_links_per_element_ * (size_t)h.element_levels_[i];
    b += h.label_lookup_.size() * (sizeof(void *) + 2 * sizeof(size_t)) + h.label_lookup_.bucket_count() * sizeof(void *);
    return b;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s DATA_PREFIX euclidean|cosine EF_LIST REPS THREADS_LIST\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s.base.fvecs", argv[1]);
    bench_vecs base = bench_load_vecs(path);
    snprintf(path, sizeof path, "%s.query.fvecs", argv[1]);
    bench_vecs qv = bench_load_vecs(path);
    snprintf(path, sizeof path, "%s.gt.ivecs", argv[1]);
    bench_vecs gt = bench_load_vecs(path);
    if (qv.dim != base.dim || gt.n != qv.n || gt.dim < BENCH_K)
        bench_die("inconsistent dataset", argv[1]);
    bool cosine = strcmp(argv[2], "cosine") == 0;
    size_t efs[BENCH_MAX_EF], threads[8];
    size_t n_ef = bench_parse_list(argv[3], efs, BENCH_MAX_EF);
    int reps = atoi(argv[4]);
    size_t n_thr = bench_parse_list(argv[5], threads, 8);
    const float *b = (const float *)base.data, *q = (const float *)qv.data;
    const int32_t *g = (const int32_t *)gt.data;

    hnswlib::L2Space l2(base.dim);
    hnswlib::InnerProductSpace ip(base.dim);
    hnswlib::SpaceInterface<float> *space = cosine ? (hnswlib::SpaceInterface<float> *)&ip : &l2;

    double build_s[8];
    printf("{\"system\":\"hnswlib (native)\",\"n\":%zu,\"dim\":%zu,\"nq\":%zu,\"M\":16,\"efc\":200", base.n,
           base.dim, qv.n);
    for (size_t t = 0; t < n_thr; t++) {
        size_t rss0 = bench_rss(), heap0 = bench_heap();
        double t0 = bench_now();
        auto *h = new hnswlib::HierarchicalNSW<float>(space, base.n, 16, 200, 42);
        if (threads[t] <= 1) {
            for (size_t i = 0; i < base.n; i++)
                h->addPoint(b + i * base.dim, i);
        } else {
            std::atomic<size_t> next(0);
            std::vector<std::thread> pool;
            for (size_t w = 0; w < threads[t]; w++)
                pool.emplace_back([&]() {
                    for (size_t i; (i = next.fetch_add(1)) < base.n;)
                        h->addPoint(b + i * base.dim, i);
                });
            for (auto &th : pool)
                th.join();
        }
        build_s[t] = bench_now() - t0;
        fprintf(stderr, "hnswlib: built %zu x %zu with %zu thread(s) in %.2f s\n", base.n, base.dim, threads[t],
                build_s[t]);
        if (t > 0) {
            delete h;
            continue;
        }
        size_t rss_delta = bench_rss() - rss0;
        printf(",\"index_bytes\":%zu,\"rss_delta_bytes\":%zu,\"heap_bytes\":%zu,\"runs\":[", hnswlib_bytes(*h),
               rss_delta, bench_heap() - heap0);
        uint32_t ids[BENCH_K];
        h->setEf(efs[0]);
        for (size_t i = 0; i < qv.n; i++) // warm-up pass, as in every driver
            h->searchKnn(q + i * qv.dim, BENCH_K);
        double search_t0 = bench_now();
        for (size_t e = 0; e < n_ef; e++) {
            h->setEf(efs[e]);
            double best = 1e30, recall = 0;
            for (int r = 0; r < reps; r++) {
                double sum = 0;
                double s0 = bench_now();
                for (size_t i = 0; i < qv.n; i++) {
                    auto res = h->searchKnn(q + i * qv.dim, BENCH_K);
                    if (r == 0) {
                        size_t got = res.size();
                        for (size_t j = got; j-- > 0; res.pop()) // the queue pops farthest first
                            ids[j] = (uint32_t)res.top().second;
                        sum += bench_recall(ids, got, g + i * gt.dim, BENCH_K);
                    }
                }
                double el = bench_now() - s0;
                if (el < best)
                    best = el;
                if (r == 0)
                    recall = sum / (double)qv.n;
            }
            printf("%s{\"ef\":%zu,\"recall\":%.5f,\"qps\":%.1f}", e ? "," : "", efs[e], recall, (double)qv.n / best);
            fprintf(stderr, "hnswlib: ef %zu recall %.4f qps %.0f\n", efs[e], recall, (double)qv.n / best);
        }
        printf("]");
        /* CLOCK_MONOTONIC seconds: run.sh hands them to perf report --time */
        fprintf(stderr, "phase search %.6f %.6f\n", search_t0, bench_now());
        delete h;
    }
    printf(",\"build_s\":{");
    for (size_t t = 0; t < n_thr; t++)
        printf("%s\"%zu\":%.3f", t ? "," : "", threads[t], build_s[t]);
    printf("}}\n");
    free(base.data);
    free(qv.data);
    free(gt.data);
    return 0;
}
