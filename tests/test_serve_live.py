"""A running server keeps serving while the plans change (常态更新): a new layer version, a rollback, a new base map, a
new detection run, a review decision and a restore are each served on the next request after their commit, with
no restart; a client holding the old ETag gets 200 and the new data, one holding the new ETag a 304."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from geoservice import db
from geoservice.basemap import integrate
from geoservice.governance import backup, restore
from geoservice.ingest import activate_version, ingest_layer, load_definitions
from geoservice.review import detect, set_status
from geoservice.settings import Settings
from conftest import demo_database
from servers import Server, bearer, running_server
from sql_helpers import query


def _quiet(_: str) -> None:
    """Progress is not asserted here."""


@pytest.fixture(scope="module")
def city(base_settings: Settings) -> Iterator[Settings]:
    """A demo database of its own (these tests change it)."""
    with demo_database(base_settings, f"geoservice_live_{os.getpid()}") as scratch:
        yield scratch


@pytest.fixture(scope="module")
def live(city: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(city, tmp_path_factory.mktemp("live") / "serve.log", {}) as server:
        yield server


def _get(server: Server, path: str, etag: str | None = None, **params: object) -> requests.Response:
    headers = {**bearer("tester"), **({"If-None-Match": etag} if etag else {})}
    return requests.get(f"{server.url}{path}", params=params, headers=headers, timeout=60)


def _changed(server: Server, path: str, change, **params: object) -> tuple[requests.Response, requests.Response]:
    """The response before the change, and the one after it to a client that still holds the old ETag; checks that
    the new ETag then gets a 304 and the old one no longer does."""
    before = _get(server, path, **params)
    assert before.status_code == 200 and before.headers["ETag"], before.text[:200]
    assert _get(server, path, before.headers["ETag"], **params).status_code == 304
    change()
    after = _get(server, path, before.headers["ETag"], **params)
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"], after.text[:200]
    assert _get(server, path, after.headers["ETag"], **params).status_code == 304
    return before, after


def _landuse(settings: Settings):
    return next(d for d in load_definitions(settings.path(settings.paths.layers)) if d.layer.name == "landuse")


def test_a_new_layer_version_and_a_rollback_are_served_at_once(live: Server, city: Settings) -> None:
    before, after = _changed(live, "/collections/landuse", lambda: ingest_layer(city, _landuse(city)))
    assert "Version 1," in before.json()["description"] and "Version 2," in after.json()["description"]
    items = _get(live, "/collections/landuse/items", limit=1).json()
    version_2 = query(city, "SELECT id FROM geoservice.layer_version WHERE layer = 'landuse' AND version = 2")[0][0]
    assert query(city, "SELECT version_id FROM geoservice.feature WHERE id = %s", items["features"][0]["id"])[0][0] == version_2
    _, rolled_back = _changed(live, "/collections/landuse", lambda: activate_version(city, "landuse", 1))
    assert "Version 1," in rolled_back.json()["description"]


def test_a_new_base_map_and_detection_run_are_served_at_once(live: Server, city: Settings) -> None:
    _, after = _changed(live, "/collections/basemap", lambda: integrate(city))
    run = query(city, "SELECT id FROM geoservice.integration_run WHERE is_current")[0][0]
    assert f"integration run {run}" in after.json()["title"]
    _, after = _changed(live, "/collections/conflicts/items", lambda: detect(city), limit=5)
    current = query(city, "SELECT id FROM geoservice.detection_run WHERE is_current")[0][0]
    ids = [f["id"] for f in after.json()["features"]]
    assert {r[0] for r in query(city, "SELECT run_id FROM geoservice.conflict WHERE id = ANY(%s)", ids)} == {current}
    assert f"detection run {current}" in _get(live, "/collections/conflicts").json()["title"]


def test_a_review_decision_changes_the_conflicts_etag(live: Server, city: Settings) -> None:
    conflict = query(city, "SELECT c.id FROM geoservice.conflict c JOIN geoservice.detection_run r ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) "
                           "WHERE r.is_current AND c.status = 'open' ORDER BY c.id LIMIT 1")[0][0]
    path = f"/collections/conflicts/items/{conflict}"
    before, after = _changed(live, path, lambda: set_status(city, conflict, "confirmed", "核实", "tester"))
    assert before.json()["properties"]["status"] == "open" and after.json()["properties"]["status"] == "confirmed"
    layer = _get(live, "/collections/landuse/items", limit=1)
    assert _get(live, "/collections/landuse/items", layer.headers["ETag"], limit=1).status_code == 304


def test_last_modified_answers_if_modified_since(live: Server) -> None:
    first = _get(live, "/collections/landuse/items", limit=2)
    stamp = first.headers["Last-Modified"]
    cached = requests.get(f"{live.url}/collections/landuse/items", params={"limit": 2}, timeout=60,
                          headers={**bearer("tester"), "If-Modified-Since": stamp})
    assert cached.status_code == 304 and cached.headers["ETag"] == first.headers["ETag"] and not cached.content
    old = requests.get(f"{live.url}/collections/landuse/items", params={"limit": 2}, timeout=60,
                       headers={**bearer("tester"), "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old.status_code == 200
    for path in ("/", "/collections", "/collections/landuse/items/1"):
        response = _get(live, path)
        assert response.status_code in (200, 404) and (response.status_code == 404 or response.headers["ETag"])


def test_a_restore_into_the_served_database_is_served_at_once(city: Settings, tmp_path: Path) -> None:
    """A server on a database that holds no data yet (its schema migrated, no rows) serves the restore at once."""
    folder = tmp_path / "backup"
    backup(city, folder)
    name = f"geoservice_live_restore_{os.getpid()}"
    empty = db.create_scratch_database(city, name, _quiet)
    try:
        with running_server(empty, tmp_path / "serve.log", {}) as server:
            assert any("serving 0 collections" in line for line in server.output)
            assert _get(server, "/collections").json()["collections"] == []
            assert _get(server, "/collections/landuse").status_code == 404
            restore(empty, folder)
            collections = {c["id"] for c in _get(server, "/collections").json()["collections"]}
            assert {"landuse", "basemap", "conflicts"} <= collections
            assert _get(server, "/collections/landuse/items", limit=1).json()["features"]
    finally:
        db.drop_database(empty.database.url, name)
