"""A small OpenAI-compatible embeddings server for the CLI tests.

POST /v1/embeddings {"model", "input": [texts]} ->
  {"object": "list", "data": [{"object": "embedding", "embedding": [...], "index": i}], "model": ...}
Vectors are a deterministic function of the text (embed_text), so a test
can check what the database stored. Faults drawn from a seeded RNG per
request (plus `forced` ones at given call numbers): 429 with Retry-After,
500, or a stall longer than the client's timeout. `data` is returned in reverse order, to prove the client sorts by
"index".
"""
import hashlib
import json
import random
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def embed_text(text, dim):
    """Deterministic text -> float32-exact vector of dim components in [-1, 1)."""
    out = []
    counter = 0
    while len(out) < dim:
        h = hashlib.sha256(("%d:" % counter).encode() + text.encode("utf-8")).digest()
        for i in range(0, 32, 4):
            (u,) = struct.unpack("<I", h[i:i + 4])
            # A multiple of 2^-16 in [-1, 1): exact in float32 and in JSON.
            out.append(((u >> 16) - 32768) / 32768.0)
        counter += 1
    return out[:dim]


class FakeEmbedder:
    def __init__(self, dim, seed=7, p_429=0.0, p_500=0.0, p_stall=0.0, stall_s=3.0, key=None, forced=None):
        self.dim = dim
        self.rng = random.Random(seed)
        self.p_429, self.p_500, self.p_stall, self.stall_s = p_429, p_500, p_stall, stall_s
        self.key = key
        self.forced = dict(forced or {})  # call number (0-based) -> fate, on top of the random ones
        self.lock = threading.Lock()
        self.calls = []  # (fate, n_texts)
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, doc, extra=()):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                if self.path.rstrip("/") != "/v1/embeddings":
                    return self.send(404, {"error": {"message": "no route %s" % self.path}})
                if outer.key and self.headers.get("Authorization") != "Bearer " + outer.key:
                    return self.send(401, {"error": {"message": "bad key"}})
                try:
                    req = json.loads(raw)
                    texts = req["input"]
                    assert isinstance(texts, list) and all(isinstance(t, str) for t in texts)
                except (ValueError, KeyError, AssertionError):
                    return self.send(400, {"error": {"message": "bad request"}})
                with outer.lock:
                    x = outer.rng.random()
                    forced_fate = outer.forced.get(len(outer.calls))
                fate = "ok"
                if x < outer.p_429:
                    fate = "429"
                elif x < outer.p_429 + outer.p_500:
                    fate = "500"
                elif x < outer.p_429 + outer.p_500 + outer.p_stall:
                    fate = "stall"
                if forced_fate:
                    fate = forced_fate
                with outer.lock:
                    outer.calls.append((fate, len(texts)))
                if fate == "429":
                    return self.send(429, {"error": {"message": "rate limited"}}, [("Retry-After", "0")])
                if fate == "500":
                    return self.send(500, {"error": {"message": "internal"}})
                if fate == "stall":
                    time.sleep(outer.stall_s)
                data = [{"object": "embedding", "index": i, "embedding": embed_text(t, outer.dim)}
                        for i, t in enumerate(texts)]
                data.reverse()
                self.send(200, {"object": "list", "data": data, "model": req.get("model"),
                                "usage": {"prompt_tokens": 0, "total_tokens": 0}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, fate):
        with self.lock:
            return sum(1 for f, _ in self.calls if f == fate)
