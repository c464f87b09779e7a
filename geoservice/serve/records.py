"""The open-data catalogue (开放目录): OGC API – Records, Part 1 (2025), over the caller's view of the live catalog.

    /collections/catalog                       the catalogue: a collection of `itemType: record` (JSON, HTML)
    /collections/catalog/queryables            what records can be searched by (JSON Schema; HTML)
    /collections/catalog/items                 the records, searched by q, bbox, datetime, type, keywords, ids and the
                                               queryables, sorted by sortby, paged by limit/offset (GeoJSON, HTML,
                                               and a DCAT catalogue as JSON-LD for a government open-data portal)
    /collections/catalog/items/{recordId}      one record (GeoJSON, HTML, a dcat:Dataset as JSON-LD)

One record per served collection: its title, description, keywords, the 用地用海 classes it holds (themes), grade,
openness (开放优先级), update frequency, versions with their dates and what each added and removed, extent, the
formats it is offered in, licence and contact. Records are read with the snapshot they describe (`read_records`, in
the snapshot's transaction; what did not change since the last snapshot is not read again) and held per grade in the
view, so a caller's catalogue lists exactly the collections it may read and a request only filters a few records.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import Any

import orjson
import psycopg2.extensions
from psycopg2 import sql
from pygeoapi.api import SYSTEM_LOCALE, APIRequest
from pygeoapi.util import render_j2_template
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geoservice.db.layers import layer_codes
from geoservice.db.read import LayerVersion, layer_versions
from geoservice.serve.caching import not_modified, validators, with_validators
from geoservice.serve.catalog import BASEMAP, CATALOG, CONFLICTS, Collection
from geoservice.serve.problems import ClientError, NotFoundError, problem
from geoservice.serve.params import integer_param
from geoservice.serve.provider import parse_interval
from geoservice.serve.tile_links import REL_TILESETS
from geoservice.settings import GRADES, Contact, Licence, Settings

_RECORDS = "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf"
#: the OGC API – Records Part 1 conformance classes implemented
CONFORMANCE = [f"{_RECORDS}/{name}" for name in (
    "core", "record-core", "record-collection", "record-core-query-parameters", "records-api", "searchable-catalog",
    "sorting", "json", "html")]
GEOJSON, HTML, JSONLD = "application/geo+json", "text/html", "application/ld+json"
RECORD_TYPE = "dataset"
#: 用地用海分类 (2023), the scheme of a record's themes
CLASS_SCHEME = "国土空间调查、规划、用途管制用地用海分类指南 (2023)"
OPENNESS_LABELS = {"high": "优先开放 high", "medium": "逐步开放 medium", "low": "暂缓开放 low"}
OPENNESS_RANK = {"high": 0, "medium": 1, "low": 2, None: 3}
#: update frequency -> (Chinese label, the EU frequency authority code, dct:accrualPeriodicity)
FREQUENCIES = {"continuous": ("实时", "CONT"), "daily": ("每日", "DAILY"), "weekly": ("每周", "WEEKLY"),
               "monthly": ("每月", "MONTHLY"), "quarterly": ("每季度", "QUARTERLY"), "annual": ("每年", "ANNUAL"),
               "irregular": ("不定期", "IRREG"), "never": ("不再更新", "NEVER")}
_FREQUENCY_URI = "http://publications.europa.eu/resource/authority/frequency/"
#: the runs of the base map and conflicts a record lists (the latest)
RUN_HISTORY = 10
#: the latest versions of a layer whose added and removed features are counted (a count joins two versions' ids)
COUNTED_VERSIONS = 10
#: parameters of the items request besides the queryables used as equality filters
SEARCH_PARAMETERS = {"f", "lang", "q", "bbox", "datetime", "type", "keywords", "ids", "externalIds", "limit", "offset",
                     "sortby"}
#: queryables that are also query parameters: name -> the record's attribute
EQUALITY = {"kind": "kind", "grade": "grade", "openness": "openness", "updateFrequency": "update_frequency",
            "license": "licence_name"}
SORTABLE = {"id": "id", "title": "title", "created": "created", "updated": "updated", "type": "type",
            "openness": "openness_rank"}


def catalog_link(base_url: str) -> dict[str, str]:
    """The landing page's link to the catalogue."""
    return {"rel": "http://www.opengis.net/def/rel/ogc/1.0/data-meta", "type": "application/json",
            "title": "开放目录 Open-data catalogue (OGC API – Records)", "href": f"{base_url}/collections/{CATALOG}"}


