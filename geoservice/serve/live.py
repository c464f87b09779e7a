"""The live catalog: what is served, refreshed while the server runs (常态更新: no restart after an update).

Each request first reads the catalog's state — one small query over what a commit that changes the served data must
touch: the active layer versions and the layers' definitions, the current integration and detection runs, and the
last review event — and is answered from the snapshot built for that state. A changed state builds a new snapshot
in one repeatable-read transaction (collections whose version or run did not change are not read again); a request
keeps the snapshot it started with, so it never sees half a change.

A snapshot holds, per sensitivity grade, the collections that grade may read (masked for it), pygeoapi's `API`
object over that grade's configuration (held in memory), one provider per collection and the catalogue's records
of those collections (serve/records.py): a collection a caller may
not read is absent from everything its grade is answered from, and so 404 exactly as an unknown one.
"""

from __future__ import annotations

import logging
import threading
import time
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from pygeoapi.api import API
from pygeoapi.plugin import load_plugin
from pygeoapi.util import get_provider_by_type

from geoservice.db import connect_url
from geoservice.db.read import current_run_id_sql
from geoservice.serve.catalog import Collection, Known, collections_of
from geoservice.serve.config import grade_config
from geoservice.serve.openapi import openapi_document
from geoservice.serve.pool import PoolExhausted, pool_for
from geoservice.serve.provider import GeoserviceProvider
from geoservice.serve.records import Record, read_records, visible_records
from geoservice.serve.tile_links import collection_tile_links
from geoservice.settings import GRADES, Settings

LOGGER = logging.getLogger(__name__)
#: a snapshot is rebuilt for writes (new extents and counts of the written collections) at most this often
EDIT_REFRESH_SECONDS = 10.0
#: the state of what is served: a digest of the active versions, layer definitions and current runs; the last review;
#: the written active versions' revisions
_STATE = f"""
SELECT concat_ws('|',
         (SELECT string_agg(v.id::text, ',' ORDER BY v.id) FROM geoservice.layer_version v WHERE v.is_active),
         (SELECT string_agg(l.xmin::text, ',' ORDER BY l.name) FROM geoservice.layer l),
         {current_run_id_sql("integration")}::text, {current_run_id_sql("detection")}::text),
       e.id, e.changed_at, w.edits, w.edited_at
FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT id, changed_at FROM geoservice.conflict_case_event ORDER BY id DESC LIMIT 1) e
  ON true
CROSS JOIN (SELECT string_agg(v.id || '.' || v.revision, ',' ORDER BY v.id) AS edits, max(v.edited_at) AS edited_at
            FROM geoservice.layer_version v WHERE v.is_active AND v.revision > 0) w
"""

_PREPARED = "geoservice_catalog_state"


@dataclass(frozen=True)
class CatalogState:
    """What the database serves now: `structure` changes with any version, definition or run (None: nothing is
    stored yet); `review` with every review decision (conflicts' properties carry the status); `edits` with every write
    to a layer (`<version id>.<revision>` of each written active version: the snapshot is not rebuilt for a write, the
    written collections' pages are read live and their validators follow the revision)."""

    structure: str | None
    review: int | None = None
    reviewed_at: datetime | None = None
    edits: str | None = None
    edited_at: datetime | None = None

    def revision_of(self, version_id: int) -> int:
        """The revision of an active layer version (0 when it was never written)."""
        for entry in (self.edits or "").split(","):
            version, _, revision = entry.partition(".")
            if version == str(version_id):
                return int(revision)
        return 0


@dataclass(frozen=True)
class GradeView:
    """What a caller of one grade is served from."""

    grade: str
    api: API
    providers: dict[str, GeoserviceProvider]
    records: tuple[Record, ...] = ()

    def collection(self, name: str) -> Collection | None:
        provider = self.providers.get(name)
        return provider.collection if provider is not None else None


@dataclass(frozen=True)
class Snapshot:
    """The catalog as of one state, for every grade (built at `built`, time.monotonic())."""

    structure: str | None
    collections: tuple[Collection, ...]
    views: dict[str, GradeView]
    edits: str | None = None
    built: float = 0.0


