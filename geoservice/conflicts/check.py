"""The check on submit: the conflicts one proposed project would create, by the detection's own evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg2.extensions
import shapely

from geoservice.conflicts.detect import LayerCatalog, district_zones, evaluate_rule, finish
from geoservice.conflicts.rules import ForbiddenOverlap, MustBeWithin, RasterThreshold, Rule, RuleSet
from geoservice.db.layers import FeatureArrays
from geoservice.settings import Settings

#: the source id the project carries in the results
SUBMITTED = "submitted"


def _construction_rules(rules: list[Rule], catalog: LayerCatalog, construction: str) -> list[Rule]:
    subjects = (ForbiddenOverlap, MustBeWithin, RasterThreshold)
    return [rule for rule in rules if isinstance(rule, subjects) and rule.subject.layer is not None
            and catalog.resolve(rule.subject.layer, f"rule {rule.id}").name == construction]


def check(cur: psycopg2.extensions.cursor, settings: Settings, rules: RuleSet, project: shapely.Geometry,
          code: str | None = None) -> list[dict[str, Any]]:
    """Every conflict a proposed construction project (a polygon in the working CRS, of class `code`) would create
    under the current rules — evaluated exactly as `detect` evaluates the construction layer with the project in it,
    on the features whose box meets the project's: rule, area m², codes, district, geometry. Nothing is stored."""
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
