"""Spatial tiles on Dask distributed: the client side (connect, check the workers, submit one task per tile with
retries, show progress) and the frame of every tile task (one transaction: its rows and its record commit together).

The stage's own code runs in the task: `basemap.tiled` and `conflicts.tiled` read their tile's features from PostGIS,
run the same overlay and rule code as the in-process path, and COPY their pieces into the run's table. Nothing here
knows a stage.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import psycopg2.extensions
import shapely

import geoservice
from geoservice.compute.tiles import Tile
from geoservice.db.connection import connect_url, database_url, redact
from geoservice.db.layers import FeatureArrays, read_features
from geoservice.db.read import LayerVersion
from geoservice.db.tiles import lock_tile, record_tile, tile_record
from geoservice.errors import GeoserviceError
from geoservice.overlay import Parts, subdivide
from geoservice.progress import Reporter
from geoservice.settings import Settings

#: slowest tiles named at the end of a run
SLOWEST = 3
T = TypeVar("T")


@cache
def code_digest() -> str:
    """SHA-256 of the geoservice package's Python sources (what must be the same on every worker), 16 hex digits."""
    root = Path(geoservice.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def identity() -> dict[str, str]:
    """What a worker must share with the client: geoservice's version and code, and the GEOS the pieces come from."""
    return {"geoservice": geoservice.__version__, "code": code_digest(), "geos": shapely.geos_version_string}


def worker_settings(settings: Settings) -> Settings:
    """The settings the tasks get: the client's, with the database URL spelled out (a worker elsewhere has no
    embedded cluster's data directory to find it in) and the overlay threads of one task."""
    database = settings.database.model_copy(update={"url": database_url(settings)})
    integration = settings.integration.model_copy(update={"threads": settings.compute.task_threads})
    return settings.model_copy(update={"database": database, "integration": integration})


#: what a worker process keeps between its tasks (`worker_cache`): at most this many values
CACHE_ENTRIES = 8
_cache: OrderedDict[Hashable, object] = OrderedDict()
_cache_lock = threading.Lock()


def worker_cache(key: Hashable, make: Callable[[], T]) -> T:
    """`make()`, kept in this process under `key` for the next tasks (the few least recently used dropped): for what
    every tile of a run needs whole and the same — the districts cut into parts, the dissolved protection lines —, read
    and cut once per worker instead of once per tile. Keys must name immutable data: the database and layer version ids (ids are a database's own), parameters."""
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]  # type: ignore[return-value]
        value = make()
        _cache[key] = value
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
        return value


def whole_districts(cur: psycopg2.extensions.cursor, database: str, layer: LayerVersion | None, cut: int | None,
                    threads: int | None) -> tuple[FeatureArrays | None, Parts | np.ndarray]:
    """The district layer's features and their parts (none without a district layer): read and cut once per worker
    process, as the in-process run cuts them once — the same parts, so the same patches."""
    if layer is None:
        return None, np.empty(0, dtype=object)
    districts = worker_cache((database, "features", layer.version_id), lambda: read_features(cur, layer))
    zones = worker_cache((database, "parts", layer.version_id, cut),
                       lambda: subdivide(districts.geometries, cut, threads))
    return districts, zones


@dataclass
class Cluster:
    """A connected Dask client, with the dashboard's address when there is one and the worker threads."""

    client: object
    dashboard: str | None
    threads: int


@contextmanager
def connect(scheduler: str) -> Iterator[Cluster]:
    """A client of `scheduler`: `local:N` starts a LocalCluster of N worker processes (one thread each) here and stops it
    after; anything else is a running scheduler's address. The workers are checked (`check_workers`)."""
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if scheduler.startswith("local:"):
            cluster = LocalCluster(n_workers=int(scheduler.removeprefix("local:")), threads_per_worker=1,
                                   processes=True, dashboard_address=":0")
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout=10)
            except OSError as exc:
                raise GeoserviceError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        try:
            threads = check_workers(client, scheduler)
            yield Cluster(client, getattr(client, "dashboard_link", None), threads)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def check_workers(client, scheduler: str, wait_seconds: float = 60) -> int:  # noqa: ANN001
    """The worker threads of the cluster, after checking every worker runs this geoservice (version and code) on this
    GEOS; a GeoserviceError naming the worker and what differs otherwise, or when no worker came within
    `wait_seconds`."""
    try:
        client.wait_for_workers(1, timeout=wait_seconds)
    except TimeoutError as exc:
        raise GeoserviceError(f"no Dask worker joined the scheduler at {scheduler} within {wait_seconds:.0f} s: "
                              "start some with `dask worker ADDRESS`") from exc
    mine = identity()
    try:
        theirs = client.run(identity)
    except Exception as exc:  # noqa: BLE001 — a worker without geoservice cannot even unpickle the function
        raise GeoserviceError(f"a Dask worker of {scheduler} cannot run geoservice ({type(exc).__name__}: {exc}): "
                              "install this geoservice on every worker") from exc
    for worker, found in sorted(theirs.items()):
        differ = [f"{key} {found.get(key)} (here {value})" for key, value in mine.items() if found.get(key) != value]
        if differ:
            raise GeoserviceError(f"Dask worker {worker} runs another geoservice: {', '.join(differ)}; "
                                  "install the same geoservice (and Shapely) on every worker")
    return sum(client.nthreads().values())


