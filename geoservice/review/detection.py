"""A detection run whose conflicts are linked to their review cases: `conflicts.detect` with the case linking as the
step before its rows are stored, in the same transaction (what `geoservice detect` and the demo run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoservice.progress import Reporter
from geoservice.review.cases import forget_cases, link_cases, settle_cases
from geoservice.review.continuity import case_continuity
from geoservice.settings import Settings

if TYPE_CHECKING:
    from geoservice.conflicts import DetectionSummary, RuleSet
    from geoservice.conflicts.detect import Link


def detect(settings: Settings, rule_ids: list[str] | None = None, reporter: Reporter | None = None,
           rules: RuleSet | None = None, scheduler: str | None = None, full: bool = False) -> DetectionSummary:
    """Detect and link: cases carried across runs keep their status and history (incremental unless `full`)."""
    from geoservice import conflicts  # the geometry stack only when a detection runs

    return conflicts.detect(settings, rule_ids, reporter, rules, link=linking(), scheduler=scheduler, full=full,
                            continuity=case_continuity)


def linking() -> Link:
    """The review cases' linking, as detection calls it."""
    from geoservice.conflicts.detect import Link

    return Link(link_cases, settle_cases, forget_cases)
