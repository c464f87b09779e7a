"""The ASGI application: pygeoapi's Starlette app behind geoservice's own items and conformance routes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from psycopg2 import sql
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route

from geoservice.serve.config import ConfigFiles
from geoservice.serve.pool import pool_for
from geoservice.serve.provider import GeoserviceProvider


def _prime_pools(providers: Iterable[GeoserviceProvider]) -> None:
    """Open the database connections before the first request, each with PROJ ready for every served CRS."""
    by_url = {(p.data, p.pool_size): p for p in providers}
    for (url, size), provider in by_url.items():
        working = sql.Literal(provider.crs.working.srid)
        transforms = sql.SQL(", ").join(sql.SQL("ST_Transform(ST_SetSRID(ST_MakePoint(0, 0), {}), {})").format(
            working, sql.Literal(crs.srid)) for crs in provider.crs.offered)
        pool_for(url, size).prime(sql.SQL("SELECT {}").format(transforms))


def create_app(files: ConfigFiles) -> Starlette:
    """The app for a written configuration. pygeoapi reads PYGEOAPI_CONFIG and PYGEOAPI_OPENAPI when its
    Starlette module is imported, so they are set first; one configuration per process."""
    os.environ["PYGEOAPI_CONFIG"] = str(files.config)
    os.environ["PYGEOAPI_OPENAPI"] = str(files.openapi)
    from pygeoapi import starlette_app  # must follow the environment
    from pygeoapi.plugin import load_plugin
    from pygeoapi.util import get_provider_by_type

    from geoservice.serve.routes import Endpoints

    api = starlette_app.api_
    providers: dict[str, Any] = {
        name: load_plugin("provider", get_provider_by_type(resource["providers"], "feature"))
        for name, resource in api.config["resources"].items() if resource.get("type") == "collection"
    }
    _prime_pools(providers.values())
    endpoints = Endpoints(api, providers, starlette_app.collection_items)
    return Starlette(
        routes=[
            Route("/conformance", endpoints.conformance, methods=["GET"]),
            Route("/collections/{collection_id}/items", endpoints.items, methods=["GET"]),
            Route("/collections/{collection_id}/items/{item_id}", endpoints.item, methods=["GET"]),
            Mount("/", app=starlette_app.APP),
        ],
        middleware=[Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD", "OPTIONS"],
                               expose_headers=["Content-Crs", "Link"])],
    )
