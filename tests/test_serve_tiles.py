"""OGC API – Tiles over HTTP: tiles decoded with mapbox-vector-tile carry the right patches with the items' properties
in both tile matrix sets, without gaps between generalised patches; grades and masks hold as in items; the cache
answers 304 without building, serves a new run at once and drops the old entries, and keeps to its size cap; a
collection's min zoom holds; bad requests are 4xx OGC bodies; GDAL reads a tile. The cache's index is also checked on
the class itself, and PostGIS's tile envelopes against the tile matrix sets'."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
import requests
import shapely
from psycopg2 import sql
from shapely.geometry import shape

from conftest import demo_database
from geoservice.basemap import integrate
from geoservice.db import transaction
from geoservice.serve.spatial import transform
from geoservice.serve.live import LiveCatalog
from geoservice.serve.tile_cache import TileCache, TileKey
from geoservice.serve.tile_seed import seed_tiles
from geoservice.serve.tile_sql import AFFINE_TOLERANCE, EXTENT, straight_sql, tile_affine
from geoservice.serve.tiles import MVT, TileEndpoints, cache_root
from geoservice.serve.tms import GRIDS
from geoservice.serve.viewer import shown_at_start
from geoservice.settings import Settings
from servers import ROOT, Server, bearer, running_server
from sql_helpers import active, query

GRID_IDS = list(GRIDS)
ZOOM = 14
PUBLIC = {"districts", "basemap"}


@pytest.fixture(scope="module")
def served_tiles(served: Server) -> Iterator[Server]:
    """The session's server; the tiles this module makes it cache are removed afterwards."""
    yield served
    shutil.rmtree(cache_root(served.settings, served.settings.database.url), ignore_errors=True)


def _inside(settings: Settings, table: str, where: str = "true") -> tuple[int, float, float]:
    """The id of the largest feature of `table` (a subquery) and a point well inside it (CRS84)."""
    return query(settings, "SELECT id, ST_X(p), ST_Y(p) FROM (SELECT id, ST_Transform((ST_MaximumInscribedCircle(geom))"
                           f".center, 4326) p FROM {table} t WHERE {where} ORDER BY area_m2 DESC LIMIT 1) q")[0]


def _tile_of(grid_id: str, lon: float, lat: float, zoom: int = ZOOM) -> morecantile.Tile:
    return GRIDS[grid_id].tms.tile(lon, lat, zoom)


def _path(prefix: str, grid_id: str, tile: morecantile.Tile) -> str:
    return f"{prefix}/tiles/{grid_id}/{tile.z}/{tile.y}/{tile.x}"


def _decoded(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"] == MVT
    return mapbox_vector_tile.decode(response.content)


def _feature_at(layer: dict, grid_id: str, tile: morecantile.Tile, lon: float, lat: float) -> dict:
    """The feature of a decoded layer whose polygon holds the point (in the tile's 4096 grid, y up)."""
    grid = GRIDS[grid_id]
    point = transform(shapely.Point(lon, lat), 4326, grid.srid)
    xmin, ymin, xmax, ymax = grid.bounds(tile.z, tile.y, tile.x)
    at = shapely.Point((point.x - xmin) / (xmax - xmin) * layer["extent"], (point.y - ymin) / (ymax - ymin) * layer["extent"])
    holding = [f for f in layer["features"] if shape(f["geometry"]).buffer(1).contains(at)]
    assert len(holding) >= 1, "no feature of the tile holds the point"
    return holding[0]


def _same_properties(tile: dict, item: dict) -> None:
    expected = {k: v for k, v in item.items() if v is not None}
    assert set(tile) == set(expected)
    for name, value in expected.items():
        assert tile[name] == pytest.approx(value) if isinstance(value, float) else tile[name] == value, name


@pytest.mark.parametrize("grid_id", GRID_IDS)
def test_a_known_patch_is_in_its_tile_with_the_items_properties(served_tiles: Server, grid_id: str) -> None:
    patch, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch",
                              "run_id = (SELECT id FROM geoservice.integration_run WHERE is_current)")
    tile = _tile_of(grid_id, lon, lat)
    layers = _decoded(served_tiles.get(_path("/collections/basemap", grid_id, tile), as_=None))
    assert set(layers) == {"basemap"}
    found = _feature_at(layers["basemap"], grid_id, tile, lon, lat)
    lookup = served_tiles.get("/lookup", as_=None, x=lon, y=lat).json()["patch"]
    assert found["id"] == patch == lookup["id"]
    assert (found["properties"]["land_code"], found["properties"]["plan_code"]) == \
        (lookup["land_use"]["code"], lookup["urban_plan"]["code"])
    item = served_tiles.get(f"/collections/basemap/items/{patch}", as_=None).json()
    _same_properties(found["properties"], item["properties"])


