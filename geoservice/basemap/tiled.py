"""`geoservice integrate --scheduler …`: the base map built as spatial tiles on Dask distributed.

The client picks the layer versions, cuts the extent into KD tiles balanced by feature and vertex count, creates the
run's table and submits one task per tile; it never reads a geometry. A task (`integrate_tile`) reads from PostGIS the
plan features whose box meets its tile and, for their differences, every feature of the other plan meeting one of
those — whole, not clipped —, overlays them with the in-process code, keeps the plan-union pieces whose reference
point (`compute.tiles`) it owns, splits those by district, measures the lines (the districts cut into parts and each
line kind dissolved and cut as in process, once per worker process: `worker_cache`) and COPYs the patches into the
run's table. When every tile has committed, the client attaches the
table and makes the run current in one transaction, as the in-process path does.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial

import numpy as np
import psycopg2.extensions

from geoservice.basemap.build import DIFFERENCE_CLASSES, difference_classes, dissolved_parts, split_pieces
from geoservice.basemap.store import (
    COPY_BATCH, COPY_COLUMNS, PARENT, Inputs, IntegrationSummary, _pick_inputs, copy_rows, run_parameters, versions_of,
)
from geoservice.compute import dask_run
from geoservice.compute.tiles import Tile, kd_tiles, owned
from geoservice.db import bulk, partitions, transaction
from geoservice.db.layers import box_relation, feature_envelopes, read_features, read_features_meeting
from geoservice.db.read import LayerVersion, active_versions
from geoservice.db.runs import make_current
from geoservice.db.tiles import discard_run, forget_tiles, recorded_tiles
from geoservice.errors import GeoserviceError
from geoservice.overlay import overlay
from geoservice.progress import Reporter, SilentReporter
from geoservice.settings import Settings

STAGE = "integration"


def integrate_tile(cur: psycopg2.extensions.cursor, settings: Settings, run_id: int, tile: Tile,
                   land_layer: LayerVersion, plan_layer: LayerVersion, district_layer: LayerVersion | None,
                   line_layers: dict[str, list[LayerVersion]]) -> dict:
    """Build and COPY the patches of the plan-union pieces this tile owns; what it did, for the run's summary."""
    srid, threads = settings.working_srid, settings.integration.threads
    region = box_relation(tile.box(), srid)
    land = read_features_meeting(cur, land_layer, region, [plan_layer])
    plan = read_features_meeting(cur, plan_layer, region, [land_layer])
    land_index, plan_index, pieces = overlay(land.geometries, plan.geometries, how="union", threads=threads)
    mine = owned(tile, pieces)
    land_index, plan_index, pieces = land_index[mine], plan_index[mine], pieces[mine]
    summary = {"features": len(land) + len(plan), "pieces": len(pieces), "rows": 0, "slivers": 0, "sliver_m2": 0.0,
               "by_difference": {}}
    if len(pieces) == 0:
        return summary
    cut = settings.integration.subdivide_vertices
    where = settings.database.url  # version ids are a database's own
    districts, zones = dask_run.whole_districts(cur, where, district_layer, cut, threads)
    lines = {kind: dask_run.worker_cache(
        (where, "dissolved", tuple(layer.version_id for layer in found), cut),
        lambda found=found: dissolved_parts(np.concatenate([read_features(cur, layer).geometries for layer in found]),
                                            cut, threads))
        for kind, found in line_layers.items() if found}
    base = split_pieces(land_index, plan_index, pieces, zones, lines, settings.integration.sliver_area_m2, threads,
                        max_vertices=cut)
    inputs = Inputs(land, plan, districts, {}, {})
    differences = difference_classes(land.codes, base.land_index, plan.codes, base.plan_index,
                                     settings.construction_codes)
    table = partitions.partition_table(PARENT, run_id)
    with bulk.BinaryCopyWriter(cur, table, COPY_COLUMNS) as writer:
        for start in range(0, len(base), COPY_BATCH):
            writer.put(partial(copy_rows, run_id, inputs, base, differences, settings, slice(start, start + COPY_BATCH)))
    summary.update(rows=len(base), slivers=base.slivers_dropped, sliver_m2=base.slivers_area_m2, by_difference={
        name: [int((differences == name).sum()), float(base.areas[differences == name].sum())]
        for name in DIFFERENCE_CLASSES})
    return summary


