"""Review of conflicts: cases that carry status and history across detection runs, and an append-only audit trail."""

from geoservice.review.cases import Case, CaseEvent, get_case, history
from geoservice.review.detection import detect, linking
from geoservice.review.errors import InvalidReviewError, InvalidTransitionError, ReviewError, UnknownConflictError
from geoservice.review.workflow import COMMENT_REQUIRED, STATUSES, TRANSITIONS, set_status

__all__ = [
    "COMMENT_REQUIRED", "STATUSES", "TRANSITIONS", "Case", "CaseEvent", "InvalidReviewError", "InvalidTransitionError",
    "ReviewError", "UnknownConflictError", "detect", "get_case", "history", "linking", "set_status",
]
