"""Bulk writing: COPY text building (vectorized escaping, hex EWKB) and a background COPY writer."""

from __future__ import annotations

import io
import json
import queue
import struct
import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from psycopg2 import sql
from shapely import GeometryType

FIELD_SEPARATOR, NULL_MARK = "\x1f", "\x1e"
ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
NULL = "\\N"


def _as_text(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return NULL_MARK
    return value if isinstance(value, str) else str(value)


def text_field(values: np.ndarray | Sequence[object] | None, count: int) -> list[str]:
    """Values as COPY text-format fields: backslash, tab, newline, CR escaped; None/NA/NaN as \\N.

    The column is escaped as one joined string (C-speed str.replace), falling back to per-value escaping when
    a value holds the joining characters themselves.
    """
    if values is None:
        return [NULL] * count
    text = [_as_text(v) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]
    joined = FIELD_SEPARATOR.join(text)
    if joined.count(FIELD_SEPARATOR) != count - 1 or joined.count(NULL_MARK) != text.count(NULL_MARK):
        return [NULL if v == NULL_MARK else _escape(v) for v in text]
    return _escape(joined).replace(NULL_MARK, NULL).split(FIELD_SEPARATOR)


def _escape(text: str) -> str:
    for char, escaped in ESCAPES:
        text = text.replace(char, escaped)
    return text


def _jsonable(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value


def _json_values(values: list[object]) -> list[str]:
    """Each value as JSON text, encoded in one C-speed json.dumps call (\\x1f inside strings is escaped)."""
    clean = [v if type(v) is str else _jsonable(v) for v in values]
    encoded = json.dumps(clean, ensure_ascii=False, separators=(FIELD_SEPARATOR, ":"), default=str)
    return encoded[1:-1].split(FIELD_SEPARATOR) if clean else []


def json_field(columns: dict[str, np.ndarray], count: int) -> list[str]:
    """Rows of attribute columns as JSON objects (COPY-escaped), built column-wise."""
    if not columns:
        return ["{}"] * count
    keys = [json.dumps(name, ensure_ascii=False) + ":" for name in columns]
    encoded = [_json_values(np.asarray(values, dtype=object).tolist()) for values in columns.values()]
    if len(keys) == 1:
        prefix = "{" + keys[0]
        return text_field([prefix + value + "}" for value in encoded[0]], count)
    pieces = [[("{" if index == 0 else ",") + key + value for value in values]
              for index, (key, values) in enumerate(zip(keys, encoded))]
    pieces.append(["}"] * count)
    return text_field(list(map("".join, zip(*pieces))), count)


def number_field(values: np.ndarray) -> list[str]:
    """Numbers as COPY fields (shortest exact repr for floats, through json.dumps; NaN as NULL)."""
    if values.dtype.kind == "f":
        encoded = json.dumps(values.tolist(), separators=(FIELD_SEPARATOR, ":"))[1:-1].split(FIELD_SEPARATOR)
        return [NULL if v == "NaN" else v for v in encoded] if np.isnan(values).any() else encoded
    return values.astype(str).tolist()


def multipolygon_ewkb_hex(geometries: np.ndarray, srid: int) -> list[str]:
    """Hex EWKB MultiPolygons with SRID for Polygon/MultiPolygon rows, without rebuilding GEOS objects."""
    header = b"\x01" + struct.pack("<II", 0x20000006, srid)
    one = header + struct.pack("<I", 1)
    wkb = shapely.to_wkb(geometries, byte_order=1, output_dimension=2)
    is_polygon = shapely.get_type_id(geometries) == GeometryType.POLYGON
    return [(one + w if p else header + w[5:]).hex() for w, p in zip(wkb.tolist(), is_polygon.tolist())]


def copy_text(columns: Sequence[Sequence[str]]) -> str:
    """Rows of already formatted fields as one COPY text payload."""
    return "\n".join(map("\t".join, zip(*columns))) + "\n"


class CopyWriter:
    """COPYs prepared payloads on a background thread, so the server parses one while the next is prepared.

    Only this thread touches the cursor between enter and exit; an error in it surfaces at the next `put` or at exit.
    """

    def __init__(self, cur: psycopg2.extensions.cursor, table: sql.Composable, columns: Sequence[str]) -> None:
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        self._statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table, names).as_string(cur)
        self._cur = cur
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)

    def __enter__(self) -> CopyWriter:
        self._thread.start()
        return self

    def put(self, payload: str) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(payload)

    def _run(self) -> None:
        while (payload := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._cur.copy_expert(self._statement, io.StringIO(payload))
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self._error = exc

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error
