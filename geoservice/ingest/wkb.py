"""Vectorized WKB work for the common case: 2D little-endian Polygons and MultiPolygons, parsed with NumPy.

The rows GDAL hands over are WKB. For the plain polygonal ones this module finds every ring and coordinate without
building a GEOS geometry, so the loader can reproject the coordinate array and write the new coordinates back into
the same bytes: the WKB structure does not change under reprojection. Everything else (Z/M, big-endian, empty parts,
collections, curves, unclosed or short rings, unreadable bytes, NaN) is left to the Shapely path, row by row in
effect: `Polygonal.fast` says which rows were taken here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

WKB_POLYGON, WKB_MULTIPOLYGON = 3, 6
#: rows with more rings than this (parts count as rings) go the Shapely way: one NumPy pass per ring
MAX_RINGS = 4096


@dataclass
class Polygonal:
    """The plain polygonal rows of a WKB array, as ragged MultiPolygon arrays (Shapely's from_ragged_array layout).

    `fast` and `multi` are per input row; `coords` (x, y), `positions` (byte offset of each coordinate's x in
    `values`), `ring_offsets`, `part_offsets`, `row_offsets` and `shell` (per ring: a part's exterior) cover the
    fast rows only, in row order.
    """

    values: np.ndarray
    offsets: np.ndarray
    fast: np.ndarray
    multi: np.ndarray
    coords: np.ndarray
    positions: np.ndarray
    ring_offsets: np.ndarray
    part_offsets: np.ndarray
    row_offsets: np.ndarray
    shell: np.ndarray

    def row_slices(self, start: int, stop: int, coords: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Coordinates (of `coords`, default self.coords) and rebased offsets of fast rows [start, stop) (counted among
        fast rows), for shapely.from_ragged_array(MULTIPOLYGON, ...)."""
        parts = self.row_offsets[start:stop + 1]
        rings = self.part_offsets[parts[0]:parts[-1] + 1]
        points = self.ring_offsets[rings[0]:rings[-1] + 1]
        source = self.coords if coords is None else coords
        return source[points[0]:points[-1]], (points - points[0], rings - rings[0], parts - parts[0])

    def coordinate_rows(self) -> np.ndarray:
        """The fast-row number (0-based among fast rows) of every coordinate."""
        per_row = np.diff(self.ring_offsets[self.part_offsets[self.row_offsets]])
        return np.repeat(np.arange(len(per_row)), per_row)

    def shell_bounds(self) -> np.ndarray:
        """(xmin, ymin, xmax, ymax) per fast row over the exterior rings, as GEOS envelopes (and shapely.bounds) are."""
        rows = len(self.row_offsets) - 1
        if rows == 0:
            return np.empty((0, 4))
        shells = self.ring_offsets[:-1][self.shell]  # first coordinate of each part's exterior ring
        ends = self.ring_offsets[1:][self.shell]
        x, y = self.coords[:, 0], self.coords[:, 1]
        starts = np.column_stack([shells, ends]).ravel()  # reduceat over [start, end) pairs, every other result kept
        if starts[-1] == len(x):
            starts = starts[:-1]
        box = np.column_stack([np.minimum.reduceat(x, starts)[::2], np.minimum.reduceat(y, starts)[::2],
                               np.maximum.reduceat(x, starts)[::2], np.maximum.reduceat(y, starts)[::2]])
        if len(box) == rows:  # one part per row
            return box
        first = self.row_offsets[:-1]  # parts per row -> shell rings per row (one shell per part)
        return np.column_stack([np.minimum.reduceat(box[:, 0], first), np.minimum.reduceat(box[:, 1], first),
                                np.maximum.reduceat(box[:, 2], first), np.maximum.reduceat(box[:, 3], first)])

    def patched(self, coords: np.ndarray) -> np.ndarray:
        """A copy of `values` with the fast rows' coordinates replaced by `coords` (same order as self.coords)."""
        out = self.values.copy()
        _write_xy(out, self.positions, coords)
        return out


def _windows(values: np.ndarray, width: int) -> np.ndarray:
    """Every `width`-byte window of `values` (row i = bytes i..i+width-1): a view, so one fancy index gathers
    numbers at any alignment."""
    return np.lib.stride_tricks.as_strided(values, shape=(max(len(values) - width + 1, 0), width), strides=(1, 1),
                                           writeable=values.flags.writeable)


def _u32(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Little-endian uint32 at byte positions `at` (any alignment), as int64."""
    return np.ascontiguousarray(_windows(values, 4)[at]).view("<u4")[:, 0].astype(np.int64)


def _read_xy(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(x, y) little-endian float64 pairs at byte positions `at` (any alignment)."""
    return np.ascontiguousarray(_windows(values, 16)[at]).view("<f8")


def _write_xy(values: np.ndarray, at: np.ndarray, coords: np.ndarray) -> None:
    _windows(values, 16)[at] = np.ascontiguousarray(coords, dtype="<f8").view(np.uint8).reshape(-1, 16)


def wkb_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as uint8, int64 row offsets into them, null mask) of an Arrow binary array, without copying values."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    count = len(array)
    wide = pa.types.is_large_binary(array.type)
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], np.int64 if wide else np.int32, count + 1, array.offset * (8 if wide else 4))
    values = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    null = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else np.zeros(count, bool)
    return values, offsets.astype(np.int64), null


