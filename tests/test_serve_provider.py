"""The provider on its own, over the demo database: keyset paging, counting limits, pygeoapi's interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pygeoapi.provider.base import ProviderInvalidQueryError, ProviderItemNotFoundError
from pygeoapi.util import CrsTransformSpec
from sql_helpers import query

from geoservice.db import connect_url
from geoservice.serve import read_served_collections
from geoservice.serve.config import pygeoapi_config
from geoservice.serve.crs import serving_crs
from geoservice.serve.provider import GeoserviceProvider
from geoservice.serve.query import PageRequest, Selection, SortKey
from geoservice.settings import Settings

CRS84 = serving_crs("OGC:CRS84")


@pytest.fixture(scope="module")
def definitions(demo_settings: Settings) -> dict[str, dict[str, Any]]:
    collections, url = read_served_collections(demo_settings)
    config = pygeoapi_config(demo_settings, collections, url)
    return {name: resource["providers"][0] for name, resource in config["resources"].items()}


def provider(definitions: dict[str, dict[str, Any]], name: str, **options: Any) -> GeoserviceProvider:
    definition = json.loads(json.dumps(definitions[name]))
    definition["geoservice"].update(options)
    return GeoserviceProvider(definition)


def explain_rows(settings: Settings, statement: Any) -> int:
    """Rows the statement's scan nodes read (EXPLAIN ANALYZE), summed over the plan."""
    conn = connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET max_parallel_workers_per_gather = 0")
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.sql.as_string(conn), statement.values)
            plan = cur.fetchone()[0][0]["Plan"]
    finally:
        conn.close()

    def scanned(node: dict) -> int:
        own = node["Actual Rows"] * node["Actual Loops"] if "Scan" in node["Node Type"] else 0
        return own + sum(scanned(child) for child in node.get("Plans", []))
    return scanned(plan)


def test_deep_pages_read_as_little_as_the_first(definitions: dict, demo_settings: Settings) -> None:
    basemap = provider(definitions, "basemap")
    selection, limit = Selection(), 500
    first = explain_rows(demo_settings, basemap.plan(PageRequest(selection, CRS84, limit, 0)).statement)
    for offset in range(0, 10 * limit, limit):  # a client following next links
        basemap.page(PageRequest(selection, CRS84, limit, offset, properties=()))
    deep = basemap.plan(PageRequest(selection, CRS84, limit, 10 * limit))
    assert deep.start == 10 * limit and "OFFSET" in deep.statement.sql.as_string(connect_url(demo_settings.database.url))
    assert deep.statement.values[[k for k in deep.statement.values][-1]] == 0  # keyset: no rows skipped
    assert explain_rows(demo_settings, deep.statement) <= first + 1
    cold = provider(definitions, "basemap").plan(PageRequest(Selection(equals=(("in_red_line", False),)), CRS84, limit, 5000))
    assert cold.start == 0  # a position never reached falls back to OFFSET (still correct)


def test_keyset_pages_equal_offset_pages(definitions: dict) -> None:
    landuse = provider(definitions, "landuse")
    sort = (SortKey("area_m2", descending=True),)
    walked = []
    for offset in range(0, 2500, 300):
        walked += landuse.page(PageRequest(Selection(), CRS84, 300, offset, sort, properties=())).features
    fresh = provider(definitions, "landuse").page(PageRequest(Selection(), CRS84, 2500, 0, sort, properties=())).features
    assert walked == fresh


def test_number_matched_exact_up_to_the_limit_then_left_out(definitions: dict, demo_settings: Settings) -> None:
    c = provider(definitions, "conflicts", exact_count_limit=100)
    run = c.collection.partition_key
    count = "SELECT count(*) FROM geoservice.conflict WHERE run_id = %s AND rule_id = %s"
    (many,), = query(demo_settings, count, run, "urban_construction_on_land_non_construction")
    (few,), = query(demo_settings, count, run, "construction_on_steep_slope")
    assert many > 100 and 0 < few <= 100
    assert c.page(PageRequest(Selection(equals=(("rule_id", "urban_construction_on_land_non_construction"),)),
                              CRS84, 10)).matched is None
    assert c.page(PageRequest(Selection(equals=(("rule_id", "construction_on_steep_slope"),)), CRS84, 10)).matched == few
    assert c.page(PageRequest(Selection(), CRS84, 10)).matched == c.collection.feature_count  # stored count


def test_pygeoapi_query_interface(definitions: dict) -> None:
    landuse = provider(definitions, "landuse")
    # pygeoapi hands the bbox over in the storage CRS's axis order (EPSG:4548: northing, easting)
    result = landuse.query(bbox=[2710000, 600000, 2716000, 606000], limit=500, properties=[("class_code", "0701")],
                           sortby=[{"property": "area_m2", "order": "-"}], select_properties=["class_code", "area_m2"])
    assert result["type"] == "FeatureCollection" and 0 < result["numberReturned"] == result["numberMatched"]
    assert all(f["properties"]["class_code"] == "0701" for f in result["features"])
    areas = [f["properties"]["area_m2"] for f in result["features"]]
    assert areas == sorted(areas, reverse=True)
    first = result["features"][0]["id"]
    spec = CrsTransformSpec(source_crs_uri="", source_crs_wkt="", target_crs_uri="http://www.opengis.net/def/crs/EPSG/0/4326",
                            target_crs_wkt="")
    lat, lon = landuse.get(first, crs_transform_spec=spec)["geometry"]["coordinates"][0][0][0]
    assert 24 < lat < 25 and 117 < lon < 119
    northing, easting = landuse.get(first)["geometry"]["coordinates"][0][0][0]  # no spec: the storage CRS
    assert 2_700_000 < northing < 2_760_000 and 580_000 < easting < 650_000
    with pytest.raises(ProviderItemNotFoundError):
        landuse.get(10**12)
    with pytest.raises(ProviderInvalidQueryError):
        landuse.query(properties=[("area_m2", "large")])
    assert landuse.query(resulttype="hits")["numberMatched"] == landuse.collection.feature_count


def test_fields_are_the_queryables(definitions: dict) -> None:
    fields = provider(definitions, "projects").get_fields()
    assert fields["class_code"] == {"type": "string"} and fields["area_m2"] == {"type": "number"}
    assert fields["PZRQ"]["format"] in ("date", "date-time")
    assert "details" not in provider(definitions, "conflicts").get_fields()  # an object: not queryable


def test_config_round_trips_through_yaml(demo_settings: Settings, tmp_path: Path) -> None:
    from geoservice.serve.config import write_config

    collections, url = read_served_collections(demo_settings)
    files = write_config(demo_settings, collections, url, tmp_path / "p.yml", "restricted")
    import yaml

    definition = yaml.safe_load(files.config.read_text(encoding="utf-8"))["resources"]["landuse"]["providers"][0]
    assert GeoserviceProvider(definition).collection == next(c for c in collections if c.name == "landuse")
