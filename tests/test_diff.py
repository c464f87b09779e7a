"""Change reports between layer versions: generated edits with known answers, and the demo's land-use plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from ingest_files import ORIGIN, landuse_fields, squares, write_definition, write_file
from sql_helpers import query

from geoservice import db
from geoservice.governance.changes import ChangeReportError, LayerChanges, layer_changes
from geoservice.ingest import ingest_layer, load_definition
from geoservice.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
X0, Y0 = ORIGIN
NAMES = {"0101": "水田", "0103": "旱地", "0301": "乔木林地", "0701": "城镇住宅用地", "0601": "工业用地"}


def _quiet(_: str) -> None:
    """Progress messages are not asserted here."""


@pytest.fixture(scope="module")
def diff_settings(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database of its own (so exactly one district layer is active) holding two districts:
    甲区 x < X0+500 and 乙区 X0+500 ≤ x < X0+650 (everything east of that lies outside every district)."""
    name = f"geoservice_diff_{os.getpid()}"
    scratch = db.create_scratch_database(base_settings, name, _quiet)
    try:
        folder = tmp_path_factory.mktemp("districts")
        boxes = np.array([shapely.box(X0 - 1000, Y0 - 1000, X0 + 500, Y0 + 2000),
                          shapely.box(X0 + 500, Y0 - 1000, X0 + 650, Y0 + 2000)])
        write_file(folder / "districts.gpkg", boxes, {"DM": ["350201", "350202"], "MC": ["甲区", "乙区"]}, crs="EPSG:4548",
                   driver="GPKG")
        ingest_layer(scratch, load_definition(write_definition(
            folder, "t_districts", "districts.gpkg", kind="district", code_field=None, crosswalk=None, id_field="DM",
            name_field="MC", attributes=[])))
        yield scratch
    finally:
        db.drop_database(scratch.database.url, name)


def load_version(settings: Settings, folder: Path, layer: str, file: str, geometries: np.ndarray, fields: dict[str, list],
                 **definition: object) -> None:
    write_file(folder / file, geometries, fields, crs="EPSG:4548", driver="GPKG")
    ingest_layer(settings, load_definition(write_definition(folder, layer, file, **definition)))


def by_code(rows: list) -> dict[str | None, tuple[float, float]]:
    return {r.code: (r.gained_m2, r.lost_m2) for r in rows}


def assert_areas(rows: list, expected: dict[str | None, tuple[float, float]], **tolerance: float) -> None:
    """(gained, lost) m² per code, exactly up to floating-point noise."""
    got = by_code(rows)
    assert set(got) == set(expected)
    for code, pair in expected.items():
        assert got[code] == pytest.approx(pair, **(tolerance or {"abs": 1e-6})), code


def changed(report: LayerChanges) -> dict[str, tuple[str, ...]]:
    return {f.source_id: f.what for f in report.features if f.change == "changed"}


