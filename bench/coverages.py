"""Generated polygon coverages for benchmarks: Voronoi tessellations clipped to an extent."""

from __future__ import annotations

import numpy as np
import shapely

#: 40 km × 40 km in EPSG:4548 (CGCS2000 / 3-degree Gauss-Kruger CM 117E) coordinates: x easting, y northing.
EXTENT_4548: tuple[float, float, float, float] = (500_000.0, 2_700_000.0, 540_000.0, 2_740_000.0)


def voronoi_coverage(
    n: int, seed: int, extent: tuple[float, float, float, float] = EXTENT_4548
) -> np.ndarray:
    """`n` Voronoi cells of uniformly random seed points (numpy RNG `seed`), clipped to `extent`.

    The cells tile the extent exactly (a coverage: no gaps, no overlaps); returned as an object array of
    Polygons in a random but seed-determined order.
    """
    xmin, ymin, xmax, ymax = extent
    rng = np.random.default_rng(seed)
    points = shapely.multipoints(
        np.column_stack([rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)])
    )
    frame = shapely.box(xmin, ymin, xmax, ymax)
    cells = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=frame))
    inside = shapely.contains_properly(frame, cells)  # most cells: no clipping needed
    cells[~inside] = shapely.intersection(cells[~inside], frame)
    return cells
