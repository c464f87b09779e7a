"""The OpenAPI document: pygeoapi's, made self-contained and completed with the filter parameters.

pygeoapi's document points its `$ref`s at schemas.opengis.net and GitHub; a client on an intranet (or a
validator following them) cannot resolve those. Each remote reference is replaced by a local component
of the same name, defined here.
"""

from __future__ import annotations

import re
from typing import Any

from geoservice.gcj02 import GCJ02, URIS
from geoservice.serve.crs import CRS84
from geoservice.serve.tms import GRIDS

_EXCEPTION = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/exception"}},
                          "text/html": {"schema": {"type": "string"}}}}
_DOCUMENT = {"application/json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}}}
LOCAL_COMPONENTS: dict[str, dict[str, Any]] = {
    "responses": {
        "InvalidParameter": {"description": "A query parameter has an invalid value.", **_EXCEPTION},
        "NotFound": {"description": "The requested resource does not exist on the server.", **_EXCEPTION},
        "ServerError": {"description": "A server error occurred.", **_EXCEPTION},
        "LandingPage": {"description": "The landing page (or another server document).", "content": _DOCUMENT},
        "Collection": {"description": "Information about the feature collection.", "content": _DOCUMENT},
        "Features": {"description": "The features selected by the request (a GeoJSON FeatureCollection).",
                     "content": {"application/geo+json": {"schema": {"$ref": "#/components/schemas/featureCollectionGeoJSON"}},
                                 "text/html": {"schema": {"type": "string"}}}},
        "ProcessList": {"description": "The processes offered.", "content": _DOCUMENT},
        "ExecuteAsync": {"description": "Accepted for asynchronous execution (not offered here: execution is synchronous).",
                         "content": _DOCUMENT},
        "Feature": {"description": "One feature (a GeoJSON Feature).",
                    "content": {"application/geo+json": {"schema": {"$ref": "#/components/schemas/featureGeoJSON"}},
                                "text/html": {"schema": {"type": "string"}}}},
    },
    "parameters": {
        "featureId": {"name": "featureId", "in": "path", "required": True, "description": "The id of a feature.",
                      "schema": {"type": "string"}},
        "datetime": {"name": "datetime", "in": "query", "required": False, "style": "form", "explode": False,
                     "description": "An RFC 3339 instant or interval (open ends `..`) on the collection's time property.",
                     "schema": {"type": "string"}},
        "sortby": {"name": "sortby", "in": "query", "required": False, "style": "form", "explode": False,
                   "description": "Comma-separated queryables, each optionally prefixed + (ascending) or - (descending).",
                   "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": r"[+|-]?[A-Za-z_].*"}}},
    },
    "schemas": {
        "execute": {"type": "object", "required": ["inputs"],
                    "properties": {"inputs": {"type": "object"}, "outputs": {"type": "object"},
                                   "response": {"type": "string", "enum": ["raw", "document"], "default": "raw"}}},
        "exception": {"type": "object", "required": ["code"],
                      "properties": {"code": {"type": "string"}, "description": {"type": "string"}}},
        "link": {"type": "object", "required": ["href", "rel"],
                 "properties": {"href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
                                "title": {"type": "string"}, "hreflang": {"type": "string"}}},
        "featureGeoJSON": {"type": "object", "required": ["type", "geometry", "properties"],
                           "properties": {"type": {"type": "string", "enum": ["Feature"]},
                                          "geometry": {"nullable": True, "type": "object"},
                                          "properties": {"nullable": True, "type": "object"},
                                          "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                          "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}},
        "featureCollectionGeoJSON": {
            "type": "object", "required": ["type", "features"],
            "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                           "features": {"type": "array", "items": {"$ref": "#/components/schemas/featureGeoJSON"}},
                           "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                           "timeStamp": {"type": "string", "format": "date-time"},
                           "numberMatched": {"type": "integer", "minimum": 0},
                           "numberReturned": {"type": "integer", "minimum": 0}}},
    },
}
_REMOTE = re.compile(r"^https?://")
_FRAGMENT = re.compile(r"#/components/(?P<kind>\w+)/(?P<name>[\w-]+)$")
_FILE = re.compile(r"/(?P<kind>responses|parameters|schemas)/(?P<name>[\w-]+)\.ya?ml$")


