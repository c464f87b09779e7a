"""One layer from file to active version: read → clean → reproject → classify → load, with a summary."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS
from pyproj.exceptions import ProjError

from geoservice.db import bulk, transaction
from geoservice.errors import IngestError, rows_text
from geoservice.ingest import load
from geoservice.ingest.classify import Crosswalk, load_classes, load_crosswalk
from geoservice.ingest.crs import area_of_use_box, check_area_of_use, check_bounds, coordinate_function, resolve_source_crs
from geoservice.ingest.definition import Definition
from geoservice.ingest.read import Batch, SourceInfo, checksum, inspect_source, prefetch, read_batches
from geoservice.ingest.repair import KEPT, REJECTED, REPAIRED, Cleaned, clean
from geoservice.ingest.wkb import certainly_valid, ragged_subset
from geoservice.overlay.threads import pool
from geoservice.progress import Reporter, SilentReporter
from geoservice.settings import Settings

#: more than this share of rows outside the CRS's area of use means the CRS itself is wrong
WRONG_CRS_SHARE = 0.5
#: rows per chunk for the threaded geometry work (reprojection, validity)
CHUNK = 8192


def display(path: Path) -> str:
    """A path relative to the current directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class RowProblem:
    """One line of the rejection report."""

    row: int
    field: str
    status: str
    problem: str


