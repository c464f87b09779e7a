"""Shared fixtures: a fresh, migrated database on the real PostGIS for each test session (no mocks)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoservice import db
from geoservice.db.connection import with_database
from geoservice.db.lifecycle import ensure_database, ensure_postgis
from geoservice.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="session")
def demo_settings(base_settings: Settings) -> Iterator[Settings]:
    """A fresh database of its own with the demo layers ingested, integrated and detected (in that order)."""
    from geoservice.basemap import integrate
    from geoservice.conflicts import detect
    from geoservice.ingest import ingest_layer, load_definitions

    name = f"geoservice_demo_{os.getpid()}"
    scratch = db.create_scratch_database(base_settings, name, _quiet)
    try:
        for definition in load_definitions(scratch.path(scratch.paths.layers)):
            ingest_layer(scratch, definition)
        integrate(scratch)
        detect(scratch)
        yield scratch
    finally:  # also when the set-up fails: no database left behind
        db.drop_database(scratch.database.url, name)
