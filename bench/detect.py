"""Conflict-only detection against the full overlay it avoids, on the generator's city-scale plans.

The two-plan rules (城建土非, 土建城非) evaluated by `geoservice.conflicts.evaluate.plan_difference` — which
overlays only the features whose codes can conflict — against the full planar union of the two plans
(`geoservice.overlay.overlay(..., "union")`) that a detect-after-the-base-map approach would need first.
No database: the land-use and urban plans come straight from the generator, in EPSG:4548.

    .venv/bin/python -m bench.detect [--patches 100000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from geoservice.conflicts.evaluate import plan_difference
from geoservice.datagen.build import WORKING_CRS
from geoservice.datagen.districts import land_polygon, read_districts, reproject
from geoservice.datagen.landscape import Landscape
from geoservice.datagen.plans import DistrictIndex, land_use_plan, unified_of, urban_plan
from geoservice.db.layers import FeatureArrays
from geoservice.overlay import overlay
from geoservice.settings import load_settings


def plans(patches: int, seed: int) -> tuple[FeatureArrays, FeatureArrays]:
    """The generator's land-use plan (≈patches) and urban plan (0.8 × patches) as feature arrays."""
    districts = read_districts()
    land = land_polygon(districts, WORKING_CRS)
    index = DistrictIndex(districts.adcode, districts.name, reproject(districts.geometry, districts.crs, WORKING_CRS),
                          ("350200", "厦门市"))
    landscape = Landscape(land, seed, WORKING_CRS)
    out = []
    for layer, crosswalk, code in ((land_use_plan(landscape, patches, seed, index), "tdgh_2017", "DLBM"),
                                   (urban_plan(landscape, int(patches * 0.8), seed, index), "gb50137_2011", "YDDM")):
        n = len(layer)
        empty = np.full(n, None, dtype=object)
        out.append(FeatureArrays(layer.name, np.arange(n, dtype=np.int64), unified_of(layer.fields[code], crosswalk),
                                 empty, empty, layer.geometry))
    return out[0], out[1]


def best(repeat: int, work) -> float:  # noqa: ANN001 - a callable
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    construction = load_settings().construction_codes
    land, plan = plans(args.patches, args.seed)
    print(f"land-use plan {len(land):,} patches, urban plan {len(plan):,} patches (EPSG:4548, Xiamen's land)")
    counts = {}

    def conflict_only() -> None:
        for difference in ("urban_only", "land_only"):
            counts[difference] = len(plan_difference(land, plan, difference, construction, None))

    full = best(args.repeat, lambda: overlay(land.geometries, plan.geometries, how="union"))
    only = best(args.repeat, conflict_only)
    print(f"\n{'method':52s} {'seconds':>8s} {'ratio':>6s}")
    print(f"{'full overlay (union of both plans)':52s} {full:>8.2f} {1.0:>6.2f}")
    print(f"{'conflict-only (城建土非 + 土建城非 pairs only)':52s} {only:>8.2f} {only / full:>6.2f}")
    print(f"conflict pieces: {counts}; target: ratio ≤ 0.35")


if __name__ == "__main__":
    main()
