"""OGC API – Processes on the served demo: point lookup, project check, hazard exposure — through OWSLib and plain
HTTP, compared with the library's answers; every bad input a 400 with its message; an attacker's raster reads no
file and sends no request; uploads need a token; a full process queue is a 503 at once."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests
import shapely
import shapely.geometry
from owslib.ogcapi.processes import Processes
from pyproj import Transformer

from geoservice.conflicts import load_rules
from geoservice.db.connection import connect_url
from geoservice.queries import check_project, hazard_exposure, lookup_point
from geoservice.serve.process_routes import MAX_BODY_DEPTH
from servers import MAX_UPLOAD_MB, Server, bearer, reconfigured_server
from sql_helpers import active, query
from test_raster import Listener, vrt
from test_serve_robustness import assert_problem

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


def _uploaded(path: Path) -> dict:
    return {"value": base64.b64encode(path.read_bytes()).decode(), "encoding": "base64", "mediaType": "image/tiff"}


def _centre(served: Server) -> tuple[float, float]:
    """The base map's centre rounded down to 100 m (EPSG:4548)."""
    return query(served.settings, "SELECT floor(ST_X(p) / 100) * 100, floor(ST_Y(p) / 100) * 100 FROM "
                                  "(SELECT ST_Centroid(ST_Collect(geom)) p FROM geoservice.basemap_patch p "
                                  "JOIN geoservice.integration_run r ON p.run_id = ANY(r.chain) AND (p.until_run IS NULL OR p.until_run > r.id) WHERE r.is_current) q")[0]


def test_exposure_registered_and_uploaded_equal_the_library(served: Server, tmp_path: Path) -> None:
    registered = execute(served, "hazard-exposure", {"raster": "flood_depth", "threshold": 0.5})
    assert registered.status_code == 200, registered.text
    assert registered.json() == library(served, hazard_exposure, "flood_depth", 0.5)
    path = _raster(tmp_path / "upload.tif", _centre(served))
    answer = execute(served, "hazard-exposure", {"raster_file": _uploaded(path), "threshold": 1.0})
    assert answer.status_code == 200, answer.text
    expected = library(served, hazard_exposure, path, 1.0)
    assert answer.json() == {**expected, "raster": "upload"} and expected["exposed_m2"] > 0


def _far_raster(tmp_path: Path) -> dict:
    path = _raster(tmp_path / "far.tif", (300_000, 5_000_000), size=10)
    return {"value": base64.b64encode(path.read_bytes()).decode()}


@pytest.mark.parametrize(("process", "inputs", "message"), [
    ("project-check", {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
     "the project geometry is invalid: Self-intersection"),
    ("project-check", {"geometry": {"type": "Point", "coordinates": [118.1, 24.5]}},
     "must be a GeoJSON Polygon or MultiPolygon (or a Feature of one), not a 'Point'"),
    ("project-check", {"geometry": "POLYGON((0 0, 1 0, 1 1, 0 0))"}, "must be a GeoJSON Polygon or MultiPolygon"),
    ("project-check", {"geometry": {"type": "FeatureCollection", "features": []}},
     "must be a GeoJSON Polygon or MultiPolygon (or a Feature of one), not a 'FeatureCollection'"),
    ("project-check", {"geometry": {"type": "Circle", "coordinates": [118.1, 24.5], "radius": 50}},
     "must be a GeoJSON Polygon or MultiPolygon (or a Feature of one), not a 'Circle'"),
    ("project-check", {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}},
     "the project lies outside the area of use of the working CRS EPSG:4548"),
    ("project-check", {"geometry": {"type": "Polygon", "coordinates": [[[118.1, 24.5]]]}}, "not valid GeoJSON"),
    ("point-lookup", {"x": 118.1, "y": 24.5, "crs": "EPSG:32650"}, "CRS 'EPSG:32650' is not supported here"),
    ("point-lookup", {"x": 118.1, "y": 24.5, "crs": "EPSG:nonsense"}, "unknown CRS"),
    ("point-lookup", {"x": 116.0, "y": 40.0}, "lies outside the base map"),
    ("point-lookup", {"x": 0.0, "y": 0.0}, "the point (0.0, 0.0) in OGC:CRS84 lies outside the area of use of the working CRS"),
    ("point-lookup", {"x": "east", "y": 24.5}, "input 'x' must be a number"),
    ("point-lookup", {"y": 24.5}, "input 'x' is missing"),
    ("hazard-exposure", {"raster": "nope", "threshold": 0.5}, "no registered raster 'nope'"),
    ("hazard-exposure", {"threshold": 0.5}, "give exactly one of 'raster'"),
    ("hazard-exposure", {"raster_file": {"value": "bm90IGEgdGlmZg=="}, "threshold": 0.5}, "the uploaded raster: not a readable raster"),
    ("hazard-exposure", {"raster_file": {"value": "***"}, "threshold": 0.5}, "not valid base64"),
    ("hazard-exposure", {"raster": "flood_depth", "threshold": 0.5, "band": 3}, "band 3 asked for"),
])
def test_bad_input_is_a_400_with_the_message(served: Server, process: str, inputs: dict, message: str) -> None:
    assert_problem(execute(served, process, inputs), 400, message)


