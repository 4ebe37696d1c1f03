#!/usr/bin/python3
"""report.py - turn the drivers' JSON results into tables, a plot and
docs/benchmarks.md.

Usage: report.py RESULTS_DIR OUT_MD PLOT_PNG [--doc] [--check]
RESULTS_DIR holds <dataset>.<system-key>.json (one driver run each) and
<dataset>.json (prep.py's metadata). With --doc, OUT_MD is the full
docs/benchmarks.md (machine, command, tables, plot, bench/notes.md appended);
without, just the tables. --check exits 1 if any system never reaches recall
0.8 (a broken driver or index: the smoke run's assertion).

The headline number per system is the best QPS among the measured ef values
whose recall@10 is >= 0.95 (no interpolation between ef values)."""
import glob
import json
import os
import platform
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGET = 0.95
REF = "hnswlib (native)"
OURS = "d-vecDB"
ORDER = ["d-vecDB", "hnswlib (native)", "hnswlib (python3-hnswlib)", "FAISS IndexHNSWFlat"]
TITLES = {"fmnist": "Fashion-MNIST 60,000 x 784, Euclidean",
          "synth1536": "synthetic clustered 20,000 x 1536, cosine"}


def load(results_dir):
    """{dataset: {system: result}}. A <dataset>.pair.json (pair_bench: d-vecDB
    and hnswlib interleaved in one process) supplies their build times and
    search runs; the standalone runs of the same systems supply memory."""
    data = {}
    pairs = []
    for p in sorted(glob.glob(os.path.join(results_dir, "*.*.json"))):
        ds = os.path.basename(p).split(".")[0]
        with open(p) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for r in rows:
            if r.get("interleaved"):
                pairs.append((ds, r))
            else:
                data.setdefault(ds, {})[r["system"]] = r
    for ds, r in pairs:
        alone = data.setdefault(ds, {}).get(r["system"])
        if alone:
            r["rss_delta_bytes"] = alone.get("rss_delta_bytes")
            r["index_bytes"] = alone.get("index_bytes")
        data[ds][r["system"]] = r
    return data


def best_at(r, target=TARGET):
    ok = [x for x in r["runs"] if x["recall"] >= target]
    return max(ok, key=lambda x: x["qps"]) if ok else None


