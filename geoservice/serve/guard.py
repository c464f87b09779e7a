"""What every request passes before a route sees it, and what any failure becomes: an OGC exception body.

- Bodies are counted while they stream in (a chunked body has no Content-Length to check first): past the limit
  the request is a 413 and the rest is never read.
- Text that PostgreSQL cannot store (a NUL character, a lone UTF-16 surrogate) is refused wherever a client can send
  it — query parameters here, JSON bodies and CQL2 JSON literals through `refuse_unstorable` — as a 400 naming it.
- A database outage anywhere is a 503 (the dispatcher adds Retry-After to every 503); a Starlette HTTP error (unknown path, wrong method) keeps its
  status with an OGC body; anything else is logged and answered with an OGC body that carries no internals.
"""

from __future__ import annotations

import logging
import urllib.parse
from http import HTTPStatus
from typing import Any

import psycopg2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from geoservice.serve.pool import PoolExhausted
from geoservice.serve.problems import ClientError, client_problem, problem

LOGGER = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5
#: a request body may be this much larger than the upload limit (base64 makes a file 4/3 larger, plus the JSON around it)
BASE64_SLACK = 1.4
_OUTAGES = (psycopg2.OperationalError, psycopg2.InterfaceError, PoolExhausted)
_CODES = {HTTPStatus.NOT_FOUND: "NotFound", HTTPStatus.METHOD_NOT_ALLOWED: "MethodNotAllowed",
          HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "PayloadTooLarge"}


class BodyTooLarge(Exception):
    """A request body went past the upload limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the upload limit ({limit / BASE64_SLACK / 2**20:g} MB, "
                         "server.max_upload_mb)")


def body_limit(max_upload_mb: float) -> int:
    """The most bytes a request body may have."""
    return int(max_upload_mb * 2**20 * BASE64_SLACK)


def limited_receive(receive: Receive, limit: int) -> Receive:
    """`receive` that raises BodyTooLarge as soon as more than `limit` body bytes have arrived."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


def unstorable(text: str) -> str | None:
    """Why PostgreSQL could not store `text` (None when it can)."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (not a character)"
    return None


def refuse_unstorable(value: Any, where: str) -> None:
    """Raise ValueError naming `where` when any string in a JSON value (keys too) is one PostgreSQL cannot store."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and (reason := unstorable(item)):
            raise ValueError(f"{where} {reason}")


def query_refusal(scope: Scope) -> str | None:
    """Why the path or query string cannot be answered (unstorable text), None when it can."""
    path_reason = unstorable(scope["path"])
    if path_reason:
        return f"the path {path_reason}"
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        reason = unstorable(name) or unstorable(value)
        if reason:
            return f"parameter {name[:40]!r} {reason}"
    return None


def failure_response(exc: BaseException) -> Response:
    """The answer to an exception no route turned into a response."""
    if isinstance(exc, BodyTooLarge):
        return problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "PayloadTooLarge", str(exc))
    if isinstance(exc, ClientError):  # one a route left unanswered is still the client's mistake
        return client_problem(exc)
    if isinstance(exc, _OUTAGES) or isinstance(getattr(exc, "__cause__", None), _OUTAGES):
        return problem(HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable", "the database is not available")
    LOGGER.error("unexpected error", exc_info=exc)
    return problem(HTTPStatus.INTERNAL_SERVER_ERROR, "ServerError", "the server failed to answer this request")


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = HTTPStatus(exc.status_code)
    description = "no such resource" if status == HTTPStatus.NOT_FOUND else str(exc.detail)
    if status == HTTPStatus.METHOD_NOT_ALLOWED:
        description = f"method {request.method} is not allowed here"
    response = problem(status, _CODES.get(status, status.phrase.replace(" ", "")), description)
    response.headers.update(exc.headers or {})
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    return failure_response(exc)


#: the exception handlers of every Starlette app in the server (ours and pygeoapi's)
EXCEPTION_HANDLERS = {HTTPException: _http_exception, Exception: _server_error}


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site_refusal(scope: Scope, headers: Any, own_url: str) -> str | None:
    """Why a write authenticated by the session cookie alone is refused (None when it may go on).

    A browser sends the cookie with requests another site makes it send; SameSite=Strict does not cover another port
    of the same host. So such a write must come from this server's own origin (Origin, else Referer) and be
    `application/json`, which no form or simple cross-origin request can send."""
    if scope["method"] in _SAFE_METHODS:
        return None
    own = {_origin(own_url), f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()}
    sender = headers.get("origin") or (_origin(headers["referer"]) if headers.get("referer") else None)
    if sender is None or sender.lower() not in own:
        return (f"a signed-in browser may write only from this server's pages (Origin {sender or 'missing'} is not "
                f"{_origin(own_url)}); API clients send Authorization: Bearer")
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return "a signed-in browser's write must be sent as Content-Type: application/json"
    return None
