"""Serving's pieces without a server: CRS names and axis order, request geometries, filters, page memory."""

from __future__ import annotations

import time

import pytest
import shapely

from geoservice.serve.bind import Bindings
from geoservice.serve.catalog import Collection, Field
from geoservice.serve.cql import FilterError, filter_sql, parse_filter
from geoservice.serve.crs import CRS84, CrsCatalog, canonical_uri, serving_crs
from geoservice.serve.paging import TOO_MANY, PagingMemory
from geoservice.serve.spatial import GeometryError, bbox_geometry, to_working

EXTENT = (589263.0, 2702318.0, 642849.0, 2755976.0)  # the demo data, EPSG:4548 easting/northing
COLLECTION = Collection("landuse", "t", "d", (), "feature", "version_id", 1,
                        (Field("class_code", "string"), Field("area_m2", "number", nullable=False),
                         Field("DLMC", "string", attribute=True), Field("details", "object")), 10, EXTENT)


@pytest.mark.parametrize("text", ["http://www.opengis.net/def/crs/EPSG/0/4326", "https://www.opengis.net/def/crs/EPSG/0/4326",
                                  "urn:ogc:def:crs:EPSG::4326", "[EPSG:4326]", "EPSG:4326"])
def test_crs_reference_forms(text: str) -> None:
    assert canonical_uri(text) == "http://www.opengis.net/def/crs/EPSG/0/4326"


def test_axis_order_of_the_served_crs() -> None:
    first_axis_north = {name: serving_crs(name).yx for name in
                        ("OGC:CRS84", "EPSG:4326", "EPSG:4490", "EPSG:4548", "EPSG:4549", "EPSG:4550", "EPSG:3857")}
    assert first_axis_north == {"OGC:CRS84": False, "EPSG:4326": True, "EPSG:4490": True, "EPSG:4548": True,
                                "EPSG:4549": True, "EPSG:4550": True, "EPSG:3857": False}
    catalog = CrsCatalog(["OGC:CRS84", "EPSG:4548"], "EPSG:4548")
    assert catalog.default.uri == CRS84 and catalog.lookup("EPSG:3857") is None and catalog.lookup("nonsense") is None


def test_bbox_axis_order_and_antimeridian() -> None:
    lat_first = bbox_geometry([24.5, 118.0, 24.6, 118.1], serving_crs("EPSG:4326"))
    assert lat_first.bounds == (118.0, 24.5, 118.1, 24.6)
    assert bbox_geometry([1, 2, 0, 3, 4, 9], serving_crs("OGC:CRS84")).bounds == (1, 2, 3, 4)
    across = bbox_geometry([170, -10, -170, 10], serving_crs("OGC:CRS84"))
    assert across.geom_type == "MultiPolygon" and across.area == pytest.approx(20 * 20)
    with pytest.raises(GeometryError):
        bbox_geometry([0, 10, 1, 5], serving_crs("OGC:CRS84"))
    with pytest.raises(GeometryError):
        bbox_geometry([10, 0, 5, 1], serving_crs("EPSG:3857"))


def test_request_geometries_are_clipped_to_the_data_region() -> None:
    crs84 = serving_crs("OGC:CRS84")
    world = to_working(shapely.box(-180, -90, 180, 90), crs84, EXTENT, 4548)
    assert world.contains(shapely.box(*EXTENT))  # not collapsed to a line: it still holds all the data
    assert to_working(shapely.box(-60, -10, -50, 0), crs84, EXTENT, 4548).is_empty
    small = to_working(shapely.box(118.0, 24.5, 118.01, 24.51), crs84, EXTENT, 4548)
    assert 1_100_000 < small.area < 1_140_000  # 1.01 km × 1.11 km, a densified (slightly rotated) quadrilateral
    assert to_working(shapely.box(118.0, 24.5, 118.01, 24.51), crs84, None, 4548).is_empty  # no data: no match
    with pytest.raises(GeometryError):
        to_working(shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]), crs84, EXTENT, 4548)


def _where(text: str, lang: str = "cql2-text") -> str:
    bindings = Bindings()
    composed = filter_sql(parse_filter(text, lang), COLLECTION, serving_crs("OGC:CRS84"), 4548, bindings)
    return repr(composed), bindings.values


def test_filters_bind_every_value() -> None:
    text, values = _where("class_code = '07; DROP TABLE feature --' AND area_m2 > 5")
    assert set(values.values()) == {"07; DROP TABLE feature --", 5} and "DROP" not in text
    text, _ = _where("DLMC LIKE '果%'")
    assert "attributes ->>" in text


@pytest.mark.parametrize("bad", ["class_code = 5", "area_m2 = 'x'", "details = 'x'", "nosuch = 1", "class_code",
                                 "S_INTERSECTS(area_m2, POINT(1 2))", "FOO(class_code) = 'x'", "class_code IN ('a', 2)"])
def test_filters_checked_against_queryables_and_types(bad: str) -> None:
    with pytest.raises(FilterError):
        _where(bad)


def test_cql2_json_bbox_and_three_argument_between() -> None:
    _, values = _where('{"op":"s_intersects","args":[{"property":"geometry"},{"bbox":[118.0,24.5,118.01,24.51]}]}', "cql2-json")
    geometry = shapely.from_wkb(next(v for v in values.values() if isinstance(v, bytes)))
    assert 1_100_000 < geometry.area < 1_140_000
    _, values = _where('{"op":"between","args":[{"property":"area_m2"},1,5]}', "cql2-json")
    assert sorted(values.values()) == [1, 5]
    for bad in ("{", '{"op":"=","args":[{"property":"class_code"}]}', '{"bbox":[1,2]}'):
        with pytest.raises(FilterError):
            _where(bad, "cql2-json")


def test_paging_memory_positions_counts_and_expiry() -> None:
    memory = PagingMemory(max_selections=2, ttl=0.2)
    assert memory.start("a", "id", 100) == (0, None)
    memory.remember_position("a", "id", 100, (57,))
    memory.remember_position("a", "id", 200, (130,))
    assert memory.start("a", "id", 200) == (200, (130,))
    assert memory.start("a", "id", 250) == (200, (130,))  # nearest before: keyset, then skip 50
    assert memory.start("a", "other order", 200) == (0, None)
    memory.remember_count("a", TOO_MANY)
    assert memory.count("a") == TOO_MANY
    memory.remember_count("b", 5)
    memory.remember_count("c", 6)  # evicts the least recently used selection
    assert memory.count("a") is None and memory.count("c") == 6
    time.sleep(0.25)
    assert memory.count("c") is None
