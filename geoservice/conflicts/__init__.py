"""Conflict detection: rules from config/rules.yaml evaluated on the active layers, stored as detection runs."""

from geoservice.conflicts.detect import DetectionSummary, detect
from geoservice.conflicts.rules import Rule, RuleSet, load_rules

__all__ = ["DetectionSummary", "Rule", "RuleSet", "detect", "load_rules"]