def mb(x):
    return "-" if x is None else f"{x / 1e6:.1f}"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def summary(ds, systems, meta):
    lines = []
    m = meta.get(ds, {})
    title = TITLES.get(ds, ds)
    if m:
        title += f" ({m['n_base']} base, {m['n_query']} queries)"
    lines.append(f"### {title}\n")
    lines.append("| system | build 1 thr (s) | build 2 thr (s) | heap (MB) | RSS delta (MB) | self-reported (MB) "
                 f"| best QPS at recall>={TARGET} (ef, recall) | QPS vs hnswlib | build 2 thr vs hnswlib "
                 "| memory (heap) vs hnswlib |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ref = systems.get(REF)
    ref_best = best_at(ref) if ref else None
    verdict = {}
    for name in [s for s in ORDER if s in systems] + [s for s in systems if s not in ORDER]:
        r = systems[name]
        b = best_at(r)
        bs = r.get("build_s", {})
        q_r = ratio(b["qps"] if b else None, ref_best["qps"] if ref_best else None)
        b_r = ratio(bs.get("2"), ref["build_s"].get("2") if ref else None)
        m_r = ratio(r.get("heap_bytes"), ref.get("heap_bytes") if ref else None)
        best_s = f"{b['qps']:.0f} ({b['ef']}, {b['recall']:.3f})" if b else "never reached"
        lines.append(f"| {name} | {bs.get('1', '-')} | {bs.get('2', '-')} | {mb(r.get('heap_bytes'))} "
                     f"| {mb(r.get('rss_delta_bytes'))} "
                     f"| {mb(r.get('index_bytes'))} | {best_s} | {fmt_ratio(q_r)} | {fmt_ratio(b_r)} "
                     f"| {fmt_ratio(m_r)} |")
        if name == OURS:
            verdict = {"qps": q_r, "build": b_r, "mem": m_r}
    lines.append("")
    # per-ef detail
    names = [s for s in ORDER if s in systems] + [s for s in systems if s not in ORDER]
    lines.append("| ef | " + " | ".join(f"{n}: recall / QPS" for n in names) + " |")
    lines.append("|---:|" + "---:|" * len(names))
    efs = sorted({x["ef"] for n in names for x in systems[n]["runs"]})
    for ef in efs:
        cells = []
        for n in names:
            x = next((x for x in systems[n]["runs"] if x["ef"] == ef), None)
            cells.append(f"{x['recall']:.4f} / {x['qps']:.0f}" if x else "-")
        lines.append(f"| {ef} | " + " | ".join(cells) + " |")
    lines.append("")
    if verdict:
        def bar(v, ok, want):
            if v is None:
                return f"n/a (want {want})"
            return f"{v:.2f}x ({'met' if ok(v) else 'MISSED'}; want {want})"
        lines.append(f"The bar for {ds}: QPS at recall>={TARGET}: "
                     f"{bar(verdict['qps'], lambda v: v >= 1.2, '>= 1.2x')}; "
                     f"build with 2 threads: {bar(verdict['build'], lambda v: v <= 1.0, '<= 1.0x')}; "
                     f"index memory: {bar(verdict['mem'], lambda v: v <= 1.1, '<= 1.1x')}.\n")
    return lines


def kernels(path):
    """Table of ns per call from dist_bench (kernels.json), if present."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        k = json.load(f)
    impls = []
    for d in k["dims"]:
        for x in d["kernels"]:
            if x["impl"] not in impls:
                impls.append(x["impl"])
    lines = ["### Distance kernels alone (`bench/dist_bench.cpp`)", "",
             "Nanoseconds per call through a function pointer, best of 3 passes of "
             f"{k['calls']} calls. hot: the same few vectors (arithmetic only); cold: random rows of 64 MB "
             "(memory-bound, what a graph walk sees). `ip` is our `nip` kernel (what Cosine/Dot search runs) "
             "and hnswlib's InnerProductSpace function (1 - ip).", "",
             "| dim | kernel | " + " | ".join(f"{i} hot / cold" for i in impls) + " |",
             "|---:|---|" + "---:|" * len(impls)]
    for d in k["dims"]:
        for kern in ("l2sq", "ip"):
            cells = []
            for i in impls:
                x = next((x for x in d["kernels"] if x["impl"] == i and x["kernel"] == kern), None)
                cells.append(f"{x['hot_ns']:.1f} / {x['cold_ns']:.1f}" if x else "-")
            lines.append(f"| {d['dim']} | {kern} | " + " | ".join(cells) + " |")
    return lines + [""]


def jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def engine(results_dir):
    """Ingest vs dd, reopen vs reading the files, server vs in-process QPS."""
    e = jsonl(os.path.join(results_dir, "engine.jsonl"))
    w = jsonl(os.path.join(results_dir, "server.jsonl"))
    if not e:
        return []
    by = {}
    for x in e:
        key = x["what"] + (("-" + x["fsync"]) if "fsync" in x else "") + \
            (("-" + str(x["threads"])) if "threads" in x else "")
        by[key] = x
    lines = ["### The engine through `include/dvecdb.h` (`bench/engine_bench.c`)", ""]
    dd = by.get("dd")
    for pol in ("always", "never"):
        x = by.get("ingest-" + pol)
        if not x:
            continue
        r = f" = **{x['mb_per_s'] / dd['mb_per_s']:.3f}x** dd's {dd['mb_per_s']:.0f} MB/s" if dd else ""
        lines.append(f"- Ingest, fsync `{pol}`: {x['n']} x {x['dim']} vectors in batches of {x['batch']}: "
                     f"{x['vectors_per_s']:.0f} vectors/s, {x['mb_per_s']:.2f} MB/s of vector data{r} "
                     f"(slowest batch {x['worst_batch_s'] * 1000:.0f} ms; {x['wal_fsyncs']} WAL fsyncs took "
                     f"{x['wal_fsync_s']:.2f} s of {x['seconds']:.1f} s)")
    if dd:
        lines.append(f"- `dd if=/dev/zero bs=1M count={dd['mb']} conv=fdatasync` on the same disk: "
                     f"{dd['mb_per_s']:.0f} MB/s")
    if by.get("ingest-always") and by.get("ingest-never"):
        a, n = by["ingest-always"], by["ingest-never"]
        lines.append(f"- fsync always vs never: {a['vectors_per_s'] / n['vectors_per_s']:.2f}x the rate "
                     "(the rest of the time is linking each batch into the HNSW graph)")
    ld, ro = by.get("load"), by.get("reopen")
    if ro:
        extra = f" (the first load: upserts {ld['upsert_s']:.1f} s, close/checkpoint {ld['close_s']:.1f} s)" if ld else ""
        lines.append(f"- Reopen of the {ro['n_vectors']}-vector Fashion-MNIST collection (dv_db_open + "
                     f"dv_coll_open, warm page cache, best of 3): {ro['open_s'] * 1000:.0f} ms vs "
                     f"{ro['read_files_s'] * 1000:.0f} ms to read its {ro['bytes'] / 1e6:.0f} MB of files = "
                     f"**{ro['open_s'] / max(ro['read_files_s'], 1e-9):.1f}x**{extra}")
    for t in (1, 2):
        x = by.get(f"search-{t}")
        if x:
            lines.append(f"- In-process dv_coll_search, ef {x['ef']}, {t} thread(s): {x['qps']:.0f} QPS, "
                         f"recall@10 {x['recall']:.4f}")
    lines.append("")
    if w:
        one = by.get("search-1", {}).get("qps")
        two = by.get("search-2", {}).get("qps")
        lines += ["### The server over HTTP (`wrk`, `bench/wrk_search.lua`)", "",
                  "Same data directory, same queries and ef as the in-process line above; wrk runs on the "
                  "same 2 cores as the server.", "",
                  "| connections | requests/s | p50 ms | p99 ms | errors | vs in-process 1 thread | "
                  "vs in-process 2 threads |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for x in w:
            r = x["wrk"]
            lines.append(f"| {x['connections']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['non2xx'] + r['socket_errors']} | "
                         f"{fmt_ratio(ratio(r['rps'], one))} | {fmt_ratio(ratio(r['rps'], two))} |")
        lines.append("")
    return lines


def plot(data, path):
    dss = sorted(data)
    fig, axes = plt.subplots(1, len(dss), figsize=(6.5 * len(dss), 5), squeeze=False)
    for ax, ds in zip(axes[0], dss):
        for name in [s for s in ORDER if s in data[ds]] + [s for s in data[ds] if s not in ORDER]:
            runs = sorted(data[ds][name]["runs"], key=lambda x: x["ef"])
            ax.plot([x["recall"] for x in runs], [x["qps"] for x in runs], marker="o", label=name,
                    linewidth=2.5 if name == OURS else 1.5)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (1 thread, log scale)")
        ax.set_title(TITLES.get(ds, ds), fontsize=10)
        ax.axvline(TARGET, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("recall vs QPS, M=16, ef_construction=200, ef in {10..400} (up and to the right is better)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine():
    out = {}
    try:
        ls = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in ls.splitlines():
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1e6:.1f} GB"
    except OSError:
        pass
    flags = out.get("Flags", "").split()
    simd = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512dq") if f in flags)
    return (f"{out.get('Model name', '?')} (family {out.get('CPU family', '?')}, model {out.get('Model', '?')}), "
            f"{out.get('CPU(s)', '?')} CPUs ({out.get('Core(s) per socket', '?')} cores x "
            f"{out.get('Thread(s) per core', '?')} threads), {mem} RAM, {simd}; "
            f"Linux {platform.release()}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    results_dir, out_md, plot_png = args
    data = load(results_dir)
    meta = {}
    for p in glob.glob(os.path.join(results_dir, "*.json")):
        if os.path.basename(p).count(".") == 1 and not p.endswith("kernels.json"):
            with open(p) as f:
                meta[os.path.basename(p).split(".")[0]] = json.load(f)
    if not data:
        sys.exit("report: no results in " + results_dir)
    lines = []
    for ds in sorted(data):
        lines += summary(ds, data[ds], meta)
    lines += kernels(os.path.join(results_dir, "kernels.json"))
    lines += engine(results_dir)
    # Sections written by bench/section_*.sh, in name order.
    for sec in sorted(glob.glob(os.path.join(results_dir, "section-*.md"))):
        with open(sec) as f:
            lines += ["", f.read().rstrip(), ""]
    plot(data, plot_png)

    if "--doc" in sys.argv:
        env = os.environ
        head = [
            "# Benchmarks",
            "",
            "Generated by `make bench` (`bench/run.sh`); do not edit by hand - the notes at the end come from "
            "`bench/notes.md`.",
            "",
            f"- Run: {env.get('BENCH_DATE', '?')}, git {env.get('BENCH_GIT', '?')}",
            f"- Machine: {machine()}",
            f"- Load average before the run: {env.get('BENCH_LOAD', '?')} (other processes on the machine "
            "share the cores; every QPS is the best of several passes to damp that)",
            f"- Compilers: {env.get('BENCH_CC', '?')}; d-vecDB from `build/libdvecdb.a` (-O3, runtime SIMD "
            f"dispatch picked `{env.get('BENCH_SIMD', '?')}`); hnswlib {env.get('BENCH_HNSWLIB', '?')} "
            "headers compiled `-O3 -march=native` (AVX-512 kernels); python3-hnswlib and FAISS "
            f"{env.get('BENCH_FAISS', '?')} are Debian's builds, driven from Python",
            "- Parameters: M=16, ef_construction=200 for every system; k=10; queries one at a time on one "
            "thread; recall@10 against exact ground truth (float64 brute force, `bench/prep.py`)",
            "- d-vecDB and the native hnswlib are measured in one process (`bench/pair_bench.cpp`), "
            "interleaved: both indexes grow 2,000 vectors at a time, alternately, and each search pass of "
            "one is followed by the same pass of the other (order alternating), so load from other "
            "processes on this shared machine falls on both alike. The Python peers run alone, after them",
            "- Build time: from creating the index to the last vector linked (copying the vectors in "
            "included), with 1 and with 2 threads. Memory, over the 1-thread build: `heap` = growth of the "
            "bytes malloc has handed out and not had back (glibc `mallinfo2`, every arena; the ratio used "
            "below: exact even when builds interleave), `RSS delta` = resident-set growth (approximate "
            "for the interleaved pair: one system may reuse pages the other freed), and each library's own count where it has one (`self-reported`; "
            "hnswlib's is our estimate from its fields, which leaves out its fixed 65,536 update locks)",
            "- Python peers pay a few microseconds of interpreter overhead per query; the native hnswlib "
            "driver is the reference for every ratio",
            "",
            "Command: `make bench` (full; tens of minutes on 2 cores, FAISS's builds the longest; over an hour under this run's load) or `BENCH_SMOKE=1 bench/run.sh` (tiny "
            "sizes, < 1 minute, part of `make test`).",
            "",
            f"![recall vs QPS]({os.path.relpath(plot_png, os.path.dirname(out_md))})",
            "",
            f"Plot: `{plot_png}`; raw results: `{results_dir}/*.json`.",
            "",
            "## Results",
            "",
        ]
        lines = head + lines
        notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
        if os.path.exists(notes):
            with open(notes) as f:
                lines += ["", f.read().rstrip(), ""]
    with open(out_md + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(out_md + ".tmp", out_md)

    if "--check" in sys.argv:
        bad = [(ds, s) for ds in data for s, r in data[ds].items() if max(x["recall"] for x in r["runs"]) < 0.8]
        if bad:
            sys.exit(f"report: these never reach recall 0.8 (broken driver or index?): {bad}")
        want = {OURS, REF, "hnswlib (python3-hnswlib)", "FAISS IndexHNSWFlat"}
        for ds in data:
            missing = want - set(data[ds])
            if missing:
                sys.exit(f"report: {ds}: no results from {sorted(missing)}")


if __name__ == "__main__":
    main()
