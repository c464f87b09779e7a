"""Rasters with rasterio: zonal statistics of polygons, read block by block.

A raster of the server's own configuration may be any GDAL raster. A raster from someone else (an upload, a file
handed over) is opened only as what it claims to be — a GeoTIFF, by its first bytes and with the GTiff driver alone —
with no folder listing (so no sidecar file), no network, and at most a configured number of cells, checked from its
header before any pixel is read: a VRT or any format that names other files could read the server's files or send
requests from it, and a small compressed file can hold billions of cells.

Polygons are taken to the raster's CRS (so cells are never resampled); inside each block window, the cells whose
centre lies in a polygon are found by one tree query of the cell centres (as GDAL rasterizes), and cell values are
aggregated with bincount: no per-polygon Python loop.
A polygon too small to contain a cell centre takes the cell at its representative point. Cell areas are
true areas in the working CRS (a lon/lat raster's cells shrink northwards), from each cell's corners.
"""

from __future__ import annotations

import math

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import rasterio.transform
import rasterio.windows
import shapely
from pyproj import CRS, Transformer

from geoservice.errors import GeoserviceError

BLOCK = 2048
#: the first four bytes of a TIFF and of a BigTIFF, little- and big-endian
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
ACCEPTED = "GeoTIFF (TIFF or BigTIFF); VRT and formats that refer to other files are refused"
#: GDAL while it reads an untrusted raster: no folder listing (no .aux.xml, .ovr, .msk or world file beside it is
#: read), no PAM, georeferencing from the file only, and no /vsicurl/ (or other network) file may be opened
UNTRUSTED_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GDAL_GEOREF_SOURCES": "INTERNAL",
    "CPL_VSIL_CURL_ALLOWED_FILENAME": "/vsicurl/untrusted-rasters-open-nothing",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".untrusted-rasters-open-nothing",
}


class RasterError(GeoserviceError):
    """A raster cannot be used: unreadable, not an accepted format, too large, or without a CRS or the band asked."""


@dataclass(frozen=True)
class Untrusted:
    """How a raster from someone else is opened: as a GeoTIFF only, with at most `max_cells` cells (width × height ×
    bands, and the same for one block)."""

    max_cells: int


@contextmanager
def open_raster(path: Path, untrusted: Untrusted | None = None) -> Iterator[rasterio.io.DatasetReader]:
    """The open raster (any GDAL raster; only a GeoTIFF that names no other file when `untrusted`)."""
    if untrusted is None:
        try:
            dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"{path.name}: not a readable raster ({exc})") from exc
        with dataset:
            yield dataset
        return
    path = path.resolve()
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise RasterError(f"{path.name}: cannot be read ({exc.strerror})") from exc
    if magic not in TIFF_MAGIC:
        raise RasterError(f"{path.name}: not a readable raster: accepted is {ACCEPTED}")
    with rasterio.Env(**UNTRUSTED_ENV):
        try:
            dataset = rasterio.open(str(path), driver="GTiff")
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"{path.name}: not a readable raster ({exc}); accepted is {ACCEPTED}") from exc
        with dataset:
            _check_untrusted(dataset, path, untrusted)
            yield dataset


def _check_untrusted(dataset: rasterio.io.DatasetReader, path: Path, untrusted: Untrusted) -> None:
    """Refuse a raster that GDAL read from more than this one file, or with more cells (or a larger block) than allowed."""
    if dataset.driver != "GTiff" or [Path(f) for f in dataset.files] != [path]:
        raise RasterError(f"{path.name}: refers to other files; accepted is {ACCEPTED}")
    block = max(h * w for h, w in dataset.block_shapes)
    cells = max(dataset.width * dataset.height, block) * dataset.count
    if cells > untrusted.max_cells:
        raise RasterError(f"{path.name}: {dataset.width} × {dataset.height} cells in {dataset.count} band(s) (blocks of "
                          f"{block:,}) is more than the {untrusted.max_cells:,} cells allowed (server.max_raster_cells)")


