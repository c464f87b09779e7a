"""Writing generated layers with pyogrio, byte-for-byte reproducibly.

GDAL stamps the current date into a Shapefile's .dbf header and a GeoPackage's gpkg_contents, and zip
entries carry file times; every one of those is pinned to `STAMP_DATE` here, so the same seed gives the
same bytes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from pyogrio.raw import write

from geoservice.datagen.districts import reproject
from geoservice.datagen.plans import Layer

STAMP_DATE = "2024-01-01"
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


@contextlib.contextmanager
def _gdal_config(**options: str) -> Iterator[None]:
    previous = {key: pyogrio.get_gdal_config_option(key) for key in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(previous)


def _field_arrays(layer: Layer) -> tuple[list[np.ndarray], list[str]]:
    names = list(layer.fields)
    return [layer.fields[name] for name in names], names


def write_layer(
    layer: Layer,
    path: Path,
    *,
    crs: str | None = None,
    geometry: np.ndarray | None = None,
    layer_name: str | None = None,
    encoding: str | None = None,
    keep_cpg: bool = True,
    precision: int | None = None,
) -> list[Path]:
    """Write `layer` to `path` (driver from the suffix: .shp, .gpkg, .geojson, .fgb); returns the files.

    `crs` reprojects (from the layer's CRS); `geometry` replaces the geometry already moved by the caller
    (with `crs` then only the label). A Shapefile gets `encoding` (default UTF-8) and its .cpg unless
    `keep_cpg` is False; GeoJSON gets `precision` decimals.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = crs or layer.crs
    if geometry is None:
        geometry = reproject(layer.geometry, layer.crs, target)
    suffix = path.suffix.lower()
    values, names = _field_arrays(layer)
    wkb = shapely.to_wkb(geometry, output_dimension=2)
    common = dict(crs=target, layer=layer_name or path.stem)
    files = [path]
    if suffix == ".shp":
        for part in SHAPEFILE_PARTS:
            path.with_suffix(part).unlink(missing_ok=True)
        write(
            path,
            wkb,
            values,
            names,
            driver="ESRI Shapefile",
            geometry_type="Polygon",
            encoding=encoding or "UTF-8",
            layer_options={"DBF_DATE_LAST_UPDATE": STAMP_DATE, "RESIZE": "YES"},
            **common,
        )
        if not keep_cpg:
            path.with_suffix(".cpg").unlink(missing_ok=True)
        files = [path.with_suffix(part) for part in SHAPEFILE_PARTS if path.with_suffix(part).exists()]
    elif suffix == ".gpkg":
        path.unlink(missing_ok=True)
        with _gdal_config(OGR_CURRENT_DATE=f"{STAMP_DATE}T00:00:00.000Z"):
            write(
                path, wkb, values, names, driver="GPKG", geometry_type="MultiPolygon", promote_to_multi=True, **common
            )
    elif suffix in (".geojson", ".json"):
        path.unlink(missing_ok=True)
        options = {"RFC7946": "NO", "WRITE_BBOX": "NO"}
        if precision is not None:
            options["COORDINATE_PRECISION"] = str(precision)
        write(path, wkb, values, names, driver="GeoJSON", geometry_type="Unknown", layer_options=options, **common)
    elif suffix == ".fgb":
        path.unlink(missing_ok=True)
        write(
            path, wkb, values, names, driver="FlatGeobuf", geometry_type="MultiPolygon", promote_to_multi=True, **common
        )
    else:
        raise ValueError(f"{path}: unknown format {suffix!r} (use .shp, .gpkg, .geojson or .fgb)")
    return files


def zip_files(files: list[Path], archive: Path) -> Path:
    """A zip of `files` (flat, in the given order) with pinned timestamps and permissions."""
    archive.unlink(missing_ok=True)
    year, month, day = (int(part) for part in STAMP_DATE.split("-"))
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for file in files:
            info = zipfile.ZipInfo(file.name, date_time=(year, month, day, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, whatever the machine
            bundle.writestr(info, file.read_bytes())
    return archive


def write_zipped_shapefile(layer: Layer, archive: Path, **options: object) -> Path:
    """A Shapefile written to a scratch folder and zipped (bureaus send shapefiles as .zip)."""
    with tempfile.TemporaryDirectory(prefix="geoservice-datagen-") as scratch:
        files = write_layer(layer, Path(scratch) / f"{archive.stem}.shp", **options)  # type: ignore[arg-type]
        return zip_files(files, archive)


def file_size(paths: list[Path]) -> int:
    return sum(os.path.getsize(p) for p in paths)
