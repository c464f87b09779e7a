"""Project submissions (合规性审查): each written construction project is checked on arrival with the current rules (the
engine behind `project-check`), the check stored with the revision, and the project reviewed through a status workflow
whose every step is audited.

受理 received → 审查中 under_review → 通过 approved / 不予通过 refused / 退回修改 returned; a returned project written
again is received again; a deleted one is withdrawn (撤回). A project under review or decided cannot be written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg2.extensions
import shapely
import shapely.geometry

from geoservice.conflicts import check, current_rules
from geoservice.edit.errors import DecidedSubmission, InvalidDecision, UnknownFeature
from geoservice.edit.store import audit, writing
from geoservice.queries.points import input_crs
from geoservice.settings import Settings

STATUSES = {"received": "受理", "under_review": "审查中", "approved": "通过", "refused": "不予通过",
            "returned": "退回修改", "withdrawn": "撤回"}
#: status -> the statuses a reviewer may move it to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "received": ("under_review", "returned"), "under_review": ("approved", "refused", "returned"),
    "returned": (), "approved": (), "refused": (), "withdrawn": ()}
#: the statuses in which the applicant may still write the project
WRITABLE = ("received", "returned")
#: decisions that must give the opinion (审查意见)
OPINION_REQUIRED = ("approved", "refused", "returned")


@dataclass(frozen=True)
class Check:
    """The project check of one geometry: its conflicts (as `project-check` gives them; each piece as GeoJSON in CRS84)
    and areas, under the rules with `rules_checksum`."""

    rules_checksum: str
    project_area_m2: float
    conflicts: list[dict[str, Any]]

    @property
    def conflict_area_m2(self) -> float:
        return sum(c["area_m2"] for c in self.conflicts)


def check_project(cur: psycopg2.extensions.cursor, settings: Settings, geometry: shapely.Geometry,
                  code: str | None) -> Check:
    """The check of a project (working CRS) of class `code`, its pieces kept as GeoJSON in CRS84."""
    rules = current_rules(settings)
    found = check(cur, settings, rules, geometry, code)
    pieces = input_crs(settings, None).from_working(settings, np.array([c.pop("geometry") for c in found], dtype=object))
    for conflict, piece in zip(found, pieces, strict=True):
        conflict["geometry"] = shapely.geometry.mapping(shapely.set_precision(piece, 1e-8))
    return Check(rules.checksum, float(geometry.area), found)


def record_write(cur: psycopg2.extensions.cursor, actor: str, layer: str, version_id: int, feature_id: int,
                 revision: int, found: Check | None) -> None:
    """In a write's transaction: the project's submission received (a new one, or a returned one written again) and
    the check of this revision stored; a deleted project (`found` None) withdrawn. DecidedSubmission when the project
    is under review or decided."""
    cur.execute("SELECT id, status FROM geoservice.submission WHERE version_id = %s AND feature_id = %s FOR UPDATE",
                (version_id, feature_id))
    row = cur.fetchone()
    if row is not None and row[1] not in WRITABLE:
        raise DecidedSubmission(f"project {feature_id} of {layer!r} is {row[1]} ({STATUSES[row[1]]}): it cannot be "
                                "changed now")
    wanted = "received" if found is not None else "withdrawn"
    if row is None:
        cur.execute("INSERT INTO geoservice.submission (layer, version_id, feature_id, status) VALUES (%s, %s, %s, %s) "
                    "RETURNING id", (layer, version_id, feature_id, wanted))
        submission = cur.fetchone()[0]
    else:
        submission = row[0]
        if row[1] != wanted:
            _move(cur, submission, actor, layer, version_id, feature_id, row[1], wanted,
                  "written again" if found is not None else "deleted")
    if found is not None:
        cur.execute("INSERT INTO geoservice.submission_check (submission_id, revision, rules_checksum, project_area_m2, "
                    "conflict_area_m2, conflicts) VALUES (%s, %s, %s, %s, %s, %s)",
                    (submission, revision, found.rules_checksum, found.project_area_m2, found.conflict_area_m2,
                     json.dumps(found.conflicts, ensure_ascii=False, default=_plain)))


def _plain(value: Any) -> Any:
    """A NumPy scalar in a conflict's details (raster statistics) as the Python number it is."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _move(cur: psycopg2.extensions.cursor, submission: int, actor: str, layer: str, version_id: int, feature_id: int,
          old: str, new: str, comment: str) -> None:
    cur.execute("UPDATE geoservice.submission SET status = %s, opinion = %s, reviewer = %s, reviewed_at = clock_timestamp() "
                "WHERE id = %s", (new, comment, actor, submission))
    audit(cur, actor, layer, version_id, feature_id, "status", {"status": old}, {"status": new}, comment=comment)


