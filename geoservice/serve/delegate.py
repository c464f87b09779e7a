"""pygeoapi as a library: its endpoint functions (landing page, collections, queryables, schema, OpenAPI, processes,
CSV and JSON-LD items) called over the API object of the caller's grade (`request.state.view.api`), on a worker
thread as pygeoapi's own Starlette app calls them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pygeoapi.api import APIRequest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

Endpoint = Callable[[Request], Awaitable[Response]]


def _in_thread(loop: asyncio.AbstractEventLoop, function: Callable[..., tuple], *args: Any) -> tuple:
    asyncio.set_event_loop(loop)  # pygeoapi's process manager expects a loop in the thread
    return function(*args)


async def call(function: Callable[..., tuple], request: Request, *args: Any, check_format: bool = True) -> Response:
    """The response of pygeoapi's `function(api, api_request, *args)` for this request."""
    api = request.state.view.api
    api_request = await APIRequest.from_starlette(request, api.locales)
    if check_format and not api_request.is_valid():
        headers, status, content = api.get_format_exception(api_request)
    else:
        loop = asyncio.get_running_loop()
        headers, status, content = await loop.run_in_executor(None, _in_thread, loop, function, api, api_request, *args)
    if headers.get("Content-Type") == "text/html":
        response: Response = HTMLResponse(content, status_code=status)
    else:
        response = Response(content, status_code=status)
    response.headers.update(headers)
    return response


def endpoint(function: Callable[..., tuple], *path_params: str, check_format: bool = True) -> Endpoint:
    """A route handler calling `function` with the named path parameters."""

    async def handle(request: Request) -> Response:
        return await call(function, request, *(request.path_params[name] for name in path_params),
                          check_format=check_format)

    return handle
