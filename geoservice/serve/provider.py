"""The PostGIS provider: a pygeoapi feature provider over one partition of a geoservice table.

Configured in pygeoapi as `name: geoservice.serve.provider.GeoserviceProvider`, with the collection's
description (table, partition, properties, extent, count) under the `geoservice` key of the provider
definition, so creating it (pygeoapi does that per request) touches no database. One statement per page;
PostGIS writes the GeoJSON; connections come from a per-process pool; page positions and counts are
remembered per process (see paging.py).

numberMatched: exact always, or left out. Without filters it is the stored count of the layer version /
run. With filters the page statement also counts the matches with a window function, up to
`exact_count_limit` rows (or offset + limit when larger); a selection matching more has no numberMatched.
A count is remembered for later pages of the same selection.

geoservice's own /items routes call `page` and `feature` and send the text as is; pygeoapi's stock items
API (formats other than JSON and HTML, or pygeoapi run on its own with a written config) calls
`query`/`get`, which return dicts parsed from the same text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import numpy as np
import orjson
import psycopg2
import shapely
from pygeoapi.provider.base import BaseProvider, ProviderConnectionError, ProviderInvalidQueryError, ProviderItemNotFoundError
from pygeofilter import ast

from geoservice import gcj02
from geoservice.serve.catalog import Collection
from geoservice.serve.crs import CrsCatalog, ServingCrs
from geoservice.serve.paging import TOO_MANY, PagingMemory
from geoservice.serve.pool import PoolExhausted, parallel, pool_for
from geoservice.serve.problems import ClientError
from geoservice.serve.query import (
    PageRequest,
    Selection,
    SortKey,
    Statement,
    item_statement,
    keyset_ready,
    page_statement,
    sort_keys,
)
from geoservice.serve.spatial import bbox_geometry, covers_share, to_working

LOGGER = logging.getLogger(__name__)
_memory = PagingMemory()
_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "object": "object"}


class RequestError(ClientError):
    """A request the collection cannot answer as asked (400)."""


class Unavailable(RuntimeError):
    """The database cannot be reached or is saturated (503)."""


class ProviderUnavailable(ProviderConnectionError):
    """Unavailable, as pygeoapi's API answers it (its own connection error is a 500)."""

    http_status_code = HTTPStatus.SERVICE_UNAVAILABLE
    ogc_exception_code = "ServiceUnavailable"


@dataclass(frozen=True)
class PagePlan:
    """How a page is read: the statement, and what to remember afterwards."""

    statement: Statement
    scope: tuple[Any, ...]                     # the collection and selection counts and positions belong to
    keys: tuple[SortKey, ...] | None           # the sort keys when paging by keyset, else None
    start: int                                 # the remembered position the statement starts after
    known: int | None                          # the number of matches known before running it
    count_up_to: int | None                    # the statement counts matches up to this many


@dataclass(frozen=True)
class Page:
    """One page: each feature's GeoJSON text, the number of matches when known."""

    features: list[str]
    matched: int | None
    offset: int
    limit: int

    def feature_collection(self, extra: dict[str, Any] | None = None) -> bytes:
        """The page as a GeoJSON FeatureCollection; `extra` members (links, timeStamp) are appended."""
        members: dict[str, Any] = {"numberReturned": len(self.features)}
        if self.matched is not None:
            members["numberMatched"] = self.matched
        members.update(extra or {})
        tail = orjson.dumps(members)[1:-1]
        return b'{"type":"FeatureCollection","features":[' + ",".join(self.features).encode() + b"]," + tail + b"}"


