"""Ingest: real files (GBK shapefiles, GeoPackage, GeoJSON, zip) into a real PostGIS, and every kind of bad input."""

from __future__ import annotations

import csv
import os
import struct
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from geoservice.errors import IngestError
from geoservice.ingest import activate_version, ingest_layer, list_versions, load_definition
from geoservice.ingest.crs import helmert7_pipeline
from geoservice.ingest.definition import Helmert7
from geoservice.settings import Settings
from sql_helpers import query
from ingest_files import ORIGIN, landuse_fields, squares, write_classification, write_definition, write_file


@pytest.fixture()
def env(settings, tmp_path: Path):
    """Settings with a test crosswalk folder and output folder; a data folder; a unique layer name."""
    paths = settings.paths.model_copy(update={"classification": write_classification(tmp_path / "cls"), "output": tmp_path / "out"})
    return settings.model_copy(update={"paths": paths}), tmp_path, f"t_{uuid.uuid4().hex[:8]}"


def active(settings, layer: str) -> tuple[int, int] | None:
    """(version, feature count) of the active version, from what readers see."""
    rows = query(settings, "SELECT v.version, count(f.id) FROM geoservice.layer_version v "
                           "LEFT JOIN geoservice.feature f ON f.version_id = v.id "
                           "WHERE v.layer = %s AND v.is_active GROUP BY v.version", layer)
    return rows[0] if rows else None


def gbk_shapefile(folder: Path, name: str, count: int = 6, **fields_override) -> Path:
    fields = {**landuse_fields(count), **fields_override}
    path = write_file(folder / f"{name}.shp", squares(count), fields, crs="EPSG:4548", encoding="GBK", geometry_type="Polygon")
    (folder / f"{name}.cpg").unlink()
    return path


def load_good_version(settings, folder: Path, name: str) -> None:
    gbk_shapefile(folder, name)
    ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp")))
    assert active(settings, name) == (1, 6)


def test_gbk_shapefile_without_cpg_loads_with_codes_and_areas(env) -> None:
    settings, folder, name = env
    gbk_shapefile(folder, name)
    raw = (folder / f"{name}.dbf").read_bytes()
    assert "城镇住宅用地".encode("gbk") in raw
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp")))
    assert (summary.version, summary.rows_read, summary.kept, summary.repaired, summary.rejected) == (1, 6, 6, 0, 0)
    assert summary.encoding == "GB18030 (detected (no .cpg))" and summary.crs == "EPSG:4548"
    rows = query(settings, "SELECT f.source_row, f.source_id, f.original_code, f.class_code, f.attributes->>'DLMC', "
                           "f.area_m2, ST_Area(f.geom), ST_SRID(f.geom), GeometryType(f.geom) FROM geoservice.feature f "
                           "JOIN geoservice.layer_version v ON v.id = f.version_id WHERE v.layer = %s ORDER BY 1", name)
    assert [r[:5] for r in rows[:5]] == [
        (1, "B00000", "0101", "0101", "水田"), (2, "B00001", "0103", "0103", "旱地"), (3, "B00002", "0301", "0301", "乔木林地"),
        (4, "B00003", "0701", "0701", "城镇住宅用地"), (5, "B00004", "0601", "1001", "工业用地")]
    assert all(r[5] == pytest.approx(10_000.0) and r[6] == pytest.approx(10_000.0) for r in rows)
    assert {(r[7], r[8]) for r in rows} == {(4548, "MULTIPOLYGON")}
    assert query(settings, "SELECT construction FROM geoservice.land_class WHERE code = '1001'") == [(True,)]


