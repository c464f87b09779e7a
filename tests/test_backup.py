"""Backup and restore: the demo database round trip into a fresh database answers the same queries; corrupt or
incomplete backups and non-empty targets are refused before the target is touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import running_server
from sql_helpers import query

from geoservice import report
from geoservice.db.connection import connect_url
from geoservice.governance import BackupError, RestoreError, backup, restore
from geoservice.governance.restore import existing_tables
from geoservice.queries import lookup_point
from geoservice.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: what the two servers are asked; every answer must be the same apart from the server's own address
REQUESTS = [
    ("/collections", {"f": "json"}),
    ("/collections/landuse", {"f": "json"}),
    ("/collections/landuse/items", {"limit": 100, "f": "json"}),
    ("/collections/conflicts/items", {"limit": 100, "sortby": "-area_m2", "f": "json"}),
    ("/collections/basemap/items", {"limit": 50, "bbox": "118.0,24.5,118.05,24.55", "crs": "http://www.opengis.net/def/crs/EPSG/0/4548",
                                    "f": "json"}),
]


def run_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geoservice", *args], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env={**os.environ, "GEOSERVICE_DATABASE_URL": url})


def on(settings: Settings, url: str) -> Settings:
    """The same settings pointing at another database."""
    return settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})


@pytest.fixture(scope="module")
def demo_backup(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`geoservice backup` of the demo database, as a person runs it."""
    path = tmp_path_factory.mktemp("backups") / "demo"
    result = run_cli("backup", str(path), url=demo_settings.database.url)
    assert result.returncode == 0, result.stderr
    assert f"backup written to {path}" in result.stdout
    return path


