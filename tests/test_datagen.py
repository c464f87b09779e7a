"""The data generator and the committed demo data: determinism, coverage, codes, formats, datums."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
import yaml

from geoservice.datagen import datum, fake, plans
from geoservice.datagen.build import DEMO_DIR, Generated, generate, generate_city, library_versions, write_demo
from geoservice.datagen.districts import (
    XIAMEN_DISTRICTS,
    gcj02_residual_deg,
    gcj02_to_wgs84,
    land_polygon,
    read_districts,
    wgs84_to_gcj02,
)

ROOT = Path(__file__).resolve().parent.parent
CLASSIFICATION = ROOT / "config" / "classification"
LAYERS = ROOT / "layers"


@pytest.fixture(scope="module")
def small() -> Generated:
    return generate(800, seed=7, n_urban_patches=600, n_projects=120)


def _csv(name: str) -> list[dict[str, str]]:
    with (CLASSIFICATION / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# ---- crosswalks ---------------------------------------------------------------------------------


def test_unified_classes_are_complete_and_nested() -> None:
    rows = _csv("unified_2023")
    codes = [row["code"] for row in rows]
    assert len(codes) == len(set(codes))
    assert {c for c in codes if len(c) == 2} == {f"{k:02d}" for k in range(1, 25)}
    for code in codes:
        assert code.isdigit() and len(code) in (2, 4, 6)
        if len(code) > 2:
            assert code[:-2] in codes, f"{code} has no parent"
    assert not [c for c in codes if c.startswith("16") and len(c) > 2]  # 留白用地 has no sub-classes
    names = {row["code"]: row["name_zh"] for row in rows}
    assert names["0101"] == "水田" and names["0701"] == "城镇住宅用地" and names["1001"] == "工业用地"
    assert names["16"] == "留白用地" and names["1701"] == "河流水面" and names["0507"] == "红树林地"


@pytest.mark.parametrize("name", ["tdgh_2017", "gb50137_2011"])
def test_crosswalk_targets_are_unified_codes(name: str) -> None:
    unified = {row["code"] for row in _csv("unified_2023")}
    rows = _csv(name)
    assert list(rows[0]) == ["source_code", "source_name", "unified_code"]
    sources = [row["source_code"] for row in rows]
    assert len(sources) == len(set(sources))
    for row in rows:
        assert row["unified_code"] == "" or row["unified_code"] in unified, row
    assert sum(row["unified_code"] == "" for row in rows) <= 6  # only GB 50137's aggregate classes


def test_crosswalks_cover_the_listed_source_codes() -> None:
    tdgh = {row["source_code"]: row["unified_code"] for row in _csv("tdgh_2017")}
    for code in [
        "0101",
        "0303",
        "0304",
        "0306",
        "0402",
        "05H1",
        "0508",
        "0601",
        "0603",
        "0701",
        "08H1",
        "08H2",
        "0809",
        "0810",
        "09",
        "1001",
        "1009",
        "1101",
        "1110",
        "1201",
        "1207",
    ]:
        assert code in tdgh
    assert tdgh["0303"] == "0507" and tdgh["0702"] == "0703" and tdgh["1006"] == "0601" and tdgh["1202"] == "0602"
    gb = {row["source_code"]: row["unified_code"] for row in _csv("gb50137_2011")}
    for code in [
        "R",
        "R1",
        "R2",
        "R3",
        "A1",
        "A9",
        "B1",
        "B4",
        "B9",
        "M1",
        "M3",
        "W1",
        "W3",
        "S1",
        "S4",
        "S9",
        "U1",
        "U3",
        "U9",
        "G1",
        "G3",
        "H11",
        "H14",
        "H21",
        "H25",
        "H3",
        "H41",
        "H42",
        "H5",
        "H9",
        "E11",
        "E13",
        "E2",
        "E9",
    ]:
        assert code in gb
    assert gb["M2"] == "1001" and gb["R2"] == "0701" and gb["G1"] == "1401" and gb["S1"] == "1207"


# ---- generator ----------------------------------------------------------------------------------


def test_same_seed_same_layers_other_seed_other_layers(small) -> None:
    again = generate(800, seed=7, n_urban_patches=600, n_projects=120)
    for name, layer in small.layers().items():
        other = again.layers()[name]
        assert np.array_equal(shapely.to_wkb(layer.geometry), shapely.to_wkb(other.geometry)), name
        assert list(layer.fields) == list(other.fields)
        for column, values in layer.fields.items():
            assert np.array_equal(values, other.fields[column]), (name, column)
    different = generate(800, seed=8, n_urban_patches=600, n_projects=120)
    assert not np.array_equal(shapely.to_wkb(small.land_use.geometry), shapely.to_wkb(different.land_use.geometry))


@pytest.mark.parametrize("which", ["land_use", "urban_plan"])
def test_coverages_are_valid_disjoint_and_fill_the_land(small, which: str) -> None:
    layer = getattr(small, which)
    land = land_polygon(small.districts)
    geometry = layer.geometry
    assert len(geometry) == (800 if which == "land_use" else 600)
    assert shapely.is_valid(geometry).all()
    assert np.isin(shapely.get_type_id(geometry), (3, 6)).all()
    assert (shapely.area(geometry) > 0).all()
    left, right = shapely.STRtree(geometry).query(geometry, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(geometry[left[pairs]], geometry[right[pairs]]))
    assert overlap.max(initial=0.0) < 1e-6  # neighbours share edges only
    assert not shapely.relate_pattern(geometry[left[pairs]], geometry[right[pairs]], "2********").any()
    assert abs(shapely.area(geometry).sum() - land.area) / land.area < 1e-9
    # every patch contains the site it grew from
    assert shapely.contains_xy(geometry, layer.sites[:, 0], layer.sites[:, 1]).all()


def test_generated_codes_are_in_their_crosswalks(small) -> None:
    tdgh = plans.read_crosswalk("tdgh_2017")
    gb = plans.read_crosswalk("gb50137_2011")
    unified = plans.read_crosswalk("unified_2023")
    assert set(small.land_use.fields["DLBM"]) <= set(tdgh)
    assert set(small.urban_plan.fields["YDDM"]) <= set(gb)
    assert all(gb[code][1] for code in set(small.urban_plan.fields["YDDM"]))  # never an aggregate class
    assert set(small.basic_farmland.fields["DLBM"]) <= {"0101", "0102", "0103"}
    assert set(small.projects.fields["YDDM"]) <= set(unified)
    for code, name in zip(small.land_use.fields["DLBM"], small.land_use.fields["DLMC"], strict=True):
        assert tdgh[code][0] == name
    for code, name in zip(small.urban_plan.fields["YDDM"], small.urban_plan.fields["YDMC"], strict=True):
        assert gb[code][0] == name


def test_ids_are_unique_and_plans_disagree_where_cities_grow(small) -> None:
    for layer, column in (
        (small.land_use, "BSM"),
        (small.urban_plan, "YDBH"),
        (small.red_line, "HXBH"),
        (small.basic_farmland, "JBNTBH"),
        (small.dev_boundary, "BJBH"),
        (small.projects, "XMBH"),
    ):
        assert len(set(layer.fields[column])) == len(layer), column
    land_use_build = plans.is_construction(plans.unified_of(small.land_use.fields["DLBM"], "tdgh_2017"))
    urban_build = plans.is_construction(plans.unified_of(small.urban_plan.fields["YDDM"], "gb50137_2011"))
    area = shapely.area
    share_land_use = area(small.land_use.geometry[land_use_build]).sum() / area(small.land_use.geometry).sum()
    share_urban = area(small.urban_plan.geometry[urban_build]).sum() / area(small.urban_plan.geometry).sum()
    assert 0.1 < share_land_use < share_urban < 0.8
    # basic farmland lies on the land-use plan's cropland; some of it is planned as construction
    farmland = shapely.union_all(small.basic_farmland.geometry)
    cropland = shapely.union_all(
        small.land_use.geometry[np.isin(small.land_use.fields["DLBM"], ["0101", "0102", "0103"])]
    )
    assert shapely.difference(farmland, cropland).area < 1e-3 * farmland.area
    assert shapely.intersection(farmland, shapely.union_all(small.urban_plan.geometry[urban_build])).area > 0
    # the red line sits mostly on forest and water, and reaches into some planned construction
    red = shapely.union_all(small.red_line.geometry)
    green = np.isin(
        [c[:2] for c in plans.unified_of(small.land_use.fields["DLBM"], "tdgh_2017")], ["03", "04", "05", "17"]
    )
    assert shapely.intersection(red, shapely.union_all(small.land_use.geometry[green])).area > 0.8 * red.area
    assert shapely.intersection(red, shapely.union_all(small.urban_plan.geometry[urban_build])).area > 0
    # some projects cross the development boundary or the red line
    dev = shapely.union_all(small.dev_boundary.geometry)
    projects = small.projects.geometry
    assert shapely.intersects(projects, shapely.boundary(dev)).sum() > 0
    assert shapely.intersects(projects, red).sum() > 0


def test_fake_personal_data_is_well_formed(small) -> None:
    fields = small.projects.fields
    for number in fields["SFZH"]:
        assert len(number) == 18 and fake.id_number_is_valid(number)
    assert fake.id_number_is_valid("11010519491231002X")  # the standard's own example
    assert not fake.id_number_is_valid("110105194912310021")
    for phone in fields["LXDH"]:
        assert len(phone) == 11 and phone.isdigit() and phone[0] == "1"
    assert all(2 <= len(name) <= 3 for name in fields["FZR"])
    assert fields["PZRQ"].dtype == np.dtype("datetime64[D]")


def test_city_scale_writer_makes_files_and_valid_definitions(tmp_path: Path) -> None:
    from geoservice.ingest.definition import load_definitions

    result = generate_city(tmp_path, n_patches=3000, seed=3, fmt="gpkg")
    assert result.counts["landuse"] == 3000
    assert pyogrio.read_info(tmp_path / "landuse.gpkg", layer="landuse")["features"] == 3000
    assert {d.layer.name for d in load_definitions(tmp_path)} == {f"city_{n}" for n in result.files}


# ---- districts and datums -----------------------------------------------------------------------


def test_gcj02_inverse_is_exact_and_explains_the_cnmaps_offset() -> None:
    raw = read_districts(undo_gcj02=False)
    moved = read_districts()
    xy, w = shapely.get_coordinates(raw.geometry), shapely.get_coordinates(moved.geometry)
    assert gcj02_residual_deg(xy[:, 0], xy[:, 1], w[:, 0], w[:, 1]) < 1e-10
    lon, lat = wgs84_to_gcj02(np.array([118.0619]), np.array([24.4475]))
    back = gcj02_to_wgs84(lon, lat)
    assert abs(back[0][0] - 118.0619) < 1e-10 and abs(back[1][0] - 24.4475) < 1e-10
    # Gulangyu (鼓浪屿), published WGS84 position 24.4475 N 118.0619 E: the raw data sit ~600 m off, the
    # shifted data ~100 m (the island's centroid vs the published point)
    from pyproj import Geod

    geod = Geod(ellps="WGS84")

    def gulangyu(districts) -> shapely.Point:
        parts = shapely.get_parts(districts.geometry[list(districts.adcode).index("350203")])
        near = shapely.distance(parts, shapely.Point(118.064, 24.446))
        return parts[np.argmin(near)].centroid

    raw_offset = geod.inv(118.0619, 24.4475, *gulangyu(raw).coords[0])[2]
    moved_offset = geod.inv(118.0619, 24.4475, *gulangyu(moved).coords[0])[2]
    assert raw_offset > 500.0 and moved_offset < 200.0


def test_helmert_round_trip_and_the_layer_definition_agree() -> None:
    definition = yaml.safe_load((LAYERS / "dev_boundary.yaml").read_text(encoding="utf-8"))
    assert definition["transform"]["helmert7"] == datum.XIAN80_TO_CGCS2000.model_dump()
    truth = pyogrio.read_dataframe(DEMO_DIR / "truth" / "dev_boundary_4548.geojson")
    delivered = pyogrio.read_dataframe(DEMO_DIR / "dev_boundary.zip")
    assert delivered.crs.to_epsg() == 2384 and truth.crs.to_epsg() == 4548
    back = datum.to_cgcs2000(np.asarray(delivered.geometry.values))
    expected = shapely.get_coordinates(np.asarray(truth.geometry.values))
    assert np.abs(shapely.get_coordinates(back) - expected).max() < 1e-3
    # without the parameters (PROJ's ballpark: same lat/lon) the boundary would be tens of metres off
    from pyproj import Transformer

    ballpark = Transformer.from_crs(2384, 4548, always_xy=True)
    x, y = ballpark.transform(*shapely.get_coordinates(np.asarray(delivered.geometry.values)).T)
    assert np.hypot(x - expected[:, 0], y - expected[:, 1]).min() > 10.0


# ---- the committed demo files -------------------------------------------------------------------


def test_demo_districts_are_xiamens_six() -> None:
    districts = pyogrio.read_dataframe(DEMO_DIR / "districts.geojson")
    assert districts.crs.to_epsg() == 4490
    assert sorted(districts["adcode"]) == ["350203", "350205", "350206", "350211", "350212", "350213"]
    assert dict(zip(districts["adcode"], districts["name"], strict=True)) == XIAMEN_DISTRICTS
    assert shapely.is_valid(np.asarray(districts.geometry.values)).all()


def test_demo_landuse_is_gbk_without_cpg() -> None:
    shp = DEMO_DIR / "landuse_plan.shp"
    assert not shp.with_suffix(".cpg").exists()
    assert pyogrio.read_info(shp)["crs"] == "EPSG:4548"
    raw = shp.with_suffix(".dbf").read_bytes()
    assert "乔木林地".encode("gbk") in raw or "水田".encode("gbk") in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    right = pyogrio.read_dataframe(shp, encoding="GB18030")
    tdgh = plans.read_crosswalk("tdgh_2017")
    assert all(tdgh[code][0] == name for code, name in zip(right["DLBM"], right["DLMC"], strict=True))
    wrong = pyogrio.read_dataframe(shp)  # GDAL falls back to ISO-8859-1: garbled, no error
    assert not (wrong["DLMC"] == right["DLMC"]).any()
    assert 2000 <= len(right) <= 3000


def test_demo_formats_crs_and_sizes() -> None:
    expected = {
        "urban_plan.gpkg": ("urban_plan", 4548),
        "basic_farmland.gpkg": ("basic_farmland", 4490),
        "red_line.shp": (None, 4490),
        "dev_boundary.zip": (None, 2384),
        "projects.geojson": (None, 4490),
    }
    for name, (layer, epsg) in expected.items():
        frame = pyogrio.read_dataframe(DEMO_DIR / name, layer=layer)
        assert frame.crs.to_epsg() == epsg, name
        assert 0 < len(frame) <= 5000, name
        assert shapely.is_valid(np.asarray(frame.geometry.values)).all(), name
    assert (DEMO_DIR / "red_line.cpg").read_text().strip() == "GBK"
    red = pyogrio.read_dataframe(DEMO_DIR / "red_line.shp")
    assert red["HXMC"].str.contains("生态保护红线").all()
    with zipfile.ZipFile(DEMO_DIR / "dev_boundary.zip") as bundle:
        assert sorted(bundle.namelist()) == sorted(f"dev_boundary{s}" for s in (".shp", ".shx", ".dbf", ".prj", ".cpg"))
    projects = json.loads((DEMO_DIR / "projects.geojson").read_text(encoding="utf-8"))
    assert projects["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4490"
    assert set(projects["features"][0]["properties"]) >= {"XMBH", "XMMC", "JSDW", "FZR", "SFZH", "LXDH", "YDDM", "PZRQ"}
    vectors = [p for p in DEMO_DIR.rglob("*") if p.is_file() and p.parent.name != "rasters"]
    assert sum(p.stat().st_size for p in vectors) < 5_000_000


def test_committed_demo_is_what_the_generator_writes(tmp_path: Path) -> None:
    made_with = json.loads((DEMO_DIR / "generated_with.json").read_text(encoding="utf-8"))
    if {k: v for k, v in made_with.items() if k != "seed"} != library_versions():
        pytest.skip(f"the demo was generated with other library versions ({made_with}): bytes may differ")
    files = write_demo(tmp_path)
    for paths in files.values():
        for path in paths:
            committed = DEMO_DIR / path.relative_to(tmp_path)
            assert committed.read_bytes() == path.read_bytes(), (
                f"{committed} is stale: run python -m geoservice.datagen demo"
            )


def test_layer_definitions_validate() -> None:
    from geoservice.ingest.definition import load_definitions

    definitions = {d.layer.name: d for d in load_definitions(LAYERS)}
    assert set(definitions) >= {
        "districts",
        "landuse",
        "urban_plan",
        "red_line",
        "basic_farmland",
        "dev_boundary",
        "projects",
    }
    for definition in definitions.values():
        assert definition.source_path.exists(), definition.file
