"""Writing features as revisions of a layer's active version, with their history and audit, in one transaction.

A write takes the active version's row lock and counts the next revision (writers of one layer follow each other; the
revision numbers follow commit order); a replaced or deleted feature's row is moved unchanged into
geoservice.feature_history with the revision that ended it, only if it still is the revision the writer read (the
optimistic lock is this conditional DELETE, decided by the database); the new row keeps the feature's id. Every write
appends one audit event per feature with the row before and after. A killed writer leaves nothing: it all commits or
nothing does.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from geoservice.db import bulk
from geoservice.edit.errors import InvalidFeature, StaleRevision, UnknownFeature
from geoservice.ingest.load import COPY_COLUMNS

#: a row as the audit keeps it: its stored values and its geometry (GeoJSON, working CRS, mm)
ROW_IMAGE = ("jsonb_build_object('id', {t}.id, 'revision', {t}.revision, 'source_id', {t}.source_id, 'name', {t}.name, "
             "'class_code', {t}.class_code, 'original_code', {t}.original_code, 'status', {t}.status, "
             "'attributes', {t}.attributes, 'area_m2', {t}.area_m2, 'geometry', ST_AsGeoJSON({t}.geom, 3)::jsonb)")
_COLUMNS = "version_id, id, source_row, source_id, name, class_code, original_code, status, attributes, geom"
_STAGING = ("CREATE TEMP TABLE IF NOT EXISTS edit_row (LIKE geoservice.feature INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS")
_END_ROW = f"""
WITH gone AS (
    DELETE FROM geoservice.feature WHERE version_id = %(version)s AND id = %(id)s
      AND (%(expected)s::integer IS NULL OR revision = %(expected)s::integer) RETURNING *
)
INSERT INTO geoservice.feature_history ({_COLUMNS}, area_m2, revision, ended_revision)
SELECT {_COLUMNS}, area_m2, revision, %(revision)s FROM gone
RETURNING {ROW_IMAGE.format(t="feature_history")}
"""


@dataclass(frozen=True)
class Revision:
    """The revision a write makes of a layer's active version."""

    layer: str
    version_id: int
    number: int


@contextmanager
def writing(conn: psycopg2.extensions.connection) -> Iterator[psycopg2.extensions.cursor]:
    """A read-write transaction on a connection (an autocommit one, as the server's pool holds), committed when the
    block ends, rolled back when it fails."""
    with conn.cursor() as cur:
        cur.execute("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE")
        try:
            yield cur
        except BaseException:
            if not conn.closed:
                cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")


def next_revision(cur: psycopg2.extensions.cursor, layer: str) -> Revision:
    """Lock the layer's active version and count the next revision (committed with the write)."""
    cur.execute("UPDATE geoservice.layer_version SET revision = revision + 1, edited_at = clock_timestamp() "
                "WHERE layer = %s AND is_active RETURNING id, revision", (layer,))
    row = cur.fetchone()
    if row is None:
        raise UnknownFeature(f"layer {layer!r} has no active version")
    return Revision(layer, *row)


def insert_rows(cur: psycopg2.extensions.cursor, revision: Revision, copy_rows: bytes, ids: list[int | None],
                source_ids: list[str | None]) -> list[dict[str, Any]]:
    """Store rows (ingest's COPY rows, in order) under `revision`, each with its id (None: a new one) and trimmed source
    id; their images, in order. InvalidFeature when a source id is already another current feature's."""
    _refuse_taken_ids(cur, revision.version_id, [(fid, sid) for fid, sid in zip(ids, source_ids, strict=True) if sid])
    cur.execute(_STAGING)
    cur.copy_expert(f"COPY pg_temp.edit_row ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT binary)",
                    io.BytesIO(bulk.COPY_BINARY_HEADER + copy_rows + bulk.COPY_BINARY_TRAILER))
    cur.execute(
        f"INSERT INTO geoservice.feature ({_COLUMNS}, revision) "
        f"SELECT %s, coalesce(k.id, nextval('geoservice.feature_id_seq')), e.source_row, e.source_id, e.name, "
        f"e.class_code, e.original_code, e.status, e.attributes, e.geom, %s FROM pg_temp.edit_row e "
        f"JOIN unnest(%s::bigint[]) WITH ORDINALITY k (id, n) ON k.n = e.source_row ORDER BY e.source_row "
        f"RETURNING source_row, {ROW_IMAGE.format(t='feature')}",
        (revision.version_id, revision.number, ids))
    return [image for _, image in sorted(cur.fetchall(), key=lambda row: row[0])]


