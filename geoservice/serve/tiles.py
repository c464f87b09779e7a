"""OGC API – Tiles: vector tiles (Mapbox Vector Tile) of every served collection and of the dataset, over the caller's
view of the live catalog, so a collection the caller may not read is 404 in every tile endpoint exactly as an unknown
one, and a tile carries the properties masked as the items carry them.

    /tileMatrixSets, /tileMatrixSets/{tileMatrixSetId}                     the grids (serve/tms.py)
    /collections/{id}/tiles, /tiles                                         the tilesets of a collection, of the dataset
    …/tiles/{tileMatrixSetId}[?f=tilejson]                                  tileset metadata (limits, layers), TileJSON
    …/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}              a tile: one MVT layer per collection;
                                                                            the dataset's `collections=a,b` chooses them

Tiles are built by one PostGIS statement (serve/tile_sql.py) and cached on disk by what they were built from
(serve/tile_cache.py); the ETag comes from the same key, so `If-None-Match` is answered 304 before anything is built.

`crs=GCJ02` on a WebMercatorQuad tileset, TileJSON or tile (the /map viewer over a GCJ-02 background such as AMap's,
`server.map_tiles_crs`) draws the features where a GCJ-02 map has them: the grid is read as GCJ-02's Web Mercator.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geoservice import gcj02
from geoservice.serve.caching import not_modified, validators, with_validators
from geoservice.serve.catalog import Collection
from geoservice.serve.crs import CRS84
from geoservice.serve.live import CatalogState, GradeView, Snapshot
from geoservice.serve.problems import ClientError, NotFoundError, client_problem, problem
from geoservice.serve.provider import Unavailable
from geoservice.serve.tile_cache import TileCache, TileKey, source_of
from geoservice.serve.tile_sql import BUFFER, EXTENT, tile_layer, tile_statement
from geoservice.serve.tms import GRIDS, Grid
from geoservice.settings import Settings

MVT = "application/vnd.mapbox-vector-tile"
_TILES = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf"
_TMS = "http://www.opengis.net/spec/tms/2.0/conf"
#: the OGC API – Tiles and TMS 2.0 conformance classes implemented
CONFORMANCE = [f"{_TILES}/{name}" for name in ("core", "tileset", "tilesets-list", "geodata-tilesets",
                                               "dataset-tilesets", "geodata-selection", "mvt", "oas30")] + \
              [f"{_TMS}/{name}" for name in ("tilematrixset", "json-tilematrixset", "tilesetmetadata",
                                             "json-tilesetmetadata", "tilematrixsetlimits", "json-tilematrixsetlimits")]
REL_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
_TEMPLATE = "{tileMatrix}/{tileRow}/{tileCol}"


def _integer(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise ClientError(f"{what} {text!r} is not a non-negative integer")
    return int(text)


def union_extent(collections: list[Collection]) -> tuple[float, float, float, float] | None:
    boxes = [c.crs84_extent for c in collections if c.crs84_extent]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


#: how far (degrees) a shifted extent is widened: the shift's variation along an edge between its corners is far less
SHIFTED_MARGIN_DEG = 0.002


def _extent(collections: list[Collection], system: str | None) -> tuple[float, float, float, float] | None:
    """The collections' CRS84 extent, or with `system` where a GCJ-02 map draws it (its corners shifted, widened)."""
    extent = union_extent(collections)
    if extent is None or system is None:
        return extent
    try:
        x, y = gcj02.from_wgs84(system, np.array(extent[0::2])[[0, 0, 1, 1]], np.array(extent[1::2])[[0, 1, 0, 1]])
    except gcj02.OutsideChinaError as exc:
        raise ClientError(f"crs: {exc}") from exc
    return (float(x.min()) - SHIFTED_MARGIN_DEG, float(y.min()) - SHIFTED_MARGIN_DEG,
            float(x.max()) + SHIFTED_MARGIN_DEG, float(y.max()) + SHIFTED_MARGIN_DEG)


