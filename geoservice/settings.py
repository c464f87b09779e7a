"""One Settings object: config/geoservice.yaml, validated, with environment overrides."""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pyproj import CRS
from pyproj.exceptions import CRSError

from geoservice import gcj02
from geoservice.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
CONFIG_RELPATH = Path("config/geoservice.yaml")

#: environment variable -> dotted settings key it overrides
ENV_OVERRIDES: dict[str, str] = {
    "GEOSERVICE_DATABASE_URL": "database.url",
    "GEOSERVICE_DB_NAME": "database.name",
    "GEOSERVICE_DATA_DIR": "database.data_dir",
    "GEOSERVICE_DB_PORT": "database.port",
    "GEOSERVICE_PG_BIN_DIR": "database.bin_dir",
    "GEOSERVICE_WORKING_CRS": "working_crs",
    "GEOSERVICE_HOST": "server.host",
    "GEOSERVICE_PORT": "server.port",
    "GEOSERVICE_MAX_UPLOAD_MB": "server.max_upload_mb",
    "GEOSERVICE_SCHEDULER": "compute.scheduler",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    """Where the data lives: an existing server (url) or the embedded cluster."""

    url: str | None = None
    name: str = Field("geoservice", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    data_dir: Path = Path(".geoservice/pgdata")
    port: int | None = Field(None, ge=1024, le=65535)
    server_user: str = "postgres"
    bin_dir: Path | None = None
    auto_install: bool = True

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
            raise ValueError("must be a postgresql:// URL")
        return value


class PathSettings(_Strict):
    """Folders and files the stages read and write."""

    layers: Path = Path("layers")
    rules: Path = Path("config/rules.yaml")
    classification: Path = Path("config/classification")
    output: Path = Path(".geoservice/output")


class IntegrationSettings(_Strict):
    """How the base map is built: which plan layers, what counts as a sliver, when a patch is inside a line."""

    land_use_layer: str | None = None
    urban_plan_layer: str | None = None
    district_layer: str | None = None
    sliver_area_m2: float = Field(1.0, ge=0)
    inside_share: float = Field(0.5, gt=0, le=1)
    threads: int | None = Field(None, ge=1)
    subdivide_vertices: int | None = Field(256, ge=8)


class ComputeSettings(_Strict):
    """Where `integrate` and `detect` run their geometry work: in this process (no scheduler), or as spatial tiles on
    Dask distributed (a scheduler's address, or `local:N` for a LocalCluster of N worker processes here)."""

    scheduler: str | None = None
    tile_features: int = Field(20_000, ge=1)   # features per tile (weighted by vertices) the KD split aims at
    min_tiles_per_worker: int = Field(2, ge=1)  # at least this many tiles per worker thread
    task_threads: int = Field(1, ge=1)          # overlay threads inside one tile task
    retries: int = Field(2, ge=0)               # a failed tile task is tried again this many times

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith("local:"):
            count = value.removeprefix("local:")
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"{value!r}: local:N needs a number of worker processes N ≥ 1")
        elif "://" not in value and ":" not in value:
            raise ValueError(f"{value!r} is neither local:N nor a scheduler address (tcp://host:8786 or host:8786)")
        return value


class RasterSettings(_Strict):
    """A registered raster (hazard grid, constraint surface) the exposure query can name."""

    path: Path
    title: str = ""
    band: int = Field(1, ge=1)
    unit: str = ""


class ServerLimits(_Strict):
    """Page sizes of OGC API items requests (pygeoapi caps `limit` at 10 unless these are set)."""

    default_items: int = Field(10, ge=1)
    max_items: int = Field(10000, ge=1)

    @model_validator(mode="after")
    def _default_within_max(self) -> ServerLimits:
        if self.default_items > self.max_items:
            raise ValueError(f"default_items ({self.default_items}) is larger than max_items ({self.max_items})")
        return self


class TileSettings(_Strict):
    """Vector tiles (OGC API – Tiles): zoom range, generalisation and the disk cache."""

    cache_mb: float = Field(256.0, ge=0)              # the tile cache's size cap (0: tiles are not cached)
    min_zoom: dict[str, int] = Field(default_factory=dict)   # per collection; a collection not named starts at 0
    max_zoom: int = Field(22, ge=0, le=22)
    min_area_px: float = Field(0.25, ge=0)            # features smaller than this share of a pixel² are left out
    cell_px: int = Field(2, ge=0, le=64)              # a filled collection denser than these cells (pixels a side): cells
    detail_px: int = Field(8, ge=0, le=256)           # denser than these squares: only the properties it is drawn by
    parallel_workers: int = Field(1, ge=0, le=8)      # PostgreSQL workers a tile's statement may add (where it pays)

    @field_validator("min_zoom")
    @classmethod
    def _zooms(cls, values: dict[str, int]) -> dict[str, int]:
        for name, zoom in values.items():
            if not 0 <= zoom <= 22:
                raise ValueError(f"{name}: {zoom} is not a zoom level (0–22)")
        return values


class ServerSettings(_Strict):
    """Where `geoservice serve` listens and how it pages."""

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    url: str | None = Field(None, pattern=r"^https?://[^\s]+[^/\s]$")
    limits: ServerLimits = ServerLimits()
    exact_count_limit: int = Field(10000, ge=0)
    pool_size: int = Field(8, ge=1, le=100)
    map_tiles: str | None = None
    map_tiles_crs: Literal["WGS84", "GCJ02"] = "WGS84"   # the background's: WGS84/CGCS2000, or GCJ-02 (AMap, Tencent)
    max_upload_mb: float = Field(50.0, gt=0)
    max_raster_cells: int = Field(25_000_000, ge=1)
    process_workers: int = Field(2, ge=1, le=64)
    process_queue: int = Field(8, ge=0)
    tiles: TileSettings = TileSettings()

    @property
    def base_url(self) -> str:
        """The public base URL links are written with: `url`, else http://host:port."""
        return self.url or f"http://{self.host}:{self.port}"


#: sensitivity grades (分级), lowest first: a caller reads what is graded at or below its own
GRADES: tuple[str, ...] = ("public", "internal", "restricted")
Grade = Literal["public", "internal", "restricted"]
#: what a token may do besides reading: `review` changes conflict and submission status over HTTP, `edit` writes
#: features of editable collections (OGC API - Features Part 4)
Scope = Literal["review", "edit"]


def token_digest(token: str) -> str:
    """The SHA-256 hex digest a token is configured and compared by (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenSettings(_Strict):
    """One API token: stored as its SHA-256 digest, with the highest grade it reads and its extra scopes."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    grade: Grade = "internal"
    scopes: list[Scope] = Field(default_factory=list)


#: the OGC API processes the server offers
ProcessId = Literal["point-lookup", "project-check", "hazard-exposure"]


class ProcessAccess(_Strict):
    """Who may run one process, besides reading every collection it reads: callers of at least `grade`, and for an
    upload (a raster sent with the request) a token unless `anonymous_uploads`."""

    grade: Grade = "public"
    anonymous_uploads: bool = False


class AccessSettings(_Strict):
    """Grades of the collections that are not layers (layers carry `access` in their definition), who may run each
    process, and the tokens."""

    basemap: Grade = "public"
    conflicts: Grade = "internal"
    processes: dict[ProcessId, ProcessAccess] = Field(default_factory=dict)
    tokens: dict[str, TokenSettings] = Field(default_factory=dict)

    def process(self, process_id: str) -> ProcessAccess:
        """The access rule of a process (the default rule when none is configured)."""
        return self.processes.get(process_id, ProcessAccess())

    @field_validator("tokens")
    @classmethod
    def _token_names(cls, values: dict[str, TokenSettings]) -> dict[str, TokenSettings]:
        for name in values:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"token name {name!r}: use letters, digits, - and _")
        return values


