"""A table of bad requests: each gets its documented status and stable code in
the envelope, and none of them changes anything (checked by snapshotting every
collection, vector, metadata and trash entry before and after)."""
import json

import pytest

DIM = 4
GOOD = [0.5, -1.0, 2.0, 0.25]


def J(obj):
    return json.dumps(obj)


def deep(n):
    return "[" * n + "]" * n


# (name, method, path, raw body or None, expected status, expected code)
CASES = [
    ("malformed_json", "POST", "/collections", '{"name":', 400, "malformed_json"),
    ("body_is_array", "POST", "/collections", "[]", 400, "invalid_body"),
    ("body_empty", "POST", "/collections", "", 400, "invalid_body"),
    ("body_is_number", "POST", "/collections", "42", 400, "malformed_json"),
    ("create_no_name", "POST", "/collections", J({"dimension": 4}), 400, "invalid_body"),
    ("create_no_dimension", "POST", "/collections", J({"name": "x1"}), 400, "invalid_body"),
    ("create_bad_name_chars", "POST", "/collections", J({"name": "bad name!", "dimension": 4}), 400, "invalid_argument"),
    ("create_reserved_name", "POST", "/collections", J({"name": "deleted", "dimension": 4}), 400, "invalid_argument"),
    ("create_name_too_long", "POST", "/collections", J({"name": "n" * 65, "dimension": 4}), 400, "invalid_argument"),
    ("create_name_wrong_type", "POST", "/collections", J({"name": 7, "dimension": 4}), 400, "invalid_type"),
    ("create_dim_zero", "POST", "/collections", J({"name": "x2", "dimension": 0}), 400, "invalid_argument"),
    ("create_dim_string", "POST", "/collections", J({"name": "x3", "dimension": "4"}), 400, "invalid_type"),
    ("create_dim_negative", "POST", "/collections", J({"name": "x4", "dimension": -1}), 400, "invalid_type"),
    ("create_dim_fraction", "POST", "/collections", J({"name": "x4b", "dimension": 2.5}), 400, "invalid_type"),
    ("create_dim_too_big", "POST", "/collections", J({"name": "x5", "dimension": 65537}), 400, "invalid_argument"),
    ("create_unknown_metric", "POST", "/collections", J({"name": "x6", "dimension": 4, "distance_metric": "Hamming"}), 400, "invalid_argument"),
    ("create_metric_wrong_type", "POST", "/collections", J({"name": "x7", "dimension": 4, "distance_metric": 3}), 400, "invalid_type"),
    ("create_float16_unsupported", "POST", "/collections", J({"name": "x8", "dimension": 4, "vector_type": "Float16"}), 400, "not_supported"),
    ("create_unknown_vector_type", "POST", "/collections", J({"name": "x9", "dimension": 4, "vector_type": "Float64"}), 400, "invalid_argument"),
    ("create_unknown_field", "POST", "/collections", J({"name": "x10", "dimension": 4, "distance": "Cosine"}), 400, "unknown_field"),
    ("create_index_m_too_small", "POST", "/collections", J({"name": "x11", "dimension": 4, "index_config": {"max_connections": 1}}), 400, "invalid_argument"),
    ("create_index_unknown_field", "POST", "/collections", J({"name": "x12", "dimension": 4, "index_config": {"m": 16}}), 400, "unknown_field"),
    ("create_index_wrong_type", "POST", "/collections", J({"name": "x13", "dimension": 4, "index_config": "fast"}), 400, "invalid_type"),
    ("create_duplicate_keys", "POST", "/collections", '{"name":"x14","name":"x15","dimension":4}', 400, "malformed_json"),
    ("create_existing_409", "POST", "/collections", J({"name": "err_base", "dimension": 4}), 409, "already_exists"),
    ("insert_wrong_dimension", "POST", "/collections/err_base/vectors", J({"id": "n1", "data": [1, 2, 3]}), 400, "dimension_mismatch"),
    ("insert_non_number", "POST", "/collections/err_base/vectors", J({"id": "n2", "data": [1, "2", 3, 4]}), 400, "invalid_vector"),
    ("insert_empty_vector", "POST", "/collections/err_base/vectors", J({"id": "n3", "data": []}), 400, "invalid_vector"),
    ("insert_float32_overflow", "POST", "/collections/err_base/vectors", '{"id":"n4","data":[1e39,1,2,3]}', 400, "invalid_vector"),
    ("insert_nan_literal", "POST", "/collections/err_base/vectors", '{"id":"n5","data":[NaN,1,2,3]}', 400, "malformed_json"),
    ("insert_infinity_literal", "POST", "/collections/err_base/vectors", '{"id":"n5b","data":[Infinity,1,2,3]}', 400, "malformed_json"),
    ("insert_id_too_long", "POST", "/collections/err_base/vectors", J({"id": "i" * 257, "data": GOOD}), 400, "invalid_id"),
    ("insert_id_empty", "POST", "/collections/err_base/vectors", J({"id": "", "data": GOOD}), 400, "invalid_id"),
    ("insert_id_number", "POST", "/collections/err_base/vectors", J({"id": 5, "data": GOOD}), 400, "invalid_type"),
    ("insert_id_with_nul", "POST", "/collections/err_base/vectors", '{"id":"a\\u0000b","data":[1,2,3,4]}', 400, "malformed_json"),
    ("insert_metadata_string", "POST", "/collections/err_base/vectors", J({"id": "n6", "data": GOOD, "metadata": "x"}), 400, "invalid_metadata"),
    ("insert_metadata_array", "POST", "/collections/err_base/vectors", J({"id": "n7", "data": GOOD, "metadata": [1]}), 400, "invalid_metadata"),
    ("insert_metadata_too_big", "POST", "/collections/err_base/vectors", J({"id": "n7b", "data": GOOD, "metadata": {"t": "x" * 70000}}), 413, "limit_exceeded"),
    ("insert_data_and_vector", "POST", "/collections/err_base/vectors", J({"id": "n8", "data": GOOD, "vector": GOOD}), 400, "invalid_body"),
    ("insert_no_vector", "POST", "/collections/err_base/vectors", J({"id": "n9"}), 400, "invalid_body"),
    ("insert_unknown_field", "POST", "/collections/err_base/vectors", J({"id": "n10", "data": GOOD, "payload": {}}), 400, "unknown_field"),
    ("insert_missing_collection", "POST", "/collections/nope_coll/vectors", J({"id": "n11", "data": GOOD}), 404, "not_found"),
    ("insert_json_too_deep", "POST", "/collections/err_base/vectors", deep(100), 400, "json_too_deep"),
    ("insert_metadata_too_deep", "POST", "/collections/err_base/vectors", '{"id":"n12","data":[1,2,3,4],"metadata":' + '{"a":' * 70 + "1" + "}" * 70 + "}", 400, "json_too_deep"),
    ("batch_not_array", "POST", "/collections/err_base/vectors/batch", J({"vectors": {"id": "b"}}), 400, "invalid_body"),
    ("batch_empty", "POST", "/collections/err_base/vectors/batch", J({"vectors": []}), 400, "invalid_body"),
    ("batch_one_bad_point", "POST", "/collections/err_base/vectors/batch", J({"vectors": [{"id": "g1", "data": GOOD}, {"id": "g2", "data": [1, 2]}]}), 400, "dimension_mismatch"),
    ("batch_point_not_object", "POST", "/collections/err_base/vectors/batch", J({"vectors": [{"id": "g3", "data": GOOD}, 7]}), 400, "invalid_type"),
    ("batch_too_many", "POST", "/collections/err_base/vectors/batch", J({"vectors": [{"data": [1, 1, 1, 1]}] * 10001}), 413, "limit_exceeded"),
    ("batch_unknown_field", "POST", "/collections/err_base/vectors/batch", J({"vectors": [{"id": "g4", "data": GOOD}], "wait": True}), 400, "unknown_field"),
    ("search_limit_zero", "POST", "/collections/err_base/search", J({"vector": GOOD, "limit": 0}), 400, "invalid_argument"),
    ("search_limit_too_big", "POST", "/collections/err_base/search", J({"vector": GOOD, "limit": 10001}), 400, "invalid_argument"),
    ("search_limit_query_not_number", "POST", "/collections/err_base/search?limit=abc", J({"vector": GOOD}), 400, "invalid_argument"),
    ("search_ef_wrong_type", "POST", "/collections/err_base/search", J({"vector": GOOD, "ef_search": "x"}), 400, "invalid_type"),
    ("search_filter_not_object", "POST", "/collections/err_base/search", J({"vector": GOOD, "filter": "x"}), 400, "invalid_filter"),
    ("search_wrong_dimension", "POST", "/collections/err_base/search", J({"vector": [1, 2]}), 400, "dimension_mismatch"),
    ("search_no_vector", "POST", "/collections/err_base/search", J({"limit": 3}), 400, "invalid_body"),
    ("search_include_vectors_not_bool", "POST", "/collections/err_base/search", J({"vector": GOOD, "include_vectors": "yes"}), 400, "invalid_type"),
    ("search_missing_collection", "POST", "/collections/nope_coll/search", J({"vector": GOOD}), 404, "not_found"),
    ("get_missing_vector", "GET", "/collections/err_base/vectors/absent", None, 404, "not_found"),
    ("delete_missing_vector", "DELETE", "/collections/err_base/vectors/absent", None, 404, "not_found"),
    ("get_missing_collection", "GET", "/collections/nope_coll", None, 404, "not_found"),
    ("delete_missing_collection", "DELETE", "/collections/nope_coll", None, 404, "not_found"),
    ("unknown_route", "GET", "/nope", None, 404, "route_not_found"),
    ("method_not_allowed", "PATCH", "/collections", None, 405, "method_not_allowed"),
    ("scroll_limit_zero", "GET", "/collections/err_base/vectors?limit=0", None, 400, "invalid_argument"),
    ("scroll_offset_negative", "GET", "/collections/err_base/vectors?offset=-1", None, 400, "invalid_argument"),
    ("put_body_id_differs", "PUT", "/collections/err_base/vectors/p1", J({"id": "p2", "data": GOOD}), 400, "invalid_id"),
    ("batch_delete_ids_not_array", "POST", "/collections/err_base/vectors/delete", J({"ids": "a"}), 400, "invalid_body"),
    ("batch_delete_id_number", "POST", "/collections/err_base/vectors/delete", J({"ids": ["keep0", 1]}), 400, "invalid_type"),
    ("path_nul_byte", "GET", "/collections/bad%00name", None, 400, "invalid_argument"),
    ("path_bad_escape", "GET", "/collections/%zz", None, 400, "invalid_argument"),
    ("path_invalid_utf8", "GET", "/collections/%FF", None, 400, "invalid_argument"),
    ("vector_id_invalid_utf8", "GET", "/collections/err_base/vectors/a%C3%28", None, 400, "invalid_argument"),
    ("restore_bad_source", "POST", "/collections/err_base/restore", J({"source": "elsewhere"}), 400, "invalid_argument"),
    ("backup_id_traversal", "DELETE", "/backups/err_base/..%2F..%2Fetc", None, 400, "invalid_argument"),
    ("audit_limit_zero", "GET", "/audit?limit=0", None, 400, "invalid_argument"),
]


