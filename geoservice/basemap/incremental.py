"""`geoservice integrate` after a change (常态更新): only the patches the new layer versions can change are recomputed.

The run is incremental when the current run was built with the same settings from the same layers and some of them
now have other active versions. The features that changed between the versions it read and the active ones (any
input: plans, districts, protection lines) are the footprint; every land-use or urban-plan feature (old or new)
meeting it may now have other patches, and the region is the grid strips covering their boxes (`compute.region`). The
region's patches are computed from the features meeting it and their partners — the same pieces, split and measured
as in a full run — and stored as the new run's rows; the base run's patches the region owns are dropped from the new
run on; every other patch is shared (`db.runs`). One transaction: readers see the base run until it commits.
"""

from __future__ import annotations

import json
import time
from functools import partial

import numpy as np
import pandas as pd
import psycopg2.extensions
import pyarrow as pa

from geoservice.basemap.build import DIFFERENCE_CLASSES, BaseMap, difference_classes, split_pieces
from geoservice.basemap.store import (
    COPY_BATCH, COPY_COLUMNS, PARENT, Inputs, IntegrationSummary, copy_rows, run_parameters,
)
from geoservice.compute.region import Region, grid_strips, store_region
from geoservice.db import bulk, partitions, transaction
from geoservice.db.footprint import LayerChange, add_changes, index_footprint, start_footprint, touched_boxes
from geoservice.db.layers import FeatureArrays, read_features, read_features_meeting, texts
from geoservice.db.read import LayerVersion, Run, run_summary
from geoservice.db.runs import drop_rows, lock_base, make_current, rows_meeting
from geoservice.overlay import overlay
from geoservice.overlay.changes import change_tables, gained_lost
from geoservice.progress import Reporter
from geoservice.settings import Settings

#: the share of the plans' features above which an incremental run gives way to a full one
MOST_READ = 0.5
#: the integration parameters a base run must share with this one (the others, like threads, change no patch)
PARAMETERS = ("sliver_area_m2", "inside_share", "subdivide_vertices", "land_use_layer", "urban_plan_layer",
              "district_layer", "construction_codes")


def base_of(cur: psycopg2.extensions.cursor, settings: Settings, base: Run | None,
            versions: dict[str, dict[str, int]]) -> Run | None:
    """The current run when this run can be incremental from it: same parameters, same input layers, some with new
    versions; else None (a full run)."""
    if base is None or set(base.layer_versions) != set(versions) or base.layer_versions == versions:
        return None
    cur.execute("SELECT parameters FROM geoservice.integration_run WHERE id = %s", (base.id,))
    recorded, wanted = cur.fetchone()[0], run_parameters(settings)
    return base if all(recorded.get(key) == wanted[key] for key in PARAMETERS) else None


