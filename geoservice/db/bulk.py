"""Bulk writing: COPY text building (vectorized escaping, hex EWKB) and a background COPY writer."""

from __future__ import annotations

import io
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


def text_field(values: np.ndarray | Sequence[object] | None, count: int) -> list[str]:
    """Values as COPY text-format fields: backslash, tab, newline, CR escaped; None/NA as \\N.

    The column is escaped as one joined string (C-speed str.replace), falling back to pandas when a value
    holds the joining characters themselves.
    """
    if values is None:
        return [NULL] * count
    text = pd.Series(values, dtype="string").fillna(NULL_MARK).tolist()
    joined = FIELD_SEPARATOR.join(text)
    if joined.count(FIELD_SEPARATOR) != count - 1 or joined.count(NULL_MARK) != text.count(NULL_MARK):
        series = pd.Series(values, dtype="string")
        for char, escaped in ESCAPES:
            series = series.str.replace(char, escaped, regex=False)
        return series.fillna(NULL).tolist()
    for char, escaped in ESCAPES:
        joined = joined.replace(char, escaped)
    return joined.replace(NULL_MARK, NULL).split(FIELD_SEPARATOR)


def number_field(values: np.ndarray) -> list[str]:
    """Numbers as COPY fields (exact repr for floats; NaN as NULL)."""
    if values.dtype.kind == "f":
        return [NULL if v != v else repr(v) for v in values.tolist()]
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