def parse_polygonal(array: pa.Array) -> Polygonal:
    """Find the plain Polygon/MultiPolygon rows of a WKB array and every ring and coordinate in them."""
    values, offsets, null = wkb_buffers(array)
    count = len(offsets) - 1
    start, end = offsets[:-1], offsets[1:]
    fast = ~null & (end - start >= 9)
    candidates = np.flatnonzero(fast)
    kind = np.zeros(count, np.int64)
    kind[candidates] = np.where(values[start[candidates]] == 1, _u32(values, start[candidates] + 1), -1)
    fast &= (kind == WKB_POLYGON) | (kind == WKB_MULTIPOLYGON)
    multi = fast & (kind == WKB_MULTIPOLYGON)

    # the walk: each step reads, for every row still active, one ring (after its part's header when a part starts)
    active = np.flatnonzero(fast)
    cursor = start[active].copy()
    parts_left = np.ones(len(active), np.int64)
    is_multi = multi[active]
    enough = ~is_multi | (end[active] - cursor >= 13)
    parts_left[is_multi & enough] = _u32(values, cursor[is_multi & enough] + 5)
    cursor[is_multi] += 9
    rings_left = np.zeros(len(active), np.int64)
    bad = (~enough) | (parts_left < 1)
    ring_row, ring_start, ring_points, ring_shell = [], [], [], []
    steps = 0
    while len(active):
        steps += 1
        row_end = end[active]
        header = (rings_left == 0) & ~bad
        at = cursor[header]
        ok = row_end[header] - at >= 13
        good = np.zeros(len(at), bool)
        good[ok] = (values[at[ok]] == 1) & (_u32(values, at[ok] + 1) == WKB_POLYGON)
        rings = np.zeros(len(at), np.int64)
        rings[good] = _u32(values, at[good] + 5)
        good &= rings >= 1
        bad[np.flatnonzero(header)[~good]] = True
        rings_left[header] = rings
        parts_left[header] -= 1
        cursor[header] += 9
        reading = ~bad
        at = cursor[reading]
        ok = row_end[reading] - at >= 4
        points = np.zeros(len(at), np.int64)
        points[ok] = _u32(values, at[ok])
        ok &= (points >= 4) & (row_end[reading] - at - 4 >= 16 * points)
        ring_row.append(active[reading][ok])
        ring_start.append(at[ok] + 4)
        ring_points.append(points[ok])
        ring_shell.append(header[reading][ok])
        bad[np.flatnonzero(reading)[~ok]] = True
        cursor[reading] = at + 4 + 16 * points
        rings_left[reading] -= 1
        done = ~bad & (rings_left == 0) & (parts_left == 0)
        bad |= done & (cursor != row_end)
        if steps >= MAX_RINGS:
            bad |= ~done
        fast[active[bad]] = False
        keep = ~done & ~bad
        active, cursor, parts_left, rings_left, bad = active[keep], cursor[keep], parts_left[keep], rings_left[keep], bad[keep]

    rows = np.concatenate(ring_row) if ring_row else np.zeros(0, np.int64)
    firsts = np.concatenate(ring_start) if ring_start else np.zeros(0, np.int64)
    points = np.concatenate(ring_points) if ring_points else np.zeros(0, np.int64)
    shell = np.concatenate(ring_shell) if ring_shell else np.zeros(0, bool)
    order = np.argsort(rows, kind="stable")  # rings were found step by step: put each row's rings together, in order
    rows, firsts, points, shell = rows[order], firsts[order], points[order], shell[order]
    ring_first = np.cumsum(points) - points  # index of each ring's first coordinate
    positions = np.repeat(firsts - 16 * ring_first, points) + 16 * np.arange(points.sum())
    coords = _read_xy(values, positions)

    # closed rings of finite coordinates only: GEOS would refuse, or Shapely would close, the others
    ring_last = ring_first + points - 1
    ring_ok = (coords[ring_first, 0] == coords[ring_last, 0]) & (coords[ring_first, 1] == coords[ring_last, 1])
    finite = np.isfinite(coords[:, 0] + coords[:, 1])  # a sum that overflows only sends the row the slow way
    if not finite.all():
        ring_ok &= np.logical_and.reduceat(finite, ring_first)
    fast[rows[~ring_ok]] = False
    keep_ring = fast[rows]
    keep_coord = np.repeat(keep_ring, points)
    rows, points, shell = rows[keep_ring], points[keep_ring], shell[keep_ring]
    coords, positions = coords[keep_coord], positions[keep_coord]
    multi &= fast

    part_start = np.flatnonzero(shell)
    row_index = np.cumsum(fast) - 1  # input row -> fast-row number
    part_rows = row_index[rows[part_start]]
    return Polygonal(
        values=values, offsets=offsets, fast=fast, multi=multi, coords=coords, positions=positions,
        ring_offsets=np.r_[0, np.cumsum(points)], part_offsets=np.r_[part_start, len(rows)],
        row_offsets=np.r_[0, np.cumsum(np.bincount(part_rows, minlength=int(fast.sum())))], shell=shell,
    )


