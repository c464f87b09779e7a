"""Conflict detection on the demo data: each rule type checked against independent PostGIS SQL; on the demo and a
generated city, every conflict checked against the evaluation without subdivision."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from geoservice import db
from geoservice.basemap import integrate
from geoservice.conflicts import load_rules
from geoservice.review import detect  # as `geoservice detect`: the shared demo database keeps its cases linked
from geoservice.conflicts.detect import LayerCatalog, run_rules
from geoservice.conflicts.evaluate import Subdivided
from geoservice.db import transaction
from geoservice.errors import ConfigError
from geoservice.progress import SilentReporter
from city_helpers import ingested_city
from sql_helpers import active, query

#: no vertex limit: the rules evaluated as before large polygons were subdivided
UNSPLIT = None
RTOL = 1e-9

CURRENT = ("(SELECT c.* FROM geoservice.conflict c JOIN geoservice.detection_run r ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) "
           "WHERE r.is_current)")
CONSTRUCTION = "(SELECT code FROM geoservice.land_class WHERE construction)"
CLASSIFIED_NON_CONSTRUCTION = "(SELECT code FROM geoservice.land_class WHERE NOT construction)"


def stored(settings, rule: str) -> tuple[set[tuple], float]:
    rows = query(settings, f"SELECT feature_a, feature_b, area_m2 FROM {CURRENT} c WHERE rule_id = %s", rule)
    return {(a, b) for a, b, _ in rows}, sum(area for *_, area in rows)


def expected_pairs(settings, a_sql: str, b_sql: str, min_area: float) -> tuple[set[tuple], float]:
    rows = query(settings, f"""
        SELECT a.id, b.id, ST_Area(ST_Intersection(a.geom, b.geom)) AS area
        FROM {a_sql} a JOIN {b_sql} b ON ST_Intersects(a.geom, b.geom)""")
    kept = [(a, b, area) for a, b, area in rows if area >= min_area]
    return {(a, b) for a, b, _ in kept}, sum(area for *_, area in kept)


def assert_same(got: tuple[set, float], want: tuple[set, float]) -> None:
    assert got[0] == want[0]
    assert len(got[0]) > 0
    assert got[1] == pytest.approx(want[1], rel=1e-7, abs=len(got[0]) * 1.0)  # district slivers < 1 m² are dropped


def subset(layer: str, condition: str) -> str:
    return f"(SELECT * FROM {active(layer)} s WHERE {condition})"


def test_plan_difference_urban_only(demo_settings) -> None:
    want = expected_pairs(demo_settings, subset("landuse", f"class_code IN {CLASSIFIED_NON_CONSTRUCTION}"),
                          subset("urban_plan", f"class_code IN {CONSTRUCTION}"), 200)
    assert_same(stored(demo_settings, "urban_construction_on_land_non_construction"), want)


def test_plan_difference_land_only(demo_settings) -> None:
    want = expected_pairs(demo_settings, subset("landuse", f"class_code IN {CONSTRUCTION}"),
                          subset("urban_plan", f"class_code IN {CLASSIFIED_NON_CONSTRUCTION}"), 200)
    assert_same(stored(demo_settings, "land_construction_on_urban_non_construction"), want)


def test_forbidden_overlap_rules(demo_settings) -> None:
    want = expected_pairs(demo_settings, subset("urban_plan", f"class_code IN {CONSTRUCTION}"), active("red_line"), 50)
    assert_same(stored(demo_settings, "planned_construction_in_red_line"), want)
    want = expected_pairs(demo_settings, subset("urban_plan", "class_code IS NULL OR class_code NOT LIKE '01%%'"),
                          active("basic_farmland"), 100)
    assert_same(stored(demo_settings, "farmland_planned_for_other_use"), want)
    want = expected_pairs(demo_settings, active("projects"), active("red_line"), 10)
    assert_same(stored(demo_settings, "projects_in_red_line"), want)


def test_must_be_within(demo_settings) -> None:
    rows = query(demo_settings, f"""
        SELECT p.id, ST_Area(ST_Difference(p.geom, coalesce(
            (SELECT ST_Union(b.geom) FROM {active('dev_boundary')} b WHERE ST_Intersects(b.geom, p.geom)),
            ST_GeomFromText('MULTIPOLYGON EMPTY', 4548)))) FROM {active('projects')} p""")
    kept = [(pid, area) for pid, area in rows if area >= 10]
    got_rows = query(demo_settings, f"SELECT feature_a, feature_b, area_m2 FROM {CURRENT} c "
                                    "WHERE rule_id = 'projects_outside_dev_boundary'")
    assert {a for a, _, _ in got_rows} == {pid for pid, _ in kept} and kept
    assert {b for _, b, _ in got_rows} == {None}
    assert sum(a for *_, a in got_rows) == pytest.approx(sum(a for _, a in kept), rel=1e-7, abs=len(kept) * 1.0)


def test_lines_overlap(demo_settings) -> None:
    pairs, total = set(), 0.0
    for a, b in (("red_line", "basic_farmland"), ("red_line", "dev_boundary"), ("basic_farmland", "dev_boundary")):
        found = expected_pairs(demo_settings, active(a), active(b), 10)
        pairs |= found[0]
        total += found[1]
    assert_same(stored(demo_settings, "protection_lines_overlap"), (pairs, total))


def test_districts_and_codes_of_conflicts(demo_settings) -> None:
    wrong = query(demo_settings, f"""
        SELECT count(*) FILTER (WHERE d.source_id IS DISTINCT FROM c.district_code), count(*)
        FROM {CURRENT} c LEFT JOIN {active('districts')} d ON ST_Contains(d.geom, ST_PointOnSurface(c.geom))""")[0]
    assert wrong[0] == 0 and wrong[1] > 100
    codes = query(demo_settings, f"""
        SELECT count(*) FROM {CURRENT} c JOIN geoservice.feature f ON f.id = c.feature_a
        WHERE c.code_a IS DISTINCT FROM f.class_code OR c.source_id_a IS DISTINCT FROM f.source_id""")[0][0]
    assert codes == 0


def test_detect_one_rule_and_unknown_rule(demo_settings) -> None:
    summary = detect(demo_settings, ["projects_in_red_line"])
    assert list(summary.by_rule) == ["projects_in_red_line"]
    assert query(demo_settings, f"SELECT DISTINCT rule_id FROM {CURRENT} c") == [("projects_in_red_line",)]
    with pytest.raises(ConfigError, match=r"no rule 'nope'"):
        detect(demo_settings, ["nope"])
    full = detect(demo_settings)
    assert len(full.by_rule) == len(load_rules(demo_settings.path(demo_settings.paths.rules)).rules)


def test_rules_validation_names_rule_and_key(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {id: a, type: forbidden_overlap, title_zh: 甲, title_en: A, severity: high,\n"
                    "     subject: {plan: urban_plan, colour: red}, constraint: red_line}\n"
                    "  - {id: b, type: teleport, title_zh: 乙, title_en: B, severity: low}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert "rules[a].subject.colour: unknown key" in message
    assert "rules[b]: Input tag 'teleport' found using 'type' does not match" in message
    path.write_text("rules:\n  - {id: a, type: lines_overlap, title_zh: 甲, title_en: A, severity: high, layers: [x, y]}\n"
                    "  - {id: a, type: lines_overlap, title_zh: 甲, title_en: A, severity: high, layers: [x, y]}\n")
    with pytest.raises(ConfigError, match=r"rule id 'a' is used twice"):
        load_rules(path)


# --- every conflict as the evaluation without subdivision finds it ----------------------------------------


@pytest.fixture(scope="module")
def city_settings(base_settings, tmp_path_factory):
    """A small generated city, ingested and detected in a database of its own."""
    name = f"geoservice_city_detect_{os.getpid()}"
    settings = ingested_city(base_settings, name, tmp_path_factory.mktemp("city"))
    try:
        yield settings
    finally:
        db.drop_database(settings.database.url, name)


def unsplit_conflicts(settings, max_vertices: int | None = UNSPLIT) -> dict[tuple, float]:
    """(rule, feature A, feature B, district, difference) -> area of every conflict, no polygon cut, the plans
    overlaid again (not read from the base map)."""
    rules = load_rules(settings.path(settings.paths.rules)).selected(None)
    with transaction(settings) as conn, conn.cursor() as cur:
        catalog = LayerCatalog(cur, settings, basemap=False)
        catalog.subdivided = Subdivided(max_vertices, settings.integration.threads)
        results = run_rules(settings, rules, catalog, SilentReporter())
        districts = catalog.districts()
    out = {}
    for result in results:
        found = result.found
        ids_b = found.layer_b.ids[found.index_b].tolist() if found.layer_b is not None else [None] * len(found)
        codes = [districts.source_ids[d] if d >= 0 else None for d in result.district_index.tolist()]
        kinds = found.details.columns.get("difference", [None] * len(found))
        for key, area in zip(zip([result.rule.id] * len(found), found.layer_a.ids[found.index_a].tolist(), ids_b, codes,
                                 list(kinds)), result.areas.tolist()):
            assert key not in out
            out[key] = area
    return out


@pytest.mark.parametrize("which", ["demo", "city"])
def test_stored_conflicts_equal_the_unsplit_evaluation(which, demo_settings, city_settings) -> None:
    settings = demo_settings if which == "demo" else city_settings
    if which == "city":
        integrate(settings)  # plan differences are read from its patches
    summary = detect(settings)
    run = summary.run_id
    assert summary.plan_differences_from == query(settings, "SELECT id FROM geoservice.integration_run WHERE is_current")[0][0]
    rows = query(settings, "SELECT rule_id, feature_a, feature_b, district_code, details->>'difference', area_m2 "
                           "FROM geoservice.conflict WHERE run_id = %s", run)
    stored = {tuple(row[:5]): row[5] for row in rows}
    want = unsplit_conflicts(settings)
    assert len(stored) == len(rows) and stored.keys() == want.keys()
    for key, area in want.items():
        assert stored[key] == pytest.approx(area, rel=RTOL), key
    by_rule = Counter(key[0] for key in want)
    assert len(by_rule) >= 8, by_rule  # (nearly) every rule finds conflicts


def test_finely_cut_operands_find_the_same_conflicts(city_settings) -> None:
    want, got = unsplit_conflicts(city_settings), unsplit_conflicts(city_settings, max_vertices=16)
    assert got.keys() == want.keys()
    for key, area in want.items():
        assert got[key] == pytest.approx(area, rel=RTOL), key


def test_plan_differences_come_from_the_base_map_only_when_it_fits(demo_settings) -> None:
    from geoservice.db.patches import usable_run

    (run,), = query(demo_settings, "SELECT id FROM geoservice.integration_run WHERE is_current")
    versions = dict(query(demo_settings, "SELECT v.layer, v.id FROM geoservice.layer_version v JOIN geoservice.layer l "
                                         "ON l.name = v.layer WHERE v.is_active AND l.kind IN ('land_use', 'urban_plan', 'district')"))
    sliver = demo_settings.integration.sliver_area_m2
    with transaction(demo_settings) as conn, conn.cursor() as cur:
        assert usable_run(cur, versions, sliver) == run
        assert usable_run(cur, {**versions, "landuse": -1}, sliver) is None  # another land-use version
        assert usable_run(cur, versions, sliver + 1) is None  # another sliver rule
        assert usable_run(cur, {**versions, "no_such_layer": 1}, sliver) is None  # a layer the run did not use
