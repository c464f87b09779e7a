"""The vectorized overlay engine: pure geometry on NumPy arrays of Shapely polygons (no database, no stage).

- `overlay(left, right, how, threads)`: intersection or union pieces with their left/right indexes.
- `candidate_pairs(left, right, predicate)`: STRtree bulk query, sorted index pairs.
- `polygonal(geoms)`: the Polygon/MultiPolygon part of GEOS results, degenerate ones dropped.
"""

from geoservice.overlay.engine import overlay
from geoservice.overlay.pairs import candidate_pairs
from geoservice.overlay.pieces import polygonal, union_groups

__all__ = ["candidate_pairs", "overlay", "polygonal", "union_groups"]
