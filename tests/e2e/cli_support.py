"""Fixtures and helpers of the vectordb-cli end-to-end tests.

Starts the real $DVECDB_BUILD/vectordb-server (default build/) on 127.0.0.1
and a free port over a temporary data directory, with an admin API key and
an --import-root, and waits for GET /health (and /readyz). Runs $DVECDB_BUILD/vectordb-cli with --url/--api-key.

Environment: DVECDB_BUILD ("build" or "build-asan"), DVECDB_E2E_QUICK=1
(smaller sizes).
"""
import json
import os
import signal
import subprocess
import time

import pytest
import requests
from netutil import free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("DVECDB_BUILD", "build")
SERVER_BIN = os.path.join(ROOT, BUILD, "vectordb-server")
CLI_BIN = os.path.join(ROOT, BUILD, "vectordb-cli")
QUICK = bool(os.environ.get("DVECDB_E2E_QUICK"))
API_KEY = "cli-e2e-key-4d2f"


class CliServer:
    """One vectordb-server process for the CLI tests."""

    def __init__(self, data_dir, log_path, extra_args=()):
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.proc = None
        self.http = requests.Session()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=30):
        cmd = [SERVER_BIN, "--data-dir", self.data_dir, "--host", "127.0.0.1",
               "--rest-port", str(self.port), "--api-key", API_KEY] + self.extra_args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError("vectordb-server exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                # /health answers as soon as the port is open; /readyz once
                # the database has finished opening (a server without the
                # route answers 404: then /health is all there is).
                if requests.get(self.url + "/health", timeout=1).status_code == 200 and \
                        requests.get(self.url + "/readyz", timeout=1).status_code in (200, 404):
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise RuntimeError("vectordb-server not healthy after %ss:\n%s" % (timeout, self.log_tail()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    # ---- direct REST access (to check what the CLI did) -------------------
    def req(self, method, path, body=None, timeout=60):
        h = {"Authorization": "Bearer " + API_KEY}
        return self.http.request(method, self.url + path, json=body, headers=h, timeout=timeout)

    def data(self, method, path, body=None):
        r = self.req(method, path, body)
        assert 200 <= r.status_code < 300, "%s %s -> %s %s" % (method, path, r.status_code, r.text[:400])
        env = r.json()
        assert env["success"] is True, env
        return env["data"]

    def create(self, name, dim, metric="Euclidean"):
        # A small HNSW build beam: these tests are about the client, and the
        # default ef_construction=200 makes the server the slow part.
        return self.data("POST", "/collections", {"name": name, "dimension": dim, "distance_metric": metric,
                                                  "index_config": {"max_connections": 8, "ef_construction": 16}})

    def count(self, name):
        info = self.data("GET", "/collections/" + name)
        return info["vector_count"]

    def all_ids(self, name, include_vectors=False):
        """Every id in the collection via the scroll route (list, may repeat if the server duplicates)."""
        ids, vecs, metas = [], {}, {}
        offset = 0
        while True:
            d = self.data("GET", "/collections/%s/vectors?offset=%d&limit=1000%s"
                          % (name, offset, "&include_vectors=true" if include_vectors else ""))
            for v in d["vectors"]:
                ids.append(v["id"])
                if include_vectors:
                    vecs[v["id"]] = v.get("vector") or v.get("data")
                metas[v["id"]] = v.get("metadata")
            if d.get("next_offset") is None:
                break
            offset = d["next_offset"]
        return (ids, vecs, metas) if include_vectors else ids


def run_cli(server_url, args, key=API_KEY, timeout=120, env=None, **kw):
    """Run vectordb-cli with --url/--api-key; returns CompletedProcess (text)."""
    cmd = [CLI_BIN, "--url", server_url]
    if key:
        cmd += ["--api-key", key]
    e = dict(os.environ)
    e.pop("DVECDB_URL", None)
    e.pop("DVECDB_API_KEY", None)
    if env:
        e.update(env)
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=e,
                          stdin=kw.pop("stdin", subprocess.DEVNULL), start_new_session=True, **kw)


def cli_json(server_url, args, **kw):
    """Run with --json; must exit 0; returns the parsed stdout."""
    p = run_cli(server_url, ["--json"] + list(args), **kw)
    if p.returncode != 0:
        # Say whose problem it is: the server answered with an error the CLI
        # only relayed (5xx, "not supported", a job that failed), or the CLI.
        server_side = any(m in p.stderr for m in ("(HTTP 5", "not_supported", "import failed:"))
        raise AssertionError("%svectordb-cli %s -> exit %s\nstdout: %s\nstderr: %s" % (
            "SERVER-SIDE FAILURE (the route answered an error; the CLI relayed it): " if server_side else "",
            " ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory):
    if not os.path.exists(SERVER_BIN) or not os.path.exists(CLI_BIN):
        pytest.fail("build first: %s and %s must exist (make)" % (SERVER_BIN, CLI_BIN))
    base = tmp_path_factory.mktemp("clisrv")
    imports = base / "imports"
    imports.mkdir()
    s = CliServer(str(base / "data"), str(base / "server.log"), ["--import-root", str(imports)])
    s.import_root = str(imports)
    s.start()
    yield s
    s.stop()
