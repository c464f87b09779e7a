"""Constraint rasters for the demo: slope (degrees) and flood depth (m), drawn from the same landscape as the plans.

Slope is written in the working CRS (EPSG:4548, 100 m cells); flood depth in CGCS2000 lon/lat (EPSG:4490,
0.001° cells), so detection has to handle a raster whose CRS differs from the working CRS. Cells off land
are nodata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from geoservice.datagen.landscape import Landscape

NODATA = -9999.0
SLOPE_CELL_M = 100.0
FLOOD_CELL_DEG = 0.001
PROFILE = {
    "driver": "GTiff",
    "dtype": "float32",
    "count": 1,
    "nodata": NODATA,
    "compress": "deflate",
    "predictor": 3,
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
}


def elevation(landscape: Landscape, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Synthetic terrain (m): ridged hills inland, low land by the coast."""
    fields = landscape.sample(x, y)
    ridges = 340.0 * fields.hill * np.abs(fields.noise["forest"])
    return np.maximum(
        520.0 * fields.hill**1.6 + ridges + 4.0 * np.minimum(fields.coast_m / 1000.0, 4.0) + 2.0 * fields.noise["mix"],
        0.0,
    )


def _grid(landscape: Landscape, cell: float) -> tuple[np.ndarray, np.ndarray, rasterio.Affine]:
    xmin, ymin = landscape.origin
    xmax, ymax = landscape.origin + landscape.size
    cols, rows = int(np.ceil((xmax - xmin) / cell)), int(np.ceil((ymax - ymin) / cell))
    transform = from_origin(xmin, ymax, cell, cell)
    gx, gy = np.meshgrid(xmin + cell * (np.arange(cols) + 0.5), ymax - cell * (np.arange(rows) + 0.5))
    return gx, gy, transform


def write_slope(landscape: Landscape, path: Path) -> Path:
    """Slope in degrees on a 100 m grid in the landscape's CRS."""
    gx, gy, transform = _grid(landscape, SLOPE_CELL_M)
    z = elevation(landscape, gx.ravel(), gy.ravel()).reshape(gx.shape)
    dz_dy, dz_dx = np.gradient(z, SLOPE_CELL_M)
    slope = np.degrees(np.arctan(np.hypot(dz_dx, dz_dy))).astype(np.float32)
    land = rasterio.features.geometry_mask([landscape.land], gx.shape, transform, invert=True)
    slope[~land] = NODATA
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", width=gx.shape[1], height=gx.shape[0], crs=landscape.crs, transform=transform, **PROFILE
    ) as out:
        out.write(slope, 1)
    return path


def write_flood_depth(landscape: Landscape, path: Path) -> Path:
    """Flood depth (m) of a coastal storm surge over low land, on a 0.001° lon/lat grid (EPSG:4490)."""
    to_geo = Transformer.from_crs(landscape.crs, "EPSG:4490", always_xy=True)
    xmin, ymin = landscape.origin
    xmax, ymax = landscape.origin + landscape.size
    lon, lat = to_geo.transform([xmin, xmax, xmin, xmax], [ymin, ymin, ymax, ymax])
    west, east, south, north = min(lon), max(lon), min(lat), max(lat)
    cols, rows = int(np.ceil((east - west) / FLOOD_CELL_DEG)), int(np.ceil((north - south) / FLOOD_CELL_DEG))
    transform = from_origin(west, north, FLOOD_CELL_DEG, FLOOD_CELL_DEG)
    glon, glat = np.meshgrid(
        west + FLOOD_CELL_DEG * (np.arange(cols) + 0.5), north - FLOOD_CELL_DEG * (np.arange(rows) + 0.5)
    )
    to_xy = Transformer.from_crs("EPSG:4490", landscape.crs, always_xy=True)
    x, y = to_xy.transform(glon.ravel(), glat.ravel())
    z = elevation(landscape, np.asarray(x), np.asarray(y)).reshape(glon.shape)
    depth = np.clip((9.0 - z) / 2.0, 0.0, 4.0).astype(np.float32)
    on_land = shapely.contains_xy(landscape.land, np.asarray(x), np.asarray(y)).reshape(glon.shape)
    depth[~on_land] = NODATA
    with rasterio.open(path, "w", width=cols, height=rows, crs="EPSG:4490", transform=transform, **PROFILE) as out:
        out.write(depth, 1)
    return path


def write_demo_rasters(landscape: Landscape, out_dir: Path) -> list[Path]:
    """Both demo rasters into out_dir/rasters/."""
    folder = Path(out_dir) / "rasters"
    return [
        write_slope(landscape, folder / "slope_deg.tif"),
        write_flood_depth(landscape, folder / "flood_depth_m.tif"),
    ]
