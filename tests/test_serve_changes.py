"""Change reports per layer over HTTP: the versions of a layer and the changes between two, as the library makes them;
404 for a layer the caller may not read."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import shapely
import shapely.geometry
from pyproj import Transformer

from geoservice.governance import layer_changes
from geoservice.ingest import activate_version, ingest_layer, list_versions, load_definition
from layer_versions import EXPECTED_COUNTS, edited_landuse
from servers import ROOT, Server
from sql_helpers import query
from test_serve_robustness import assert_problem


def test_versions_and_changes_of_a_layer(served: Server) -> None:
    settings = served.settings
    before = next(v.version for v in list_versions(settings, "districts") if v.is_active)
    ingest_layer(settings, load_definition(ROOT / "layers" / "districts.yaml"))  # the same file again: a new version
    newest = max(v.version for v in list_versions(settings, "districts"))
    activate_version(settings, "districts", before)  # the server keeps serving the version it started with
    listed = served.get("/collections/districts/versions", as_=None).json()
    assert [v["version"] for v in listed["versions"]][-1] == newest
    assert listed["versions"][-1]["changes"].endswith(f"/collections/districts/changes?from={newest - 1}&to={newest}")
    answer = served.get("/collections/districts/changes", as_=None, **{"from": before, "to": newest})
    assert answer.status_code == 200, answer.text
    expected = orjson.loads(orjson.dumps(layer_changes(settings, "districts", before, newest).as_dict()))
    assert answer.json() == expected
    assert expected["counts"] == {"added": 0, "removed": 0, "changed": 0} and expected["unchanged"] == 6


def test_changes_follow_the_grades_and_check_parameters(served: Server) -> None:
    assert served.get("/collections/landuse/versions", as_=None).status_code == 404
    assert served.get("/collections/landuse/changes", as_=None).status_code == 404
    assert served.get("/collections/landuse/versions", as_="viewer").status_code == 200
    assert served.get("/collections/basemap/versions", as_="viewer").status_code == 404  # not a layer
    for params, message in (({"from": "one"}, "version numbers"), ({"to": 99}, "99"), ({"since": 1}, "unknown parameter")):
        response = served.get("/collections/districts/changes", as_=None, **params)
        assert response.status_code == 400 and message in response.json()["description"], params


def test_changes_as_geojson_carry_the_report_and_each_change_drawn(served: Server, tmp_path) -> None:
    before, new = edited_landuse(served.settings, tmp_path)
    asked = {"from": before, "to": new}
    report = served.get("/collections/landuse/changes", as_="viewer", **asked).json()
    assert report["counts"] == EXPECTED_COUNTS
    answer = served.get("/collections/landuse/changes", as_="viewer", f="geojson", **asked)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/geo+json"
    drawn = answer.json()
    assert drawn["type"] == "FeatureCollection"
    assert {k: v for k, v in drawn.items() if k not in ("type", "features")} == {k: v for k, v in report.items() if k != "features"}
    assert [f["properties"] for f in drawn["features"]] == report["features"]
    to_working = Transformer.from_crs("OGC:CRS84", served.settings.working_crs, always_xy=True)
    for feature in drawn["features"]:  # CRS84: the new geometry of added and changed features, the old one of removed ones
        shape = shapely.transform(shapely.geometry.shape(feature["geometry"]),
                                  lambda xy: np.column_stack(to_working.transform(xy[:, 0], xy[:, 1])))
        p = feature["properties"]
        assert shape.area == pytest.approx(p["old_area_m2"] if p["change"] == "removed" else p["new_area_m2"], rel=1e-6)
    assert_problem(served.get("/collections/landuse/changes", as_="viewer", f="xml"), 400, "'xml' is not offered here")


def test_what_a_run_changed(served: Server) -> None:
    for name, kind in (("basemap", "integration"), ("conflicts", "detection")):
        answer = served.get(f"/collections/{name}/changes", as_="viewer")
        assert answer.status_code == 200, answer.text
        found = answer.json()
        current = query(served.settings, f"SELECT id FROM geoservice.{kind}_run WHERE is_current")[0][0]
        assert found["collection"] == name and found["is_current"] and found["run_id"] == current
        assert found["incremental"] is None and found["base_run_id"] is None  # the demo's runs are full
        assert served.get(f"/collections/{name}/changes", as_="viewer", run=found["run_id"]).json() == found
        assert_problem(served.get(f"/collections/{name}/changes", as_="viewer", run=987654321), 404, f"no {kind} run")
        for params in ({"run": "last"}, {"run": 0}, {"run": 2**63}, {"since": 1}, {"f": "geojson"}):
            assert served.get(f"/collections/{name}/changes", as_="viewer", **params).status_code == 400, params
    assert served.get("/collections/conflicts/changes", as_=None).status_code == 404  # conflicts are internal
