"""Incremental updates (常态更新): after every kind of edit on every kind of layer, an incremental `integrate` and
`detect` store the same base map and conflicts as full runs of the same inputs — on a generated city and on the demo,
after one edit and after ten in a row; a changed rules file forces a full detection; a failed run leaves nothing;
older runs stay readable; unchanged conflicts keep their review case and status."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import shapely
import yaml
from city_helpers import ROOT, ingested_city
from conftest import demo_database
from incremental_helpers import Layers, assert_same_base_maps, assert_same_conflicts, current_id, run_rows
from sql_helpers import query

from geoservice import db
from geoservice.basemap import integrate
from geoservice.conflicts import load_rules
from geoservice.db import transaction
from geoservice.db.read import current_run
from geoservice.errors import GeoserviceError
from geoservice.ingest import load_definition, load_definitions
from geoservice.progress import SilentReporter
from geoservice.review import detect, get_case, set_status
from geoservice.settings import Settings

LAND, PLAN, RED, FARM, BOUNDARY, PROJECTS = ("city_landuse", "city_urban_plan", "city_red_line", "city_basic_farmland",
                                            "city_dev_boundary", "city_projects")


@pytest.fixture(scope="module")
def city(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Layers]]:
    """A generated city whose layers are re-published from editable tables, integrated and detected in full."""
    folder = tmp_path_factory.mktemp("incremental_city")
    name = f"geoservice_incremental_city_{os.getpid()}"
    settings = ingested_city(base_settings, name, folder / "files")
    try:
        definitions = [load_definition(ROOT / "layers" / "districts.yaml"),
                       *map(load_definition, sorted((folder / "files").glob("*.yaml")))]
        layers = Layers(settings, definitions, folder, {})
        layers.publish_all()
        integrate(settings, full=True)
        detect(settings, full=True)
        yield settings, layers
    finally:
        db.drop_database(settings.database.url, name)


def update_and_compare(settings: Settings, *, base_map: bool = True) -> tuple:
    """Integrate and detect incrementally (the base map only when its inputs changed: `base_map`), then in full;
    assert both give the same; the incremental summaries."""
    base_patches = query(settings, "SELECT (summary ->> 'patches')::int FROM geoservice.integration_run "
                                   "WHERE is_current")[0][0]
    got_map, got_conflicts = integrate(settings), detect(settings)
    assert (got_map.incremental is not None) == base_map and got_conflicts.incremental is not None
    want_map, want_conflicts = integrate(settings, full=True), detect(settings, full=True)
    patches = assert_same_base_maps(settings, want_map.run_id, got_map.run_id)
    conflicts = assert_same_conflicts(settings, want_conflicts.run_id, got_conflicts.run_id)
    assert got_map.patches == want_map.patches == patches > 5000
    assert {r: v["count"] for r, v in got_conflicts.by_rule.items()} == {
        r: v["count"] for r, v in want_conflicts.by_rule.items()}
    assert sum(v["count"] for v in got_conflicts.by_rule.values()) == conflicts
    for name, values in want_map.by_difference.items():
        assert got_map.by_difference[name]["patches"] == values["patches"]
        assert got_map.by_difference[name]["ha"] == pytest.approx(values["ha"], abs=1e-3)
    if base_map:
        assert got_map.incremental["patches_added"] < base_patches / 2, got_map.incremental
    return got_map, got_conflicts


EDITS = {
    "land reshaped": lambda layers, rows: layers.reshape(LAND, rows),
    "land recoded": lambda layers, rows: layers.recode(LAND, rows, "DLBM"),
    "land removed": lambda layers, rows: layers.remove(LAND, rows),
    "land added": lambda layers, rows: layers.add(LAND, rows, "BSM", 37.0),
    "plan reshaped": lambda layers, rows: layers.reshape(PLAN, rows, 1.1),
    "plan recoded": lambda layers, rows: layers.recode(PLAN, rows, "YDDM"),
    "plan removed": lambda layers, rows: layers.remove(PLAN, rows),
    "plan added": lambda layers, rows: layers.add(PLAN, rows, "YDBH", -23.0),
    "red line reshaped": lambda layers, rows: layers.reshape(RED, rows[:1], 0.97),
    "farmland removed and added": lambda layers, rows: (layers.remove(FARM, rows[:2]),
                                                        layers.add(FARM, rows[2:], "JBNTBH", 50.0)),
    "development boundary reshaped": lambda layers, rows: layers.reshape(BOUNDARY, rows[:1], 0.99),
    "projects added, removed, recoded": lambda layers, rows: (layers.add(PROJECTS, rows[:2], "XMBH", 40.0),
                                                             layers.remove(PROJECTS, rows[2:3]),
                                                             layers.recode(PROJECTS, rows[3:], "YDDM")),
}
LAYER_OF = {"land": LAND, "plan": PLAN, "red": RED, "farmland": FARM, "development": BOUNDARY, "projects": PROJECTS}


@pytest.mark.parametrize("edit", list(EDITS))
def test_one_edit_equals_a_full_run(city, edit: str) -> None:
    settings, layers = city
    name = LAYER_OF[edit.split()[0]]
    rng = np.random.default_rng(len(edit))
    count = len(layers.frames[name])
    rows = sorted(rng.choice(count, size=min(5, count), replace=False).tolist())
    EDITS[edit](layers, rows)
    layers.publish(name)
    got_map, got_conflicts = update_and_compare(settings, base_map=name != PROJECTS)
    (change,) = got_conflicts.incremental["changes"]
    assert change["layer"] == name and 1 <= change["removed"] + change["added"] <= 10, change
    assert got_conflicts.incremental["from_run"] != got_conflicts.run_id


def test_an_edit_across_a_district_boundary(city) -> None:
    settings, layers = city
    rows = layers.rows_crossing(LAND, "districts", 3)
    assert len(rows) == 3
    layers.reshape(LAND, rows, 0.9)
    layers.recode(LAND, rows[:1], "DLBM")
    layers.publish(LAND)
    update_and_compare(settings)


def test_a_changed_district_layer(city) -> None:
    settings, layers = city
    layers.move_border("districts", 0, 1)
    layers.publish("districts")
    got_map, _ = update_and_compare(settings)
    assert got_map.incremental["changes"][0]["layer"] == "districts"


def test_ten_incremental_updates_equal_one_full_run(city) -> None:
    settings, layers = city
    rng = np.random.default_rng(2026)
    first = current_id(settings, "integration")
    runs = []
    for step in range(10):
        edit = list(EDITS)[rng.integers(len(EDITS))]
        name = LAYER_OF[edit.split()[0]]
        count = len(layers.frames[name])
        EDITS[edit](layers, sorted(rng.choice(count, size=min(5, count), replace=False).tolist()))
        layers.publish(name)
        if step == 4 or name == PROJECTS:  # two layers at once; the base map's inputs change in every step
            layers.reshape(PLAN, [3 + step, 4 + step], 0.95)
            layers.publish(PLAN)
        got_map, got_conflicts = integrate(settings), detect(settings)
        assert got_map.incremental is not None and got_conflicts.incremental is not None, edit
        runs.append((got_map.run_id, got_conflicts.run_id))
    with transaction(settings) as conn, conn.cursor() as cur:
        chain = current_run(cur, "integration").chain
    assert chain == (first, *(r for r, _ in runs))
    want_map, want_conflicts = integrate(settings, full=True), detect(settings, full=True)
    assert_same_base_maps(settings, want_map.run_id, runs[-1][0])
    assert_same_conflicts(settings, want_conflicts.run_id, runs[-1][1])
    # every run of the chain still reads as it was stored
    for run_id, _ in runs:
        stored = query(settings, "SELECT (summary ->> 'patches')::int FROM geoservice.integration_run WHERE id = %s",
                       run_id)[0][0]
        assert len(run_rows(settings, "integration", run_id, "id")) == stored


def test_a_changed_rules_file_forces_a_full_detection(city, tmp_path: Path) -> None:
    settings, layers = city
    layers.reshape(LAND, [10, 11], 0.7)
    layers.publish(LAND)
    assert integrate(settings).incremental is not None
    rules = yaml.safe_load(settings.path(settings.paths.rules).read_text(encoding="utf-8"))
    rules["rules"][0]["min_area_m2"] = rules["rules"][0].get("min_area_m2", 0) + 1.0
    changed = tmp_path / "rules.yaml"
    changed.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    summary = detect(settings, rules=load_rules(changed))
    assert summary.incremental is None
    layers.reshape(LAND, [12], 0.7)
    layers.publish(LAND)
    assert integrate(settings, full=True).incremental is None
    assert detect(settings, full=True).incremental is None
    detect(settings)  # the configured rules again


class Failing(SilentReporter):
    """A reporter that fails the run just before it is made current."""

    def line(self, text: str) -> None:
        raise RuntimeError("killed")


def test_a_failed_incremental_run_leaves_nothing(city) -> None:
    settings, layers = city
    before = current_id(settings, "integration")
    layers.reshape(PLAN, [7, 8], 0.9)
    layers.publish(PLAN)
    with pytest.raises(RuntimeError, match="killed"):
        integrate(settings, Failing())
    assert current_id(settings, "integration") == before
    assert query(settings, "SELECT count(*) FROM geoservice.basemap_patch WHERE until_run IS NOT NULL "
                           "AND until_run NOT IN (SELECT id FROM geoservice.integration_run)") == [(0,)]
    assert query(settings, "SELECT count(*) FROM geoservice.integration_run WHERE chain = '{}'") == [(0,)]
    detect_before = current_id(settings, "detection")
    assert integrate(settings).incremental is not None
    with pytest.raises(RuntimeError, match="killed"):
        detect(settings, reporter=Failing())
    assert current_id(settings, "detection") == detect_before
    assert query(settings, "SELECT count(*) FROM geoservice.conflict WHERE until_run IS NOT NULL "
                           "AND until_run NOT IN (SELECT id FROM geoservice.detection_run)") == [(0,)]
    assert detect(settings).incremental is not None


def test_a_base_run_made_stale_meanwhile_is_refused(city) -> None:
    settings, layers = city
    layers.reshape(LAND, [20], 0.9)
    layers.publish(LAND)
    with transaction(settings) as conn, conn.cursor() as cur:
        base = current_run(cur, "integration")
    integrate(settings, full=True)
    from geoservice.basemap.incremental import integrate_incremental
    from geoservice.basemap.store import _pick_inputs, versions_of
    from geoservice.db.read import active_versions
    with transaction(settings) as conn, conn.cursor() as cur:
        picked = _pick_inputs(settings, active_versions(cur))
    with pytest.raises(GeoserviceError, match=rf"another integration run was made current .* from run {base.id}"):
        integrate_incremental(settings, SilentReporter(), base, picked, versions_of(picked))


def test_unchanged_conflicts_keep_their_case_and_status(city) -> None:
    settings, layers = city
    detect(settings, full=True)
    edited = [30, 31]
    where = shapely.to_wkb(shapely.union_all(np.asarray(layers.frames[LAND].geometry.iloc[edited])))
    conflict, case_id = query(settings, """
        SELECT c.id, c.case_id FROM geoservice.conflict c JOIN geoservice.detection_run r ON r.is_current
        WHERE c.run_id = ANY(r.chain) AND c.until_run IS NULL
          AND NOT ST_DWithin(c.geom, ST_GeomFromWKB(%s, %s), 3000)
        ORDER BY c.area_m2 DESC LIMIT 1""", where, settings.working_srid)[0]
    set_status(settings, conflict, "confirmed", "核实中", "王五")
    layers.reshape(LAND, edited, 0.9)
    layers.publish(LAND)
    integrate(settings)
    summary = detect(settings)
    assert summary.incremental is not None
    kept = query(settings, """
        SELECT c.status, c.case_id FROM geoservice.conflict c JOIN geoservice.detection_run r ON r.is_current
        WHERE c.id = %s AND c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id)""", conflict)
    assert kept == [("confirmed", case_id)]
    case = get_case(settings, conflict)
    assert (case.status, case.opinion, case.last_run_id) == ("confirmed", "核实中", summary.run_id)


def test_readers_see_the_incremental_run(city) -> None:
    from geoservice.queries import lookup_point
    from geoservice.report import read_ledger
    from geoservice.serve.catalog import collections_of

    settings, layers = city
    layers.recode(PLAN, [40, 41, 42], "YDDM")
    layers.publish(PLAN)
    got = integrate(settings)
    found = detect(settings)
    assert got.incremental is not None and found.incremental is not None
    with transaction(settings) as conn, conn.cursor() as cur:
        served = {c.name: c for c in collections_of(cur, settings.access, {})}
    assert served["basemap"].feature_count == got.patches and served["basemap"].partition_key == got.run_id
    assert served["conflicts"].feature_count == sum(v["count"] for v in found.by_rule.values())
    x, y = query(settings, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), 4326) p "
                           "FROM geoservice.basemap_patch WHERE run_id = %s LIMIT 1) s", got.run_id)[0]
    with transaction(settings) as conn, conn.cursor() as cur:
        answer = lookup_point(cur, settings, x, y)
    assert answer["patch"]["run_id"] == got.run_id
    ledger = read_ledger(settings)
    assert ledger.run.id == found.run_id and len(ledger.rows[ledger.rows["presence"] != "disappeared"]) == \
        served["conflicts"].feature_count


@pytest.fixture(scope="module")
def demo(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Layers]]:
    """The demo data in a database of this module's own, its layers re-published from editable tables."""
    with demo_database(base_settings, f"geoservice_incremental_demo_{os.getpid()}") as settings:
        definitions = [d for d in load_definitions(settings.path(settings.paths.layers))
                       if d.layer.name in ("urban_plan", "landuse", "red_line", "projects", "districts")]
        layers = Layers(settings, definitions, tmp_path_factory.mktemp("incremental_demo"), {"landuse": "GBK"})
        layers.publish_all()
        integrate(settings, full=True)
        detect(settings, full=True)
        yield settings, layers


