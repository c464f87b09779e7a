"""Input points and geometries in any supported CRS, taken to the working CRS (x = easting/longitude)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from geoservice.crs_area import area_of_use_box, area_of_use_text
from geoservice.errors import GeoserviceError
from geoservice.settings import Settings


class QueryError(GeoserviceError):
    """A query's input is wrong (CRS, geometry, place, raster): the HTTP layer answers 400."""


def input_crs(settings: Settings, value: str | None) -> CRS:
    """The CRS a caller named (CRS84 by default); only the served CRSs are accepted."""
    name = value or "OGC:CRS84"
    try:
        crs = _parse(name)
    except CRSError as exc:
        raise QueryError(f"unknown CRS {name!r}") from exc
    allowed = [_parse(c) for c in settings.serving_crs]
    if not any(crs == a for a in allowed):
        raise QueryError(f"CRS {name!r} is not supported here; use one of {', '.join(settings.serving_crs)}")
    return crs


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


def to_working(settings: Settings, geometries: np.ndarray, crs: CRS, what: str) -> np.ndarray:
    """Geometries (x = easting/longitude) from `crs` to the working CRS; QueryError naming `what` when they cannot be
    taken there or lie outside the working CRS's area of use (where its distances and areas are wrong: ingest refuses
    such rows too)."""
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
