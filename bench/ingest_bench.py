"""Ingest benchmark of issue 6: vectordb-cli ingest vs the server's own
batch-insert throughput, with and without injected faults.

For each dataset (Fashion-MNIST 60,000 x 784 Euclidean, synthetic 20,000 x
1536 cosine; tiny versions with --smoke) three kinds of leg run, each against
a freshly started build/vectordb-server on a fresh data directory (same flags
every time, WAL fsync policy `always`, the server's default) and into a fresh
collection with the engine's default index (M=16, ef_construction=200):

  server  the reference: POST /collections/NAME/vectors/batch of pre-encoded
          JSON bodies (the same batch size, the same kind of ids and the same
          9-significant-digit floats the CLI sends), keep-alive connections,
          PARALLEL threads: the server's own batch-insert throughput;
  cli     vectordb-cli ingest FILE.fvecs --batch-size B --parallel P (wall
          time of the whole process);
  faults  the same through tests/e2e/fault_proxy.py faulting 5 % of the batch
          requests (resets before forwarding, responses dropped after the
          server committed, 503 and 429 with Retry-After), evenly split.

The legs run in the order server, cli, faults, faults, cli, server (once
each with --smoke), so a drift in the machine's load hits every kind alike;
a kind's rate is its total vectors over its total time. Every leg is
checked: the collection holds exactly N vectors with N distinct ids; the CLI
exits 0 and reports N sent, 0 failed; with faults, each injected fault
caused exactly one CLI retry and the ids the server committed are exactly N.
A failed check exits 1 (fails make bench / the bench smoke in make test).

Writes RES/ingest.jsonl (one line per leg, then one summary line per
dataset) and RES/section-ingest.md (the Markdown fragment for
docs/benchmarks.md). Run by bench/section_ingest.sh.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from fault_proxy import FaultProxy  # noqa: E402

DATASETS = [("fmnist", "Euclidean", "Fashion-MNIST"), ("synth1536", "Cosine", "synthetic clustered")]
FSYNC = "always"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def load_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].copy().view(np.float32)


def bench_id(i):
    """An id shaped like the CLI's derived ids (a 36-character UUID)."""
    return "%08x-0000-8000-8000-%012x" % (0xbe9c4000, i)


