"""Connections: the database URL from settings and psycopg2 connections."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

from geoservice.db.embedded import EmbeddedCluster
from geoservice.db.packages import Echo
from geoservice.errors import DatabaseError
from geoservice.settings import Settings


def embedded_cluster(settings: Settings, echo: Echo = print) -> EmbeddedCluster:
    """The embedded cluster the settings describe."""
    db = settings.database
    return EmbeddedCluster(
        settings.path(db.data_dir), port=db.port, server_user=db.server_user,
        bin_dir=db.bin_dir, auto_install=db.auto_install, echo=echo,
    )


def database_url(settings: Settings) -> str:
    """GEOSERVICE_DATABASE_URL / database.url, else the embedded cluster's URL (which must be initialized)."""
    if settings.database.url:
        return settings.database.url.replace("postgresql+psycopg2://", "postgresql://", 1)
    cluster = embedded_cluster(settings)
    if not cluster.initialized:
        raise DatabaseError(f"the embedded database in {cluster.data_dir} does not exist yet: run `geoservice db up`")
    return cluster.url(settings.database.name)


def redact(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def connect_url(url: str) -> psycopg2.extensions.connection:
    """A psycopg2 connection; DatabaseError (password redacted) when the server cannot be reached. Its session has no
    JIT compilation: geoservice's statements spend their time in GEOS and I/O, and a misestimated join's cost (a
    tile's read, ~300k) made PostgreSQL compile for 150 ms a statement that runs in 20."""
    try:
        return psycopg2.connect(url, connect_timeout=10, application_name="geoservice", options="-c jit=off")
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        hint = "" if "GEOSERVICE_DATABASE_URL" in reason else " (is it running? `geoservice db up`)"
        raise DatabaseError(f"cannot connect to {redact(url)}: {reason}{hint}") from exc


@contextmanager
def transaction(settings: Settings) -> Iterator[psycopg2.extensions.connection]:
    """A connection inside one transaction: committed on success, rolled back on any error, then closed."""
    conn = connect_url(database_url(settings))
    try:
        with conn:
            yield conn
    finally:
        conn.close()

