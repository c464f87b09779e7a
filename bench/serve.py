"""Serving benchmark: geoservice against pygeoapi's stock PostgreSQL provider and tipg, with raw SQL as the limit.

    .venv/bin/python -m bench.serve                      # 100,000 polygons (the recorded run; a quiet machine)
    .venv/bin/python -m bench.serve --polygons 5000 --requests 40 --seconds 3   # a smoke run

One generated table — `--polygons` Voronoi cells over 40 km × 40 km in EPSG:4548, stored as a geoservice
layer version (partition geoservice.feature_p<id>, GiST and primary-key indexes) in a scratch database
`geoservice_bench_serve` — is served in the same run by

- geoservice:  `geoservice serve` (pygeoapi + our provider), collection `bench`;
- pygeoapi:    pygeoapi 0.21 with its stock `PostgreSQL` provider on geoservice.feature_p<id> (uvicorn, Starlette);
- tipg:        tipg (in .geoservice/bench-venv, made by scripts/test-tools.sh: its FastAPI pins do not fit ours);
- raw SQL:     the statement geoservice's provider runs for the same request, executed with psycopg2 and the
               rows joined, without HTTP: the limit an HTTP server can approach.

Workloads, all in CRS84 output: random bboxes covering 1 % of the area (CRS84 boxes; pygeoapi's stock
provider misreads a CRS84 bbox on an EPSG:4548 table, so it is sent the box's EPSG:4548 bounds in x/y order,
the only bbox that makes it select the same features), `limit=1000` and `limit=10`, 1 and 8 concurrent
clients; then deep paging: every page of the table with `limit=1000` through each server's next links, then
the first page against the deepest one, fetched alternately. Prints req/s, p50/p99 latency and the ratios
geoservice / others. The table is vacuumed and analysed after loading, as a bureau's would be by the time it is
served: no server pays the first reads' hint bits or the autovacuum that follows a load.
The scratch database is dropped at the end (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests
import shapely
import yaml
from psycopg2 import sql
from pyproj import Transformer

from bench.coverages import EXTENT_4548, voronoi_coverage
from geoservice import db
from geoservice.db import bulk, partitions
from geoservice.serve import read_served_collections
from geoservice.serve.config import pygeoapi_config
from geoservice.serve.crs import serving_crs
from geoservice.serve.provider import GeoserviceProvider
from geoservice.serve.query import PageRequest, Selection
from geoservice.serve.spatial import covers_share, to_working
from geoservice.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "geoservice_bench_serve"
BENCH_VENV = ROOT / ".geoservice" / "bench-venv"
EPSG4548 = "http://www.opengis.net/def/crs/EPSG/0/4548"
CODES = np.array(["0101", "0201", "0301", "0701", "0801", "1001", "1101", "1201", "1701", "1801"])


# -- the table -------------------------------------------------------------------------------------------------

def create_bench_layer(settings: Settings, polygons: int, seed: int) -> int:
    """A public layer `bench` (anonymous requests, as to the other servers) with one active version of `polygons`
    Voronoi cells; its version id."""
    cells = voronoi_coverage(polygons, seed)
    codes = CODES[np.random.default_rng(seed).integers(0, len(CODES), polygons)]
    with db.transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO geoservice.layer (name, kind, title, description, definition) VALUES "
                    "('bench', 'land_use', 'Benchmark polygons', 'Generated Voronoi cells', %s)", (json.dumps({"access": "public"}),))
        cur.execute("INSERT INTO geoservice.layer_version (layer, version, source_path, source_checksum, feature_count, "
                    "is_active) VALUES ('bench', 1, 'generated', '-', %s, true) RETURNING id", (polygons,))
        version = cur.fetchone()[0]
        table = partitions.create_partition_table(cur, "feature", version)
        rows = range(1, polygons + 1)
        attributes = [json.dumps({"DLMC": f"地类{c}", "BZ": i % 97}, ensure_ascii=False) for i, c in zip(rows, codes)]
        text = bulk.copy_text([[str(version)] * polygons, [str(i) for i in rows], [f"B{i:07d}" for i in rows],
                               [f"patch {i}" for i in rows], codes.tolist(), codes.tolist(), ["kept"] * polygons,
                               attributes, bulk.number_field(shapely.area(cells)), bulk.multipolygon_ewkb_hex(cells, 4548)])
        columns = ("version_id", "source_row", "source_id", "name", "class_code", "original_code", "status",
                   "attributes", "area_m2", "geom")
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'geoservice' "
                    "AND table_name = 'feature' AND is_generated = 'ALWAYS'")
        generated = {row[0] for row in cur.fetchall()}
        kept = [i for i, column in enumerate(columns) if column not in generated]
        lines = ("\t".join(line.split("\t")[i] for i in kept) for line in text.splitlines())
        cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN").format(
            table, sql.SQL(", ").join(sql.Identifier(columns[i]) for i in kept)).as_string(cur),
            io.StringIO("\n".join(lines) + "\n"))
        partitions.attach_partition(cur, "feature", "version_id", version, ("version_id", "id"),
                                    {"geom": "USING gist (geom)", "class": "(version_id, class_code)"})
    conn = db.connect_url(settings.database.url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))
    finally:
        conn.close()
    return version


def random_bboxes(count: int, seed: int, share: float = 0.01) -> list[tuple[float, float, float, float]]:
    """CRS84 boxes covering `share` of the generated area, uniformly placed inside it."""
    to_crs84 = Transformer.from_crs(4548, 4326, always_xy=True)
    xmin, ymin, xmax, ymax = EXTENT_4548
    side_x, side_y = (xmax - xmin) * share ** 0.5, (ymax - ymin) * share ** 0.5
    rng = random.Random(seed)
    boxes = []
    for _ in range(count):
        x, y = rng.uniform(xmin, xmax - side_x), rng.uniform(ymin, ymax - side_y)
        west, south = to_crs84.transform(x, y)
        east, north = to_crs84.transform(x + side_x, y + side_y)
        boxes.append((round(west, 6), round(south, 6), round(east, 6), round(north, 6)))
    return boxes


def bounds_4548(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A CRS84 box's bounds in EPSG:4548, x = easting (what the stock provider needs to select the same features)."""
    to_4548 = Transformer.from_crs(4326, 4548, always_xy=True)
    densified = shapely.segmentize(shapely.box(*box), (box[2] - box[0]) / 16)
    coords = shapely.get_coordinates(densified)
    xs, ys = to_4548.transform(coords[:, 0], coords[:, 1])
    return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))


