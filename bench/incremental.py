"""Incremental updates (常态更新) at city scale: an incremental `integrate` + `detect` after a change of 0.1 %, 1 % and
10 % of the land-use plan's features, clustered (the features nearest a random point, as a revised detailed plan)
and scattered (a random sample), against a full run of the same inputs, in one run.

    .venv/bin/python -m bench.incremental                              # the 1,000,000-patch city (quiet machine)
    .venv/bin/python -m bench.incremental --patches 2000 --fractions 0.01   # a smoke run
    .venv/bin/python -m bench.incremental --fractions 0.001,0.01 --patterns clustered   # the two targets alone

The city is bench/city.py's database geoservice_bench_city_N, reused when it holds a current integration run (kept by
`bench.city --keep` or `bench.tiles --keep`), else generated, ingested, integrated and detected. Its active land-use
plan is exported from PostGIS to a GeoPackage and ingested again as the baseline version (so the versions compared
come from one writer), integrated and detected in full. Then, for each fraction and pattern in turn, that many
features are edited on the previous case's table — half reshaped (scaled by 0.9 about their centre), half recoded (the
next code of the layer's) — the table is ingested as a new version (not timed), and the incremental `integrate` and
`detect` (timed) are followed by a full `integrate --full` and `detect --full` (timed), which must store as many
patches and conflicts per rule. At the end the original land-use version is made active again and integrated and
detected in full (unless --no-restore), so the city's database is left as it was found (a database this run built is dropped, unless --keep).

Printed: features changed, seconds of the incremental and the full runs, the ratio, and what the incremental runs
recomputed. Targets (issue 16): 1 % clustered ≤ 5 % of the full run's time, 0.1 % ≤ 1 %; the cost grows with the
change, not with the city.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely import affinity

from bench.city import DATABASE, ROOT, WORK, city_base_map, city_exists
from geoservice import db
from geoservice.basemap import integrate
from geoservice.db.connection import connect_url
from geoservice.ingest import ingest_layer
from geoservice.ingest.definition import Definition, LayerDefinition, Source
from geoservice.ingest.registry import activate_version
from geoservice.review import detect
from geoservice.settings import Settings, load_settings

LAYER = "city_landuse"
PATTERNS = ("clustered", "scattered")


@dataclass
class Case:
    """One measured change."""

    fraction: float
    pattern: str
    changed: int
    incremental: float
    full: float
    recomputed: int | None  # None: the change reached most of the plans, the base map was integrated in full
    patches: int

    def row(self) -> str:
        share = self.incremental / self.full if self.full else 0.0
        return (f"| {self.fraction:.1%} | {self.pattern} | {self.changed:,} | {self.incremental:,.2f} | {self.full:,.2f} "
                f"| {share:.3f} | {f'{self.recomputed:,}' if self.recomputed is not None else 'all (in full)'} of "
                f"{self.patches:,} |")


def export_layer(settings: Settings) -> tuple[gpd.GeoDataFrame, int]:
    """The active land-use plan as a table of its source fields (BSM, DLBM, DLMC) in the working CRS, and its
    version number."""
    with closing(connect_url(settings.database.url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT v.id, v.version FROM geoservice.layer_version v WHERE v.layer = %s AND v.is_active", (LAYER,))
        version_id, version = cur.fetchone()
        cur.execute("SELECT source_id, original_code, name, ST_AsBinary(geom) FROM geoservice.feature "
                    "WHERE version_id = %s ORDER BY id", (version_id,))
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=["BSM", "DLBM", "DLMC", "wkb"])
    geometry = shapely.from_wkb(np.asarray([bytes(w) for w in frame.pop("wkb")], dtype=object))
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=settings.working_crs), version


def publish(settings: Settings, frame: gpd.GeoDataFrame, folder: Path, number: int) -> None:
    """Ingest the table as the land-use plan's new active version."""
    path = folder / f"landuse-{number}.gpkg"
    pyogrio.write_dataframe(frame, path, layer="landuse")
    layer = LayerDefinition(name=LAYER, title="generated city-scale landuse", kind="land_use",
                            source=Source(path=path, layer="landuse"), encoding="UTF-8", code_field="DLBM",
                            crosswalk="tdgh_2017", id_field="BSM", name_field="DLMC", attributes=["DLMC"])
    ingest_layer(settings, Definition(file=folder / "landuse.yaml", layer=layer))