def test_the_demo_after_edits_of_each_layer(demo) -> None:
    settings, layers = demo
    layers.reshape("urban_plan", [1, 5, 9], 0.85)
    layers.recode("urban_plan", [2], "YDDM")
    layers.publish("urban_plan")
    update_and_compare(settings)
    layers.remove("landuse", [3, 4])
    layers.recode("landuse", [6], "DLBM")
    layers.publish("landuse")
    layers.reshape("red_line", [0], 1.02)
    layers.publish("red_line")
    layers.add("projects", [0, 1], "XMBH", 0.0005)
    layers.publish("projects")
    update_and_compare(settings)


def test_the_change_summary_over_http(city, tmp_path: Path) -> None:
    from servers import running_server

    settings, layers = city
    layers.recode(LAND, [50, 51], "DLBM")
    layers.reshape(LAND, [52], 0.8)
    layers.publish(LAND)
    got, found = integrate(settings), detect(settings)
    changes = {c["layer"]: c for c in got.incremental["changes"]}
    assert changes[LAND]["removed"] == changes[LAND]["added"] <= 3
    assert {"by_difference", "by_district", "region_km2", "patches_added"} <= set(got.incremental)
    assert sum(r["gained_m2"] for r in got.incremental["by_district"]) > 0
    assert {"by_rule", "by_district", "rules", "cases"} <= set(found.incremental)
    assert set(found.incremental["cases"]) == {"carried", "changed", "new", "gone", "origins"}
    with running_server(settings, tmp_path / "serve.log", {}) as server:
        for name, summary in (("basemap", got), ("conflicts", found)):
            answer = server.get(f"/collections/{name}/changes", as_="tester").json()
            assert answer["run_id"] == summary.run_id and answer["base_run_id"] == summary.incremental["from_run"]
            assert answer["incremental"] == json.loads(json.dumps(summary.incremental))