class GeoserviceProvider(BaseProvider):
    """pygeoapi provider for one geoservice collection (a layer version, the base map, the conflicts)."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        options = provider_def["geoservice"]
        self.collection = Collection.from_dict(options["collection"])
        self.crs = CrsCatalog(options["crs"], options["working_crs"])
        self.exact_count_limit = int(options["exact_count_limit"])
        self.pool_size = int(options["pool_size"])
        self.id_field = "id"
        self.title_field = self.collection.title_field
        self.time_field = self.collection.time_field
        self._fields = {f.name: {"type": _JSON_TYPES[f.type], **({"format": f.format} if f.format else {})}
                        for f in self.collection.fields if f.queryable}

    def get_fields(self) -> dict[str, dict[str, str]]:
        return self._fields

    # -- geoservice's own API: text in, text out -------------------------------------------------------

    def plan(self, request: PageRequest) -> PagePlan:
        """The statement a page runs: keyset from the nearest remembered position, a window count when needed."""
        collection, selection = self.collection, request.selection
        scope = (collection.name, collection.partition_key, selection.signature)
        keys = sort_keys(collection, request.sort)
        keyset = keyset_ready(collection, keys) and not collection.editable  # written ones change between pages
        start, after = _memory.start(scope, keys, request.offset) if keyset else (0, None)
        known = (None if collection.editable else _memory.count(scope) if selection != Selection()
                 else collection.feature_count)
        count_up_to = None if known is not None else max(self.exact_count_limit, request.offset - start + request.limit)
        statement = page_statement(collection, request, self.crs.working.srid, request.offset - start, after, count_up_to)
        return PagePlan(statement, scope, keys if keyset else None, start, known, count_up_to)

    def check_output_crs(self, crs: ServingCrs) -> None:
        """RequestError when `crs` is GCJ-02 or BD-09 and the collection reaches outside China (not defined there)."""
        extent = self.collection.crs84_extent
        if crs.system is None or extent is None:
            return
        try:
            gcj02.check_in_china(np.array(extent[0::2]), np.array(extent[1::2]), crs.system,
                                 f"the extent of {self.collection.name!r}")
        except gcj02.OutsideChinaError as exc:
            raise RequestError(f"crs: {exc}") from exc

    def page(self, request: PageRequest) -> Page:
        """One page of features as GeoJSON texts, with keyset paging and counting as described above."""
        self.check_output_crs(request.crs)
        plan = self.plan(request)
        rows = self.fetch(plan.statement.sql, plan.statement.values)
        known = plan.known
        if plan.count_up_to is not None and (rows or request.offset == plan.start):
            counted = rows[0][-1] if rows else 0  # no row at a remembered position: nothing beyond it
            known = TOO_MANY if counted > plan.count_up_to else plan.start + counted
            if request.selection != Selection():
                _memory.remember_count(plan.scope, known)
        if rows and plan.keys is not None:
            last = rows[-1][1:1 + len(plan.keys)]
            _memory.remember_position(plan.scope, plan.keys, request.offset + len(rows), tuple(last))
        matched = known if known is not None and known >= 0 else None
        return Page([row[0] for row in rows], matched, request.offset, request.limit)

    def feature(self, identifier: str, crs: ServingCrs) -> str | None:
        """One feature's GeoJSON text, or None when there is no such id."""
        try:
            number = int(identifier)
        except ValueError:
            return None
        if not -2**63 <= number < 2**63:
            return None
        self.check_output_crs(crs)
        statement = item_statement(self.collection, number, crs, self.crs.working.srid)
        rows = self.fetch(statement.sql, statement.values)
        return rows[0][0] if rows else None

    def fetch(self, query: Any, values: dict[str, Any], parallel_workers: int = 0) -> list[tuple[Any, ...]]:
        """The rows of a statement on the collection's database (Unavailable, or RequestError for a value PostgreSQL
        refuses), planned with up to `parallel_workers` parallel workers (the pool's sessions have none)."""
        try:
            with pool_for(self.data, self.pool_size).connection() as conn, conn.cursor() as cur:
                with parallel(cur, parallel_workers) if parallel_workers else nullcontext():
                    cur.execute(query, values)
                    return cur.fetchall()
        except (psycopg2.OperationalError, psycopg2.InterfaceError, PoolExhausted) as exc:
            raise Unavailable("the database is not available") from exc
        except (psycopg2.DataError, psycopg2.ProgrammingError) as exc:
            # a value that passed the checks but not PostgreSQL's (e.g. a number out of range); logged, not shown
            LOGGER.error("%s: query failed: %s", self.collection.name, str(exc).strip().splitlines()[0])
            raise RequestError("the request cannot be evaluated on this collection (check the values' types)") from exc

    # -- pygeoapi's provider interface --------------------------------------------------------------------

    def query(self, offset: int = 0, limit: int = 10, resulttype: str = "results", bbox: list[float] | None = None,
              datetime_: str | None = None, properties: Iterable[tuple[str, str]] = (), sortby: list[dict] | None = None,
              select_properties: list[str] | None = None, skip_geometry: bool = False, q: str | None = None,
              filterq: ast.Node | None = None, crs_transform_spec: Any = None, **kwargs: Any) -> dict[str, Any]:
        """pygeoapi's items query. Its bbox comes transformed into the storage CRS (corner points, axis order
        of that CRS), its filter geometries likewise; no transform spec means the storage CRS was asked for."""
        try:
            crs = self._output_crs(crs_transform_spec)
            working = self.crs.working
            region = None
            if bbox:
                corners = [bbox[0], bbox[1], bbox[3], bbox[4]] if len(bbox) == 6 else list(bbox)
                region = to_working(bbox_geometry(corners, working), working, self.collection.extent, working.srid)
            selection = Selection(
                bbox=shapely.to_wkb(region) if region is not None else None,
                bbox_share=covers_share(region, self.collection.extent) if region is not None else 1.0,
                equals=tuple((name, self.typed_value(name, value)) for name, value in properties),
                filter=filterq, filter_crs=working if filterq is not None else None,
                interval=parse_interval(datetime_) if datetime_ else None,
            )
            request = PageRequest(
                selection, crs, limit, offset,
                tuple(SortKey(s["property"], s["order"] == "-") for s in sortby or []),
                tuple(select_properties) if select_properties else None, skip_geometry)
            if resulttype == "hits":
                request = PageRequest(selection, crs, 1, 0)
                page = self.page(request)
                return {"type": "FeatureCollection", "features": [], "numberMatched": page.matched, "numberReturned": 0}
            return orjson.loads(self.page(request).feature_collection())
        except ClientError as exc:
            raise ProviderInvalidQueryError(user_msg=str(exc)) from exc
        except Unavailable as exc:
            raise ProviderUnavailable(user_msg=str(exc)) from exc

    def get(self, identifier: str, crs_transform_spec: Any = None, **kwargs: Any) -> dict[str, Any]:
        try:
            text = self.feature(str(identifier), self._output_crs(crs_transform_spec))
        except ClientError as exc:
            raise ProviderInvalidQueryError(user_msg=str(exc)) from exc
        except Unavailable as exc:
            raise ProviderUnavailable(user_msg=str(exc)) from exc
        if text is None:
            raise ProviderItemNotFoundError(user_msg=f"no feature {identifier} in {self.collection.name}")
        return orjson.loads(text)

    def _output_crs(self, crs_transform_spec: Any) -> ServingCrs:
        if crs_transform_spec is None:
            return self.crs.working
        crs = self.crs.lookup(crs_transform_spec.target_crs_uri)
        if crs is None:
            raise RequestError(f"CRS {crs_transform_spec.target_crs_uri} is not offered")
        return crs

    def typed_value(self, name: str, text: str) -> Any:
        """A property filter's text value as the property's type (RequestError when it is not one)."""
        refusal = self.collection.unqueryable(name)
        if refusal:
            raise RequestError(refusal)
        field = self.collection.field(name)
        try:
            if field.format:
                return _parse_moment(text)[0]
            if field.type == "integer":
                return int(text)
            if field.type == "number":
                return float(text)
            if field.type == "boolean":
                return {"true": True, "false": False}[text.lower()]
        except (ValueError, KeyError) as exc:
            raise RequestError(f"{name} is {field.format or field.type}: {text!r} is not") from exc
        return text


def _parse_moment(text: str) -> tuple[datetime, datetime]:
    """An RFC 3339 date-time or a full date as the first and last instant it names (UTC when no offset)."""
    text = text.strip()
    if len(text) == 10:
        day = datetime.fromisoformat(text).replace(tzinfo=None)
        start = day.replace(tzinfo=UTC)
        return start, start.replace(hour=23, minute=59, second=59, microsecond=999999)
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment, moment


def parse_interval(text: str) -> tuple[datetime | None, datetime | None]:
    """An OGC API `datetime` (instant, or interval with `..` or empty open ends) as (start, end)."""
    try:
        if "/" not in text:
            return _parse_moment(text)
        first, second = text.split("/", 1)
        start = None if first in ("", "..") else _parse_moment(first)[0]
        end = None if second in ("", "..") else _parse_moment(second)[1]
    except ValueError as exc:
        raise RequestError(f"datetime {text!r} is not an RFC 3339 instant or interval") from exc
    if start is None and end is None:
        raise RequestError("datetime: an interval needs at least one end")
    if start is not None and end is not None and start > end:
        raise RequestError("datetime: the interval ends before it starts")
    return start, end

