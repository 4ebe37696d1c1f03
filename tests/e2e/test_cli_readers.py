"""vectordb-cli ingest input formats (JSONL, CSV with and without a header,
.npy float32/float64, .fvecs), stable derived ids, the failed-records file
(local and server-side rejections, located by splitting the batch), and the
checkpoint rules (refuse a different input, --resume, --fresh)."""
import json
import struct

import numpy as np

from cli_support import cli_server, run_cli  # noqa: F401  (fixture)

DIM = 6


def stored(srv, name):
    ids, vecs, metas = srv.all_ids(name, include_vectors=True)
    assert len(ids) == len(set(ids))
    return {i: (np.array(vecs[i], dtype=np.float32), metas[i]) for i in ids}


def ingest(srv, path, name, *extra, rc=0):
    p = run_cli(srv.url, ["ingest", str(path), "--collection", name, "--batch-size", "7"] + list(extra))
    assert p.returncode == rc, "rc %s:\n%s" % (p.returncode, p.stderr[-2000:])
    return p


def test_csv_with_header_id_vector_metadata_and_extra_columns(cli_server, tmp_path):
    cli_server.create("csv1", DIM)
    src = tmp_path / "a.csv"
    with open(src, "w") as f:
        f.write('id,vector,metadata,title\n')
        for i in range(20):
            vec = ";".join(str(i + j * 0.5) for j in range(DIM))
            f.write('r%d,"[%s]","{""k"": %d}","title, %d"\n' % (i, vec.replace(";", ","), i, i))
    ingest(cli_server, src, "csv1")
    got = stored(cli_server, "csv1")
    assert sorted(got) == sorted("r%d" % i for i in range(20))
    v, m = got["r3"]
    assert np.array_equal(v, np.array([3 + j * 0.5 for j in range(DIM)], dtype=np.float32))
    assert m == {"k": 3, "title": "title, 3"}


def test_csv_headerless_floats_get_stable_derived_ids(cli_server, tmp_path):
    cli_server.create("csv2", DIM)
    src = tmp_path / "b.csv"
    rows = np.random.default_rng(1).standard_normal((30, DIM)).astype(np.float32)
    np.savetxt(src, rows, delimiter=",", fmt="%.9g")
    ingest(cli_server, src, "csv2")
    first = stored(cli_server, "csv2")
    assert len(first) == 30
    # The same input again (a fresh run): the same ids, so nothing duplicates.
    ingest(cli_server, src, "csv2", "--fresh")
    second = stored(cli_server, "csv2")
    assert sorted(first) == sorted(second)
    assert sorted(tuple(v) for v, _ in second.values()) == sorted(tuple(r) for r in rows)
    # Derived ids are UUIDs (version 8).
    some = next(iter(first))
    assert len(some) == 36 and some[14] == "8"


def test_csv_headerless_with_id_column_and_named_component_columns(cli_server, tmp_path):
    cli_server.create("csv3", DIM)
    src = tmp_path / "c.csv"
    with open(src, "w") as f:
        for i in range(5):
            f.write("id-%d,%s\n" % (i, ",".join(str(float(i * j)) for j in range(DIM))))
    ingest(cli_server, src, "csv3")
    src2 = tmp_path / "d.csv"
    with open(src2, "w") as f:
        f.write("id," + ",".join("x%d" % j for j in range(DIM)) + "\n")
        f.write("named," + ",".join("1" for _ in range(DIM)) + "\n")
    ingest(cli_server, src2, "csv3")
    got = stored(cli_server, "csv3")
    assert sorted(got) == ["id-0", "id-1", "id-2", "id-3", "id-4", "named"]
    assert np.array_equal(got["id-2"][0], np.array([2.0 * j for j in range(DIM)], dtype=np.float32))


def test_npy_float32_float64_and_fvecs(cli_server, tmp_path):
    rng = np.random.default_rng(7)
    for kind in ("f4", "f8", "fvecs"):
        name = "bin_" + kind
        cli_server.create(name, DIM)
        data = rng.standard_normal((23, DIM))
        if kind == "fvecs":
            src = tmp_path / "v.fvecs"
            with open(src, "wb") as f:
                for row in data.astype(np.float32):
                    f.write(struct.pack("<i", DIM) + row.tobytes())
        else:
            src = tmp_path / ("v_%s.npy" % kind)
            np.save(src, data.astype(kind))
        ingest(cli_server, src, name)
        got = stored(cli_server, name)
        assert sorted(tuple(v) for v, _ in got.values()) == sorted(tuple(r) for r in data.astype(np.float32))
    # A 1-D array is refused with a clear message.
    bad = tmp_path / "flat.npy"
    np.save(bad, np.zeros(10, dtype=np.float32))
    p = ingest(cli_server, bad, "bin_f4", rc=1)
    assert "2-D" in p.stderr


