"""Vector tiles of the city's base map: geoservice (cold and warm cache) against tipg and pygeoapi's MVT provider, and
the time the /map viewer takes to draw the whole city.

    .venv/bin/python -m bench.tiles --keep                          # the 1,000,000-patch city, 400 tiles (quiet machine)
    .venv/bin/python -m bench.tiles --patches 2000 --tiles 10       # a smoke run

The city is bench/city.py's (generated or reused from .geoservice/bench/city-N), ingested, integrated and detected in
the database geoservice_bench_city_N — or that database is reused when it holds a current integration run (kept by
`bench.city --keep` or `bench.tiles --keep`). Its current base-map run (the table geoservice.basemap_patch_p<run>) is
served in the same run by

- geoservice: `geoservice serve`, /collections/basemap/tiles/WebMercatorQuad/{z}/{row}/{col}, first with an empty tile
  cache (cold: every tile built by PostGIS), then again (warm: from the disk cache);
- tipg:       /collections/geoservice.basemap_patch_p<run>/tiles/WebMercatorQuad/{z}/{x}/{y}, at most 1,000,000
  features a tile (so that it leaves none out), twice (its second pass with PostgreSQL's buffers as warm as ours);
- pygeoapi:   pygeoapi 0.21's stock `MVT-postgresql` tile provider on the same table, once (it neither generalises
  nor leaves features out: its low-zoom tiles hold the whole city).

`--tiles` random WebMercatorQuad tiles, zooms 8–16 uniformly, each around a random patch of the base map, are asked one
at a time; a pass stops after `--seconds`. Printed: tiles/s, p50/p99 and bytes per tile, per zoom too, the ratios
geoservice ÷ tipg, every z10 tile covering the city (target ≤ 500 KB each), and the viewer's draw time: headless
Chromium opens /map (1400 × 860, the whole city in view) and the time from navigation to the map having drawn every
tile is taken with an empty tile cache and again with a warm one (target ≤ 2 s). Targets (issue 15): cold ≥ 2× tipg,
warm ≥ 20× tipg, p99 ≤ 100 ms cold at z14.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import morecantile
import requests
from psycopg2 import sql

from bench.city import DATABASE, WORK, city_base_map
from bench.serve import (EPSG4548, ROOT, Result, feature_provider, geoservice_server, measure, postgresql_source,
                         pygeoapi_server, tipg_server)
from geoservice import db
from geoservice.db import SCHEMA, partitions
from geoservice.db.connection import connect_url
from geoservice.serve.tiles import cache_root
from geoservice.settings import Settings, load_settings

sys.path.insert(0, str(ROOT / "tests"))
from browser import Browser  # noqa: E402  (the tests' DevTools client)

GRID = morecantile.tms.get("WebMercatorQuad")
ZOOMS = range(8, 17)
CITY_ZOOM = 10
DRAWN = ("window.viewer && viewer.map.getSource('data') && viewer.map.loaded() && viewer.map.areTilesLoaded()"
         " && !viewer.map.isMoving()")


# -- the base map ------------------------------------------------------------------------------------------------------

def random_tiles(settings: Settings, table: str, count: int, seed: int) -> list[morecantile.Tile]:
    """A z16 tile to open connections with, then up to `count` tiles at zooms 8–16 (uniformly), each around a random
    patch (a point on its surface)."""
    statement = sql.SQL(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), 4326) AS p FROM {} "
        "WHERE id IN (SELECT id FROM {} ORDER BY md5(id::text || %s) LIMIT %s)) points"
    ).format(sql.Identifier(SCHEMA, table), sql.Identifier(SCHEMA, table))
    with closing(connect_url(settings.database.url)) as connection, connection.cursor() as cursor:
        cursor.execute(statement, (str(seed), count + 1))
        points = sorted(cursor.fetchall())
    rng = random.Random(seed)
    rng.shuffle(points)
    tiles = [GRID.tile(*points[0], 16), *(GRID.tile(lon, lat, rng.choice(ZOOMS)) for lon, lat in points[1:])]
    return list(dict.fromkeys(tiles))  # each tile once: a repeat would be warm in the cold pass


def city_tiles(settings: Settings, table: str, zoom: int) -> list[morecantile.Tile]:
    """Every tile of `zoom` the base map reaches."""
    statement = sql.SQL("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_Transform(ST_SetSRID(ST_Extent(geom)::geometry, ST_SRID(min(geom))), 4326) e FROM {}) x"
                        ).format(sql.Identifier(SCHEMA, table))
    with closing(connect_url(settings.database.url)) as connection, connection.cursor() as cursor:
        cursor.execute(statement)
        west, south, east, north = cursor.fetchone()
    return list(GRID.tiles(west, south, east, north, [zoom]))


# -- the passes --------------------------------------------------------------------------------------------------------

def tile_call(template: str, tiles: list[morecantile.Tile], timeout: float, record: Pass) -> Callable[[int], int]:
    """A call fetching tile `index` from a URL template ({z}, {x}, {y}); it returns the tile's bytes and records them
    and the time by the tile's index (a tile not answered within `timeout` seconds counts that long, with no bytes)."""
    sessions = threading.local()

    def call(index: int) -> int:
        session = sessions.__dict__.setdefault("session", requests.Session())
        tile = tiles[index]
        started = time.perf_counter()
        try:
            response = session.get(template.format(z=tile.z, x=tile.x, y=tile.y), timeout=timeout)
        except requests.Timeout:
            record.timeouts += 1
            size = 0
        else:
            if response.status_code not in (200, 204):
                response.raise_for_status()
            size = len(response.content)
        record.latencies[index] = time.perf_counter() - started
        record.sizes[index] = size
        return size
    return call


