"""Each items parameter over HTTP against the demo database, checked with independent SQL."""

from __future__ import annotations

import json

import pytest
from servers import Server
from sql_helpers import query

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"
BBOX = (118.0, 24.5, 118.05, 24.55)  # Haicang/Huli, CRS84 lon/lat


def served_ids(served: Server, name: str, where: str = "true", *params: object) -> set[int]:
    """Ids of the served partition's features matching an SQL condition (computed by PostGIS directly)."""
    c = served.collections[name]
    rows = query(served.settings, f"SELECT id FROM geoservice.{c.table} WHERE {c.partition_column} = %s AND ({where})",
                 c.partition_key, *params)
    return {row[0] for row in rows}


def ids_of(collection: dict) -> set[int]:
    return {f["id"] for f in collection["features"]}


def error(served: Server, path: str, status: int, **params: object) -> str:
    response = served.get(path, **params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] and body["description"]
    for leak in ("psycopg2", "ERROR:", "LINE 1", "Traceback", "SELECT "):
        assert leak not in body["description"]
    return body["description"]


# -- limit, offset, paging -------------------------------------------------------------------------------------

def test_limit_default_explicit_and_capped(served: Server) -> None:
    assert len(served.items("landuse")["features"]) == 10
    assert len(served.items("landuse", limit=7)["features"]) == 7
    basemap = served.items("basemap", limit=20000, properties="", skipGeometry="true")
    assert len(basemap["features"]) == 10000 and basemap["numberMatched"] == len(served_ids(served, "basemap"))
    error(served, "/collections/landuse/items", 400, limit=0)
    error(served, "/collections/landuse/items", 400, limit="ten")
    error(served, "/collections/landuse/items", 400, offset=-1)


def test_next_links_walk_every_feature_once(served: Server) -> None:
    url, seen, pages = f"{served.url}/collections/basemap/items?limit=1500&properties=difference&skipGeometry=true", [], 0
    import requests

    while url:
        page = requests.get(url, timeout=60).json()
        seen += [f["id"] for f in page["features"]]
        assert page["numberReturned"] == len(page["features"])
        links = {link["rel"]: link["href"] for link in page["links"]}
        if pages:
            assert "prev" in links
        url, pages = links.get("next"), pages + 1
    assert len(seen) == len(set(seen)) and set(seen) == served_ids(served, "basemap")
    assert seen == sorted(seen) and pages == -(-len(seen) // 1500)


def test_sorted_paging_by_a_property_is_complete(served: Server) -> None:
    first = served.items("landuse", limit=600, sortby="-area_m2,id", properties="area_m2", skipGeometry="true")
    rest = served.items("landuse", limit=5000, offset=600, sortby="-area_m2,id", properties="area_m2", skipGeometry="true")
    features = first["features"] + rest["features"]
    areas = [f["properties"]["area_m2"] for f in features]
    assert areas == sorted(areas, reverse=True) and len({f["id"] for f in features}) == first["numberMatched"]


def test_offset_jump_without_walking(served: Server) -> None:
    everything = [f["id"] for f in served.items("landuse", limit=3000, properties="", skipGeometry="true")["features"]]
    jumped = served.items("landuse", limit=5, offset=1234, properties="", skipGeometry="true")
    assert [f["id"] for f in jumped["features"]] == everything[1234:1239]
    beyond = served.items("landuse", limit=5, offset=10**6)
    assert beyond["features"] == [] and not any(link["rel"] == "next" for link in beyond["links"])


# -- numberMatched ------------------------------------------------------------------------------------------

def test_number_matched_exact_with_and_without_filters(served: Server) -> None:
    assert served.items("landuse", limit=1)["numberMatched"] == len(served_ids(served, "landuse"))
    filtered = served.items("landuse", limit=1, class_code="0701")
    assert filtered["numberMatched"] == len(served_ids(served, "landuse", "class_code = '0701'"))
    again = served.items("landuse", limit=1, offset=3, class_code="0701")  # remembered count on a later page
    assert again["numberMatched"] == filtered["numberMatched"]


# -- bbox and bbox-crs --------------------------------------------------------------------------------------

def test_bbox_in_crs84_matches_postgis(served: Server) -> None:
    got = served.items("landuse", bbox=",".join(map(str, BBOX)), limit=1000)
    want = served_ids(served, "landuse", "ST_Intersects(ST_Transform(geom, 4326), ST_MakeEnvelope(%s, %s, %s, %s, 4326))", *BBOX)
    assert ids_of(got) == want and got["numberMatched"] == len(want) > 10


def test_bbox_crs_axis_orders(served: Server) -> None:
    want = ids_of(served.items("landuse", bbox=",".join(map(str, BBOX)), limit=1000))
    lat_lon = f"{BBOX[1]},{BBOX[0]},{BBOX[3]},{BBOX[2]}"
    assert ids_of(served.items("landuse", bbox=lat_lon, **{"bbox-crs": EPSG.format(4326)}, limit=1000)) == want
    assert ids_of(served.items("landuse", bbox=lat_lon, **{"bbox-crs": EPSG.format(4490)}, limit=1000)) == want
    # EPSG:4548 is northing-first: bbox = minN, minE, maxN, maxE
    box = (600000.0, 2710000.0, 606000.0, 2716000.0)  # easting/northing
    got = served.items("landuse", bbox=f"{box[1]},{box[0]},{box[3]},{box[2]}", **{"bbox-crs": EPSG.format(4548)}, limit=1000)
    assert ids_of(got) == served_ids(served, "landuse", "ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4548))", *box)
    mercator = served.items("landuse", bbox="13135699,2821000,13141000,2827000", **{"bbox-crs": EPSG.format(3857)}, limit=1000)
    assert ids_of(mercator) == served_ids(
        served, "landuse", "ST_Intersects(ST_Transform(geom, 3857), ST_MakeEnvelope(13135699, 2821000, 13141000, 2827000, 3857))")


def test_bbox_covering_the_world_and_nothing(served: Server) -> None:
    assert served.items("conflicts", bbox="-180,-90,180,90", limit=1)["numberMatched"] == len(served_ids(served, "conflicts"))
    far = served.items("conflicts", bbox="-60,-10,-50,0")
    assert far["features"] == [] and far["numberMatched"] == 0


@pytest.mark.parametrize("params", [{"bbox": "1,2,3"}, {"bbox": "a,b,c,d"}, {"bbox": "118,25,118.1,24"},
                                    {"bbox": "118,24,118.1,25", "bbox-crs": "EPSG:9999"}, {"bbox-crs": CRS84},
                                    {"bbox": "nan,1,2,3"}])
def test_bad_bbox_is_400(served: Server, params: dict) -> None:
    error(served, "/collections/landuse/items", 400, **params)


# -- crs and Content-Crs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("srid,swap", [(None, False), (4326, True), (4490, True), (4548, True), (4549, True),
                                       (4550, True), (3857, False)])
