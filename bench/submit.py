"""Project submissions over OGC API – Features Part 4: create-and-check against the city, beside pygeoapi's stock
PostgreSQL transactions on the same table (the write alone, without a check).

    .venv/bin/python -m bench.submit --keep                         # the 1,000,000-patch city (a quiet machine)
    .venv/bin/python -m bench.submit --patches 1000 --requests 20   # a smoke run

The city is bench/city.py's, reused from geoservice_bench_city_N when bench.tiles or bench.city kept it, else built
(bench.tiles.city_base_map; `--keep` keeps it for the next run). The submissions are written into a copy of it
(geoservice_bench_submit, made from the city's database as a template and dropped at the end), so the city stays as
it was. Each submission is a 100–400 m
square project around a random construction-layer feature (half of them moved onto the red line), POSTed as a GeoJSON
Feature in CRS84 with a token of the `edit` scope: geoservice stores it as a revision of the construction layer, with
its history, audit event, submission and the project check of every construction rule, in one request. pygeoapi 0.21
(`editable: true`, its PostgreSQL provider) POSTs the same squares, in EPSG:4548, into the construction layer's own
table, unchecked and unaudited. 1 and 8 clients; printed: submissions/s, p50/p99 ms. Targets (issue 18): p99 ≤ 100 ms
with one client, ≥ 50 submissions/s with 8 clients.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import requests
from pyproj import Transformer

from bench.city import DATABASE, WORK
from bench.serve import EPSG4548, ROOT, Result, _free_port, feature_provider, measure, pygeoapi_server, running
from bench.tiles import city_base_map
from geoservice import db
from geoservice.db.connection import connect_url, with_database
from geoservice.settings import Settings, load_settings

COPY = "geoservice_bench_submit"
TOKEN = "bench-editor-0123456789"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
#: the most clients at once (and the unmeasured warm-up submissions of each run)
WARM_UPS = 8


def copy_of_city(settings: Settings) -> Settings:
    """A copy of the city's database to write into (the city is left as it was)."""
    url = settings.database.url
    with closing(connect_url(with_database(url, "postgres"))) as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute(f"DROP DATABASE IF EXISTS {COPY} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {COPY} TEMPLATE {url.rsplit('/', 1)[1]}")
    return settings.model_copy(update={"database": settings.database.model_copy(update={"url": with_database(url, COPY)})})


def construction_layer(settings: Settings) -> tuple[str, int, dict[str, Any], list[tuple[float, float]]]:
    """The active construction layer: name, version id, definition, and its features' points (EPSG:4548)."""
    with closing(connect_url(settings.database.url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT l.name, v.id, l.definition FROM geoservice.layer l JOIN geoservice.layer_version v ON "
                    "v.layer = l.name AND v.is_active WHERE l.kind = 'construction' ORDER BY l.name LIMIT 1")
        name, version_id, definition = cur.fetchone()
        cur.execute("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM geoservice.feature "
                    "WHERE version_id = %s) s", (version_id,))
        points = cur.fetchall()
        cur.execute("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(f.geom) AS p FROM geoservice.feature f "
                    "JOIN geoservice.layer_version v ON v.id = f.version_id AND v.is_active JOIN geoservice.layer l "
                    "ON l.name = v.layer WHERE l.kind = 'red_line') s")
        points = [p for pair in zip(points, itertools.cycle(cur.fetchall() or points)) for p in pair]
    return name, version_id, definition, points


def squares(points: list[tuple[float, float]], count: int, seed: int) -> list[np.ndarray]:
    """`count` project squares (EPSG:4548 rings) of 100–400 m around the points, in a random order."""
    rng = random.Random(seed)
    chosen = [points[rng.randrange(len(points))] for _ in range(count)]
    rings = []
    for x, y in chosen:
        side = rng.uniform(100, 400)
        rings.append(np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]))
    return rings


