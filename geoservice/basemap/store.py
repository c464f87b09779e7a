"""`geoservice integrate`: read the active plan layers, build the base map, store it as a new current run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from geoservice.basemap.build import DIFFERENCE_CLASSES, BaseMap, build_basemap, difference_classes
from geoservice.db import bulk, partitions, transaction
from geoservice.db.layers import ActiveLayer, FeatureArrays, active_layers, layers_of_kind, one_layer_of_kind, read_features
from geoservice.errors import GeoserviceError
from geoservice.progress import Reporter, SilentReporter
from geoservice.settings import Settings

PARENT = "basemap_patch"
#: protection-line layer kinds -> the patch column holding the overlap area
LINE_COLUMNS = {"red_line": "red_line_m2", "basic_farmland": "farmland_m2", "dev_boundary": "dev_boundary_m2"}
FLAG_COLUMNS = {"red_line": "in_red_line", "basic_farmland": "in_farmland", "dev_boundary": "in_dev_boundary"}
COPY_COLUMNS = ("run_id", "land_feature_id", "land_code", "plan_feature_id", "plan_code", "difference", "district_code",
                "district_name", *LINE_COLUMNS.values(), *FLAG_COLUMNS.values(), "area_m2", "geom")


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

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "run_id"}


@dataclass
class Inputs:
    """The layers one run uses, read into arrays."""

    land: FeatureArrays
    plan: FeatureArrays
    districts: FeatureArrays | None
    lines: dict[str, list[FeatureArrays]]
    versions: dict[str, dict[str, int]]


def _pick_inputs(settings: Settings, layers: list[ActiveLayer]) -> tuple[ActiveLayer, ActiveLayer, ActiveLayer | None, dict[str, list[ActiveLayer]]]:
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
        land, plan, district, lines = _pick_inputs(settings, active_layers(cur))
        used = [land, plan, *([district] if district else []), *(l for ls in lines.values() for l in ls)]
        return Inputs(
            land=read_features(cur, land), plan=read_features(cur, plan),
            districts=read_features(cur, district) if district else None,
            lines={kind: [read_features(cur, layer) for layer in found] for kind, found in lines.items()},
            versions={layer.name: {"version": layer.version, "id": layer.version_id} for layer in used},
        )


def _copy_payload(run_id: int, inputs: Inputs, base: BaseMap, differences: np.ndarray, settings: Settings, rows: slice) -> str:
    count = len(base.geometries[rows])
    li, pi, di = base.land_index[rows], base.plan_index[rows], base.district_index[rows]
    areas = base.areas[rows]

    districts = inputs.districts
    line_fields, flag_fields = [], []
    for kind in LINE_COLUMNS:
        overlap = base.line_m2.get(kind, np.zeros(len(base.areas)))[rows]
        line_fields.append(bulk.number_field(overlap))
        flag_fields.append(np.where(overlap >= settings.integration.inside_share * areas, "t", "f").tolist())
    return bulk.copy_text([
        [str(run_id)] * count,
        bulk.text_field(take(inputs.land.ids, li), count), bulk.text_field(take(inputs.land.codes, li), count),
        bulk.text_field(take(inputs.plan.ids, pi), count), bulk.text_field(take(inputs.plan.codes, pi), count),
        bulk.text_field(differences[rows], count),
        bulk.text_field(take(districts.source_ids, di) if districts else None, count),
        bulk.text_field(take(districts.names, di) if districts else None, count),
        *line_fields, *flag_fields, bulk.number_field(areas),
        bulk.multipolygon_ewkb_hex(base.geometries[rows], settings.working_srid),
    ])


def integrate(settings: Settings, reporter: Reporter | None = None) -> IntegrationSummary:
    """Build and store a new base map; readers see the previous one until this one is committed."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    mark = [time.perf_counter(), "read layers"]

    def step(name: str) -> None:
        now = time.perf_counter()
        timings[mark[1]] = round(now - mark[0], 3)
        mark[:] = [now, name]
        task.advance(1)

    with reporter.task("integrate", 4 + len(LINE_COLUMNS)) as task:
        inputs = read_inputs(settings)
        lines = {kind: np.concatenate([f.geometries for f in found]) for kind, found in inputs.lines.items() if found}
        base = build_basemap(inputs.land.geometries, inputs.plan.geometries,
                             inputs.districts.geometries if inputs.districts else np.empty(0, dtype=object),
                             lines, settings.integration.sliver_area_m2, settings.integration.threads, step)
        step("store")
        differences = difference_classes(
            take(inputs.land.codes, base.land_index), take(inputs.plan.codes, base.plan_index),
            base.land_index >= 0, base.plan_index >= 0, settings.construction_codes)
        by_difference = {
            name: {"patches": int((differences == name).sum()), "ha": round(float(base.areas[differences == name].sum()) / 1e4, 4)}
            for name in DIFFERENCE_CLASSES
        }
        with transaction(settings) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO geoservice.integration_run (layer_versions, parameters) VALUES (%s, %s) RETURNING id",
                (json.dumps(inputs.versions), settings.integration.model_dump_json()),
            )
            run_id = cur.fetchone()[0]
            table = partitions.create_partition_table(cur, PARENT, run_id)
            chunk = 50_000
            with bulk.CopyWriter(cur, table, COPY_COLUMNS) as writer:
                for start in range(0, len(base), chunk):
                    writer.put(_copy_payload(run_id, inputs, base, differences, settings, slice(start, start + chunk)))
            partitions.attach_partition(cur, PARENT, "run_id", run_id, ("run_id", "id"), {"geom": "USING gist (geom)"})
            step("done")
            summary = IntegrationSummary(run_id, inputs.versions, len(base), base.slivers_dropped,
                                         round(base.slivers_area_m2, 3), by_difference,
                                         round(time.perf_counter() - started, 3), timings)
            cur.execute("UPDATE geoservice.integration_run SET is_current = false WHERE is_current")
            cur.execute("UPDATE geoservice.integration_run SET is_current = true, finished_at = now(), summary = %s "
                        "WHERE id = %s", (json.dumps(summary.as_dict()), run_id))
    return summary


def take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index] with None where index is -1."""
    out = np.full(len(index), None, dtype=object)
    out[index >= 0] = values[index[index >= 0]]
    return out
