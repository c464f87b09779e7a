"""A vector tile (Mapbox Vector Tile) as one PostGIS statement, one MVT layer per collection:

    WITH tile AS (SELECT ST_TileEnvelope(z [+ 1], col, row, <the grid's square>) AS envelope)
    SELECT coalesce((SELECT ST_AsMVT(t, 'basemap', 4096, 'geom', 'id') FROM (
             SELECT id, ST_AsMVTGeom(ST_Transform(ST_SnapToGrid(geom, <unit>), <grid SRID>), envelope, 4096, 64) AS geom,
                    <the properties: columns, and the layer attributes masked as in items as one jsonb>
             FROM geoservice.basemap_patch, tile
             WHERE <the run's rows> AND geom && <the tile in the working CRS> AND area_m2 >= <min area>) t), '')
        || coalesce(<the next layer>, '') …

The stored geometry stays in the working CRS: the tile (plus the MVT buffer) is carried into it exactly — clipped to
the collection's region, densified, transformed (serve/spatial.py) — so the GiST index on `geom` answers the `&&`.

Generalisation: each geometry is snapped in the working CRS to a grid of one MVT unit (1/4096 of the tile) at that
zoom, so neighbours' shared vertices land on the same grid point and keep their common edges (no gaps, unlike a
per-feature simplification), repeated points go, and ST_AsMVTGeom quantises to the tile's 4096 grid. Features smaller
than `server.tiles.min_area_px` of a rendered pixel (1/256 of the tile, squared) at that zoom are left out.

Cells: where a filled collection (the base map, a plan, the projects, the conflicts) has more features than cells of
`server.tiles.cell_px` pixels at a zoom, dropping the small ones would leave the map full of holes and keeping them
makes tiles of megabytes. There the tile is a grid of cells instead: each cell takes the class codes (a conflict: its
rule, severity and status) of a feature under its centre (one GiST probe per cell), and the cells of a row with the
same properties are one rectangle:

    SELECT <codes>, ST_AsMVTGeom(<the run's rectangle>, <tile>, 4096, 0, false)
    FROM <runs of equal codes in a row of> <cell centres in the working CRS>, LATERAL (SELECT <codes> FROM …
         WHERE geom && centre AND ST_Intersects(geom, centre) LIMIT 1)

Tiles for a GCJ-02 background (`system`, the /map viewer over an AMap-style map): the tile's grid is read as GCJ-02's
Web Mercator — the tile is taken back to WGS84 to select (serve/spatial.py), and each snapped geometry is shifted by
`geoservice.gcj02_shift` (sql/0010_gcj02.sql) before it goes into the grid. Snapping comes first, so neighbours' shared
vertices are shifted alike and stay shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import shapely
import shapely.affinity
from psycopg2 import sql

from geoservice import gcj02
from geoservice.db import SCHEMA
from geoservice.serve.bind import Bindings
from geoservice.serve.catalog import Collection, Field
from geoservice.serve.cql import ewkb_sql
from geoservice.serve.query import Statement, json_object_sql
from geoservice.serve.spatial import to_working, transform
from geoservice.serve.tms import Grid
from geoservice.settings import TileSettings

#: MVT grid units per tile side, and the buffer around the tile (in those units) kept so that strokes join across tiles
EXTENT, BUFFER = 4096, 64


@dataclass(frozen=True)
class TileLayer:
    """One collection in a tile: as the caller's grade sees it (masked), the tile in the working CRS, the generalisation."""

    collection: Collection
    region: shapely.Geometry       # the tile plus its buffer in the working CRS, clipped to the collection's region
    snap_m: float                  # the snapping grid in metres (one MVT unit)
    min_area_m2: float             # features smaller than this are left out
    cells: tuple[int, int, int, int, int] | None = None   # drawn as cells: per side, first/last column, first/last row
    system: str | None = None      # gcj02: the grid is GCJ-02's (geometries shifted before they go into it)
    shift: tuple[float, float] = (0.0, 0.0)   # degrees from a GCJ-02 cell centre to WGS84 (the shift at the tile)


