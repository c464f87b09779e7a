"""Request geometries (a `bbox`, a filter's literals) moved exactly into the working CRS.

A rectangle in CRS84 is not a rectangle in a Gauss-Kruger CRS, and far outside its zone a projected CRS
gives garbage (a world bbox in EPSG:4548 collapses to a line). So a request geometry is first clipped to
the collection's region — its data extent plus a margin, as seen in the request's CRS — then densified
and transformed. Every feature lies strictly inside that region, so clipping changes no spatial relation
between a feature and the geometry, and what remains is always inside the projection's domain.

A geometry in GCJ-02 or BD-09 is first densified and taken back to WGS84 (geoservice/gcj02.py); one reaching outside
China, where those systems are not defined, is refused.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import shapely
from pyproj import Transformer

from geoservice import gcj02
from geoservice.serve.crs import ServingCrs
from geoservice.serve.problems import ClientError

#: vertices per edge when a rectangle is carried into another CRS
DENSIFY = 32
#: margin around the data extent, as a share of its larger side (and at least MIN_MARGIN metres)
MARGIN_SHARE, MIN_MARGIN = 0.02, 100.0
#: the longest edge (degrees) of a GCJ-02/BD-09 geometry taken back to WGS84 (the shift varies over tens of km)
SHIFT_SEGMENT_DEG = 0.01
WGS84 = 4326


class GeometryError(ClientError):
    """A request geometry that cannot be used (not valid, or not a geometry)."""


@lru_cache(maxsize=128)
def _transformer(source: int, target: int) -> Transformer:
    """A pyproj transformer x/y → x/y, made from its pipeline: pyproj gives each thread its own copy, and
    `from_crs` would search PROJ's database again in every thread (~0.2 s), `from_pipeline` does not."""
    return Transformer.from_pipeline(Transformer.from_crs(source, target, always_xy=True).definition)


def transform(geometry: shapely.Geometry, source: int, target: int) -> shapely.Geometry:
    """An x/y geometry from SRID `source` to `target` (x = easting/longitude in both)."""
    if source == target:
        return geometry
    transformer = _transformer(source, target)
    return shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def swap_axes(geometry: shapely.Geometry) -> shapely.Geometry:
    """The geometry with its first two coordinates swapped (a lat-first or northing-first CRS → x/y)."""
    return shapely.transform(geometry, lambda xy: xy[:, ::-1])


@lru_cache(maxsize=256)
def _region(extent: tuple[float, float, float, float], working_srid: int, srid: int) -> shapely.Geometry:
    """The collection's region (extent plus margin, densified) in the x/y coordinates of `srid`."""
    xmin, ymin, xmax, ymax = extent
    margin = max(MIN_MARGIN, MARGIN_SHARE * max(xmax - xmin, ymax - ymin))
    box = shapely.box(xmin - margin, ymin - margin, xmax + margin, ymax + margin)
    box = shapely.segmentize(box, max(xmax - xmin, ymax - ymin, margin) / DENSIFY)
    region = shapely.make_valid(transform(box, working_srid, srid))
    shapely.prepare(region)
    return region


def to_working(geometry: shapely.Geometry, crs: ServingCrs, extent: tuple[float, float, float, float] | None,
               working_srid: int) -> shapely.Geometry:
    """A geometry given in `crs` (already x/y) clipped to the collection's region and transformed to the working CRS.

    Empty when it does not reach the region (nothing can match it); no collection extent means no data.
    """
    if extent is None:
        return shapely.Polygon()
    if not shapely.is_valid(geometry):
        raise GeometryError(f"not a valid geometry: {shapely.is_valid_reason(geometry)}")
    srid = crs.srid
    if crs.system is not None:
        geometry, srid = unshift(geometry, crs), WGS84
    region = _region(extent, working_srid, srid)
    clipped = geometry if shapely.contains_properly(region, geometry) else shapely.intersection(geometry, region)
    if clipped.is_empty:
        return clipped
    span = max(region.bounds[2] - region.bounds[0], region.bounds[3] - region.bounds[1])
    return transform(shapely.segmentize(clipped, span / (DENSIFY * 4)), srid, working_srid)


def unshift(geometry: shapely.Geometry, crs: ServingCrs) -> shapely.Geometry:
    """A geometry in a GCJ-02 or BD-09 CRS (lon/lat, or its Web Mercator for tiles) densified and taken to WGS84
    lon/lat; GeometryError when it reaches outside China, where those systems are not defined."""
    if crs.srid != WGS84:
        width, height = np.subtract(geometry.bounds[2:], geometry.bounds[:2])
        geometry = transform(shapely.segmentize(geometry, max(width, height, 1e-9) / DENSIFY), crs.srid, WGS84)
    try:
        return gcj02.geometry_to_wgs84(crs.system, shapely.segmentize(geometry, SHIFT_SEGMENT_DEG), "a vertex")
    except gcj02.OutsideChinaError as exc:
        raise GeometryError(str(exc)) from exc


def bbox_geometry(values: list[float], crs: ServingCrs) -> shapely.Geometry:
    """A `bbox` (4 or 6 numbers in the CRS's axis order) as an x/y polygon; an antimeridian-crossing one as two."""
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    first_min, second_min, first_max, second_max = values
    xmin, ymin, xmax, ymax = (second_min, first_min, second_max, first_max) if crs.yx else values
    if ymin > ymax:
        raise GeometryError("the lower corner is above the upper corner")
    if xmin > xmax:
        if not crs.geographic:
            raise GeometryError("the lower corner is right of the upper corner")
        return shapely.MultiPolygon([shapely.box(xmin, ymin, 180.0, ymax), shapely.box(-180.0, ymin, xmax, ymax)])
    return shapely.box(xmin, ymin, xmax, ymax)


def covers_share(geometry: shapely.Geometry, extent: tuple[float, float, float, float] | None) -> float:
    """The share of the data extent a working-CRS geometry's bounds cover (0..1), for choosing a plan."""
    if extent is None or geometry.is_empty:
        return 0.0
    xmin, ymin, xmax, ymax = extent
    area = max((xmax - xmin) * (ymax - ymin), 1.0)
    return min(1.0, shapely.area(shapely.intersection(shapely.box(*geometry.bounds), shapely.box(*extent))) / area)