def test_new_version_history_and_rollback(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    gbk_shapefile(folder, name, count=4)
    summary = ingest_layer(settings, load_definition(folder / f"{name}.yaml"))
    assert summary.version == 2 and active(settings, name) == (2, 4)
    versions = list_versions(settings, name)
    assert [(v.version, v.is_active, v.feature_count) for v in versions] == [(1, False, 6), (2, True, 4)]
    activate_version(settings, name, 1)
    assert active(settings, name) == (1, 6)
    with pytest.raises(Exception, match=r"has no version 9"):
        activate_version(settings, name, 9)


def test_geopackage_in_cgcs2000_geographic_is_reprojected(env) -> None:
    settings, folder, name = env
    to_geo = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
    boxes = squares(3)
    geographic = shapely.transform(boxes, lambda xy: np.column_stack(to_geo.transform(xy[:, 0], xy[:, 1])))
    write_file(folder / "plan.gpkg", geographic, landuse_fields(3), crs="EPSG:4490", driver="GPKG", layer="plan",
               geometry_type="Polygon")
    definition = write_definition(folder, name, "plan.gpkg", layer="plan")
    summary = ingest_layer(settings, load_definition(definition))
    assert summary.crs == "EPSG:4490" and summary.kept == 3
    stored = query(settings, "SELECT ST_XMin(f.geom), ST_YMin(f.geom) FROM geoservice.feature f JOIN geoservice.layer_version v "
                             "ON v.id = f.version_id WHERE v.layer = %s ORDER BY f.source_row", name)
    assert stored[0] == (pytest.approx(ORIGIN[0], abs=1e-3), pytest.approx(ORIGIN[1], abs=1e-3))


def test_geojson_and_zipped_shapefile(env) -> None:
    settings, folder, name = env
    gbk_shapefile(folder, "zipped")
    with zipfile.ZipFile(folder / "zipped.zip", "w") as archive:
        for suffix in (".shp", ".shx", ".dbf", ".prj"):
            archive.write(folder / f"zipped{suffix}", f"zipped{suffix}")
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, "zipped.zip")))
    assert summary.kept == 6 and summary.encoding.startswith("GB18030")
    write_file(folder / "p.geojson", squares(2), landuse_fields(2), crs="EPSG:4548", driver="GeoJSON")
    summary = ingest_layer(settings, load_definition(write_definition(folder, name + "j", "p.geojson")))
    assert summary.kept == 2


def stored_names(settings, layer: str) -> list[str]:
    return [r[0] for r in query(settings, "SELECT f.attributes->>'DLMC' FROM geoservice.feature f JOIN geoservice.layer_version v "
                                          "ON v.id = f.version_id WHERE v.layer = %s AND v.is_active ORDER BY f.source_row", layer)]


def test_zip_of_two_shapefiles_each_with_its_own_encoding(env) -> None:
    """A GBK shapefile without .cpg beside a UTF-8 one with its .cpg (listed first): each layer's own detection."""
    settings, folder, name = env
    gbk_shapefile(folder, "plan_gbk", count=3)
    write_file(folder / "plan_utf8.shp", squares(3), landuse_fields(3), crs="EPSG:4548", encoding="UTF-8", geometry_type="Polygon")
    assert (folder / "plan_utf8.cpg").read_text() == "UTF-8"
    with zipfile.ZipFile(folder / "both.zip", "w") as archive:
        for stem in ("plan_utf8", "plan_gbk"):
            for suffix in (".cpg", ".shp", ".shx", ".dbf", ".prj"):
                if (folder / f"{stem}{suffix}").exists():
                    archive.write(folder / f"{stem}{suffix}", f"{stem}{suffix}")
    gbk = ingest_layer(settings, load_definition(write_definition(folder, name, "both.zip", layer="plan_gbk")))
    utf8 = ingest_layer(settings, load_definition(write_definition(folder, name + "u", "both.zip", layer="plan_utf8")))
    assert (gbk.encoding, gbk.kept, utf8.encoding, utf8.kept) == ("GB18030 (detected (no .cpg))", 3, "UTF-8 (.cpg)", 3)
    assert stored_names(settings, name) == stored_names(settings, name + "u") == ["水田", "旱地", "乔木林地"]
    with pytest.raises(IngestError, match=r"both.zip: holds several layers \(plan_utf8, plan_gbk\): set source.layer"):
        ingest_layer(settings, load_definition(write_definition(folder, name, "both.zip")))


def test_text_invalid_for_the_encoding_is_a_row_error_not_database_text(env) -> None:
    """GBK bytes under a .cpg saying UTF-8: GDAL passes them through; the error names rows and field, in one line."""
    settings, folder, name = env
    load_good_version(settings, folder, name)
    gbk_shapefile(folder, name, count=4, DLMC=["水田", "ok", "旱地", "fine"])
    (folder / f"{name}.cpg").write_text("UTF-8")
    with pytest.raises(IngestError) as caught:
        ingest_layer(settings, load_definition(folder / f"{name}.yaml"))
    assert str(caught.value) == (f"{folder / name}.shp: rows 1, 3: field 'DLMC': invalid characters for the encoding "
                                 "UTF-8 (.cpg): set `encoding` in the layer definition")
    assert active(settings, name) == (1, 6)
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp", encoding="GBK")))
    assert summary.encoding == "GBK (declared)" and stored_names(settings, name) == ["水田", "ok", "旱地", "fine"]


