"""One page of features as one SQL statement, with the GeoJSON written by PostGIS.

    SELECT <Feature JSON text>, <sort key> [, matched] FROM (
        [SELECT *, count(*) OVER () AS matched FROM (]
            SELECT * FROM geoservice.<table> WHERE <partition> = k AND <bbox> AND <filters> [AND <key> > <last key>]
            ORDER BY <sort>, id LIMIT <limit> OFFSET <offset>          -- [LIMIT <counting limit> ...) capped
        ...) page ORDER BY <sort>, id

The partition key is a bound literal, so the planner reads one partition with its own indexes. Each row is
a Feature's text (ST_AsGeoJSON + json_build_object); Python only joins them. The window count, when asked
for, counts the matches up to a limit in the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shapely
from psycopg2 import sql
from pygeofilter import ast

from geoservice import gcj02
from geoservice.db import SCHEMA
from geoservice.serve.bind import Bindings
from geoservice.serve.catalog import Collection, Field
from geoservice.serve.cql import ewkb_sql, filter_sql
from geoservice.serve.crs import ServingCrs

#: json_build_object takes at most 100 arguments: 50 properties per call
_PAIRS_PER_CALL = 50
#: a bbox covering less than this share of the data is read through the spatial index, whatever the sort
SMALL_BBOX_SHARE = 0.25


@dataclass(frozen=True)
class SortKey:
    """One sort property (a field name or `id`) and its direction."""

    name: str
    descending: bool = False


@dataclass(frozen=True)
class Selection:
    """Which features: the WHERE of a request (hashable, so counts and page positions can be remembered)."""

    bbox: bytes | None = None                               # working-CRS geometry as WKB; None: no bbox
    bbox_share: float = 1.0                                 # share of the data extent the bbox covers
    equals: tuple[tuple[str, Any], ...] = ()                # property = value filters
    filter: ast.Node | None = None
    filter_crs: ServingCrs | None = None
    interval: tuple[datetime | None, datetime | None] | None = None   # on the collection's time field

    @property
    def signature(self) -> tuple[Any, ...]:
        return (self.bbox, self.equals, repr(self.filter), self.filter_crs, self.interval)


@dataclass(frozen=True)
class PageRequest:
    """Which features, in which order, which page, and how to write them."""

    selection: Selection
    crs: ServingCrs
    limit: int
    offset: int = 0
    sort: tuple[SortKey, ...] = ()
    properties: tuple[str, ...] | None = None               # None: every property
    skip_geometry: bool = False


@dataclass(frozen=True)
class Statement:
    """Composed SQL and its bound values."""

    sql: sql.Composable
    values: dict[str, Any]


def _geometry_json(crs: ServingCrs, working_srid: int) -> sql.Composable:
    geometry = sql.SQL("geom") if crs.srid == working_srid else sql.SQL("ST_Transform(geom, {})").format(sql.Literal(crs.srid))
    if crs.system is not None:  # GCJ-02 / BD-09: WGS84 shifted by PostGIS (sql/0010_gcj02.sql)
        geometry = sql.SQL("geoservice.gcj02_shift({}, {})").format(geometry, sql.Literal(crs.system == gcj02.BD09))
    if crs.yx:
        geometry = sql.SQL("ST_FlipCoordinates({})").format(geometry)
    return sql.SQL("ST_AsGeoJSON({}, {}, 0)").format(geometry, sql.Literal(crs.digits))


def json_object_sql(pairs: list[tuple[str, sql.Composable]], jsonb: bool = False) -> sql.Composable:
    """A JSON (or jsonb) object of named SQL values, built in calls of at most 50 pairs."""
    if not pairs:
        return sql.SQL("'{}'::jsonb" if jsonb else "'{}'::json")
    function = sql.SQL("jsonb_build_object" if jsonb else "json_build_object")
    calls = [sql.SQL("{}({})").format(function, sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(name), value) for name, value in pairs[i:i + _PAIRS_PER_CALL]))
        for i in range(0, len(pairs), _PAIRS_PER_CALL)]
    if len(calls) == 1:
        return calls[0]
    return sql.SQL("({})").format(sql.SQL(" || ").join(sql.SQL("{}::jsonb").format(c) for c in calls))


def _properties_json(fields: list[Field]) -> sql.Composable:
    return sql.SQL("({})::text").format(json_object_sql([(f.name, f.value_sql()) for f in fields]))


def feature_json(collection: Collection, crs: ServingCrs, working_srid: int, properties: tuple[str, ...] | None,
                 skip_geometry: bool) -> sql.Composable:
    """The SQL text expression of one GeoJSON Feature of a row."""
    fields = [f for f in collection.fields if properties is None or f.name in properties]
    geometry = sql.SQL("'null'") if skip_geometry else sql.SQL("coalesce({}, 'null')").format(_geometry_json(crs, working_srid))
    return sql.SQL(
        "'{{\"type\":\"Feature\",\"id\":' || id || ',\"geometry\":' || {} || ',\"properties\":' || {} || '}}'"
    ).format(geometry, _properties_json(fields))


def sort_keys(collection: Collection, sort: tuple[SortKey, ...]) -> tuple[SortKey, ...]:
    """The requested sort with `id` appended as the tie-breaker (a total order)."""
    return sort if any(k.name == "id" for k in sort) else (*sort, SortKey("id"))


def _key_sql(collection: Collection, key: SortKey) -> sql.Composable:
    return sql.Identifier("id") if key.name == "id" else collection.field(key.name).filter_sql()


def keyset_ready(collection: Collection, keys: tuple[SortKey, ...]) -> bool:
    """Keyset paging needs sort keys that are never NULL (NULLs do not compare)."""
    return all(k.name == "id" or (not collection.field(k.name).nullable and not collection.field(k.name).attribute)
               for k in keys)


def _keyset_sql(collection: Collection, keys: tuple[SortKey, ...], after: tuple[Any, ...], bind: Bindings) -> sql.Composable:
    """Rows strictly after the row whose sort key is `after`."""
    columns = [_key_sql(collection, k) for k in keys]
    values = [bind.add(v) for v in after]
    if len({k.descending for k in keys}) == 1:
        operator = sql.SQL("<" if keys[0].descending else ">")
        return sql.SQL("(({}) {} ({}))").format(sql.SQL(", ").join(columns), operator, sql.SQL(", ").join(values))
    alternatives = []
    for i, key in enumerate(keys):
        equal = [sql.SQL("{} = {}").format(columns[j], values[j]) for j in range(i)]
        beyond = sql.SQL("{} {} {}").format(columns[i], sql.SQL("<" if key.descending else ">"), values[i])
        alternatives.append(sql.SQL("({})").format(sql.SQL(" AND ").join([*equal, beyond])))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(alternatives))


def _where(collection: Collection, selection: Selection, working_srid: int, bind: Bindings) -> list[sql.Composable]:
    where = [collection.rows_sql()]
    if selection.bbox is not None:
        region = shapely.from_wkb(selection.bbox)
        where.append(sql.SQL("ST_Intersects(geom, {})").format(ewkb_sql(region, working_srid, bind)))
    for name, value in selection.equals:
        where.append(sql.SQL("{} = {}").format(_key_sql(collection, SortKey(name)), bind.add(value)))
    if selection.interval is not None and collection.time_field:
        moment = collection.field(collection.time_field).filter_sql()
        start, end = selection.interval
        if start is not None:
            where.append(sql.SQL("{} >= {}").format(moment, bind.add(start, "timestamptz")))
        if end is not None:
            where.append(sql.SQL("{} <= {}").format(moment, bind.add(end, "timestamptz")))
    if selection.filter is not None:
        where.append(filter_sql(selection.filter, collection, selection.filter_crs, working_srid, bind))
    return where


def page_statement(collection: Collection, request: PageRequest, working_srid: int, offset: int,
                   after: tuple[Any, ...] | None, count_up_to: int | None) -> Statement:
    """The statement for one page: rows from `offset` (after the row keyed `after`, when given).

    With `count_up_to`, each row also carries the number of matches (counted up to that many plus one).
    """
    bind = Bindings()
    keys = sort_keys(collection, request.sort)
    where = _where(collection, request.selection, working_srid, bind)
    if after is not None:
        where.append(_keyset_sql(collection, keys, after, bind))
    order = sql.SQL(", ").join(sql.SQL("{}{}").format(_key_sql(collection, k), sql.SQL(" DESC" if k.descending else ""))
                               for k in keys)
    # A small bbox sorted by id alone: `id + 0` keeps the planner from walking the id index and filtering.
    by_index = (len(keys) == 1 and request.selection.bbox is not None
                and request.selection.bbox_share < SMALL_BBOX_SHARE)
    inner_order = sql.SQL("id + 0{}").format(sql.SQL(" DESC" if keys[0].descending else "")) if by_index else order
    table = sql.Identifier(SCHEMA, collection.table)
    feature = feature_json(collection, request.crs, working_srid, request.properties, request.skip_geometry)
    key_columns = sql.SQL(", ").join(_key_sql(collection, k) for k in keys)
    scan = sql.SQL("SELECT * FROM {} WHERE {} ORDER BY {}").format(table, sql.SQL(" AND ").join(where), inner_order)
    limit, skip = bind.add(request.limit), bind.add(offset)
    if count_up_to is None:
        query = sql.SQL("SELECT {}, {} FROM ({} LIMIT {} OFFSET {}) page ORDER BY {}").format(
            feature, key_columns, scan, limit, skip, order)
    else:
        query = sql.SQL(
            "SELECT {}, {}, matched FROM (SELECT *, count(*) OVER () AS matched FROM ({} LIMIT {}) capped "
            "ORDER BY {} LIMIT {} OFFSET {}) page ORDER BY {}"
        ).format(feature, key_columns, scan, bind.add(count_up_to + 1), inner_order, limit, skip, order)
    return Statement(query, bind.values)


def item_statement(collection: Collection, identifier: int, crs: ServingCrs, working_srid: int) -> Statement:
    """The statement for one feature by id."""
    bind = Bindings()
    query = sql.SQL("SELECT {} FROM {} WHERE {} AND id = {}").format(
        feature_json(collection, crs, working_srid, None, False), sql.Identifier(SCHEMA, collection.table),
        collection.rows_sql(), bind.add(identifier))
    return Statement(query, bind.values)