def test_crs_coordinates_and_axis_order(served: Server, srid: int | None, swap: bool) -> None:
    c = served.collections["red_line"]
    (fid, x, y), = query(served.settings, (
        "SELECT id, ST_X(p), ST_Y(p) FROM (SELECT id, ST_PointN(ST_ExteriorRing(ST_GeometryN(ST_Transform(geom, %s), 1)), 1) p "
        "FROM geoservice.feature WHERE version_id = %s ORDER BY id LIMIT 1) s"), srid or 4326, c.partition_key)
    params = {"crs": EPSG.format(srid)} if srid else {}
    response = served.get(f"/collections/red_line/items/{fid}", **params)
    assert response.headers["Content-Crs"] == f"<{EPSG.format(srid) if srid else CRS84}>"
    first = response.json()["geometry"]["coordinates"][0][0][0]
    expected = (y, x) if swap else (x, y)
    tolerance = 1e-7 if srid in (None, 4326, 4490) else 1e-3
    assert first == pytest.approx(expected, abs=tolerance)
    listed = served.items("red_line", limit=1, **params)
    assert listed["features"][0]["geometry"]["coordinates"][0][0][0] == pytest.approx(expected, abs=tolerance)


def test_unknown_crs_is_400(served: Server) -> None:
    error(served, "/collections/landuse/items", 400, crs="http://www.opengis.net/def/crs/EPSG/0/32650")
    error(served, "/collections/landuse/items/1", 400, crs="nonsense")


# -- property filters, CQL2 text and JSON ---------------------------------------------------------------------

def test_property_filter(served: Server) -> None:
    got = served.items("landuse", class_code="0701", limit=1000)
    assert ids_of(got) == served_ids(served, "landuse", "class_code = '0701'")
    assert ids_of(served.items("basemap", in_red_line="true", limit=5000)) == served_ids(served, "basemap", "in_red_line")
    assert ids_of(served.items("landuse", DLMC="果园", limit=1000)) == served_ids(served, "landuse", "attributes->>'DLMC' = '果园'")
    error(served, "/collections/landuse/items", 400, source_row="abc")
    error(served, "/collections/landuse/items", 400, nonsense="1")


