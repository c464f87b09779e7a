"""A submitted project's review (合规性审查) over HTTP: `GET /collections/{id}/items/{fid}/review` answers its status, the
check stored on arrival and the status history (JSON), or with `f=html` the printable review sheet (审查意见书) with a map
of the project and its conflicts (MapLibre from this server, nothing from other hosts); `POST` the same path with
`{"status": …, "comment": …}` and a token with the `review` scope moves it on, the token's name as the reviewer — the
same rules as the conflicts' review (401/403 without the scope, 404 for a collection the caller may not read)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from geoservice import edit
from geoservice.serve.auth import AuthError, require_scope
from geoservice.serve.config import TEMPLATES
from geoservice.serve.crs import CRS84
from geoservice.serve.edits import ITEM, edit_problem
from geoservice.serve.pool import pool_for
from geoservice.serve.problems import problem
from geoservice.serve.provider import GeoserviceProvider
from geoservice.serve.review_api import review_body
from geoservice.settings import Settings

REVIEW = ITEM + "/review"


class SubmissionEndpoints:
    """The review of construction projects written over Part 4."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings, self.database_url = settings, database_url
        environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
        self.sheet = environment.get_template("review_sheet.html")

    def routes(self) -> list[BaseRoute]:
        return [Route(REVIEW, self.review, methods=["GET", "POST"])]

    async def review(self, request: Request) -> Response:
        name, text = request.path_params["collection_id"], request.path_params["item_id"]
        provider = request.state.view.providers.get(name)
        try:
            if request.method == "POST":
                require_scope(self.settings.access, request.state.caller, "review", "reviewing over HTTP")
            if provider is None or provider.collection.kind != "construction":
                return problem(HTTPStatus.NOT_FOUND, "NotFound", f"no submissions in {name!r}")
            if not (text.isascii() and text.isdigit() and len(text) < 19):
                raise edit.UnknownFeature(f"no submission {text[:40]!r} in {name!r}")
            if request.method == "POST":
                status, comment = review_body(await request.body())
                submission = await run_in_threadpool(self._decide, provider, int(text), status, comment,
                                                     request.state.caller.name)
            else:
                submission = await run_in_threadpool(self._read, provider, int(text))
        except (edit.EditError, AuthError, ValueError) as exc:
            return edit_problem(exc)
        if request.query_params.get("f") == "html":
            project = await run_in_threadpool(provider.feature, text, provider.crs.lookup(CRS84) or provider.crs.default)
            return HTMLResponse(self._sheet(submission, orjson.loads(project) if project else None))
        return Response(orjson.dumps(submission.as_dict()), media_type="application/json")

    def _read(self, provider: GeoserviceProvider, feature_id: int) -> edit.Submission:
        with pool_for(self.database_url, self.settings.server.pool_size).connection() as conn, conn.cursor() as cur:
            return edit.read_submission(cur, provider.collection.name, provider.collection.partition_key, feature_id)

    def _decide(self, provider: GeoserviceProvider, feature_id: int, status: str, comment: str,
                reviewer: str) -> edit.Submission:
        with pool_for(self.database_url, self.settings.server.pool_size).connection() as conn:
            return edit.decide(conn, provider.collection.name, provider.collection.partition_key, feature_id, status,
                               comment, reviewer)

    def _sheet(self, submission: edit.Submission, project: dict[str, Any] | None) -> str:
        """The printable review sheet; its map's data (the project and its conflicts, CRS84) as JSON in the page."""
        conflicts = [{"type": "Feature", "geometry": c["geometry"],
                      "properties": {k: v for k, v in c.items() if k != "geometry"}} for c in submission.conflicts]
        data = {"project": project, "conflicts": {"type": "FeatureCollection", "features": conflicts}}
        return self.sheet.render(submission=submission, project=project, conflicts=submission.conflicts,
                                 statuses=edit.STATUSES, data=json.dumps(data, ensure_ascii=False).replace("</", "<\\/"))

