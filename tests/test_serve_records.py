"""The open-data catalogue (开放目录) over HTTP, checked as an OGC API – Records client would: landing page,
conformance, the catalogue collection, queryables, items and one record, searches (q, bbox, type, keywords, datetime,
queryables, sortby, paging), HTML and DCAT; and graded like everything else: a caller's catalogue lists only the
collections it may read, and a hidden record is 404 exactly as an unknown one."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from geoservice.errors import ConfigError
from geoservice.ingest import activate_version, ingest_layer, list_versions, load_definition
from servers import ROOT, Server

CATALOG = "/collections/catalog"
PUBLIC = {"districts", "basemap"}
RECORDS = "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf"
#: the parts of OGC API – Records' recordGeoJSON.yaml a record must have
RECORD_SCHEMA = {
    "type": "object", "required": ["id", "type", "time", "geometry", "properties", "links"],
    "properties": {
        "id": {"type": "string"}, "type": {"enum": ["Feature"]},
        "time": {"oneOf": [{"type": "null"}, {"type": "object"}]},
        "geometry": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["type", "coordinates"]}]},
        "properties": {"type": "object", "required": ["type", "title"], "properties": {
            "type": {"type": "string", "maxLength": 64}, "title": {"type": "string"}, "description": {"type": "string"},
            "keywords": {"type": "array", "items": {"type": "string"}},
            "themes": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["concepts", "scheme"],
                       "properties": {"concepts": {"type": "array", "items": {"type": "object", "required": ["id"]}}}}},
            "formats": {"type": "array", "items": {"type": "object", "required": ["name", "mediaType"]}},
            "contacts": {"type": "array", "items": {"type": "object"}},
            "language": {"type": "object", "required": ["code"]},
            "license": {"type": "string", "maxLength": 64},
            "created": {"type": "string", "format": "date-time"}, "updated": {"type": "string", "format": "date-time"}}},
        "links": {"type": "array", "items": {"type": "object", "required": ["href", "rel"]}}}}


def _ids(served: Server, as_: str | None = "tester", **params: object) -> list[str]:
    response = served.get(f"{CATALOG}/items", as_=as_, limit=1000, **params)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["features"]]


def test_landing_page_and_conformance_lead_to_the_catalogue(served: Server) -> None:
    landing = served.get("/", as_=None, f="json").json()
    assert any(link["href"] == f"{served.url}{CATALOG}" for link in landing["links"])
    assert f"{served.url}{CATALOG}/items?f=html" in served.get("/", as_=None, f="html").text
    conforms = set(served.get("/conformance", as_=None).json()["conformsTo"])
    assert {f"{RECORDS}/{c}" for c in ("core", "record-core", "record-collection", "searchable-catalog", "json",
                                       "html")} <= conforms


def test_the_catalogue_is_a_record_collection(served: Server) -> None:
    response = served.get(CATALOG, as_=None)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    catalogue = response.json()
    assert catalogue["id"] == "catalog" and catalogue["itemType"] == "record" and catalogue["type"] == "Catalog"
    rels = {link["rel"]: link["href"] for link in catalogue["links"] if link["type"] != "text/html"}
    assert rels["items"].endswith(f"{CATALOG}/items") and rels["self"] == f"{served.url}{CATALOG}"
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/queryables"].endswith(f"{CATALOG}/queryables")
    west, south, east, north = catalogue["extent"]["spatial"]["bbox"][0]
    assert 117 < west < east < 119 and 24 < south < north < 25  # Xiamen
    assert "开放目录" in served.get(CATALOG, as_=None, f="html").text


def test_queryables(served: Server) -> None:
    response = served.get(f"{CATALOG}/queryables", as_=None)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    assert schema["$id"] == f"{served.url}{CATALOG}/queryables" and schema["type"] == "object"
    assert {"title", "description", "keywords", "type", "geometry", "openness", "updateFrequency", "grade"} <= set(
        schema["properties"])
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "openness" in served.get(f"{CATALOG}/queryables", as_=None, f="html").text


def test_one_record_per_collection_with_what_the_seeds_ask_for(served: Server) -> None:
    body = served.get(f"{CATALOG}/items", limit=1000).json()
    assert body["type"] == "FeatureCollection" and body["numberMatched"] == body["numberReturned"] == len(body["features"])
    records = {r["id"]: r for r in body["features"]}
    assert set(records) == set(served.collections)
    for record in records.values():
        jsonschema.validate(record, RECORD_SCHEMA, format_checker=jsonschema.FormatChecker())
        props = record["properties"]
        assert props["type"] == "dataset" and props["grade"] == served.collections[record["id"]].grade
        assert {"GeoJSON", "HTML", "CSV", "JSON-LD", "MVT"} <= {f["name"] for f in props["formats"]}
        assert props["contacts"] and props["updateFrequency"] and props["versions"]
        assert any(link["rel"] == "self" and link["href"].endswith(f"{CATALOG}/items/{record['id']}")
                   for link in record["links"])
        assert any(link["href"] == f"{served.url}/collections/{record['id']}" for link in record["links"])
    landuse = records["landuse"]["properties"]
    assert landuse["openness"] == "medium" and landuse["updateFrequency"] == "annual"
    assert "GPKG" in {f["name"] for f in landuse["formats"]}
    codes = {c["id"] for c in landuse["themes"][0]["concepts"]}
    features = served.get("/collections/landuse/items", limit=10000, properties="class_code").json()["features"]
    stored = {f["properties"]["class_code"] for f in features} - {None}
    assert codes == stored
    version = next(v for v in landuse["versions"] if v["active"])
    assert version["features"] == served.collections["landuse"].feature_count and version["date"] == landuse["updated"]
    districts = records["districts"]
    assert districts["properties"]["license"] == "MIT" and districts["properties"]["openness"] == "high"
    assert any(link["rel"] == "license" and "opensource.org" in link["href"] for link in districts["links"])
    assert records["basemap"]["properties"]["versions"][-1]["active"]
    one = served.get(f"{CATALOG}/items/landuse")
    assert one.status_code == 200 and one.headers["content-type"].startswith("application/geo+json")
    assert one.json()["properties"] == records["landuse"]["properties"]
    page = served.get(f"{CATALOG}/items/landuse", f="html")
    assert page.status_code == 200 and "开放优先级" in page.text and "逐步开放" in page.text


def test_search(served: Server) -> None:
    every = set(served.collections)
    assert set(_ids(served)) == every
    red = set(_ids(served, q="红线"))
    assert "red_line" in red and not red & {"landuse", "districts", "projects"}  # the conflicts' rules name it too
    assert set(_ids(served, q="ECOLOGICAL PROTECTION RED")) == {"red_line"}  # case-insensitive
    assert set(_ids(served, q="ecological protection red,行政区")) == {"red_line", "districts"}  # comma: any term
    assert _ids(served, q="no such words") == []
    assert _ids(served, keywords="districts") == ["districts"]
    assert set(_ids(served, type="dataset")) == every and _ids(served, type="service") == []
    assert set(_ids(served, bbox="117.5,24.0,118.8,25.0")) == {n for n, c in served.collections.items() if c.crs84_extent}
    assert _ids(served, bbox="10,10,11,11") == []
    assert set(_ids(served, openness="high,low")) == {"districts", "red_line", "basic_farmland", "projects", "conflicts"}
    assert _ids(served, grade="public", sortby="-id") == sorted(PUBLIC, reverse=True)
    assert _ids(served, datetime="1990-01-01/1990-12-31") == []
    assert set(_ids(served, datetime="2000-01-01/..")) == every
    assert _ids(served, ids="landuse,nothing") == ["landuse"]
    assert _ids(served, externalIds="urn:x:1") == []
    html = served.get(f"{CATALOG}/items", f="html", q="红线")
    assert html.status_code == 200 and "生态保护红线" in html.text and "厦门市行政区" not in html.text
    for params, message in (({"color": "red"}, "unknown parameter"), ({"bbox": "1,2,3"}, "bbox"),
                            ({"limit": 0}, "limit"), ({"sortby": "colour"}, "sortby"), ({"f": "xml"}, "format"),
                            ({"datetime": "yesterday"}, "datetime")):
        response = served.get(f"{CATALOG}/items", **params)
        assert response.status_code == 400 and message in response.json()["description"], params


def test_paging_follows_next_links(served: Server) -> None:
    import requests

    from servers import bearer

    seen, url = [], f"{served.url}{CATALOG}/items?limit=2"
    while url:
        page = requests.get(url, headers=bearer("tester"), timeout=60).json()
        assert page["numberReturned"] <= 2 and page["numberMatched"] == len(served.collections)
        seen += [r["id"] for r in page["features"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    assert sorted(seen) == sorted(served.collections) and len(seen) == len(set(seen))


def _named(text: str, name: str) -> str:
    """The text with the quoted name (in JSON or HTML) replaced by X."""
    return text.replace(f"'{name}'", "X").replace(f"&#39;{name}&#39;", "X")


def test_a_public_caller_sees_public_records_only(served: Server) -> None:
    assert set(_ids(served, as_=None)) == PUBLIC
    assert set(_ids(served, as_="outsider")) == PUBLIC
    assert set(_ids(served, as_="viewer")) == set(served.collections)
    assert _ids(served, as_=None, q="红线") == []
    for path in (f"{CATALOG}/items/landuse", f"{CATALOG}/items/conflicts"):
        for fmt in ("json", "html", "jsonld"):
            hidden = served.get(path, as_=None, f=fmt)
            unknown = served.get(f"{CATALOG}/items/no_such_layer", as_=None, f=fmt)
            assert hidden.status_code == unknown.status_code == 404, (path, fmt)
            name = path.rsplit("/", 1)[1]
            assert _named(hidden.text, name) == _named(unknown.text, "no_such_layer"), (path, fmt)
        assert served.get(path, as_="viewer").status_code == 200
    documents = [served.get(f"{CATALOG}/items", as_=None, f=f, limit=1000).text for f in ("json", "html", "jsonld")]
    documents.append(served.get(CATALOG, as_=None, f="html").text)
    for text in documents:
        for name in set(served.collections) - PUBLIC:
            assert f"/collections/{name}" not in text and f"items/{name}" not in text, name


def test_dcat_export_for_an_open_data_portal(served: Server) -> None:
    response = served.get(f"{CATALOG}/items", as_=None, f="jsonld")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/ld+json")
    catalog = response.json()
    assert catalog["@type"] == "dcat:Catalog" and catalog["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    datasets = {d["dct:identifier"]: d for d in catalog["dcat:dataset"]}
    assert set(datasets) == PUBLIC
    districts = datasets["districts"]
    assert districts["@type"] == "dcat:Dataset" and districts["dct:license"] == {"@id": "https://opensource.org/licenses/MIT"}
    assert districts["dct:accrualPeriodicity"]["@id"].endswith("/frequency/IRREG")
    assert districts["dct:spatial"]["dcat:bbox"]["@value"].startswith("POLYGON((")
    media = {d["dcat:mediaType"] for d in districts["dcat:distribution"]}
    assert {"application/geo+json", "text/csv", "application/ld+json"} <= media
    assert all(d["@type"] == "dcat:Distribution" and d["dcat:accessURL"]["@id"].startswith(served.url)
               for d in districts["dcat:distribution"])
    full = {d["dct:identifier"] for d in served.get(f"{CATALOG}/items", f="jsonld").json()["dcat:dataset"]}
    assert full == set(served.collections)
    one = served.get(f"{CATALOG}/items/districts", as_=None, f="jsonld").json()
    assert one["@type"] == "dcat:Dataset" and "@context" in one


def test_a_new_version_is_listed_with_what_it_changed(served: Server) -> None:
    settings = served.settings
    before = next(v.version for v in list_versions(settings, "districts") if v.is_active)
    ingest_layer(settings, load_definition(ROOT / "layers" / "districts.yaml"))  # the same file again: a new version
    try:
        versions = served.get(f"{CATALOG}/items/districts", as_=None).json()["properties"]["versions"]
        newest = versions[-1]
        assert newest["active"] and newest["added"] == 0 and newest["removed"] == 0 and newest["features"] == 6
        assert newest["changes"].endswith(f"/collections/districts/changes?from={versions[-2]['version']}"
                                          f"&to={newest['version']}")
        assert [v["version"] for v in versions] == sorted(v.version for v in list_versions(settings, "districts"))
    finally:
        activate_version(settings, "districts", before)


def test_writes_to_the_catalogue_are_refused(served: Server) -> None:
    assert served.post(f"{CATALOG}/items", {"type": "Feature"}).status_code == 405


@pytest.mark.parametrize(("key", "value", "message"), [("openness", "urgent", "openness"),
                                                      ("update_frequency", "hourly", "update_frequency"),
                                                      ("licence", {"title": "x"}, "licence"),
                                                      ("contact", {"email": "nobody"}, "contact")])
def test_catalogue_fields_of_a_layer_definition_are_checked(tmp_path: Path, key: str, value: object, message: str) -> None:
    data = yaml.safe_load((ROOT / "layers" / "districts.yaml").read_text(encoding="utf-8"))
    data["source"]["path"] = str(ROOT / "layers" / "demo" / "districts.geojson")
    data[key] = value
    path = tmp_path / "districts.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_definition(path)
