"""Smoke runs of the benchmarks under bench/ at the smallest sizes they take: each must exit 0 and print its table, so
a benchmark cannot rot unnoticed (the recorded runs: README, Performance). bench/city.py has its own smoke test,
tests/test_bench_city.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import ROOT, free_port

WORK = ROOT / ".geoservice" / "bench"
#: script: its suite, its arguments, lines of the table it prints, and what it caches under WORK (removed after the
#: run, so that every smoke run makes it again)
SMOKE = {
    "detect": (pytest.mark.unit, ["--patches", "1000", "--repeat", "1"],
               ["full overlay (union of both plans)", "conflict-only (城建土非 + 土建城非 pairs only)"], []),
    "overlay": (pytest.mark.database, ["--sizes", "1000"],
                ["1,000 × 1,000: method", "geopandas union", "postgis ST_Intersection join"], []),
    "incremental": (pytest.mark.database, ["--patches", "2000", "--fractions", "0.01"],
                    ["| changed | pattern | features |", "| 1.0% | clustered |", "| 1.0% | scattered |"], ["city-2000"]),
    "ingest": (pytest.mark.database, ["--rows", "1000"],
               ["ogr2ogr -f PostgreSQL (COPY)", "geoservice ingest (+validate/repair)"],
               ["ingest/landuse_1000.gpkg", "ingest/landuse_1000.yaml"]),
    "queries": (pytest.mark.http, ["--patches", "500", "--samples", "10", "--port", "{port}"],
                ["lookup: GET /lookup", "check: project-check process", "check: plain SQL"], ["queries-500"]),
    "scale": (pytest.mark.database, ["--patches", "2000", "--curve", "400,100"],
              ["| 2,000 | in process (2 threads) | integrate |", "| 2,000 | local:1 (cluster start",
               "| 2,000 | local:2 (cluster start", "tile-size curve (local:2, integrate)", "| 2,000 | 100 |"], ["city-2000"]),
    "serve": (pytest.mark.http, ["--polygons", "500", "--requests", "4", "--seconds", "0.5", "--page-size", "500"],
              ["| bbox 1%, limit=1000 | 8 | tipg |", "| geoservice |", "| pygeoapi |", "| tipg |"], []),
    "submit": (pytest.mark.http, ["--patches", "1000", "--requests", "10", "--seconds", "30"],
               ["| geoservice (create + check) | 1 |", "| geoservice (create + check) | 8 |",
                "| pygeoapi PostgreSQL (write only) | 8 |"], ["city-1000"]),
    "tiles": (pytest.mark.http, ["--patches", "1500", "--tiles", "10", "--seconds", "60"],
              ["| geoservice | cold |", "| geoservice | warm |", "| tipg | first |", "| pygeoapi | first |", "per zoom",
               "z10 tiles covering the city", "viewer: the whole city drawn"], ["city-1500"]),
}
SMOKED_ELSEWHERE = {"city"}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def test_every_benchmark_has_a_smoke_run() -> None:
    scripts = {path.stem for path in (ROOT / "bench").glob("*.py") if "def main(" in path.read_text(encoding="utf-8")}
    assert scripts == set(SMOKE) | SMOKED_ELSEWHERE


@pytest.mark.parametrize("script", [pytest.param(name, marks=suite) for name, (suite, *_) in SMOKE.items()])
def test_benchmark_smoke_run(script: str) -> None:
    _, arguments, table, cached = SMOKE[script]
    command = [sys.executable, "-m", f"bench.{script}", *(a.format(port=free_port()) for a in arguments)]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    finally:
        for path in cached:
            _remove(WORK / path)
    assert result.returncode == 0, f"{' '.join(command[2:])} exited {result.returncode}:\n{result.stderr[-3000:]}"
    for line in table:
        assert line in result.stdout, f"{script} did not print {line!r}:\n{result.stdout[-3000:]}"
