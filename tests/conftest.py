"""Shared fixtures: a fresh, migrated database on the real PostGIS for each test session and one running server over
the demo database (no mocks); each test marked with its suite (unit, database or http) by the fixtures it uses."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from servers import ROOT, Server, running_server

from geoservice import db
from geoservice.db.connection import with_database
from geoservice.db.lifecycle import ensure_database, ensure_postgis
from geoservice.serve import read_served_collections
from geoservice.settings import Settings, load_settings

#: a test's suite is the heaviest thing it needs: the running server (http), else a database (every database fixture
#: starts from base_settings), else nothing (unit)
SUITES = {"http": {"served"}, "database": {"base_settings"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its suite unless its module marks it already (a test starting servers of its own)."""
    for item in items:
        if any(item.get_closest_marker(suite) for suite in ("unit", *SUITES)):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        item.add_marker(next((suite for suite, needs in SUITES.items() if needs & fixtures), "unit"))


def _quiet(_: str) -> None:
    """Progress messages are not asserted here."""


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """The project's settings as a user has them (embedded cluster, or GEOSERVICE_DATABASE_URL)."""
    return load_settings(ROOT / "config" / "geoservice.yaml")


@pytest.fixture(scope="session")
def settings(base_settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a fresh database created for this test session and dropped after it."""
    name = f"geoservice_test_{os.getpid()}"
    scratch = db.create_scratch_database(base_settings, name, _quiet)
    yield scratch
    db.drop_database(scratch.database.url, name)


@pytest.fixture()
def bare_database_url(settings: Settings) -> Iterator[str]:
    """An empty PostGIS database (no migrations) for tests that drive the migrator themselves."""
    name = f"geoservice_bare_{uuid.uuid4().hex[:8]}"
    ensure_database(with_database(settings.database.url, "postgres"), name, _quiet)
    url = with_database(settings.database.url, name)
    ensure_postgis(url)
    yield url
    db.drop_database(url, name)


@pytest.fixture()
def cluster_settings(base_settings: Settings) -> Iterator[Settings]:
    """Settings for a throwaway embedded cluster of its own (for up/down tests), removed afterwards."""
    data_dir = ROOT / ".geoservice" / "test-clusters" / uuid.uuid4().hex[:8]
    database = base_settings.database.model_copy(update={"url": None, "data_dir": data_dir, "port": None})
    own = base_settings.model_copy(update={"database": database})
    yield own
    db.down(own, _quiet)
    shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def demo_database(base_settings: Settings, name: str) -> Iterator[Settings]:
    """A fresh database `name` with the demo layers ingested, integrated and detected (in that order), dropped after
    the block — also when the set-up fails."""
    from geoservice.basemap import integrate
    from geoservice.ingest import ingest_layer, load_definitions
    from geoservice.review import detect

    scratch = db.create_scratch_database(base_settings, name, _quiet)
    try:
        for definition in load_definitions(scratch.path(scratch.paths.layers)):
            ingest_layer(scratch, definition)
        integrate(scratch)
        detect(scratch)
        yield scratch
    finally:
        db.drop_database(scratch.database.url, name)


@pytest.fixture(scope="session")
def demo_settings(base_settings: Settings) -> Iterator[Settings]:
    """The demo database of the session (tests read it; the few that change it restore what they change)."""
    with demo_database(base_settings, f"geoservice_demo_{os.getpid()}") as scratch:
        yield scratch


@pytest.fixture(scope="session")
def served(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `geoservice serve` for the session over the demo database, with the test TOKENS."""
    collections, _ = read_served_collections(demo_settings)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with running_server(demo_settings, log, {c.name: c for c in collections}) as server:
        yield server
