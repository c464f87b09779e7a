"""The pygeoapi configuration and OpenAPI document, generated from the settings and what the database holds."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from geoservice.serve.catalog import BASEMAP, CONFLICTS, Collection
from geoservice.serve.crs import CRS84, CrsCatalog
from geoservice.serve.openapi import openapi_document
from geoservice.serve.processes import CHECK, EXPOSURE, LOOKUP
from geoservice.settings import GRADES, Settings

HERE = Path(__file__).resolve().parent
TEMPLATES, STATIC = HERE / "templates", HERE / "static"
PROVIDER = "geoservice.serve.provider.GeoserviceProvider"
MANAGER = "geoservice.serve.processes.Manager"
PROCESSORS = {LOOKUP: "geoservice.serve.processes.PointLookup", CHECK: "geoservice.serve.processes.ProjectCheck",
              EXPOSURE: "geoservice.serve.processes.HazardExposure"}
#: the layer kinds a project check reads (its rules' subjects, constraints, containers and the districts)
CHECK_KINDS = ("construction", "red_line", "basic_farmland", "dev_boundary", "district")
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
    server, catalog = settings.server, settings.catalog
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
            "license": {"name": catalog.licence.name, "url": catalog.licence.url or base_url},
            "provider": {"name": "geoservice", "url": base_url},
            "contact": {"name": catalog.contact.name or catalog.contact.organization, "position": "operator",
                        "email": catalog.contact.email or "", "url": catalog.contact.url or base_url,
                        "role": "pointOfContact"},
        },
        "resources": {c.name: _resource(c, settings, crs, database_url) for c in collections},
    }


def _processes(settings: Settings, collections: list[Collection], database_url: str, grade: str) -> dict[str, Any]:
    """The processes a caller of `grade` may run: those whose every collection it reads (see CHECK_KINDS), and whose
    `access.processes` grade it has."""
    readable = {c.name: c for c in collections if GRADES.index(c.grade) <= GRADES.index(grade)}
    unreadable_kinds = {c.kind for c in collections if c.name not in readable and c.kind}
    offered = []
    if BASEMAP in readable:
        offered += [LOOKUP, EXPOSURE]
        if CONFLICTS in readable and not unreadable_kinds & set(CHECK_KINDS):
            offered.append(CHECK)
    offered = [p for p in offered if GRADES.index(settings.access.process(p).grade) <= GRADES.index(grade)]
    own = {"settings": settings.model_dump(mode="json"), "database_url": database_url,
           "readable_layers": sorted(name for name, c in readable.items() if c.kind),
           "reads_conflicts": CONFLICTS in readable}
    return {process: {"type": "process", "processor": {"name": PROCESSORS[process], "geoservice": own}}
            for process in offered}


def grade_config(settings: Settings, collections: list[Collection], database_url: str, grade: str) -> dict[str, Any]:
    """The configuration a caller of `grade` is served from: only what it may read, masked for it, and the processes
    it may run; what is not listed answers 404 everywhere (landing page, collections, items, OpenAPI, processes)."""
    visible = [c.for_grade(grade) for c in collections if GRADES.index(c.grade) <= GRADES.index(grade)]
    config = pygeoapi_config(settings, visible, database_url)
    config["server"]["manager"] = {"name": MANAGER, "connection": None, "output_dir": None}
    config["resources"].update(_processes(settings, collections, database_url, grade))
    return config


def write_config(settings: Settings, collections: list[Collection], database_url: str, path: Path,
                 grade: str = "public") -> ConfigFiles:
    """Write the configuration of `grade` (mode 0600: it holds the database URL) and its OpenAPI document beside it
    (JSON, which pygeoapi serves as it is)."""
    config = grade_config(settings, collections, database_url, grade)
    path.parent.mkdir(parents=True, exist_ok=True)
    openapi_path = path.with_name(f"{path.stem}-openapi.json")
    texts = ((path, yaml.dump(config, Dumper=_Dumper, allow_unicode=True, sort_keys=False)),
             (openapi_path, json.dumps(openapi_document(config), ensure_ascii=False)))
    for target, text in texts:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    return ConfigFiles(path, openapi_path)
