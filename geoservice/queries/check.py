"""Project check on submit: the conflicts a proposed construction project would create, stored nowhere.

The project stands in for the construction layer; only features whose box meets the project's are read;
the rules whose subject is the construction layer run through the same evaluation as `geoservice detect`,
so the answer equals what a full detection with the project added would find for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import psycopg2.extensions
import pyogrio
import pyogrio.errors
import shapely

from geoservice.conflicts.detect import LayerCatalog, district_zones, evaluate_rule, finish
from geoservice.conflicts.rules import ForbiddenOverlap, MustBeWithin, RasterThreshold, Rule, RuleSet
from geoservice.db.layers import FeatureArrays
from geoservice.queries.points import QueryError, input_crs, to_working
from geoservice.settings import Settings

SUBMITTED = "submitted"
MAX_VERTICES = 100_000


def project_geometry(settings: Settings, geometry: shapely.Geometry, crs: str | None) -> shapely.Geometry:
    """The submitted polygon in the working CRS; QueryError when it is not a valid, non-empty (Multi)Polygon."""
    if geometry is None or geometry.is_empty:
        raise QueryError("the project geometry is empty")
    if geometry.geom_type not in ("Polygon", "MultiPolygon"):
        raise QueryError(f"the project must be a Polygon or MultiPolygon, not a {geometry.geom_type}")
    if shapely.get_num_coordinates(geometry) > MAX_VERTICES:
        raise QueryError(f"the project has more than {MAX_VERTICES} vertices")
    if not geometry.is_valid:
        raise QueryError(f"the project geometry is invalid: {shapely.is_valid_reason(geometry)}")
    moved = to_working(settings, np.array([shapely.force_2d(geometry)]), input_crs(settings, crs))[0]
    if not moved.is_valid or moved.area <= 0:
        raise QueryError("the project geometry has no area in the working CRS")
    return moved


def read_project_file(path: Path) -> tuple[shapely.Geometry, str | None]:
    """The polygons of a project file (GeoJSON, GeoPackage, Shapefile) as one geometry, and the file's CRS."""
    try:
        meta, _, wkb, _ = pyogrio.raw.read(path, read_geometry=True, columns=[])
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise QueryError(f"{path}: cannot be read as a vector file ({exc})") from exc
    geometries = shapely.from_wkb(wkb)
    if len(geometries) == 0:
        raise QueryError(f"{path}: holds no feature")
    geometry = geometries[0] if len(geometries) == 1 else shapely.union_all(geometries)
    return geometry, meta.get("crs")


def _construction_rules(rules: list[Rule], catalog: LayerCatalog, construction: str) -> list[Rule]:
    subjects = (ForbiddenOverlap, MustBeWithin, RasterThreshold)
    return [rule for rule in rules if isinstance(rule, subjects) and rule.subject.layer is not None
            and catalog.resolve(rule.subject.layer, f"rule {rule.id}").name == construction]


def check_project(cur: psycopg2.extensions.cursor, settings: Settings, rules: RuleSet, geometry: shapely.Geometry,
                  crs: str | None = None, code: str | None = None) -> list[dict[str, Any]]:
    """Every conflict the project would create under the current rules: rule, area m², codes, district, geometry."""
    project = project_geometry(settings, geometry, crs)
    # one small project: the overlay runs inline, without a thread pool per call
    settings = settings.model_copy(update={"integration": settings.integration.model_copy(update={"threads": 1})})
    probe = LayerCatalog(cur, settings)
    construction = probe.resolve("construction", "project check")
    subject = FeatureArrays(construction.name, np.array([-1], np.int64), np.array([code], dtype=object),
                            np.array([None], dtype=object), np.array([SUBMITTED], dtype=object), np.array([project]))
    catalog = LayerCatalog(cur, settings, envelope=tuple(project.bounds), substitutes={construction.name: subject})
    districts, zones = district_zones(catalog)
    out: list[dict[str, Any]] = []
    for rule in _construction_rules(rules.selected(None), catalog, construction.name):
        for found in evaluate_rule(rule, catalog, settings):
            split, district_index = finish(found, rule, zones, settings)
            b = split.layer_b
            for k in range(len(split)):
                ib, idist = int(split.index_b[k]), int(district_index[k])
                out.append({
                    "rule_id": rule.id, "title_zh": rule.title_zh, "title_en": rule.title_en, "severity": rule.severity,
                    "area_m2": float(shapely.area(split.pieces[k])), "code_a": code,
                    "layer_b": b.layer if b is not None and ib >= 0 else None,
                    "feature_b": int(b.ids[ib]) if b is not None and ib >= 0 else None,
                    "source_id_b": b.source_ids[ib] if b is not None and ib >= 0 else None,
                    "code_b": b.codes[ib] if b is not None and ib >= 0 else None,
                    "district_code": districts.source_ids[idist] if districts is not None and idist >= 0 else None,
                    "district_name": districts.names[idist] if districts is not None and idist >= 0 else None,
                    "details": split.details[k], "geometry": split.pieces[k],
                })
    return out