def edit(frame: gpd.GeoDataFrame, count: int, pattern: str, rng: np.random.Generator) -> None:
    """Reshape half of `count` features and recode the other half, clustered or scattered."""
    centres = shapely.centroid(np.asarray(frame.geometry))
    if pattern == "clustered":
        origin = centres[rng.integers(len(centres))]
        rows = np.argsort(shapely.distance(centres, origin), kind="stable")[:count]
    else:
        rows = rng.choice(len(frame), size=count, replace=False)
    reshaped, recoded = rows[: count // 2], rows[count // 2:]
    frame.loc[frame.index[reshaped], "geometry"] = [affinity.scale(g, 0.9, 0.9) for g in frame.geometry.iloc[reshaped]]
    codes = sorted(set(frame["DLBM"]))
    frame.loc[frame.index[recoded], "DLBM"] = [codes[(codes.index(c) + 1) % len(codes)] for c in frame["DLBM"].iloc[recoded]]


def timed(settings: Settings, full: bool) -> tuple[float, object, object]:
    """Seconds of integrate + detect, and their summaries."""
    started = time.perf_counter()
    mapped = integrate(settings, full=full)
    found = detect(settings, full=full)
    return time.perf_counter() - started, mapped, found


def run_case(settings: Settings, frame: gpd.GeoDataFrame, fraction: float, pattern: str, folder: Path, number: int,
             rng: np.random.Generator) -> Case:
    count = max(2, round(len(frame) * fraction))
    edit(frame, count, pattern, rng)
    publish(settings, frame, folder, number)
    seconds, mapped, found = timed(settings, full=False)
    if found.incremental is None:
        raise SystemExit(f"{fraction:.1%} {pattern}: the detection was not incremental")
    full_seconds, full_map, full_found = timed(settings, full=True)
    counts = [{rule: entry["count"] for rule, entry in summary.by_rule.items()} for summary in (found, full_found)]
    if mapped.patches != full_map.patches or counts[0] != counts[1]:
        raise SystemExit(f"{fraction:.1%} {pattern}: the incremental runs stored {mapped.patches} patches and "
                         f"{counts[0]}, the full runs {full_map.patches} and {counts[1]}")
    recomputed = mapped.incremental["patches_added"] if mapped.incremental else None  # None: integrated in full
    return Case(fraction, pattern, count, seconds, full_seconds, recomputed, mapped.patches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=1_000_000, help="land-use patches of the generated city")
    parser.add_argument("--fractions", default="0.001,0.01,0.1", help="shares of the land-use features changed")
    parser.add_argument("--patterns", default=",".join(PATTERNS), help="how the changed features lie, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=WORK, help="where generated cities are kept")
    parser.add_argument("--no-restore", action="store_true", help="leave the last edited version active")
    parser.add_argument("--keep", action="store_true", help="keep a city database this run built (a later run reuses it)")
    args = parser.parse_args(argv)
    base = load_settings(ROOT / "config" / "geoservice.yaml")
    existed = city_exists(base, args.patches)
    settings, _ = city_base_map(base, args.patches, args.seed, args.work)
    rng = np.random.default_rng(args.seed)
    frame, original = export_layer(settings)
    cases = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
            folder = Path(tmp)
            publish(settings, frame, folder, 0)
            print("baseline version ingested; full runs …", flush=True)
            timed(settings, full=True)
            for number, (fraction, pattern) in enumerate(
                    ((float(f), p) for f in args.fractions.split(",") for p in args.patterns.split(",")), start=1):
                cases.append(run_case(settings, frame, fraction, pattern, folder, number, rng))
                print(f"  {cases[-1].row()}", flush=True)
        if not args.no_restore:
            activate_version(settings, LAYER, original)
            timed(settings, full=True)
    finally:
        if not existed and not args.keep:
            db.drop_database(settings.database.url, DATABASE.format(patches=args.patches))
    print(f"\nincremental integrate + detect against a full run of the same inputs, the {args.patches:,}-patch city "
          f"(land-use plan: {len(frame):,} features)\n")
    print("| changed | pattern | features | incremental s | full s | incremental ÷ full | patches recomputed |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for case in cases:
        print(case.row())


if __name__ == "__main__":
    main()
