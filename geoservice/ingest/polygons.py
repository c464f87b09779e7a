"""A polygon file read whole and repaired, without classification or loading: what a project check reads from a
submitted file (GeoJSON, GeoPackage, Shapefile or a zipped one), with the same readers and repair as ingest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoservice.errors import IngestError
from geoservice.ingest.read import inspect_source, read_batches
from geoservice.ingest.repair import REJECTED, REPAIRED, clean


@dataclass(frozen=True)
class PolygonFile:
    """The valid polygons of a file (rejected rows left out), the file's CRS, and what repair did, per 1-based row."""

    geometries: np.ndarray
    crs: str | None
    repaired: list[tuple[int, str]]
    rejected: list[tuple[int, str]]


def read_polygons(path: Path, layer: str | None = None, encoding: str = "auto") -> PolygonFile:
    """Every row's geometry, repaired as ingest repairs it (closed rings, make_valid keeping polygonal parts, Z/M
    dropped); IngestError naming the file when it cannot be read or holds no feature."""
    info = inspect_source(path, layer, encoding)
    kept: list[np.ndarray] = []
    repaired: list[tuple[int, str]] = []
    rejected: list[tuple[int, str]] = []
    for batch in read_batches(info, []):
        geometries, closed = batch.geometries(np.arange(len(batch.rows)))
        cleaned = clean(geometries, check_validity=True, closed=closed)
        kept.append(cleaned.geometries[cleaned.status != REJECTED])
        for status, into in ((REPAIRED, repaired), (REJECTED, rejected)):
            where = np.flatnonzero(cleaned.status == status)
            into.extend(zip(batch.rows[where].tolist(), cleaned.reasons[where].tolist(), strict=True))
    if not rejected and not any(len(part) for part in kept):
        raise IngestError(str(path), "holds no feature")
    geometries = np.concatenate(kept) if kept else np.array([], dtype=object)
    return PolygonFile(geometries, info.crs, repaired, rejected)