# -- the servers ---------------------------------------------------------------------------------------------------

@dataclass
class Server:
    """A server under test: how to ask it for a bbox page and where its items are."""

    name: str
    items: str
    bbox_params: Callable[[tuple[float, float, float, float]], dict[str, str]]


def _wait(process: subprocess.Popen, url: str, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds} s: {log.read_text()[-3000:]}")


@contextmanager
def running(command: list[str], env: dict[str, str], probe: str, log: Path) -> Iterator[None]:
    with log.open("w") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait(process, probe, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def geoservice_server(settings: Settings, workdir: Path) -> Iterator[Server]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "geoservice", "serve", "--port", str(port)],
                 {"GEOSERVICE_DATABASE_URL": settings.database.url}, f"{url}/conformance", workdir / "geoservice.log"):
        yield Server("geoservice", f"{url}/collections/bench/items", lambda box: {"bbox": ",".join(map(str, box))})


def postgresql_source(settings: Settings, table: str) -> dict[str, object]:
    """A pygeoapi PostgreSQL provider's `data` and `table` for a table of the geoservice schema."""
    parts = urlsplit(settings.database.url)
    return {"table": table, "data": {"host": parts.hostname, "port": parts.port, "dbname": parts.path.lstrip("/"),
                                     "user": parts.username, "password": parts.password,
                                     "search_path": ["geoservice", "public"]}}


@contextmanager
def pygeoapi_server(settings: Settings, name: str, providers: list[dict[str, object]], workdir: Path) -> Iterator[str]:
    """Stock pygeoapi 0.21 (uvicorn, Starlette) serving one collection `name` from `providers`; yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = pygeoapi_config(settings, [], settings.database.url)
    config["server"].update(bind={"host": "127.0.0.1", "port": port}, url=url)
    del config["server"]["templates"]
    config["resources"] = {name: {"type": "collection", "title": name, "description": name, "keywords": [], "links": [],
                                  "extents": {"spatial": {"bbox": [-180, -90, 180, 90]}}, "providers": providers}}
    config_path, openapi_path = workdir / "stock.yml", workdir / "stock-openapi.yml"
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {"PYGEOAPI_CONFIG": str(config_path), "PYGEOAPI_OPENAPI": str(openapi_path)}
    generated = subprocess.run([str(Path(sys.executable).parent / "pygeoapi"), "openapi", "generate", str(config_path),
                                "--output-file", str(openapi_path)], env={**os.environ, **env}, capture_output=True, text=True)
    if generated.returncode:
        raise RuntimeError(f"pygeoapi openapi generate: {generated.stderr[-3000:]}")
    with running([sys.executable, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--port", str(port), "--log-level",
                  "warning", "--no-access-log"], env, f"{url}/conformance", workdir / "stock.log"):
        yield url


def feature_provider(settings: Settings, table: str) -> dict[str, object]:
    """pygeoapi's stock PostgreSQL feature provider on a geoservice table (EPSG:4548, key `id`, geometry `geom`)."""
    return {"type": "feature", "name": "PostgreSQL", "id_field": "id", "geom_field": "geom", "storage_crs": EPSG4548,
            "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84", EPSG4548], **postgresql_source(settings, table)}


