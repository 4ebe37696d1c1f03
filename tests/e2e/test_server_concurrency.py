"""Searches beside writes, through the real server: a search must never
wait for a batch insert in progress on the same collection (the engine
links new points concurrently with searches; the server must not add a
lock of its own on the search path)."""
import json
import os
import threading
import time

import requests

from conftest import ADMIN_KEY, rand_vec

QUICK = os.environ.get("DVECDB_E2E_QUICK") == "1"


def test_searches_do_not_wait_for_a_batch_insert_in_progress(server_factory, rng):
    # The default threading (a thread per connection): what is measured is
    # the engine and the handlers, with no head-of-line blocking inside a
    # shared libmicrohttpd thread (see --threads in docs/server.md).
    s = server_factory(args=("--fsync", "always"))
    dim = 128
    s.create("hot", dim)
    s.batch("hot", [{"id": "seed%d" % i, "data": rand_vec(rng, dim)} for i in range(500)])
    n_big = 1500 if QUICK else 4000
    bodies = [json.dumps({"vectors": [{"id": "b%d-%d" % (k, i), "data": rand_vec(rng, dim)}
                                      for i in range(n_big)]}) for k in range(2)]
    q = json.dumps({"vector": rand_vec(rng, dim), "limit": 5})
    hdr = {"Authorization": "Bearer " + ADMIN_KEY, "Content-Type": "application/json"}
    done = threading.Event()
    writes = []    # (start, end)
    searches = []  # (start, end, status)
    lock = threading.Lock()

    def writer():
        sess = requests.Session()
        for b in bodies:
            t0 = time.monotonic()
            r = sess.post(s.url("/collections/hot/vectors/batch"), data=b, headers=hdr, timeout=120)
            writes.append((t0, time.monotonic(), r.status_code))
        done.set()

    def searcher():
        sess = requests.Session()
        while not done.is_set():
            t0 = time.monotonic()
            r = sess.post(s.url("/collections/hot/search"), data=q, headers=hdr, timeout=120)
            with lock:
                searches.append((t0, time.monotonic(), r.status_code))

    ts = [threading.Thread(target=searcher) for _ in range(8)]
    for t in ts:
        t.start()
    time.sleep(0.2)
    w = threading.Thread(target=writer)
    w.start()
    w.join()
    for t in ts:
        t.join()
    assert all(st == 200 for (_, _, st) in writes), writes
    assert all(st == 200 for (_, _, st) in searches)
    write_s = min(e - b for (b, e, _) in writes)
    # the searches that ran while a write was in progress
    during = [e - b for (b, e, _) in searches if any(wb <= b and e <= we + 1.0 for (wb, we, _) in writes)]
    worst = max(during)
    print("shortest write %.2f s; %d searches during writes, slowest %.3f s" % (write_s, len(during), worst))
    assert write_s >= 0.4, "a write must take long enough to tell waiting from not waiting (%.2f s)" % write_s
    assert len(during) >= 20
    # Waiting for the writer would make a search last about as long as the
    # write's link phase; not waiting leaves CPU sharing only.
    assert worst < 0.4 * write_s, "a search took %.3f s beside a %.2f s write" % (worst, write_s)
