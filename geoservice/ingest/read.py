"""Reading source files with pyogrio in Arrow batches: encoding detection, CRS from the file, checksums."""

from __future__ import annotations

import hashlib
import queue
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyogrio
import pyogrio.errors
import shapely

from geoservice.errors import IngestError
from geoservice.ingest.wkb import Polygonal, parse_polygonal

T = TypeVar("T")
SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
REQUIRED_SIDECARS = (".shx", ".dbf")
BATCH_SIZE = 50_000
#: .cpg contents seen in the wild -> encoding name GDAL and Python both know
CPG_ALIASES = {"936": "GBK", "cp936": "GBK", "ansi 936": "GBK", "gb2312": "GBK", "utf8": "UTF-8", "65001": "UTF-8"}


@dataclass(frozen=True)
class SourceInfo:
    """What the file says about itself before any feature is read."""

    path: Path
    layer: str | None
    feature_count: int
    fields: list[str]
    crs: str | None
    encoding: str | None
    encoding_origin: str


@dataclass
class Batch:
    """One batch of rows: 1-based source rows, the WKB column (parsed where it is plain polygons), attribute columns."""

    rows: np.ndarray
    wkb: pa.Array
    polygonal: Polygonal
    columns: dict[str, pa.Array]

    def geometries(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shapely geometries of rows `index` (None where missing or unreadable), and which of them had unclosed rings
        that were closed (as GDAL's Shapefile reader closes them)."""
        taken = self.wkb.take(pa.array(index, pa.int64()))
        wkb = np.asarray(taken.to_numpy(zero_copy_only=False), dtype=object)
        geometries = shapely.from_wkb(wkb, on_invalid="ignore")
        closed = np.zeros(len(wkb), bool)
        unread = np.flatnonzero(shapely.is_missing(geometries) & ~taken.is_null().to_numpy(zero_copy_only=False))
        if len(unread):
            geometries[unread] = shapely.from_wkb(wkb[unread], on_invalid="fix")  # closes unclosed rings, nothing else
            closed[unread] = ~shapely.is_missing(geometries[unread])
        return geometries, closed


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return [name for name in archive.namelist() if not name.startswith("__MACOSX")]
    except zipfile.BadZipFile as exc:
        raise IngestError(str(path), f"not a readable zip archive ({exc})") from exc


def _shapefile_stem(path: Path, layer: str | None) -> str | None:
    """The chosen shapefile's path without its suffix: beside `path` (.shp), or a member of the zip archive `path`
    (the one named `layer`, or the only one). None when `path` holds no such shapefile (pyogrio then says why)."""
    if path.suffix.lower() == ".shp":
        return str(path.with_suffix(""))
    if path.suffix.lower() != ".zip":
        return None
    stems = [name[:-4] for name in _zip_names(path) if name.lower().endswith(".shp")]
    if layer is not None:
        stems = [stem for stem in stems if PurePosixPath(stem).name == layer]
    return stems[0] if len(stems) == 1 else None


def _sidecar(path: Path, stem: str, suffix: str) -> str | None:
    """Where the shapefile `stem`'s sidecar (.dbf, .cpg …) is: a member of the zip archive `path`, or a file (either
    case of suffix); None when absent."""
    if path.suffix.lower() == ".zip":
        wanted = (stem + suffix).lower()
        return next((name for name in _zip_names(path) if name.lower() == wanted), None)
    return next((name for name in (stem + suffix, stem + suffix.upper()) if Path(name).exists()), None)


def _sidecar_bytes(path: Path, stem: str, suffix: str) -> bytes | None:
    """Contents of the shapefile `stem`'s sidecar, or None when absent."""
    where = _sidecar(path, stem, suffix)
    if where is None:
        return None
    if path.suffix.lower() != ".zip":
        return Path(where).read_bytes()
    with zipfile.ZipFile(path) as archive:
        return archive.read(where)


def _check_sidecars(path: Path, stem: str) -> None:
    """A shapefile needs its .shx and .dbf: an error naming every missing one."""
    missing = [PurePosixPath(stem + suffix).name for suffix in REQUIRED_SIDECARS if _sidecar(path, stem, suffix) is None]
    if missing:
        raise IngestError(str(path), f"missing {', '.join(missing)} (a shapefile needs its .shp, .shx and .dbf side by side)")


def checksum(path: Path) -> str:
    """sha256 over the file (and a shapefile's sidecars), in a stable order."""
    digest = hashlib.sha256()
    files = [path.with_suffix(s) for s in SHAPEFILE_SIDECARS] if path.suffix.lower() == ".shp" else [path]
    for file in files:
        if file.exists():
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _dbf_text_bytes(dbf: bytes) -> bytes:
    """Field names and record bytes of a .dbf (what an encoding applies to)."""
    if len(dbf) < 32:
        return b""
    header_length = int.from_bytes(dbf[8:10], "little")
    return dbf[32:header_length] + dbf[header_length:]


def detect_encoding(path: Path, stem: str | None, declared: str) -> tuple[str | None, str]:
    """(encoding, where it came from) of the shapefile `stem` (None: not a shapefile). auto: its .cpg if present,
    else strict UTF-8, else GB18030."""
    if declared.lower() != "auto":
        return declared, "declared"
    if stem is None:
        return None, "format (UTF-8)"
    cpg = _sidecar_bytes(path, stem, ".cpg")
    if cpg and cpg.strip():
        name = cpg.decode("ascii", "replace").strip()
        return CPG_ALIASES.get(name.lower(), name), ".cpg"
    text = _dbf_text_bytes(_sidecar_bytes(path, stem, ".dbf") or b"")
    for encoding in ("UTF-8", "GB18030"):
        try:
            text.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding, "detected (no .cpg)"
    raise IngestError(str(path), "text is neither UTF-8 nor GB18030: set `encoding` in the layer definition")


def _check_shp_length(path: Path) -> None:
    """A .shp whose header declares more bytes than the file has was cut off (GDAL reads it without complaint)."""
    if path.suffix.lower() != ".shp":
        return
    with open(path, "rb") as handle:
        header = handle.read(100)
    actual = path.stat().st_size
    if len(header) < 100:
        raise IngestError(str(path), f"truncated: {actual} bytes, shorter than a .shp header")
    declared = int.from_bytes(header[24:28], "big") * 2
    if declared > actual:
        raise IngestError(str(path), f"truncated: the .shp header says {declared} bytes but the file has {actual}")


def inspect_source(path: Path, layer: str | None, encoding: str) -> SourceInfo:
    """Open the file, check the layer exists, read its schema, CRS and feature count."""
    if not path.exists():
        raise IngestError(str(path), "source file not found")
    _check_shp_length(path)
    stem = _shapefile_stem(path, layer)
    if stem is not None:
        _check_sidecars(path, stem)
    try:
        layers = pyogrio.list_layers(path)
        names = [str(name) for name in layers[:, 0]]
        if layer is None and len(names) > 1:
            raise IngestError(str(path), f"holds several layers ({', '.join(names)}): set source.layer")
        if layer is not None and layer not in names:
            raise IngestError(str(path), f"has no layer {layer!r} (layers: {', '.join(names)})")
        used, origin = detect_encoding(path, stem, encoding)
        info = pyogrio.read_info(path, layer=layer, encoding=used, force_feature_count=True)
    except pyogrio.errors.DataSourceError as exc:
        raise IngestError(str(path), f"cannot be opened as a vector file (truncated or corrupt?): {exc}") from exc
    except pyogrio.errors.DataLayerError as exc:
        raise IngestError(str(path), f"cannot be read: {exc}") from exc
    return SourceInfo(
        path=path, layer=layer, feature_count=int(info["features"]), fields=[str(f) for f in info["fields"]],
        crs=info["crs"], encoding=used, encoding_origin=origin,
    )


def _wkb_column(array: pa.Array) -> pa.Array:
    """The geometry column as a plain Arrow binary array (the storage of a geoarrow.wkb extension array)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    return array


def _undecoded_text(column: pa.Array) -> np.ndarray | None:
    """Indexes of the values that are not UTF-8 — text GDAL could not decode passes through as it was — or None when
    every value is (PostgreSQL would refuse the COPY)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        raw = column.view(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
        return np.flatnonzero([value is not None and not _is_utf8(value) for value in raw.to_pylist()])
    return None


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_text(info: SourceInfo, rows: np.ndarray, columns: dict[str, pa.Array]) -> None:
    """An error naming the rows and the field of the first column holding text that is invalid in the file's encoding."""
    for name, column in columns.items():
        undecoded = _undecoded_text(column)
        if undecoded is not None:
            raise IngestError(str(info.path), f"field {name!r}: invalid characters for the encoding {info.encoding or 'UTF-8'} "
                                              f"({info.encoding_origin}): set `encoding` in the layer definition",
                              rows=rows[undecoded].tolist())


def read_batches(info: SourceInfo, columns: list[str]) -> Iterator[Batch]:
    """The file's rows in Arrow batches: the WKB column (its plain polygons parsed with NumPy), chosen columns (text
    invalid in the file's encoding is an error)."""
    row = 1
    try:
        with pyogrio.raw.open_arrow(
            info.path, layer=info.layer, encoding=info.encoding, columns=columns, batch_size=BATCH_SIZE, use_pyarrow=True
        ) as (meta, reader):
            geometry_name = meta["geometry_name"] or "wkb_geometry"
            for record_batch in reader:
                count = record_batch.num_rows
                rows = np.arange(row, row + count, dtype=np.int64)
                wkb = _wkb_column(record_batch.column(geometry_name))
                batch = Batch(rows=rows, wkb=wkb, polygonal=parse_polygonal(wkb),
                              columns={name: record_batch.column(name) for name in columns})
                _check_text(info, rows, batch.columns)
                yield batch
                row += count
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.FieldError) as exc:
        raise IngestError(str(info.path), f"reading stopped at row {row} (truncated or corrupt file?): {exc}") from exc
    except OSError as exc:
        raise IngestError(str(info.path), f"reading stopped at row {row}: {exc}") from exc


def prefetch(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Read ahead on a background thread (GDAL and Arrow release the GIL, NumPy mostly); errors re-raised here."""
    slots: queue.Queue[T | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                slots.put(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            slots.put(exc)
            return
        slots.put(None)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
