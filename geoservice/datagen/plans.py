"""Generated plan layers over a land polygon (projected CRS, metres), deterministic for a seed.

- `land_use_plan`: a coverage of Voronoi patches clipped to the land, 三调 codes (BSM, DLBM, DLMC);
- `urban_plan`: another, finer-in-town tessellation with GB 50137 codes and more construction (YDBH, YDDM, YDMC);
- `red_lines`, `basic_farmland`, `dev_boundaries`: derived from the plans as bureaus derive them
  (forest and water → red line; farmland → basic farmland; the planned city → development boundary);
- `construction_projects`: small rotated rectangles, a share of them across the development boundary
  or the red line, with the project's developer, person in charge, ID and phone number.

Everything is vectorized Shapely 2 (no Python loop over features' geometry); each layer draws from its own
numpy stream `default_rng([seed, k])`, so the same seed gives identical geometries and attributes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import shapely

from geoservice.datagen import fake
from geoservice.datagen.landscape import Fields, Landscape

CLASSIFICATION_DIR = Path(__file__).resolve().parents[2] / "config" / "classification"

_LAND_USE, _URBAN, _RED, _FARM, _DEV, _PROJECTS = 11, 12, 13, 14, 15, 16  # rng stream ids


@dataclass
class Layer:
    """One generated layer: geometries (in `crs`) and attribute columns, all the same length."""

    name: str
    geometry: np.ndarray
    fields: dict[str, np.ndarray]
    crs: str
    sites: np.ndarray | None = None  # the points the patches were grown from (coverages only)
    samples: Fields | None = field(default=None, repr=False)  # the landscape at the sites

    def __len__(self) -> int:
        return len(self.geometry)


# ---- crosswalks ---------------------------------------------------------------------------------


@cache
def read_crosswalk(name: str, folder: Path = CLASSIFICATION_DIR) -> dict[str, tuple[str, str]]:
    """config/classification/<name>.csv as {source_code: (source_name, unified_code)}; for
    `unified_2023` as {code: (name_zh, code)}."""
    path = folder / f"{name}.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if name == "unified_2023":
        return {row["code"]: (row["name_zh"], row["code"]) for row in rows}
    return {row["source_code"]: (row["source_name"], row["unified_code"]) for row in rows}


def names_of(codes: np.ndarray, crosswalk: str) -> np.ndarray:
    table = read_crosswalk(crosswalk)
    lookup = {code: name for code, (name, _) in table.items()}
    unique, inverse = np.unique(codes.astype(str), return_inverse=True)
    return np.array([lookup[c] for c in unique], dtype=object)[inverse]


def unified_of(codes: np.ndarray, crosswalk: str) -> np.ndarray:
    table = read_crosswalk(crosswalk)
    unique, inverse = np.unique(codes.astype(str), return_inverse=True)
    return np.array([table[c][1] for c in unique], dtype=object)[inverse]


def is_construction(unified: np.ndarray) -> np.ndarray:
    """Level-1 07–15 (留白 16 not counted here)."""
    level1 = np.array([c[:2] if c else "" for c in unified], dtype=object)
    return np.isin(level1, [f"{k:02d}" for k in range(7, 16)])


# ---- coverages ----------------------------------------------------------------------------------


def _polygonal(geometry: np.ndarray) -> np.ndarray:
    """Keep only the polygonal parts of each geometry (intersections can add lines/points), vectorized;
    a geometry without any becomes an empty MultiPolygon."""
    kinds = shapely.get_type_id(geometry)
    odd = ~np.isin(kinds, (3, 6))
    if not odd.any():
        return geometry
    parts, index = shapely.get_parts(geometry[odd], return_index=True)
    nested = np.isin(shapely.get_type_id(parts), (4, 5, 6, 7))
    if nested.any():  # collections inside collections: one more level
        inner, inner_index = shapely.get_parts(parts[nested], return_index=True)
        parts = np.concatenate([parts[~nested], inner])
        index = np.concatenate([index[~nested], index[nested][inner_index]])
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 0)
    order = np.argsort(index[keep], kind="stable")
    rebuilt = np.full(int(odd.sum()), None, dtype=object)
    shapely.multipolygons(parts[keep][order], indices=index[keep][order], out=rebuilt)
    rebuilt[shapely.is_missing(rebuilt)] = shapely.MultiPolygon()
    out = np.array(geometry, dtype=object)
    out[odd] = rebuilt
    return out


def clip_to_land(geometry: np.ndarray, land: shapely.Geometry) -> np.ndarray:
    """geometry ∩ land, touching only the geometries that are not already properly inside (vectorized)."""
    shapely.prepare(land)
    inside = shapely.contains_properly(land, geometry)
    out = np.array(geometry, dtype=object)
    if not inside.all():
        out[~inside] = _polygonal(shapely.intersection(geometry[~inside], land))
    return out


def tessellate(land: shapely.Geometry, sites: np.ndarray) -> np.ndarray:
    """The Voronoi cells of `sites` (all on land), clipped to the land: a coverage of the land whose
    i-th patch contains sites[i]."""
    xmin, ymin, xmax, ymax = land.bounds
    pad = max(xmax - xmin, ymax - ymin)
    frame = shapely.box(xmin - pad, ymin - pad, xmax + pad, ymax + pad)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(sites), extend_to=frame, ordered=True))
    return clip_to_land(cells, land)


Weights = dict[str, Callable[[Fields], np.ndarray | float]]


def _sample_codes(
    groups: list[tuple[Callable[[Fields], np.ndarray], Weights]], f: Fields, draws: np.ndarray, sharpen: float
) -> np.ndarray:
    """One code per site: a group by its (sharpened) weight, then a code within the group, by inverting the
    cumulative probabilities at `draws` (uniform in (0, 1), one per site)."""
    n = len(f.x)
    columns, codes = [], []
    group_weights = np.stack([np.maximum(g(f), 0.0) ** sharpen for g, _ in groups], axis=1)
    group_weights /= np.maximum(group_weights.sum(axis=1, keepdims=True), 1e-300)
    for gi, (_, members) in enumerate(groups):
        sub = np.stack([np.broadcast_to(np.maximum(w(f), 0.0), (n,)) for w in members.values()], axis=1)
        sub /= np.maximum(sub.sum(axis=1, keepdims=True), 1e-300)
        columns.append(sub * group_weights[:, gi : gi + 1])
        codes.extend(members)
    p = np.concatenate(columns, axis=1)
    cumulative = np.cumsum(p, axis=1)
    r = draws * cumulative[:, -1]
    choice = np.minimum((cumulative < r[:, None]).sum(axis=1), len(codes) - 1)
    return np.array(codes, dtype=object)[choice]


def _sig(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _villages(f: Fields) -> np.ndarray:
    return _sig(2.2 * f.noise["village"] - 2.0) * (1.0 - f.hill)


# 三调 codes: where each group of classes lives, and the classes inside each group.
LAND_USE_GROUPS: list[tuple[Callable[[Fields], np.ndarray], Weights]] = [
    (  # construction: the city, industrial parks and scattered villages
        lambda f: 4.0 * f.urban**1.3 + 0.9 * f.industry + 0.35 * _villages(f),
        {
            "0701": lambda f: 0.12 + 0.9 * f.urban,
            "0702": lambda f: 1.1 * (1.0 - f.urban) ** 2,
            "05H1": lambda f: 0.35 * f.urban**2,
            "0508": lambda f: 0.02 + 0.25 * f.industry,
            "0601": lambda f: 0.03 + 1.4 * f.industry,
            "0602": lambda f: 0.03 * f.hill,
            "0603": lambda f: 0.01 * (f.coast_m < 400.0),
            "08H1": lambda f: 0.05 * f.urban,
            "08H2": lambda f: 0.14 * f.urban,
            "0809": lambda f: 0.03,
            "0810": lambda f: 0.12 * f.urban,
            "0810A": lambda f: 0.01 * f.urban,
            "09": lambda f: 0.015,
            "1001": lambda f: 0.008,
            "1002": lambda f: 0.01 * f.urban,
            "1003": lambda f: 0.05,
            "1004": lambda f: 0.16 + 0.1 * f.urban,
            "1005": lambda f: 0.025 * f.urban,
            "1008": lambda f: 0.03 * (f.coast_m < 500.0),
            "1009": lambda f: 0.002,
        },
    ),
    (  # cropland on the plains
        lambda f: 1.8 * (1.0 - f.hill) * (1.0 - f.urban) ** 2 * np.exp(0.9 * f.noise["farm"]),
        {
            "0101": lambda f: 0.6 * _sig(1.5 * f.noise["paddy"]),
            "0102": lambda f: 0.06,
            "0103": lambda f: 0.45 * _sig(-1.5 * f.noise["paddy"]),
            "1006": lambda f: 0.05,
            "1202": lambda f: 0.04,
            "1203": lambda f: 0.015,
            "1104": lambda f: 0.04,
            "1107": lambda f: 0.025,
        },
    ),
    (  # forest on the hills
        lambda f: 2.4 * f.hill * (1.0 - f.urban) ** 2 * np.exp(0.7 * f.noise["forest"]),
        {
            "0301": lambda f: 0.62,
            "0302": lambda f: 0.05,
            "0305": lambda f: 0.13,
            "0307": lambda f: 0.10,
            "0404": lambda f: 0.08,
            "1207": lambda f: 0.015 * f.hill,
        },
    ),
    (  # orchards and tea on the foothills
        lambda f: 0.6 * 4.0 * f.hill * (1.0 - f.hill) * (1.0 - f.urban) ** 2 * np.exp(f.noise["garden"]),
        {"0201": lambda f: 0.6, "0202": lambda f: 0.25, "0204": lambda f: 0.15},
    ),
    (  # rivers, reservoirs, ponds
        lambda f: 0.22 * (1.0 - f.urban) * np.exp(1.3 * f.noise["water"]),
        {
            "1101": lambda f: 0.4 * (1.0 - f.hill),
            "1103": lambda f: 0.45 * f.hill,
            "1104": lambda f: 0.25,
            "1106": lambda f: 0.04,
            "1108": lambda f: 0.02,
            "1109": lambda f: 0.02,
        },
    ),
    (  # the shore: tidal flats, mangroves, aquaculture ponds
        lambda f: 2.5 * (f.coast_m < 300.0) * (1.0 - f.urban) * np.exp(0.5 * f.noise["eco"]),
        {"1105": lambda f: 0.6, "0303": lambda f: 0.15, "1104A": lambda f: 0.25, "1205": lambda f: 0.05},
    ),
    (  # the rest
        lambda f: np.full(len(f.x), 0.03),
        {
            "1201": lambda f: 0.2 + f.urban,
            "1206": lambda f: 0.3,
            "1207": lambda f: 0.3 * f.hill,
            "1204": lambda f: 0.05,
        },
    ),
]

# GB 50137 codes for the urban plan: more construction (the planned city is wider than today's).
URBAN_PLAN_GROUPS: list[tuple[Callable[[Fields], np.ndarray], Weights]] = [
    (
        lambda f: 6.0 * f.urban_plan**1.2 + 1.2 * f.industry + 0.3 * _villages(f),
        {
            "R2": lambda f: 0.05 + 0.9 * f.urban_plan,
            "R1": lambda f: 0.03 * f.urban_plan,
            "R3": lambda f: 0.02,
            "R22": lambda f: 0.03 * f.urban_plan,
            "B1": lambda f: 0.3 * f.urban_plan**2,
            "B2": lambda f: 0.18 * f.urban_plan**2,
            "B3": lambda f: 0.03 * f.urban_plan,
            "B4": lambda f: 0.02,
            "B9": lambda f: 0.02,
            "A1": lambda f: 0.04 * f.urban_plan,
            "A2": lambda f: 0.03 * f.urban_plan,
            "A33": lambda f: 0.07 * f.urban_plan,
            "A31": lambda f: 0.02,
            "A35": lambda f: 0.02 * f.urban_plan,
            "A4": lambda f: 0.02 * f.urban_plan,
            "A51": lambda f: 0.03 * f.urban_plan,
            "A6": lambda f: 0.01,
            "A7": lambda f: 0.004,
            "A9": lambda f: 0.004,
            "M1": lambda f: 0.02 + 0.4 * f.industry,
            "M2": lambda f: 0.03 + 0.8 * f.industry,
            "M3": lambda f: 0.05 * f.industry,
            "W1": lambda f: 0.01 + 0.15 * f.industry,
            "W2": lambda f: 0.04 * f.industry,
            "S1": lambda f: 0.3 + 0.1 * f.urban_plan,
            "S2": lambda f: 0.01 * f.urban_plan,
            "S3": lambda f: 0.008 * f.urban_plan,
            "S41": lambda f: 0.015 * f.urban_plan,
            "S42": lambda f: 0.01 * f.urban_plan,
            "S9": lambda f: 0.004,
            "U11": lambda f: 0.006,
            "U12": lambda f: 0.01,
            "U13": lambda f: 0.004,
            "U15": lambda f: 0.004,
            "U21": lambda f: 0.008,
            "U22": lambda f: 0.008,
            "U31": lambda f: 0.006,
            "U9": lambda f: 0.003,
            "G1": lambda f: 0.02 + 0.22 * f.urban_plan,
            "G2": lambda f: 0.08,
            "G3": lambda f: 0.02 * f.urban_plan,
            "H14": lambda f: 0.9 * (1.0 - f.urban_plan) ** 3,
            "H21": lambda f: 0.008,
            "H22": lambda f: 0.03 * (1.0 - f.urban_plan),
            "H3": lambda f: 0.01 * (1.0 - f.urban_plan),
            "H41": lambda f: 0.004,
            "H5": lambda f: 0.02 * f.hill * (1.0 - f.urban_plan),
            "H9": lambda f: 0.005 * (1.0 - f.urban_plan),
        },
    ),
    (  # 农林用地: cropland, forest and orchards alike
        lambda f: (
            (1.0 - f.urban_plan) ** 2
            * (1.8 * (1.0 - f.hill) * np.exp(0.9 * f.noise["farm"]) + 2.4 * f.hill * np.exp(0.7 * f.noise["forest"]))
        ),
        {"E2": lambda f: 1.0},
    ),
    (
        lambda f: 0.22 * (1.0 - f.urban_plan) * np.exp(1.3 * f.noise["water"]),
        {"E11": lambda f: 0.5 * (1.0 - f.hill), "E12": lambda f: 0.45 * f.hill, "E13": lambda f: 0.25},
    ),
    (
        lambda f: 2.5 * (f.coast_m < 300.0) * (1.0 - f.urban_plan) * np.exp(0.5 * f.noise["eco"]),
        {"E11": lambda f: 0.6, "E13": lambda f: 0.3, "E9": lambda f: 0.1},
    ),
    (lambda f: np.full(len(f.x), 0.02), {"E9": lambda f: 1.0}),
]


class DistrictIndex:
    """Which district a point is in (projected polygons), for ids and names."""

    def __init__(self, adcodes: np.ndarray, names: np.ndarray, polygons: np.ndarray, default: tuple[str, str]) -> None:
        self.adcodes = np.append(np.asarray(adcodes, dtype=object), default[0])
        self.names = np.append(np.asarray(names, dtype=object), default[1])
        self.polygons = np.asarray(polygons, dtype=object)
        shapely.prepare(self.polygons)

    def lookup(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index into adcodes/names per point; the default (last) where no district contains it."""
        found = np.full(len(x), len(self.adcodes) - 1, dtype=np.int64)
        for i in range(len(self.polygons) - 1, -1, -1):  # a handful of districts, each test vectorized
            found[shapely.contains_xy(self.polygons[i], x, y)] = i
        return found

    def split(self, polygons: np.ndarray) -> np.ndarray:
        """The polygons cut along district boundaries (pieces outside every district are dropped)."""
        source, target = shapely.STRtree(polygons).query(self.polygons, predicate="intersects")
        return _explode_polygons(shapely.intersection(polygons[target], self.polygons[source]))