def test_database_error_during_the_load_is_one_line(env) -> None:
    """working_crs changed after the database was made: the server refuses the rows (SRID mismatch); its text is not shown."""
    settings, folder, name = env
    load_good_version(settings, folder, name)
    moved = Settings.model_validate({**settings.model_dump(), "working_crs": "EPSG:4549"})
    with pytest.raises(IngestError) as caught:
        ingest_layer(moved, load_definition(folder / f"{name}.yaml"))
    assert str(caught.value) == (f"{folder / name}.shp: layer {name}: loading failed, the database refused it "
                                 "(SQLSTATE 22023, InvalidParameterValue); nothing was stored")
    assert active(settings, name) == (1, 6)


def test_shapefile_without_its_sidecars_names_each_missing_one(env) -> None:
    settings, folder, name = env
    gbk_shapefile(folder, name)
    (folder / f"{name}.shx").unlink()
    definition = load_definition(write_definition(folder, name, f"{name}.shp"))
    with pytest.raises(IngestError) as caught:
        ingest_layer(settings, definition)
    assert str(caught.value) == f"{folder / name}.shp: missing {name}.shx (a shapefile needs its .shp, .shx and .dbf side by side)"
    (folder / f"{name}.dbf").unlink()
    with pytest.raises(IngestError, match=rf"{name}.shp: missing {name}.shx, {name}.dbf \(a shapefile needs"):
        ingest_layer(settings, definition)
    with zipfile.ZipFile(folder / "no_dbf.zip", "w") as archive:
        for suffix in (".shp", ".prj"):
            archive.write(folder / f"{name}{suffix}", f"{name}{suffix}")
    with pytest.raises(IngestError, match=rf"no_dbf.zip: missing {name}.shx, {name}.dbf \(a shapefile needs"):
        ingest_layer(settings, load_definition(write_definition(folder, name, "no_dbf.zip")))


