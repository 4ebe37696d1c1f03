"""Ingest benchmark of issue 6: vectordb-cli ingest vs the server's own
batch-insert throughput, with and without injected faults.

For each dataset (Fashion-MNIST 60,000 x 784 Euclidean, synthetic 20,000 x
1536 cosine; tiny versions with --smoke) three kinds of leg load the whole
file, each into its own freshly started build/vectordb-server (fresh data
directory, the same flags, WAL fsync policy `always`, the server's default)
and collection (the engine's default index, M=16, ef_construction=200), in
batches of --batch-size with --parallel requests in flight:

  server  the reference: POST /collections/NAME/vectors/batch of pre-encoded
          JSON bodies (the same batch size, ids of the same length and the
          same 9-significant-digit floats the CLI sends) from --parallel
          threads on keep-alive connections: the server's own throughput;
  cli     vectordb-cli ingest FILE.fvecs (wall time of the whole process);
  faults  the same through tests/e2e/fault_proxy.py faulting --fault-rate of
          the batch requests (resets before forwarding, responses dropped
          after the server committed, 503 and 429 with Retry-After), evenly
          split.

The machine is shared, and its load changes by the minute: so the kinds take
turns, --turns slices of the file each (the CLI ingests each slice as its own
.fvecs file), in the order server, cli, faults, then reversed, alternately.
Every kind's collection grows through the same sizes, and a change in load
hits all kinds alike. A kind's rate is the file's vectors over its total time.

Checked (a failure exits 1, failing make bench and the bench smoke of make
test): each collection ends with exactly N vectors and N distinct ids; every
CLI run exits 0 reporting its records sent, 0 failed; behind the proxy each
injected fault cost exactly one CLI retry and the ids the server committed
are exactly the stored ones.

Writes RES/ingest.jsonl (one line per turn, then one summary line per
dataset) and RES/section-ingest.md (the Markdown fragment for
docs/benchmarks.md). Run by bench/section_ingest.sh.
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from fault_proxy import FaultProxy  # noqa: E402
from netutil import free_port  # noqa: E402

DATASETS = [("fmnist", "Euclidean", "Fashion-MNIST"), ("synth1536", "Cosine", "synthetic clustered")]
FSYNC = "always"
KINDS = ["server", "cli", "faults"]


def load_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].copy().view(np.float32)


def bench_id(i):
    """An id like the CLI's derived ids: a 36-character UUID whose bits look
    random (a hash of the record number), so the server's id index sees the
    same kind of keys from both clients (version 4 bits: Python has no v8)."""
    return str(uuid.UUID(bytes=hashlib.blake2b(b"bench-%d" % i, digest_size=16).digest(), version=4))


def encode_bodies(vecs, batch, first_id=0):
    """The batch request bodies, encoded once before any leg runs. Floats as
    '%.9g' (9 significant digits, trailing zeros dropped): the same digits
    the CLI's out_f32 writes, so the server parses bodies of the same size."""
    bodies = []
    for s in range(0, len(vecs), batch):
        parts = []
        for i in range(s, min(s + batch, len(vecs))):
            row = ",".join(["%.9g" % x for x in vecs[i].tolist()])
            parts.append('{"id":"%s","data":[%s]}' % (bench_id(first_id + i), row))
        bodies.append(('{"vectors":[' + ",".join(parts) + "]}").encode())
    return bodies


