"""What is served, read from the database: one collection per active layer, the base map, the conflicts.

Each collection is one partition of a stored table (a layer version, an integration run, a detection run)
with its properties, typed from the schema and — for layer attributes kept as jsonb — from the data.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from geoservice.db.read import (
    SCHEMA, LayerVersion, active_versions, chain_rows_sql, current_run, masked_attribute, qualified, rows_of_run,
)
from geoservice.edit import editable
from geoservice.errors import GeoserviceError
from geoservice.settings import GRADES, AccessSettings

#: collections served besides the layers (the catalogue: OGC API – Records, serve/records.py); a layer may not take
#: these names
BASEMAP, CONFLICTS, CATALOG = "basemap", "conflicts", "catalog"
#: columns every served table has that are not properties: partition keys, the id, geometry, raw attributes, a
#: written feature's revision (its ETag)
NOT_PROPERTIES = {"version_id", "run_id", "until_run", "id", "geom", "attributes", "revision"}
_SQL_TYPES = {"text": "string", "bigint": "integer", "integer": "integer", "smallint": "integer",
              "double precision": "number", "real": "number", "numeric": "number", "boolean": "boolean",
              "jsonb": "object", "json": "object"}
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"


@dataclass(frozen=True)
class Field:
    """One property of a collection: a column of the table, or a key of the layer's attributes (jsonb)."""

    name: str
    type: str                    # JSON Schema type: string | integer | number | boolean | object
    format: str | None = None    # date | date-time for temporal strings
    attribute: bool = False
    nullable: bool = True
    mask: str | None = None      # desensitization method for this grade's callers (name | id_number | phone | hide)

    @property
    def queryable(self) -> bool:
        return self.type != "object" and self.mask is None

    def value_sql(self) -> sql.Composable:
        """The property's value as written into the GeoJSON properties (masked in SQL when it is masked)."""
        if self.mask:
            return sql.SQL("to_jsonb({})").format(masked_attribute(self.name, self.mask))
        if self.attribute:
            return sql.SQL("attributes -> {}").format(sql.Literal(self.name))
        return sql.Identifier(self.name)

    def filter_sql(self) -> sql.Composable:
        """The property as a typed SQL expression to compare and sort (attribute casts were checked on the data)."""
        if not self.attribute:
            return sql.Identifier(self.name)
        text = sql.SQL("(attributes ->> {})").format(sql.Literal(self.name))
        cast = {"integer": "numeric", "number": "double precision", "boolean": "boolean"}.get(self.type)
        if self.format in ("date", "date-time"):
            cast = "timestamptz"
        return sql.SQL("{}::{}").format(text, sql.SQL(cast)) if cast else text


