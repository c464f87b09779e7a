"""python -m geoservice.datagen demo | city --patches N --out DIR [--format gpkg]"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from geoservice.datagen.build import CITY_FORMATS, DEMO_DIR, DEMO_SEED, demo_counts, generate_city, write_demo
from geoservice.datagen.output import file_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geoservice.datagen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="regenerate the committed demo files in layers/demo/")
    demo.add_argument("--out", type=Path, default=DEMO_DIR, help="output folder (default: layers/demo)")
    demo.add_argument("--seed", type=int, default=DEMO_SEED)
    city = commands.add_parser("city", help="city-scale layers for the benchmarks")
    city.add_argument("--patches", type=int, default=300_000, help="land-use plan patches (default 300000)")
    city.add_argument("--out", type=Path, required=True, help="output folder")
    city.add_argument("--format", choices=sorted(CITY_FORMATS), default="gpkg")
    city.add_argument("--crs", default="EPSG:4548", help="CRS of the files (default EPSG:4548)")
    city.add_argument("--seed", type=int, default=1)
    city.add_argument("--projects", type=int, default=None, help="construction projects (default patches/100)")
    city.add_argument("--no-definitions", action="store_true", help="do not write a layer YAML per file")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.command == "demo":
        files = write_demo(args.out, args.seed)
        counts = demo_counts(args.out)
        for name, paths in files.items():
            count = f"{counts[name]:>6,d} features" if name in counts else " " * 15
            print(f"{name:19s} {count}  {file_size(paths) / 1e3:8.1f} kB  " + ", ".join(p.name for p in paths))
        print(
            f"total {sum(file_size(p) for p in files.values()) / 1e6:.2f} MB in {time.perf_counter() - started:.1f} s"
        )
    else:
        result = generate_city(
            args.out, args.patches, args.seed, args.format, args.crs, args.projects, definitions=not args.no_definitions
        )
        for line in result.lines():
            print(line)
        print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