@pytest.mark.parametrize("grid_id", GRID_IDS)
def test_a_tile_holds_the_items_of_its_area(served_tiles: Server, grid_id: str) -> None:
    """Every patch the items find inside the tile is in it (but the smallest, left out at this zoom), and nothing from
    beyond the tile and its buffer."""
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch", "area_m2 < 20000")  # in the dense city
    tile = _tile_of(grid_id, lon, lat, 12)
    layer = _decoded(served_tiles.get(_path("/collections/basemap", grid_id, tile), as_=None))["basemap"]
    ids = {f["id"] for f in layer["features"]}
    west, south, east, north = GRIDS[grid_id].tms.bounds(tile)
    margin = (east - west) * 0.02

    def items(grow: float) -> dict[int, float]:
        box = ",".join(str(v) for v in (west - grow, south - grow, east + grow, north + grow))
        page = served_tiles.get("/collections/basemap/items", as_=None, bbox=box, limit=10000, skipGeometry="true").json()
        return {f["id"]: f["properties"]["area_m2"] for f in page["features"]}

    assert {i for i, area in items(-margin).items() if area > 1000} <= ids
    assert ids <= set(items(2 * margin)) and len(ids) > 10


@pytest.mark.parametrize("zoom", [11, 14, 16])
def test_generalised_patches_leave_no_gaps(served_tiles: Server, zoom: int) -> None:
    """The base map's patches drawn in a tile cover what the stored patches cover there: snapping and quantising keep
    neighbours' common edges (a gap would be area lost), only patches below the zoom's smallest area go; from z14 the
    patches are carried by the tile's affine map, and cover what PostGIS's exact transformation covers."""
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch", "area_m2 < 20000")
    tile = _tile_of("WebMercatorQuad", lon, lat, zoom)
    layer = _decoded(served_tiles.get(_path("/collections/basemap", "WebMercatorQuad", tile), as_=None))["basemap"]
    drawn = shapely.union_all(shapely.make_valid([shape(f["geometry"]) for f in layer["features"]]))
    drawn_share = shapely.area(shapely.intersection(drawn, shapely.box(0, 0, 4096, 4096))) / 4096 ** 2
    stored_share, dropped_share = query(
        served_tiles.settings,
        "SELECT ST_Area(ST_Intersection(ST_Union(ST_Transform(geom, 3857)), e)) / ST_Area(e), "
        "coalesce(sum(ST_Area(ST_Intersection(ST_Transform(geom, 3857), e))) FILTER (WHERE NOT (id = ANY(%s))), 0) "
        "/ ST_Area(e) FROM geoservice.basemap_patch, ST_TileEnvelope(%s, %s, %s) e WHERE run_id = (SELECT id FROM "
        "geoservice.integration_run WHERE is_current) AND ST_Intersects(ST_Transform(geom, 3857), e) GROUP BY e",
        [f["id"] for f in layer["features"]], tile.z, tile.x, tile.y)[0]
    assert drawn_share == pytest.approx(stored_share - dropped_share, abs=2e-4)
    assert drawn_share > 0.5


