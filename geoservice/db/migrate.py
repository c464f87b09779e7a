"""Numbered SQL migrations (sql/NNNN_name.sql): applied in order, each in a transaction, recorded with a checksum."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from geoservice.db.packages import Echo
from geoservice.errors import MigrationError

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: placeholder in migration files replaced by the working CRS's EPSG code
SRID_PLACEHOLDER = "{{working_srid}}"
#: advisory lock key so two migrators never run at once
LOCK_KEY = 0x6E0_5E41

BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS geoservice;
CREATE TABLE IF NOT EXISTS geoservice.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS geoservice.meta (key text PRIMARY KEY, value text NOT NULL);
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def sql(self, working_srid: int) -> str:
        return self.path.read_text(encoding="utf-8").replace(SRID_PLACEHOLDER, str(working_srid))


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Migration files in version order; a badly named .sql file or a duplicate number is an error."""
    migrations: dict[int, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path}: version {version:04d} is also used by {migrations[version].path.name}")
        migrations[version] = Migration(version, match.group(2), path)
    return [migrations[v] for v in sorted(migrations)]


def applied(conn: psycopg2.extensions.connection) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of what the database has applied (empty before the first migration)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('geoservice.schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return {}
        cur.execute("SELECT version, name, checksum FROM geoservice.schema_migrations ORDER BY version")
        return {version: (name, checksum) for version, name, checksum in cur.fetchall()}


def _check_working_srid(cur: psycopg2.extensions.cursor, working_srid: int) -> None:
    cur.execute("SELECT value FROM geoservice.meta WHERE key = 'working_srid'")
    row = cur.fetchone()
    if row is None:
        cur.execute("INSERT INTO geoservice.meta (key, value) VALUES ('working_srid', %s)", (str(working_srid),))
    elif int(row[0]) != working_srid:
        raise MigrationError(
            f"the database stores geometry in EPSG:{row[0]} but working_crs is EPSG:{working_srid}: "
            "use a new database or set working_crs back"
        )


def migrate(conn: psycopg2.extensions.connection, working_srid: int, echo: Echo = print, sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Apply every pending migration in order, each in its own transaction; return those applied."""
    files = discover(sql_dir)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(BOOTSTRAP)
            _check_working_srid(cur, working_srid)
        done = applied(conn)
        for migration in files:
            if migration.version in done and done[migration.version][1] != migration.checksum:
                raise MigrationError(
                    f"{migration.path}: changed after it was applied (checksum differs); "
                    "never edit an applied migration, add a new numbered file instead"
                )
        known = {m.version for m in files}
        missing = sorted(set(done) - known)
        if missing:
            raise MigrationError(f"{sql_dir}: the database has migrations {missing} that have no file here (a newer geoservice?)")
        pending = [m for m in files if m.version not in done]
        for migration in pending:
            echo(f"applying migration {migration.path.name}")
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(migration.sql(working_srid))
                    cur.execute(
                        "INSERT INTO geoservice.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
            except psycopg2.Error as exc:
                detail = (exc.pgerror or str(exc)).strip().replace("\n", " | ")
                raise MigrationError(f"{migration.path}: {detail}") from exc
        return pending
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
