"""Zonal statistics with rasterio against hand-computed answers and an independent per-polygon computation; rasters
from someone else opened only as plain GeoTIFFs (an attacker's VRT reads no file and sends no request)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.mask
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from geoservice.raster import RasterError, Untrusted, open_raster, zonal_statistic, zonal_sums
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


def test_a_cell_centre_on_a_shared_edge_counts_once(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "cols.tif", np.tile(np.arange(10, dtype=float), (10, 1)))
    # two boxes whose shared edge runs through the centres of column 3 (x = X0 + 35)
    polygons = np.array([shapely.box(X0 + 12, Y0, X0 + 35, Y0 + 10), shapely.box(X0 + 35, Y0, X0 + 58, Y0 + 10)])
    sums = zonal_sums(path, polygons, "EPSG:4548")
    assert sums.count.tolist() == [2, 3]  # columns 1, 2 | 3 (the later polygon, as GDAL burns), 4, 5
    assert sums.statistic("mean").tolist() == pytest.approx([1.5, 4.0])


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
                                              "ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) WHERE r.is_current AND rule_id = 'construction_on_steep_slope'")}
    assert got == expected and got


class Listener:
    """A local HTTP-ish listener that records every connection made to it (an attacker's target inside the network)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.connections.append(conn.recv(4096))
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self.socket.close()


def vrt(source: str, size: int = 10) -> str:
    """A GDAL VRT whose one band reads `source` (a URL through /vsicurl/, or a path on the server)."""
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:4548</SRS>'
            f"<GeoTransform>{X0}, {CELL}, 0, {Y0 + CELL * size}, 0, -{CELL}</GeoTransform>"
            '<VRTRasterBand dataType="Float32" band="1"><SimpleSource>'
            f"<SourceFilename>{source}</SourceFilename><SourceBand>1</SourceBand>"
            "</SimpleSource></VRTRasterBand></VRTDataset>")


def test_untrusted_rasters_are_plain_geotiffs_only(tmp_path: Path) -> None:
    local = write_raster(tmp_path / "local.tif", np.full((10, 10), 3.0))
    listener = Listener()
    try:
        for name, source in (("remote.vrt", f"/vsicurl/http://127.0.0.1:{listener.port}/x.tif"), ("local.vrt", str(local))):
            path = tmp_path / name
            path.write_text(vrt(source))
            with pytest.raises(RasterError, match=rf"{name}: not a readable raster: accepted is GeoTIFF \(TIFF or BigTIFF\)"):
                zonal_sums(path, np.array([cells(0, 0, 5, 5)]), "EPSG:4548", untrusted=Untrusted(10**6))
        with open_raster(tmp_path / "local.vrt") as trusted:  # the server's own configuration may name a VRT
            assert trusted.driver == "VRT" and trusted.read(1).mean() == 3.0
    finally:
        listener.close()
    assert listener.connections == []
    (tmp_path / "local.tif.aux.xml").write_text('<PAMDataset><Metadata><MDI key="planted">1</MDI></Metadata></PAMDataset>')
    with open_raster(local, Untrusted(100)) as dataset:  # nothing beside the file is read
        assert dataset.files == [str(local.resolve())] and "planted" not in dataset.tags()
    with open_raster(local) as dataset:
        assert "planted" in dataset.tags()


def test_untrusted_rasters_are_limited_by_cells_before_any_pixel_is_read(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "ten.tif", np.zeros((10, 10)))
    with pytest.raises(RasterError, match=r"ten.tif: 10 × 10 cells in 1 band\(s\) \(blocks of 100\) is more than the 99 "
                                          r"cells allowed \(server.max_raster_cells\)"):
        zonal_sums(path, np.array([cells(0, 0, 5, 5)]), "EPSG:4548", untrusted=Untrusted(99))
    tiled = tmp_path / "tiled.tif"  # a small raster with one huge tile: decoding it would cost the tile, not the raster
    with rasterio.open(tiled, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", tiled=True,
                       blockxsize=1024, blockysize=1024, crs="EPSG:4548", transform=from_origin(X0, Y0, CELL, CELL)) as out:
        out.write(np.zeros((10, 10), np.uint8), 1)
    with pytest.raises(RasterError, match=r"blocks of 1,048,576\) is more than the 100,000 cells allowed"):
        with open_raster(tiled, Untrusted(100_000)):
            pass
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\0" + b"\xff" * 64)  # TIFF magic, no TIFF
    with pytest.raises(RasterError, match=r"junk.tif: not a readable raster .*accepted is GeoTIFF"):
        with open_raster(junk, Untrusted(100)):
            pass
