"""The OGC exception body geoservice's own routes answer with (a 401 also says how to authenticate)."""

from __future__ import annotations

from http import HTTPStatus

import orjson
from starlette.responses import Response

from geoservice.serve.auth import CHALLENGE


def problem(status: int, code: str, description: str) -> Response:
    """`{"code", "type", "description"}` as JSON with `status`."""
    headers = {"WWW-Authenticate": CHALLENGE} if status == HTTPStatus.UNAUTHORIZED else None
    return Response(orjson.dumps({"code": code, "type": code, "description": description}), status_code=status,
                    media_type="application/json", headers=headers)
