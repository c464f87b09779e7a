"""`geoservice serve` as a person runs it: a real server process on a free port over the demo database (conftest's
`served`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from servers import ROOT, Server
from sql_helpers import query


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geoservice", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env}, timeout=120)


def test_startup_prints_landing_page_and_conflicts(served: Server) -> None:
    assert f"landing page: {served.url}/" in served.output
    assert any(line.startswith(f"conflicts:    {served.url}/collections/conflicts") for line in served.output)


def test_serves_every_active_layer_the_base_map_and_conflicts(served: Server) -> None:
    listed = served.get("/collections", f="json").json()["collections"]
    ids = [c["id"] for c in listed]
    assert ids == list(served.collections)
    assert {"landuse", "urban_plan", "red_line", "projects", "basemap", "conflicts"} <= set(ids)
    landuse = next(c for c in listed if c["id"] == "landuse")
    assert landuse["title"].startswith("土地利用规划") and "三调" in landuse["keywords"]
    assert landuse["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/4548"
    assert "http://www.opengis.net/def/crs/EPSG/0/4490" in landuse["crs"]


def test_extents_are_computed_from_the_data(served: Server) -> None:
    for name in ("landuse", "conflicts"):
        collection = served.collections[name]
        (west, south, east, north), = query(served.settings, (
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(ST_Transform(geom, 4326)) e "
            f"FROM geoservice.{collection.table} WHERE {collection.partition_column} = %s) s"), collection.partition_key)
        bbox = served.get(f"/collections/{name}", f="json").json()["extent"]["spatial"]["bbox"][0]
        # every feature transformed, the box rounded outwards at 1e-7°
        assert bbox[0] <= west and bbox[1] <= south and bbox[2] >= east and bbox[3] >= north
        assert max(west - bbox[0], south - bbox[1], bbox[2] - east, bbox[3] - north) < 2e-7


def test_temporal_extent_where_there_is_one(served: Server) -> None:
    projects = served.get("/collections/projects", f="json").json()
    interval = projects["extent"]["temporal"]["interval"][0]
    assert interval[0] < interval[1] and interval[0].startswith("20")
    assert "temporal" not in served.get("/collections/landuse", f="json").json()["extent"]


def test_write_config_for_pygeoapi_users(served: Server, tmp_path: Path) -> None:
    target = tmp_path / "pygeoapi.yml"
    result = run_cli("serve", "--write-config", str(target), "--grade", "internal",
                     env={"GEOSERVICE_DATABASE_URL": served.settings.database.url})
    assert result.returncode == 0, result.stderr
    assert "PYGEOAPI_CONFIG=" in result.stdout
    config = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert config["server"]["limits"]["max_items"] >= 1000
    provider = config["resources"]["conflicts"]["providers"][0]
    assert provider["name"] == "geoservice.serve.provider.GeoserviceProvider"
    assert target.stat().st_mode & 0o077 == 0  # holds the database password
    openapi = (tmp_path / "pygeoapi-openapi.json").read_text(encoding="utf-8")
    assert "/collections/conflicts/items" in openapi and "schemas.opengis.net" not in openapi


def test_port_in_use_is_one_clear_error(served: Server) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), env={"GEOSERVICE_DATABASE_URL": served.settings.database.url})
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: server.port: 127.0.0.1:{port} is in use; choose another with --port"