# -- what a record holds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordVersion:
    """One stored version of a layer (or run of the base map / conflicts): its number, date and what it changed."""

    version: int
    date: str
    features: int | None
    active: bool
    added: int | None = None       # features whose source id is new in this version (None: not known)
    removed: int | None = None     # features whose source id the previous version had and this one has not
    summary: str = ""

    def as_dict(self, changes: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"version": self.version, "date": self.date, "active": self.active}
        if self.features is not None:
            entry["features"] = self.features
        if self.added is not None:
            entry["added"], entry["removed"] = self.added, self.removed
        if self.summary:
            entry["summary"] = self.summary
        if changes:
            entry["changes"] = changes
        return entry


@dataclass(frozen=True)
class Record:
    """What the catalogue says of one served collection (its id is the collection's name)."""

    id: str
    grade: str
    kind: str | None
    title: str
    description: str
    keywords: tuple[str, ...]
    themes: tuple[tuple[str, str, str], ...]         # (code, Chinese name, English name)
    openness: str | None
    update_frequency: str
    licence: Licence
    contact: Contact
    created: str
    updated: str
    extent: tuple[float, float, float, float] | None   # CRS84
    temporal: tuple[str, str] | None
    feature_count: int
    versions: tuple[RecordVersion, ...] = field(default=())
    type: str = RECORD_TYPE

    @property
    def licence_name(self) -> str:
        return self.licence.name

    @property
    def openness_rank(self) -> int:
        return OPENNESS_RANK[self.openness]

    @property
    def time(self) -> tuple[str, str]:
        """The record's `time`: the data's temporal extent, else from its first version to its latest."""
        return self.temporal or (self.created, self.updated)

    @cached_property
    def text(self) -> str:
        """What `q` searches: title, description, keywords, themes (codes and names), lower-cased."""
        themes = " ".join(" ".join(t) for t in self.themes)
        return "\n".join((self.title, self.description, " ".join(self.keywords), themes, self.id)).lower()


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _class_codes(cur: psycopg2.extensions.cursor, collection: Collection) -> tuple[str, ...]:
    """The unified class codes a collection's features carry (a layer's by a skip scan of its class index)."""
    if collection.table == "feature":
        return tuple(layer_codes(cur, collection.partition_key))
    if collection.name == BASEMAP:
        cur.execute(sql.SQL("SELECT DISTINCT code FROM geoservice.basemap_patch, unnest(ARRAY[land_code, plan_code]) code "
                            "WHERE {} AND code IS NOT NULL ORDER BY 1").format(collection.rows_sql()))
    else:
        cur.execute(sql.SQL("SELECT DISTINCT code FROM geoservice.conflict, unnest(ARRAY[code_a, code_b]) code "
                            "WHERE {} AND code IS NOT NULL ORDER BY 1").format(collection.rows_sql()))
    return tuple(row[0] for row in cur.fetchall())


_ADDED_REMOVED = """
SELECT count(*) FILTER (WHERE o.source_id IS NULL), count(*) FILTER (WHERE n.source_id IS NULL)
FROM (SELECT DISTINCT source_id FROM geoservice.feature WHERE version_id = %(old)s AND source_id IS NOT NULL) o
FULL JOIN (SELECT DISTINCT source_id FROM geoservice.feature WHERE version_id = %(new)s AND source_id IS NOT NULL) n
  USING (source_id)
"""


def _layer_history(cur: psycopg2.extensions.cursor, versions: list[LayerVersion],
                   cache: dict[Any, Any]) -> tuple[RecordVersion, ...]:
    """A layer's versions, oldest first, each with the features it added and removed (by source id; unknown when the
    layer has no id field, and for versions older than the last COUNTED_VERSIONS)."""
    history = []
    counted = versions[-COUNTED_VERSIONS:]
    for version, before in zip(versions, [None, *versions[:-1]]):
        added = removed = None
        if before is not None and version in counted and version.definition.get("id_field") \
                and before.definition.get("id_field"):
            key = ("added-removed", before.version_id, version.version_id)
            if key not in cache:
                cur.execute(_ADDED_REMOVED, {"old": before.version_id, "new": version.version_id})
                cache[key] = cur.fetchone()
            added, removed = cache[key]
        history.append(RecordVersion(version.version, _moment(version.loaded_at), version.feature_count,
                                     version.is_active, added, removed))
    return tuple(history)


