"""A CRS's area of use as a box in its own x/y: outside it, coordinates in that CRS are not to be trusted (ingest
refuses rows outside the source CRS's; the queries refuse places outside the working CRS's)."""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Transformer

#: the area of use is widened by this much on every side (data along a zone's edge is common)
AREA_MARGIN_DEGREES = 1.0


def area_of_use_box(crs: CRS) -> tuple[float, float, float, float] | None:
    """The CRS's area of use (widened by AREA_MARGIN_DEGREES) as a box in the CRS's own x/y (x = easting/longitude);
    None when the CRS declares no area of use."""
    area = crs.area_of_use
    if area is None or crs.geodetic_crs is None:
        return None
    m = AREA_MARGIN_DEGREES
    west, south, east, north = max(area.west - m, -180), max(area.south - m, -90), min(area.east + m, 180), min(area.north + m, 90)
    if crs.is_geographic:
        return west, south, east, north
    edge = np.linspace(0.0, 1.0, 64)
    lon = np.concatenate([west + (east - west) * edge, np.full(64, east), east - (east - west) * edge, np.full(64, west)])
    lat = np.concatenate([np.full(64, south), south + (north - south) * edge, np.full(64, north), north - (north - south) * edge])
    x, y = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True).transform(lon, lat)
    x, y = np.asarray(x), np.asarray(y)
    finite = np.isfinite(x) & np.isfinite(y)
    return float(x[finite].min()), float(y[finite].min()), float(x[finite].max()), float(y[finite].max())


def area_of_use_text(crs: CRS) -> str:
    """The area of use in words, for messages: `CGCS2000 / … (115.5°E–118.5°E, 22.6°N–49.88°N, widened by 1°)`."""
    area = crs.area_of_use
    if area is None:
        return crs.name
    return (f"{crs.name} ({_degrees(area.west, 'E', 'W')}–{_degrees(area.east, 'E', 'W')}, "
            f"{_degrees(area.south, 'N', 'S')}–{_degrees(area.north, 'N', 'S')}, widened by {AREA_MARGIN_DEGREES:g}°)")


def _degrees(value: float, positive: str, negative: str) -> str:
    return f"{abs(value):g}°{positive if value >= 0 else negative}"