def cache_root(settings: Settings, database_url: str) -> Path:
    """The folder of the tiles cached from one database (partition keys are numbered per database)."""
    return settings.path(settings.paths.output) / "tiles" / hashlib.sha256(database_url.encode()).hexdigest()[:12]


class TileEndpoints:
    """The tile routes; what they serve comes with each request (its view and catalog state)."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        tiles = settings.server.tiles
        self.base_url, self.working_srid, self.tiles = settings.server.base_url, settings.working_srid, tiles
        recipe = hashlib.sha256(orjson.dumps([EXTENT, BUFFER, tiles.min_area_px, tiles.cell_px, "cell-runs"])).hexdigest()[:12]
        self.cache = TileCache(cache_root(settings, database_url), recipe, int(tiles.cache_mb * 2**20))

    def routes(self) -> list[Route]:
        one, dataset = "/collections/{collection_id}/tiles", "/tiles"
        pairs: list[tuple[str, Callable[[Request], Awaitable[Response]]]] = [
            ("/tileMatrixSets", self.tile_matrix_sets), ("/tileMatrixSets/{grid}", self.tile_matrix_set)]
        for prefix in (one, dataset):
            pairs += [(prefix, self.tilesets), (f"{prefix}/{{grid}}", self.tileset),
                      (f"{prefix}/{{grid}}/{{zoom}}/{{row}}/{{col}}", self.tile)]
        return [Route(path, self._answering(handler), methods=["GET"]) for path, handler in pairs]

    @staticmethod
    def _answering(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ClientError as exc:
                return client_problem(exc)
            except Unavailable as exc:
                return problem(HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable", str(exc))
        return answer

    # -- what a request names --------------------------------------------------------------------------

    @staticmethod
    def _params(request: Request, allowed: set[str], formats: tuple[str, ...]) -> str:
        """The requested format (the first of `formats` when none); 400 for another parameter or format."""
        unknown = sorted(set(request.query_params) - allowed - {"f"})
        if unknown:
            raise ClientError(f"unknown parameter {unknown[0]!r}")
        fmt = request.query_params.get("f", formats[0])
        if fmt not in formats:
            raise ClientError(f"format {fmt!r} is not offered here ({', '.join(formats)})")
        return fmt

    @staticmethod
    def _system(request: Request, grid: Grid) -> str | None:
        """gcj02 when the request asks for tiles in GCJ-02's Web Mercator (`crs=GCJ02`), else None."""
        text = request.query_params.get("crs")
        if text is None:
            return None
        if gcj02.system_of(text) != gcj02.GCJ02 or grid.id != "WebMercatorQuad":
            raise ClientError(f"crs {text[:80]!r}: tiles are offered in their tile matrix set's CRS, or in GCJ-02 "
                              f"({gcj02.URIS[gcj02.GCJ02]}) for WebMercatorQuad (a GCJ-02 background map)")
        return gcj02.GCJ02

    @staticmethod
    def _grid(request: Request) -> Grid:
        name = request.path_params["grid"]
        if name not in GRIDS:
            raise NotFoundError(f"no tile matrix set {name!r} (offered: {', '.join(GRIDS)})")
        return GRIDS[name]

    @staticmethod
    def _collections(request: Request) -> tuple[list[Collection], bool]:
        """The collections a request's tiles carry (as the caller's grade sees them) and whether it is the dataset's:
        a collection the caller may not read is 404 exactly as an unknown one."""
        view: GradeView = request.state.view
        name = request.path_params.get("collection_id")
        if name is not None:
            collection = view.collection(name)
            if collection is None:
                raise NotFoundError(f"no collection {name!r}")
            return [collection], False
        chosen = request.query_params.get("collections")
        if chosen is None:
            return [p.collection for p in view.providers.values()], True
        names = [n.strip() for n in chosen.split(",") if n.strip()]
        if not names:
            raise ClientError("collections: name at least one collection")
        found = []
        for n in dict.fromkeys(names):
            collection = view.collection(n)
            if collection is None:
                raise NotFoundError(f"no collection {n!r}")
            found.append(collection)
        return found, True

    def _zooms(self, collection: Collection, grid: Grid) -> range:
        return range(self.tiles.min_zoom.get(collection.name, 0), min(self.tiles.max_zoom, grid.tms.maxzoom) + 1)

    def _base(self, request: Request, grid: Grid | None = None) -> str:
        name = request.path_params.get("collection_id")
        base = f"{self.base_url}/collections/{name}/tiles" if name else f"{self.base_url}/tiles"
        return f"{base}/{grid.id}" if grid else base

    @staticmethod
    def _query(request: Request) -> str:
        kept = {k: request.query_params[k] for k in ("collections", "crs") if k in request.query_params}
        return "?" + urllib.parse.urlencode(kept, safe=",:") if kept else ""

    @staticmethod
    def _json(request: Request, data: Any, tags: Any) -> Response:
        cached = not_modified(request, tags)
        return cached or with_validators(Response(orjson.dumps(data), media_type="application/json"), tags)

    def _tags(self, request: Request, collections: list[Collection], dataset: bool) -> Any:
        return validators(request, request.state.catalog, None if dataset else collections[0])

    # -- the tile matrix sets ---------------------------------------------------------------------------

    async def tile_matrix_sets(self, request: Request) -> Response:
        self._params(request, set(), ("json",))
        sets = [{"id": grid.id, "title": grid.tms.title, "crs": grid.crs.uri,
                 **({"uri": grid.tms.uri} if grid.tms.uri else {}), "links": [{"rel": "self", "type": "application/json", "title": grid.tms.title,
                            "href": f"{self.base_url}/tileMatrixSets/{grid.id}"}]} for grid in GRIDS.values()]
        return Response(orjson.dumps({"tileMatrixSets": sets}), media_type="application/json")

    async def tile_matrix_set(self, request: Request) -> Response:
        grid = self._grid(request)
        self._params(request, set(), ("json",))
        return Response(orjson.dumps(grid.definition()), media_type="application/json")

    # -- tilesets ------------------------------------------------------------------------------------------

    async def tilesets(self, request: Request) -> Response:
        collections, dataset = self._collections(request)
        self._params(request, {"collections"} if dataset else set(), ("json",))
        query = self._query(request)
        tilesets = [{"title": f"{self._title(collections, dataset)} ({grid.id})", "dataType": "vector", "crs": grid.crs.uri,
                     **({"tileMatrixSetURI": grid.tms.uri} if grid.tms.uri else {}),
                     "links": [{"rel": "self", "type": "application/json", "title": f"The tileset in {grid.id}",
                                "href": f"{self._base(request, grid)}{query}"},
                               {"rel": REL_SCHEME, "type": "application/json", "title": f"The {grid.id} tile matrix set",
                                "href": f"{self.base_url}/tileMatrixSets/{grid.id}"}]}
                    for grid in GRIDS.values()]
        links = [{"rel": "self", "type": "application/json", "title": "This document",
                  "href": f"{self._base(request)}{query}"}]
        return self._json(request, {"tilesets": tilesets, "links": links}, self._tags(request, collections, dataset))

    @staticmethod
    def _title(collections: list[Collection], dataset: bool) -> str:
        if not dataset:
            return collections[0].title
        return "geoservice dataset: " + (", ".join(c.name for c in collections) or "nothing served yet")

    async def tileset(self, request: Request) -> Response:
        grid = self._grid(request)
        collections, dataset = self._collections(request)
        fmt = self._params(request, {"collections", "crs"} if dataset else {"crs"}, ("json", "tilejson"))
        system = self._system(request, grid)
        tags = self._tags(request, collections, dataset)
        if fmt == "tilejson":
            return self._json(request, self._tilejson(request, grid, collections, dataset, system), tags)
        return self._json(request, self._metadata(request, grid, collections, dataset, system), tags)

    def _layers(self, grid: Grid, collections: list[Collection]) -> list[dict[str, Any]]:
        return [{"id": c.name, "title": c.title, "description": c.description, "dataType": "vector",
                 "geometryDimension": 2, "minTileMatrix": str(self._zooms(c, grid).start),
                 "maxTileMatrix": str(self._zooms(c, grid).stop - 1),
                 "propertiesSchema": {"type": "object", "properties": {
                     f.name: {"type": "string" if f.type == "object" else f.type} for f in c.fields}}}
                for c in collections]

    def _zoom_span(self, grid: Grid, collections: list[Collection]) -> range:
        """The zooms any of the collections has tiles at (the whole range when there is none: nothing stored yet)."""
        spans = [self._zooms(c, grid) for c in collections] or [range(0, min(self.tiles.max_zoom, grid.tms.maxzoom) + 1)]
        return range(min(s.start for s in spans), max(s.stop for s in spans))

    def _metadata(self, request: Request, grid: Grid, collections: list[Collection], dataset: bool,
                  system: str | None = None) -> dict[str, Any]:
        base, query, extent = self._base(request, grid), self._query(request), union_extent(collections)
        links = [{"rel": "self", "type": "application/json", "title": "This tileset", "href": f"{base}{query}"},
                 {"rel": "alternate", "type": "application/json", "title": "This tileset as TileJSON",
                  "href": f"{base}?{urllib.parse.urlencode({**dict(request.query_params), 'f': 'tilejson'}, safe=',')}"},
                 {"rel": REL_SCHEME, "type": "application/json", "title": f"The {grid.id} tile matrix set",
                  "href": f"{self.base_url}/tileMatrixSets/{grid.id}"},
                 {"rel": "item", "type": MVT, "title": "A tile", "templated": True, "href": f"{base}/{_TEMPLATE}{query}"}]
        if not dataset:
            links.append({"rel": "collection", "type": "application/json", "title": collections[0].title,
                          "href": f"{self.base_url}/collections/{collections[0].name}"})
        metadata: dict[str, Any] = {
            "title": self._title(collections, dataset), "dataType": "vector", "crs": grid.crs.uri,
            **({"tileMatrixSetURI": grid.tms.uri} if grid.tms.uri else {}),
            "tileMatrixSetLimits": grid.limits(_extent(collections, system), self._zoom_span(grid, collections)),
            "layers": self._layers(grid, collections), "links": links}
        if extent:
            metadata["boundingBox"] = {"lowerLeft": list(extent[:2]), "upperRight": list(extent[2:]), "crs": CRS84}
        if system is not None:
            metadata["crs"] = gcj02.URIS[system]  # the grid's Web Mercator, of GCJ-02 longitudes and latitudes
        return metadata

    def _tilejson(self, request: Request, grid: Grid, collections: list[Collection], dataset: bool,
                  system: str | None = None) -> dict[str, Any]:
        """TileJSON 3.0 (as MapLibre reads it); `tiles` in the tile matrix set's own grid, z/row/col; with `system` the
        bounds are where a GCJ-02 map draws the data."""
        zooms = self._zoom_span(grid, collections)
        extent = _extent(collections, system) or (-180.0, -85.0, 180.0, 85.0)
        document = {
            "tilejson": "3.0.0", "name": self._title(collections, dataset), "scheme": "xyz",
            "tiles": [f"{self._base(request, grid)}/{{z}}/{{y}}/{{x}}{self._query(request)}"],
            "minzoom": zooms.start, "maxzoom": zooms.stop - 1, "bounds": list(extent),
            "center": [(extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2, max(zooms.start, min(10, zooms.stop - 1))],
            "vector_layers": [{"id": c.name, "description": c.title, "minzoom": self._zooms(c, grid).start,
                               "maxzoom": self._zooms(c, grid).stop - 1,
                               "fields": {f.name: "String" if f.type in ("string", "object") else
                                          "Boolean" if f.type == "boolean" else "Number" for f in c.fields}}
                              for c in collections]}
        if system is not None:
            document["crs"] = gcj02.URIS[system]
        if grid.crs.srid != 3857:
            document["crs"] = grid.crs.uri  # not Web Mercator: a client must know the grid (tileMatrixSet)
            document["tileMatrixSet"] = f"{self.base_url}/tileMatrixSets/{grid.id}"
        return document

    # -- tiles -------------------------------------------------------------------------------------------------

    async def tile(self, request: Request) -> Response:
        grid = self._grid(request)
        zoom, row, col = (_integer(request.path_params[n], w) for n, w in (("zoom", "tileMatrix"), ("row", "tileRow"),
                                                                            ("col", "tileCol")))
        collections, dataset = self._collections(request)
        self._params(request, {"collections", "crs"} if dataset else {"crs"}, ("mvt",))
        system = self._system(request, grid)
        grid.check(zoom, row, col)
        shown = self.shown(collections, grid, zoom, row, col, system)
        if not shown:
            raise NotFoundError(f"tile {zoom}/{row}/{col} is outside the tileset's limits (see its tileMatrixSetLimits)")
        state = request.state.catalog
        if state is None:
            raise Unavailable("the database is not available")
        key = self.key(request.state.snapshot, state, request.state.view.grade, dataset, shown, grid, zoom, row, col,
                       system)
        tags = (self.cache.etag(key), None)
        cached = not_modified(request, tags)
        if cached is not None:
            return cached
        data = self.cache.get(key)
        if data is None:
            data = await run_in_threadpool(self.build, request.state.view, key, grid, shown, system)
        response = with_validators(Response(data, media_type=MVT), tags)
        response.headers["Cache-Control"] = "no-cache"  # revalidate: a new version or run is served at once
        return response

    def shown(self, collections: list[Collection], grid: Grid, zoom: int, row: int, col: int,
              system: str | None = None) -> list[Collection]:
        """The collections a tile carries: those whose zoom range holds `zoom`; none when the tile is outside the
        tileset's limits."""
        shown = [c for c in collections if zoom in self._zooms(c, grid)]
        limits = grid.limits(_extent(collections, system), range(zoom, zoom + 1))
        if not shown or not limits or not (limits[0]["minTileRow"] <= row <= limits[0]["maxTileRow"]
                                           and limits[0]["minTileCol"] <= col <= limits[0]["maxTileCol"]):
            return []
        return shown

    def key(self, snapshot: Snapshot, state: CatalogState, grade: str, dataset: bool, shown: list[Collection],
            grid: Grid, zoom: int, row: int, col: int, system: str | None = None) -> TileKey:
        """The tile's cache key (entries of sources the snapshot no longer serves are dropped first)."""
        def source(c: Collection) -> str:
            return source_of(c, state.review, state.revision_of(c.partition_key))

        self.cache.retain(frozenset(map(source, snapshot.collections)))
        return TileKey(dataset, tuple(map(source, shown)), grade, grid.id if system is None else f"{grid.id}+{system}",
                       zoom, row, col)

    def build(self, view: GradeView, key: TileKey, grid: Grid, collections: list[Collection],
              system: str | None = None) -> bytes:
        """Build a tile and keep it in the cache."""
        data = self._build(view, grid, key.zoom, key.row, key.col, collections, system)
        self.cache.put(key, data)
        return data

    def _build(self, view: GradeView, grid: Grid, zoom: int, row: int, col: int, collections: list[Collection],
               system: str | None = None) -> bytes:
        layers = [layer for layer in (tile_layer(c, grid, zoom, row, col, self.working_srid, self.tiles, system)
                                      for c in collections) if layer is not None]
        if not layers:
            return b""
        statement = tile_statement(grid, zoom, row, col, layers, self.working_srid)
        rows = view.providers[collections[0].name].fetch(statement.sql, statement.values, self.tiles.parallel_workers)
        return bytes(rows[0][0])
