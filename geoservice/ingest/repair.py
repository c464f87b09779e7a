"""Geometry cleaning, vectorized: drop Z/M (a normalisation, not a repair), repair with make_valid keeping polygonal
parts.

Rows come out as valid Polygons or MultiPolygons; the loader writes them all as MultiPolygon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import GeometryType

from geoservice.overlay import polygonal

KEPT, REPAIRED, REJECTED = 0, 1, 2
STATUS_NAMES = {KEPT: "kept", REPAIRED: "repaired", REJECTED: "rejected"}
POLYGONAL = (GeometryType.POLYGON, GeometryType.MULTIPOLYGON)
#: indexed by shapely type id + 1
TYPE_NAMES = np.array(["missing", "Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
                       "MultiPolygon", "GeometryCollection"], dtype=object)


@dataclass
class Cleaned:
    """Per input row: the Polygon or MultiPolygon (None when rejected), the status, the reason ('' when kept) and
    whether Z/M coordinates were dropped."""

    geometries: np.ndarray
    status: np.ndarray
    reasons: np.ndarray
    flattened: np.ndarray


def clean(geometries: np.ndarray, check_validity: bool = True, closed: np.ndarray | None = None) -> Cleaned:
    """Classify and repair every geometry: kept / repaired / rejected, with the reason. `closed` marks the rows whose
    unclosed rings the reader closed (a repair).

    With check_validity=False only type, emptiness and Z/M are handled (validity is checked after reprojection).
    """
    count = len(geometries)
    status = np.full(count, KEPT, dtype=np.int8)
    reasons = np.full(count, "", dtype=object)

    def mark(mask: np.ndarray, new_status: int, reason: str | np.ndarray) -> None:
        target = mask & (status != REJECTED)
        status[target] = np.maximum(status[target], new_status)
        if isinstance(reason, np.ndarray):
            reasons[target] = np.where(reasons[target] == "", reason[target], reasons[target] + "; " + reason[target])
        else:
            reasons[target] = np.where(reasons[target] == "", reason, reasons[target] + "; " + reason)

    if closed is not None:
        mark(closed, REPAIRED, "ring not closed: closed")
    missing = shapely.is_missing(geometries)
    mark(missing, REJECTED, "no geometry (missing or unreadable)")
    empty = ~missing & shapely.is_empty(geometries)
    mark(empty, REJECTED, "empty geometry")
    present = ~missing & ~empty
    types = shapely.get_type_id(geometries)
    collection = present & (types == GeometryType.GEOMETRYCOLLECTION)
    wrong_type = present & ~np.isin(types, POLYGONAL) & ~collection
    mark(wrong_type, REJECTED, "not a polygon (" + TYPE_NAMES[types + 1] + ")")

    work = geometries.copy()
    usable = present & ~wrong_type
    flattened = usable & (shapely.has_z(work) | _has_m(work))
    if flattened.any():
        work[flattened] = shapely.force_2d(work[flattened])
    invalid = usable & ~shapely.is_valid(work) if check_validity else np.zeros(count, bool)
    if invalid.any():
        why = np.full(count, "", dtype=object)
        why[invalid] = shapely.is_valid_reason(work[invalid])
        work[invalid] = shapely.make_valid(work[invalid])
        mark(invalid, REPAIRED, "invalid geometry (" + why + ") repaired with make_valid")
    if collection.any():
        mark(collection & ~invalid, REPAIRED, "polygonal parts taken from a geometry collection")
    result = np.full(count, None, dtype=object)
    simple = usable & ~invalid & ~collection
    result[simple] = work[simple]
    extract = usable & ~simple
    parts, index = polygonal(work[extract], return_index=True)
    result[np.flatnonzero(extract)[index]] = parts
    lost = usable & shapely.is_missing(result)
    mark(lost, REJECTED, "no polygonal area left: degenerate or zero-area polygon that cannot be repaired")
    result[status == REJECTED] = None
    return Cleaned(result, status, reasons, flattened & (status != REJECTED))


def _has_m(geometries: np.ndarray) -> np.ndarray:
    has_m = getattr(shapely, "has_m", None)
    return has_m(geometries) if has_m is not None else np.zeros(len(geometries), bool)

