"""`geoservice detect`: evaluate the rules against the active layers and store a new current detection run."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import combinations

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from psycopg2 import sql

from geoservice.conflicts import evaluate
from geoservice.conflicts.evaluate import Found, Subdivided
from geoservice.conflicts.rules import (
    ForbiddenOverlap, LinesOverlap, MustBeWithin, PlanDifference, RasterThreshold, Rule, RuleSet, load_rules,
)
from geoservice.db import bulk, partitions, transaction
from geoservice.db.layers import FeatureArrays, layer_codes, one_layer_of_kind, read_features
from geoservice.db.patches import PlanSelection, read_plan_patches, usable_run
from geoservice.db.read import LayerVersion, Run, active_versions, current_run
from geoservice.db.runs import make_current
from geoservice.errors import ConfigError, GeoserviceError
from geoservice.overlay import Parts
from geoservice.overlay.zones import split_by_zones
from geoservice.progress import Reporter, SilentReporter
from geoservice.raster import zonal_statistic
from geoservice.settings import Settings

PARENT = "conflict"
COPY_COLUMNS = ("run_id", "rule_id", "rule_type", "severity", "area_m2", "layer_a", "feature_a", "source_id_a", "code_a",
                "layer_b", "feature_b", "source_id_b", "code_b", "district_code", "district_name", "details", "geom")
#: what `identities` tells of each conflict
IDENTITY_COLUMNS = ("rule_id", "layer_a", "feature_a", "source_id_a", "layer_b", "feature_b", "source_id_b", "district_code")
#: stored too when the conflicts are linked to review cases
LINK_COLUMNS = ("case_id", "status")


@dataclass
class RuleResult:
    """One rule's conflicts, split by district, ready to store."""

    rule: Rule
    found: Found
    district_index: np.ndarray
    seconds: float

    @property
    def areas(self) -> np.ndarray:
        return shapely.area(self.found.pieces)


@dataclass
class DetectionSummary:
    """What one detection run found: count and area by rule and by rule × district."""

    run_id: int | None
    rules_checksum: str
    layer_versions: dict[str, dict[str, int]]
    by_rule: dict[str, dict[str, object]]
    by_rule_district: list[dict[str, object]]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    plan_differences_from: int | None = None  # the integration run whose patches gave the plan differences
    distributed: dict[str, object] | None = None  # where a distributed run ran: scheduler, worker threads, tiles
    rasters: dict[str, str] = field(default_factory=dict)  # SHA-256 of the rasters its rules read, by path
    incremental: dict[str, object] | None = None  # an incremental run: its base run, the changes, what it recomputed

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items()
                if k != "run_id" and (k not in ("distributed", "incremental") or v is not None)}