def _ids(prefix: np.ndarray, width: int) -> np.ndarray:
    return np.array([f"{p}{i:0{width}d}" for i, p in enumerate(prefix, start=1)], dtype=object)


def land_use_plan(landscape: Landscape, n_patches: int, seed: int, districts: DistrictIndex | None = None) -> Layer:
    """A land-use plan coverage of ~n_patches Voronoi patches with 三调 codes: BSM, DLBM, DLMC."""
    rng = np.random.default_rng([seed, _LAND_USE])
    sites = landscape.sample_points(n_patches, rng, urban_weight=12.0)
    cells = tessellate(landscape.land, sites)
    f = landscape.sample(sites[:, 0], sites[:, 1])
    codes = _sample_codes(LAND_USE_GROUPS, f, landscape.uniform_draws("land_use", sites[:, 0], sites[:, 1], rng), 2.0)
    codes[f.airport] = "1007"
    codes[f.port & (rng.uniform(size=len(codes)) < 0.8)] = "1008"
    prefix = _district_prefix(districts, sites, len(cells))
    return Layer(
        name="landuse",
        geometry=cells,
        fields={"BSM": _ids(prefix, 10), "DLBM": codes, "DLMC": names_of(codes, "tdgh_2017")},
        crs=landscape.crs,
        sites=sites,
        samples=f,
    )