@pytest.mark.parametrize("grid_id", GRID_IDS)
def test_the_affine_map_of_a_tile_stays_within_half_a_unit_of_proj(grid_id: str) -> None:
    """Around a z14 or z16 tile of the city the fitted affine map is within AFFINE_TOLERANCE of an MVT unit of PROJ
    at random points of its box (not only where it was fitted); at z8 it is not, and none is offered."""
    grid, rng = GRIDS[grid_id], np.random.default_rng(7)
    for zoom in (14, 16):
        tile = _tile_of(grid_id, 118.1, 24.5, zoom)
        near = tile_affine(grid_id, zoom, tile.y, tile.x, 4548)
        assert near is not None
        x0, y0, x1, y1 = near.box
        points = np.column_stack([rng.uniform(x0, x1, 500), rng.uniform(y0, y1, 500)])
        a, b, d, e, xoff, yoff = near.matrix
        mapped = np.column_stack([a * points[:, 0] + b * points[:, 1] + xoff, d * points[:, 0] + e * points[:, 1] + yoff])
        exact = shapely.get_coordinates(transform(shapely.points(points), 4548, grid.srid))
        xmin, _, xmax, _ = grid.bounds(zoom, tile.y, tile.x)
        assert np.abs(mapped - exact).max() <= AFFINE_TOLERANCE * (xmax - xmin) / EXTENT
    low = _tile_of(grid_id, 118.1, 24.5, 8)
    assert tile_affine(grid_id, 8, low.y, low.x, 4548) is None


