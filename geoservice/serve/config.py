"""The pygeoapi configuration and OpenAPI document, generated from the settings and what the database holds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from geoservice.serve.catalog import Collection
from geoservice.serve.crs import CRS84, CrsCatalog
from geoservice.serve.openapi import openapi_document
from geoservice.settings import Settings

HERE = Path(__file__).resolve().parent
TEMPLATES, STATIC = HERE / "templates", HERE / "static"
PROVIDER = "geoservice.serve.provider.GeoserviceProvider"
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"


@dataclass(frozen=True)
class ConfigFiles:
    """A written pygeoapi configuration and its OpenAPI document."""

    config: Path
    openapi: Path


def _resource(collection: Collection, settings: Settings, crs: CrsCatalog, database_url: str) -> dict[str, Any]:
    extents: dict[str, Any] = {"spatial": {
        "bbox": list(collection.crs84_extent or (-180.0, -90.0, 180.0, 90.0)),
        "crs": CRS84}}
    if collection.temporal:
        extents["temporal"] = {"begin": collection.temporal[0], "end": collection.temporal[1], "trs": GREGORIAN}
    provider: dict[str, Any] = {
        "type": "feature", "name": PROVIDER, "data": database_url, "id_field": "id",
        "storage_crs": crs.working.uri, "crs": crs.uris,
        "geoservice": {"collection": collection.to_dict(), "crs": list(settings.serving_crs),
                       "working_crs": settings.working_crs, "exact_count_limit": settings.server.exact_count_limit,
                       "pool_size": settings.server.pool_size},
    }
    if collection.title_field:
        provider["title_field"] = collection.title_field
    if collection.time_field:
        provider["time_field"] = collection.time_field
    return {"type": "collection", "title": collection.title, "description": collection.description,
            "keywords": list(collection.keywords), "links": [], "extents": extents, "providers": [provider]}


def pygeoapi_config(settings: Settings, collections: list[Collection], database_url: str) -> dict[str, Any]:
    """The whole pygeoapi configuration: server, metadata, one resource per collection."""
    crs = CrsCatalog(settings.serving_crs, settings.working_crs)
    server = settings.server
    base_url = server.base_url
    return {
        "server": {
            "bind": {"host": server.host, "port": server.port}, "url": base_url,
            "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8", "languages": ["en-US"],
            "pretty_print": False, "cors": True,
            "limits": {"default_items": server.limits.default_items, "max_items": server.limits.max_items},
            "map": {"url": server.map_tiles or "", "attribution": ""},
            "templates": {"path": str(TEMPLATES), "static": str(STATIC)},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {
                "title": "geoservice 多规合一 OGC API",
                "description": ("The city's plans in one place: source layers, the base map (一张图) and the conflicts "
                                "between plans, as OGC API – Features."),
                "keywords": ["多规合一", "一张图", "国土空间规划", "OGC API", "conflicts"], "keywords_type": "theme",
                "terms_of_service": "", "url": base_url,
            },
            "license": {"name": "Internal use", "url": base_url},
            "provider": {"name": "geoservice", "url": base_url},
            "contact": {"name": "geoservice", "position": "operator", "email": "geoservice@localhost", "url": base_url,
                        "role": "pointOfContact"},
        },
        "resources": {c.name: _resource(c, settings, crs, database_url) for c in collections},
    }


def write_config(settings: Settings, collections: list[Collection], database_url: str, path: Path) -> ConfigFiles:
    """Write the configuration (mode 0600: it holds the database URL) and its OpenAPI document beside it (JSON,
    which pygeoapi serves as it is)."""
    config = pygeoapi_config(settings, collections, database_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    openapi_path = path.with_name(f"{path.stem}-openapi.json")
    texts = ((path, yaml.dump(config, Dumper=_Dumper, allow_unicode=True, sort_keys=False)),
             (openapi_path, json.dumps(openapi_document(config), ensure_ascii=False)))
    for target, text in texts:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    return ConfigFiles(path, openapi_path)
