"""Bulk writing: binary COPY building (NumPy + Arrow) and a background binary COPY writer; a few COPY text
helpers (numbers, hex EWKB) for hand-built loads."""

from __future__ import annotations

import json
import queue
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from psycopg2 import sql
from shapely import GeometryType

FIELD_SEPARATOR, NULL_MARK = "\x1f", "\x1e"
NULL = "\\N"
EWKB_MULTIPOLYGON_WITH_SRID = 0x20000006
ONE_PART = struct.pack("<I", 1)


def _is_na(value: object) -> bool:
    """pandas.NA, without importing pandas for it (a value cannot be pandas.NA unless pandas is loaded)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and value is pandas.NA


def _as_text(value: object) -> str:
    if value is None or _is_na(value) or (isinstance(value, float) and value != value):
        return NULL_MARK
    return value if isinstance(value, str) else str(value)


def _jsonable(value: object) -> object:
    if value is None or _is_na(value) or (isinstance(value, float) and value != value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value


def _json_values(values: list[object]) -> list[str]:
    """Each value as JSON text, encoded in one C-speed json.dumps call (\\x1f inside strings is escaped)."""
    clean = [v if type(v) is str else _jsonable(v) for v in values]
    encoded = json.dumps(clean, ensure_ascii=False, separators=(FIELD_SEPARATOR, ":"), default=str)
    return encoded[1:-1].split(FIELD_SEPARATOR) if clean else []


def number_field(values: np.ndarray) -> list[str]:
    """Numbers as COPY fields (shortest exact repr for floats, through json.dumps; NaN as NULL)."""
    if values.dtype.kind == "f":
        encoded = json.dumps(values.tolist(), separators=(FIELD_SEPARATOR, ":"))[1:-1].split(FIELD_SEPARATOR)
        return [NULL if v == "NaN" else v for v in encoded] if np.isnan(values).any() else encoded
    return values.astype(str).tolist()


def multipolygon_ewkb_hex(geometries: np.ndarray, srid: int) -> list[str]:
    """Hex EWKB MultiPolygons with SRID for Polygon/MultiPolygon rows, without rebuilding GEOS objects."""
    header = b"\x01" + struct.pack("<II", EWKB_MULTIPOLYGON_WITH_SRID, srid)
    one = header + ONE_PART
    wkb = shapely.to_wkb(geometries, byte_order=1, output_dimension=2)
    is_polygon = shapely.get_type_id(geometries) == GeometryType.POLYGON
    return [(one + w if p else header + w[5:]).hex() for w, p in zip(wkb.tolist(), is_polygon.tolist())]


def copy_text(columns: Sequence[Sequence[str]]) -> str:
    """Rows of already formatted fields as one COPY text payload."""
    return "\n".join(map("\t".join, zip(*columns))) + "\n"


# --- Binary COPY -------------------------------------------------------------------------------------------------
#
# PostgreSQL parses binary COPY rows faster than text (no escapes, no hex EWKB), and the rows are built here without
# a Python loop over rows: the fixed-width parts of each row (field count, lengths, integers, constant prefixes) are
# one NumPy structured array, the variable-width parts are Arrow binary arrays, and Arrow's
# binary_join_element_wise concatenates them row by row in C++ (the GIL released).

COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
COPY_BINARY_TRAILER = b"\xff\xff"
#: JSON/COPY-text whitespace that Python's str.strip() removes (utf8_trim with exactly these is the same strip)
PYTHON_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                     "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
#: a payload larger than this is built in halves (Arrow binary arrays hold at most 2 GiB)
MAX_PAYLOAD = 1 << 30


@dataclass(frozen=True)
class BinaryField:
    """One column of binary COPY rows: either `fixed` (big-endian numbers, never NULL) or `parts`.

    `parts` are Arrow binary arrays concatenated into the value; a row is NULL where `null` is set (its parts must be
    empty there). `prefix` is constant bytes ahead of the parts, for fields that are never NULL (jsonb's version byte,
    an EWKB header).
    """

    fixed: np.ndarray | None = None
    parts: tuple[pa.Array, ...] = ()
    null: np.ndarray | None = None
    prefix: bytes = b""


def int_field(values: np.ndarray | int, count: int, dtype: str = ">i8") -> BinaryField:
    """An integer column (int8 by default, ">i4" for integer); a scalar is repeated."""
    return BinaryField(fixed=np.broadcast_to(np.asarray(values).astype(dtype), (count,)))


def arrow_text(values: pa.Array | pa.ChunkedArray | np.ndarray | Sequence[object] | None, count: int) -> pa.Array:
    """Values as an Arrow string array: None/NA/NaN as null, other non-text values through str() (as text_field)."""
    if values is None:
        return pa.nulls(count, pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return values.cast(pa.string())
        values = values.to_pylist()
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return pa.array([None if v == NULL_MARK else v for v in map(_as_text, items)], pa.string())


def text_binary_field(values: pa.Array | pa.ChunkedArray | np.ndarray | Sequence[object] | None, count: int) -> BinaryField:
    """A text column (UTF-8 bytes; NULL for None/NA/NaN)."""
    text = arrow_text(values, count)
    if text.null_count == count:
        return BinaryField(parts=(pa.nulls(count, pa.binary()),), null=np.ones(count, bool))
    null = text.is_null().to_numpy(zero_copy_only=False) if text.null_count else None
    return BinaryField(parts=(text.cast(pa.binary()),), null=null)


def float_field(values: np.ndarray) -> BinaryField:
    """A double precision column (never NULL)."""
    return BinaryField(fixed=np.asarray(values, dtype=">f8"))


def bool_field(values: np.ndarray) -> BinaryField:
    """A boolean column (never NULL)."""
    return BinaryField(fixed=np.asarray(values, dtype=bool).astype(np.uint8))


def int_field_at(values: np.ndarray, index: np.ndarray) -> BinaryField:
    """values[index] as a bigint column, NULL where index is -1."""
    null = index < 0
    data = np.asarray(values, dtype=">i8")[index[~null]]
    offsets = np.zeros(len(index) + 1, np.int32)
    np.cumsum(np.where(null, 0, 8), out=offsets[1:])
    array = pa.BinaryArray.from_buffers(pa.binary(), len(index), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return BinaryField(parts=(array,), null=null if null.any() else None)


def text_field_at(values: np.ndarray, index: np.ndarray) -> BinaryField:
    """values[index] as a text column, NULL where index is -1 or the value is None.

    `values` hold text or None (as read from PostgreSQL); Arrow converts them in C, no Python loop over rows.
    """
    null = index < 0
    if len(values) == 0 or null.all():
        return text_binary_field(None, len(index))
    return text_binary_field(pa.array(np.asarray(values, dtype=object)[np.where(null, 0, index)], pa.string(), mask=null),
                             len(index))


def constant_text_field(value: str) -> BinaryField:
    """A text column holding `value` in every row."""
    return BinaryField(prefix=value.encode("utf-8"))


def multipolygon_wkb_field(wkb: pa.Array, multi: np.ndarray, srid: int) -> BinaryField:
    """A geometry column from Polygon or MultiPolygon WKB (2D, little-endian; `multi` says which), stored as EWKB
    MultiPolygons with the SRID: a Polygon gains a one-part header, a MultiPolygon swaps its own for one."""
    header = b"\x01" + struct.pack("<II", EWKB_MULTIPOLYGON_WITH_SRID, srid)
    if not multi.any():
        return BinaryField(parts=(wkb,), prefix=header + ONE_PART)
    longest = pc.max(pc.binary_length(wkb)).as_py() or 0  # binary_slice without a stop fails (pyarrow 26)
    if multi.all():
        return BinaryField(parts=(pc.binary_slice(wkb, 5, longest + 1),), prefix=header)
    multi_mask = pa.array(multi, pa.bool_())
    return BinaryField(
        parts=(pc.if_else(multi_mask, pa.scalar(b"", pa.binary()), pa.scalar(ONE_PART, pa.binary())),
               pc.if_else(multi_mask, pc.binary_slice(wkb, 5, longest + 1), wkb)),
        prefix=header,
    )


def multipolygon_field(geometries: np.ndarray, srid: int) -> BinaryField:
    """Polygon/MultiPolygon geometries as a geometry column of EWKB MultiPolygons with the SRID."""
    wkb = pa.array(shapely.to_wkb(geometries, byte_order=1, output_dimension=2), pa.binary())
    return multipolygon_wkb_field(wkb, shapely.get_type_id(geometries) == GeometryType.MULTIPOLYGON, srid)


def _binary_array(array: pa.Array) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_binary(array.type):
        array = array.cast(pa.binary())
    return array.fill_null(b"") if array.null_count else array


def _fixed_array(record: np.ndarray) -> pa.Array:
    """A structured array's rows as an Arrow binary array, zero-copy (offsets every itemsize bytes)."""
    width = record.dtype.itemsize
    offsets = np.arange(len(record) + 1, dtype=np.int32) * width
    return pa.BinaryArray.from_buffers(pa.binary(), len(record), [None, pa.py_buffer(offsets), pa.py_buffer(record)])


