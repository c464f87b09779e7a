"""`geoservice detect --scheduler …`: the rules evaluated as spatial tiles on Dask distributed.

The client resolves the layer versions and rules, cuts the extent into KD tiles (over the plans' features), creates
the run's table and submits one task per tile. A task (`detect_tile`) reads the features whose box meets its tile —
whole, not clipped — and, for a container of `must_be_within` (whose differences need every container feature
meeting a subject feature), the container's features meeting the tile's subject features; it runs the in-process
rule code (`evaluate_rule`), keeps the raw conflict pieces whose reference point it owns (`compute.tiles`) and
finishes them as in process with the districts (read and cut once per worker process) (minimum area, district
split, slivers); plan differences taken from the base map are its patches owned by the tile. It links its conflicts to
their review cases (creating the new ones, which other tiles may share: `Link.cases` with `shared`) and COPYs them into
the run's table. When every tile has committed, the client attaches the table, settles the cases (the disappeared ones,
statuses reviewed meanwhile) and makes the run current, in one transaction.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import psycopg2.extensions
from psycopg2 import sql

from geoservice.compute import dask_run
from geoservice.compute.tiles import Tile, kd_tiles, owned
from geoservice.conflicts import evaluate
from geoservice.conflicts.detect import (
    PARENT, DetectionSummary, LayerCatalog, Link, RuleResult, copy_results, evaluate_rule, finish, identities,
    insert_run, raster_checksums, summarize_rows,
)
from geoservice.conflicts.regional import RegionCatalog, halos_of, layers_read
from geoservice.conflicts.rules import PlanDifference, Rule, RuleSet, load_rules
from geoservice.db import bulk, partitions, transaction
from geoservice.db.layers import box_relation, feature_envelopes, layer_codes
from geoservice.db.patches import PatchArrays, PlanSelection, read_plan_patches
from geoservice.db.read import LayerVersion, chain_rows_sql, current_run
from geoservice.db.runs import make_current
from geoservice.db.tiles import discard_run, forget_tiles, recorded_tiles
from geoservice.errors import GeoserviceError
from geoservice.progress import Reporter, SilentReporter
from geoservice.settings import Settings

STAGE = "detection"


def detect_tile(cur: psycopg2.extensions.cursor, settings: Settings, run_id: int, tile: Tile,
                layers: list[LayerVersion], rules: list[Rule], halos: dict[str, list[str]],
                district_layer: LayerVersion | None, basemap_run: int | None, link: Link | None) -> dict:
    """Evaluate the rules on one tile and COPY the conflicts it owns, linked to their review cases with `link`; what it
    did, for the run's summary."""
    srid = settings.working_srid
    region = box_relation(tile.box(), srid)
    catalog = RegionCatalog(cur, settings, layers, region, halos)
    raw: list[tuple[Rule, evaluate.Found]] = []
    seconds: dict[str, float] = {}
    for rule in rules:
        if not (isinstance(rule, PlanDifference) and basemap_run is not None):
            started = time.perf_counter()
            for found in evaluate_rule(rule, catalog, settings):
                raw.append((rule, found.take(owned(tile, found.pieces))))
            seconds[rule.id] = seconds.get(rule.id, 0.0) + time.perf_counter() - started
    from_patches = _plan_differences(cur, settings, tile, region, catalog,
                                     [r for r in rules if isinstance(r, PlanDifference)], basemap_run, seconds)
    pieces = [found.pieces for _, found in raw] + [p[2].geometries for p in from_patches]
    everything = np.concatenate(pieces) if pieces else np.empty(0, dtype=object)
    districts, zones = None, np.empty(0, dtype=object)
    if district_layer is not None and len(everything):  # read and cut once per worker process, as in process
        cut = settings.integration.subdivide_vertices
        districts, zones = dask_run.whole_districts(cur, settings.database.url, district_layer, cut, settings.integration.threads)
    results = []
    for rule, found in raw:
        started = time.perf_counter()
        split, district_index = finish(found, rule, zones, settings)
        results.append(RuleResult(rule, split, district_index, 0.0))
        seconds[rule.id] += time.perf_counter() - started
    for rule, difference, patches in from_patches:
        codes = districts.source_ids if districts is not None else np.empty(0, dtype=object)
        found, district_index = evaluate.plan_difference_of_patches(patches, difference, codes)
        results.append(RuleResult(rule, found, district_index, 0.0))
    rows = sum(len(r.found) for r in results)
    if rows:
        cases = link.cases(cur, run_id, identities(results, districts), True) if link is not None else None
        copy_results(cur, partitions.partition_table(PARENT, run_id), run_id, results, districts, srid, cases)
    return {"features": sum(len(f) for f in catalog.cache.values()), "rows": rows,
            "rule_seconds": {k: round(v, 3) for k, v in seconds.items()}}


