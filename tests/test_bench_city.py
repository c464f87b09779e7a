"""Smoke test of bench/city.py: a tiny city through geoservice, GeoPandas and PostGIS SQL, which must agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.database  # it creates a database of its own

ROOT = Path(__file__).resolve().parent.parent


def test_bench_city_runs_and_the_alternatives_do_the_same_work(tmp_path) -> None:
    # the script asserts that GeoPandas and PostGIS SQL find geoservice's patches, areas, line overlaps and conflicts
    done = subprocess.run([sys.executable, "-m", "bench.city", "--patches", "2000", "--work", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the same job on the 2,000-patch city" in done.stdout
    for line in ("geoservice (integrate", "GeoPandas (overlay", "PostGIS SQL (ST_Subdivide", "2,000 ingest",
                 "2,000 integrate", "2,000 detect"):
        assert line in done.stdout
