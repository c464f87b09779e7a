"""Routes in front of pygeoapi's processes: GET /lookup?x=…&y=…[&crs=…] (the point-lookup process as a plain GET
for web maps and location services) and a check of execution bodies (pygeoapi answers 500 to a body that is
JSON but not an object with an `inputs` object)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import orjson
from pygeoapi.api import API
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geoservice.queries.points import QueryError
from geoservice.serve.processes import LOOKUP
from geoservice.serve.problems import problem

PARAMETERS = {"x", "y", "crs", "f"}


Delegate = Callable[[Request], Awaitable[Response]]


def process_routes(api: API, pygeoapi_execution: Delegate) -> list[Route]:
    """The routes over the grade's processors (404 when the grade may not run the process)."""

    async def execution(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body() or b"null")
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("inputs", {}), dict):
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue",
                           'the body must be a JSON object: {"inputs": {...}}')
        return await pygeoapi_execution(request)

    async def lookup(request: Request) -> Response:
        if LOOKUP not in api.manager.processes:
            return problem(HTTPStatus.NOT_FOUND, "NotFound", "no point lookup here")
        params = request.query_params
        unknown = sorted(set(params) - PARAMETERS)
        try:
            if unknown:
                raise QueryError(f"unknown parameter {unknown[0]!r} (give x, y and optionally crs)")
            if params.get("f", "json") != "json":
                raise QueryError("f: only json is offered")
            x, y = _coordinate(params.get("x"), "x"), _coordinate(params.get("y"), "y")
            processor = api.manager.get_processor(LOOKUP)
            _, result = await run_in_threadpool(processor.execute, {"x": x, "y": y, "crs": params.get("crs")})
        except QueryError as exc:
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue", str(exc))
        return Response(orjson.dumps(result), media_type="application/json")

    return [Route("/lookup", lookup, methods=["GET"]),
            Route("/processes/{process_id}/execution", execution, methods=["POST"])]


def _coordinate(text: str | None, name: str) -> float:
    if text is None:
        raise QueryError(f"parameter {name!r} is missing")
    try:
        value = float(text)
    except ValueError as exc:
        raise QueryError(f"{name} must be a number, not {text!r}") from exc
    if not math.isfinite(value):
        raise QueryError(f"{name} must be a finite number")
    return value
