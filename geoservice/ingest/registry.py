"""The stored layers and their versions: listing and rolling back (activating an older version)."""

from __future__ import annotations

from geoservice.db import transaction
from geoservice.db.read import LayerVersion, layer_versions
from geoservice.errors import GeoserviceError
from geoservice.ingest.load import activate
from geoservice.settings import Settings


def list_versions(settings: Settings, layer: str | None = None) -> list[LayerVersion]:
    """Every version of every layer (or of one), newest last."""
    with transaction(settings) as conn, conn.cursor() as cur:
        return layer_versions(cur, layer)


def activate_version(settings: Settings, layer: str, version: int) -> None:
    """Make an existing version the active one (a rollback); error when layer or version is unknown."""
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM geoservice.layer WHERE name = %s FOR UPDATE", (layer,))
        if cur.fetchone() is None:
            raise GeoserviceError(f"no layer {layer!r} is stored (see `geoservice layers`)")
        if not activate(cur, layer, version):
            raise GeoserviceError(f"layer {layer!r} has no version {version} (see `geoservice layers {layer}`)")
