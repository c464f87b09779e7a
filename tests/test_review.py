"""The review workflow on a demo database of its own: status changes with their audit trail, the trail refusing
rewrites, and cases keeping status and history across detection runs (disappearing and coming back)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg2
import pytest
from sql_helpers import query

from geoservice import db
from geoservice.cli import main
from geoservice.conflicts import load_rules
from geoservice.review import detect
from geoservice.db.connection import connect_url
from geoservice.report import read_ledger
from geoservice.review import (
    InvalidReviewError,
    InvalidTransitionError,
    UnknownConflictError,
    get_case,
    history,
    set_status,
)
from geoservice.settings import Settings

RULE = "projects_in_red_line"


@pytest.fixture(scope="module")
def review_settings(base_settings: Settings) -> Iterator[Settings]:
    """The demo data ingested, integrated and detected in a database of this module's own (its runs change)."""
    from geoservice.basemap import integrate
    from geoservice.ingest import ingest_layer, load_definitions

    name = f"geoservice_review_{os.getpid()}"
    scratch = db.create_scratch_database(base_settings, name, lambda _: None)
    for definition in load_definitions(scratch.path(scratch.paths.layers)):
        ingest_layer(scratch, definition)
    integrate(scratch)
    detect(scratch)
    yield scratch
    db.drop_database(scratch.database.url, name)


def current_conflicts(settings: Settings, rule: str) -> list[tuple[int, int, float]]:
    """(conflict id, case id, area m²) of a rule's conflicts in the current run, largest first."""
    return query(settings, """
        SELECT c.id, c.case_id, c.area_m2 FROM geoservice.conflict c JOIN geoservice.detection_run r ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id)
        WHERE r.is_current AND c.rule_id = %s ORDER BY c.area_m2 DESC""", rule)


def event_count(settings: Settings) -> int:
    return query(settings, "SELECT count(*) FROM geoservice.conflict_case_event")[0][0]


def test_every_conflict_has_a_case(review_settings) -> None:
    unlinked, conflicts, cases = query(review_settings, """
        SELECT count(*) FILTER (WHERE case_id IS NULL), count(*), count(DISTINCT case_id) FROM geoservice.conflict""")[0]
    assert unlinked == 0 and conflicts > 1000 and cases == conflicts


def test_set_status_records_history(review_settings) -> None:
    conflict, case_id, _ = current_conflicts(review_settings, "farmland_planned_for_other_use")[0]
    confirmed = set_status(review_settings, conflict, "confirmed", "", "王五")
    assert (confirmed.id, confirmed.status, confirmed.reviewer, confirmed.opinion) == (case_id, "confirmed", "王五", "")
    resolved = set_status(review_settings, conflict, "resolved", "  城规已调整为耕地 ", "赵六")
    assert (resolved.status, resolved.opinion, resolved.reviewer) == ("resolved", "城规已调整为耕地", "赵六")
    assert resolved.reviewed_at > confirmed.reviewed_at
    events = history(review_settings, conflict)
    assert [(e.from_status, e.to_status, e.reviewer, e.comment, e.conflict_id) for e in events] == [
        ("open", "confirmed", "王五", "", conflict), ("confirmed", "resolved", "赵六", "城规已调整为耕地", conflict)]
    assert events[-1].changed_at == resolved.reviewed_at
    statuses = query(review_settings, "SELECT DISTINCT status FROM geoservice.conflict WHERE case_id = %s", case_id)
    assert statuses == [("resolved",)]
    row = read_ledger(review_settings).rows.set_index("conflict_id").loc[conflict]
    assert (row["status"], row["opinion"], row["reviewer"]) == ("resolved", "城规已调整为耕地", "赵六")


def test_refused_reviews_change_nothing(review_settings) -> None:
    conflict = current_conflicts(review_settings, "protection_lines_overlap")[0][0]
    before = event_count(review_settings)
    with pytest.raises(UnknownConflictError, match=r"^conflict 987654321: no such conflict"):
        set_status(review_settings, 987654321, "confirmed", "", "王五")
    with pytest.raises(InvalidReviewError, match=r"marking a conflict waived needs a comment"):
        set_status(review_settings, conflict, "waived", " ", "王五")
    with pytest.raises(InvalidReviewError, match=r"needs a reviewer"):
        set_status(review_settings, conflict, "confirmed", "", " ")
    with pytest.raises(InvalidTransitionError, match=r"cannot go from open to open \(allowed: confirmed, resolved, waived\)"):
        set_status(review_settings, conflict, "open", "", "王五")
    with pytest.raises(InvalidTransitionError, match=r"cannot go from open to closed"):
        set_status(review_settings, conflict, "closed", "", "王五")
    set_status(review_settings, conflict, "waived", "历史遗留，经批准保留", "王五")
    with pytest.raises(InvalidTransitionError, match=r"cannot go from waived to resolved \(allowed: open, confirmed\)"):
        set_status(review_settings, conflict, "resolved", "x", "王五")
    assert event_count(review_settings) == before + 1 and get_case(review_settings, conflict).status == "waived"


