"""`geoservice backup PATH`: a consistent, self-checking backup folder of the project's database and configuration.

    PATH/database.dump   pg_dump custom format of the schema `geoservice` (PostGIS itself lives in `public`
                         and is created by the restore)
    PATH/files/…         the config file, layers/*.yaml, the rules, the classification crosswalks and the
                         rasters the config and rules name, under their paths relative to the project root
    PATH/manifest.json   SHA-256 of every file; row count and content checksum of every table; migrations

The dump and the table checksums read the same snapshot (pg_export_snapshot), so the manifest describes exactly
what the dump holds even while other sessions write. The folder is written under a temporary name and renamed
when complete: a folder named PATH is always a whole backup.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from geoservice import __version__
from geoservice.db.connection import connect_url, database_url, redact
from geoservice.db.migrate import applied
from geoservice.db.read import SCHEMA
from geoservice.governance.fingerprints import sequence_values, table_fingerprints, user_tables
from geoservice.governance.manifest import (
    DUMP, FILES_DIR, BackupError, DatabaseEntry, FileEntry, Manifest, MigrationEntry, TableEntry, file_checksum, write_manifest,
)
from geoservice.governance.pgtools import client_program, program_version, start_client, wait_client
from geoservice.progress import Reporter, SilentReporter
from geoservice.settings import Settings


@dataclass(frozen=True)
class TableTotal:
    """Rows of one table, its partitions counted together."""

    table: str
    partitions: int
    rows: int


class TableCounts:
    """Totals over the `tables` of a backup's or restore's summary."""

    tables: dict[str, TableEntry]

    @property
    def totals(self) -> list[TableTotal]:
        return table_totals(self.tables)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


@dataclass
class BackupSummary(TableCounts):
    """What a backup holds: the dump's size, the project files, the tables and their rows."""

    path: Path
    dump_bytes: int
    files: list[str]
    missing_files: list[str]
    tables: dict[str, TableEntry]
    seconds: float


def table_totals(tables: dict[str, TableEntry]) -> list[TableTotal]:
    """Rows per table with each partitioned table's partitions summed into it, by name."""
    totals: dict[str, list[int]] = {}
    for name, entry in tables.items():
        counted = totals.setdefault(entry.partition_of or name, [0, 0])
        counted[0] += 1 if entry.partition_of else 0
        counted[1] += entry.rows
    return [TableTotal(name, partitions, rows) for name, (partitions, rows) in sorted(totals.items())]


def _origin(settings: Settings, path: Path) -> str:
    """A project file's path relative to the project root, or absolute when it lies elsewhere."""
    try:
        return path.resolve().relative_to(settings.root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _stored_name(origin: str) -> str:
    """Where a project file goes in the backup folder: files/<origin>, absolute origins under files/external/."""
    return f"{FILES_DIR}/external{origin}" if origin.startswith("/") else f"{FILES_DIR}/{origin}"


def _rule_rasters(rules_file: Path) -> list[str]:
    """The raster paths config/rules.yaml names (read leniently: a backup must not fail on a rule error)."""
    try:
        data = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    rules = data.get("rules") if isinstance(data, dict) else None
    return [rule["raster"] for rule in rules or [] if isinstance(rule, dict) and isinstance(rule.get("raster"), str)]


def project_files(settings: Settings) -> tuple[list[Path], list[Path]]:
    """(existing, missing) configuration files of the project: config, layer definitions, rules, crosswalks, rasters."""
    rules_file = settings.path(settings.paths.rules)
    wanted = [settings.config_file] if settings.config_file else []
    wanted += sorted(settings.path(settings.paths.layers).glob("*.yaml"))
    wanted += [rules_file]
    wanted += sorted(settings.path(settings.paths.classification).glob("*.csv"))
    wanted += [settings.path(raster.path) for raster in settings.rasters.values()]
    wanted += [settings.path(Path(raster)) for raster in _rule_rasters(rules_file)]
    unique = list(dict.fromkeys(path.resolve() for path in wanted))
    return [p for p in unique if p.is_file()], [p for p in unique if not p.is_file()]


def _empty_target(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path}: exists and is not an empty folder; give a new folder for the backup")


def _dump_database(settings: Settings, dump: Path, reporter: Reporter) -> DatabaseEntry:
    """pg_dump the schema and checksum its tables in one snapshot; what the manifest says about the database."""
    url = database_url(settings)
    pg_dump = client_program(settings, "pg_dump")
    conn = connect_url(url)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('geoservice.meta') IS NOT NULL")
            if not cur.fetchone()[0]:
                raise BackupError(f"{redact(url)}: no schema {SCHEMA} with its tables: not a geoservice database, or never "
                                  "set up (`geoservice db up`)")
            cur.execute("SELECT pg_export_snapshot(), current_setting('server_version'), "
                        "(SELECT extversion FROM pg_extension WHERE extname = 'postgis'), "
                        "(SELECT value FROM geoservice.meta WHERE key = 'working_srid')")
            snapshot, server_version, postgis_version, srid = cur.fetchone()
            reporter.line(f"pg_dump: schema {SCHEMA} of {redact(url)}")
            process = start_client(pg_dump, ["--format=custom", f"--schema={SCHEMA}", f"--snapshot={snapshot}",
                                             f"--file={dump}"], url)
            try:
                tables = table_fingerprints(cur, reporter)
                sequences = sequence_values(cur)
                others = [name for name in user_tables(cur) if not name.startswith(f"{SCHEMA}.")]
            except BaseException:
                process.kill()
                process.wait()
                raise
            wait_client(process, pg_dump)
        migrations = [MigrationEntry(version=v, name=name, checksum=checksum) for v, (name, checksum) in sorted(applied(conn).items())]
        conn.rollback()
    finally:
        conn.close()
    return DatabaseEntry(
        source=redact(url), server_version=server_version, postgis_version=postgis_version or "",
        pg_dump_version=program_version(pg_dump), working_srid=int(srid), migrations=migrations,
        tables=tables, sequences=sequences, not_backed_up=others)


def backup(settings: Settings, path: Path, reporter: Reporter | None = None) -> BackupSummary:
    """Write a backup folder at `path` (which must not exist, or be empty); BackupError/DatabaseError on failure,
    leaving nothing at `path`."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    path = path.resolve()
    _empty_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        database = _dump_database(settings, partial / DUMP, reporter)
        sha, size = file_checksum(partial / DUMP)
        files = {DUMP: FileEntry(sha256=sha, bytes=size)}
        existing, missing = project_files(settings)
        for source in existing:
            origin = _origin(settings, source)
            stored = partial / _stored_name(origin)
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, stored)
            sha, size = file_checksum(stored)
            files[_stored_name(origin)] = FileEntry(sha256=sha, bytes=size, origin=origin)
        for source in missing:
            reporter.line(f"{source}: named by the configuration but not found: not in the backup")
        for table in database.not_backed_up:
            reporter.line(f"{table}: outside the schema {SCHEMA}, not the project's: not in the backup")
        write_manifest(partial, Manifest(created_at=datetime.now(UTC), geoservice_version=__version__,
                                         database=database, files=files))
        _empty_target(path)
        os.replace(partial, path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupSummary(path, files[DUMP].bytes, [e.origin for e in files.values() if e.origin],
                         [_origin(settings, p) for p in missing], database.tables, time.perf_counter() - started)
