#!/usr/bin/python3
"""py_bench.py - the same measurements as dvecdb_bench.c, for two Python peers.

  --system hnswlib-py   Debian's python3-hnswlib (built for baseline SSE)
  --system faiss        FAISS IndexHNSWFlat (python3-faiss, generic build)

Build with each thread count (faiss.omp_set_num_threads / add_items
num_threads); the first build is measured for memory (RSS delta) and searched
one query at a time on one thread, k=10, best of REPS passes. Each search is a
Python call, so these QPS include ~µs of interpreter overhead per query that
the native drivers do not pay; noted in docs/benchmarks.md.
Prints one JSON line, the same shape as the C drivers."""
import argparse
import ctypes
import json
import os
import sys
import time

import numpy as np

K = 10


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].copy().view(dtype)


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = _Mallinfo2


def heap():
    """Live malloc bytes over every arena (glibc mallinfo2), as bench_common.h."""
    m = _libc.mallinfo2()
    return m.uordblks + m.hblkhd


def recall(found, gt_row):
    return len(set(int(x) for x in found[:K]) & set(int(x) for x in gt_row[:K])) / K


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True, choices=["hnswlib-py", "faiss"])
    ap.add_argument("prefix")
    ap.add_argument("metric", choices=["euclidean", "cosine"])
    ap.add_argument("efs")
    ap.add_argument("reps", type=int)
    ap.add_argument("threads")
    a = ap.parse_args()
    base = read_vecs(a.prefix + ".base.fvecs", np.float32)
    query = read_vecs(a.prefix + ".query.fvecs", np.float32)
    gt = read_vecs(a.prefix + ".gt.ivecs", np.int32)
    efs = [int(x) for x in a.efs.split(",")]
    threads = [int(x) for x in a.threads.split(",")]
    n, dim = base.shape
    name = {"hnswlib-py": "hnswlib (python3-hnswlib)", "faiss": "FAISS IndexHNSWFlat"}[a.system]

    if a.system == "faiss":
        import faiss

        def build(nt):
            faiss.omp_set_num_threads(nt)
            metric = faiss.METRIC_INNER_PRODUCT if a.metric == "cosine" else faiss.METRIC_L2
            idx = faiss.IndexHNSWFlat(dim, 16, metric)
            idx.hnsw.efConstruction = 200
            idx.add(base)
            return idx

        def prepare_search(idx):
            faiss.omp_set_num_threads(1)

        def set_ef(idx, ef):
            idx.hnsw.efSearch = ef

        def search(idx, q):
            return idx.search(q, K)[1][0]

        def index_bytes(idx):
            # vectors + level-0..L neighbour tables + levels/offsets, from FAISS's own arrays
            h = idx.hnsw
            return (idx.ntotal * dim * 4 + h.neighbors.size() * 4 + h.levels.size() * 4
                    + h.offsets.size() * 8 + h.assign_probas.size() * 8)
    else:
        import hnswlib

        def build(nt):
            idx = hnswlib.Index(space="ip" if a.metric == "cosine" else "l2", dim=dim)
            idx.init_index(max_elements=n, M=16, ef_construction=200, random_seed=42)
            idx.add_items(base, np.arange(n), num_threads=nt)
            return idx

        def prepare_search(idx):
            idx.set_num_threads(1)

        def set_ef(idx, ef):
            idx.set_ef(ef)

        def search(idx, q):
            return idx.knn_query(q, k=K, num_threads=1)[0][0]

        def index_bytes(idx):
            return None  # the binding does not expose its fields

    out = {"system": name, "n": n, "dim": dim, "nq": len(query), "M": 16, "efc": 200, "build_s": {}}
    for t, nt in enumerate(threads):
        r0, m0 = rss(), heap()
        t0 = time.perf_counter()
        idx = build(nt)
        out["build_s"][str(nt)] = round(time.perf_counter() - t0, 3)
        print(f"{a.system}: built {n} x {dim} with {nt} thread(s) in {out['build_s'][str(nt)]:.2f} s",
              file=sys.stderr)
        if t > 0:
            del idx
            continue
        out["rss_delta_bytes"] = rss() - r0
        out["heap_bytes"] = heap() - m0
        out["index_bytes"] = index_bytes(idx)
        prepare_search(idx)
        qs = [query[i:i + 1] for i in range(len(query))]
        set_ef(idx, efs[0])
        for q in qs:  # warm-up pass, as in every driver
            search(idx, q)
        runs = []
        for ef in efs:
            set_ef(idx, ef)
            best, rec = 1e30, 0.0
            for r in range(a.reps):
                s0 = time.perf_counter()
                res = [search(idx, q) for q in qs]
                best = min(best, time.perf_counter() - s0)
                if r == 0:
                    rec = sum(recall(res[i], gt[i]) for i in range(len(qs))) / len(qs)
            runs.append({"ef": ef, "recall": round(rec, 5), "qps": round(len(qs) / best, 1)})
            print(f"{a.system}: ef {ef} recall {rec:.4f} qps {len(qs) / best:.0f}", file=sys.stderr)
        out["runs"] = runs
        del idx
    print(json.dumps(out))


if __name__ == "__main__":
    main()
