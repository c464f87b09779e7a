"""The conflict ledger over HTTP: a conflict's review case (read open to whoever reads the conflicts; changes need a
bearer token with the `review` scope, the token's name recorded as the reviewer) and the report page at /report."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from geoservice import review
from geoservice.report import NoSuchRunError, html_report
from geoservice.serve.auth import AuthError, Caller, require_scope
from geoservice.serve.guard import refuse_unstorable
from geoservice.serve.problems import problem
from geoservice.serve.catalog import CONFLICTS
from geoservice.settings import Settings

REVIEW_PATH = f"/collections/{CONFLICTS}/items/{{conflict_id}}/review"
REPORT_PATH = "/report"
_STATUS_OF = {review.UnknownConflictError: HTTPStatus.NOT_FOUND, review.InvalidTransitionError: HTTPStatus.CONFLICT,
              review.InvalidReviewError: HTTPStatus.UNPROCESSABLE_ENTITY}


class ReviewEndpoints:
    """Review and report routes; 404 when the caller's grade may not read the conflicts (a write first says it needs a
    token with the review scope)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def routes(self) -> list[BaseRoute]:
        return [Route(REVIEW_PATH, self.case, methods=["GET", "POST"]), Route(REPORT_PATH, self.report, methods=["GET"])]

    @staticmethod
    def _hidden(request: Request) -> bool:
        return CONFLICTS not in request.state.view.providers

    async def case(self, request: Request) -> Response:
        if self._hidden(request):
            if request.method == "POST":
                try:
                    require_scope(self.settings.access, request.state.caller, "review", "reviewing over HTTP")
                except AuthError as exc:
                    return problem(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", str(exc))
            return problem(HTTPStatus.NOT_FOUND, "NotFound", f"no collection {CONFLICTS!r}")
        text = request.path_params["conflict_id"]
        if not (text.isascii() and text.isdigit() and int(text) < 2**63):
            return problem(HTTPStatus.NOT_FOUND, "NotFound", f"no conflict {text[:40]!r}")
        conflict_id = int(text)
        try:
            if request.method == "POST":
                caller: Caller = request.state.caller
                require_scope(self.settings.access, caller, "review", "reviewing over HTTP")
                status, comment = review_body(await request.body())
                await run_in_threadpool(review.set_status, self.settings, conflict_id, status, comment, caller.name)
            data = await run_in_threadpool(self._case_document, conflict_id)
        except AuthError as exc:
            return problem(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", str(exc))
        except ValueError as exc:
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue", str(exc))
        except review.ReviewError as exc:
            return problem(_STATUS_OF[type(exc)], type(exc).__name__.removesuffix("Error"), str(exc))
        return Response(orjson.dumps(data), media_type="application/json")

    def _case_document(self, conflict_id: int) -> dict[str, Any]:
        case = review.get_case(self.settings, conflict_id)
        events = review.history(self.settings, conflict_id)
        return {"conflict_id": conflict_id, "case": case.as_dict(), "history": [e.as_dict() for e in events],
                "statuses": list(review.STATUSES), "allowed": list(review.TRANSITIONS[case.status])}

    async def report(self, request: Request) -> Response:
        if self._hidden(request):
            return problem(HTTPStatus.NOT_FOUND, "NotFound", "no report here")
        try:
            page = await run_in_threadpool(html_report, self.settings, None)
        except NoSuchRunError as exc:
            return problem(HTTPStatus.NOT_FOUND, "NotFound", str(exc))
        return HTMLResponse(page)


def review_body(body: bytes) -> tuple[str, str]:
    """`{"status": …, "comment": …}` from a request body; ValueError naming what is wrong."""
    try:
        data = orjson.loads(body or b"null")
    except orjson.JSONDecodeError as exc:
        raise ValueError("the body must be JSON: {\"status\": …, \"comment\": …}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise ValueError("the body must be a JSON object with a string \"status\" (and a \"comment\")")
    refuse_unstorable(data, "the body")
    unknown = sorted(set(data) - {"status", "comment"})
    if unknown:
        raise ValueError(f"unknown member {unknown[0]!r} (give status and comment)")
    comment = data.get("comment", "")
    if not isinstance(comment, str):
        raise ValueError("\"comment\" must be a string")
    return data["status"], comment
