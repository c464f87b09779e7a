"""A vector tile (Mapbox Vector Tile) as one PostGIS statement, one MVT layer per collection:

    WITH tile AS (SELECT ST_TileEnvelope(z [+ 1], col, row, <the grid's square>) AS envelope)
    SELECT coalesce((SELECT ST_AsMVT(t, 'basemap', 4096, 'geom', 'id') FROM (
             SELECT id, ST_AsMVTGeom(<geom carried into the grid's CRS>, envelope, 4096, 64) AS geom,
                    <the properties: columns, and the layer attributes masked as in items as one jsonb>
             FROM geoservice.basemap_patch, tile
             WHERE <the run's rows> AND geom && <the tile in the working CRS> AND area_m2 >= <min area>) t), '')
        || coalesce(<the next layer>, '') …

The stored geometry stays in the working CRS: the tile (plus the MVT buffer) is carried into it exactly — clipped to
the collection's region, densified, transformed (serve/spatial.py) — so the GiST index on `geom` answers the `&&`.

Projection: around a tile the working CRS → grid CRS projection is as good as affine (at z14 over Xiamen the fitted
map is off by a quarter of an MVT unit), so a feature inside the tile's neighbourhood is carried into the grid by
`ST_Affine` with the map fitted for that tile, and only larger ones (and the tiles of low zooms, where the map is off
by more than half a unit) by PROJ: the city's densest z14 tile has 85k vertices, and PROJ took two thirds of its time.

Inside the tile: ST_AsMVTGeom runs Wagyu's polygon clipping on every feature, a clip to the tile that also rebuilds
its rings valid; that was two thirds of the densest z14 tile's time. A feature inside the tile (and the affine map's
box) needs no clip: one ST_Affine carries it straight into the MVT grid, ST_SnapToGrid quantises it as ST_AsMVTGeom
would (rounding each vertex to the nearest unit, dropping repeated points and rings that collapse) and
ST_ForcePolygonCCW gives its rings the MVT winding. Only the features crossing the tile's edge go through
ST_AsMVTGeom. Left as they come out of the snap are the self-touching rings a part narrower than one unit (an eighth
of a rendered pixel) may get: renderers draw them as they are.

Generalisation: ST_AsMVTGeom quantises every vertex to the tile's 4096 grid by the same rule, so neighbours' shared
vertices stay shared and keep their common edges (no gaps, unlike a per-feature simplification); repeated points go.
Before PROJ a geometry is snapped in the working CRS to a grid of one MVT unit at that zoom, so that fewer vertices are
transformed. Features smaller than `server.tiles.min_area_px` of a rendered pixel (1/256 of the tile, squared) at that
zoom are left out.

Properties: a filled collection whose features average less than squares of `server.tiles.detail_px` pixels at a zoom
(the 1M-patch city's base map up to z15) carries only its id and the properties it is drawn by — class codes, a
conflict's rule, severity and status — which are a third of a dense tile's bytes and time; the items and /lookup give
the rest, and the tiles of closer zooms carry every property (masked as the items are).

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
from geoservice.serve.tms import GRIDS, Grid
from geoservice.settings import TileSettings

#: MVT grid units per tile side, and the buffer around the tile (in those units) kept so that strokes join across tiles
EXTENT, BUFFER = 4096, 64


@dataclass(frozen=True)
class TileLayer:
    """One collection in a tile: as the caller's grade sees it (masked), the tile in the working CRS, the generalisation."""

    collection: Collection
    fields: tuple[Field, ...]      # the properties the tile carries
    region: shapely.Geometry       # the tile plus its buffer in the working CRS, clipped to the collection's region
    snap_m: float                  # the snapping grid in metres (one MVT unit)
    min_area_m2: float             # features smaller than this are left out
    cells: tuple[int, int, int, int, int] | None = None   # drawn as cells: per side, first/last column, first/last row
    system: str | None = None      # gcj02: the grid is GCJ-02's (geometries shifted before they go into it)
    shift: tuple[float, float] = (0.0, 0.0)   # degrees from a GCJ-02 cell centre to WGS84 (the shift at the tile)
    near: Near | None = None       # the affine map standing in for the projection around the tile


