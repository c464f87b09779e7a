"""Queries for location services: point lookup, project check and hazard exposure, on the demo data; what a caller
may not give them (other GeoJSON types, deep nesting, places outside the working CRS's zone, rasters that are not
plain GeoTIFFs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
import yaml
from pyproj import Transformer

from geoservice.conflicts import load_rules
from geoservice.review import detect  # the session's demo database keeps its review cases linked
from geoservice.db.connection import connect_url
from geoservice.ingest import activate_version, ingest_layer, list_versions, load_definition
from geoservice.queries import QueryError, check_project, lookup_point
from geoservice.queries.check import project_from_geojson
from geoservice.settings import RasterSettings
from sql_helpers import active, query

TO_CRS84 = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)


@pytest.fixture()
def cur(demo_settings):
    conn = connect_url(demo_settings.database.url)
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def test_lookup_matches_sql_in_every_crs(demo_settings, cur) -> None:
    rows = query(demo_settings, """
        SELECT p.id, p.land_code, p.plan_code, p.district_code, ST_X(pt), ST_Y(pt) FROM (
            SELECT p.*, ST_PointOnSurface(p.geom) AS pt FROM geoservice.basemap_patch p
            JOIN geoservice.integration_run r ON p.run_id = ANY(r.chain) AND (p.until_run IS NULL OR p.until_run > r.id) WHERE r.is_current ORDER BY p.id LIMIT 20) p""")
    for patch_id, land, plan, district, x, y in rows:
        found = lookup_point(cur, demo_settings, x, y, "EPSG:4548")
        assert (found["patch"]["id"], found["patch"]["land_use"]["code"], found["patch"]["urban_plan"]["code"],
                found["district"]["code"]) == (patch_id, land, plan, district)
        lon, lat = TO_CRS84.transform(x, y)
        assert lookup_point(cur, demo_settings, lon, lat)["patch"]["id"] == patch_id
        assert lookup_point(cur, demo_settings, lon, lat, "EPSG:4490")["patch"]["id"] == patch_id


def test_lookup_lines_and_conflicts(demo_settings, cur) -> None:
    x, y = query(demo_settings, f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM {active('red_line')} r "
                                "ORDER BY id LIMIT 1) q")[0]
    found = lookup_point(cur, demo_settings, x, y, "EPSG:4548")
    assert "red_line" in {line["kind"] for line in found["protection_lines"]}
    x, y, cid = query(demo_settings, "SELECT ST_X(p), ST_Y(p), id FROM (SELECT ST_PointOnSurface(c.geom) p, c.id FROM "
                                     "geoservice.conflict c JOIN geoservice.detection_run r ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) "
                                     "WHERE r.is_current AND c.status = 'open' ORDER BY c.area_m2 DESC LIMIT 1) q")[0]
    conflicts = lookup_point(cur, demo_settings, x, y, "EPSG:4548")["conflicts"]
    assert cid in {c["id"] for c in conflicts} and all(c["title_zh"] for c in conflicts)


def test_lookup_bad_input(demo_settings, cur) -> None:
    with pytest.raises(QueryError, match=r"lies outside the base map"):
        lookup_point(cur, demo_settings, 116.0, 40.0)
    with pytest.raises(QueryError, match=r"unknown CRS 'EPSG:999999'"):
        lookup_point(cur, demo_settings, 118.1, 24.5, "EPSG:999999")
    with pytest.raises(QueryError, match=r"not supported here"):
        lookup_point(cur, demo_settings, 118.1, 24.5, "EPSG:32650")


def test_check_bad_geometry(demo_settings, cur) -> None:
    rules = load_rules(demo_settings.path(demo_settings.paths.rules))
    bow_tie = shapely.Polygon([(118.1, 24.5), (118.11, 24.51), (118.11, 24.5), (118.1, 24.51)])
    with pytest.raises(QueryError, match=r"invalid: Self-intersection"):
        check_project(cur, demo_settings, rules, bow_tie)
    with pytest.raises(QueryError, match=r"must be a Polygon or MultiPolygon, not a Point"):
        check_project(cur, demo_settings, rules, shapely.Point(118.1, 24.5))


def nested(depth: int) -> list:
    """[[[…[0, 0]…]]] `depth` lists deep."""
    value: list = [0, 0]
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(("geojson", "message"), [
    ({"type": "FeatureCollection", "features": []}, "must be a GeoJSON Polygon or MultiPolygon (or a Feature of one), "
                                                    "not a 'FeatureCollection'"),
    ({"type": "Circle", "coordinates": [118.1, 24.5], "radius": 100}, "not a 'Circle'"),
    ({"type": "GeometryCollection", "geometries": []}, "not a 'GeometryCollection'"),
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [118.1, 24.5]}}, "not a 'Point'"),
    ([1, 2], "not something else"),
    ({"type": "Polygon", "coordinates": nested(1000)}, "not valid GeoJSON: a ring is an array of [x, y] positions"),
    ({"type": "MultiPolygon", "coordinates": nested(1000)}, "not valid GeoJSON: a ring is an array of [x, y] positions"),
    ({"type": "Polygon", "coordinates": [[[118.1, 24.5], [118.2, "24.5"], [118.2, 24.6], [118.1, 24.5]]]},
     "a ring is an array of [x, y] positions"),
    ({"type": "Polygon", "coordinates": 7}, "a Polygon's coordinates are an array of rings of [x, y] positions"),
    ({"type": "Polygon", "coordinates": [[[118.1, 24.5]]]}, "not valid GeoJSON: A linearring requires at least 4"),
])
def test_project_geojson_other_than_polygons_is_refused(geojson, message: str) -> None:
    with pytest.raises(QueryError) as refused:
        project_from_geojson(geojson)
    assert message in str(refused.value)


def test_project_geojson_polygons_and_features() -> None:
    ring = [[118.1, 24.5], [118.11, 24.5], [118.11, 24.51], [118.1, 24.5]]
    assert project_from_geojson({"type": "Polygon", "coordinates": [ring]}).equals(shapely.Polygon(ring))
    multi = project_from_geojson({"type": "Feature", "properties": {},
                                  "geometry": {"type": "MultiPolygon", "coordinates": [[ring], [[[x + 1, y] for x, y in ring]]]}})
    assert multi.geom_type == "MultiPolygon" and len(multi.geoms) == 2


def test_places_outside_the_working_crs_area_of_use_are_refused(demo_settings, cur) -> None:
    rules = load_rules(demo_settings.path(demo_settings.paths.rules))
    square = shapely.box(0.0, 0.0, 0.01, 0.01)  # 1.23e6 m² at lon 0 / lat 0, far from the 117°E zone of EPSG:4548
    zone = "outside the area of use of the working CRS EPSG:4548, CGCS2000 / 3-degree Gauss-Kruger CM 117E (115.5°E–118.5°E"
    with pytest.raises(QueryError, match=r"^the project lies outside the area of use") as refused:
        check_project(cur, demo_settings, rules, square)
    assert zone in str(refused.value)
    with pytest.raises(QueryError, match=r"^the point \(0.0, 0.0\) in OGC:CRS84 lies outside the area of use"):
        lookup_point(cur, demo_settings, 0.0, 0.0)
    with pytest.raises(QueryError, match=r"^the point \(10.0, 20.0\) in EPSG:4548 lies outside the area of use"):
        lookup_point(cur, demo_settings, 10.0, 20.0, "EPSG:4548")  # in the working CRS itself
    with pytest.raises(QueryError, match=r"^the point \(24.48, 118.09\) in OGC:CRS84: coordinates cannot be taken from "
                                         r"OGC:CRS84 to EPSG:4548 \(swapped axes\?\)"):
        lookup_point(cur, demo_settings, 24.48, 118.09)  # latitude first
    assert lookup_point(cur, demo_settings, 118.09, 24.48)["patch"]["id"] is not None  # Xiamen lies inside


def test_check_equals_full_detection_with_the_project(demo_settings, cur, tmp_path: Path) -> None:
    x, y = query(demo_settings, f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM {active('red_line')} r "
                                "ORDER BY id LIMIT 1) q")[0]
    ring = np.array([(-400, -300), (500, -350), (450, 400), (-350, 380)]) + (x, y)
    project_4548 = shapely.Polygon(ring)
    project_4490 = shapely.Polygon(np.column_stack(
        Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True).transform(ring[:, 0], ring[:, 1])))
    rules = load_rules(demo_settings.path(demo_settings.paths.rules))
    checked = check_project(cur, demo_settings, rules, project_4490, "EPSG:4490", "1001")
    assert {c["rule_id"] for c in checked} >= {"projects_in_red_line"}

    definition_file = demo_settings.path(demo_settings.paths.layers) / "projects.yaml"
    definition = yaml.safe_load(definition_file.read_text(encoding="utf-8"))
    source = definition_file.parent / definition["source"]["path"]
    meta, _, geometry, fields = pyogrio.raw.read(source)
    to_4490 = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
    extra = shapely.transform(project_4548, lambda xy: np.column_stack(to_4490.transform(xy[:, 0], xy[:, 1])))
    columns = {name: np.append(values.astype(object), None) for name, values in zip(meta["fields"], fields)}
    columns[definition["id_field"]][-1] = "CHECK-TEST"
    columns[definition["code_field"]][-1] = "1001"
    path = tmp_path / "projects_plus_one.geojson"
    pyogrio.raw.write(path, np.append(geometry, shapely.to_wkb(extra)), list(columns.values()), list(columns),
                      crs="EPSG:4490", driver="GeoJSON", geometry_type="Unknown")
    (tmp_path / "projects.yaml").write_text(yaml.safe_dump({**definition, "source": {"path": path.name}}, allow_unicode=True))
    before = [v.version for v in list_versions(demo_settings, "projects") if v.is_active][0]
    try:
        ingest_layer(demo_settings, load_definition(tmp_path / "projects.yaml"))
        detect(demo_settings)
        stored = query(demo_settings, "SELECT rule_id, area_m2, code_a, source_id_b, district_code FROM geoservice.conflict c "
                                      "JOIN geoservice.detection_run r ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) WHERE r.is_current "
                                      "AND source_id_a = 'CHECK-TEST' ORDER BY 1, 4, 5")
    finally:
        activate_version(demo_settings, "projects", before)
        detect(demo_settings, full=True)  # the session's demo database keeps full runs
    ours = sorted((c["rule_id"], c["area_m2"], c["code_a"], c["source_id_b"], c["district_code"]) for c in checked)
    assert len(ours) == len(stored)
    for mine, theirs in zip(ours, stored):
        assert mine[0] == theirs[0] and mine[2:] == theirs[2:]
        assert mine[1] == pytest.approx(theirs[1], rel=1e-9)  # the ingest round trip (EPSG:4490 file) moves nothing


def test_exposure_by_hand_on_a_generated_raster(demo_settings, cur, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from geoservice.queries import hazard_exposure

    x0, y0 = query(demo_settings, "SELECT floor(ST_X(p) / 100) * 100 - 2500, floor(ST_Y(p) / 100) * 100 - 2500 FROM "
                                  "(SELECT ST_Centroid(ST_Collect(geom)) p FROM geoservice.basemap_patch p "
                                  "JOIN geoservice.integration_run r ON p.run_id = ANY(r.chain) AND (p.until_run IS NULL OR p.until_run > r.id) WHERE r.is_current "
                                  "AND district_code = '350203') q")[0]
    values = np.zeros((50, 50), dtype=np.float32)
    values[:, :25] = 2.0          # the western half is flooded 2 m deep
    values[:5, :5] = -9999.0      # nodata in the north-west corner
    path = tmp_path / "flood.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=50, count=1, dtype="float32", crs="EPSG:4548",
                       transform=from_origin(x0, y0 + 5000, 100, 100), nodata=-9999.0) as out:
        out.write(values, 1)
    result = hazard_exposure(cur, demo_settings, path, threshold=1.0)

    rows = query(demo_settings, "SELECT district_code, ST_AsBinary(geom) FROM geoservice.basemap_patch p "
                                "JOIN geoservice.integration_run r ON p.run_id = ANY(r.chain) AND (p.until_run IS NULL OR p.until_run > r.id) WHERE r.is_current "
                                "AND geom && ST_MakeEnvelope(%s, %s, %s, %s, 4548)", x0, y0, x0 + 5000, y0 + 5000)
    cx, cy = np.meshgrid(x0 + 50 + 100 * np.arange(50), y0 + 5000 - 50 - 100 * np.arange(50))
    flooded = values > 1.0
    by_district: dict[str, float] = {}
    for code, wkb in rows:  # by hand: flooded cell centres in each patch; a patch with none takes the cell under it
        patch = shapely.from_wkb(bytes(wkb))
        inside = shapely.contains_xy(patch, cx, cy)
        if inside.any():
            area = float((inside & flooded).sum()) * 100 * 100
        else:
            point = patch.point_on_surface()
            col, row = int((point.x - x0) // 100), int((y0 + 5000 - point.y) // 100)
            area = patch.area if 0 <= col < 50 and 0 <= row < 50 and flooded[row, col] else 0.0
        if area:
            by_district[code] = by_district.get(code, 0.0) + area
    got = {d["district_code"]: d["exposed_m2"] for d in result["by_district"] if d["exposed_m2"] > 0}
    assert got.keys() == by_district.keys() and got
    for code, area in by_district.items():
        assert got[code] == pytest.approx(area, rel=1e-9)
    assert result["exposed_m2"] == pytest.approx(sum(by_district.values()), rel=1e-9)
    assert all(p["exposed_m2"] > 0 for p in result["exposed_construction_patches"])


def test_a_registered_rasters_band_is_the_default_everywhere(demo_settings, cur, tmp_path: Path) -> None:
    """The CLI and the HTTP process both read a registered raster's configured band when none is asked for."""
    import rasterio

    from geoservice.queries import hazard_exposure
    from geoservice.serve.processes import HazardExposure

    flood = demo_settings.path(demo_settings.rasters["flood_depth"].path)
    two_bands = tmp_path / "two_bands.tif"
    with rasterio.open(flood) as source:
        profile = {**source.profile, "count": 2}
        depth = source.read(1)
        with rasterio.open(two_bands, "w", **profile) as out:
            out.write(np.zeros_like(depth), 1)  # band 1: nothing flooded
            out.write(depth, 2)
    rasters = {**demo_settings.rasters, "two": RasterSettings(path=two_bands, band=2)}
    settings = demo_settings.model_copy(update={"rasters": rasters})
    library = hazard_exposure(cur, settings, "two", threshold=0.5)
    assert library["band"] == 2 and library["exposed_m2"] > 0
    assert library["exposed_m2"] == hazard_exposure(cur, settings, "flood_depth", threshold=0.5)["exposed_m2"]
    assert hazard_exposure(cur, settings, "two", threshold=0.5, band=1)["exposed_m2"] == 0
    process = HazardExposure.__new__(HazardExposure)
    process.settings = settings
    assert process.run(cur, {"raster": "two", "threshold": 0.5})["band"] == 2