def fresh_ids(settings: Settings, count: int) -> list[int]:
    """Feature ids from the table's own sequence (pygeoapi inserts the id it is given: the key is two columns)."""
    with closing(connect_url(settings.database.url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT nextval('geoservice.feature_id_seq') FROM generate_series(1, %s)", (count,))
        ids = [row[0] for row in cur.fetchall()]
        conn.commit()
    return ids


def bodies(definition: dict[str, Any], rings: list[np.ndarray], crs84: bool, version_id: int,
           ids: list[int] | None = None) -> list[dict[str, Any]]:
    """One Feature per ring: geoservice's as the bureau's file has it (CRS84), pygeoapi's as the table's columns
    (EPSG:4548, with ids)."""
    to_crs84 = Transformer.from_crs(EPSG4548, CRS84, always_xy=True)
    out = []
    for n, ring in enumerate(rings):
        number = f"BENCH-{os.getpid()}-{n}-{'g' if crs84 else 'p'}"
        if crs84:
            lon, lat = to_crs84.transform(ring[:, 0], ring[:, 1])
            geometry = {"type": "Polygon", "coordinates": [np.column_stack([lon, lat]).round(8).tolist()]}
            properties = {name: None for name in definition.get("attributes", [])}
            properties.update({k: v for k, v in ((definition.get("id_field"), number),
                                                 (definition.get("code_field"), "0701")) if k})
        else:
            geometry = {"type": "MultiPolygon", "coordinates": [[ring.round(3).tolist()]]}
            properties = {"version_id": version_id, "source_row": n + 1, "source_id": number, "class_code": "0701",
                          "original_code": "0701"}
        out.append({"type": "Feature", "geometry": geometry, "properties": properties,
                    **({"id": ids[n]} if ids else {})})
    return out


def poster(url: str, features: list[dict[str, Any]], warm_ups: list[dict[str, Any]],
           headers: dict[str, str]) -> Callable[[int], int]:
    """A call POSTing feature `index` on the client thread's own session (index 0: one of `warm_ups`, not measured).
    A refused submission stops the benchmark (printed on stderr, and no row for the measurement)."""
    sessions: dict[int, requests.Session] = {}
    spare = iter(warm_ups)
    lock = threading.Lock()

    def call(index: int) -> int:
        session = sessions.setdefault(threading.get_ident(), requests.Session())
        if index == 0:
            with lock:
                feature = next(spare)
        else:
            feature = features[index - 1]
        response = session.post(url, data=json.dumps(feature, ensure_ascii=False).encode(), timeout=60,
                                headers={**headers, "Content-Type": "application/geo+json"})
        if response.status_code != 201:
            print(f"POST {url}: {response.status_code} {response.text[:300]}", file=sys.stderr, flush=True)
            raise RuntimeError(f"POST {url}: {response.status_code}")
        return 0 if index == 0 else 1

    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=int, default=1_000_000, help="land-use patches of the generated city")
    parser.add_argument("--requests", type=int, default=400, help="submissions per server and client count")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget per measurement")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the city is generated (default {WORK})")
    parser.add_argument("--keep", action="store_true", help="keep the city's database (a later run reuses it)")
    args = parser.parse_args(argv)

    base = load_settings(ROOT / "config" / "geoservice.yaml")
    city, _ = city_base_map(base, args.patches, args.seed, args.work)
    settings = copy_of_city(city)
    rows: list[tuple[str, int, Result]] = []
    try:
        layer, version_id, definition, points = construction_layer(settings)
        rings = squares(points, 2 * args.requests + 2 * WARM_UPS, args.seed)
        ours = bodies(definition, rings, True, version_id)
        theirs = bodies(definition, rings, False, version_id, fresh_ids(settings, len(rings)))
        runs = [(1, slice(0, args.requests), slice(-2 * WARM_UPS, -WARM_UPS)),
                (WARM_UPS, slice(args.requests, 2 * args.requests), slice(-WARM_UPS, None))]
        with tempfile.TemporaryDirectory(prefix="bench-submit-") as folder:
            workdir, port = Path(folder), _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {"GEOSERVICE_DATABASE_URL": settings.database.url, "GEOSERVICE_TOKENS": f"bench:restricted:edit:{TOKEN}"}
            with running([sys.executable, "-m", "geoservice", "serve", "--port", str(port)], env,
                         f"{url}/conformance", workdir / "geoservice.log"):
                items, headers = f"{url}/collections/{layer}/items", {"Authorization": f"Bearer {TOKEN}"}
                for clients, part, warm in runs:
                    rows.append(("geoservice (create + check)", clients, measure(
                        poster(items, ours[part], ours[warm], headers), len(ours[part]), clients, args.seconds)))
            provider = {**feature_provider(settings, f"feature_p{version_id}"), "editable": True}
            with pygeoapi_server(settings, "bench", [provider], workdir) as stock:
                for clients, part, warm in runs:
                    rows.append(("pygeoapi PostgreSQL (write only)", clients, measure(
                        poster(f"{stock}/collections/bench/items", theirs[part], theirs[warm], {}), len(theirs[part]),
                        clients, args.seconds)))
        if any(result.requests == 0 for _, _, result in rows):
            raise RuntimeError("a run stored nothing: see the refusals above")
        report(rows, layer)
    finally:
        db.drop_database(settings.database.url, COPY)
        if not args.keep:
            db.drop_database(city.database.url, DATABASE.format(patches=args.patches))
    return 0


def report(rows: list[tuple[str, int, Result]], layer: str) -> None:
    print(f"\nsubmissions to {layer!r}: POST /collections/{layer}/items, one Feature each")
    print("| server | clients | submissions | submissions/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, clients, result in rows:
        print(f"| {name} | {clients} | {result.requests} | {result.rate:.1f} | {result.percentile(0.5):.1f} | "
              f"{result.percentile(0.99):.1f} |")
    print("targets: p99 ≤ 100 ms with 1 client, ≥ 50 submissions/s with 8 clients (geoservice, create + check)")


if __name__ == "__main__":
    raise SystemExit(main())
