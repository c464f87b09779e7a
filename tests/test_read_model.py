"""The read model (geoservice.db.read) against the demo database: versions, active versions, runs, table names."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg2.extensions
import pytest
from psycopg2 import sql

from geoservice.db.connection import connect_url
from geoservice.db.read import (
    active_versions, current_run, current_run_id_sql, layer_versions, masked_attribute, qualified, read_run,
)
from sql_helpers import query


@pytest.fixture()
def cur(demo_settings) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor in a transaction that is rolled back afterwards."""
    conn = connect_url(demo_settings.database.url)
    try:
        with conn.cursor() as cursor:
            yield cursor
        conn.rollback()
    finally:
        conn.close()


def test_active_versions_are_every_layers_active_version(demo_settings, cur) -> None:
    expected = query(demo_settings, "SELECT l.name, l.kind, l.title, v.version, v.id, v.feature_count, v.loaded_at, "
                                    "v.source_path, l.description, l.definition FROM geoservice.layer l "
                                    "JOIN geoservice.layer_version v ON v.layer = l.name WHERE v.is_active ORDER BY l.name")
    found = active_versions(cur)
    assert len(found) == len(expected) > 5
    for layer, (name, kind, title, version, version_id, count, loaded_at, source, description, definition) in zip(found, expected):
        assert (layer.name, layer.kind, layer.title, layer.version, layer.version_id, layer.feature_count) == (
            name, kind, title, version, version_id, count)
        assert (layer.loaded_at, layer.source_path, layer.description, layer.definition) == (loaded_at, source, description, definition)
        assert layer.is_active


def test_layer_versions_of_one_layer_and_of_all(demo_settings, cur) -> None:
    every = layer_versions(cur)
    assert [(v.name, v.version) for v in every] == query(
        demo_settings, "SELECT layer, version FROM geoservice.layer_version ORDER BY layer, version")
    districts = layer_versions(cur, "districts")
    assert districts and {v.name for v in districts} == {"districts"} and [v for v in every if v.name == "districts"] == districts
    assert layer_versions(cur, "no_such_layer") == []


def test_current_runs_are_the_stored_current_runs(demo_settings, cur) -> None:
    integration = current_run(cur, "integration")
    detection = current_run(cur, "detection")
    (basemap_id, started, versions), = query(demo_settings, "SELECT id, started_at, layer_versions FROM geoservice.integration_run "
                                                            "WHERE is_current")
    assert (integration.kind, integration.id, integration.started_at, integration.layer_versions) == (
        "integration", basemap_id, started, versions)
    assert integration.is_current and integration.finished_at is not None and integration.rules == ()
    (run_id, checksum, rules), = query(demo_settings, "SELECT id, rules_checksum, rules FROM geoservice.detection_run WHERE is_current")
    assert (detection.kind, detection.id, detection.rules_checksum) == ("detection", run_id, checksum)
    assert detection.integration_run_id == basemap_id
    assert [(r.id, r.type, r.title_zh, r.severity) for r in detection.rules] == [
        (r["id"], r["type"], r["title_zh"], r["severity"]) for r in rules]
    assert read_run(cur, "detection", run_id) == detection and read_run(cur, "integration", basemap_id) == integration
    assert read_run(cur, "detection", -1) is None


def test_run_text_and_json(cur) -> None:
    run = current_run(cur, "detection")
    assert run.versions_text() == ", ".join(f"{name} v{v['version']}" for name, v in sorted(run.layer_versions.items()))
    plain = json.loads(json.dumps(run.as_dict()))
    assert plain["id"] == run.id and plain["started_at"] == run.started_at.isoformat()
    assert [r["id"] for r in plain["rules"]] == [r.id for r in run.rules]


def test_current_run_id_sql_agrees_and_none_before_a_run(cur) -> None:
    for kind in ("integration", "detection"):
        cur.execute(f"SELECT {current_run_id_sql(kind)}")
        assert cur.fetchone()[0] == current_run(cur, kind).id
    cur.execute("UPDATE geoservice.integration_run SET is_current = false")  # rolled back by the fixture
    assert current_run(cur, "integration") is None
    cur.execute(f"SELECT {current_run_id_sql('integration')}")
    assert cur.fetchone()[0] is None


def test_names_and_masks_in_composed_sql(cur) -> None:
    assert qualified("feature").as_string(cur) == '"geoservice"."feature"'
    cur.execute(sql.SQL("SELECT {}, {} FROM (SELECT %s::jsonb AS attributes) t").format(
        masked_attribute("owner", "name"), masked_attribute("phone", "phone")),
        (json.dumps({"owner": "张三丰", "phone": "13912345678"}),))
    assert cur.fetchone() == ("张**", "*******5678")