def test_exposure_bad_input(demo_settings, cur, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from geoservice.queries import hazard_exposure

    far = tmp_path / "far.tif"
    with rasterio.open(far, "w", driver="GTiff", width=10, height=10, count=1, dtype="float32", crs="EPSG:4548",
                       transform=from_origin(300_000, 5_000_000, 100, 100)) as out:
        out.write(np.ones((10, 10), dtype=np.float32), 1)
    with pytest.raises(QueryError, match=r"far.tif does not overlap the base map"):
        hazard_exposure(cur, demo_settings, far, 0.5)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(QueryError, match=r"junk.tif: not a readable raster"):
        hazard_exposure(cur, demo_settings, tmp_path / "junk.tif", 0.5)
    with pytest.raises(QueryError, match=r"no raster 'nope'"):
        hazard_exposure(cur, demo_settings, "nope", 0.5)
    with pytest.raises(QueryError, match=r"band 3 asked for"):
        hazard_exposure(cur, demo_settings, "flood_depth", 0.5, band=3)


def test_exposure_files_are_untrusted_registered_rasters_are_the_servers(demo_settings, cur, tmp_path: Path) -> None:
    import rasterio

    from geoservice.queries import hazard_exposure

    flood = demo_settings.path(demo_settings.rasters["flood_depth"].path)
    with rasterio.open(flood) as dataset:
        width, height, transform, crs, nodata = dataset.width, dataset.height, dataset.transform, dataset.crs, dataset.nodata
    vrt = tmp_path / "flood.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{crs.to_string()}</SRS>'
                   f"<GeoTransform>{', '.join(map(str, transform.to_gdal()))}</GeoTransform>"
                   f'<VRTRasterBand dataType="Float32" band="1"><NoDataValue>{nodata}</NoDataValue><SimpleSource>'
                   f"<SourceFilename>{flood}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
                   "</VRTDataset>")
    with pytest.raises(QueryError, match=r"flood.vrt: not a readable raster: accepted is GeoTIFF \(TIFF or BigTIFF\); "
                                         r"VRT and formats that refer to other files are refused"):
        hazard_exposure(cur, demo_settings, vrt, 0.5)
    small = demo_settings.model_copy(update={"server": demo_settings.server.model_copy(update={"max_raster_cells": 1000})})
    with pytest.raises(QueryError, match=rf"flood_depth_m.tif: {width} × {height} cells .* more than the 1,000 cells "
                                         r"allowed \(server.max_raster_cells\)"):
        hazard_exposure(cur, small, flood, 0.5)  # the same file, given as a file: untrusted
    assert hazard_exposure(cur, small, "flood_depth", 0.5)["exposed_m2"] > 0  # registered: the server's own
    registered = small.model_copy(update={"rasters": {"flood_vrt": RasterSettings(path=vrt)}})
    by_vrt = hazard_exposure(cur, registered, "flood_vrt", 0.5)
    assert by_vrt["exposed_m2"] == pytest.approx(hazard_exposure(cur, demo_settings, "flood_depth", 0.5)["exposed_m2"])