class LayerCatalog:
    """Active layers read on demand (each at most once), resolved by name or by kind.

    With an `envelope`, only features whose box meets it are read (an on-demand check of one project);
    `substitutes` stand in for whole layers (the submitted project as the construction layer). `subdivided`
    cuts each layer's large polygons once for all the rules that read it — except in a one-project check, where one
    piece meets each large polygon once: cutting it would cost more than the intersection it saves. With `basemap`,
    plan-difference conflicts are taken from the current base map when it was built from the same plans and districts
    (`basemap_run`).
    """

    def __init__(self, cur, settings: Settings, envelope: tuple[float, float, float, float] | None = None,  # noqa: ANN001
                 substitutes: dict[str, FeatureArrays] | None = None, basemap: bool = True) -> None:
        self.cur, self.settings = cur, settings
        self.use_basemap = basemap and envelope is None and not substitutes
        self._basemap: list[int | None] = []  # looked up once
        self.layers = active_versions(cur)
        self.envelope = (*envelope, settings.working_srid) if envelope else None
        self.cache: dict[str, FeatureArrays] = dict(substitutes or {})
        self.named: set[str] = set()  # layers read, also those whose features were not (plan differences of the base map)
        self.subdivided = Subdivided(None if envelope else settings.integration.subdivide_vertices,
                                     settings.integration.threads)

    def resolve(self, name_or_kind: str, where: str) -> LayerVersion:
        for layer in self.layers:
            if layer.name == name_or_kind:
                return layer
        try:
            return one_layer_of_kind(self.layers, name_or_kind, None)
        except GeoserviceError as exc:
            raise GeoserviceError(f"{where}: no active layer named or of kind {name_or_kind!r} ({exc})") from exc

    def features(self, name_or_kind: str, where: str) -> FeatureArrays:
        layer = self.resolve(name_or_kind, where)
        if layer.name not in self.cache:
            self.cache[layer.name] = read_features(self.cur, layer, self.envelope)
        return self.cache[layer.name]

    def plan(self, kind: str, where: str) -> FeatureArrays:
        configured = {"land_use": self.settings.integration.land_use_layer,
                      "urban_plan": self.settings.integration.urban_plan_layer}[kind]
        return self.features(configured or kind, where)

    def plan_layers(self, where: str) -> tuple[LayerVersion, LayerVersion]:
        """The active land-use plan and urban plan."""
        config = self.settings.integration
        plans = (self.resolve(config.land_use_layer or "land_use", where),
                 self.resolve(config.urban_plan_layer or "urban_plan", where))
        self.named.update(layer.name for layer in plans)
        return plans

    def district_layer(self) -> LayerVersion | None:
        name = self.settings.integration.district_layer
        found = [layer for layer in self.layers if layer.kind == "district" and (name is None or layer.name == name)]
        return found[0] if found else None

    def districts(self) -> FeatureArrays | None:
        layer = self.district_layer()
        return self.features(layer.name, "districts") if layer else None

    def basemap_run(self, where: str) -> int | None:
        """The current integration run when it was built from the land-use plan, urban plan and districts this
        detection reads, with its sliver area (its plan-difference patches are then this detection's conflicts)."""
        if not self._basemap:
            district = self.district_layer()
            layers = [*self.plan_layers(where), district]
            self._basemap.append(usable_run(self.cur, {layer.name: layer.version_id for layer in layers},
                                            self.settings.integration.sliver_area_m2)
                                 if self.use_basemap and district else None)
        return self._basemap[0]

    def used(self) -> dict[str, dict[str, int]]:
        by_name = {layer.name: layer for layer in self.layers}
        return {name: {"version": by_name[name].version, "id": by_name[name].version_id}
                for name in sorted(set(self.cache) | self.named) if name in by_name}


def evaluate_rule(rule: Rule, catalog: LayerCatalog, settings: Settings) -> list[Found]:
    """The raw conflict pieces of one rule (before the minimum area and the district split), per layer pair."""
    where = f"rule {rule.id}"
    construction = settings.construction_codes
    threads, cut = settings.integration.threads, catalog.subdivided
    if isinstance(rule, PlanDifference):
        land, plan = catalog.plan("land_use", where), catalog.plan("urban_plan", where)
        return [evaluate.plan_difference(land, plan, difference, construction, threads, cut) for difference in rule.classes]
    if isinstance(rule, LinesOverlap):
        return [evaluate.lines_overlap(catalog.features(a, where), catalog.features(b, where), threads, cut)
                for a, b in combinations(rule.layers, 2)]
    subject = catalog.plan(rule.subject.plan, where) if rule.subject.plan else catalog.features(rule.subject.layer, where)
    mask = evaluate.subject_mask(subject, rule.subject, construction)
    if isinstance(rule, ForbiddenOverlap):
        return [evaluate.forbidden_overlap(subject, mask, catalog.features(rule.constraint, where), threads, cut)]
    if isinstance(rule, MustBeWithin):
        return [evaluate.outside(subject, mask, catalog.features(rule.container, where), threads, cut)]
    if isinstance(rule, RasterThreshold):
        values = zonal_statistic(settings.path(rule.raster), subject.geometries[mask], settings.working_crs,
                                 rule.statistic, rule.band, rule.value)
        return [evaluate.exceeding(subject, mask, values, rule.threshold, rule.statistic)]
    raise ConfigError("rules", rule.id, f"unknown rule type {type(rule).__name__}")