@dataclass(frozen=True)
class Collection:
    """One served collection: which partition of which table, its properties, extents and count."""

    name: str
    title: str
    description: str
    keywords: tuple[str, ...]
    table: str                                   # parent table in schema geoservice
    partition_column: str                        # version_id | run_id
    partition_key: int
    fields: tuple[Field, ...]
    feature_count: int
    extent: tuple[float, float, float, float] | None = None   # working CRS, x = easting; None when empty
    crs84_extent: tuple[float, float, float, float] | None = None   # west, south, east, north
    time_field: str | None = None
    temporal: tuple[str, str] | None = None      # ISO begin, end of time_field
    title_field: str | None = None
    grade: str = "internal"                      # the sensitivity grade a caller must read to see it
    kind: str | None = None                      # the layer kind; None for the base map and conflicts
    masks: tuple[tuple[str, str, str], ...] = ()  # (attribute, method, grade that sees it unmasked)
    modified: str = ""                           # ISO time the version was loaded / the run made (Last-Modified)
    editable: bool = False                       # written over Part 4: counted and cached by revision, not snapshot
    chain: tuple[int, ...] = ()                  # a run's chain: the runs whose stored rows it reads

    def rows_sql(self) -> sql.Composable:
        """The condition selecting this collection's rows of its table: its layer version, or its run's rows."""
        if self.partition_column == "run_id":
            return chain_rows_sql(self.chain, self.partition_key)
        return sql.SQL("{} = {}").format(sql.Identifier(self.partition_column), sql.Literal(self.partition_key))

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    def unqueryable(self, name: str) -> str | None:
        """Why property `name` cannot be filtered or sorted on (None when it can): unknown, an object, or masked
        for this caller — refused rather than answered, which would leak the masked value."""
        field = self.field(name)
        if field is not None and field.mask:
            return f"property {name!r} is masked (脱敏) for your access grade: it cannot be filtered or sorted on"
        if field is None or not field.queryable:
            return f"unknown property {name!r}: see /collections/{self.name}/queryables"
        return None

    @cached_property
    def _by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def for_grade(self, grade: str) -> Collection:
        """The collection as a caller of `grade` sees it: the attributes masked below their grade marked so."""
        masked = {attribute: method for attribute, method, unless in self.masks if GRADES.index(grade) < GRADES.index(unless)}
        if not masked:
            return self
        fields = tuple(replace(f, mask=masked[f.name]) if f.attribute and f.name in masked else f for f in self.fields)
        return replace(self, fields=fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Collection:
        values = dict(data)
        values["fields"] = tuple(Field(**f) for f in data["fields"])
        values["keywords"] = tuple(data["keywords"])
        values["masks"] = tuple(tuple(m) for m in data.get("masks", ()))
        values["chain"] = tuple(data.get("chain", ()))
        for key in ("extent", "crs84_extent", "temporal"):
            values[key] = tuple(data[key]) if data.get(key) is not None else None
        return cls(**values)


def _column_fields(cur: psycopg2.extensions.cursor, table: str) -> list[Field]:
    cur.execute(
        "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (SCHEMA, table))
    return [Field(name, _SQL_TYPES.get(data_type, "string"), nullable=nullable)
            for name, data_type, nullable in cur.fetchall() if name not in NOT_PROPERTIES]


def _attribute_fields(cur: psycopg2.extensions.cursor, version_id: int, order: list[str], taken: set[str]) -> list[Field]:
    """The layer's attribute keys typed from the data: one JSON type per key, temporal strings recognised."""
    cur.execute(
        "SELECT key, array_agg(DISTINCT jsonb_typeof(value)) FILTER (WHERE jsonb_typeof(value) <> 'null'), "
        "bool_and(jsonb_typeof(value) <> 'number' OR value::text ~ '^-?[0-9]+$'), "
        "bool_and(jsonb_typeof(value) = 'string' AND value #>> '{}' ~ %s), "
        "bool_and(jsonb_typeof(value) = 'string' AND value #>> '{}' ~ %s) "
        "FROM geoservice.feature f, jsonb_each(f.attributes) WHERE f.version_id = %s GROUP BY key",
        (_DATE, _DATETIME, version_id))
    found = []
    for key, types, integral, is_date, is_datetime in cur.fetchall():
        if key in taken:
            continue  # a column of the same name wins (e.g. the name field kept as an attribute too)
        kind = types[0] if types and len(types) == 1 else "string"
        kind = {"number": "integer" if integral else "number", "array": "object"}.get(kind, kind)
        fmt = "date" if is_date else "date-time" if is_datetime else None
        found.append(Field(key, kind, fmt, attribute=True))
    rank = {name: i for i, name in enumerate(order)}
    found.sort(key=lambda f: (rank.get(f.name, len(rank)), f.name))
    return [_checked_temporal(cur, version_id, f) for f in found]


def _checked_temporal(cur: psycopg2.extensions.cursor, version_id: int, candidate: Field) -> Field:
    """A date attribute stays temporal only when every value casts (a regex cannot rule out 2023-02-30)."""
    if candidate.format is None:
        return candidate
    cur.execute("SAVEPOINT temporal_check")
    try:
        cur.execute(sql.SQL("SELECT min({0}), max({0}) FROM geoservice.feature WHERE version_id = %s").format(
            candidate.filter_sql()), (version_id,))
        cur.fetchone()
        cur.execute("RELEASE SAVEPOINT temporal_check")
        return candidate
    except psycopg2.DataError:
        cur.execute("ROLLBACK TO SAVEPOINT temporal_check")
        return Field(candidate.name, "string", attribute=True)


Extents = dict[str, tuple[float, float, float, float] | None]


def _extents(cur: psycopg2.extensions.cursor, table: str, rows: sql.Composable) -> Extents:
    """The data's extent in the working CRS and in CRS84 (each geometry transformed: exact, rounded outwards)."""
    cur.execute(sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g) "
        "FROM (SELECT ST_Extent(geom) AS e, ST_Extent(ST_Transform(geom, 4326)) AS g FROM {} WHERE {}) s"
    ).format(qualified(table), rows))
    row = cur.fetchone()
    if row[0] is None:
        return {"extent": None, "crs84_extent": None}
    west, south, east, north = row[4:]
    outwards = (math.floor(west * 1e7) / 1e7, math.floor(south * 1e7) / 1e7,
                math.ceil(east * 1e7) / 1e7, math.ceil(north * 1e7) / 1e7)
    return {"extent": tuple(float(v) for v in row[:4]), "crs84_extent": outwards}