def test_missing_prj_without_declared_crs(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    (folder / f"{name}.prj").unlink()
    with pytest.raises(IngestError, match=rf"{name}.shp: no CRS: the file has no .prj"):
        ingest_layer(settings, load_definition(folder / f"{name}.yaml"))
    assert active(settings, name) == (1, 6)
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp", crs="EPSG:4548")))
    assert summary.version == 2 and summary.crs == "EPSG:4548"


def test_declared_crs_wins_over_prj(env) -> None:
    settings, folder, name = env
    gbk_shapefile(folder, name)
    (folder / f"{name}.prj").write_text(  # a .prj claiming zone CM 120E is overridden by the declared CM 117E
        Transformer.from_crs("EPSG:4549", "EPSG:4549").source_crs.to_wkt("WKT1_ESRI"))
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp", crs="EPSG:4548")))
    assert summary.crs == "EPSG:4548"
    assert query(settings, "SELECT round(min(ST_XMin(f.geom))) FROM geoservice.feature f JOIN geoservice.layer_version v "
                           "ON v.id = f.version_id WHERE v.layer = %s", name) == [(ORIGIN[0],)]


def test_self_intersecting_and_bow_tie_are_repaired_and_reported(env) -> None:
    settings, folder, name = env
    x, y = ORIGIN
    bow_tie = shapely.Polygon([(x, y), (x + 100, y + 100), (x + 100, y), (x, y + 100), (x, y)])
    spike = shapely.Polygon([(x + 200, y), (x + 300, y), (x + 300, y + 100), (x + 250, y - 50), (x + 200, y + 100), (x + 200, y)])
    geometries = np.array([*squares(2, origin=(x + 1000, y)), bow_tie, spike], dtype=object)
    write_file(folder / f"{name}.shp", geometries, landuse_fields(4), crs="EPSG:4548", geometry_type="Polygon")
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp")))
    assert (summary.kept, summary.repaired, summary.rejected) == (2, 2, 0)
    assert [(p.row, p.status) for p in summary.problems] == [(3, "repaired"), (4, "repaired")]
    assert "Self-intersection" in summary.problems[0].problem
    rows = query(settings, "SELECT f.source_row, f.status, ST_IsValid(f.geom), ST_NumGeometries(f.geom), ST_Area(f.geom) "
                           "FROM geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id "
                           "WHERE v.layer = %s AND f.source_row = 3", name)
    assert rows == [(3, "repaired", True, 2, pytest.approx(5000.0))]
    with open(settings.path(settings.paths.output) / "ingest" / f"{name}-v1-problems.csv", encoding="utf-8") as handle:
        report = list(csv.reader(handle))
    assert report[0] == ["row", "field", "status", "problem"] and report[1][:3] == ["3", "geometry", "repaired"]


def test_mixed_geometry_types_rejected_and_strict_refuses(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    x, y = ORIGIN
    geometries = np.array([*squares(2), shapely.Point(x, y), shapely.LineString([(x, y), (x + 5, y + 5)])], dtype=object)
    write_file(folder / "mixed.gpkg", geometries, landuse_fields(4), crs="EPSG:4548", driver="GPKG")
    definition = load_definition(write_definition(folder, name, "mixed.gpkg"))
    with pytest.raises(IngestError, match=r"mixed.gpkg: --strict: 0 row\(s\) repaired and 2 rejected: row 3: rejected: "
                                          r"not a polygon \(Point\); row 4: rejected: not a polygon \(LineString\)"):
        ingest_layer(settings, definition, strict=True)
    assert active(settings, name) == (1, 6)
    summary = ingest_layer(settings, definition)
    assert (summary.kept, summary.rejected, summary.version) == (2, 2, 2)
    assert active(settings, name) == (2, 2)


def test_empty_and_3d_geometries(env) -> None:
    """Dropping Z/M is a normalisation, reported once in the summary: --strict takes an ordinary 3D file."""
    settings, folder, name = env
    x, y = ORIGIN
    cube_face = shapely.Polygon([(x, y, 5), (x + 10, y, 5), (x + 10, y + 10, 6), (x, y + 10, 6), (x, y, 5)])
    geometries = np.array([cube_face, shapely.Polygon(), *squares(1, origin=(x + 500, y))], dtype=object)
    write_file(folder / "z.gpkg", geometries, landuse_fields(3), crs="EPSG:4548", driver="GPKG")
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, "z.gpkg")))
    assert [(p.row, p.status, p.problem) for p in summary.problems] == [(2, "rejected", "empty geometry")]
    assert (summary.kept, summary.repaired, summary.rejected, summary.z_m_dropped) == (2, 0, 1, 1)
    assert query(settings, "SELECT ST_NDims(f.geom), f.status FROM geoservice.feature f JOIN geoservice.layer_version v "
                           "ON v.id = f.version_id WHERE v.layer = %s AND f.source_row = 1", name) == [(2, "kept")]
    write_file(folder / "z3.gpkg", np.array([cube_face, *squares(2, origin=(x + 500, y))], dtype=object), landuse_fields(3),
               crs="EPSG:4548", driver="GPKG")
    config = folder / "config" / "geoservice.yaml"
    config.parent.mkdir()
    config.write_text(f"paths:\n  classification: {settings.paths.classification}\n  output: {folder / 'out'}\n")
    result = subprocess.run([sys.executable, "-m", "geoservice", "--config", str(config), "ingest", "--strict",
                             str(write_definition(folder, name, "z3.gpkg"))], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "GEOSERVICE_DATABASE_URL": settings.database.url, "COLUMNS": "1000"})
    assert result.returncode == 0, result.stderr
    assert f"{name}: {folder / 'z3.gpkg'}, encoding UTF-8 (format (UTF-8)), CRS EPSG:4548, Z/M coordinates dropped from 1 " \
           "row(s)" in result.stderr
    assert active(settings, name) == (2, 3)


