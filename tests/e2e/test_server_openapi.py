"""/openapi.json lists exactly the routes of the route table (server/routes.c),
and every listed route exists on the running server."""
import os
import re

from conftest import ROOT


def route_table():
    """(METHOD, pattern) rows of srv_routes[] read from the source."""
    with open(os.path.join(ROOT, "server", "routes.c")) as f:
        src = f.read()
    table = src[src.index("const srv_route srv_routes[] = {"):]
    table = table[:table.index("};")]
    rows = re.findall(r'^\s*\{"(GET|POST|PUT|DELETE)",\s*"([^"]+)"', table, re.M)
    return {(m, re.sub(r":([a-z_]+)", r"{\1}", p)) for m, p in rows}


def test_openapi_lists_exactly_the_route_table(server):
    doc = server.req("GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    listed = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    table = route_table()
    assert len(table) >= 30
    assert listed == table
    for path, item in doc["paths"].items():
        for m, op in item.items():
            assert op["x-dvecdb-access"] in ("public", "read", "write", "admin")
            params = re.findall(r"\{([a-z_]+)\}", path)
            assert [p["name"] for p in op["parameters"]] == params


def test_every_listed_route_is_routed_and_unlisted_ones_are_not(server):
    doc = server.req("GET", "/openapi.json").json()
    for path, item in doc["paths"].items():
        url = path.replace("{name}", "oa_absent").replace("{id}", "x").replace("{backup_id}", "b1")
        for m in item:
            r = server.req(m.upper(), url, data=b"{}" if m in ("post", "put") else None)
            assert r.status_code not in (404, 405) or r.json().get("code") not in ("route_not_found",
                                                                                   "method_not_allowed"), (m, url)
    r = server.req("GET", "/collections/oa_absent/vectors/x/extra")
    assert r.status_code == 404 and r.json()["code"] == "route_not_found"
    r = server.req("PUT", "/collections/oa_absent")
    assert r.status_code == 405 and "GET" in r.headers["Allow"] and "DELETE" in r.headers["Allow"]