@contextmanager
def stock_pygeoapi_server(settings: Settings, table: str, workdir: Path) -> Iterator[Server]:
    with pygeoapi_server(settings, "bench", [feature_provider(settings, table)], workdir) as url:
        yield Server("pygeoapi", f"{url}/collections/bench/items", lambda box: {
            "bbox": ",".join(f"{v:.3f}" for v in bounds_4548(box)), "bbox-crs": EPSG4548})


def ensure_tipg_venv() -> Path:
    """The Python of the virtualenv holding tipg (scripts/test-tools.sh makes it when missing)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "test-tools.sh"), "tipg"], check=True,
                   env={**os.environ, "VENV": str(Path(sys.executable).parent.parent)})
    return BENCH_VENV / "bin" / "python"


@contextmanager
def tipg_server(settings: Settings, table: str, workdir: Path, extra: dict[str, str] | None = None) -> Iterator[Server]:
    """tipg on a table of the geoservice schema (`extra`: more TIPG_ settings)."""
    python, port = ensure_tipg_venv(), _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"DATABASE_URL": settings.database.url, "TIPG_DB_SCHEMAS": '["geoservice"]', "TIPG_DB_TABLES": f'["geoservice.{table}"]',
           "TIPG_MAX_FEATURES_PER_QUERY": "10000", "TIPG_DB_MAX_CONN_SIZE": "8", "TIPG_DB_SPATIAL_EXTENT": "false",
           "TIPG_DB_DATETIME_EXTENT": "false", **(extra or {})}
    with running([str(python), "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--log-level", "warning",
                  "--no-access-log"], env, f"{url}/conformance", workdir / "tipg.log"):
        yield Server("tipg", f"{url}/collections/geoservice.{table}/items", lambda box: {"bbox": ",".join(map(str, box))})


# -- measuring -----------------------------------------------------------------------------------------------------

@dataclass
class Result:
    """Throughput and latency of one server on one workload."""

    requests: int
    seconds: float
    latencies: list[float]
    features: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def measure(call: Callable[[int], int], requests_total: int, clients: int, seconds: float) -> Result:
    """Up to `requests_total` calls (fewer when `seconds` run out) over `clients` threads, each warmed up first
    (its own connection or session); each call returns the features it got."""
    latencies: list[float] = []
    features = [0]
    lock, ready = threading.Lock(), threading.Barrier(clients + 1)
    indexes = iter(range(1, requests_total + 1))
    deadline = [float("inf")]  # set once every client is warm

    def client() -> None:
        call(0)
        ready.wait()
        while time.perf_counter() < deadline[0]:
            with lock:
                index = next(indexes, None)
            if index is None:
                return
            started = time.perf_counter()
            got = call(index)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                features[0] += got

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    deadline[0] = started + seconds
    for thread in threads:
        thread.join()
    return Result(len(latencies), time.perf_counter() - started, latencies, features[0])


def http_call(server: Server, boxes: list, limit: int) -> Callable[[int], int]:
    sessions = threading.local()

    def call(index: int) -> int:
        session = sessions.__dict__.setdefault("session", requests.Session())
        response = session.get(server.items, params={**server.bbox_params(boxes[index % len(boxes)]), "limit": limit},
                               timeout=120)
        response.raise_for_status()
        return response.content.count(b'"Feature"')
    return call


def raw_sql_call(provider: GeoserviceProvider, boxes: list, limit: int) -> Callable[[int], int]:
    """The statement geoservice runs for a request, executed directly (one connection per thread)."""
    connections = threading.local()
    crs84 = serving_crs("OGC:CRS84")

    def call(index: int) -> int:
        conn = connections.__dict__.get("conn")
        if conn is None:
            conn = connections.conn = db.connect_url(provider.data)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET max_parallel_workers_per_gather = 0")
        box = boxes[index % len(boxes)]
        region = to_working(shapely.box(*box), crs84, provider.collection.extent, 4548)
        selection = Selection(bbox=shapely.to_wkb(region), bbox_share=covers_share(region, provider.collection.extent))
        statement = provider.plan(PageRequest(selection, crs84, limit)).statement
        with conn.cursor() as cur:
            cur.execute(statement.sql, statement.values)
            rows = cur.fetchall()
        ",".join(row[0] for row in rows).encode()
        return len(rows)
    return call


@dataclass
class Paging:
    """A walk through every page of the table, then its first and its deepest full page fetched alternately."""

    pages: int
    walk: float          # seconds for the whole walk
    first: list[float]   # seconds for the first page, each time
    deep: list[float]    # seconds for the deepest full page, each time


def deep_paging(server: Server, limit: int, repeats: int = 7) -> Paging:
    """Every page of the table through the server's next links; then the first page and the deepest full page (by the
    links the walk followed) `repeats` times each, alternately: whatever a server keeps between pages is set up by the
    walk, and alternating keeps the machine's drift out of the ratio."""
    session, urls, started = requests.Session(), [], time.perf_counter()
    url, params = server.items, {"limit": limit}
    while url:
        response = session.get(url, params=params, timeout=300)
        response.raise_for_status()
        urls.append(response.url)
        url = next((link["href"] for link in response.json().get("links", []) if link["rel"] == "next"), None)
        params = None
    walk = time.perf_counter() - started
    times: dict[str, list[float]] = {urls[0]: [], urls[-2] if len(urls) > 1 else urls[0]: []}
    for _ in range(repeats):
        for page, seconds in times.items():
            clock = time.perf_counter()
            session.get(page, timeout=300).raise_for_status()
            seconds.append(time.perf_counter() - clock)
    first, deep = times.values() if len(times) == 2 else (times[urls[0]],) * 2
    return Paging(len(urls), walk, first, deep)


