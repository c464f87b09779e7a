"""The vectorized overlay engine: pure geometry on NumPy arrays of Shapely polygons (no database, no stage).

- `overlay(left, right, how, threads)`: intersection, identity, union or difference pieces with their left/right indexes.
- `intersection_areas(left, right, threads)`: each left feature's area inside right features, without the pieces.
- `subdivide(geoms, max_vertices, threads)`: large polygons cut into `Parts` of bounded vertex count, for either side.
- `candidate_pairs(left, right, predicate)`: STRtree bulk query, sorted index pairs.
- `polygonal(geoms)`: the Polygon/MultiPolygon part of GEOS results, degenerate ones dropped.
"""

from geoservice.overlay.engine import intersection_areas, overlay
from geoservice.overlay.pairs import candidate_pairs
from geoservice.overlay.pieces import polygonal, union_groups
from geoservice.overlay.subdivide import MAX_VERTICES, Parts, subdivide

__all__ = ["MAX_VERTICES", "Parts", "candidate_pairs", "intersection_areas", "overlay", "polygonal", "subdivide",
           "union_groups"]
