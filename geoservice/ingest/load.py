"""Loading one layer version into PostGIS in one transaction: own partition, COPY, index, attach, activate."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
from psycopg2 import sql

from geoservice.ingest.classify import LandClass
from geoservice.ingest.definition import Definition
from geoservice.db import bulk, partitions
from geoservice.ingest.repair import REPAIRED

PARENT = "feature"
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
        return sql.Identifier(partitions.SCHEMA, partitions.partition_name(PARENT, self.id))


def refresh_land_classes(cur: psycopg2.extensions.cursor, classes: dict[str, LandClass], construction: list[str]) -> None:
    """Upsert the 用地用海 (2023) classes and which count as construction land."""
    rows = [(c.code, c.name_zh, c.name_en, c.code[:2] in construction) for c in classes.values()]
    cur.execute("CREATE TEMP TABLE incoming_class (LIKE geoservice.land_class) ON COMMIT DROP")
    cur.executemany("INSERT INTO incoming_class VALUES (%s, %s, %s, %s)", rows)
    cur.execute(
        "INSERT INTO geoservice.land_class SELECT * FROM incoming_class ON CONFLICT (code) DO UPDATE SET "
        "name_zh = excluded.name_zh, name_en = excluded.name_en, construction = excluded.construction"
    )


def begin_version(cur: psycopg2.extensions.cursor, definition: Definition, source_path: str, checksum: str) -> NewVersion:
    """Register the layer, lock it against concurrent loads, create the version row and its empty table."""
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
        (layer.name, number, source_path, checksum),
    )
    new = NewVersion(cur.fetchone()[0], layer.name, number)
    partitions.create_partition_table(cur, PARENT, new.id)
    return new


def copy_text(
    new: NewVersion, srid: int, rows: np.ndarray, geometries: np.ndarray, source_ids: np.ndarray | None,
    names: np.ndarray | None, class_codes: np.ndarray | None, original_codes: np.ndarray | None,
    status: np.ndarray, attributes: dict[str, np.ndarray],
) -> str:
    """One batch of clean rows as COPY text (geometry as hex EWKB MultiPolygon, attributes as JSON; PostGIS
    computes area_m2)."""
    count = len(rows)
    return bulk.copy_text([
        [str(new.id)] * count, bulk.number_field(rows), bulk.text_field(source_ids, count), bulk.text_field(names, count),
        bulk.text_field(class_codes, count), bulk.text_field(original_codes, count),
        np.where(status == REPAIRED, "repaired", "kept").tolist(), bulk.json_field(attributes, count),
        bulk.multipolygon_ewkb_hex(geometries, srid),
    ])


def finish_version(cur: psycopg2.extensions.cursor, new: NewVersion, count: int, summary: dict[str, object]) -> None:
    """Index and attach the new version's table, record counts, make it the active version."""
    partitions.attach_partition(cur, PARENT, "version_id", new.id, ("version_id", "id"),
                                {"geom": "USING gist (geom)", "class": "(version_id, class_code)"})
    cur.execute("UPDATE geoservice.layer_version SET feature_count = %s, summary = %s WHERE id = %s",
                (count, json.dumps(summary, ensure_ascii=False), new.id))
    activate(cur, new.layer, new.version)


def activate(cur: psycopg2.extensions.cursor, layer: str, version: int) -> bool:
    """Make `version` the one active version of `layer`; False when no such version exists."""
    cur.execute("SELECT id FROM geoservice.layer_version WHERE layer = %s AND version = %s", (layer, version))
    if cur.fetchone() is None:
        return False
    cur.execute("UPDATE geoservice.layer_version SET is_active = false WHERE layer = %s AND is_active", (layer,))
    cur.execute("UPDATE geoservice.layer_version SET is_active = true WHERE layer = %s AND version = %s", (layer, version))
    return True
