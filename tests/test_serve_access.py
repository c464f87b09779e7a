"""Sensitivity grades over HTTP: what a caller may not read answers 404 exactly as what does not exist, in every
endpoint and format; personal attributes are masked below their grade and cannot be filtered or sorted on."""

from __future__ import annotations

import json

import pytest
import requests

from servers import TOKENS, Server
from sql_helpers import active, query

PUBLIC = {"districts", "basemap"}


def _paths(name: str, item: str = "1") -> list[tuple[str, dict]]:
    """Every way to reach a collection: metadata, items, one item, queryables, schema, each as JSON and HTML."""
    return [(f"/collections/{name}", {}), (f"/collections/{name}", {"f": "html"}),
            (f"/collections/{name}/items", {}), (f"/collections/{name}/items", {"f": "html"}),
            (f"/collections/{name}/items", {"f": "csv"}),
            (f"/collections/{name}/items/{item}", {}), (f"/collections/{name}/items/{item}", {"f": "html"}),
            (f"/collections/{name}/queryables", {}), (f"/collections/{name}/queryables", {"f": "html"}),
            (f"/collections/{name}/schema", {})]


def _listed(served: Server, as_: str | None) -> set[str]:
    return {c["id"] for c in served.get("/collections", as_=as_, f="json").json()["collections"]}


def test_each_grade_sees_its_collections(served: Server) -> None:
    assert _listed(served, None) == PUBLIC
    assert _listed(served, "outsider") == PUBLIC  # a token of grade public reads what anonymous callers read
    assert _listed(served, "viewer") == set(served.collections)  # every demo layer is internal or public
    assert _listed(served, "tester") == set(served.collections)


def test_hidden_collections_answer_404_like_unknown_ones_everywhere(served: Server) -> None:
    hidden_item = str(query(served.settings, f"SELECT min(id) FROM {active('landuse')} a")[0][0])
    for (path, params), (unknown_path, _) in zip(_paths("landuse", hidden_item), _paths("no_such_layer", hidden_item)):
        hidden = served.get(path, as_=None, **params)
        unknown = served.get(unknown_path, as_=None, **params)
        assert hidden.status_code == unknown.status_code == 404, (path, params, hidden.status_code)
        assert hidden.text.replace("landuse", "X") == unknown.text.replace("no_such_layer", "X"), (path, params)
        assert served.get(path, as_="viewer", **params).status_code == 200, (path, params)


def test_hidden_things_are_not_mentioned_anywhere(served: Server) -> None:
    hidden = set(served.collections) - PUBLIC
    documents = [served.get("/", as_=None, f="json").text, served.get("/", as_=None, f="html").text,
                 served.get("/collections", as_=None, f="html").text, served.get("/openapi", as_=None, f="json").text,
                 served.get("/processes", as_=None, f="json").text]
    for text in documents:
        for name in hidden:
            assert f"/collections/{name}" not in text, name
    assert "/collections/landuse/items" in served.get("/openapi", as_="viewer", f="json").text


def test_processes_that_read_hidden_data_are_404(served: Server) -> None:
    listed = {p["id"] for p in served.get("/processes", as_=None).json()["processes"]}
    assert listed == {"point-lookup", "hazard-exposure"}
    assert served.get("/processes/project-check", as_=None).status_code == 404
    body = {"inputs": {"geometry": {"type": "Polygon", "coordinates": [[[118.1, 24.5], [118.2, 24.5], [118.2, 24.6],
                                                                        [118.1, 24.5]]]}}}
    assert served.post("/processes/project-check/execution", body, as_=None).status_code == 404
    assert served.post("/processes/project-check/execution", body, as_="viewer").status_code == 200


def test_lookup_leaves_out_what_the_caller_may_not_read(served: Server) -> None:
    x, y = query(served.settings, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), 4326) p "
                                  f"FROM {active('red_line')} a ORDER BY id LIMIT 1) q")[0]
    full = served.get("/lookup", as_="viewer", x=x, y=y).json()
    public = served.get("/lookup", as_=None, x=x, y=y).json()
    assert full["protection_lines"] and public["protection_lines"] == []
    assert public["conflicts"] == [] and public["patch"] == full["patch"]


