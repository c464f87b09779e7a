"""Zonal statistics with rasterio against hand-computed answers and an independent per-polygon computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.mask
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from geoservice.raster import zonal_statistic, zonal_sums
from sql_helpers import active, query

X0, Y0, CELL = 600_000.0, 2_700_000.0, 10.0


def write_raster(path: Path, values: np.ndarray, crs: str = "EPSG:4548", transform=None, nodata: float = -1.0) -> Path:
    transform = transform or from_origin(X0, Y0 + CELL * values.shape[0], CELL, CELL)
    with rasterio.open(path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=nodata) as out:
        out.write(values.astype(np.float32), 1)
    return path


def cells(c0: int, r0: int, c1: int, r1: int) -> shapely.Polygon:
    """The box over columns c0..c1-1 and rows r0..r1-1 counted from the bottom."""
    return shapely.box(X0 + c0 * CELL, Y0 + r0 * CELL, X0 + c1 * CELL, Y0 + r1 * CELL)


def test_known_values_nodata_and_small_polygons(tmp_path: Path) -> None:
    values = np.tile(np.arange(10, dtype=float), (10, 1))  # value = column index
    values[0, 0] = -1.0  # nodata in the top-left cell (row 9 from the bottom)
    path = write_raster(tmp_path / "cols.tif", values)
    polygons = np.array([
        cells(2, 0, 5, 10),          # columns 2, 3, 4: mean 3, max 4
        cells(0, 8, 2, 10),          # columns 0, 1 of the top two rows, one nodata cell: values 0, 1, 1
        shapely.box(X0 + 73, Y0 + 41, X0 + 75, Y0 + 43),  # smaller than a cell: the cell under it (column 7)
        cells(20, 20, 22, 22),       # off the raster
    ], dtype=object)
    sums = zonal_sums(path, polygons, "EPSG:4548", above=2.5)
    assert sums.count.tolist() == [30, 3, 1, 0]
    mean = sums.statistic("mean")
    assert mean[:3] == pytest.approx([3.0, 2 / 3, 7.0]) and np.isnan(mean[3])
    assert sums.statistic("max")[:3] == pytest.approx([4.0, 1.0, 7.0])
    assert sums.statistic("share_above")[:3] == pytest.approx([20 / 30, 0.0, 1.0])
    assert sums.area.tolist() == pytest.approx([3000.0, 300.0, 4.0, 0.0])  # 10 m cells; the small one: its own area
    assert sums.area_above.tolist() == pytest.approx([2000.0, 0.0, 4.0, 0.0])


def test_raster_in_another_crs(tmp_path: Path) -> None:
    to_geo = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
    lon, lat = to_geo.transform(X0, Y0)
    step = 0.0001
    values = np.tile(np.arange(100, dtype=float), (100, 1))
    path = write_raster(tmp_path / "geo.tif", values, crs="EPSG:4490", transform=from_origin(lon, lat + 100 * step, step, step))
    to_xy = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True)
    # a polygon in the working CRS that is exactly columns 10-19 of the geographic grid
    ring = [(lon + 10 * step, lat), (lon + 20 * step, lat), (lon + 20 * step, lat + 100 * step), (lon + 10 * step, lat + 100 * step)]
    polygon = shapely.Polygon([to_xy.transform(*p) for p in ring])
    assert zonal_statistic(path, np.array([polygon]), "EPSG:4548", "mean")[0] == pytest.approx(14.5, abs=0.05)
    sums = zonal_sums(path, np.array([polygon]), "EPSG:4548", above=14.5)
    assert sums.area[0] == pytest.approx(polygon.area, rel=1e-3)  # true m² of lon/lat cells
    assert sums.area_above[0] == pytest.approx(polygon.area / 2, rel=2e-3)


def test_raster_rules_match_per_polygon_masking(demo_settings) -> None:
    rows = query(demo_settings, f"""
        SELECT f.id, ST_AsBinary(f.geom) FROM {active('urban_plan')} f
        JOIN geoservice.land_class c ON c.code = f.class_code WHERE c.construction""")
    ids = [r[0] for r in rows]
    geoms = shapely.from_wkb([bytes(r[1]) for r in rows])
    path = demo_settings.path(Path("layers/demo/rasters/slope_deg.tif"))
    with rasterio.open(path) as dataset:
        independent = []
        for geom in geoms:
            data, _ = rasterio.mask.mask(dataset, [geom], crop=True, filled=False)
            independent.append(float(data.mean()) if data.count() else np.nan)
    ours = zonal_statistic(path, geoms, demo_settings.working_crs, "mean")
    measured = ~np.isnan(np.array(independent))
    assert np.allclose(ours[measured], np.array(independent)[measured], rtol=1e-5)
    expected = {i for i, v, g in zip(ids, ours, geoms) if v > 15 and g.area >= 100}
    got = {r[0] for r in query(demo_settings, "SELECT feature_a FROM geoservice.conflict c JOIN geoservice.detection_run r "
                                              "ON r.id = c.run_id WHERE r.is_current AND rule_id = 'construction_on_steep_slope'")}
    assert got == expected and got
