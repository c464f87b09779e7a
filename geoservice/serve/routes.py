"""The OGC API endpoints over the caller's view of the live catalog (`request.state.view`): items and single items as
PostGIS-written text, conformance, the landing page, and pygeoapi's collection documents with caching headers.

pygeoapi 0.21's items API turns a provider's result into a dict and serializes it again (three times the
cost of the query for a page of 1,000), builds offset-only links, rejects `filter-lang=cql2-text`, parses
`filter` as ECQL, transforms a bbox by its two corners into the storage CRS, answers an unknown item with
400 and ignores unknown parameters. These routes call the same provider and answer JSON and HTML
themselves; other formats (JSON-LD, CSV), once their parameters passed the same checks, and the collection
documents are pygeoapi's endpoint functions over the caller's API object.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import Any

import orjson
import pygeoapi.api as core_api
import pygeoapi.api.itemtypes as itemtypes_api
from pygeoapi.api import API, SYSTEM_LOCALE, APIRequest
from pygeoapi.linked_data import geojson2jsonld
from pygeoapi.plugin import load_plugin
from pygeoapi.util import render_j2_template
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from geoservice import gcj02
from geoservice.serve import delegate
from geoservice.serve.caching import not_modified, validators, with_validators
from geoservice.serve.catalog import CONFLICTS
from geoservice.serve.crs import CRS84
from geoservice.serve.params import page_request
from geoservice.serve.problems import ClientError, problem
from geoservice.serve.provider import GeoserviceProvider, Page, Unavailable
from geoservice.serve.live import GradeView
from geoservice.serve.query import PageRequest
from geoservice.serve.records import CONFORMANCE as RECORDS_CONFORMANCE
from geoservice.serve.records import catalog_link
from geoservice.serve.tile_links import REL_SCHEMES, landing_tile_links
from geoservice.serve.tiles import CONFORMANCE as TILES_CONFORMANCE
from geoservice.settings import Settings

GEOJSON = "application/geo+json"
HTML = "text/html"
ITEM_PARAMETERS = {"f", "lang", "crs"}
#: the formats of items and single items (single items: not csv)
FORMATS = ("json", "html", "csv", "jsonld")
_OGC = "http://www.opengis.net/spec"
#: what geoservice implements, for every collection it serves
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    f"{_OGC}/ogcapi-features-1/1.0/conf/core",
    f"{_OGC}/ogcapi-features-1/1.0/conf/oas30",
    f"{_OGC}/ogcapi-features-1/1.0/conf/html",
    f"{_OGC}/ogcapi-features-1/1.0/conf/geojson",
    f"{_OGC}/ogcapi-features-2/1.0/conf/crs",
    f"{_OGC}/ogcapi-features-4/1.0/conf/create-replace-delete",  # on editable collections (serve/edits.py)
    f"{_OGC}/ogcapi-features-4/1.0/conf/update",
    f"{_OGC}/ogcapi-features-4/1.0/conf/features",
    f"{_OGC}/ogcapi-features-3/1.0/conf/queryables",
    f"{_OGC}/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    f"{_OGC}/ogcapi-features-3/1.0/conf/filter",
    f"{_OGC}/ogcapi-features-3/1.0/conf/features-filter",
    f"{_OGC}/cql2/1.0/conf/cql2-text",
    f"{_OGC}/cql2/1.0/conf/cql2-json",
    f"{_OGC}/cql2/1.0/conf/basic-cql2",
    f"{_OGC}/cql2/1.0/conf/advanced-comparison-operators",
    f"{_OGC}/cql2/1.0/conf/case-insensitive-comparison",
    f"{_OGC}/cql2/1.0/conf/basic-spatial-functions",
    f"{_OGC}/cql2/1.0/conf/basic-spatial-functions-plus",
    f"{_OGC}/cql2/1.0/conf/spatial-functions",
    f"{_OGC}/cql2/1.0/conf/property-property",
    f"{_OGC}/ogcapi-processes-1/1.0/conf/core",
    f"{_OGC}/ogcapi-processes-1/1.0/conf/ogc-process-description",
    f"{_OGC}/ogcapi-processes-1/1.0/conf/json",
    f"{_OGC}/ogcapi-processes-1/1.0/conf/html",
    f"{_OGC}/ogcapi-processes-1/1.0/conf/oas30",
    *TILES_CONFORMANCE,
    *RECORDS_CONFORMANCE,
]

class Endpoints:
    """The handlers; what they serve comes with each request (its view), the page limits from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.default_limit, self.max_limit = settings.server.limits.default_items, settings.server.limits.max_items
        # the HTML pages' maps draw on `server.map_tiles`: in GCJ-02 when that background is a GCJ-02 map
        self.html_crs = gcj02.URIS[gcj02.GCJ02] if settings.server.map_tiles_crs == "GCJ02" else CRS84

    # -- responses ------------------------------------------------------------------------------------

    @staticmethod
    def _error(api: API, request: APIRequest, status: HTTPStatus, code: str, description: str) -> Response:
        """An OGC exception (an HTML page when HTML was asked for), not logged: a client's mistake is not a server
        error."""
        html = request.format == "html"
        headers = request.get_response_headers(SYSTEM_LOCALE, force_type=HTML if html else "application/json",
                                               **api.api_headers)
        page = partial(render_j2_template, api.tpl_config, api.config["server"]["templates"], "exception.html",
                       locale_=SYSTEM_LOCALE) if html else None
        return problem(status, code, description, headers, page)

    @staticmethod
    def _html(api: API, request: APIRequest, template: str, data: dict[str, Any], dataset: str | None = None) -> Response:
        templates = api.get_dataset_templates(dataset) if dataset else api.config["server"]["templates"]
        content = render_j2_template(api.tpl_config, templates, template, data, request.locale)
        headers = request.get_response_headers(force_type=HTML, **api.api_headers)
        return Response(content, headers=headers)

    @staticmethod
    def _format(request: APIRequest) -> str | None:
        """json, html, csv or jsonld (JSON without a format asked for); None for a format not offered."""
        return request.format if request.format in FORMATS else "json" if not request.format else None

    # -- /, /conformance, /collections[/{id}] ------------------------------------------------------------

    async def landing_page(self, request: Request) -> Response:
        """pygeoapi's landing page; its HTML rendered here, with what this caller's page shows (sign-in, report)."""
        view: GradeView = request.state.view
        tags = validators(request, request.state.catalog, None)
        cached = not_modified(request, tags)
        if cached is not None:
            return cached
        api_request = await APIRequest.from_starlette(request, view.api.locales)
        if api_request.format != "html":
            response = await delegate.call(core_api.landing_page, request)
            if response.status_code == HTTPStatus.OK and response.headers.get("content-type", "").startswith("application/json"):
                page = orjson.loads(response.body)
                page["links"] = [link for link in page["links"] if link["rel"] != REL_SCHEMES]  # pygeoapi's are dead
                page["links"] += landing_tile_links(view.api.config["server"]["url"])
                page["links"].append(catalog_link(view.api.config["server"]["url"]))
                response.body = orjson.dumps(page)
                response.headers["content-length"] = str(len(response.body))
            return with_validators(response, tags)
        data = {"collection": bool(view.providers), "process": bool(view.api.manager.processes), "tile": True,
                "stac-collection": False, "conflicts": CONFLICTS in view.providers,
                "catalog": bool(view.records)}
        return with_validators(await run_in_threadpool(self._html, view.api, api_request, "landing_page.html", data), tags)

    async def collections(self, request: Request) -> Response:
        """pygeoapi's collection list or one collection, with caching headers."""
        name = request.path_params.get("collection_id")
        collection = request.state.view.collection(name) if name else None
        tags = validators(request, request.state.catalog, collection) if name is None or collection else None
        cached = not_modified(request, tags)
        if cached is not None:
            return cached
        response = await delegate.call(core_api.describe_collections, request, name)
        return with_validators(response, tags) if response.status_code == HTTPStatus.OK else response

    async def conformance(self, request: Request) -> Response:
        api = request.state.view.api
        api_request = await APIRequest.from_starlette(request, api.locales)
        data = {"conformsTo": CONFORMANCE}
        if self._format(api_request) == "html":
            return await run_in_threadpool(self._html, api, api_request, "conformance.html", data)
        headers = api_request.get_response_headers(force_type="application/json", **api.api_headers)
        return Response(orjson.dumps(data), headers=headers)

    # -- /collections/{id}/items ----------------------------------------------------------------------------

    async def items(self, request: Request) -> Response:
        view: GradeView = request.state.view
        api_request = await APIRequest.from_starlette(request, view.api.locales)
        name = request.path_params["collection_id"]
        provider = view.providers.get(name)
        if provider is None:
            return self._error(view.api, api_request, HTTPStatus.NOT_FOUND, "NotFound", f"no collection {name!r}")
        tags = validators(request, request.state.catalog, provider.collection)
        cached = not_modified(request, tags)
        if cached is not None:
            return cached
        fmt, params = self._format(api_request), dict(request.query_params)
        if fmt is None:
            return await delegate.call(itemtypes_api.get_collection_items, request, name)  # pygeoapi's format error
        try:
            page_req, page = await run_in_threadpool(self._page, provider, params, fmt)
        except ClientError as exc:
            return self._error(view.api, api_request, exc.status, exc.code, str(exc))
        except Unavailable as exc:
            return self._error(view.api, api_request, HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable", str(exc))
        links = self._items_links(view.api, name, params, page, fmt)
        extra = {"links": links, "timeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        if fmt == "html":
            html = await run_in_threadpool(self._items_html, view.api, api_request, provider, name, page, extra)
            return with_validators(html, tags)
        if fmt in ("csv", "jsonld"):
            written = await run_in_threadpool(self._written, view.api, api_request, name, page.feature_collection(extra), fmt)
            return with_validators(written, tags)
        headers = api_request.get_response_headers(force_type=GEOJSON, **view.api.api_headers)
        headers["Content-Crs"] = f"<{page_req.crs.uri}>"
        return with_validators(Response(page.feature_collection(extra), headers=headers), tags)

    def _page(self, provider: GeoserviceProvider, params: dict[str, str], fmt: str) -> tuple[PageRequest, Page]:
        """Check the parameters and read the page (in a worker thread: geometry work and the query block)."""
        page_req = page_request(provider, params, self.default_limit, self.max_limit)
        if fmt == "html":  # the page's map is in CRS84 (GCJ-02 over a GCJ-02 background)
            page_req = PageRequest(page_req.selection, provider.crs.lookup(self.html_crs) or provider.crs.default,
                                   page_req.limit, page_req.offset, page_req.sort, page_req.properties)
        return page_req, provider.page(page_req)

    @staticmethod
    def _written(api: API, request: APIRequest, name: str, text: bytes | str, fmt: str,
                 identifier: str | None = None) -> Response:
        """A page (or, with `identifier`, one feature) as CSV or JSON-LD, written by pygeoapi's formatters."""
        data = orjson.loads(text)
        if fmt == "jsonld":
            headers = request.get_response_headers(force_type="application/ld+json", **api.api_headers)
            return Response(geojson2jsonld(api, data, name, identifier, "id"), headers=headers)
        formatter = load_plugin("formatter", {"name": "CSV", "geom": True})
        headers = request.get_response_headers(force_type=formatter.mimetype, **api.api_headers)
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return Response(formatter.write(data=data, options={}), headers=headers)

    @staticmethod
    def _items_links(api: API, name: str, params: dict[str, str], page: Page, fmt: str) -> list[dict[str, str]]:
        base = f"{api.get_collections_url()}/{name}/items"
        kept = {k: v for k, v in params.items() if k not in ("f", "offset")}

        def href(f: str | None, offset: int | None = None) -> str:
            query = {**kept, **({"offset": str(offset)} if offset else {}), **({"f": f} if f else {})}
            return f"{base}?{urllib.parse.urlencode(query, safe=',:/')}" if query else base

        own = "html" if fmt == "html" else params.get("f")
        own_type = {"html": HTML, "csv": "text/csv", "jsonld": "application/ld+json"}.get(fmt, GEOJSON)
        links = [
            {"rel": "self", "type": own_type, "title": "This document", "href": href(own, page.offset)},
            {"rel": "alternate", "type": HTML if fmt != "html" else GEOJSON, "title": "This document as HTML"
             if fmt != "html" else "This document as GeoJSON", "href": href("html" if fmt != "html" else "json", page.offset)},
            {"rel": "collection", "type": "application/json", "title": "The collection",
             "href": f"{api.get_collections_url()}/{name}"},
        ]
        end = page.offset + len(page.features)
        more = end < page.matched if page.matched is not None else len(page.features) == page.limit
        if more:
            links.append({"rel": "next", "type": own_type, "title": "Next page", "href": href(own, end)})
        if page.offset > 0:
            links.append({"rel": "prev", "type": own_type, "title": "Previous page",
                          "href": href(own, max(0, page.offset - page.limit))})
        return links

    def _items_html(self, api: API, request: APIRequest, provider: GeoserviceProvider, name: str, page: Page,
                    extra: dict[str, Any]) -> Response:
        collections = api.get_collections_url()
        data = orjson.loads(page.feature_collection(extra))
        data.update(items_path=f"{collections}/{name}/items", dataset_path=f"{collections}/{name}",
                    collections_path=collections, offset=page.offset, id_field="id", title=provider.collection.title)
        if provider.title_field:
            data.update(title_field=provider.title_field, id_field=provider.title_field)
        for link in data["links"]:
            if link["rel"] == "collection":
                link["title"] = data["title"]
        return self._html(api, request, "collections/items/index.html", data, name)

    # -- /collections/{id}/items/{featureId} ---------------------------------------------------------------

    async def item(self, request: Request) -> Response:
        view: GradeView = request.state.view
        api = view.api
        api_request = await APIRequest.from_starlette(request, api.locales)
        name, identifier = request.path_params["collection_id"], request.path_params["item_id"]
        provider = view.providers.get(name)
        if provider is None:
            return self._error(api, api_request, HTTPStatus.NOT_FOUND, "NotFound", f"no collection {name!r}")
        tags = validators(request, request.state.catalog, provider.collection)
        cached = not_modified(request, tags)
        if cached is not None:
            return cached
        fmt = self._format(api_request)
        if fmt is None or fmt == "csv":
            return await delegate.call(itemtypes_api.get_collection_item, request, name, identifier)  # format error
        unknown = [k for k in request.query_params if k not in ITEM_PARAMETERS]
        text = request.query_params.get("crs")
        crs = provider.crs.lookup(text) if text else provider.crs.default
        if unknown or crs is None:
            reason = f"unknown parameter {unknown[0]!r}" if unknown else f"crs {text!r} is not offered"
            return self._error(api, api_request, HTTPStatus.BAD_REQUEST, "InvalidParameterValue", reason)
        if fmt == "html":
            crs = provider.crs.lookup(self.html_crs) or provider.crs.default
        try:
            feature = await run_in_threadpool(provider.feature, identifier, crs)
        except ClientError as exc:
            return self._error(api, api_request, exc.status, exc.code, str(exc))
        except Unavailable as exc:
            return self._error(api, api_request, HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable", str(exc))
        if feature is None:
            return self._error(api, api_request, HTTPStatus.NOT_FOUND, "NotFound", f"no item {identifier!r} in {name!r}")
        collections, title = api.get_collections_url(), provider.collection.title
        own = f"{collections}/{name}/items/{urllib.parse.quote(identifier)}"
        links = [{"rel": "self", "type": HTML if fmt == "html" else GEOJSON, "title": "This document",
                  "href": f"{own}?f={fmt}"},
                 {"rel": "alternate", "type": GEOJSON if fmt == "html" else HTML, "title": "This document",
                  "href": f"{own}?f={'json' if fmt == 'html' else 'html'}"},
                 {"rel": "collection", "type": "application/json", "title": title, "href": f"{collections}/{name}"}]
        body = feature[:-1] + ',"links":' + orjson.dumps(links).decode() + "}"
        if fmt == "jsonld":
            return with_validators(await run_in_threadpool(self._written, api, api_request, name, body, fmt, own), tags)
        if fmt == "html":
            data = orjson.loads(body)
            data.update(title=title, id_field="id", collections_path=collections)
            if provider.title_field:
                data["title_field"] = provider.title_field
            return with_validators(await run_in_threadpool(self._html, api, api_request, "collections/items/item.html",
                                                           data, name), tags)
        headers = api_request.get_response_headers(force_type=GEOJSON, **api.api_headers)
        headers["Content-Crs"] = f"<{crs.uri}>"
        return with_validators(Response(body, headers=headers), tags)
