"""Point lookup: what every plan says at a place — base-map patch, codes and names, lines, district, open conflicts."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import psycopg2.extensions
import shapely

from geoservice.queries.points import QueryError, input_crs, to_working
from geoservice.settings import Settings

LINE_KINDS = ("red_line", "basic_farmland", "dev_boundary")

PATCH_SQL = """
SELECT p.id, p.area_m2, p.difference, p.district_code, p.district_name,
       p.land_feature_id, p.land_code, lc.name_zh, lc.name_en,
       p.plan_feature_id, p.plan_code, pc.name_zh, pc.name_en, p.run_id
FROM geoservice.basemap_patch p
LEFT JOIN geoservice.land_class lc ON lc.code = p.land_code
LEFT JOIN geoservice.land_class pc ON pc.code = p.plan_code
WHERE p.run_id = %(run)s AND ST_Intersects(p.geom, ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), %(srid)s))
ORDER BY p.id LIMIT 1
"""

LINES_SQL = """
SELECT v.layer, l.kind, l.title, f.id, f.source_id, f.name
FROM geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id JOIN geoservice.layer l ON l.name = v.layer
WHERE f.version_id = ANY(%(versions)s) AND ST_Intersects(f.geom, ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), %(srid)s))
ORDER BY l.kind, v.layer, f.id
"""

CONFLICTS_SQL = """
SELECT c.id, c.rule_id, t.rule->>'title_zh', t.rule->>'title_en', c.severity, c.area_m2, c.code_a, c.code_b, c.status
FROM geoservice.conflict c JOIN geoservice.detection_run r ON r.id = c.run_id
CROSS JOIN LATERAL (SELECT e FROM jsonb_array_elements(r.rules) e WHERE e->>'id' = c.rule_id) t(rule)
WHERE c.run_id = %(run)s AND c.status = 'open'
  AND ST_Intersects(c.geom, ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), %(srid)s))
ORDER BY c.id
"""

CONTEXT_SQL = """
SELECT (SELECT id FROM geoservice.integration_run WHERE is_current),
       (SELECT id FROM geoservice.detection_run WHERE is_current),
       (SELECT coalesce(array_agg(v.id), '{}') FROM geoservice.layer_version v JOIN geoservice.layer l ON l.name = v.layer
        WHERE v.is_active AND l.kind = ANY(%(kinds)s))
"""


def _class(code: str | None, name_zh: str | None, name_en: str | None, feature: int | None) -> dict[str, Any] | None:
    return None if feature is None else {"code": code, "name_zh": name_zh, "name_en": name_en, "feature_id": feature}


def lookup_point(cur: psycopg2.extensions.cursor, settings: Settings, x: float, y: float, crs: str | None = None,
                 readable_layers: Collection[str] | None = None, with_conflicts: bool = True) -> dict[str, Any]:
    """Everything the plans say at (x, y) given in `crs` (x = easting/longitude; CRS84 by default). A caller of a
    lower grade passes the layers it may read (protection lines of other layers are left out) and whether it
    may read the conflicts."""
    source = input_crs(settings, crs)
    point = to_working(settings, np.array([shapely.Point(x, y)]), source)[0]
    params = {"x": point.x, "y": point.y, "srid": settings.working_srid, "kinds": list(LINE_KINDS)}
    cur.execute(CONTEXT_SQL, params)
    basemap_run, detection_run, versions = cur.fetchone()
    if basemap_run is None:
        raise QueryError("there is no base map yet: run `geoservice integrate`")
    cur.execute(PATCH_SQL, {**params, "run": basemap_run})
    row = cur.fetchone()
    if row is None:
        raise QueryError(f"the point ({x}, {y}) in {source.to_string()} lies outside the base map")
    (patch_id, area, difference, district_code, district_name, land_id, land_code, land_zh, land_en,
     plan_id, plan_code, plan_zh, plan_en, run_id) = row
    cur.execute(LINES_SQL, {**params, "versions": list(versions)})
    lines = [{"layer": layer, "kind": kind, "title": title, "feature_id": fid, "source_id": sid, "name": name}
             for layer, kind, title, fid, sid, name in cur.fetchall()
             if readable_layers is None or layer in readable_layers]
    conflicts: list[dict[str, Any]] = []
    if detection_run is not None and with_conflicts:
        cur.execute(CONFLICTS_SQL, {**params, "run": detection_run})
        keys = ("id", "rule_id", "title_zh", "title_en", "severity", "area_m2", "code_a", "code_b", "status")
        conflicts = [dict(zip(keys, row)) for row in cur.fetchall()]
    return {
        "point": {"x": x, "y": y, "crs": source.to_string(), "working": [point.x, point.y]},
        "patch": {"id": patch_id, "run_id": run_id, "area_m2": area, "difference": difference,
                  "land_use": _class(land_code, land_zh, land_en, land_id),
                  "urban_plan": _class(plan_code, plan_zh, plan_en, plan_id)},
        "district": None if district_code is None else {"code": district_code, "name": district_name},
        "protection_lines": lines,
        "conflicts": conflicts,
    }
