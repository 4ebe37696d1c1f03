"""SIGKILL vectordb-cli at random moments of an ingest and resume each time:
the final collection is exact (derived ids are stable across runs), at most
one batch is sent again per kill (--parallel 1), and the checkpoint file is
always a complete, parseable document that never runs ahead of what the
server acknowledged."""
import collections
import json
import os
import random
import signal
import subprocess
import time

from cli_support import API_KEY, CLI_BIN, QUICK, cli_server  # noqa: F401  (fixture)
from fault_proxy import FaultProxy

N = 4000 if QUICK else 20000
KILLS = 3 if QUICK else 10
BATCH = 200
DIM = 8


def kill_and_resume(cli_server, tmp_path, name, n, n_kills, parallel, seed):
    """Ingest n records, SIGKILL n_kills times, resume; returns (kills, resent, saw_acked_ranges)."""
    N, KILLS = n, n_kills
    cli_server.create(name, DIM)
    rnd = random.Random(seed)
    src = tmp_path / "records.jsonl"
    with open(src, "w") as f:
        for i in range(N):
            # No ids: the CLI derives them from the input and record number.
            f.write(json.dumps({"vector": [round(rnd.uniform(-1, 1), 4) for _ in range(DIM)],
                                "metadata": {"row": i}}) + "\n")
    ckpt = tmp_path / "ingest.ckpt"
    proxy = FaultProxy(cli_server.port, match=lambda m, p: False).start()  # a logging pass-through
    kills, runs, last_pos, saw_acked = 0, 0, 0, False
    try:
        while True:
            args = [CLI_BIN, "--url", proxy.url, "--api-key", API_KEY, "ingest", str(src), "--collection", name,
                    "--batch-size", str(BATCH), "--parallel", str(parallel), "--checkpoint", str(ckpt)]
            if runs:
                args.append("--resume")
            runs += 1
            before = len(proxy.committed_rows())
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if kills < KILLS:
                # Kill after a random number of acknowledged batches plus a
                # random slice of time: lands anywhere, including between the
                # server's commit and the checkpoint's rename.
                target = before + rnd.randint(1, 6)
                t_end = time.time() + 60
                while proc.poll() is None and len(proxy.committed_rows()) < target and time.time() < t_end:
                    time.sleep(0.0005)
                time.sleep(rnd.uniform(0, 0.004))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    if not os.path.exists(ckpt):
                        # Killed before the first checkpoint was renamed into place.
                        assert last_pos == 0, "the checkpoint disappeared"
                        continue
                    with open(ckpt) as f:
                        doc = json.load(f)  # never torn
                    pos = doc["position"]["record"]
                    saw_acked = saw_acked or bool(doc["acked"])
                    acked_rows = {r for a, b in doc["acked"] for r in range(a, b)}
                    assert pos >= last_pos, "checkpoint went backwards: %d < %d" % (pos, last_pos)
                    # Never ahead of the acknowledgements: every record below the
                    # position was committed by the server.
                    done_rows = {r for b in proxy.committed_rows() for r in b}
                    missing = [r for r in list(range(pos)) + sorted(acked_rows) if r not in done_rows]
                    assert not missing, "checkpoint at %d but rows %s never committed" % (pos, missing[:5])
                    last_pos = pos
                    continue
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, "final run failed (%s):\n%s" % (proc.returncode, err[-3000:])
            break
    finally:
        proxy.stop()
    assert kills == KILLS, "the ingest finished after only %d kills" % kills

    assert cli_server.count(name) == N
    ids = cli_server.all_ids(name)
    assert len(ids) == N and len(set(ids)) == N

    # Re-sent batches: a committed batch whose rows had all been committed before.
    seen, resent = set(), 0
    for rows in proxy.committed_rows():
        if rows and all(r in seen for r in rows):
            resent += 1
        seen.update(rows)
    assert seen == set(range(N))
    counts = collections.Counter(r for b in proxy.committed_rows() for r in b)
    assert sum(counts.values()) - N <= kills * parallel * BATCH

    with open(ckpt) as f:
        doc = json.load(f)
    assert doc["complete"] is True and doc["position"]["record"] == N and doc["acked"] == []
    return kills, resent, saw_acked


def test_sigkill_at_random_moments_then_resume_is_exact_with_at_most_one_batch_resent_per_kill(cli_server, tmp_path):
    kills, resent, _ = kill_and_resume(cli_server, tmp_path, "killed", N, KILLS, 1, 2026)
    assert resent <= kills, "%d batches re-sent for %d kills" % (resent, kills)


def test_sigkill_with_parallel_batches_resends_at_most_the_batches_in_flight(cli_server, tmp_path):
    parallel = 3
    kills, resent, saw_acked = kill_and_resume(cli_server, tmp_path, "killed_par", N // 2, max(2, KILLS // 3),
                                               parallel, 7)
    print("parallel: kills %d resent %d acked ranges seen %s" % (kills, resent, saw_acked))
    assert resent <= kills * parallel, "%d batches re-sent for %d kills with --parallel %d" % (resent, kills, parallel)


def test_ctrl_c_finishes_the_batches_in_flight_saves_the_checkpoint_and_resume_completes(cli_server, tmp_path):
    name = "interrupted"
    n = 3000
    cli_server.create(name, DIM)
    src = tmp_path / "r.jsonl"
    with open(src, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": "i%d" % i, "vector": [i % 7] * DIM}) + "\n")
    proxy = FaultProxy(cli_server.port, match=lambda m, p: False, delay_s=0.05).start()  # slow, no faults
    try:
        args = [CLI_BIN, "--url", proxy.url, "--api-key", API_KEY, "ingest", str(src), "--collection", name,
                "--batch-size", "50", "--parallel", "2"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t_end = time.time() + 60
        while len(proxy.committed_rows()) < 4 and time.time() < t_end:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and "--resume" in err, err
        with open(str(src) + ".dvecdb-ckpt") as f:
            doc = json.load(f)
        assert doc["complete"] is False and 0 < doc["position"]["record"] < n
        # Everything the server acknowledged was recorded: nothing in flight was abandoned.
        committed = len(proxy.committed_rows())
        assert doc["position"]["record"] + sum(b - a for a, b in doc["acked"]) == committed * 50
    finally:
        proxy.stop()
    p = subprocess.run(args[:2] + [cli_server.url] + args[3:] + ["--resume"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert cli_server.count(name) == n
