"""Run- and version-scoped partitions: fill and index a table of its own, then attach it in the same transaction.

Attaching takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so readers go on reading the previous
partitions while a load runs; a failed or killed load rolls the whole table back.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg2.extensions
from psycopg2 import sql

from geoservice.db.read import qualified


def partition_name(parent: str, key: int) -> str:
    """feature + 12 -> feature_p12 (the table holding one version or run)."""
    return f"{parent}_p{key}"


def partition_table(parent: str, key: int) -> sql.Identifier:
    """The schema-qualified table holding one version or run."""
    return qualified(partition_name(parent, key))


def create_partition_table(cur: psycopg2.extensions.cursor, parent: str, key: int) -> sql.Identifier:
    """An empty, unattached table shaped like `parent` (defaults and checks included)."""
    table = partition_table(parent, key)
    cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)").format(
        table, qualified(parent)))
    return table


def attach_partition(
    cur: psycopg2.extensions.cursor, parent: str, key_column: str, key: int,
    primary_key: Sequence[str], indexes: dict[str, str],
) -> None:
    """Constrain, index (name suffix -> 'USING gist (geom)' style definition), attach and ANALYZE one partition."""
    name = partition_name(parent, key)
    table = qualified(name)
    cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
    cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} = {})").format(
        table, sql.Identifier(f"{name}_key"), sql.Identifier(key_column), sql.Literal(key)))
    cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(table, sql.SQL(", ").join(map(sql.Identifier, primary_key))))
    for suffix, definition in indexes.items():
        cur.execute(sql.SQL("CREATE INDEX {} ON {} ").format(sql.Identifier(f"{name}_{suffix}"), table) + sql.SQL(definition))
    cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
        qualified(parent), table, sql.Literal(key)))
    cur.execute(sql.SQL("ANALYZE {}").format(table))
