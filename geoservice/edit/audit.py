"""The audit trail of writes and submission decisions (`geoservice audit`): who did what, when, before and after."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg2.extensions


@dataclass(frozen=True)
class AuditEvent:
    """One write (create, replace, update, delete: the revision it made) or status change of a submission."""

    id: int
    at: datetime
    actor: str
    layer: str
    version_id: int
    revision: int | None
    feature_id: int
    action: str
    before: Any
    after: Any
    comment: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


def audit_events(cur: psycopg2.extensions.cursor, since: datetime | None = None, layer: str | None = None) -> list[AuditEvent]:
    """The audit trail, oldest first: events at or after `since`, of layer `layer` (all when None)."""
    cur.execute("SELECT id, at, actor, layer, version_id, revision, feature_id, action, before, after, comment "
                "FROM geoservice.audit_event WHERE (%(since)s::timestamptz IS NULL OR at >= %(since)s) "
                "AND (%(layer)s::text IS NULL OR layer = %(layer)s) ORDER BY id", {"since": since, "layer": layer})
    return [AuditEvent(*row) for row in cur.fetchall()]
