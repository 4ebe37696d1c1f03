"""Every vectordb-cli subcommand against the real server: the success path
(human output and --json parsed), exit code 1 for failed operations with a
message saying what to do, exit code 2 for usage errors, --help with an
example everywhere, and the typed-name confirmation of destructive
commands (on a pseudo-terminal; refused without one unless --yes)."""
import concurrent.futures
import json
import os
import pty
import struct
import subprocess

import pytest

from cli_support import API_KEY, CLI_BIN, cli_json, cli_server, free_port, run_cli  # noqa: F401

DIM = 4


def with_tty(url, args, typed):
    """Run the CLI with a pseudo-terminal on stdin and no controlling
    terminal (new session), type `typed` + Enter; returns (rc, stdout, stderr)."""
    master, slave = pty.openpty()
    cmd = [CLI_BIN, "--url", url, "--api-key", API_KEY] + list(args)
    proc = subprocess.Popen(cmd, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    os.close(slave)
    os.write(master, (typed + "\n").encode())
    out, err = proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, out, err


def fill(srv, name, n=3):
    srv.create(name, DIM)
    srv.data("POST", "/collections/%s/vectors/batch" % name,
             {"vectors": [{"id": "p%d" % i, "data": [float(i), 1.0, 0.0, 0.5], "metadata": {"i": i}}
                          for i in range(n)]})


def test_help_everywhere_has_an_example_and_usage_errors_exit_2(cli_server):
    top = run_cli(cli_server.url, ["--help"])
    assert top.returncode == 0 and "ingest" in top.stdout and "hard-delete" in top.stdout
    cmds = [["health"], ["stats"], ["collections", "create"], ["collections", "list"], ["collections", "info"],
            ["collections", "delete"], ["vectors", "insert"], ["vectors", "list"], ["vectors", "get"], ["vectors", "delete"],
            ["vectors", "search"], ["trash", "list"], ["trash", "restore"], ["trash", "cleanup"],
            ["backup", "create"], ["backup", "list"], ["backup", "verify"], ["backup", "delete"], ["restore"],
            ["hard-delete"], ["import"], ["audit"], ["ingest"]]
    bad = (["frobnicate"], ["collections", "frob"], ["collections", "create", "x"],
           ["collections", "create", "x", "--dim", "zero"], ["collections", "list", "--bogus"],
           ["vectors", "search", "c"], ["vectors", "insert", "c", "--vector", "1,nan"],
           ["ingest", "f.jsonl"], ["--timeout", "-1", "health"], ["audit", "--limit", "0"])
    # Independent processes: run them side by side (slow under ASan).
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        helps = list(pool.map(lambda c: run_cli(cli_server.url, c + ["--help"]), cmds))
        bads = list(pool.map(lambda c: run_cli(cli_server.url, c), bad))
    for c, p in zip(cmds, helps):
        assert p.returncode == 0, c
        assert "usage: vectordb-cli " + " ".join(c) in p.stdout and "example" in p.stdout, (c, p.stdout)
    for c, p in zip(bad, bads):
        assert p.returncode == 2, (c, p.returncode, p.stderr)
        assert "vectordb-cli" in p.stderr and ("usage" in p.stderr or "--help" in p.stderr), p.stderr


def test_health_stats_and_failures_exit_1_with_a_next_step(cli_server):
    h = cli_json(cli_server.url, ["health"])
    assert h["status"] == "healthy"
    s = cli_json(cli_server.url, ["stats"])
    assert "collections" in s
    p = run_cli(cli_server.url, ["health"])
    assert p.returncode == 0 and "healthy" in p.stdout
    # Unreachable server.
    p = run_cli("http://127.0.0.1:%d" % free_port(), ["collections", "list"])
    assert p.returncode == 1 and "cannot reach" in p.stderr and "next:" in p.stderr
    # Wrong key: 401, and the hint names the flag.
    p = run_cli(cli_server.url, ["collections", "list"], key="wrong-key")
    assert p.returncode == 1 and "401" in p.stderr and "--api-key" in p.stderr
    # The environment variables work like the flags.
    p = subprocess.run([CLI_BIN, "--json", "collections", "list"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, DVECDB_URL=cli_server.url, DVECDB_API_KEY=API_KEY))
    assert p.returncode == 0 and isinstance(json.loads(p.stdout), list), p.stderr


def test_collections_create_list_info_and_conflict(cli_server):
    d = cli_json(cli_server.url, ["collections", "create", "cc", "--dim", "8", "--metric", "euclidean"])
    assert d is not None
    p = run_cli(cli_server.url, ["collections", "create", "cc", "--dim", "8"])
    assert p.returncode == 1 and "409" in p.stderr and "next:" in p.stderr
    names = cli_json(cli_server.url, ["collections", "list"])
    assert "cc" in names
    p = run_cli(cli_server.url, ["collections", "list"])
    assert p.returncode == 0 and "NAME" in p.stdout and "cc" in p.stdout
    info = cli_json(cli_server.url, ["collections", "info", "cc"])
    assert info["dimension"] == 8 and info["vector_count"] == 0
    p = run_cli(cli_server.url, ["collections", "info", "nope"])
    assert p.returncode == 1 and "404" in p.stderr


def test_vectors_insert_get_search_delete(cli_server):
    cli_server.create("vv", DIM)
    vid = cli_json(cli_server.url, ["vectors", "insert", "vv", "--id", "a b/c", "--vector", "1,0,0,0",
                                    "--metadata", '{"lang": "en"}'])
    assert vid == "a b/c" or (isinstance(vid, dict) and vid.get("id") == "a b/c")
    p = run_cli(cli_server.url, ["vectors", "insert", "vv", "--id", "b", "--vector", "[0, 1, 0, 0]"])
    assert p.returncode == 0 and "inserted" in p.stdout
    got = cli_json(cli_server.url, ["vectors", "get", "vv", "a b/c"])
    assert got["id"] == "a b/c" and got["metadata"] == {"lang": "en"}
    hits = cli_json(cli_server.url, ["vectors", "search", "vv", "--vector", "0.9,0.1,0,0", "-k", "2"])
    assert [h["id"] for h in hits] == ["a b/c", "b"]
    hits = cli_json(cli_server.url, ["vectors", "search", "vv", "--vector", "0.9,0.1,0,0", "--filter",
                                     '{"lang": "en"}'])
    assert [h["id"] for h in hits] == ["a b/c"]
    p = run_cli(cli_server.url, ["vectors", "search", "vv", "--vector", "0.9,0.1,0,0"])
    assert p.returncode == 0 and "DISTANCE" in p.stdout and "a b/c" in p.stdout
    page = cli_json(cli_server.url, ["vectors", "list", "vv", "--limit", "1"])
    assert len(page["vectors"]) == 1 and page["next_offset"] == 1
    page = cli_json(cli_server.url, ["vectors", "list", "vv", "--offset", "1", "--include-vectors"])
    assert len(page["vectors"]) == 1 and len(page["vectors"][0]["vector"]) == DIM
    p = run_cli(cli_server.url, ["vectors", "list", "vv"])
    assert p.returncode == 0 and "a b/c" in p.stdout and "ID" in p.stdout
    p = run_cli(cli_server.url, ["vectors", "insert", "vv", "--vector", "1,2"])
    assert p.returncode == 1 and "400" in p.stderr  # wrong dimension
    p = run_cli(cli_server.url, ["vectors", "delete", "vv", "a b/c"])
    assert p.returncode == 0
    p = run_cli(cli_server.url, ["vectors", "get", "vv", "a b/c"])
    assert p.returncode == 1 and "404" in p.stderr
    cli_server.data("POST", "/collections/vv/vectors/batch",
                    {"vectors": [{"id": "x%d" % i, "data": [1, 1, 1, 1]} for i in range(3)]})
    out = cli_json(cli_server.url, ["vectors", "delete", "vv", "x0", "x1", "x2"])
    assert out is not None
    assert cli_server.count("vv") == 1


def test_collections_delete_asks_for_the_name_of_a_non_empty_collection(cli_server):
    # Empty: no question.
    cli_server.create("empty1", DIM)
    p = run_cli(cli_server.url, ["collections", "delete", "empty1"])
    assert p.returncode == 0 and "trash" in p.stdout
    fill(cli_server, "full1")
    # No terminal, no --yes: refused, usage error, nothing sent.
    p = run_cli(cli_server.url, ["collections", "delete", "full1"])
    assert p.returncode == 2 and "--yes" in p.stderr
    assert cli_server.count("full1") == 3
    # Wrong name typed: refused.
    rc, out, err = with_tty(cli_server.url, ["collections", "delete", "full1"], "full2")
    assert rc == 1 and "did not match" in err, err
    assert cli_server.count("full1") == 3
    # Right name typed: moved to the trash.
    rc, out, err = with_tty(cli_server.url, ["collections", "delete", "full1"], "full1")
    assert rc == 0, err
    assert "Type the collection name" in err and "3 vectors" in err
    assert cli_server.req("GET", "/collections/full1").status_code == 404


def test_trash_list_restore_cleanup(cli_server):
    fill(cli_server, "tr1")
    assert run_cli(cli_server.url, ["collections", "delete", "tr1", "--yes"]).returncode == 0
    entries = cli_json(cli_server.url, ["trash", "list"])
    assert any(e["name"] == "tr1" and e["vector_count"] == 3 for e in entries), entries
    p = run_cli(cli_server.url, ["trash", "list"])
    assert p.returncode == 0 and "tr1" in p.stdout and "EXPIRES_AT" in p.stdout
    cli_json(cli_server.url, ["trash", "restore", "tr1"])
    assert cli_server.count("tr1") == 3
    # Restoring over a live name: 409, with a next step.
    assert run_cli(cli_server.url, ["collections", "delete", "tr1", "--yes"]).returncode == 0
    cli_server.create("tr1", DIM)
    p = run_cli(cli_server.url, ["trash", "restore", "tr1"])
    assert p.returncode == 1 and "409" in p.stderr
    cli_json(cli_server.url, ["trash", "restore", "tr1", "--new-name", "tr1_back"])
    assert cli_server.count("tr1_back") == 3
    out = cli_json(cli_server.url, ["trash", "cleanup"])
    assert isinstance(out, dict)
    p = run_cli(cli_server.url, ["trash", "restore", "never_existed"])
    assert p.returncode == 1 and "404" in p.stderr


def test_backup_create_list_verify_restore_delete(cli_server):
    fill(cli_server, "bk1", n=5)
    b = cli_json(cli_server.url, ["backup", "create", "bk1"])
    bid = b["backup_id"]
    assert b["vector_count"] == 5
    lst = cli_json(cli_server.url, ["backup", "list", "bk1"])
    assert any(x["backup_id"] == bid for x in lst)
    allb = cli_json(cli_server.url, ["backup", "list"])
    assert any(x["backup_id"] == bid for x in allb)
    p = run_cli(cli_server.url, ["backup", "list"])
    assert p.returncode == 0 and bid in p.stdout
    v = cli_json(cli_server.url, ["backup", "verify", "bk1", bid])
    assert v.get("valid") is True
    p = run_cli(cli_server.url, ["backup", "verify", "bk1", bid])
    assert p.returncode == 0 and "verified" in p.stdout
    p = run_cli(cli_server.url, ["backup", "verify", "bk1", "19990101T000000Z-manual"])
    assert p.returncode == 1
    cli_json(cli_server.url, ["restore", "bk1", "--backup", bid, "--new-name", "bk1_copy"])
    assert cli_server.count("bk1_copy") == 5
    # backup delete asks for the collection name.
    p = run_cli(cli_server.url, ["backup", "delete", "bk1", bid])
    assert p.returncode == 2
    rc, out, err = with_tty(cli_server.url, ["backup", "delete", "bk1", bid], "bk1")
    assert rc == 0, err
    assert not any(x["backup_id"] == bid for x in cli_json(cli_server.url, ["backup", "list", "bk1"]))


def test_restore_over_a_live_collection_needs_overwrite_and_keeps_the_old_one(cli_server):
    fill(cli_server, "ow1", n=5)
    bid = cli_json(cli_server.url, ["backup", "create", "ow1"])["backup_id"]
    cli_server.data("POST", "/collections/ow1/vectors/batch",
                    {"vectors": [{"id": "extra%d" % i, "data": [1.0, 2.0, 3.0, float(i)]} for i in range(4)]})
    assert cli_server.count("ow1") == 9
    # without --overwrite: refused, nothing changes
    p = run_cli(cli_server.url, ["restore", "ow1", "--backup", bid])
    assert p.returncode == 1 and "already" in (p.stderr + p.stdout).lower(), (p.stdout, p.stderr)
    assert cli_server.count("ow1") == 9
    assert run_cli(cli_server.url, ["restore", "ow1", "--backup", bid, "--skip-backup"]).returncode == 2
    # with --overwrite: the backup's 5 are live, the 9 are backed up and in the trash
    p = run_cli(cli_server.url, ["restore", "ow1", "--backup", bid, "--overwrite"])
    assert p.returncode == 0 and "pre-restore-overwrite" in p.stdout, (p.stdout, p.stderr)
    assert cli_server.count("ow1") == 5
    reasons = [b["reason"] for b in cli_json(cli_server.url, ["backup", "list", "ow1"])]
    assert "pre-restore-overwrite" in reasons, reasons
    trash = [t for t in cli_json(cli_server.url, ["trash", "list"]) if t["name"] == "ow1"]
    assert trash and max(t["vector_count"] for t in trash) == 9, trash
    # and the replaced one comes back from the trash under another name
    cli_json(cli_server.url, ["trash", "restore", "ow1", "--new-name", "ow1_replaced"])
    assert cli_server.count("ow1_replaced") == 9


def test_hard_delete_confirms_takes_a_backup_and_restore_brings_it_back(cli_server):
    fill(cli_server, "hd1", n=4)
    p = run_cli(cli_server.url, ["hard-delete", "hd1"])
    assert p.returncode == 2 and "--yes" in p.stderr
    assert cli_server.count("hd1") == 4
    rc, out, err = with_tty(cli_server.url, ["hard-delete", "hd1"], "nope")
    assert rc == 1 and cli_server.count("hd1") == 4
    out = cli_json(cli_server.url, ["hard-delete", "hd1", "--yes"])
    bid = out["backup"]["backup_id"]
    assert cli_server.req("GET", "/collections/hd1").status_code == 404
    fill(cli_server, "hd2", n=2)
    p = run_cli(cli_server.url, ["hard-delete", "hd2", "--yes"])
    assert p.returncode == 0 and "restore hd2 --backup" in p.stdout
    cli_json(cli_server.url, ["restore", "hd1", "--backup", bid])
    assert cli_server.count("hd1") == 4


def test_import_polls_the_job_to_the_end_and_audit_lists_operations(cli_server):
    path = os.path.join(cli_server.import_root, "orphan.fvecs")
    n, dim = 300, 6
    with open(path, "wb") as f:
        for i in range(n):
            f.write(struct.pack("<i", dim) + struct.pack("<%df" % dim, *[float(i + j) for j in range(dim)]))
    env = {"DVECDB_PROGRESS_INTERVAL": "0.01"}
    p = run_cli(cli_server.url, ["import", "--path", path, "--name", "imp1", "--dim", str(dim), "--metric",
                                 "euclidean"], env=env)
    assert p.returncode == 0, p.stderr
    assert "import: " in p.stderr and "\r" not in p.stderr  # plain progress lines when not a terminal
    assert cli_server.count("imp1") == n
    out = cli_json(cli_server.url, ["import", "--path", path, "--name", "imp2", "--dim", str(dim), "--metric",
                                    "euclidean"])
    assert out["state"] == "succeeded", out
    assert cli_server.count("imp2") == n
    # a live name: refused without --overwrite; replaced with it (backup + trash, ids reported)
    p = run_cli(cli_server.url, ["import", "--path", path, "--name", "imp2", "--dim", str(dim), "--metric",
                                 "euclidean"])
    assert p.returncode == 1 and "already_exists" in p.stderr and "overwrite" in p.stderr, p.stderr
    out = cli_json(cli_server.url, ["import", "--path", path, "--name", "imp2", "--dim", str(dim), "--metric",
                                    "euclidean", "--overwrite", "--sync"])
    assert out.get("backup_id") and out.get("replaced_trash_id"), out
    assert cli_server.count("imp2") == n
    backups = cli_json(cli_server.url, ["backup", "list", "imp2"])
    assert any(b.get("backup_id") == out["backup_id"] and b.get("reason") == "pre-import" for b in backups), backups
    p = run_cli(cli_server.url, ["import", "--path", "/etc", "--name", "imp3", "--dim", "4"])
    assert p.returncode == 1 and "403" in p.stderr and "import-root" in p.stderr
    log = cli_json(cli_server.url, ["audit", "--limit", "200"])
    assert isinstance(log, list) and any(e.get("action") == "import" for e in log if isinstance(e, dict)), log[-5:]
    p = run_cli(cli_server.url, ["audit", "-n", "5"])
    assert p.returncode == 0 and "ACTION" in p.stdout
