"""vectordb-cli ingest through a fault-injecting proxy (resets, responses
dropped after the server committed, 503/429 with Retry-After): the
collection ends with exactly the input's vectors, no duplicates, and the
retry delays show full jitter and honour Retry-After."""
import collections
import json

import numpy as np

from cli_support import QUICK, cli_server, free_port, run_cli  # noqa: F401  (fixture)
from fault_proxy import FaultProxy

N = 4000 if QUICK else 20000
DIM = 16


def test_ingest_through_faults_is_exact_without_duplicates_and_backoff_is_jittered(cli_server, tmp_path):
    name = "faults"
    cli_server.create(name, DIM)
    rng = np.random.default_rng(11)
    data = rng.standard_normal((N, DIM)).astype(np.float32)
    src = tmp_path / "vecs.npy"
    np.save(src, data)

    proxy = FaultProxy(cli_server.port, seed=5, p_reset=0.07, p_drop_after=0.07, p_503=0.06, p_429=0.06,
                       match=lambda m, p: m == "POST" and p.endswith("/vectors/batch")).start()
    retry_log = tmp_path / "retries.jsonl"
    try:
        p = run_cli(proxy.url, ["--timeout", "20", "ingest", str(src), "--collection", name,
                                "--batch-size", "256", "--parallel", "4", "--retry-log", str(retry_log)],
                    timeout=300)
    finally:
        proxy.stop()
    assert p.returncode == 0, "ingest failed: %s\n%s" % (p.returncode, p.stderr[-3000:])

    # Every injected fault kind actually happened.
    for fate in ("reset", "drop_after", "503", "429"):
        assert proxy.count(fate) > 0, "proxy never injected %s: %s" % (fate, [e["fate"] for e in proxy.events])

    # Exactly N vectors, each id once, and they are the file's rows.
    assert cli_server.count(name) == N
    ids = cli_server.all_ids(name)
    dup = [i for i, c in collections.Counter(ids).items() if c > 1]
    assert len(ids) == N and not dup, "duplicates: %s" % dup[:5]

    # A response dropped after the commit means the batch reached the server
    # twice: the second time it must have been an upsert of the same ids.
    committed = proxy.committed_batches()
    seen = collections.Counter(i for b in committed for i in b)
    assert len(seen) == N
    assert sum(seen.values()) > N, "no batch was committed twice: the drop-after-commit fault was not exercised"

    # The report is honest about retries.
    assert "retried" in p.stderr and " 0 failed" in p.stderr, p.stderr[-500:]

    # Retry delays: full jitter (uniform in [0, min(cap, base*2^k)]) and
    # never earlier than Retry-After.
    log = [json.loads(line) for line in open(retry_log)]
    assert len(log) >= proxy.count("reset") // 2, "too few retries logged: %d" % len(log)
    plain = [e for e in log if e["retry_after_s"] is None]
    with_ra = [e for e in log if e["retry_after_s"] is not None]
    assert with_ra and plain
    for e in with_ra:
        assert e["delay_s"] >= e["retry_after_s"] - 1e-9, e
    for e in plain:
        ceiling = min(10.0, 0.1 * 2 ** (e["attempt"] - 1))
        assert 0.0 <= e["delay_s"] <= ceiling + 1e-9, e
    delays = [round(e["delay_s"], 6) for e in plain]
    assert len(set(delays)) >= 0.9 * len(delays), "delays repeat: no jitter: %s" % delays[:20]
    # Jitter spreads below the ceiling (a fixed backoff would sit at it).
    first = [e["delay_s"] for e in plain if e["attempt"] == 1]
    if len(first) >= 8:
        assert min(first) < 0.05 and max(first) > 0.02, first
        assert np.std(first) > 0.01, first
    # The retries counted by the CLI match its log.
    assert ("%d retried" % len(log)) in p.stderr.replace(",", ""), p.stderr[-500:]

    # The stored vectors are the file's rows, bit-exact (as a multiset).
    _, vecs, _ = cli_server.all_ids(name, include_vectors=True)
    stored = sorted(tuple(np.float32(x) for x in v) for v in vecs.values())
    want = sorted(tuple(row) for row in data)
    assert stored == want