def urban_plan(landscape: Landscape, n_patches: int, seed: int, districts: DistrictIndex | None = None) -> Layer:
    """An urban plan coverage (different sites, denser in town) with GB 50137 codes: YDBH, YDDM, YDMC."""
    rng = np.random.default_rng([seed, _URBAN])
    sites = landscape.sample_points(n_patches, rng, urban_weight=20.0, plan=True)
    cells = tessellate(landscape.land, sites)
    f = landscape.sample(sites[:, 0], sites[:, 1])
    codes = _sample_codes(
        URBAN_PLAN_GROUPS, f, landscape.uniform_draws("urban_plan", sites[:, 0], sites[:, 1], rng), 2.0
    )
    codes[f.airport] = "H24"
    codes[f.port & (rng.uniform(size=len(codes)) < 0.8)] = "H23"
    prefix = _district_prefix(districts, sites, len(cells))
    return Layer(
        name="urban_plan",
        geometry=cells,
        fields={"YDBH": _ids(prefix + "-", 7), "YDDM": codes, "YDMC": names_of(codes, "gb50137_2011")},
        crs=landscape.crs,
        sites=sites,
        samples=f,
    )


def _district_prefix(districts: DistrictIndex | None, points: np.ndarray, n: int) -> np.ndarray:
    if districts is None or len(points) == 0:
        return np.full(n, "350200", dtype=object)
    return districts.adcodes[districts.lookup(points[:, 0], points[:, 1])]


