"""The CLI: one clear error line and a non-zero exit; tracebacks only with --debug; every README command as documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pyogrio.raw
import pytest
import shapely
import shapely.geometry
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geoservice", *args], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})}, timeout=120,
    )


def test_wrong_config_key_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config" / "geoservice.yaml"
    config.parent.mkdir()
    config.write_text("database:\n  prot: 1\n")
    result = run("--config", str(config), "db", "status")
    assert result.returncode == 1
    assert result.stderr == f"error: {config}: database.prot: unknown key\n"
    assert result.stdout == ""


def test_debug_shows_traceback(tmp_path: Path) -> None:
    config = tmp_path / "geoservice.yaml"
    config.write_text("bogus: 1\n")
    result = run("--debug", "--config", str(config), "db", "status")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and result.stderr.rstrip().endswith("bogus: unknown key")


def test_usage_error_exit_code() -> None:
    result = run("db", "sideways")
    assert result.returncode == 2
    assert "No such command 'sideways'" in result.stderr


def test_db_status_against_session_database(settings) -> None:
    result = run("db", "status", env={"GEOSERVICE_DATABASE_URL": settings.database.url})
    assert result.returncode == 0, result.stderr
    assert "mode: external" in result.stdout and "running: yes" in result.stdout
    assert "PostGIS: 3." in result.stdout and "pending: 0" in result.stdout
    assert settings.database.url.split("@")[0].split(":")[-1] not in result.stdout  # password never printed


def test_db_migrate_is_idempotent(settings) -> None:
    result = run("db", "migrate", env={"GEOSERVICE_DATABASE_URL": settings.database.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 migration(s) applied"


#: Every command of the README's CLI table (its first column, in the table's order) with the invocations run for it,
#: each with a phrase its output holds; {tmp}, {run} and {conflict} are filled in when it runs. `serve` is run with
#: --write-config here: tests/servers.py starts `geoservice serve --host H --port P` for the HTTP tests.
README_COMMANDS: list[tuple[str, list[tuple[list[str], str]]]] = [
    ("`geoservice db up`", [(["db", "up"], "pending: 0")]),
    ("`geoservice db down`", [(["db", "down"], "external server: nothing to stop")]),
    ("`geoservice db status`", [(["db", "status"], "mode: external")]),
    ("`geoservice db migrate`", [(["db", "migrate"], "0 migration(s) applied")]),
    ("`geoservice ingest layers/x.yaml …` / `--all`", [
        (["ingest", "--all"], "landuse: layers/demo/landuse_plan.shp, encoding GB18030"),
        (["ingest", "layers/landuse.yaml", "layers/red_line.yaml", "--strict"], "red_line: layers/demo/red_line.shp"),
        (["ingest", "--all", "--dry-run"], "ingest (dry run: nothing stored)")]),
    ("`geoservice layers [NAME]`", [(["layers"], "urban_plan"), (["layers", "landuse"], "land_use")]),
    ("`geoservice layers activate NAME VERSION`", [(["layers", "activate", "landuse", "1"], "landuse: version 1 is active")]),
    ("`geoservice diff LAYER V1 V2 [--export PATH.gpkg]`", [
        (["diff", "landuse", "1", "2", "--format", "json", "--export", "{tmp}/changes.gpkg"], "changed features written to")]),
    ("`geoservice integrate [--full] [--scheduler ADDRESS\\|local:N]`", [
        (["integrate", "--scheduler", "local:1"], "on Dask (local:1): "), (["integrate", "--full"], "patches")]),
    ("`geoservice detect [--rule ID …] [--full] [--scheduler ADDRESS\\|local:N]`", [
        (["detect", "--rule", "projects_in_red_line", "--scheduler", "local:1"], "on Dask (local:1): "),
        (["detect", "--full", "--rule", "projects_in_red_line", "--rule", "planned_construction_in_red_line"],
         "projects_in_red_line")]),
    ("`geoservice lookup X Y [--crs CRS]`", [(["lookup", "118.09", "24.47", "--crs", "EPSG:4490"], "思明区")]),
    ("`geoservice check FILE [--crs CRS] [--code 0701]`", [
        (["check", "{tmp}/project.geojson", "--crs", "EPSG:4490", "--code", "0701", "--format", "json"], "projects_in_red_line")]),
    ("`geoservice exposure RASTER --threshold V [--band N]`", [
        (["exposure", "layers/demo/rasters/slope_deg.tif", "--threshold", "15", "--band", "1", "--format", "json"], "exposed_m2")]),
    ("`geoservice demo [--no-serve]`", [(["demo", "--no-serve"], "conflict ledger and report:")]),
    ("`geoservice serve [--host H] [--port P] [--write-config PATH [--grade G]]`", [
        (["serve", "--host", "127.0.0.1", "--port", "5999", "--write-config", "{tmp}/pygeoapi.yaml", "--grade", "internal"],
         "pygeoapi-openapi.json")]),
    ("`geoservice tiles seed [--zoom Z1-Z2] [--collection NAME …] [--grade G] [--grid TMS]`", [
        (["tiles", "seed", "--zoom", "8-9"], "tiles seeded:"),
        (["tiles", "seed", "--zoom", "9", "--collection", "basemap", "--grade", "internal"], "already cached")]),
    ("`geoservice export LAYER PATH --grade G`", [(["export", "landuse", "{tmp}/landuse.gpkg", "--grade", "internal"], "features")]),
    ("`geoservice token NAME [--grade G] [--scope review]`", [
        (["token", "alice", "--grade", "internal", "--scope", "review"], "grade: internal, scopes: [review]")]),
    ("`geoservice report [--run ID]`", [(["report", "--run", "{run}", "--format", "csv"], "思明区")]),
    ("`geoservice report --export PATH [--english]`", [(["report", "--export", "{tmp}/ledger.csv", "--english"], "ledger.csv")]),
    ("`geoservice report --all [--run ID]`", [(["report", "--all", "--run", "{run}"], "report.html")]),
    ("`geoservice review ID [--status S --comment TEXT --reviewer NAME]`", [
        (["review", "{conflict}", "--status", "confirmed", "--comment", "核实", "--reviewer", "alice"], "confirmed")]),
    ("`geoservice audit [--since TIME] [--collection LAYER]`", [
        (["audit", "--since", "2020-01-01", "--collection", "projects"], "audit")]),
    ("`geoservice backup PATH`", [(["backup", "{tmp}/backup"], "backup written to")]),
    ("`geoservice restore PATH [--files]`", [(["restore", "{tmp}/backup", "--files"], "restored")]),
]


def readme_cli_commands() -> list[str]:
    """The first column of the README's CLI table."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]
    return [line[2:].split(" | ", 1)[0] for line in section.splitlines() if line.startswith("| `geoservice ")]


