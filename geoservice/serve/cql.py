"""CQL2 filters (text and JSON, parsed by pygeofilter) translated to SQL with bound parameters.

Supported: basic CQL2 (comparisons, AND/OR/NOT, IS NULL, property–property comparisons), LIKE, BETWEEN, IN,
CASEI, + - * /, and the spatial functions S_INTERSECTS, S_EQUALS, S_DISJOINT, S_TOUCHES, S_WITHIN,
S_OVERLAPS, S_CROSSES, S_CONTAINS on any geometry literal and BBOX. Anything else is a FilterError (400).
Properties are checked against the collection's queryables and compared only with values of their type.
A filter is bounded: at most MAX_FILTER_CHARS characters, MAX_FILTER_DEPTH levels of nesting and MAX_FILTER_NODES
terms; text PostgreSQL cannot store (NUL, lone surrogates) and geometry literals that are not GeoJSON are refused.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any

import shapely
from pyproj.exceptions import CRSError
from psycopg2 import sql
from pygeofilter import ast, values
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.cql2_text import parse as parse_cql2_text

from geoservice.serve.bind import Bindings
from geoservice.serve.catalog import Collection
from geoservice.serve.crs import ServingCrs, serving_crs
from geoservice.serve.guard import refuse_unstorable
from geoservice.serve.problems import ClientError
from geoservice.serve.spatial import GeometryError, bbox_geometry, swap_axes, to_working

GEOMETRY = "geometry"
_COMPARISONS = {ast.Equal: "=", ast.NotEqual: "<>", ast.LessThan: "<", ast.LessEqual: "<=",
                ast.GreaterThan: ">", ast.GreaterEqual: ">="}
_SPATIAL = {ast.GeometryIntersects: "ST_Intersects", ast.GeometryDisjoint: "ST_Disjoint",
            ast.GeometryContains: "ST_Contains", ast.GeometryWithin: "ST_Within", ast.GeometryTouches: "ST_Touches",
            ast.GeometryCrosses: "ST_Crosses", ast.GeometryOverlaps: "ST_Overlaps", ast.GeometryEquals: "ST_Equals"}
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mul: "*", ast.Div: "/"}
_KINDS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}
_GEOJSON_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection")
MAX_FILTER_CHARS = 20_000
MAX_FILTER_DEPTH = 100
MAX_FILTER_NODES = 2_000
_TOO_DEEP = (f"the filter nests more than {MAX_FILTER_DEPTH} levels deep (a long chain of AND, OR or + counts one level "
             "per term); simplify it, e.g. with IN")


class FilterError(ClientError):
    """A filter that cannot be parsed or evaluated on this collection; the message says why."""


def parse_filter(text: str, lang: str) -> ast.Node:
    """A CQL2 filter in `cql2-text` or `cql2-json` as a pygeofilter AST."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter has {len(text):,} characters; at most {MAX_FILTER_CHARS:,} are accepted")
    document = _json_document(text) if lang == "cql2-json" else None
    try:
        node = parse_cql2_json(_cql2_json_for_pygeofilter(document)) if lang == "cql2-json" else parse_cql2_text(text)
    except FilterError:
        raise
    except Exception as exc:  # the parsers raise many types; all mean "malformed"
        raise FilterError(f"malformed {lang} filter: {type(exc).__name__}") from exc
    _check_size(node, _ast_children)
    return node


def _json_document(text: str) -> Any:
    """A CQL2 JSON filter's JSON, within the size limits and with only storable text."""
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise FilterError(_TOO_DEEP) from exc
    except ValueError as exc:
        raise FilterError(f"malformed cql2-json filter: not JSON ({exc})") from exc
    _check_size(document, _json_children)
    try:
        refuse_unstorable(document, "a text in the filter")
    except ValueError as exc:
        raise FilterError(str(exc)) from exc
    return document


def _json_children(item: Any) -> list[Any]:
    return list(item.values()) if isinstance(item, dict) else item if isinstance(item, list) else []


def _ast_children(item: Any) -> list[Any]:
    return item.get_sub_nodes() if isinstance(item, ast.Node) else []


def _check_size(root: Any, children: Any) -> None:
    """Refuse a filter nested deeper than MAX_FILTER_DEPTH or with more than MAX_FILTER_NODES terms."""
    level, count = [root], 0
    for depth in range(MAX_FILTER_DEPTH + 1):
        count += len(level)
        if count > MAX_FILTER_NODES:
            raise FilterError(f"the filter has more than {MAX_FILTER_NODES:,} terms; simplify it (IN lists count once "
                              "per value)")
        level = [child for item in level for child in children(item)]
        if not level:
            return
    raise FilterError(_TOO_DEEP)