def test_unclosed_ring_is_closed_and_counted_as_a_repair(env) -> None:
    """GeoPackage and GeoJSON pass a ring that does not end where it starts through; it is closed, as GDAL's Shapefile
    reader closes it."""
    settings, folder, name = env
    x, y = ORIGIN
    ring = [(x, y), (x + 100, y), (x + 100, y + 100), (x, y + 100)]  # the first point is not repeated at the end
    unclosed = b"\x01" + struct.pack("<III", 3, 1, len(ring)) + b"".join(struct.pack("<dd", *p) for p in ring)
    geometries = np.array([*squares(1, origin=(x + 500, y)), unclosed], dtype=object)
    write_file(folder / "open.gpkg", geometries, landuse_fields(2), crs="EPSG:4548", driver="GPKG")
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, "open.gpkg")))
    assert (summary.kept, summary.repaired, summary.rejected) == (1, 1, 0)
    assert [(p.row, p.status, p.problem) for p in summary.problems] == [(2, "repaired", "ring not closed: closed")]
    with open(settings.path(settings.paths.output) / "ingest" / f"{name}-v1-problems.csv", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1] == ["2", "geometry", "repaired", "ring not closed: closed"]
    assert query(settings, "SELECT f.status, ST_Area(f.geom) FROM geoservice.feature f JOIN geoservice.layer_version v "
                           "ON v.id = f.version_id WHERE v.layer = %s AND f.source_row = 2", name) == [
        ("repaired", pytest.approx(10_000.0))]


