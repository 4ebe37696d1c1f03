"""vectordb-cli ingest of text records through an OpenAI-compatible
embeddings endpoint (tests/e2e/fake_embedder.py) that answers 429, 500 and
stalls past the client's timeout: every text ends up stored exactly once
with the endpoint's vector and its text in metadata; an interrupted run
resumes; a model of the wrong dimension is refused before anything is
written."""
import json

import numpy as np

from cli_support import QUICK, cli_server, run_cli  # noqa: F401  (fixture)
from fake_embedder import FakeEmbedder, embed_text

N = 600 if QUICK else 2000
DIM = 32


def write_texts(path, n):
    with open(path, "w") as f:
        for i in range(n):
            rec = {"text": "document %d: the quick brown fox %d jumps" % (i, i * 7919 % 1009)}
            if i % 3 == 0:
                rec["id"] = "doc-%d" % i  # some records carry their own id
                rec["metadata"] = {"n": i}
            f.write(json.dumps(rec) + "\n")


def test_ingest_texts_through_a_faulty_embedder_stores_each_text_once_with_its_vector(cli_server, tmp_path):
    name = "texts"
    cli_server.create(name, DIM)
    src = tmp_path / "texts.jsonl"
    write_texts(src, N)
    emb = FakeEmbedder(DIM, seed=3, p_429=0.08, p_500=0.08, p_stall=0.03, stall_s=2.5, key="sk-test",
                       forced={6: "429", 10: "500", 14: "stall", 15: "stall"}).start()
    retry_log = tmp_path / "retries.jsonl"
    base = ["--timeout", "1.2", "ingest", str(src), "--collection", name, "--batch-size", "100",
            "--embed-batch-size", "50", "--embed-url", emb.url, "--embed-model", "fake-embed",
            "--embed-key-env", "FAKE_EMBED_KEY", "--retry-log", str(retry_log)]
    env = {"FAKE_EMBED_KEY": "sk-test"}
    try:
        # First run with no retries allowed: it stops at the first fault,
        # leaving a checkpoint; then resume with retries until complete.
        p1 = run_cli(cli_server.url, base + ["--max-retries", "0", "--parallel", "1"], env=env)
        assert p1.returncode == 1, p1.stderr[-2000:]
        p2 = run_cli(cli_server.url, base + ["--resume", "--parallel", "4"], env=env, timeout=300)
        assert p2.returncode == 0, p2.stderr[-3000:]
    finally:
        emb.stop()
    assert emb.count("429") and emb.count("500") and emb.count("stall"), emb.calls

    ids, vecs, metas = cli_server.all_ids(name, include_vectors=True)
    assert len(ids) == N and len(set(ids)) == N
    texts = [json.loads(line)["text"] for line in open(src)]
    by_text = {m["text"]: i for i, m in metas.items()}
    assert sorted(by_text) == sorted(texts), "some texts are missing or stored twice"
    for i in range(0, N, 3):
        assert "doc-%d" % i in metas and metas["doc-%d" % i]["n"] == i
    for vid, text in ((v, metas[v]["text"]) for v in ids[:: max(1, N // 200)]):
        want = np.array(embed_text(text, DIM), dtype=np.float32)
        got = np.array(vecs[vid], dtype=np.float32)
        # Euclidean collection: stored as sent, bit-exact.
        assert np.array_equal(got, want), vid

    log = [json.loads(line) for line in open(retry_log)]
    assert any(e["kind"] == "embed" and e["status"] in (429, 500) for e in log)
    assert any(e["kind"] == "embed" and e["status"] == 0 for e in log), "no timeout was retried"


def test_embedding_dimension_mismatch_is_refused_before_anything_is_written(cli_server, tmp_path):
    name = "texts_dim"
    cli_server.create(name, DIM)
    src = tmp_path / "t.jsonl"
    write_texts(src, 50)
    emb = FakeEmbedder(DIM - 8).start()
    try:
        p = run_cli(cli_server.url, ["ingest", str(src), "--collection", name, "--embed-url", emb.url + "/v1"])
    finally:
        emb.stop()
    assert p.returncode == 1
    assert "%d dimensions" % (DIM - 8) in p.stderr and str(DIM) in p.stderr, p.stderr
    assert cli_server.count(name) == 0
    assert len(emb.calls) == 1, "more than the probe was embedded: %s" % emb.calls


def test_text_records_without_an_embedder_are_reported_as_failed(cli_server, tmp_path):
    name = "texts_noembed"
    cli_server.create(name, DIM)
    src = tmp_path / "mixed.jsonl"
    with open(src, "w") as f:
        f.write(json.dumps({"id": "v0", "vector": [0.5] * DIM}) + "\n")
        f.write(json.dumps({"id": "t1", "text": "needs an embedder"}) + "\n")
        f.write(json.dumps({"id": "v2", "vector": [0.25] * DIM}) + "\n")
    failed = tmp_path / "failed.tsv"
    p = run_cli(cli_server.url, ["ingest", str(src), "--collection", name, "--failed-file", str(failed)])
    assert p.returncode == 1
    assert "1 failed" in p.stderr
    rows = [line.split("\t") for line in open(failed).read().splitlines()]
    assert [r[0] for r in rows] == ["1"] and rows[0][2] == "t1" and "--embed-url" in rows[0][3]
    assert sorted(cli_server.all_ids(name)) == ["v0", "v2"]
