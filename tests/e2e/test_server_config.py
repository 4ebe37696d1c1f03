"""Configuration: flags > DVECDB_* environment > config file > defaults; the
original's TOML-style config file is accepted; bad values are refused."""
import os
import subprocess
import time

import requests

from conftest import ADMIN_KEY, BIN, free_port


def start(args, env_extra, tmp_path, name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVECDB_")}
    env.update(env_extra)
    log = open(str(tmp_path / (name + ".log")), "wb")
    return subprocess.Popen([BIN] + args, env=env, stdout=log, stderr=log)


def wait_ready(port, proc, timeout=30):
    t_end = time.time() + timeout
    while time.time() < t_end:
        assert proc.poll() is None, "server exited %s" % proc.returncode
        try:
            if requests.get("http://127.0.0.1:%d/readyz" % port, timeout=1).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.02)
    return False


def stop(proc):
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    p_file, p_env, p_flag = free_port(), free_port(), free_port()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "# the original d-vecDB's config layout\n"
        "[server]\nhost = \"127.0.0.1\"\nrest_port = %d\ngrpc_port = 9090\n"
        "[storage]\ndata_dir = \"%s\"\nfsync = \"always\"\n"
        "[index]\nmax_connections = 12\nef_construction = 100\nef_search = 77\nmax_layer = 10\n"
        "[monitoring]\nenable_metrics = true\nlog_level = \"info\"\n" % (p_file, tmp_path / "data_file"))
    # file only
    proc = start(["-c", str(cfg)], {}, tmp_path, "file")
    try:
        assert wait_ready(p_file, proc)
        r = requests.post("http://127.0.0.1:%d/collections" % p_file, json={"name": "c", "dimension": 2})
        assert r.json()["data"]["index_config"] == {"max_connections": 12, "ef_construction": 100, "ef_search": 77,
                                                    "max_layer": 10}
    finally:
        stop(proc)
    assert os.path.isdir(tmp_path / "data_file")
    # env beats the file
    proc = start(["--config", str(cfg)], {"DVECDB_REST_PORT": str(p_env), "DVECDB_INDEX_EF_SEARCH": "33"},
                 tmp_path, "env")
    try:
        assert wait_ready(p_env, proc)
        r = requests.post("http://127.0.0.1:%d/collections" % p_env, json={"name": "d", "dimension": 2})
        assert r.json()["data"]["index_config"]["ef_search"] == 33
    finally:
        stop(proc)
    # flags beat the env; config path from DVECDB_CONFIG
    proc = start(["--rest-port", str(p_flag), "--api-key", ADMIN_KEY],
                 {"DVECDB_CONFIG": str(cfg), "DVECDB_REST_PORT": str(p_env)}, tmp_path, "flag")
    try:
        assert wait_ready(p_flag, proc)
        assert requests.get("http://127.0.0.1:%d/collections" % p_flag).status_code == 401
        r = requests.get("http://127.0.0.1:%d/collections" % p_flag, headers={"Authorization": "Bearer " + ADMIN_KEY})
        assert sorted(r.json()["data"]) == ["c", "d"]  # data_dir still from the file
    finally:
        stop(proc)


def test_help_documents_precedence_env_and_file_keys():
    out = subprocess.run([BIN, "--help"], capture_output=True, timeout=10)
    assert out.returncode == 0
    text = out.stdout.decode()
    assert "flags > environment (DVECDB_*) > config file > defaults" in text
    for needle in ("--data-dir", "DVECDB_DATA_DIR", "[storage] data_dir", "--rest-port", "--trash-retention",
                   "--import-root", "--max-body-mb", "--allow-insecure", "--read-only-api-key", "--fsync"):
        assert needle in text, needle


def test_bad_values_are_refused_without_echoing_them(tmp_path):
    cases = [["--trash-retention", "5x"], ["--fsync", "sometimes"], ["--rest-port", "70000"],
             ["--max-body-mb", "0"], ["--log-level", "loud"], ["--no-such-flag"], ["--threads", "-1"]]
    for args in cases:
        p = subprocess.run([BIN, "--data-dir", str(tmp_path / "d")] + args, capture_output=True, timeout=10)
        assert p.returncode == 2, (args, p.returncode)
        assert p.stderr
    p = subprocess.run([BIN, "--read-only-api-key", "sekrit-value-1"], capture_output=True, timeout=10)
    assert p.returncode == 2 and b"sekrit-value-1" not in p.stderr


def test_trash_retention_suffixes(tmp_path):
    for text, seconds in (("90s", 90), ("2m", 120), ("1.5h", 5400), ("2d", 172800), ("30", 30)):
        port = free_port()
        proc = start(["--data-dir", str(tmp_path / "d"), "--rest-port", str(port), "--trash-retention", text], {},
                     tmp_path, "ret")
        try:
            assert wait_ready(port, proc)
        finally:
            stop(proc)
        log = (tmp_path / "ret.log").read_text()
        assert "trash_retention_s=%d " % seconds in log


def test_open_failure_keeps_livez_and_answers_503_not_ready(tmp_path):
    """The listener starts before the database opens: /livez answers at once,
    /readyz and the data routes answer 503 not_ready with the reason."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    port = free_port()
    proc = start(["--data-dir", str(not_a_dir / "data"), "--rest-port", str(port)], {}, tmp_path, "fail")
    try:
        t_end = time.time() + 20
        while True:
            try:
                r = requests.get("http://127.0.0.1:%d/livez" % port, timeout=1)
                break
            except requests.ConnectionError:
                assert time.time() < t_end
                time.sleep(0.02)
        assert r.status_code == 200
        time.sleep(0.3)
        r = requests.get("http://127.0.0.1:%d/readyz" % port)
        assert r.status_code == 503 and r.json()["code"] == "not_ready"
        r = requests.get("http://127.0.0.1:%d/collections" % port)
        assert r.status_code == 503 and r.json()["code"] == "not_ready" and "failed to open" in r.json()["error"]
        assert requests.get("http://127.0.0.1:%d/health" % port).json()["data"]["ready"] is False
    finally:
        proc.send_signal(2)  # SIGINT stops it like SIGTERM
        assert proc.wait(timeout=10) == 0
    assert "event=db_open_failed" in (tmp_path / "fail.log").read_text()
