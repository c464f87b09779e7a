"""Integration and detection as spatial tiles on Dask distributed, against the in-process run, on the generator's city.

    .venv/bin/python -m bench.scale                                          # 300k and 1M land-use patches
    .venv/bin/python -m bench.scale --patches 2000 --curve 400,100           # a smoke run
    .venv/bin/python -m bench.scale --patches 1000000 --workers 2 --curve ''  # in process against local:2 alone

For each size the generator's city (`python -m geoservice.datagen city`, reused from .geoservice/bench/city-N) is
ingested into a fresh database geoservice_bench_scale_N, then integrated and detected (full runs; detected twice in
process, the second timed: the first detection in a database creates every review case, later ones find them)

1. in process (`integration.threads` 2, the default path),
2. on a LocalCluster of 1 worker process (`local:1`), and
3. on a LocalCluster of 2 worker processes (`local:2`), one thread each;

each distributed run is checked to store the in-process patch and conflict counts. Per run it prints the seconds, the
tiles, the tiles' own seconds summed, the scheduler's overhead (connecting and checking the workers, planning the
tiles, and the time the worker threads were idle during the tile phase: waiting for tasks, serialization, the last
tiles' imbalance) and the throughput per worker (input plan features per second per worker thread). The clusters are
started once per size (their start is printed apart: a real cluster is already running).

Then the tile-size curve: `local:2` integrations with `compute.tile_features` from `--curve`, tiles, seconds and
throughput per worker. Targets (issue 17): local:2 within 20 % of in-process with 2 threads; the per-worker throughput
does not fall as tiles are added.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from geoservice import db
from geoservice.basemap import integrate
from geoservice.datagen.build import generate_city
from geoservice.db.connection import connect_url
from geoservice.ingest import ingest_layer, load_definition
from geoservice.review import detect
from geoservice.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".geoservice" / "bench"
DATABASE = "geoservice_bench_scale_{patches}"


def city_settings(base: Settings, patches: int, seed: int, work: Path) -> tuple[Settings, list[Path]]:
    """A fresh database for the city of `patches` land-use patches and its layer definitions (generated unless there)."""
    folder = work / f"city-{patches}"
    if not (folder / "landuse.yaml").exists():
        generate_city(folder, n_patches=patches, seed=seed)
    settings = db.create_scratch_database(base, DATABASE.format(patches=patches), lambda _: None)
    return settings, [ROOT / "layers" / "districts.yaml", *sorted(folder.glob("*.yaml"))]


def plan_features(settings: Settings) -> int:
    conn = connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT sum(v.feature_count) FROM geoservice.layer_version v JOIN geoservice.layer l "
                        "ON l.name = v.layer WHERE v.is_active AND l.kind IN ('land_use', 'urban_plan')")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def with_compute(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"compute": settings.compute.model_copy(update=changes)})


def measure(settings: Settings, scheduler: str | None, features: int,
            steps: tuple[str, ...] = ("integrate", "detect")) -> dict[str, dict[str, object]]:
    """Full runs of `steps` (in process without a scheduler): per step its figures."""
    out = {}
    for step in steps:
        run = integrate if step == "integrate" else detect
        started = time.perf_counter()
        summary = run(settings, scheduler=scheduler, full=True)
        seconds = time.perf_counter() - started
        count = summary.patches if step == "integrate" else sum(v["count"] for v in summary.by_rule.values())
        row: dict[str, object] = {"seconds": seconds, "count": count, "tiles": None, "tile_sum": None,
                                  "overhead": None, "per_worker": features / seconds / 2 if scheduler is None else None}
        if scheduler is not None:
            timings, threads = summary.timings, summary.distributed["worker_threads"]
            tile_sum = timings["tile seconds (sum)"]
            idle = max(0.0, timings["tiles"] * threads - tile_sum) / threads
            row.update(tiles=summary.distributed["tiles"], tile_sum=tile_sum,
                       overhead=timings["connect"] + timings["partition"] + idle,
                       per_worker=features / seconds / threads)
        out[step] = row
    return out


def fmt(value: object, spec: str = ",.1f") -> str:
    return "" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", default="300000,1000000", help="land-use patches per city, comma-separated")
    parser.add_argument("--curve", default="200000,50000,20000,5000,1000",
                        help="compute.tile_features of the tile-size curve (local:2 integrations), comma-separated; "
                             "empty: no curve")
    parser.add_argument("--workers", default="1,2", help="the LocalClusters' worker processes, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the cities are generated (default {WORK})")
    args = parser.parse_args(argv)
    base = load_settings(ROOT / "config" / "geoservice.yaml")
    base = base.model_copy(update={"integration": base.integration.model_copy(update={"threads": 2})})
    db.up(base, lambda _: None)
    table, curve = [], []
    for patches in sorted(int(size) for size in args.patches.split(",")):
        settings, definitions = city_settings(base, patches, args.seed, args.work)
        try:
            for path in definitions:
                ingest_layer(settings, load_definition(path))
            features = plan_features(settings)
            inproc = measure(settings, None, features)
            # the first detection in a fresh database creates every review case (~20 s at 1M); the distributed runs
            # find them, as every run after a bureau's first does: the in-process figure is a second detection
            inproc["detect"] = measure(settings, None, features, ("detect",))["detect"]
            table += [(patches, "in process (2 threads)", step, row, None) for step, row in inproc.items()]
            for workers in (int(w) for w in args.workers.split(",")):
                started = time.perf_counter()
                with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
                    start = time.perf_counter() - started
                    rows = measure(settings, cluster.scheduler_address, features)
                    for step, row in rows.items():
                        if row["count"] != inproc[step]["count"]:
                            raise SystemExit(f"local:{workers} {step} stored {row['count']} where in process stored "
                                             f"{inproc[step]['count']}")
                        table.append((patches, f"local:{workers} (cluster start {start:.1f} s)", step, row,
                                      row["seconds"] / inproc[step]["seconds"]))
                    if workers == 2:
                        for target in (int(t) for t in args.curve.split(",") if t):
                            started = time.perf_counter()
                            summary = integrate(with_compute(settings, tile_features=target),
                                                scheduler=cluster.scheduler_address)
                            seconds = time.perf_counter() - started
                            curve.append((patches, target, summary.distributed["tiles"], seconds,
                                          features / seconds / summary.distributed["worker_threads"]))
            print(f"city of {patches:,} patches done", flush=True)
        finally:
            if not args.keep:
                db.drop_database(settings.database.url, DATABASE.format(patches=patches))
    print("\n| patches | mode | step | seconds | tiles | tile s (sum) | overhead s | features/s per worker | × in process |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for patches, mode, step, row, ratio in table:
        print(f"| {patches:,} | {mode} | {step} | {row['seconds']:.2f} | {fmt(row['tiles'], ',')} | "
              f"{fmt(row['tile_sum'], ',.2f')} | {fmt(row['overhead'], ',.2f')} | {fmt(row['per_worker'], ',.0f')} | "
              f"{fmt(ratio, '.2f')} |")
    print("\ntile-size curve (local:2, integrate)\n")
    print("| patches | tile features | tiles | seconds | features/s per worker |")
    print("|---:|---:|---:|---:|---:|")
    for patches, target, tiles, seconds, per_worker in curve:
        print(f"| {patches:,} | {target:,} | {tiles:,} | {seconds:.2f} | {per_worker:,.0f} |")


if __name__ == "__main__":
    main()
