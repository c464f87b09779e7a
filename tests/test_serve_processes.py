"""OGC API – Processes on the served demo: point lookup, project check, hazard exposure — through OWSLib and plain
HTTP, compared with the library's answers; every bad input a 400 with its message."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest
import shapely
import shapely.geometry
from owslib.ogcapi.processes import Processes
from pyproj import Transformer

from geoservice.conflicts import load_rules
from geoservice.db.connection import connect_url
from geoservice.queries import check_project, hazard_exposure, lookup_point
from sql_helpers import active, query
from test_serve_server import MAX_UPLOAD_MB, Server, bearer, served_fixture  # noqa: F401 - the session's `served` fixture

TO_4490 = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
PROCESSES = {"point-lookup", "project-check", "hazard-exposure"}


def library(served: Server, function, *args, **kwargs):
    """What the library answers on the same database (JSON round trip: what the server sends)."""
    conn = connect_url(served.settings.database.url)
    try:
        with conn.cursor() as cur:
            return orjson.loads(orjson.dumps(function(cur, served.settings, *args, **kwargs)))
    finally:
        conn.close()


def owslib(served: Server) -> Processes:
    return Processes(served.url, headers=bearer("tester"))


def execute(served: Server, process: str, inputs: dict, as_: str | None = "tester"):
    return served.post(f"/processes/{process}/execution", {"inputs": inputs}, as_=as_)


@pytest.fixture(scope="module")
def project(served: Server) -> tuple[shapely.Polygon, dict]:
    """A project polygon over the first red-line feature, in EPSG:4490, and as GeoJSON."""
    x, y = query(served.settings, f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM {active('red_line')} "
                                  "r ORDER BY id LIMIT 1) q")[0]
    ring = np.array([(-400, -300), (500, -350), (450, 400), (-350, 380), (-400, -300)]) + (x, y)
    in_4490 = shapely.Polygon(np.column_stack(TO_4490.transform(ring[:, 0], ring[:, 1])))
    return in_4490, shapely.geometry.mapping(in_4490)


def test_three_processes_listed_and_described(served: Server) -> None:
    client = owslib(served)
    assert {p["id"] for p in client.processes()} == PROCESSES
    described = client.process("project-check")
    assert {"geometry", "crs", "code"} <= set(described["inputs"])
    conformance = served.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conformance


def test_lookup_through_owslib_and_get_equals_the_library(served: Server) -> None:
    x, y = query(served.settings, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), 4326) p "
                                  f"FROM {active('red_line')} a ORDER BY id LIMIT 1) q")[0]
    expected = library(served, lookup_point, x, y, None)
    assert expected["protection_lines"]
    assert owslib(served).execute("point-lookup", {"x": x, "y": y}, response="raw") == expected
    assert served.get("/lookup", x=x, y=y).json() == expected
    in_4548 = served.get("/lookup", x=expected["point"]["working"][0], y=expected["point"]["working"][1], crs="EPSG:4548")
    assert in_4548.json()["patch"] == expected["patch"]


def test_project_check_through_owslib_equals_the_library(served: Server, project) -> None:
    geometry, geojson = project
    rules = load_rules(served.settings.path(served.settings.paths.rules))
    expected = library(served, lambda cur, settings: [
        {k: v for k, v in c.items() if k != "geometry"} for c in check_project(cur, settings, rules, geometry, "EPSG:4490", "1001")])
    answer = owslib(served).execute("project-check", {"geometry": geojson, "crs": "EPSG:4490", "code": "1001"}, response="raw")
    assert answer["type"] == "FeatureCollection" and answer["crs"] == "EPSG:4490"
    assert [f["properties"] for f in answer["features"]] == expected
    assert "projects_in_red_line" in {c["rule_id"] for c in expected}
    for feature, conflict in zip(answer["features"], expected):  # pieces come back in the caller's CRS
        piece = shapely.geometry.shape(feature["geometry"])
        assert piece.within(geometry.buffer(1e-6))
        assert conflict["area_m2"] > 0
    assert query(served.settings, "SELECT count(*) FROM geoservice.conflict WHERE source_id_a = 'submitted'")[0][0] == 0


def _raster(path: Path, origin: tuple[float, float], size: int = 40) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    values = np.zeros((size, size), dtype=np.float32)
    values[:, : size // 2] = 1.5
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:4548",
                       transform=from_origin(*origin, 100, 100), nodata=-9999.0) as out:
        out.write(values, 1)
    return path


def test_exposure_registered_and_uploaded_equal_the_library(served: Server, tmp_path: Path) -> None:
    registered = execute(served, "hazard-exposure", {"raster": "flood_depth", "threshold": 0.5})
    assert registered.status_code == 200, registered.text
    assert registered.json() == library(served, hazard_exposure, "flood_depth", 0.5)
    x0, y0 = query(served.settings, "SELECT floor(ST_X(p) / 100) * 100, floor(ST_Y(p) / 100) * 100 FROM "
                                    "(SELECT ST_Centroid(ST_Collect(geom)) p FROM geoservice.basemap_patch p "
                                    "JOIN geoservice.integration_run r ON r.id = p.run_id WHERE r.is_current) q")[0]
    path = _raster(tmp_path / "upload.tif", (x0, y0))
    upload = {"value": base64.b64encode(path.read_bytes()).decode(), "encoding": "base64", "mediaType": "image/tiff"}
    answer = execute(served, "hazard-exposure", {"raster_file": upload, "threshold": 1.0})
    assert answer.status_code == 200, answer.text
    expected = library(served, hazard_exposure, path, 1.0)
    assert answer.json() == {**expected, "raster": "upload"} and expected["exposed_m2"] > 0


def _far_raster(tmp_path: Path) -> dict:
    path = _raster(tmp_path / "far.tif", (300_000, 5_000_000), size=10)
    return {"value": base64.b64encode(path.read_bytes()).decode()}


@pytest.mark.parametrize(("process", "inputs", "message"), [
    ("project-check", {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
     "the project geometry is invalid: Self-intersection"),
    ("project-check", {"geometry": {"type": "Point", "coordinates": [118.1, 24.5]}}, "must be a Polygon or MultiPolygon"),
    ("project-check", {"geometry": "POLYGON((0 0, 1 0, 1 1, 0 0))"}, "must be a GeoJSON Polygon or MultiPolygon"),
    ("project-check", {"geometry": {"type": "Polygon", "coordinates": [[[118.1, 24.5]]]}}, "not valid GeoJSON"),
    ("point-lookup", {"x": 118.1, "y": 24.5, "crs": "EPSG:32650"}, "CRS 'EPSG:32650' is not supported here"),
    ("point-lookup", {"x": 118.1, "y": 24.5, "crs": "EPSG:nonsense"}, "unknown CRS"),
    ("point-lookup", {"x": 100.0, "y": 30.0}, "lies outside the base map"),
    ("point-lookup", {"x": "east", "y": 24.5}, "input 'x' must be a number"),
    ("point-lookup", {"y": 24.5}, "input 'x' is missing"),
    ("hazard-exposure", {"raster": "nope", "threshold": 0.5}, "no registered raster 'nope'"),
    ("hazard-exposure", {"threshold": 0.5}, "give exactly one of 'raster'"),
    ("hazard-exposure", {"raster_file": {"value": "bm90IGEgdGlmZg=="}, "threshold": 0.5}, "the uploaded raster: not a readable raster"),
    ("hazard-exposure", {"raster_file": {"value": "***"}, "threshold": 0.5}, "not valid base64"),
    ("hazard-exposure", {"raster": "flood_depth", "threshold": 0.5, "band": 3}, "band 3 asked for"),
])
def test_bad_input_is_a_400_with_the_message(served: Server, process: str, inputs: dict, message: str) -> None:
    response = execute(served, process, inputs)
    assert response.status_code == 400, response.text
    assert message in response.json()["description"]


def test_raster_outside_the_data_and_oversize_uploads_are_400s(served: Server, tmp_path: Path) -> None:
    far = execute(served, "hazard-exposure", {"raster_file": _far_raster(tmp_path), "threshold": 0.5})
    assert far.status_code == 400 and "does not overlap the base map" in far.json()["description"]
    limit = MAX_UPLOAD_MB * 2**20
    within_body = base64.b64encode(b"\0" * int(limit * 1.02)).decode()  # the body passes, the raster is too large
    response = execute(served, "hazard-exposure", {"raster_file": within_body, "threshold": 0.5})
    assert response.status_code == 400 and "larger than the 1 MB limit" in response.json()["description"]
    huge = base64.b64encode(b"\0" * int(limit * 1.2)).decode()  # refused before the body is read
    response = execute(served, "hazard-exposure", {"raster_file": huge, "threshold": 0.5})
    assert response.status_code == 400 and "larger than the upload limit" in response.json()["description"]


def test_get_lookup_bad_parameters(served: Server) -> None:
    for params, message in (({"x": 118.1}, "parameter 'y' is missing"), ({"x": "a", "y": 1}, "x must be a number"),
                            ({"x": 118.1, "y": 24.5, "z": 1}, "unknown parameter 'z'"),
                            ({"x": "nan", "y": 24.5}, "x must be a finite number")):
        response = served.get("/lookup", **params)
        assert response.status_code == 400 and message in response.json()["description"], params
    for body in ("not an object", {"inputs": [1, 2]}, [1]):
        response = served.post("/processes/point-lookup/execution", body)
        assert response.status_code == 400 and "inputs" in response.json()["description"], body