def _lengths(array: pa.Array) -> np.ndarray:
    return pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def binary_rows(fields: Sequence[BinaryField], count: int) -> bytes:
    """`count` rows in PostgreSQL's binary COPY format (no header or trailer): vectorized, no loop over rows."""
    if count == 0:
        return b""
    lengths = [None if f.fixed is not None else sum((_lengths(p) for p in f.parts), np.full(count, len(f.prefix), np.int64))
               for f in fields]
    total = 2 * count + sum((4 + f.fixed.dtype.itemsize) * count if f.fixed is not None else 4 * count + int(n.sum())
                            for f, n in zip(fields, lengths))
    if total > MAX_PAYLOAD and count > 1:  # Arrow binary arrays hold at most 2 GiB: build in halves
        half = count // 2
        return (binary_rows([_slice_field(f, 0, half) for f in fields], half)
                + binary_rows([_slice_field(f, half, count) for f in fields], count - half))
    pieces: list[pa.Array] = []
    layout: list[tuple[str, object]] = [(">i2", len(fields))]  # pending fixed-width parts: (dtype, values)

    def flush() -> None:
        record = np.empty(count, np.dtype([(f"f{i}", dtype) for i, (dtype, _) in enumerate(layout)]))
        for i, (_, values) in enumerate(layout):
            record[f"f{i}"] = values
        pieces.append(_fixed_array(record))
        layout.clear()

    for field, length in zip(fields, lengths):
        if field.fixed is not None:
            layout += [(">i4", field.fixed.dtype.itemsize), (field.fixed.dtype.str, field.fixed)]
            continue
        layout.append((">i4", length if field.null is None else np.where(field.null, -1, length)))
        if field.prefix:
            layout.append((f"({len(field.prefix)},)u1", np.frombuffer(field.prefix, np.uint8)))
        flush()
        pieces += [_binary_array(part) for part in field.parts]
    if layout:
        flush()
    rows = pc.binary_join_element_wise(*pieces, b"") if len(pieces) > 1 else pieces[0]
    offsets = np.frombuffer(rows.buffers()[1], np.int32, count + 1, rows.offset * 4)
    return rows.buffers()[2][int(offsets[0]):int(offsets[-1])].to_pybytes()


