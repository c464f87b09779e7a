"""Building the base map (一张图) from arrays: plan union, district split, protection-line overlaps. No database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

from geoservice.classes import is_construction
from geoservice.overlay import MAX_VERTICES, Parts, intersection_areas, overlay, subdivide
from geoservice.overlay.subdivide import feature_count
from geoservice.overlay.zones import split_by_zones

#: plan-difference classes of a patch
BOTH_CONSTRUCTION = "both_construction"
URBAN_ONLY = "urban_only"          # 城建土非: urban plan construction on land-use plan non-construction
LAND_ONLY = "land_only"            # 土建城非: land-use plan construction on urban plan non-construction
BOTH_NON_CONSTRUCTION = "both_non_construction"
LAND_PLAN_ONLY = "land_plan_only"  # only the land-use plan covers the patch
URBAN_PLAN_ONLY = "urban_plan_only"
DIFFERENCE_CLASSES = (BOTH_CONSTRUCTION, URBAN_ONLY, LAND_ONLY, BOTH_NON_CONSTRUCTION, LAND_PLAN_ONLY, URBAN_PLAN_ONLY)


def difference_classes(land_codes: np.ndarray, land_index: np.ndarray, plan_codes: np.ndarray, plan_index: np.ndarray,
                       construction_codes: list[str]) -> np.ndarray:
    """The plan-difference class of each patch from the two plans' unified codes (per feature) and each patch's
    feature of either plan (-1: that plan does not cover it). Codes are classified once per feature, not per patch."""
    land_present, plan_present = land_index >= 0, plan_index >= 0
    land_c = _at(is_construction(land_codes, construction_codes), land_index)
    plan_c = _at(is_construction(plan_codes, construction_codes), plan_index)
    both = land_present & plan_present
    return np.select(
        [both & land_c & plan_c, both & plan_c & ~land_c, both & land_c & ~plan_c, both, land_present],
        [BOTH_CONSTRUCTION, URBAN_ONLY, LAND_ONLY, BOTH_NON_CONSTRUCTION, LAND_PLAN_ONLY],
        URBAN_PLAN_ONLY,
    ).astype(object)


def _at(flags: np.ndarray, index: np.ndarray) -> np.ndarray:
    """flags[index], False where index is -1."""
    out = np.zeros(len(index), bool)
    out[index >= 0] = flags[index[index >= 0]]
    return out


def overlap_area(pieces: np.ndarray | Parts, zones: np.ndarray, threads: int | None,
                 max_vertices: int | None = MAX_VERTICES) -> np.ndarray:
    """Area of each piece (an array, or its `Parts`) inside the union of `zones` (zones overlapping each other are
    counted once).

    The dissolved zones are subdivided into parts of at most `max_vertices` vertices before pairing.
    """
    if feature_count(pieces) == 0 or len(zones) == 0:
        return np.zeros(feature_count(pieces))
    return intersection_areas(pieces, dissolved_parts(zones, max_vertices, threads), threads)


def dissolved_parts(zones: np.ndarray, max_vertices: int | None = MAX_VERTICES, threads: int | None = None) -> Parts:
    """The union of `zones` as polygons subdivided into parts of at most `max_vertices` vertices."""
    dissolved = shapely.get_parts(shapely.union_all(zones))
    dissolved = dissolved[shapely.area(dissolved) > 0]
    return subdivide(dissolved, max_vertices, threads)


@dataclass
class BaseMap:
    """The patches: aligned arrays. Indexes are -1 where a plan (or district) does not cover the patch."""

    land_index: np.ndarray
    plan_index: np.ndarray
    district_index: np.ndarray
    geometries: np.ndarray
    areas: np.ndarray
    piece_m2: np.ndarray  # area of the plan-union piece each patch was cut from (before the district split)
    line_m2: dict[str, np.ndarray]
    slivers_dropped: int
    slivers_area_m2: float

    def __len__(self) -> int:
        return len(self.geometries)


def build_basemap(land: np.ndarray, plan: np.ndarray, districts: np.ndarray, lines: dict[str, np.ndarray],
                  sliver_area_m2: float, threads: int | None = None,
                  step: Callable[[str], None] = lambda name: None, max_vertices: int | None = MAX_VERTICES) -> BaseMap:
    """Planar union of the two plans, split by district, with each protection line's overlap area per patch.

    Districts and dissolved lines are subdivided into parts of at most `max_vertices` vertices before pairing
    (None: not cut).
    """
    step("plan union")
    land_index, plan_index, pieces = overlay(land, plan, how="union", threads=threads)
    return split_pieces(land_index, plan_index, pieces, districts, lines, sliver_area_m2, threads, step, max_vertices)


def split_pieces(land_index: np.ndarray, plan_index: np.ndarray, pieces: np.ndarray, districts: np.ndarray | Parts,
                 lines: dict[str, np.ndarray | Parts], sliver_area_m2: float, threads: int | None = None,
                 step: Callable[[str], None] = lambda name: None, max_vertices: int | None = MAX_VERTICES) -> BaseMap:
    """The base map's patches from plan-union pieces: split by district, slivers dropped, line overlaps measured. Each
    piece's patches depend on that piece, the districts and the lines alone (a spatial tile runs this on the pieces it
    owns). `districts` may come subdivided and each line dissolved and subdivided (`Parts`, `dissolved_parts`: cut
    once for many tiles)."""
    step("district split")
    piece_m2 = shapely.area(pieces)
    zones = districts if isinstance(districts, Parts) else subdivide(districts, max_vertices, threads)
    piece_index, district_index, pieces = split_by_zones(pieces, zones, threads)
    land_index, plan_index, piece_m2 = land_index[piece_index], plan_index[piece_index], piece_m2[piece_index]
    areas = shapely.area(pieces)
    sliver = areas < sliver_area_m2
    sliver_total = float(areas[sliver].sum())
    keep = ~sliver
    land_index, plan_index, district_index, pieces, areas, piece_m2 = (
        land_index[keep], plan_index[keep], district_index[keep], pieces[keep], areas[keep], piece_m2[keep])
    patches = subdivide(pieces, max_vertices, threads)  # checked once for all the lines
    line_m2 = {}
    for name, line in lines.items():
        step(f"overlap with {name}")
        measured = (intersection_areas(patches, line, threads) if isinstance(line, Parts)
                    else overlap_area(patches, line, threads, max_vertices))
        line_m2[name] = np.minimum(measured, areas)
    return BaseMap(land_index, plan_index, district_index, pieces, areas, piece_m2, line_m2, int(sliver.sum()),
                   sliver_total)
