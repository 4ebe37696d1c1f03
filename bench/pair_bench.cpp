// pair_bench.cpp - d-vecDB's HNSW and hnswlib measured side by side in ONE
// process, interleaved, so that other load on a shared machine falls on both
// alike. This is what bench/run.sh uses for the headline ratios; the
// standalone drivers (dvecdb_bench.c, hnswlib_bench.cpp) measure the same
// things one system at a time and serve for profiling.
//
// Usage: pair_bench DATA_PREFIX euclidean|cosine EF_LIST REPS THREADS_LIST CHUNK
// Build, for each thread count: both indexes grow CHUNK vectors at a time,
// alternately (d-vecDB: hnsw_set_vector for the chunk + hnsw_build over it;
// hnswlib: addPoint spread over the same number of threads); a build time is
// the sum of that system's chunks. Memory, over the first build: the growth
// of live heap bytes (mallinfo2) summed over each system's chunks, exact
// whatever the interleaving (only the running system allocates or frees),
// and the same for RSS, which is approximate here (pages one system frees
// may be reused by the other). Search (on the first build): for each rep
// and ef, one pass over the queries per system, the order alternating
// between reps; best pass -> QPS.
// Prints two JSON lines, the same shape as the standalone drivers.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <hnswlib/hnswlib.h>

extern "C" {
#include "hnsw.h"
}
#include "bench_common.h"

struct result {
    std::string json_runs;
    double build_s[8] = {0};
    size_t rss_delta = 0, heap_delta = 0, index_bytes = 0;
};

static void die_dv(const char *what, const dv_err &e)
{
    fprintf(stderr, "pair_bench: %s: %s\n", what, e.msg);
    exit(1);
}

