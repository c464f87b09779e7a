"""Routes in front of pygeoapi's processes: GET /lookup?x=…&y=…[&crs=…] (the point-lookup process as a plain GET
for web maps and location services) and the execution of processes, which here

- checks the body (pygeoapi answers 500 to a body that is JSON but not an object with an `inputs` object, or
  that nests deeper than its recursive `json.loads` can go);
- refuses an anonymous upload unless `access.processes` allows it (401);
- bounds the heavy processes (QUEUED): at most `server.process_workers` run at a time — each on a worker thread, as
  pygeoapi runs every execution — and `server.process_queue` more wait on the event loop, holding no thread; past
  that the answer is a 503 with Retry-After at once, before the body is read, so a burst of uploads cannot starve
  the other pages.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from http import HTTPStatus
from typing import Any

import orjson
import pygeoapi.api.processes as processes_api
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geoservice.queries.points import QueryError
from geoservice.serve import delegate
from geoservice.serve.auth import ANONYMOUS_NAME
from geoservice.serve.crs import canonical_uri
from geoservice.serve.guard import refuse_unstorable
from geoservice.serve.processes import LOOKUP, QUEUED, UPLOAD_INPUTS
from geoservice.serve.problems import problem
from geoservice.settings import Settings

PARAMETERS = {"x", "y", "crs", "f"}
#: the deepest an execution body may nest (a MultiPolygon Feature needs 8 levels; pygeoapi's json.loads recurses)
MAX_BODY_DEPTH = 32
#: what a 503 from a full process queue asks the caller to wait
BUSY_RETRY_SECONDS = 10

#: an execution, given the context (a worker's slot) to hold while it runs
Work = Callable[[AbstractAsyncContextManager], Awaitable[Response]]


class ProcessQueue:
    """At most `workers` executions at once and `waiting` more in line; past that, a 503 with Retry-After."""

    def __init__(self, workers: int, waiting: int) -> None:
        self.workers, self.waiting = workers, waiting
        self.admitted = 0  # running or waiting; only the event loop's thread touches it
        self.slots = asyncio.Semaphore(workers)

    async def run(self, work: Work) -> Response:
        """The response of `work`, which holds a place in line while it reads its request and enters the context it
        is given (a worker's slot) to execute; a 503 at once when the line is full."""
        if self.admitted >= self.workers + self.waiting:
            busy = problem(HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable",
                           f"the server is busy: {self.workers} process execution(s) running and {self.waiting} waiting "
                           f"(server.process_workers, server.process_queue); retry in {BUSY_RETRY_SECONDS} s")
            busy.headers["Retry-After"] = str(BUSY_RETRY_SECONDS)
            return busy
        self.admitted += 1
        try:
            return await work(self.slots)
        finally:
            self.admitted -= 1


def process_routes(settings: Settings) -> list[Route]:
    """The routes over the processors of the caller's view (404 when its grade may not run the process): the
    process list and descriptions, the execution and its queue, and GET /lookup."""
    queue = ProcessQueue(settings.server.process_workers, settings.server.process_queue)
    execute = delegate.endpoint(processes_api.execute_process, "process_id")

    async def checked(request: Request, process_id: str, slot: AbstractAsyncContextManager) -> Response:
        try:
            body = orjson.loads(await request.body() or b"null")
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("inputs", {}), dict):
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue",
                           'the body must be a JSON object: {"inputs": {...}}')
        if _nests_deeper(body, MAX_BODY_DEPTH):
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue",
                           f"the body nests arrays and objects more than {MAX_BODY_DEPTH} deep")
        try:
            refuse_unstorable(body, "the body")
        except ValueError as exc:
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue", str(exc))
        upload = UPLOAD_INPUTS.get(process_id)
        if (upload in body.get("inputs", {}) and request.state.caller.name == ANONYMOUS_NAME
                and not settings.access.process(process_id).anonymous_uploads):
            return problem(HTTPStatus.UNAUTHORIZED, "Unauthorized",
                           f"uploading {upload!r} to {process_id} needs a bearer token "
                           f"(access.processes.{process_id}.anonymous_uploads is off)")
        async with slot:
            return await execute(request)

    async def execution(request: Request) -> Response:
        process_id = request.path_params["process_id"]
        if process_id not in request.state.view.api.manager.processes or process_id not in QUEUED:
            return await checked(request, process_id, nullcontext())
        return await queue.run(lambda slot: checked(request, process_id, slot))

    async def lookup(request: Request) -> Response:
        manager = request.state.view.api.manager
        if LOOKUP not in manager.processes:
            return problem(HTTPStatus.NOT_FOUND, "NotFound", "no point lookup here")
        params = request.query_params
        unknown = sorted(set(params) - PARAMETERS)
        try:
            if unknown:
                raise QueryError(f"unknown parameter {unknown[0]!r} (give x, y and optionally crs)")
            if params.get("f", "json") != "json":
                raise QueryError("f: only json is offered")
            x, y = _coordinate(params.get("x"), "x"), _coordinate(params.get("y"), "y")
            processor = manager.get_processor(LOOKUP)
            _, result = await run_in_threadpool(processor.execute, {"x": x, "y": y, "crs": params.get("crs")})
        except QueryError as exc:
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue", str(exc))
        uri = canonical_uri(result["crs"]) or result["crs"]
        return Response(orjson.dumps(result), media_type="application/json", headers={"Content-Crs": f"<{uri}>"})

    return [Route("/lookup", lookup, methods=["GET"]),
            Route("/processes", delegate.endpoint(processes_api.describe_processes), methods=["GET"]),
            Route("/processes/{process_id}", delegate.endpoint(processes_api.describe_processes, "process_id"),
                  methods=["GET"]),
            Route("/processes/{process_id}/execution", execution, methods=["POST"])]


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests arrays and objects more than `limit` deep (walked with a stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


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
