"""The ASGI application: one pygeoapi app per sensitivity grade behind geoservice's own routes, and a dispatcher
that names the caller from its bearer token and hands the request to the app of the caller's grade.

Each grade's app is built from a configuration listing only what that grade may read (see config.grade_config),
so a collection a caller may not read answers 404 exactly as an unknown one does, in every endpoint and format.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from psycopg2 import sql
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geoservice.serve.auth import ANONYMOUS_NAME, SESSION_COOKIE, AuthError, caller_of, presented_token
from geoservice.serve.config import ConfigFiles
from geoservice.serve.guard import (EXCEPTION_HANDLERS, RETRY_AFTER_SECONDS, BodyTooLarge, body_limit, cross_site_refusal, failure_response,
                                    limited_receive, query_refusal)
from geoservice.serve.pool import pool_for
from geoservice.serve.problems import problem
from geoservice.serve.provider import GeoserviceProvider
from geoservice.settings import GRADES, AccessSettings, Settings

ACCESS_LOG = "geoservice.access"
LOGIN_PATH = "/login"
RETRY_AFTER = str(RETRY_AFTER_SECONDS).encode()


def _prime_pools(providers: Iterable[GeoserviceProvider]) -> None:
    """Open the database connections before the first request, each with PROJ ready for every served CRS."""
    by_url = {(p.data, p.pool_size): p for p in providers}
    for (url, size), provider in by_url.items():
        working = sql.Literal(provider.crs.working.srid)
        transforms = sql.SQL(", ").join(sql.SQL("ST_Transform(ST_SetSRID(ST_MakePoint(0, 0), {}), {})").format(
            working, sql.Literal(crs.srid)) for crs in provider.crs.offered)
        pool_for(url, size).prime(sql.SQL("SELECT {}").format(transforms))


class _NoCache(dict):
    """Stands in for pygeoapi.l10n's cache of the translated configuration, which is keyed by locale only: with one
    configuration per grade, the first grade to render a page would otherwise show its resources to every grade."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        """Nothing is kept."""


def _pygeoapi_module(files: ConfigFiles) -> ModuleType:
    """A private copy of pygeoapi's Starlette module for one configuration: the module reads PYGEOAPI_CONFIG and
    PYGEOAPI_OPENAPI when it runs and keeps one API object in its globals, so each grade gets its own copy."""
    os.environ["PYGEOAPI_CONFIG"] = str(files.config)
    os.environ["PYGEOAPI_OPENAPI"] = str(files.openapi)
    spec = importlib.util.find_spec("pygeoapi.starlette_app")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grade_app(settings: Settings, grade: str, files: ConfigFiles) -> tuple[Starlette, list[GeoserviceProvider]]:
    from pygeoapi.plugin import load_plugin
    from pygeoapi.util import get_provider_by_type

    from geoservice.serve.changes_api import ChangeEndpoints
    from geoservice.serve.process_routes import process_routes
    from geoservice.serve.review_api import ReviewEndpoints
    from geoservice.serve.routes import Endpoints

    module = _pygeoapi_module(files)
    api = module.api_
    providers: dict[str, Any] = {
        name: load_plugin("provider", get_provider_by_type(resource["providers"], "feature"))
        for name, resource in api.config["resources"].items() if resource.get("type") == "collection"
    }
    endpoints = Endpoints(api, providers, module.collection_items)
    review = ReviewEndpoints(settings, api, grade)
    routes = [
        Route("/conformance", endpoints.conformance, methods=["GET"]),
        Route("/collections/{collection_id}/items", endpoints.items, methods=["GET"]),
        Route("/collections/{collection_id}/items/{item_id}", endpoints.item, methods=["GET"]),
        *_read_only("/collections/{collection_id}/items", "/collections/{collection_id}/items/{item_id}"),
        *review.routes(), *process_routes(api, module.execute_process_jobs),
        *ChangeEndpoints(settings, providers, api.config["server"]["url"]).routes(),
        Mount("/", app=module.APP),
    ]
    module.APP.exception_handlers.update(EXCEPTION_HANDLERS)
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS), list(providers.values())


def _read_only(*paths: str) -> list[Route]:
    """Writes to features are a 405 naming what is allowed (pygeoapi would try its transactions and fail)."""

    async def refuse(request: Request) -> Response:
        refusal = problem(405, "MethodNotAllowed", f"{request.method} is not allowed here: the features are read-only "
                          "(GET, HEAD)")
        refusal.headers["Allow"] = "GET, HEAD, OPTIONS"
        return refusal

    return [Route(path, refuse, methods=["POST", "PUT", "PATCH", "DELETE"]) for path in paths]


def _access_logger(settings: Settings) -> logging.Logger:
    """Reads are logged with the caller's name to <paths.output>/logs/access.log."""
    logger = logging.getLogger(ACCESS_LOG)
    folder = settings.path(settings.paths.output) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / "access.log")
    if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class GradeDispatcher:
    """Authenticate each request, guard it (body limit, unstorable text, cross-site cookie writes), log it with the
    caller's name, and pass it to the app of the caller's grade (the caller is in `request.state.caller`)."""

    def __init__(self, settings: Settings, apps: dict[str, ASGIApp], max_body: int, log: logging.Logger) -> None:
        self.access, self.own_url, self.apps, self.max_body, self.log = settings.access, settings.server.base_url, apps, max_body, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.apps[GRADES[0]](scope, receive, send)
            return
        headers, request = Headers(scope=scope), Request(scope)
        try:
            bearer = presented_token(headers.get("authorization"))
            token = bearer or request.cookies.get(SESSION_COOKIE)
            caller = caller_of(self.access, token)
        except AuthError as exc:
            await problem(exc.status, "Unauthorized", str(exc))(scope, receive, send)
            return
        refusal = self._refusal(scope, headers, via_cookie=bearer is None and token is not None)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["path"] == LOGIN_PATH:
            await _login(caller.name, token, request.query_params.get("next"))(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        status: int | None = None

        async def logged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 503 and not any(name.lower() == b"retry-after" for name, _ in message.get("headers", [])):
                    message = {**message, "headers": [*message.get("headers", []), (b"retry-after", RETRY_AFTER)]}
            await send(message)

        try:
            await self.apps[caller.grade](scope, limited_receive(receive, self.max_body), logged_send)
        except Exception as exc:  # the grade app's handlers have answered already, unless it failed before
            if status is None:
                await failure_response(exc)(scope, receive, logged_send)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            self.log.info("%s %s %s%s %s", caller.name, scope["method"], scope["path"], f"?{query}" if query else "", status)

    def _refusal(self, scope: Scope, headers: Headers, via_cookie: bool) -> Response | None:
        """A request refused before any route sees it: too large, unstorable text, a cross-site cookie write."""
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            return failure_response(BodyTooLarge(self.max_body))
        reason = query_refusal(scope)
        if reason:
            return problem(400, "InvalidParameterValue", reason)
        reason = cross_site_refusal(scope, headers, self.own_url) if via_cookie else None
        return problem(403, "Forbidden", reason) if reason else None


def _login(name: str, token: str | None, after: str | None) -> Response:
    """A person signs in from a browser: the Basic dialog asks for the token (as password) until one is valid;
    the session keeps it in an HttpOnly cookie and goes on to `next` (a path of this server) or the landing page."""
    if name == ANONYMOUS_NAME:
        refusal = problem(401, "Unauthorized", "sign in with an API token as the password (any user name)")
        refusal.headers["WWW-Authenticate"] = 'Basic realm="geoservice", charset="UTF-8"'
        return refusal
    target = after if after and after.startswith("/") and not after.startswith("//") else "/?f=html"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token or "", httponly=True, samesite="strict")
    return response


def create_app(settings: Settings, configs: dict[str, ConfigFiles]) -> Starlette:
    """The whole server for the written per-grade configurations."""
    from pygeoapi import l10n

    l10n._cfg_cache = _NoCache()
    apps: dict[str, ASGIApp] = {}
    providers: list[GeoserviceProvider] = []
    for grade in GRADES:
        apps[grade], own = _grade_app(settings, grade, configs[grade])
        providers += own
    _prime_pools(providers)
    dispatcher = GradeDispatcher(settings, apps, body_limit(settings.server.max_upload_mb), _access_logger(settings))
    return Starlette(
        routes=[Mount("/", app=dispatcher)], exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                               allow_headers=["Authorization", "Content-Type", "Accept", "Prefer"],
                               expose_headers=["Content-Crs", "Link"])],
    )

