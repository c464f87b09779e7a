"""One layer from file to active version: read → clean → reproject → classify → load, with a summary."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from pyproj.exceptions import ProjError

from geoservice.db import bulk, transaction
from geoservice.errors import IngestError, rows_text
from geoservice.ingest import load
from geoservice.ingest.classify import Crosswalk, load_classes, load_crosswalk
from geoservice.ingest.crs import check_area_of_use, coordinate_function, resolve_source_crs
from geoservice.ingest.definition import Definition
from geoservice.ingest.read import Batch, SourceInfo, inspect_source, prefetch, read_batches
from geoservice.ingest.repair import KEPT, REJECTED, REPAIRED, Cleaned, clean
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
    seconds: float = 0.0
    version: int | None = None
    report: str | None = None
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("problems")
        data["rows_per_second"] = round(self.rows_per_second, 1)
        return data


@dataclass
class _Collected:
    """What must be checked across all batches before the load may commit."""

    ids: list[np.ndarray] = field(default_factory=list)
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
            with transaction(self.settings) as conn, conn.cursor() as cur:
                classes = load_classes(self.settings.path(self.settings.paths.classification))
                load.refresh_land_classes(cur, classes, self.settings.construction_codes)
                new = load.begin_version(cur, self.definition, str(self.definition.source_path), self.info.checksum)
                with bulk.CopyWriter(cur, new.table, load.COPY_COLUMNS) as writer:
                    self._read_all(writer, new)
                summary.version = new.version
                summary.seconds = time.perf_counter() - started
                load.finish_version(cur, new, summary.kept + summary.repaired, summary.as_dict())
        summary.seconds = time.perf_counter() - started
        summary.report = self._write_report(summary)
        return summary

    def _read_all(self, writer: bulk.CopyWriter | None, new: load.NewVersion | None) -> None:
        with self.reporter.task(f"ingest {self.layer.name}", self.info.feature_count) as task:
            for batch in prefetch(read_batches(self.info, self.columns)):
                text = self._batch(batch, new)
                if writer is not None and text is not None:
                    writer.put(text)
                task.advance(len(batch.rows))
        self._final_checks(self.summary)

    def _geometries(self, batch: Batch) -> Cleaned:
        """Clean, check the area of use, reproject, then repair what is invalid in the working CRS."""
        cleaned = clean(batch.geometries, check_validity=False)
        present = np.flatnonzero(cleaned.status != REJECTED)
        area = check_area_of_use(cleaned.geometries[present], self.source_crs)
        outside = present[area.outside]
        hint = np.where(area.swapped[area.outside], " — x and y look swapped (lat/lon or northing/easting order)",
                        " — wrong CRS or zone?")
        cleaned.status[outside] = REJECTED
        cleaned.reasons[outside] = f"coordinates outside the area of use of {self.summary.crs}" + hint.astype(object)
        cleaned.geometries[outside] = None
        self.collected.outside.extend(batch.rows[outside].tolist())
        self.collected.swapped += int(area.swapped[area.outside].sum())

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
                _merge(cleaned, clean(cleaned.geometries[broken]), broken)
        return cleaned

    def _batch(self, batch: Batch, new: load.NewVersion | None) -> str | None:
        """Process one batch; the COPY text of its good rows (None when nothing is to be stored)."""
        cleaned = self._geometries(batch)
        status, summary = cleaned.status, self.summary
        summary.rows_read += len(status)
        summary.kept += int((status == KEPT).sum())
        summary.repaired += int((status == REPAIRED).sum())
        summary.rejected += int((status == REJECTED).sum())
        for index in np.flatnonzero(status != KEPT):
            summary.problems.append(RowProblem(int(batch.rows[index]), "geometry", "rejected" if status[index] == REJECTED
                                               else "repaired", str(cleaned.reasons[index])))
        ok = status != REJECTED
        rows = batch.rows[ok]
        unified = original = None
        if self.crosswalk is not None:
            unified, original, unknown = self.crosswalk.classify(batch.columns[self.layer.code_field][ok])
            if self.layer.unknown_codes == "error":
                for code, row in zip(original[unknown], rows[unknown]):
                    self.collected.unknown_codes.setdefault(code, []).append(int(row))
        ids = None
        if self.layer.id_field:
            ids = pd.Series(batch.columns[self.layer.id_field][ok], dtype="string").str.strip().to_numpy(dtype=object)
            self.collected.ids.append(ids)
            self.collected.id_rows.append(rows)
        if new is None or self.collected.unknown_codes or not ok.any():
            return None
        names = batch.columns[self.layer.name_field][ok] if self.layer.name_field else None
        attributes = {name: batch.columns[name][ok] for name in self.layer.attributes}
        return load.copy_text(new, self.settings.working_srid, rows, cleaned.geometries[ok], ids, names,
                              unified, original, status[ok], attributes)

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
            ids, rows = np.concatenate(collected.ids), np.concatenate(collected.id_rows)
            blank = pd.isna(pd.Series(ids, dtype="string")).to_numpy() | (ids == "")
            if blank.any():
                raise IngestError(self.source, f"no value in id field {self.layer.id_field!r}", rows=rows[blank].tolist())
            values, inverse, counts = np.unique(ids.astype(str), return_inverse=True, return_counts=True)
            duplicated = counts[inverse.reshape(-1)] > 1
            if duplicated.any():
                dup_values = values[counts > 1]
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

