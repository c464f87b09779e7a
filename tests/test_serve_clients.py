"""Real clients against the served demo: OWSLib, GDAL's OAPIF driver (Debian gdal-bin) and the ogctests verifier
(installed apart, into .geoservice/ogctests, by scripts/test-tools.sh: its pins would downgrade this environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from owslib.ogcapi.features import Features
from servers import ROOT, TOKENS, Server, bearer
from system_tools import command
from test_serve_params import served_ids

OGCTESTS_DIR = ROOT / ".geoservice" / "ogctests"


def test_owslib_collections_items_bbox_filter_and_item(served: Server) -> None:
    api = Features(served.url, headers=bearer("tester"))
    assert "conflicts" in [c["id"] for c in api.collections()["collections"]]
    assert api.collection("conflicts")["storageCrs"].endswith("/4548")
    assert "class_code" in api.collection_queryables("landuse")["properties"]
    page = api.collection_items("landuse", bbox=[118.0, 24.5, 118.05, 24.55], limit=500)
    assert {f["id"] for f in page["features"]} == served_ids(
        served, "landuse", "ST_Intersects(ST_Transform(geom, 4326), ST_MakeEnvelope(118.0, 24.5, 118.05, 24.55, 4326))")
    filtered = api.collection_items("conflicts", filter="severity = 'high'", limit=10000)
    assert {f["id"] for f in filtered["features"]} == served_ids(served, "conflicts", "severity = 'high'")
    item = api.collection_item("conflicts", str(filtered["features"][0]["id"]))
    assert item["properties"]["severity"] == "high"


def _ogr(*args: str) -> subprocess.CompletedProcess[str]:
    """An OGR command reading as the `tester` token (GDAL sends the header with every request)."""
    env = {**os.environ, "CPL_DEBUG": "OFF", "GDAL_HTTP_HEADERS": f"Authorization: Bearer {TOKENS['tester'][2]}"}
    return subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=120, env=env)


def test_gdal_reads_every_feature_through_next_links(served: Server, tmp_path: Path) -> None:
    command("ogr2ogr", package="gdal-bin")  # and ogrinfo: one package
    listing = _ogr("ogrinfo", "-ro", "-q", f"OAPIF:{served.url}")
    assert listing.returncode == 0, listing.stderr
    assert "conflicts" in listing.stdout and "basemap" in listing.stdout
    target = tmp_path / "basemap.geojson"
    copied = _ogr("ogr2ogr", "-f", "GeoJSON", str(target), f"OAPIF:{served.url}/collections/basemap", "basemap",
                  "-oo", "PAGE_SIZE=1000", "-preserve_fid")
    assert copied.returncode == 0, copied.stderr
    ids = [f["id"] for f in json.loads(target.read_text(encoding="utf-8"))["features"]]
    assert len(ids) > 10000  # more than 10 pages of 1,000, through the next links
    assert sorted(ids) == sorted(served_ids(served, "basemap"))
    summary = _ogr("ogrinfo", "-ro", "-so", f"OAPIF:{served.url}/collections/landuse", "landuse",
                   "-spat", "118.0", "24.5", "118.05", "24.55")
    assert summary.returncode == 0, summary.stderr
    bbox_count = len(served_ids(
        served, "landuse", "ST_Intersects(ST_Transform(geom, 4326), ST_MakeEnvelope(118.0, 24.5, 118.05, 24.55, 4326))"))
    assert f"Feature Count: {bbox_count}" in summary.stdout


def test_ogctests_part1_core(served: Server, tmp_path: Path) -> None:
    assert (OGCTESTS_DIR / "ogctests").is_dir(), f"ogctests is not installed in {OGCTESTS_DIR}: run scripts/test-tools.sh (make test does)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(OGCTESTS_DIR), os.environ.get("PYTHONPATH", "")]))}
    report = tmp_path / "ogctests.xml"
    script = ("import sys; from ogctests.main import run_ogctests; "
              f"sys.exit(run_ogctests('features/core', {served.url!r}, ['-q', '-p', 'no:cacheprovider', '--junit-xml={report}']))")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