def finish(found: Found, rule: Rule, zones: np.ndarray | Parts, settings: Settings) -> tuple[Found, np.ndarray]:
    """A rule's raw pieces without those under its minimum area, split by district (`zones`, whole or subdivided),
    slivers dropped."""
    found = evaluate.drop_small(found, rule.min_area_m2)
    piece_index, district_index, parts = split_by_zones(found.pieces, zones, settings.integration.threads)
    keep = shapely.area(parts) >= settings.integration.sliver_area_m2
    return replace(found.take(piece_index[keep]), pieces=parts[keep]), district_index[keep]


def plan_difference_of_basemap(rule: PlanDifference, difference: str, catalog: LayerCatalog, run_id: int,
                               settings: Settings, region: sql.Composable | None = None) -> tuple[Found, np.ndarray]:
    """A plan-difference rule's conflicts of one class as the base map's patches (split, slivers dropped) whose
    plan-union piece reaches the rule's minimum area (and whose box meets a box of `region`): the same as overlaying
    the plans again."""
    where = f"rule {rule.id}"
    plans = catalog.plan_layers(where)
    codes = evaluate.difference_codes(*(layer_codes(catalog.cur, layer.version_id) for layer in plans), difference,
                                      settings.construction_codes)
    patches, = read_plan_patches(catalog.cur, run_id, plans, [PlanSelection(*codes, rule.min_area_m2)], region)
    districts = catalog.districts()
    return evaluate.plan_difference_of_patches(patches, difference,
                                               districts.source_ids if districts else np.empty(0, dtype=object))


def district_zones(catalog: LayerCatalog) -> tuple[FeatureArrays | None, np.ndarray]:
    """The district layer's features and geometries (no geometries when there is no district layer)."""
    districts = catalog.districts()
    return districts, (districts.geometries if districts is not None else np.empty(0, dtype=object))


def run_rules(settings: Settings, rules: list[Rule], catalog: LayerCatalog, reporter: Reporter) -> list[RuleResult]:
    """Evaluate each rule, drop pieces under its minimum area, split what is left by district (cut once); plan
    differences are read from the current base map when it fits (`LayerCatalog.basemap_run`)."""
    districts, zones = district_zones(catalog)
    if districts is not None:
        zones = catalog.subdivided.parts(districts, np.arange(len(districts)))
    results = []
    with reporter.task("detect", len(rules)) as task:
        for rule in rules:
            started = time.perf_counter()
            run_id = catalog.basemap_run(f"rule {rule.id}") if isinstance(rule, PlanDifference) else None
            if run_id is not None:
                found = [plan_difference_of_basemap(rule, difference, catalog, run_id, settings)
                         for difference in rule.classes]
            else:
                found = (finish(pieces, rule, zones, settings) for pieces in evaluate_rule(rule, catalog, settings))
            for split, district_index in found:
                results.append(RuleResult(rule, split, district_index, time.perf_counter() - started))
            task.advance(1)
    return results