def loadavg():
    """The 1-minute load average: how much else wanted the cores."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def proc_cpu_s(pid):
    """utime + stime of a process (and its reaped children), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, binary, work, tag):
        self.binary = binary
        self.data_dir = os.path.join(work, "data-" + tag)
        self.log_path = os.path.join(work, "server-" + tag + ".log")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.port = free_port()
        self.cmd = [binary, "--data-dir", self.data_dir, "--host", "127.0.0.1", "--rest-port", str(self.port),
                    "--log-level", "warn", "--fsync", FSYNC]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=self.log)
        t_end = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("ingest bench: server exited with %s (see %s)" % (self.proc.returncode,
                                                                                  self.log_path))
            try:
                # /readyz: 200 only once the data directory is open.
                if urllib.request.urlopen(self.url + "/readyz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.time() > t_end:
                raise SystemExit("ingest bench: server not ready after 60 s (see %s)" % self.log_path)
            time.sleep(0.02)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            env = json.loads(r.read())
        if not env.get("success"):
            raise SystemExit("ingest bench: %s %s: %s" % (method, path, env))
        return env["data"]

    def cpu_s(self):
        return proc_cpu_s(self.proc.pid)

    def create(self, name, dim, metric, index=None):
        body = {"name": name, "dimension": dim, "distance_metric": metric}
        if index:
            body["index_config"] = index
        self.call("POST", "/collections", body)

    def check_exact(self, name, n):
        """The collection holds exactly n vectors, each id once; returns the ids."""
        count = self.call("GET", "/collections/" + name)["vector_count"]
        ids, offset = [], 0
        while True:
            d = self.call("GET", "/collections/%s/vectors?offset=%d&limit=5000" % (name, offset))
            ids += [v["id"] for v in d["vectors"]]
            if d.get("next_offset") is None:
                break
            offset = d["next_offset"]
        uniq = set(ids)
        if count != n or len(ids) != n or len(uniq) != n:
            raise SystemExit("ingest bench: collection %s: vector_count %d, %d ids listed, %d distinct; "
                             "expected exactly %d" % (name, count, len(ids), len(uniq), n))
        return uniq

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if rc != 0:
            raise SystemExit("ingest bench: server exited %s on SIGTERM (see %s)" % (rc, self.log_path))


def leg_server(srv, name, bodies, parallel):
    """POST every body once from `parallel` threads, each on its own
    keep-alive connection; returns the wall time of the whole set."""
    nxt = [0]
    lock = threading.Lock()
    errors = []
    path = "/collections/%s/vectors/batch" % name
    hdrs = {"Content-Type": "application/json", "Accept": "application/json"}

    def work():
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
        try:
            while not errors:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(bodies):
                    return
                c.request("POST", path, body=bodies[i], headers=hdrs)
                r = c.getresponse()
                data = r.read()
                if r.status != 200 or not json.loads(data).get("success"):
                    errors.append("batch %d: HTTP %d %s" % (i, r.status, data[:300]))
        except (OSError, http.client.HTTPException) as e:
            errors.append("batch: %r" % e)
        finally:
            c.close()

    ths = [threading.Thread(target=work) for _ in range(parallel)]
    cpu0 = time.process_time()
    t0 = time.monotonic()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.monotonic() - t0
    if errors:
        raise SystemExit("ingest bench: reference client: %s" % errors[0])
    return wall, time.process_time() - cpu0


def leg_cli(cli, url, name, path, batch, parallel, work, tag):
    """vectordb-cli ingest of path; returns (wall s, CLI CPU s, its --json report, argv)."""
    ck = os.path.join(work, "ckpt-" + tag)
    argv = [cli, "--url", url, "--timeout", "120", "--json", "ingest", path, "--collection", name,
            "--batch-size", str(batch), "--parallel", str(parallel),
            "--checkpoint", ck, "--failed-file", ck + ".failed", "--fresh"]
    err_path = os.path.join(work, "cli-" + tag + ".stderr")
    with open(err_path, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        with open(err_path, errors="replace") as f:
            raise SystemExit("ingest bench: %s exited %s:\n%s" % (" ".join(argv), p.returncode, f.read()[-2000:]))
    rep = json.loads(out)
    for f in (ck, ck + ".lock", ck + ".failed"):
        if os.path.exists(f):
            os.unlink(f)
    return wall, ru.ru_utime + ru.ru_stime, rep, argv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="bench/out or bench/out/smoke (the .fvecs files)")
    ap.add_argument("--res", required=True, help="results directory")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--turns", type=int, default=6, help="turns of each kind per dataset (see the module doc)")
    ap.add_argument("--datasets", default=",".join(d[0] for d in DATASETS))
    ap.add_argument("--index", type=json.loads, default=None,
                    help='index_config of the collections, e.g. \'{"max_connections": 4, "ef_construction": 8}\' '
                         '(a cheap index makes the client\'s share visible); default: the engine\'s')
    ap.add_argument("--kinds", default=",".join(KINDS), help="legs to run (default: all three)")
    ap.add_argument("--server", default=os.environ.get("BENCH_SERVER", os.path.join(ROOT, "build", "vectordb-server")))
    ap.add_argument("--cli", default=os.environ.get("BENCH_CLI", os.path.join(ROOT, "build", "vectordb-cli")))
    a = ap.parse_args()
    for b in (a.server, a.cli):
        if not os.access(b, os.X_OK):
            raise SystemExit("ingest bench: %s not built (make)" % b)
    kinds = [k for k in KINDS if k in a.kinds.split(",")]
    work = os.path.join(a.out, "ingest-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.makedirs(a.res, exist_ok=True)
    bs, par = a.batch_size, a.parallel
    rows, summaries = [], []
    t_all = time.monotonic()
    for ds, metric, label in DATASETS:
        if ds not in a.datasets.split(","):
            continue
        path = os.path.abspath(os.path.join(a.out, ds + ".base.fvecs"))
        raw = np.fromfile(path, dtype=np.int32)
        dim = int(raw[0])
        raw = raw.reshape(-1, dim + 1)
        n = raw.shape[0]
        vecs = raw[:, 1:].copy().view(np.float32)
        # Slices of the input: the kinds take turns slice by slice, so a change
        # in the machine's load hits every kind alike; each kind's collection
        # grows through the same sizes.
        step = -(-n // a.turns)
        cuts = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
        t0 = time.monotonic()
        files, bodies = [], []
        for i, (lo, hi) in enumerate(cuts):
            f = os.path.abspath(os.path.join(work, "%s.slice%d.fvecs" % (ds, i)))
            raw[lo:hi].tofile(f)
            files.append(f)
            bodies.append(encode_bodies(vecs[lo:hi], bs, lo) if "server" in kinds else [])
        enc_s = time.monotonic() - t0
        del vecs, raw
        body_mb = sum(len(b) for sl in bodies for b in sl) / 1e6
        print("== ingest %s: %d x %d in %d slices, batches of %d, %d in flight (%.0f MB of JSON, encoded in %.1f s)"
              % (ds, n, dim, len(cuts), bs, par, body_mb, enc_s), file=sys.stderr)
        srvs, legs, committed = {}, [], set()
        try:
            for kind in kinds:
                srvs[kind] = Server(a.server, work, "%s-%s" % (ds, kind))
                srvs[kind].create(ds + "_" + kind, dim, metric, a.index)
            for r, (lo, hi) in enumerate(cuts):
                for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                    srv, name = srvs[kind], ds + "_" + kind
                    tag = "%s-%d-%s" % (ds, r, kind)
                    row = {"dataset": ds, "slice": r, "records": [lo, hi], "kind": kind, "n": hi - lo, "dim": dim,
                           "batch_size": bs, "parallel": par, "fsync": FSYNC, "loadavg_start": loadavg()}
                    scpu0 = srv.cpu_s()
                    if kind == "server":
                        wall, ccpu = leg_server(srv, name, bodies[r], par)
                    else:
                        proxy, url = None, srv.url
                        if kind == "faults":
                            q = a.fault_rate / 4
                            proxy = FaultProxy(srv.port, seed=1000 + r, p_reset=q, p_drop_after=q, p_503=q, p_429=q,
                                               match=lambda m, p: m == "POST" and p.endswith("/vectors/batch"),
                                               ids_by_regex=True).start()
                            url = proxy.url
                        try:
                            wall, ccpu, rep, argv = leg_cli(a.cli, url, name, files[r], bs, par, work, tag)
                        finally:
                            if proxy:
                                proxy.stop()
                        row["cli_cmd"] = " ".join(os.path.relpath(x, ROOT) if x.startswith(ROOT + "/") else x
                                                  for x in argv)
                        row["cli_report"] = rep
                        if rep.get("sent") != hi - lo or rep.get("failed") != 0 or not rep.get("complete"):
                            raise SystemExit("ingest bench: %s: CLI report %s, expected %d sent, 0 failed"
                                             % (tag, rep, hi - lo))
                        if proxy:
                            fates = {f: proxy.count(f) for f in ("pass", "reset", "drop_after", "503", "429")}
                            faulted = sum(v for f, v in fates.items() if f != "pass")
                            row["fates"] = fates
                            # Every fault costs the CLI exactly one re-send.
                            if rep.get("retried") != faulted:
                                raise SystemExit("ingest bench: %s: %d faults injected but the CLI retried %s times"
                                                 % (tag, faulted, rep.get("retried")))
                            mine = set(i for b in proxy.committed_batches() for i in b)
                            if len(mine) != hi - lo:
                                raise SystemExit("ingest bench: %s: the server committed %d distinct ids, expected %d"
                                                 % (tag, len(mine), hi - lo))
                            committed |= mine
                    row.update(seconds=round(wall, 3), vectors_per_s=round((hi - lo) / wall, 1),
                               client_cpu_s=round(ccpu, 3), server_cpu_s=round(srv.cpu_s() - scpu0, 3),
                               loadavg_end=loadavg())
                    print("   %2d %-7s %8.0f vectors/s  (%.2f s; client CPU %.2f s, server CPU %.2f s, load %.1f)%s"
                          % (r, kind, row["vectors_per_s"], wall, ccpu, row["server_cpu_s"], row["loadavg_end"],
                             "  %s" % row["fates"] if kind == "faults" else ""), file=sys.stderr)
                    legs.append(row)
                    rows.append(row)
            for kind, srv in srvs.items():
                ids = srv.check_exact(ds + "_" + kind, n)
                if kind == "faults" and ids != committed:
                    raise SystemExit("ingest bench: %s: stored ids differ from the committed ones" % ds)
        finally:
            for srv in srvs.values():
                srv.stop()
        rate = {}
        for kind in KINDS:
            ls = [x for x in legs if x["kind"] == kind]
            rate[kind] = sum(x["n"] for x in ls) / sum(x["seconds"] for x in ls) if ls else float("nan")
        fl = [x for x in legs if x["kind"] == "faults"]
        fates = {f: sum(x["fates"][f] for x in fl) for f in ("pass", "reset", "drop_after", "503", "429")} if fl else {}
        if fl and fates["pass"] == sum(fates.values()):
            raise SystemExit("ingest bench: %s: the proxy injected no fault" % ds)
        s = {"dataset": ds, "summary": True, "label": label, "n": n, "dim": dim, "metric": metric,
             "turns": len(cuts), "slice": step, "batch_size": bs, "parallel": par, "fsync": FSYNC,
             "fault_rate": a.fault_rate,
             "index": a.index, "body_mb": round(body_mb, 1), "fates": fates,
             "server_vps": round(rate["server"], 1), "cli_vps": round(rate["cli"], 1),
             "faults_vps": round(rate["faults"], 1),
             "cli_ratio": round(rate["cli"] / rate["server"], 3),
             "faults_ratio": round(rate["faults"] / rate["server"], 3),
             "client_cpu_s": {k: round(sum(x["client_cpu_s"] for x in legs if x["kind"] == k), 2) for k in kinds},
             "server_cpu_s": {k: round(sum(x["server_cpu_s"] for x in legs if x["kind"] == k), 2) for k in kinds},
             "cli_cmd": next((x["cli_cmd"] for x in legs if x["kind"] == "cli"), "")}
        print("   => cli/server %.3f, faults/server %.3f" % (s["cli_ratio"], s["faults_ratio"]), file=sys.stderr)
        summaries.append(s)
        rows.append(s)
        del bodies

    with open(os.path.join(a.res, "ingest.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(a.res, "section-ingest.md"), "w") as f:
        f.write(fragment(summaries, rows, a, time.monotonic() - t_all))
    shutil.rmtree(work, ignore_errors=True)


def fragment(summaries, rows, a, total_s):
    L = ["### Ingest through vectordb-cli vs the server's own batch insert (issue 6, `bench/ingest_bench.py`)", ""]
    if a.smoke:
        L += ["Smoke sizes: the numbers only show that every leg ran and was checked.", ""]
    L += ["Three servers (`vectordb-server --fsync %s`, each on a fresh data directory) each load the whole "
          "file into a fresh collection (default index: M=16, ef_construction=200) in batches of %d with %d "
          "requests in flight, in %d turns of a slice of the file each (order server, cli, faults, then "
          "reversed, alternately), so a change in the machine's load hits every kind alike. "
          "*server*: pre-encoded JSON bodies (same id length and float digits as the CLI's) POSTed to "
          "`/collections/NAME/vectors/batch` over %d keep-alive connections: the server's own batch-insert "
          "throughput. *cli*: `vectordb-cli ingest` of that slice as an `.fvecs` file, wall time of the whole "
          "process. *faults*: the same through `tests/e2e/fault_proxy.py` faulting %.0f%% of the batch requests "
          "(resets, responses dropped after the commit, 503 and 429 with `Retry-After` 0 or 1 s, evenly split). "
          "A rate is the file's vectors over the kind's total time. Checked: each collection ends with exactly "
          "N vectors and N distinct ids, every CLI run reports its records sent and 0 failed, each fault cost "
          "exactly one retry, and the ids the server committed behind the proxy are the stored ones."
          % (FSYNC, a.batch_size, a.parallel, a.turns, a.parallel, a.fault_rate * 100), ""]
    L += ["| dataset | N x dim | server vectors/s | cli vectors/s | cli / server | faults vectors/s | "
          "faults / server | faults injected | CPU s: client (cli) / server (cli leg) |",
          "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for s in summaries:
        f = s["fates"]
        inj = "%d of %d requests (%s)" % (sum(v for k, v in f.items() if k != "pass"), sum(f.values()),
                                          ", ".join("%s %d" % (k, v) for k, v in f.items() if k != "pass")) if f else ""
        L.append("| %s | %s x %d | %.0f | %.0f | **%.2f** | %.0f | **%.2f** | %s | %.1f / %.1f |" % (
            s["label"], format(s["n"], ","), s["dim"], s["server_vps"], s["cli_vps"], s["cli_ratio"],
            s["faults_vps"], s["faults_ratio"], inj, s["client_cpu_s"].get("cli", float("nan")),
            s["server_cpu_s"].get("cli", float("nan"))))
    L += ["", "Per turn (seconds; CPU seconds of the client process - the CLI, or the reference's Python "
          "threads - and of the server during the turn; the machine's 1-minute load average at its end):", "",
          "| dataset | slice | leg | seconds | vectors/s | client CPU s | server CPU s | load avg |",
          "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("summary"):
            continue
        L.append("| %s | %d | %s | %.2f | %.0f | %.2f | %.2f | %.1f |" % (
            r["dataset"], r["slice"], r["kind"], r["seconds"], r["vectors_per_s"], r["client_cpu_s"],
            r["server_cpu_s"], r["loadavg_end"]))
    L += ["", "Aims (issue 6): cli / server >= 0.9, faults / server >= 0.7. Command of a cli turn:", "", "```"]
    L += [s["cli_cmd"] for s in summaries]
    L += ["```", "", "Client, proxy and servers share the machine's cores. Whole section: %.0f s "
          "(`bench/section_ingest.sh`; raw numbers: `ingest.jsonl`)." % total_s]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