CQL = [
    ("landuse", "class_code = '0701'", "class_code = '0701'"),
    ("landuse", "class_code LIKE '07%' AND area_m2 > 500000", "class_code LIKE '07%%' AND area_m2 > 500000"),
    ("landuse", "class_code IN ('0101', '0102') OR NOT (area_m2 >= 20000)", "class_code IN ('0101', '0102') OR NOT area_m2 >= 20000"),
    ("landuse", "area_m2 BETWEEN 100000 AND 200000", "area_m2 BETWEEN 100000 AND 200000"),
    ("landuse", "CASEI(DLMC) = CASEI('果园')", "attributes->>'DLMC' = '果园'"),
    ("landuse", "CASEI(DLMC) LIKE CASEI('果%')", "attributes->>'DLMC' LIKE '果%%'"),
    ("landuse", "class_code IN (original_code, '0101')", "class_code IN (original_code, '0101')"),
    ("conflicts", "code_b IS NULL", "code_b IS NULL"),
    ("basemap", "red_line_m2 > farmland_m2", "red_line_m2 > farmland_m2"),
    ("landuse", "S_INTERSECTS(geometry, POINT(118.02 24.52))",
     "ST_Intersects(geom, ST_Transform(ST_SetSRID(ST_MakePoint(118.02, 24.52), 4326), 4548))"),
    ("landuse", "S_INTERSECTS(geometry, BBOX(118.0, 24.5, 118.05, 24.55))",
     "ST_Intersects(ST_Transform(geom, 4326), ST_MakeEnvelope(118.0, 24.5, 118.05, 24.55, 4326))"),
    ("landuse", "S_WITHIN(geometry, POLYGON((118 24.5, 118.1 24.5, 118.1 24.6, 118 24.6, 118 24.5)))",
     "ST_Within(ST_Transform(geom, 4326), ST_MakeEnvelope(118, 24.5, 118.1, 24.6, 4326))"),
    ("projects", "PZRQ > DATE('2022-06-30')", "(attributes->>'PZRQ')::date > '2022-06-30'"),
]


@pytest.mark.parametrize("name,cql,where", CQL)
def test_cql2_text(served: Server, name: str, cql: str, where: str) -> None:
    got = served.items(name, filter=cql, limit=10000, properties="", skipGeometry="true")
    want = served_ids(served, name, where)
    assert ids_of(got) == want and got["numberMatched"] == len(want) and want


CQL_JSON = [
    ("landuse", {"op": "and", "args": [{"op": "=", "args": [{"property": "class_code"}, "0701"]},
                                       {"op": ">", "args": [{"property": "area_m2"}, 300000]}]},
     "class_code = '0701' AND area_m2 > 300000"),
    ("landuse", {"op": "between", "args": [{"property": "area_m2"}, 100000, 200000]}, "area_m2 BETWEEN 100000 AND 200000"),
    ("landuse", {"op": "in", "args": [{"property": "class_code"}, ["0101", "0102"]]}, "class_code IN ('0101', '0102')"),
    ("landuse", {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [118.0, 24.5, 118.05, 24.55]}]},
     "ST_Intersects(ST_Transform(geom, 4326), ST_MakeEnvelope(118.0, 24.5, 118.05, 24.55, 4326))"),
    ("landuse", {"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [118.02, 24.52]}]},
     "ST_Intersects(geom, ST_Transform(ST_SetSRID(ST_MakePoint(118.02, 24.52), 4326), 4548))"),
]


@pytest.mark.parametrize("name,cql,where", CQL_JSON)
def test_cql2_json(served: Server, name: str, cql: dict, where: str) -> None:
    got = served.items(name, filter=json.dumps(cql), **{"filter-lang": "cql2-json"}, limit=10000, skipGeometry="true")
    assert ids_of(got) == served_ids(served, name, where)


def test_filter_crs_lat_first(served: Server) -> None:
    got = served.items("landuse", filter="S_INTERSECTS(geometry, POINT(24.52 118.02))", **{"filter-crs": EPSG.format(4326)})
    assert ids_of(got) == ids_of(served.items("landuse", filter="S_INTERSECTS(geometry, POINT(118.02 24.52))"))
    assert len(ids_of(got)) == 1


@pytest.mark.parametrize("cql", ["class_code = ", "((", "nosuch = 1", "class_code = 7", "area_m2 LIKE 'x%'",
                                 "S_INTERSECTS(class_code, POINT(1 2))", "FOO(class_code) = 'x'",
                                 "S_INTERSECTS(geometry, POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))", "T_AFTER(PZRQ, DATE('2020-01-01'))"])
def test_bad_filters_are_400(served: Server, cql: str) -> None:
    error(served, "/collections/landuse/items", 400, filter=cql)


