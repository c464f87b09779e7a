"""Loading one layer version into PostGIS in one transaction: own partition, COPY, index, attach, activate."""

from __future__ import annotations

import io
import json
import queue
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from psycopg2 import sql

from geoservice.ingest.classify import LandClass
from geoservice.ingest.definition import Definition
from geoservice.ingest.repair import REPAIRED, to_multipolygon_ewkb

COPY_COLUMNS = ("version_id", "source_row", "source_id", "name", "class_code", "original_code", "status",
                "attributes", "area_m2", "geom")


@dataclass(frozen=True)
class NewVersion:
    """The version row being written (invisible to others until commit)."""

    id: int
    layer: str
    version: int

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier("geoservice", f"feature_v{self.id}")


def refresh_land_classes(cur: psycopg2.extensions.cursor, classes: dict[str, LandClass], construction: list[str]) -> None:
    """Upsert the 用地用海 (2023) classes and which count as construction land."""
    rows = [(c.code, c.name_zh, c.name_en, c.code[:2] in construction) for c in classes.values()]
    cur.execute("CREATE TEMP TABLE incoming_class (LIKE geoservice.land_class) ON COMMIT DROP")
    cur.executemany("INSERT INTO incoming_class VALUES (%s, %s, %s, %s)", rows)
    cur.execute(
        "INSERT INTO geoservice.land_class SELECT * FROM incoming_class ON CONFLICT (code) DO UPDATE SET "
        "name_zh = excluded.name_zh, name_en = excluded.name_en, construction = excluded.construction"
    )


def begin_version(cur: psycopg2.extensions.cursor, definition: Definition, source_path: str, checksum: str) -> NewVersion:
    """Register the layer, lock it against concurrent loads, create the version row and its empty table."""
    layer = definition.layer
    cur.execute(
        "INSERT INTO geoservice.layer (name, kind, title, description, definition) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, title = excluded.title, "
        "description = excluded.description, definition = excluded.definition",
        (layer.name, layer.kind.value, layer.title, layer.description, json.dumps(layer.model_dump(mode="json"), ensure_ascii=False)),
    )
    cur.execute("SELECT name FROM geoservice.layer WHERE name = %s FOR UPDATE", (layer.name,))
    cur.execute("SELECT coalesce(max(version), 0) + 1 FROM geoservice.layer_version WHERE layer = %s", (layer.name,))
    number = cur.fetchone()[0]
    cur.execute(
        "INSERT INTO geoservice.layer_version (layer, version, source_path, source_checksum) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (layer.name, number, source_path, checksum),
    )
    new = NewVersion(cur.fetchone()[0], layer.name, number)
    cur.execute(sql.SQL("CREATE TABLE {} (LIKE geoservice.feature INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(new.table))
    return new


FIELD_SEPARATOR, NULL_MARK = "\x1f", "\x1e"


def _copy_text(values: np.ndarray | list | None, count: int) -> list[str]:
    """Values as COPY text-format fields: backslash, tab, newline, CR escaped; None as \\N.

    The column is escaped as one joined string (C-speed str.replace), falling back to pandas when a value
    holds the joining characters themselves.
    """
    if values is None:
        return ["\\N"] * count
    text = pd.Series(values, dtype="string").fillna(NULL_MARK).tolist()
    joined = FIELD_SEPARATOR.join(text)
    if joined.count(FIELD_SEPARATOR) != count - 1 or joined.count(NULL_MARK) != text.count(NULL_MARK):
        series = pd.Series(values, dtype="string")
        for char, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
            series = series.str.replace(char, escaped, regex=False)
        return series.fillna("\\N").tolist()
    for char, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        joined = joined.replace(char, escaped)
    return joined.replace(NULL_MARK, "\\N").split(FIELD_SEPARATOR)


def copy_text(
    new: NewVersion, srid: int, rows: np.ndarray, geometries: np.ndarray, source_ids: np.ndarray | None,
    names: np.ndarray | None, class_codes: np.ndarray | None, original_codes: np.ndarray | None,
    status: np.ndarray, attributes: pd.DataFrame,
) -> str:
    """One batch of clean rows as COPY text (geometry as hex EWKB MultiPolygon, attributes as JSON)."""
    count = len(rows)
    json_lines = (
        attributes.to_json(orient="records", lines=True, force_ascii=False, date_format="iso").splitlines()
        if len(attributes.columns) else None
    )
    columns = [
        [str(new.id)] * count, rows.astype(str).tolist(), _copy_text(source_ids, count), _copy_text(names, count),
        _copy_text(class_codes, count), _copy_text(original_codes, count),
        np.where(status == REPAIRED, "repaired", "kept").tolist(),
        _copy_text(json_lines, count) if json_lines is not None else ["{}"] * count,
        [repr(a) for a in shapely.area(geometries).tolist()],
        [wkb.hex() for wkb in to_multipolygon_ewkb(geometries, srid)],
    ]
    return "\n".join(map("\t".join, zip(*columns))) + "\n"


class CopyWriter:
    """COPYs prepared batches on a background thread, so the server parses one batch while we prepare the next.

    Only this thread touches the cursor between enter and exit; an error in it surfaces at the next `put` or at exit.
    """

    def __init__(self, cur: psycopg2.extensions.cursor, new: NewVersion) -> None:
        names = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
        self._statement = sql.SQL("COPY {} ({}) FROM STDIN").format(new.table, names).as_string(cur)
        self._cur = cur
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)

    def __enter__(self) -> CopyWriter:
        self._thread.start()
        return self

    def put(self, text: str) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(text)

    def _run(self) -> None:
        while (text := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._cur.copy_expert(self._statement, io.StringIO(text))
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self._error = exc

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


def finish_version(cur: psycopg2.extensions.cursor, new: NewVersion, summary: dict[str, object]) -> int:
    """Index the new table, attach it as a partition, record counts, make it the active version."""
    name = f"feature_v{new.id}"
    cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (version_id = {})").format(
        new.table, sql.Identifier(f"{name}_version"), sql.Literal(new.id)))
    cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (version_id, id)").format(new.table))
    cur.execute(sql.SQL("CREATE INDEX {} ON {} USING gist (geom)").format(sql.Identifier(f"{name}_geom"), new.table))
    cur.execute(sql.SQL("CREATE INDEX {} ON {} (version_id, class_code)").format(sql.Identifier(f"{name}_class"), new.table))
    cur.execute(sql.SQL("ALTER TABLE geoservice.feature ATTACH PARTITION {} FOR VALUES IN ({})").format(
        new.table, sql.Literal(new.id)))
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(new.table))
    count = cur.fetchone()[0]
    cur.execute("UPDATE geoservice.layer_version SET feature_count = %s, summary = %s WHERE id = %s",
                (count, json.dumps(summary, ensure_ascii=False), new.id))
    activate(cur, new.layer, new.version)
    cur.execute(sql.SQL("ANALYZE {}").format(new.table))
    return count


def activate(cur: psycopg2.extensions.cursor, layer: str, version: int) -> bool:
    """Make `version` the one active version of `layer`; False when no such version exists."""
    cur.execute("SELECT id FROM geoservice.layer_version WHERE layer = %s AND version = %s", (layer, version))
    if cur.fetchone() is None:
        return False
    cur.execute("UPDATE geoservice.layer_version SET is_active = false WHERE layer = %s AND is_active", (layer,))
    cur.execute("UPDATE geoservice.layer_version SET is_active = true WHERE layer = %s AND version = %s", (layer, version))
    return True