def _slice_field(field: BinaryField, start: int, stop: int) -> BinaryField:
    return BinaryField(
        fixed=None if field.fixed is None else field.fixed[start:stop],
        parts=tuple(part[start:stop] for part in field.parts),
        null=None if field.null is None else field.null[start:stop], prefix=field.prefix,
    )


class _CopyAborted(Exception):
    """Raised inside the COPY's read(): psycopg2 then sends CopyFail and the server ends the COPY with an error."""


class BinaryCopyWriter:
    """One binary COPY ... FROM STDIN streamed from a background thread: payloads from `binary_rows` are sent as they
    come, while the next batch is prepared; the server parses one statement from start to end.

    Only this thread touches the cursor between enter and exit; an error in it surfaces at the next `put` or at exit.
    An exception in the `with` block aborts the COPY (CopyFail), so nothing half-sent is kept.
    """

    _ABORT = object()

    def __init__(self, cur: psycopg2.extensions.cursor, table: sql.Composable, columns: Sequence[str],
                 freeze: bool = False) -> None:
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        options = sql.SQL("FORMAT binary, FREEZE") if freeze else sql.SQL("FORMAT binary")
        self._statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(table, names, options).as_string(cur)
        if cur.connection.encoding != "UTF8":  # text goes over as UTF-8 bytes, which the server reads in this encoding
            cur.connection.set_client_encoding("UTF8")
        self._cur = cur
        self._queue: queue.Queue[object] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._started = self._ended = False
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)

    def __enter__(self) -> BinaryCopyWriter:
        self._thread.start()
        return self

    def put(self, rows: bytes | Callable[[], bytes]) -> None:
        """Queue rows from `binary_rows`, or a function returning them: it is called on the writer's thread, so
        building the next rows overlaps with whatever the caller does next."""
        if self._error is not None:
            raise self._error
        if rows:
            self._queue.put(rows)

    def read(self, size: int = -1) -> bytes:  # psycopg2 asks for `size` bytes; any length is accepted
        """psycopg2's copy_expert reads the stream through this (on the writer thread)."""
        if not self._started:
            self._started = True
            return COPY_BINARY_HEADER
        while True:
            item = self._queue.get()
            if item is None or item is self._ABORT:
                self._ended = True
                if item is self._ABORT:
                    raise _CopyAborted("load aborted")
                return b""
            data = item() if callable(item) else item
            if data:  # an empty read would end the COPY
                return data  # type: ignore[return-value]

    def _run(self) -> None:
        try:
            self._cur.copy_expert(self._statement, self)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._error = exc
        finally:
            if not self._ended and self._error is None:
                self._error = RuntimeError("the COPY ended before its rows did")
            while not self._ended:  # let put() go on until the main thread sees the error
                item = self._queue.get()
                self._ended = item is None or item is self._ABORT

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and self._error is None:
            self._queue.put(COPY_BINARY_TRAILER)
            self._queue.put(None)
        else:
            self._queue.put(self._ABORT)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


