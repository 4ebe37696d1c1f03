// dist_bench.cpp - nanoseconds per distance call: every d-vecDB kernel
// variant this CPU runs against hnswlib's own kernels (-O3 -march=native,
// so its AVX-512 ones), called the way both HNSWs call them, through a
// function pointer. Two working sets: "hot" (a few vectors in L1/L2, pure
// arithmetic) and "cold" (random rows of 64 MB of vectors, what a graph walk
// sees). Usage: dist_bench CALLS  (prints one JSON line).
#include <hnswlib/hnswlib.h>

#include <random>
#include <vector>

extern "C" {
#include "dist.h"
}
#include "bench_common.h"

typedef float (*hnsw_fn)(const void *, const void *, const void *);

struct timing {
    double hot_ns, cold_ns;
};

static volatile float sink;

template <typename F>
static timing measure(F f, const std::vector<float> &big, size_t dim, const std::vector<uint32_t> &rows, size_t calls)
{
    timing t;
    const float *base = big.data();
    float acc = 0;
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) { // hot: 8 vectors, cycled
        double s = bench_now();
        for (size_t i = 0; i < calls; i++)
            acc += f(base + (i & 7) * dim, base + 8 * dim, dim);
        best = std::min(best, bench_now() - s);
    }
    t.hot_ns = best * 1e9 / (double)calls;
    best = 1e30;
    for (int rep = 0; rep < 3; rep++) { // cold: random rows
        double s = bench_now();
        for (size_t i = 0; i < calls; i++)
            acc += f(base + (size_t)rows[i % rows.size()] * dim, base + 8 * dim, dim);
        best = std::min(best, bench_now() - s);
    }
    t.cold_ns = best * 1e9 / (double)calls;
    sink = acc;
    return t;
}

int main(int argc, char **argv)
{
    size_t calls = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    const size_t dims[] = {128, 784, 1536};
    const char *variants[] = {"scalar", "avx2", "avx512"};
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    printf("{\"calls\":%zu,\"dims\":[", calls);
    for (size_t di = 0; di < 3; di++) {
        size_t dim = dims[di];
        size_t n_rows = (64u << 20) / (dim * 4);
        std::vector<float> big(n_rows * dim);
        for (auto &x : big)
            x = u(rng);
        std::vector<uint32_t> rows(1 << 16);
        for (auto &r : rows)
            r = (uint32_t)(rng() % n_rows);
        printf("%s{\"dim\":%zu,\"kernels\":[", di ? "," : "", dim);
        bool first = true;
        auto emit = [&](const char *who, const char *kern, timing t) {
            printf("%s{\"impl\":\"%s\",\"kernel\":\"%s\",\"hot_ns\":%.2f,\"cold_ns\":%.2f}", first ? "" : ",", who,
                   kern, t.hot_ns, t.cold_ns);
            first = false;
            fprintf(stderr, "dim %4zu %-14s %-5s hot %7.1f ns  cold %7.1f ns\n", dim, who, kern, t.hot_ns, t.cold_ns);
        };
        for (const char *v : variants) {
            const dist_kernels *k = dist_variant(v);
            if (!k)
                continue;
            dist_fn l2 = k->l2sq, ip = k->nip;
            emit(k->name, "l2sq", measure([&](const float *a, const float *b, size_t n) { return l2(a, b, n); },
                                          big, dim, rows, calls));
            emit(k->name, "ip", measure([&](const float *a, const float *b, size_t n) { return ip(a, b, n); }, big,
                                        dim, rows, calls));
        }
        hnswlib::L2Space l2s(dim);
        hnswlib::InnerProductSpace ips(dim);
        hnsw_fn hl2 = l2s.get_dist_func(), hip = ips.get_dist_func();
        void *p2 = l2s.get_dist_func_param(), *pi = ips.get_dist_func_param();
        emit("hnswlib", "l2sq",
             measure([&](const float *a, const float *b, size_t) { return hl2(a, b, p2); }, big, dim, rows, calls));
        emit("hnswlib", "ip",
             measure([&](const float *a, const float *b, size_t) { return hip(a, b, pi); }, big, dim, rows, calls));
        printf("]}");
    }
    printf("]}\n");
    return 0;
}
