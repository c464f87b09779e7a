"""Serving: layers, the base map and conflicts as OGC API – Features (pygeoapi and our PostGIS provider) and Tiles."""

from __future__ import annotations

import errno
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

from geoservice import db
from geoservice.errors import GeoserviceError
from geoservice.serve.catalog import CONFLICTS, Collection, read_collections
from geoservice.serve.config import ConfigFiles, write_config
from geoservice.settings import Settings, TokenSettings, token_digest

__all__ = ["Collection", "ConfigFiles", "ServeError", "read_served_collections", "run", "serving_lines", "with_address",
           "with_session_token", "write_pygeoapi_config", "written_config_lines"]


class ServeError(GeoserviceError):
    """The server cannot start: says why (port taken, nothing to serve)."""


def with_address(settings: Settings, host: str | None, port: int | None) -> Settings:
    """The settings with the listening address of the command line, when given."""
    overrides = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    return settings.model_copy(update={"server": settings.server.model_copy(update=overrides)})


def serving_lines(settings: Settings, collections: list[Collection]) -> list[str]:
    """What a person reads when the server is up: where the landing page and the conflicts are."""
    base = settings.server.base_url
    served = ", ".join(c.name for c in collections) or "nothing stored yet: what is loaded is served as it commits"
    lines = [f"serving {len(collections)} collections ({served})", f"landing page: {base}/"]
    if any(c.name == CONFLICTS for c in collections):
        lines.append(f"conflicts:    {base}/collections/{CONFLICTS}  (map: {base}/collections/{CONFLICTS}/items?f=html)")
    public = [c.name for c in collections if c.grade == "public"]
    lines.append(f"without a token: the public view ({', '.join(public) or 'nothing'}); a token (Authorization: Bearer, "
                 f"or {base}/login in a browser) reads up to its grade")
    lines.append("stop with Ctrl-C")
    return lines


def with_session_token(settings: Settings) -> tuple[Settings, str | None]:
    """When no token is configured (the demo), a token for this run only — grade restricted, review scope — so a
    person can see the full view; None when tokens are configured."""
    if settings.access.tokens:
        return settings, None
    token = secrets.token_urlsafe(16)
    session = TokenSettings(sha256=token_digest(token), grade="restricted", scopes=["review"])
    access = settings.access.model_copy(update={"tokens": {"demo": session}})
    return settings.model_copy(update={"access": access}), token


def written_config_lines(files: ConfigFiles) -> list[str]:
    """What `serve --write-config` tells: the files, and how to run pygeoapi on them."""
    run = f"PYGEOAPI_CONFIG={files.config} PYGEOAPI_OPENAPI={files.openapi} uvicorn pygeoapi.starlette_app:APP"
    return [f"wrote {files.config} (it holds the database URL: mode 0600) and {files.openapi}", f"run pygeoapi with: {run}"]


def read_served_collections(settings: Settings) -> tuple[list[Collection], str]:
    """What the database holds to serve, and its URL."""
    url = db.database_url(settings)
    conn = db.connect_url(url)
    try:
        collections = read_collections(conn, settings.access)
    finally:
        conn.close()
    if not collections:
        raise ServeError("nothing to serve: no active layer, base map or detection run (run `geoservice demo` or ingest)")
    return collections, url


def write_pygeoapi_config(settings: Settings, path: Path, grade: str) -> ConfigFiles:
    """Write the pygeoapi configuration of a grade for what the database holds, and its OpenAPI document."""
    collections, url = read_served_collections(settings)
    return write_config(settings, collections, url, path, grade)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise ServeError(f"server.port: {host}:{port} {reason}; choose another with --port") from exc


def run(settings: Settings, announce: Callable[[list[Collection]], None]) -> None:
    """Serve what the database holds — and what it will hold: the catalog is live — with uvicorn until stopped."""
    import uvicorn

    from geoservice.serve.app import create_app
    from geoservice.serve.protocol import OgcHttpToolsProtocol

    server = settings.server
    _check_port(server.host, server.port)
    app = create_app(settings)
    announce(list(app.state.catalog.current()[0].collections))
    uvicorn.run(app, host=server.host, port=server.port, log_level="warning", access_log=False,
                loop="uvloop", http=OgcHttpToolsProtocol, timeout_graceful_shutdown=5)
