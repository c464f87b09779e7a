"""A small blocking connection pool shared by every provider instance of a process (keyed by database URL).

Connections are opened when first needed and kept; a broken one is dropped. They are autocommit and
read-only, in UTC, without parallel workers (a Gather costs more than the small indexed queries a page
runs) or JIT compilation (it costs hundreds of milliseconds whenever a tile's or page's estimated cost passes
jit_above_cost: more than the statement) and with a statement timeout.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

STATEMENT_TIMEOUT_MS = 30_000
WAIT_SECONDS = 30.0
_SESSION = ("SET default_transaction_read_only = on; SET max_parallel_workers_per_gather = 0; SET jit = off; "
            f"SET TIME ZONE 'UTC'; SET statement_timeout = {STATEMENT_TIMEOUT_MS}")


class PooledConnection(psycopg2.extensions.connection):
    """A pooled connection that remembers the statements prepared on its session."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: set[str] = set()


class PoolExhausted(RuntimeError):
    """No connection became free in time."""


class ConnectionPool:
    """At most `size` connections; a caller waits (up to WAIT_SECONDS) for a free one."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, size
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg2.extensions.connection] = []
        self._lock = threading.Lock()

    def _open(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.url, application_name="geoservice serve", connect_timeout=10,
                                connection_factory=PooledConnection)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(_SESSION)
        return conn

    def prime(self, statement: sql.Composable) -> None:
        """Open every connection now (in parallel) and run `statement` on each, so the first requests do not pay
        for a new backend (PostGIS loads PROJ and builds each transformation once per backend)."""
        def open_one(_: int) -> psycopg2.extensions.connection:
            conn = self._open()
            with conn.cursor() as cur:
                cur.execute(statement)
            return conn

        with ThreadPoolExecutor(self.size) as workers:
            opened = list(workers.map(open_one, range(self.size - len(self._idle))))
        with self._lock:
            self._idle.extend(opened)

    def _idle_connection(self) -> psycopg2.extensions.connection | None:
        """A kept connection that is still alive (one the server closed, e.g. on a restart, is dropped: reading what
        is pending on it shows that without a round trip), or None."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return None
            try:
                conn.poll()
                return conn
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        if not self._slots.acquire(timeout=WAIT_SECONDS):
            raise PoolExhausted("no database connection free")
        try:
            conn = self._idle_connection() or self._open()
            broken = False
            try:
                yield conn
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True
                raise
            finally:
                if broken or conn.closed:
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)
        finally:
            self._slots.release()


@contextmanager
def parallel(cur: psycopg2.extensions.cursor, workers: int) -> Iterator[None]:
    """Statements on the cursor's pooled connection planned with up to `workers` parallel workers, then none again."""
    cur.execute(sql.SQL("SET max_parallel_workers_per_gather = {}").format(sql.Literal(workers)))
    try:
        yield
    finally:
        if not cur.connection.closed:
            cur.execute("SET max_parallel_workers_per_gather = 0")


_pools: dict[str, ConnectionPool] = {}
_lock = threading.Lock()


def pool_for(url: str, size: int) -> ConnectionPool:
    """The process's pool for `url` (created on first use)."""
    with _lock:
        if url not in _pools:
            _pools[url] = ConnectionPool(url, size)
        return _pools[url]
