"""Layer definitions (layers/*.yaml), validated: what a source file is and how to read it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pyproj import CRS
from pyproj.exceptions import CRSError

from geoservice.errors import ConfigError
from geoservice.settings import Contact, Grade, Licence, Openness, UpdateFrequency


class LayerKind(str, Enum):
    """What a layer is in the integration."""

    land_use = "land_use"
    urban_plan = "urban_plan"
    construction = "construction"
    red_line = "red_line"
    basic_farmland = "basic_farmland"
    dev_boundary = "dev_boundary"
    district = "district"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_crs(value: str | None) -> str | None:
    if value is not None:
        try:
            CRS.from_user_input(value)
        except CRSError as exc:
            raise ValueError(f"unknown CRS {value!r}") from exc
    return value


class Source(_Strict):
    """The file: a path (relative to the definition file) and, for a GeoPackage, the layer inside it."""

    path: Path
    layer: str | None = None


class Helmert7(_Strict):
    """Seven-parameter (Bursa-Wolf) datum shift to CGCS2000: translations in m, rotations in arc-seconds, scale in ppm."""

    dx: float
    dy: float
    dz: float
    rx: float = 0.0
    ry: float = 0.0
    rz: float = 0.0
    scale_ppm: float = 0.0
    convention: Literal["coordinate_frame", "position_vector"] = "coordinate_frame"


class Plane4(_Strict):
    """Four-parameter plane transform (平面四参数): x' = dx + (1+s)(x cosθ − y sinθ), y' = dy + (1+s)(x sinθ + y cosθ)."""

    dx: float
    dy: float
    rotation_arcsec: float = 0.0
    scale_ppm: float = 0.0


class Transform(_Strict):
    """A custom transform from the source CRS to `to_crs` (default: the working CRS); exactly one method."""

    pipeline: str | None = None
    helmert7: Helmert7 | None = None
    plane4: Plane4 | None = None
    to_crs: str | None = None

    _to_crs = field_validator("to_crs")(classmethod(lambda cls, v: _check_crs(v)))

    @model_validator(mode="after")
    def _exactly_one(self) -> Transform:
        given = [name for name in ("pipeline", "helmert7", "plane4") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of pipeline, helmert7, plane4")
        return self


class Mask(_Strict):
    """Desensitization of one attribute (数据脱敏) for callers below a grade: `name` 张三丰 → 张**, `id_number` keeps
    the first 6 and last 4 characters, `phone` the last 4 digits, `hide` gives null."""

    attribute: str
    method: Literal["name", "id_number", "phone", "hide"]
    unless: Grade = "restricted"


class LayerDefinition(_Strict):
    """One source layer: name, kind, file, encoding, CRS, codes, attributes."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    title: str
    description: str = ""
    kind: LayerKind
    source: Source
    encoding: str = "auto"
    crs: str | None = None
    transform: Transform | None = None
    code_field: str | None = None
    crosswalk: str | None = None
    unknown_codes: Literal["error", "unclassified"] = "error"
    id_field: str | None = None
    name_field: str | None = None
    attributes: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    access: Grade = "internal"
    editable: bool = False                        # written over OGC API - Features Part 4 (construction layers always)
    masks: list[Mask] = Field(default_factory=list)
    # the open-data catalogue (开放目录): unset ones come from the settings' `catalog`
    openness: Openness | None = None              # 开放优先级: high | medium | low
    update_frequency: UpdateFrequency | None = None
    licence: Licence | None = None
    contact: Contact | None = None

    _crs = field_validator("crs")(classmethod(lambda cls, v: _check_crs(v)))

    @model_validator(mode="after")
    def _codes_need_crosswalk(self) -> LayerDefinition:
        if self.code_field and not self.crosswalk:
            raise ValueError("code_field needs a crosswalk (a CSV name in config/classification, or 'unified')")
        if self.kind in (LayerKind.land_use, LayerKind.urban_plan) and not self.code_field:
            raise ValueError(f"a {self.kind.value} layer needs code_field and crosswalk")
        return self


class Definition(_Strict):
    """A validated definition together with the file it came from."""

    file: Path
    layer: LayerDefinition

    @property
    def source_path(self) -> Path:
        path = self.layer.source.path
        return path if path.is_absolute() else (self.file.parent / path).resolve()


def load_definition(path: Path) -> Definition:
    """Read and validate one layers/*.yaml; ConfigError naming the file and key."""
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(source, None, "layer definition not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, None, f"not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(source, None, "must be a mapping of keys to values")
    try:
        return Definition(file=path.resolve(), layer=LayerDefinition(**data))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {problem}" if key else problem)
        raise ConfigError(source, None, "; ".join(problems)) from exc


def load_definitions(folder: Path) -> list[Definition]:
    """Every layers/*.yaml in name order; duplicate layer names are an error."""
    definitions = [load_definition(path) for path in sorted(folder.glob("*.yaml"))]
    seen: dict[str, Path] = {}
    for definition in definitions:
        if definition.layer.name in seen:
            raise ConfigError(str(definition.file), "name", f"layer {definition.layer.name!r} is also defined in {seen[definition.layer.name]}")
        seen[definition.layer.name] = definition.file
    return definitions
