"""Source CRS resolution and reprojection to the working CRS on coordinate arrays (pyproj, x = easting)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

from geoservice.crs_area import area_of_use_box
from geoservice.errors import IngestError
from geoservice.ingest.definition import Helmert7, LayerDefinition, Plane4, Transform

CoordFunction = Callable[[np.ndarray], np.ndarray]
#: datums between which PROJ's no-op "ballpark" shift is accurate to a metre or better
WGS84_FAMILY = ("China 2000", "China Geodetic Coordinate System 2000", "World Geodetic System 1984")


def resolve_source_crs(definition: LayerDefinition, file_crs: str | None, source: str) -> CRS:
    """The declared CRS wins; else the file's (.prj, GeoPackage, GeoJSON); neither is an error."""
    value = definition.crs or file_crs
    if not value:
        raise IngestError(source, "no CRS: the file has no .prj / CRS and the layer definition declares no `crs`")
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise IngestError(source, f"unreadable CRS {value[:60]!r}: {exc}") from exc


def _proj_step(crs: CRS, inverse: bool) -> str:
    """A pipeline step between this CRS's coordinates (x = easting/longitude, degrees) and geodetic radians."""
    if crs.is_geographic:
        step = "+proj=unitconvert +xy_in=deg +xy_out=rad"
        return f"+step +inv {step}" if not inverse else f"+step {step}"
    with warnings.catch_warnings():  # the PROJ string loses only metadata here: datum shifts are separate steps
        warnings.simplefilter("ignore", UserWarning)
        proj4 = crs.to_proj4()
    tokens = [t for t in proj4.split() if not t.startswith(("+type=", "+no_defs", "+towgs84=", "+nadgrids="))]
    return f"+step {'+inv ' if inverse else ''}{' '.join(tokens)}"


def _ellipsoid(crs: CRS) -> str:
    ellipsoid = crs.ellipsoid
    return f"+a={ellipsoid.semi_major_metre!r} +rf={ellipsoid.inverse_flattening!r}"


def helmert7_pipeline(source: CRS, target: CRS, p: Helmert7) -> str:
    """PROJ pipeline: source coords → cartesian on its ellipsoid → Helmert → target ellipsoid → target coords."""
    return " ".join([
        "+proj=pipeline",
        _proj_step(source, inverse=True),
        f"+step +proj=cart {_ellipsoid(source)}",
        f"+step +proj=helmert +x={p.dx} +y={p.dy} +z={p.dz} +rx={p.rx} +ry={p.ry} +rz={p.rz} +s={p.scale_ppm}"
        f" +convention={p.convention}",
        f"+step +inv +proj=cart {_ellipsoid(target)}",
        _proj_step(target, inverse=False),
    ])


def plane4_function(p: Plane4) -> CoordFunction:
    """The four-parameter plane transform on an (N, 2) array."""
    theta = np.deg2rad(p.rotation_arcsec / 3600.0)
    factor = 1.0 + p.scale_ppm * 1e-6
    cos, sin = factor * np.cos(theta), factor * np.sin(theta)

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([p.dx + cos * x - sin * y, p.dy + sin * x + cos * y])

    return apply


def _transformer_function(transformer: Transformer) -> CoordFunction:
    """A coordinate function over a Transformer (pyproj ≥ 3.1 Transformers are safe to share across threads)."""

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1], errcheck=True)
        return np.column_stack([x, y])

    return apply


def _same_datum_family(source: CRS, target: CRS) -> bool:
    names = {source.datum.name, target.datum.name}
    return len(names) == 1 or all(name.startswith(WGS84_FAMILY) for name in names)


def _custom(transform: Transform, source: CRS, target: CRS, where: str) -> CoordFunction:
    try:
        if transform.plane4 is not None:
            return plane4_function(transform.plane4)
        pipeline = transform.pipeline or helmert7_pipeline(source, target, transform.helmert7)  # type: ignore[arg-type]
        return _transformer_function(Transformer.from_pipeline(pipeline))
    except (ProjError, CRSError) as exc:
        raise IngestError(where, f"transform: PROJ refuses it: {exc}") from exc


def coordinate_function(definition: LayerDefinition, source: CRS, working: CRS, where: str) -> CoordFunction:
    """Source (x, y) → working CRS (easting, northing), using the layer's custom transform when it has one."""
    if definition.transform is not None:
        middle = CRS.from_user_input(definition.transform.to_crs) if definition.transform.to_crs else working
        first = _custom(definition.transform, source, middle, where)
        if middle == working:
            return first
        second = _transformer_function(Transformer.from_crs(middle, working, always_xy=True))
        return lambda xy: second(first(xy))
    if not _same_datum_family(source, working):
        raise IngestError(
            where,
            f"no datum transformation from {source.datum.name} to {working.datum.name} is known to PROJ (only a no-op "
            "'ballpark' shift, off by up to ~100 m): give transform.helmert7 or transform.plane4 parameters",
        )
    return _transformer_function(Transformer.from_crs(source, working, always_xy=True))


@dataclass(frozen=True)
class AreaCheck:
    """Rows whose coordinates fall outside the source CRS's area of use, and whether swapping x/y would fix them."""

    outside: np.ndarray
    swapped: np.ndarray


def check_area_of_use(geometries: np.ndarray, source: CRS,
                      box: tuple[float, float, float, float] | None | bool = False) -> AreaCheck:
    """Test each geometry's bounding-box centre against the source CRS's area of use (plain array comparisons).

    `box`: the area_of_use_box(source) when the caller has it already (None: the CRS has no area of use)."""
    if box is False:
        box = area_of_use_box(source) if len(geometries) else None
    if box is None or len(geometries) == 0:
        return AreaCheck(np.zeros(len(geometries), bool), np.zeros(len(geometries), bool))
    return check_bounds(shapely.bounds(geometries), box)


def check_bounds(bounds: np.ndarray, box: tuple[float, float, float, float] | None) -> AreaCheck:
    """check_area_of_use on (xmin, ymin, xmax, ymax) rows: is each box's centre outside `box`, and inside it swapped?"""
    count = len(bounds)
    if box is None or count == 0:
        return AreaCheck(np.zeros(count, bool), np.zeros(count, bool))
    cx, cy = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])

    outside = ~np.isnan(cx) & ~inside(cx, cy)
    swapped = outside & inside(cy, cx)
    return AreaCheck(outside, swapped)
