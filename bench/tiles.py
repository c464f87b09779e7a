"""Vector-tile benchmark: geoservice's tiles (cold and warm cache) against tipg's on the same table.

    .venv/bin/python -m bench.tiles                                   # 100,000 polygons, 400 tiles (a quiet machine)
    .venv/bin/python -m bench.tiles --polygons 500 --tiles 10         # a smoke run

One generated table — `--polygons` Voronoi cells over 40 km × 40 km in EPSG:4548, stored as the public geoservice
layer `bench` (bench/serve.py's, in a scratch database `geoservice_bench_tiles`) — is served in the same run by
`geoservice serve` (/collections/bench/tiles/WebMercatorQuad/{z}/{row}/{col}) and by tipg
(/collections/geoservice.feature_p<id>/tiles/WebMercatorQuad/{z}/{x}/{y}, at most 1,000,000 features a tile, so that
both answer every feature). `--tiles` random WebMercatorQuad tiles over the data's extent, zooms 8–16 uniformly, are
asked one at a time: geoservice with an empty cache (cold: every tile built by PostGIS) and again (warm: from the
disk cache), tipg twice (its second pass with PostgreSQL's buffers as warm as ours). Prints tiles/s, p50/p99 and bytes
per tile, per zoom too, and the ratios geoservice ÷ tipg. The scratch database is dropped at the end (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import morecantile
import requests
from pyproj import Transformer

from bench.coverages import EXTENT_4548
from bench.serve import ROOT, Result, create_bench_layer, geoservice_server, measure, tipg_server
from geoservice import db
from geoservice.serve.tiles import cache_root
from geoservice.settings import load_settings

DATABASE = "geoservice_bench_tiles"
GRID = morecantile.tms.get("WebMercatorQuad")
ZOOMS = range(8, 17)


def random_tiles(count: int, seed: int) -> list[morecantile.Tile]:
    """Up to `count` tiles at zooms 8–16 (uniformly), each holding a random point of the data's extent."""
    to_crs84 = Transformer.from_crs(4548, 4326, always_xy=True)
    xmin, ymin, xmax, ymax = EXTENT_4548
    rng = random.Random(seed)
    tiles = []
    for _ in range(count):
        lon, lat = to_crs84.transform(rng.uniform(xmin, xmax), rng.uniform(ymin, ymax))
        tiles.append(GRID.tile(lon, lat, rng.choice(ZOOMS)))
    return list(dict.fromkeys(tiles))  # each tile once: a repeat would be warm in the cold pass


def tile_call(template: str, tiles: list[morecantile.Tile], sizes: dict[int, int],
              latencies: dict[int, list[float]]) -> Callable[[int], int]:
    """A call fetching tile `index` from a URL template ({z}, {x}, {y}); it returns the tile's bytes and records them
    and the time by the tile's index."""
    sessions = threading.local()

    def call(index: int) -> int:
        session = sessions.__dict__.setdefault("session", requests.Session())
        tile = tiles[index]
        started = time.perf_counter()
        response = session.get(template.format(z=tile.z, x=tile.x, y=tile.y), timeout=300)
        response.raise_for_status()
        latencies.setdefault(index, []).append(time.perf_counter() - started)
        sizes[index] = len(response.content)
        return len(response.content)
    return call


class Pass:
    """One pass of one server over the tiles: the overall result and each tile's size and time."""

    def __init__(self, server: str, name: str, template: str, tiles: list[morecantile.Tile], seconds: float) -> None:
        self.server, self.name, self.tiles = server, name, tiles
        self.sizes: dict[int, int] = {}
        self.latencies: dict[int, list[float]] = {}
        self.result: Result = measure(tile_call(template, tiles, self.sizes, self.latencies), len(tiles) - 1, 1, seconds)

    def at(self, zoom: int) -> tuple[list[float], list[int]]:
        indexes = [i for i in self.latencies if i and self.tiles[i].z == zoom]
        return [self.latencies[i][-1] for i in indexes], [self.sizes[i] for i in indexes]


def _ms(values: list[float], share: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000:.1f}" if ordered else "-"


def report(passes: list[Pass], args: argparse.Namespace) -> None:
    print(f"\n{args.polygons:,} polygons; {args.tiles} random WebMercatorQuad tiles, zooms 8–16, one at a time\n")
    print("| server | pass | tiles | tiles/s | p50 ms | p99 ms | bytes/tile | geoservice ÷ tipg (tiles/s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    tipg = {p.name: p for p in passes if p.server == "tipg"}
    for one in passes:
        result, other = one.result, tipg.get("second" if one.name in ("warm", "second") else "first")
        ratio = f"{result.rate / other.result.rate:.2f}×" if one.server == "geoservice" and other else ""
        print(f"| {one.server} | {one.name} | {result.requests} | {result.rate:,.1f} | {result.percentile(0.5):.1f} | "
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
        count = len(passes[0].at(zoom)[0])
        print(f"| {zoom} | {count} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polygons", type=int, default=100_000)
    parser.add_argument("--tiles", type=int, default=400, help="random tiles per pass")
    parser.add_argument("--seconds", type=float, default=600.0, help="time budget per pass")
    parser.add_argument("--seed", type=int, default=20241207)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)

    base = load_settings(ROOT / "config" / "geoservice.yaml")
    print(f"scratch database {DATABASE}: {args.polygons:,} polygons …", flush=True)
    settings = db.create_scratch_database(base, DATABASE, lambda _: None)
    cache = cache_root(settings, settings.database.url)
    try:
        version = create_bench_layer(settings, args.polygons, args.seed)
        tiles = [GRID.tile(118.0, 24.5, 8), *random_tiles(args.tiles, args.seed)]  # the first warms a connection up
        shutil.rmtree(cache, ignore_errors=True)
        passes = []
        with tempfile.TemporaryDirectory(prefix="bench-tiles-") as folder:
            workdir = Path(folder)
            with geoservice_server(settings, workdir) as server:
                print("  measuring geoservice …", flush=True)
                template = server.items.removesuffix("/items") + "/tiles/WebMercatorQuad/{z}/{y}/{x}"
                passes += [Pass("geoservice", name, template, tiles, args.seconds) for name in ("cold", "warm")]
            with tipg_server(settings, version, workdir, {"TIPG_MAX_FEATURES_PER_TILE": "1000000"}) as server:
                print("  measuring tipg …", flush=True)
                template = server.items.removesuffix("/items") + "/tiles/WebMercatorQuad/{z}/{x}/{y}"
                passes += [Pass("tipg", name, template, tiles, args.seconds) for name in ("first", "second")]
        report(passes, args)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not args.keep:
            db.drop_database(settings.database.url, DATABASE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
