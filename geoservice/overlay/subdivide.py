"""Subdivision of large polygons into parts of bounded vertex count, as PostGIS `ST_Subdivide` does, vectorized.

A polygon with more than `max_vertices` coordinates is cut in two along the middle of its bounding box's longer
side (`shapely.clip_by_rect`, exact on the cut line), and each half again, until every part is small enough: one
vectorized clip per level over all the halves of that level, so the Python loop runs over levels (≤ MAX_DEPTH),
never over polygons or parts. An intersection with a part then costs the part, not the whole polygon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from geoservice.overlay.pieces import checked_polygons, polygonal
from geoservice.overlay.threads import Pool, concat, pool

#: PostGIS ST_Subdivide's default vertex count per part
MAX_VERTICES = 256
#: halvings at most (ST_Subdivide stops at the same depth): a part still too large then is kept as it is
MAX_DEPTH = 50


@dataclass(frozen=True)
class Parts:
    """Polygons and their parts: `geoms[i]` is a part of `whole[source[i]]`.

    The parts of one polygon tile it (no overlaps, areas summing to its area); a polygon small enough is its own
    single part (the same object). Missing and empty polygons have no parts.
    """

    whole: np.ndarray
    geoms: np.ndarray
    source: np.ndarray

    def select(self, rows: np.ndarray) -> Parts:
        """The parts of `whole[rows]`, with `source` counting in `rows` (rows distinct)."""
        position = np.full(len(self.whole), -1, np.int64)
        position[rows] = np.arange(len(rows))
        keep = np.flatnonzero(position[self.source] >= 0)
        return Parts(self.whole[rows], self.geoms[keep], position[self.source[keep]])


def feature_count(operand: np.ndarray | Parts) -> int:
    """How many features an overlay operand holds (`Parts` count their whole polygons)."""
    return len(operand.whole) if isinstance(operand, Parts) else len(operand)


def whole_parts(geoms: np.ndarray) -> Parts:
    """Each geometry its own single part (no subdivision)."""
    return Parts(geoms, geoms, np.arange(len(geoms), dtype=np.int64))


def subdivide(geoms: np.ndarray, max_vertices: int | None = MAX_VERTICES, threads: int | None = None) -> Parts:
    """`geoms` (valid Polygon/MultiPolygon, or missing/empty) as parts of at most `max_vertices` coordinates.

    Only polygons over the limit are cut, into Polygons; halves are clipped on `threads` threads (None: one per CPU).
    With `max_vertices` None nothing is cut: each polygon is its own part. ValueError for geometries `overlay` would
    refuse.
    """
    if max_vertices is not None and max_vertices < 5:
        raise ValueError(f"max_vertices must be at least 5 (a part must hold a quadrilateral), got {max_vertices}")
    with pool(threads) as p:
        return _subdivide(checked_polygons(geoms, "geoms", p), max_vertices, p)


def _subdivide(geoms: np.ndarray, max_vertices: int | None, p: Pool) -> Parts:
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    large = present & (shapely.get_num_coordinates(geoms) > max_vertices) if max_vertices else np.zeros(len(geoms), bool)
    done = [np.flatnonzero(present & ~large)]
    done_geoms = [geoms[done[0]]]
    owner = np.flatnonzero(large)
    work = geoms[owner]
    for _ in range(MAX_DEPTH):
        if len(work) == 0:
            break
        work, owner = _halves(work, owner, p)
        small = shapely.get_num_coordinates(work) <= max_vertices
        done.append(owner[small])
        done_geoms.append(work[small])
        work, owner = work[~small], owner[~small]
    done.append(owner)
    done_geoms.append(work)
    source = concat(done, np.int64)
    parts = concat(done_geoms, object)
    order = np.argsort(source, kind="stable")
    return Parts(geoms, parts[order], source[order])


def _halves(work: np.ndarray, owner: np.ndarray, p: Pool) -> tuple[np.ndarray, np.ndarray]:
    """Both halves of each geometry (cut across the middle of its box's longer side), as Polygons with their owners."""
    xmin, ymin, xmax, ymax = shapely.bounds(work).T
    wide = (xmax - xmin) >= (ymax - ymin)
    pad = np.maximum(xmax - xmin, ymax - ymin)  # the outer sides lie beyond the geometry: only the cut line cuts
    mid = np.where(wide, (xmin + xmax) / 2, (ymin + ymax) / 2)
    low = np.column_stack([xmin - pad, ymin - pad, np.where(wide, mid, xmax + pad), np.where(wide, ymax + pad, mid)])
    high = np.column_stack([np.where(wide, mid, xmin - pad), np.where(wide, ymin - pad, mid), xmax + pad, ymax + pad])
    rects = np.concatenate([low, high])
    sources = np.concatenate([work, work])
    halves = concat(p.map_chunks(lambda a, z: _clip(sources[a:z], rects[a:z]), len(sources), 1), object)
    parts, index = shapely.get_parts(halves, return_index=True)  # a collection's lines and points are dropped next
    parts, kept = polygonal(parts, return_index=True)
    return parts, np.concatenate([owner, owner])[index[kept]]


def _clip(geoms: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """`clip_by_rect` (fast, exact on the rectangle's sides); where its result is not valid, the robust intersection.

    `shapely.lib.clip_by_rect` is the ufunc behind `shapely.clip_by_rect`, whose wrapper accepts one rectangle only.
    """
    out = shapely.lib.clip_by_rect(geoms, *np.ascontiguousarray(rects.T))
    bad = np.flatnonzero(~shapely.is_valid(out))
    if len(bad):
        out[bad] = shapely.intersection(geoms[bad], shapely.box(*rects[bad].T))
    return out
