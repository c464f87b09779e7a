"""Conflict cases: one conflict followed across detection runs by a stable key, its review state and audit trail.

The key is the rule, the two source features (layer + source id, or 'fid:<feature id>' when a feature has no
source id; see geoservice.case_key in sql/0005_review.sql) and the district.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg2.extensions
from psycopg2 import sql

from geoservice.db import transaction
from geoservice.db.read import qualified
from geoservice.review.errors import UnknownConflictError
from geoservice.settings import Settings

CASE_COLUMNS = ("id", "rule_id", "layer_a", "key_a", "layer_b", "key_b", "district_code", "status", "opinion",
                "reviewer", "reviewed_at", "first_run_id", "last_run_id", "created_at")
EVENT_COLUMNS = ("id", "case_id", "conflict_id", "changed_at", "reviewer", "from_status", "to_status", "comment")


def _json_ready(values: dict[str, object]) -> dict[str, object]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


@dataclass(frozen=True)
class Case:
    """One conflict as people follow it: its key, review status, opinion (处理意见), reviewer and the runs it was in."""

    id: int
    rule_id: str
    layer_a: str
    key_a: str
    layer_b: str
    key_b: str
    district_code: str
    status: str
    opinion: str
    reviewer: str | None
    reviewed_at: datetime | None
    first_run_id: int
    last_run_id: int
    created_at: datetime

    def as_dict(self) -> dict[str, object]:
        return _json_ready(asdict(self))


@dataclass(frozen=True)
class CaseEvent:
    """One status change in the audit trail: who, when, from, to, why."""

    id: int
    case_id: int
    conflict_id: int | None
    changed_at: datetime
    reviewer: str
    from_status: str
    to_status: str
    comment: str

    def as_dict(self) -> dict[str, object]:
        return _json_ready(asdict(self))


def _case_select() -> sql.Composed:
    return sql.SQL("SELECT {} FROM {} k").format(
        sql.SQL(", ").join(sql.Identifier("k", c) for c in CASE_COLUMNS), qualified("conflict_case"))


def case_id_of_conflict(cur: psycopg2.extensions.cursor, conflict_id: int) -> int:
    """The case a conflict (of any run) belongs to; UnknownConflictError when there is no such conflict."""
    cur.execute("SELECT case_id FROM geoservice.conflict WHERE id = %s AND case_id IS NOT NULL", (conflict_id,))
    row = cur.fetchone()
    if row is None:
        raise UnknownConflictError(conflict_id)
    return row[0]


def read_case(cur: psycopg2.extensions.cursor, case_id: int, lock: bool = False) -> Case:
    """A case by id (FOR UPDATE when `lock`)."""
    cur.execute(_case_select() + sql.SQL(" WHERE k.id = %s") + sql.SQL(" FOR UPDATE" if lock else ""), (case_id,))
    return Case(*cur.fetchone())


def get_case(settings: Settings, conflict_id: int) -> Case:
    """The case of a conflict."""
    with transaction(settings) as conn, conn.cursor() as cur:
        return read_case(cur, case_id_of_conflict(cur, conflict_id))


def history(settings: Settings, conflict_id: int) -> list[CaseEvent]:
    """Every status change of a conflict's case, oldest first (across all detection runs)."""
    with transaction(settings) as conn, conn.cursor() as cur:
        case_id = case_id_of_conflict(cur, conflict_id)
        cur.execute(sql.SQL("SELECT {} FROM {} WHERE case_id = %s ORDER BY id").format(
            sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)), qualified("conflict_case_event")), (case_id,))
        return [CaseEvent(*row) for row in cur.fetchall()]


def link_run(cur: psycopg2.extensions.cursor, table: sql.Composable, run_id: int, rule_ids: list[str]) -> None:
    """At detect time, in its transaction: link a new run's conflict rows (in `table`) to their cases.

    Creates the cases seen for the first time, moves every found case's last run to this one, copies each case's
    status onto its rows, and marks disappeared the cases of the evaluated rules that this run did not find
    (once: a case already marked since it was last seen is not marked again).
    """
    cur.execute(sql.SQL("""
        INSERT INTO geoservice.conflict_case (rule_id, layer_a, key_a, layer_b, key_b, district_code,
                                              first_run_id, last_run_id)
        SELECT DISTINCT rule_id, layer_a, geoservice.case_key(source_id_a, feature_a), coalesce(layer_b, ''),
               geoservice.case_key(source_id_b, feature_b), coalesce(district_code, ''), %(run)s, %(run)s
        FROM {table}
        ON CONFLICT (rule_id, layer_a, key_a, layer_b, key_b, district_code) DO UPDATE SET last_run_id = EXCLUDED.last_run_id
    """).format(table=table), {"run": run_id})
    cur.execute(sql.SQL("""
        UPDATE {table} c SET case_id = k.id, status = k.status
        FROM geoservice.conflict_case k
        WHERE k.rule_id = c.rule_id AND k.layer_a = c.layer_a AND k.key_a = geoservice.case_key(c.source_id_a, c.feature_a)
          AND k.layer_b = coalesce(c.layer_b, '') AND k.key_b = geoservice.case_key(c.source_id_b, c.feature_b)
          AND k.district_code = coalesce(c.district_code, '')
    """).format(table=table))
    cur.execute("""
        INSERT INTO geoservice.disappeared_case (run_id, case_id)
        SELECT %(run)s, k.id FROM geoservice.conflict_case k
        WHERE k.rule_id = ANY(%(rules)s) AND k.last_run_id < %(run)s
          AND NOT EXISTS (SELECT 1 FROM geoservice.disappeared_case d WHERE d.case_id = k.id AND d.run_id > k.last_run_id)
    """, {"run": run_id, "rules": rule_ids})
