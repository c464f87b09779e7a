"""`geoservice detect` after a change (常态更新): only the conflicts the new layer versions can change are recomputed.

The run is incremental when the current run evaluated the same rules from the same rules file (a changed file forces a
full detection), read the same layers and the same rasters, and some of those layers now have other active versions.
For each rule, the footprint is the features that changed in the layers it reads and in the districts; its region is
the grid strips covering the boxes of the features of its subject layer (the land-use plan for plan differences; for
overlapping lines every layer but the last, as a piece of two of them lies in the first) meeting the footprint, old
and new — every conflict piece lies in one of them (`compute.region`). The rule is evaluated on the features meeting its region (and the partners a difference needs),
finished as in a full run (minimum area, district split) and the rows the region owns are stored; the base run's rows
of the rule the region owns are dropped from the new run on; every other row is shared, with its review case and
status. The computed rows are linked to their cases as in a full run. One transaction.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import psycopg2.extensions
from psycopg2 import sql

from geoservice.compute.region import Region, grid_strips, store_region
from geoservice.conflicts import evaluate
from geoservice.conflicts.detect import (
    Continuity, DetectionSummary, LayerCatalog, Link, RuleResult, at, evaluate_rule, finish, insert_run, plan_difference_of_basemap,
    raster_checksums, store_conflicts, summarize_rows,
)
from geoservice.conflicts.regional import RegionCatalog, halos_of, layers_read, rule_layers
from geoservice.conflicts.rules import LinesOverlap, PlanDifference, Rule, RuleSet
from geoservice.db import bulk, transaction
from geoservice.db.layers import FeatureArrays, texts
from geoservice.db.footprint import add_changes, index_footprint, start_footprint, touched_boxes
from geoservice.db.read import Run, chain_rows_sql, current_run
from geoservice.db.runs import drop_rows, lock_base, make_current, rows_meeting
from geoservice.overlay import Parts
from geoservice.overlay.changes import change_tables, gained_lost
from geoservice.progress import Reporter
from geoservice.settings import Settings

PARENT = "conflict"


def base_of(cur: psycopg2.extensions.cursor, settings: Settings, rules: RuleSet, selected: list[Rule],
            catalog: LayerCatalog) -> Run | None:
    """The current detection run when this one can be incremental from it (see the module's docstring); else None."""
    base = current_run(cur, "detection")
    versions = layers_read(catalog, selected)
    if (base is None or base.rules_checksum != rules.checksum or set(base.layer_versions) != set(versions)
            or base.layer_versions == versions):
        return None
    cur.execute("SELECT rules, summary -> 'rasters' FROM geoservice.detection_run WHERE id = %s", (base.id,))
    evaluated, rasters = cur.fetchone()
    same = evaluated == [rule.model_dump(mode="json") for rule in selected]
    return base if same and (rasters or {}) == raster_checksums(settings, selected) else None


def detect_incremental(settings: Settings, reporter: Reporter, rules: RuleSet, selected: list[Rule], base: Run,
                       link: Link | None, continuity: Continuity | None = None) -> DetectionSummary:
    """Store a new current detection run from `base` with the conflicts the changes alter recomputed; with
    `continuity`, what became of the review cases."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    srid = settings.working_srid
    with transaction(settings) as conn, conn.cursor() as cur:
        lock_base(cur, base)
        catalog = LayerCatalog(cur, settings)
        versions = layers_read(catalog, selected)
        start_footprint(cur)
        changes = [add_changes(cur, name, base.layer_versions[name], version)
                   for name, version in versions.items() if base.layer_versions[name] != version]
        index_footprint(cur)
        changed = {change.layer for change in changes}
        district = catalog.district_layer()
        districts = catalog.districts()
        zones = (catalog.subdivided.parts(districts, np.arange(len(districts))) if districts is not None
                 else np.empty(0, dtype=object))
        from_basemap = (catalog.basemap_run("plan differences")
                        if any(isinstance(rule, PlanDifference) for rule in selected) else None)
        integration = current_run(cur, "integration")
        timings["footprint"] = round(time.perf_counter() - started, 3)
        run_id = insert_run(cur, integration, versions, rules, selected)
        results: list[RuleResult] = []
        dropped: list[np.ndarray] = []
        lost: list[tuple[str, np.ndarray, np.ndarray]] = []  # rule, district names and geometries of the dropped rows
        recomputed: dict[str, dict[str, object]] = {}
        with reporter.task("detect (incremental)", len(selected)) as task:
            for rule in selected:
                clock = time.perf_counter()
                names = rule_layers(rule, catalog)
                touching = [*names, *([district.name] if district else [])]
                if changed & set(touching):
                    anchors = names[:-1] if isinstance(rule, LinesOverlap) else names[:1]
                    boxes = touched_boxes(cur, [v for name in anchors
                                                for v in (base.layer_versions[name]["id"], versions[name]["id"])],
                                          touching)
                    region = store_region(cur, grid_strips(boxes), srid)
                    found = _evaluate(rule, region, catalog, settings, zones, from_basemap)
                    results += [RuleResult(rule, split.take(mine), district_index[mine], time.perf_counter() - clock)
                                for split, district_index in found for mine in [region.owns(split.pieces)]]
                    old, geometries = rows_meeting(cur, PARENT, base, region.relation,
                                                   {"id": pa.int64(), "district_name": pa.string()},
                                                   sql.SQL("rule_id = %s"), (rule.id,))
                    mine = region.owns(geometries)
                    dropped.append(old["id"].to_numpy()[mine])
                    lost.append((rule.id, texts(old, "district_name")[mine], geometries[mine]))
                    recomputed[rule.id] = {"region_km2": round(region.area() / 1e6, 4), "dropped": len(dropped[-1]),
                                           "added": sum(len(r.found) for r in results if r.rule is rule)}
                task.advance(1)
        timings["evaluate"] = round(time.perf_counter() - started - timings["footprint"], 3)
        drop_rows(cur, PARENT, base, run_id, np.concatenate(dropped) if dropped else np.empty(0, np.int64))
        store_conflicts(cur, run_id, results, districts, settings, link, [rule.id for rule in selected], timings,
                        base.chain)
        cases = continuity(cur, run_id, base.chain) if continuity is not None else None
        by_rule, cells = summarize_rows(cur, chain_rows_sql((*base.chain, run_id), run_id), selected,
                                        {r.rule.id: r.seconds for r in results})
        seconds = round(time.perf_counter() - started, 3)
        summary = DetectionSummary(
            run_id, rules.checksum, versions, by_rule, cells, seconds, {k: round(v, 3) for k, v in timings.items()},
            from_basemap, rasters=raster_checksums(settings, selected),
            incremental={"from_run": base.id, "changes": [c.as_dict() for c in changes], "rules": recomputed,
                         **_changed_areas(lost, results, districts), **({"cases": cases} if cases else {})})
        reporter.line(bulk.stored_line(sum(len(r.found) for r in results), "conflicts (incremental)",
                                       {"store": timings["store"]}, seconds))
        make_current(cur, "detection", run_id, summary.as_dict(), base)
    return summary


def _changed_areas(lost: list[tuple[str, np.ndarray, np.ndarray]], results: list[RuleResult],
                   districts: FeatureArrays | None) -> dict[str, list[dict[str, object]]]:
    """Conflict area gained and lost per rule and per district between the dropped and the added conflicts."""
    names = districts.names if districts is not None else np.empty(0, dtype=object)

    def keys(rules: list[np.ndarray], district: list[np.ndarray]) -> pd.DataFrame:
        return pd.DataFrame({"rule": np.concatenate(rules) if rules else np.empty(0, dtype=object),
                             "district": pd.Series(np.concatenate(district) if district else np.empty(0, dtype=object),
                                                   dtype=object).fillna("(no district)")})

    old = keys([np.full(len(g), rule, dtype=object) for rule, _, g in lost], [d for _, d, _ in lost])
    new = keys([np.full(len(r.found), r.rule.id, dtype=object) for r in results],
               [at(names, r.district_index) for r in results])
    pieces = [np.concatenate(parts) if parts else np.empty(0, dtype=object)
              for parts in ([g for _, _, g in lost], [r.found.pieces for r in results])]
    return change_tables(gained_lost(pieces[0], old, pieces[1], new), "rule")


def _evaluate(rule: Rule, region: Region, catalog: LayerCatalog, settings: Settings, zones: np.ndarray | Parts,
              from_basemap: int | None) -> list[tuple[evaluate.Found, np.ndarray]]:
    """A rule's conflicts (finished: minimum area, district split) computed from the features meeting `region`."""
    if isinstance(rule, PlanDifference) and from_basemap is not None:
        return [plan_difference_of_basemap(rule, difference, catalog, from_basemap, settings, region.relation)
                for difference in rule.classes]
    local = RegionCatalog(catalog.cur, settings, catalog.layers, region.relation, halos_of([rule], catalog))
    return [finish(pieces, rule, zones, settings) for pieces in evaluate_rule(rule, local, settings)]