def at(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index] as objects, None where index is -1."""
    out = np.full(len(index), None, dtype=object)
    if len(values):
        out[index >= 0] = np.asarray(values, dtype=object)[index[index >= 0]]
    return out


def identities(results: list[RuleResult], districts: FeatureArrays | None) -> pd.DataFrame:
    """Which rule, features and district each conflict is (in storing order): rule_id, layer_a, feature_a,
    source_id_a, layer_b, feature_b, source_id_b, district_code (None where there is no such side or district)."""
    frames = []
    for result in results:
        found, n = result.found, len(result.found)
        a, b = found.layer_a, found.layer_b
        frames.append(pd.DataFrame({
            "rule_id": np.full(n, result.rule.id, dtype=object), "layer_a": np.full(n, a.layer, dtype=object),
            "feature_a": a.ids[found.index_a], "source_id_a": at(a.source_ids, found.index_a),
            "layer_b": np.full(n, b.layer if b is not None else None, dtype=object),
            "feature_b": pd.array(at(b.ids, found.index_b) if b is not None else np.full(n, None), dtype="Int64"),
            "source_id_b": at(b.source_ids, found.index_b) if b is not None else np.full(n, None, dtype=object),
            "district_code": at(districts.source_ids if districts is not None else np.empty(0), result.district_index),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=IDENTITY_COLUMNS)


def copy_rows(run_id: int, result: RuleResult, districts: FeatureArrays | None, srid: int,
              link: tuple[np.ndarray, np.ndarray] | None) -> bytes:
    """Binary COPY rows (COPY_COLUMNS order, then LINK_COLUMNS with `link`: case ids and statuses) of one rule
    result's conflicts."""
    found, rule = result.found, result.rule
    n = len(found)
    a, b = found.layer_a, found.layer_b
    none = np.empty(0, dtype=object)
    ids_b, sources_b, codes_b = (b.ids, b.source_ids, b.codes) if b is not None else (np.empty(0, np.int64), none, none)
    district_codes, district_names = (districts.source_ids, districts.names) if districts is not None else (none, none)
    linked = [bulk.int_field(link[0], n), bulk.text_binary_field(link[1], n)] if link is not None else []
    return bulk.binary_rows([
        bulk.int_field(run_id, n), bulk.constant_text_field(rule.id), bulk.constant_text_field(rule.type),
        bulk.constant_text_field(rule.severity), bulk.float_field(result.areas),
        bulk.constant_text_field(a.layer), bulk.int_field(a.ids[found.index_a], n),
        bulk.text_field_at(a.source_ids, found.index_a), bulk.text_field_at(a.codes, found.index_a),
        bulk.constant_text_field(b.layer) if b is not None else bulk.text_binary_field(None, n),
        bulk.int_field_at(ids_b, found.index_b), bulk.text_field_at(sources_b, found.index_b),
        bulk.text_field_at(codes_b, found.index_b),
        bulk.text_field_at(district_codes, result.district_index), bulk.text_field_at(district_names, result.district_index),
        bulk.jsonb_field(found.details.columns, n), bulk.multipolygon_field(found.pieces, srid), *linked,
    ], n)


def summarize(results: list[RuleResult], districts: FeatureArrays | None) -> tuple[dict[str, dict[str, object]], list[dict[str, object]]]:
    """Count, area (ha) and seconds by rule; count and area by rule × district."""
    by_rule: dict[str, dict[str, object]] = {}
    cells: dict[tuple[str, str], list[float]] = {}
    names = [*(districts.names.tolist() if districts else []), "(no district)"]
    for result in results:
        entry = by_rule.setdefault(result.rule.id, {"title_zh": result.rule.title_zh, "title_en": result.rule.title_en,
                                                    "severity": result.rule.severity, "count": 0, "ha": 0.0, "seconds": 0.0})
        areas = result.areas
        entry["count"] += len(areas)
        entry["ha"] += float(areas.sum()) / 1e4
        entry["seconds"] += result.seconds
        district = np.where(result.district_index >= 0, result.district_index, len(names) - 1)
        counts = np.bincount(district, minlength=len(names))
        hectares = np.bincount(district, weights=areas, minlength=len(names)) / 1e4
        for d in np.flatnonzero(counts):
            cell = cells.setdefault((result.rule.id, names[d] or "(no district)"), [0, 0.0])
            cell[0] += int(counts[d])
            cell[1] += float(hectares[d])
    for entry in by_rule.values():
        entry["ha"], entry["seconds"] = round(entry["ha"], 4), round(entry["seconds"], 3)
    table = [{"rule": rule, "district": district, "count": count, "ha": round(ha, 4)}
             for (rule, district), (count, ha) in sorted(cells.items())]
    return by_rule, table


def copy_results(cur: psycopg2.extensions.cursor, table: sql.Composable, run_id: int, results: list[RuleResult],
                 districts: FeatureArrays | None, srid: int, cases: tuple[np.ndarray, np.ndarray] | None,
                 freeze: bool = False) -> None:
    """One binary COPY of the results' conflicts into `table`, with their case ids and statuses when `cases` (in the
    results' order); each result's rows are built on the writer's thread."""
    with bulk.BinaryCopyWriter(cur, table, COPY_COLUMNS + (LINK_COLUMNS if cases else ()), freeze=freeze) as writer:
        start = 0
        for result in results:
            rows = slice(start, start + len(result.found))
            start = rows.stop
            writer.put(partial(copy_rows, run_id, result, districts, srid,
                               (cases[0][rows], cases[1][rows]) if cases else None))