@dataclass
class IngestSummary:
    """What one ingest did."""

    layer: str
    file: str
    encoding: str
    crs: str
    rows_read: int = 0
    kept: int = 0
    repaired: int = 0
    rejected: int = 0
    z_m_dropped: int = 0
    seconds: float = 0.0
    version: int | None = None
    report: str | None = None
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        """The summary without the per-row problems (asdict would copy every one of them first)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "problems"}
        data["rows_per_second"] = round(self.rows_per_second, 1)
        return data


@dataclass
class _Prepared:
    """A batch after the read thread's work. Per fast (plain polygon) row: outside the area of use, x/y look swapped,
    some coordinate lost in reprojection; `moved`: the fast rows' coordinates in the working CRS (left as they were
    for rows outside the area of use)."""

    batch: Batch
    outside: np.ndarray
    swapped: np.ndarray
    moved: np.ndarray
    lost: np.ndarray


def _wkb_array(values: np.ndarray, offsets: np.ndarray, count: int) -> pa.Array:
    """Rows of a WKB byte buffer as an Arrow binary array (no copy)."""
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(values)])


@dataclass
class _Collected:
    """What must be checked across all batches before the load may commit."""

    ids: list[pa.Array] = field(default_factory=list)
    id_rows: list[np.ndarray] = field(default_factory=list)
    unknown_codes: dict[str, list[int]] = field(default_factory=dict)
    outside: list[int] = field(default_factory=list)
    swapped: int = 0


def _merge(first: Cleaned, second: Cleaned, rows: np.ndarray) -> None:
    """Fold a second cleaning pass (after reprojection) of `rows` into the first."""
    first.geometries[rows] = second.geometries
    first.status[rows] = np.maximum(first.status[rows], second.status)
    extra = second.reasons != ""
    joined = np.where(first.reasons[rows] == "", second.reasons, first.reasons[rows] + "; " + second.reasons)
    first.reasons[rows] = np.where(extra, joined, first.reasons[rows])


class LayerIngest:
    """The state of one ingest run; `run()` does the work."""

    def __init__(self, settings: Settings, definition: Definition, *, dry_run: bool, strict: bool, reporter: Reporter) -> None:
        self.settings, self.definition, self.layer = settings, definition, definition.layer
        self.dry_run, self.strict, self.reporter = dry_run, strict, reporter
        self.source = display(definition.source_path)
        self.working = CRS.from_user_input(settings.working_crs)
        self.collected = _Collected()
        self.info = inspect_source(definition.source_path, self.layer.source.layer, self.layer.encoding)
        self._check_fields(self.info)
        self.source_crs = resolve_source_crs(self.layer, self.info.crs, self.source)
        self.to_working = coordinate_function(self.layer, self.source_crs, self.working, self.source)
        self.area_box = area_of_use_box(self.source_crs)
        self.crosswalk: Crosswalk | None = None
        if self.layer.code_field:
            folder = settings.path(settings.paths.classification)
            self.crosswalk = load_crosswalk(folder, self.layer.crosswalk or "")
        crs = self.source_crs
        self.summary = IngestSummary(
            self.layer.name, self.source, f"{self.info.encoding or 'UTF-8'} ({self.info.encoding_origin})",
            crs.to_string() if crs.to_epsg() is None else f"EPSG:{crs.to_epsg()}",
        )
        wanted = [self.layer.code_field, self.layer.id_field, self.layer.name_field, *self.layer.attributes]
        self.columns = [c for c in dict.fromkeys(wanted) if c]

    def _check_fields(self, info: SourceInfo) -> None:
        layer = self.layer
        wanted = {"code_field": layer.code_field, "id_field": layer.id_field, "name_field": layer.name_field}
        wanted.update({f"attributes[{i}]": name for i, name in enumerate(layer.attributes)})
        for role, name in wanted.items():
            if name and name not in info.fields:
                raise IngestError(self.source, f"no field {name!r} ({role} in {display(self.definition.file)}); "
                                               f"the file has: {', '.join(info.fields)}")

    def run(self) -> IngestSummary:
        with pool(None) as self.pool:
            return self._run()

    def _run(self) -> IngestSummary:
        started = time.perf_counter()
        summary = self.summary
        if self.dry_run:
            self._read_all(None, None)
        else:
            try:
                with transaction(self.settings) as conn, conn.cursor() as cur:
                    classes = load_classes(self.settings.path(self.settings.paths.classification))
                    load.refresh_land_classes(cur, classes, self.settings.construction_codes)
                    new = load.begin_version(cur, self.definition, str(self.definition.source_path))
                    with bulk.BinaryCopyWriter(cur, new.table, load.COPY_COLUMNS, freeze=True) as writer:
                        self._read_all(writer, new)
                    summary.version = new.version
                    summary.seconds = time.perf_counter() - started
                    digest = self.pool.submit(checksum, self.definition.source_path)  # while the server builds indexes
                    load.finish_version(cur, new, summary.kept + summary.repaired, summary.as_dict(), digest.result)
            except psycopg2.Error as exc:  # the server's own text is not for users: its condition, in one line
                what = (f"the database refused it (SQLSTATE {exc.pgcode}, {type(exc).__name__})" if exc.pgcode
                        else "the database connection failed")
                raise IngestError(self.source, f"layer {self.layer.name}: loading failed, {what}; nothing was stored") from exc
        summary.seconds = time.perf_counter() - started
        summary.report = self._write_report(summary)
        return summary

    def _read_all(self, writer: bulk.BinaryCopyWriter | None, new: load.NewVersion | None) -> None:
        """Three stages overlap: reading, parsing and reprojecting run ahead on the read thread (`_prepare`), validity
        and classification here, and the COPY rows are built and sent on the writer's thread."""
        with self.reporter.task(f"ingest {self.layer.name}", self.info.feature_count) as task:
            for prepared in prefetch(map(self._prepare, read_batches(self.info, self.columns))):
                rows = self._batch(prepared, new)
                if writer is not None and rows is not None:
                    writer.put(rows)
                task.advance(len(prepared.batch.rows))
        self._final_checks(self.summary)

    def _reproject(self, coords: np.ndarray) -> np.ndarray:
        """Source (x, y) -> working CRS, in chunks on the pool (PROJ releases the GIL)."""
        if not len(coords):
            return coords
        try:
            return np.concatenate(self.pool.map_chunks(lambda a, b: self.to_working(coords[a:b]), len(coords), 8 * CHUNK))
        except ProjError as exc:
            raise IngestError(self.source, f"reprojection failed: {exc}") from exc

    def _prepare(self, batch: Batch) -> _Prepared:
        """On the read thread: the area-of-use check and the reprojection of the plain polygons' coordinates."""
        parsed = batch.polygonal
        area = check_bounds(parsed.shell_bounds(), self.area_box)
        if area.outside.any():  # those are rejected, not reprojected (PROJ may refuse them)
            moving = ~area.outside[parsed.coordinate_rows()]
            moved = parsed.coords.copy()
            moved[moving] = self._reproject(parsed.coords[moving])
        else:
            moved = self._reproject(parsed.coords)
        finite = np.isfinite(moved[:, 0] + moved[:, 1])
        lost = np.zeros(len(area.outside), bool)
        if not finite.all():  # e.g. outside the transformation's domain: the Shapely way decides
            lost[parsed.coordinate_rows()[~finite]] = True
        return _Prepared(batch, area.outside, area.swapped, moved, lost & ~area.outside)

    def _shapely_geometries(self, geometries: np.ndarray, closed: np.ndarray) -> tuple[Cleaned, np.ndarray, np.ndarray]:
        """The general path, Shapely throughout: clean, check the area of use, reproject, then repair what is invalid
        in the working CRS. (cleaned rows, outside the area of use, of those: x/y look swapped)."""
        cleaned = clean(geometries, check_validity=False, closed=closed)
        present = np.flatnonzero(cleaned.status != REJECTED)
        area = check_area_of_use(cleaned.geometries[present], self.source_crs, self.area_box)
        outside, swapped = np.zeros(len(geometries), bool), np.zeros(len(geometries), bool)
        outside[present[area.outside]], swapped[present[area.swapped]] = True, True
        self._reject_outside(cleaned, outside, swapped)
        keep = np.flatnonzero(cleaned.status != REJECTED)
        if len(keep):
            subset = cleaned.geometries[keep]
            try:
                moved = np.concatenate(self.pool.map_chunks(
                    lambda a, b: shapely.transform(subset[a:b], self.to_working), len(subset), CHUNK))
            except ProjError as exc:
                raise IngestError(self.source, f"reprojection failed: {exc}") from exc
            cleaned.geometries[keep] = moved
            unusable = ~np.isfinite(shapely.bounds(moved)).all(axis=1)
            cleaned.status[keep[unusable]], cleaned.reasons[keep[unusable]] = REJECTED, "cannot be reprojected"
            cleaned.geometries[keep[unusable]] = None
            keep = keep[~unusable]
            kept = cleaned.geometries[keep]
            valid = np.concatenate(self.pool.map_chunks(lambda a, b: shapely.is_valid(kept[a:b]), len(kept), CHUNK))
            broken = keep[~valid]
            if len(broken):
                _merge(cleaned, self._repair(cleaned.geometries[broken]), broken)
        return cleaned, outside, swapped

    def _repair(self, geometries: np.ndarray) -> Cleaned:
        """clean() (make_valid and the rest) in chunks on the pool: the same result, on both cores."""
        parts = self.pool.map_chunks(lambda a, b: clean(geometries[a:b]), len(geometries), 64)
        return Cleaned(*(np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(Cleaned)))

    def _reject_outside(self, cleaned: Cleaned, outside: np.ndarray, swapped: np.ndarray) -> None:
        hint = np.where(swapped[outside], " — x and y look swapped (lat/lon or northing/easting order)", " — wrong CRS or zone?")
        cleaned.status[outside] = REJECTED
        cleaned.reasons[outside] = f"coordinates outside the area of use of {self.summary.crs}" + hint.astype(object)
        cleaned.geometries[outside] = None

    def _geometries(self, prepared: _Prepared) -> tuple[Cleaned, np.ndarray]:
        """Every row kept, repaired or rejected; and which rows Shapely made (the others store their patched WKB).

        Plain 2D polygons (nearly all rows) take the fast way: parsed and reprojected as arrays (`_prepare`), built
        in GEOS only to check validity. The invalid ones, and every other row, take the Shapely way
        (`_shapely_geometries`) from their source WKB, so a row's outcome does not depend on the way it took.
        """
        batch, parsed = prepared.batch, prepared.batch.polygonal
        count = len(batch.rows)
        fast_rows = np.flatnonzero(parsed.fast)
        cleaned = Cleaned(np.full(count, None, dtype=object), np.full(count, KEPT, dtype=np.int8), np.full(count, "", dtype=object),
                          np.zeros(count, bool))
        outside, swapped = np.zeros(count, bool), np.zeros(count, bool)
        outside[fast_rows[prepared.outside]], swapped[fast_rows[prepared.swapped]] = True, True
        self._reject_outside(cleaned, outside, swapped)
        check = ~prepared.outside & ~prepared.lost  # per fast row

        def validity(a: int, b: int) -> np.ndarray:
            coords, offsets = parsed.row_slices(a, b, prepared.moved)
            out = np.ones(b - a, bool)
            ask = check[a:b] & ~certainly_valid(coords, *offsets)  # provably valid small simple rings skip GEOS
            if ask.any():
                coords, (rings, parts, rows) = ragged_subset(coords, offsets, ask)
                # one Polygon per part (a one-part MultiPolygon is valid exactly when its Polygon is: no wrapper)
                polygons = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (rings, parts))
                counts = np.diff(rows)
                geometries = polygons[rows[:-1]]
                several = np.flatnonzero(counts > 1)
                if len(several):
                    members = np.concatenate([np.arange(rows[i], rows[i + 1]) for i in several])
                    geometries[several] = shapely.multipolygons(
                        polygons[members], indices=np.repeat(np.arange(len(several)), counts[several]))
                out[ask] = shapely.is_valid(geometries)
            return out

        valid = np.concatenate(self.pool.map_chunks(validity, len(fast_rows), CHUNK)) if len(fast_rows) else np.ones(0, bool)
        slow = ~parsed.fast
        slow[fast_rows[prepared.lost | (check & ~valid)]] = True
        general = np.flatnonzero(slow)
        if len(general):
            other, other_outside, other_swapped = self._shapely_geometries(*batch.geometries(general))
            cleaned.geometries[general], cleaned.status[general], cleaned.reasons[general], cleaned.flattened[general] = (
                other.geometries, other.status, other.reasons, other.flattened)
            outside[general], swapped[general] = other_outside, other_swapped
        self.collected.outside.extend(batch.rows[outside].tolist())
        self.collected.swapped += int(swapped[outside].sum())
        return cleaned, slow & (cleaned.status != REJECTED)

    def _batch(self, prepared: _Prepared, new: load.NewVersion | None) -> Callable[[], bytes] | None:
        """Process one batch; a function building the binary COPY rows of its good rows (None when nothing is to be
        stored): it runs on the writer's thread."""
        batch = prepared.batch
        cleaned, made = self._geometries(prepared)
        status, summary = cleaned.status, self.summary
        summary.rows_read += len(status)
        summary.kept += int((status == KEPT).sum())
        summary.repaired += int((status == REPAIRED).sum())
        summary.rejected += int((status == REJECTED).sum())
        summary.z_m_dropped += int((cleaned.flattened & (status != REJECTED)).sum())
        for index in np.flatnonzero(status != KEPT):
            summary.problems.append(RowProblem(int(batch.rows[index]), "geometry", "rejected" if status[index] == REJECTED
                                               else "repaired", str(cleaned.reasons[index])))
        ok = status != REJECTED
        everything = bool(ok.all())
        index = pa.array(np.flatnonzero(ok), pa.int64())

        def take(array: pa.Array) -> pa.Array:
            return array if everything else array.take(index)

        rows = batch.rows[ok]
        unified = original = None
        if self.crosswalk is not None:
            unified, original, unknown = self.crosswalk.classify(take(batch.columns[self.layer.code_field]))
            if self.layer.unknown_codes == "error" and unknown.any():
                for code, row in zip(original.filter(pa.array(unknown)).to_pylist(), rows[unknown]):
                    self.collected.unknown_codes.setdefault(code, []).append(int(row))
        ids = None
        if self.layer.id_field:
            ids = pc.utf8_trim(bulk.arrow_text(take(batch.columns[self.layer.id_field]), len(rows)), bulk.PYTHON_WHITESPACE)
            self.collected.ids.append(ids)
            self.collected.id_rows.append(rows)
        if new is None or self.collected.unknown_codes or not ok.any():
            return None
        names = take(batch.columns[self.layer.name_field]) if self.layer.name_field else None
        attributes = {name: take(batch.columns[name]) for name in self.layer.attributes}
        srid = self.settings.working_srid

        def copy_rows() -> bytes:
            parsed = batch.polygonal
            wkb = take(_wkb_array(parsed.patched(prepared.moved), parsed.offsets, len(batch.rows)))
            multi = parsed.multi.copy()
            if made.any():
                geometries = cleaned.geometries[made]
                multi[made] = shapely.get_type_id(geometries) == shapely.GeometryType.MULTIPOLYGON
                made_wkb = shapely.to_wkb(geometries, byte_order=1, output_dimension=2)
                wkb = pc.replace_with_mask(wkb, pa.array(made[ok]), pa.array(made_wkb, wkb.type))
            return load.copy_binary(new, srid, rows, wkb, multi[ok], ids, names, unified, original, status[ok], attributes)

        return copy_rows

    def _final_checks(self, summary: IngestSummary) -> None:
        collected = self.collected
        if summary.rows_read and len(collected.outside) > WRONG_CRS_SHARE * summary.rows_read:
            why = ("x and y look swapped (lat/lon or northing/easting order)" if collected.swapped > len(collected.outside) / 2
                   else "the declared or .prj CRS (or its zone) looks wrong")
            raise IngestError(self.source, f"{len(collected.outside)} of {summary.rows_read} rows lie outside the area of use "
                                           f"of {summary.crs}: {why}", rows=collected.outside)
        if collected.unknown_codes:
            details = ", ".join(f"{code or '(blank)'!r} ({rows_text(rows, 3)})" for code, rows in list(collected.unknown_codes.items())[:20])
            raise IngestError(
                self.source,
                f"{len(collected.unknown_codes)} code(s) in {self.layer.code_field} not in crosswalk {self.layer.crosswalk!r}: "
                f"{details}; add them to config/classification/{self.layer.crosswalk}.csv or set `unknown_codes: unclassified`",
            )
        if collected.ids:
            ids, rows = pa.concat_arrays(collected.ids), np.concatenate(collected.id_rows)
            blank = pc.or_kleene(ids.is_null(), pc.equal(ids, "")).fill_null(True).to_numpy(zero_copy_only=False)
            if blank.any():
                raise IngestError(self.source, f"no value in id field {self.layer.id_field!r}", rows=rows[blank].tolist())
            counts = ids.value_counts()
            repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
            if len(repeated):
                dup_values = sorted(repeated.to_pylist())
                duplicated = pc.is_in(ids, value_set=repeated).to_numpy(zero_copy_only=False)
                raise IngestError(self.source, f"duplicate values in id field {self.layer.id_field!r}: "
                                               f"{', '.join(repr(str(v)) for v in dup_values[:10])}{' …' if len(dup_values) > 10 else ''}",
                                  rows=rows[duplicated].tolist())
        if summary.rows_read and summary.rejected == summary.rows_read:
            first = summary.problems[0]
            raise IngestError(self.source, f"every row was rejected (row {first.row}: {first.problem})")
        if self.strict and summary.problems:
            listed = "; ".join(f"row {p.row}: {p.status}: {p.problem}" for p in summary.problems[:5])
            raise IngestError(self.source, f"--strict: {summary.repaired} row(s) repaired and {summary.rejected} rejected: {listed}")

    def _write_report(self, summary: IngestSummary) -> str | None:
        if not summary.problems:
            return None
        folder = self.settings.path(self.settings.paths.output) / "ingest"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = f"v{summary.version}" if summary.version else "dry-run"
        path = folder / f"{self.layer.name}-{suffix}-problems.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "field", "status", "problem"])
            writer.writerows((p.row, p.field, p.status, p.problem) for p in summary.problems)
        return display(path)


def ingest_layer(settings: Settings, definition: Definition, *, dry_run: bool = False, strict: bool = False,
                 reporter: Reporter | None = None) -> IngestSummary:
    """Load one layer definition's file as a new active version (or, dry run, only validate it)."""
    return LayerIngest(settings, definition, dry_run=dry_run, strict=strict, reporter=reporter or SilentReporter()).run()

