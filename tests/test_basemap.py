"""The base map on the demo data, checked against independent PostGIS SQL."""

from __future__ import annotations

import pytest

from geoservice.basemap import integrate
from sql_helpers import active, query

CURRENT = ("(SELECT p.* FROM geoservice.basemap_patch p JOIN geoservice.integration_run r ON r.id = p.run_id "
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
                                       "ON r.id = p.run_id WHERE r.is_current GROUP BY run_id")
        assert visible == [before]
    finally:
        blocker.rollback()
        blocker.close()
        worker.join(timeout=120)
    assert query(demo_settings, "SELECT id FROM geoservice.integration_run WHERE is_current") == [(result["summary"].run_id,)]