def test_tokens_are_checked(served: Server) -> None:
    for header in ({"Authorization": "Bearer wrong-token"}, {"Authorization": "Token abc"}, {"Authorization": "Bearer "}):
        response = requests.get(f"{served.url}/collections", headers=header, timeout=30)
        assert response.status_code == 401, header
        assert "Bearer" in response.headers["WWW-Authenticate"]
    basic = requests.get(f"{served.url}/collections", auth=("anyone", TOKENS["viewer"][2]), timeout=30)
    assert {c["id"] for c in basic.json()["collections"]} == set(served.collections)


def test_reads_are_logged_with_the_token_name(served: Server) -> None:
    served.get("/collections/projects/items", as_="viewer", limit=1, marker="log-check")
    log = served.settings.path(served.settings.paths.output) / "logs" / "access.log"
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if "marker=log-check" in line]
    assert lines and lines[-1].split()[2:5] == ["viewer", "GET", "/collections/projects/items?limit=1&marker=log-check"]


def _project_rows(served: Server) -> dict[str, dict]:
    rows = query(served.settings, f"SELECT id, attributes FROM {active('projects')} a")
    return {str(fid): attributes for fid, attributes in rows}


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_personal_attributes_are_masked_below_restricted(served: Server, fmt: str) -> None:
    stored = _project_rows(served)
    internal = served.get("/collections/projects/items", as_="viewer", limit=10000, f="json").json()["features"]
    restricted = served.get("/collections/projects/items", as_="tester", limit=10000, f="json").json()["features"]
    assert len(internal) == len(stored) and internal
    for feature in restricted:
        raw = stored[str(feature["id"])]
        assert {k: feature["properties"][k] for k in ("FZR", "SFZH", "LXDH")} == {k: raw[k] for k in ("FZR", "SFZH", "LXDH")}
    for feature in internal:
        raw, shown = stored[str(feature["id"])], feature["properties"]
        assert shown["FZR"] == raw["FZR"][0] + "*" * max(len(raw["FZR"]) - 1, 1)
        assert shown["SFZH"] == raw["SFZH"][:6] + "*" * (len(raw["SFZH"]) - 10) + raw["SFZH"][-4:]
        assert shown["LXDH"][-4:] == raw["LXDH"][-4:] and not any(c.isdigit() for c in shown["LXDH"][:-4])
        assert shown["XMMC"] == raw["XMMC"]  # not a masked attribute
    one = internal[0]
    page = served.get(f"/collections/projects/items/{one['id']}", as_="viewer", f=fmt).text
    raw = stored[str(one["id"])]
    assert raw["SFZH"] not in page and raw["LXDH"] not in page and one["properties"]["SFZH"] in page
    assert raw["SFZH"] not in served.get("/collections/projects/items", as_="viewer", f="csv", limit=10000).text


def test_filters_and_sorting_on_masked_attributes_are_refused(served: Server) -> None:
    some = next(iter(_project_rows(served).values()))
    for params in ({"FZR": some["FZR"]}, {"sortby": "-SFZH"}, {"filter": f"LXDH = '{some['LXDH']}'"},
                   {"filter": "SFZH LIKE '35%'"},
                   {"filter": json.dumps({"op": "=", "args": [{"property": "FZR"}, some["FZR"]]}), "filter-lang": "cql2-json"}):
        response = served.get("/collections/projects/items", as_="viewer", **params)
        assert response.status_code == 400, params
        assert "masked" in response.json()["description"], params
        assert served.get("/collections/projects/items", as_="tester", **params).status_code == 200, params
    queryables = served.get("/collections/projects/queryables", as_="viewer").json()["properties"]
    assert not {"FZR", "SFZH", "LXDH"} & set(queryables) and "XMMC" in queryables
    assert {"FZR", "SFZH", "LXDH"} <= set(served.get("/collections/projects/queryables", as_="tester").json()["properties"])
