"""How a stage's geometry work is executed: in-process threads (`overlay.threads`, the default), or spatial tiles on
Dask distributed (`compute.tiles` for the KD partition and the ownership rule, `compute.dask_run` for the client and
the frame of a tile task). `dask_run` imports Dask, so only a run with a scheduler loads it."""

from geoservice.compute.tiles import Tile, grid_tiles, kd_tiles, owned, reference_points

__all__ = ["Tile", "grid_tiles", "kd_tiles", "owned", "reference_points"]