def integrate_incremental(settings: Settings, reporter: Reporter, base: Run,
                          layers: tuple[LayerVersion, LayerVersion, LayerVersion | None, dict[str, list[LayerVersion]]],
                          versions: dict[str, dict[str, int]]) -> IntegrationSummary | None:
    """Store a new current run from `base` with the patches the changes alter recomputed (one transaction); None,
    storing nothing, when that would read more than `MOST_READ` of the plans' features."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 3)
        clock[0] = now
        task.advance(1)

    land_layer, plan_layer, district_layer, line_layers = layers
    srid = settings.working_srid
    with reporter.task("integrate (incremental)", 4) as task, transaction(settings) as conn, conn.cursor() as cur:
        lock_base(cur, base)
        start_footprint(cur)
        changes = [add_changes(cur, name, base.layer_versions[name], version)
                   for name, version in versions.items() if base.layer_versions[name] != version]
        index_footprint(cur)
        plan_versions = [base.layer_versions[layer.name]["id"] for layer in (land_layer, plan_layer)]
        boxes = touched_boxes(cur, [*plan_versions, land_layer.version_id, plan_layer.version_id], list(versions))
        region = store_region(cur, grid_strips(boxes), srid)
        lap("footprint")
        land = read_features_meeting(cur, land_layer, region.relation, [plan_layer])
        plan = read_features_meeting(cur, plan_layer, region.relation, [land_layer])
        if len(land) + len(plan) > MOST_READ * (land_layer.feature_count + plan_layer.feature_count):
            return None  # nearly everything to recompute: a full run costs less
        districts = read_features(cur, district_layer) if district_layer else None
        lines = {kind: np.concatenate([read_features_meeting(cur, layer, region.relation, [land_layer, plan_layer]).geometries
                                       for layer in found])
                 for kind, found in line_layers.items() if found}
        lap("read")
        built = _patches(region, land.geometries, plan.geometries,
                         districts.geometries if districts else np.empty(0, dtype=object), lines, settings)
        differences = difference_classes(land.codes, built.land_index, plan.codes, built.plan_index,
                                         settings.construction_codes)
        lap("overlay")
        cur.execute("INSERT INTO geoservice.integration_run (layer_versions, parameters) VALUES (%s, %s) RETURNING id",
                    (json.dumps(versions), json.dumps(run_parameters(settings))))
        run_id = cur.fetchone()[0]
        old, old_geometries = rows_meeting(cur, PARENT, base, region.relation,
                                           {"id": pa.int64(), "difference": pa.string(), "area_m2": pa.float64(),
                                            "district_name": pa.string()})
        dropped = region.owns(old_geometries)
        drop_rows(cur, PARENT, base, run_id, old["id"].to_numpy()[dropped])
        table = partitions.create_partition_table(cur, PARENT, run_id)
        inputs = Inputs(land, plan, districts, {}, versions)
        with bulk.BinaryCopyWriter(cur, table, COPY_COLUMNS, freeze=True) as writer:
            for first in range(0, len(built), COPY_BATCH):
                writer.put(partial(copy_rows, run_id, inputs, built, differences, settings, slice(first, first + COPY_BATCH)))
        partitions.attach_partition(cur, PARENT, "run_id", run_id, ("run_id", "id"), {"geom": "USING gist (geom)"})
        lap("store")
        replaced = pa.array(dropped)
        changed = _changed_areas(old.filter(replaced), old_geometries[dropped], built, differences, districts)
        summary = _summary(run_id, base, run_summary(cur, "integration", base.id), versions, built, differences,
                           old.filter(replaced), changes, region.area(), len(land) + len(plan), started, timings)
        summary.incremental.update(changed)
        reporter.line(bulk.stored_line(len(built), "patches (incremental)", {"store": timings["store"]}, summary.seconds))
        make_current(cur, "integration", run_id, summary.as_dict(), base)
    return summary


def _patches(region: Region, land: np.ndarray, plan: np.ndarray, districts: np.ndarray, lines: dict[str, np.ndarray],
             settings: Settings) -> BaseMap:
    """The patches the region owns, built from the plans' features meeting it (and their partners) as a full run
    builds them."""
    config = settings.integration
    if len(region) == 0 or len(land) + len(plan) == 0:
        none = np.empty(0, np.int64)
        return BaseMap(none, none, none, np.empty(0, dtype=object), np.empty(0), np.empty(0),
                       {kind: np.empty(0) for kind in lines}, 0, 0.0)
    land_index, plan_index, pieces = overlay(land, plan, how="union", threads=config.threads)
    built = split_pieces(land_index, plan_index, pieces, districts, lines, config.sliver_area_m2, config.threads,
                         max_vertices=config.subdivide_vertices)
    mine = region.owns(built.geometries)
    return BaseMap(built.land_index[mine], built.plan_index[mine], built.district_index[mine], built.geometries[mine],
                   built.areas[mine], built.piece_m2[mine], {kind: m2[mine] for kind, m2 in built.line_m2.items()},
                   built.slivers_dropped, built.slivers_area_m2)


def _changed_areas(old: pa.Table, old_geometries: np.ndarray, built: BaseMap, differences: np.ndarray,
                   districts: FeatureArrays | None) -> dict[str, list[dict[str, object]]]:
    """Area gained and lost per plan-difference class and per district between the dropped and the added patches."""
    new_districts = np.full(len(built), None, dtype=object)
    inside = built.district_index >= 0
    if districts is not None:
        new_districts[inside] = districts.names[built.district_index[inside]]
    keys = [pd.DataFrame({"difference": classes, "district": pd.Series(district, dtype=object).fillna("(no district)")})
            for classes, district in ((texts(old, "difference"), texts(old, "district_name")),
                                      (differences, new_districts))]
    return change_tables(gained_lost(old_geometries, keys[0], built.geometries, keys[1], disjoint=True), "difference")


def _summary(run_id: int, base: Run, with_base: dict, versions: dict[str, dict[str, int]], built: BaseMap,
             differences: np.ndarray, dropped: pa.Table, changes: list[LayerChange], region_m2: float, features: int,
             started: float, timings: dict[str, float]) -> IntegrationSummary:
    """The new run's totals from its base run's (`with_base`, its summary) and what it replaced; what it recomputed
    under `incremental`."""
    old_difference = dropped["difference"].to_numpy(zero_copy_only=False)
    old_area = dropped["area_m2"].to_numpy()
    by_difference = {}
    for name in DIFFERENCE_CLASSES:
        before = with_base["by_difference"].get(name, {"patches": 0, "ha": 0.0})
        now, then = differences == name, old_difference == name
        by_difference[name] = {
            "patches": int(before["patches"] + now.sum() - then.sum()),
            "ha": round(before["ha"] + (float(built.areas[now].sum()) - float(old_area[then].sum())) / 1e4, 4)}
    patches = int(with_base["patches"] + len(built) - len(dropped))
    seconds = round(time.perf_counter() - started, 3)
    incremental = {"from_run": base.id, "changes": [c.as_dict() for c in changes], "region_km2": round(region_m2 / 1e6, 4),
                   "features_read": features, "patches_dropped": len(dropped), "patches_added": len(built)}
    return IntegrationSummary(run_id, versions, patches, built.slivers_dropped, round(built.slivers_area_m2, 3),
                              by_difference, seconds, timings, incremental=incremental)