def test_cli_lookup_check_exposure(demo_settings, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "geoservice", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GEOSERVICE_DATABASE_URL": demo_settings.database.url})

    found = run("lookup", "118.09", "24.47")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["district"]["name"] == "思明区"
    outside = run("lookup", "116", "40")
    assert outside.returncode == 1 and outside.stderr.startswith("error: the point (116.0, 40.0)") and "Traceback" not in outside.stderr
    x, y = query(demo_settings, f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM {active('red_line')} r "
                                "ORDER BY id LIMIT 1) q")[0]
    project = tmp_path / "project.geojson"
    project.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                       "geometry": shapely.geometry.mapping(shapely.box(x - 200, y - 200, x + 200, y + 200))}]}))
    checked = run("check", str(project), "--crs", "EPSG:4548", "--code", "0701", "--format", "json")
    assert checked.returncode == 0, checked.stderr
    assert "projects_in_red_line" in {c["rule_id"] for c in json.loads(checked.stdout)}
    assert run("check", str(project), "--crs", "EPSG:4548").stdout.count("conflict(s)") == 1
    exposure = run("exposure", "flood_depth", "--threshold", "0.5", "--format", "json")
    assert exposure.returncode == 0, exposure.stderr
    assert json.loads(exposure.stdout)["exposed_m2"] > 0
    handed = tmp_path / "handed.vrt"  # a file from someone else: the same rules as an upload
    handed.write_text(f"<VRTDataset><SourceFilename>{demo_settings.path(demo_settings.rasters['flood_depth'].path)}"
                      "</SourceFilename></VRTDataset>")
    refused = run("exposure", str(handed), "--threshold", "0.5")
    assert refused.returncode == 1 and "handed.vrt: not a readable raster: accepted is GeoTIFF" in refused.stderr
    guinea = tmp_path / "guinea.geojson"  # lon 0 / lat 0, far outside the working CRS's zone
    guinea.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                      "geometry": shapely.geometry.mapping(shapely.box(0, 0, 0.01, 0.01))}]}))
    far = run("check", str(guinea))
    assert far.returncode == 1 and far.stderr.startswith("error: the project lies outside the area of use"), far.stderr