def _local_ref(ref: str, used: dict[str, set[str]]) -> str:
    match = _FRAGMENT.search(ref) or _FILE.search(ref)
    if match is None or match["name"] not in LOCAL_COMPONENTS.get(match["kind"], {}):
        raise ValueError(f"no local definition for the OpenAPI reference {ref}")
    used.setdefault(match["kind"], set()).add(match["name"])
    return f"#/components/{match['kind']}/{match['name']}"


def _localize(node: Any, used: dict[str, set[str]]) -> Any:
    if isinstance(node, dict):
        return {key: _local_ref(value, used) if key == "$ref" and isinstance(value, str) and _REMOTE.match(value)
                else _localize(value, used) for key, value in node.items()}
    if isinstance(node, list):
        return [_localize(value, used) for value in node]
    return node


def filter_parameters(crs_uris: list[str]) -> list[dict[str, Any]]:
    """The Part 3 parameters of an items request."""
    return [
        {"name": "filter", "in": "query", "required": False, "style": "form", "explode": False,
         "description": "A CQL2 filter on the queryables (OGC API – Features Part 3).", "schema": {"type": "string"}},
        {"name": "filter-lang", "in": "query", "required": False, "style": "form", "explode": False,
         "schema": {"type": "string", "enum": ["cql2-text", "cql2-json"], "default": "cql2-text"}},
        {"name": "filter-crs", "in": "query", "required": False, "style": "form", "explode": False,
         "schema": {"type": "string", "format": "uri", "enum": crs_uris, "default": CRS84}},
    ]


def own_paths(config: dict[str, Any]) -> dict[str, Any]:
    """geoservice's routes beside the OGC ones: GET point lookup, the conflict report and review cases."""
    error = {"$ref": "#/components/responses/InvalidParameter"}
    json_doc = {"description": "A JSON document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    paths: dict[str, Any] = {}
    if "point-lookup" in config["resources"]:
        paths["/lookup"] = {"get": {
            "summary": "What every plan says at a point (the point-lookup process as a GET)", "tags": ["processes"],
            "parameters": [{"name": n, "in": "query", "required": n != "crs", "schema": {"type": t}, "description": d}
                           for n, t, d in (("x", "number", "Easting or longitude."), ("y", "number", "Northing or latitude."),
                                           ("crs", "string", "The CRS of x and y (default OGC:CRS84; GCJ02 and BD09 "
                                            "too, within China)."))],
            "responses": {"200": json_doc, "400": error}}}
    layers = [name for name, r in config["resources"].items()
              if r.get("type") == "collection" and r["providers"][0]["geoservice"]["collection"].get("kind")]
    for name in layers:
        paths[f"/collections/{name}/versions"] = {"get": {
            "summary": f"The stored versions of {name}", "tags": [name], "responses": {"200": json_doc}}}
        paths[f"/collections/{name}/changes"] = {"get": {
            "summary": f"Features added, removed and changed in {name} between two versions, areas by class and district",
            "tags": [name], "responses": {"200": json_doc, "400": error},
            "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "integer"}, "description": d}
                           for n, d in (("from", "The older version (default: the one before `to`)."),
                                        ("to", "The newer version (default: the active one)."))]}}
    for name in ("basemap", "conflicts"):
        if name in config["resources"]:
            paths[f"/collections/{name}/changes"] = {"get": {
                "summary": f"What a run of the {name} changed: its inputs' changes, what it recomputed, area gained and "
                           "lost by class and district (an incremental run)", "tags": [name],
                "parameters": [{"name": "run", "in": "query", "required": False, "schema": {"type": "integer"},
                                "description": "The run (default: the current one)."}],
                "responses": {"200": json_doc, "400": error, "404": {"$ref": "#/components/responses/NotFound"}}}}
    if "conflicts" in config["resources"]:
        paths["/report"] = {"get": {"summary": "The conflict report of the current detection run (HTML)",
                                    "tags": ["conflicts"], "responses": {"200": {"description": "An HTML page.",
                                    "content": {"text/html": {"schema": {"type": "string"}}}}}}}
        conflict = {"name": "conflictId", "in": "path", "required": True, "schema": {"type": "integer"},
                    "description": "The conflict's id (图斑编号), of any detection run."}
        body = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["open", "confirmed", "resolved", "waived"]},
                           "comment": {"type": "string", "description": "处理意见; required for resolved and waived."}}}}}}
        paths["/collections/conflicts/items/{conflictId}/review"] = {
            "get": {"summary": "A conflict's review case and its history", "tags": ["conflicts"],
                    "parameters": [conflict], "responses": {"200": json_doc, "404": {"$ref": "#/components/responses/NotFound"}}},
            "post": {"summary": "Change a conflict's review status (bearer token with the review scope)", "tags": ["conflicts"],
                     "parameters": [conflict], "requestBody": body, "security": [{"bearer": []}],
                     "responses": {"200": json_doc, "400": error, "401": {"description": "No or unknown token."},
                                   "403": {"description": "The token has no review scope, or reviews are disabled."},
                                   "404": {"$ref": "#/components/responses/NotFound"},
                                   "409": {"description": "The status cannot follow the current one."},
                                   "422": {"description": "A comment is required for this decision."}}}}
    return paths