#: the properties a cell carries, by what the viewer draws a collection with: the class codes of the base map, the
#: plans and the projects (filled by class), a conflict's rule, severity and review status (hatched, outlined by
#: severity). The protection lines and districts are drawn as outlines, which cells would turn into a mesh: never cells.
CONFLICT_CELL_FIELDS = ("rule_id", "severity", "status", "district_code")


def cell_fields(collection: Collection) -> tuple[Field, ...]:
    """The properties the collection's cells carry; none when it is never drawn as cells."""
    if collection.table == "conflict":
        return tuple(f for f in collection.fields if f.name in CONFLICT_CELL_FIELDS)
    if collection.table == "basemap_patch" or collection.kind in ("land_use", "urban_plan", "construction"):
        return tuple(f for f in collection.fields if f.name.endswith("code") and f.type == "string")
    return ()


def _cell_range(collection: Collection, grid: Grid, zoom: int, row: int, col: int, working_srid: int,
                side: int, shift: tuple[float, float]) -> tuple[int, int, int, int, int] | None:
    """The cells of the tile (`side` per side) over the collection's extent (moved by -`shift` degrees into a GCJ-02
    grid): first/last column, first/last row."""
    xmin, ymin, xmax, ymax = grid.bounds(zoom, row, col)
    step = (xmax - xmin) / side
    outline = transform(shapely.box(*collection.extent).segmentize((collection.extent[2] - collection.extent[0]) / 16),
                        working_srid, 4326)
    exmin, eymin, exmax, eymax = transform(shapely.affinity.translate(outline, -shift[0], -shift[1]), 4326,
                                           grid.srid).bounds
    first, last = max(0, math.floor((exmin - xmin) / step)), min(side - 1, math.floor((exmax - xmin) / step))
    top, bottom = max(0, math.floor((ymax - eymax) / step)), min(side - 1, math.floor((ymax - eymin) / step))
    return (side, first, last, top, bottom) if first <= last and top <= bottom else None


def _shift_at(collection: Collection, grid: Grid, zoom: int, row: int, col: int, working_srid: int,
              system: str) -> tuple[float, float]:
    """GCJ-02 → WGS84 in degrees at the tile's centre (held inside the collection's extent: the shift is defined in
    China only); it varies by metres across a tile, far less than a cell."""
    xmin, ymin, xmax, ymax = grid.bounds(zoom, row, col)
    centre = transform(shapely.Point((xmin + xmax) / 2, (ymin + ymax) / 2), grid.srid, 4326)
    lon0, lat0, lon1, lat1 = transform(shapely.box(*collection.extent), working_srid, 4326).bounds
    lon, lat = min(max(centre.x, lon0), lon1), min(max(centre.y, lat0), lat1)
    x, y = gcj02.to_wgs84(system, np.array([lon]), np.array([lat]))
    return float(x[0]) - lon, float(y[0]) - lat


@lru_cache(maxsize=256)
def _metres_per_unit(srid: int, extent: tuple[float, float, float, float], working_srid: int, step: float) -> float:
    """How many metres one unit of SRID `srid` measures on the ground at the centre of a working-CRS extent (from the
    area a square of side `step` there covers in the working CRS)."""
    centre = transform(shapely.box(*extent).centroid, working_srid, srid)
    square = shapely.box(centre.x, centre.y, centre.x + step, centre.y + step)
    return math.sqrt(shapely.area(transform(square, srid, working_srid))) / step