def store_conflicts(cur: psycopg2.extensions.cursor, run_id: int, results: list[RuleResult],
                    districts: FeatureArrays | None, settings: Settings, link: Link | None, rule_ids: list[str],
                    timings: dict[str, float], carried: tuple[int, ...] = ()) -> None:
    """Link the results' conflicts to their review cases (with `link`; an incremental run's rows of `carried` keep
    theirs), COPY them into the run's table and attach it; the seconds of each step in `timings`."""
    table_name = partitions.create_partition_table(cur, PARENT, run_id)
    cases = None
    if link is not None:
        clock = time.perf_counter()
        cases = link.cases(cur, run_id, identities(results, districts), False)
        timings["review cases"] = time.perf_counter() - clock
    clock = time.perf_counter()
    copy_results(cur, table_name, run_id, results, districts, settings.working_srid, cases, freeze=True)
    timings["store"] = time.perf_counter() - clock
    clock = time.perf_counter()
    partitions.attach_partition(cur, PARENT, "run_id", run_id, ("run_id", "id"),
                                {"geom": "USING gist (geom)", "rule": "(run_id, rule_id)"})
    timings["index"] = time.perf_counter() - clock
    if link is not None:
        clock = time.perf_counter()
        link.settle(cur, run_id, rule_ids, carried)
        timings["review cases"] += time.perf_counter() - clock


def raster_checksums(settings: Settings, rules: list[Rule]) -> dict[str, str]:
    """SHA-256 of each raster the rules read, by path: what a run's raster rules found depends on."""
    paths = sorted({rule.raster for rule in rules if isinstance(rule, RasterThreshold)})
    return {str(path): hashlib.sha256(settings.path(path).read_bytes()).hexdigest() for path in paths}


def insert_run(cur: psycopg2.extensions.cursor, integration: Run | None, versions: dict[str, dict[str, int]],
               rules: RuleSet, selected: list[Rule]) -> int:
    """A new detection run's row (not current yet): its base map, layer versions and rules; its id."""
    cur.execute("INSERT INTO geoservice.detection_run (integration_run_id, layer_versions, rules_checksum, rules) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (integration.id if integration else None, json.dumps(versions), rules.checksum,
                 json.dumps([rule.model_dump(mode="json") for rule in selected], ensure_ascii=False)))
    return cur.fetchone()[0]


def summarize_rows(cur: psycopg2.extensions.cursor, rows: sql.Composable, rules: list[Rule],
                   seconds: dict[str, float]) -> tuple[dict[str, dict[str, object]], list[dict[str, object]]]:
    """Count, area (ha) and seconds (`seconds`, by rule id) by rule; count and area by rule × district — of the stored
    conflicts `rows` (a condition on `geoservice.conflict`: a run's rows)."""
    cur.execute(sql.SQL("SELECT rule_id, coalesce(district_name, '(no district)'), count(*), sum(area_m2) "
                        "FROM geoservice.conflict WHERE {} GROUP BY 1, 2 ORDER BY 1, 2").format(rows))
    cells = cur.fetchall()
    by_rule: dict[str, dict[str, object]] = {}
    for rule in rules:
        found = [c for c in cells if c[0] == rule.id]
        by_rule[rule.id] = {"title_zh": rule.title_zh, "title_en": rule.title_en, "severity": rule.severity,
                            "count": sum(c[2] for c in found), "ha": round(sum(c[3] for c in found) / 1e4, 4),
                            "seconds": round(seconds.get(rule.id, 0.0), 3)}
    return by_rule, [{"rule": rule, "district": district, "count": count, "ha": round(m2 / 1e4, 4)}
                     for rule, district, count, m2 in cells]