@dataclass(frozen=True)
class Near:
    """Around a tile, the working CRS → grid CRS projection as an affine map (ST_Affine's a, b, d, e, xoff, yoff):
    within `box` (working CRS) it is off by at most `AFFINE_TOLERANCE` of an MVT unit, far below the quantisation.
    `units` is the same map straight into the tile's MVT grid (y down), and `inside` a box of the working CRS inside
    the tile and its buffer: a feature within it needs no clipping."""

    box: tuple[float, float, float, float]
    matrix: tuple[float, float, float, float, float, float]
    units: tuple[float, float, float, float, float, float]
    inside: tuple[float, float, float, float]


#: the largest error the affine map may make, in MVT units: half the quantisation step, by which ST_AsMVTGeom moves
#: every vertex anyway (a rendered pixel is 16 units); past it, PROJ transforms
AFFINE_TOLERANCE = 0.5
#: the affine map's box: the tile widened by this share of its side on each side
AFFINE_MARGIN = 0.125
#: points per side on which the map is fitted and checked
AFFINE_SAMPLES = 9


@lru_cache(maxsize=1024)
def tile_affine(grid_id: str, zoom: int, row: int, col: int, working_srid: int) -> Near | None:
    """The affine map around the tile (least squares over a grid of points of the box), if it is within tolerance:
    one ST_Affine costs a fraction of a PROJ transformation per vertex, and at z14 a tile of the city has 85k."""
    grid = GRIDS[grid_id]
    xmin, ymin, xmax, ymax = grid.bounds(zoom, row, col)
    margin = (xmax - xmin) * AFFINE_MARGIN
    box = transform(shapely.box(xmin - margin, ymin - margin, xmax + margin, ymax + margin).segmentize(
        (xmax - xmin) / 4), grid.srid, working_srid).bounds
    xs, ys = np.meshgrid(np.linspace(box[0], box[2], AFFINE_SAMPLES), np.linspace(box[1], box[3], AFFINE_SAMPLES))
    source = np.column_stack([xs.ravel(), ys.ravel()])
    target = shapely.get_coordinates(transform(shapely.points(source), working_srid, grid.srid))
    origin = source.mean(axis=0)   # fitted about the box's centre: the normal equations stay well conditioned
    design = np.column_stack([source - origin, np.ones(len(source))])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    if np.abs(design @ solution - target).max() > AFFINE_TOLERANCE * (xmax - xmin) / EXTENT:
        return None
    (a, d), (b, e), (x0, y0) = solution.tolist()
    ox, oy = origin.tolist()
    xoff, yoff = x0 - a * ox - b * oy, y0 - d * ox - e * oy
    sx, sy = EXTENT / (xmax - xmin), EXTENT / (ymax - ymin)
    units = (a * sx, b * sx, -d * sy, -e * sy, (xoff - xmin) * sx, (ymax - yoff) * sy)
    return Near(box, (a, b, d, e, xoff, yoff), units, _inner_box(grid, zoom, row, col, working_srid))


def _inner_box(grid: Grid, zoom: int, row: int, col: int, working_srid: int) -> tuple[float, float, float, float]:
    """An axis-parallel box of the working CRS inside the tile and its buffer (a near-rectangle there): each side at the
    innermost coordinate of the matching side of the buffered tile carried into the working CRS."""
    xmin, ymin, xmax, ymax = grid.bounds(zoom, row, col)
    margin = (xmax - xmin) * BUFFER / EXTENT
    xmin, ymin, xmax, ymax = xmin - margin, ymin - margin, xmax + margin, ymax + margin
    steps = np.linspace(0.0, 1.0, AFFINE_SAMPLES)
    sides = [np.column_stack([np.full_like(steps, x), ymin + steps * (ymax - ymin)]) for x in (xmin, xmax)] + \
            [np.column_stack([xmin + steps * (xmax - xmin), np.full_like(steps, y)]) for y in (ymin, ymax)]
    left, right, bottom, top = (shapely.get_coordinates(transform(shapely.points(side), grid.srid, working_srid))
                                for side in sides)
    return float(left[:, 0].max()), float(bottom[:, 1].max()), float(right[:, 0].min()), float(top[:, 1].min())


#: the properties a filled collection is drawn by (what its cells and dense tiles carry): the class codes of the base
#: map, the plans and the projects (filled by class), a conflict's rule, severity and review status (hatched, outlined
#: by severity). The protection lines and districts are drawn as outlines, which cells would turn into a mesh: none.
CONFLICT_DRAWN_BY = ("rule_id", "severity", "status", "district_code")


