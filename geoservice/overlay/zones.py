"""Splitting pieces by zones (districts): each output piece lies in at most one zone."""

from __future__ import annotations

import numpy as np

from geoservice.overlay.engine import overlay
from geoservice.overlay.subdivide import Parts, feature_count


def split_by_zones(pieces: np.ndarray, zones: np.ndarray | Parts,
                   threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(piece_index, zone_index, parts): every piece cut along zone boundaries; zone_index -1 outside all zones.

    `zones` may be subdivided (`Parts`, cut once for many splits). Zone parts that no piece covers are not returned.
    With no zones, pieces come back whole with -1.
    """
    if feature_count(zones) == 0:
        return np.arange(len(pieces), dtype=np.int64), np.full(len(pieces), -1, np.int64), np.asarray(pieces, dtype=object)
    return overlay(pieces, zones, how="identity", threads=threads)