@pytest.mark.parametrize("grid_id", GRID_IDS)
def test_a_dense_base_map_is_drawn_as_cells_with_the_codes_lookup_gives(served_tiles: Server, grid_id: str) -> None:
    """At a zoom where the patches average less than a cell (server.tiles.cell_px), the base map's tile is rows of
    cells without ids, each with the codes of the patch under the cell's centre; above it, the patches themselves."""
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch", "area_m2 < 20000")
    grid, cell_px = GRIDS[grid_id], served_tiles.settings.server.tiles.cell_px

    def layer(zoom: int) -> tuple[morecantile.Tile, dict]:
        tile = _tile_of(grid_id, lon, lat, zoom)
        return tile, _decoded(served_tiles.get(_path("/collections/basemap", grid_id, tile), as_=None))["basemap"]

    zoom = next(z for z in range(ZOOM, 0, -1) if not any(f.get("id") for f in layer(z)[1]["features"]))  # no id: 0
    assert 4 <= zoom < ZOOM
    assert all(f.get("id") for f in layer(zoom + 1)[1]["features"])
    tile, cells = layer(zoom)
    assert {key for f in cells["features"] for key in f["properties"]} <= {"land_code", "plan_code", "district_code"}
    xmin, ymin, xmax, ymax = grid.bounds(tile.z, tile.y, tile.x)
    step = (xmax - xmin) / (grid.tms.matrix(zoom).tileWidth // cell_px)
    point = transform(shapely.Point(lon, lat), 4326, grid.srid)
    centre = shapely.Point(xmin + (int((point.x - xmin) / step) + 0.5) * step, ymax - (int((ymax - point.y) / step) + 0.5) * step)
    centre = transform(centre, grid.srid, 4326)
    found = _feature_at(cells, grid_id, tile, centre.x, centre.y)["properties"]
    lookup = served_tiles.get("/lookup", as_=None, x=centre.x, y=centre.y).json()["patch"]
    assert (found.get("land_code"), found.get("plan_code")) == (lookup["land_use"]["code"], lookup["urban_plan"]["code"])


@pytest.mark.parametrize("grid_id", GRID_IDS)
def test_masked_attributes_are_masked_in_tiles_as_in_items(served_tiles: Server, grid_id: str) -> None:
    project, lon, lat = _inside(served_tiles.settings, active("projects"))
    tile = _tile_of(grid_id, lon, lat)
    for caller in ("viewer", "tester"):
        layer = _decoded(served_tiles.get(_path("/collections/projects", grid_id, tile), as_=caller))["projects"]
        found = _feature_at(layer, grid_id, tile, lon, lat)
        assert found["id"] == project
        item = served_tiles.get(f"/collections/projects/items/{project}", as_=caller).json()["properties"]
        _same_properties(found["properties"], item)
    raw = query(served_tiles.settings, f"SELECT attributes ->> 'SFZH' FROM {active('projects')} a WHERE id = %s",
                project)[0][0]
    dataset = _decoded(served_tiles.get(_path("", grid_id, tile), as_="viewer"))
    assert _feature_at(dataset["projects"], grid_id, tile, lon, lat)["properties"]["SFZH"] != raw


def _tile_paths(name: str) -> list[str]:
    return [f"/collections/{name}/tiles", f"/collections/{name}/tiles/WebMercatorQuad",
            f"/collections/{name}/tiles/WorldCRS84Quad?f=tilejson", f"/collections/{name}/tiles/WebMercatorQuad/14/7040/13565",
            f"/tiles/WebMercatorQuad/14/7040/13565?collections={name}", f"/tiles?collections={name}",
            f"/tiles/WorldCRS84Quad?collections={name}"]


def test_hidden_collections_are_404_like_unknown_ones_in_every_tile_endpoint(served_tiles: Server) -> None:
    for hidden_path, unknown_path in zip(_tile_paths("landuse"), _tile_paths("no_such_layer")):
        hidden = requests.get(f"{served_tiles.url}{hidden_path}", timeout=60)
        unknown = requests.get(f"{served_tiles.url}{unknown_path}", timeout=60)
        assert hidden.status_code == unknown.status_code == 404, hidden_path
        assert hidden.text.replace("landuse", "X") == unknown.text.replace("no_such_layer", "X"), hidden_path
        seen = requests.get(f"{served_tiles.url}{hidden_path}", headers=bearer("viewer"), timeout=60)
        assert seen.status_code in (200, 404) and (seen.status_code == 200 or "outside" in seen.text), hidden_path
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch")
    tile = _tile_of("WebMercatorQuad", lon, lat, 10)
    assert set(_decoded(served_tiles.get(_path("", "WebMercatorQuad", tile), as_=None))) <= PUBLIC
    viewer = _decoded(served_tiles.get(_path("", "WebMercatorQuad", tile), as_="viewer"))
    assert {"basemap", "landuse", "conflicts"} <= set(viewer)
    layers = {layer["id"] for layer in served_tiles.get("/tiles/WebMercatorQuad", as_=None).json()["layers"]}
    assert layers == PUBLIC
    text = served_tiles.get("/tiles/WebMercatorQuad", as_=None, f="tilejson").text
    assert "landuse" not in text and "conflicts" not in text


def test_metadata_links_and_conformance(served_tiles: Server) -> None:
    sets = {s["id"]: s for s in served_tiles.get("/tileMatrixSets").json()["tileMatrixSets"]}
    assert set(sets) == {"WebMercatorQuad", "WorldCRS84Quad"}
    cgcs = served_tiles.get("/tileMatrixSets/WorldCRS84Quad").json()
    assert cgcs["crs"] == "http://www.opengis.net/def/crs/EPSG/0/4490" and cgcs["orderedAxes"] == ["Lat", "Lon"]
    assert morecantile.TileMatrixSet.model_validate(cgcs).matrix(0).matrixWidth == 2
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch")
    for grid_id in GRID_IDS:
        tileset = served_tiles.get(f"/collections/basemap/tiles/{grid_id}", as_=None).json()
        tile = _tile_of(grid_id, lon, lat)
        limit = next(l for l in tileset["tileMatrixSetLimits"] if l["tileMatrix"] == str(ZOOM))
        assert limit["minTileRow"] <= tile.y <= limit["maxTileRow"] and limit["minTileCol"] <= tile.x <= limit["maxTileCol"]
        assert tileset["crs"] == GRIDS[grid_id].crs.uri and tileset["layers"][0]["id"] == "basemap"
        template = next(l["href"] for l in tileset["links"] if l["rel"] == "item")
        url = template.format(tileMatrix=tile.z, tileRow=tile.y, tileCol=tile.x)
        assert mapbox_vector_tile.decode(requests.get(url, timeout=60).content)["basemap"]["features"]
        tilejson = served_tiles.get(f"/collections/basemap/tiles/{grid_id}", as_=None, f="tilejson").json()
        assert tilejson["vector_layers"][0]["id"] == "basemap" and "{z}/{y}/{x}" in tilejson["tiles"][0]
    assert any(l["href"].endswith("/tiles") for l in served_tiles.get("/", as_=None, f="json").json()["links"])
    assert any(l["href"].endswith("/collections/basemap/tiles")
               for l in served_tiles.get("/collections/basemap", as_=None, f="json").json()["links"])
    conforms = served_tiles.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/dataset-tilesets" in conforms
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in conforms


@pytest.mark.parametrize(("path", "status"), [
    ("/collections/basemap/tiles/WebMercatorQuad/14/7040/x", 400),
    ("/collections/basemap/tiles/WebMercatorQuad/-1/0/0", 400),
    ("/collections/basemap/tiles/WebMercatorQuad/99999999999/0/0", 400),
    ("/collections/basemap/tiles/WebMercatorQuad/30/0/0", 404),
    ("/collections/basemap/tiles/WebMercatorQuad/14/16384/0", 404),
    ("/collections/basemap/tiles/WorldCRS84Quad/0/1/0", 404),
    ("/collections/basemap/tiles/WebMercatorQuad/14/0/0", 404),           # outside the data's limits
    ("/collections/basemap/tiles/NoSuchGrid/1/0/0", 404),
    ("/collections/basemap/tiles/NoSuchGrid", 404),
    ("/tileMatrixSets/NoSuchGrid", 404),
    ("/collections/basemap/tiles/WebMercatorQuad/14/7040/13565?f=png", 400),
    ("/collections/basemap/tiles/WebMercatorQuad/14/7040/13565?bbox=1,2,3,4", 400),
    ("/collections/basemap/tiles/WebMercatorQuad?f=html", 400),
    ("/tiles/WebMercatorQuad/14/7040/13565?collections=", 400),
])
def test_bad_tile_requests_are_4xx_ogc_bodies(served_tiles: Server, path: str, status: int) -> None:
    response = requests.get(f"{served_tiles.url}{path}", timeout=60)
    assert response.status_code == status, response.text[:300]
    assert set(response.json()) == {"code", "type", "description"}


def test_seeded_tiles_are_served_from_the_cache_as_built(served_tiles: Server) -> None:
    """`tiles seed` builds the dataset tiles the viewer starts with into the running server's cache; the server answers
    them from there without building them again, and a second seeding finds them all."""
    settings = served_tiles.settings
    summary = seed_tiles(settings, range(9, 11), "public")
    assert summary.built + summary.cached > 0 and summary.bytes >= 0
    again = seed_tiles(settings, range(9, 11), "public")
    assert again.built == 0 and again.cached == summary.built + summary.cached
    snapshot, state = LiveCatalog(settings, settings.database.url).current()
    view, grid = snapshot.views["public"], GRIDS["WebMercatorQuad"]
    names = shown_at_start(view)
    endpoints = TileEndpoints(settings, settings.database.url)
    _, lon, lat = _inside(settings, "geoservice.basemap_patch", "area_m2 < 20000")
    tile = _tile_of("WebMercatorQuad", lon, lat, 10)
    key = endpoints.key(snapshot, state, "public", True, [view.collection(n) for n in names], grid, 10, tile.y, tile.x)
    path = endpoints.cache.folder / key.path
    written = path.stat().st_mtime_ns
    response = served_tiles.get(f"/tiles/WebMercatorQuad/10/{tile.y}/{tile.x}", as_=None, collections=",".join(names))
    assert response.status_code == 200 and response.content == path.read_bytes()
    assert path.stat().st_mtime_ns == written  # taken from the cache, not built and written again


def test_etag_answers_304_without_a_body(served_tiles: Server) -> None:
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch")
    tile = _tile_of("WorldCRS84Quad", lon, lat, 12)
    path = _path("", "WorldCRS84Quad", tile)
    first = served_tiles.get(path, as_="viewer")
    assert first.status_code == 200 and first.headers["ETag"]
    root = cache_root(served_tiles.settings, served_tiles.settings.database.url)
    kept = [p for p in root.rglob(f"internal/WorldCRS84Quad/{tile.z}/{tile.y}/{tile.x}.mvt") if "/d~" in p.as_posix()]
    assert len(kept) == 1
    kept[0].unlink()
    again = requests.get(f"{served_tiles.url}{path}", timeout=60,
                         headers={**bearer("viewer"), "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and not again.content and again.headers["ETag"] == first.headers["ETag"]
    assert not kept[0].exists()  # answered from the key alone: nothing read, nothing built
    public = requests.get(f"{served_tiles.url}{path}", timeout=60, headers={"If-None-Match": first.headers["ETag"]})
    assert public.status_code == 200 and public.headers["ETag"] != first.headers["ETag"]  # another grade, other masks
    assert served_tiles.get(path, as_="viewer").content == first.content  # from the cache


@pytest.fixture(scope="module")
def changing(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server over a demo database of its own (the test integrates again)."""
    with demo_database(base_settings, f"geoservice_tiles_{os.getpid()}") as scratch:
        with running_server(scratch, tmp_path_factory.mktemp("tiles") / "serve.log", {}) as server:
            yield server
        shutil.rmtree(cache_root(scratch, scratch.database.url), ignore_errors=True)


@pytest.mark.http  # a server of its own
def test_a_new_run_is_served_at_once_and_old_entries_are_dropped(changing: Server) -> None:
    settings = changing.settings
    _, lon, lat = _inside(settings, "geoservice.basemap_patch")
    path = _path("/collections/basemap", "WebMercatorQuad", _tile_of("WebMercatorQuad", lon, lat))
    dataset = _path("", "WebMercatorQuad", _tile_of("WebMercatorQuad", lon, lat))
    before = changing.get(path)
    changing.get(dataset)
    folders = {p.parent.name for p in cache_root(settings, settings.database.url).rglob("SOURCES")}
    assert any(f.startswith("c~basemap.1-") for f in folders) and any(f.startswith("d~") for f in folders)
    integrate(settings)
    run = query(settings, "SELECT id FROM geoservice.integration_run WHERE is_current")[0][0]
    after = requests.get(f"{changing.url}{path}", headers={**bearer("tester"), "If-None-Match": before.headers["ETag"]},
                         timeout=60)
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    ids = {f["id"] for f in mapbox_vector_tile.decode(after.content)["basemap"]["features"]}
    runs = query(settings, "SELECT DISTINCT run_id FROM geoservice.basemap_patch WHERE id = ANY(%s)", list(ids))
    assert runs == [(run,)]
    folders = {p.parent.name for p in cache_root(settings, settings.database.url).rglob("SOURCES")}
    assert len(folders) == 1 and folders.pop().startswith(f"c~basemap.{run}-")  # the old run's tiles and the dataset's
    # built from it are gone


def _key(number: int) -> TileKey:
    return TileKey(False, ("basemap.1",), "public", "WebMercatorQuad", 14, 0, number)


def test_the_size_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    cache = TileCache(tmp_path, "recipe", 1000)
    cache.retain(frozenset({"basemap.1", "landuse.2"}))
    for number in range(3):
        cache.put(_key(number), bytes(300))
    assert cache.get(_key(0)) == bytes(300)  # now the most recently used
    cache.put(_key(3), bytes(300))
    assert cache.size <= 1000 and cache.get(_key(1)) is None and cache.get(_key(0)) is not None
    assert not (tmp_path / "recipe" / _key(1).path).exists()
    reopened = TileCache(tmp_path, "recipe", 700)  # a restart finds the entries on disk, the cap applies
    assert reopened.size == 600 and reopened.get(_key(3)) == bytes(300)
    dataset = TileKey(True, ("basemap.1", "landuse.2"), "internal", "WorldCRS84Quad", 3, 1, 6)
    reopened.retain(frozenset({"basemap.1", "landuse.2"}))
    reopened.put(dataset, b"x")
    reopened.retain(frozenset({"basemap.1", "landuse.3"}))  # a new landuse version: the dataset entry goes
    assert reopened.get(dataset) is None and reopened.get(_key(3)) is not None
    assert not (tmp_path / "recipe" / dataset.folder).exists()
    TileCache(tmp_path, "other-recipe", 700)
    assert not (tmp_path / "recipe").exists()


def test_gdal_reads_a_tile(served_tiles: Server) -> None:
    """GDAL's MVT driver over HTTP (`?f=mvt`: without an extension or query GDAL 3.6 takes the URL for a folder of tiles;
    its OGCAPI driver reads TMS 1.0 definitions only, so it cannot follow the tilesets)."""
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch")
    tile = _tile_of("WebMercatorQuad", lon, lat)
    url = f"{served_tiles.url}{_path('/collections/basemap', 'WebMercatorQuad', tile)}"
    ogrinfo = shutil.which("ogrinfo")
    assert ogrinfo, "ogrinfo is missing: install gdal-bin (scripts/system-packages.sh)"
    result = subprocess.run([ogrinfo, "-ro", "-so", "-oo", f"X={tile.x}", "-oo", f"Y={tile.y}", "-oo", f"Z={tile.z}",
                             f"MVT:/vsicurl/{url}?f=mvt", "basemap"],
                            capture_output=True, text=True, timeout=120, check=False)
    count = len(mapbox_vector_tile.decode(requests.get(url, timeout=60).content)["basemap"]["features"])
    assert result.returncode == 0, result.stderr
    assert f"Feature Count: {count}" in result.stdout and "land_code" in result.stdout


@pytest.mark.parametrize("grid_id", GRID_IDS)
def test_postgis_tile_envelopes_are_the_tile_matrix_sets_tiles(settings: Settings, grid_id: str) -> None:
    grid = GRIDS[grid_id]
    offset, square = grid.envelope_square
    for zoom, row, col in ((0, 0, 0), (1, 1, 1), (10, 372, 695), (17, 40000, 70000)):
        got = query(settings, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ST_TileEnvelope(%s, %s, %s, "
                              "ST_MakeEnvelope(%s, %s, %s, %s, %s)) e", zoom + offset, col, row, *square, grid.srid)[0]
        assert got == pytest.approx(grid.bounds(zoom, row, col), abs=1e-9 * (square[2] - square[0]))


def test_a_cache_that_cannot_write_still_serves(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the cache's folder would be")
    cache = TileCache(tmp_path / "blocked", "recipe", 1000)
    cache.retain(frozenset({"basemap.1"}))
    cache.put(_key(1), b"tile")
    assert cache.get(_key(1)) is None and cache.size == 0


@pytest.fixture(scope="module")
def tuned(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A server over the session's demo database with tile settings of its own: the base map from zoom 12, a cache
    of 10 KB in a folder of its own, the properties of filled collections averaging less than 64-pixel squares slimmed."""
    folder = tmp_path_factory.mktemp("tuned")
    output = folder / "output"
    (folder / "config").mkdir()
    (folder / "config" / "geoservice.yaml").write_text(
        f"paths: {{layers: {ROOT / 'layers'}, rules: {ROOT / 'config' / 'rules.yaml'}, "
        f"classification: {ROOT / 'config' / 'classification'}, output: {output}}}\n"
        "server:\n  tiles: {min_zoom: {basemap: 12}, cache_mb: 0.01, detail_px: 64}\n", encoding="utf-8")
    env = {"GEOSERVICE_CONFIG": str(folder / "config" / "geoservice.yaml")}
    with running_server(demo_settings, folder / "serve.log", {}, env) as server:
        yield server, output / "tiles"


@pytest.mark.http  # a server of its own
def test_min_zoom_and_the_cache_cap_over_http(tuned: tuple[Server, Path]) -> None:
    server, cache = tuned
    _, lon, lat = _inside(server.settings, "geoservice.basemap_patch", "area_m2 < 20000")
    low, high = _tile_of("WebMercatorQuad", lon, lat, 11), _tile_of("WebMercatorQuad", lon, lat, 12)
    assert server.get(_path("/collections/basemap", "WebMercatorQuad", low), as_=None).status_code == 404
    assert set(_decoded(server.get(_path("", "WebMercatorQuad", low), as_=None))) == {"districts"}
    assert set(_decoded(server.get(_path("", "WebMercatorQuad", high), as_=None))) == {"districts", "basemap"}
    tileset = server.get("/collections/basemap/tiles/WebMercatorQuad", as_=None).json()
    assert tileset["layers"][0]["minTileMatrix"] == "12" and tileset["tileMatrixSetLimits"][0]["tileMatrix"] == "12"
    assert server.get("/tiles/WebMercatorQuad", as_=None, f="tilejson").json()["minzoom"] == 0
    cap, served = 0.01 * 2**20, []
    for zoom in range(13, 17):
        centre = _tile_of("WebMercatorQuad", lon, lat, zoom)
        for row, col in itertools.product(range(centre.y - 1, centre.y + 2), range(centre.x - 1, centre.x + 2)):
            tile = morecantile.Tile(col, row, zoom)
            served.append(len(server.get(_path("/collections/basemap", "WebMercatorQuad", tile), as_=None).content))
    assert sum(size for size in served if size <= cap) > cap  # more than the cache holds
    assert 0 < sum(p.stat().st_size for p in cache.rglob("*.mvt")) <= cap


@pytest.mark.http  # a server of its own
def test_a_dense_collection_carries_its_id_and_what_it_is_drawn_by(tuned: tuple[Server, Path]) -> None:
    """Where the base map's patches average less than squares of `detail_px` (64) pixels — at z14 on the demo — its
    tile carries each patch's id and class codes only; at z20 every property, as the items."""
    server, _ = tuned
    patch, lon, lat = _inside(server.settings, "geoservice.basemap_patch",
                              "run_id = (SELECT id FROM geoservice.integration_run WHERE is_current)")
    dense = _decoded(server.get(_path("/collections/basemap", "WebMercatorQuad", _tile_of("WebMercatorQuad", lon, lat)),
                                as_=None))["basemap"]
    assert all(f.get("id") for f in dense["features"])
    assert {key for f in dense["features"] for key in f["properties"]} == {"land_code", "plan_code", "district_code"}
    close = _tile_of("WebMercatorQuad", lon, lat, 20)
    found = _feature_at(_decoded(server.get(_path("/collections/basemap", "WebMercatorQuad", close), as_=None))["basemap"],
                        "WebMercatorQuad", close, lon, lat)
    assert found["id"] == patch
    _same_properties(found["properties"], server.get(f"/collections/basemap/items/{patch}", as_=None).json()["properties"])


def test_patches_inside_a_tile_are_wound_as_the_clipped_ones(served_tiles: Server) -> None:
    """Inside a tile the patches go straight into the MVT grid (snapped, not clipped by ST_AsMVTGeom): decoded, their
    shells are wound as those of the patches ST_AsMVTGeom clips at the tile's edge."""
    _, lon, lat = _inside(served_tiles.settings, "geoservice.basemap_patch", "area_m2 < 20000")
    tile = _tile_of("WebMercatorQuad", lon, lat, 12)
    layer = _decoded(served_tiles.get(_path("/collections/basemap", "WebMercatorQuad", tile), as_=None))["basemap"]
    polygons = [p for f in layer["features"] for p in shapely.get_parts(shape(f["geometry"]))]
    clipped = [p for p in polygons if min(p.bounds[:2]) < 0 or max(p.bounds[2:]) > EXTENT]
    inside = [p for p in polygons if 0 <= min(p.bounds[:2]) and max(p.bounds[2:]) <= EXTENT]
    assert len(clipped) > 10 and len(inside) > 10
    assert {p.exterior.is_ccw for p in clipped} == {p.exterior.is_ccw for p in inside} == {False}


@pytest.mark.parametrize("zoom", [14, 17])
def test_a_holed_patch_goes_straight_into_the_grid_as_st_asmvtgeom_puts_it(settings: Settings, zoom: int) -> None:
    """A patch with a hole, inside the tile: carried straight into the grid it is the polygon ST_AsMVTGeom makes of it
    (a vertex may round to the next unit: the tile's affine map is off from PROJ by up to half a unit), shell and hole
    wound as it winds them."""
    grid = GRIDS["WebMercatorQuad"]
    tile = grid.tms.tile(118.1, 24.48, zoom)
    near = tile_affine(grid.id, zoom, tile.y, tile.x, settings.working_srid)
    assert near is not None
    xmin, ymin, xmax, ymax = near.inside
    cx, cy, r = (xmin + xmax) / 2, (ymin + ymax) / 2, (xmax - xmin) / 4
    holed = shapely.Point(cx, cy).buffer(r).difference(shapely.box(cx - r / 3, cy - r / 3, cx + r / 3, cy + r / 3))
    statement = sql.SQL(
        "SELECT ST_HausdorffDistance(s, c) <= 1, ST_IsPolygonCCW(s), ST_IsPolygonCCW(c), ST_NRings(s) FROM (SELECT "
        "ST_SetSRID({straight}, 3857) s, ST_AsMVTGeom(ST_Transform(geom, 3857), ST_TileEnvelope(%s, %s, %s), 4096, 64, "
        "true) c FROM (SELECT ST_GeomFromText(%s, %s) geom) g) q").format(straight=straight_sql(near))
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(statement, (zoom, tile.x, tile.y, holed.wkt, settings.working_srid))
        assert cur.fetchone() == (True, True, True, 2)
