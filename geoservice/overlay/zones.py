"""Splitting pieces by zones (districts): each output piece lies in at most one zone."""

from __future__ import annotations

import numpy as np

from geoservice.overlay.engine import overlay


def split_by_zones(pieces: np.ndarray, zones: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(piece_index, zone_index, parts): every piece cut along zone boundaries; zone_index -1 outside all zones.

    Zone parts that no piece covers are not returned. With no zones, pieces come back whole with -1.
    """
    if len(zones) == 0:
        return np.arange(len(pieces), dtype=np.int64), np.full(len(pieces), -1, np.int64), np.asarray(pieces, dtype=object)
    piece_index, zone_index, parts = overlay(pieces, zones, how="union", threads=threads)
    keep = piece_index >= 0
    return piece_index[keep], zone_index[keep], parts[keep]