static size_t hnswlib_bytes(const hnswlib::HierarchicalNSW<float> &h)
{
    size_t b = h.max_elements_ * h.size_data_per_element_;
    b += h.max_elements_ * (sizeof(void *) + sizeof(int) + sizeof(std::mutex));
    for (size_t i = 0; i < h.cur_element_count; i++)
        if (h.element_levels_[i] > 0)
            b += h.size_links_per_element_ * (size_t)h.element_levels_[i];
    b += h.label_lookup_.size() * (sizeof(void *) + 2 * sizeof(size_t)) + h.label_lookup_.bucket_count() * sizeof(void *);
    return b;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s DATA_PREFIX euclidean|cosine EF_LIST REPS THREADS_LIST CHUNK\n", argv[0]);
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
    size_t chunk = strtoul(argv[6], NULL, 10);
    const float *b = (const float *)base.data, *q = (const float *)qv.data;
    const int32_t *g = (const int32_t *)gt.data;
    const size_t n = base.n, dim = base.dim;

    std::vector<uint32_t> slots(n);
    for (size_t i = 0; i < n; i++)
        slots[i] = (uint32_t)i;
    hnsw_params p = {};
    p.dim = (uint32_t)dim;
    p.metric = cosine ? DV_METRIC_COSINE : DV_METRIC_EUCLIDEAN;
    p.m = 16;
    p.ef_construction = 200;
    p.seed = 42;
    hnswlib::L2Space l2(dim);
    hnswlib::InnerProductSpace ip(dim);
    hnswlib::SpaceInterface<float> *space = cosine ? (hnswlib::SpaceInterface<float> *)&ip : &l2;

    result ours, theirs;
    for (size_t t = 0; t < n_thr; t++) {
        unsigned nt = (unsigned)threads[t];
        dv_err e = {};
        hnsw *h = NULL;
        size_t r0 = bench_rss(), m0 = bench_heap();
        double t0 = bench_now();
        if (hnsw_create(&p, n, &h, &e) != DV_OK)
            die_dv("hnsw_create", e);
        ours.build_s[t] += bench_now() - t0;
        if (t == 0) {
            ours.rss_delta = bench_rss() - r0;
            ours.heap_delta = bench_heap() - m0;
        }
        r0 = bench_rss();
        m0 = bench_heap();
        t0 = bench_now();
        auto *hl = new hnswlib::HierarchicalNSW<float>(space, n, 16, 200, 42);
        theirs.build_s[t] += bench_now() - t0;
        if (t == 0) {
            theirs.rss_delta = bench_rss() - r0;
            theirs.heap_delta = bench_heap() - m0;
        }
        size_t step = chunk;
        for (size_t s = 0; s < n; s += step) {
            size_t m = n - s < step ? n - s : step;
            bool ours_first = (s / step) % 2 == 0;
            for (int turn = 0; turn < 2; turn++) {
                bool run_ours = (turn == 0) == ours_first;
                r0 = bench_rss();
                m0 = bench_heap();
                t0 = bench_now();
                if (run_ours) {
                    for (size_t i = s; i < s + m; i++)
                        if (hnsw_set_vector(h, (uint32_t)i, b + i * dim, &e) != DV_OK)
                            die_dv("hnsw_set_vector", e);
                    if (hnsw_build(h, slots.data() + s, m, nt, &e) != DV_OK)
                        die_dv("hnsw_build", e);
                } else if (nt <= 1) {
                    for (size_t i = s; i < s + m; i++)
                        hl->addPoint(b + i * dim, i);
                } else {
                    std::atomic<size_t> next(s);
                    std::vector<std::thread> pool;
                    for (unsigned w = 0; w < nt; w++)
                        pool.emplace_back([&]() {
                            for (size_t i; (i = next.fetch_add(1)) < s + m;)
                                hl->addPoint(b + i * dim, i);
                        });
                    for (auto &th : pool)
                        th.join();
                }
                double el = bench_now() - t0;
                size_t grown = bench_rss() - r0;
                size_t heap_grown = bench_heap() - m0;
                result &r = run_ours ? ours : theirs;
                r.build_s[t] += el;
                if (t == 0) {
                    r.rss_delta += grown;
                    r.heap_delta += heap_grown;
                }
            }
        }
        fprintf(stderr, "pair: %zu x %zu, %u thread(s): d-vecDB %.2f s, hnswlib %.2f s\n", n, dim, nt, ours.build_s[t],
                theirs.build_s[t]);
        if (t > 0) {
            hnsw_destroy(h);
            delete hl;
            continue;
        }
        ours.index_bytes = hnsw_mem_bytes(h);
        theirs.index_bytes = hnswlib_bytes(*hl);

        std::vector<double> best_o(n_ef, 1e30), best_t(n_ef, 1e30), rec_o(n_ef), rec_t(n_ef);
        uint32_t ids[BENCH_K];
        float ds[BENCH_K];
        hl->setEf(efs[0]);
        for (size_t i = 0; i < qv.n; i++) { // warm-up pass for both
            hnsw_search(h, q + i * dim, BENCH_K, efs[0], NULL, NULL, ids, ds);
            hl->searchKnn(q + i * dim, BENCH_K);
        }
        for (int r = 0; r < reps; r++)
            for (size_t ei = 0; ei < n_ef; ei++) {
                size_t ef = efs[ei];
                hl->setEf(ef);
                for (int turn = 0; turn < 2; turn++) {
                    bool run_ours = (turn == 0) == (r % 2 == 0);
                    double sum = 0;
                    double s0 = bench_now();
                    for (size_t i = 0; i < qv.n; i++) {
                        const float *qi = q + i * dim;
                        if (run_ours) {
                            size_t got = hnsw_search(h, qi, BENCH_K, ef, NULL, NULL, ids, ds);
                            if (r == 0)
                                sum += bench_recall(ids, got, g + i * gt.dim, BENCH_K);
                        } else {
                            auto res = hl->searchKnn(qi, BENCH_K);
                            if (r == 0) {
                                size_t got = res.size();
                                for (size_t j = got; j-- > 0; res.pop())
                                    ids[j] = (uint32_t)res.top().second;
                                sum += bench_recall(ids, got, g + i * gt.dim, BENCH_K);
                            }
                        }
                    }
                    double el = bench_now() - s0;
                    std::vector<double> &best = run_ours ? best_o : best_t;
                    if (el < best[ei])
                        best[ei] = el;
                    if (r == 0)
                        (run_ours ? rec_o : rec_t)[ei] = sum / (double)qv.n;
                }
            }
        for (size_t ei = 0; ei < n_ef; ei++) {
            char buf[160];
            snprintf(buf, sizeof buf, "%s{\"ef\":%zu,\"recall\":%.5f,\"qps\":%.1f}", ei ? "," : "", efs[ei], rec_o[ei],
                     (double)qv.n / best_o[ei]);
            ours.json_runs += buf;
            snprintf(buf, sizeof buf, "%s{\"ef\":%zu,\"recall\":%.5f,\"qps\":%.1f}", ei ? "," : "", efs[ei], rec_t[ei],
                     (double)qv.n / best_t[ei]);
            theirs.json_runs += buf;
            fprintf(stderr, "pair: ef %zu: d-vecDB recall %.4f qps %.0f | hnswlib recall %.4f qps %.0f\n", efs[ei],
                    rec_o[ei], (double)qv.n / best_o[ei], rec_t[ei], (double)qv.n / best_t[ei]);
        }
        hnsw_destroy(h);
        delete hl;
    }
    const char *names[2] = {"d-vecDB", "hnswlib (native)"};
    result *rs[2] = {&ours, &theirs};
    for (int k = 0; k < 2; k++) {
        printf("{\"system\":\"%s\",\"n\":%zu,\"dim\":%zu,\"nq\":%zu,\"M\":16,\"efc\":200,\"interleaved\":true,"
               "\"index_bytes\":%zu,\"rss_delta_bytes\":%zu,\"heap_bytes\":%zu,\"runs\":[%s],\"build_s\":{",
               names[k], n, dim, qv.n, rs[k]->index_bytes, rs[k]->rss_delta, rs[k]->heap_delta,
               rs[k]->json_runs.c_str());
        for (size_t t = 0; t < n_thr; t++)
            printf("%s\"%zu\":%.3f", t ? "," : "", threads[t], rs[k]->build_s[t]);
        printf("}}\n");
    }
    free(base.data);
    free(qv.data);
    free(gt.data);
    return 0;
}
