"""Success path of every core route of vectordb-server, against the real binary."""
import json
import re
import struct

import numpy as np
import pytest

from conftest import QUICK


def f32(x):
    """The float32 value of x, as Python float (what the server stores)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def test_health_livez_readyz_need_no_key(server):
    for path in ("/health", "/livez", "/readyz"):
        r = server.req("GET", path, key=None)
        assert r.status_code == 200, path
        env = r.json()
        assert set(env) == {"success", "data", "error", "code"}
        assert env["success"] is True and env["error"] is None and env["code"] is None
    assert server.ok("GET", "/health")["version"]
    assert server.ok("GET", "/readyz")["status"] == "ready"


def test_stats_counts_collections_and_vectors(server):
    server.create("stats_a", 4)
    server.batch("stats_a", [{"id": "s%d" % i, "data": [i, 0, 0, 1]} for i in range(5)])
    st = server.ok("GET", "/stats")
    assert st["collections"] >= 1
    assert st["total_vectors"] >= 5
    assert st["disk_free_bytes"] > 0
    assert st["read_only"] is False


def test_collection_create_get_list_stats_delete(server):
    info = server.create("coll_life", 8, metric="cosine")  # metric case-insensitive
    assert info["name"] == "coll_life"
    assert info["dimension"] == 8
    assert info["distance_metric"] == "Cosine"
    assert info["vector_type"] == "Float32"  # default
    assert info["index_config"] == {"max_connections": 16, "ef_construction": 200, "ef_search": 50, "max_layer": 16}
    assert "coll_life" in server.ok("GET", "/collections")
    detail = server.ok("GET", "/collections?detail=true")
    assert any(c["name"] == "coll_life" and c["dimension"] == 8 for c in detail)
    got = server.ok("GET", "/collections/coll_life")
    assert got["config"]["dimension"] == 8 and got["vector_count"] == 0 and got["stats"]["vector_count"] == 0
    server.ok("POST", "/collections/coll_life/vectors", {"id": "a", "data": [1] * 8})
    assert server.ok("GET", "/collections/coll_life")["vector_count"] == 1
    st = server.ok("GET", "/collections/coll_life/stats")
    assert st["vector_count"] == 1 and st["name"] == "coll_life"
    t = server.ok("DELETE", "/collections/coll_life")
    assert t["name"] == "coll_life" and t["vector_count"] == 1
    assert t["expires_at_ms"] > t["deleted_at_ms"]
    assert "coll_life" not in server.ok("GET", "/collections")
    r = server.req("GET", "/collections/coll_life")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_create_with_index_config_and_other_metrics(server):
    for metric, canon in (("EUCLIDEAN", "Euclidean"), ("DotProduct", "DotProduct"), ("manhattan", "Manhattan")):
        name = "m_" + canon.lower()
        info = server.create(name, 3, metric=metric, vector_type="float32",
                             index_config={"max_connections": 8, "ef_construction": 64, "ef_search": 20, "max_layer": 8})
        assert info["distance_metric"] == canon
        assert info["index_config"] == {"max_connections": 8, "ef_construction": 64, "ef_search": 20, "max_layer": 8}
    # distance_metric may be omitted: Cosine (documented default)
    assert server.ok("POST", "/collections", {"name": "m_default", "dimension": 3})["distance_metric"] == "Cosine"


def test_vector_insert_get_put_delete_roundtrip_bit_exact(server, rng):
    server.create("vec_rt", 16)
    vec = [rng.uniform(-1e3, 1e3) for _ in range(16)]
    vec[0] = 1e-30
    vec[1] = -3.4e38
    md = {"text": "héllo \"world\"\n", "n": 3, "f": 0.1, "nested": {"a": [1, 2, {"b": None}]}, "ok": True}
    vid = server.ok("POST", "/collections/vec_rt/vectors", {"id": "doc-1", "vector": vec, "metadata": md})
    assert vid == "doc-1"
    got = server.ok("GET", "/collections/vec_rt/vectors/doc-1")
    assert got["id"] == "doc-1"
    assert got["metadata"] == md
    assert np.array_equal(np.array(got["vector"], dtype=np.float32), np.array(vec, dtype=np.float32))
    # PUT replaces vector and metadata (upsert)
    vec2 = [f32(x / 7) for x in range(16)]
    assert server.ok("PUT", "/collections/vec_rt/vectors/doc-1", {"data": vec2, "metadata": {"v": 2}}) == "doc-1"
    got = server.ok("GET", "/collections/vec_rt/vectors/doc-1")
    assert got["metadata"] == {"v": 2}
    assert np.array_equal(np.array(got["vector"], dtype=np.float32), np.array(vec2, dtype=np.float32))
    # PUT creates a new id too
    server.ok("PUT", "/collections/vec_rt/vectors/doc-2", {"data": vec2})
    assert server.ok("GET", "/collections/vec_rt/vectors/doc-2")["metadata"] is None
    d = server.ok("DELETE", "/collections/vec_rt/vectors/doc-1")
    assert d == {"id": "doc-1", "deleted": True}
    r = server.req("GET", "/collections/vec_rt/vectors/doc-1")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert server.ok("GET", "/collections/vec_rt")["vector_count"] == 1


def test_generated_ids_are_uuid4_and_ids_up_to_256_bytes(server):
    server.create("vec_ids", 2)
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    ids = server.batch("vec_ids", [{"data": [1, 2]} for _ in range(50)])
    assert len(ids) == 50 and len(set(ids)) == 50
    assert all(uuid_re.match(i) for i in ids)
    one = server.ok("POST", "/collections/vec_ids/vectors", {"data": [3, 4]})
    assert uuid_re.match(one)
    long_id = "x" * 256
    server.ok("POST", "/collections/vec_ids/vectors", {"id": long_id, "data": [5, 6]})
    assert server.ok("GET", "/collections/vec_ids/vectors/" + long_id)["id"] == long_id
    # ids with URL-special characters travel percent-encoded in the path
    odd = "a/b c?d%e#f"
    server.ok("POST", "/collections/vec_ids/vectors", {"id": odd, "data": [7, 8]})
    from urllib.parse import quote
    assert server.ok("GET", "/collections/vec_ids/vectors/" + quote(odd, safe=""))["id"] == odd


def test_batch_insert_upsert_and_batch_delete(server):
    server.create("vec_batch", 4)
    pts = [{"id": "b%d" % i, "data": [i, i + 1, i + 2, i + 3], "metadata": {"i": i}} for i in range(100)]
    assert server.batch("vec_batch", pts) == ["b%d" % i for i in range(100)]
    assert server.ok("GET", "/collections/vec_batch")["vector_count"] == 100
    # same ids again: upsert, count unchanged, new metadata
    pts2 = [{"id": "b%d" % i, "data": [0, 0, 0, i], "metadata": {"i": -i}} for i in range(10)]
    server.batch("vec_batch", pts2)
    assert server.ok("GET", "/collections/vec_batch")["vector_count"] == 100
    assert server.ok("GET", "/collections/vec_batch/vectors/b3")["metadata"] == {"i": -3}
    d = server.ok("POST", "/collections/vec_batch/vectors/delete", {"ids": ["b0", "b1", "b2", "nope"]})
    assert d == {"deleted": 3, "requested": 4}
    assert server.ok("GET", "/collections/vec_batch")["vector_count"] == 97


def test_scroll_pages_through_every_vector(server):
    server.create("vec_scroll", 3)
    server.batch("vec_scroll", [{"id": "p%03d" % i, "data": [i, 1, 2], "metadata": {"i": i}} for i in range(53)])
    seen, offset = [], 0
    while True:
        page = server.ok("GET", "/collections/vec_scroll/vectors?offset=%d&limit=20" % offset)
        assert page["offset"] == offset and page["limit"] == 20
        seen += page["vectors"]
        if page["next_offset"] is None:
            break
        offset = page["next_offset"]
    assert sorted(v["id"] for v in seen) == ["p%03d" % i for i in range(53)]
    assert all("vector" not in v for v in seen)
    page = server.ok("GET", "/collections/vec_scroll/vectors?limit=5&include_vectors=true")
    assert len(page["vectors"]) == 5 and all(len(v["vector"]) == 3 for v in page["vectors"])


def test_search_finds_nearest_with_limit_filter_and_query_params(server, rng):
    dim = 8
    server.create("vec_search", dim, metric="Euclidean")
    n = 300
    data = np.array([[rng.uniform(-1, 1) for _ in range(dim)] for _ in range(n)], dtype=np.float32)
    pts = [{"id": "v%d" % i, "data": data[i].tolist(), "metadata": {"group": "even" if i % 2 == 0 else "odd", "i": i}}
           for i in range(n)]
    server.batch("vec_search", pts)
    q = data[17].tolist()
    hits = server.ok("POST", "/collections/vec_search/search", {"vector": q, "limit": 5})
    assert len(hits) == 5
    assert hits[0]["id"] == "v17" and hits[0]["distance"] == pytest.approx(0, abs=1e-5)
    assert hits[0]["metadata"] == {"group": "odd", "i": 17}
    dists = [h["distance"] for h in hits]
    assert dists == sorted(dists)
    # exact ranking against brute force (recall of the top 5 >= 0.8)
    true = np.argsort(((data - data[17]) ** 2).sum(1))[:5]
    assert len({"v%d" % i for i in true} & {h["id"] for h in hits}) >= 4
    # default limit 10, "query_vector" alias, limit/ef_search as query parameters
    assert len(server.ok("POST", "/collections/vec_search/search", {"query_vector": q})) == 10
    assert len(server.ok("POST", "/collections/vec_search/search?limit=3&ef_search=100", {"vector": q})) == 3
    # filter (original equality form) only returns matching points
    hits = server.ok("POST", "/collections/vec_search/search", {"vector": q, "limit": 20, "filter": {"group": "even"}})
    assert len(hits) == 20 and all(h["metadata"]["group"] == "even" for h in hits)
    # include_vectors
    hits = server.ok("POST", "/collections/vec_search/search", {"vector": q, "limit": 2, "include_vectors": True})
    assert np.array_equal(np.array(hits[0]["vector"], dtype=np.float32), data[17])


def test_metrics_prometheus_text_with_route_patterns(server):
    server.create("met_c", 2)
    server.ok("POST", "/collections/met_c/vectors", {"id": "secret-id-123", "data": [1, 2]})
    server.ok("GET", "/collections/met_c/vectors/secret-id-123")
    r = server.req("GET", "/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    for name in ("dvecdb_http_requests_total", "dvecdb_http_request_duration_seconds_bucket",
                 "dvecdb_wal_fsync_duration_seconds_count", "dvecdb_collection_vectors", "dvecdb_disk_free_bytes",
                 "dvecdb_read_only", "dvecdb_build_info"):
        assert name in text, name
    assert 'dvecdb_http_requests_total{route="/collections/:name/vectors/:id",method="GET",status="200"}' in text
    assert 'dvecdb_collection_vectors{collection="met_c"} 1' in text
    assert "secret-id-123" not in text  # ids never become labels
    # every sample line parses as Prometheus text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$', line), line


def test_every_response_is_an_envelope_and_logged_per_request(server):
    r = server.req("GET", "/collections")
    assert set(r.json()) == {"success", "data", "error", "code"}
    log = server.log_text()
    assert re.search(r"event=request method=GET route=/collections status=200 duration_ms=[0-9.]+", log)
    assert "event=ready" in log and "event=listening" in log


def test_fast_and_general_body_parsers_store_the_same_float32_bits(server, rng):
    """Point bodies are read by a fast scanner, falling back to jansson for
    anything unusual (here: an escape in the id or a key). Both must store
    the same float32 bits and metadata for the same numbers."""
    dim = 12
    server.create("parsers", dim)
    texts = ["0.13436424411240122", "-0.0", "1e-40", "3.4028234663852886e38", "-1.17549435e-38", "12345678901234567890.5",
             "0.1", "1E+2", "-2.5e-3", "7", "0.30000000000000004", "1.0000000000000002"]
    vec = "[" + ",".join(texts) + "]"
    md = '{"s":"x","n":1.5,"a":[1,2]}'
    fast = '{"id":"plain","data":%s,"metadata":%s}' % (vec, md)
    slow = '{"id":"esc\\u0061ped","data":%s,"metadata":%s}' % (vec, md)
    for body in (fast, slow):
        r = server.req("POST", "/collections/parsers/vectors", data=body)
        assert r.status_code == 200, r.text
    # integers beyond int64 are refused by both paths alike (jansson's rule)
    big = vec.replace("7,", "123456789012345678901,")
    for body in ('{"id":"big1","data":%s}' % big, '{"id":"b\u0069g2","data":%s}' % big):
        r = server.req("POST", "/collections/parsers/vectors", data=body)
        assert r.status_code == 400 and r.json()["code"] == "malformed_json", r.text
    a = server.ok("GET", "/collections/parsers/vectors/plain")
    b = server.ok("GET", "/collections/parsers/vectors/escaped")
    va, vb = np.array(a["vector"], dtype=np.float32), np.array(b["vector"], dtype=np.float32)
    want = np.array([float(t) for t in texts], dtype=np.float32)
    assert va.tobytes() == vb.tobytes() == want.tobytes()
    assert a["metadata"] == b["metadata"] == json.loads(md)
    # a batch and a search through both paths
    q = "[" + ",".join(["0.5"] * dim) + "]"
    ra = server.req("POST", "/collections/parsers/search", data='{"vector":%s,"limit":2}' % q).json()
    rb = server.req("POST", "/collections/parsers/search", data='{"vect\\u006fr":%s,"limit":2}' % q).json()
    assert ra["success"] and ra == rb
    pts = [{"id": "bf%d" % i, "data": [rng.uniform(-1, 1) for _ in range(dim)]} for i in range(20)]
    assert server.batch("parsers", pts) == ["bf%d" % i for i in range(20)]
    got = server.ok("GET", "/collections/parsers/vectors/bf3")
    assert np.array(got["vector"], dtype=np.float32).tobytes() == np.array(pts[3]["data"], dtype=np.float32).tobytes()