def test_audit_trail_refuses_rewrites(review_settings) -> None:
    conflict = current_conflicts(review_settings, "planned_construction_in_red_line")[0][0]
    set_status(review_settings, conflict, "confirmed", "待规划部门核实", "王五")
    before = query(review_settings, "SELECT * FROM geoservice.conflict_case_event ORDER BY id")
    for statement in ("UPDATE geoservice.conflict_case_event SET comment = 'rewritten'",
                      "DELETE FROM geoservice.conflict_case_event",
                      "TRUNCATE geoservice.conflict_case_event"):
        conn = connect_url(review_settings.database.url)
        try:
            with pytest.raises(psycopg2.Error, match=r"conflict_case_event is append-only: (UPDATE|DELETE|TRUNCATE) refused"), \
                    conn, conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()
    assert query(review_settings, "SELECT * FROM geoservice.conflict_case_event ORDER BY id") == before


def test_status_carries_over_and_disappeared_cases(review_settings) -> None:
    rules = load_rules(review_settings.path(review_settings.paths.rules))
    found = current_conflicts(review_settings, RULE)
    (big, big_case, big_area), (small, small_case, small_area) = found[0], found[-1]
    set_status(review_settings, big, "resolved", "项目已调出红线", "王五")
    set_status(review_settings, small, "confirmed", "待核实", "赵六")
    first_run = read_ledger(review_settings).run.id
    stricter = rules.model_copy(update={"rules": [
        rule.model_copy(update={"min_area_m2": (small_area + big_area) / 2}) if rule.id == RULE else rule
        for rule in rules.rules]})

    second = detect(review_settings, rules=stricter)
    kept = {case: (conflict, area) for conflict, case, area in current_conflicts(review_settings, RULE)}
    gone = {case for _, case, area in found if area < (small_area + big_area) / 2}
    assert big_case in kept and small_case not in kept and kept[big_case][0] != big
    marked = query(review_settings, "SELECT case_id FROM geoservice.disappeared_case WHERE run_id = %s", second.run_id)
    assert sorted(case for (case,) in marked) == sorted(gone) and len(gone) >= 10
    ledger = read_ledger(review_settings).rows.set_index("case_id")
    assert ledger.loc[big_case, ["status", "presence", "opinion"]].tolist() == ["resolved", "recurring", "项目已调出红线"]
    assert ledger.loc[small_case, ["status", "presence", "conflict_id"]].tolist() == ["confirmed", "disappeared", small]
    assert (ledger["presence"] == "disappeared").sum() == len(gone)
    assert query(review_settings, "SELECT status FROM geoservice.conflict WHERE id = %s", kept[big_case][0]) == [("resolved",)]

    third = detect(review_settings, rules=rules)
    back = {case: conflict for conflict, case, _ in current_conflicts(review_settings, RULE)}
    assert small_case in back and back[small_case] != small
    case = get_case(review_settings, back[small_case])
    assert (case.id, case.status, case.opinion, case.first_run_id, case.last_run_id) == (
        small_case, "confirmed", "待核实", first_run, third.run_id)
    assert [(e.to_status, e.conflict_id) for e in history(review_settings, back[small_case])] == [("confirmed", small)]
    ledger = read_ledger(review_settings)
    assert (ledger.rows["presence"] == "disappeared").sum() == 0
    assert ledger.rows.set_index("case_id").loc[small_case, "presence"] == "recurring"
    assert (read_ledger(review_settings, second.run_id).rows["presence"] == "disappeared").sum() == len(gone)

    only = detect(review_settings, [RULE])  # rules not evaluated do not disappear
    assert query(review_settings, "SELECT count(*) FROM geoservice.disappeared_case WHERE run_id = %s", only.run_id) == [(0,)]
    detect(review_settings)


def test_review_command(review_settings, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GEOSERVICE_DATABASE_URL", review_settings.database.url)
    conflict = current_conflicts(review_settings, "construction_in_flood_zone")[0][0]
    assert main(["review", str(conflict), "--status", "waived", "--comment", "已有排涝工程", "--reviewer", "李四"]) == 0
    out, _ = capsys.readouterr()
    assert "status: waived by 李四" in out and "已有排涝工程" in out and "open" in out
    assert main(["review", str(conflict), "--status", "resolved", "--comment", "x"]) == 1
    assert capsys.readouterr().err == (f"error: conflict {conflict}: cannot go from waived to resolved "
                                       "(allowed: open, confirmed)\n")
    assert main(["review", "987654321"]) == 1
    assert "no such conflict" in capsys.readouterr().err
