"""Ingest benchmark: geoservice ingest vs ogr2ogr -f PostgreSQL on the same generated GeoPackage, in one run.

The file is the generator's land-use plan (Voronoi patches over Xiamen's land) written in CGCS2000 lon/lat
(EPSG:4490), so both tools reproject to the working CRS (EPSG:4548); a share of the polygons are made
self-intersecting (bow-ties), which geoservice repairs and ogr2ogr loads as they are. Both load with COPY
and build a GiST index. Prints seconds, rows/s and the ratio.

On a shared machine the seconds wander with the load; --repeat N runs the pair N times, alternating the tools, and
reports each pair's ratio and the median (the ratio within a pair is what to compare).

    .venv/bin/python -m bench.ingest [--rows 1000000] [--invalid 0.005] [--repeat 1] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import shapely

from geoservice import db
from geoservice.datagen.build import WORKING_CRS
from geoservice.datagen.districts import land_polygon, read_districts, reproject
from geoservice.datagen.landscape import Landscape
from geoservice.datagen.output import write_layer
from geoservice.datagen.plans import DistrictIndex, land_use_plan
from geoservice.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".geoservice" / "bench" / "ingest"
DATABASE = "geoservice_bench_ingest"


def bow_ties(geometries: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, int]:
    """Swap two neighbouring exterior vertices in a share of the polygons: self-intersecting rings."""
    rng = np.random.default_rng(seed)
    picked = np.flatnonzero(rng.uniform(size=len(geometries)) < share)
    out = geometries.copy()
    rings = shapely.get_exterior_ring(shapely.get_geometry(geometries[picked], 0))
    coords, owner = shapely.get_coordinates(rings, return_index=True)
    starts = np.searchsorted(owner, np.arange(len(picked)))
    coords[[starts + 1, starts + 2]] = coords[[starts + 2, starts + 1]]  # vertices 1 and 2 swap places
    out[picked] = shapely.polygons(shapely.linearrings(coords, indices=owner))
    return out, len(picked)


def make_file(rows: int, invalid: float, path: Path) -> tuple[int, int]:
    """The benchmark GeoPackage (cached by row count); (features, invalid ones)."""
    if path.exists():
        import pyogrio

        return int(pyogrio.read_info(path)["features"]), -1
    districts = read_districts()
    land = land_polygon(districts, WORKING_CRS)
    index = DistrictIndex(districts.adcode, districts.name, reproject(districts.geometry, districts.crs, WORKING_CRS),
                          ("350200", "厦门市"))
    layer = land_use_plan(Landscape(land, 1, WORKING_CRS), rows, 1, index)
    layer.geometry, broken = bow_ties(layer.geometry, invalid, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_layer(layer, path, crs="EPSG:4490", layer_name="landuse")
    return len(layer), broken


def definition(path: Path) -> Path:
    yaml_path = path.with_suffix(".yaml")
    yaml_path.write_text(
        f"name: bench_landuse\ntitle: benchmark land-use plan\nkind: land_use\nsource: {{path: {path.name}}}\n"
        "code_field: DLBM\ncrosswalk: tdgh_2017\nid_field: BSM\nname_field: DLMC\nattributes: [DLMC]\n",
        encoding="utf-8")
    return yaml_path


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed: {result.stderr[-2000:]}")
    return seconds, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--invalid", type=float, default=0.005, help="share of bow-tie polygons (default 0.005)")
    parser.add_argument("--repeat", type=int, default=1, help="run the pair this many times, alternating (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and the database")
    args = parser.parse_args()
    if not shutil.which("ogr2ogr"):
        sys.exit("ogr2ogr not found: apt-get install gdal-bin")

    path = WORK / f"landuse_{args.rows}.gpkg"
    started = time.perf_counter()
    features, broken = make_file(args.rows, args.invalid, path)
    print(f"file: {path.name}, {features:,} polygons in EPSG:4490, {path.stat().st_size / 1e6:.0f} MB"
          f"{f', {broken:,} bow-ties' if broken >= 0 else ' (cached)'} ({time.perf_counter() - started:.0f} s to make)")

    settings = db.create_scratch_database(load_settings(ROOT / "config" / "geoservice.yaml"), DATABASE, lambda _: None)
    url = settings.database.url
    env = {**os.environ, "GEOSERVICE_DATABASE_URL": url}
    parts = urlsplit(url)
    pg = f"PG:host={parts.hostname} port={parts.port} dbname={DATABASE} user={parts.username} password={parts.password}"
    pairs: list[tuple[float, float]] = []
    try:
        for _ in range(max(1, args.repeat)):
            ogr_s, _ = timed(["ogr2ogr", "-f", "PostgreSQL", pg, str(path), "-t_srs", "EPSG:4548", "-nln", "bench_ogr",
                              "-nlt", "MULTIPOLYGON", "-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=GIST",
                              "--config", "PG_USE_COPY", "YES", "-overwrite"], env)
            ours_s, _ = timed([sys.executable, "-m", "geoservice", "ingest", str(definition(path))], env)
            pairs.append((ogr_s, ours_s))
            if args.repeat > 1:
                print(f"  pair {len(pairs)}: ogr2ogr {ogr_s:.1f} s, geoservice {ours_s:.1f} s, ratio {ours_s / ogr_s:.2f}", flush=True)
        counts = db.connect_url(url)
        with counts.cursor() as cur:
            cur.execute("SELECT count(*) FROM bench_ogr")
            ogr_rows = cur.fetchone()[0]
            cur.execute("SELECT feature_count, summary->>'repaired' FROM geoservice.layer_version "
                        "WHERE layer = 'bench_landuse' AND is_active")
            our_rows, repaired = cur.fetchone()
        counts.close()
    finally:
        if not args.keep:
            db.drop_database(url, DATABASE)
    ratios = sorted(ours / ogr for ogr, ours in pairs)
    ogr_s, ours_s = pairs[0] if len(pairs) == 1 else sorted(pairs, key=lambda p: p[1] / p[0])[len(pairs) // 2]
    label = "" if len(pairs) == 1 else f" (the median pair of {len(pairs)})"
    print(f"\n{'tool':34s} {'rows':>10s} {'seconds':>8s} {'rows/s':>9s} {'ratio':>6s}{label}")
    print(f"{'ogr2ogr -f PostgreSQL (COPY)':34s} {ogr_rows:>10,d} {ogr_s:>8.1f} {ogr_rows / ogr_s:>9,.0f} {1.0:>6.2f}")
    print(f"{'geoservice ingest (+validate/repair)':34s} {our_rows:>10,d} {ours_s:>8.1f} {our_rows / ours_s:>9,.0f} "
          f"{ours_s / ogr_s:>6.2f}")
    if len(pairs) > 1:
        print(f"ratios: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"geoservice repaired {repaired} polygons; target: ratio ≤ 1.00")


if __name__ == "__main__":
    main()