def plan_tiles(settings: Settings, cur: psycopg2.extensions.cursor, layers: list[LayerVersion], workers: int) -> list[Tile]:
    """KD tiles over the envelopes of `layers`' features: `compute.tile_features` weighted features a tile, and at least
    `compute.min_tiles_per_worker` tiles per worker thread."""
    bounds, vertices = feature_envelopes(cur, layers)
    target = settings.compute.tile_features
    if len(bounds):
        target = min(target, max(1.0, len(bounds) / (workers * settings.compute.min_tiles_per_worker)))
    return kd_tiles(bounds, vertices, target)


def integrate_tiled(settings: Settings, scheduler: str, reporter: Reporter | None = None,
                    tiles: list[Tile] | None = None) -> IntegrationSummary:
    """Build the base map as tiles on the Dask scheduler `scheduler` (`local:N`: a LocalCluster here) and store it as a
    new current run; `tiles` forces the partition (tests). Readers see the previous run until every tile succeeded."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with transaction(settings) as conn, conn.cursor() as cur:
        layers = _pick_inputs(settings, active_versions(cur))
        land, plan, district, lines = layers
        versions = versions_of(layers)
    with dask_run.connect(scheduler) as cluster:
        timings["connect"] = round(time.perf_counter() - started, 3)
        clock = time.perf_counter()
        if tiles is None:
            with transaction(settings) as conn, conn.cursor() as cur:
                tiles = plan_tiles(settings, cur, [land, plan], cluster.threads)
        timings["partition"] = round(time.perf_counter() - clock, 3)
        with transaction(settings) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO geoservice.integration_run (layer_versions, parameters) VALUES (%s, %s) RETURNING id",
                        (json.dumps(versions), json.dumps(run_parameters(settings))))
            run_id = cur.fetchone()[0]
            partitions.create_partition_table(cur, PARENT, run_id)
        try:
            clock = time.perf_counter()
            task = partial(dask_run.tile_task, integrate_tile, dask_run.worker_settings(settings), STAGE, run_id,
                           (land, plan, district, lines))
            results = dask_run.run_tiles(cluster, task, tiles, settings.compute.retries, reporter, "integrate")
            timings["tiles"] = round(time.perf_counter() - clock, 3)
            clock = time.perf_counter()
            with transaction(settings) as conn, conn.cursor() as cur:
                done = recorded_tiles(cur, STAGE, run_id)
                if done != [tile.index for tile in tiles]:
                    raise GeoserviceError(f"integration run {run_id}: {len(tiles) - len(done)} of {len(tiles)} tiles "
                                          "have no committed rows")
                partitions.attach_partition(cur, PARENT, "run_id", run_id, ("run_id", "id"),
                                            {"geom": "USING gist (geom)"})
                timings["index"] = round(time.perf_counter() - clock, 3)
                forget_tiles(cur, STAGE, run_id)
                summary = _summary(run_id, versions, results, started, timings, tiles, scheduler, cluster)
                reporter.line(bulk.stored_line(summary.patches, "patches", {"tiles": timings["tiles"],
                                                                            "indexes": timings["index"]}, summary.seconds))
                make_current(cur, "integration", run_id, summary.as_dict())
        except BaseException:
            with transaction(settings) as conn, conn.cursor() as cur:
                discard_run(cur, "integration_run", partitions.partition_table(PARENT, run_id), STAGE, run_id)
            raise
    return summary


def _summary(run_id: int, versions: dict, results: list[dict], started: float, timings: dict[str, float],
             tiles: list[Tile], scheduler: str, cluster: dask_run.Cluster) -> IntegrationSummary:
    by_difference = {}
    for name in DIFFERENCE_CLASSES:
        counts = [r["by_difference"].get(name, [0, 0.0]) for r in results]
        by_difference[name] = {"patches": sum(c[0] for c in counts), "ha": round(math.fsum(c[1] for c in counts) / 1e4, 4)}
    seconds = time.perf_counter() - started
    timings = {**timings, "tile seconds (sum)": round(sum(r["seconds"] for r in results), 3)}
    return IntegrationSummary(run_id, versions, sum(r["rows"] for r in results), sum(r["slivers"] for r in results),
                              round(math.fsum(r["sliver_m2"] for r in results), 3), by_difference, round(seconds, 3),
                              timings, {**dask_run.describe(scheduler, cluster), "tiles": len(tiles),
                                        "features_read": sum(r["features"] for r in results)})
