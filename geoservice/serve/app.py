"""The ASGI application: one Starlette app over the live catalog.

The dispatcher names the caller of each request (bearer token, or the session cookie), guards the request (body
limit, unstorable text, cross-site cookie writes) and gives it the live catalog's view for the caller's grade
(`request.state.caller`, `.view`, `.catalog`, `.snapshot`): every route answers from that view, so a collection the caller may
not read is 404 exactly as an unknown one, and a new version or run is served on the next request after its commit.
pygeoapi is a library here: its endpoint functions run over the view's API object (serve/delegate.py).
"""

from __future__ import annotations

import logging

import pygeoapi.api as core_api
import pygeoapi.api.itemtypes as itemtypes_api
from psycopg2 import sql
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geoservice import db
from geoservice.serve import delegate
from geoservice.serve.auth import ANONYMOUS_NAME, SESSION_COOKIE, AuthError, caller_of, presented_token
from geoservice.serve.changes_api import ChangeEndpoints
from geoservice.serve.edits import EditEndpoints
from geoservice.serve.config import STATIC
from geoservice.serve.guard import (EXCEPTION_HANDLERS, RETRY_AFTER_SECONDS, BodyTooLarge, body_limit,
                                    cross_site_refusal, failure_response, limited_receive, query_refusal)
from geoservice.serve.live import LiveCatalog, Snapshot
from geoservice.serve.pool import pool_for
from geoservice.serve.problems import problem
from geoservice.serve.process_routes import process_routes
from geoservice.serve.records import RecordEndpoints
from geoservice.serve.review_api import ReviewEndpoints
from geoservice.serve.routes import Endpoints
from geoservice.serve.submission_api import SubmissionEndpoints
from geoservice.serve.tiles import TileEndpoints
from geoservice.serve.viewer import MapViewer
from geoservice.settings import Settings

ACCESS_LOG = "geoservice.access"
LOGIN_PATH = "/login"
RETRY_AFTER = str(RETRY_AFTER_SECONDS).encode()


def _prime_pools(snapshot: Snapshot) -> None:
    """Open the database connections before the first request, each with PROJ ready for every served CRS."""
    providers = [p for view in snapshot.views.values() for p in view.providers.values()]
    for (url, size), provider in {(p.data, p.pool_size): p for p in providers}.items():
        working = sql.Literal(provider.crs.working.srid)
        transforms = sql.SQL(", ").join(sql.SQL("ST_Transform(ST_SetSRID(ST_MakePoint(0, 0), {}), {})").format(
            working, sql.Literal(crs.srid)) for crs in provider.crs.offered)
        pool_for(url, size).prime(sql.SQL("SELECT {}").format(transforms))


def routes(settings: Settings, database_url: str) -> list[BaseRoute]:
    """Every route of the server (over the database at `database_url`)."""
    endpoints = Endpoints(settings)
    collection = "/collections/{collection_id}"
    return [
        Mount("/static", app=StaticFiles(directory=STATIC)),
        Route("/", endpoints.landing_page, methods=["GET"]),
        Route("/openapi", delegate.endpoint(core_api.openapi_), methods=["GET"]),
        Route("/conformance", endpoints.conformance, methods=["GET"]),
        Route("/collections", endpoints.collections, methods=["GET"]),
        *RecordEndpoints(settings).routes(),  # before the feature collections' routes: /collections/catalog
        Route(collection, endpoints.collections, methods=["GET"]),
        Route(f"{collection}/queryables", delegate.endpoint(itemtypes_api.get_collection_queryables, "collection_id"),
              methods=["GET"]),
        Route(f"{collection}/schema", delegate.endpoint(core_api.get_collection_schema, "collection_id"),
              methods=["GET"]),
        Route(f"{collection}/items", endpoints.items, methods=["GET"]),
        *EditEndpoints(settings, database_url, endpoints).routes(),  # its item read before the plain one
        Route(f"{collection}/items/{{item_id}}", endpoints.item, methods=["GET"]),
        *ReviewEndpoints(settings).routes(), *SubmissionEndpoints(settings, database_url).routes(),
        *process_routes(settings), *ChangeEndpoints(settings).routes(),
        *TileEndpoints(settings, database_url).routes(), *MapViewer(settings).routes(),
    ]


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


class Dispatcher:
    """Authenticate each request, guard it, log it with the caller's name, and pass it on with the caller and the
    live catalog's view for the caller's grade."""

    def __init__(self, settings: Settings, catalog: LiveCatalog, app: ASGIApp, max_body: int, log: logging.Logger) -> None:
        self.access, self.own_url, self.catalog, self.app = settings.access, settings.server.base_url, catalog, app
        self.max_body, self.log = max_body, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
        status: int | None = None

        async def logged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 503 and not any(name.lower() == b"retry-after" for name, _ in message.get("headers", [])):
                    message = {**message, "headers": [*message.get("headers", []), (b"retry-after", RETRY_AFTER)]}
            await send(message)

        try:
            snapshot, state = await run_in_threadpool(self.catalog.current)
            scope.setdefault("state", {}).update(caller=caller, view=snapshot.views[caller.grade], catalog=state,
                                                   snapshot=snapshot)
            await self.app(scope, limited_receive(receive, self.max_body), logged_send)
        except Exception as exc:  # the app's handlers have answered already, unless it failed before
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


def create_app(settings: Settings) -> Starlette:
    """The whole server over the configured database (its catalog read now, and again whenever it changes;
    `app.state.catalog`)."""
    catalog = LiveCatalog(settings, db.database_url(settings))
    snapshot, _ = catalog.current()
    _prime_pools(snapshot)
    inner = Starlette(routes=routes(settings, catalog.database_url), exception_handlers=EXCEPTION_HANDLERS)
    dispatcher = Dispatcher(settings, catalog, inner, body_limit(settings.server.max_upload_mb), _access_logger(settings))
    app = Starlette(
        routes=[Mount("/", app=dispatcher)], exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(CORSMiddleware, allow_origins=["*"],
                               allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                               allow_headers=["Authorization", "Content-Type", "Accept", "Prefer", "If-None-Match",
                                              "If-Modified-Since", "If-Match", "Content-Crs"],
                               expose_headers=["Content-Crs", "Link", "ETag", "Last-Modified", "Location"])],
    )
    app.state.catalog = catalog
    return app
