"""The rules evaluated over a region of the plane — a tile of a distributed run, the region an incremental run
recomputes: the features whose box meets the region and the partners they need, and which layers each rule reads."""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from geoservice.conflicts.detect import LayerCatalog
from geoservice.conflicts.evaluate import Subdivided
from geoservice.conflicts.rules import LinesOverlap, MustBeWithin, PlanDifference, Rule
from geoservice.db.layers import FeatureArrays, read_features_meeting
from geoservice.db.read import LayerVersion
from geoservice.settings import Settings


class RegionCatalog(LayerCatalog):
    """The layers as one region (a tile, the region of an incremental run) sees them: each read once, the features
    whose box meets a box of `region` (a relation with a column `box`), plus (`halos`: layer name -> the names of
    layers whose region features it must be read around) the features meeting those."""

    def __init__(self, cur: psycopg2.extensions.cursor, settings: Settings, layers: list[LayerVersion],
                 region: sql.Composable, halos: dict[str, list[str]]) -> None:
        self.cur, self.settings, self.layers, self.region, self.halos = cur, settings, layers, region, halos
        self.use_basemap, self._basemap, self.envelope = False, [None], None
        self.cache: dict[str, FeatureArrays] = {}
        self.named: set[str] = set()
        self.subdivided = Subdivided(settings.integration.subdivide_vertices, settings.integration.threads)

    def features(self, name_or_kind: str, where: str) -> FeatureArrays:
        layer = self.resolve(name_or_kind, where)
        if layer.name not in self.cache:
            around = [self.resolve(name, where) for name in self.halos.get(layer.name, ())]
            self.cache[layer.name] = read_features_meeting(self.cur, layer, self.region, around)
        return self.cache[layer.name]


def rule_layers(rule: Rule, catalog: LayerCatalog) -> list[str]:
    """The names of the layers a rule reads (the subject first)."""
    where = f"rule {rule.id}"
    settings = catalog.settings.integration

    def plan(kind: str) -> str:
        return catalog.resolve({"land_use": settings.land_use_layer, "urban_plan": settings.urban_plan_layer}[kind]
                               or kind, where).name

    if isinstance(rule, PlanDifference):
        return [plan("land_use"), plan("urban_plan")]
    if isinstance(rule, LinesOverlap):
        return [catalog.resolve(name, where).name for name in rule.layers]
    subject = plan(rule.subject.plan) if rule.subject.plan else catalog.resolve(rule.subject.layer, where).name
    other = getattr(rule, "constraint", None) or getattr(rule, "container", None)
    return [subject, *([catalog.resolve(other, where).name] if other else [])]


def halos_of(rules: list[Rule], catalog: LayerCatalog) -> dict[str, list[str]]:
    """Container layer -> subject layers: a subject feature's part outside the container needs every container feature
    meeting it, also those whose box misses the tile."""
    halos: dict[str, set[str]] = {}
    for rule in rules:
        if isinstance(rule, MustBeWithin):
            subject, container = rule_layers(rule, catalog)
            halos.setdefault(container, set()).add(subject)
    return {name: sorted(found) for name, found in halos.items()}


def layers_read(catalog: LayerCatalog, rules: list[Rule]) -> dict[str, dict[str, int]]:
    """The layer versions a detection of `rules` reads ({name: {"version": n, "id": version id}}): the rules' layers
    and the districts."""
    names = {name for rule in rules for name in rule_layers(rule, catalog)}
    district = catalog.district_layer()
    if district is not None:
        names.add(district.name)
    by_name = {layer.name: layer for layer in catalog.layers}
    return {name: {"version": by_name[name].version, "id": by_name[name].version_id} for name in sorted(names)}