def run_tiles(cluster: Cluster, task: Callable[..., dict], tiles: list[Tile], retries: int, reporter: Reporter,
              what: str) -> list[dict]:
    """`task(tile)` for every tile on the cluster, each retried `retries` times when it fails; the results in tile
    order. A bar counts the tiles done; the slowest are named at the end. A tile failing for good cancels the rest and
    raises a GeoserviceError naming it."""
    from distributed import as_completed

    client = cluster.client
    if cluster.dashboard:
        reporter.line(f"Dask dashboard: {cluster.dashboard}")
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    futures = client.map(task, tiles, retries=retries, pure=False,
                         key=[f"{what}-tile-{tile.index}-{stamp}" for tile in tiles])
    tile_of = {future.key: tile for future, tile in zip(futures, tiles)}
    results: dict[int, dict] = {}
    with reporter.task(f"{what}: tiles on {cluster.threads} worker threads", len(tiles)) as bar:
        try:
            for future in as_completed(futures):
                tile = tile_of[future.key]
                if future.status != "finished":
                    try:
                        future.result()
                    except Exception as exc:  # noqa: BLE001 — named with its tile
                        raise GeoserviceError(f"{what}: {tile} failed after {retries + 1} attempts "
                                              f"({type(exc).__name__}: {exc})") from exc
                results[tile.index] = future.result()
                bar.advance(1)
        finally:
            pending = [f for f in futures if not f.done()]
            if pending:
                client.cancel(pending)
    ordered = [results[tile.index] for tile in tiles]
    slowest = sorted(ordered, key=lambda r: -r["seconds"])[:SLOWEST]
    reporter.line("slowest tiles: " + "; ".join(
        f"{r['tile']} {r['seconds']:.2f} s ({r['features']:,} features, {r['rows']:,} rows, {r['worker']})"
        for r in slowest))
    return ordered


_connections = threading.local()


@contextmanager
def worker_transaction(settings: Settings) -> Iterator[psycopg2.extensions.connection]:
    """One transaction on this worker thread's own connection, kept for its next tasks: a fresh connection costs a
    tile ~0.25 s before its first row (the backend's start and its catalog caches, for partitioned tables of many
    partitions). Committed on success, rolled back on any error; a connection that broke is closed and forgotten, so
    that the retry connects anew."""
    url, kept = settings.database.url, _connections.__dict__.setdefault("by_url", {})
    conn = kept.get(url)
    if conn is not None and not conn.closed:
        try:
            conn.poll()  # reads what the server sent meanwhile: a session it ended (DROP DATABASE … FORCE) shows here
        except psycopg2.Error:
            conn.close()
    if conn is None or conn.closed:
        conn = kept[url] = connect_url(url)
    try:
        with conn:
            yield conn
    except BaseException:
        if conn.closed or conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN:
            kept.pop(url, None)
            conn.close()
        raise


def tile_task(work: Callable, settings: Settings, stage: str, run_id: int, args: tuple, tile: Tile) -> dict:
    """One tile's attempt, in one transaction: wait for any other attempt at the tile, return what an earlier attempt
    committed when there is one (its rows are complete), else `work(cur, settings, run_id, tile, *args)` — which reads
    the tile's features and COPYs its rows — and record its summary with the rows. A failure rolls the attempt's rows
    back (a killed worker's connection too: the server ends its transaction), so a retry starts clean."""
    started = time.perf_counter()
    with worker_transaction(settings) as conn, conn.cursor() as cur:
        lock_tile(cur, stage, run_id, tile.index)
        done = tile_record(cur, stage, run_id, tile.index)
        if done is not None:
            return done
        summary = work(cur, settings, run_id, tile, *args)
        summary.update(tile=str(tile), index=tile.index, seconds=round(time.perf_counter() - started, 3),
                       worker=f"{socket.gethostname()}:{os.getpid()}")
        record_tile(cur, stage, run_id, tile.index, summary)
    return summary


def describe(scheduler: str, cluster: Cluster) -> dict[str, object]:
    """What a run records of where it ran."""
    return {"scheduler": redact(scheduler), "worker_threads": cluster.threads, "host": platform.node()}