def test_edits_with_ids_counts_and_areas(diff_settings: Settings, tmp_path: Path) -> None:
    v1 = landuse_fields(10)
    load_version(diff_settings, tmp_path, "t_ids", "v1.gpkg", squares(10), v1)
    keep = list(range(8))                                                # B00008 (0701), B00009 (0601→1001) removed
    geometries = list(squares(10)[keep])
    geometries[2] = shapely.box(X0 + 200, Y0, X0 + 300, Y0 + 150)      # B00002 0301 grows north: +5000 m²
    geometries[3] = shapely.box(X0 + 300, Y0, X0 + 360, Y0 + 100)      # B00003 0701 shrinks: −4000 m²
    fields = {key: [values[i] for i in keep] for key, values in v1.items()}
    for i in (0, 1):                                                     # B00000 0101, B00001 0103 → 0701
        fields["DLBM"][i], fields["DLMC"][i] = "0701", NAMES["0701"]
    fields["DLMC"][4] = "工业用地（扩建）"                                  # B00004: an attribute only
    added = [shapely.box(X0 + 500 + j * 100, Y0 + 100, X0 + 600 + j * 100, Y0 + 200) for j in range(3)]
    fields["BSM"] += [f"B{100 + j:05d}" for j in range(3)]              # three 0103 squares, 1.5 of them in 乙区
    fields["DLBM"] += ["0103"] * 3
    fields["DLMC"] += [NAMES["0103"]] * 3
    load_version(diff_settings, tmp_path, "t_ids", "v2.gpkg", np.array(geometries + added), fields)

    report = layer_changes(diff_settings, "t_ids", 1, 2)

    assert report.counts == {"added": 3, "removed": 2, "changed": 5}
    assert (report.unchanged, report.matched_by_id, report.matched_by_geometry) == (3, 8, 0)
    assert (report.old_features, report.new_features, report.district_layer) == (10, 11, "t_districts")
    assert changed(report) == {
        "B00000": ("class_code", "original_code", "attributes.DLMC"), "B00001": ("class_code", "original_code", "attributes.DLMC"),
        "B00002": ("geometry",), "B00003": ("geometry",), "B00004": ("attributes.DLMC",)}
    assert sorted(f.source_id for f in report.features if f.change == "added") == ["B00100", "B00101", "B00102"]
    assert sorted(f.source_id for f in report.features if f.change == "removed") == ["B00008", "B00009"]
    b0 = next(f for f in report.features if f.source_id == "B00000")
    assert (b0.old_code, b0.new_code, b0.matched_by) == ("0101", "0701", "source_id")
    assert_areas(report.by_class, {
        "0101": (0, 10_000), "0103": (30_000, 10_000), "0301": (5_000, 0), "0701": (20_000, 14_000), "1001": (0, 10_000)})
    assert {r.code: r.name for r in report.by_class}["0701"] == "城镇住宅用地"
    assert_areas(report.by_district, {
        "350201": (25_000, 24_000), "350202": (15_000, 0), None: (15_000, 20_000)})
    assert [r.name for r in report.by_district] == ["甲区", "乙区", "(outside districts)"]
    as_json = json.loads(json.dumps(report.as_dict(), ensure_ascii=False))
    assert as_json["counts"] == report.counts and as_json["by_class"][1]["gained_ha"] == pytest.approx(3.0)

    back = layer_changes(diff_settings, "t_ids", 2, 1)                 # the other way round: gains and losses swap
    assert back.counts == {"added": 2, "removed": 3, "changed": 5}
    assert_areas(back.by_class, {k: (lost, gained) for k, (gained, lost) in by_code(report.by_class).items()})


def test_features_without_ids_are_paired_by_overlap(diff_settings: Settings, tmp_path: Path) -> None:
    y = Y0 + 500
    v1 = landuse_fields(4, ["0101", "0103", "0301", "0701"])
    load_version(diff_settings, tmp_path, "t_noid", "v1.gpkg", squares(4, origin=(X0, y)), v1, id_field=None)
    moved = shapely.box(X0 + 3, y, X0 + 103, y + 100)                   # P0 moved 3 m east (97 % overlap)
    geometries = np.array([moved, *squares(4, origin=(X0, y))[1:3], shapely.box(X0 + 1000, y, X0 + 1100, y + 100)])
    fields = {"BSM": ["x"] * 4, "DLBM": ["0101", "0103", "0101", "0103"], "DLMC": [NAMES[c] for c in ("0101", "0103", "0101", "0103")]}
    load_version(diff_settings, tmp_path, "t_noid", "v2.gpkg", geometries, fields, id_field=None)   # P2 0301→0101, P3 gone, P4 new

    report = layer_changes(diff_settings, "t_noid", 1, 2)

    assert report.counts == {"added": 1, "removed": 1, "changed": 2}
    assert (report.unchanged, report.matched_by_id, report.matched_by_geometry) == (1, 0, 3)
    whats = sorted(f.what for f in report.features if f.change == "changed")
    assert whats == [("class_code", "original_code", "attributes.DLMC"), ("geometry",)]
    assert all(f.matched_by == "geometry" and f.source_id is None for f in report.features if f.change == "changed")
    assert_areas(report.by_class, {
        "0101": (10_300, 300), "0103": (10_000, 0), "0301": (0, 10_000), "0701": (0, 10_000)})
    assert_areas(report.by_district, {"350201": (10_300, 20_300), None: (10_000, 0)})


