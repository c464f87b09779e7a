"""The tile matrix sets tiles are served in (OGC Two Dimensional Tile Matrix Set 2.0, via morecantile).

- `WebMercatorQuad`: the OGC registered definition (EPSG:3857), as web maps use.
- `WorldCRS84Quad` on CGCS2000: the registered WorldCRS84Quad grid (2 × 1 tiles of 180° at level 0) with its CRS
  EPSG:4490 (CGCS2000, latitude first, so `orderedAxes` Lat, Lon and the origin 90, -180) — the geodetic grid of
  天地图's c-type tiles (their level n is our level n - 1), so tiles sit on a CGCS2000 background. CGCS2000 and WGS84
  differ by centimetres; the definition says which one it is.

Inside geoservice x is longitude/easting (morecantile's `xy_bounds` too); PostGIS's `ST_TileEnvelope` divides a
square into 2^z × 2^z tiles, so a grid whose level 0 is 2 × 1 tiles is the square of side 360° one level down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import morecantile

from geoservice.serve.crs import ServingCrs, serving_crs
from geoservice.serve.problems import NotFoundError

CGCS2000 = "http://www.opengis.net/def/crs/EPSG/0/4490"


class TileError(NotFoundError):
    """A tile that does not exist in the tile matrix set (its matrix, row or column out of range)."""


def _cgcs2000_quad() -> morecantile.TileMatrixSet:
    definition = morecantile.tms.get("WorldCRS84Quad").model_dump(exclude_none=True, mode="json")
    definition.pop("uri", None)  # not the registered CRS84 set
    definition.update(title="WorldCRS84Quad on CGCS2000 (EPSG:4490; the grid of 天地图 c-type tiles)",
                      crs=CGCS2000, orderedAxes=["Lat", "Lon"])
    for matrix in definition["tileMatrices"]:
        matrix["pointOfOrigin"] = [90, -180]  # in the CRS's axis order: latitude first
    return morecantile.TileMatrixSet.model_validate(definition)


@dataclass(frozen=True)
class Grid:
    """One tile matrix set as geoservice serves it: its definition, SRID and the arguments of ST_TileEnvelope."""

    id: str
    tms: morecantile.TileMatrixSet

    @cached_property
    def crs(self) -> ServingCrs:
        return serving_crs(str(self.tms.crs.root))

    @property
    def srid(self) -> int:
        return self.crs.srid

    @cached_property
    def envelope_square(self) -> tuple[int, tuple[float, float, float, float]]:
        """(zoom offset, square bounds xmin, ymin, xmax, ymax) for `ST_TileEnvelope(z + offset, col, row, bounds)`."""
        first = self.tms.matrix(0)
        tiles = max(first.matrixWidth, first.matrixHeight)
        side = first.cellSize * first.tileWidth * tiles
        corner = self.tms.xy_bounds(morecantile.Tile(0, 0, 0))
        return int(math.log2(tiles)), (corner.left, corner.top - side, corner.left + side, corner.top)

    @property
    def zooms(self) -> range:
        return range(self.tms.minzoom, self.tms.maxzoom + 1)

    def check(self, zoom: int, row: int, col: int) -> None:
        """TileError when the tile is not in the set."""
        if zoom not in self.zooms:
            raise TileError(f"tile matrix {zoom} is not in {self.id} (0–{self.tms.maxzoom})")
        matrix = self.tms.matrix(zoom)
        if not (0 <= row < matrix.matrixHeight and 0 <= col < matrix.matrixWidth):
            raise TileError(f"tile {zoom}/{row}/{col} is outside {self.id}'s matrix {zoom} "
                            f"({matrix.matrixHeight} rows, {matrix.matrixWidth} columns)")

    def bounds(self, zoom: int, row: int, col: int) -> tuple[float, float, float, float]:
        """The tile's bounds in the set's CRS, x/y order (longitude first)."""
        box = self.tms.xy_bounds(morecantile.Tile(col, row, zoom))
        return box.left, box.bottom, box.right, box.top

    def pixel_size(self, zoom: int) -> float:
        """A rendered pixel's size at `zoom` in the set's CRS units."""
        return self.tms.matrix(zoom).cellSize

    def limits(self, crs84_extent: tuple[float, float, float, float] | None, zooms: range) -> list[dict[str, Any]]:
        """TileMatrixSetLimits: per zoom, the rows and columns the data's extent (CRS84) touches."""
        if crs84_extent is None:
            return []
        west, south, east, north = crs84_extent
        limits = []
        for zoom in zooms:
            first = self.tms.tile(west, north, zoom, truncate=True)
            last = self.tms.tile(east, south, zoom, truncate=True)
            limits.append({"tileMatrix": str(zoom), "minTileRow": first.y, "maxTileRow": last.y,
                           "minTileCol": first.x, "maxTileCol": last.x})
        return limits

    def definition(self) -> dict[str, Any]:
        """The OGC TMS 2.0 JSON definition."""
        return self.tms.model_dump(exclude_none=True, mode="json")


GRIDS: dict[str, Grid] = {grid.id: grid for grid in (Grid("WebMercatorQuad", morecantile.tms.get("WebMercatorQuad")),
                                                      Grid("WorldCRS84Quad", _cgcs2000_quad()))}