def read_state(cur: psycopg2.extensions.cursor) -> CatalogState:
    """The catalog's state (structure None when the database holds no geoservice schema yet, e.g. before a restore).
    One statement: a layer's row version (xmin) changes with every change of its definition."""
    in_transaction = not cur.connection.autocommit
    if in_transaction:
        cur.execute("SAVEPOINT catalog_state")
    try:
        cur.execute(_STATE)
    except psycopg2.errors.UndefinedTable:
        if in_transaction:
            cur.execute("ROLLBACK TO SAVEPOINT catalog_state")
        return CatalogState(None)
    return CatalogState(*cur.fetchone())


def _template_config(config: dict[str, Any]) -> dict[str, Any]:
    """What pygeoapi's templates see as `config`: the server and metadata, no resources. pygeoapi caches the translated
    template configuration by locale alone, so it must be the same for every grade and every snapshot; what a page
    shows of the collections comes with the page's own data."""
    template = deepcopy(config)
    template["resources"] = {}
    return template


class LiveCatalog:
    """The server's catalog, rebuilt when the database's state changes."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings, self.database_url = settings, database_url
        self.pool = pool_for(database_url, settings.server.pool_size)
        self._known: Known = {}
        self._record_cache: dict[Any, Any] = {}
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def state(self) -> CatalogState:
        """The state, by the statement prepared on the pooled connection (planning it took four fifths of its time)."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            try:
                if _PREPARED not in conn.prepared:  # a connection's first check
                    cur.execute(f"PREPARE {_PREPARED} AS {_STATE}")
                    conn.prepared.add(_PREPARED)
                cur.execute(f"EXECUTE {_PREPARED}")
            except psycopg2.errors.UndefinedTable:  # no schema yet (PostgreSQL plans it again when there is one)
                return CatalogState(None)
            return CatalogState(*cur.fetchone())

    def current(self) -> tuple[Snapshot, CatalogState | None]:
        """The snapshot to answer a request from, and the state it was checked against (None in an outage, when the
        last snapshot serves what needs no database)."""
        try:
            state = self.state()
        except (psycopg2.OperationalError, psycopg2.InterfaceError, PoolExhausted):
            if self._snapshot is None:
                raise
            return self._snapshot, None
        snapshot = self._snapshot
        if snapshot is None or snapshot.structure != state.structure:
            with self._lock:
                if self._snapshot is None or self._snapshot.structure != state.structure:
                    self._snapshot = self._build()
                snapshot = self._snapshot
        elif snapshot.edits != state.edits and time.monotonic() - snapshot.built > EDIT_REFRESH_SECONDS:
            self._refresh()
        return snapshot, state

    def _refresh(self) -> None:
        """Rebuild the snapshot on a thread of its own, the requests meanwhile answered from the current one: writes
        change no structure (their collections' pages are read live), only the extents and counts of the snapshot, so
        that is refreshed at most every EDIT_REFRESH_SECONDS and never holds a request up."""
        if not self._lock.acquire(blocking=False):
            return

        def build() -> None:
            try:
                self._snapshot = self._build()
            except Exception:  # the next request tries again; an outage is answered by the requests themselves
                LOGGER.exception("refreshing the catalog after writes failed")
            finally:
                self._lock.release()

        threading.Thread(target=build, name="catalog-refresh", daemon=True).start()

    def _build(self) -> Snapshot:
        conn = connect_url(self.database_url)
        try:
            conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
            with conn, conn.cursor() as cur:
                state = read_state(cur)
                collections = collections_of(cur, self.settings.access, self._known) if state.structure else []
                records = read_records(cur, collections, self.settings, self._record_cache) if collections else ()
        finally:
            conn.close()
        served = {id(c) for c in collections}
        self._known = {key: c for key, c in self._known.items() if id(c) in served}
        LOGGER.info("catalog %s: %d collections", state.structure, len(collections))
        views = {grade: self._view(collections, records, grade) for grade in GRADES}
        return Snapshot(state.structure, tuple(collections), views, state.edits, time.monotonic())

    def _view(self, collections: list[Collection], records: tuple[Record, ...], grade: str) -> GradeView:
        config = grade_config(self.settings, collections, self.database_url, grade)
        for name, resource in config["resources"].items():
            if resource.get("type") == "collection":
                resource["links"] = collection_tile_links(self.settings.server.base_url, name)
        api = API(config, openapi_document(config))
        api.tpl_config = _template_config(api.tpl_config)
        providers = {name: load_plugin("provider", get_provider_by_type(resource["providers"], "feature"))
                     for name, resource in config["resources"].items() if resource.get("type") == "collection"}
        return GradeView(grade, api, providers, visible_records(records, grade))
