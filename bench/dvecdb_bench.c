/* dvecdb_bench.c - benchmark driver for our HNSW (src/hnsw.h) on one dataset.
 *
 * Usage: dvecdb_bench DATA_PREFIX euclidean|cosine EF_LIST REPS THREADS_LIST
 * Reads DATA_PREFIX.{base,query}.fvecs and .gt.ivecs (bench/prep.py), and for
 * each thread count builds the index (M=16, ef_construction=200) timing
 * hnsw_create + storing every vector + hnsw_build. The first build (the first
 * thread count, normally 1) is the one measured for memory (RSS delta and
 * hnsw_mem_bytes) and searched: for each ef, every query one at a time on
 * this thread, k=10, best wall time of REPS passes -> QPS; recall@10 against
 * the ground truth. Prints one JSON line. Cosine data is already unit-norm,
 * which is what the engine stores for a Cosine collection. */
#include "bench_common.h"
#include "hnsw.h"

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
    int cosine = strcmp(argv[2], "cosine") == 0;
    size_t efs[BENCH_MAX_EF], threads[8];
    size_t n_ef = bench_parse_list(argv[3], efs, BENCH_MAX_EF);
    int reps = atoi(argv[4]);
    size_t n_thr = bench_parse_list(argv[5], threads, 8);
    const float *b = (const float *)base.data, *q = (const float *)qv.data;
    const int32_t *g = (const int32_t *)gt.data;

    uint32_t *slots = malloc(base.n * sizeof *slots);
    for (size_t i = 0; i < base.n; i++)
        slots[i] = (uint32_t)i;
    hnsw_params p = {.dim = (uint32_t)base.dim,
                     .metric = cosine ? DV_METRIC_COSINE : DV_METRIC_EUCLIDEAN,
                     .m = 16,
                     .ef_construction = 200,
                     .max_layer = 0,
                     .seed = 42};

    double build_s[8];
    size_t rss_delta = 0, mem_bytes = 0;
    printf("{\"system\":\"d-vecDB\",\"n\":%zu,\"dim\":%zu,\"nq\":%zu,\"M\":16,\"efc\":200", base.n, base.dim, qv.n);
    for (size_t t = 0; t < n_thr; t++) {
        dv_err err = {0};
        hnsw *h = NULL;
        size_t rss0 = bench_rss(), heap0 = bench_heap();
        double t0 = bench_now();
        if (hnsw_create(&p, base.n, &h, &err) != DV_OK) {
            fprintf(stderr, "bench: hnsw_create: %s\n", err.msg);
            return 1;
        }
        for (size_t i = 0; i < base.n; i++)
            if (hnsw_set_vector(h, (uint32_t)i, b + i * base.dim, &err) != DV_OK) {
                fprintf(stderr, "bench: hnsw_set_vector: %s\n", err.msg);
                return 1;
            }
        if (hnsw_build(h, slots, base.n, (unsigned)threads[t], &err) != DV_OK) {
            fprintf(stderr, "bench: hnsw_build: %s\n", err.msg);
            return 1;
        }
        build_s[t] = bench_now() - t0;
        fprintf(stderr, "d-vecDB: built %zu x %zu with %zu thread(s) in %.2f s\n", base.n, base.dim, threads[t],
                build_s[t]);
        if (t > 0) {
            hnsw_destroy(h);
            continue;
        }
        rss_delta = bench_rss() - rss0;
        mem_bytes = hnsw_mem_bytes(h);
        printf(",\"index_bytes\":%zu,\"rss_delta_bytes\":%zu,\"heap_bytes\":%zu,\"runs\":[", mem_bytes, rss_delta,
               bench_heap() - heap0);
        uint32_t ids[BENCH_K];
        float ds[BENCH_K];
        for (size_t i = 0; i < qv.n; i++) /* warm-up pass: page in, train the branch predictors */
            hnsw_search(h, q + i * qv.dim, BENCH_K, efs[0], NULL, NULL, ids, ds);
        double search_t0 = bench_now();
        for (size_t e = 0; e < n_ef; e++) {
            double best = 1e30, recall = 0;
            for (int r = 0; r < reps; r++) {
                double sum = 0;
                double s0 = bench_now();
                for (size_t i = 0; i < qv.n; i++) {
                    size_t got = hnsw_search(h, q + i * qv.dim, BENCH_K, efs[e], NULL, NULL, ids, ds);
                    if (r == 0)
                        sum += bench_recall(ids, got, g + i * gt.dim, BENCH_K);
                }
                double el = bench_now() - s0;
                if (el < best)
                    best = el;
                if (r == 0)
                    recall = sum / (double)qv.n;
            }
            printf("%s{\"ef\":%zu,\"recall\":%.5f,\"qps\":%.1f}", e ? "," : "", efs[e], recall, (double)qv.n / best);
            fprintf(stderr, "d-vecDB: ef %zu recall %.4f qps %.0f\n", efs[e], recall, (double)qv.n / best);
        }
        printf("]");
        /* CLOCK_MONOTONIC seconds: run.sh hands them to perf report --time */
        fprintf(stderr, "phase search %.6f %.6f\n", search_t0, bench_now());
        hnsw_destroy(h);
    }
    printf(",\"build_s\":{");
    for (size_t t = 0; t < n_thr; t++)
        printf("%s\"%zu\":%.3f", t ? "," : "", threads[t], build_s[t]);
    printf("}}\n");
    free(slots);
    free(base.data);
    free(qv.data);
    free(gt.data);
    return 0;
}