def _explode_polygons(geometry: shapely.Geometry | np.ndarray) -> np.ndarray:
    parts = shapely.get_parts(np.atleast_1d(np.asarray(geometry, dtype=object)))
    return parts[(shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)]


def _dissolve(cells: np.ndarray) -> np.ndarray:
    """Union of coverage patches, as single polygons."""
    if len(cells) == 0:
        return np.empty(0, dtype=object)
    merged = shapely.coverage_union_all(cells)
    if not shapely.is_valid(merged):  # clipped edges can miss a coverage by an ulp
        merged = shapely.make_valid(merged)
    return _explode_polygons(merged)


def _order(polygons: np.ndarray) -> np.ndarray:
    """A stable spatial order (north to south, west to east by representative point)."""
    if len(polygons) == 0:
        return polygons
    xy = shapely.get_coordinates(shapely.point_on_surface(polygons))
    return polygons[np.lexsort((np.round(xy[:, 0], 3), -np.round(xy[:, 1], 3)))]


RED_LINE_CODES = ("0301", "0302", "0305", "0307", "0404", "1103", "1101", "0303", "1105", "1108")


def red_lines(
    landscape: Landscape,
    land_use: Layer,
    seed: int,
    districts: DistrictIndex | None = None,
    min_area_m2: float = 200_000.0,
) -> Layer:
    """Ecological red line: the hills' forest and water and the shore's mangroves and flats of the
    land-use plan, dissolved, smoothed and grown ~40 m (so some planned construction falls inside)."""
    rng = np.random.default_rng([seed, _RED])
    f = land_use.samples
    codes = land_use.fields["DLBM"]
    hills = np.isin(codes, RED_LINE_CODES[:7]) & (f.hill > 0.55) & (f.noise["eco"] > -0.3)
    shore = np.isin(codes, ("0303", "1105")) & (f.noise["eco"] > -0.2)
    parts = _dissolve(land_use.geometry[hills | shore])
    parts = parts[shapely.area(parts) >= min_area_m2 / 2.0]
    grown = _explode_polygons(shapely.union_all(shapely.buffer(parts, 60.0, quad_segs=2)))
    shrunk = _explode_polygons(shapely.buffer(grown, -20.0, quad_segs=2))
    polygons = _explode_polygons(clip_to_land(shrunk, landscape.land))
    polygons = shapely.simplify(polygons[shapely.area(polygons) >= min_area_m2], 5.0)
    polygons = _order(_explode_polygons(shapely.make_valid(polygons)))
    polygons = polygons[shapely.area(polygons) >= min_area_m2]
    if districts is not None:  # each district delineates its own red line
        polygons = districts.split(polygons)
        polygons = _order(polygons[shapely.area(polygons) >= min_area_m2 / 4.0])
    n = len(polygons)
    point = shapely.get_coordinates(shapely.point_on_surface(polygons))
    here = landscape.sample(point[:, 0], point[:, 1])
    kind = np.where(
        here.coast_m < 600.0,
        np.where(rng.uniform(size=n) < 0.6, "海岸生态稳定", "生物多样性维护"),
        np.array(["水源涵养", "水土保持", "生物多样性维护"], dtype=object)[
            np.digitize(here.noise["water"] + 0.3 * rng.normal(size=n), [-0.3, 0.5])
        ],
    ).astype(object)
    index = districts.lookup(point[:, 0], point[:, 1]) if districts is not None and n else np.full(n, -1)
    district_name = districts.names[index] if districts is not None else np.full(n, "厦门市", dtype=object)
    adcode = districts.adcodes[index] if districts is not None else np.full(n, "350200", dtype=object)
    hxbh = np.array([f"HX{a}{i:04d}" for i, a in enumerate(adcode, start=1)], dtype=object)
    hxmc = np.array(
        [f"{d}{k}生态保护红线{i:03d}" for i, (d, k) in enumerate(zip(district_name, kind, strict=True), start=1)],
        dtype=object,
    )
    return Layer("red_line", polygons, {"HXBH": hxbh, "HXMC": hxmc, "HXLX": kind}, landscape.crs)


