"""`db up | down | status | migrate`: bring the configured database to a working, migrated PostGIS."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from geoservice.db.connection import connect_url, database_url, embedded_cluster, redact, with_database
from geoservice.db.migrate import applied, discover, migrate
from geoservice.db.packages import Echo
from geoservice.errors import DatabaseError
from geoservice.settings import Settings

EXTENSION_LOCK_KEY = 0x6E0_5E42


def ensure_database(admin_url: str, name: str, echo: Echo) -> None:
    """CREATE DATABASE name when the server does not have it yet."""
    conn = connect_url(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                echo(f"creating database {name}")
                cur.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(name)))
    finally:
        conn.close()


def ensure_postgis(url: str) -> str:
    """CREATE EXTENSION postgis if missing; return the PostGIS version, or say exactly why it cannot be had."""
    conn = connect_url(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (EXTENSION_LOCK_KEY,))  # concurrent `db up`s
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            row = cur.fetchone()
            if row:
                return row[0]
            cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
            if cur.fetchone() is None:
                cur.execute("SHOW server_version_num")
                major = int(cur.fetchone()[0]) // 10000
                raise DatabaseError(
                    f"{redact(url)}: the server has no PostGIS extension files; install them on that server "
                    f"(Debian: postgresql-{major}-postgis-3)"
                )
            try:
                cur.execute("CREATE EXTENSION postgis")
            except psycopg2.errors.InsufficientPrivilege as exc:
                raise DatabaseError(
                    f"{redact(url)}: not allowed to CREATE EXTENSION postgis; ask the database owner to run it once"
                ) from exc
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            return cur.fetchone()[0]
    finally:
        conn.close()


def up(settings: Settings, echo: Echo = print) -> str:
    """Start (or reach) the database, create it and PostGIS, apply migrations; return its URL."""
    if settings.database.url:
        url = database_url(settings)
    else:
        cluster = embedded_cluster(settings, echo)
        with cluster.lock():
            cluster.start()
            ensure_database(cluster.url("postgres"), settings.database.name, echo)
        url = cluster.url(settings.database.name)
    ensure_postgis(url)
    run_migrations(settings, echo)
    return url


def down(settings: Settings, echo: Echo = print) -> bool:
    """Stop the embedded server; True when it was running. An external server is left alone."""
    if settings.database.url:
        echo("GEOSERVICE_DATABASE_URL / database.url points at an external server: nothing to stop")
        return False
    cluster = embedded_cluster(settings, echo)
    with cluster.lock():
        return cluster.stop()


def run_migrations(settings: Settings, echo: Echo = print) -> int:
    """Apply pending migrations; the number applied."""
    conn = connect_url(database_url(settings))
    try:
        return len(migrate(conn, settings.working_srid, echo))
    finally:
        conn.close()


@dataclass
class Status:
    """What `db status` reports."""

    mode: str
    location: str
    running: bool
    url: str | None = None
    server_version: str | None = None
    postgis_version: str | None = None
    migrations_applied: list[int] = field(default_factory=list)
    migrations_pending: list[int] = field(default_factory=list)
    problem: str | None = None

    def lines(self) -> list[str]:
        out = [f"mode: {self.mode}", f"location: {self.location}", f"running: {'yes' if self.running else 'no'}"]
        if self.url:
            out.append(f"url: {redact(self.url)}")
        if self.server_version:
            out.append(f"PostgreSQL: {self.server_version}")
        out.append(f"PostGIS: {self.postgis_version or 'not installed in the database'}")
        out.append(f"migrations applied: {len(self.migrations_applied)}, pending: {len(self.migrations_pending)}")
        if self.problem:
            out.append(f"problem: {self.problem}")
        return out


def status(settings: Settings) -> Status:
    """Where the database is, whether it runs, versions and migrations."""
    if settings.database.url:
        result = Status("external", redact(settings.database.url), running=False, url=settings.database.url)
    else:
        cluster = embedded_cluster(settings)
        result = Status("embedded", str(cluster.data_dir), running=cluster.is_running())
        if not result.running:
            result.problem = "not initialized" if not cluster.initialized else "stopped"
            return result
        result.url = cluster.url(settings.database.name)
    try:
        conn = connect_url(result.url)
    except DatabaseError as exc:
        result.problem = str(exc)
        return result
    try:
        result.running = True
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            result.server_version = cur.fetchone()[0]
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            row = cur.fetchone()
            result.postgis_version = row[0] if row else None
        done = applied(conn)
        result.migrations_applied = sorted(done)
        result.migrations_pending = [m.version for m in discover() if m.version not in done]
    finally:
        conn.close()
    return result


def create_scratch_database(settings: Settings, name: str, echo: Echo = print) -> Settings:
    """A fresh, migrated database `name` on the configured server; settings that point at it."""
    base = up(settings, echo)
    drop_database(base, name)
    ensure_database(with_database(base, "postgres"), name, echo)
    scratch = settings.model_copy(update={"database": settings.database.model_copy(update={"url": with_database(base, name)})})
    ensure_postgis(scratch.database.url)
    run_migrations(scratch, echo)
    return scratch


def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE name (terminating its sessions) if it exists."""
    conn = connect_url(with_database(server_url, "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()
