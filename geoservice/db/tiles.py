"""Bookkeeping of a distributed run's tiles (`geoservice.run_tile`): a tile's record commits with its rows."""

from __future__ import annotations

import json

import psycopg2.extensions
from psycopg2 import sql

from geoservice.db.read import qualified

#: advisory lock namespace of the tiles (two attempts at one tile never write at once)
LOCK_CLASS = 0x7417


def lock_tile(cur: psycopg2.extensions.cursor, stage: str, run_id: int, tile: int) -> None:
    """Wait for any other attempt at this tile to end (the lock is the transaction's)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, f"{stage}:{run_id}:{tile}"))


def tile_record(cur: psycopg2.extensions.cursor, stage: str, run_id: int, tile: int) -> dict | None:
    """The summary a committed attempt at this tile recorded, or None."""
    cur.execute("SELECT summary FROM geoservice.run_tile WHERE stage = %s AND run_id = %s AND tile = %s",
                (stage, run_id, tile))
    row = cur.fetchone()
    return row[0] if row else None


def record_tile(cur: psycopg2.extensions.cursor, stage: str, run_id: int, tile: int, summary: dict) -> None:
    cur.execute("INSERT INTO geoservice.run_tile (stage, run_id, tile, summary) VALUES (%s, %s, %s, %s)",
                (stage, run_id, tile, json.dumps(summary, ensure_ascii=False)))


def recorded_tiles(cur: psycopg2.extensions.cursor, stage: str, run_id: int) -> list[int]:
    cur.execute("SELECT tile FROM geoservice.run_tile WHERE stage = %s AND run_id = %s ORDER BY tile", (stage, run_id))
    return [row[0] for row in cur.fetchall()]


def forget_tiles(cur: psycopg2.extensions.cursor, stage: str, run_id: int) -> None:
    cur.execute("DELETE FROM geoservice.run_tile WHERE stage = %s AND run_id = %s", (stage, run_id))


def discard_run(cur: psycopg2.extensions.cursor, run_table: str, partition: sql.Composable, stage: str,
                run_id: int) -> None:
    """Remove what a failed distributed run left: its unattached table, its tiles' records and its run row."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(partition))
    forget_tiles(cur, stage, run_id)
    cur.execute(sql.SQL("DELETE FROM {} WHERE id = %s AND NOT is_current").format(qualified(run_table)), (run_id,))