def basic_farmland(
    landscape: Landscape,
    land_use: Layer,
    seed: int,
    districts: DistrictIndex | None = None,
    min_area_m2: float = 5_000.0,
) -> Layer:
    """Permanent basic farmland: most of the land-use plan's cropland (0101/0102/0103), dissolved by code."""
    rng = np.random.default_rng([seed, _FARM])
    f = land_use.samples
    codes = land_use.fields["DLBM"]
    keep = np.isin(codes, ("0101", "0102", "0103")) & (f.noise["farm"] + 0.4 * rng.normal(size=len(codes)) > -0.9)
    polygons, dlbm = [], []
    for code in ("0101", "0102", "0103"):  # three classes, each dissolved in one vectorized call
        parts = _dissolve(land_use.geometry[keep & (codes == code)])
        parts = parts[shapely.area(parts) >= min_area_m2]
        polygons.append(parts)
        dlbm.append(np.full(len(parts), code, dtype=object))
    geometry = np.concatenate(polygons)
    code = np.concatenate(dlbm)
    order = np.lexsort((code, *_order_keys(geometry)))
    geometry, code = geometry[order], code[order]
    point = shapely.get_coordinates(shapely.point_on_surface(geometry))
    prefix = _district_prefix(districts, point, len(geometry))
    return Layer("basic_farmland", geometry, {"JBNTBH": _ids("JBNT" + prefix, 6), "DLBM": code}, landscape.crs)


