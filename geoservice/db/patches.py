"""Base-map patches read back as arrays, for the stages after integration (detection's plan differences)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import psycopg2.extras
import pyarrow as pa
import pyarrow.compute as pc
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
        SELECT r.id, r.chain FROM {run} r
        WHERE r.is_current AND (r.parameters ->> 'sliver_area_m2')::float8 = %(sliver)s
          AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(%(versions)s::jsonb) v
                          WHERE (r.layer_versions -> v.key ->> 'id') IS DISTINCT FROM v.value)
    """).format(run=qualified("integration_run")),
        {"sliver": sliver_area_m2, "versions": psycopg2.extras.Json({k: str(v) for k, v in versions.items()})})
    row = cur.fetchone()
    if row is None:
        return None
    # the chain's first run (a full one: the incremental runs after it store what it stores) records piece areas;
    # its id a literal, so that only its partition is read (with the chain a column, every run's partition was)
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE run_id = %s AND piece_m2 IS NOT NULL)").format(
        qualified("basemap_patch")), ((row[1] or [row[0]])[0],))
    return row[0] if cur.fetchone()[0] else None


@dataclass(frozen=True)
class PlanSelection:
    """Base-map patches with one of `land_codes` and one of `plan_codes`, cut from a land-use × urban-plan piece of at
    least `min_piece_m2` (one class of a plan-difference rule)."""

    land_codes: list[str]
    plan_codes: list[str]
    min_piece_m2: float


def read_plan_patches(cur: psycopg2.extensions.cursor, run_id: int, layers: tuple[LayerVersion, LayerVersion],
                      selections: list[PlanSelection], region: sql.Composable | None = None) -> list[PatchArrays]:
    """Per selection, the patches of run `run_id` it selects (whose box meets a box of `region`: a relation with a
    column `box`), by id, with their features' source ids from any version of the two plan layers (`layers`: the
    active land-use and urban plan) — all read in one scan (a tile's scan of its patches costs more than the rows)."""
    if not selections:
        return []
    run = read_run(cur, "integration", run_id)
    versions = [[v.version_id for v in layer_versions(cur, layer.name)] for layer in layers]
    values: dict[str, object] = {"land_versions": versions[0], "plan_versions": versions[1]}
    terms = []
    for n, chosen in enumerate(selections):
        terms.append(sql.SQL("(p.land_code = ANY({land}) AND p.plan_code = ANY({plan}) AND p.piece_m2 >= {piece})").format(
            land=sql.Placeholder(f"land{n}"), plan=sql.Placeholder(f"plan{n}"), piece=sql.Placeholder(f"piece{n}")))
        values.update({f"land{n}": chosen.land_codes, f"plan{n}": chosen.plan_codes, f"piece{n}": chosen.min_piece_m2})
    # the codes' filter goes into the region's scan: the region's DISTINCT ON would otherwise sort every patch first
    wanted = sql.SQL("{} AND ({})").format(rows_of_run(run, "p"), sql.SQL(" OR ").join(terms))
    source = (region_rows("basemap_patch", run, region, wanted) if region
              else sql.SQL("{} p").format(qualified("basemap_patch")))
    table, geometries = read_with_geometry(
        cur, {"land_feature_id": pa.int64(), "land_code": pa.string(), "land_source": pa.string(),
              "plan_feature_id": pa.int64(), "plan_code": pa.string(), "plan_source": pa.string(),
              "district_code": pa.string(), "piece_m2": pa.float64()},
        sql.SQL("FROM (SELECT p.*, lf.source_id AS land_source, pf.source_id AS plan_source FROM {source} "
                "LEFT JOIN {feature} lf ON lf.version_id = ANY(%(land_versions)s) AND lf.id = p.land_feature_id "
                "LEFT JOIN {feature} pf ON pf.version_id = ANY(%(plan_versions)s) AND pf.id = p.plan_feature_id "
                "WHERE {wanted}) p ORDER BY id").format(source=source, feature=qualified("feature"),
                                                       wanted=sql.SQL("true") if region else wanted), values)

    def features(layer: LayerVersion, side: str) -> FeatureArrays:
        none = np.full(len(table), None, dtype=object)
        return FeatureArrays(layer.name, table[f"{side}_feature_id"].to_numpy().astype(np.int64),
                             texts(table, f"{side}_code"), none, texts(table, f"{side}_source"), geometries)

    patches = PatchArrays(features(layers[0], "land"), features(layers[1], "plan"), texts(table, "district_code"),
                          geometries)
    def rows(chosen: PlanSelection) -> np.ndarray:
        selected = pc.and_(pc.and_(pc.is_in(table["land_code"], value_set=pa.array(chosen.land_codes, pa.string())),
                                   pc.is_in(table["plan_code"], value_set=pa.array(chosen.plan_codes, pa.string()))),
                           pc.greater_equal(table["piece_m2"], chosen.min_piece_m2))
        return np.flatnonzero(selected.fill_null(False).to_numpy(zero_copy_only=False))

    return [patches.take(rows(chosen)) for chosen in selections]
