"""The one OGC exception writer of geoservice's routes, and the one family of client errors they answer with it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus

import orjson
from starlette.responses import Response

from geoservice.serve.auth import CHALLENGE


class ClientError(ValueError):
    """A request the client got wrong; the message is safe to show. Answered `status` with the OGC code `code`."""

    status = HTTPStatus.BAD_REQUEST
    code = "InvalidParameterValue"


class NotFoundError(ClientError):
    """What the request names does not exist (or is hidden from the caller)."""

    status = HTTPStatus.NOT_FOUND
    code = "NotFound"


def problem(status: int, code: str, description: str, headers: Mapping[str, str] | None = None,
            html: Callable[[dict[str, str]], str] | None = None) -> Response:
    """`{"code", "type", "description"}` with `status`: as JSON, or as the page `html` renders from it; a 401 also
    says how to authenticate."""
    exception = {"code": code, "type": code, "description": description}
    headers = {**(headers or {}), **({"WWW-Authenticate": CHALLENGE} if status == HTTPStatus.UNAUTHORIZED else {})}
    if html is not None:
        return Response(html(exception), status_code=status, media_type="text/html", headers=headers)
    return Response(orjson.dumps(exception), status_code=status, media_type="application/json", headers=headers)


def client_problem(exc: ClientError, headers: Mapping[str, str] | None = None,
                   html: Callable[[dict[str, str]], str] | None = None) -> Response:
    """The answer to a client error."""
    return problem(exc.status, exc.code, str(exc), headers, html)
