"""Create, replace, update (JSON merge patch) and delete features of an editable layer, each write one revision of its
active version; a construction project is checked on arrival and its check stored with the revision.

Every input is checked before the transaction (geometry, properties, codes; the project check reads other layers
only), so the layer's lock is held for the few statements that store the revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
import shapely

from geoservice.edit import store, submissions
from geoservice.edit.errors import InvalidFeature, StaleRevision, UnknownFeature
from geoservice.edit.rows import Row, encode, source_values, stored_values, working_geometry
from geoservice.edit.submissions import Check
from geoservice.ingest import LayerDefinition
from geoservice.queries.points import InputCrs, QueryError, input_crs
from geoservice.settings import Settings

CONSTRUCTION = "construction"


def editable(kind: str, definition: dict[str, Any]) -> bool:
    """Whether a layer is written over Part 4: construction projects, and layers whose definition says `editable`."""
    return kind == CONSTRUCTION or bool(definition.get("editable"))


@dataclass(frozen=True)
class Expected:
    """The revision a writer read (If-Match): of which version, which revision; None revision: any (If-Match: *)."""

    version_id: int | None
    revision: int | None


@dataclass(frozen=True)
class Written:
    """What one write stored: the revision, and per feature its id, its row image (None when deleted) and its check."""

    layer: str
    version_id: int
    revision: int
    feature_ids: list[int]
    images: list[dict[str, Any] | None]
    checks: list[Check | None] = field(default_factory=list)


@dataclass(frozen=True)
class _Layer:
    name: str
    kind: str
    definition: LayerDefinition
    version_id: int


def _layer(cur: psycopg2.extensions.cursor, name: str) -> _Layer:
    cur.execute("SELECT l.kind, l.definition, v.id FROM geoservice.layer l JOIN geoservice.layer_version v "
                "ON v.layer = l.name AND v.is_active WHERE l.name = %s", (name,))
    row = cur.fetchone()
    if row is None or not editable(row[0], row[1]):
        raise UnknownFeature(f"layer {name!r} is not an editable layer")
    return _Layer(name, row[0], LayerDefinition.model_validate(row[1]), row[2])


def _crs(settings: Settings, crs: str | None) -> InputCrs:
    try:
        return input_crs(settings, crs)
    except QueryError as exc:
        raise InvalidFeature(f"Content-Crs: {exc}") from exc


def _row(settings: Settings, layer: _Layer, feature: Any, source: InputCrs, yx: bool, where: str) -> Row:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise InvalidFeature(f"{where}: not a GeoJSON Feature")
    values = source_values(layer.definition, feature.get("properties"), where)
    geometry, repaired = working_geometry(settings, feature.get("geometry"), source, where, yx)
    return Row(values, geometry, repaired)


def _features(body: Any) -> list[Any]:
    """The features of a POST body: a Feature or a FeatureCollection of at least one."""
    kind = body.get("type") if isinstance(body, dict) else None
    if kind == "Feature":
        return [body]
    if kind == "FeatureCollection" and isinstance(body.get("features"), list) and body["features"]:
        return body["features"]
    raise InvalidFeature("the body must be a GeoJSON Feature or a FeatureCollection of at least one feature")


def create(conn: psycopg2.extensions.connection, settings: Settings, name: str, body: Any, crs: str | None, yx: bool,
           actor: str) -> Written:
    """Store the Feature or FeatureCollection `body` (coordinates in `crs`, CRS84 by default; `yx`: in its
    latitude/northing-first order) as new features."""
    with conn.cursor() as cur:
        layer = _layer(cur, name)
        source = _crs(settings, crs)
        features = _features(body)
        existing = [f.get("id") for f in features if isinstance(f, dict) and f.get("id") is not None]
        _refuse_existing(cur, layer, existing)
        rows = [_row(settings, layer, f, source, yx, f"feature {i + 1}") for i, f in enumerate(features)]
    return _store(conn, settings, layer, rows, [None] * len(rows), [], "create", actor)


def _refuse_existing(cur: psycopg2.extensions.cursor, layer: _Layer, ids: list[Any]) -> None:
    numbers = [int(i) for i in ids if isinstance(i, int) or (isinstance(i, str) and i.isdigit() and len(i) < 19)]
    cur.execute("SELECT min(id) FROM geoservice.feature WHERE version_id = %s AND id = ANY(%s::bigint[])",
                (layer.version_id, numbers))
    taken = cur.fetchone()[0]
    if taken is not None:
        raise InvalidFeature(f"feature {taken} exists in {layer.name!r}: replace it with PUT, or leave \"id\" out")


def replace(conn: psycopg2.extensions.connection, settings: Settings, name: str, feature_id: int, body: Any,
            crs: str | None, yx: bool, expected: Expected, actor: str, hidden: frozenset[str] = frozenset()) -> Written:
    """Replace feature `feature_id` by the Feature `body`, if it is still the revision the writer read; the attributes
    `hidden` from the writer (masked for its grade) keep their stored values."""
    with conn.cursor() as cur:
        layer = _layer(cur, name)
        row = _row(settings, layer, body, _crs(settings, crs), yx, f"feature {feature_id}")
        if hidden:
            current = _current(cur, layer, feature_id, expected)
            stored = stored_values(layer.definition, current)
            row = Row({**row.values, **{k: stored[k] for k in hidden if k in stored}}, row.geometry, row.repaired)
            expected = Expected(expected.version_id, current["revision"])
    return _store(conn, settings, layer, [row], [feature_id], [(feature_id, expected)], "replace", actor)


def _current(cur: psycopg2.extensions.cursor, layer: _Layer, feature_id: int, expected: Expected) -> dict[str, Any]:
    """The current row of a feature, if it is the revision the writer read (any when it names none)."""
    current = store.current_row(cur, layer.version_id, feature_id)
    if current is None:
        raise UnknownFeature(f"no feature {feature_id} in {layer.name!r}")
    if expected.revision is not None and current["revision"] != expected.revision:
        raise StaleRevision(f"feature {feature_id} of {layer.name!r} is at revision {current['revision']}, not "
                            f"{expected.revision}: read it again and apply your change to that")
    return current


def update(conn: psycopg2.extensions.connection, settings: Settings, name: str, feature_id: int, patch: Any,
           crs: str | None, yx: bool, expected: Expected, actor: str, hidden: frozenset[str] = frozenset()) -> Written:
    """Apply a JSON merge patch (RFC 7396) of its properties and geometry to feature `feature_id` (the attributes
    `hidden` from the writer keep their stored values)."""
    if not isinstance(patch, dict):
        raise InvalidFeature("a merge patch is a JSON object (a Feature's members to change)")
    where = f"feature {feature_id}"
    with conn.cursor() as cur:
        layer = _layer(cur, name)
        current = _current(cur, layer, feature_id, expected)
        values = stored_values(layer.definition, current)
        patched = source_values(layer.definition, patch.get("properties"), where)
        values.update({k: v for k, v in patched.items() if k not in hidden})
        if "geometry" in patch:
            geometry, repaired = working_geometry(settings, patch["geometry"], _crs(settings, crs), where, yx)
        else:
            geometry, repaired = shapely.from_wkb(current["wkb"]), "as stored" if current["status"] == "repaired" else ""
    pinned = Expected(expected.version_id, current["revision"])
    return _store(conn, settings, layer, [Row(values, geometry, repaired)], [feature_id], [(feature_id, pinned)],
                  "update", actor)


def delete(conn: psycopg2.extensions.connection, settings: Settings, name: str, feature_id: int, expected: Expected,
           actor: str) -> Written:
    """Delete feature `feature_id` (into the history), if it is still the revision the writer read."""
    with conn.cursor() as cur:
        layer = _layer(cur, name)
    return _store(conn, settings, layer, [], [], [(feature_id, expected)], "delete", actor)


def _store(conn: psycopg2.extensions.connection, settings: Settings, layer: _Layer, rows: list[Row], ids: list[int | None],
           ends: list[tuple[int, Expected]], action: str, actor: str) -> Written:
    """Check the projects, then store the revision: the ended rows into the history, the new rows, the audit events
    and the submissions, in one transaction."""
    encoded = encode(settings, layer.definition, rows) if rows else None
    checks: list[Check | None] = [None] * len(rows)
    if layer.kind == CONSTRUCTION and encoded is not None:
        with conn.cursor() as cur:
            checks = [submissions.check_project(cur, settings, row.geometry, code)
                      for row, code in zip(rows, encoded.class_codes, strict=True)]
    with store.writing(conn) as cur:
        revision = store.next_revision(cur, layer.name)
        befores = {}
        for feature_id, expected in ends:
            if expected.version_id is not None and expected.version_id != revision.version_id:
                raise StaleRevision(f"feature {feature_id} was read from another version of {layer.name!r} "
                                    f"(version id {expected.version_id}; the active one is {revision.version_id})")
            befores[feature_id] = store.end_row(cur, revision, feature_id, expected.revision)
        afters = store.insert_rows(cur, revision, encoded.copy, ids, encoded.source_ids) if encoded else []
        store.count_features(cur, revision, len(afters) - len(befores))
        feature_ids = [image["id"] for image in afters] or list(befores)
        images: list[dict[str, Any] | None] = list(afters) or [None] * len(befores)
        for feature_id, image, found in zip(feature_ids, images, checks or [None] * len(feature_ids), strict=True):
            store.audit(cur, actor, layer.name, revision.version_id, feature_id, action, befores.get(feature_id), image,
                        revision.number)
            if layer.kind == CONSTRUCTION:
                submissions.record_write(cur, actor, layer.name, revision.version_id, feature_id, revision.number, found)
    return Written(layer.name, revision.version_id, revision.number, feature_ids, images, checks)