def test_raster_outside_the_data_and_oversize_uploads_are_refused(served: Server, tmp_path: Path) -> None:
    far = execute(served, "hazard-exposure", {"raster_file": _far_raster(tmp_path), "threshold": 0.5})
    assert far.status_code == 400 and "does not overlap the base map" in far.json()["description"]
    limit = MAX_UPLOAD_MB * 2**20
    within_body = base64.b64encode(b"\0" * int(limit * 1.02)).decode()  # the body passes, the raster is too large
    response = execute(served, "hazard-exposure", {"raster_file": within_body, "threshold": 0.5})
    assert response.status_code == 400 and "larger than the 1 MB limit" in response.json()["description"]
    huge = base64.b64encode(b"\0" * int(limit * 1.2)).decode()  # refused before the body is read
    response = execute(served, "hazard-exposure", {"raster_file": huge, "threshold": 0.5})
    assert_problem(response, 413, "larger than the upload limit")


@pytest.mark.parametrize(("depth", "message"), [
    (20, "not valid GeoJSON: a ring is an array of [x, y] positions"),
    (1000, f"the body nests arrays and objects more than {MAX_BODY_DEPTH} deep"),
])
def test_project_coordinates_nested_deep_are_a_400(served: Server, depth: int, message: str) -> None:
    # sent as a client would (Python's json cannot even encode 1,000 levels; pygeoapi's could not decode them)
    body = '{"inputs": {"geometry": {"type": "Polygon", "coordinates": ' + "[" * depth + "0, 0" + "]" * depth + "}}}"
    response = requests.post(f"{served.url}/processes/project-check/execution", data=body, timeout=60,
                             headers={**bearer("tester"), "Content-Type": "application/json"})
    assert_problem(response, 400, message)


def test_get_lookup_bad_parameters(served: Server) -> None:
    for params, message in (({"x": 118.1}, "parameter 'y' is missing"), ({"x": "a", "y": 1}, "x must be a number"),
                            ({"x": 118.1, "y": 24.5, "z": 1}, "unknown parameter 'z'"),
                            ({"x": "nan", "y": 24.5}, "x must be a finite number"),
                            ({"x": 0, "y": 0}, "lies outside the area of use of the working CRS EPSG:4548")):
        response = served.get("/lookup", **params)
        assert response.status_code == 400 and message in response.json()["description"], params
    for body in ("not an object", {"inputs": [1, 2]}, [1]):
        response = served.post("/processes/point-lookup/execution", body)
        assert response.status_code == 400 and "inputs" in response.json()["description"], body


def test_an_attackers_vrt_reads_no_file_and_sends_no_request(served: Server, tmp_path: Path) -> None:
    registered = served.settings.path(served.settings.rasters["flood_depth"].path)
    listener = Listener()
    try:
        for name, source in (("remote.vrt", f"/vsicurl/http://127.0.0.1:{listener.port}/x.tif"),
                             ("local.vrt", str(registered)), ("passwd.vrt", "/etc/passwd")):
            path = tmp_path / name
            path.write_text(vrt(source))
            response = execute(served, "hazard-exposure", {"raster_file": _uploaded(path), "threshold": 0.5})
            assert_problem(response, 400, "the uploaded raster: not a readable raster: accepted is GeoTIFF (TIFF or BigTIFF); "
                                          "VRT and formats that refer to other files are refused")
            time.sleep(0.2)
    finally:
        listener.close()
    assert listener.connections == []