@pytest.fixture()
def corrupt_copy(demo_backup: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(demo_backup, copy)
    return copy


def test_backup_holds_the_dump_the_files_and_a_manifest(demo_backup: Path, demo_settings: Settings) -> None:
    manifest = json.loads((demo_backup / "manifest.json").read_text(encoding="utf-8"))
    files = manifest["files"]
    assert {"database.dump", "files/config/geoservice.yaml", "files/layers/landuse.yaml", "files/config/rules.yaml",
            "files/config/classification/tdgh_2017.csv", "files/layers/demo/rasters/slope_deg.tif"} <= set(files)
    assert files["files/layers/landuse.yaml"]["origin"] == "layers/landuse.yaml"
    tables = manifest["database"]["tables"]
    names = query(demo_settings, "SELECT 'geoservice.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE n.nspname = 'geoservice' AND c.relkind = 'r'")
    assert set(tables) == {name for (name,) in names}
    features = query(demo_settings, "SELECT count(*) FROM geoservice.feature")[0][0]
    assert sum(t["rows"] for t in tables.values() if t["partition_of"] == "geoservice.feature") == features
    assert manifest["database"]["working_srid"] == 4548 and manifest["database"]["migrations"]


def test_backup_into_a_non_empty_folder_is_refused(demo_settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match=f"{tmp_path}: exists and is not an empty folder"):
        backup(demo_settings, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def _lookups(settings: Settings) -> list[dict]:
    """lookup_point at a point inside each of a few conflicts and base-map patches (CRS84)."""
    points = query(settings, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), 4326) p FROM ("
                             "(SELECT geom FROM geoservice.conflict ORDER BY id LIMIT 8) UNION ALL "
                             "(SELECT geom FROM geoservice.basemap_patch ORDER BY id DESC LIMIT 8)) g) q")
    conn = connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            return [lookup_point(cur, settings, x, y) for x, y in points]
    finally:
        conn.close()


def _answers(settings: Settings, tmp_path: Path) -> list[object]:
    """What a server over the settings' database answers to REQUESTS, its own address taken out."""
    log = tmp_path / f"serve-{settings.database.url.rsplit('/', 1)[-1]}.log"
    with running_server(settings, log, {}) as server:
        answers = []
        for path, params in REQUESTS:
            response = server.get(path, **params)
            assert response.status_code == 200, f"{path}: {response.text}"
            body = json.loads(response.text.replace(server.url, "SERVER"))
            body.pop("timeStamp", None)
            answers.append(body)
        return answers


def test_round_trip_answers_the_same(demo_backup: Path, demo_settings: Settings, bare_database_url: str, tmp_path: Path) -> None:
    result = run_cli("restore", str(demo_backup), url=bare_database_url)
    assert result.returncode == 0, result.stderr
    assert "row counts and checksums match the manifest" in result.stdout
    restored = on(demo_settings, bare_database_url)

    assert _lookups(restored) == _lookups(demo_settings)
    assert report.statistics(restored).as_dict() == report.statistics(demo_settings).as_dict()
    for table in ("feature", "basemap_patch", "conflict", "conflict_case", "layer_version"):
        sql = f"SELECT count(*), sum(hashtext(t::text)) FROM geoservice.{table} t"
        assert query(restored, sql) == query(demo_settings, sql), table
    next_ids = "SELECT last_value FROM geoservice.feature_id_seq"
    assert query(restored, next_ids) == query(demo_settings, next_ids)
    assert _answers(restored, tmp_path) == _answers(demo_settings, tmp_path)


def test_restore_files_writes_the_configuration_back(demo_backup: Path, demo_settings: Settings, bare_database_url: str,
                                                     tmp_path: Path) -> None:
    """Restored into a project folder that has none of the files: each is written back where it came from."""
    elsewhere = on(demo_settings, bare_database_url).model_copy(update={"root": tmp_path})
    summary = restore(elsewhere, demo_backup, restore_files=True)
    assert set(summary.files.values()) == {"restored"} and "layers/landuse.yaml" in summary.files
    for origin in summary.files:
        assert (tmp_path / origin).read_bytes() == (demo_backup / "files" / origin).read_bytes(), origin
    assert summary.rows == sum(t.rows for t in summary.tables.values()) > 0 and not summary.pending_migrations


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


CORRUPTIONS = {
    "manifest truncated": (lambda f: _truncate(f / "manifest.json"), r"manifest\.json: not valid JSON"),
    "manifest missing": (lambda f: (f / "manifest.json").unlink(), r"manifest\.json: missing"),
    "file missing": (lambda f: (f / "files/config/rules.yaml").unlink(), r"files/config/rules\.yaml: missing"),
    "dump truncated": (lambda f: _truncate(f / "database.dump"), r"database\.dump: \d+ bytes where manifest\.json says \d+"),
    "dump altered": (lambda f: _flip_byte(f / "database.dump"), r"database\.dump: SHA-256 differs"),
    "checksum edited": (lambda f: _edit_manifest(f, lambda m: m["files"]["files/layers/landuse.yaml"].update(sha256="0" * 64)),
                        r"files/layers/landuse\.yaml: SHA-256 differs"),
    "unknown migration": (lambda f: _edit_manifest(f, lambda m: m["database"]["migrations"].append(
        {"version": 9999, "name": "future", "checksum": "x"})), r"has migration 9999_future\.sql, which this geoservice does not have"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_backup_is_refused_before_the_target_is_touched(corruption: str, corrupt_copy: Path, demo_settings: Settings,
                                                                 bare_database_url: str) -> None:
    damage, message = CORRUPTIONS[corruption]
    damage(corrupt_copy)
    with pytest.raises(BackupError, match=message):
        restore(on(demo_settings, bare_database_url), corrupt_copy)
    assert existing_tables(bare_database_url) == []


def test_restore_that_does_not_match_the_manifest_leaves_the_target_empty(corrupt_copy: Path, demo_settings: Settings,
                                                                          bare_database_url: str) -> None:
    """The files are intact but the manifest's checksum of a table is not what the dump holds: pg_restore runs, the
    check after it fails, and the restored schema is dropped again."""
    _edit_manifest(corrupt_copy, lambda m: m["database"]["tables"]["geoservice.layer"].update(checksum="12345"))
    with pytest.raises(RestoreError, match="geoservice.layer: content checksum differs; the restored schema was dropped again"):
        restore(on(demo_settings, bare_database_url), corrupt_copy)
    assert existing_tables(bare_database_url) == []


def test_restore_into_a_non_empty_database_is_refused(demo_backup: Path, demo_settings: Settings) -> None:
    settings = demo_settings  # a database holding data (one prepared by `db up` or a server but empty is restored into)
    before = query(settings, "SELECT count(*) FROM geoservice.layer_version")
    result = run_cli("restore", str(demo_backup), url=settings.database.url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: postgresql://") and "not empty, it has geoservice." in result.stderr
    assert "geoservice.feature" in result.stderr and result.stderr.count("\n") == 1
    assert query(settings, "SELECT count(*) FROM geoservice.layer_version") == before