def test_swapped_lon_lat_is_an_error(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    swapped = shapely.box(24.50, 118.10, 24.51, 118.11)  # lat/lon written as x/y
    write_file(folder / "swapped.geojson", np.array([swapped, swapped]), landuse_fields(2), crs="EPSG:4490", driver="GeoJSON")
    with pytest.raises(IngestError, match=r"swapped.geojson: rows 1, 2: 2 of 2 rows lie outside the area of use of "
                                          r"EPSG:4490: x and y look swapped"):
        ingest_layer(settings, load_definition(write_definition(folder, name, "swapped.geojson")))
    assert active(settings, name) == (1, 6)


def test_truncated_and_corrupt_files(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    shp = folder / f"{name}.shp"
    shp.write_bytes(shp.read_bytes()[:150])  # truncated mid-geometry
    with pytest.raises(IngestError, match=rf"{name}.shp: truncated: the .shp header says \d+ bytes but the file has 150"):
        ingest_layer(settings, load_definition(folder / f"{name}.yaml"))
    (folder / "junk.gpkg").write_bytes(b"SQLite format 3\x00" + os.urandom(2000))
    with pytest.raises(IngestError, match=r"junk.gpkg: cannot be opened as a vector file"):
        ingest_layer(settings, load_definition(write_definition(folder, name, "junk.gpkg")))
    assert active(settings, name) == (1, 6)


def test_missing_code_field(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    with pytest.raises(IngestError, match=rf"{name}.shp: no field 'YDDM' \(code_field in .*{name}.yaml\); the file has: BSM, DLBM, DLMC"):
        ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp", code_field="YDDM")))
    assert active(settings, name) == (1, 6)


def test_unknown_codes_listed_or_kept_unclassified(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    gbk_shapefile(folder, name, count=5, DLBM=["0101", "XX9", "0103", "XX9", "9999"])
    with pytest.raises(IngestError, match=r"2 code\(s\) in DLBM not in crosswalk 'tdgh_2017': 'XX9' \(rows 2, 4\), '9999' \(row 5\)"):
        ingest_layer(settings, load_definition(folder / f"{name}.yaml"))
    assert active(settings, name) == (1, 6)
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp", unknown_codes="unclassified")))
    assert summary.kept == 5
    assert query(settings, "SELECT f.original_code, f.class_code FROM geoservice.feature f JOIN geoservice.layer_version v "
                           "ON v.id = f.version_id WHERE v.layer = %s AND v.is_active ORDER BY f.source_row", name) == [
        ("0101", "0101"), ("XX9", None), ("0103", "0103"), ("XX9", None), ("9999", None)]


def test_duplicate_source_ids(env) -> None:
    settings, folder, name = env
    load_good_version(settings, folder, name)
    gbk_shapefile(folder, name, count=4, BSM=["A", "B", "A", "C"])
    with pytest.raises(IngestError, match=r"rows 1, 3: duplicate values in id field 'BSM': 'A'"):
        ingest_layer(settings, load_definition(folder / f"{name}.yaml"))
    assert active(settings, name) == (1, 6)


def test_dry_run_stores_nothing(env) -> None:
    settings, folder, name = env
    gbk_shapefile(folder, name)
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, f"{name}.shp")), dry_run=True)
    assert summary.version is None and summary.kept == 6
    assert query(settings, "SELECT count(*) FROM geoservice.layer WHERE name = %s", name) == [(0,)]


def test_helmert7_and_plane4_transforms(env) -> None:
    settings, folder, name = env
    truth = squares(3)
    params = Helmert7(dx=-15.3, dy=120.5, dz=45.2, rx=0.12, ry=-0.3, rz=0.25, scale_ppm=1.5)
    from pyproj import CRS
    forward = Transformer.from_pipeline(helmert7_pipeline(CRS("EPSG:2384"), CRS("EPSG:4548"), params))
    xian80 = shapely.transform(truth, lambda xy: np.column_stack(
        forward.transform(xy[:, 0], xy[:, 1], direction="INVERSE")))
    assert shapely.hausdorff_distance(xian80[0], truth[0]) > 10  # the datum shift is real
    write_file(folder / "x80.shp", xian80, landuse_fields(3), crs="EPSG:2384", geometry_type="Polygon")
    with pytest.raises(IngestError, match=r"no datum transformation from Xian 1980 to China 2000.*helmert7 or transform.plane4"):
        ingest_layer(settings, load_definition(write_definition(folder, name, "x80.shp")))
    definition = write_definition(folder, name, "x80.shp", transform={"helmert7": params.model_dump()})
    ingest_layer(settings, load_definition(definition))
    got = query(settings, "SELECT ST_AsBinary(f.geom) FROM geoservice.feature f JOIN geoservice.layer_version v "
                          "ON v.id = f.version_id WHERE v.layer = %s ORDER BY f.source_row", name)
    stored = shapely.from_wkb([bytes(r[0]) for r in got])
    assert shapely.hausdorff_distance(stored, truth).max() < 1e-3

    theta, scale, dx, dy = np.deg2rad(30 / 3600), 1 + 2e-6, 500.0, -300.0
    local = shapely.transform(truth, lambda xy: np.column_stack([  # invert x' = dx + s R x
        ((xy[:, 0] - dx) * np.cos(theta) + (xy[:, 1] - dy) * np.sin(theta)) / scale,
        (-(xy[:, 0] - dx) * np.sin(theta) + (xy[:, 1] - dy) * np.cos(theta)) / scale]))
    write_file(folder / "local.geojson", local, landuse_fields(3), crs=None, driver="GeoJSON")
    plane = {"plane4": {"dx": dx, "dy": dy, "rotation_arcsec": 30, "scale_ppm": 2}}
    definition = write_definition(folder, name + "p", "local.geojson", crs="EPSG:4548", transform=plane)
    ingest_layer(settings, load_definition(definition))
    got = query(settings, "SELECT ST_AsBinary(f.geom) FROM geoservice.feature f JOIN geoservice.layer_version v "
                          "ON v.id = f.version_id WHERE v.layer = %s ORDER BY f.source_row", name + "p")
    assert shapely.hausdorff_distance(shapely.from_wkb([bytes(r[0]) for r in got]), truth).max() < 1e-6


def test_definition_errors_name_file_and_key(tmp_path: Path) -> None:
    from geoservice.errors import ConfigError
    path = write_definition(tmp_path, "bad", "x.shp", kind="forest", colour="red")
    with pytest.raises(ConfigError, match=r"bad.yaml: kind: Input should be 'land_use', .*; colour: unknown key"):
        load_definition(path)


def test_killed_mid_copy_leaves_active_version_and_no_partial_rows(env) -> None:
    import signal
    import time

    settings, folder, name = env
    load_good_version(settings, folder, name)
    count = 120_000
    x0 = ORIGIN[0] + (np.arange(count) % 400) * 10.0
    y0 = ORIGIN[1] + (np.arange(count) // 400) * 10.0
    write_file(folder / "big.gpkg", shapely.box(x0, y0, x0 + 10, y0 + 10), landuse_fields(count), crs="EPSG:4548",
               driver="GPKG", geometry_type="Polygon")
    definition = write_definition(folder, name, "big.gpkg")
    config = folder / "config" / "geoservice.yaml"
    config.parent.mkdir()
    config.write_text(f"paths:\n  classification: {settings.paths.classification}\n  output: {folder / 'out'}\n")
    tables_before = query(settings, "SELECT count(*) FROM pg_tables WHERE schemaname = 'geoservice' AND tablename LIKE 'feature_p%%'")
    proc = subprocess.Popen([sys.executable, "-m", "geoservice", "--config", str(config), "ingest", str(definition)],
                            env={**os.environ, "GEOSERVICE_DATABASE_URL": settings.database.url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    copying = []
    while not copying and proc.poll() is None and time.monotonic() < deadline:
        copying = query(settings, "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY%%feature_p%%'")
        time.sleep(0.01)
    assert copying, f"never saw the COPY: {proc.stderr.read() if proc.poll() is not None else 'timeout'}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    while query(settings, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", copying[0][0]) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the dead client and rolls the transaction back
    assert active(settings, name) == (1, 6)
    assert [v.version for v in list_versions(settings, name)] == [1]
    assert query(settings, "SELECT count(*) FROM pg_tables WHERE schemaname = 'geoservice' AND tablename LIKE 'feature_p%%'") == tables_before


def test_text_with_tabs_newlines_backslashes_round_trips(env) -> None:
    settings, folder, name = env
    odd = ["制表\there", "换行\nhere", "反斜杠\\N", "quote \"'"]
    fields = {**landuse_fields(4), "DLMC": odd, "BSM": ["a\\b", "c\td", "e", "f"]}
    write_file(folder / "odd.geojson", squares(4), fields, crs="EPSG:4548", driver="GeoJSON")
    ingest_layer(settings, load_definition(write_definition(folder, name, "odd.geojson", name_field="DLMC")))
    rows = query(settings, "SELECT f.source_id, f.name, f.attributes->>'DLMC' FROM geoservice.feature f "
                           "JOIN geoservice.layer_version v ON v.id = f.version_id WHERE v.layer = %s ORDER BY f.source_row", name)
    assert rows == [(i, o, o) for i, o in zip(fields["BSM"], odd)]


def test_reprojected_holes_and_parts_are_stored_exactly(env) -> None:
    """The fast way (WKB parsed with NumPy, coordinates reprojected as one array) stores what Shapely would."""
    settings, folder, name = env
    x, y = ORIGIN
    to_geo = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
    box = shapely.box(x, y, x + 100, y + 100)
    plans = [
        box.difference(shapely.box(x + 10, y + 10, x + 20, y + 20)).difference(shapely.box(x + 50, y + 50, x + 60, y + 70)),
        shapely.MultiPolygon([shapely.box(x + 200, y, x + 240, y + 40),
                              shapely.box(x + 250, y, x + 300, y + 50).difference(shapely.box(x + 260, y + 10, x + 270, y + 20))]),
        shapely.box(x + 400, y, x + 450, y + 20),
        shapely.Polygon([(x + 500, y), (x + 600, y + 100), (x + 600, y), (x + 500, y + 100), (x + 500, y)]),  # bow-tie
    ]
    geographic = shapely.transform(np.array(plans, dtype=object), lambda xy: np.column_stack(to_geo.transform(xy[:, 0], xy[:, 1])))
    write_file(folder / "holes.gpkg", geographic, landuse_fields(4), crs="EPSG:4490", driver="GPKG")
    summary = ingest_layer(settings, load_definition(write_definition(folder, name, "holes.gpkg")))
    assert (summary.kept, summary.repaired, summary.rejected) == (3, 1, 0)
    back = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True)
    expected = shapely.transform(geographic, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
    expected[3] = shapely.make_valid(expected[3])
    rows = query(settings, "SELECT ST_AsBinary(f.geom), f.area_m2 FROM geoservice.feature f JOIN geoservice.layer_version v "
                           "ON v.id = f.version_id WHERE v.layer = %s ORDER BY f.source_row", name)
    stored = shapely.from_wkb([bytes(r[0]) for r in rows])
    assert shapely.get_type_id(stored).tolist() == [shapely.GeometryType.MULTIPOLYGON] * 4
    for got, want in zip(stored, expected):
        want = want if want.geom_type == "MultiPolygon" else shapely.MultiPolygon([want])
        assert shapely.equals_exact(got, want, tolerance=0)
    assert [r[1] for r in rows] == pytest.approx(shapely.area(expected).tolist(), rel=1e-9)
