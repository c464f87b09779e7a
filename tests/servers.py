"""Running `geoservice serve` for tests: a real server process on a free port, with the test tokens.

conftest's `served` fixture holds the session's one server over the demo database; a test that needs a server
of its own (other settings, another database) starts it with `running_server`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from geoservice import db
from geoservice.serve import read_served_collections
from geoservice.serve.catalog import Collection
from geoservice.serve.live import read_state
from geoservice.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 90
#: the test server's tokens: name -> (grade, scopes, token)
TOKENS = {"tester": ("restricted", "review+edit", "tester-token-0123456789"),
          "viewer": ("internal", "", "viewer-token-0123456789"),
          "outsider": ("public", "", "outsider-token-0123456789"),
          "clerk": ("public", "edit", "clerk-token-0123456789"),
          "editor": ("internal", "edit", "editor-token-0123456789")}
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
    served: dict[str, Collection]   # as of the catalog structure `structure`
    process: subprocess.Popen
    output: list[str]
    structure: str | None

    @property
    def collections(self) -> dict[str, Collection]:
        """What the server serves now: read again when the catalog's structure changed since the last read (a test on
        the session's demo database may have made a new detection run current, whose conflicts have other ids)."""
        structure = catalog_structure(self.settings)
        if structure != self.structure:
            collections, _ = read_served_collections(self.settings)
            self.served, self.structure = {c.name: c for c in collections}, structure
        return self.served

    def get(self, path: str, as_: str | None = "tester", **params: object) -> requests.Response:
        """GET as one of TOKENS (the restricted `tester` unless told; None: anonymous)."""
        return requests.get(f"{self.url}{path}", params=params, headers=bearer(as_), timeout=60)

    def post(self, path: str, body: object, as_: str | None = "tester") -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, headers=bearer(as_), timeout=60)

    def items(self, name: str, **params: object) -> dict:
        response = self.get(f"/collections/{name}/items", **params)
        assert response.status_code == 200, response.text
        return response.json()


def catalog_structure(settings: Settings) -> str | None:
    """The structure of the catalog the database serves now (changes with every version, definition or run)."""
    conn = db.connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            return read_state(cur).structure
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(settings: Settings, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`geoservice serve` in a process of its own; its output goes to a file (a full pipe would stop it)."""
    env = {**os.environ, "GEOSERVICE_DATABASE_URL": settings.database.url, "PYTHONUNBUFFERED": "1",
           "GEOSERVICE_TOKENS": TOKENS_ENV, "GEOSERVICE_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB), **(env or {})}
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


def stop(process: subprocess.Popen) -> None:
    """Terminate a server, killing it when it does not stop within 20 s."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def running_server(settings: Settings, log: Path, collections: dict[str, Collection],
                   env: dict[str, str] | None = None) -> Iterator[Server]:
    """A `geoservice serve` over the settings' database (extra environment `env`, output in `log`) until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(settings, port, log, env)
    try:
        output = wait_until_up(process, url, log)
        yield Server(url, settings, collections, process, output, catalog_structure(settings))
    finally:
        stop(process)


@contextmanager
def reconfigured_server(served: Server, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Iterator[Server]:
    """Another server over the same database, its configuration the served one's (paths made absolute, its own output
    folder) changed by `edit` on the YAML data."""
    import yaml

    settings = served.settings
    data = settings.model_dump(mode="json", exclude={"root", "config_file"})
    data["paths"] = {key: str(settings.path(Path(value))) for key, value in data["paths"].items()}
    data["paths"]["output"] = str(folder / "output")
    data["rasters"] = {name: {**raster, "path": str(settings.path(Path(raster["path"])))}
                       for name, raster in data["rasters"].items()}
    edit(data)
    config = folder / "geoservice.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with running_server(settings, folder / "serve.log", served.collections, {"GEOSERVICE_CONFIG": str(config)}) as server:
        yield server
