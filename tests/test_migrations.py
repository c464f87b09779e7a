"""Migrations: applied in order, each in a transaction, recorded with a checksum; a changed file is refused."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from geoservice.db.connection import connect_url
from geoservice.db.migrate import applied, discover, migrate
from geoservice.errors import MigrationError


def quiet(_: str) -> None:
    """Progress messages are not asserted here."""


def table_exists(url: str, name: str) -> bool:
    conn = connect_url(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            return bool(cur.fetchone()[0])
    finally:
        conn.close()


def test_project_migrations_applied_to_session_database(settings) -> None:
    conn = connect_url(settings.database.url)
    try:
        done = applied(conn)
        assert sorted(done) == [m.version for m in discover()]
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('geoservice.layer_version') IS NOT NULL, to_regclass('geoservice.feature') IS NOT NULL")
            assert cur.fetchone() == (True, True)
            cur.execute("SELECT value FROM geoservice.meta WHERE key = 'working_srid'")
            assert cur.fetchone()[0] == "4548"
    finally:
        conn.close()


def test_order_idempotency_and_checksum_refusal(bare_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("ALTER TABLE geoservice.t ADD COLUMN b int;")
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE geoservice.t (a int);")
    conn = connect_url(bare_database_url)
    try:
        names = [m.path.name for m in migrate(conn, 4548, quiet, sql_dir=tmp_path)]
        assert names == ["0001_first.sql", "0002_second.sql"]  # 0002 needs 0001's table: order matters
        assert migrate(conn, 4548, quiet, sql_dir=tmp_path) == []  # idempotent
        with conn.cursor() as cur:
            cur.execute("SELECT version, name FROM geoservice.schema_migrations ORDER BY applied_at, version")
            assert cur.fetchall() == [(1, "first"), (2, "second")]
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE geoservice.t (a bigint);")
        with pytest.raises(MigrationError, match=r"0001_first.sql: changed after it was applied"):
            migrate(conn, 4548, quiet, sql_dir=tmp_path)
    finally:
        conn.close()


def test_failed_migration_rolls_back_and_names_file(bare_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE geoservice.ok (a int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE geoservice.half (a int);\nSELECT * FROM no_such_table;")
    conn = connect_url(bare_database_url)
    try:
        with pytest.raises(MigrationError, match=r"0002_broken.sql: .*no_such_table"):
            migrate(conn, 4548, quiet, sql_dir=tmp_path)
        assert sorted(applied(conn)) == [1]
    finally:
        conn.close()
    assert table_exists(bare_database_url, "geoservice.ok")
    assert not table_exists(bare_database_url, "geoservice.half")


def test_working_crs_change_refused(bare_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_geom.sql").write_text("CREATE TABLE geoservice.g (geom geometry(Polygon, {{working_srid}}));")
    conn = connect_url(bare_database_url)
    try:
        migrate(conn, 4548, quiet, sql_dir=tmp_path)
        with conn.cursor() as cur:
            cur.execute("SELECT srid FROM geometry_columns WHERE f_table_name = 'g'")
            assert cur.fetchone()[0] == 4548
        with pytest.raises(MigrationError, match=r"stores geometry in EPSG:4548 but working_crs is EPSG:4549"):
            migrate(conn, 4549, quiet, sql_dir=tmp_path)
    finally:
        conn.close()


def test_badly_named_and_duplicate_files(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("")
    with pytest.raises(MigrationError, match=r"1_init.sql: migration files are named NNNN_lowercase_name.sql"):
        discover(tmp_path)
    (tmp_path / "1_init.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(MigrationError, match=r"version 0001 is also used by 0001_a.sql"):
        discover(tmp_path)


def test_one_active_version_per_layer(settings) -> None:
    conn = connect_url(settings.database.url)
    try:
        with pytest.raises(psycopg2.errors.UniqueViolation), conn, conn.cursor() as cur:
            cur.execute("INSERT INTO geoservice.layer (name, kind, title) VALUES ('t_one_active', 'land_use', 'x')")
            for version in (1, 2):
                cur.execute(
                    "INSERT INTO geoservice.layer_version (layer, version, source_path, source_checksum, is_active)"
                    " VALUES ('t_one_active', %s, 'x.shp', 'abc', true)",
                    (version,),
                )
    finally:
        conn.close()