#: how often a dataset is updated (dct:accrualPeriodicity), each with its EU frequency authority code
UpdateFrequency = Literal["continuous", "daily", "weekly", "monthly", "quarterly", "annual", "irregular", "never"]
#: 开放优先级: how soon a dataset is to be opened (high: open first; low: later or on request)
Openness = Literal["high", "medium", "low"]


class Licence(_Strict):
    """The licence a dataset is offered under: an SPDX id or a name, and where its text is."""

    name: str = Field(min_length=1, max_length=64)
    url: str | None = Field(None, pattern=r"^https?://[^\s]+$")


class Contact(_Strict):
    """Who answers questions about a dataset (the catalogue's contact point)."""

    name: str | None = None
    organization: str | None = None
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = None
    url: str | None = Field(None, pattern=r"^https?://[^\s]+$")

    @model_validator(mode="after")
    def _named(self) -> Contact:
        if not (self.name or self.organization):
            raise ValueError("give a name or an organization")
        return self


class CatalogSettings(_Strict):
    """The open-data catalogue (开放目录, OGC API – Records): what a record says when its layer's definition does not
    (licence, contact, update frequency, openness), and the base map's and conflicts' entries."""

    licence: Licence = Licence(name="internal-use")
    contact: Contact = Contact(organization="geoservice", email="geoservice@localhost")
    update_frequency: UpdateFrequency = "irregular"
    openness: Openness | None = None
    basemap_openness: Openness | None = None
    conflicts_openness: Openness | None = None


def _parse_crs(value: str) -> CRS:
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise ValueError(f"unknown CRS {value!r}") from exc


