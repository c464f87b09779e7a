"""Writing runs: making a run current with its chain, and the rows an incremental run replaces in its base run's."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import psycopg2.extensions
from psycopg2 import sql

from geoservice.db.layers import read_with_geometry
from geoservice.db.read import RUN_TABLES, Run, RunKind, qualified, rows_of_run
from geoservice.errors import GeoserviceError


def make_current(cur: psycopg2.extensions.cursor, kind: RunKind, run_id: int, summary: dict[str, object],
                 base: Run | None = None) -> None:
    """Finish run `run_id` and make it the current one of its kind; an incremental run reads its base run's chain and
    its own rows."""
    table = qualified(RUN_TABLES[kind][0])
    chain = [*(base.chain if base else ()), run_id]
    cur.execute(sql.SQL("UPDATE {} SET is_current = false WHERE is_current").format(table))
    cur.execute(sql.SQL("UPDATE {} SET is_current = true, finished_at = now(), summary = %s, chain = %s, base_run_id = %s "
                        "WHERE id = %s").format(table),
                (json.dumps(summary, ensure_ascii=False), chain, base.id if base else None, run_id))


def lock_base(cur: psycopg2.extensions.cursor, base: Run) -> None:
    """Lock an incremental run's base run until the transaction ends; an error when it is no longer current."""
    cur.execute(sql.SQL("SELECT is_current FROM {} WHERE id = %s FOR UPDATE").format(qualified(RUN_TABLES[base.kind][0])),
                (base.id,))
    row = cur.fetchone()
    if not row or not row[0]:
        raise GeoserviceError(f"another {base.kind} run was made current while this one was computed from run "
                              f"{base.id}: run it again")


def rows_meeting(cur: psycopg2.extensions.cursor, parent: str, base: Run, region: sql.Composable,
                 columns: dict[str, pa.DataType], where: sql.Composable = sql.SQL("true"),
                 params: tuple[object, ...] = ()) -> tuple[pa.Table, np.ndarray]:
    """`columns` and geometries of the rows of run `base` in `parent` whose box meets a box of `region` (a relation
    with a column `box`) and that satisfy `where` (its values in `params`), by id."""
    return read_with_geometry(cur, columns, sql.SQL("FROM {} ORDER BY id").format(
        region_rows(parent, base, region, where)), params)


def region_rows(parent: str, base: Run, region: sql.Composable, where: sql.Composable = sql.SQL("true")) -> sql.Composed:
    """The rows of run `base` in `parent` whose box meets a box of `region` and that satisfy `where`, as a subquery
    (alias `p`) driven by the region's boxes (each row once)."""
    return sql.SQL("(SELECT DISTINCT ON (p.run_id, p.id) p.* FROM {region} r JOIN {parent} p ON p.geom && r.box "
                   "WHERE {rows} AND {where} ORDER BY p.run_id, p.id) p").format(
        region=region, parent=qualified(parent), rows=rows_of_run(base, "p"), where=where)


def drop_rows(cur: psycopg2.extensions.cursor, parent: str, base: Run, run_id: int, ids: np.ndarray) -> None:
    """Drop rows `ids` of run `base` from run `run_id` on (they stay in the runs before it)."""
    cur.execute(sql.SQL("UPDATE {} SET until_run = %s WHERE {} AND id = ANY(%s)").format(
        qualified(parent), rows_of_run(base)), (run_id, [int(i) for i in ids]))
    if cur.rowcount != len(ids):
        raise GeoserviceError(f"run {run_id}: {len(ids) - cur.rowcount} of the {len(ids)} rows to replace are gone")