@dataclass
class ZonalSums:
    """Per-polygon accumulators over valid (not nodata) cells; areas are true m² in the working CRS."""

    count: np.ndarray
    total: np.ndarray
    maximum: np.ndarray
    above: np.ndarray
    area: np.ndarray
    area_above: np.ndarray

    @staticmethod
    def zeros(n: int) -> ZonalSums:
        return ZonalSums(np.zeros(n), np.zeros(n), np.full(n, -np.inf), np.zeros(n), np.zeros(n), np.zeros(n))

    def statistic(self, name: str) -> np.ndarray:
        """mean, max or share_above per polygon (NaN where a polygon has no valid cell)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            if name == "mean":
                return np.where(self.count > 0, self.total / self.count, np.nan)
            if name == "max":
                return np.where(self.count > 0, self.maximum, np.nan)
            if name == "share_above":
                return np.where(self.count > 0, self.above / self.count, np.nan)
        raise ValueError(f"unknown statistic {name!r}")


def to_raster_crs(geometries: np.ndarray, working_crs: str, raster_crs: CRS | None, path: Path) -> np.ndarray:
    """Geometries in the raster's CRS (unchanged when it is the working CRS)."""
    if raster_crs is None:
        raise RasterError(f"{path.name}: the raster has no CRS")
    working = CRS.from_user_input(working_crs)
    if CRS.from_user_input(raster_crs) == working:
        return geometries
    transformer = Transformer.from_crs(working, raster_crs, always_xy=True)
    return shapely.transform(geometries, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def zonal_sums(path: Path, geometries: np.ndarray, working_crs: str, band: int = 1, above: float | None = None,
               untrusted: Untrusted | None = None) -> ZonalSums:
    """Count, sum, max (and count above `above`) of each polygon's cells."""
    n = len(geometries)
    sums = ZonalSums.zeros(n)
    with open_raster(path, untrusted) as dataset:
        if band > dataset.count:
            raise RasterError(f"{path.name}: has {dataset.count} band(s), band {band} asked for")
        if n == 0:
            return sums
        shapes = to_raster_crs(geometries, working_crs, dataset.crs, path)
        to_working = _to_working(dataset.crs, working_crs)
        tree = shapely.STRtree(shapes)
        full = rasterio.windows.Window(0, 0, dataset.width, dataset.height)
        bounds = shapely.total_bounds(shapes)
        area = covering_window(rasterio.windows.from_bounds(*bounds, transform=dataset.transform))
        try:
            area = area.intersection(full)
        except rasterio.errors.WindowError:
            return sums  # the polygons do not overlap the raster
        for row in range(int(area.row_off), int(area.row_off + area.height), BLOCK):
            for col in range(int(area.col_off), int(area.col_off + area.width), BLOCK):
                window = rasterio.windows.Window(col, row, min(BLOCK, area.col_off + area.width - col),
                                                 min(BLOCK, area.row_off + area.height - row))
                _accumulate(dataset, band, window, tree, above, sums, to_working)
        _fill_small(dataset, band, shapes, above, sums, to_working)
    return sums


def covering_window(window: rasterio.windows.Window) -> rasterio.windows.Window:
    """The whole cells a fractional window touches (offsets floored, ends ceiled): rounding offsets and lengths to the
    nearest cell can drop the last row or column, whose cell centres may lie in a polygon at the edge of the box —
    so a polygon's statistic would depend on which other polygons were measured with it."""
    col0, row0 = math.floor(window.col_off), math.floor(window.row_off)
    col1, row1 = math.ceil(window.col_off + window.width), math.ceil(window.row_off + window.height)
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


def _to_working(raster_crs: CRS | None, working_crs: str) -> Transformer | None:
    """None when the raster is in the working CRS (cells then have one constant area)."""
    working = CRS.from_user_input(working_crs)
    return None if CRS.from_user_input(raster_crs) == working else Transformer.from_crs(raster_crs, working, always_xy=True)


def cell_areas(transform: rasterio.Affine, rows: int, cols: int, to_working: Transformer | None) -> np.ndarray:
    """True area (m², working CRS) of each cell of a window: its four corners taken to the working CRS."""
    if to_working is None:
        return np.full((rows, cols), abs(transform.a * transform.e - transform.b * transform.d))
    c, r = np.meshgrid(np.arange(cols + 1), np.arange(rows + 1))
    c, r = c.ravel(), r.ravel()
    x, y = transform.a * c + transform.b * r + transform.c, transform.d * c + transform.e * r + transform.f
    wx, wy = to_working.transform(x, y)
    wx, wy = np.asarray(wx).reshape(rows + 1, cols + 1), np.asarray(wy).reshape(rows + 1, cols + 1)
    corners = [(wx[:-1, :-1], wy[:-1, :-1]), (wx[:-1, 1:], wy[:-1, 1:]), (wx[1:, 1:], wy[1:, 1:]), (wx[1:, :-1], wy[1:, :-1])]
    twice = sum(xa * yb - xb * ya for (xa, ya), (xb, yb) in zip(corners, corners[1:] + corners[:1]))
    return np.abs(twice) / 2.0


def _accumulate(dataset: rasterio.io.DatasetReader, band: int, window: rasterio.windows.Window, tree: shapely.STRtree,
                above: float | None, sums: ZonalSums, to_working: Transformer | None) -> None:
    transform = dataset.window_transform(window)
    block_box = shapely.box(*rasterio.windows.bounds(window, dataset.transform))
    if len(tree.query(block_box)) == 0:
        return
    height, width = int(window.height), int(window.width)
    cell, index = cells_in_polygons(transform, height, width, tree)
    data = dataset.read(band, window=window, masked=True).ravel()
    valid = ~np.ma.getmaskarray(data)[cell]
    cell, index = cell[valid], index[valid]
    values = np.asarray(data.data[cell], dtype=np.float64)
    areas = cell_areas(transform, height, width, to_working).ravel()[cell]
    n = len(sums.count)
    sums.count += np.bincount(index, minlength=n)
    sums.total += np.bincount(index, weights=values, minlength=n)
    sums.area += np.bincount(index, weights=areas, minlength=n)
    np.maximum.at(sums.maximum, index, values)
    if above is not None:
        over = values > above
        sums.above += np.bincount(index, weights=over.astype(np.float64), minlength=n)
        sums.area_above += np.bincount(index[over], weights=areas[over], minlength=n)


def cells_in_polygons(transform: rasterio.Affine, height: int, width: int,
                      tree: shapely.STRtree) -> tuple[np.ndarray, np.ndarray]:
    """(cell, polygon) pairs of a window's cells (flat row-major indexes) whose centre lies in a polygon of `tree`,
    as GDAL rasterizes (a centre on an edge shared by two polygons goes to the later one): one vectorized tree query
    of the cell centres, no per-polygon Python."""
    col, row = (a.ravel() for a in np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5))
    x, y = transform.a * col + transform.b * row + transform.c, transform.d * col + transform.e * row + transform.f
    cell, index = tree.query(shapely.points(x, y), predicate="intersects")
    order = np.lexsort((index, cell))
    cell, index = cell[order], index[order]
    last = np.concatenate([cell[1:] != cell[:-1], [True]]) if len(cell) else np.empty(0, bool)
    return cell[last], index[last]


