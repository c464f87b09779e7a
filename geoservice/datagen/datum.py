"""Seven-parameter (Bursa-Wolf) datum shifts between projected CRSs as PROJ pipelines.

PROJ knows only a no-op "ballpark" transformation from Xi'an 1980 to CGCS2000; bureaus hold their own
seven parameters. The demo's development boundary is delivered in Xi'an 1980 / 3-degree Gauss-Kruger
CM 117E (EPSG:2384, IAG 1975 ellipsoid) and was made from the CGCS2000 truth with the *inverse* of the
parameters below, so an ingest that applies them forward (source → CGCS2000) gets the truth back.
"""

from __future__ import annotations

import numpy as np
import shapely
from pyproj import CRS, Transformer

from geoservice.ingest.crs import helmert7_pipeline
from geoservice.ingest.definition import Helmert7


#: The demo's (made-up but plausible) Xi'an 1980 → CGCS2000 parameters; layers/dev_boundary.yaml has the same.
XIAN80_TO_CGCS2000 = Helmert7(dx=-15.3, dy=120.5, dz=45.2, rx=0.12, ry=-0.3, rz=0.25, scale_ppm=1.5)
XIAN80_GK_117E = "EPSG:2384"  # Xian 1980 / 3-degree Gauss-Kruger CM 117E
CGCS2000_GK_117E = "EPSG:4548"  # CGCS2000 / 3-degree Gauss-Kruger CM 117E


def helmert_pipeline(helmert: Helmert7, source_crs: str, target_crs: str) -> str:
    """The PROJ pipeline ingest builds for these parameters (source projected → target projected)."""
    return helmert7_pipeline(CRS.from_user_input(source_crs), CRS.from_user_input(target_crs), helmert)


def _move(geometry: np.ndarray, transformer: Transformer, direction: str) -> np.ndarray:
    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1], direction=direction)
        return np.column_stack([x, y])

    return shapely.transform(geometry, move)


def to_source_datum(
    geometry: np.ndarray,
    helmert: Helmert7 = XIAN80_TO_CGCS2000,
    source_crs: str = XIAN80_GK_117E,
    truth_crs: str = CGCS2000_GK_117E,
) -> np.ndarray:
    """CGCS2000 truth → the source datum's coordinates (the inverse of `helmert`), refined so that the
    forward transform at height 0 — what an ingest does with a 2D file — returns the truth to ~1e-6 m.
    (The plain inverse leaves the ellipsoidal height it produces behind, ~1 mm of error on the way back.)"""
    transformer = Transformer.from_pipeline(helmert_pipeline(helmert, source_crs, truth_crs))

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1], direction="INVERSE")
        for _ in range(3):
            fx, fy = transformer.transform(x, y, direction="FORWARD")
            x, y = x - (fx - xy[:, 0]), y - (fy - xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, move)


def to_cgcs2000(
    geometry: np.ndarray,
    helmert: Helmert7 = XIAN80_TO_CGCS2000,
    source_crs: str = XIAN80_GK_117E,
    truth_crs: str = CGCS2000_GK_117E,
) -> np.ndarray:
    """Source datum → CGCS2000 (what ingest does with the layer's parameters)."""
    transformer = Transformer.from_pipeline(helmert_pipeline(helmert, source_crs, truth_crs))
    return _move(geometry, transformer, "FORWARD")
