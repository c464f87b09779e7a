"""The base map on the demo data, checked against independent PostGIS SQL; on the demo and a generated city, every
patch checked against the overlay without subdivision."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from geoservice import db
from geoservice.basemap import build_basemap, difference_classes, integrate
from geoservice.basemap.store import read_inputs
from geoservice.progress import SilentReporter
from city_helpers import ingested_city
from sql_helpers import active, query

#: no vertex limit: the base map as built before large polygons were subdivided
UNSPLIT = None
RTOL = 1e-9

CURRENT = ("(SELECT p.* FROM geoservice.basemap_patch p JOIN geoservice.integration_run r ON p.run_id = ANY(r.chain) AND (p.until_run IS NULL OR p.until_run > r.id) "
           "WHERE r.is_current)")


def test_patches_carry_the_codes_found_at_their_points(demo_settings) -> None:
    wrong = query(demo_settings, f"""
        WITH patch AS (SELECT id, land_code, plan_code, district_code, ST_PointOnSurface(geom) AS pt FROM {CURRENT} q)
        SELECT count(*) FILTER (WHERE l.class_code IS DISTINCT FROM patch.land_code),
               count(*) FILTER (WHERE u.class_code IS DISTINCT FROM patch.plan_code),
               count(*) FILTER (WHERE d.source_id IS DISTINCT FROM patch.district_code),
               count(*)
        FROM patch
        LEFT JOIN {active('landuse')} l ON ST_Contains(l.geom, patch.pt)
        LEFT JOIN {active('urban_plan')} u ON ST_Contains(u.geom, patch.pt)
        LEFT JOIN {active('districts')} d ON ST_Contains(d.geom, patch.pt)""")[0]
    assert wrong[:3] == (0, 0, 0) and wrong[3] > 5000


def test_patches_tile_the_union_of_the_plans(demo_settings) -> None:
    patches, union, slivers = query(demo_settings, f"""
        SELECT (SELECT sum(area_m2) FROM {CURRENT} a),
               (SELECT ST_Area(ST_Union(geom)) FROM (SELECT geom FROM {active('landuse')} l
                                                     UNION ALL SELECT geom FROM {active('urban_plan')} u) b),
               (SELECT (summary->>'slivers_area_m2')::float FROM geoservice.integration_run WHERE is_current)""")[0]
    assert patches + slivers == pytest.approx(union, rel=1e-9)
    overlapping = query(demo_settings, f"""
        SELECT count(*) FROM {CURRENT} a JOIN {CURRENT} b ON a.id < b.id AND ST_Intersects(a.geom, b.geom)
        WHERE ST_Area(ST_Intersection(a.geom, b.geom)) > 1e-6""")[0][0]
    assert overlapping == 0


def test_difference_classes_and_line_flags(demo_settings) -> None:
    rows = query(demo_settings, f"""
        SELECT p.difference, lc.construction, pc.construction, count(*)
        FROM {CURRENT} p LEFT JOIN geoservice.land_class lc ON lc.code = p.land_code
        LEFT JOIN geoservice.land_class pc ON pc.code = p.plan_code GROUP BY 1, 2, 3""")
    expected = {(True, True): "both_construction", (False, True): "urban_only", (True, False): "land_only",
                (False, False): "both_non_construction"}
    for difference, land_c, plan_c, _ in rows:
        assert difference == expected[(bool(land_c), bool(plan_c))]
    red = query(demo_settings, f"""
        SELECT p.id, p.red_line_m2, p.in_red_line,
               coalesce((SELECT ST_Area(ST_Intersection(p.geom, ST_Union(r.geom))) FROM {active('red_line')} r
                         WHERE ST_Intersects(r.geom, p.geom)), 0)
        FROM {CURRENT} p WHERE p.red_line_m2 > 0 OR EXISTS (
            SELECT 1 FROM {active('red_line')} r WHERE ST_Intersects(r.geom, p.geom))""")
    assert red
    for _, stored, flag, independent in red:
        assert stored == pytest.approx(independent, rel=1e-7, abs=1e-6)
    assert any(flag for *_, flag, _ in red)


def test_new_run_becomes_current_and_keeps_history(demo_settings) -> None:
    before = query(demo_settings, "SELECT id FROM geoservice.integration_run WHERE is_current")[0][0]
    summary = integrate(demo_settings)
    assert summary.run_id > before
    assert query(demo_settings, "SELECT id FROM geoservice.integration_run WHERE is_current") == [(summary.run_id,)]
    counts = query(demo_settings, "SELECT run_id, count(*) FROM geoservice.basemap_patch WHERE run_id IN (%s, %s) "
                                  "GROUP BY run_id ORDER BY run_id", before, summary.run_id)
    assert counts[0][1] == counts[1][1] == summary.patches


def test_readers_see_the_previous_base_map_until_the_new_one_commits(demo_settings) -> None:
    import threading
    import time

    from geoservice.db.connection import connect_url

    before = query(demo_settings, "SELECT id, (SELECT count(*) FROM geoservice.basemap_patch p WHERE p.run_id = r.id) "
                                  "FROM geoservice.integration_run r WHERE is_current")[0]
    blocker = connect_url(demo_settings.database.url)
    blocker.autocommit = False
    with blocker.cursor() as cur:  # integrate blocks at ATTACH PARTITION, after its COPY, until this lock goes
        cur.execute("LOCK TABLE geoservice.basemap_patch IN SHARE UPDATE EXCLUSIVE MODE")
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.setdefault("summary", integrate(demo_settings)))
    worker.start()
    try:
        deadline, waiting = time.monotonic() + 60, []
        while time.monotonic() < deadline and not waiting:
            waiting = query(demo_settings, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND query LIKE 'ALTER TABLE%%ATTACH%%'")
            time.sleep(0.05)
        assert waiting, "integrate never reached ATTACH PARTITION"
        assert query(demo_settings, "SELECT id FROM geoservice.integration_run WHERE is_current") == [(before[0],)]
        visible = query(demo_settings, "SELECT run_id, count(*) FROM geoservice.basemap_patch p JOIN geoservice.integration_run r "
                                       "ON p.run_id = ANY(r.chain) AND (p.until_run IS NULL OR p.until_run > r.id) WHERE r.is_current GROUP BY run_id")
        assert visible == [before]
    finally:
        blocker.rollback()
        blocker.close()
        worker.join(timeout=120)
    assert query(demo_settings, "SELECT id FROM geoservice.integration_run WHERE is_current") == [(result["summary"].run_id,)]


# --- every patch as the overlay without subdivision gives it ----------------------------------------------


class Lines(SilentReporter):
    """Keeps the lines a stage prints (its progress bars stay silent)."""

    def __init__(self) -> None:
        self.text: list[str] = []

    def line(self, text: str) -> None:
        self.text.append(text)


@pytest.fixture(scope="module")
def city_settings(base_settings, tmp_path_factory):
    """A small generated city, ingested and integrated in a database of its own."""
    name = f"geoservice_city_basemap_{os.getpid()}"
    settings = ingested_city(base_settings, name, tmp_path_factory.mktemp("city"))
    try:
        lines = Lines()
        summary = integrate(settings, lines)
        (line,) = lines.text  # the store's share, in the progress output
        assert re.fullmatch(rf"stored {summary.patches:,} patches: COPY [0-9.]+ s, indexes [0-9.]+ s \([0-9]+% of [0-9.]+ s\)",
                            line), line
        yield settings
    finally:
        db.drop_database(settings.database.url, name)


def at(values, index):
    """values[index] with None where index is -1."""
    out = np.full(len(index), None, dtype=object)
    out[index >= 0] = values[index[index >= 0]]
    return out


def unsplit_basemap(settings, max_vertices: int | None = UNSPLIT):
    """The active layers read again and overlaid in memory, their polygons cut at `max_vertices` vertices."""
    inputs = read_inputs(settings)
    lines = {kind: np.concatenate([f.geometries for f in found]) for kind, found in inputs.lines.items() if found}
    base = build_basemap(inputs.land.geometries, inputs.plan.geometries, inputs.districts.geometries, lines,
                         settings.integration.sliver_area_m2, settings.integration.threads, max_vertices=max_vertices)
    return inputs, base


@pytest.mark.parametrize("which", ["demo", "city"])
def test_stored_patches_equal_the_unsplit_overlay(which, demo_settings, city_settings) -> None:
    settings = demo_settings if which == "demo" else city_settings
    inputs, want = unsplit_basemap(settings)
    land, plan, districts = inputs.land, inputs.plan, inputs.districts
    codes = (at(land.codes, want.land_index), at(plan.codes, want.plan_index))
    differences = difference_classes(land.codes, want.land_index, plan.codes, want.plan_index, settings.construction_codes)
    keys = zip(at(land.ids, want.land_index).tolist(), at(plan.ids, want.plan_index).tolist(),
               at(districts.source_ids, want.district_index).tolist())
    expected = {key: (codes[0][i], codes[1][i], differences[i], want.areas[i],
                      *(want.line_m2.get(kind, np.zeros(len(want)))[i] for kind in ("red_line", "basic_farmland", "dev_boundary")))
                for i, key in enumerate(keys)}
    rows = query(settings, f"""SELECT land_feature_id, plan_feature_id, district_code, land_code, plan_code, difference,
                                      area_m2, red_line_m2, farmland_m2, dev_boundary_m2 FROM {CURRENT} p""")
    stored = {tuple(row[:3]): row[3:] for row in rows}
    assert len(rows) == len(stored) == len(want) > 1000
    assert stored.keys() == expected.keys()
    for key, (land_code, plan_code, difference, area, *lines) in expected.items():
        got = stored[key]
        assert got[:3] == (land_code, plan_code, difference), key
        assert got[3] == pytest.approx(area, rel=RTOL), key
        for stored_m2, m2 in zip(got[4:], lines):
            assert stored_m2 == pytest.approx(m2, rel=RTOL, abs=RTOL * area), key
    assert sum(v[4] > 0 for v in expected.values()) > 10  # the red line overlaps patches (cut into parts)


def test_finely_cut_operands_give_the_same_patches(city_settings) -> None:
    _, want = unsplit_basemap(city_settings)
    _, got = unsplit_basemap(city_settings, max_vertices=16)
    assert np.array_equal(got.land_index, want.land_index) and np.array_equal(got.plan_index, want.plan_index)
    assert np.array_equal(got.district_index, want.district_index)
    np.testing.assert_allclose(got.areas, want.areas, rtol=RTOL)
    for kind, m2 in want.line_m2.items():
        assert (np.abs(got.line_m2[kind] - m2) <= RTOL * want.areas).all(), kind
        assert (m2 > 0).sum() > 10, kind
