"""The region an incremental run recomputes: grid strips covering the boxes of every feature whose results a change
can alter, and the ownership rule that splits the rows between the run and its base.

Every stored row (a base-map patch, a conflict piece) lies inside the feature it was cut from, so its reference point
(`compute.tiles.reference_points`, the lower-left corner of its envelope) lies in that feature's box. A row that a
change alters was cut from a feature meeting the change, so its reference point lies in the region: the rows of the
base run owned by the region are dropped, the rows recomputed from the features meeting the region (and their
partners) that it owns are added, and every other row is the same in both. Any region covering those boxes gives the
same result; strips of a grid keep the boxes few (one per run of cells in a row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import shapely
from psycopg2 import sql

from geoservice.compute.tiles import reference_points


@dataclass(frozen=True)
class Region:
    """Closed boxes (n, 4: xmin, ymin, xmax, ymax), stored as the temporary table `name` (columns x0, y0, x1, y1 and
    box) of this transaction."""

    boxes: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def relation(self) -> sql.Composable:
        """The table, for a query joining its `box` column."""
        return sql.Identifier(self.name)

    def owns(self, geometries: np.ndarray) -> np.ndarray:
        """Which geometries' reference points lie in a box of the region (boundaries included)."""
        if len(geometries) == 0 or len(self.boxes) == 0:
            return np.zeros(len(geometries), bool)
        x, y = reference_points(geometries)
        tree = shapely.STRtree(shapely.box(*self.boxes.T))
        hits = tree.query(shapely.points(x, y), predicate="intersects")[0]
        owned = np.zeros(len(geometries), bool)
        owned[hits] = True
        return owned

    def area(self) -> float:
        """The region's area (m²)."""
        return float(((self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])).sum())


def grid_strips(boxes: np.ndarray, cell: float | None = None) -> np.ndarray:
    """Boxes covering `boxes`: the cells of a grid (side `cell`, default the median box's larger side) that meet one
    (each box widened by a millionth of a cell against rounding), merged into strips along each row."""
    if len(boxes) == 0:
        return np.empty((0, 4))
    if cell is None:
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cell = float(np.median(sides[sides > 0])) if (sides > 0).any() else 1.0
    margin = cell * 1e-6
    low, high = boxes[:, :2] - margin, boxes[:, 2:] + margin
    origin = low.min(axis=0) - margin
    first = np.floor((low - origin) / cell).astype(np.int64)
    last = np.floor((high - origin) / cell).astype(np.int64)
    width = int(last[:, 0].max()) + 2
    cells = np.unique(np.concatenate([
        j * width + np.arange(i0, i1 + 1) for i0, j0, i1, j1 in np.column_stack([first, last]) for j in range(j0, j1 + 1)]))
    rows, cols = np.divmod(cells, width)
    starts = np.flatnonzero(np.r_[True, (np.diff(cols) != 1) | (np.diff(rows) != 0)])
    ends = np.r_[starts[1:], len(cells)] - 1
    x0, y0 = origin
    return np.column_stack([x0 + cols[starts] * cell, y0 + rows[starts] * cell,
                            x0 + (cols[ends] + 1) * cell, y0 + (rows[starts] + 1) * cell])


def store_region(cur: psycopg2.extensions.cursor, boxes: np.ndarray, srid: int, name: str = "incr_region") -> Region:
    """The region of `boxes` as the temporary table `name` of this transaction (replacing one of that name)."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("pg_temp", name)))
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT x0, y0, x1, y1, ST_MakeEnvelope(x0, y0, x1, y1, %s) "
                        "AS box FROM unnest(%s::float8[], %s::float8[], %s::float8[], %s::float8[]) b (x0, y0, x1, y1)"
                        ).format(sql.Identifier(name)), (srid, *(boxes[:, k].tolist() for k in range(4))))
    cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
    return Region(boxes, name)
