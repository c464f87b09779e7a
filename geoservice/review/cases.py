"""Conflict cases: one conflict followed across detection runs by a stable key, its review state and audit trail.

The key is the rule, the two source features (layer + source id, or 'fid:<feature id>' when a feature has no
source id; see geoservice.case_key in sql/0005_review.sql) and the district.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg2.extensions
from psycopg2 import sql

from geoservice.db import bulk, transaction
from geoservice.db.read import qualified
from geoservice.review.errors import UnknownConflictError
from geoservice.settings import Settings

CASE_COLUMNS = ("id", "rule_id", "layer_a", "key_a", "layer_b", "key_b", "district_code", "status", "opinion",
                "reviewer", "reviewed_at", "first_run_id", "created_at")
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
    created_at: datetime
    last_run_id: int  # the newest run holding one of its conflicts

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
    """The cases with their latest run: the newest run holding one of their conflicts (a conflict row belongs to every
    run of its chain up to the one that dropped it)."""
    return sql.SQL(
        "SELECT {}, (SELECT max(r.id) FROM {} c JOIN {} r ON c.run_id = ANY(r.chain) "
        "AND (c.until_run IS NULL OR c.until_run > r.id) WHERE c.case_id = k.id) FROM {} k").format(
        sql.SQL(", ").join(sql.Identifier("k", c) for c in CASE_COLUMNS), qualified("conflict"),
        qualified("detection_run"), qualified("conflict_case"))


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


KEY_COLUMNS = ("rule_id", "layer_a", "key_a", "layer_b", "key_b", "district_code")


def case_keys(conflicts: pd.DataFrame) -> pd.DataFrame:
    """Each conflict's case key (KEY_COLUMNS; geoservice.case_key in SQL): a side's key is its source id, else
    'fid:<feature id>', else '' (no such side); no second layer and no district are ''."""
    def side(source: pd.Series, feature: pd.Series) -> pd.Series:
        fid = ("fid:" + feature.astype("Int64").astype(str)).where(feature.notna(), "")
        return source.where(source.notna(), fid)

    return pd.DataFrame({
        "rule_id": conflicts["rule_id"], "layer_a": conflicts["layer_a"],
        "key_a": side(conflicts["source_id_a"], conflicts["feature_a"]), "layer_b": conflicts["layer_b"].fillna(""),
        "key_b": side(conflicts["source_id_b"], conflicts["feature_b"]),
        "district_code": conflicts["district_code"].fillna(""),
    })


def link_cases(cur: psycopg2.extensions.cursor, run_id: int, conflicts: pd.DataFrame,
               shared: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Before a run's conflict rows are stored, in the transaction that stores them: each conflict's case id and status
    (`conflicts`: `conflicts.detect.identities`). Creates the cases seen for the first time; the cases found again are
    not written (a case's latest run is that of its newest conflict). The keys go over in one binary COPY.

    One linker at a time takes the cases' lock (the new keys then need no ON CONFLICT, which costs half the insert;
    review writes wait until the run commits). `shared`: many transactions link at once (a distributed run's tiles),
    so the new keys go in by key order with ON CONFLICT DO NOTHING — a tile waits for another that inserted the same
    key to commit, never for a whole run, and two tiles take their keys' locks in one order.
    """
    keys = case_keys(conflicts)
    cur.execute(sql.SQL("CREATE TEMP TABLE incoming_case (k bigint, {}) ON COMMIT DROP").format(
        sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in KEY_COLUMNS)))
    with bulk.BinaryCopyWriter(cur, sql.Identifier("incoming_case"), ("k", *KEY_COLUMNS)) as writer:
        writer.put(bulk.binary_rows([bulk.int_field(np.arange(len(keys)), len(keys)),
                                     *(bulk.text_binary_field(keys[c].to_numpy(), len(keys)) for c in KEY_COLUMNS)],
                                    len(keys)))
    same_key = sql.SQL(" AND ").join(sql.SQL("k.{0} = i.{0}").format(sql.Identifier(c)) for c in KEY_COLUMNS)
    columns = sql.SQL(", ").join(map(sql.Identifier, KEY_COLUMNS))
    # DISTINCT reads every key before the first is inserted (no scan of rows this statement inserts)
    cur.execute(sql.SQL("""
        {lock}
        ANALYZE incoming_case;
        INSERT INTO geoservice.conflict_case ({columns}, first_run_id)
        SELECT DISTINCT {columns}, %(run)s FROM incoming_case i
        WHERE NOT EXISTS (SELECT 1 FROM geoservice.conflict_case k WHERE {same_key}) {order};
        SELECT k.id, k.status FROM incoming_case i JOIN geoservice.conflict_case k ON {same_key} ORDER BY i.k;
    """).format(columns=columns, same_key=same_key,
                lock=sql.SQL("" if shared else "LOCK TABLE geoservice.conflict_case IN SHARE ROW EXCLUSIVE MODE;"),
                order=sql.SQL("ORDER BY {} ON CONFLICT DO NOTHING").format(columns) if shared else sql.SQL("")),
        {"run": run_id})
    linked = cur.fetchall()
    if len(linked) != len(keys):
        raise RuntimeError(f"{len(keys) - len(linked)} conflicts were not linked to a case")
    case_id, status = zip(*linked) if linked else ((), ())
    return np.asarray(case_id, np.int64), np.asarray(status, dtype=object)