def test_the_readme_cli_table_is_what_is_tested() -> None:
    assert [command for command, _ in README_COMMANDS] == readme_cli_commands()


def test_every_readme_command_runs_as_documented(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a copy of the project (the working directory: its config/geoservice.yaml is the one found) on an empty
    database, the restore into a second one: every invocation exits 0 and prints what it should. Run in-process
    (click's runner) to spare 25 interpreter start-ups; the subprocess tests above cover `main`'s error handling."""
    from geoservice import db
    from geoservice.cli import cli
    from geoservice.db.connection import with_database
    from geoservice.db.lifecycle import ensure_database
    from sql_helpers import query

    project = tmp_path / "project"
    for folder in ("config", "layers"):
        shutil.copytree(ROOT / folder, project / folder)
    monkeypatch.chdir(project)
    red_line = shapely.from_wkb(pyogrio.raw.read(ROOT / "layers" / "demo" / "red_line.shp")[2][0])
    x, y = shapely.get_coordinates(shapely.point_on_surface(red_line))[0]  # CGCS2000 lon/lat
    box = shapely.geometry.mapping(shapely.box(x - 0.002, y - 0.002, x + 0.002, y + 0.002))
    (tmp_path / "project.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": box}]}))
    names = [f"geoservice_cli_{os.getpid()}", f"geoservice_cli_restore_{os.getpid()}"]
    for name in names:
        ensure_database(with_database(settings.database.url, "postgres"), name, lambda _: None)
    url, restore_url = (with_database(settings.database.url, name) for name in names)
    on_url = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    runner = CliRunner(env={"COLUMNS": "1000"})
    try:
        for command, invocations in README_COMMANDS:
            for args, expected in invocations:
                facts = {"tmp": tmp_path, "run": "", "conflict": ""}
                if query(on_url, "SELECT to_regclass('geoservice.detection_run') IS NOT NULL")[0][0]:
                    facts["run"], facts["conflict"] = query(on_url, "SELECT max(r.id), min(c.id) FROM geoservice.detection_run r "
                                                                    "JOIN geoservice.conflict c ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) WHERE r.is_current")[0]
                argv = [arg.format(**facts) for arg in args]
                result = runner.invoke(cli, argv, env={"GEOSERVICE_DATABASE_URL": restore_url if argv[0] == "restore" else url})
                failure = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
                assert result.exit_code == 0 and expected in result.output, \
                    f"{command}: geoservice {' '.join(argv)}:\n{result.output}{failure}"
        unknown = runner.invoke(cli, ["layers", "nosuch"], env={"GEOSERVICE_DATABASE_URL": url})
        assert unknown.exit_code != 0 and "no stored layer 'nosuch'" in str(unknown.exception)
    finally:
        for name in names:
            db.drop_database(settings.database.url, name)