def tile_layer(collection: Collection, grid: Grid, zoom: int, row: int, col: int, working_srid: int,
               tiles: TileSettings, system: str | None = None) -> TileLayer | None:
    """The collection's part of a tile (in GCJ-02's grid with `system`); None when the tile does not reach its data."""
    if collection.extent is None:
        return None
    xmin, ymin, xmax, ymax = grid.bounds(zoom, row, col)
    margin = (xmax - xmin) * BUFFER / EXTENT
    crs = grid.crs if system is None else replace(grid.crs, uri=gcj02.URIS[system], system=system)
    region = to_working(shapely.box(xmin - margin, ymin - margin, xmax + margin, ymax + margin), crs,
                        collection.extent, working_srid)
    if region.is_empty:
        return None
    metres = grid.pixel_size(zoom) * _metres_per_unit(grid.srid, collection.extent, working_srid, grid.pixel_size(16))
    width = grid.tms.matrix(zoom).tileWidth
    cells = None
    if tiles.cell_px and cell_fields(collection) and collection.feature_count:
        ex0, ey0, ex1, ey1 = collection.extent
        if (ex1 - ex0) * (ey1 - ey0) / collection.feature_count < (tiles.cell_px * metres) ** 2:
            shift = _shift_at(collection, grid, zoom, row, col, working_srid, system) if system else (0.0, 0.0)
            cells = _cell_range(collection, grid, zoom, row, col, working_srid, max(1, width // tiles.cell_px), shift)
            if cells is None:
                return None
            return TileLayer(collection, region, metres * width / EXTENT, 0.0, cells, system, shift)
    return TileLayer(collection, region, metres * width / EXTENT, tiles.min_area_px * metres ** 2, None, system)


def _properties_sql(fields: tuple[Field, ...]) -> sql.Composable:
    """The items' properties as MVT columns: a table's scalar columns as they are (ST_AsMVT keeps their types), the
    layer attributes — masked alike, by `Field.value_sql` — and JSON objects (as their text: MVT values are scalars) in
    one jsonb column, which ST_AsMVT spreads into properties. NULLs are left out either way."""
    plain = [f for f in fields if not f.attribute and f.type != "object"]
    rest = [(f.name, sql.SQL("to_jsonb(({})::text)").format(f.value_sql()) if f.type == "object" else f.value_sql())
            for f in fields if f not in plain]
    columns = [sql.Identifier(f.name) for f in plain]
    if rest:
        columns.append(sql.SQL("{} AS mvt_properties").format(json_object_sql(rest, jsonb=True)))
    return sql.SQL("").join(sql.SQL(", {}").format(c) for c in columns)


def _layer_sql(layer: TileLayer, srid: int, working_srid: int, bind: Bindings) -> sql.Composable:
    if layer.cells:
        return _cells_sql(layer, srid, working_srid)
    collection = layer.collection
    snapped = sql.SQL("ST_SnapToGrid(geom, {})").format(bind.add(layer.snap_m))
    if layer.system is not None:
        snapped = sql.SQL("geoservice.gcj02_shift(ST_Transform({}, 4326), {})").format(
            snapped, sql.Literal(layer.system == gcj02.BD09))
    geometry = sql.SQL("ST_AsMVTGeom(ST_Transform({snapped}, {srid}), tile.envelope, {extent}, {buffer}, true)").format(
        snapped=snapped, srid=sql.Literal(srid), extent=sql.Literal(EXTENT), buffer=sql.Literal(BUFFER))
    rows = sql.SQL(
        "SELECT id, {geometry} AS geom{properties} FROM {table}, tile "
        "WHERE {rows} AND geom && {region} AND area_m2 >= {min_area}"
    ).format(geometry=geometry, properties=_properties_sql(collection.fields),
             table=sql.Identifier(SCHEMA, collection.table), rows=collection.rows_sql(),
             region=ewkb_sql(layer.region, working_srid, bind),
             min_area=bind.add(layer.min_area_m2))
    # ST_AsMVT skips the rows whose geometry ST_AsMVTGeom clipped away (NULL): filtering them would compute it twice
    return sql.SQL("coalesce((SELECT ST_AsMVT(t, {name}, {extent}, 'geom', 'id') FROM ({rows}) t), ''::bytea)").format(
        name=sql.Literal(collection.name), extent=sql.Literal(EXTENT), rows=rows)


def _cells_sql(layer: TileLayer, srid: int, working_srid: int) -> sql.Composable:
    """The layer as cells merged by class codes (see the module's docstring)."""
    collection = layer.collection
    side, first, last, top, bottom = layer.cells
    codes = cell_fields(collection)
    named = sql.SQL(", ").join(sql.SQL("{} AS {}").format(f.value_sql(), sql.Identifier(f.name)) for f in codes)
    grouped = sql.SQL(", ").join(sql.Identifier(f.name) for f in codes)
    centre = sql.SQL("ST_SetSRID(ST_MakePoint(x0 + (i + 0.5) * step, y1 - (j + 0.5) * step), {})").format(
        sql.Literal(srid))
    if layer.system is not None:  # a GCJ-02 grid: the centre is taken back to WGS84 by the shift at the tile
        centre = sql.SQL("ST_Translate(ST_Transform({}, 4326), {}, {})").format(
            centre, sql.Literal(layer.shift[0]), sql.Literal(layer.shift[1]))
    # the centres are transformed once (a MATERIALIZED CTE: inlined, the probe would transform each three times);
    # cells in a row with the same codes become one rectangle (merging those into polygons with ST_Union costs
    # more than the probes and only halves the bytes)
    cells = sql.SQL(
        "WITH g AS (SELECT ST_XMin(envelope) AS x0, ST_YMax(envelope) AS y1, "
        "(ST_XMax(envelope) - ST_XMin(envelope)) / {side} AS step FROM tile), "
        "c AS MATERIALIZED (SELECT i, j, ST_Transform({centre}, {working}) AS centre "
        "FROM g, generate_series({first}, {last}) i, generate_series({top}, {bottom}) j), "
        "hit AS (SELECT i, j, hit.* FROM c, LATERAL (SELECT {named} FROM {table} WHERE {rows} "
        "AND geom && c.centre AND ST_Intersects(geom, c.centre) LIMIT 1) hit), "
        "runs AS (SELECT {grouped}, j, min(i) AS i0, max(i) AS i1 FROM (SELECT *, i - row_number() OVER "
        "(PARTITION BY j, {grouped} ORDER BY i) AS run FROM hit) h GROUP BY {grouped}, j, run) "
        "SELECT {grouped}, ST_AsMVTGeom(ST_MakeEnvelope(x0 + i0 * step, y1 - (j + 1) * step, "
        "x0 + (i1 + 1) * step, y1 - j * step, {srid}), (SELECT envelope FROM tile), {extent}, 0, false) AS geom "
        "FROM runs, g"
    ).format(grouped=grouped, named=named, centre=centre, srid=sql.Literal(srid), working=sql.Literal(working_srid),
             extent=sql.Literal(EXTENT), side=sql.Literal(side), first=sql.Literal(first), last=sql.Literal(last),
             top=sql.Literal(top), bottom=sql.Literal(bottom), table=sql.Identifier(SCHEMA, collection.table),
             rows=collection.rows_sql())
    return sql.SQL("coalesce((SELECT ST_AsMVT(t, {name}, {extent}, 'geom') FROM ({cells}) t), ''::bytea)").format(
        name=sql.Literal(collection.name), extent=sql.Literal(EXTENT), cells=cells)


def tile_statement(grid: Grid, zoom: int, row: int, col: int, layers: list[TileLayer], working_srid: int) -> Statement:
    """The statement whose one value is the tile: the layers' MVTs concatenated (an MVT is a sequence of layers)."""
    bind = Bindings()
    offset, (west, south, east, north) = grid.envelope_square
    envelope = sql.SQL("ST_TileEnvelope({}, {}, {}, ST_MakeEnvelope({}, {}, {}, {}, {}))").format(
        bind.add(zoom + offset), bind.add(col), bind.add(row), *(sql.Literal(v) for v in (west, south, east, north)),
        sql.Literal(grid.srid))
    parts = sql.SQL(" || ").join(_layer_sql(layer, grid.srid, working_srid, bind) for layer in layers)
    return Statement(sql.SQL("WITH tile AS (SELECT {} AS envelope) SELECT {}").format(envelope, parts), bind.values)
