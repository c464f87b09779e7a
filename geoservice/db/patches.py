"""Base-map patches read back as arrays, for the stages after integration (detection's plan differences)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import psycopg2.extras
import pyarrow as pa
from psycopg2 import sql

from geoservice.db.layers import FeatureArrays, read_with_geometry, texts
from geoservice.db.read import LayerVersion, layer_versions, qualified, read_run, rows_of_run
from geoservice.db.runs import region_rows


@dataclass
class PatchArrays:
    """Aligned arrays of base-map patches: both plans' features (id, unified code, source id), district code (None
    outside), geometry. A patch carried over by an incremental run names the features of the version it was computed
    from (the same geometry, code and source id as the active version's)."""

    land: FeatureArrays
    plan: FeatureArrays
    district_codes: np.ndarray
    geometries: np.ndarray

    def __len__(self) -> int:
        return len(self.geometries)

    def take(self, index: np.ndarray) -> PatchArrays:
        return PatchArrays(self.land.subset(index), self.plan.subset(index), self.district_codes[index],
                           self.geometries[index])


def usable_run(cur: psycopg2.extensions.cursor, versions: dict[str, int], sliver_area_m2: float) -> int | None:
    """The current integration run when it was built from exactly these layer versions (name -> version id; others it
    used do not matter) with this sliver area, and records its patches' piece areas; else None."""
    cur.execute(sql.SQL("""
        SELECT r.id FROM {run} r
        WHERE r.is_current AND (r.parameters ->> 'sliver_area_m2')::float8 = %(sliver)s
          AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(%(versions)s::jsonb) v
                          WHERE (r.layer_versions -> v.key ->> 'id') IS DISTINCT FROM v.value)
          AND EXISTS (SELECT 1 FROM {patch} p WHERE p.run_id = ANY(r.chain) AND p.piece_m2 IS NOT NULL)
    """).format(run=qualified("integration_run"), patch=qualified("basemap_patch")),
        {"sliver": sliver_area_m2, "versions": psycopg2.extras.Json({k: str(v) for k, v in versions.items()})})
    row = cur.fetchone()
    return row[0] if row else None


def read_plan_patches(cur: psycopg2.extensions.cursor, run_id: int, layers: tuple[LayerVersion, LayerVersion],
                      land_codes: list[str], plan_codes: list[str], min_piece_m2: float,
                      region: sql.Composable | None = None) -> PatchArrays:
    """The patches of run `run_id` with one of `land_codes` and one of `plan_codes`, cut from a land-use × urban-plan
    piece of at least `min_piece_m2` (and whose box meets a box of `region`: a relation with a column `box`), by id; with
    their features' source ids from any version of the two plan layers (`layers`: the active land-use and urban plan)."""
    run = read_run(cur, "integration", run_id)
    versions = [[v.version_id for v in layer_versions(cur, layer.name)] for layer in layers]
    source = region_rows("basemap_patch", run, region) if region else sql.SQL("{} p").format(qualified("basemap_patch"))
    table, geometries = read_with_geometry(
        cur, {"land_feature_id": pa.int64(), "land_code": pa.string(), "land_source": pa.string(),
              "plan_feature_id": pa.int64(), "plan_code": pa.string(), "plan_source": pa.string(),
              "district_code": pa.string()},
        sql.SQL("FROM (SELECT p.*, lf.source_id AS land_source, pf.source_id AS plan_source FROM {source} "
                "LEFT JOIN {feature} lf ON lf.version_id = ANY(%s) AND lf.id = p.land_feature_id "
                "LEFT JOIN {feature} pf ON pf.version_id = ANY(%s) AND pf.id = p.plan_feature_id "
                "WHERE {rows} AND p.land_code = ANY(%s) AND p.plan_code = ANY(%s) AND p.piece_m2 >= %s) p "
                "ORDER BY id").format(source=source, feature=qualified("feature"), rows=rows_of_run(run, "p")),
        (*versions, land_codes, plan_codes, min_piece_m2))

    def features(layer: LayerVersion, side: str) -> FeatureArrays:
        none = np.full(len(table), None, dtype=object)
        return FeatureArrays(layer.name, table[f"{side}_feature_id"].to_numpy().astype(np.int64),
                             texts(table, f"{side}_code"), none, texts(table, f"{side}_source"), geometries)

    return PatchArrays(features(layers[0], "land"), features(layers[1], "plan"), texts(table, "district_code"),
                       geometries)
