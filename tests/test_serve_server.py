"""`geoservice serve` as a person runs it: a real server process on a free port over the demo database.

The `served` fixture (imported as `served_fixture` by the other test_serve_* modules) starts one server per test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from sql_helpers import query

from geoservice.serve import read_served_collections
from geoservice.serve.catalog import Collection
from geoservice.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 90
#: the test server's tokens: name -> (grade, scopes, token)
TOKENS = {"tester": ("restricted", "review", "tester-token-0123456789"),
          "viewer": ("internal", "", "viewer-token-0123456789"),
          "outsider": ("public", "", "outsider-token-0123456789")}
MAX_UPLOAD_MB = 1
TOKENS_ENV = ";".join(f"{name}:{grade}:{scopes}:{token}" for name, (grade, scopes, token) in TOKENS.items())


def bearer(name: str | None) -> dict[str, str]:
    """The Authorization header of a test token (none for an anonymous caller)."""
    return {"Authorization": f"Bearer {TOKENS[name][2]}"} if name else {}


@dataclass
class Server:
    """A running `geoservice serve`: its base URL, what it serves, and the settings of its database."""

    url: str
    settings: Settings
    collections: dict[str, Collection]
    process: subprocess.Popen
    output: list[str]

    def get(self, path: str, as_: str | None = "tester", **params: object) -> requests.Response:
        """GET as one of TOKENS (the restricted `tester` unless told; None: anonymous)."""
        return requests.get(f"{self.url}{path}", params=params, headers=bearer(as_), timeout=60)

    def post(self, path: str, body: object, as_: str | None = "tester") -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, headers=bearer(as_), timeout=60)

    def items(self, name: str, **params: object) -> dict:
        response = self.get(f"/collections/{name}/items", **params)
        assert response.status_code == 200, response.text
        return response.json()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geoservice", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env}, timeout=120)


def start_server(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    """`geoservice serve` in a process of its own; its output goes to a file (a full pipe would stop it)."""
    env = {**os.environ, "GEOSERVICE_DATABASE_URL": settings.database.url, "PYTHONUNBUFFERED": "1",
           "GEOSERVICE_TOKENS": TOKENS_ENV, "GEOSERVICE_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB)}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "geoservice", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def wait_until_up(process: subprocess.Popen, url: str, log: Path) -> list[str]:
    """The lines the server printed before it answered; fails with its output when it died or took too long."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"geoservice serve exited with {process.returncode}: {log.read_text()}")
        try:
            if requests.get(f"{url}/conformance", timeout=2).status_code == 200:
                return log.read_text().splitlines()
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    pytest.fail(f"geoservice serve did not answer within {STARTUP_SECONDS} s: {log.read_text()}")


_running: Server | None = None


@pytest.fixture(scope="session", name="served")
def served_fixture(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session, over the demo database (started once however many modules use it)."""
    global _running
    if _running is None:
        collections, _ = read_served_collections(demo_settings)
        port, log = free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
        url = f"http://127.0.0.1:{port}"
        process = start_server(demo_settings, port, log)
        _running = Server(url, demo_settings, {c.name: c for c in collections}, process, wait_until_up(process, url, log))
    yield _running
    if _running.process.poll() is None:
        _running.process.terminate()
        try:
            _running.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _running.process.kill()


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
