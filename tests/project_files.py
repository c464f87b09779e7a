"""Project polygons as the files a planner would submit (GeoJSON, zipped Shapefile, GeoPackage), and the demo's red-line
project: a polygon over the first red-line feature, which creates conflicts."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
import shapely.geometry
from pyproj import Transformer

from geoservice.settings import Settings
from sql_helpers import active, query

TO_CRS84 = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)


def red_line_project(settings: Settings) -> shapely.Polygon:
    """A project polygon (EPSG:4548, the working CRS) over the first red-line feature."""
    x, y = query(settings, f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM {active('red_line')} "
                           "r ORDER BY id LIMIT 1) q")[0]
    ring = np.array([(-400, -300), (500, -350), (450, 400), (-350, 380), (-400, -300)]) + (x, y)
    return shapely.Polygon(ring)


def in_crs84(polygon: shapely.Polygon) -> shapely.Polygon:
    return shapely.transform(polygon, lambda xy: np.column_stack(TO_CRS84.transform(xy[:, 0], xy[:, 1])))


def geojson_bytes(polygon: shapely.Geometry) -> bytes:
    """A GeoJSON FeatureCollection (CRS84 coordinates) of one feature."""
    feature = {"type": "Feature", "properties": {"name": "拟建项目"}, "geometry": shapely.geometry.mapping(polygon)}
    return json.dumps({"type": "FeatureCollection", "features": [feature]}, ensure_ascii=False).encode()


def write_vector(path: Path, polygon: shapely.Geometry, crs: str, driver: str) -> Path:
    pyogrio.raw.write(path, np.array([shapely.to_wkb(polygon)], dtype=object), [np.array(["拟建项目"], dtype=object)],
                      ["NAME"], driver=driver, geometry_type="Polygon", crs=crs, encoding="UTF-8" if driver != "GPKG" else None)
    return path


def zipped_shapefile(folder: Path, polygon: shapely.Geometry, crs: str = "EPSG:4548", name: str = "project",
                     parts: tuple[str, ...] = (".shp", ".shx", ".dbf", ".prj", ".cpg")) -> Path:
    """`name`.zip holding the Shapefile `name` (only its `parts`), in a folder of the archive."""
    shapefile = write_vector(folder / f"{name}.shp", polygon, crs, "ESRI Shapefile")
    archive = folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for suffix in parts:
            if shapefile.with_suffix(suffix).exists():
                out.write(shapefile.with_suffix(suffix), f"项目/{name}{suffix}")
    return archive


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for name, content in members.items():
            out.writestr(name, content)
    return buffer.getvalue()


def upload(content: bytes, media_type: str) -> dict[str, str]:
    """The `project_file` input of a file."""
    return {"value": base64.b64encode(content).decode(), "encoding": "base64", "mediaType": media_type}
