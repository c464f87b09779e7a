"""`overlay`: the planar intersection or union of two polygon arrays, as aligned index and piece arrays.

The steps, each vectorized and split over a thread pool (GEOS releases the GIL):

1. `checked_polygons`: every input is a valid Polygon/MultiPolygon (or missing/empty), else ValueError.
2. `candidate_pairs`: one STRtree bulk query with the `intersects` predicate.
3. `intersection_pieces`: exact shortcuts where one envelope holds the other (duplicates and contained
   geometries are their own piece), pairs that merely touch skipped when they are common, and
   `shapely.intersection` for the rest; only polygonal parts with area are kept.
4. union only — `uncovered_rest`: per feature, nothing when its pieces' areas sum to its own, itself
   when it has no pieces, else `difference(feature, union of the partners it meets)`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import shapely

from geoservice.overlay.pairs import candidate_pairs
from geoservice.overlay.pieces import (
    MULTIPOLYGON,
    POLYGON,
    intersection_pieces,
    polygonal,
    union_groups,
)
from geoservice.overlay.threads import Pool, concat, pool

#: A feature counts as fully covered by its pieces when their areas sum to its own within this (relative).
COVERED_RTOL = 1e-9


def overlay(
    left: np.ndarray,
    right: np.ndarray,
    how: Literal["intersection", "union"] = "intersection",
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlay two arrays of valid (Multi)Polygons in one projected CRS: (left_index, right_index, pieces).

    - "intersection": one piece per pair of features whose intersection has area.
    - "union": those pieces, plus the part of each feature that the other side does not cover, with -1
      as the other side's index (a feature the other side does not touch at all is its own piece).

    The three arrays are aligned: int64 indexes into `left` and `right`, and Polygon/MultiPolygon
    pieces (never empty, never zero-area, never a GeometryCollection). They are sorted by
    (left_index, right_index), -1 counting as after every index: a feature's uncovered rest follows
    its pairs, and right-only pieces come last. Missing (None) and empty input geometries yield no
    pieces. A piece that is a whole input geometry (contained in its partner, or untouched by the
    other side) is that input object itself. `threads` (None: one per CPU) split the work; the result
    does not depend on it.

    The uncovered rest is skipped where a feature's pieces already sum to its area (relative
    1e-9); that is exact unless the other side's features overlap each other by exactly the area
    they leave uncovered.

    Raises ValueError naming the side and index of the first geometry that is not polygonal or not
    valid (repair those with shapely.make_valid first).
    """
    if how not in ("intersection", "union"):
        raise ValueError(f"how must be 'intersection' or 'union', got {how!r}")
    with pool(threads) as p:
        left = checked_polygons(left, "left", p)
        right = checked_polygons(right, "right", p)
        li, ri = candidate_pairs(left, right, "intersects", _pool=p)
        li, ri, pieces, areas = intersection_pieces(left, right, li, ri, p)
        if how == "intersection":
            return li, ri, pieces

        left_rest, left_rest_geoms = uncovered_rest(left, li, ri, areas, right, p)
        right_rest, right_rest_geoms = uncovered_rest(right, ri, li, areas, left, p)

    n, m = len(left), len(right)
    li = concat([li, left_rest, np.full(len(right_rest), -1, np.int64)], np.int64)
    ri = concat([ri, np.full(len(left_rest), -1, np.int64), right_rest], np.int64)
    pieces = concat([pieces, left_rest_geoms, right_rest_geoms], object)
    key = np.where(li < 0, n, li) * np.int64(m + 1) + np.where(ri < 0, m, ri)
    order = np.argsort(key, kind="stable")
    return li[order], ri[order], pieces[order]


def uncovered_rest(
    source: np.ndarray,
    own: np.ndarray,
    other: np.ndarray,
    areas: np.ndarray,
    partners: np.ndarray,
    p: Pool,
) -> tuple[np.ndarray, np.ndarray]:
    """For each feature of `source` not covered by its pieces: (its index, the part left uncovered).

    `own`/`other` are the pieces' indexes into `source` and `partners`, `areas` their areas. Covered
    features (pieces summing to the feature's area within COVERED_RTOL) cost nothing more; a feature
    with no pieces is its own rest; the others are one vectorized
    `difference(feature, union of the partners it meets)`, the unions grouped by `union_groups`.
    Differencing with the partners themselves, not with the pieces, keeps the rest's edges on the
    input edges (no re-noding of computed points, so no hairline slivers).
    """
    n = len(source)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, dtype=object)
    area = np.nan_to_num(concat(p.map_chunks(lambda a, z: shapely.area(source[a:z]), n, 4096), np.float64))
    covered = np.bincount(own, weights=areas, minlength=n)
    count = np.bincount(own, minlength=n)
    need = (area > 0) & ~(np.abs(covered - area) <= COVERED_RTOL * area)
    whole = np.flatnonzero(need & (count == 0))

    partial = need & (count > 0)
    members = np.flatnonzero(partial[own])
    rest_index = np.empty(0, np.int64)
    rest_geoms = np.empty(0, dtype=object)
    if len(members):
        ids, cover = union_groups(partners[other[members]], own[members], _pool=p)
        sources = source[ids]
        parts = p.map_chunks(lambda a, z: shapely.difference(sources[a:z], cover[a:z]), len(ids), 64)
        rest_geoms, keep = polygonal(concat(parts, object), return_index=True)
        rest_index = ids[keep]

    index = concat([whole.astype(np.int64), rest_index.astype(np.int64)], np.int64)
    geoms = concat([source[whole], rest_geoms], object)
    order = np.argsort(index, kind="stable")
    return index[order], geoms[order]


def checked_polygons(geoms: np.ndarray, side: str, p: Pool) -> np.ndarray:
    """`geoms` as a 1-D object array, or ValueError naming `side[i]` for a non-polygonal or invalid one."""
    arr = np.asarray(geoms, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{side}: expected a one-dimensional array of geometries, got shape {arr.shape}")
    try:
        types = shapely.get_type_id(arr)
    except TypeError:
        i = next(i for i, g in enumerate(arr) if g is not None and not isinstance(g, shapely.Geometry))
        raise ValueError(f"{side}[{i}]: not a geometry ({type(arr[i]).__name__})") from None
    bad = np.flatnonzero((types != POLYGON) & (types != MULTIPOLYGON) & (types != -1))
    if len(bad):
        i = int(bad[0])
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{side}[{i}]: not polygonal ({arr[i].geom_type}){more}")
    valid = concat(p.map_chunks(lambda a, z: shapely.is_valid(arr[a:z]), len(arr), 2048), bool)
    invalid = np.flatnonzero(~valid & (types != -1))
    if len(invalid):
        i = int(invalid[0])
        more = f" (and {len(invalid) - 1} more)" if len(invalid) > 1 else ""
        raise ValueError(
            f"{side}[{i}]: invalid {arr[i].geom_type} ({shapely.is_valid_reason(arr[i])}){more}; "
            "apply shapely.make_valid first"
        )
    return arr