def _run_history(cur: psycopg2.extensions.cursor, table: str) -> tuple[RecordVersion, ...]:
    """The latest runs of the base map or the conflicts, oldest first."""
    cur.execute(f"SELECT id, started_at, is_current, layer_versions FROM geoservice.{table} "  # noqa: S608 (fixed names)
                "ORDER BY id DESC LIMIT %s", (RUN_HISTORY,))
    runs = []
    for run_id, started, current, inputs in reversed(cur.fetchall()):
        read = ", ".join(f"{name} v{v['version']}" for name, v in sorted(inputs.items()))
        runs.append(RecordVersion(run_id, _moment(started), None, current, summary=f"run {run_id} from {read}"))
    return tuple(runs)


def read_records(cur: psycopg2.extensions.cursor, collections: list[Collection], settings: Settings,
                 cache: dict[Any, Any]) -> tuple[Record, ...]:
    """One record per collection, read in the snapshot's transaction; class codes and change counts of partitions
    already in `cache` are not read again (the cache keeps only what these collections use)."""
    catalog = settings.catalog
    by_layer: dict[str, list[LayerVersion]] = {}
    for version in layer_versions(cur):
        by_layer.setdefault(version.name, []).append(version)
    cur.execute("SELECT code, name_zh, name_en FROM geoservice.land_class")
    class_names = {code: (zh, en) for code, zh, en in cur.fetchall()}
    runs = {BASEMAP: _run_history(cur, "integration_run"), CONFLICTS: _run_history(cur, "detection_run")}
    used: set[Any] = set()
    records = []
    for collection in collections:
        codes_key = ("codes", collection.table, collection.partition_key)
        if codes_key not in cache:
            cache[codes_key] = _class_codes(cur, collection)
        used.add(codes_key)
        themes = tuple((code, *class_names.get(code, ("", ""))) for code in cache[codes_key])
        if collection.kind is not None:
            versions = by_layer.get(collection.name, [])
            definition = next((v.definition for v in versions if v.is_active), {})
            history = _layer_history(cur, versions, cache)
            used.update(("added-removed", a.version_id, b.version_id) for a, b in zip(versions, versions[1:]))
            openness = definition.get("openness") or catalog.openness
            frequency = definition.get("update_frequency") or catalog.update_frequency
            licence = Licence(**definition["licence"]) if definition.get("licence") else catalog.licence
            contact = Contact(**definition["contact"]) if definition.get("contact") else catalog.contact
        else:
            history = runs[collection.name]
            openness = catalog.basemap_openness if collection.name == BASEMAP else catalog.conflicts_openness
            frequency, licence, contact = "irregular", catalog.licence, catalog.contact
        created = history[0].date if history else collection.modified
        updated = _moment(datetime.fromisoformat(collection.modified)) if collection.modified else created
        records.append(Record(
            id=collection.name, grade=collection.grade, kind=collection.kind, title=collection.title,
            description=collection.description, keywords=collection.keywords, themes=themes, openness=openness,
            update_frequency=frequency, licence=licence, contact=contact, created=created, updated=updated,
            extent=collection.crs84_extent, temporal=collection.temporal, feature_count=collection.feature_count,
            versions=history))
    for key in set(cache) - used:
        del cache[key]
    return tuple(records)


def visible_records(records: tuple[Record, ...], grade: str) -> tuple[Record, ...]:
    """The records a caller of `grade` may read: those of the collections it may read."""
    return tuple(r for r in records if GRADES.index(r.grade) <= GRADES.index(grade))


# -- search ------------------------------------------------------------------------------------------------------


def _terms(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ClientError(f"bbox must be 4 or 6 comma-separated numbers (CRS84), not {text!r}") from exc
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    if len(values) != 4 or not all(abs(v) < 1e15 for v in values):
        raise ClientError(f"bbox must be 4 or 6 comma-separated finite numbers (CRS84), not {text!r}")
    west, south, east, north = values
    if south > north:
        raise ClientError("bbox: the south edge is above the north edge")
    return west, south, east, north


def _in_box(extent: tuple[float, float, float, float] | None, box: tuple[float, float, float, float]) -> bool:
    if extent is None:
        return False
    west, south, east, north = box
    north_south = extent[1] <= north and extent[3] >= south
    if west <= east:
        return north_south and extent[0] <= east and extent[2] >= west
    return north_south and (extent[2] >= west or extent[0] <= east)  # across the antimeridian


def _in_interval(record: Record, interval: tuple[datetime | None, datetime | None]) -> bool:
    start, end = interval
    begin, finish = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in record.time)
    return (end is None or begin <= end) and (start is None or finish >= start)