# -- the run ---------------------------------------------------------------------------------------------------------

def _ratio(ours: float, other: float | None) -> str:
    return f"{ours / other:.2f}×" if other else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polygons", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400, help="requests per server and workload (at most)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget per server and workload")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--page-size", type=int, default=1000, help="limit of the deep-paging walk")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)

    base = load_settings(ROOT / "config" / "geoservice.yaml")
    print(f"scratch database {DATABASE}: {args.polygons:,} polygons …", flush=True)
    settings = db.create_scratch_database(base, DATABASE, lambda _: None)
    try:
        started = time.perf_counter()
        version = create_bench_layer(settings, args.polygons, args.seed)
        print(f"  loaded in {time.perf_counter() - started:.1f} s (partition feature_p{version})", flush=True)
        collections, url = read_served_collections(settings)
        definition = pygeoapi_config(settings, collections, url)["resources"]["bench"]["providers"][0]
        provider = GeoserviceProvider(definition)
        boxes = random_bboxes(max(args.requests, 50), args.seed)
        rows: list[tuple[str, int, str, Result]] = []
        paging: dict[str, Paging] = {}
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
            workdir = Path(folder)
            for limit in (1000, 10):
                for clients in (1, 8):
                    rows.append((f"bbox 1%, limit={limit}", clients, "raw SQL",
                                 measure(raw_sql_call(provider, boxes, limit), args.requests, clients, args.seconds)))
            table = partitions.partition_name("feature", version)
            for start in (lambda: geoservice_server(settings, workdir), lambda: stock_pygeoapi_server(settings, table, workdir),
                          lambda: tipg_server(settings, table, workdir)):
                with start() as server:
                    print(f"  measuring {server.name} …", flush=True)
                    began = time.perf_counter()
                    for limit in (1000, 10):
                        for clients in (1, 8):
                            rows.append((f"bbox 1%, limit={limit}", clients, server.name,
                                         measure(http_call(server, boxes, limit), args.requests, clients, args.seconds)))
                    paging[server.name] = deep_paging(server, args.page_size)
                    print(f"    {time.perf_counter() - began:.1f} s", flush=True)
        report(rows, paging, args)
    finally:
        if not args.keep:
            db.drop_database(settings.database.url, DATABASE)
    return 0


def report(rows: list[tuple[str, int, str, Result]], paging: dict[str, Paging], args: argparse.Namespace) -> None:
    print(f"\n{args.polygons:,} polygons; per cell at most {args.requests} requests or {args.seconds:g} s; CRS84 output\n")
    print("| workload | clients | server | req/s | p50 ms | p99 ms | features/req | geoservice ÷ this |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    by_key = {(w, c, s): r for w, c, s, r in rows}
    for workload, clients, name, result in rows:
        ours = by_key.get((workload, clients, "geoservice"))
        print(f"| {workload} | {clients} | {name} | {result.rate:,.1f} | {result.percentile(0.5):.1f} | "
              f"{result.percentile(0.99):.1f} | {result.features / result.requests:,.0f} | "
              f"{_ratio(ours.rate, result.rate) if ours and name != 'geoservice' else ''} |")
    print(f"\ndeep paging: every page with limit={args.page_size} through the next links, then the first and the deepest "
          "full page alternately (median of each)\n")
    print("| server | pages | walk s | first page | deepest page | deepest ÷ first |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, walk in paging.items():
        first, deep = statistics.median(walk.first), statistics.median(walk.deep)
        print(f"| {name} | {walk.pages} | {walk.walk:.1f} | {first * 1000:.1f} ms | {deep * 1000:.1f} ms | "
              f"{deep / first:.2f} |")

if __name__ == "__main__":
    raise SystemExit(main())