def test_uploads_are_limited_by_cells_from_the_header(served: Server, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "bomb.tif"  # 25,010,001 cells of zeros: a few kB compressed
    with rasterio.open(path, "w", driver="GTiff", width=5001, height=5001, count=1, dtype="uint8", compress="deflate",
                       tiled=True, crs="EPSG:4548", transform=from_origin(*_centre(served), 1, 1)) as out:
        for row in range(0, 5001, 1024):
            out.write(np.zeros((min(1024, 5001 - row), 5001), np.uint8), 1, window=((row, min(row + 1024, 5001)), (0, 5001)))
    assert path.stat().st_size < MAX_UPLOAD_MB * 2**20 / 2
    started = time.monotonic()
    response = execute(served, "hazard-exposure", {"raster_file": _uploaded(path), "threshold": 0.5})
    assert_problem(response, 400, "the uploaded raster: 5001 × 5001 cells in 1 band(s)",
                   "more than the 25,000,000 cells allowed (server.max_raster_cells)")
    assert time.monotonic() - started < 5


def test_anonymous_callers_run_exposure_on_registered_rasters_but_upload_only_with_a_token(served: Server,
                                                                                           tmp_path: Path) -> None:
    upload = {"raster_file": _uploaded(_raster(tmp_path / "upload.tif", _centre(served))), "threshold": 1.0}
    refused = execute(served, "hazard-exposure", upload, as_=None)
    assert_problem(refused, 401, "uploading 'raster_file' to hazard-exposure needs a bearer token",
                   "access.processes.hazard-exposure.anonymous_uploads")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert execute(served, "hazard-exposure", upload, as_="outsider").status_code == 200  # a public-grade token
    assert execute(served, "hazard-exposure", {"raster": "flood_depth", "threshold": 0.5}, as_=None).status_code == 200


@pytest.fixture(scope="module")
def limited(served: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server over the same database with one process worker, a queue of one, point lookup for internal
    callers and above, and anonymous uploads allowed."""
    def edit(data: dict) -> None:
        data["server"].update(process_workers=1, process_queue=1)
        data["access"]["processes"] = {"point-lookup": {"grade": "internal"},
                                       "hazard-exposure": {"anonymous_uploads": True}}

    with reconfigured_server(served, tmp_path_factory.mktemp("limited"), edit) as server:
        yield server


def _lock_waiters(server: Server) -> int:
    return query(server.settings, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND wait_event_type = 'Lock'")[0][0]


def test_a_full_process_queue_is_a_503_at_once_and_pages_stay_quick(limited: Server, project) -> None:
    conn = connect_url(limited.settings.database.url)
    try:
        with conn.cursor() as cur, ThreadPoolExecutor(3) as pool:
            # the executions wait on this lock in the database: the one running holds the one worker until it is released
            cur.execute("LOCK TABLE geoservice.basemap_patch IN ACCESS EXCLUSIVE MODE")
            first = pool.submit(execute, limited, "hazard-exposure", {"raster": "flood_depth", "threshold": 0.5})
            deadline = time.monotonic() + 60
            while _lock_waiters(limited) == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _lock_waiters(limited) == 1
            others = [pool.submit(execute, limited, "hazard-exposure", {"raster": "flood_depth", "threshold": 0.5}),
                      pool.submit(execute, limited, "project-check", {"geometry": project[1], "crs": "EPSG:4490"})]
            done, _ = wait(others, timeout=60, return_when=FIRST_COMPLETED)
            busy = next(iter(done)).result()  # one waits in line, the other finds the line full
            assert_problem(busy, 503, "the server is busy: 1 process execution(s) running and 1 waiting",
                           "server.process_workers, server.process_queue")
            assert busy.headers["Retry-After"] == "10"
            assert _lock_waiters(limited) == 1  # the one in line does not run
            started = time.monotonic()
            assert limited.get("/", f="json").status_code == 200  # pages are not held up by the executions
            assert time.monotonic() - started < 5
            conn.rollback()
            statuses = sorted([first.result(timeout=60).status_code] + [f.result(timeout=60).status_code for f in others])
    finally:
        conn.close()
    assert statuses == [200, 200, 503]


def test_access_processes_sets_a_grade_and_allows_anonymous_uploads(limited: Server, tmp_path: Path) -> None:
    anonymous = {p["id"] for p in limited.get("/processes", as_=None, f="json").json()["processes"]}
    assert anonymous == {"hazard-exposure"}  # point lookup needs internal here; project check the conflicts (internal)
    assert_problem(limited.get("/lookup", as_=None, x=118.09, y=24.48), 404, "no point lookup here")
    assert limited.get("/lookup", as_="viewer", x=118.09, y=24.48).status_code == 200
    upload = {"raster_file": _uploaded(_raster(tmp_path / "upload.tif", _centre(limited))), "threshold": 1.0}
    assert execute(limited, "hazard-exposure", upload, as_=None).status_code == 200
