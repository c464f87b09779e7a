"""GCJ-02 and BD-09: the conversions against reference points of independent public implementations and by round
trip, the SQL forward formulas against the Python, and every place a client sends or receives coordinates — /lookup
(the same answer for one place given in CRS84, GCJ-02 and BD-09), `geoservice lookup`, project-check in and out, items'
`crs`, `bbox-crs` and `filter-crs` — with points outside China refused."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import shapely
import shapely.geometry
from click.testing import CliRunner
from pyproj import Transformer

from geoservice import gcj02
from geoservice.gcj02 import BD09, GCJ02, URIS, OutsideChinaError
from geoservice.serve.crs import CRS84, canonical_uri, serving_crs
from servers import Server, reconfigured_server
from sql_helpers import active, query

TO_CRS84 = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)

# Reference values (longitude, latitude), each from an independent public implementation, recorded here as published.
# wandergis/coordtransform, test/app.js (JavaScript; its README shows the same): input (116.404, 39.915).
WANDERGIS_INPUT = (116.404, 39.915)
WANDERGIS_WGS84_TO_GCJ02 = (116.41024449916938, 39.91640428150164)
WANDERGIS_GCJ02_TO_BD09 = (116.41036949371029, 39.92133699351021)
#: its closed-form approximations of the backward conversions (ours iterate to < 1 mm: they agree to ~5 cm)
WANDERGIS_GCJ02_TO_WGS84 = (116.39775550083061, 39.91359571849836)
WANDERGIS_BD09_TO_GCJ02 = (116.39762729119315, 39.90865673957631)
# googollee/eviltransform, python/test.py: (wgsLat, wgsLng, gcjLat, gcjLng) — Shanghai, Shenzhen, Beijing.
EVILTRANSFORM_WGS_GCJ = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]
# caijun/geoChina (R), the examples of gcj2bd/bd2gcj: Beijing railway station, GCJ-02 (39.90245, 116.42703) and
# BD-09 (39.90851, 116.43351) as (lat, lon), given to 5 decimals.
GEOCHINA_GCJ02 = (116.42703, 39.90245)
GEOCHINA_BD09 = (116.43351, 39.90851)

#: the forward image of a backward conversion lands this close to where it started (1e-10° ≈ 0.01 mm; the issue asks < 1 mm)
ROUND_TRIP_DEG = 1e-9


def test_forward_matches_the_published_values() -> None:
    assert gcj02.from_wgs84(GCJ02, *WANDERGIS_INPUT) == pytest.approx(WANDERGIS_WGS84_TO_GCJ02, abs=1e-12)
    for wgs_lat, wgs_lon, gcj_lat, gcj_lon in EVILTRANSFORM_WGS_GCJ:
        assert gcj02.from_wgs84(GCJ02, wgs_lon, wgs_lat) == pytest.approx((gcj_lon, gcj_lat), abs=1e-12)
    # BD-09 from GCJ-02 alone: the WGS84 whose GCJ-02 is the input, then forward to BD-09
    wgs = gcj02.to_wgs84(GCJ02, *WANDERGIS_INPUT)
    assert gcj02.from_wgs84(BD09, *wgs) == pytest.approx(WANDERGIS_GCJ02_TO_BD09, abs=1e-12)
    wgs = gcj02.to_wgs84(GCJ02, *GEOCHINA_GCJ02)
    assert gcj02.from_wgs84(BD09, *wgs) == pytest.approx(GEOCHINA_BD09, abs=1e-5)  # the published rounding


def test_backward_matches_the_published_approximations_and_is_exact() -> None:
    wgs = gcj02.to_wgs84(GCJ02, *WANDERGIS_INPUT)
    assert wgs == pytest.approx(WANDERGIS_GCJ02_TO_WGS84, abs=1e-6)  # their one-step inverse is ~5 cm off
    assert gcj02.from_wgs84(GCJ02, *wgs) == pytest.approx(WANDERGIS_INPUT, abs=ROUND_TRIP_DEG)
    for wgs_lat, wgs_lon, gcj_lat, gcj_lon in EVILTRANSFORM_WGS_GCJ:
        assert gcj02.to_wgs84(GCJ02, gcj_lon, gcj_lat) == pytest.approx((wgs_lon, wgs_lat), abs=ROUND_TRIP_DEG)
    # BD-09 → GCJ-02: the WGS84 of a BD-09 point, forward to GCJ-02, is wandergis' closed form to ~5 cm
    gcj = gcj02.from_wgs84(GCJ02, *gcj02.to_wgs84(BD09, *WANDERGIS_INPUT))
    assert gcj == pytest.approx(WANDERGIS_BD09_TO_GCJ02, abs=1e-6)
    wgs = gcj02.to_wgs84(BD09, *GEOCHINA_BD09)
    assert gcj02.from_wgs84(GCJ02, *wgs) == pytest.approx(GEOCHINA_GCJ02, abs=1e-5)


@pytest.mark.parametrize("system", [GCJ02, BD09])
def test_round_trips_below_a_millimetre_over_china(system: str) -> None:
    rng = np.random.default_rng(19)
    x, y = rng.uniform(73.0, 135.0, 20_000), rng.uniform(3.9, 53.5, 20_000)
    shifted = gcj02.from_wgs84(system, x, y)
    back = gcj02.to_wgs84(system, *shifted)
    assert np.abs(back[0] - x).max() < ROUND_TRIP_DEG and np.abs(back[1] - y).max() < ROUND_TRIP_DEG
    again = gcj02.from_wgs84(system, *back)
    assert np.abs(again[0] - shifted[0]).max() < ROUND_TRIP_DEG and np.abs(again[1] - shifted[1]).max() < ROUND_TRIP_DEG
    assert 1e-4 < np.hypot(shifted[0] - x, shifted[1] - y).min()  # everything moved (GCJ-02: 100–700 m)
    polygon = shapely.box(118.0, 24.4, 118.2, 24.6)
    assert shapely.equals_exact(gcj02.geometry_to_wgs84(system, gcj02.geometry_from_wgs84(system, polygon)), polygon,
                                ROUND_TRIP_DEG)


def test_outside_china_is_refused_and_names_are_recognised() -> None:
    for x, y in ((0.0, 0.0), (151.2, -33.9), (71.9, 30.0), (118.0, 56.0)):
        for convert in (gcj02.from_wgs84, gcj02.to_wgs84):
            with pytest.raises(OutsideChinaError, match="lies outside China; GCJ-02 is defined only within longitude"):
                convert(GCJ02, np.array([118.0, x]), np.array([24.5, y]))
    for name in ("GCJ02", "gcj-02", "GCJ_02", URIS[GCJ02], URIS[GCJ02].lower()):
        assert gcj02.system_of(name) == GCJ02 and canonical_uri(name) == URIS[GCJ02]
    for name in ("BD09", "bd-09", "BD09LL", URIS[BD09]):
        assert gcj02.system_of(name) == BD09 and canonical_uri(name) == URIS[BD09]
    assert gcj02.system_of("EPSG:4326") is None and gcj02.system_of("WGS84") is None
    crs = serving_crs("GCJ-02")
    assert (crs.uri, crs.srid, crs.yx, crs.system) == (URIS[GCJ02], 4326, False, GCJ02)


def test_sql_forward_formulas_agree_with_python(settings) -> None:
    polygon = shapely.MultiPolygon([
        shapely.Polygon([(118.0, 24.4), (118.1, 24.4), (118.1, 24.5), (118.0, 24.4)],
                        [[(118.05, 24.42), (118.07, 24.42), (118.07, 24.43), (118.05, 24.42)]]),
        shapely.segmentize(shapely.box(100.2, 30.5, 101.3, 31.6), 0.05)])
    for system in (GCJ02, BD09):
        (wkb,) = query(settings, "SELECT ST_AsBinary(geoservice.gcj02_shift(ST_GeomFromText(%s, 4326), %s))",
                       polygon.wkt, system == BD09)[0]
        found, expected = shapely.from_wkb(bytes(wkb)), gcj02.geometry_from_wgs84(system, polygon)
        assert found.geom_type == "MultiPolygon" and shapely.get_num_interior_rings(found.geoms[0]) == 1
        assert np.abs(shapely.get_coordinates(found) - shapely.get_coordinates(expected)).max() < 1e-12


# -- over HTTP and the CLI, on the session's demo server -----------------------------------------------------------

@pytest.fixture(scope="module")
def place(served: Server) -> tuple[float, float]:
    """A point well inside a red-line feature, in CRS84."""
    x, y = query(served.settings, f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM {active('red_line')} "
                                  "r ORDER BY id LIMIT 1) q")[0]
    return TO_CRS84.transform(x, y)


def test_lookup_gives_the_same_answer_in_crs84_gcj02_and_bd09(served: Server, place) -> None:
    lon, lat = place
    plain = served.get("/lookup", x=lon, y=lat)
    assert plain.status_code == 200 and plain.headers["Content-Crs"] == f"<{CRS84}>"
    expected = plain.json()
    assert expected["protection_lines"] and expected["crs"] == "OGC:CRS84"
    for system in (GCJ02, BD09):
        x, y = gcj02.from_wgs84(system, lon, lat)
        for name in (URIS[system], system.upper()):
            response = served.get("/lookup", x=float(x), y=float(y), crs=name)
            assert response.status_code == 200, response.text
            assert response.headers["Content-Crs"] == f"<{URIS[system]}>"
            found = response.json()
            assert found["crs"] == found["point"]["crs"] == URIS[system]
            assert (found["point"]["x"], found["point"]["y"]) == (float(x), float(y))
            assert found["point"]["working"] == pytest.approx(expected["point"]["working"], abs=1e-3)  # < 1 mm apart
            assert {k: v for k, v in found.items() if k not in ("crs", "point")} == \
                   {k: v for k, v in expected.items() if k not in ("crs", "point")}
        executed = served.post("/processes/point-lookup/execution", {"inputs": {"x": float(x), "y": float(y), "crs": system}})
        assert executed.status_code == 200 and executed.json()["patch"] == expected["patch"]
    # the place sent as CRS84 though it is GCJ-02 (what the issue warns of) lands hundreds of metres away
    x, y = gcj02.from_wgs84(GCJ02, lon, lat)
    moved = served.get("/lookup", x=float(x), y=float(y)).json()
    assert np.hypot(*np.subtract(moved["point"]["working"], expected["point"]["working"])) > 300


def test_lookup_outside_china_is_a_400(served: Server) -> None:
    for crs in ("GCJ02", "BD09"):
        response = served.get("/lookup", x=151.2, y=-33.9, crs=crs)
        assert response.status_code == 400
        assert "lies outside China" in response.json()["description"]


def test_cli_lookup_and_check_in_gcj02(served: Server, place, tmp_path) -> None:
    from geoservice.cli import cli

    x, y = gcj02.from_wgs84(GCJ02, *place)
    runner = CliRunner()
    env = {"GEOSERVICE_DATABASE_URL": served.settings.database.url}
    result = runner.invoke(cli, ["lookup", repr(float(x)), repr(float(y)), "--crs", "GCJ-02"], env=env)
    assert result.exit_code == 0, result.output
    found = orjson.loads(result.output)
    assert found["crs"] == URIS[GCJ02] and found["patch"] == served.get("/lookup", x=place[0], y=place[1]).json()["patch"]
    refused = runner.invoke(cli, ["lookup", "2.35", "48.85", "--crs", "BD09"], env=env)  # Paris
    assert refused.exit_code != 0 and "lies outside China; BD-09 is defined only within" in str(refused.exception)
    lon, lat = place
    square = shapely.box(lon - 0.004, lat - 0.003, lon + 0.004, lat + 0.003)
    checked = {}
    for name, geometry in (("crs84", square), ("gcj02", gcj02.geometry_from_wgs84(GCJ02, square))):
        path = tmp_path / f"{name}.geojson"
        path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(geometry)}]}))
        crs = ["--crs", "GCJ02"] if name == "gcj02" else []
        result = runner.invoke(cli, ["check", str(path), *crs, "--format", "json"], env=env)
        assert result.exit_code == 0, result.output
        checked[name] = orjson.loads(result.output)
    assert checked["crs84"] and {c["crs"] for c in checked["gcj02"]} == {URIS[GCJ02]}
    for mine, theirs in zip(checked["gcj02"], checked["crs84"], strict=True):
        assert mine["rule_id"] == theirs["rule_id"] and mine["area_m2"] == pytest.approx(theirs["area_m2"], rel=1e-6)
        assert shapely.equals_exact(gcj02.geometry_to_wgs84(GCJ02, shapely.geometry.shape(mine["geometry"])),
                                    shapely.geometry.shape(theirs["geometry"]), 1e-8)


def test_project_check_in_and_out_in_gcj02(served: Server, place) -> None:
    lon, lat = place
    square = shapely.box(lon - 0.004, lat - 0.003, lon + 0.004, lat + 0.003)
    plain = served.post("/processes/project-check/execution", {"inputs": {"geometry": shapely.geometry.mapping(square)}})
    assert plain.status_code == 200, plain.text
    expected = plain.json()
    assert expected["numberReturned"] > 0 and expected["crs"] == "OGC:CRS84"
    for system in (GCJ02, BD09):
        shifted = gcj02.geometry_from_wgs84(system, square)
        answer = served.post("/processes/project-check/execution",
                             {"inputs": {"geometry": shapely.geometry.mapping(shifted), "crs": URIS[system]}})
        assert answer.status_code == 200, answer.text
        found = answer.json()
        assert found["crs"] == URIS[system]
        assert [f["properties"]["rule_id"] for f in found["features"]] == \
               [f["properties"]["rule_id"] for f in expected["features"]]
        for mine, theirs in zip(found["features"], expected["features"]):
            assert mine["properties"]["area_m2"] == pytest.approx(theirs["properties"]["area_m2"], rel=1e-6)
            piece = shapely.geometry.shape(mine["geometry"])  # in the caller's system: inside the shifted square
            assert piece.within(shifted.buffer(1e-7))
            assert shapely.equals_exact(gcj02.geometry_to_wgs84(system, piece),
                                        shapely.geometry.shape(theirs["geometry"]), 1e-8)
    far = served.post("/processes/project-check/execution", {"inputs": {"geometry": shapely.geometry.mapping(
        shapely.box(151.2, -33.9, 151.21, -33.89)), "crs": "GCJ02"}})
    assert far.status_code == 400 and "lies outside China" in far.json()["description"]


def test_items_crs_bbox_and_filter_in_gcj02_and_bd09(served: Server, place) -> None:
    crs_list = served.get("/collections/basemap").json()["crs"]
    assert URIS[GCJ02] in crs_list and URIS[BD09] in crs_list
    lon, lat = place
    box = (lon - 0.002, lat - 0.002, lon + 0.002, lat + 0.002)
    plain = served.items("basemap", bbox=",".join(map(str, box)), limit=100)
    ids = sorted(f["id"] for f in plain["features"])
    assert ids
    for system in (GCJ02, BD09):
        response = served.get("/collections/basemap/items", bbox=",".join(map(str, box)), limit=100, crs=URIS[system])
        assert response.status_code == 200 and response.headers["Content-Crs"] == f"<{URIS[system]}>"
        shifted = {f["id"]: f["geometry"] for f in response.json()["features"]}
        for feature in plain["features"]:  # the same features, every vertex moved by the published algorithm
            expected = gcj02.geometry_from_wgs84(system, shapely.geometry.shape(feature["geometry"]))
            assert np.abs(shapely.get_coordinates(shapely.geometry.shape(shifted[feature["id"]]))
                          - shapely.get_coordinates(expected)).max() < 2e-8
        one = served.get(f"/collections/basemap/items/{ids[0]}", crs=system)
        assert one.status_code == 200 and one.headers["Content-Crs"] == f"<{URIS[system]}>"
        # a point query in the system selects what the same point in CRS84 selects
        x, y = (float(v) for v in gcj02.from_wgs84(system, lon, lat))
        tiny = served.items("basemap", bbox=f"{x - 1e-6},{y - 1e-6},{x + 1e-6},{y + 1e-6}", **{"bbox-crs": system})
        crs84_tiny = served.items("basemap", bbox=f"{lon - 1e-6},{lat - 1e-6},{lon + 1e-6},{lat + 1e-6}")
        assert sorted(f["id"] for f in tiny["features"]) == sorted(f["id"] for f in crs84_tiny["features"]) != []
        filtered = served.items("basemap", filter=f"S_INTERSECTS(geometry, POINT({x} {y}))", **{"filter-crs": URIS[system]})
        assert [f["id"] for f in filtered["features"]] == [f["id"] for f in crs84_tiny["features"]]
        literal = {"op": "s_intersects", "args": [{"property": "geometry"}, {
            "type": "Point", "coordinates": [x, y], "crs": {"type": "name", "properties": {"name": URIS[system]}}}]}
        by_json = served.items("basemap", filter=orjson.dumps(literal).decode(), **{"filter-lang": "cql2-json"})
        assert [f["id"] for f in by_json["features"]] == [f["id"] for f in crs84_tiny["features"]]
    for params in ({"bbox": "150,-34,151,-33", "bbox-crs": "GCJ02"},
                   {"filter": "S_INTERSECTS(geometry, POINT(151.2 -33.9))", "filter-crs": "BD09"}):
        refused = served.get("/collections/basemap/items", **params)
        assert refused.status_code == 400 and "lies outside China" in refused.json()["description"]


# -- tiles and the /map viewer over a GCJ-02 background ------------------------------------------------------------

def test_tiles_in_gcj02_put_a_patch_where_a_gcj02_map_has_it(served: Server) -> None:
    from test_serve_tiles import _decoded, _feature_at, _inside, _path, _tile_of

    patch_id, lon, lat = _inside(served.settings, "geoservice.basemap_patch",
                                 "run_id = (SELECT id FROM geoservice.integration_run WHERE is_current)")
    x, y = (float(v) for v in gcj02.from_wgs84(GCJ02, lon, lat))
    tile = _tile_of("WebMercatorQuad", x, y)
    for name in ("GCJ02", URIS[GCJ02]):
        shifted = _decoded(served.get(_path("", "WebMercatorQuad", tile), collections="basemap", crs=name))
        assert _feature_at(shifted["basemap"], "WebMercatorQuad", tile, x, y)["id"] == patch_id
    plain = _decoded(served.get(_path("", "WebMercatorQuad", _tile_of("WebMercatorQuad", lon, lat))))
    assert _feature_at(plain["basemap"], "WebMercatorQuad", _tile_of("WebMercatorQuad", lon, lat), lon, lat)["id"] == patch_id
    tilejson = served.get("/tiles/WebMercatorQuad", f="tilejson", collections="basemap", crs="GCJ02").json()
    assert tilejson["crs"] == URIS[GCJ02] and tilejson["tiles"][0].endswith("?collections=basemap&crs=GCJ02")
    west, south, east, north = tilejson["bounds"]
    extent = served.get("/tiles/WebMercatorQuad", f="tilejson", collections="basemap").json()["bounds"]
    corners = gcj02.from_wgs84(GCJ02, np.array(extent[0::2])[[0, 0, 1, 1]], np.array(extent[1::2])[[0, 1, 0, 1]])
    assert west < corners[0].min() and east > corners[0].max() and south < corners[1].min() and north > corners[1].max()
    for path, params in (("/tiles/WorldCRS84Quad", {"crs": "GCJ02"}), ("/tiles/WebMercatorQuad", {"crs": "BD09"}),
                         (_path("", "WebMercatorQuad", tile), {"crs": "EPSG:4326"})):
        refused = served.get(path, **params)
        assert refused.status_code == 400 and "GCJ-02" in refused.json()["description"]


@pytest.fixture(scope="module")
def gcj02_viewer(served: Server, tmp_path_factory: pytest.TempPathFactory):
    """A server over the demo database whose map background is a GCJ-02 map (server.map_tiles_crs: GCJ02; no tile URL,
    so nothing is fetched from another host)."""
    with reconfigured_server(served, tmp_path_factory.mktemp("gcj02-viewer"),
                             lambda data: data["server"].update(map_tiles_crs="GCJ02")) as server:
        yield server


def test_the_viewer_over_a_gcj02_background_asks_in_gcj02(gcj02_viewer: Server, tmp_path) -> None:
    from browser import Browser
    from test_map_viewer import MAP_RECT, assert_stayed_home, open_map, settle

    patch = gcj02_viewer.items("basemap", sortby="-area_m2", limit=1)["features"][0]
    point = shapely.geometry.shape(patch["geometry"]).representative_point()  # CRS84
    expected = gcj02_viewer.get("/lookup", as_="viewer", x=point.x, y=point.y).json()["patch"]
    x, y = (float(v) for v in gcj02.from_wgs84(GCJ02, point.x, point.y))  # where a GCJ-02 map has the place
    with Browser(tmp_path / "profile") as browser:
        open_map(browser, gcj02_viewer, "viewer")
        settle(browser, f"viewer.map.jumpTo({{center: [{x}, {y}], zoom: 14}})")
        rect = browser.evaluate(MAP_RECT)
        at = browser.evaluate(f"(() => {{ const p = viewer.map.project([{x}, {y}]); return [p.x, p.y]; }})()")
        browser.click(rect["x"] + at[0], rect["y"] + at[1])
        shown = dict(browser.wait_for("(() => { const c = [...document.querySelectorAll('#place-body .code')];"
                                      " return c.length === 2 && c.map((e) => [e.dataset.plan, e.textContent]); })()"))
        for plan in ("land_use", "urban_plan"):
            assert shown[plan].startswith(f"{expected[plan]['code']} {expected[plan]['name_zh']}"), (plan, shown, expected)
        asked = [url for url in browser.requests if "/tiles/" in url or "/lookup" in url]
        assert asked and all("crs=GCJ02" in url for url in asked), asked
        assert_stayed_home(browser, gcj02_viewer)
