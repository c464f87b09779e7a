"""Writes: features of editable layers created, replaced, updated and deleted as revisions of their active version
(OGC API - Features Part 4), construction projects checked on arrival and reviewed, every step audited."""

from geoservice.edit.audit import AuditEvent, audit_events
from geoservice.edit.errors import DecidedSubmission, EditError, InvalidDecision, InvalidFeature, StaleRevision, UnknownFeature
from geoservice.edit.features import Expected, Written, create, delete, editable, replace, update
from geoservice.edit.submissions import STATUSES, TRANSITIONS, Submission, decide, read_submission

__all__ = [
    "AuditEvent", "DecidedSubmission", "EditError", "Expected", "InvalidDecision", "InvalidFeature", "STATUSES",
    "StaleRevision", "Submission", "TRANSITIONS", "UnknownFeature", "Written", "audit_events", "create", "decide",
    "delete", "editable", "read_submission", "replace", "update",
]
