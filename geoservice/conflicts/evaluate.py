"""Rule evaluation on arrays (no database): each rule type yields conflict pieces with the features they come from.

Conflict-only: every rule first selects the features whose codes can conflict, then overlays just those. Large
polygons take part as their parts (`Subdivided`: each layer cut once per run), so no intersection costs the size
of a large polygon; a conflict piece is still one per pair of features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely

from geoservice.classes import is_classified, is_construction, matches_codes
from geoservice.conflicts.rules import Subject
from geoservice.db.layers import FeatureArrays
from geoservice.db.patches import PatchArrays
from geoservice.overlay import MAX_VERTICES, Parts, overlay, subdivide


@dataclass(frozen=True)
class Details:
    """Per-piece details as aligned columns (name -> array); `details[k]` is piece k's as a dict."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, k: int) -> dict[str, object]:
        return {name: values[k].item() if isinstance(values[k], np.generic) else values[k]
                for name, values in self.columns.items()}

    def take(self, index: np.ndarray) -> Details:
        """The details of the pieces at `index` (positions or a boolean mask)."""
        return Details({name: values[index] for name, values in self.columns.items()})


@dataclass
class Found:
    """Conflict pieces of one rule: which feature of layer A and of layer B (-1: none) each piece comes from."""

    layer_a: FeatureArrays
    layer_b: FeatureArrays | None
    index_a: np.ndarray
    index_b: np.ndarray
    pieces: np.ndarray
    details: Details = field(default_factory=Details)

    @staticmethod
    def empty(layer_a: FeatureArrays, layer_b: FeatureArrays | None = None) -> Found:
        return Found(layer_a, layer_b, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, dtype=object))

    def __len__(self) -> int:
        return len(self.pieces)

    def take(self, index: np.ndarray) -> Found:
        """The pieces at `index` (positions or a boolean mask)."""
        return Found(self.layer_a, self.layer_b, self.index_a[index], self.index_b[index], self.pieces[index],
                     self.details.take(index))


class Subdivided:
    """Each layer's polygons cut into parts of at most `max_vertices` vertices (None: not cut), once per run (by
    layer name)."""

    def __init__(self, max_vertices: int | None = MAX_VERTICES, threads: int | None = None) -> None:
        self.max_vertices, self.threads = max_vertices, threads
        self._cut: dict[str, Parts] = {}

    def parts(self, features: FeatureArrays, rows: np.ndarray) -> Parts:
        """The parts of the features at `rows` (distinct), indexed by position in `rows`."""
        cut = self._cut.get(features.layer)
        if cut is None:
            cut = self._cut[features.layer] = subdivide(features.geometries, self.max_vertices, self.threads)
        return cut.select(rows)


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


def _parts(features: FeatureArrays, rows: np.ndarray, subdivided: Subdivided | None, threads: int | None) -> Parts:
    """The parts of the features at `rows`: from the run's cut layers, or cut now (a single evaluation)."""
    if subdivided is None:
        return subdivide(features.geometries[rows], threads=threads)
    return subdivided.parts(features, rows)


def _intersections(a: FeatureArrays, mask_a: np.ndarray, b: FeatureArrays, mask_b: np.ndarray, threads: int | None,
                   subdivided: Subdivided | None) -> Found:
    rows_a, rows_b = np.flatnonzero(mask_a), np.flatnonzero(mask_b)
    if len(rows_a) == 0 or len(rows_b) == 0:
        return Found.empty(a, b)
    ia, ib, pieces = overlay(_parts(a, rows_a, subdivided, threads), _parts(b, rows_b, subdivided, threads),
                             how="intersection", threads=threads)
    return Found(a, b, rows_a[ia], rows_b[ib], pieces)


