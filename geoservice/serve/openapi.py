"""The OpenAPI document: pygeoapi's, made self-contained and completed with the filter parameters.

pygeoapi's document points its `$ref`s at schemas.opengis.net and GitHub; a client on an intranet (or a
validator following them) cannot resolve those. Each remote reference is replaced by a local component
of the same name, defined here.
"""

from __future__ import annotations

import re
from typing import Any

from geoservice.serve.crs import CRS84

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


def openapi_document(config: dict[str, Any]) -> dict[str, Any]:
    """pygeoapi's OpenAPI document for the config, self-contained, with the filter parameters."""
    from pygeoapi.openapi import get_oas

    document = get_oas(config)
    for name, resource in config["resources"].items():
        items = document["paths"].get(f"/collections/{name}/items", {}).get("get")
        if items is not None:
            items["parameters"].extend(filter_parameters(resource["providers"][0]["crs"]))
    used: dict[str, set[str]] = {}
    document = _localize(document, used)
    used.setdefault("schemas", set()).update(("exception", "link", "featureGeoJSON", "featureCollectionGeoJSON"))
    components = document.setdefault("components", {})
    for kind, names in used.items():
        for name in names:
            components.setdefault(kind, {}).setdefault(name, LOCAL_COMPONENTS[kind][name])
    return document
