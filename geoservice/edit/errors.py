"""The errors a write can raise, each naming the feature and the problem (the HTTP layer maps them to statuses)."""

from __future__ import annotations

from geoservice.errors import GeoserviceError


class EditError(GeoserviceError):
    """A write that cannot be made; nothing was stored."""


class InvalidFeature(EditError):
    """The feature sent is not one the layer can store (geometry, properties, codes, ids): 400."""


class UnknownFeature(EditError):
    """No current feature has this id: 404."""


class StaleRevision(EditError):
    """The feature changed since the revision the writer read (If-Match): 412."""


class DecidedSubmission(EditError):
    """The project is under review or decided and cannot be written, or a review step cannot follow: 409."""


class InvalidDecision(EditError):
    """A review step missing what it needs (a reviewer, an opinion): 422."""