def difference_masks(land_codes: np.ndarray, plan_codes: np.ndarray, difference: str,
                     construction_codes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Which land-use plan (A) and urban plan (B) codes can meet in one construction-difference class."""
    land_c, plan_c = is_construction(land_codes, construction_codes), is_construction(plan_codes, construction_codes)
    land_n, plan_n = is_classified(land_codes) & ~land_c, is_classified(plan_codes) & ~plan_c
    return {"both_construction": (land_c, plan_c), "urban_only": (land_n, plan_c),
            "land_only": (land_c, plan_n), "both_non_construction": (land_n, plan_n)}[difference]


def difference_codes(land_codes: np.ndarray, plan_codes: np.ndarray, difference: str,
                     construction_codes: list[str]) -> tuple[list[str], list[str]]:
    """The land-use and urban-plan codes (of those given) that can meet in one construction-difference class."""
    masks = difference_masks(land_codes, plan_codes, difference, construction_codes)
    return [sorted(set(codes[mask].tolist()) - {None}) for codes, mask in zip((land_codes, plan_codes), masks)]


def plan_difference(land: FeatureArrays, plan: FeatureArrays, difference: str, construction_codes: list[str],
                    threads: int | None, subdivided: Subdivided | None = None) -> Found:
    """Pieces where the land-use plan (A) and the urban plan (B) fall in one construction-difference class."""
    mask_land, mask_plan = difference_masks(land.codes, plan.codes, difference, construction_codes)
    found = _intersections(land, mask_land, plan, mask_plan, threads, subdivided)
    found.details = Details({"difference": np.full(len(found), difference, dtype=object)})
    return found


def plan_difference_of_patches(patches: PatchArrays, difference: str,
                               district_codes: np.ndarray) -> tuple[Found, np.ndarray]:
    """The same conflicts taken from base-map patches of one difference class (already split by district, slivers
    dropped, pieces under the rule's minimum area left out; each patch names its two features): (found, each piece's
    district index, -1 outside)."""
    rows = np.arange(len(patches))
    found = Found(patches.land, patches.plan, rows, rows, patches.geometries,
                  Details({"difference": np.full(len(patches), difference, dtype=object)}))
    first = pd.Series(np.arange(len(district_codes)), index=pd.Index(district_codes, dtype=object))
    first = first[~first.index.duplicated()]
    return found, pd.Series(patches.district_codes, dtype=object).map(first).fillna(-1).to_numpy(np.int64)


def forbidden_overlap(subject: FeatureArrays, mask: np.ndarray, constraint: FeatureArrays, threads: int | None,
                      subdivided: Subdivided | None = None) -> Found:
    """Pieces where selected subject features (A) intersect constraint features (B)."""
    return _intersections(subject, mask, constraint, np.ones(len(constraint), bool), threads, subdivided)


def outside(subject: FeatureArrays, mask: np.ndarray, container: FeatureArrays, threads: int | None,
            subdivided: Subdivided | None = None) -> Found:
    """The part of each selected subject feature that no container feature covers."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return Found.empty(subject)
    every = np.arange(len(container))
    ia, ib, pieces = overlay(_parts(subject, rows, subdivided, threads), _parts(container, every, subdivided, threads),
                             how="difference", threads=threads)
    return Found(subject, None, rows[ia], ib, pieces)


def lines_overlap(a: FeatureArrays, b: FeatureArrays, threads: int | None, subdivided: Subdivided | None = None) -> Found:
    """Pieces where two protection-line layers overlap."""
    return _intersections(a, np.ones(len(a), bool), b, np.ones(len(b), bool), threads, subdivided)


def exceeding(subject: FeatureArrays, mask: np.ndarray, values: np.ndarray, threshold: float, statistic: str) -> Found:
    """Selected subject features whose raster statistic (computed for the selected rows) exceeds the threshold."""
    rows = np.flatnonzero(mask)
    over = np.nan_to_num(values, nan=-np.inf) > threshold
    picked = rows[over]
    n = len(picked)
    details = Details({"statistic": np.full(n, statistic, dtype=object), "value": np.round(values[over], 6),
                       "threshold": np.full(n, threshold, dtype=np.float64)})
    return Found(subject, None, picked, np.full(n, -1, np.int64), subject.geometries[picked], details)


def drop_small(found: Found, min_area_m2: float) -> Found:
    """Conflict pieces of at least the rule's minimum area."""
    if len(found) == 0 or min_area_m2 <= 0:
        return found
    return found.take(shapely.area(found.pieces) >= min_area_m2)