def test_a_changed_conflict_is_linked_to_the_case_it_came_from(city) -> None:
    settings, layers = city
    (source, case_id), = query(settings, """
        SELECT c.source_id_a, c.case_id FROM geoservice.conflict c JOIN geoservice.detection_run r ON r.is_current
        WHERE c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) AND c.rule_id = 'projects_in_red_line'
        ORDER BY c.area_m2 DESC LIMIT 1""")
    frame = layers.frames[PROJECTS]
    row = int(np.flatnonzero(frame["XMBH"] == source)[0])
    layers.reshape(PROJECTS, [row], 0.9)
    frame.loc[frame.index[row], "XMBH"] = "RENAMED-1"  # a new key: the case cannot be found by it
    layers.publish(PROJECTS)
    summary = detect(settings)
    origins = query(settings, """
        SELECT k.key_a, o.change FROM geoservice.case_origin o JOIN geoservice.conflict_case k ON k.id = o.case_id
        WHERE o.run_id = %s AND o.from_case = %s""", summary.run_id, case_id)
    assert origins and all(key == "RENAMED-1" and change in ("shrunk", "split", "merged") for key, change in origins), origins
    cases = summary.incremental["cases"]
    assert cases["gone"] >= 1 and cases["changed"] >= 1 and cases["carried"] > 100, cases
    gone = query(settings, "SELECT case_id FROM geoservice.disappeared_case WHERE run_id = %s", summary.run_id)
    assert (case_id,) in gone


def test_a_change_reaching_most_of_the_plans_runs_in_full(city) -> None:
    settings, layers = city
    layers.reshape(PLAN, list(range(len(layers.frames[PLAN]))), 0.99)
    layers.publish(PLAN)
    summary = integrate(settings)
    assert summary.incremental is None and summary.run_id == current_id(settings, "integration")
    detect(settings)