def _refuse_taken_ids(cur: psycopg2.extensions.cursor, version_id: int, wanted: list[tuple[int | None, str]]) -> None:
    sources = [sid for _, sid in wanted]
    repeated = sorted({sid for sid in sources if sources.count(sid) > 1})
    if repeated:
        raise InvalidFeature(f"source id {repeated[0]!r} is given to several features")
    if not wanted:
        return
    cur.execute("SELECT source_id, id FROM geoservice.feature WHERE version_id = %s AND source_id = ANY(%s)",
                (version_id, sources))
    mine = {sid: fid for fid, sid in wanted}
    taken = sorted(sid for sid, fid in cur.fetchall() if mine.get(sid) != fid)
    if taken:
        raise InvalidFeature(f"source id {taken[0]!r} is another feature's already (a layer's source ids are unique)")


def end_row(cur: psycopg2.extensions.cursor, revision: Revision, feature_id: int, expected: int | None) -> dict[str, Any]:
    """Move the current row of `feature_id` into the history, ended by `revision`, if it still is revision `expected`
    (any revision when None); its image. StaleRevision when it is another revision, UnknownFeature when there is none."""
    cur.execute(_END_ROW, {"version": revision.version_id, "id": feature_id, "expected": expected,
                           "revision": revision.number})
    row = cur.fetchone()
    if row is not None:
        return row[0]
    cur.execute("SELECT revision FROM geoservice.feature WHERE version_id = %s AND id = %s",
                (revision.version_id, feature_id))
    current = cur.fetchone()
    if current is None:
        raise UnknownFeature(f"no feature {feature_id} in {revision.layer!r}")
    raise StaleRevision(f"feature {feature_id} of {revision.layer!r} is at revision {current[0]}, not {expected}: "
                        "read it again and apply your change to that")


def count_features(cur: psycopg2.extensions.cursor, revision: Revision, delta: int) -> None:
    """Keep the version's feature count (what `geoservice layers` and numberMatched say) right."""
    if delta:
        cur.execute("UPDATE geoservice.layer_version SET feature_count = feature_count + %s WHERE id = %s",
                    (delta, revision.version_id))


def audit(cur: psycopg2.extensions.cursor, actor: str, layer: str, version_id: int, feature_id: int, action: str,
          before: Any, after: Any, revision: int | None = None, comment: str = "") -> None:
    """Append one event to the audit trail."""
    cur.execute("INSERT INTO geoservice.audit_event (actor, layer, version_id, revision, feature_id, action, before, "
                "after, comment) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (actor, layer, version_id, revision, feature_id, action,
                 None if before is None else json.dumps(before, ensure_ascii=False),
                 None if after is None else json.dumps(after, ensure_ascii=False), comment))


def current_row(cur: psycopg2.extensions.cursor, version_id: int, feature_id: int) -> dict[str, Any] | None:
    """The current row of a feature (its image with the geometry as WKB in `wkb`), None when there is none."""
    cur.execute(f"SELECT {ROW_IMAGE.format(t='f')}, ST_AsBinary(f.geom) FROM geoservice.feature f "
                "WHERE f.version_id = %s AND f.id = %s", (version_id, feature_id))
    row = cur.fetchone()
    return None if row is None else {**row[0], "wkb": bytes(row[1])}
