"""End-to-end fixtures: start the real build/$DVECDB_BUILD/vectordb-server on
127.0.0.1 and a free port with a temporary data directory, wait for /readyz,
stop it (SIGTERM, must exit 0 with no sanitizer report), restart it, kill -9 it.

Environment: DVECDB_BUILD (default "build"; "build-asan" for the sanitizer
pass) and DVECDB_E2E_QUICK=1 (smaller sizes and shorter runs).
"""
import json
import os
import random
import signal
import subprocess
import tempfile
import time

import pytest
import requests
from netutil import free_port  # noqa: F401  (re-exported to the tests)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("DVECDB_BUILD", "build")
BIN = os.path.join(ROOT, BUILD, "vectordb-server")
QUICK = bool(os.environ.get("DVECDB_E2E_QUICK"))
ASAN = "asan" in BUILD

ADMIN_KEY = "e2e-admin-key-7f3a9c"
RO_KEY = "e2e-readonly-key-91bc2d"

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")


class Server:
    """One vectordb-server process over one data directory."""

    def __init__(self, data_dir, args=(), keys=True, env=None, log_path=None, port=None, wrapper=()):
        self.wrapper = list(wrapper)  # e.g. ["strace", "-f", ...] in front of the binary
        self.data_dir = data_dir
        self.args = list(args)
        self.keys = keys
        self.env = env
        self.port = port or free_port()
        self.log_path = log_path or os.path.join(os.path.dirname(data_dir.rstrip("/")), "server-%d.log" % self.port)
        self.proc = None
        self.session = requests.Session()

    # ---- life cycle -------------------------------------------------------
    def cmdline(self):
        cmd = self.wrapper + [BIN, "--data-dir", self.data_dir, "--host", "127.0.0.1", "--rest-port", str(self.port)]
        if self.keys:
            cmd += ["--api-key", ADMIN_KEY, "--read-only-api-key", RO_KEY]
        return cmd + self.args

    def start(self, wait=True, timeout=30):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if self.env:
            env.update(self.env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmdline(), stdout=self.log, stderr=self.log, env=env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                r = requests.get(self.url("/readyz"), timeout=1)
                if r.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise RuntimeError("server not ready after %ss:\n%s" % (timeout, self.log_tail()))

    def stop(self, timeout=10):
        """SIGTERM; the server must exit 0 within timeout with no sanitizer report."""
        if not self.proc or self.proc.poll() is not None:
            rc = self.proc.returncode if self.proc else 0
            self.proc = None
            return rc
        t0 = time.time()
        self.signal_server(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_server(signal.SIGKILL)  # the server itself, not only a wrapper
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not stop within %ss" % timeout)
        self.stop_seconds = time.time() - t0
        self.proc = None
        self.log.close()
        self.session.close()
        self.session = requests.Session()
        self.check_log()
        assert rc == 0, "server exit code %s:\n%s" % (rc, self.log_tail())
        return rc

    def signal_server(self, sig):
        """Signal the server itself (behind a wrapper such as strace: its child)."""
        pid = self.proc.pid
        if self.wrapper:
            try:
                with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                    pid = int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                pass
        os.kill(pid, sig)

    def kill9(self):
        self.signal_server(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.log.close()
        self.session.close()
        self.session = requests.Session()

    def restart(self, wait=True):
        self.stop()
        return self.start(wait=wait)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def check_log(self):
        text = self.log_text()
        for mark in SANITIZER_MARKS:
            assert mark not in text, "sanitizer report in the server log:\n" + self.log_tail(80)

    # ---- requests -------------------------------------------------------------
    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def headers(self, key="admin"):
        if key == "admin":
            return {"Authorization": "Bearer " + ADMIN_KEY} if self.keys else {}
        if key == "ro":
            return {"Authorization": "Bearer " + RO_KEY}
        if key is None:
            return {}
        return {"Authorization": "Bearer " + key}

    def req(self, method, path, key="admin", json_body=None, data=None, headers=None, timeout=60, **kw):
        h = self.headers(key)
        if headers:
            h.update(headers)
        if json_body is not None:
            data = json.dumps(json_body)
            h.setdefault("Content-Type", "application/json")
        return self.session.request(method, self.url(path), data=data, headers=h, timeout=timeout, **kw)

    def ok(self, method, path, json_body=None, status=200, **kw):
        """Request that must succeed; returns the envelope's data."""
        r = self.req(method, path, json_body=json_body, **kw)
        assert r.status_code == status, "%s %s -> %s %s" % (method, path, r.status_code, r.text[:500])
        env = r.json()
        assert env["success"] is True and env["error"] is None, env
        return env["data"]

    # convenience
    def create(self, name, dim, metric="Euclidean", **extra):
        body = {"name": name, "dimension": dim, "distance_metric": metric}
        body.update(extra)
        return self.ok("POST", "/collections", body)

    def batch(self, name, points):
        return self.ok("POST", "/collections/%s/vectors/batch" % name, {"vectors": points})


@pytest.fixture
def server_factory(tmp_path):
    """Make servers over fresh data directories; all are stopped (cleanly) at the end."""
    made = []

    def make(args=(), keys=True, env=None, data_dir=None, start=True, wrapper=()):
        d = data_dir or str(tmp_path / ("data%d" % len(made)))
        s = Server(d, args=args, keys=keys, env=env, log_path=str(tmp_path / ("server%d.log" % len(made))),
                   wrapper=wrapper)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in made:
        if s.proc is not None:
            s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One shared server (admin + read-only keys) for a test module."""
    base = tmp_path_factory.mktemp("srv")
    s = Server(str(base / "data"), log_path=str(base / "server.log"))
    s.start()
    yield s
    s.stop()


def rand_vec(rng, dim):
    return [rng.uniform(-1, 1) for _ in range(dim)]


@pytest.fixture
def rng():
    return random.Random(1234)
