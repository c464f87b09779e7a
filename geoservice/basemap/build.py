"""Building the base map (一张图) from arrays: plan union, district split, protection-line overlaps. No database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

from geoservice.classes import is_construction
from geoservice.overlay import overlay
from geoservice.overlay.zones import split_by_zones

#: plan-difference classes of a patch
BOTH_CONSTRUCTION = "both_construction"
URBAN_ONLY = "urban_only"          # 城建土非: urban plan construction on land-use plan non-construction
LAND_ONLY = "land_only"            # 土建城非: land-use plan construction on urban plan non-construction
BOTH_NON_CONSTRUCTION = "both_non_construction"
LAND_PLAN_ONLY = "land_plan_only"  # only the land-use plan covers the patch
URBAN_PLAN_ONLY = "urban_plan_only"
DIFFERENCE_CLASSES = (BOTH_CONSTRUCTION, URBAN_ONLY, LAND_ONLY, BOTH_NON_CONSTRUCTION, LAND_PLAN_ONLY, URBAN_PLAN_ONLY)


def difference_classes(land_codes: np.ndarray, plan_codes: np.ndarray, land_present: np.ndarray,
                       plan_present: np.ndarray, construction_codes: list[str]) -> np.ndarray:
    """The plan-difference class of each patch from the two plans' unified codes."""
    land_c = is_construction(land_codes, construction_codes)
    plan_c = is_construction(plan_codes, construction_codes)
    both = land_present & plan_present
    return np.select(
        [both & land_c & plan_c, both & plan_c & ~land_c, both & land_c & ~plan_c, both, land_present],
        [BOTH_CONSTRUCTION, URBAN_ONLY, LAND_ONLY, BOTH_NON_CONSTRUCTION, LAND_PLAN_ONLY],
        URBAN_PLAN_ONLY,
    ).astype(object)


def overlap_area(pieces: np.ndarray, zones: np.ndarray, threads: int | None) -> np.ndarray:
    """Area of each piece inside the union of `zones` (zones overlapping each other are counted once)."""
    if len(pieces) == 0 or len(zones) == 0:
        return np.zeros(len(pieces))
    dissolved = shapely.get_parts(shapely.union_all(zones))
    dissolved = dissolved[shapely.area(dissolved) > 0]
    index, _, parts = overlay(pieces, dissolved, how="intersection", threads=threads)
    return np.bincount(index, weights=shapely.area(parts), minlength=len(pieces))


@dataclass
class BaseMap:
    """The patches: aligned arrays. Indexes are -1 where a plan (or district) does not cover the patch."""

    land_index: np.ndarray
    plan_index: np.ndarray
    district_index: np.ndarray
    geometries: np.ndarray
    areas: np.ndarray
    line_m2: dict[str, np.ndarray]
    slivers_dropped: int
    slivers_area_m2: float

    def __len__(self) -> int:
        return len(self.geometries)


def build_basemap(land: np.ndarray, plan: np.ndarray, districts: np.ndarray, lines: dict[str, np.ndarray],
                  sliver_area_m2: float, threads: int | None = None,
                  step: Callable[[str], None] = lambda name: None) -> BaseMap:
    """Planar union of the two plans, split by district, with each protection line's overlap area per patch."""
    step("plan union")
    land_index, plan_index, pieces = overlay(land, plan, how="union", threads=threads)
    step("district split")
    piece_index, district_index, pieces = split_by_zones(pieces, districts, threads)
    land_index, plan_index = land_index[piece_index], plan_index[piece_index]
    areas = shapely.area(pieces)
    sliver = areas < sliver_area_m2
    sliver_total = float(areas[sliver].sum())
    keep = ~sliver
    land_index, plan_index, district_index, pieces, areas = (
        land_index[keep], plan_index[keep], district_index[keep], pieces[keep], areas[keep])
    line_m2 = {}
    for name, zones in lines.items():
        step(f"overlap with {name}")
        line_m2[name] = np.minimum(overlap_area(pieces, zones, threads), areas)
    return BaseMap(land_index, plan_index, district_index, pieces, areas, line_m2, int(sliver.sum()), sliver_total)
