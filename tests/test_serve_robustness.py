"""The server under an attacker's and a careless client's requests, sent as they would send them: every one answered
with a clean 4xx (or 503 in an outage) and an OGC exception body, never a 500, plain text or database text."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from geoservice.serve.cql import MAX_FILTER_DEPTH
from geoservice.serve.params import MAX_SORT_KEYS
from servers import MAX_UPLOAD_MB, TOKENS, Server, bearer, free_port, running_server
from sql_helpers import query
from tcp_relay import Relay


def assert_problem(response: requests.Response, status: int, *words: str) -> dict:
    """The response is an OGC exception body with `status` whose description holds `words`."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(("application/json", "application/ld+json")), response.headers["content-type"]
    body = response.json()
    assert set(body) == {"code", "type", "description"}, body
    for word in words:
        assert word in body["description"], (word, body["description"])
    return body


def _filter(served: Server, text: str, lang: str = "cql2-text", collection: str = "landuse") -> requests.Response:
    return served.get(f"/collections/{collection}/items", filter=text, **{"filter-lang": lang})


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def _chunked_post(served: Server, path: str, megabytes: int, headers: dict[str, str]) -> tuple[int, dict]:
    """POST a body of `megabytes` MB with Transfer-Encoding: chunked (no Content-Length), as a raw client would."""
    parts = urllib.parse.urlsplit(served.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.putrequest("POST", path)
    for name, value in {"Transfer-Encoding": "chunked", "Content-Type": "application/json", **headers}.items():
        connection.putheader(name, value)
    connection.endheaders()
    chunk = b'{"inputs": {"raster_file": "' + b"A" * (2**20 - 30)
    try:
        for _ in range(megabytes):
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading: what it answers is below
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, body


def test_chunked_bodies_over_the_limit_are_413_with_bounded_memory(served: Server) -> None:
    before = _rss_kb(served.process.pid)
    for path in ("/processes/hazard-exposure/execution", "/collections/conflicts/items/1/review"):
        status, body = _chunked_post(served, path, 100 * MAX_UPLOAD_MB, bearer("tester"))
        assert status == 413 and "upload limit" in body["description"], (path, status, body)
    assert _rss_kb(served.process.pid) - before < 100 * 1024  # it read ~1.4 MB of each, not 100 MB
    declared = requests.post(f"{served.url}/processes/hazard-exposure/execution", data=b"x" * (2 * 2**20),
                             headers=bearer("tester"), timeout=60)
    assert_problem(declared, 413, "upload limit")


def _browser_write(served: Server, conflict: int, origin: str | None, content_type: str) -> requests.Response:
    headers = {"Content-Type": content_type, **({"Origin": origin} if origin else {})}
    return requests.post(f"{served.url}/collections/conflicts/items/{conflict}/review", timeout=60, headers=headers,
                         data=json.dumps({"status": "confirmed", "comment": "csrf?"}),
                         cookies={"geoservice_token": TOKENS["tester"][2]})


def _status(served: Server, conflict: int) -> str:
    return served.get(f"/collections/conflicts/items/{conflict}/review").json()["case"]["status"]


def test_cookie_writes_from_another_origin_or_not_json_are_refused(served: Server) -> None:
    conflict = query(served.settings, "SELECT c.id FROM geoservice.conflict c JOIN geoservice.detection_run r "
                                      "ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) JOIN geoservice.conflict_case k ON k.id = c.case_id "
                                      "WHERE r.is_current AND k.status = 'open' ORDER BY c.id LIMIT 1")[0][0]
    other_port = urllib.parse.urlsplit(served.url)._replace(netloc=f"127.0.0.1:{free_port()}").geturl()
    assert_problem(_browser_write(served, conflict, other_port, "text/plain"), 403, "Origin", other_port)
    assert_problem(_browser_write(served, conflict, other_port, "application/json"), 403, "Origin")
    assert_problem(_browser_write(served, conflict, None, "application/json"), 403, "Origin missing")
    assert_problem(_browser_write(served, conflict, served.url, "text/plain"), 403, "application/json")
    assert _status(served, conflict) == "open"  # nothing changed
    accepted = _browser_write(served, conflict, served.url, "application/json")
    assert accepted.status_code == 200 and accepted.json()["case"]["status"] == "confirmed", accepted.text
    bearer_write = requests.post(f"{served.url}/collections/conflicts/items/{conflict}/review", timeout=60,
                                 data=json.dumps({"status": "resolved", "comment": "已整改"}),
                                 headers={**bearer("tester"), "Content-Type": "text/plain", "Origin": other_port})
    assert bearer_write.status_code == 200 and bearer_write.json()["case"]["status"] == "resolved"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_feature_writes_are_405_unless_the_layer_is_written(served: Server, method: str) -> None:
    for path in ("/collections/landuse/items", "/collections/landuse/items/1"):
        response = requests.request(method, f"{served.url}{path}", headers=bearer("tester"), timeout=60)
        assert_problem(response, 405, method, "read-only")
        assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    unknown = requests.request(method, f"{served.url}/collections/nothing/items", headers=bearer("tester"), timeout=60)
    assert_problem(unknown, 404, "nothing")


@pytest.mark.parametrize("params, words", [
    ({"DLMC": "a\x00b"}, ["'DLMC'", "NUL"]),
    ({"filter": "DLMC = 'a\x00b'"}, ["'filter'", "NUL"]),
    ({"filter": json.dumps({"op": "=", "args": [{"property": "DLMC"}, "a\x00b"]}), "filter-lang": "cql2-json"},
     ["NUL"]),
    ({"filter": '{"op": "=", "args": [{"property": "DLMC"}, "\\ud800"]}', "filter-lang": "cql2-json"}, ["surrogate"]),
])
def test_text_postgresql_cannot_store_is_a_400(served: Server, params: dict, words: list[str]) -> None:
    assert_problem(served.get("/collections/landuse/items", **params), 400, *words)


def test_review_bodies_with_unstorable_text_are_400s(served: Server) -> None:
    for body in (b'{"status": "waived", "comment": "a\\u0000b"}', b'{"status": "waived", "comment": "\\ud800"}'):
        response = requests.post(f"{served.url}/collections/conflicts/items/1/review", data=body, timeout=60,
                                 headers={**bearer("tester"), "Content-Type": "application/json"})
        assert_problem(response, 400)
        assert "NUL" in response.json()["description"] or "JSON" in response.json()["description"]


def test_process_bodies_with_unstorable_text_are_400s(served: Server) -> None:
    for inputs in ({"x": 118.09, "y": 24.48, "crs": "EPSG:4326\x00"}, {"x": 118.09, "y": 24.48, "crs": "\ud800"}):
        body = json.dumps({"inputs": inputs}).encode()
        response = requests.post(f"{served.url}/processes/point-lookup/execution", data=body, timeout=60,
                                 headers={**bearer("tester"), "Content-Type": "application/json"})
        assert_problem(response, 400)


@pytest.mark.parametrize("geometry, words", [
    ({"type": "Point", "coordinates": [118.1, 24.5], "crs": "x"}, ['"crs"']),
    ({"type": "Point", "coordinates": [118.1, 24.5], "crs": "EPSG:99999"}, ['"crs"']),
    ({"type": "Point", "coordinates": [118.1, 24.5], "crs": {"type": "name", "properties": {"name": "EPSG:99999"}}},
     ["unknown CRS 'EPSG:99999'"]),
    ({"type": "Circle", "coordinates": [118.1, 24.5], "radius": 5}, ["'Circle'", "not GeoJSON"]),
    ({"type": "Polygon", "coordinates": [[1, 2]]}, ["bad Polygon"]),
])
def test_bad_cql2_json_geometries_are_400s(served: Server, geometry: dict, words: list[str]) -> None:
    text = json.dumps({"op": "s_intersects", "args": [{"property": "geometry"}, geometry]})
    assert_problem(_filter(served, text, "cql2-json"), 400, *words)


def test_filters_past_the_size_limits_are_400s(served: Server) -> None:
    assert_problem(_filter(served, " AND ".join(["id = 1"] * 350)), 400, f"more than {MAX_FILTER_DEPTH} levels")
    assert_problem(_filter(served, "id = " + " + ".join(["1"] * 400)), 400, f"more than {MAX_FILTER_DEPTH} levels")
    deep = "[" * 3000 + "]" * 3000
    assert_problem(_filter(served, deep, "cql2-json"), 400, "levels deep")
    many = "id IN (" + ", ".join(str(i) for i in range(3000)) + ")"
    assert_problem(_filter(served, many), 400, "terms")
    within = " OR ".join(f"id = {i}" for i in range(1, 41))
    assert served.get("/collections/landuse/items", filter=within, limit=100).status_code == 200


def test_sort_keys_are_limited(served: Server) -> None:
    assert_problem(served.get("/collections/landuse/items", sortby=",".join(["id"] * 1700)), 400,
                   f"at most {MAX_SORT_KEYS}")
    assert served.get("/collections/landuse/items", sortby="-id,DLMC").status_code == 200


@pytest.mark.parametrize("text", ["%C2%B2", "%D9%A3", "99999999999999999999999", "-1", "1.5"])
def test_conflict_ids_that_are_not_ids_are_404(served: Server, text: str) -> None:
    response = requests.get(f"{served.url}/collections/conflicts/items/{text}/review", headers=bearer("tester"),
                            timeout=60)
    assert_problem(response, 404, "no conflict")


@pytest.mark.parametrize("fmt", ["csv", "jsonld", "json", "html"])
def test_filters_on_masked_attributes_are_400_in_every_format(served: Server, fmt: str) -> None:
    for params in ({"FZR": "张三丰"}, {"filter": "FZR = '张三丰'"}, {"sortby": "FZR"}):
        response = served.get("/collections/projects/items", as_="viewer", f=fmt, **params)
        assert response.status_code == 400, (params, response.text[:200])
        assert "masked" in response.text


def test_long_urls_and_unknown_paths_get_ogc_bodies(served: Server) -> None:
    assert_problem(requests.get(f"{served.url}/collections?x={'a' * 70_000}", timeout=60), 400, "cannot be read")
    assert_problem(requests.get(f"{served.url}/report", timeout=60), 404)  # the public grade has no conflicts
    assert_problem(requests.get(f"{served.url}/no/such/path", timeout=60), 404)
    assert_problem(requests.post(f"{served.url}/conformance", timeout=60), 405, "POST")


#: every endpoint that reads the database, as (method, path, JSON body)
_READERS = [
    ("GET", "/collections/landuse/items", None), ("GET", "/collections/landuse/items?f=csv", None),
    ("GET", "/collections/landuse/items?f=jsonld", None), ("GET", "/collections/landuse/items?f=html", None),
    ("GET", "/collections/landuse/items/{item}", None), ("GET", "/collections/landuse/items/{item}?f=jsonld", None),
    ("GET", "/lookup?x=118.09&y=24.48", None),
    ("POST", "/processes/point-lookup/execution", {"inputs": {"x": 118.09, "y": 24.48}}),
    ("POST", "/processes/project-check/execution", {"inputs": {"geometry": {"type": "Polygon", "coordinates": [
        [[118.08, 24.47], [118.09, 24.47], [118.09, 24.48], [118.08, 24.47]]]}}}),
    ("POST", "/processes/hazard-exposure/execution", {"inputs": {"raster": "flood_depth", "threshold": 0.5}}),
    ("GET", "/collections/conflicts/items/1/review", None),
    ("POST", "/collections/conflicts/items/1/review", {"status": "waived"}),
    ("GET", "/collections/landuse/versions", None), ("GET", "/collections/landuse/changes", None),
    ("GET", "/report", None),
]


@pytest.fixture()
def relayed(served: Server, tmp_path: Path) -> Iterator[tuple[Server, Relay]]:
    """A second server whose database connection runs through a relay the test can cut."""
    database = urllib.parse.urlsplit(served.settings.database.url)
    relay = Relay((database.hostname, database.port))
    url = database._replace(netloc=f"{database.username}:{database.password}@127.0.0.1:{relay.port}").geturl()
    settings = served.settings.model_copy(update={"database": served.settings.database.model_copy(update={"url": url})})
    try:
        with running_server(settings, tmp_path / "serve.log", served.collections) as server:
            yield server, relay
    finally:
        relay.close()


def test_a_database_outage_is_503_everywhere_and_recovers(relayed: tuple[Server, Relay]) -> None:
    server, relay = relayed
    item = server.items("landuse", limit=1)["features"][0]["id"]
    relay.cut()
    relay.restore()  # a restart between two requests: the kept connections are dead, and found so before use
    for path in ("/collections/landuse/items", "/lookup?x=118.09&y=24.48", "/collections/landuse/versions"):
        assert requests.get(f"{server.url}{path}", headers=bearer("tester"), timeout=60).status_code == 200, path
    relay.cut()
    for method, path, body in _READERS:
        response = requests.request(method, f"{server.url}{path.format(item=item)}", json=body, headers=bearer("tester"),
                                    timeout=60)
        if "f=html" in path:
            assert response.status_code == 503 and "not available" in response.text, (path, response.text[:200])
            continue
        assert_problem(response, 503, "database is not available")
        assert response.headers["Retry-After"].isdigit(), path
    relay.restore()  # no restart: the connections found broken are replaced
    for method, path, body in _READERS:
        if method == "GET":
            response = requests.get(f"{server.url}{path.format(item=item)}", headers=bearer("tester"), timeout=60)
            assert response.status_code == 200, (path, response.status_code, response.text[:200])
