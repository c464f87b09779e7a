"""The query parameters of /collections/{id}/items checked and turned into a PageRequest.

Every problem is a RequestError naming the parameter; a parameter the API does not define is one too
(OGC API Features Part 1, /req/core/query-param-unknown).
"""

from __future__ import annotations

from collections.abc import Mapping

import shapely

from geoservice.serve.cql import parse_filter
from geoservice.serve.crs import ServingCrs
from geoservice.serve.provider import GeoserviceProvider, RequestError, parse_interval
from geoservice.serve.query import PageRequest, Selection, SortKey
from geoservice.serve.spatial import GeometryError, bbox_geometry, covers_share, to_working

#: parameters of the items request besides the queryables (f and lang are pygeoapi's format and language)
ITEMS_PARAMETERS = {"f", "lang", "bbox", "bbox-crs", "crs", "limit", "offset", "datetime", "filter", "filter-lang",
                    "filter-crs", "sortby", "properties", "skipGeometry"}
FILTER_LANGUAGES = ("cql2-text", "cql2-json")
MAX_SORT_KEYS = 10


def integer_param(params: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """A whole-number query parameter (`default` when absent); RequestError below `minimum` or not a number."""
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise RequestError(f"{name} must be an integer, not {text!r}") from exc
    if value < minimum:
        raise RequestError(f"{name} must be at least {minimum}")
    return value


def _crs(provider: GeoserviceProvider, params: Mapping[str, str], name: str) -> ServingCrs:
    text = params.get(name)
    if text is None:
        return provider.crs.default
    crs = provider.crs.lookup(text)
    if crs is None:
        raise RequestError(f"{name} {text!r} is not offered; offered: {', '.join(provider.crs.uris)}")
    return crs


def _bbox(provider: GeoserviceProvider, params: Mapping[str, str]) -> tuple[bytes | None, float]:
    text = params.get("bbox")
    if text is None:
        if "bbox-crs" in params:
            raise RequestError("bbox-crs given without bbox")
        return None, 1.0
    crs = _crs(provider, params, "bbox-crs")
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise RequestError(f"bbox must be 4 or 6 comma-separated numbers, not {text!r}") from exc
    if len(values) not in (4, 6) or not all(abs(v) < 1e15 for v in values):
        raise RequestError(f"bbox must be 4 or 6 comma-separated finite numbers, not {text!r}")
    collection, working = provider.collection, provider.crs.working
    try:
        region = to_working(bbox_geometry(values, crs), crs, collection.extent, working.srid)
    except GeometryError as exc:
        raise RequestError(f"bbox: {exc}") from exc
    return shapely.to_wkb(region), covers_share(region, collection.extent)


def _sortby(provider: GeoserviceProvider, text: str | None) -> tuple[SortKey, ...]:
    if not text:
        return ()
    parts = text.split(",")
    if len(parts) > MAX_SORT_KEYS:
        raise RequestError(f"sortby: {len(parts)} keys given; at most {MAX_SORT_KEYS}")
    keys = []
    for part in parts:
        part = part.strip()
        descending = part.startswith("-")
        name = part.lstrip("+-").strip()
        refusal = None if name == "id" else provider.collection.unqueryable(name)
        if refusal:
            raise RequestError(f"sortby: {refusal}")
        keys.append(SortKey(name, descending))
    return tuple(keys)


def _properties(provider: GeoserviceProvider, text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if provider.collection.field(n) is None]
    if unknown:
        raise RequestError(f"properties: unknown property {unknown[0]!r}")
    return names


def _skip_geometry(text: str | None) -> bool:
    if text is None:
        return False
    if text.lower() not in ("true", "false"):
        raise RequestError(f"skipGeometry must be true or false, not {text!r}")
    return text.lower() == "true"


def selection_of(provider: GeoserviceProvider, params: Mapping[str, str]) -> Selection:
    """The WHERE of an items request: bbox, property filters, filter, datetime."""
    unknown = [k for k in params if k not in ITEMS_PARAMETERS and provider.collection.field(k) is None]
    if unknown:
        raise RequestError(f"unknown parameter {unknown[0]!r}")
    bbox, share = _bbox(provider, params)
    equals = tuple((k, provider.typed_value(k, v)) for k, v in params.items() if k not in ITEMS_PARAMETERS)
    text, lang = params.get("filter"), params.get("filter-lang", "cql2-text")
    if lang not in FILTER_LANGUAGES:
        raise RequestError(f"filter-lang must be one of {', '.join(FILTER_LANGUAGES)}, not {lang!r}")
    node, filter_crs = None, None
    if text is not None:
        filter_crs = _crs(provider, params, "filter-crs")
        node = parse_filter(text, lang)  # a FilterError is a client error as it is
    elif "filter-crs" in params or "filter-lang" in params:
        raise RequestError("filter-lang or filter-crs given without filter")
    interval = parse_interval(params["datetime"]) if "datetime" in params else None
    return Selection(bbox, share, equals, node, filter_crs, interval)


def page_request(provider: GeoserviceProvider, params: Mapping[str, str], default_limit: int, max_limit: int) -> PageRequest:
    """The whole items request; a limit above the maximum is lowered to it (Part 1 allows no error there)."""
    limit = min(integer_param(params, "limit", default_limit, 1), max_limit)
    return PageRequest(
        selection=selection_of(provider, params), crs=_crs(provider, params, "crs"), limit=limit,
        offset=integer_param(params, "offset", 0, 0), sort=_sortby(provider, params.get("sortby")),
        properties=_properties(provider, params.get("properties")), skip_geometry=_skip_geometry(params.get("skipGeometry")),
    )
