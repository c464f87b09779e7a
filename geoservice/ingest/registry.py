"""The stored layers and their versions: listing and rolling back (activating an older version)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from geoservice.db import transaction
from geoservice.errors import GeoserviceError
from geoservice.ingest.load import activate
from geoservice.settings import Settings


@dataclass(frozen=True)
class VersionRow:
    """One stored version of one layer."""

    layer: str
    kind: str
    title: str
    version: int
    loaded_at: datetime
    feature_count: int
    is_active: bool
    source_path: str


def list_versions(settings: Settings, layer: str | None = None) -> list[VersionRow]:
    """Every version of every layer (or of one), newest last."""
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT l.name, l.kind, l.title, v.version, v.loaded_at, v.feature_count, v.is_active, v.source_path "
            "FROM geoservice.layer l JOIN geoservice.layer_version v ON v.layer = l.name "
            "WHERE %(layer)s::text IS NULL OR l.name = %(layer)s ORDER BY l.name, v.version",
            {"layer": layer},
        )
        return [VersionRow(*row) for row in cur.fetchall()]


def activate_version(settings: Settings, layer: str, version: int) -> None:
    """Make an existing version the active one (a rollback); error when layer or version is unknown."""
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM geoservice.layer WHERE name = %s FOR UPDATE", (layer,))
        if cur.fetchone() is None:
            raise GeoserviceError(f"no layer {layer!r} is stored (see `geoservice layers`)")
        if not activate(cur, layer, version):
            raise GeoserviceError(f"layer {layer!r} has no version {version} (see `geoservice layers {layer}`)")
