"""Point lookup: what every plan says at a place — base-map patch, codes and names, lines, district, open conflicts."""

from __future__ import annotations

import weakref
from collections.abc import Collection
from typing import Any

import numpy as np
import psycopg2.extensions
import shapely

from geoservice.db.read import current_rows_sql, current_run_id_sql
from geoservice.queries.points import QueryError, input_crs, to_working
from geoservice.settings import Settings

LINE_KINDS = ("red_line", "basic_farmland", "dev_boundary")

#: one round trip: the current runs, the patch under the point, the protection lines and the open conflicts there.
#: Prepared once per connection: planning a statement over the partitioned tables costs more than running it.
PREPARED = "geoservice_lookup"
PARAMETER_TYPES = "float8, float8, integer, text[], text[], boolean"
LOOKUP_SQL = f"""
WITH pt AS (SELECT ST_SetSRID(ST_MakePoint($1, $2), $3) AS g),
runs AS (SELECT {current_run_id_sql("integration")} AS basemap, {current_run_id_sql("detection")} AS detection),
patch AS (
    SELECT p.id, p.area_m2, p.difference, p.district_code, p.district_name,
           p.land_feature_id, p.land_code, lc.name_zh AS land_zh, lc.name_en AS land_en,
           p.plan_feature_id, p.plan_code, pc.name_zh AS plan_zh, pc.name_en AS plan_en,
           (SELECT basemap FROM runs) AS run_id
    FROM geoservice.basemap_patch p CROSS JOIN pt
    LEFT JOIN geoservice.land_class lc ON lc.code = p.land_code
    LEFT JOIN geoservice.land_class pc ON pc.code = p.plan_code
    WHERE {current_rows_sql("integration", "p")} AND ST_Intersects(p.geom, pt.g)
    ORDER BY p.id LIMIT 1),
lines AS (
    SELECT coalesce(jsonb_agg(jsonb_build_object('layer', v.layer, 'kind', l.kind, 'title', l.title, 'feature_id', f.id,
                                                 'source_id', f.source_id, 'name', f.name) ORDER BY l.kind, v.layer, f.id),
                    '[]') AS found
    FROM geoservice.layer_version v JOIN geoservice.layer l ON l.name = v.layer
    JOIN geoservice.feature f ON f.version_id = v.id CROSS JOIN pt
    WHERE v.is_active AND l.kind = ANY($4) AND ($5::text[] IS NULL OR v.layer = ANY($5::text[]))
      AND ST_Intersects(f.geom, pt.g)),
conflicts AS (
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'rule_id', c.rule_id, 'title_zh', t.rule->>'title_zh',
                                                 'title_en', t.rule->>'title_en', 'severity', c.severity,
                                                 'area_m2', c.area_m2, 'code_a', c.code_a, 'code_b', c.code_b,
                                                 'status', c.status) ORDER BY c.id), '[]') AS found
    FROM geoservice.conflict c JOIN geoservice.detection_run r ON r.is_current CROSS JOIN pt
    CROSS JOIN LATERAL (SELECT e FROM jsonb_array_elements(r.rules) e WHERE e->>'id' = c.rule_id) t(rule)
    WHERE $6 AND {current_rows_sql("detection", "c")} AND c.status = 'open' AND ST_Intersects(c.geom, pt.g))
SELECT runs.basemap, patch.*, lines.found, conflicts.found
FROM runs LEFT JOIN patch ON true CROSS JOIN lines CROSS JOIN conflicts
"""


_prepared: weakref.WeakKeyDictionary[psycopg2.extensions.connection, int] = weakref.WeakKeyDictionary()


def _prepare(cur: psycopg2.extensions.cursor) -> None:
    """PREPARE the lookup on this cursor's connection once (per backend: a reconnect prepares again)."""
    conn = cur.connection
    backend = conn.get_backend_pid()
    if _prepared.get(conn) != backend:
        cur.execute(f"PREPARE {PREPARED} ({PARAMETER_TYPES}) AS {LOOKUP_SQL}")
        _prepared[conn] = backend


def _class(code: str | None, name_zh: str | None, name_en: str | None, feature: int | None) -> dict[str, Any] | None:
    return None if feature is None else {"code": code, "name_zh": name_zh, "name_en": name_en, "feature_id": feature}


def lookup_point(cur: psycopg2.extensions.cursor, settings: Settings, x: float, y: float, crs: str | None = None,
                 readable_layers: Collection[str] | None = None, with_conflicts: bool = True) -> dict[str, Any]:
    """Everything the plans say at (x, y) given in `crs` (x = easting/longitude; CRS84 by default; GCJ-02 and BD-09
    too, refused outside China). A caller of a lower grade passes the layers it may read (protection lines of other
    layers are left out) and whether it may read the conflicts. `crs` in the answer names the CRS of `point`'s x and
    y; `point.working` is in the working CRS."""
    source = input_crs(settings, crs)
    where = f"the point ({x}, {y}) in {source.name}"
    point = to_working(settings, np.array([shapely.Point(x, y)]), source, where)[0]
    _prepare(cur)
    cur.execute(f"EXECUTE {PREPARED} (%s, %s, %s, %s, %s, %s)",
                (point.x, point.y, settings.working_srid, list(LINE_KINDS),
                 None if readable_layers is None else list(readable_layers), with_conflicts))
    (basemap_run, patch_id, area, difference, district_code, district_name, land_id, land_code, land_zh, land_en,
     plan_id, plan_code, plan_zh, plan_en, run_id, lines, conflicts) = cur.fetchone()
    if basemap_run is None:
        raise QueryError("there is no base map yet: run `geoservice integrate`")
    if patch_id is None:
        raise QueryError(f"{where} lies outside the base map")
    return {
        "crs": source.name,
        "point": {"x": x, "y": y, "crs": source.name, "working": [point.x, point.y], "working_crs": settings.working_crs},
        "patch": {"id": patch_id, "run_id": run_id, "area_m2": area, "difference": difference,
                  "land_use": _class(land_code, land_zh, land_en, land_id),
                  "urban_plan": _class(plan_code, plan_zh, plan_en, plan_id)},
        "district": None if district_code is None else {"code": district_code, "name": district_name},
        "protection_lines": lines,
        "conflicts": conflicts,
    }