def _temporal(cur: psycopg2.extensions.cursor, version_id: int, time_field: Field) -> tuple[str, str] | None:
    cur.execute(sql.SQL("SELECT min({0}), max({0}) FROM geoservice.feature WHERE version_id = %s").format(
        time_field.filter_sql()), (version_id,))
    begin, end = cur.fetchone()
    return None if begin is None else (begin.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z"))


#: what a collection's description depends on, so that an unchanged one is not read again
Known = dict[tuple[Any, ...], "Collection"]


def _layer_collections(cur: psycopg2.extensions.cursor, known: Known) -> list[Collection]:
    columns = _column_fields(cur, "feature")
    collections = []
    for layer in active_versions(cur):
        key = ("feature", layer.version_id, layer.revision, layer.title, layer.description,
               json.dumps(layer.definition, sort_keys=True))
        if key not in known:
            known[key] = _layer_collection(cur, layer, columns)
        collections.append(known[key])
    return collections


def _layer_collection(cur: psycopg2.extensions.cursor, layer: LayerVersion, columns: list[Field]) -> Collection:
    definition = layer.definition
    attributes = _attribute_fields(cur, layer.version_id, list(definition.get("attributes") or []),
                                   {f.name for f in columns} | NOT_PROPERTIES)
    time_field = next((f for f in attributes if f.format), None)
    return Collection(
        name=layer.name, title=layer.title,
        description=((layer.description or "").strip() or layer.title)
        + f" Version {layer.version}, loaded {layer.loaded_at:%Y-%m-%d %H:%M} UTC.",
        keywords=tuple(definition.get("keywords") or []) + (layer.kind,),
        table="feature", partition_column="version_id", partition_key=layer.version_id, fields=tuple(columns + attributes),
        feature_count=layer.feature_count, **_extents(cur, "feature", sql.SQL("version_id = {}").format(sql.Literal(layer.version_id))),
        time_field=time_field.name if time_field else None,
        temporal=_temporal(cur, layer.version_id, time_field) if time_field else None,
        title_field="name", grade=definition.get("access", "internal"), kind=layer.kind,
        masks=tuple((m["attribute"], m["method"], m.get("unless", "restricted")) for m in definition.get("masks", [])),
        modified=layer.loaded_at.isoformat(), editable=editable(layer.kind, definition),
    )


def _basemap_collection(cur: psycopg2.extensions.cursor, grade: str, known: Known) -> Collection | None:
    run = current_run(cur, "integration")
    if run is None:
        return None
    key = ("basemap_patch", run.id, grade)
    if key in known:
        return known[key]
    cur.execute(sql.SQL("SELECT count(*) FROM geoservice.basemap_patch WHERE {}").format(rows_of_run(run)))
    count = cur.fetchone()[0]
    known[key] = Collection(
        name=BASEMAP, title=f"一张图 base map (integration run {run.id})",
        description=("Patches of the planar overlay of the land-use plan and the urban plan: each patch carries both "
                     "plans' codes, how they differ, its district and its overlap with the ecological red line, the "
                     f"permanent basic farmland and the urban development boundary. Integration run {run.id} of "
                     f"{run.started_at:%Y-%m-%d %H:%M} UTC from {run.versions_text()}."),
        keywords=("一张图", "多规合一", "base map", "land use"),
        table="basemap_patch", partition_column="run_id", partition_key=run.id,
        fields=tuple(_column_fields(cur, "basemap_patch")), feature_count=count, grade=grade,
        modified=run.started_at.isoformat(), chain=run.chain, **_extents(cur, "basemap_patch", rows_of_run(run)),
    )
    return known[key]


def _conflicts_collection(cur: psycopg2.extensions.cursor, grade: str, known: Known) -> Collection | None:
    run = current_run(cur, "detection")
    if run is None:
        return None
    key = ("conflict", run.id, grade)
    if key in known:
        return known[key]
    cur.execute(sql.SQL("SELECT count(*) FROM geoservice.conflict WHERE {}").format(rows_of_run(run)))
    count = cur.fetchone()[0]
    rule_list = "; ".join(f"{r.id}: {r.title_zh or r.title_en or r.type}" for r in run.rules)
    known[key] = Collection(
        name=CONFLICTS, title=f"冲突图斑 conflicts (detection run {run.id})",
        description=(f"Conflict patches between plans found by the rules of config/rules.yaml in detection run {run.id} "
                     f"of {run.started_at:%Y-%m-%d %H:%M} UTC from {run.versions_text()}. Rules: {rule_list}."),
        keywords=("冲突检测", "多规合一", "conflicts", *(r.id for r in run.rules)),
        table="conflict", partition_column="run_id", partition_key=run.id,
        fields=tuple(_column_fields(cur, "conflict")), feature_count=count,
        title_field="rule_id", grade=grade, modified=run.started_at.isoformat(), chain=run.chain,
        **_extents(cur, "conflict", rows_of_run(run)),
    )
    return known[key]


def collections_of(cur: psycopg2.extensions.cursor, access: AccessSettings, known: Known) -> list[Collection]:
    """Every collection to serve: active layers by name, then the current base map and conflicts when they exist,
    each with its sensitivity grade (a layer's from its definition, the others' from `access`). Collections found in
    `known` (keyed by their partition and what describes them) are not read again; new ones are added to it."""
    collections = _layer_collections(cur, known)
    clash = {c.name for c in collections} & {BASEMAP, CONFLICTS, CATALOG}
    if clash:
        raise GeoserviceError(f"layer name {min(clash)!r} is reserved for a served collection: rename the layer")
    for extra in (_basemap_collection(cur, access.basemap, known), _conflicts_collection(cur, access.conflicts, known)):
        if extra is not None:
            collections.append(extra)
    return collections


def read_collections(conn: psycopg2.extensions.connection, access: AccessSettings) -> list[Collection]:
    """collections_of in a transaction of its own."""
    with conn, conn.cursor() as cur:
        return collections_of(cur, access, {})
