"""A fault-injecting HTTP/1.1 proxy for the CLI tests.

Sits between vectordb-cli and vectordb-server on 127.0.0.1. For each request
whose method and path match, it draws one fate from a seeded RNG:

  reset       close the client connection with a TCP RST before forwarding
              (the server never sees the request);
  drop_after  forward, read the server's full response (the write is
              committed), then RST the client instead of answering;
  503 / 429   answer itself with that status and a Retry-After header;
  pass        forward and relay the response.

Every forwarded request is logged with the ids in its body and the server's
status, so tests can count how often a record was committed. With
ids_by_regex=True the ids are found by a regular expression instead of a JSON
parse (no "row" values then): parsing megabytes of floats per request in
Python would compete for the CPU with the server a benchmark measures. It
assumes no metadata object has an "id" key (true of .fvecs/.npy ingests).
"""
import http.client
import json
import random
import re
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port, seed=1, p_reset=0.0, p_drop_after=0.0, p_503=0.0, p_429=0.0,
                 retry_after_choices=("0", "0", "0", "1"), match=lambda method, path: True,
                 delay_s=0.0, ids_by_regex=False):
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.p = [("reset", p_reset), ("drop_after", p_drop_after), ("503", p_503), ("429", p_429)]
        self.retry_after_choices = list(retry_after_choices)
        self.match = match
        self.delay_s = delay_s
        self.ids_by_regex = ids_by_regex
        self.lock = threading.Lock()
        self.events = []  # dicts: t, fate, method, path, ids, status, retry_after
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.conns = []

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    # ---- plumbing ---------------------------------------------------------
    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read_request(f):
        line = f.readline(65536)
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers = []
        while True:
            h = f.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            k, v = h.decode("latin-1").split(":", 1)
            headers.append((k.strip(), v.strip()))
        n = 0
        for k, v in headers:
            if k.lower() == "content-length":
                n = int(v)
        body = f.read(n) if n else b""
        return method, path, headers, body

    @staticmethod
    def _rst(c):
        # SO_LINGER with a zero timeout turns close() into a TCP RST.
        try:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        except OSError:
            pass

    def _fate(self, method, path):
        if not self.match(method, path):
            return "pass"
        with self.lock:
            x = self.rng.random()
            ra = self.rng.choice(self.retry_after_choices)
        acc = 0.0
        for name, p in self.p:
            acc += p
            if x < acc:
                return name if name not in ("503", "429") else (name, ra)
        return "pass"

    @staticmethod
    def _ids(body):
        """(ids, metadata "row" values) of a batch body, or (None, None)."""
        try:
            doc = json.loads(body)
            if isinstance(doc, dict) and isinstance(doc.get("vectors"), list):
                vs = doc["vectors"]
                return ([v.get("id") for v in vs],
                        [(v.get("metadata") or {}).get("row") for v in vs])
        except ValueError:
            pass
        return None, None

    _ID_RE = re.compile(rb'"id":\s*"([^"\\]*)"')

    @classmethod
    def _ids_fast(cls, body):
        """(ids, None) of a batch body by regex (see ids_by_regex), or (None, None)."""
        if not body.startswith(b'{"vectors":['):
            return None, None
        return [m.decode() for m in cls._ID_RE.findall(body)], None

    def _log(self, **ev):
        ev["t"] = time.time()
        with self.lock:
            self.events.append(ev)

    def _serve(self, c):
        f = c.makefile("rb")
        up = None
        try:
            while not self.stopped:
                req = self._read_request(f)
                if req is None:
                    break
                method, path, headers, body = req
                if any(k.lower() == "expect" for k, _ in headers):
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                fate = self._fate(method, path)
                if fate == "reset":
                    self._log(fate="reset", method=method, path=path, ids=None, status=None)
                    self._rst(c)
                    return
                if isinstance(fate, tuple):
                    status, ra = fate
                    msg = json.dumps({"success": False, "data": None, "error": "proxy: injected %s" % status,
                                      "code": "injected"}).encode()
                    reason = "Service Unavailable" if status == "503" else "Too Many Requests"
                    c.sendall(("HTTP/1.1 %s %s\r\nContent-Type: application/json\r\nRetry-After: %s\r\n"
                               "Content-Length: %d\r\n\r\n" % (status, reason, ra, len(msg))).encode() + msg)
                    self._log(fate=status, method=method, path=path, ids=None, status=int(status),
                              retry_after=float(ra))
                    continue
                if self.delay_s:
                    time.sleep(self.delay_s)
                if up is None:
                    up = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
                fwd = {k: v for k, v in headers if k.lower() not in ("connection", "expect", "keep-alive",
                                                                      "transfer-encoding", "host")}
                try:
                    up.request(method, path, body=body, headers=fwd)
                    resp = up.getresponse()
                    rbody = resp.read()
                except (OSError, http.client.HTTPException):
                    up.close()
                    up = None
                    self._rst(c)
                    return
                if method != "POST":
                    ids, rows = None, None
                elif self.ids_by_regex:
                    ids, rows = self._ids_fast(body)
                else:
                    ids, rows = self._ids(body)
                if fate == "drop_after":
                    self._log(fate="drop_after", method=method, path=path, ids=ids, rows=rows, status=resp.status)
                    self._rst(c)
                    return
                self._log(fate="pass", method=method, path=path, ids=ids, rows=rows, status=resp.status)
                out = ["HTTP/1.1 %d %s" % (resp.status, resp.reason)]
                for k, v in resp.getheaders():
                    if k.lower() in ("content-type", "retry-after"):
                        out.append("%s: %s" % (k, v))
                out.append("Content-Length: %d" % len(rbody))
                c.sendall(("\r\n".join(out) + "\r\n\r\n").encode() + rbody)
        except (OSError, ValueError):
            pass
        finally:
            if up is not None:
                up.close()
            try:
                c.close()
            except OSError:
                pass

    # ---- what happened ------------------------------------------------------
    def committed_batches(self, path_part="/vectors/batch"):
        """Id lists of the batch requests the server answered 2xx (relayed or dropped)."""
        with self.lock:
            return [e["ids"] for e in self.events
                    if path_part in e["path"] and e["ids"] is not None and e["status"] is not None
                    and 200 <= e["status"] < 300]

    def committed_rows(self, path_part="/vectors/batch"):
        """metadata "row" lists of the batch requests the server answered 2xx."""
        with self.lock:
            return [e["rows"] for e in self.events
                    if path_part in e["path"] and e.get("rows") is not None and e["status"] is not None
                    and 200 <= e["status"] < 300]

    def count(self, fate):
        with self.lock:
            return sum(1 for e in self.events if e["fate"] == fate)
