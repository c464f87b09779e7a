"""Conflict detection on the demo data: each rule type checked against independent PostGIS SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoservice.conflicts import detect, load_rules
from geoservice.errors import ConfigError
from sql_helpers import active, query

CURRENT = ("(SELECT c.* FROM geoservice.conflict c JOIN geoservice.detection_run r ON r.id = c.run_id "
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
