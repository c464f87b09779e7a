"""OGC API – Features Part 4 on editable collections (construction projects, and layers marked `editable`): POST items,
PUT / PATCH (JSON merge patch) / DELETE an item, OPTIONS naming the allowed methods, with optimistic locking.

A written collection's item carries a strong ETag naming its revision (`"<version id>.<feature id>.<revision>"`) and
the revision's time as Last-Modified; PUT, PATCH and DELETE need `If-Match` (428 without, 412 when it is not the
current revision — the database decides, see geoservice.edit.store). Writes need a bearer token with the `edit` scope;
a collection the caller may not read is 404 exactly as an unknown one; a collection that is not written (and the
open-data catalogue) is 405.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import orjson
import psycopg2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from geoservice import edit
from geoservice.serve.auth import AuthError, require_scope
from geoservice.serve.caching import with_validators
from geoservice.serve.catalog import CATALOG
from geoservice.serve.crs import CRS84
from geoservice.serve.guard import refuse_unstorable
from geoservice.serve.live import GradeView
from geoservice.serve.pool import pool_for
from geoservice.serve.problems import problem
from geoservice.serve.provider import GeoserviceProvider
from geoservice.serve.routes import GEOJSON, Endpoints
from geoservice.settings import Settings

ITEMS = "/collections/{collection_id}/items"
ITEM = ITEMS + "/{item_id}"
READ = "GET, HEAD, OPTIONS"
#: the allowed methods of a written collection's items and items
WRITES = {ITEMS: f"{READ}, POST", ITEM: f"{READ}, PUT, PATCH, DELETE"}
BODY_TYPES = ("application/json", "application/geo+json", "application/merge-patch+json")
_TAG = re.compile(r'^"(\d+)\.(\d+)\.(\d+)"$')
_STATUS = {edit.InvalidFeature: HTTPStatus.BAD_REQUEST, edit.UnknownFeature: HTTPStatus.NOT_FOUND,
           edit.StaleRevision: HTTPStatus.PRECONDITION_FAILED, edit.DecidedSubmission: HTTPStatus.CONFLICT,
           edit.InvalidDecision: HTTPStatus.UNPROCESSABLE_ENTITY}
_CODES = {HTTPStatus.BAD_REQUEST: "InvalidParameterValue", HTTPStatus.NOT_FOUND: "NotFound",
          HTTPStatus.PRECONDITION_FAILED: "PreconditionFailed", HTTPStatus.CONFLICT: "Conflict",
          HTTPStatus.UNPROCESSABLE_ENTITY: "InvalidParameterValue"}


def etag(version_id: int, feature_id: int, revision: int) -> str:
    """The strong ETag of one revision of a written feature."""
    return f'"{version_id}.{feature_id}.{revision}"'


def expected_revision(if_match: str, feature_id: int) -> edit.Expected | None:
    """The revision an If-Match names for `feature_id` (`*`: any), None when it names none of this feature (412)."""
    for tag in (t.strip() for t in if_match.split(",")):
        if tag == "*":
            return edit.Expected(None, None)
        found = _TAG.match(tag)  # a weak tag never matches (If-Match compares strongly)
        if found and int(found[2]) == feature_id:
            return edit.Expected(int(found[1]), int(found[3]))
    return None


def edit_problem(exc: Exception) -> Response:
    """The answer to a write that was refused."""
    if isinstance(exc, AuthError):
        return problem(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", str(exc))
    status = _STATUS[type(exc)] if isinstance(exc, edit.EditError) else HTTPStatus.BAD_REQUEST
    return problem(status, _CODES[status], str(exc))


def json_body(raw: bytes, what: str) -> Any:
    """A request's JSON body; ValueError naming what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise edit.InvalidFeature(f"{what} is not JSON: {exc}".splitlines()[0]) from exc
    try:
        refuse_unstorable(body, what)
    except ValueError as exc:
        raise edit.InvalidFeature(str(exc)) from exc
    return body


