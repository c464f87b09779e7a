"""Base-map patches read back as arrays, for the stages after integration (detection's plan differences)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import psycopg2.extras
import pyarrow as pa
from psycopg2 import sql

from geoservice.db.layers import read_with_geometry, texts
from geoservice.db.read import qualified


@dataclass
class PatchArrays:
    """Aligned arrays of base-map patches: both plans' feature ids, district code (None outside), geometry."""

    land_ids: np.ndarray
    plan_ids: np.ndarray
    district_codes: np.ndarray
    geometries: np.ndarray

    def __len__(self) -> int:
        return len(self.geometries)

    def take(self, index: np.ndarray) -> PatchArrays:
        return PatchArrays(self.land_ids[index], self.plan_ids[index], self.district_codes[index], self.geometries[index])


def usable_run(cur: psycopg2.extensions.cursor, versions: dict[str, int], sliver_area_m2: float) -> int | None:
    """The current integration run when it was built from exactly these layer versions (name -> version id; others it
    used do not matter) with this sliver area, and records its patches' piece areas; else None."""
    cur.execute(sql.SQL("""
        SELECT r.id FROM {run} r
        WHERE r.is_current AND (r.parameters ->> 'sliver_area_m2')::float8 = %(sliver)s
          AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(%(versions)s::jsonb) v
                          WHERE (r.layer_versions -> v.key ->> 'id') IS DISTINCT FROM v.value)
          AND EXISTS (SELECT 1 FROM {patch} p WHERE p.run_id = r.id AND p.piece_m2 IS NOT NULL)
    """).format(run=qualified("integration_run"), patch=qualified("basemap_patch")),
        {"sliver": sliver_area_m2, "versions": psycopg2.extras.Json({k: str(v) for k, v in versions.items()})})
    row = cur.fetchone()
    return row[0] if row else None


def read_plan_patches(cur: psycopg2.extensions.cursor, run_id: int, land_codes: list[str], plan_codes: list[str],
                      min_piece_m2: float, envelope: tuple[float, float, float, float, int] | None = None) -> PatchArrays:
    """The patches of run `run_id` with one of `land_codes` and one of `plan_codes`, cut from a land-use × urban-plan
    piece of at least `min_piece_m2` (and whose box meets `envelope` (xmin, ymin, xmax, ymax, srid)), by id."""
    box = " AND geom && ST_MakeEnvelope(%s, %s, %s, %s, %s)" if envelope else ""
    table, geometries = read_with_geometry(
        cur, {"land_feature_id": pa.int64(), "plan_feature_id": pa.int64(), "district_code": pa.string()},
        sql.SQL("FROM {} WHERE run_id = %s AND land_code = ANY(%s) AND plan_code = ANY(%s) AND piece_m2 >= %s"
                + box + " ORDER BY id").format(qualified("basemap_patch")),
        (run_id, land_codes, plan_codes, min_piece_m2, *(envelope or ())))
    return PatchArrays(table["land_feature_id"].to_numpy().astype(np.int64),
                       table["plan_feature_id"].to_numpy().astype(np.int64), texts(table, "district_code"), geometries)