#: rings with more segments than this are left to GEOS (the pairwise test grows with the square of the segments)
MAX_SIMPLE_SEGMENTS = 16
#: Shewchuk's bound on the rounding error of a 2D orientation determinant, ccwerrboundA = (3 + 16ε)ε, ε = 2⁻⁵³,
#: rounded up generously: a determinant larger than this times (|left| + |right|) has the sign it shows
ORIENTATION_ERROR = 4e-16


def _certain_sign(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The sign of left - right where floating point proves it (+1, -1), else 0 (unsure, or zero)."""
    det = left - right
    bound = ORIENTATION_ERROR * (np.abs(left) + np.abs(right))
    return (det > bound).astype(np.int8) - (det < -bound).astype(np.int8)


def _side(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Which side of the line a -> b the point c lies on, where proven (+1 left, -1 right), else 0."""
    return _certain_sign((bx - ax) * (cy - ay), (by - ay) * (cx - ax))


def _simple_rings(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For rings of equal size as (rings, segments + 1) closed coordinate arrays: does each ring provably not touch
    itself, without degenerate vertices?

    Every vertex must be a certain turn (no repeated points, no straight or backtracking vertices). A ring turning
    the same way at every vertex and once around in all is convex, hence simple; any other ring must show every two
    non-adjacent segments certainly apart: their boxes apart, or one segment's ends certainly on one side of the
    other's line.
    """
    dx, dy = np.diff(x, axis=1), np.diff(y, axis=1)  # segment vectors
    before_x, before_y = np.roll(dx, 1, axis=1), np.roll(dy, 1, axis=1)  # the segment into each vertex
    turns = _certain_sign(before_x * dy, before_y * dx)  # relative to the vertex itself: Shewchuk's form
    ok = (turns != 0).all(axis=1)
    left, right = (turns == 1).all(axis=1), (turns == -1).all(axis=1)
    same_way = ok & (left | right)
    if same_way.any():
        # Turning by less than π at each vertex, the direction passes angle 0 once per turn around: count the steps
        # from the lower half-plane of directions [π, 2π) into the upper [0, π) (the other way when turning right).
        # Signs of coordinate differences are exact, so the count is.
        upper = (dy > 0) | ((dy == 0) & (dx > 0))
        before_upper = np.roll(upper, 1, axis=1)
        crossings = np.where(left, (~before_upper & upper).sum(axis=1), (before_upper & ~upper).sum(axis=1))
        same_way &= crossings == 1
    result = same_way.copy()
    rest = np.flatnonzero(ok & ~same_way)
    segments = x.shape[1] - 1
    i, j = np.triu_indices(segments, 2)
    keep = ~((i == 0) & (j == segments - 1))  # the first and last segments meet at the closing vertex
    i, j = i[keep], j[keep]
    if len(rest) and len(i):
        x, y = x[rest], y[rest]
        ax, ay, bx, by = x[:, i], y[:, i], x[:, i + 1], y[:, i + 1]
        cx, cy, ex, ey = x[:, j], y[:, j], x[:, j + 1], y[:, j + 1]
        apart = ((np.maximum(ax, bx) < np.minimum(cx, ex)) | (np.maximum(cx, ex) < np.minimum(ax, bx))
                 | (np.maximum(ay, by) < np.minimum(cy, ey)) | (np.maximum(cy, ey) < np.minimum(ay, by)))
        apart |= (_side(ax, ay, bx, by, cx, cy) * _side(ax, ay, bx, by, ex, ey)) == 1
        apart |= (_side(cx, cy, ex, ey, ax, ay) * _side(cx, cy, ex, ey, bx, by)) == 1
        result[rest] = apart.all(axis=1)
    return result


def certainly_valid(coords: np.ndarray, ring_offsets: np.ndarray, part_offsets: np.ndarray,
                    row_offsets: np.ndarray) -> np.ndarray:
    """Per row of a ragged MultiPolygon array: is it provably a valid (Multi)Polygon without asking GEOS?

    Only one-part, one-ring rows of at most MAX_SIMPLE_SEGMENTS segments are judged: such a polygon is valid exactly
    when its closed ring of finite coordinates is simple and not degenerate, and the test here proves that with
    error-bounded orientation signs (exact where it says yes). False means "ask GEOS", not "invalid".
    """
    rows = len(row_offsets) - 1
    out = np.zeros(rows, bool)
    one_ring = (np.diff(row_offsets) == 1) & (np.diff(part_offsets[row_offsets]) == 1)
    candidates = np.flatnonzero(one_ring)
    first = ring_offsets[part_offsets[row_offsets[candidates]]]
    points = ring_offsets[part_offsets[row_offsets[candidates]] + 1] - first
    for size in np.unique(points[(points >= 4) & (points <= MAX_SIMPLE_SEGMENTS + 1)]).tolist():
        picked = points == size
        index = first[picked][:, None] + np.arange(size)
        out[candidates[picked]] = _simple_rings(coords[index, 0], coords[index, 1])
    return out


def ragged_subset(coords: np.ndarray, offsets: tuple[np.ndarray, np.ndarray, np.ndarray], picked: np.ndarray,
                  ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The rows `picked` (a mask) of a ragged MultiPolygon array (coords, (ring, part, row offsets))."""
    rings, parts, rows = offsets
    part_mask = np.repeat(picked, np.diff(rows))
    ring_mask = np.repeat(part_mask, np.diff(parts))
    coord_mask = np.repeat(ring_mask, np.diff(rings))

    def counts(mask: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        return np.r_[0, np.cumsum(sizes[mask])]

    return coords[coord_mask], (counts(ring_mask, np.diff(rings)), counts(part_mask, np.diff(parts)),
                                counts(picked, np.diff(rows)))