def tile_paths(config: dict[str, Any]) -> dict[str, Any]:
    """OGC API – Tiles: the tile matrix sets, and the tilesets, tileset metadata and tiles of the dataset and of each
    collection."""
    json_doc = {"description": "A JSON document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    errors = {"400": {"$ref": "#/components/responses/InvalidParameter"}, "404": {"$ref": "#/components/responses/NotFound"}}
    grid = {"name": "tileMatrixSetId", "in": "path", "required": True, "schema": {"type": "string", "enum": list(GRIDS)},
            "description": "A tile matrix set (`WorldCRS84Quad` is on CGCS2000, EPSG:4490)."}
    cell = [{"name": name, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}, "description": text}
            for name, text in (("tileMatrix", "The zoom level."), ("tileRow", "The row (y, from the top)."),
                               ("tileCol", "The column (x, from the left)."))]
    chosen = {"name": "collections", "in": "query", "required": False, "style": "form", "explode": False,
              "schema": {"type": "array", "items": {"type": "string"}},
              "description": "The collections carried as layers (default: every collection the caller may read)."}
    shift = {"name": "crs", "in": "query", "required": False, "schema": {"type": "string", "enum": [URIS[GCJ02]]},
             "description": "WebMercatorQuad only: the grid read as GCJ-02's Web Mercator, for a GCJ-02 background map "
                            "(AMap, Tencent)."}
    fmt = {"name": "f", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "tilejson"]},
           "description": "The tileset metadata (json) or TileJSON 3.0 (tilejson)."}
    tile = {"200": {"description": "A Mapbox Vector Tile: one layer per collection.",
                    "content": {"application/vnd.mapbox-vector-tile": {"schema": {"type": "string", "format": "binary"}}}},
            "304": {"description": "The client's copy (If-None-Match) is current."}, **errors}
    paths: dict[str, Any] = {
        "/tileMatrixSets": {"get": {"summary": "The tile matrix sets", "tags": ["tiles"], "responses": {"200": json_doc}}},
        "/tileMatrixSets/{tileMatrixSetId}": {"get": {"summary": "A tile matrix set (OGC TMS 2.0 JSON)", "tags": ["tiles"],
                                                      "parameters": [grid], "responses": {"200": json_doc, **errors}}}}
    names = [name for name, r in config["resources"].items() if r.get("type") == "collection"]
    for prefix, tag, extra in [("", "tiles", [chosen])] + [(f"/collections/{n}", n, []) for n in names]:
        paths[f"{prefix}/tiles"] = {"get": {"summary": "Vector tilesets", "tags": [tag], "parameters": extra,
                                            "responses": {"200": json_doc, **errors}}}
        paths[f"{prefix}/tiles/{{tileMatrixSetId}}"] = {"get": {
            "summary": "Tileset metadata: limits per zoom, layers", "tags": [tag], "parameters": [grid, fmt, *extra, shift],
            "responses": {"200": json_doc, **errors}}}
        paths[f"{prefix}/tiles/{{tileMatrixSetId}}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"] = {"get": {
            "summary": "A vector tile", "tags": [tag], "parameters": [grid, *cell, *extra, shift], "responses": tile}}
    return paths


