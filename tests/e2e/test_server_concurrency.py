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
    # A write must last long enough to tell waiting from not waiting; how long
    # a batch takes depends on the machine (and on ASan), so the writer
    # doubles its batch until two writes have each taken >= LONG seconds.
    LONG = 0.6
    n_first = 1500 if QUICK else 4000
    q = json.dumps({"vector": rand_vec(rng, dim), "limit": 5})
    hdr = {"Authorization": "Bearer " + ADMIN_KEY, "Content-Type": "application/json"}
    done = threading.Event()
    # Searches run only while a write is on the wire: the writer builds its
    # next body in Python, holding the GIL, and a search measured then would
    # be timing this client, not the server.
    go = threading.Event()
    inflight = [0]
    writes = []    # (start, end, status)
    searches = []  # (start, end, status)
    lock = threading.Lock()

    def writer():
        sess = requests.Session()
        n, k, long_ones = n_first, 0, 0
        while long_ones < 2 and k < 8:
            b = json.dumps({"vectors": [{"id": "b%d-%d" % (k, i), "data": rand_vec(rng, dim)}
                                        for i in range(n)]})
            go.set()
            time.sleep(0.1)
            t0 = time.monotonic()
            r = sess.post(s.url("/collections/hot/vectors/batch"), data=b, headers=hdr, timeout=300)
            t1 = time.monotonic()
            writes.append((t0, t1, r.status_code))
            # let the searches that overlap the write finish before building the next body
            time.sleep(0.5)
            go.clear()
            while True:
                with lock:
                    if inflight[0] == 0:
                        break
                time.sleep(0.01)
            if r.status_code != 200:
                break
            if t1 - t0 >= LONG:
                long_ones += 1
            else:
                n = min(n * 2, 10000)
            k += 1
        done.set()
        go.set()

    def searcher():
        sess = requests.Session()
        while not done.is_set():
            if not go.wait(0.05):
                continue
            with lock:
                if not go.is_set():
                    continue
                inflight[0] += 1
            t0 = time.monotonic()
            r = sess.post(s.url("/collections/hot/search"), data=q, headers=hdr, timeout=120)
            t1 = time.monotonic()
            with lock:
                inflight[0] -= 1
                searches.append((t0, t1, r.status_code))

    ts = [threading.Thread(target=searcher) for _ in range(8)]
    for t in ts:
        t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join()
    for t in ts:
        t.join()
    assert all(st == 200 for (_, _, st) in writes), writes
    assert all(st == 200 for (_, _, st) in searches)
    long_writes = [(b, e) for (b, e, _) in writes if e - b >= LONG]
    assert len(long_writes) >= 1, "no write took %.1f s even at 10,000 vectors: %r" % (
        LONG, [round(e - b, 2) for (b, e, _) in writes])
    write_s = min(e - b for (b, e) in long_writes)
    # the searches that ran while a long write was in progress
    during = [e - b for (b, e, _) in searches if any(wb <= b and e <= we + 1.0 for (wb, we) in long_writes)]
    assert len(during) >= 20, len(during)
    worst = max(during)
    print("shortest long write %.2f s; %d searches during them, slowest %.3f s" % (write_s, len(during), worst))
    # Waiting for the writer would make a search last about as long as the
    # write's link phase; not waiting leaves CPU sharing only.
    assert worst < 0.4 * write_s, "a search took %.3f s beside a %.2f s write" % (worst, write_s)
