"""The OpenAPI paths of OGC API – Features Part 4 (serve/edits.py) and of the submissions' review
(serve/submission_api.py), for the collections that are written: merged into the items paths pygeoapi documents."""

from __future__ import annotations

from typing import Any

from geoservice.edit import TRANSITIONS
from geoservice.serve.edits import BODY_TYPES, ITEM, ITEMS, WRITES

_FEATURE = {"$ref": "#/components/schemas/featureGeoJSON"}
_CRS = {"name": "Content-Crs", "in": "header", "required": False, "schema": {"type": "string"},
        "description": "The CRS of the body's coordinates, `<URI>` (any of the collection's crs list; default CRS84)."}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
             "description": "The ETag of the feature as the writer read it (`*`: any revision). Without it 428; "
                            "when it is not the current revision 412."}
_WRITTEN = {"application/geo+json": {"schema": _FEATURE}}
_AUTH = {"401": {"description": "No or unknown bearer token."},
         "403": {"description": "The token has no `edit` scope."},
         "404": {"$ref": "#/components/responses/NotFound"},
         "405": {"description": "The collection is not written over Part 4, or the method is not on this path."},
         "413": {"description": "The body is larger than the upload limit (`server.max_upload_mb`)."}}
_REFUSED = {"400": {"description": "The feature cannot be stored (the reason named): invalid or empty geometry, "
                                   "outside the working CRS's area of use, unknown properties or class codes, an id that "
                                   "exists, a media type other than " + ", ".join(BODY_TYPES) + ". Nothing is stored.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/exception"}}}}}
_LOCKED = {"412": {"description": "If-Match does not name the current revision: someone wrote it since you read it."},
           "428": {"description": "If-Match is missing."}}


def _body(description: str, media: tuple[str, ...]) -> dict[str, Any]:
    return {"required": True, "description": description,
            "content": {m: {"schema": {"type": "object"}} for m in media}}


def _options(name: str, allowed: str) -> dict[str, Any]:
    return {"summary": f"The methods allowed ({allowed})", "tags": [name],
            "responses": {"204": {"description": "The `Allow` header names the methods.",
                                  "headers": {"Allow": {"schema": {"type": "string"}}}}}}


def edit_paths(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per written collection: POST items; PUT, PATCH, DELETE an item; OPTIONS; a construction layer's review."""
    paths: dict[str, dict[str, Any]] = {}
    feature = [{"$ref": "#/components/parameters/featureId"}]
    for name, resource in config["resources"].items():
        if resource.get("type") != "collection":
            continue
        collection = resource["providers"][0]["geoservice"]["collection"]
        if not collection.get("editable"):
            continue
        items, item = f"/collections/{name}/items", f"/collections/{name}/items/{{featureId}}"
        security = [{"bearer": []}]
        paths[items] = {
            "post": {"summary": f"Add features to {name} (a Feature or a FeatureCollection), each checked on arrival",
                     "tags": [name], "security": security, "parameters": [_CRS],
                     "requestBody": _body("A GeoJSON Feature or FeatureCollection.", BODY_TYPES[:2]),
                     "responses": {"201": {"description": "Stored: the features as read back (CRS84), each with its "
                                                          "submission's check; one feature carries Location and ETag.",
                                           "content": _WRITTEN}, **_REFUSED, **_AUTH}},
            "options": _options(name, WRITES[ITEMS])}
        changed = {"200": {"description": "Stored: the feature as read back (CRS84) with its new ETag.",
                           "content": _WRITTEN}, **_REFUSED, **_AUTH, **_LOCKED}
        paths[item] = {
            "put": {"summary": f"Replace a feature of {name}", "tags": [name], "security": security,
                    "parameters": [*feature, _IF_MATCH, _CRS], "responses": changed,
                    "requestBody": _body("A GeoJSON Feature.", BODY_TYPES[:2])},
            "patch": {"summary": f"Update a feature of {name} (a JSON merge patch)", "tags": [name],
                      "security": security, "parameters": [*feature, _IF_MATCH, _CRS], "responses": changed,
                      "requestBody": _body("A JSON merge patch (RFC 7396) of the Feature.", BODY_TYPES)},
            "delete": {"summary": f"Delete a feature of {name}", "tags": [name], "security": security,
                       "parameters": [*feature, _IF_MATCH],
                       "responses": {"204": {"description": "Deleted (a revision: its history stays readable)."},
                                     **_AUTH, **_LOCKED}},
            "options": _options(name, WRITES[ITEM])}
        if collection.get("kind") == "construction":
            paths[f"{item}/review"] = _review_path(name, feature)
    return paths


def _review_path(name: str, feature: list[dict[str, Any]]) -> dict[str, Any]:
    json_doc = {"description": "The submission: status, the check stored on arrival, the status history (JSON), or "
                               "the printable review sheet (f=html).",
                "content": {"application/json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}}}}
    fmt = {"name": "f", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "html"]}}
    body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"type": "string", "enum": sorted({s for t in TRANSITIONS.values() for s in t})},
                       "comment": {"type": "string", "description": "审查意见; required for a decision."}}}}}}
    return {
        "get": {"summary": f"A submitted project's review (合规性审查) in {name}", "tags": [name],
                "parameters": [*feature, fmt], "responses": {"200": json_doc, "404": {"$ref": "#/components/responses/NotFound"}}},
        "post": {"summary": "Move a submission on (bearer token with the review scope)", "tags": [name],
                 "security": [{"bearer": []}], "parameters": feature, "requestBody": body,
                 "responses": {"200": json_doc, "400": {"$ref": "#/components/responses/InvalidParameter"},
                               "401": {"description": "No or unknown token."},
                               "403": {"description": "The token has no review scope."},
                               "404": {"$ref": "#/components/responses/NotFound"},
                               "409": {"description": "The submission is already decided."},
                               "422": {"description": "The status cannot follow the current one, or a comment is "
                                                      "required."}}}}
