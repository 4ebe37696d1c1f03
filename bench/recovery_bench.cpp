// recovery_bench.cpp - native hnswlib build time on the recovery benchmark's
// vectors (bench/recovery_bench.h regenerates them from the seed), for the
// ratio "our import's index build / hnswlib's build" of issue 5.
//
// Usage: recovery_bench_hnswlib N DIM THREADS
// Same parameters as the engine: M 16, ef_construction 200, L2; THREADS
// workers pull the next point from an atomic counter (how hnswlib's Python
// binding parallelizes add_items). Prints one JSON object.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <thread>
#include <vector>

#include <hnswlib/hnswlib.h>

#include "recovery_bench.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s N DIM THREADS\n", argv[0]);
        return 2;
    }
    size_t n = strtoull(argv[1], nullptr, 10), dim = strtoull(argv[2], nullptr, 10);
    unsigned threads = (unsigned)atoi(argv[3]);
    std::vector<float> v(n * dim);
    for (size_t i = 0; i < n; i++)
        rb_point(RB_SEED, i, (uint32_t)dim, &v[i * dim]);
    hnswlib::L2Space space(dim);
    timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0); // CPU seconds of every thread: robust to a shared machine
    auto t0 = std::chrono::steady_clock::now();
    hnswlib::HierarchicalNSW<float> h(&space, n, 16, 200, 100);
    std::atomic<size_t> next{0};
    std::vector<std::thread> th;
    for (unsigned t = 0; t < threads; t++)
        th.emplace_back([&] {
            for (size_t i; (i = next.fetch_add(1)) < n;)
                h.addPoint(&v[i * dim], i);
        });
    for (auto &t : th)
        t.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
    printf("{\"what\":\"hnswlib_build\",\"n\":%zu,\"dim\":%zu,\"threads\":%u,\"seconds\":%.3f,\"cpu_seconds\":%.3f}\n",
           n, dim, threads, s, cpu);
    return 0;
}