def test_unknown_layer_or_version_is_named(diff_settings: Settings) -> None:
    with pytest.raises(ChangeReportError, match="layer 'nope' is not stored"):
        layer_changes(diff_settings, "nope", 1, 2)
    with pytest.raises(ChangeReportError, match=r"layer 't_districts' has no version 7 \(it has 1\)"):
        layer_changes(diff_settings, "t_districts", 1, 7)


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geoservice", *args], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "GEOSERVICE_DATABASE_URL": settings.database.url})


def test_demo_landuse_versions_through_the_cli(diff_settings: Settings, tmp_path: Path) -> None:
    """v1 and v2 of the demo's land-use plan are the same file: nothing changed. v3 recodes 5 features and drops 3:
    the areas each class gained and lost are those features' areas, read independently from v1."""
    definition = load_definition(ROOT / "layers" / "landuse.yaml")
    ingest_layer(diff_settings, definition)
    ingest_layer(diff_settings, definition)
    same = run_cli(diff_settings, "diff", "landuse", "1", "2", "--format", "json")
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["counts"] == {"added": 0, "removed": 0, "changed": 0}
    assert report["unchanged"] == report["matched_by_id"] == report["old_features"] == report["new_features"] > 0
    assert report["by_class"] == [] and report["features"] == []

    meta, _, wkb, fields = pyogrio.raw.read(definition.source_path, encoding="GB18030")
    table = {name: values.astype(object) for name, values in zip(meta["fields"], fields, strict=True)}
    recode = np.flatnonzero(table["DLBM"] != "0701")[:5]
    drop = np.flatnonzero(table["DLBM"] == "0701")[:3]
    recoded, dropped = list(table["BSM"][recode]), list(table["BSM"][drop])
    table["DLBM"][recode] = "0701"
    keep = np.ones(len(wkb), dtype=bool)
    keep[drop] = False
    pyogrio.raw.write(tmp_path / "v3.gpkg", wkb[keep], [v[keep] for v in table.values()], list(table), driver="GPKG",
                      geometry_type="Unknown", crs=meta["crs"])
    ingest_layer(diff_settings, load_definition(write_definition(
        tmp_path, "landuse", "v3.gpkg", kind="land_use", crosswalk="tdgh_2017", id_field="BSM", name_field="DLMC",
        attributes=["DLMC"], encoding="UTF-8")))
    export = tmp_path / "changes.gpkg"
    result = run_cli(diff_settings, "diff", "landuse", "1", "3", "--export", str(export))
    assert result.returncode == 0, result.stderr
    assert "added 0" in result.stdout and "removed 3" in result.stdout and "changed 5" in result.stdout

    report = layer_changes(diff_settings, "landuse", 1, 3)
    assert report.counts == {"added": 0, "removed": 3, "changed": 5}
    v1 = {sid: (code, area) for sid, code, area in query(
        diff_settings, "SELECT f.source_id, f.class_code, f.area_m2 FROM geoservice.feature f JOIN geoservice.layer_version v "
                       "ON v.id = f.version_id WHERE v.layer = 'landuse' AND v.version = 1")}
    expected: dict[str, list[float]] = {"0701": [sum(v1[sid][1] for sid in recoded), sum(v1[sid][1] for sid in dropped)]}
    for sid in recoded:
        expected.setdefault(v1[sid][0], [0.0, 0.0])[1] += v1[sid][1]
    assert_areas(report.by_class, {k: tuple(v) for k, v in expected.items()}, rel=1e-9)
    assert sum(r.gained_m2 for r in report.by_district) == pytest.approx(sum(r.gained_m2 for r in report.by_class), rel=1e-9)

    exported = pyogrio.read_dataframe(export)
    assert sorted(exported["change"]) == ["changed"] * 5 + ["removed"] * 3
    assert set(exported.loc[exported["change"] == "changed", "new_code"]) == {"0701"}
    assert set(exported.loc[exported["change"] == "removed", "source_id"]) == set(dropped)
    assert all("class_code" in what for what in exported.loc[exported["change"] == "changed", "what"])
