"""Conflict rules (config/rules.yaml), validated: adding a rule of an existing type needs no code."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geoservice.errors import ConfigError
from geoservice.settings import Settings

PLAN_KINDS = ("land_use", "urban_plan")
DifferenceClass = Literal["both_construction", "urban_only", "land_only", "both_non_construction"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subject(_Strict):
    """Which features a rule looks at: a layer (name or kind) or a plan, optionally filtered by unified codes.

    `codes: construction` means the configured construction classes; a list means these codes or code prefixes.
    """

    layer: str | None = None
    plan: Literal["land_use", "urban_plan"] | None = None
    codes: Literal["construction", "non_construction"] | list[str] | None = None
    exclude_codes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> Subject:
        if (self.layer is None) == (self.plan is None):
            raise ValueError("give exactly one of layer, plan")
        return self


class _Rule(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    title_zh: str
    title_en: str
    severity: Literal["high", "medium", "low"]
    min_area_m2: float = Field(0.0, ge=0)
    description: str = ""
    enabled: bool = True


class PlanDifference(_Rule):
    """Patches where the two plans' construction status differs in the given classes."""

    type: Literal["plan_difference"]
    classes: list[DifferenceClass] = Field(min_length=1)


class ForbiddenOverlap(_Rule):
    """Subject features intersecting a constraint layer (red line, basic farmland)."""

    type: Literal["forbidden_overlap"]
    subject: Subject
    constraint: str


class MustBeWithin(_Rule):
    """The part of each subject feature outside the container layer (e.g. projects outside the development boundary)."""

    type: Literal["must_be_within"]
    subject: Subject
    container: str


class LinesOverlap(_Rule):
    """Protection lines overlapping each other (三区三线 must not overlap)."""

    type: Literal["lines_overlap"]
    layers: list[str] = Field(min_length=2)


class RasterThreshold(_Rule):
    """Subject patches where a raster statistic exceeds a threshold (slope, flood depth …)."""

    type: Literal["raster_threshold"]
    subject: Subject
    raster: Path
    band: int = Field(1, ge=1)
    statistic: Literal["mean", "max", "share_above"]
    value: float | None = None
    threshold: float

    @model_validator(mode="after")
    def _share_needs_value(self) -> RasterThreshold:
        if self.statistic == "share_above" and self.value is None:
            raise ValueError("statistic share_above needs `value` (the cell value counted as above)")
        return self


Rule = Annotated[PlanDifference | ForbiddenOverlap | MustBeWithin | LinesOverlap | RasterThreshold, Field(discriminator="type")]


class RuleSet(_Strict):
    """All rules, with the checksum of the file they came from."""

    rules: list[Rule]
    checksum: str = ""
    file: Path | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    def selected(self, ids: list[str] | None) -> list[Rule]:
        """The enabled rules, or the named ones (an unknown id is an error)."""
        if not ids:
            return [rule for rule in self.rules if rule.enabled]
        known = {rule.id: rule for rule in self.rules}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ConfigError(str(self.file), None, f"no rule {', '.join(map(repr, unknown))} (rules: {', '.join(known)})")
        return [known[i] for i in ids]


def current_rules(settings: Settings) -> RuleSet:
    """The rules of `paths.rules` as they are now (read again only when the file changed): for servers, which check
    projects between detections."""
    path = settings.path(settings.paths.rules)
    return _cached_rules(path, path.stat().st_mtime)


@lru_cache(maxsize=4)
def _cached_rules(path: Path, mtime: float) -> RuleSet:
    return load_rules(path)


def load_rules(path: Path) -> RuleSet:
    """Read and validate config/rules.yaml; ConfigError naming the file and the key."""
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), None, "rules file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), None, f"not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(str(path), None, "must be a mapping with a `rules` list")
    try:
        rules = RuleSet(**data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = list(error["loc"])
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                rule = data["rules"][loc[1]] if isinstance(data.get("rules"), list) else {}
                name = rule.get("id", loc[1]) if isinstance(rule, dict) else loc[1]
                loc = [f"rules[{name}]", *[p for p in loc[2:] if p not in (rule.get("type") if isinstance(rule, dict) else None,)]]
            key = ".".join(str(p) for p in loc)
            problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {problem}" if key else problem)
        raise ConfigError(str(path), None, "; ".join(problems)) from exc
    return rules.model_copy(update={"checksum": hashlib.sha256(raw).hexdigest(), "file": path})