def drawn_by(collection: Collection) -> tuple[Field, ...]:
    """The properties a filled collection is drawn by; none for an outline collection (never cells, never slimmed)."""
    if collection.table == "conflict":
        return tuple(f for f in collection.fields if f.name in CONFLICT_DRAWN_BY)
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
    drawn = drawn_by(collection)

    def denser_than(pixels: int) -> bool:
        """Whether the filled collection's features average less than squares of `pixels` at this zoom."""
        ex0, ey0, ex1, ey1 = collection.extent
        return bool(pixels and drawn and collection.feature_count
                    and (ex1 - ex0) * (ey1 - ey0) / collection.feature_count < (pixels * metres) ** 2)

    snap_m = metres * width / EXTENT
    if denser_than(tiles.cell_px):
        shift = _shift_at(collection, grid, zoom, row, col, working_srid, system) if system else (0.0, 0.0)
        cells = _cell_range(collection, grid, zoom, row, col, working_srid, max(1, width // tiles.cell_px), shift)
        return None if cells is None else TileLayer(collection, drawn, region, snap_m, 0.0, cells, system, shift)
    near = tile_affine(grid.id, zoom, row, col, working_srid) if system is None else None
    return TileLayer(collection, drawn if denser_than(tiles.detail_px) else collection.fields, region, snap_m,
                     tiles.min_area_px * metres ** 2, None, system, near=near)


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
    projected = sql.SQL("ST_Transform({}, {})").format(snapped, sql.Literal(srid))
    if layer.near is not None:  # a feature inside the affine map's box takes it (unsnapped: the quantisation snaps it
        # alike), a larger one PROJ
        projected = sql.SQL("CASE WHEN geom @ ST_MakeEnvelope({box}, {working}) THEN ST_SetSRID(ST_Affine(geom, "
                            "{matrix}), {srid}) ELSE {projected} END").format(
            box=sql.SQL(", ").join(map(sql.Literal, layer.near.box)), working=sql.Literal(working_srid),
            matrix=sql.SQL(", ").join(map(sql.Literal, layer.near.matrix)), srid=sql.Literal(srid),
            projected=projected)
    geometry = sql.SQL("ST_AsMVTGeom({projected}, tile.envelope, {extent}, {buffer}, true)").format(
        projected=projected, extent=sql.Literal(EXTENT), buffer=sql.Literal(BUFFER))
    if layer.near is not None:  # a feature inside the tile goes straight into the grid (see the module's docstring)
        geometry = sql.SQL("CASE WHEN geom @ ST_MakeEnvelope({inside}, {working}) THEN {straight} ELSE {geometry} END"
                           ).format(inside=sql.SQL(", ").join(map(sql.Literal, layer.near.inside)),
                                    working=sql.Literal(working_srid), straight=straight_sql(layer.near),
                                    geometry=geometry)
    rows = sql.SQL(
        "SELECT id, {geometry} AS geom{properties} FROM {table}, tile "
        "WHERE {rows} AND geom && {region} AND area_m2 >= {min_area}"
    ).format(geometry=geometry, properties=_properties_sql(layer.fields),
             table=sql.Identifier(SCHEMA, collection.table), rows=collection.rows_sql(),
             region=ewkb_sql(layer.region, working_srid, bind),
             min_area=bind.add(layer.min_area_m2))
    if layer.near is not None:  # a feature the snap collapsed to a line is left out, as ST_AsMVTGeom leaves it (OFFSET 0
        # keeps the subquery whole: inlined, the geometry would be computed twice)
        rows = sql.SQL("SELECT * FROM ({} OFFSET 0) s WHERE ST_Area(geom) > 0").format(rows)
    # ST_AsMVT skips the rows whose geometry ST_AsMVTGeom clipped away (NULL): filtering them would compute it twice
    return sql.SQL("coalesce((SELECT ST_AsMVT(t, {name}, {extent}, 'geom', 'id') FROM ({rows}) t), ''::bytea)").format(
        name=sql.Literal(collection.name), extent=sql.Literal(EXTENT), rows=rows)


def straight_sql(near: Near) -> sql.Composable:
    """`geom`, a feature inside the tile, carried straight into its MVT grid: quantised, wound as MVT wants."""
    return sql.SQL("ST_ForcePolygonCCW(ST_SnapToGrid(ST_Affine(geom, {}), 1))").format(
        sql.SQL(", ").join(map(sql.Literal, near.units)))


def _cells_sql(layer: TileLayer, srid: int, working_srid: int) -> sql.Composable:
    """The layer as cells merged by class codes (see the module's docstring)."""
    collection = layer.collection
    side, first, last, top, bottom = layer.cells
    codes = layer.fields
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
