"""`overlay`: the planar overlay of two polygon arrays, as aligned index and piece arrays.

Either side may be given subdivided (`Parts` from `subdivide`: large polygons cut into parts of bounded vertex
count), so that no intersection costs the size of a large polygon; the answer is the same, by feature.
The steps, each vectorized and split over a thread pool (GEOS releases the GIL):

1. `checked_polygons`: every input is a valid Polygon/MultiPolygon (or missing/empty), else ValueError
   (`Parts` were checked when they were cut).
2. `candidate_pairs`: one STRtree bulk query with the `intersects` predicate, part against part.
3. `intersection_pieces`: exact shortcuts where one envelope holds the other (duplicates and contained
   geometries are their own piece), pairs that merely touch skipped when they are common, and
   `shapely.intersection` for the rest; only polygonal parts with area are kept.
4. identity, union, difference — `uncovered_rest`: per feature, nothing when its pieces' areas sum to its own,
   itself when it has no pieces, else `difference(feature, union of the partners it meets)`.
5. `by_feature`: part indexes become feature indexes; the pieces one pair of features gave in several parts
   become one: the whole feature when their areas sum to its area, else their union.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import shapely

from geoservice.overlay.pairs import candidate_pairs
from geoservice.overlay.pieces import checked_polygons, intersection_pieces, polygonal, robust, union_groups
from geoservice.overlay.subdivide import Parts, whole_parts
from geoservice.overlay.threads import Pool, concat, pool

#: A feature counts as fully covered by its pieces when their areas sum to its own within this (relative).
COVERED_RTOL = 1e-9

How = Literal["intersection", "identity", "union", "difference"]
HOWS = ("intersection", "identity", "union", "difference")


def overlay(
    left: np.ndarray | Parts,
    right: np.ndarray | Parts,
    how: How = "intersection",
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlay two arrays of valid (Multi)Polygons in one projected CRS: (left_index, right_index, pieces).

    - "intersection": one piece per pair of features whose intersection has area.
    - "identity": those pieces, plus the part of each left feature that no right feature covers, with -1 as
      the right index (a left feature the right side does not touch at all is its own piece).
    - "union": the identity pieces, plus the same for each right feature, with -1 as the left index.
    - "difference": only the left features' uncovered parts (right index -1).

    `left` and `right` are arrays, or `Parts` of them (`subdivide`): indexes are then those of the
    subdivided arrays (`Parts.whole`), and the pieces a pair of features gave in several parts are one piece.

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
    if how not in HOWS:
        raise ValueError(f"how must be one of {', '.join(map(repr, HOWS))}, got {how!r}")
    with pool(threads) as p:
        left, right = operand(left, "left", p), operand(right, "right", p)
        li, ri = candidate_pairs(left.geoms, right.geoms, "intersects", _pool=p)
        li, ri, pieces, areas = intersection_pieces(left.geoms, right.geoms, li, ri, p)
        found = [] if how == "difference" else [(li, ri, pieces)]
        if how != "intersection":
            rest, geoms = uncovered_rest(left.geoms, li, ri, areas, right.geoms, p)
            found.append((rest, np.full(len(rest), -1, np.int64), geoms))
        if how == "union":
            rest, geoms = uncovered_rest(right.geoms, ri, li, areas, left.geoms, p)
            found.append((np.full(len(rest), -1, np.int64), rest, geoms))
        del li, ri, pieces, areas  # at 1M × 1M every extra copy of these is ~100 MB
        li, ri = concat([f[0] for f in found], np.int64), concat([f[1] for f in found], np.int64)
        pieces = concat([f[2] for f in found], object)
        del found
        return by_feature(left, right, li, ri, pieces, p)


def intersection_areas(left: np.ndarray | Parts, right: np.ndarray | Parts, threads: int | None = None) -> np.ndarray:
    """The area of each left feature's intersections with right features, summed (no piece geometry kept).

    Where right features overlap each other, their common area counts once for each.
    """
    with pool(threads) as p:
        left, right = operand(left, "left", p), operand(right, "right", p)
        li, ri = candidate_pairs(left.geoms, right.geoms, "intersects", _pool=p)
        li, _, _, areas = intersection_pieces(left.geoms, right.geoms, li, ri, p)
    return np.bincount(left.source[li], weights=areas, minlength=len(left.whole))


def operand(geoms: np.ndarray | Parts, side: str, p: Pool) -> Parts:
    """`Parts` as they are; an array, checked, as its own single parts."""
    return geoms if isinstance(geoms, Parts) else whole_parts(checked_polygons(geoms, side, p))


def by_feature(left: Parts, right: Parts, li: np.ndarray, ri: np.ndarray, pieces: np.ndarray,
               p: Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pieces of parts (part indexes, -1 for none) as pieces of features, one per feature pair, sorted.

    The pieces a pair gave in several parts become one: the whole left (or right) feature when their areas sum to
    its own within COVERED_RTOL (it lies in its partner, or nothing covers it), else their union.
    """
    li, ri = _feature_of(left, li), _feature_of(right, ri)
    n, m = len(left.whole), len(right.whole)
    key = np.where(li < 0, n, li) * np.int64(m + 1) + np.where(ri < 0, m, ri)
    if (key[1:] > key[:-1]).all():  # sorted and one piece per pair already (no feature was subdivided)
        return li, ri, pieces
    order = np.argsort(key, kind="stable")
    li, ri, pieces, key = li[order], ri[order], pieces[order], key[order]
    first = np.concatenate([[True], key[1:] != key[:-1]])
    if first.all():
        return li, ri, pieces
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    shared = np.flatnonzero(np.diff(np.append(starts, len(key))) > 1)
    in_shared = np.zeros(len(starts), bool)
    in_shared[shared] = True
    members = np.flatnonzero(in_shared[group])
    total = np.bincount(group[members], weights=shapely.area(pieces[members]), minlength=len(starts))[shared]
    out = pieces[starts]
    undecided = np.ones(len(shared), bool)
    for index, side in ((li[starts[shared]], left), (ri[starts[shared]], right)):
        own = np.full(len(shared), np.nan)
        has = undecided & (index >= 0)
        own[has] = shapely.area(side.whole[index[has]])
        whole = has & (np.abs(total - own) <= COVERED_RTOL * own)
        out[shared[whole]] = side.whole[index[whole]]
        undecided &= ~whole
    unite = np.zeros(len(starts), bool)
    unite[shared[undecided]] = True
    members = members[unite[group[members]]]
    ids, unions = union_groups(pieces[members], group[members], _pool=p)
    out[ids] = unions
    return li[starts], ri[starts], out


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
        parts = p.map_chunks(lambda a, z: robust(shapely.difference, sources[a:z], cover[a:z]), len(ids), 64)
        rest_geoms, keep = polygonal(concat(parts, object), return_index=True)
        rest_index = ids[keep]

    index = concat([whole.astype(np.int64), rest_index.astype(np.int64)], np.int64)
    geoms = concat([source[whole], rest_geoms], object)
    order = np.argsort(index, kind="stable")
    return index[order], geoms[order]


def _feature_of(parts: Parts, index: np.ndarray) -> np.ndarray:
    """The feature each part index belongs to (-1 stays -1)."""
    out = np.full(len(index), -1, np.int64)
    out[index >= 0] = parts.source[index[index >= 0]]
    return out