def _order_keys(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(polygons) == 0:
        return np.zeros(0), np.zeros(0)
    xy = shapely.get_coordinates(shapely.point_on_surface(polygons))
    return np.round(xy[:, 0], 3), -np.round(xy[:, 1], 3)


def dev_boundaries(
    landscape: Landscape,
    urban: Layer,
    seed: int,
    districts: DistrictIndex | None = None,
    min_area_m2: float = 1_500_000.0,
) -> Layer:
    """Urban development boundary: the planned city around the cores, smoothed, holes filled."""
    f = urban.samples
    unified = unified_of(urban.fields["YDDM"], "gb50137_2011")
    city = is_construction(unified) & (f.urban_plan > 0.45)
    parts = _dissolve(urban.geometry[city])
    parts = parts[shapely.area(parts) >= min_area_m2 / 10.0]
    closed = shapely.buffer(shapely.union_all(shapely.buffer(parts, 200.0, quad_segs=4)), -200.0, quad_segs=4)
    shells = shapely.polygons(shapely.get_exterior_ring(_explode_polygons(closed)))
    polygons = _explode_polygons(clip_to_land(shells, landscape.land))
    polygons = shapely.simplify(polygons[shapely.area(polygons) >= min_area_m2], 10.0)
    polygons = _order(_explode_polygons(shapely.make_valid(polygons)))
    polygons = polygons[shapely.area(polygons) >= min_area_m2]
    n = len(polygons)
    point = shapely.get_coordinates(shapely.point_on_surface(polygons))
    index = districts.lookup(point[:, 0], point[:, 1]) if districts is not None and n else np.full(n, -1)
    name = districts.names[index] if districts is not None else np.full(n, "厦门市", dtype=object)
    adcode = districts.adcodes[index] if districts is not None else np.full(n, "350200", dtype=object)
    bjbh = np.array([f"KFBJ{a}{i:03d}" for i, a in enumerate(adcode, start=1)], dtype=object)
    bjmc = np.array([f"{d}城镇开发边界{i:02d}" for i, d in enumerate(name, start=1)], dtype=object)
    return Layer("dev_boundary", polygons, {"BJBH": bjbh, "BJMC": bjmc}, landscape.crs)


# Project kinds: unified 2023 code, what the name says, how often.
PROJECT_KINDS: tuple[tuple[str, str, float], ...] = (
    ("0701", "住宅小区", 0.30),
    ("1001", "工业厂房", 0.18),
    ("0901", "商业综合体", 0.08),
    ("0902", "商务办公楼", 0.06),
    ("0804", "学校", 0.07),
    ("0806", "医院", 0.03),
    ("1101", "物流园", 0.06),
    ("1207", "道路工程", 0.08),
    ("1401", "公园", 0.04),
    ("0805", "体育中心", 0.02),
    ("1303", "变电站", 0.03),
    ("1208", "公交场站", 0.02),
    ("0703", "农村住房", 0.03),
)
PLACES = np.array(
    [
        "湖边",
        "五缘湾",
        "马銮湾",
        "杏林",
        "灌口",
        "后溪",
        "新店",
        "马巷",
        "大嶝",
        "汀溪",
        "莲花",
        "西柯",
        "环东海域",
        "东孚",
        "新阳",
        "软件园",
        "火炬",
        "观音山",
        "会展",
        "枋湖",
        "殿前",
        "高崎",
        "江头",
        "湖滨",
        "曾厝垵",
        "黄厝",
        "前埔",
        "侨英",
        "杏滨",
        "内厝",
        "新圩",
        "五显",
        "洪塘",
        "祥平",
        "大同",
        "嵩屿",
    ],
    dtype=object,
)


def construction_projects(
    landscape: Landscape,
    urban: Layer,
    dev: Layer,
    red: Layer,
    n_projects: int,
    seed: int,
    districts: DistrictIndex | None = None,
) -> Layer:
    """Approved construction projects: rotated rectangles 40–300 m, ~75% inside the planned city, ~12%
    straddling the development boundary, ~13% straddling the red line."""
    rng = np.random.default_rng([seed, _PROJECTS])
    n_cross_dev = int(round(0.12 * n_projects)) if len(dev) else 0
    n_cross_red = int(round(0.13 * n_projects)) if len(red) else 0
    n_town = n_projects - n_cross_dev - n_cross_red
    unified = unified_of(urban.fields["YDDM"], "gb50137_2011")
    build = np.flatnonzero(is_construction(unified))
    weight = urban.samples.urban_plan[build] + 0.05
    town = build[rng.choice(len(build), size=n_town, p=weight / weight.sum())]
    centres = [urban.sites[town] + rng.normal(scale=40.0, size=(n_town, 2))]
    for layer, count in ((dev, n_cross_dev), (red, n_cross_red)):
        if count:
            rings = shapely.get_exterior_ring(layer.geometry)
            length = shapely.length(rings)
            pick = rng.choice(len(rings), size=count, p=length / length.sum())
            centres.append(
                shapely.get_coordinates(
                    shapely.line_interpolate_point(rings[pick], rng.uniform(size=count), normalized=True)
                )
            )
    centre = np.concatenate(centres)
    n = len(centre)
    width = rng.uniform(40.0, 220.0, size=n)
    length = width * rng.uniform(1.0, 2.5, size=n)
    angle = rng.uniform(0.0, np.pi, size=n)
    ux, uy = np.cos(angle), np.sin(angle)
    half_l, half_w = length[:, None] / 2.0, width[:, None] / 2.0
    a = np.stack([ux, uy], axis=1) * half_l
    b = np.stack([-uy, ux], axis=1) * half_w
    corners = np.stack([centre - a - b, centre + a - b, centre + a + b, centre - a + b, centre - a - b], axis=1)
    rectangles = clip_to_land(shapely.polygons(corners), landscape.land)
    kept = ~shapely.is_empty(rectangles) & (shapely.area(rectangles) > 100.0)
    rectangles, centre = rectangles[kept], centre[kept]
    n = len(rectangles)
    # what each project builds: the urban plan's use where it is construction land, else a likely kind
    kinds = np.array([k[0] for k in PROJECT_KINDS], dtype=object)
    labels = {k[0]: k[1] for k in PROJECT_KINDS}
    p = np.array([k[2] for k in PROJECT_KINDS])
    drawn = kinds[rng.choice(len(kinds), size=n, p=p / p.sum())]
    tree = shapely.STRtree(urban.geometry)
    source, target = tree.query(shapely.points(centre), predicate="intersects")
    here = np.full(n, "", dtype=object)
    first = np.unique(source, return_index=True)[1]
    here[source[first]] = unified[target[first]]
    usable = np.isin(here, kinds)
    yddm = np.where(usable, here, drawn).astype(object)
    index = districts.lookup(centre[:, 0], centre[:, 1]) if districts is not None else np.full(n, -1)
    district_name = districts.names[index] if districts is not None else np.full(n, "厦门市", dtype=object)
    adcode = districts.adcodes[index] if districts is not None else np.full(n, "350200", dtype=object)
    place = PLACES[rng.integers(len(PLACES), size=n)]
    phase = rng.integers(1, 4, size=n)
    xmmc = np.array(
        [
            f"{d}{pl}{labels[k]}{'一二三'[ph - 1]}期项目"
            for d, pl, k, ph in zip(district_name, place, yddm, phase, strict=True)
        ],
        dtype=object,
    )
    approved = np.datetime64("2018-01-01") + rng.integers(0, 2557, size=n).astype("timedelta64[D]")
    year = approved.astype("datetime64[Y]").astype(int) + 1970
    xmbh = np.array(
        [f"XM{y}-{a}-{i:05d}" for i, (y, a) in enumerate(zip(year, adcode, strict=True), start=1)], dtype=object
    )
    return Layer(
        "projects",
        rectangles,
        {
            "XMBH": xmbh,
            "XMMC": xmmc,
            "JSDW": fake.company_names(rng, n),
            "FZR": fake.person_names(rng, n),
            "SFZH": fake.id_numbers(
                rng,
                n,
                np.array(
                    ["350203", "350205", "350206", "350211", "350212", "350213", "350102", "350582", "350681"],
                    dtype=object,
                ),
            ),
            "LXDH": fake.mobile_numbers(rng, n),
            "YDDM": yddm,
            "PZRQ": approved,
        },
        landscape.crs,
    )


def generate_city(out_dir: Path, n_patches: int = 300_000, seed: int = 1, **options: object):  # noqa: ANN201
    """City-scale layers (≥ n_patches land-use patches) written to `out_dir`; see `build.generate_city`."""
    from geoservice.datagen.build import generate_city as build_city  # build imports this module

    return build_city(out_dir, n_patches, seed, **options)  # type: ignore[arg-type]