@dataclass(frozen=True)
class Link:
    """review's case linking (`review.detect` hands it in: conflicts/ does not import review/).

    `cases` runs before a run's rows are stored, in the transaction that stores them: given the run id, the conflicts'
    `identities` and whether other transactions link at once (a distributed run's tiles), each conflict's case id and
    status. `settle` runs once the run's rows are attached, in that transaction: given the run id, the evaluated rule
    ids and the chain whose rows an incremental run carries over, it marks the cases not found again. `forget` removes
    the cases a failed run created."""

    cases: Callable[[psycopg2.extensions.cursor, int, pd.DataFrame, bool], tuple[np.ndarray, np.ndarray]]
    settle: Callable[[psycopg2.extensions.cursor, int, list[str], tuple[int, ...]], None]
    forget: Callable[[psycopg2.extensions.cursor, int], None]


#: review's continuity step of an incremental run (`review.detect`), after its rows are stored and linked, in its
#: transaction: given the run id and its base run's chain, what became of the cases (counts for the run's summary)
Continuity = Callable[[psycopg2.extensions.cursor, int, tuple[int, ...]], dict[str, object]]


def detect(settings: Settings, rule_ids: list[str] | None = None, reporter: Reporter | None = None,
           rules: RuleSet | None = None, link: Link | None = None, basemap: bool = True,
           scheduler: str | None = None, full: bool = False, continuity: Continuity | None = None) -> DetectionSummary:
    """Run the rules against the active layers; store a new current detection run with its conflicts, each with its
    review case and status when `link` (review's case linking: `review.detect`) is given; `basemap=False` overlays the
    plans for the plan differences even when the current base map has them.

    Incremental (`conflicts.incremental`) when the current run evaluated these rules from this rules file on layers
    some of which have new versions, unless `full` (or `basemap=False`); `continuity` then reports on the cases. With a Dask scheduler (`scheduler`, else
    `compute.scheduler`) a full run runs as spatial tiles on its workers (`conflicts.tiled`); without one, here.
    """
    reporter = reporter or SilentReporter()
    rules = rules or load_rules(settings.path(settings.paths.rules))
    selected = rules.selected(rule_ids)
    if not full and basemap:
        from geoservice.conflicts.incremental import base_of, detect_incremental
        with transaction(settings) as conn, conn.cursor() as cur:
            base = base_of(cur, settings, rules, selected, LayerCatalog(cur, settings))
        if base is not None:
            return detect_incremental(settings, reporter, rules, selected, base, link, continuity)
    scheduler = scheduler or settings.compute.scheduler
    if scheduler:
        from geoservice.conflicts.tiled import detect_tiled
        return detect_tiled(settings, scheduler, rule_ids, reporter, rules, link, basemap)
    started = time.perf_counter()
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        catalog = LayerCatalog(cur, settings, basemap=basemap)
        results = run_rules(settings, selected, catalog, reporter)
        districts = catalog.districts()
        versions = catalog.used()
        integration = current_run(cur, "integration")
        from_basemap = (catalog.basemap_run("plan differences")
                        if any(isinstance(rule, PlanDifference) for rule in selected) else None)
    timings = {"evaluate": time.perf_counter() - started}
    by_rule, table = summarize(results, districts)
    for rule in selected:
        by_rule.setdefault(rule.id, {"title_zh": rule.title_zh, "title_en": rule.title_en, "severity": rule.severity,
                                     "count": 0, "ha": 0.0, "seconds": 0.0})
    with transaction(settings) as conn, conn.cursor() as cur:
        run_id = insert_run(cur, integration, versions, rules, selected)
        store_conflicts(cur, run_id, results, districts, settings, link, [rule.id for rule in selected], timings)
        seconds = time.perf_counter() - started
        reporter.line(bulk.stored_line(sum(len(r.found) for r in results), "conflicts",
                                       {**({"review cases": timings["review cases"]} if link else {}),
                                        "COPY": timings["store"], "indexes": timings["index"]}, seconds))
        summary = DetectionSummary(run_id, rules.checksum, versions, by_rule, table, round(seconds, 3),
                                   {name: round(value, 3) for name, value in timings.items()}, from_basemap,
                                   rasters=raster_checksums(settings, selected))
        make_current(cur, "detection", run_id, summary.as_dict())
    return summary