def encode_bodies(vecs, batch):
    """The batch request bodies, encoded once before any leg runs. Floats as
    '%.9g' (9 significant digits, trailing zeros dropped): the same digits
    the CLI's out_f32 writes, so the server parses bodies of the same size."""
    bodies = []
    for s in range(0, len(vecs), batch):
        parts = []
        for i in range(s, min(s + batch, len(vecs))):
            row = ",".join(["%.9g" % x for x in vecs[i].tolist()])
            parts.append('{"id":"%s","data":[%s]}' % (bench_id(i), row))
        bodies.append(('{"vectors":[' + ",".join(parts) + "]}").encode())
    return bodies


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
    ap.add_argument("--datasets", default=",".join(d[0] for d in DATASETS))
    ap.add_argument("--index", type=json.loads, default=None,
                    help='index_config of the collections, e.g. \'{"max_connections": 4, "ef_construction": 8}\' '
                         '(a cheap index makes the client\'s share visible); default: the engine\'s')
    ap.add_argument("--order", default=None, help="legs, e.g. server,cli,faults,faults,cli,server")
    ap.add_argument("--server", default=os.environ.get("BENCH_SERVER", os.path.join(ROOT, "build", "vectordb-server")))
    ap.add_argument("--cli", default=os.environ.get("BENCH_CLI", os.path.join(ROOT, "build", "vectordb-cli")))
    a = ap.parse_args()
    for b in (a.server, a.cli):
        if not os.access(b, os.X_OK):
            raise SystemExit("ingest bench: %s not built (make)" % b)
    work = os.path.join(a.out, "ingest-work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.makedirs(a.res, exist_ok=True)
    order = ["server", "cli", "faults"] if a.smoke else ["server", "cli", "faults", "faults", "cli", "server"]
    if a.order:
        order = a.order.split(",")
    bs, par = a.batch_size, a.parallel
    rows, summaries = [], []
    t_all = time.monotonic()
    for ds, metric, label in DATASETS:
        if ds not in a.datasets.split(","):
            continue
        path = os.path.abspath(os.path.join(a.out, ds + ".base.fvecs"))
        vecs = load_fvecs(path)
        n, dim = vecs.shape
        t0 = time.monotonic()
        bodies = encode_bodies(vecs, bs)
        enc_s = time.monotonic() - t0
        del vecs
        body_mb = sum(len(b) for b in bodies) / 1e6
        print("== ingest %s: %d x %d, %d batches of %d (%.0f MB of JSON, encoded in %.1f s)"
              % (ds, n, dim, len(bodies), bs, body_mb, enc_s), file=sys.stderr)
        legs = []
        for k, kind in enumerate(order):
            tag = "%s-%d-%s" % (ds, k, kind)
            name = "%s_%d_%s" % (ds, k, kind)
            srv = Server(a.server, work, tag)
            proxy = None
            try:
                srv.create(name, dim, metric, a.index)
                scpu0 = srv.cpu_s()
                row = {"dataset": ds, "leg": k, "kind": kind, "n": n, "dim": dim, "batch_size": bs,
                       "parallel": par, "fsync": FSYNC, "server_cmd": " ".join(srv.cmd[:1] + srv.cmd[3:])}
                if kind == "server":
                    wall, ccpu = leg_server(srv, name, bodies, par)
                else:
                    url = srv.url
                    if kind == "faults":
                        q = a.fault_rate / 4
                        proxy = FaultProxy(srv.port, seed=1000 + k, p_reset=q, p_drop_after=q, p_503=q, p_429=q,
                                           match=lambda m, p: m == "POST" and p.endswith("/vectors/batch"),
                                           ids_by_regex=True).start()
                        url = proxy.url
                    try:
                        wall, ccpu, rep, argv = leg_cli(a.cli, url, name, path, bs, par, work, tag)
                    finally:
                        if proxy:
                            proxy.stop()
                    row["cli_cmd"] = " ".join([os.path.relpath(argv[0], ROOT)] + argv[1:])
                    row["cli_report"] = rep
                    if rep.get("sent") != n or rep.get("failed") != 0 or not rep.get("complete"):
                        raise SystemExit("ingest bench: %s: CLI report %s, expected %d sent, 0 failed" % (tag, rep, n))
                    if proxy:
                        fates = {f: proxy.count(f) for f in ("pass", "reset", "drop_after", "503", "429")}
                        faulted = sum(v for f, v in fates.items() if f != "pass")
                        row["fates"] = fates
                        row["fault_share"] = faulted / max(1, faulted + fates["pass"])
                        if faulted == 0:
                            raise SystemExit("ingest bench: %s: the proxy injected no fault" % tag)
                        # Every fault costs the CLI exactly one re-send.
                        if rep.get("retried") != faulted:
                            raise SystemExit("ingest bench: %s: %d faults injected but the CLI retried %s times"
                                             % (tag, faulted, rep.get("retried")))
                        committed = set(i for b in proxy.committed_batches() for i in b)
                        if len(committed) != n:
                            raise SystemExit("ingest bench: %s: the server committed %d distinct ids, expected %d"
                                             % (tag, len(committed), n))
                scpu = srv.cpu_s() - scpu0
                ids = srv.check_exact(name, n)
                if proxy is not None and ids != committed:
                    raise SystemExit("ingest bench: %s: stored ids differ from the committed ones" % tag)
            finally:
                srv.stop()
            row.update(seconds=round(wall, 3), vectors_per_s=round(n / wall, 1), client_cpu_s=round(ccpu, 3),
                       server_cpu_s=round(scpu, 3))
            print("   %-7s %8.0f vectors/s  (%.2f s; client CPU %.2f s, server CPU %.2f s)%s"
                  % (kind, n / wall, wall, ccpu, scpu,
                     "  faults %s" % row["fates"] if kind == "faults" else ""), file=sys.stderr)
            legs.append(row)
            rows.append(row)
        rate = {}
        for kind in ("server", "cli", "faults"):
            ls = [x for x in legs if x["kind"] == kind]
            rate[kind] = sum(x["n"] for x in ls) / sum(x["seconds"] for x in ls) if ls else float("nan")
        s = {"dataset": ds, "summary": True, "label": label, "n": n, "dim": dim, "metric": metric,
             "batch_size": bs, "parallel": par, "fsync": FSYNC, "fault_rate": a.fault_rate,
             "index": a.index, "body_mb": round(body_mb, 1),
             "server_vps": round(rate["server"], 1), "cli_vps": round(rate["cli"], 1),
             "faults_vps": round(rate["faults"], 1),
             "cli_ratio": round(rate["cli"] / rate["server"], 3),
             "faults_ratio": round(rate["faults"] / rate["server"], 3),
             "cli_cmd": next((x["cli_cmd"] for x in legs if x["kind"] != "server"), "")}
        print("   => cli/server %.3f, faults/server %.3f" % (s["cli_ratio"], s["faults_ratio"]), file=sys.stderr)
        summaries.append(s)
        rows.append(s)
        del bodies

    with open(os.path.join(a.res, "ingest.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(a.res, "section-ingest.md"), "w") as f:
        f.write(fragment(summaries, rows, a, order, time.monotonic() - t_all))
    shutil.rmtree(work, ignore_errors=True)


def fragment(summaries, rows, a, order, total_s):
    L = ["### Ingest through vectordb-cli vs the server's own batch insert (issue 6, `bench/ingest_bench.py`)", ""]
    if a.smoke:
        L += ["Smoke sizes: the numbers only show that every leg ran and was checked.", ""]
    L += ["Each leg starts `vectordb-server --fsync %s` on a fresh data directory and loads a fresh collection "
          "(default index: M=16, ef_construction=200) in batches of %d with %d requests in flight. "
          "*server*: pre-encoded JSON bodies (same ids shape and float digits as the CLI) POSTed to "
          "`/collections/NAME/vectors/batch` over %d keep-alive connections, the server's own batch-insert "
          "throughput. *cli*: `vectordb-cli ingest` of the `.fvecs` file, wall time of the whole process. "
          "*faults*: the same through `tests/e2e/fault_proxy.py` faulting %.0f%% of the batch requests "
          "(resets, responses dropped after the commit, 503 and 429 with `Retry-After` 0 or 1 s, "
          "evenly split). Legs ran in the order %s per dataset; a rate is total vectors over total time "
          "of its legs. Every leg checked: exactly N vectors with N distinct ids, the CLI reports N sent and "
          "0 failed, each fault cost exactly one retry."
          % (FSYNC, a.batch_size, a.parallel, a.parallel, a.fault_rate * 100, ", ".join(order)), ""]
    L += ["| dataset | N x dim | server vectors/s | cli vectors/s | cli / server | faults vectors/s | "
          "faults / server | faults injected |",
          "|---|---|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        fl = [r for r in rows if r.get("dataset") == s["dataset"] and r.get("kind") == "faults"]
        inj = "; ".join("%d of %d requests (%s)" % (
            sum(v for k, v in r["fates"].items() if k != "pass"), sum(r["fates"].values()),
            ", ".join("%s %d" % (k, v) for k, v in r["fates"].items() if k != "pass")) for r in fl)
        L.append("| %s | %s x %d | %.0f | %.0f | **%.2f** | %.0f | **%.2f** | %s |" % (
            s["label"], format(s["n"], ","), s["dim"], s["server_vps"], s["cli_vps"], s["cli_ratio"],
            s["faults_vps"], s["faults_ratio"], inj))
    L += ["", "Per leg (seconds; CPU seconds of the client process and of the server during the leg):", "",
          "| dataset | # | leg | seconds | vectors/s | client CPU s | server CPU s |",
          "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("summary"):
            continue
        L.append("| %s | %d | %s | %.2f | %.0f | %.2f | %.2f |" % (
            r["dataset"], r["leg"], r["kind"], r["seconds"], r["vectors_per_s"], r["client_cpu_s"],
            r["server_cpu_s"]))
    L += ["", "Aims (issue 6): cli / server >= 0.9, faults / server >= 0.7. Command of a cli leg:", "", "```"]
    L += [s["cli_cmd"] for s in summaries]
    L += ["```", "", "Client, proxy and server share the machine's cores. Whole section: %.0f s "
          "(`bench/section_ingest.sh`; raw numbers: `ingest.jsonl`)." % total_s]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