def snapshot(server):
    """Everything a bad request could have changed."""
    state = {}
    for c in server.ok("GET", "/collections?detail=true"):
        name = c["name"]
        pts, offset = [], 0
        while True:
            page = server.ok("GET", "/collections/%s/vectors?offset=%d&limit=1000&include_vectors=true" % (name, offset))
            pts += page["vectors"]
            if page["next_offset"] is None:
                break
            offset = page["next_offset"]
        state[name] = (c["dimension"], c["distance_metric"], c["vector_count"],
                       sorted(json.dumps(p, sort_keys=True) for p in pts))
    trash = sorted((t["name"], t["vector_count"]) for t in server.ok("GET", "/collections/deleted"))
    return state, trash


def test_table_has_at_least_40_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_bad_requests_get_status_and_code_and_change_nothing(server):
    server.create("err_base", DIM)
    server.batch("err_base", [{"id": "keep%d" % i, "data": [i, 1, 2, 3], "metadata": {"k": i}} for i in range(20)])
    before = snapshot(server)
    failures = []
    for name, method, path, body, status, code in CASES:
        r = server.req(method, path, data=body, headers={"Content-Type": "application/json"})
        try:
            env = r.json()
        except ValueError:
            failures.append("%s: not JSON: %s %r" % (name, r.status_code, r.text[:200]))
            continue
        if r.status_code != status or env.get("code") != code or env.get("success") is not False \
                or not env.get("error") or env.get("data") is not None:
            failures.append("%s: got %s %s, want %s %s (%s)" % (name, r.status_code, env.get("code"), status, code,
                                                                 env.get("error")))
    assert not failures, "\n".join(failures)
    assert snapshot(server) == before
