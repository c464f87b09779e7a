"""Hazard exposure: how much planned land lies under a hazard grid above a threshold, by district and land class.

A registered raster (settings `rasters`) is the server's own and may be any GDAL raster; any other file came from
someone else and is opened as an untrusted GeoTIFF (see geoservice.raster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from pyproj import CRS

from geoservice.classes import is_construction
from geoservice.db.read import current_rows_sql
from geoservice.queries.points import QueryError, cached_transformer
from geoservice.raster import RasterError, Untrusted, open_raster, zonal_sums
from geoservice.settings import Settings

PATCHES_SQL = f"""
SELECT p.id, p.land_code, p.plan_code, p.district_code, p.district_name, p.area_m2, ST_AsBinary(p.geom),
       lc.name_zh, pc.name_zh
FROM geoservice.basemap_patch p
LEFT JOIN geoservice.land_class lc ON lc.code = p.land_code
LEFT JOIN geoservice.land_class pc ON pc.code = p.plan_code
WHERE {current_rows_sql("integration", "p")}
  AND p.geom && ST_MakeEnvelope(%s, %s, %s, %s, %s)
ORDER BY p.id
"""


def raster_source(settings: Settings, raster: str | Path) -> tuple[Path, Untrusted | None]:
    """A registered raster's path (trusted), or a file's path with the rules for an untrusted raster."""
    registered = settings.rasters.get(str(raster))
    path = settings.path(registered.path) if registered else Path(raster)
    if not path.exists():
        known = ", ".join(settings.rasters) or "none"
        raise QueryError(f"no raster {str(raster)!r}: not a registered name ({known}) nor an existing file")
    return path, None if registered else Untrusted(settings.server.max_raster_cells)


def footprint(settings: Settings, path: Path, untrusted: Untrusted | None) -> tuple[float, float, float, float]:
    """The raster's bounds in the working CRS (its corners and edges taken across)."""
    with open_raster(path, untrusted) as dataset:
        if dataset.crs is None:
            raise QueryError(f"{path.name}: the raster has no CRS")
        left, bottom, right, top = dataset.bounds
        crs = CRS.from_user_input(dataset.crs)
    edge = np.linspace(0.0, 1.0, 33)
    xs = np.concatenate([left + (right - left) * edge, np.full(33, right), left + (right - left) * edge, np.full(33, left)])
    ys = np.concatenate([np.full(33, bottom), bottom + (top - bottom) * edge, np.full(33, top), bottom + (top - bottom) * edge])
    x, y = cached_transformer(crs.to_wkt(), settings.working_crs).transform(xs, ys)
    x, y = np.asarray(x), np.asarray(y)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise QueryError(f"{path.name}: its extent cannot be taken to {settings.working_crs}")
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def _group(keys: list[tuple], exposed: np.ndarray, areas: np.ndarray) -> list[dict[str, Any]]:
    """Exposed and total area per key (vectorized groupby), most exposed first."""
    frame = pd.DataFrame({"key": pd.Series(keys, dtype=object), "exposed": exposed, "area": areas})
    totals = frame.groupby("key", sort=False, dropna=False)[["exposed", "area"]].sum()
    totals = totals.sort_values("exposed", ascending=False, kind="stable")
    return [{"key": key, "exposed_m2": e, "exposed_ha": e / 1e4, "area_m2": a, "share": e / a if a else 0.0}
            for key, e, a in zip(totals.index, totals["exposed"].tolist(), totals["area"].tolist())]


def hazard_exposure(cur: psycopg2.extensions.cursor, settings: Settings, raster: str | Path, threshold: float,
                    band: int | None = None) -> dict[str, Any]:
    """Exposed area (cells above `threshold`, true m²) per district and per unified land class, and the exposed
    planned-construction patches, over the current base map. `band`: the raster's band (default: a registered
    raster's configured band, else 1)."""
    path, untrusted = raster_source(settings, raster)
    registered = settings.rasters.get(str(raster))
    band = band or (registered.band if registered else 1)
    try:
        box = footprint(settings, path, untrusted)
        cur.execute(PATCHES_SQL, (*box, settings.working_srid))
        rows = cur.fetchall()
        if not rows:
            raise QueryError(f"{path.name} does not overlap the base map")
        ids, land, plan, dcode, dname, areas, wkb, land_name, plan_name = (list(column) for column in zip(*rows))
        geometries = shapely.from_wkb(np.array([bytes(w) for w in wkb], dtype=object))
        sums = zonal_sums(path, geometries, settings.working_crs, band, above=threshold, untrusted=untrusted)
    except RasterError as exc:
        raise QueryError(str(exc)) from exc
    exposed, area = sums.area_above, np.asarray(areas, dtype=float)
    if not sums.count.any():
        raise QueryError(f"{path.name} has no valid cells over the base map")
    districts = _group(list(zip(dcode, dname)), exposed, area)
    urban = _group(list(zip(plan, plan_name)), exposed, area)
    land_use = _group(list(zip(land, land_name)), exposed, area)
    construction = np.flatnonzero(is_construction(np.array(plan, dtype=object), settings.construction_codes) & (exposed > 0))
    construction = construction[np.argsort(-exposed[construction], kind="stable")]
    return {
        "raster": path.name, "band": band, "threshold": threshold,
        "patches_examined": len(ids), "exposed_m2": float(exposed.sum()), "exposed_ha": float(exposed.sum()) / 1e4,
        "by_district": [{"district_code": g["key"][0], "district_name": g["key"][1], **_values(g)} for g in districts],
        "by_urban_plan_class": [{"code": g["key"][0], "name": g["key"][1], **_values(g)} for g in urban],
        "by_land_use_class": [{"code": g["key"][0], "name": g["key"][1], **_values(g)} for g in land_use],
        "exposed_construction_patches": [
            {"patch_id": ids[i], "plan_code": plan[i], "plan_name": plan_name[i], "land_code": land[i],
             "district_code": dcode[i], "district_name": dname[i], "exposed_m2": float(exposed[i]),
             "share": float(exposed[i] / area[i]) if area[i] else 0.0}
            for i in construction.tolist()
        ],
    }


def _values(group: dict[str, Any]) -> dict[str, float]:
    return {k: group[k] for k in ("exposed_m2", "exposed_ha", "area_m2", "share")}
