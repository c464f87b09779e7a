"""GCJ-02 and BD-09: the obfuscated longitude/latitude of Chinese consumer maps, to and from WGS84 (CRS84).

GCJ-02 (国测局坐标, "Mars coordinates": AMap/高德, Tencent, Google Maps in China) shifts a WGS84 position by a smooth
function of the position, 0–700 m; BD-09 (Baidu) applies a second, smaller shift to GCJ-02. Neither is in PROJ or
the EPSG registry, so geoservice names them with its own URIs (`GCJ02`, `BD09`) and converts here, on NumPy arrays:

- forward (WGS84 → GCJ-02 → BD-09) with the published algorithm (the Krasovsky-ellipsoid formula widely reproduced,
  e.g. wandergis/coordtransform; Baidu's closed form for BD-09);
- backward by fixed-point iteration of the forward function, until the forward image of the answer is within
  TOLERANCE_DEG (about 0.01 mm) of the input — the closed-form "inverse" formulas in circulation are off by up to
  a couple of metres.

The algorithm is defined only in China: positions outside the box the implementations all use (OUT_OF_CHINA) are
refused (`OutsideChinaError`), never passed through unchanged as those libraries do. Coordinates are longitude first
(x = longitude), as the consumer SDKs give them. The database holds the forward formulas as SQL too
(sql/0010_gcj02.sql, `geoservice.gcj02_shift`), used to write served geometries in these systems; tests check both agree.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import shapely

GCJ02, BD09 = "gcj02", "bd09"
System = Literal["gcj02", "bd09"]
#: the URIs geoservice names the systems with (no authority registers them: they are not OGC or EPSG URIs)
URIS: dict[str, str] = {GCJ02: "urn:geoservice:def:crs:GCJ02", BD09: "urn:geoservice:def:crs:BD09"}
TITLES: dict[str, str] = {GCJ02: "GCJ-02 (国测局坐标: AMap, Tencent), longitude/latitude",
                          BD09: "BD-09 (百度坐标: Baidu), longitude/latitude"}
#: the names a caller may use besides the URIs (compared without case, '-' and '_')
_ALIASES = {"gcj02": GCJ02, "bd09": BD09, "bd09ll": BD09}
#: where the algorithm is defined: lon 72.004–137.8347, lat 0.8293–55.8271 (every implementation's out_of_china box)
OUT_OF_CHINA = (72.004, 0.8293, 137.8347, 55.8271)
#: the backward conversion stops when the forward image is this close to the input (degrees; 1e-10° ≈ 0.01 mm)
TOLERANCE_DEG = 1e-10
MAX_ITERATIONS = 50

_A = 6378245.0                     # Krasovsky 1940 semi-major axis, as the published algorithm has it
_EE = 0.00669342162296594323       # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0     # Baidu's constant


class OutsideChinaError(ValueError):
    """A position outside the box where GCJ-02 and BD-09 are defined."""


def system_of(name: str | None) -> System | None:
    """`gcj02` or `bd09` when `name` names one of these systems (its URI, or GCJ-02, GCJ02, BD-09, BD09 in any case);
    None for any other name."""
    if not name:
        return None
    text = name.strip()
    for system, uri in URIS.items():
        if text.lower() == uri.lower():
            return system  # type: ignore[return-value]
    return _ALIASES.get(text.lower().replace("-", "").replace("_", ""))  # type: ignore[return-value]


def check_in_china(x: np.ndarray, y: np.ndarray, system: str, what: str) -> None:
    """OutsideChinaError naming `what` unless every position lies in the OUT_OF_CHINA box."""
    xmin, ymin, xmax, ymax = OUT_OF_CHINA
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    outside = ~((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise OutsideChinaError(
            f"{what}: ({x.flat[i]:.6f}, {y.flat[i]:.6f}) lies outside China; {system_name(system)} is defined only "
            f"within longitude {xmin}–{xmax}, latitude {ymin}–{ymax} (x is the longitude)")


def system_name(system: str) -> str:
    """GCJ-02 or BD-09."""
    return {GCJ02: "GCJ-02", BD09: "BD-09"}[system]


def _gcj02_delta(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The GCJ-02 shift (degrees of longitude, latitude) at WGS84 positions."""
    u, v = x - 105.0, y - 35.0
    common = (20.0 * np.sin(6.0 * u * np.pi) + 20.0 * np.sin(2.0 * u * np.pi)) * 2.0 / 3.0
    dlat = (-100.0 + 2.0 * u + 3.0 * v + 0.2 * v * v + 0.1 * u * v + 0.2 * np.sqrt(np.abs(u)) + common
            + (20.0 * np.sin(v * np.pi) + 40.0 * np.sin(v / 3.0 * np.pi)) * 2.0 / 3.0
            + (160.0 * np.sin(v / 12.0 * np.pi) + 320.0 * np.sin(v * np.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + u + 2.0 * v + 0.1 * u * u + 0.1 * u * v + 0.1 * np.sqrt(np.abs(u)) + common
            + (20.0 * np.sin(u * np.pi) + 40.0 * np.sin(u / 3.0 * np.pi)) * 2.0 / 3.0
            + (150.0 * np.sin(u / 12.0 * np.pi) + 300.0 * np.sin(u / 30.0 * np.pi)) * 2.0 / 3.0)
    radlat = y / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = dlon * 180.0 / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlon, dlat


def _wgs84_to_gcj02(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dlon, dlat = _gcj02_delta(x, y)
    return x + dlon, y + dlat


def _gcj02_to_bd09(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.hypot(x, y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _forward(system: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = _wgs84_to_gcj02(x, y)
    return (gx, gy) if system == GCJ02 else _gcj02_to_bd09(gx, gy)


def from_wgs84(system: str, x: np.ndarray, y: np.ndarray, what: str = "a position") -> tuple[np.ndarray, np.ndarray]:
    """WGS84 longitudes/latitudes in GCJ-02 or BD-09 (OutsideChinaError outside China)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    check_in_china(x, y, system, what)
    return _forward(system, x, y)


def to_wgs84(system: str, x: np.ndarray, y: np.ndarray, what: str = "a position") -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 or BD-09 longitudes/latitudes in WGS84: the positions whose forward image is (x, y) to TOLERANCE_DEG,
    found by fixed-point iteration (the shift changes by < 1 % of a step per step, so each step gains ~2 digits)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    check_in_china(x, y, system, what)
    wx, wy = x.copy(), y.copy()
    for _ in range(MAX_ITERATIONS):
        fx, fy = _forward(system, wx, wy)
        ex, ey = fx - x, fy - y
        if x.size == 0 or max(np.abs(ex).max(), np.abs(ey).max()) < TOLERANCE_DEG:
            return wx, wy
        wx, wy = wx - ex, wy - ey
    raise ArithmeticError(f"{system_name(system)} → WGS84 did not converge")  # never met within China


def geometry_from_wgs84(system: str, geometry: shapely.Geometry, what: str = "a geometry") -> shapely.Geometry:
    """A CRS84 (x = longitude) geometry, or array of them, in GCJ-02 or BD-09."""
    return shapely.transform(geometry, lambda xy: np.column_stack(from_wgs84(system, xy[:, 0], xy[:, 1], what)))


def geometry_to_wgs84(system: str, geometry: shapely.Geometry, what: str = "a geometry") -> shapely.Geometry:
    """A GCJ-02 or BD-09 (x = longitude) geometry, or array of them, in CRS84."""
    return shapely.transform(geometry, lambda xy: np.column_stack(to_wgs84(system, xy[:, 0], xy[:, 1], what)))
