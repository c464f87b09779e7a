"""The backup folder's manifest.json: what the backup holds (files with SHA-256 checksums, tables with row counts
and content checksums, migrations, versions), written last and checked before anything is restored."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from geoservice.errors import GeoserviceError
from geoservice.progress import Reporter

MANIFEST = "manifest.json"
DUMP = "database.dump"
FILES_DIR = "files"
FORMAT = "geoservice-backup"
CHUNK = 1 << 20


class BackupError(GeoserviceError):
    """A backup cannot be written, or a backup folder is incomplete, corrupt or does not fit: names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    """One file of the backup; `origin` is where a project file came from (relative to the project root, or absolute)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    origin: str | None = None


class TableEntry(_Strict):
    """A table's row count and content checksum (see fingerprints.py)."""

    rows: int = Field(ge=0)
    checksum: str = Field(pattern=r"^-?\d+$")
    partition_of: str | None = None


class MigrationEntry(_Strict):
    """A migration the backed-up database had applied."""

    version: int
    name: str
    checksum: str


class DatabaseEntry(_Strict):
    """The backed-up database: where from, versions, schema state and contents; `not_backed_up`: tables outside the
    schema `geoservice` (not the project's, not in the dump)."""

    source: str
    server_version: str
    postgis_version: str
    pg_dump_version: str
    working_srid: int
    migrations: list[MigrationEntry]
    tables: dict[str, TableEntry]
    sequences: dict[str, int]
    not_backed_up: list[str] = Field(default_factory=list)


class Manifest(_Strict):
    """manifest.json."""

    format: Literal["geoservice-backup"] = FORMAT
    format_version: Literal[1] = 1
    created_at: datetime
    geoservice_version: str
    database: DatabaseEntry
    files: dict[str, FileEntry]

    @field_validator("files")
    @classmethod
    def _inside_the_folder(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        for name in files:
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise ValueError(f"{name!r} is not a path inside the backup folder")
        if DUMP not in files:
            raise ValueError(f"{DUMP} is not listed")
        return files


def file_checksum(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """manifest.json, indented, UTF-8."""
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(folder: Path) -> Manifest:
    """The validated manifest of a backup folder; BackupError naming the file and what is wrong."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BackupError(f"{folder}: no such backup folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"{path}: missing: not a complete geoservice backup") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"{path}: not valid JSON ({exc}): the manifest is corrupt or truncated") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{path}: not a geoservice backup manifest (format is not {FORMAT!r})")
    try:
        return Manifest(**data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        raise BackupError(f"{path}: {key}: {problem}") from exc


def verify_files(folder: Path, manifest: Manifest, reporter: Reporter) -> None:
    """Every listed file is there with its size and SHA-256; BackupError naming the first that is not."""
    with reporter.task("verifying files", sum(entry.bytes for entry in manifest.files.values())) as task:
        for name, entry in manifest.files.items():
            path = folder / name
            if not path.is_file():
                raise BackupError(f"{path}: missing (listed in {MANIFEST}): the backup is incomplete")
            size = path.stat().st_size
            if size != entry.bytes:
                raise BackupError(f"{path}: {size} bytes where {MANIFEST} says {entry.bytes}: the file is truncated or altered")
            if file_checksum(path)[0] != entry.sha256:
                raise BackupError(f"{path}: SHA-256 differs from {MANIFEST}: the file is corrupt or altered")
            task.advance(entry.bytes)
