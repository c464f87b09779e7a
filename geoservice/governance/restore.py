"""`geoservice restore PATH`: a backup folder into an empty database, checked before and after.

Before the target is touched: the manifest is read and validated, every file's size and SHA-256 checked, the
dump's table of contents read, the working CRS and migrations compared with this geoservice, and the target
checked to be empty. pg_restore then runs in a single transaction (all or nothing); afterwards every table's row
count and content checksum must equal the manifest's, else the restored schema is dropped again and the target is
left as empty as it was.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql

from geoservice.db.connection import connect_url, database_url, embedded_cluster, redact
from geoservice.db.lifecycle import ensure_database, ensure_postgis
from geoservice.db.migrate import discover
from geoservice.db.read import SCHEMA
from geoservice.errors import GeoserviceError
from geoservice.governance.backup import TableCounts
from geoservice.governance.fingerprints import sequence_values, table_fingerprints, user_tables
from geoservice.governance.manifest import (
    DUMP, MANIFEST, BackupError, Manifest, TableEntry, file_checksum, read_manifest, verify_files,
)
from geoservice.governance.pgtools import client_program, run_client
from geoservice.progress import Reporter, SilentReporter
from geoservice.settings import Settings

TABLES_SHOWN = 8

class RestoreError(GeoserviceError):
    """The target database cannot take the backup (not empty), or what was restored does not match the manifest."""


@dataclass
class RestoreSummary(TableCounts):
    """What was restored where, and how the backup's project files compare with the project's."""

    path: Path
    target: str
    tables: dict[str, TableEntry]
    files: dict[str, str]
    pending_migrations: list[int]
    seconds: float


def _check_fits(settings: Settings, folder: Path, manifest: Manifest) -> list[int]:
    """The backup's CRS and migrations fit this geoservice; the migrations this geoservice has beyond them."""
    where = folder / MANIFEST
    if manifest.database.working_srid != settings.working_srid:
        raise BackupError(f"{where}: the backup stores geometry in EPSG:{manifest.database.working_srid} but working_crs "
                          f"is EPSG:{settings.working_srid}: set working_crs to match the backup")
    known = {m.version: m for m in discover()}
    for migration in manifest.database.migrations:
        mine = known.get(migration.version)
        if mine is None:
            raise BackupError(f"{where}: the backed-up database has migration {migration.version:04d}_{migration.name}.sql, "
                              "which this geoservice does not have: restore it with the geoservice that wrote it")
        if mine.checksum != migration.checksum:
            raise BackupError(f"{where}: migration {mine.path.name} differs from the one the backed-up database applied")
    return sorted(set(known) - {m.version for m in manifest.database.migrations})


def _reach_target(settings: Settings, reporter: Reporter) -> str:
    """The target database's URL; the embedded cluster is started and the database created when missing."""
    if settings.database.url:
        return database_url(settings)
    cluster = embedded_cluster(settings, reporter.line)
    with cluster.lock():
        cluster.start()
        ensure_database(cluster.url("postgres"), settings.database.name, reporter.line)
    return cluster.url(settings.database.name)


def existing_tables(url: str) -> list[str]:
    """The tables and views a database holds besides those of its extensions (PostGIS), and a `geoservice` schema."""
    conn = connect_url(url)
    try:
        with conn.cursor() as cur:
            found = user_tables(cur)
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,))
            if cur.fetchone() and not any(name.startswith(f"{SCHEMA}.") for name in found):
                found.insert(0, f"schema {SCHEMA}")
            return found
    finally:
        conn.close()


#: what the migrator itself writes into a new database: its record of migrations and the working SRID
_MIGRATOR_TABLES = {f"{SCHEMA}.schema_migrations", f"{SCHEMA}.meta"}


def _with_rows(url: str, tables: list[str]) -> list[str]:
    """The tables (schema.table) that hold a row, the migrator's own aside."""
    conn = connect_url(url)
    try:
        with conn.cursor() as cur:
            holding = []
            for name in tables:
                if name not in _MIGRATOR_TABLES:
                    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(*name.split(".", 1))))
                    if cur.fetchone()[0]:
                        holding.append(name)
        return holding
    finally:
        conn.close()