def settle_cases(cur: psycopg2.extensions.cursor, run_id: int, rule_ids: list[str],
                 carried: tuple[int, ...] = ()) -> None:
    """After a run's linked rows are stored and attached, in that transaction: mark disappeared the cases of the
    evaluated rules that the run did not find, and give the run's rows the status of cases reviewed while it ran
    (a distributed run's tiles read the statuses without holding the cases' lock). An incremental run's rows carried
    from `carried` (its base run's chain) keep their cases and are not candidates.

    Disappeared: the cases of each evaluated rule in the previous run that evaluated it, not found now (so a case is
    marked once, in the first run that misses it). The previous runs' chains go in as a literal, so that PostgreSQL
    reads only their partitions.
    """
    cur.execute("LOCK TABLE geoservice.conflict_case IN SHARE ROW EXCLUSIVE MODE")
    cur.execute("""
        UPDATE geoservice.conflict c SET status = k.status
        FROM geoservice.conflict_case k, geoservice.detection_run r
        WHERE r.id = %(run)s AND k.reviewed_at >= r.started_at AND c.run_id = %(run)s AND c.case_id = k.id
          AND c.status <> k.status
    """, {"run": run_id})
    cur.execute("""
        SELECT r.rule_id, pr.id, pr.chain FROM unnest(%(rules)s::text[]) AS r (rule_id)
        CROSS JOIN LATERAL (SELECT max(d.id) AS id FROM geoservice.detection_run d
                            WHERE d.id < %(run)s AND d.rules @> jsonb_build_array(jsonb_build_object('id', r.rule_id))) p
        JOIN geoservice.detection_run pr ON pr.id = p.id
    """, {"run": run_id, "rules": rule_ids})
    evaluated = cur.fetchall()  # per rule: the previous run that evaluated it, and its chain
    previous = sorted({run for *_, chain in evaluated for run in chain})
    cur.execute(sql.SQL("""
        INSERT INTO geoservice.disappeared_case (run_id, case_id)
        SELECT DISTINCT %(run)s, c.case_id
        FROM unnest(%(rules)s::text[], %(previous)s::bigint[]) AS r (rule_id, previous_id)
        JOIN geoservice.detection_run pr ON pr.id = r.previous_id
        JOIN geoservice.conflict c ON c.run_id = ANY(pr.chain) AND (c.until_run IS NULL OR c.until_run > pr.id)
                                  AND c.rule_id = r.rule_id AND c.run_id = ANY({chains}::bigint[])
        WHERE c.case_id IS NOT NULL AND NOT (c.run_id = ANY({carried}::bigint[]) AND c.until_run IS NULL)
          AND NOT EXISTS (SELECT 1 FROM geoservice.conflict found WHERE found.run_id = {run}
                          AND found.case_id = c.case_id)
          AND NOT EXISTS (SELECT 1 FROM geoservice.conflict kept WHERE kept.case_id = c.case_id
                          AND kept.run_id = ANY({carried}::bigint[]) AND kept.until_run IS NULL)
    """).format(chains=sql.Literal(previous), carried=sql.Literal(list(carried)), run=sql.Literal(run_id)),
        {"run": run_id, "rules": [rule for rule, *_ in evaluated], "previous": [run for _, run, _ in evaluated]})


def forget_cases(cur: psycopg2.extensions.cursor, run_id: int) -> None:
    """A failed run: remove the cases it created (a distributed run's tiles commit theirs before the run does).
    Nobody reviewed them: their conflicts were never served."""
    cur.execute("DELETE FROM geoservice.conflict_case WHERE first_run_id = %s", (run_id,))