def _cql2_json_for_pygeofilter(node: Any) -> Any:
    """CQL2 JSON 1.0 as pygeofilter 0.4 reads it: bbox as a polygon (it misreads bbox), BETWEEN's two bounds as a list."""
    if isinstance(node, list):
        return [_cql2_json_for_pygeofilter(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "bbox" in node and "op" not in node:
        box = node["bbox"]
        if not isinstance(box, list) or len(box) not in (4, 6) or not all(isinstance(v, (int, float)) for v in box):
            raise FilterError("a bbox literal needs 4 or 6 numbers")
        return shapely.geometry.mapping(bbox_geometry([float(v) for v in box], serving_crs("OGC:CRS84")))
    node = {key: _cql2_json_for_pygeofilter(value) for key, value in node.items()}
    if node.get("op") == "between" and isinstance(node.get("args"), list) and len(node["args"]) == 3:
        node["args"] = [node["args"][0], node["args"][1:]]
    return node


class _Translator:
    """One filter on one collection: the SQL of each node and the kind of value it yields."""

    def __init__(self, collection: Collection, filter_crs: ServingCrs, working_srid: int, bindings: Bindings) -> None:
        self.collection, self.filter_crs, self.working_srid, self.bind = collection, filter_crs, working_srid, bindings

    def condition(self, node: Any) -> sql.Composable:
        expression, kind = self.node(node)
        if kind != "boolean":
            raise FilterError("the filter is not a condition (true or false)")
        return expression

    def node(self, node: Any) -> tuple[sql.Composable, str]:
        if isinstance(node, (ast.And, ast.Or)):
            joiner = " AND " if isinstance(node, ast.And) else " OR "
            return sql.SQL("({})").format(sql.SQL(joiner).join([self.condition(node.lhs), self.condition(node.rhs)])), "boolean"
        if isinstance(node, ast.Not):
            return sql.SQL("(NOT {})").format(self.condition(node.sub_node)), "boolean"
        if isinstance(node, ast.Include):
            return sql.SQL("false" if node.not_ else "true"), "boolean"
        if type(node) in _COMPARISONS:
            lhs, rhs, _ = self._same_kind(node.lhs, node.rhs, "compare")
            return sql.SQL("({} {} {})").format(lhs, sql.SQL(_COMPARISONS[type(node)]), rhs), "boolean"
        if isinstance(node, ast.Between):
            lhs, kind = self.node(node.lhs)
            low, high = self._of_kind(node.low, kind), self._of_kind(node.high, kind)
            template = "({} NOT BETWEEN {} AND {})" if node.not_ else "({} BETWEEN {} AND {})"
            return sql.SQL(template).format(lhs, low, high), "boolean"
        if isinstance(node, ast.Like):  # CQL2 and SQL share the wildcards: % any, _ one, backslash escapes
            lhs, kind = self.node(node.lhs)
            pattern, pattern_kind = self.node(node.pattern)
            if kind != "string" or pattern_kind != "string":
                raise FilterError("LIKE needs text and a text pattern")
            operator = ("NOT " if node.not_ else "") + ("ILIKE" if node.nocase else "LIKE")
            return sql.SQL("({} {} {})").format(lhs, sql.SQL(operator), pattern), "boolean"
        if isinstance(node, ast.In):
            lhs, kind = self.node(node.lhs)
            options = [self._of_kind(option, kind) for option in node.sub_nodes]
            if not options:
                raise FilterError("IN needs at least one value")
            template = "({} NOT IN ({}))" if node.not_ else "({} IN ({}))"
            return sql.SQL(template).format(lhs, sql.SQL(", ").join(options)), "boolean"
        if isinstance(node, ast.IsNull):
            lhs, _ = self.node(node.lhs)
            return sql.SQL("({} IS {}NULL)").format(lhs, sql.SQL("NOT " if node.not_ else "")), "boolean"
        if type(node) in _SPATIAL:
            lhs, rhs = self._geometry(node.lhs), self._geometry(node.rhs)
            return sql.SQL("{}({}, {})").format(sql.SQL(_SPATIAL[type(node)]), lhs, rhs), "boolean"
        if type(node) in _ARITHMETIC:
            lhs, rhs, kind = self._same_kind(node.lhs, node.rhs, "compute with")
            if kind != "number":
                raise FilterError("arithmetic needs numbers")
            return sql.SQL("({} {} {})").format(lhs, sql.SQL(_ARITHMETIC[type(node)]), rhs), "number"
        if isinstance(node, ast.Function):
            return self._function(node)
        if isinstance(node, ast.Attribute):
            return self._attribute(node.name)
        return self._literal(node)

    def _function(self, node: ast.Function) -> tuple[sql.Composable, str]:
        name = node.name.lower()
        if name == "lower" and len(node.arguments) == 1:
            argument, kind = self.node(node.arguments[0])
            if kind != "string":
                raise FilterError("CASEI needs text")
            return sql.SQL("lower({})").format(argument), "string"
        if name == "bbox":
            return self._geometry(node), "geometry"
        raise FilterError(f"function {node.name!r} is not supported")

    def _attribute(self, name: str) -> tuple[sql.Composable, str]:
        if name == GEOMETRY:
            return sql.Identifier("geom"), "geometry"
        if name == "id":
            return sql.Identifier("id"), "number"
        refusal = self.collection.unqueryable(name)
        if refusal:
            raise FilterError(refusal)
        field = self.collection.field(name)
        return field.filter_sql(), "temporal" if field.format else _KINDS[field.type]

    def _literal(self, value: Any) -> tuple[sql.Composable, str]:
        if isinstance(value, bool):
            return self.bind.add(value, "boolean"), "boolean"
        if isinstance(value, (int, float)):
            return self.bind.add(value, "double precision"), "number"
        if isinstance(value, str):
            return self.bind.add(value, "text"), "string"
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return self.bind.add(moment, "timestamptz"), "temporal"
        if isinstance(value, date):
            return self.bind.add(datetime.combine(value, time(), UTC), "timestamptz"), "temporal"
        if isinstance(value, (values.Geometry, values.Envelope)):
            return self._geometry(value), "geometry"
        raise FilterError(f"unsupported value in the filter: {type(value).__name__}")

    def _of_kind(self, node: Any, kind: str) -> sql.Composable:
        expression, found = self.node(node)
        if found != kind or kind == "geometry":
            raise FilterError(f"cannot compare {kind} with {found}")
        return expression

    def _same_kind(self, lhs: Any, rhs: Any, verb: str) -> tuple[sql.Composable, sql.Composable, str]:
        left, left_kind = self.node(lhs)
        right, right_kind = self.node(rhs)
        if left_kind != right_kind or left_kind == "geometry":
            raise FilterError(f"cannot {verb} {left_kind} and {right_kind}")
        return left, right, left_kind

    def _geometry(self, node: Any) -> sql.Composable:
        if isinstance(node, ast.Attribute):
            expression, kind = self._attribute(node.name)
            if kind != "geometry":
                raise FilterError(f"{node.name!r} is not a geometry")
            return expression
        crs = self.filter_crs
        try:
            if isinstance(node, ast.Function) and node.name.lower() == "bbox":
                shape = bbox_geometry([float(v) for v in node.arguments], crs)
            elif isinstance(node, values.Envelope):
                shape = shapely.box(min(node.x1, node.x2), min(node.y1, node.y2), max(node.x1, node.x2), max(node.y1, node.y2))
            elif isinstance(node, values.Geometry):
                shape, crs = _literal_geometry(node.geometry, crs)
            else:
                raise FilterError("a spatial function needs a geometry")
            working = to_working(shape, crs, self.collection.extent, self.working_srid)
        except (GeometryError, ValueError, TypeError, shapely.errors.GEOSException) as exc:
            raise FilterError(f"bad geometry in the filter: {exc}") from exc
        return ewkb_sql(working, self.working_srid, self.bind)


def _literal_geometry(geometry: dict[str, Any], crs: ServingCrs) -> tuple[shapely.Geometry, ServingCrs]:
    """A GeoJSON geometry literal as a Shapely geometry (in its own axis order) and its CRS: the filter's, or the one
    its `crs` member names (`{"type": "name", "properties": {"name": …}}`)."""
    member = geometry.get("crs")
    if member is not None:
        named = member.get("properties", {}).get("name") if isinstance(member, dict) else None
        if not isinstance(named, str):
            raise FilterError('a geometry\'s "crs" must be {"type": "name", "properties": {"name": "<CRS URI>"}}')
        try:
            crs = serving_crs(named)
        except (ValueError, CRSError) as exc:
            raise FilterError(f"unknown CRS {named[:80]!r} in a geometry of the filter") from exc
    if geometry.get("type") not in _GEOJSON_TYPES:
        raise FilterError(f"geometry type {str(geometry.get('type'))[:40]!r} is not GeoJSON; use one of "
                          f"{', '.join(_GEOJSON_TYPES)}")
    try:
        shape = shapely.geometry.shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, shapely.errors.ShapelyError) as exc:
        raise FilterError(f"bad {geometry['type']} in the filter: {exc}") from exc
    return (swap_axes(shape) if crs.yx else shape), crs


def ewkb_sql(geometry: shapely.Geometry, srid: int, bindings: Bindings) -> sql.Composable:
    """A working-CRS geometry as a bound EWKB parameter."""
    return sql.SQL("ST_GeomFromEWKB({})").format(bindings.add(shapely.to_wkb(shapely.set_srid(geometry, srid), include_srid=True)))


def filter_sql(node: ast.Node, collection: Collection, filter_crs: ServingCrs, working_srid: int,
               bindings: Bindings) -> sql.Composable:
    """The WHERE condition for a parsed filter on `collection`; geometry literals are in `filter_crs`."""
    return _Translator(collection, filter_crs, working_srid, bindings).condition(node)

