"""What changed between two versions of the layers a run read: the changed features and the boxes of the features
whose results they can change (for incremental runs).

A feature is unchanged when the other version has a feature with the same geometry (byte for byte), unified code,
name and source id; the others are changed (added, removed or altered: for a run the same thing). The changed
features of both versions are the footprint (`incr_footprint`, a temporary table of this transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
from psycopg2 import sql

from geoservice.db.read import qualified

FOOTPRINT = sql.Identifier("incr_footprint")

#: the features of one version no feature of the other version equals (geometry, code, name, source id); hashed on
#: the stored area and the source id, the geometries compared (`=`: the same coordinates in the same order) only for
#: those candidates
_CHANGED = """
INSERT INTO incr_footprint (layer, side, id, geom)
SELECT %(layer)s, %(side)s, a.id, a.geom FROM geoservice.feature a
WHERE a.version_id = %(this)s AND NOT EXISTS (
    SELECT 1 FROM geoservice.feature b
    WHERE b.version_id = %(other)s AND b.area_m2 = a.area_m2 AND coalesce(b.source_id, '') = coalesce(a.source_id, '')
      AND b.class_code IS NOT DISTINCT FROM a.class_code AND b.name IS NOT DISTINCT FROM a.name
      AND b.source_id IS NOT DISTINCT FROM a.source_id AND b.geom = a.geom)
"""


@dataclass(frozen=True)
class LayerChange:
    """One input layer's change between the version a run read and the active one: features removed (or altered:
    their old form) and added (or altered: their new form)."""

    layer: str
    old_version: int
    new_version: int
    removed: int
    added: int

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def start_footprint(cur: psycopg2.extensions.cursor) -> None:
    """An empty footprint table for this transaction."""
    cur.execute("DROP TABLE IF EXISTS pg_temp.incr_footprint")
    cur.execute("CREATE TEMP TABLE incr_footprint (layer text, side text, id bigint, geom geometry) ON COMMIT DROP")


def add_changes(cur: psycopg2.extensions.cursor, layer: str, old: dict[str, int], new: dict[str, int]) -> LayerChange:
    """Add the changed features of `layer` between two of its versions ({"version": n, "id": version id}) to the
    footprint."""
    cur.execute("SET LOCAL work_mem = '256MB'")
    counts = []
    for side, this, other in (("old", old["id"], new["id"]), ("new", new["id"], old["id"])):
        cur.execute(_CHANGED, {"layer": layer, "side": side, "this": this, "other": other})
        counts.append(cur.rowcount)
    return LayerChange(layer, old["version"], new["version"], *counts)


def index_footprint(cur: psycopg2.extensions.cursor) -> None:
    """Index the footprint for the spatial joins that follow."""
    cur.execute("CREATE INDEX ON incr_footprint USING gist (geom)")
    cur.execute("ANALYZE incr_footprint")


def touched_boxes(cur: psycopg2.extensions.cursor, version_ids: list[int], layers: list[str]) -> np.ndarray:
    """The boxes (n, 4: xmin, ymin, xmax, ymax, rounded outwards) of the features of `version_ids` that meet a
    footprint feature of one of `layers`."""
    cur.execute(sql.SQL(
        "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM (SELECT DISTINCT ON (f.version_id, f.id) Box2D(f.geom) b "
        "FROM {footprint} c JOIN {feature} f ON f.geom && c.geom AND ST_Intersects(f.geom, c.geom) "
        "WHERE c.layer = ANY(%s) AND f.version_id = ANY(%s)) t").format(footprint=FOOTPRINT, feature=qualified("feature")),
        (layers, version_ids))
    rows = cur.fetchall()
    return np.asarray(rows, np.float64).reshape(len(rows), 4)
