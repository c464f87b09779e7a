"""Input points and geometries in any supported CRS, taken to the working CRS (x = easting/longitude), and answers
taken back. GCJ-02 and BD-09 (geoservice/gcj02.py) are taken through WGS84 (CRS84) and refused outside China."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from geoservice import gcj02
from geoservice.crs_area import area_of_use_box, area_of_use_text
from geoservice.errors import GeoserviceError
from geoservice.settings import Settings


class QueryError(GeoserviceError):
    """A query's input is wrong (CRS, geometry, place, raster): the HTTP layer answers 400."""


@dataclass(frozen=True)
class InputCrs:
    """The CRS a caller's coordinates are in: the PROJ CRS they are computed in, and for GCJ-02 or BD-09 (`system`)
    the shift from that CRS (WGS84, longitude first) to the coordinates given."""

    crs: CRS
    system: str | None = None

    @property
    def name(self) -> str:
        """How answers name it: `OGC:CRS84`, `EPSG:4548` …, or the URI of GCJ-02 or BD-09."""
        return gcj02.URIS[self.system] if self.system else self.crs.to_string()

    def to_wgs84(self, geometries: np.ndarray, what: str) -> np.ndarray:
        """GCJ-02/BD-09 geometries in WGS84 (QueryError outside China); other CRSs' geometries unchanged."""
        if self.system is None:
            return geometries
        try:
            return gcj02.geometry_to_wgs84(self.system, geometries, what)
        except gcj02.OutsideChinaError as exc:
            raise QueryError(str(exc)) from exc

    def from_working(self, settings: Settings, geometries: np.ndarray) -> np.ndarray:
        """Working-CRS geometries in this CRS (the answer's coordinates)."""
        back = cached_transformer(settings.working_crs, self.crs.to_wkt())
        moved = shapely.transform(geometries, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
        if self.system is None:
            return moved
        try:
            return gcj02.geometry_from_wgs84(self.system, moved, "an answer's geometry")
        except gcj02.OutsideChinaError as exc:
            raise QueryError(str(exc)) from exc


def input_crs(settings: Settings, value: str | None) -> InputCrs:
    """The CRS a caller named (CRS84 by default); only the served CRSs are accepted."""
    name = value or "OGC:CRS84"
    offered = [gcj02.system_of(c) or _parse(c) for c in settings.serving_crs]
    system = gcj02.system_of(name)
    if system is not None:
        if system not in offered:
            raise QueryError(f"CRS {name!r} is not supported here; use one of {', '.join(settings.serving_crs)}")
        return InputCrs(_parse("OGC:CRS84"), system)
    try:
        crs = _parse(name)
    except CRSError as exc:
        raise QueryError(f"unknown CRS {name!r}") from exc
    if not any(isinstance(a, CRS) and crs == a for a in offered):
        raise QueryError(f"CRS {name!r} is not supported here; use one of {', '.join(settings.serving_crs)}")
    return InputCrs(crs)


@lru_cache(maxsize=64)
def cached_transformer(source: str, target: str) -> Transformer:
    """A cached always-xy Transformer (building one can take PROJ a second: it weighs every candidate operation)."""
    return Transformer.from_crs(CRS.from_user_input(source), CRS.from_user_input(target), always_xy=True)


@lru_cache(maxsize=64)
def _parse(value: str) -> CRS:
    return CRS.from_user_input(value)


@lru_cache(maxsize=8)
def _area_of_use(crs: str) -> tuple[tuple[float, float, float, float] | None, str]:
    parsed = _parse(crs)
    return area_of_use_box(parsed), area_of_use_text(parsed)


def to_working(settings: Settings, geometries: np.ndarray, source: InputCrs, what: str) -> np.ndarray:
    """Geometries (x = easting/longitude) from `source` to the working CRS; QueryError naming `what` when they cannot be
    taken there or lie outside the working CRS's area of use (where its distances and areas are wrong: ingest refuses
    such rows too) or, in GCJ-02 or BD-09, outside China."""
    geometries, crs = source.to_wgs84(geometries, what), source.crs
    if crs == _parse(settings.working_crs):
        moved = geometries
    else:
        transformer = cached_transformer(crs.to_wkt(), settings.working_crs)
        moved = shapely.transform(geometries, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
    bounds = shapely.bounds(moved)
    if not np.isfinite(bounds).all():
        raise QueryError(f"{what}: coordinates cannot be taken from {crs.to_string()} to {settings.working_crs} "
                         "(swapped axes?)")
    box, area = _area_of_use(settings.working_crs)
    if box is not None and ((bounds[:, :2] < box[:2]).any() or (bounds[:, 2:] > box[2:]).any()):
        raise QueryError(f"{what} lies outside the area of use of the working CRS {settings.working_crs}, {area} "
                         "(x is the easting or longitude)")
    return moved
