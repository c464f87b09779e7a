"""The errors a review can raise: each names the conflict and the problem (an HTTP layer maps them to 404/409/422)."""

from __future__ import annotations

from geoservice.errors import GeoserviceError


class ReviewError(GeoserviceError):
    """A review that cannot be made."""


class UnknownConflictError(ReviewError):
    """No conflict has this id (图斑编号)."""

    def __init__(self, conflict_id: int) -> None:
        self.conflict_id = conflict_id
        super().__init__(f"conflict {conflict_id}: no such conflict (ids are the 图斑编号 of the ledger, `geoservice report`)")


class InvalidTransitionError(ReviewError):
    """The status asked for cannot follow the case's current one (or is not a status at all)."""

    def __init__(self, conflict_id: int, current: str, wanted: str, allowed: list[str]) -> None:
        self.conflict_id, self.current, self.wanted, self.allowed = conflict_id, current, wanted, allowed
        super().__init__(f"conflict {conflict_id}: cannot go from {current} to {wanted} (allowed: {', '.join(allowed)})")


class InvalidReviewError(ReviewError):
    """A review missing what it needs: a reviewer, or the comment a decision requires."""

    def __init__(self, conflict_id: int, problem: str) -> None:
        self.conflict_id, self.problem = conflict_id, problem
        super().__init__(f"conflict {conflict_id}: {problem}")
