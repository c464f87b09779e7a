"""Pieces: polygonal parts of GEOS results, pairwise intersection pieces with exact shortcuts, group unions."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from functools import partial

import numpy as np
import shapely

from geoservice.overlay.pairs import private_prepared
from geoservice.overlay.threads import Pool, chunk_bounds, concat, pool

POLYGON, MULTIPOLYGON, GEOMETRYCOLLECTION = 3, 6, 7

#: Pairs sampled (evenly, so deterministically) to decide whether to filter out pairs that merely touch,
#: and the share of such pairs from which that pays (a prepared `touches` costs ~1/5 of an intersection).
TOUCH_SAMPLE = 1000
TOUCH_SHARE = 0.2


def polygonal(geoms: np.ndarray, return_index: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The polygonal part of each geometry, as a Polygon or MultiPolygon; nothing else.

    Polygons and MultiPolygons pass through unchanged; from a GeometryCollection (what GEOS returns
    when polygons also meet in a line or a point) its polygons are kept, one Polygon or a MultiPolygon
    of them. Missing, empty, zero-area and non-polygonal results are dropped, so the output can be
    shorter than the input; with `return_index=True` also return the int64 positions in `geoms` that
    each output geometry came from.
    """
    geoms = np.asarray(geoms, dtype=object)
    types = shapely.get_type_id(geoms)
    keep = np.zeros(len(geoms), dtype=bool)
    plain = np.flatnonzero((types == POLYGON) | (types == MULTIPOLYGON))
    keep[plain] = shapely.area(geoms[plain]) > 0
    mixed = np.flatnonzero(types == GEOMETRYCOLLECTION)
    if len(mixed):
        extracted = _polygonal_parts(geoms[mixed])
        geoms = geoms.copy()
        geoms[mixed] = extracted
        keep[mixed] = ~shapely.is_missing(extracted)
    index = np.flatnonzero(keep)
    out = geoms[index]
    return (out, index.astype(np.int64)) if return_index else out


def _polygonal_parts(collections: np.ndarray) -> np.ndarray:
    """For each collection: its non-degenerate polygons as one (Multi)Polygon, or None when there are none."""
    parts, owner = shapely.get_parts(collections, return_index=True)
    while True:  # flatten nested collections and multipolygons (depth is small: a handful of passes at most)
        types = shapely.get_type_id(parts)
        nested = (types == MULTIPOLYGON) | (types == GEOMETRYCOLLECTION)
        if not nested.any():
            break
        sub, sub_owner = shapely.get_parts(parts[nested], return_index=True)
        parts = np.concatenate([parts[~nested], sub])
        owner = np.concatenate([owner[~nested], owner[nested][sub_owner]])
    types = shapely.get_type_id(parts)
    good = types == POLYGON
    good[good] = shapely.area(parts[good]) > 0
    parts, owner = parts[good], owner[good]
    order = np.argsort(owner, kind="stable")
    parts, owner = parts[order], owner[order]

    result = np.full(len(collections), None, dtype=object)
    owners, start, counts = np.unique(owner, return_index=True, return_counts=True)
    single = counts == 1
    result[owners[single]] = parts[start[single]]
    if not single.all():
        multi = owners[~single]
        take = np.isin(owner, multi)
        dense = np.searchsorted(multi, owner[take])
        result[multi] = shapely.multipolygons(parts[take], indices=dense)
    return result


