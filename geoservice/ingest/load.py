"""Loading one layer version into PostGIS in one transaction: own partition, COPY, index, attach, activate."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from psycopg2 import sql

from geoservice.ingest.classify import LandClass
from geoservice.ingest.definition import Definition

COPY_COLUMNS = ("version_id", "source_row", "source_id", "name", "class_code", "original_code", "status",
                "attributes", "area_m2", "geom")


@dataclass(frozen=True)
class NewVersion:
    """The version row being written (invisible to others until commit)."""

    id: int
    layer: str
    version: int

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier("geoservice", f"feature_v{self.id}")


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
    cur.execute(sql.SQL("CREATE TABLE {} (LIKE geoservice.feature INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(new.table))
    return new


def copy_rows(
    cur: psycopg2.extensions.cursor, new: NewVersion, srid: int, rows: np.ndarray, geometries: np.ndarray,
    source_ids: np.ndarray | None, names: np.ndarray | None, class_codes: np.ndarray | None,
    original_codes: np.ndarray | None, status: np.ndarray, attributes: pd.DataFrame,
) -> None:
    """COPY one batch of clean rows (CSV through psycopg2; geometry as hex EWKB, attributes as JSON)."""
    count = len(rows)
    empty = np.full(count, None, dtype=object)
    json_lines = (
        attributes.to_json(orient="records", lines=True, force_ascii=False, date_format="iso").splitlines()
        if len(attributes.columns) else ["{}"] * count
    )
    frame = pd.DataFrame({
        "version_id": np.full(count, new.id), "source_row": rows,
        "source_id": empty if source_ids is None else source_ids, "name": empty if names is None else names,
        "class_code": empty if class_codes is None else class_codes,
        "original_code": empty if original_codes is None else original_codes,
        "status": np.where(status == 1, "repaired", "kept"), "attributes": json_lines,
        "area_m2": shapely.area(geometries),
        "geom": shapely.to_wkb(shapely.set_srid(geometries, srid), hex=True, include_srid=True),
    })
    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False)
    buffer.seek(0)
    columns = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(new.table, columns).as_string(cur), buffer)


def finish_version(cur: psycopg2.extensions.cursor, new: NewVersion, summary: dict[str, object]) -> int:
    """Index the new table, attach it as a partition, record counts, make it the active version."""
    name = f"feature_v{new.id}"
    cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (version_id = {})").format(
        new.table, sql.Identifier(f"{name}_version"), sql.Literal(new.id)))
    cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (version_id, id)").format(new.table))
    cur.execute(sql.SQL("CREATE INDEX {} ON {} USING gist (geom)").format(sql.Identifier(f"{name}_geom"), new.table))
    cur.execute(sql.SQL("CREATE INDEX {} ON {} (version_id, class_code)").format(sql.Identifier(f"{name}_class"), new.table))
    cur.execute(sql.SQL("ALTER TABLE geoservice.feature ATTACH PARTITION {} FOR VALUES IN ({})").format(
        new.table, sql.Literal(new.id)))
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(new.table))
    count = cur.fetchone()[0]
    cur.execute("UPDATE geoservice.layer_version SET feature_count = %s, summary = %s WHERE id = %s",
                (count, json.dumps(summary, ensure_ascii=False), new.id))
    activate(cur, new.layer, new.version)
    cur.execute(sql.SQL("ANALYZE {}").format(new.table))
    return count


def activate(cur: psycopg2.extensions.cursor, layer: str, version: int) -> bool:
    """Make `version` the one active version of `layer`; False when no such version exists."""
    cur.execute("SELECT id FROM geoservice.layer_version WHERE layer = %s AND version = %s", (layer, version))
    if cur.fetchone() is None:
        return False
    cur.execute("UPDATE geoservice.layer_version SET is_active = false WHERE layer = %s AND is_active", (layer,))
    cur.execute("UPDATE geoservice.layer_version SET is_active = true WHERE layer = %s AND version = %s", (layer, version))
    return True