def search(records: tuple[Record, ...], params: dict[str, str]) -> list[Record]:
    """The records matching every given criterion (each comma-separated list: any of its values), sorted."""
    unknown = sorted(set(params) - SEARCH_PARAMETERS - set(EQUALITY))
    if unknown:
        raise ClientError(f"unknown parameter {unknown[0]!r}: see /collections/{CATALOG}/queryables")
    found = list(records)
    if "q" in params:
        terms = [t.lower() for t in _terms(params["q"])]
        found = [r for r in found if any(t in r.text for t in terms)]
    if "bbox" in params:
        box = _bbox(params["bbox"])
        found = [r for r in found if _in_box(r.extent, box)]
    if "datetime" in params:
        interval = parse_interval(params["datetime"])
        found = [r for r in found if _in_interval(r, interval)]
    if "type" in params:
        types = set(_terms(params["type"]))
        found = [r for r in found if r.type in types]
    if "keywords" in params:
        wanted = {k.lower() for k in _terms(params["keywords"])}
        found = [r for r in found if wanted & {k.lower() for k in r.keywords}]
    if "ids" in params:
        ids = set(_terms(params["ids"]))
        found = [r for r in found if r.id in ids]
    if "externalIds" in params:  # no record carries an identifier assigned outside this catalogue
        found = []
    for name, attribute in EQUALITY.items():
        if name in params:
            values = set(_terms(params[name]))
            found = [r for r in found if getattr(r, attribute) in values]
    for key in reversed(_terms(params.get("sortby", ""))):
        descending, name = key.startswith("-"), key.lstrip("+-").strip()
        if name not in SORTABLE:
            raise ClientError(f"sortby: {name!r} is not sortable (sortable: {', '.join(SORTABLE)})")
        found.sort(key=lambda r, a=SORTABLE[name]: (getattr(r, a) is None, getattr(r, a)), reverse=descending)
    return found


# -- representations ---------------------------------------------------------------------------------------------


def _polygon(extent: tuple[float, float, float, float] | None) -> dict[str, Any] | None:
    if extent is None:
        return None
    w, s, e, n = extent
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _contact(contact: Contact) -> dict[str, Any]:
    entry: dict[str, Any] = {"roles": ["pointOfContact"]}
    if contact.name:
        entry["name"] = contact.name
    if contact.organization:
        entry["organization"] = contact.organization
    if contact.email:
        entry["emails"] = [{"value": contact.email}]
    if contact.phone:
        entry["phones"] = [{"value": contact.phone}]
    if contact.url:
        entry["links"] = [{"href": contact.url, "rel": "about", "type": HTML}]
    return entry


