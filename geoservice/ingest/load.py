"""Loading one layer version into PostGIS in one transaction: own partition, COPY, index, attach, activate."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from geoservice.ingest.classify import LandClass
from geoservice.ingest.definition import Definition
from geoservice.db import bulk, partitions
from geoservice.ingest.repair import REPAIRED

PARENT = "feature"
EWKB_MULTIPOLYGON_WITH_SRID = 0x20000006
ONE_PART = struct.pack("<I", 1)
STATUS_TEXT = pa.array([b"kept", b"repaired"], pa.binary())
COPY_COLUMNS = ("version_id", "source_row", "source_id", "name", "class_code", "original_code", "status",
                "attributes", "geom")


@dataclass(frozen=True)
class NewVersion:
    """The version row being written (invisible to others until commit)."""

    id: int
    layer: str
    version: int

    @property
    def table(self) -> sql.Identifier:
        return partitions.partition_table(PARENT, self.id)


def refresh_land_classes(cur: psycopg2.extensions.cursor, classes: dict[str, LandClass], construction: list[str]) -> None:
    """Upsert the 用地用海 (2023) classes and which count as construction land."""
    rows = [(c.code, c.name_zh, c.name_en, c.code[:2] in construction) for c in classes.values()]
    cur.execute("CREATE TEMP TABLE incoming_class (LIKE geoservice.land_class) ON COMMIT DROP")
    cur.executemany("INSERT INTO incoming_class VALUES (%s, %s, %s, %s)", rows)
    cur.execute(
        "INSERT INTO geoservice.land_class SELECT * FROM incoming_class ON CONFLICT (code) DO UPDATE SET "
        "name_zh = excluded.name_zh, name_en = excluded.name_en, construction = excluded.construction"
    )


def begin_version(cur: psycopg2.extensions.cursor, definition: Definition, source_path: str) -> NewVersion:
    """Register the layer, lock it against concurrent loads, create the version row and its empty table.

    The source checksum is filled in by finish_version (it is computed while the server builds the indexes)."""
    layer = definition.layer
    cur.execute(
        "INSERT INTO geoservice.layer (name, kind, title, description, definition) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, title = excluded.title, "
        "description = excluded.description, definition = excluded.definition",
        (layer.name, layer.kind.value, layer.title, layer.description, json.dumps(layer.model_dump(mode="json"), ensure_ascii=False)),
    )
    cur.execute("SELECT name FROM geoservice.layer WHERE name = %s FOR UPDATE", (layer.name,))
    cur.execute("SELECT coalesce(max(version), 0) + 1 FROM geoservice.layer_version WHERE layer = %s", (layer.name,))
    number = cur.fetchone()[0]
    cur.execute(
        "INSERT INTO geoservice.layer_version (layer, version, source_path, source_checksum) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (layer.name, number, source_path, ""),
    )
    new = NewVersion(cur.fetchone()[0], layer.name, number)
    partitions.create_partition_table(cur, PARENT, new.id)
    return new


def copy_binary(
    new: NewVersion, srid: int, rows: np.ndarray, wkb: pa.Array, multi: np.ndarray, source_ids: pa.Array | None,
    names: pa.Array | np.ndarray | None, class_codes: pa.Array | None, original_codes: pa.Array | None,
    status: np.ndarray, attributes: dict[str, pa.Array | np.ndarray],
) -> bytes:
    """One batch of clean rows as binary COPY rows in COPY_COLUMNS order (PostGIS computes area_m2).

    `wkb` holds each row's Polygon or MultiPolygon WKB (2D, little-endian; `multi` says which); it is stored as an
    EWKB MultiPolygon with the SRID: a Polygon gains a one-part header, a MultiPolygon swaps its own for one.
    """
    count = len(rows)
    header = b"\x01" + struct.pack("<II", EWKB_MULTIPOLYGON_WITH_SRID, srid)
    if not multi.any():  # all Polygons: each gains a one-part header
        geometry = bulk.BinaryField(parts=(wkb,), prefix=header + ONE_PART)
    else:  # a MultiPolygon keeps its part count and parts, after the header with the SRID
        longest = pc.max(pc.binary_length(wkb)).as_py() or 0  # binary_slice without a stop fails (pyarrow 26)
        if multi.all():
            geometry = bulk.BinaryField(parts=(pc.binary_slice(wkb, 5, longest + 1),), prefix=header)
        else:
            multi_mask = pa.array(multi, pa.bool_())
            geometry = bulk.BinaryField(
                parts=(pc.if_else(multi_mask, pa.scalar(b"", pa.binary()), pa.scalar(ONE_PART, pa.binary())),
                       pc.if_else(multi_mask, pc.binary_slice(wkb, 5, longest + 1), wkb)),
                prefix=header,
            )
    return bulk.binary_rows([
        bulk.int_field(new.id, count), bulk.int_field(rows, count, ">i4"), bulk.text_binary_field(source_ids, count),
        bulk.text_binary_field(names, count), bulk.text_binary_field(class_codes, count),
        bulk.text_binary_field(original_codes, count),
        bulk.BinaryField(parts=(STATUS_TEXT.take(pa.array((status == REPAIRED).astype(np.int8))),)),
        bulk.jsonb_field(attributes, count), geometry,
    ], count)


def finish_version(cur: psycopg2.extensions.cursor, new: NewVersion, count: int, summary: dict[str, object],
                   checksum: Callable[[], str]) -> None:
    """Index and attach the new version's table, record counts and the source checksum (`checksum()` is asked for
    after the indexes are built: it can be computed meanwhile), make it the active version."""
    partitions.attach_partition(cur, PARENT, "version_id", new.id, ("version_id", "id"),
                                {"geom": "USING gist (geom)", "class": "(version_id, class_code)"})
    cur.execute("UPDATE geoservice.layer_version SET feature_count = %s, summary = %s, source_checksum = %s WHERE id = %s",
                (count, json.dumps(summary, ensure_ascii=False), checksum(), new.id))
    activate(cur, new.layer, new.version)


def activate(cur: psycopg2.extensions.cursor, layer: str, version: int) -> bool:
    """Make `version` the one active version of `layer`; False when no such version exists."""
    cur.execute("SELECT id FROM geoservice.layer_version WHERE layer = %s AND version = %s", (layer, version))
    if cur.fetchone() is None:
        return False
    cur.execute("UPDATE geoservice.layer_version SET is_active = false WHERE layer = %s AND is_active", (layer,))
    cur.execute("UPDATE geoservice.layer_version SET is_active = true WHERE layer = %s AND version = %s", (layer, version))
    return True
