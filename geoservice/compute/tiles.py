"""Spatial tiles for a distributed run: a KD split of the extent balanced by feature and vertex count, and the
ownership rule that gives every output piece to exactly one tile.

- `kd_tiles(bounds, vertices, target)`: the plane cut into half-open rectangles (the outer sides at ±infinity, so every
  point of the plane lies in exactly one tile), each holding about `target` weight of feature envelope centres; a
  feature weighs 1/2 + 1/2 × its vertices / the mean vertices (count and vertices count equally).
- `Tile.owns(x, y)`: x0 <= x < x1 and y0 <= y < y1.
- `reference_points(pieces)`: the lower-left corner of each piece's envelope. It lies in the envelope of every feature
  the piece was cut from, so the tile owning it read all of them (a tile reads every feature whose envelope meets it),
  and it is a function of the piece's coordinates alone: a piece computed bit for bit the same in two tiles is owned
  by one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

#: the finite stand-in for an infinite tile side in a database box query (metres; beyond any projected CRS's extent)
FAR = 1e12


@dataclass(frozen=True)
class Tile:
    """A half-open rectangle [x0, x1) × [y0, y1) of the plane (outer sides infinite), its number and its weight."""

    index: int
    x0: float
    y0: float
    x1: float
    y1: float
    weight: float = 0.0
    features: int = 0

    def box(self) -> tuple[float, float, float, float]:
        """The tile as a finite (xmin, ymin, xmax, ymax) for a box query (`&&`: closed, so it holds every owned point)."""
        return (float(max(self.x0, -FAR)), float(max(self.y0, -FAR)), float(min(self.x1, FAR)), float(min(self.y1, FAR)))

    def owns(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which of the points (x, y) lie in this tile."""
        return (self.x0 <= x) & (x < self.x1) & (self.y0 <= y) & (y < self.y1)

    def __str__(self) -> str:
        def side(value: float) -> str:
            return ("-∞" if value < 0 else "∞") if math.isinf(value) else f"{value:,.0f}"
        return f"tile {self.index} [{side(self.x0)}, {side(self.x1)}) × [{side(self.y0)}, {side(self.y1)})"


def reference_points(pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): the lower-left corner of each piece's envelope."""
    bounds = shapely.bounds(pieces)
    return bounds[:, 0], bounds[:, 1]


def owned(tile: Tile, pieces: np.ndarray) -> np.ndarray:
    """Which pieces the tile owns (their reference point lies in it)."""
    if len(pieces) == 0:
        return np.zeros(0, bool)
    return tile.owns(*reference_points(pieces))


def feature_weights(vertices: np.ndarray) -> np.ndarray:
    """Each feature's weight: 1/2 + 1/2 × vertices / mean vertices (the weights sum to the feature count)."""
    vertices = np.asarray(vertices, np.float64)
    if len(vertices) == 0:
        return vertices
    mean = vertices.mean()
    return 0.5 + 0.5 * (vertices / mean if mean > 0 else 1.0)


def kd_tiles(bounds: np.ndarray, vertices: np.ndarray, target: float) -> list[Tile]:
    """Tiles covering the plane, each holding about `target` weight of envelope centres (at least one tile).

    A KD split: a rectangle holding more than `target` is cut across its centres' longer spread at the weighted median
    of the centres along that axis, and each half again. A cut never separates equal centres, so a rectangle whose
    centres all coincide stays whole. The centres are sorted once along each axis; a rectangle keeps its rows in both
    orders, and a cut splits each order by a mask, which keeps it sorted (no sort per rectangle).
    """
    if target <= 0:
        raise ValueError(f"target must be positive, got {target}")
    bounds = np.asarray(bounds, np.float64).reshape(-1, 4)
    centres = tuple((bounds[:, axis] + bounds[:, axis + 2]) / 2 for axis in (0, 1))  # x, y: each contiguous
    weights = feature_weights(vertices)
    done: list[tuple[float, float, float, float, np.ndarray]] = []
    orders = tuple(np.argsort(values, kind="stable") for values in centres)
    work = [(-math.inf, -math.inf, math.inf, math.inf, orders)]
    while work:
        x0, y0, x1, y1, (by_x, by_y) = work.pop()
        total = weights[by_x].sum()
        if total <= target or len(by_x) < 2:
            done.append((x0, y0, x1, y1, by_x))
            continue
        spread = [centres[0][by_x[-1]] - centres[0][by_x[0]], centres[1][by_y[-1]] - centres[1][by_y[0]]]
        axis = int(spread[1] > spread[0])
        sorted_values = centres[axis][(by_x, by_y)[axis]]
        at = int(np.searchsorted(np.cumsum(weights[(by_x, by_y)[axis]]), total / 2))
        # cut between two distinct centres next to the median, so that equal centres stay on one side
        distinct = np.flatnonzero(sorted_values[1:] > sorted_values[:-1])
        if len(distinct) == 0:
            done.append((x0, y0, x1, y1, by_x))
            continue
        k = distinct[np.argmin(np.abs(distinct - at))]
        cut = (sorted_values[k] + sorted_values[k + 1]) / 2
        low = tuple(rows[centres[axis][rows] < cut] for rows in (by_x, by_y))
        high = tuple(rows[centres[axis][rows] >= cut] for rows in (by_x, by_y))
        if axis == 0:
            work += [(cut, y0, x1, y1, high), (x0, y0, cut, y1, low)]
        else:
            work += [(x0, cut, x1, y1, high), (x0, y0, x1, cut, low)]
    done.sort(key=lambda t: (t[1], t[0]))  # numbered from the lower left, row by row
    return [Tile(i, float(x0), float(y0), float(x1), float(y1), round(float(weights[rows].sum()), 3), len(rows))
            for i, (x0, y0, x1, y1, rows) in enumerate(done)]


def grid_tiles(x_cuts: list[float], y_cuts: list[float]) -> list[Tile]:
    """Tiles of a grid cut at the given coordinates (outer sides infinite): for tests that force tiles."""
    xs = [-math.inf, *sorted(x_cuts), math.inf]
    ys = [-math.inf, *sorted(y_cuts), math.inf]
    return [Tile(j * (len(xs) - 1) + i, float(xs[i]), float(ys[j]), float(xs[i + 1]), float(ys[j + 1]))
            for j in range(len(ys) - 1) for i in range(len(xs) - 1)]


def check_cover(tiles: list[Tile]) -> None:
    """ValueError unless the tiles cover the plane without overlapping (their areas, with the infinite sides clipped to
    a large box around the finite cuts, sum to the box's), and are numbered 0…n-1."""
    if sorted(t.index for t in tiles) != list(range(len(tiles))):
        raise ValueError("tiles must be numbered 0 … n-1")
    finite = [v for t in tiles for v in (t.x0, t.y0, t.x1, t.y1) if math.isfinite(v)] or [0.0]
    low, high = min(finite) - 1.0, max(finite) + 1.0
    boxes = [shapely.box(max(t.x0, low), max(t.y0, low), min(t.x1, high), min(t.y1, high)) for t in tiles]
    whole = (high - low) ** 2
    if not math.isclose(sum(b.area for b in boxes), whole, rel_tol=1e-9) or \
            not math.isclose(shapely.union_all(boxes).area, whole, rel_tol=1e-9):
        raise ValueError("tiles must cover the plane without overlapping")