class RecordWriter:
    """Writes records, the catalogue and its DCAT form with the server's base URL."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.catalog = f"{base_url}/collections/{CATALOG}"

    def formats(self, record: Record) -> list[dict[str, str]]:
        offered = [{"name": "GeoJSON", "mediaType": GEOJSON}, {"name": "HTML", "mediaType": HTML},
                   {"name": "CSV", "mediaType": "text/csv"}, {"name": "JSON-LD", "mediaType": JSONLD},
                   {"name": "MVT", "mediaType": "application/vnd.mapbox-vector-tile"}]
        if record.kind is not None:
            offered.append({"name": "GPKG", "mediaType": "application/geopackage+sqlite3"})
        return offered

    def distributions(self, record: Record) -> list[tuple[str, str, str, str]]:
        """(title, media type, URL, how) of each way to get the data."""
        items = f"{self.base}/collections/{record.id}/items"
        found = [("GeoJSON", GEOJSON, f"{items}?f=json", "download"), ("HTML", HTML, f"{items}?f=html", "access"),
                 ("CSV", "text/csv", f"{items}?f=csv", "download"), ("JSON-LD", JSONLD, f"{items}?f=jsonld", "download"),
                 ("MVT 矢量瓦片 vector tiles", "application/vnd.mapbox-vector-tile",
                  f"{self.base}/collections/{record.id}/tiles", "access")]
        if record.kind is not None:
            found.append(("GPKG 导出 export (on request: `geoservice export`)", "application/geopackage+sqlite3",
                          f"{self.catalog}/items/{record.id}?f=html", "request"))
        return found

    def versions(self, record: Record) -> list[dict[str, Any]]:
        entries = []
        for version, before in zip(record.versions, [None, *record.versions[:-1]]):
            changes = (f"{self.base}/collections/{record.id}/changes?from={before.version}&to={version.version}"
                       if record.kind is not None and before is not None else None)
            entries.append(version.as_dict(changes))
        return entries

    def record(self, record: Record) -> dict[str, Any]:
        """The record as GeoJSON (OGC API – Records record-core)."""
        own = f"{self.catalog}/items/{record.id}"
        collection = f"{self.base}/collections/{record.id}"
        links = [{"rel": "self", "type": GEOJSON, "title": "This record", "href": own},
                 {"rel": "alternate", "type": HTML, "title": "This record as HTML", "href": f"{own}?f=html"},
                 {"rel": "alternate", "type": JSONLD, "title": "This record as DCAT (JSON-LD)", "href": f"{own}?f=jsonld"},
                 {"rel": "collection", "type": "application/json", "title": "开放目录 The catalogue",
                  "href": self.catalog},
                 {"rel": "describes", "type": "application/json", "title": record.title, "href": collection},
                 {"rel": REL_TILESETS, "type": "application/json", "title": "Vector tilesets",
                  "href": f"{collection}/tiles"}]
        links += [{"rel": "items" if how != "request" else "related", "type": media, "title": title, "href": href}
                  for title, media, href, how in self.distributions(record) if "tiles" not in href]
        if record.kind is not None:
            links.append({"rel": "version-history", "type": "application/json", "title": "Versions",
                          "href": f"{collection}/versions"})
        if record.licence.url:
            links.append({"rel": "license", "type": HTML, "title": record.licence.name, "href": record.licence.url})
        properties: dict[str, Any] = {
            "type": record.type, "title": record.title, "description": record.description,
            "keywords": list(record.keywords),
            "language": {"code": "zh-CN", "name": "中文"},
            "resourceLanguages": [{"code": "zh-CN", "name": "中文"}],
            "formats": self.formats(record), "contacts": [_contact(record.contact)], "license": record.licence.name,
            "created": record.created, "updated": record.updated,
            "grade": record.grade, "openness": record.openness, "updateFrequency": record.update_frequency,
            "kind": record.kind, "featureCount": record.feature_count, "versions": self.versions(record),
        }
        if record.themes:
            properties["themes"] = [{"scheme": CLASS_SCHEME, "concepts": [
                {"id": code, "title": zh or code, **({"description": en} if en else {})} for code, zh, en in record.themes]}]
        return {"id": record.id, "type": "Feature",
                "conformsTo": [f"{_RECORDS}/record-core"],
                "time": {"interval": list(record.time)}, "geometry": _polygon(record.extent),
                "properties": properties, "links": links}

    def collection(self, records: tuple[Record, ...]) -> dict[str, Any]:
        """The catalogue as a collection (record-collection)."""
        boxes = [r.extent for r in records if r.extent]
        bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)] \
            if boxes else [-180.0, -90.0, 180.0, 90.0]
        times = sorted(t for r in records for t in r.time)
        return {
            "id": CATALOG, "type": "Catalog", "itemType": "record",
            "title": "开放目录 Open-data catalogue",
            "description": ("每个数据集一条记录：标题、说明、关键词、用地用海分类、密级、开放优先级、"
                            "更新频率与版本、范围、格式、许可与联系人。"
                            " One record per dataset served here: what it is, its classes, grade, openness priority, "
                            "update frequency and versions, extent, formats, licence and contact."),
            "keywords": ["开放目录", "开放数据", "多规合一", "open data", "catalogue"],
            "language": {"code": "zh-CN", "name": "中文"},
            "conformsTo": [f"{_RECORDS}/record-collection"],
            "extent": {"spatial": {"bbox": [bbox], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"},
                       "temporal": {"interval": [[times[0], times[-1]] if times else [None, None]],
                                    "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}},
            "links": [
                {"rel": "self", "type": "application/json", "title": "This document", "href": self.catalog},
                {"rel": "alternate", "type": HTML, "title": "This document as HTML", "href": f"{self.catalog}?f=html"},
                {"rel": "items", "type": GEOJSON, "title": "The records", "href": f"{self.catalog}/items"},
                {"rel": "items", "type": HTML, "title": "The records as HTML", "href": f"{self.catalog}/items?f=html"},
                {"rel": "alternate", "type": JSONLD, "title": "The catalogue as DCAT (JSON-LD)",
                 "href": f"{self.catalog}/items?f=jsonld"},
                {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
                 "title": "Queryables", "href": f"{self.catalog}/queryables"},
                {"rel": "root", "type": "application/json", "title": "Landing page", "href": f"{self.base}/"},
            ],
        }

    def queryables(self) -> dict[str, Any]:
        text = {"type": "string"}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{self.catalog}/queryables",
            "type": "object", "title": "开放目录 Open-data catalogue", "additionalProperties": False,
            "properties": {
                "id": {**text, "title": "Record id (the collection's name)"},
                "type": {**text, "title": "Resource type", "enum": [RECORD_TYPE]},
                "title": {**text, "title": "标题 Title"}, "description": {**text, "title": "说明 Description"},
                "keywords": {"type": "array", "items": text, "title": "关键词 Keywords"},
                "themes": {"type": "array", "items": text, "title": "用地用海分类 Class codes"},
                "geometry": {"title": "范围 Extent", "format": "geometry-polygon", "x-ogc-role": "primary-geometry"},
                "created": {**text, "format": "date-time", "title": "First version"},
                "updated": {**text, "format": "date-time", "title": "Latest version"},
                "kind": {**text, "title": "Layer kind (none for the base map and conflicts)"},
                "grade": {**text, "enum": list(GRADES), "title": "密级 Sensitivity grade"},
                "openness": {**text, "enum": list(OPENNESS_LABELS), "title": "开放优先级 Openness priority"},
                "updateFrequency": {**text, "enum": list(FREQUENCIES), "title": "更新频率 Update frequency"},
                "license": {**text, "title": "许可 Licence"},
            },
        }

    # -- DCAT ---------------------------------------------------------------------------------------------------

    CONTEXT = {"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/",
               "foaf": "http://xmlns.com/foaf/0.1/", "vcard": "http://www.w3.org/2006/vcard/ns#",
               "skos": "http://www.w3.org/2004/02/skos/core#", "xsd": "http://www.w3.org/2001/XMLSchema#",
               "locn": "http://www.w3.org/ns/locn#", "gsp": "http://www.opengis.net/ont/geosparql#",
               "rdfs": "http://www.w3.org/2000/01/rdf-schema#"}

    def _dataset(self, record: Record) -> dict[str, Any]:
        dataset: dict[str, Any] = {
            "@id": f"{self.catalog}/items/{record.id}", "@type": "dcat:Dataset", "dct:identifier": record.id,
            "dct:title": {"@value": record.title, "@language": "zh"},
            "dct:description": {"@value": record.description, "@language": "zh"},
            "dcat:keyword": list(record.keywords), "dct:language": {"@id": "http://id.loc.gov/vocabulary/iso639-1/zh"},
            "dct:issued": {"@value": record.created, "@type": "xsd:dateTime"},
            "dct:modified": {"@value": record.updated, "@type": "xsd:dateTime"},
            "dct:accrualPeriodicity": {"@id": _FREQUENCY_URI + FREQUENCIES[record.update_frequency][1]},
            "dct:accessRights": {"@type": "dct:RightsStatement", "rdfs:label": record.grade},
            "dcat:landingPage": {"@id": f"{self.catalog}/items/{record.id}?f=html"},
            "dcat:contactPoint": {"@type": "vcard:Organization",
                                  "vcard:fn": record.contact.organization or record.contact.name,
                                  **({"vcard:hasEmail": {"@id": f"mailto:{record.contact.email}"}}
                                     if record.contact.email else {})},
            "dct:license": ({"@id": record.licence.url} if record.licence.url else
                            {"@type": "dct:LicenseDocument", "rdfs:label": record.licence.name}),
            "dcat:distribution": [
                {"@type": "dcat:Distribution", "dct:title": title, "dcat:mediaType": media,
                 "dcat:accessURL": {"@id": href}, **({"dcat:downloadURL": {"@id": href}} if how == "download" else {})}
                for title, media, href, how in self.distributions(record)],
        }
        if record.openness:
            dataset["rdfs:comment"] = f"开放优先级 openness priority: {OPENNESS_LABELS[record.openness]}"
        if record.extent:
            w, s, e, n = record.extent
            dataset["dct:spatial"] = {"@type": "dct:Location", "dcat:bbox": {
                "@value": f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))", "@type": "gsp:wktLiteral"}}
        begin, end = record.time
        dataset["dct:temporal"] = {"@type": "dct:PeriodOfTime", "dcat:startDate": {"@value": begin, "@type": "xsd:dateTime"},
                                   "dcat:endDate": {"@value": end, "@type": "xsd:dateTime"}}
        if record.themes:
            dataset["dcat:theme"] = [{"@type": "skos:Concept", "skos:notation": code, "skos:prefLabel": zh or code}
                                     for code, zh, _ in record.themes]
        if record.versions:
            active = next((v for v in record.versions if v.active), record.versions[-1])
            dataset["dcat:version"] = str(active.version)
        return dataset

    def dcat_dataset(self, record: Record) -> dict[str, Any]:
        return {"@context": self.CONTEXT, **self._dataset(record)}

    def dcat_catalog(self, records: list[Record]) -> dict[str, Any]:
        return {"@context": self.CONTEXT, "@id": self.catalog, "@type": "dcat:Catalog",
                "dct:title": {"@value": "开放目录 Open-data catalogue", "@language": "zh"},
                "dct:description": "The datasets of the 多规合一 geoservice, as DCAT.",
                "dct:language": {"@id": "http://id.loc.gov/vocabulary/iso639-1/zh"},
                "foaf:homepage": {"@id": f"{self.catalog}?f=html"},
                "dcat:dataset": [self._dataset(r) for r in records]}


# -- routes ------------------------------------------------------------------------------------------------------


class RecordEndpoints:
    """The catalogue's routes; the records come with each request's view (`request.state.view.records`)."""

    def __init__(self, settings: Settings) -> None:
        self.writer = RecordWriter(settings.server.base_url)
        self.default_limit, self.max_limit = settings.server.limits.default_items, settings.server.limits.max_items

    def routes(self) -> list[Route]:
        base = f"/collections/{CATALOG}"
        return [Route(base, self.collection, methods=["GET"]), Route(f"{base}/queryables", self.queryables, methods=["GET"]),
                Route(f"{base}/items", self.items, methods=["GET"]),
                Route(f"{base}/items/{{record_id}}", self.item, methods=["GET"])]

    # -- helpers ------------------------------------------------------------------------------------------------

    @staticmethod
    async def _asked(request: Request, formats: tuple[str, ...]) -> tuple[APIRequest, str]:
        api = request.state.view.api
        api_request = await APIRequest.from_starlette(request, api.locales)
        fmt = api_request.format or "json"
        if fmt not in formats:
            raise ClientError(f"format {fmt!r} is not offered here ({', '.join(formats)})")
        return api_request, fmt

    @staticmethod
    def _error(request: Request, exc: ClientError) -> Response:
        api = request.state.view.api
        html = request.query_params.get("f") == "html" or (
            "f" not in request.query_params and "text/html" in request.headers.get("accept", ""))
        page = partial(render_j2_template, api.tpl_config, api.config["server"]["templates"], "exception.html",
                       locale_=SYSTEM_LOCALE) if html else None
        return problem(exc.status, exc.code, str(exc), None, page)

    @staticmethod
    def _render(request: Request, api_request: APIRequest, template: str, data: dict[str, Any]) -> Response:
        api = request.state.view.api
        content = render_j2_template(api.tpl_config, api.config["server"]["templates"], template, data,
                                     api_request.locale)
        return Response(content, media_type=HTML)

    async def _answer(self, request: Request, build: Any) -> Response:
        tags = validators(request, request.state.catalog, None)
        cached = not_modified(request, tags)
        if cached is not None:
            return cached
        try:
            response = await build()
        except ClientError as exc:
            return self._error(request, exc)
        return with_validators(response, tags)

    def _labels(self) -> dict[str, Any]:
        return {"openness_labels": OPENNESS_LABELS, "frequency_labels": {k: v[0] for k, v in FREQUENCIES.items()},
                "catalog_path": self.writer.catalog}

    # -- handlers -----------------------------------------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        async def build() -> Response:
            api_request, fmt = await self._asked(request, ("json", "html"))
            if set(request.query_params) - {"f", "lang"}:
                raise ClientError(f"unknown parameter {sorted(set(request.query_params) - {'f', 'lang'})[0]!r}")
            records = request.state.view.records
            data = self.writer.collection(records)
            if fmt == "html":
                page = {**data, **self._labels(), "records": [self.writer.record(r) for r in records],
                        "numberMatched": len(records), "search": {}, "page_links": []}
                return await run_in_threadpool(self._render, request, api_request, "records/catalog.html", page)
            return Response(orjson.dumps(data), media_type="application/json")
        return await self._answer(request, build)

    async def queryables(self, request: Request) -> Response:
        async def build() -> Response:
            api_request, fmt = await self._asked(request, ("json", "html"))
            data = self.writer.queryables()
            if fmt == "html":
                page = {"title": data["title"], "properties": data["properties"], "links": [],
                        "queryables": data["properties"]}
                return await run_in_threadpool(self._render, request, api_request, "records/queryables.html",
                                               {**page, **self._labels()})
            return Response(orjson.dumps(data), media_type="application/schema+json")
        return await self._answer(request, build)

    async def items(self, request: Request) -> Response:
        async def build() -> Response:
            api_request, fmt = await self._asked(request, ("json", "html", "jsonld"))
            params = dict(request.query_params)
            limit = min(integer_param(params, "limit", self.default_limit, 1), self.max_limit)
            offset = integer_param(params, "offset", 0, 0)
            found = search(request.state.view.records, params)
            if fmt == "jsonld":  # the whole (searched) catalogue: a portal harvests it in one document
                return Response(orjson.dumps(self.writer.dcat_catalog(found)), media_type=JSONLD)
            page = found[offset:offset + limit]
            links = self._page_links(params, fmt, offset, limit, len(found))
            features = [self.writer.record(r) for r in page]
            body = {"type": "FeatureCollection", "features": features, "numberMatched": len(found),
                    "numberReturned": len(page), "timeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "links": links}
            if fmt == "html":
                data = {**self.writer.collection(request.state.view.records), **self._labels(), "records": features,
                        "numberMatched": len(found), "search": params, "page_links": links}
                return await run_in_threadpool(self._render, request, api_request, "records/catalog.html", data)
            return Response(orjson.dumps(body), media_type=GEOJSON)
        return await self._answer(request, build)

    def _page_links(self, params: dict[str, str], fmt: str, offset: int, limit: int, matched: int) -> list[dict[str, str]]:
        base = f"{self.writer.catalog}/items"
        kept = {k: v for k, v in params.items() if k not in ("f", "offset")}

        def href(f: str, at: int) -> str:
            query = {**kept, **({"offset": str(at)} if at else {}), "f": f}
            return f"{base}?{urllib.parse.urlencode(query, safe=',:/')}"

        own, own_type = ("html", HTML) if fmt == "html" else ("json", GEOJSON)
        links = [{"rel": "self", "type": own_type, "title": "This document", "href": href(own, offset)},
                 {"rel": "alternate", "type": GEOJSON if fmt == "html" else HTML, "title": "This document",
                  "href": href("json" if fmt == "html" else "html", offset)},
                 {"rel": "alternate", "type": JSONLD, "title": "The records found as DCAT (JSON-LD)",
                  "href": href("jsonld", 0)},
                 {"rel": "collection", "type": "application/json", "title": "开放目录 The catalogue",
                  "href": self.writer.catalog}]
        if offset + limit < matched:
            links.append({"rel": "next", "type": own_type, "title": "Next page", "href": href(own, offset + limit)})
        if offset > 0:
            links.append({"rel": "prev", "type": own_type, "title": "Previous page",
                          "href": href(own, max(0, offset - limit))})
        return links

    async def item(self, request: Request) -> Response:
        async def build() -> Response:
            api_request, fmt = await self._asked(request, ("json", "html", "jsonld"))
            unknown = sorted(set(request.query_params) - {"f", "lang"})
            if unknown:
                raise ClientError(f"unknown parameter {unknown[0]!r}")
            name = request.path_params["record_id"]
            record = next((r for r in request.state.view.records if r.id == name), None)
            if record is None:
                raise NotFoundError(f"no record {name!r} in the catalogue")
            if fmt == "jsonld":
                return Response(orjson.dumps(self.writer.dcat_dataset(record)), media_type=JSONLD)
            data = self.writer.record(record)
            if fmt == "html":
                page = {**data, **self._labels(), "title": record.title}
                return await run_in_threadpool(self._render, request, api_request, "records/record.html", page)
            return Response(orjson.dumps(data), media_type=GEOJSON)
        return await self._answer(request, build)