class Settings(_Strict):
    """The whole configuration. Relative paths are resolved against `root`."""

    root: Path = PACKAGE_ROOT
    config_file: Path | None = None
    working_crs: str = "EPSG:4548"
    serving_crs: list[str] = Field(
        default_factory=lambda: ["OGC:CRS84", "EPSG:4326", "EPSG:4490", "EPSG:4548", "EPSG:4549", "EPSG:4550", "EPSG:3857",
                                 "GCJ02", "BD09"]
    )
    construction_codes: list[str] = Field(default_factory=lambda: [f"{code:02d}" for code in range(7, 16)])
    database: DatabaseSettings = DatabaseSettings()
    paths: PathSettings = PathSettings()
    integration: IntegrationSettings = IntegrationSettings()
    compute: ComputeSettings = ComputeSettings()
    rasters: dict[str, RasterSettings] = Field(default_factory=dict)
    server: ServerSettings = ServerSettings()
    access: AccessSettings = AccessSettings()
    catalog: CatalogSettings = CatalogSettings()

    @field_validator("working_crs")
    @classmethod
    def _projected_metres(cls, value: str) -> str:
        crs = _parse_crs(value)
        if not crs.is_projected or crs.axis_info[0].unit_name not in ("metre", "meter"):
            raise ValueError(f"{value} is not a projected CRS in metres (areas must come out in m²)")
        if crs.to_epsg() is None:
            raise ValueError(f"{value} has no EPSG code; PostGIS needs an SRID")
        return value

    @field_validator("serving_crs")
    @classmethod
    def _known_crs(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("must list at least one CRS")
        for value in values:
            if gcj02.system_of(value) is None:  # GCJ-02 and BD-09 are not in PROJ: geoservice converts them itself
                _parse_crs(value)
        return values

    @field_validator("construction_codes")
    @classmethod
    def _level1_codes(cls, values: list[str]) -> list[str]:
        for value in values:
            if len(value) != 2 or not value.isdigit() or not 1 <= int(value) <= 24:
                raise ValueError(f"{value!r} is not a level-1 用地用海 code (01–24)")
        return values

    @cached_property
    def working_srid(self) -> int:
        """The EPSG code of the working CRS, used as the PostGIS SRID."""
        return int(CRS.from_user_input(self.working_crs).to_epsg())

    def path(self, relative: Path) -> Path:
        """A configured path made absolute against the project root."""
        return relative if relative.is_absolute() else self.root / relative


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = data.setdefault(key, {})
        if not isinstance(child, dict):
            child = data[key] = {}
        data = child
    data[leaf] = value


def _add_env_tokens(data: dict[str, Any], text: str, source: str) -> None:
    """GEOSERVICE_TOKENS: `name:grade:scope+scope:token` entries separated by `;` or white space; each token is
    hashed at once and added to (or replaces) the configured one of that name."""
    access = data.get("access")
    if access is not None and not isinstance(access, dict):
        raise ConfigError(source, "access", "must be a mapping")
    tokens = (data.setdefault("access", {}) if access is None else access).setdefault("tokens", {}) or {}
    data["access"]["tokens"] = tokens
    for entry in text.replace(";", " ").split():
        parts = entry.split(":", 3)
        if len(parts) != 4 or not parts[0] or not parts[3]:
            raise ConfigError("environment variable GEOSERVICE_TOKENS", "access.tokens",
                              "each entry is name:grade:scopes:token (scopes joined by +, may be empty)")
        name, grade, scopes, token = parts
        tokens[name] = {"sha256": token_digest(token), "grade": grade, "scopes": [s for s in scopes.split("+") if s]}


def find_config_file(environ: dict[str, str] | None = None) -> Path:
    """GEOSERVICE_CONFIG, else config/geoservice.yaml in the current directory, else beside the package."""
    env = os.environ if environ is None else environ
    if env.get("GEOSERVICE_CONFIG"):
        return Path(env["GEOSERVICE_CONFIG"]).resolve()
    local = Path.cwd() / CONFIG_RELPATH
    return local if local.exists() else PACKAGE_ROOT / CONFIG_RELPATH


def load_settings(config_file: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate the config file, apply environment overrides; raise ConfigError naming file and key."""
    env = os.environ if environ is None else environ
    path = (config_file or find_config_file(env)).resolve()
    source = str(path)
    if not path.exists():
        raise ConfigError(source, None, "configuration file not found (set GEOSERVICE_CONFIG or run from the project root)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, None, f"not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(source, None, "must be a mapping of keys to values")
    for reserved in ("root", "config_file"):
        if reserved in data:
            raise ConfigError(source, reserved, "unknown key")
    overridden: dict[str, str] = {}
    for var, dotted in ENV_OVERRIDES.items():
        if env.get(var):
            _set_dotted(data, dotted, env[var])
            overridden[dotted] = var
    if env.get("GEOSERVICE_TOKENS"):
        _add_env_tokens(data, env["GEOSERVICE_TOKENS"], source)
        overridden["access.tokens"] = "GEOSERVICE_TOKENS"
    root = path.parent.parent if path.parent.name == "config" else path.parent
    try:
        return Settings(root=root, config_file=path, **data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            problem = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
            var = next((v for d, v in overridden.items() if key == d or key.startswith(f"{d}.")), None)
            where = f"environment variable {var}" if var else source
            problems.append((where, key, problem))
        (where, key, problem), rest = problems[0], problems[1:]
        raise ConfigError(where, key, problem + "".join(f"; {k}: {p}" for _, k, p in rest)) from exc
