"""The recovery routes end to end through the server: the recovery release's own
procedure (hard delete, orphan import of the original format, backup, soft
delete, restore, restart), background import jobs, retention expiry, and a
tampered backup failing verify and restore."""
import hashlib
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ASAN, QUICK, ROOT

MAKE_LEGACY = os.path.join(ROOT, "tests", "fixtures", "make_legacy.py")
EMPTY_TRASH = '{"success":true,"data":[],"error":null,"code":null}'


def all_points(server, name):
    pts, offset = {}, 0
    while True:
        page = server.ok("GET", "/collections/%s/vectors?offset=%d&limit=2000&include_vectors=true" % (name, offset))
        for p in page["vectors"]:
            pts[p["id"]] = p
        if page["next_offset"] is None:
            return pts
        offset = page["next_offset"]


def checksum(points):
    """Over sorted ids, float32 vector bytes and canonical metadata."""
    h = hashlib.sha256()
    for pid in sorted(points):
        p = points[pid]
        h.update(pid.encode())
        h.update(np.array(p["vector"], dtype=np.float32).tobytes())
        h.update(json.dumps(p["metadata"], sort_keys=True).encode())
    return h.hexdigest()


def make_legacy(outdir, n, dim, seed):
    subprocess.run([sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3", MAKE_LEGACY, str(outdir),
                    "--n", str(n), "--dim", str(dim), "--seed", str(seed)], check=True, timeout=300)
    expected = []
    with open(os.path.join(str(outdir), "expected.jsonl")) as f:
        for line in f:
            if line.strip():
                expected.append(json.loads(line))
    return expected


def exp_vector(e):
    return e["vector"] if "vector" in e else e["data"]


def string_values(md):
    """Every string value of a metadata object, by dotted key."""
    out = {}
    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(prefix + "." + k if prefix else k, x)
        elif isinstance(v, str):
            out[prefix] = v
    walk("", md or {})
    return out