class EditEndpoints:
    """Part 4 routes over the caller's view; reads of single items get their revision's validators here."""

    def __init__(self, settings: Settings, database_url: str, endpoints: Endpoints) -> None:
        self.settings, self.database_url, self.endpoints = settings, database_url, endpoints

    def routes(self) -> list[BaseRoute]:
        """The item read (before the plain one) and the write routes."""
        return [Route(ITEM, self.item, methods=["GET"]),
                Route(ITEMS, self.write, methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
                Route(ITEM, self.write, methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])]

    def _connection(self) -> Any:
        return pool_for(self.database_url, self.settings.server.pool_size).connection()

    # -- reads -------------------------------------------------------------------------------------------

    async def item(self, request: Request) -> Response:
        """A single item; a written collection's with its revision's strong ETag and time."""
        provider = request.state.view.providers.get(request.path_params["collection_id"])
        identifier = request.path_params["item_id"]
        if provider is None or not provider.collection.editable or not (identifier.isascii() and identifier.isdigit()
                                                                          and len(identifier) < 19):
            return await self.endpoints.item(request)
        tags = await run_in_threadpool(self._validators, provider, int(identifier))
        if tags is None:
            return await self.endpoints.item(request)
        offered = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
        if tags[0] in offered or "*" in offered:
            return with_validators(Response(status_code=304), tags)
        response = await self.endpoints.item(request)
        return with_validators(response, tags) if response.status_code == HTTPStatus.OK else response

    def _validators(self, provider: GeoserviceProvider, feature_id: int) -> tuple[str, Any] | None:
        """(ETag, Last-Modified) of a written collection's feature; None when it has no such feature."""
        version = provider.collection.partition_key
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT f.revision, coalesce((SELECT max(e.at) FROM geoservice.audit_event e WHERE e.version_id = "
                        "f.version_id AND e.feature_id = f.id AND e.revision = f.revision), v.loaded_at) "
                        "FROM geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id "
                        "WHERE f.version_id = %s AND f.id = %s", (version, feature_id))
            row = cur.fetchone()
        return None if row is None else (etag(version, feature_id, row[0]), row[1])

    # -- writes ------------------------------------------------------------------------------------------

    async def write(self, request: Request) -> Response:
        """POST items; PUT, PATCH, DELETE an item; OPTIONS of either."""
        view: GradeView = request.state.view
        name = request.path_params["collection_id"]
        path = ITEM if "item_id" in request.path_params else ITEMS
        provider = view.providers.get(name)
        allowed = WRITES[path] if provider is not None and provider.collection.editable else READ
        if request.method == "OPTIONS":
            if provider is None and name != CATALOG:
                return problem(HTTPStatus.NOT_FOUND, "NotFound", f"no collection {name!r}")
            return Response(status_code=HTTPStatus.NO_CONTENT, headers={"Allow": allowed})
        try:
            require_scope(self.settings.access, request.state.caller, "edit", "writing features")
        except AuthError as exc:
            return edit_problem(exc)
        if provider is None and name != CATALOG:
            return problem(HTTPStatus.NOT_FOUND, "NotFound", f"no collection {name!r}")
        if request.method not in allowed.split(", "):
            reason = "the features are read-only" if allowed == READ else "not on this path"
            return problem(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", f"{request.method} is not allowed here: "
                           f"{reason} ({allowed})", headers={"Allow": allowed})
        try:
            return await self._write(request, provider)
        except (edit.EditError, AuthError) as exc:
            return edit_problem(exc)
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue",
                           f"the database refused a value of the feature (SQLSTATE {exc.pgcode}); nothing was stored")

    async def _write(self, request: Request, provider: GeoserviceProvider) -> Response:
        name, actor = provider.collection.name, request.state.caller.name
        given = request.headers.get("content-crs", "").strip().strip("<>")
        serving = provider.crs.lookup(given) if given else provider.crs.default
        if serving is None:
            raise edit.InvalidFeature(f"Content-Crs {given[:80]!r} is not offered: see the collection's crs list")
        crs, yx = serving.uri, serving.yx
        if request.method == "POST":
            body = await self._body(request)
            written = await run_in_threadpool(self._run, edit.create, name, body, crs, yx, actor)
            return await self._answer(provider, written, HTTPStatus.CREATED)
        text = request.path_params["item_id"]
        if not (text.isascii() and text.isdigit() and len(text) < 19):
            raise edit.UnknownFeature(f"no feature {text[:40]!r} in {name!r}")
        feature_id = int(text)
        if_match = request.headers.get("if-match")
        if if_match is None:
            return problem(HTTPStatus.PRECONDITION_REQUIRED, "PreconditionRequired",
                           f"{request.method} needs If-Match with the ETag of the feature as you read it "
                           "(GET it first): a write over someone else's is refused")
        expected = expected_revision(if_match, feature_id)
        if expected is None:
            raise edit.StaleRevision(f"If-Match {if_match[:80]!r} names no current revision of feature {feature_id}")
        if request.method == "DELETE":
            await run_in_threadpool(self._run, edit.delete, name, feature_id, expected, actor)
            return Response(status_code=HTTPStatus.NO_CONTENT)
        body = await self._body(request)
        operation = edit.replace if request.method == "PUT" else edit.update
        hidden = frozenset(f.name for f in provider.collection.fields if f.mask)  # 脱敏: not the writer's to change
        written = await run_in_threadpool(self._run, operation, name, feature_id, body, crs, yx, expected, actor,
                                          hidden)
        return await self._answer(provider, written, HTTPStatus.OK)

    @staticmethod
    async def _body(request: Request) -> Any:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in BODY_TYPES:
            raise edit.InvalidFeature(f"Content-Type {media or 'missing'!r}: send {', '.join(BODY_TYPES)}")
        return json_body(await request.body(), "the body")

    def _run(self, operation: Any, *arguments: Any) -> edit.Written:
        with self._connection() as conn:
            return operation(conn, self.settings, *arguments)

    async def _answer(self, provider: GeoserviceProvider, written: edit.Written, status: int) -> Response:
        """The stored features as the caller reads them (CRS84), each write's check, the validators of one feature."""
        crs = provider.crs.lookup(CRS84) or provider.crs.default
        texts = [await run_in_threadpool(provider.feature, str(fid), crs) for fid in written.feature_ids]
        features = [orjson.loads(text) for text in texts if text is not None]
        for feature, found in zip(features, written.checks, strict=False):
            if found is not None:
                feature["submission"] = {"status": "received", "conflicts": len(found.conflicts),
                                         "conflict_area_m2": found.conflict_area_m2,
                                         "review": f"{self._items_url(written.layer)}/{feature['id']}/review"}
        single = len(features) == 1
        body = features[0] if single else {"type": "FeatureCollection", "features": features,
                                           "numberReturned": len(features)}
        headers = {"Content-Crs": f"<{crs.uri}>"}
        if single:
            headers["Location"] = f"{self._items_url(written.layer)}/{written.feature_ids[0]}"
            headers["ETag"] = etag(written.version_id, written.feature_ids[0], written.revision)
        return Response(orjson.dumps(body), status_code=status, media_type=GEOJSON, headers=headers)

    def _items_url(self, name: str) -> str:
        return f"{self.settings.server.base_url}/collections/{name}/items"
