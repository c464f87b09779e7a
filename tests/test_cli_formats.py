"""Machine-readable CLI output: every command that prints a table prints JSON (and CSV, where its result is tables)
with the documented keys on stdout alone; tables are never truncated when stdout is not a terminal."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyogrio.raw
import pytest
import shapely
import shapely.geometry
from click.testing import CliRunner

from geoservice import db
from geoservice.db.connection import with_database
from geoservice.db.lifecycle import ensure_database
from geoservice.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
Invoke = Callable[..., str]


@pytest.fixture(scope="module")
def scratch(base_settings: Settings) -> Iterator[Settings]:
    """A migrated empty database of this module's own."""
    name = f"geoservice_formats_{os.getpid()}"
    settings = db.create_scratch_database(base_settings, name, lambda _: None)
    yield settings
    db.drop_database(settings.database.url, name)


@pytest.fixture(scope="module")
def invoke(scratch: Settings) -> Invoke:
    """`geoservice ARGS…` on the scratch database (or `url`), run in-process: its stdout (stderr apart); exit 0."""
    from geoservice.cli import cli

    runner = CliRunner()

    def run(*args: str, url: str | None = None) -> str:
        result = runner.invoke(cli, list(args), env={"GEOSERVICE_DATABASE_URL": url or scratch.database.url})
        assert result.exit_code == 0, f"geoservice {' '.join(args)}: {result.output}{result.exception!r}"
        return result.stdout

    return run


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_command_prints_json_and_csv(invoke: Invoke, scratch: Settings, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's keys in each command's JSON, and the same rows in its CSV; in a copy of the project (the working
    directory: its configuration is the one found), so that the tile cache and outputs are its own."""
    for folder in ("config", "layers"):
        shutil.copytree(ROOT / folder, tmp_path / "project" / folder)
    monkeypatch.chdir(tmp_path / "project")
    ingested = json.loads(invoke("ingest", "--all", "--format", "json"))
    names = {path.stem for path in (ROOT / "layers").glob("*.yaml")}
    assert {row["layer"] for row in ingested} == names
    assert all(row["version"] == 1 and row["kept"] > 0 and row["dry_run"] is False and row["problem_rows"] >= 0
               for row in ingested)
    again = rows(invoke("ingest", "layers/landuse.yaml", "--format", "csv"))
    assert [(r["layer"], r["version"], r["dry_run"]) for r in again] == [("landuse", "2", "false")]

    layers = json.loads(invoke("layers", "--format", "json"))
    assert list(layers[0]) == ["layer", "kind", "title", "version", "version_id", "active", "feature_count", "loaded_at",
                               "source_path", "revision", "edited_at"]
    assert {(r["layer"], r["version"], r["active"]) for r in layers if r["layer"] == "landuse"} == {
        ("landuse", 1, False), ("landuse", 2, True)}
    assert rows(invoke("layers", "landuse", "--format", "csv"))[1]["active"] == "true"
    assert [r["version"] for r in json.loads(invoke("layers", "--format", "json", "landuse"))] == [1, 2]

    status = json.loads(invoke("db", "status", "--format", "json"))
    assert status["running"] is True and status["mode"] == "external" and status["migrations_pending"] == []
    assert status["postgis_version"].startswith("3.") and ":***@" in status["url"]

    integrated = json.loads(invoke("integrate", "--format", "json"))
    assert integrated["patches"] == sum(r["patches"] for r in integrated["by_difference"]) > 0
    assert {r["difference"] for r in rows(invoke("integrate", "--format", "csv"))} >= {"both_construction", "urban_only"}

    seeded = json.loads(invoke("tiles", "seed", "--zoom", "8", "--format", "json"))
    assert seeded["built"] + seeded["cached"] > 0 and {"empty", "bytes", "seconds", "slowest"} <= set(seeded)

    detected = json.loads(invoke("detect", "--format", "json"))
    assert detected["run_id"] and {"rule", "title_zh", "severity", "count", "ha", "seconds"} <= set(detected["by_rule"][0])
    assert sum(r["count"] for r in detected["by_rule_district"]) == sum(r["count"] for r in detected["by_rule"]) > 0
    long = rows(invoke("detect", "--format", "csv"))
    assert list(long[0])[0] == "table" and {r["table"] for r in long} == {"by_rule", "by_rule_district"}

    report = json.loads(invoke("report", "--format", "json"))
    assert report["run"]["is_current"] and report["by_rule"]

    found = json.loads(invoke("lookup", "118.09", "24.47"))
    assert found == json.loads(invoke("lookup", "118.09", "24.47", "--format", "json"))
    assert found["district"]["name"] == "思明区" and found["patch"]["land_use"]["code"]
    assert "思明区" in invoke("lookup", "118.09", "24.47", "--format", "table")

    red_line = shapely.from_wkb(pyogrio.raw.read(ROOT / "layers" / "demo" / "red_line.shp")[2][0])
    x, y = shapely.get_coordinates(shapely.point_on_surface(red_line))[0]
    project = tmp_path / "project.geojson"
    project.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                       "geometry": shapely.geometry.mapping(shapely.box(x - 0.002, y - 0.002, x + 0.002, y + 0.002))}]}))
    args = ("check", str(project), "--crs", "EPSG:4490", "--code", "0701", "--format")
    checked = json.loads(invoke(*args, "json"))
    assert "projects_in_red_line" in {c["rule_id"] for c in checked}
    assert checked[0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    as_csv = rows(invoke(*args, "csv"))
    assert [r["rule_id"] for r in as_csv] == [c["rule_id"] for c in checked]
    assert as_csv[0]["crs"] == checked[0]["crs"]  # the project's CRS, the geometry's
    assert shapely.from_wkt(as_csv[0]["geometry"]).equals_exact(shapely.geometry.shape(checked[0]["geometry"]), 1e-9)
    far = tmp_path / "far.geojson"  # in the zone, on no red line: no conflict, the header alone
    far.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                   "geometry": shapely.geometry.mapping(shapely.box(117.0, 23.0, 117.001, 23.001))}]}))
    assert invoke("check", str(far), "--crs", "EPSG:4490", "--format", "csv").startswith("rule_id,title_zh,")

    exposure = json.loads(invoke("exposure", "flood_depth", "--threshold", "0.5", "--format", "json"))
    assert exposure["exposed_m2"] > 0 and exposure["by_district"]
    by_table = rows(invoke("exposure", "flood_depth", "--threshold", "0.5", "--format", "csv"))
    assert len([r for r in by_table if r["table"] == "by_district"]) == len(exposure["by_district"])

    changes = json.loads(invoke("diff", "landuse", "1", "2", "--format", "json"))
    assert changes["counts"] == {"added": 0, "removed": 0, "changed": 0} and changes["unchanged"] == changes["old_features"]
    assert {r["table"] for r in rows(invoke("diff", "landuse", "1", "2", "--format", "csv"))} <= {"by_class", "by_district",
                                                                                                   "features"}

    backed = json.loads(invoke("backup", str(tmp_path / "backup"), "--format", "json"))
    assert backed["rows"] == sum(t["rows"] for t in backed["tables"]) and backed["dump_bytes"] > 0
    assert {"table": "geoservice.layer", "partitions": 0, "rows": len(names)} in backed["tables"]
    target = f"geoservice_formats_restore_{os.getpid()}"
    url = with_database(scratch.database.url, target)
    ensure_database(with_database(scratch.database.url, "postgres"), target, lambda _: None)
    try:
        restored = rows(invoke("restore", str(tmp_path / "backup"), "--format", "csv", url=url))
        assert {r["table"]: int(r["rows"]) for r in restored} == {t["table"]: t["rows"] for t in backed["tables"]}
    finally:
        db.drop_database(url, target)


def test_tables_are_not_truncated_when_piped(demo_settings: Settings) -> None:
    """`geoservice layers | cat` on a narrow terminal setting: every name and path whole, no ellipsis."""
    result = subprocess.run([sys.executable, "-m", "geoservice", "layers"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "GEOSERVICE_DATABASE_URL": demo_settings.database.url, "COLUMNS": "30"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout and "urban_plan" in result.stdout
    assert str(ROOT / "layers" / "demo" / "urban_plan.gpkg") in result.stdout
