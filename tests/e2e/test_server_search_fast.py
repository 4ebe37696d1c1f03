"""Search bodies through the fast scanner (server/fastjson.c) and through the
general jansson path must read every number to the same float32 and refuse
the same malformed or non-finite numbers with the same 400 envelope.

A body takes the general path when the fast scanner declines it; an escape
in a key ("vect\\u006fr") is enough. A query equal, bit for bit, to a stored
vector is at distance exactly 0, so a query number read one float32 ulp
away from the stored one shows up as a non-zero distance."""
import json

import numpy as np

DIM = 8

# Decimals where reading through a wider type and narrowing can go one ulp
# astray: within 1e-18 of a float32 rounding midpoint, 16-17 significant
# digits (what json.dumps writes for a float64), integer zero with a sign,
# 19-digit integers, subnormals.
HARD = [
    ["1.000000059604644776", "62.29629707336426", "-0", "0.30000000000000004",
     "9007199254740993", "1e-40", "-2.5e-3", "7"],
    ["1.000000059604644775", "1.0000000596046447754", "3.4028234663852886e38", "-1.17549435e-38",
     "9223372036854775807", "0.1", "1E+2", "-0.0"],
]


def body(key, texts, **extra):
    fields = ['"%s":[%s]' % (key, ",".join(texts))]
    fields += ['"%s":%s' % (k, json.dumps(v)) for k, v in extra.items()]
    return "{" + ",".join(fields) + "}"


def general_value(t):
    """The general path's reading: jansson keeps integer text as an int64
    (so "-0" is the integer 0, +0.0), anything else as strtod's double;
    the handler narrows it to float32."""
    return float(int(t)) if not any(c in t for c in ".eE") else float(t)


def f32_bits(values):
    return np.array(values, dtype=np.float32).tobytes()


def test_hard_numbers_read_to_the_same_float32_bits_on_both_paths_and_search_finds_them_at_distance_0(server):
    server.create("sf_bits", DIM)
    for i, texts in enumerate(HARD):
        want = f32_bits([general_value(t) for t in texts])
        fast = '{"id":"fast%d","data":[%s]}' % (i, ",".join(texts))
        slow = '{"id":"slo\\u0077%d","data":[%s]}' % (i, ",".join(texts))
        for b in (fast, slow):
            r = server.req("POST", "/collections/sf_bits/vectors", data=b)
            assert r.status_code == 200, r.text
        for vid in ("fast%d" % i, "slow%d" % i):
            got = server.ok("GET", "/collections/sf_bits/vectors/%s" % vid)["vector"]
            assert f32_bits(got) == want, (vid, got)
    for i, texts in enumerate(HARD):
        for key in ("vector", "vect\\u006fr", "query_vector"):
            r = server.req("POST", "/collections/sf_bits/search",
                           data=body(key, texts, limit=4, exact=True))
            assert r.status_code == 200, r.text
            hits = r.json()["data"]
            assert {h["id"] for h in hits if h["distance"] == 0.0} == {"fast%d" % i, "slow%d" % i}, (key, hits)


# (number text, the code both paths answer)
BAD = [
    ("NaN", "malformed_json"), ("-NaN", "malformed_json"), ("Infinity", "malformed_json"),
    ("-Infinity", "malformed_json"), ("1e400", "malformed_json"), ("-1e400", "malformed_json"),
    ("01", "malformed_json"), ("1.", "malformed_json"), (".5", "malformed_json"), ("+1", "malformed_json"),
    ("1e", "malformed_json"), ("1e+", "malformed_json"), ("0x10", "malformed_json"), ("--1", "malformed_json"),
    ("1.5.5", "malformed_json"), ("123456789012345678901", "malformed_json"),
    ("9923730567264326521", "malformed_json"), ("-9223372036854775809", "malformed_json"),
    ("1e39", "invalid_vector"), ("-3.5e38", "invalid_vector"), ("3.4028236e38", "invalid_vector"),
    ('"1"', "invalid_vector"), ("true", "invalid_vector"), ("null", "invalid_vector"),
]


def test_malformed_and_non_finite_query_numbers_get_400_and_the_envelope_on_both_paths(server):
    server.create("sf_bad", DIM)
    server.batch("sf_bad", [{"id": "p%d" % i, "data": [float(i)] * DIM} for i in range(4)])
    failures = []
    for text, code in BAD:
        for pos in (0, DIM - 1):  # first and last: the end of the array is its own branch
            texts = ["0.5"] * DIM
            texts[pos] = text
            for key in ("vector", "vect\\u006fr"):
                r = server.req("POST", "/collections/sf_bad/search", data=body(key, texts, limit=2),
                               headers={"Content-Type": "application/json"})
                try:
                    env = r.json()
                except ValueError:
                    failures.append("%s@%d %s: not JSON: %d %r" % (text, pos, key, r.status_code, r.text[:100]))
                    continue
                if r.status_code != 400 or env.get("code") != code or env.get("success") is not False \
                        or not env.get("error") or env.get("data") is not None:
                    failures.append("%s@%d %s: %d %s (%s), want 400 %s" % (text, pos, key, r.status_code,
                                                                          env.get("code"), env.get("error"), code))
    assert not failures, "\n".join(failures)
    # and the server still answers a good search
    hits = server.ok("POST", "/collections/sf_bad/search", {"vector": [1.0] * DIM, "limit": 1})
    assert hits[0]["id"] == "p1" and hits[0]["distance"] == 0.0
