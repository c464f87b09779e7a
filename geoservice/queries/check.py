"""Project check on submit: the conflicts a proposed construction project would create, stored nowhere.

The project stands in for the construction layer; only features whose box meets the project's are read;
the rules whose subject is the construction layer run through the same evaluation as `geoservice detect`,
so the answer equals what a full detection with the project added would find for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg2.extensions
import shapely
from pyproj import CRS

from geoservice.conflicts import RuleSet, check
from geoservice.queries.points import InputCrs, QueryError, input_crs, to_working
from geoservice.settings import Settings

MAX_VERTICES = 100_000
PROJECT_TYPES = ("Polygon", "MultiPolygon")


def project_geometry(settings: Settings, geometry: shapely.Geometry, crs: str | CRS | None) -> shapely.Geometry:
    """The submitted polygon in the working CRS; QueryError when it is not a valid, non-empty (Multi)Polygon. `crs`
    is a CRS a caller names (one of the served CRSs; CRS84 when None) or the parsed CRS of a file (any CRS)."""
    if geometry is None or geometry.is_empty:
        raise QueryError("the project geometry is empty")
    if geometry.geom_type not in PROJECT_TYPES:
        raise QueryError(f"the project must be a Polygon or MultiPolygon, not a {geometry.geom_type}")
    if shapely.get_num_coordinates(geometry) > MAX_VERTICES:
        raise QueryError(f"the project has more than {MAX_VERTICES} vertices")
    if not geometry.is_valid:
        raise QueryError(f"the project geometry is invalid: {shapely.is_valid_reason(geometry)}")
    source = InputCrs(crs) if isinstance(crs, CRS) else input_crs(settings, crs)
    moved = to_working(settings, np.array([shapely.force_2d(geometry)]), source, "the project")[0]
    if not moved.is_valid or moved.area <= 0:
        raise QueryError("the project geometry has no area in the working CRS")
    return moved


def project_from_geojson(value: Any) -> shapely.Geometry:
    """A GeoJSON Polygon or MultiPolygon (or a Feature of one) as a Shapely geometry. QueryError for any other type
    (FeatureCollection, GeometryCollection, Circle, Point …) and for coordinates that are not rings of positions:
    they are checked level by level before Shapely sees them, so no nesting can exhaust the stack."""
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in PROJECT_TYPES:
        shown = f"a {kind[:40]!r}" if isinstance(kind, str) else "something else"
        raise QueryError(f"the project geometry must be a GeoJSON Polygon or MultiPolygon (or a Feature of one), not {shown}")
    coordinates = value.get("coordinates")
    polygons = [coordinates] if kind == "Polygon" else coordinates
    if not (isinstance(polygons, list) and all(isinstance(p, list) and all(isinstance(r, list) for r in p) for p in polygons)):
        raise QueryError(f"the project geometry is not valid GeoJSON: a {kind}'s coordinates are "
                         f"{'arrays of rings' if kind == 'MultiPolygon' else 'an array of rings'} of [x, y] positions")
    if sum(len(ring) for polygon in polygons for ring in polygon) > MAX_VERTICES:
        raise QueryError(f"the project has more than {MAX_VERTICES} vertices")
    try:
        parts = [shapely.Polygon(rings[0], rings[1:]) if rings else shapely.Polygon()
                 for rings in ([_ring(ring) for ring in polygon] for polygon in polygons)]
    except (ValueError, shapely.errors.GEOSException) as exc:
        raise QueryError(f"the project geometry is not valid GeoJSON: {exc}") from exc
    return parts[0] if kind == "Polygon" else shapely.MultiPolygon(parts)


def _ring(ring: list) -> np.ndarray:
    """A GeoJSON ring's positions as an (n, 2) array; QueryError unless it is an array of [x, y(, z)] numbers."""
    try:
        array = np.asarray(ring)
    except (ValueError, TypeError) as exc:  # ragged, or nested deeper than NumPy's 64 dimensions
        raise QueryError("the project geometry is not valid GeoJSON: a ring is an array of [x, y] positions") from exc
    if array.dtype.kind not in "iuf" or array.ndim != 2 or array.shape[1] not in (2, 3):
        raise QueryError("the project geometry is not valid GeoJSON: a ring is an array of [x, y] positions")
    if not np.isfinite(array).all():
        raise QueryError("the project geometry is not valid GeoJSON: a coordinate is not a finite number")
    return array[:, :2].astype(np.float64)


def check_project(cur: psycopg2.extensions.cursor, settings: Settings, rules: RuleSet, geometry: shapely.Geometry,
                  crs: str | CRS | None = None, code: str | None = None) -> list[dict[str, Any]]:
    """Every conflict the project would create under the current rules: rule, area m², codes, district, geometry."""
    return check(cur, settings, rules, project_geometry(settings, geometry, crs), code)
