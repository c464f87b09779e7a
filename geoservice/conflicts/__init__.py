"""Conflict detection: rules from config/rules.yaml evaluated on the active layers, stored as detection runs; the
same evaluation for one submitted project (`check`)."""

from geoservice.conflicts.check import check
from geoservice.conflicts.detect import DetectionSummary, detect
from geoservice.conflicts.rules import Rule, RuleSet, current_rules, load_rules

__all__ = ["DetectionSummary", "Rule", "RuleSet", "check", "current_rules", "detect", "load_rules"]