class Pass:
    """One pass of one server over the tiles (the first, index 0, only opens a connection): the overall result and
    each tile's size and time."""

    def __init__(self, server: str, name: str, template: str, tiles: list[morecantile.Tile], seconds: float,
                 timeout: float = 600) -> None:
        self.server, self.name, self.tiles, self.timeout = server, name, tiles, timeout
        self.sizes: dict[int, int] = {}
        self.latencies: dict[int, float] = {}
        self.timeouts = 0
        print(f"  {server} {name} …", flush=True)
        self.result: Result = measure(tile_call(template, tiles, timeout, self), len(tiles) - 1, 1, seconds)

    @property
    def label(self) -> str:
        return self.name + (f" ({self.timeouts} not answered in {self.timeout:g} s)" if self.timeouts else "")

    def at(self, zoom: int) -> tuple[list[float], list[int]]:
        indexes = [i for i in self.latencies if i and self.tiles[i].z == zoom]
        return [self.latencies[i] for i in indexes], [self.sizes[i] for i in indexes]


def pygeoapi_tile_providers(settings: Settings, table: str) -> list[dict[str, object]]:
    """pygeoapi's stock feature provider and its `MVT-postgresql` tile provider on the same table."""
    tiles = {"type": "tile", "name": "MVT-postgresql", "id_field": "id", "geom_field": "geom", "storage_crs": EPSG4548,
             "options": {"zoom": {"min": 0, "max": 22}},
             "format": {"name": "pbf", "mimetype": "application/vnd.mapbox-vector-tile"},
             **postgresql_source(settings, table)}
    return [feature_provider(settings, table), tiles]