#: characters json.dumps(ensure_ascii=False) escapes inside a string
_JSON_SPECIAL = r'[\x00-\x1f"\\]'


def _may_need_json_escapes(text: pa.Array) -> bool:
    """Whether any byte of the strings is one json.dumps escapes (a control character, '"' or a backslash)."""
    data = text.buffers()[2]
    if data is None:
        return False
    offsets = np.frombuffer(text.buffers()[1], np.int32, len(text) + 1, text.offset * 4)
    raw = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]]
    return bool(((raw < 0x20) | (raw == 0x22) | (raw == 0x5C)).any())


def _json_texts(values: pa.Array | np.ndarray | Sequence[object], count: int) -> pa.Array:
    """Each value as JSON text (null for None/NA/NaN, as json_field does), vectorized for text and integers."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        text = values.cast(pa.string())
        quoted = pc.binary_join_element_wise('"', text, '"', "").fill_null("null")
        if _may_need_json_escapes(text):
            special = pc.match_substring_regex(text, _JSON_SPECIAL).fill_null(False)
            escaped = [json.dumps(v, ensure_ascii=False) for v in text.filter(special).to_pylist()]
            quoted = pc.replace_with_mask(quoted, special, pa.array(escaped, pa.string()))
        return quoted
    if isinstance(values, pa.Array) and (pa.types.is_integer(values.type) or pa.types.is_boolean(values.type)):
        return values.cast(pa.string()).fill_null("null")
    items = values.to_pylist() if isinstance(values, pa.Array) else np.asarray(values, dtype=object).tolist()
    return pa.array(_json_values(items) if items else [], pa.string())


def jsonb_field(columns: dict[str, pa.Array | np.ndarray], count: int) -> BinaryField:
    """Rows of attribute columns as jsonb objects (binary format: version 1, then the JSON text), built column-wise."""
    if not columns:
        return BinaryField(prefix=b"\x01{}")
    pieces: list[pa.Array | str] = []
    for index, (name, values) in enumerate(columns.items()):
        pieces += [("{" if index == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":", _json_texts(values, count)]
    pieces.append("}")
    return BinaryField(parts=(pc.binary_join_element_wise(*pieces, ""),), prefix=b"\x01")


def stored_line(rows: int, what: str, phases: dict[str, float], total_seconds: float) -> str:
    """A progress line: how long each phase of storing a run took (name -> seconds: the COPY, the indexes …) and
    their share of the whole run."""
    share = sum(phases.values()) / total_seconds if total_seconds > 0 else 0.0
    return (f"stored {rows:,} {what}: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())
            + f" ({share:.0%} of {total_seconds:.1f} s)")
