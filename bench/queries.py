"""Query latency for location services: point lookup and project check on submit, on city-scale layers.

    .venv/bin/python -m bench.queries                     # 1,000,000 land-use patches (the recorded run)
    .venv/bin/python -m bench.queries --patches 20000 --samples 100   # a smoke run

The generator's city (`--patches` land-use patches, 0.8 × as many urban-plan patches, the red line, basic
farmland, development boundary and `--projects` construction projects, over Xiamen's real districts) is ingested
into a scratch database `geoservice_bench_queries_<patches>`, integrated and detected. Then, one request at a time:

- point lookup at `--samples` random points on land: the library call, `GET /lookup` of a running
  `geoservice serve`, and — what a user would write instead — one PostGIS statement finding the base-map patch
  with both plans' class names (no protection lines, no conflicts);
- project check at `--samples` random project squares (100–400 m a side, half of them over the red line): the
  library call, the `project-check` process over HTTP, and a hand-written PostGIS statement intersecting the
  project with the red line and basic farmland and subtracting the development boundary (three of the rules,
  no district split, no minimum areas).

Prints p50/p99 in milliseconds and the ratios geoservice / plain SQL. Targets (issue 7): lookup p50 ≤ 10 ms,
project check p99 ≤ 50 ms. The database is dropped at the end (`--keep` keeps it and reuses it next time).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests
import shapely
import shapely.geometry

from geoservice import db
from geoservice.basemap import integrate
from geoservice.conflicts import load_rules
from geoservice.review import detect
from geoservice.datagen.build import generate_city
from geoservice.db.connection import connect_url, with_database
from geoservice.db.read import current_rows_sql
from geoservice.ingest import ingest_layer, load_definition
from geoservice.queries import check_project, lookup_point
from geoservice.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".geoservice" / "bench"
DATABASE = "geoservice_bench_queries_{patches}"
TOKEN = "bench-queries-token"

LOOKUP_SQL = f"""
SELECT p.id, p.land_code, lc.name_zh, p.plan_code, pc.name_zh, p.district_name
FROM geoservice.basemap_patch p
LEFT JOIN geoservice.land_class lc ON lc.code = p.land_code LEFT JOIN geoservice.land_class pc ON pc.code = p.plan_code
WHERE {current_rows_sql("integration", "p")}
  AND ST_Intersects(p.geom, ST_Transform(ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 4326), 4548)) LIMIT 1
"""
CHECK_SQL = """
WITH p AS (SELECT ST_GeomFromText(%(wkt)s, 4548) AS g),
     v AS (SELECT l.kind, v.id FROM geoservice.layer_version v JOIN geoservice.layer l ON l.name = v.layer WHERE v.is_active)
SELECT 'red_line', f.id, ST_Area(ST_Intersection(f.geom, p.g)) FROM geoservice.feature f, p
 WHERE f.version_id = (SELECT id FROM v WHERE kind = 'red_line') AND ST_Intersects(f.geom, p.g)
UNION ALL
SELECT 'basic_farmland', f.id, ST_Area(ST_Intersection(f.geom, p.g)) FROM geoservice.feature f, p
 WHERE f.version_id = (SELECT id FROM v WHERE kind = 'basic_farmland') AND ST_Intersects(f.geom, p.g)
UNION ALL
SELECT 'outside_dev_boundary', NULL, ST_Area(ST_Difference(p.g, coalesce(
    (SELECT ST_Union(f.geom) FROM geoservice.feature f WHERE f.version_id = (SELECT id FROM v WHERE kind = 'dev_boundary')
       AND ST_Intersects(f.geom, p.g)), ST_GeomFromText('POLYGON EMPTY', 4548)))) FROM p