def sample_cells(dataset: rasterio.io.DatasetReader, band: int, points: np.ndarray) -> np.ndarray:
    """The cell values under `points` (raster CRS, inside the raster), NaN at nodata: each block of cells holding
    points read once."""
    rows, cols = (np.asarray(a, np.int64)
                  for a in rasterio.transform.rowcol(dataset.transform, points[:, 0], points[:, 1]))
    rows, cols = np.clip(rows, 0, dataset.height - 1), np.clip(cols, 0, dataset.width - 1)
    values = np.full(len(points), np.nan)
    block = rows // BLOCK * ((dataset.width + BLOCK - 1) // BLOCK) + cols // BLOCK
    order = np.argsort(block, kind="stable")
    for at in np.split(order, np.flatnonzero(np.diff(block[order])) + 1):
        row0, col0 = rows[at].min(), cols[at].min()
        window = rasterio.windows.Window(col0, row0, cols[at].max() - col0 + 1, rows[at].max() - row0 + 1)
        cells = dataset.read(band, window=window, masked=True)[rows[at] - row0, cols[at] - col0]
        values[at] = np.ma.filled(cells.astype(np.float64), np.nan)
    return values


def _fill_small(dataset: rasterio.io.DatasetReader, band: int, shapes: np.ndarray, above: float | None, sums: ZonalSums,
                to_working: Transformer | None) -> None:
    """Polygons smaller than a cell: the value of the cell under their representative point, over their own area."""
    small = np.flatnonzero(sums.count == 0)
    if len(small) == 0:
        return
    points = shapely.get_coordinates(shapely.point_on_surface(shapes[small]))
    left, bottom, right, top = dataset.bounds
    inside = (points[:, 0] >= left) & (points[:, 0] < right) & (points[:, 1] > bottom) & (points[:, 1] <= top)
    if not inside.any():
        return
    small, points = small[inside], points[inside]
    values = sample_cells(dataset, band, points)
    good = ~np.isnan(values)
    small, values = small[good], values[good]
    own = shapely.area(shapes[small]) if to_working is None else shapely.area(
        shapely.transform(shapes[small], lambda xy: np.column_stack(to_working.transform(xy[:, 0], xy[:, 1]))))
    sums.count[small] = 1
    sums.total[small] = values
    sums.maximum[small] = values
    sums.area[small] = own
    if above is not None:
        sums.above[small] = (values > above).astype(np.float64)
        sums.area_above[small] = np.where(values > above, own, 0.0)


def zonal_statistic(path: Path, geometries: np.ndarray, working_crs: str, statistic: str, band: int = 1,
                    value: float | None = None) -> np.ndarray:
    """One statistic per polygon: mean, max or share_above (share of cells above `value`)."""
    return zonal_sums(path, geometries, working_crs, band, value if statistic == "share_above" else None).statistic(statistic)