def test_bad_records_are_reported_with_their_numbers_and_the_rest_is_stored(cli_server, tmp_path):
    cli_server.create("badrec", DIM)
    src = tmp_path / "mixed.jsonl"
    lines = []
    for i in range(30):
        rec = {"id": "m%d" % i, "vector": [0.1 * i] * DIM}
        if i == 4:
            rec["vector"] = [1.0] * (DIM + 1)  # wrong dimension (found locally)
        if i == 17:
            rec["metadata"] = {"blob": "x" * (200 * 1024)}  # over the server's metadata limit
        lines.append(json.dumps(rec))
    lines.insert(10, "{not json")  # line 11
    lines.insert(12, "")  # blank lines are not records
    src.write_text("\n".join(lines) + "\n")
    failed = tmp_path / "failed.tsv"
    p = ingest(cli_server, src, "badrec", "--failed-file", str(failed), rc=1)
    assert "3 failed" in p.stderr and str(failed) in p.stderr
    rows = [line.split("\t") for line in failed.read_text().splitlines()]
    recnos = sorted(int(r[0]) for r in rows)
    # Record numbers: 0-based over non-blank lines (the bad line is record 10,
    # m17 is record 18); lines are 1-based.
    assert recnos == [4, 10, 18], rows
    by = {int(r[0]): r for r in rows}
    assert by[10][1] == "11" and "invalid JSON" in by[10][3]
    assert "7 dimensions" in by[4][3]
    assert by[18][2] == "m17" and "HTTP 4" in by[18][3], by[18]
    got = stored(cli_server, "badrec")
    assert sorted(got) == sorted("m%d" % i for i in range(30) if i not in (4, 17))


def test_checkpoint_refuses_another_input_and_needs_resume_or_fresh(cli_server, tmp_path):
    cli_server.create("ck1", DIM)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"vector": [i] * DIM}) + "\n" for i in range(10)))
    ck = tmp_path / "my.ckpt"
    ingest(cli_server, src, "ck1", "--checkpoint", str(ck))
    doc = json.loads(ck.read_text())
    assert doc["complete"] is True and doc["position"]["record"] == 10 and doc["input"]["size"] == src.stat().st_size
    # Same command again: refuses to guess.
    p = ingest(cli_server, src, "ck1", "--checkpoint", str(ck), rc=1)
    assert "--resume" in p.stderr and "--fresh" in p.stderr
    # --resume of a complete ingest: nothing to do.
    p = ingest(cli_server, src, "ck1", "--checkpoint", str(ck), "--resume")
    assert "already" in p.stderr
    # The input changed: the checkpoint is refused.
    with open(src, "a") as f:
        f.write(json.dumps({"vector": [99] * DIM}) + "\n")
    p = ingest(cli_server, src, "ck1", "--checkpoint", str(ck), "--resume", rc=1)
    assert "different input" in p.stderr
    # Another collection: refused too.
    cli_server.create("ck2", DIM)
    p = ingest(cli_server, src, "ck2", "--checkpoint", str(ck), "--resume", rc=1)
    assert "different input" in p.stderr or "collection" in p.stderr
    p = ingest(cli_server, src, "ck1", "--checkpoint", str(ck), "--fresh")
    assert cli_server.count("ck1") == 10 + 1 + 10  # derived ids depend on the input's identity


def test_missing_collection_and_json_report(cli_server, tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"vector": [1] * DIM}) + "\n")
    p = run_cli(cli_server.url, ["ingest", str(src), "--collection", "does_not_exist"])
    assert p.returncode == 1 and "collections create does_not_exist" in p.stderr
    cli_server.create("rep1", DIM)
    p = run_cli(cli_server.url, ["--json", "ingest", str(src), "--collection", "rep1"])
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["sent"] == 1 and rep["failed"] == 0 and rep["complete"] is True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(cli_server, tmp_path):
    import os
    import pty
    import subprocess
    from cli_support import API_KEY, CLI_BIN

    cli_server.create("prog", DIM)
    src = tmp_path / "p.npy"
    np.save(src, np.ones((2000, DIM), dtype=np.float32))
    master, slave = pty.openpty()
    proc = subprocess.Popen([CLI_BIN, "--url", cli_server.url, "--api-key", API_KEY, "ingest", str(src),
                             "--collection", "prog", "--batch-size", "100", "--parallel", "1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, start_new_session=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    proc.wait(timeout=60)
    os.close(master)
    tty_out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, tty_out
    assert "\r" in tty_out and "[" in tty_out and "ETA" in tty_out and "/s" in tty_out, tty_out
    assert "2,000/2,000" in tty_out
    # Not a terminal: plain lines, no carriage returns.
    p = ingest(cli_server, src, "prog", "--fresh")
    assert "\r" not in p.stderr and "records/s" in p.stderr and "ETA" in p.stderr
