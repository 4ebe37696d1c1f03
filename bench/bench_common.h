/* bench_common.h - what every native benchmark driver measures the same way:
 * .fvecs/.ivecs loading, wall-clock time, resident set size, recall@k, and
 * the JSON line each driver prints. Written to compile as C11 and as C++. */
#ifndef DV_BENCH_COMMON_H
#define DV_BENCH_COMMON_H
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct bench_vecs {
    size_t n, dim;
    void *data; /* n * dim float32 or int32, contiguous */
} bench_vecs;

static inline void bench_die(const char *what, const char *path)
{
    fprintf(stderr, "bench: %s: %s\n", what, path);
    exit(2);
}

/* Read a TEXMEX .fvecs / .ivecs file (per row: int32 dim, then dim 4-byte
 * values) into one contiguous array. */
static inline bench_vecs bench_load_vecs(const char *path)
{
    bench_vecs v = {0, 0, NULL};
    FILE *f = fopen(path, "rb");
    if (!f)
        bench_die("cannot open", path);
    int32_t d;
    if (fread(&d, 4, 1, f) != 1 || d <= 0)
        bench_die("bad header", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    size_t row = 4 + (size_t)d * 4;
    if (size <= 0 || (size_t)size % row != 0)
        bench_die("size is not a multiple of the row size", path);
    v.n = (size_t)size / row;
    v.dim = (size_t)d;
    v.data = malloc(v.n * v.dim * 4);
    if (!v.data)
        bench_die("out of memory", path);
    fseek(f, 0, SEEK_SET);
    for (size_t i = 0; i < v.n; i++) {
        int32_t di;
        if (fread(&di, 4, 1, f) != 1 || di != d ||
            fread((char *)v.data + i * v.dim * 4, 4, v.dim, f) != v.dim)
            bench_die("short or inconsistent row", path);
    }
    fclose(f);
    return v;
}

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Resident set size in bytes, from /proc/self/statm. */
static inline size_t bench_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Bytes the allocator has handed out and not had back, over every arena
 * (glibc mallinfo2: in-use chunks + mmapped chunks). Unlike RSS it does not
 * depend on which pages earlier frees left for reuse, so two indexes built in
 * one process are measured alike. */
static inline size_t bench_heap(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* |found ∩ true top-k| / k for one query; gt row has gt_k >= k ids. */
static inline double bench_recall(const uint32_t *found, size_t n_found, const int32_t *gt, size_t k)
{
    size_t hit = 0;
    for (size_t i = 0; i < n_found && i < k; i++)
        for (size_t j = 0; j < k; j++)
            if ((int64_t)found[i] == (int64_t)gt[j]) {
                hit++;
                break;
            }
    return (double)hit / (double)k;
}

/* Parse "10,20,40" into out (at most cap values); returns the count. */
static inline size_t bench_parse_list(const char *s, size_t *out, size_t cap)
{
    size_t n = 0;
    while (*s && n < cap) {
        char *end;
        unsigned long x = strtoul(s, &end, 10);
        if (end == s)
            break;
        out[n++] = (size_t)x;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

#define BENCH_K 10
#define BENCH_MAX_EF 32
#endif
