"""Candidate pairs: one STRtree bulk query, split over threads, sorted by (left, right)."""

from __future__ import annotations

import numpy as np
import shapely

from geoservice.overlay.threads import Pool, concat, pool

#: predicates and their converse (predicate(a, b) == converse(b, a)), for a query from the other side
CONVERSE = {None: None, "intersects": "intersects", "overlaps": "overlaps", "crosses": "crosses", "touches": "touches",
            "within": "contains", "contains": "within", "covers": "covered_by", "covered_by": "covers"}
#: with this many times fewer right geometries than left ones (large polygons or their parts against many small
#: pieces), the tree holds the left side and each right geometry is prepared once for all its candidates
REVERSE_RATIO = 4


def candidate_pairs(
    left: np.ndarray,
    right: np.ndarray,
    predicate: str | None = "intersects",
    threads: int | None = None,
    *,
    _pool: Pool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (li, ri) with `predicate(left[li], right[ri])` true, sorted by (li, ri).

    One `shapely.STRtree(right)` is queried with chunks of `left` on `threads` threads (None: one per
    CPU) — or, when `right` has REVERSE_RATIO times fewer geometries, a tree of `left` with chunks of
    `right` (the converse predicate): a query geometry is prepared once for all its candidates, so the
    few large ones should be the queries. `predicate` is a binary predicate `STRtree.query` knows
    (intersects, within, contains, overlaps, crosses, touches, covers, covered_by, contains_properly),
    or None for envelope overlap only. Missing and empty geometries take part in no pair. Returns two
    int64 arrays.
    """
    left = np.asarray(left, dtype=object)
    right = np.asarray(right, dtype=object)
    if _pool is None:
        with pool(threads) as p:
            return _candidate_pairs(left, right, predicate, p)
    return _candidate_pairs(left, right, predicate, _pool)


def _candidate_pairs(left: np.ndarray, right: np.ndarray, predicate: str | None, p: Pool) -> tuple[np.ndarray, np.ndarray]:
    if len(left) == 0 or len(right) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if len(right) * REVERSE_RATIO <= len(left) and predicate in CONVERSE:
        ri, li = _query(right, left, CONVERSE[predicate], p, min_chunk=1)
        order = np.argsort(li * np.int64(len(right)) + ri, kind="stable")
        return li[order], ri[order]
    return _query(left, right, predicate, p, min_chunk=256)


def _query(queries: np.ndarray, tree_geoms: np.ndarray, predicate: str | None, p: Pool,
           min_chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query index, tree index), sorted, from chunks of `queries` run on the pool against one tree."""
    tree = shapely.STRtree(tree_geoms)
    shared = shares_prepared(queries)
    parts = p.map_chunks(lambda a, z: query_pairs(tree, tree_geoms, queries[a:z], a, predicate, shared),
                         len(queries), min_chunk)
    return concat([a for a, _ in parts], np.int64), concat([b for _, b in parts], np.int64)


def shares_prepared(geoms: np.ndarray) -> bool:
    """Has the caller prepared any of `geoms`? Those prepared geometries must not be used from two threads."""
    return bool(shapely.is_prepared(geoms).any())


def query_pairs(
    tree: shapely.STRtree,
    tree_geoms: np.ndarray,
    geoms: np.ndarray,
    offset: int,
    predicate: str | None,
    shared_prepared: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (offset + i, j) with `predicate(geoms[i], tree_geoms[j])`, sorted, as int64 arrays.

    Safe to call from several threads at once: `STRtree.query` prepares unprepared query geometries
    per call, but uses a geometry the caller prepared as it is — and GEOS prepared geometries are not
    thread-safe (libgeos/geos#825). With `shared_prepared` the predicate is therefore evaluated on
    private prepared copies instead.
    """
    if predicate is not None and shared_prepared:
        li, ri = tree.query(geoms)
        test = getattr(shapely, predicate)
        keep = test(private_prepared(geoms, li), tree_geoms[ri])
        li, ri = li[keep], ri[keep]
    else:
        li, ri = tree.query(geoms, predicate=predicate)
    li = li.astype(np.int64)
    ri = ri.astype(np.int64)
    # li comes out ascending; order each query geometry's partners by index too (one key sort).
    order = np.argsort(li * np.int64(len(tree_geoms)) + ri, kind="stable")
    return li[order] + offset, ri[order]


def private_prepared(geoms: np.ndarray, index: np.ndarray) -> np.ndarray:
    """geoms[index] as prepared copies private to the caller, one copy per distinct index.

    Preparing copies keeps every prepared geometry on one thread (GEOS prepared geometries are not
    thread-safe) and leaves the callers' objects as they were.
    """
    distinct, which = np.unique(index, return_inverse=True)
    copies = shapely.force_2d(geoms[distinct])
    shapely.prepare(copies)
    return copies[which]
