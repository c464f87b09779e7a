"""Rule evaluation on arrays (no database): each rule type yields conflict pieces with the features they come from.

Conflict-only: every rule first selects the features whose codes can conflict, then overlays just those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from geoservice.classes import is_classified, is_construction, matches_codes
from geoservice.conflicts.rules import Subject
from geoservice.db.layers import FeatureArrays
from geoservice.overlay import overlay


@dataclass
class Found:
    """Conflict pieces of one rule: which feature of layer A and of layer B (-1: none) each piece comes from."""

    layer_a: FeatureArrays
    layer_b: FeatureArrays | None
    index_a: np.ndarray
    index_b: np.ndarray
    pieces: np.ndarray
    details: list[dict[str, object]] = field(default_factory=list)

    @staticmethod
    def empty(layer_a: FeatureArrays, layer_b: FeatureArrays | None = None) -> Found:
        return Found(layer_a, layer_b, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, dtype=object))

    def __len__(self) -> int:
        return len(self.pieces)

    def keep(self, mask: np.ndarray) -> Found:
        details = [d for d, k in zip(self.details, mask.tolist()) if k] if self.details else []
        return Found(self.layer_a, self.layer_b, self.index_a[mask], self.index_b[mask], self.pieces[mask], details)


def subject_mask(features: FeatureArrays, subject: Subject, construction_codes: list[str]) -> np.ndarray:
    """Which features a rule's subject selects (codes: construction, non_construction, or code prefixes)."""
    codes = features.codes
    if subject.codes is None:
        mask = np.ones(len(features), bool)
    elif subject.codes == "construction":
        mask = is_construction(codes, construction_codes)
    elif subject.codes == "non_construction":
        mask = is_classified(codes) & ~is_construction(codes, construction_codes)
    else:
        mask = matches_codes(codes, subject.codes)
    if subject.exclude_codes:
        mask &= ~matches_codes(codes, subject.exclude_codes)
    return mask


def _intersections(a: FeatureArrays, mask_a: np.ndarray, b: FeatureArrays, mask_b: np.ndarray, threads: int | None) -> Found:
    rows_a, rows_b = np.flatnonzero(mask_a), np.flatnonzero(mask_b)
    if len(rows_a) == 0 or len(rows_b) == 0:
        return Found.empty(a, b)
    ia, ib, pieces = overlay(a.geometries[rows_a], b.geometries[rows_b], how="intersection", threads=threads)
    return Found(a, b, rows_a[ia], rows_b[ib], pieces)


def plan_difference(land: FeatureArrays, plan: FeatureArrays, difference: str, construction_codes: list[str],
                    threads: int | None) -> Found:
    """Pieces where the land-use plan (A) and the urban plan (B) fall in one construction-difference class."""
    land_c, plan_c = is_construction(land.codes, construction_codes), is_construction(plan.codes, construction_codes)
    land_n, plan_n = is_classified(land.codes) & ~land_c, is_classified(plan.codes) & ~plan_c
    masks = {"both_construction": (land_c, plan_c), "urban_only": (land_n, plan_c),
             "land_only": (land_c, plan_n), "both_non_construction": (land_n, plan_n)}
    mask_land, mask_plan = masks[difference]
    return _intersections(land, mask_land, plan, mask_plan, threads)


def forbidden_overlap(subject: FeatureArrays, mask: np.ndarray, constraint: FeatureArrays, threads: int | None) -> Found:
    """Pieces where selected subject features (A) intersect constraint features (B)."""
    return _intersections(subject, mask, constraint, np.ones(len(constraint), bool), threads)


def outside(subject: FeatureArrays, mask: np.ndarray, container: FeatureArrays, threads: int | None) -> Found:
    """The part of each selected subject feature that no container feature covers."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return Found.empty(subject)
    if len(container) == 0:
        pieces = subject.geometries[rows]
        return Found(subject, None, rows, np.full(len(rows), -1, np.int64), pieces)
    ia, ib, pieces = overlay(subject.geometries[rows], container.geometries, how="union", threads=threads)
    rest = (ia >= 0) & (ib < 0)
    return Found(subject, None, rows[ia[rest]], np.full(int(rest.sum()), -1, np.int64), pieces[rest])


def lines_overlap(a: FeatureArrays, b: FeatureArrays, threads: int | None) -> Found:
    """Pieces where two protection-line layers overlap."""
    return _intersections(a, np.ones(len(a), bool), b, np.ones(len(b), bool), threads)


def exceeding(subject: FeatureArrays, mask: np.ndarray, values: np.ndarray, threshold: float, statistic: str) -> Found:
    """Selected subject features whose raster statistic (computed for the selected rows) exceeds the threshold."""
    rows = np.flatnonzero(mask)
    over = np.nan_to_num(values, nan=-np.inf) > threshold
    picked = rows[over]
    details = [{"statistic": statistic, "value": round(float(v), 6), "threshold": threshold} for v in values[over].tolist()]
    return Found(subject, None, picked, np.full(len(picked), -1, np.int64), subject.geometries[picked], details)


def drop_small(found: Found, min_area_m2: float) -> Found:
    """Conflict pieces of at least the rule's minimum area."""
    if len(found) == 0 or min_area_m2 <= 0:
        return found
    return found.keep(shapely.area(found.pieces) >= min_area_m2)
