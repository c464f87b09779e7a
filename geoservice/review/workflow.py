"""The review workflow: status changes of a conflict's case, each appended to the audit trail in one transaction."""

from __future__ import annotations

from geoservice.db import transaction
from geoservice.review.cases import Case, case_id_of_conflict, read_case
from geoservice.review.errors import InvalidReviewError, InvalidTransitionError
from geoservice.settings import Settings

STATUSES = ("open", "confirmed", "resolved", "waived")
#: status -> the statuses a review may move it to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("confirmed", "resolved", "waived"),
    "confirmed": ("open", "resolved", "waived"),
    "resolved": ("open", "confirmed"),
    "waived": ("open", "confirmed"),
}
#: decisions that must say why (处理意见)
COMMENT_REQUIRED = ("resolved", "waived")


def set_status(settings: Settings, conflict_id: int, status: str, comment: str, reviewer: str) -> Case:
    """Move the case of conflict `conflict_id` (of any run) to `status`, record who and why; return the case.

    Raises UnknownConflictError, InvalidTransitionError (not a status, or not reachable from the current one) and
    InvalidReviewError (no reviewer; no comment for resolved/waived). The case row is locked for the change, the
    event is appended and the status copied onto the case's conflict rows, all in one transaction.
    """
    comment, reviewer = (comment or "").strip(), (reviewer or "").strip()
    if not reviewer:
        raise InvalidReviewError(conflict_id, "a review needs a reviewer")
    with transaction(settings) as conn, conn.cursor() as cur:
        case = read_case(cur, case_id_of_conflict(cur, conflict_id), lock=True)
        allowed = TRANSITIONS[case.status]
        if status not in allowed:
            raise InvalidTransitionError(conflict_id, case.status, status, list(allowed))
        if status in COMMENT_REQUIRED and not comment:
            raise InvalidReviewError(conflict_id, f"marking a conflict {status} needs a comment (处理意见)")
        cur.execute(
            "INSERT INTO geoservice.conflict_case_event (case_id, conflict_id, reviewer, from_status, to_status, comment) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING changed_at",
            (case.id, conflict_id, reviewer, case.status, status, comment))
        changed_at = cur.fetchone()[0]
        cur.execute("UPDATE geoservice.conflict_case SET status = %s, opinion = %s, reviewer = %s, reviewed_at = %s "
                    "WHERE id = %s", (status, comment, reviewer, changed_at, case.id))
        cur.execute("UPDATE geoservice.conflict SET status = %s WHERE case_id = %s", (status, case.id))
        return read_case(cur, case.id)
