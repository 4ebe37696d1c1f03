#!/usr/bin/python3
"""prep.py - write the benchmark datasets once, for every system to read.

Datasets (bench/out/<name>.{base,query}.fvecs, <name>.gt.ivecs, <name>.json):
  fmnist    Fashion-MNIST (Debian's dataset-fashion-mnist, the ann-benchmarks
            set): the 60,000 training images as base vectors (784 dims, pixel
            values 0..255 as float32), the first 1,000 test images as queries,
            Euclidean.
  synth1536 1536-dim clustered vectors, unit-normalized (the shape of OpenAI
            embeddings), cosine: 20,000 base, 500 queries, fixed seed.
Ground truth: the exact top-100 by brute force in float64 (numpy).
With --smoke the sizes are tiny (make test runs it).

.fvecs/.ivecs: per vector an int32 dimension then that many float32/int32,
little-endian (the TEXMEX format ann-benchmarks and FAISS use)."""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np

GT_K = 100


def read_idx_images(path, limit):
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            sys.exit(f"prep: {path}: bad idx magic {magic:#x}")
        n = min(n, limit)
        buf = f.read(n * rows * cols)
    return np.frombuffer(buf, dtype=np.uint8).reshape(n, rows * cols).astype(np.float32)


def write_vecs(path, arr, dtype):
    arr = np.ascontiguousarray(arr, dtype=dtype)
    n, d = arr.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = arr.view(np.int32)
    tmp = path + ".tmp"
    out.tofile(tmp)
    os.replace(tmp, path)


def ground_truth(base, queries, metric, k):
    """Exact top-k ids per query, float64, base in chunks to bound memory."""
    q = queries.astype(np.float64)
    k = min(k, len(base))
    best_d = np.full((len(q), 0), np.inf)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    chunk = 8192
    for s in range(0, len(base), chunk):
        b = base[s:s + chunk].astype(np.float64)
        if metric == "euclidean":
            d = (b * b).sum(1)[None, :] - 2.0 * q @ b.T  # + |q|^2, same for every row
        else:  # cosine over unit vectors = -inner product
            d = -(q @ b.T)
        ids = np.arange(s, s + len(b))[None, :].repeat(len(q), 0)
        cd = np.concatenate([best_d, d], 1)
        ci = np.concatenate([best_i, ids], 1)
        # stable order: distance, then id (the same tie-break as flat_search)
        order = np.lexsort((ci, cd), axis=1)[:, :k]
        best_d = np.take_along_axis(cd, order, 1)
        best_i = np.take_along_axis(ci, order, 1)
    return best_i.astype(np.int32)


def synth(n_base, n_query, dim, seed):
    """Clustered, low intrinsic dimension plus isotropic noise, normalized:
    100 cluster centres, a shared 48-dim latent subspace, noise 0.25 of it."""
    rng = np.random.default_rng(seed)
    n_clusters, latent = 100, 48
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    mix = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)

    def draw(n):
        c = rng.integers(0, n_clusters, n)
        z = rng.standard_normal((n, latent)).astype(np.float32)
        x = centres[c] * 0.8 + z @ mix + 0.25 * rng.standard_normal((n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)

    return draw(n_base), draw(n_query)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--mnist-dir", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    sizes = {"fmnist": (60000, 1000), "synth1536": (20000, 500)}
    if a.smoke:
        sizes = {"fmnist": (1000, 20), "synth1536": (500, 20)}

    for name, (nb, nq) in sizes.items():
        meta_path = os.path.join(a.out, name + ".json")
        want = {"name": name, "n_base": nb, "n_query": nq, "version": 2}
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                have = json.load(f)
            if all(have.get(k) == v for k, v in want.items()):
                print(f"prep: {name}: up to date ({nb} base, {nq} queries)", file=sys.stderr)
                continue
        if name == "fmnist":
            base = read_idx_images(os.path.join(a.mnist_dir, "train-images-idx3-ubyte.gz"), nb)
            query = read_idx_images(os.path.join(a.mnist_dir, "t10k-images-idx3-ubyte.gz"), nq)
            metric = "euclidean"
        else:
            base, query = synth(nb, nq, 1536, seed=20261125)
            metric = "cosine"
        gt = ground_truth(base, query, metric, GT_K)
        p = os.path.join(a.out, name)
        write_vecs(p + ".base.fvecs", base, np.float32)
        write_vecs(p + ".query.fvecs", query, np.float32)
        write_vecs(p + ".gt.ivecs", gt, np.int32)
        want.update(dim=int(base.shape[1]), metric=metric, gt_k=int(gt.shape[1]))
        with open(meta_path, "w") as f:
            json.dump(want, f)
        print(f"prep: {name}: {nb} x {base.shape[1]} base, {nq} queries, {metric}", file=sys.stderr)


if __name__ == "__main__":
    main()