@dataclass(frozen=True)
class Submission:
    """A project's review: status, the latest opinion and reviewer, its latest check, and its status history."""

    layer: str
    feature_id: int
    status: str
    status_zh: str
    opinion: str
    reviewer: str | None
    reviewed_at: datetime | None
    created_at: datetime
    revision: int
    checked_at: datetime
    rules_checksum: str
    project_area_m2: float
    conflict_area_m2: float
    conflicts: list[dict[str, Any]]
    history: list[dict[str, Any]]

    @property
    def allowed(self) -> tuple[str, ...]:
        return TRANSITIONS[self.status]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("reviewed_at", "created_at", "checked_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return {**data, "allowed": list(self.allowed), "statuses": STATUSES}


def read_submission(cur: psycopg2.extensions.cursor, layer: str, version_id: int, feature_id: int) -> Submission:
    """The submission of a project with its latest check and status history; UnknownFeature when it has none."""
    cur.execute(
        "SELECT s.status, s.opinion, s.reviewer, s.reviewed_at, s.created_at, c.revision, c.checked_at, c.rules_checksum, "
        "c.project_area_m2, c.conflict_area_m2, c.conflicts FROM geoservice.submission s "
        "JOIN LATERAL (SELECT * FROM geoservice.submission_check c WHERE c.submission_id = s.id "
        "ORDER BY c.revision DESC LIMIT 1) c ON true WHERE s.version_id = %s AND s.feature_id = %s",
        (version_id, feature_id))
    row = cur.fetchone()
    if row is None:
        raise UnknownFeature(f"no submission {feature_id} in {layer!r}")
    cur.execute("SELECT at, actor, before ->> 'status', after ->> 'status', comment FROM geoservice.audit_event "
                "WHERE version_id = %s AND feature_id = %s AND action = 'status' ORDER BY id", (version_id, feature_id))
    history = [{"at": at.isoformat(), "reviewer": actor, "from_status": old, "to_status": new, "comment": comment}
               for at, actor, old, new, comment in cur.fetchall()]
    status = row[0]
    return Submission(layer, feature_id, status, STATUSES[status], *row[1:], history)


def decide(conn: psycopg2.extensions.connection, layer: str, version_id: int, feature_id: int, status: str,
           opinion: str, reviewer: str) -> Submission:
    """Move a project's submission to `status` with the reviewer's opinion (审查意见), audited; the submission.
    DecidedSubmission when the status cannot follow, InvalidDecision without a reviewer or a needed opinion."""
    opinion, reviewer = (opinion or "").strip(), (reviewer or "").strip()
    if not reviewer:
        raise InvalidDecision("a review needs a reviewer")
    with writing(conn) as cur:
        cur.execute("SELECT id, status FROM geoservice.submission WHERE version_id = %s AND feature_id = %s FOR UPDATE",
                    (version_id, feature_id))
        row = cur.fetchone()
        if row is None:
            raise UnknownFeature(f"no submission {feature_id} in {layer!r}")
        allowed = TRANSITIONS[row[1]]
        if status not in allowed:
            raise DecidedSubmission(f"project {feature_id}: cannot go from {row[1]} to {status} "
                                    f"(allowed: {', '.join(allowed) or 'none'})")
        if status in OPINION_REQUIRED and not opinion:
            raise InvalidDecision(f"project {feature_id}: {status} ({STATUSES[status]}) needs the opinion (审查意见)")
        _move(cur, row[0], reviewer, layer, version_id, feature_id, row[1], status, opinion)
        return read_submission(cur, layer, version_id, feature_id)