def union_groups(
    geoms: np.ndarray, groups: np.ndarray, threads: int | None = None, *, _pool: Pool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Union of `geoms` per group id: (sorted distinct group ids, their unions).

    Vectorized over groups: groups are bucketed by size (powers of two) and each bucket is one
    `shapely.union_all(matrix, axis=1)` over a None-padded matrix (padding at most doubles it), rows
    split over `threads` (None: one per CPU); a group of one is its member unchanged. The Python loop
    runs over buckets (≤ 64), never over groups.
    """
    geoms = np.asarray(geoms, dtype=object)
    groups = np.asarray(groups)
    if _pool is None:
        with pool(threads) as p:
            return _union_groups(geoms, groups, p)
    return _union_groups(geoms, groups, _pool)


#: grid (working-CRS units: 1 mm) of the snap-rounding overlay used where GEOS's floating-point overlay fails
ROBUST_GRID = 1e-3


def robust(operation: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """`operation(*arrays)` (a vectorized Shapely set operation); the elements GEOS cannot node in floating point
    (a TopologyException, met with nearly coincident edges in real data) are computed again with snap rounding on a
    1 mm grid (`grid_size=ROBUST_GRID`), which OverlayNG nodes robustly.

    A failing call is halved until the failing elements are isolated: about 2·log2(n) more calls per failing
    element, no loop over elements.
    """
    try:
        return operation(*arrays)
    except shapely.errors.GEOSException:
        if len(arrays[0]) <= 1:
            return operation(*arrays, grid_size=ROBUST_GRID)
        half = len(arrays[0]) // 2
        return np.concatenate([robust(operation, *(a[:half] for a in arrays)),
                               robust(operation, *(a[half:] for a in arrays))])


def _union_rows(matrix: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The union of each row of `matrix[start:stop]` (None-padded), robustly."""
    return robust(partial(shapely.union_all, axis=1), matrix[start:stop])


def _union_groups(geoms: np.ndarray, groups: np.ndarray, p: Pool) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(groups, kind="stable")
    geoms, groups = geoms[order], groups[order]
    ids, start, counts = np.unique(groups, return_index=True, return_counts=True)
    out = np.empty(len(ids), dtype=object)
    single = counts == 1
    out[single] = geoms[start[single]]
    rank = np.arange(len(groups)) - np.repeat(start, counts)
    member_group = np.repeat(np.arange(len(ids)), counts)
    bucket = np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    for b in np.unique(bucket[~single]):
        rows = np.flatnonzero((bucket == b) & ~single)
        width = int(counts[rows].max())
        row_of = np.full(len(ids), -1, dtype=np.int64)
        row_of[rows] = np.arange(len(rows))
        members = np.flatnonzero(row_of[member_group] >= 0)
        matrix = np.full((len(rows), width), None, dtype=object)
        matrix[row_of[member_group[members]], rank[members]] = geoms[members]
        parts = p.map_chunks(partial(_union_rows, matrix), len(rows), min_chunk=64)
        out[rows] = concat(parts, object)
    return ids, out


def intersection_pieces(
    left: np.ndarray, right: np.ndarray, li: np.ndarray, ri: np.ndarray, p: Pool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Polygonal intersection pieces of the candidate pairs (li, ri): (li, ri, pieces, areas), in pair order.

    Pairs whose intersection has no area are dropped; only Polygon/MultiPolygon pieces come out.
    Where one envelope holds the other, exact shortcuts come first: an exact duplicate, or a geometry
    the other contains, is its own piece (the input object itself). When an even sample says many
    pairs merely touch (shared boundaries), a prepared `touches` filter skips those. The rest is
    `shapely.intersection`. Everything runs in chunks of pairs on the pool.
    """
    n = len(li)
    if n == 0:
        return li, ri, np.empty(0, dtype=object), np.empty(0, dtype=np.float64)
    lb = concat(p.map_chunks(lambda a, z: shapely.bounds(left[a:z]), len(left), 4096), np.float64)
    rb = concat(p.map_chunks(lambda a, z: shapely.bounds(right[a:z]), len(right), 4096), np.float64)

    def nested_envelopes(a: int, z: int) -> tuple[np.ndarray, np.ndarray]:
        bl, br = lb[li[a:z]], rb[ri[a:z]]
        r_in_l = np.all(bl[:, :2] <= br[:, :2], axis=1) & np.all(bl[:, 2:] >= br[:, 2:], axis=1)
        l_in_r = np.all(br[:, :2] <= bl[:, :2], axis=1) & np.all(br[:, 2:] >= bl[:, 2:], axis=1)
        return r_in_l, l_in_r

    parts = p.map_chunks(nested_envelopes, n, min_chunk=4096)
    r_in_l = concat([a for a, _ in parts], bool)
    l_in_r = concat([b for _, b in parts], bool)
    plain = np.flatnonzero(~(r_in_l | l_in_r))
    right_inside = np.flatnonzero(r_in_l)  # includes equal envelopes; ascending li: grouped by container
    left_inside = np.flatnonzero(l_in_r & ~r_in_l)
    left_inside = left_inside[np.argsort(ri[left_inside], kind="stable")]  # grouped by container

    def submit_chunks(fn, positions: np.ndarray, *args) -> list[Future]:
        return [p.submit(fn, positions[a:z], *args) for a, z in chunk_bounds(len(positions), p.threads)]

    # Queue: the touching sample and the containment checks, then the plain intersections; once the
    # checks are in, the intersections of what they did not settle.
    drop_touching = p.submit(_touching_is_common, left, li, right, ri, plain)
    checks = submit_chunks(_contained, right_inside, left, li, right, ri)
    checks += submit_chunks(_contained, left_inside, right, ri, left, li)

    def cut(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if drop_touching.result():
            positions = positions[~_touching(left, li, right, ri, positions)]
        geoms = robust(shapely.intersection, left[li[positions]], right[ri[positions]])
        geoms, keep, areas = _polygonal_with_area(geoms)
        return positions[keep], geoms, areas

    cuts = submit_chunks(cut, plain)
    settled = [f.result() for f in checks]
    undecided = r_in_l | l_in_r
    for positions, _ in settled:
        undecided[positions] = False
    cuts += submit_chunks(cut, np.flatnonzero(undecided))
    results = [f.result() for f in cuts]

    settled_geoms = concat([g for _, g in settled], object)
    positions = concat([pos for pos, _ in settled] + [r[0] for r in results], np.int64)
    geoms = concat([settled_geoms] + [r[1] for r in results], object)
    areas = concat([shapely.area(settled_geoms)] + [r[2] for r in results], np.float64)
    del settled, settled_geoms, results, cuts, checks  # at 1M × 1M every extra copy of these is ~100 MB
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    return li[positions], ri[positions], geoms[order], areas[order]


def _touching(left: np.ndarray, li: np.ndarray, right: np.ndarray, ri: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For the pairs at `positions`: do they only touch (interiors disjoint), so have no piece?"""
    return shapely.touches(private_prepared(left, li[positions]), right[ri[positions]])


def _touching_is_common(left: np.ndarray, li: np.ndarray, right: np.ndarray, ri: np.ndarray, plain: np.ndarray) -> bool:
    """Do at least TOUCH_SHARE of an even sample of the pairs at `plain` only touch?"""
    sample = np.unique(plain[np.linspace(0, len(plain) - 1, min(len(plain), TOUCH_SAMPLE)).astype(np.int64)])
    return len(sample) > 0 and bool(_touching(left, li, right, ri, sample).mean() >= TOUCH_SHARE)


def _polygonal_with_area(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """polygonal(geoms, return_index=True) plus the kept geometries' areas (computed once)."""
    types = shapely.get_type_id(geoms)
    if (types == GEOMETRYCOLLECTION).any():
        out, keep = polygonal(geoms, return_index=True)
        return out, keep, shapely.area(out)
    areas = shapely.area(geoms)
    keep = np.flatnonzero(((types == POLYGON) | (types == MULTIPOLYGON)) & (areas > 0))
    return geoms[keep], keep, areas[keep]


def _contained(
    positions: np.ndarray,
    outer: np.ndarray,
    outer_index: np.ndarray,
    inner: np.ndarray,
    inner_index: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Of the pairs at `positions`, those whose outer geometry contains the inner one: (positions, inner).

    The piece of such a pair is exactly the inner geometry. Exact duplicates are found first by
    coordinates; the outer geometries are prepared as private copies.
    """
    outer_at, inner_at = outer_index[positions], inner_index[positions]
    a, b = outer[outer_at], inner[inner_at]
    found = np.zeros(len(positions), dtype=bool)
    same_box = np.flatnonzero(np.all(shapely.bounds(a) == shapely.bounds(b), axis=1))
    found[same_box] = shapely.equals_exact(a[same_box], b[same_box], tolerance=0.0)
    rest = np.flatnonzero(~found)
    if len(rest):
        found[rest] = shapely.contains(private_prepared(outer, outer_at[rest]), b[rest])
    return positions[found], b[found]


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