def test_bad_filter_language_and_json(served: Server) -> None:
    error(served, "/collections/landuse/items", 400, filter="class_code = '07'", **{"filter-lang": "ecql"})
    error(served, "/collections/landuse/items", 400, filter="{not json", **{"filter-lang": "cql2-json"})
    error(served, "/collections/landuse/items", 400, filter="class_code = '07'", **{"filter-crs": "EPSG:1"})


# -- sortby, properties, skipGeometry, datetime ------------------------------------------------------------------

def test_sortby(served: Server) -> None:
    areas = [f["properties"]["area_m2"] for f in served.items("landuse", sortby="-area_m2", limit=50)["features"]]
    assert areas == sorted(areas, reverse=True)
    names = [f["properties"]["DLMC"] for f in served.items("landuse", sortby="DLMC,-id", limit=100)["features"]]
    assert names == sorted(names)
    error(served, "/collections/landuse/items", 400, sortby="nosuch")


def test_properties_and_skip_geometry(served: Server) -> None:
    got = served.items("conflicts", properties="rule_id,area_m2", skipGeometry="true", limit=3)
    assert all(set(f["properties"]) == {"rule_id", "area_m2"} and f["geometry"] is None for f in got["features"])
    full = served.items("landuse", limit=1)["features"][0]
    assert full["geometry"]["type"] == "MultiPolygon" and "DLMC" in full["properties"]
    error(served, "/collections/landuse/items", 400, properties="nosuch")
    error(served, "/collections/landuse/items", 400, skipGeometry="maybe")


def test_datetime(served: Server) -> None:
    got = served.items("projects", datetime="2020-01-01/2020-12-31", limit=1000)
    want = served_ids(served, "projects", "(attributes->>'PZRQ')::date BETWEEN '2020-01-01' AND '2020-12-31'")
    assert ids_of(got) == want and want
    assert ids_of(served.items("projects", datetime="../2019-12-31", limit=1000)) == served_ids(
        served, "projects", "(attributes->>'PZRQ')::date <= '2019-12-31'")
    error(served, "/collections/projects/items", 400, datetime="yesterday")
    error(served, "/collections/projects/items", 400, datetime="2021-01-01/2020-01-01")


# -- single items, unknown things, queryables, conformance ----------------------------------------------------

def test_single_item(served: Server) -> None:
    first = served.items("conflicts", limit=1)["features"][0]
    item = served.get(f"/collections/conflicts/items/{first['id']}")
    assert item.status_code == 200 and item.headers["Content-Type"] == "application/geo+json"
    body = item.json()
    assert body["id"] == first["id"] and body["properties"] == first["properties"]
    assert {link["rel"] for link in body["links"]} >= {"self", "alternate", "collection"}
    error(served, "/collections/conflicts/items/999999999", 404)
    error(served, "/collections/conflicts/items/not-a-number", 404)
    error(served, "/collections/nosuch/items/1", 404)
    error(served, "/collections/nosuch/items", 404)
    error(served, "/collections/nosuch", 404)


def test_queryables(served: Server) -> None:
    response = served.get("/collections/landuse/queryables", f="json")
    assert response.status_code == 200
    properties = response.json()["properties"]
    assert properties["class_code"]["type"] == "string" and properties["area_m2"]["type"] == "number"
    assert properties["geometry"]["format"] == "geometry-any" and properties["DLMC"]["type"] == "string"
    assert served.get("/collections/projects/queryables", f="json").json()["properties"]["PZRQ"]["format"] in ("date", "date-time")


def test_conformance_is_truthful(served: Server) -> None:
    declared = set(served.get("/conformance", f="json").json()["conformsTo"])
    spec = "http://www.opengis.net/spec"
    for uri in ("ogcapi-features-1/1.0/conf/core", "ogcapi-features-1/1.0/conf/geojson", "ogcapi-features-2/1.0/conf/crs",
                "ogcapi-features-3/1.0/conf/filter", "ogcapi-features-3/1.0/conf/features-filter",
                "ogcapi-features-3/1.0/conf/queryables", "cql2/1.0/conf/cql2-text", "cql2/1.0/conf/cql2-json",
                "cql2/1.0/conf/basic-cql2", "cql2/1.0/conf/basic-spatial-functions", "cql2/1.0/conf/spatial-functions"):
        assert f"{spec}/{uri}" in declared
    assert f"{spec}/ogcapi-features-4/1.0/conf/create-replace-delete" in declared  # on written collections: test_serve_edits
    assert not any("temporal-functions" in uri or "accent" in uri for uri in declared)