def _check_empty(url: str) -> bool:
    """RestoreError naming what the target holds (the tables with rows first), unless it holds nothing but its
    extensions — or a geoservice schema with no data, as `db up` or a running server prepared it (True: that schema
    is to be dropped before the restore)."""
    found = existing_tables(url)
    if not found:
        return False
    holding = _with_rows(url, [name for name in found if name.startswith(f"{SCHEMA}.")])
    if all(name.startswith(f"{SCHEMA}.") for name in found) and not holding:
        return True
    found = holding + [name for name in found if name not in holding]
    shown = ", ".join(found[:TABLES_SHOWN]) + (f" and {len(found) - TABLES_SHOWN} more" if len(found) > TABLES_SHOWN else "")
    raise RestoreError(f"{redact(url)}: not empty, it has {shown}: restore into an empty database "
                       "(a new database.name / GEOSERVICE_DB_NAME, or a new GEOSERVICE_DATABASE_URL)")


def _mismatches(manifest: Manifest, tables: dict[str, TableEntry], sequences: dict[str, int]) -> list[str]:
    """How the restored tables and sequences differ from the manifest: one phrase per table."""
    expected = manifest.database.tables
    problems = [f"{name}: missing" for name in expected if name not in tables]
    problems += [f"{name}: not in the backup" for name in tables if name not in expected]
    for name, entry in expected.items():
        got = tables.get(name)
        if got is not None and got.rows != entry.rows:
            problems.append(f"{name}: {got.rows} rows where the manifest says {entry.rows}")
        elif got is not None and got.checksum != entry.checksum:
            problems.append(f"{name}: content checksum differs")
    problems += [f"{name}: sequence at {sequences.get(name)} behind {value}" for name, value in manifest.database.sequences.items()
                 if sequences.get(name, -1) < value]
    return problems


def _verify_restored(url: str, folder: Path, manifest: Manifest, reporter: Reporter) -> dict[str, TableEntry]:
    """Row counts and checksums equal the manifest's; else the restored schema is dropped and RestoreError raised."""
    conn = connect_url(url)
    try:
        with conn, conn.cursor() as cur:
            tables = table_fingerprints(cur, reporter)
            problems = _mismatches(manifest, tables, sequence_values(cur))
        if problems:
            with conn, conn.cursor() as cur:
                cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise RestoreError(f"{folder / MANIFEST}: the restored database does not match the backup: {problems[0]}{more}; "
                               "the restored schema was dropped again")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
        return tables
    finally:
        conn.close()


def _project_files(settings: Settings, folder: Path, manifest: Manifest, write: bool) -> dict[str, str]:
    """origin -> unchanged | differs | missing (in the project) | restored (written back when `write`)."""
    states: dict[str, str] = {}
    for name, entry in manifest.files.items():
        if entry.origin is None:
            continue
        target = Path(entry.origin) if entry.origin.startswith("/") else settings.root / entry.origin
        state = "missing" if not target.is_file() else "unchanged" if file_checksum(target)[0] == entry.sha256 else "differs"
        if write and state != "unchanged":
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / name, target)
            state = "restored"
        states[entry.origin] = state
    return states


def restore(settings: Settings, path: Path, reporter: Reporter | None = None, restore_files: bool = False) -> RestoreSummary:
    """Restore the backup folder `path` into the settings' (empty) database and verify it; with `restore_files`,
    also write the backed-up configuration files back into the project."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    folder = path.resolve()
    manifest = read_manifest(folder)
    pending = _check_fits(settings, folder, manifest)
    verify_files(folder, manifest, reporter)
    pg_restore = client_program(settings, "pg_restore")
    try:
        run_client(pg_restore, ["--list", str(folder / DUMP)])
    except GeoserviceError as exc:
        raise BackupError(f"{folder / DUMP}: not a readable pg_dump archive ({exc})") from exc
    url = _reach_target(settings, reporter)
    prepared = _check_empty(url)
    ensure_postgis(url)
    if prepared:  # the backup brings the whole schema, its migrations' record included
        conn = connect_url(url)
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.close()
    reporter.line(f"pg_restore: {folder / DUMP} into {redact(url)} (one transaction)")
    with reporter.task("pg_restore", None):
        run_client(pg_restore, ["--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges", str(folder / DUMP)], url)
    tables = _verify_restored(url, folder, manifest, reporter)
    files = _project_files(settings, folder, manifest, restore_files)
    return RestoreSummary(folder, redact(url), tables, files, pending, time.perf_counter() - started)