"""


def prepare(base: Settings, patches: int, projects: int, keep: bool) -> Settings:
    """The scratch database with the city ingested, integrated and detected (reused when kept from a previous run)."""
    folder, name = WORK / f"queries-{patches}", DATABASE.format(patches=patches)
    server = db.up(base, lambda _: None)
    settings = base.model_copy(update={"database": base.database.model_copy(update={"url": with_database(server, name)})})
    if keep:  # a kept database is reused from where it stopped
        try:
            with connect_url(settings.database.url) as conn, conn.cursor() as cur:
                cur.execute("SELECT (SELECT count(*) FROM geoservice.integration_run WHERE is_current), "
                            "(SELECT count(*) FROM geoservice.detection_run WHERE is_current)")
                integrated, detected = cur.fetchone()
        except Exception:  # noqa: BLE001 - no kept database: build it
            integrated = detected = 0
        if integrated:
            print(f"reusing the kept database {name}")
            if not detected:
                clock = time.perf_counter()
                detect(settings)
                print(f"  detected ({time.perf_counter() - clock:.0f} s)")
            return settings
    started = time.perf_counter()
    if not (folder / "landuse.yaml").exists():
        generate_city(folder, n_patches=patches, n_projects=projects)
    print(f"city: {folder} ({time.perf_counter() - started:.0f} s)")
    settings = db.create_scratch_database(base, name, lambda _: None)
    for definition in [load_definition(ROOT / "layers" / "districts.yaml"), *map(load_definition, sorted(folder.glob("*.yaml")))]:
        summary = ingest_layer(settings, definition)
        print(f"  ingested {definition.layer.name}: {summary.kept + summary.repaired:,} features")
    clock = time.perf_counter()
    integrate(settings)
    print(f"  integrated ({time.perf_counter() - clock:.0f} s)")
    clock = time.perf_counter()
    detect(settings)
    print(f"  detected ({time.perf_counter() - clock:.0f} s)")
    return settings


def samples(settings: Settings, count: int, seed: int) -> tuple[list[tuple[float, float]], list[shapely.Polygon]]:
    """Random lon/lat points on the base map; project squares in EPSG:4548, half of them over the red line."""
    with connect_url(settings.database.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT setseed(%s)", (seed / 1e6,))
        cur.execute("SELECT ST_X(q), ST_Y(q), ST_X(w), ST_Y(w) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), 4326) q, "
                    "ST_PointOnSurface(geom) w FROM geoservice.basemap_patch p WHERE "
                    + current_rows_sql("integration", "p") + " ORDER BY random() LIMIT %s) s", (count,))
        rows = cur.fetchall()
        cur.execute("SELECT ST_X(w), ST_Y(w) FROM (SELECT ST_PointOnSurface(f.geom) w FROM geoservice.feature f "
                    "JOIN geoservice.layer_version v ON v.id = f.version_id JOIN geoservice.layer l ON l.name = v.layer "
                    "WHERE v.is_active AND l.kind = 'red_line' ORDER BY random() LIMIT %s) s", (count // 2,))
        red = cur.fetchall()
    rng = random.Random(seed)
    centres = [(x, y) for _, _, x, y in rows[: count - len(red)]] + red
    squares = []
    for x, y in centres:
        half = rng.uniform(50, 200)
        squares.append(shapely.box(x - half, y - half, x + half, y + half))
    return [(lon, lat) for lon, lat, _, _ in rows], squares


def timed(calls: list[Callable[[], object]]) -> list[float]:
    """Milliseconds of each call, after two warm-up calls."""
    for call in calls[:2]:
        call()
    out = []
    for call in calls:
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def start_server(settings: Settings, port: int) -> subprocess.Popen:
    env = {**os.environ, "GEOSERVICE_DATABASE_URL": settings.database.url, "GEOSERVICE_TOKENS": f"bench:restricted::{TOKEN}"}
    process = subprocess.Popen([sys.executable, "-m", "geoservice", "serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/conformance", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            time.sleep(0.3)
    process.kill()
    sys.exit("geoservice serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=1_000_000)
    parser.add_argument("--projects", type=int, default=None, help="construction projects (default patches / 100)")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--port", type=int, default=5093)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse a kept one)")
    args = parser.parse_args()
    settings = prepare(load_settings(ROOT / "config" / "geoservice.yaml"), args.patches, args.projects, args.keep)
    try:
        with connect_url(settings.database.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT l.kind, v.feature_count FROM geoservice.layer_version v JOIN geoservice.layer l "
                        "ON l.name = v.layer WHERE v.is_active ORDER BY 1")
            print("active layers: " + ", ".join(f"{kind} {n:,}" for kind, n in cur.fetchall()))
            cur.execute("SELECT count(*) FROM geoservice.basemap_patch p WHERE " + current_rows_sql("integration", "p"))
            print(f"base map: {cur.fetchone()[0]:,} patches")
        points, squares = samples(settings, args.samples, args.seed)
        rules = load_rules(settings.path(settings.paths.rules))
        conn = connect_url(settings.database.url)
        conn.autocommit = True
        cur = conn.cursor()
        results: dict[str, list[float]] = {}
        results["lookup: library"] = timed([lambda x=x, y=y: lookup_point(cur, settings, x, y) for x, y in points])
        results["lookup: plain SQL"] = timed([lambda x=x, y=y: (cur.execute(LOOKUP_SQL, {"x": x, "y": y}), cur.fetchall())
                                              for x, y in points])
        results["check: library"] = timed([lambda g=g: check_project(cur, settings, rules, g, "EPSG:4548", "0701")
                                           for g in squares])
        results["check: plain SQL"] = timed([lambda g=g: (cur.execute(CHECK_SQL, {"wkt": g.wkt}), cur.fetchall())
                                             for g in squares])
        found = sum(1 for g in squares[: len(squares)] if check_project(cur, settings, rules, g, "EPSG:4548", "0701"))
        conn.close()
        server = start_server(settings, args.port)
        try:
            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {TOKEN}"
            base = f"http://127.0.0.1:{args.port}"
            results["lookup: GET /lookup"] = timed([lambda x=x, y=y: http.get(f"{base}/lookup", params={"x": x, "y": y}
                                                                               ).raise_for_status() for x, y in points])
            results["check: project-check process"] = timed([
                lambda g=g: http.post(f"{base}/processes/project-check/execution", json={"inputs": {
                    "geometry": shapely.geometry.mapping(g), "crs": "EPSG:4548", "code": "0701"}}).raise_for_status()
                for g in squares])
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        if not args.keep:
            db.drop_database(settings.database.url, DATABASE.format(patches=args.patches))
    print(f"\n{args.samples} points, {len(squares)} project squares ({found} with conflicts); one request at a time")
    print(f"{'':32s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s}")
    for name, values in results.items():
        print(f"{name:32s} {p(values, 50):>8.2f} {p(values, 99):>8.2f} {statistics.fmean(values):>8.2f}")
    for kind in ("lookup", "check"):
        ours, plain = results[f"{kind}: library"], results[f"{kind}: plain SQL"]
        print(f"{kind}: library / plain SQL p50 ratio {p(ours, 50) / p(plain, 50):.2f}")
    print(f"targets: lookup p50 ≤ 10 ms (GET {p(results['lookup: GET /lookup'], 50):.1f}); "
          f"check p99 ≤ 50 ms (process {p(results['check: project-check process'], 99):.1f})")


if __name__ == "__main__":
    main()
