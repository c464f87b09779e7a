"""`geoservice integrate`: read the active plan layers, build the base map, store it as a new current run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pyarrow as pa

from geoservice.basemap.build import DIFFERENCE_CLASSES, BaseMap, build_basemap, difference_classes
from geoservice.db import bulk, partitions, transaction
from geoservice.db.layers import FeatureArrays, layers_of_kind, one_layer_of_kind, read_features
from geoservice.db.read import LayerVersion, active_versions, current_run
from geoservice.db.runs import make_current
from geoservice.errors import GeoserviceError
from geoservice.progress import Reporter, SilentReporter
from geoservice.settings import Settings

PARENT = "basemap_patch"
#: protection-line layer kinds -> the patch column holding the overlap area
LINE_COLUMNS = {"red_line": "red_line_m2", "basic_farmland": "farmland_m2", "dev_boundary": "dev_boundary_m2"}
FLAG_COLUMNS = {"red_line": "in_red_line", "basic_farmland": "in_farmland", "dev_boundary": "in_dev_boundary"}
#: patches per binary COPY batch
COPY_BATCH = 50_000
COPY_COLUMNS = ("run_id", "land_feature_id", "land_code", "plan_feature_id", "plan_code", "difference", "district_code",
                "district_name", *LINE_COLUMNS.values(), *FLAG_COLUMNS.values(), "area_m2", "piece_m2", "geom")


@dataclass
class IntegrationSummary:
    """What one integration run did."""

    run_id: int
    layer_versions: dict[str, dict[str, int]]
    patches: int
    slivers_dropped: int
    slivers_area_m2: float
    by_difference: dict[str, dict[str, float]]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    distributed: dict[str, object] | None = None  # where a distributed run ran: scheduler, worker threads, tiles
    incremental: dict[str, object] | None = None  # an incremental run: its base run, the changes, what it recomputed

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items()
                if k != "run_id" and (k not in ("distributed", "incremental") or v is not None)}


def run_parameters(settings: Settings) -> dict[str, object]:
    """What an integration run records of its settings."""
    return {**settings.integration.model_dump(mode="json"), "construction_codes": list(settings.construction_codes)}


@dataclass
class Inputs:
    """The layers one run uses, read into arrays."""

    land: FeatureArrays
    plan: FeatureArrays
    districts: FeatureArrays | None
    lines: dict[str, list[FeatureArrays]]
    versions: dict[str, dict[str, int]]


def _pick_inputs(settings: Settings, layers: list[LayerVersion]) -> tuple[LayerVersion, LayerVersion, LayerVersion | None, dict[str, list[LayerVersion]]]:
    config = settings.integration
    land = one_layer_of_kind(layers, "land_use", config.land_use_layer)
    plan = one_layer_of_kind(layers, "urban_plan", config.urban_plan_layer)
    districts = layers_of_kind(layers, "district", config.district_layer, required=config.district_layer is not None)
    if len(districts) > 1:
        raise GeoserviceError(f"several active district layers ({', '.join(d.name for d in districts)}): "
                              "set integration.district_layer in config/geoservice.yaml")
    lines = {kind: layers_of_kind(layers, kind, required=False) for kind in LINE_COLUMNS}
    return land, plan, (districts[0] if districts else None), lines


def read_inputs(settings: Settings) -> Inputs:
    """Read the active versions of the plan, district and protection-line layers (one snapshot)."""
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        layers = _pick_inputs(settings, active_versions(cur))
        land, plan, district, lines = layers
        return Inputs(
            land=read_features(cur, land), plan=read_features(cur, plan),
            districts=read_features(cur, district) if district else None,
            lines={kind: [read_features(cur, layer) for layer in found] for kind, found in lines.items()},
            versions=versions_of(layers),
        )


def copy_rows(run_id: int, inputs: Inputs, base: BaseMap, differences: np.ndarray, settings: Settings,
              rows: slice) -> bytes:
    """Binary COPY rows (COPY_COLUMNS order) of the patches `rows`."""
    li, pi, di = base.land_index[rows], base.plan_index[rows], base.district_index[rows]
    areas = base.areas[rows]
    count = len(areas)
    districts = inputs.districts
    district_codes, district_names = (districts.source_ids, districts.names) if districts else (np.empty(0), np.empty(0))
    overlaps = [base.line_m2.get(kind, np.zeros(len(base.areas)))[rows] for kind in LINE_COLUMNS]
    return bulk.binary_rows([
        bulk.int_field(run_id, count),
        bulk.int_field_at(inputs.land.ids, li), bulk.text_field_at(inputs.land.codes, li),
        bulk.int_field_at(inputs.plan.ids, pi), bulk.text_field_at(inputs.plan.codes, pi),
        bulk.text_binary_field(pa.array(differences[rows], pa.string()), count),
        bulk.text_field_at(district_codes, di), bulk.text_field_at(district_names, di),
        *map(bulk.float_field, overlaps),
        *(bulk.bool_field(overlap >= settings.integration.inside_share * areas) for overlap in overlaps),
        bulk.float_field(areas), bulk.float_field(base.piece_m2[rows]), bulk.multipolygon_field(base.geometries[rows], settings.working_srid),
    ], count)


def integrate(settings: Settings, reporter: Reporter | None = None, scheduler: str | None = None,
              full: bool = False) -> IntegrationSummary:
    """Build and store a new base map; readers see the previous one until this one is committed.

    Incremental (`basemap.incremental`) when the current run was built with these settings from these layers and some
    have new active versions, unless `full` or the change reaches most of the plans. With a Dask scheduler (`scheduler`, else `compute.scheduler`: an address,
    or `local:N`) a full run runs as spatial tiles on its workers (`basemap.tiled`); without one, here.
    """
    reporter = reporter or SilentReporter()
    if not full:
        from geoservice.basemap.incremental import base_of, integrate_incremental
        with transaction(settings) as conn, conn.cursor() as cur:
            layers = _pick_inputs(settings, active_versions(cur))
            base = base_of(cur, settings, current_run(cur, "integration"), versions_of(layers))
        summary = integrate_incremental(settings, reporter, base, layers, versions_of(layers)) if base else None
        if summary is not None:
            return summary
    scheduler = scheduler or settings.compute.scheduler
    if scheduler:
        from geoservice.basemap.tiled import integrate_tiled
        return integrate_tiled(settings, scheduler, reporter)
    return _integrate_full(settings, reporter)


def versions_of(layers: tuple[LayerVersion, LayerVersion, LayerVersion | None, dict[str, list[LayerVersion]]]
                ) -> dict[str, dict[str, int]]:
    """{name: {"version": n, "id": version id}} of the layers a run reads (`_pick_inputs`)."""
    land, plan, district, lines = layers
    used = [land, plan, *([district] if district else []), *(layer for found in lines.values() for layer in found)]
    return {layer.name: {"version": layer.version, "id": layer.version_id} for layer in used}


def _integrate_full(settings: Settings, reporter: Reporter) -> IntegrationSummary:
    """Build the whole base map in this process and store it as a new current run."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    mark = [time.perf_counter(), "read layers"]

    def step(name: str) -> None:
        now = time.perf_counter()
        timings[mark[1]] = round(now - mark[0], 3)
        mark[:] = [now, name]
        task.advance(1)

    with reporter.task("integrate", 5 + len(LINE_COLUMNS)) as task:
        inputs = read_inputs(settings)
        lines = {kind: np.concatenate([f.geometries for f in found]) for kind, found in inputs.lines.items() if found}
        base = build_basemap(inputs.land.geometries, inputs.plan.geometries,
                             inputs.districts.geometries if inputs.districts else np.empty(0, dtype=object),
                             lines, settings.integration.sliver_area_m2, settings.integration.threads, step,
                             settings.integration.subdivide_vertices)
        step("store")
        differences = difference_classes(inputs.land.codes, base.land_index, inputs.plan.codes, base.plan_index,
                                         settings.construction_codes)
        by_difference = {
            name: {"patches": int((differences == name).sum()), "ha": round(float(base.areas[differences == name].sum()) / 1e4, 4)}
            for name in DIFFERENCE_CLASSES
        }
        with transaction(settings) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO geoservice.integration_run (layer_versions, parameters) VALUES (%s, %s) RETURNING id",
                (json.dumps(inputs.versions), json.dumps(run_parameters(settings))),
            )
            run_id = cur.fetchone()[0]
            table = partitions.create_partition_table(cur, PARENT, run_id)
            with bulk.BinaryCopyWriter(cur, table, COPY_COLUMNS, freeze=True) as writer:
                for start in range(0, len(base), COPY_BATCH):  # each batch is built on the writer's thread
                    writer.put(partial(copy_rows, run_id, inputs, base, differences, settings, slice(start, start + COPY_BATCH)))
            step("index")
            partitions.attach_partition(cur, PARENT, "run_id", run_id, ("run_id", "id"), {"geom": "USING gist (geom)"})
            step("done")
            seconds = time.perf_counter() - started
            reporter.line(bulk.stored_line(len(base), "patches", {"COPY": timings["store"], "indexes": timings["index"]},
                                           seconds))
            summary = IntegrationSummary(run_id, inputs.versions, len(base), base.slivers_dropped,
                                         round(base.slivers_area_m2, 3), by_difference, round(seconds, 3), timings)
            make_current(cur, "integration", run_id, summary.as_dict())
    return summary