def test_recovery_release_procedure_end_to_end(server_factory, tmp_path):
    roots = tmp_path / "orphans"
    roots.mkdir()
    s = server_factory(args=["--import-root", str(roots)])
    dim = 1536
    n = 500 if (QUICK or ASAN) else 2000
    # 1. the incident: a collection that gets hard-deleted
    s.create("incidents", dim, metric="Euclidean")
    s.batch("incidents", [{"id": "old%d" % i, "data": [float(i)] * dim} for i in range(3)])
    hd = s.ok("DELETE", "/collections/incidents/hard-delete")
    assert hd["hard_deleted"] is True and hd["backup"]["reason"] == "pre-hard-delete"
    assert hd["backup"]["vector_count"] == 3
    assert s.req("GET", "/collections/incidents").status_code == 404
    # 2. an orphan in the original d-vecDB format
    orphan = roots / "incidents_orphan"
    expected = make_legacy(orphan, n, dim, 7)
    assert len(expected) == n
    src_before = {f: hashlib.sha256((orphan / f).read_bytes()).hexdigest() for f in os.listdir(orphan)}
    body = {"orphaned_path": str(orphan), "collection_name": "incidents", "dimension": dim,
            "distance_metric": "Euclidean", "vector_type": "Float32"}
    rep = s.ok("POST", "/collections/import", body)
    assert rep["imported"] == n and rep["skipped"] == 0 and rep["bytes_scanned"] > 0
    # the source is never modified
    assert {f: hashlib.sha256((orphan / f).read_bytes()).hexdigest() for f in os.listdir(orphan)} == src_before
    # 3. exact count, vectors bit-exact, metadata text back
    assert s.ok("GET", "/collections/incidents")["vector_count"] == n
    got = all_points(s, "incidents")
    assert len(got) == n
    for e in expected:
        p = got[e["id"]]
        assert np.array_equal(np.array(p["vector"], dtype=np.float32), np.array(exp_vector(e), dtype=np.float32))
        for k, v in string_values(e.get("metadata")).items():
            assert string_values(p["metadata"]).get(k) == v, (e["id"], k)
    one = expected[n // 2]
    rec = s.ok("GET", "/collections/incidents/vectors/" + one["id"])
    assert np.array_equal(np.array(rec["vector"], dtype=np.float32), np.array(exp_vector(one), dtype=np.float32))
    hits = s.ok("POST", "/collections/incidents/search", {"vector": exp_vector(one), "limit": 1})
    assert hits[0]["id"] == one["id"]
    # 4. nothing in the trash: exactly the original's empty answer (+ code)
    r = s.req("GET", "/collections/deleted")
    assert r.status_code == 200 and r.text == EMPTY_TRASH
    # 5. backup, soft delete, list, restore
    bk = s.ok("POST", "/collections/incidents/backup")
    assert bk["vector_count"] == n and bk["reason"] == "manual" and bk["backup_id"]
    assert bk["backup_id"] in [b["backup_id"] for b in s.ok("GET", "/collections/incidents/backups")]
    assert bk["backup_id"] in [b["backup_id"] for b in s.ok("GET", "/backups")]
    assert s.ok("POST", "/backups/incidents/%s/verify" % bk["backup_id"])["valid"] is True
    before = checksum(got)
    t0 = time.time()
    tr = s.ok("DELETE", "/collections/incidents")
    assert tr["vector_count"] == n
    trash = s.ok("GET", "/collections/deleted")
    assert [(t["name"], t["vector_count"]) for t in trash] == [("incidents", n)]
    assert set(trash[0]) >= {"name", "deleted_at", "expires_at", "vector_count", "size_bytes"}
    restored = s.ok("POST", "/collections/incidents/restore")
    assert restored["vector_count"] == n and restored["restored_from"] == "deleted"
    assert time.time() - t0 < 10
    assert s.req("GET", "/collections/deleted").text == EMPTY_TRASH
    # 6. restart: all still there, byte-identical
    s.restart()
    assert s.ok("GET", "/collections/incidents")["vector_count"] == n
    assert checksum(all_points(s, "incidents")) == before
    # 7. restore the manual backup under another name; 409 over the live one
    r = s.req("POST", "/collections/incidents/restore", json_body={"source": "backup", "backup_id": bk["backup_id"]})
    assert r.status_code == 409 and r.json()["code"] == "already_exists"
    rb = s.ok("POST", "/collections/incidents/restore", {"source": "backup", "backup_id": bk["backup_id"],
                                                        "new_name": "incidents_copy"})
    assert rb["name"] == "incidents_copy" and rb["restored_from"] == "backup"
    assert checksum(all_points(s, "incidents_copy")) == before
    # 8. backups can be deleted
    s.ok("DELETE", "/backups/incidents/%s" % bk["backup_id"])
    assert bk["backup_id"] not in [b["backup_id"] for b in s.ok("GET", "/backups")]
    r = s.req("POST", "/backups/incidents/%s/verify" % bk["backup_id"])
    assert r.status_code == 404
    # the audit log saw it all, with key ids only
    actions = [a.get("action") for a in s.ok("GET", "/audit?limit=1000") if isinstance(a, dict)]
    for a in ("create", "hard-delete", "import", "backup", "delete", "restore"):
        assert a in actions, a


def test_import_in_background_job_reports_progress(server_factory, tmp_path):
    roots = tmp_path / "orphans"
    roots.mkdir()
    s = server_factory(args=["--import-root", str(roots)])
    n, dim = (300, 64) if (QUICK or ASAN) else (2000, 128)
    expected = make_legacy(roots / "o1", n, dim, 11)
    body = {"orphaned_path": str(roots / "o1"), "collection_name": "bg", "dimension": dim,
            "distance_metric": "Euclidean", "vector_type": "Float32"}
    r = s.req("POST", "/collections/import?wait=false", json_body=body)
    assert r.status_code == 202
    job = r.json()["data"]
    assert job["status_url"] == "/jobs/" + job["job_id"]
    t_end = time.time() + 120
    while True:
        st = s.ok("GET", job["status_url"])
        assert st["state"] in ("running", "succeeded"), st
        if st["state"] == "succeeded":
            break
        assert time.time() < t_end
        time.sleep(0.05)
    assert st["result"]["imported"] == n and st["progress"] == 1.0
    assert s.ok("GET", "/collections/bg")["vector_count"] == len(expected)
    assert s.req("GET", "/jobs/job-unknown").status_code == 404
    # importing into a live name is refused and changes nothing
    r = s.req("POST", "/collections/import", json_body=body)
    assert r.status_code == 409
    assert s.ok("GET", "/collections/bg")["vector_count"] == n


def test_trash_entries_expire_after_a_short_retention(server_factory):
    s = server_factory(args=["--trash-retention", "2s"])
    s.create("shortlived", 4)
    s.batch("shortlived", [{"id": "x%d" % i, "data": [i, 0, 0, 1]} for i in range(10)])
    t = s.ok("DELETE", "/collections/shortlived")
    assert t["expires_at_ms"] - t["deleted_at_ms"] == 2000
    assert [e["name"] for e in s.ok("GET", "/collections/deleted")] == ["shortlived"]
    trash_dir = os.path.join(s.data_dir, ".deleted")
    assert os.listdir(trash_dir)
    time.sleep(2.5)
    purged = s.ok("POST", "/collections/deleted/cleanup")["purged"]
    assert purged in (0, 1)  # the periodic sweeper may have purged it first
    assert s.req("GET", "/collections/deleted").text == EMPTY_TRASH
    assert not [d for d in os.listdir(trash_dir) if d.startswith("shortlived")]
    r = s.req("POST", "/collections/shortlived/restore")
    assert r.status_code == 404
    assert "trash_purged" in s.log_text() or purged == 1
    # never comes back after a restart either
    s.restart()
    assert "shortlived" not in s.ok("GET", "/collections")


def test_tampered_backup_fails_verify_and_restore_naming_the_file(server_factory):
    s = server_factory()
    s.create("tamper", 8, metric="Euclidean")
    s.batch("tamper", [{"id": "t%d" % i, "data": [float(i + k) for k in range(8)], "metadata": {"i": i}} for i in range(200)])
    # a checkpointed snapshot exists after a restart (close checkpoints)
    s.restart()
    bk = s.ok("POST", "/collections/tamper/backup")
    live_before = checksum(all_points(s, "tamper"))
    bdir = os.path.join(s.data_dir, ".backups", "tamper", bk["backup_id"])
    assert os.path.isdir(bdir), os.listdir(os.path.join(s.data_dir, ".backups", "tamper"))
    files = []
    for dp, _, fs in os.walk(bdir):
        for f in fs:
            p = os.path.join(dp, f)
            if "manifest" not in f and os.path.getsize(p) > 16:
                files.append(p)
    victim = max(files, key=os.path.getsize)
    # break the hard link first: the live collection shares the inode
    data = bytearray(open(victim, "rb").read())
    os.unlink(victim)
    data[len(data) // 2] ^= 0xFF
    with open(victim, "wb") as f:
        f.write(data)
    r = s.req("POST", "/backups/tamper/%s/verify" % bk["backup_id"])
    assert r.status_code == 409 and r.json()["code"] == "corrupt", r.text
    assert os.path.basename(victim) in r.json()["error"]
    r = s.req("POST", "/collections/tamper/restore", json_body={"source": "backup", "backup_id": bk["backup_id"],
                                                               "new_name": "tamper_copy"})
    assert r.status_code == 409 and r.json()["code"] == "corrupt", r.text
    assert "tamper_copy" not in s.ok("GET", "/collections")
    assert checksum(all_points(s, "tamper")) == live_before


def test_import_over_a_live_collection_needs_overwrite_and_takes_a_pre_import_backup(server_factory, tmp_path):
    roots = tmp_path / "orphans"
    roots.mkdir()
    s = server_factory(args=["--import-root", str(roots)])
    dim = 16
    n = 200 if (QUICK or ASAN) else 1000
    s.create("incidents", dim, metric="Euclidean")
    s.batch("incidents", [{"id": "old%d" % i, "data": [float(i + k) for k in range(dim)], "metadata": {"i": i}}
                          for i in range(20)])
    old = checksum(all_points(s, "incidents"))
    expected = make_legacy(roots / "o", n, dim, 5)
    body = {"orphaned_path": str(roots / "o"), "collection_name": "incidents", "dimension": dim,
            "distance_metric": "Euclidean", "vector_type": "Float32"}
    # without overwrite: 409, nothing changed, no backup taken
    r = s.req("POST", "/collections/import", json_body=body)
    assert r.status_code == 409 and r.json()["code"] == "already_exists"
    assert "overwrite" in r.json()["error"]
    assert checksum(all_points(s, "incidents")) == old
    assert s.ok("GET", "/collections/incidents/backups") == []
    # with overwrite: backup, old one to the trash, new one in place
    rep = s.ok("POST", "/collections/import", dict(body, overwrite=True))
    assert rep["imported"] == n and rep["skipped"] == 0
    assert rep["backup_id"].endswith("-pre-import") and rep["replaced_trash_id"].startswith("incidents.")
    assert s.ok("GET", "/collections/incidents")["vector_count"] == n
    assert s.req("GET", "/collections/incidents/vectors/old0").status_code == 404
    got = all_points(s, "incidents")
    assert sorted(got) == sorted(e["id"] for e in expected)
    backups = s.ok("GET", "/collections/incidents/backups")
    assert [(b["backup_id"], b["reason"], b["vector_count"]) for b in backups] == [(rep["backup_id"], "pre-import", 20)]
    assert s.ok("POST", "/backups/incidents/%s/verify" % rep["backup_id"])["valid"] is True
    trash = s.ok("GET", "/collections/deleted")
    assert [(t["name"], t["vector_count"]) for t in trash] == [("incidents", 20)]
    # the backup brings the replaced collection back, identical
    s.ok("POST", "/collections/incidents/restore", {"source": "backup", "backup_id": rep["backup_id"],
                                                    "new_name": "incidents_before"})
    assert checksum(all_points(s, "incidents_before")) == old
    # in a background job too: the result carries the backup id
    r = s.req("POST", "/collections/import?wait=false", json_body=dict(body, collection_name="incidents_before",
                                                                       overwrite=True, skip_backup=True))
    assert r.status_code == 202
    url = r.json()["data"]["status_url"]
    t_end = time.time() + 60
    while True:
        st = s.ok("GET", url)
        if st["state"] != "running":
            break
        assert time.time() < t_end
        time.sleep(0.05)
    assert st["state"] == "succeeded", st
    assert st["result"]["backup_id"] is None and st["result"]["replaced_trash_id"].startswith("incidents_before.")
    assert s.ok("GET", "/collections/incidents_before")["vector_count"] == n
    # audited with the backup id; all of it survives a restart
    lines = [a for a in s.ok("GET", "/audit?limit=1000") if isinstance(a, dict) and a.get("action") == "import"]
    assert any(rep["backup_id"] in (a.get("detail") or "") and a.get("outcome") == "ok" for a in lines)
    s.restart()
    assert checksum(all_points(s, "incidents")) == checksum(got)
    assert not os.path.exists(os.path.join(s.data_dir, ".importing")) or \
        os.listdir(os.path.join(s.data_dir, ".importing")) == []


def test_kill9_during_an_overwriting_import_leaves_the_old_or_the_new_collection(server_factory, tmp_path):
    """SIGKILL at a random moment of an import that replaces a live collection,
    >= 10 rounds: after the restart the name holds the old collection
    (identical) or the complete new one, never neither and never a mix."""
    import random
    rng = random.Random(1234)
    roots = tmp_path / "orphans"
    roots.mkdir()
    dim = 32
    n = 400 if (QUICK or ASAN) else 2000
    rounds = 10
    make_legacy(roots / "o", n, dim, 9)
    s = server_factory(args=["--import-root", str(roots)])
    body = {"orphaned_path": str(roots / "o"), "collection_name": "victim", "dimension": dim,
            "distance_metric": "Euclidean", "vector_type": "Float32", "overwrite": True}
    # how long one import takes, to spread the kills over it
    s.create("victim", dim)
    t0 = time.time()
    s.ok("POST", "/collections/import", body)
    span = time.time() - t0
    seen = {"old": 0, "new": 0}
    for rnd in range(rounds):
        s.ok("DELETE", "/collections/victim/hard-delete?skip_backup=true")
        s.create("victim", dim)
        s.batch("victim", [{"id": "r%d-%d" % (rnd, i), "data": [float(rnd + i + k) for k in range(dim)]}
                           for i in range(50)])
        old = checksum(all_points(s, "victim"))
        r = s.req("POST", "/collections/import?wait=false", json_body=body)
        assert r.status_code == 202
        time.sleep(rng.uniform(0, span * 1.2))
        s.kill9()
        s.start()
        info = s.req("GET", "/collections/victim")
        assert info.status_code == 200, "round %d: the name holds nothing: %s" % (rnd, info.text)
        count = info.json()["data"]["vector_count"]
        if count == n:
            seen["new"] += 1
            assert "r%d-0" % rnd not in all_points(s, "victim")
        else:
            assert count == 50 and checksum(all_points(s, "victim")) == old, (rnd, count)
            seen["old"] += 1
        for d in (".staging", ".importing"):
            p = os.path.join(s.data_dir, d)
            assert not os.path.exists(p) or os.listdir(p) == [], (rnd, d, os.listdir(p))
    print("kill -9 during an overwriting import: %s" % seen)
    assert seen["old"] + seen["new"] == rounds


def test_each_operation_is_audited_once_with_its_callers_key_id(server_factory, rng):
    """The engine audits its own operations and the server audits what the
    engine never sees; the engine's lines name the HTTP caller (key id,
    address, route), and no operation gets a line from both (the server and
    the engine each wrote one for delete/backup/restore/... before)."""
    from conftest import rand_vec
    s = server_factory()
    s.create("aud", 8)
    s.batch("aud", [{"id": "p%d" % i, "data": rand_vec(rng, 8)} for i in range(20)])
    bk = s.ok("POST", "/collections/aud/backup")
    s.ok("POST", "/backups/aud/%s/verify" % bk["backup_id"])
    s.ok("DELETE", "/collections/aud")
    s.ok("POST", "/collections/aud/restore", {})
    hd = s.ok("DELETE", "/collections/aud/hard-delete")
    # refused before the engine wrote anything: still one line, from the server
    r = s.req("DELETE", "/collections/nosuch")
    assert r.status_code == 404
    lines = [a for a in s.ok("GET", "/audit?limit=1000") if isinstance(a, dict)]
    by = {}
    for a in lines:
        by.setdefault((a["action"], a["collection"]), []).append(a)
    # backups: the manual one and the hard delete's automatic one; delete: the
    # soft delete only; the rest once each
    assert [a["outcome"] for a in by[("backup", "aud")]] == ["ok", "ok"], by[("backup", "aud")]
    for action in ("create", "backup-verify", "delete", "restore", "hard-delete"):
        got = by.get((action, "aud"), [])
        assert len(got) == 1, (action, got)
    for action in ("backup", "backup-verify", "delete", "restore", "hard-delete"):
        for a in by[(action, "aud")]:
            assert a["actor"] == "admin", a
            assert a["remote"] == "127.0.0.1", a
            assert a["route"] and a["route"].startswith("/"), a
    assert hd["backup"]["backup_id"] in by[("hard-delete", "aud")][0]["detail"]
    assert len(by[("delete", "nosuch")]) == 1 and by[("delete", "nosuch")][0]["outcome"] == "not_found"


def test_import_jobs_answer_after_a_restart_and_a_killed_one_says_interrupted(server_factory, tmp_path):
    roots = tmp_path / "orphans"
    roots.mkdir()
    s = server_factory(args=["--import-root", str(roots)])
    make_legacy(roots / "small", 200, 16, 5)
    n, dim = (6000, 64) if (QUICK or ASAN) else (20000, 256)
    make_legacy(roots / "big", n, dim, 6)

    def start(src, name):
        body = {"orphaned_path": str(roots / src), "collection_name": name, "dimension": 16 if src == "small" else dim,
                "distance_metric": "Euclidean", "vector_type": "Float32"}
        r = s.req("POST", "/collections/import?wait=false", json_body=body)
        assert r.status_code == 202, r.text
        return r.json()["data"]["job_id"]

    done_id = start("small", "small")
    t_end = time.time() + 60
    while s.ok("GET", "/jobs/" + done_id)["state"] == "running":
        assert time.time() < t_end
        time.sleep(0.05)
    # a job that finished survives a clean restart, with its result
    s.restart()
    st = s.ok("GET", "/jobs/" + done_id)
    assert st["state"] == "succeeded" and st["result"]["imported"] == 200 and st["from_previous_run"] is True, st
    # a job killed while it runs says so after the restart
    run_id = start("big", "big")
    while True:
        st = s.ok("GET", "/jobs/" + run_id)
        if st["state"] != "running" or st["phase"] not in ("queued", ""):
            break
        time.sleep(0.01)
    assert st["state"] == "running", "the import finished before the kill: make it bigger (%r)" % st
    s.kill9()
    s.start()
    st = s.ok("GET", "/jobs/" + run_id)
    assert st["state"] == "interrupted" and st["code"] == "interrupted" and st["from_previous_run"] is True, st
    # the CLI following that job stops with the reason and exit code 1 (it
    # polled forever on a state it did not know)
    from conftest import ADMIN_KEY, BIN
    p = subprocess.run([os.path.join(os.path.dirname(BIN), "vectordb-cli"), "--url", "http://127.0.0.1:%d" % s.port, "--api-key",
                        ADMIN_KEY, "import", "--job", run_id], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "interrupted" in p.stderr, (p.returncode, p.stderr)
    # all or nothing: the import was finished at start-up or never happened
    r = s.req("GET", "/collections/big")
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert r.json()["data"]["vector_count"] == n
    # ids that are not job ids never reach the file system
    for bad in ("job-unknown", "job-..%2f..%2faudit.log", "job-0123456789abcdef0", "job-0123456789ABCDEF"):
        assert s.req("GET", "/jobs/" + bad).status_code == 404, bad
    assert not [f for f in os.listdir(os.path.join(s.data_dir, ".jobs")) if f.endswith(".tmp")]