def _plan_differences(cur: psycopg2.extensions.cursor, settings: Settings, tile: Tile, region: sql.Composable,
                      catalog: RegionCatalog, rules: list[PlanDifference], basemap_run: int | None,
                      seconds: dict[str, float]) -> list[tuple[Rule, str, PatchArrays]]:
    """The tile's own base-map patches of every class of the plan-difference rules, read in one scan (its time shared
    among the rules in `seconds`)."""
    if not rules or basemap_run is None:
        return []
    started = time.perf_counter()
    plans = catalog.plan_layers(f"rule {rules[0].id}")
    codes = [layer_codes(cur, layer.version_id) for layer in plans]
    classes = [(rule, difference) for rule in rules for difference in rule.classes]
    selections = [PlanSelection(*evaluate.difference_codes(*codes, difference, settings.construction_codes),
                                rule.min_area_m2) for rule, difference in classes]
    read = read_plan_patches(cur, basemap_run, plans, selections, region)
    share = (time.perf_counter() - started) / len(rules)
    for rule in rules:
        seconds[rule.id] = seconds.get(rule.id, 0.0) + share
    return [(rule, difference, patches.take(owned(tile, patches.geometries)))
            for (rule, difference), patches in zip(classes, read, strict=True)]


def detect_tiled(settings: Settings, scheduler: str, rule_ids: list[str] | None = None,
                 reporter: Reporter | None = None, rules: RuleSet | None = None, link: Link | None = None,
                 basemap: bool = True, tiles: list[Tile] | None = None) -> DetectionSummary:
    """Detect as tiles on the Dask scheduler `scheduler` and store a new current detection run (as `detect`); `tiles`
    forces the partition (tests). Readers see the previous run until every tile succeeded."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    rules = rules or load_rules(settings.path(settings.paths.rules))
    selected = rules.selected(rule_ids)
    with transaction(settings) as conn, conn.cursor() as cur:
        catalog = LayerCatalog(cur, settings, basemap=basemap)
        versions = layers_read(catalog, selected)
        district = catalog.district_layer()
        halos = halos_of(selected, catalog)
        from_basemap = (catalog.basemap_run("plan differences")
                        if any(isinstance(rule, PlanDifference) for rule in selected) else None)
        integration = current_run(cur, "integration")
        planned = [catalog.resolve(settings.integration.land_use_layer or "land_use", "tiles"),
                   catalog.resolve(settings.integration.urban_plan_layer or "urban_plan", "tiles")]
    with dask_run.connect(scheduler) as cluster:
        timings["connect"] = round(time.perf_counter() - started, 3)
        clock = time.perf_counter()
        if tiles is None:
            with transaction(settings) as conn, conn.cursor() as cur:
                bounds, vertices = feature_envelopes(cur, planned)
            target = settings.compute.tile_features
            if len(bounds):
                target = min(target, max(1.0, len(bounds) / (cluster.threads * settings.compute.min_tiles_per_worker)))
            tiles = kd_tiles(bounds, vertices, target)
        timings["partition"] = round(time.perf_counter() - clock, 3)
        with transaction(settings) as conn, conn.cursor() as cur:
            run_id = insert_run(cur, integration, versions, rules, selected)
            partitions.create_partition_table(cur, PARENT, run_id)
        table = partitions.partition_table(PARENT, run_id)
        try:
            clock = time.perf_counter()
            task = partial(dask_run.tile_task, detect_tile, dask_run.worker_settings(settings), STAGE, run_id,
                           (list(catalog.layers), selected, halos, district, from_basemap, link))
            results = dask_run.run_tiles(cluster, task, tiles, settings.compute.retries, reporter, "detect")
            timings["tiles"] = round(time.perf_counter() - clock, 3)
            timings["tile seconds (sum)"] = round(sum(r["seconds"] for r in results), 3)
            with transaction(settings) as conn, conn.cursor() as cur:
                done = recorded_tiles(cur, STAGE, run_id)
                if done != [tile.index for tile in tiles]:
                    raise GeoserviceError(f"detection run {run_id}: {len(tiles) - len(done)} of {len(tiles)} tiles "
                                          "have no committed rows")
                clock = time.perf_counter()
                partitions.attach_partition(cur, PARENT, "run_id", run_id, ("run_id", "id"),
                                            {"geom": "USING gist (geom)", "rule": "(run_id, rule_id)"})
                timings["index"] = round(time.perf_counter() - clock, 3)
                if link is not None:
                    clock = time.perf_counter()
                    link.settle(cur, run_id, [rule.id for rule in selected], ())
                    timings["review cases"] = round(time.perf_counter() - clock, 3)
                forget_tiles(cur, STAGE, run_id)
                by_rule, cells = summarize_rows(cur, chain_rows_sql((run_id,), run_id), selected, rule_seconds(results))
                seconds = time.perf_counter() - started
                stored = sum(r["rows"] for r in results)
                reporter.line(bulk.stored_line(stored, "conflicts", {
                    **({"review cases": timings["review cases"]} if link else {}), "tiles": timings["tiles"],
                    "indexes": timings["index"]}, seconds))
                summary = DetectionSummary(
                    run_id, rules.checksum, versions, by_rule, cells, round(seconds, 3), timings, from_basemap,
                    {**dask_run.describe(scheduler, cluster), "tiles": len(tiles),
                     "features_read": sum(r["features"] for r in results)}, raster_checksums(settings, selected))
                make_current(cur, "detection", run_id, summary.as_dict())
        except BaseException:
            with transaction(settings) as conn, conn.cursor() as cur:
                if link is not None:
                    link.forget(cur, run_id)
                discard_run(cur, "detection_run", table, STAGE, run_id)
            raise
    return summary


def rule_seconds(results: list[dict]) -> dict[str, float]:
    """Seconds by rule summed over the tiles."""
    seconds: dict[str, float] = {}
    for result in results:
        for rule, value in result["rule_seconds"].items():
            seconds[rule] = seconds.get(rule, 0.0) + value
    return seconds