def end_abandoned_queries(settings: Settings) -> None:
    """End the tile queries pygeoapi left running in PostgreSQL after its clients gave up on them (they would go on
    for minutes, with parallel workers, after the benchmark)."""
    with closing(connect_url(settings.database.url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND state = 'active' AND pid <> pg_backend_pid()")


# -- the viewer --------------------------------------------------------------------------------------------------------

def draw_seconds(browser: Browser, url: str) -> float:
    """Seconds from navigating to /map until the map has drawn every tile of its first view (the whole city)."""
    browser.goto(url)
    browser.wait_for(DRAWN, timeout=600)
    return browser.evaluate("performance.now()") / 1000 - _settle_allowance(browser)


def _settle_allowance(browser: Browser) -> float:
    """The seconds between the map becoming drawn and our noticing it (wait_for polls): the time since the last tile
    arrived, from the page's own resource timings."""
    return browser.evaluate(
        "(() => { const tiles = performance.getEntriesByType('resource').filter((e) => e.name.includes('/tiles/'));"
        " const last = Math.max(0, ...tiles.map((e) => e.responseEnd)); return (performance.now() - last) / 1000; })()")


def viewer_draw_times(server_url: str, cache: Path) -> dict[str, float]:
    """The viewer's draw time with an empty tile cache and with a warm one (each in a fresh browser profile)."""
    times = {}
    for name in ("cold", "warm"):
        if name == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile, \
                Browser(Path(profile), width=1400, height=860) as browser:
            times[name] = draw_seconds(browser, f"{server_url}/map")
    return times


# -- the report --------------------------------------------------------------------------------------------------------

def _ms(values: list[float], share: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000:.1f}" if ordered else "-"


def report(passes: list[Pass], city: dict[morecantile.Tile, int], drawn: dict[str, float], args: argparse.Namespace) -> None:
    print(f"\nthe {args.patches:,}-patch city's base map; {len(passes[0].tiles) - 1} random WebMercatorQuad tiles, "
          f"zooms 8–16, one at a time (at most {args.seconds:g} s a pass)\n")
    print("| server | pass | tiles | tiles/s | p50 ms | p99 ms | bytes/tile | geoservice ÷ tipg (tiles/s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    tipg = {p.name: p for p in passes if p.server == "tipg"}
    for one in passes:
        result, other = one.result, tipg.get("second" if one.name == "warm" else "first")
        ratio = f"{result.rate / other.result.rate:.2f}×" if one.server == "geoservice" and other else ""
        print(f"| {one.server} | {one.label} | {result.requests} | {result.rate:,.1f} | {result.percentile(0.5):.1f} | "
              f"{result.percentile(0.99):.1f} | {result.features / max(result.requests, 1):,.0f} | {ratio} |")
    print("\nper zoom: p50 / p99 ms and mean KB per tile\n")
    print("| zoom | tiles | " + " | ".join(f"{p.server} {p.name}" for p in passes) + " |")
    print("|---:|---:|" + "---:|" * len(passes))
    for zoom in ZOOMS:
        cells = []
        for one in passes:
            times, sizes = one.at(zoom)
            cells.append(f"{_ms(times, 0.5)} / {_ms(times, 0.99)} ms, {statistics.fmean(sizes) / 1024:.1f} KB"
                         if sizes else "-")
        print(f"| {zoom} | {len(passes[0].at(zoom)[0])} | " + " | ".join(cells) + " |")
    print(f"\nz{CITY_ZOOM} tiles covering the city (geoservice): "
          + ", ".join(f"{t.x}/{t.y} {size / 1024:.0f} KB" for t, size in city.items())
          + f"; largest {max(city.values()) / 1024:.0f} KB (target ≤ 500 KB)")
    print("viewer: the whole city drawn in headless Chromium "
          + ", ".join(f"{name} cache {seconds:.2f} s" for name, seconds in drawn.items()) + " (target ≤ 2 s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=int, default=1_000_000, help="land-use patches of the generated city")
    parser.add_argument("--tiles", type=int, default=400, help="random tiles per pass")
    parser.add_argument("--seconds", type=float, default=600.0, help="time budget per pass")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pygeoapi-timeout", type=float, default=120.0,
                        help="seconds after which a pygeoapi tile counts as not answered")
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the city is generated (default {WORK})")
    parser.add_argument("--keep", action="store_true", help="keep the city's database (a later run reuses it)")
    args = parser.parse_args(argv)

    base = load_settings(ROOT / "config" / "geoservice.yaml")
    settings, run = city_base_map(base, args.patches, args.seed, args.work)
    table = partitions.partition_name("basemap_patch", run)
    cache = cache_root(settings, settings.database.url)
    try:
        tiles = random_tiles(settings, table, args.tiles, args.seed)
        shutil.rmtree(cache, ignore_errors=True)
        passes = []
        with tempfile.TemporaryDirectory(prefix="bench-tiles-") as folder:
            workdir = Path(folder)
            with geoservice_server(settings, workdir) as server:
                url = server.items.removesuffix("/collections/bench/items")
                template = url + "/collections/basemap/tiles/WebMercatorQuad/{z}/{y}/{x}"
                passes += [Pass("geoservice", name, template, tiles, args.seconds) for name in ("cold", "warm")]
                city = {t: len(requests.get(template.format(z=t.z, x=t.x, y=t.y), timeout=600).content)
                        for t in city_tiles(settings, table, CITY_ZOOM)}
                print("  the viewer …", flush=True)
                drawn = viewer_draw_times(url, cache)
            with tipg_server(settings, table, workdir, {"TIPG_MAX_FEATURES_PER_TILE": "1000000"}) as server:
                template = server.items.removesuffix("/items") + "/tiles/WebMercatorQuad/{z}/{x}/{y}"
                passes += [Pass("tipg", name, template, tiles, args.seconds) for name in ("first", "second")]
            with pygeoapi_server(settings, "basemap", pygeoapi_tile_providers(settings, table), workdir) as url:
                template = url + "/collections/basemap/tiles/WebMercatorQuad/{z}/{y}/{x}?f=mvt"
                passes.append(Pass("pygeoapi", "first", template, tiles, args.seconds, timeout=args.pygeoapi_timeout))
            end_abandoned_queries(settings)
        report(passes, city, drawn, args)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not args.keep:
            db.drop_database(settings.database.url, DATABASE.format(patches=args.patches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