def record_paths() -> dict[str, Any]:
    """OGC API – Records: the open-data catalogue (the records a caller may read; serve/records.py)."""
    from geoservice.serve.records import EQUALITY, FREQUENCIES, OPENNESS_LABELS, SORTABLE

    base = "/collections/catalog"
    errors = {"400": {"$ref": "#/components/responses/InvalidParameter"}, "404": {"$ref": "#/components/responses/NotFound"}}
    json_doc = {"description": "A JSON document.", "content": {"application/json": {"schema": {"type": "object"}},
                                                               "text/html": {"schema": {"type": "string"}}}}
    records = {"description": "Records (GeoJSON), as HTML, or the catalogue as DCAT (JSON-LD).", "content": {
        "application/geo+json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}},
        "application/ld+json": {"schema": {"type": "object"}}}}

    def query(name: str, description: str, schema: dict[str, Any], array: bool = False) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description,
                **({"style": "form", "explode": False} if array else {}), "schema": schema}

    fmt = query("f", "The representation.", {"type": "string", "enum": ["json", "html", "jsonld"]})
    enums = {"grade": ["public", "internal", "restricted"], "openness": list(OPENNESS_LABELS),
             "updateFrequency": list(FREQUENCIES)}
    search = [
        query("q", "Free-text search terms (any of them) over title, description, keywords and classes.",
              {"type": "array", "items": {"type": "string"}}, array=True),
        query("bbox", "west,south,east,north in CRS84: records whose extent meets it.",
              {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}, array=True),
        query("datetime", "An RFC 3339 instant or interval the record's time meets.", {"type": "string"}),
        query("type", "Resource types (any of them).", {"type": "array", "items": {"type": "string"}}, array=True),
        query("keywords", "Keywords (any of them).", {"type": "array", "items": {"type": "string"}}, array=True),
        query("ids", "Record ids (any of them).", {"type": "array", "items": {"type": "string"}}, array=True),
        query("externalIds", "External identifiers (no record carries one).", {"type": "array", "items": {"type": "string"}},
              array=True),
        query("limit", "Records per page.", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10}),
        query("offset", "Records to skip.", {"type": "integer", "minimum": 0, "default": 0}),
        query("sortby", "Sort keys, each optionally prefixed + or -.",
              {"type": "array", "items": {"type": "string", "enum": [f"{s}{k}" for k in SORTABLE for s in ("", "-")]}},
              array=True),
        *(query(name, f"Records whose {name} is any of these.",
                {"type": "array", "items": {"type": "string", **({"enum": enums[name]} if name in enums else {})}},
                array=True) for name in EQUALITY),
        fmt]
    record = {"name": "recordId", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "A record's id (the name of the collection it describes)."}
    plain_fmt = query("f", "The representation.", {"type": "string", "enum": ["json", "html"]})
    return {
        base: {"get": {"summary": "开放目录 The open-data catalogue (a record collection)", "tags": ["catalog"],
                       "parameters": [plain_fmt], "responses": {"200": json_doc, **errors}}},
        f"{base}/queryables": {"get": {"summary": "What the catalogue's records can be searched by", "tags": ["catalog"],
                                       "parameters": [plain_fmt], "responses": {"200": json_doc, **errors}}},
        f"{base}/items": {"get": {"summary": "Search the catalogue's records", "tags": ["catalog"], "parameters": search,
                                  "responses": {"200": records, **errors}}},
        f"{base}/items/{{recordId}}": {"get": {"summary": "One record", "tags": ["catalog"], "parameters": [record, fmt],
                                               "responses": {"200": records, **errors}}},
    }


def openapi_document(config: dict[str, Any]) -> dict[str, Any]:
    """pygeoapi's OpenAPI document for the config, self-contained, with the filter parameters."""
    from pygeoapi.openapi import get_oas

    from geoservice.serve.openapi_edits import edit_paths  # it needs serve.edits, which needs this module

    document = get_oas(config)
    for name, resource in config["resources"].items():
        items = document["paths"].get(f"/collections/{name}/items", {}).get("get")
        if items is not None:
            items["parameters"].extend(filter_parameters(resource["providers"][0]["crs"]))
    document["paths"].update(own_paths(config))
    document["paths"].update(tile_paths(config))
    document["paths"].update(record_paths())
    for path, operations in edit_paths(config).items():
        document["paths"].setdefault(path, {}).update(operations)
    used: dict[str, set[str]] = {}
    document = _localize(document, used)
    used.setdefault("schemas", set()).update(("exception", "link", "featureGeoJSON", "featureCollectionGeoJSON"))
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "description": "An API token (`geoservice token`): reads up to its grade."}
    for kind, names in used.items():
        for name in names:
            components.setdefault(kind, {}).setdefault(name, LOCAL_COMPONENTS[kind][name])
    return document
