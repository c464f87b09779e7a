"""A small generated city (the generator's landscape over Xiamen's districts) ingested into a scratch database."""

from __future__ import annotations

from pathlib import Path

from geoservice import db
from geoservice.datagen.build import generate_city
from geoservice.ingest import ingest_layer, load_definition
from geoservice.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: land-use patches of the test city: small, yet its red line, development boundary and districts have parts to cut
PATCHES = 2000


def ingested_city(base: Settings, name: str, folder: Path, patches: int = PATCHES) -> Settings:
    """Settings of a fresh database `name` holding the districts and a generated city's layers (files in `folder`)."""
    generate_city(folder, n_patches=patches)
    settings = db.create_scratch_database(base, name, lambda _: None)
    for definition in [load_definition(ROOT / "layers" / "districts.yaml"), *map(load_definition, sorted(folder.glob("*.yaml")))]:
        ingest_layer(settings, definition)
    return settings
