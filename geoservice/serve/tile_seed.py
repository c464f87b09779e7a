"""`geoservice tiles seed`: pre-build tiles into the server's tile cache, so that the first visit after an `integrate`
or `detect` is as fast as the next (at city scale a low-zoom tile of the base map costs a second or two to build).

The tiles are built exactly as the server builds them — the same catalog snapshot, grade view, cache key and
statement — and written into the same folder; a running server takes them from there (serve/tile_cache.py). Without
`--collection`, the dataset's tiles the /map viewer asks for at its start are seeded (the collections it shows
switched on, for that grade), else each named collection's own tiles.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from geoservice.db import database_url
from geoservice.errors import ConfigError
from geoservice.progress import Reporter, SilentReporter
from geoservice.serve.catalog import Collection
from geoservice.serve.live import LiveCatalog
from geoservice.serve.tiles import TileEndpoints, union_extent
from geoservice.serve.tms import GRIDS
from geoservice.serve.viewer import shown_at_start
from geoservice.settings import Settings


@dataclass
class SeedSummary:
    """What a seeding did."""

    built: int = 0
    cached: int = 0            # already in the cache
    empty: int = 0             # built, but nothing of the collections is there
    bytes: int = 0
    seconds: float = 0.0
    slowest: list[tuple[float, str]] = field(default_factory=list)   # (seconds, z/row/col), the five slowest


def seed_tiles(settings: Settings, zooms: range, grade: str = "public", collections: tuple[str, ...] = (),
               grid_id: str = "WebMercatorQuad", reporter: Reporter | None = None, threads: int = 2) -> SeedSummary:
    """Build every tile of `zooms` within the tilesets' limits that the cache lacks; ConfigError for an unknown
    collection (or one the grade may not read) or tile matrix set."""
    reporter = reporter or SilentReporter()
    if grid_id not in GRIDS:
        raise ConfigError("--grid", None, f"unknown tile matrix set {grid_id!r} (one of {', '.join(GRIDS)})")
    grid, url = GRIDS[grid_id], database_url(settings)
    snapshot, state = LiveCatalog(settings, url).current()
    view = snapshot.views[grade]
    sets: list[tuple[bool, list[Collection]]]
    if collections:
        missing = [name for name in collections if view.collection(name) is None]
        if missing:
            raise ConfigError("--collection", None, f"no collection {', '.join(missing)} for the {grade} grade")
        sets = [(False, [view.collection(name)]) for name in collections]
    else:
        sets = [(True, [view.collection(name) for name in shown_at_start(view)])]
    endpoints = TileEndpoints(settings, url)
    jobs = []
    for dataset, chosen in sets:
        for zoom in zooms:
            for limit in grid.limits(union_extent(chosen), range(zoom, zoom + 1)):
                for row in range(limit["minTileRow"], limit["maxTileRow"] + 1):
                    for col in range(limit["minTileCol"], limit["maxTileCol"] + 1):
                        shown = endpoints.shown(chosen, grid, zoom, row, col)
                        if shown:
                            jobs.append((endpoints.key(snapshot, state, grade, dataset, shown, grid, zoom, row, col), shown))
    summary = SeedSummary()
    started = time.perf_counter()

    def one(job: tuple) -> tuple[float, str, int | None]:
        key, shown = job
        if endpoints.cache.get(key) is not None:
            return 0.0, "", None
        began = time.perf_counter()
        data = endpoints.build(view, key, grid, shown)
        return time.perf_counter() - began, f"{key.zoom}/{key.row}/{key.col}", len(data)

    with reporter.task(f"seeding {len(jobs):,} tiles (z{zooms.start}–{zooms.stop - 1}, {grade})", len(jobs)) as task, \
            ThreadPoolExecutor(max_workers=threads) as pool:
        for seconds, tile, size in pool.map(one, jobs):
            task.advance(1)
            if size is None:
                summary.cached += 1
                continue
            summary.built += 1
            summary.empty += size == 0
            summary.bytes += size
            summary.slowest = sorted([*summary.slowest, (seconds, tile)], reverse=True)[:5]
    summary.seconds = time.perf_counter() - started
    return summary
