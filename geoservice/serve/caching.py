"""ETag and Last-Modified: derived from what a response reads (the catalog's state, a collection's version or run, the
last review of the conflicts, the writes to written layers), so a client's cached copy is answered 304 without running the query, and a new ETag
comes the moment a new version or run is current."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from geoservice.serve.catalog import CONFLICTS, Collection

if TYPE_CHECKING:
    from geoservice.serve.live import CatalogState


def validators(request: Request, state: CatalogState | None, collection: Collection | None) -> tuple[str, datetime | None] | None:
    """The (ETag, Last-Modified) of a response that reads `collection` (or the whole catalog when None), for the
    caller's grade and the requested representation; None when the state is unknown (an outage)."""
    if state is None:
        return None
    view = request.state.view
    parts = [state.structure or "-", view.grade, request.url.path, request.url.query, request.headers.get("accept", "")]
    modified = _moment(collection.modified) if collection is not None else None
    if collection is None or collection.name == CONFLICTS:  # review decisions change the conflicts' properties
        parts.append(str(state.review))
        if state.reviewed_at is not None and (modified is None or state.reviewed_at > modified):
            modified = state.reviewed_at
    if collection is None or collection.editable:  # so do writes a written collection's features
        parts.append(state.edits or "")
        if state.edited_at is not None and (modified is None or state.edited_at > modified):
            modified = state.edited_at
    if collection is None:
        stamps = [_moment(c.modified) for c in (p.collection for p in view.providers.values()) if c.modified]
        modified = max([m for m in (modified, *stamps) if m is not None], default=None)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f'W/"{digest}"', modified


def _moment(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def not_modified(request: Request, tags: tuple[str, datetime | None] | None) -> Response | None:
    """A 304 when the client's copy is current (If-None-Match, else If-Modified-Since), else None."""
    if tags is None:
        return None
    etag, modified = tags
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        offered = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        fresh = "*" in offered or etag.removeprefix("W/") in offered
    elif (since := request.headers.get("if-modified-since")) is not None and modified is not None:
        try:
            fresh = modified.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            fresh = False
    else:
        fresh = False
    return with_validators(Response(status_code=304), tags) if fresh else None


def with_validators(response: Response, tags: tuple[str, datetime | None] | None) -> Response:
    """The response with its ETag and Last-Modified headers."""
    if tags is not None:
        etag, modified = tags
        response.headers["ETag"] = etag
        if modified is not None:
            response.headers["Last-Modified"] = format_datetime(modified.astimezone(UTC), usegmt=True)
    return response

