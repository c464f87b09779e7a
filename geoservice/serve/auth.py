"""Who is calling: a bearer token checked against the configured SHA-256 digests, giving a name, grade and scopes."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from geoservice.settings import GRADES, AccessSettings, token_digest

ANONYMOUS_NAME = "anonymous"
#: the cookie a browser session keeps the token in after signing in at /login
SESSION_COOKIE = "geoservice_token"
#: the challenge of a 401: API clients send a bearer token, browsers ask for the token as a Basic password
CHALLENGE = 'Bearer realm="geoservice", Basic realm="geoservice", charset="UTF-8"'


class AuthError(Exception):
    """A presented token is malformed or unknown (401), or lacks what the request needs (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """The caller of one request: the token's name (or anonymous), the highest grade it reads, its scopes."""

    name: str
    grade: str
    scopes: frozenset[str]

    def reads(self, grade: str) -> bool:
        """Whether data graded `grade` is visible to this caller."""
        return GRADES.index(grade) <= GRADES.index(self.grade)


ANONYMOUS = Caller(ANONYMOUS_NAME, "public", frozenset())


def presented_token(authorization: str | None) -> str | None:
    """The token of an `Authorization` header (Bearer, or Basic with the token as password); None without one."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "basic":  # a browser's sign-in dialog: any user name, the token as password
        try:
            token = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            token = ""
    elif scheme.lower() != "bearer":
        token = ""
    if not token.strip():
        raise AuthError(401, "the Authorization header must be `Bearer <token>` (or Basic with the token as password)")
    return token.strip()


def caller_of(access: AccessSettings, token: str | None) -> Caller:
    """The caller a token names; anonymous without one. A token that matches no configured digest is refused
    rather than served as anonymous, so a typo is not mistaken for missing data."""
    if token is None:
        return ANONYMOUS
    digest = token_digest(token)
    for name, configured in access.tokens.items():
        if hmac.compare_digest(digest, configured.sha256):
            return Caller(name, configured.grade, frozenset(configured.scopes))
    raise AuthError(401, "unknown token")


def require_scope(access: AccessSettings, caller: Caller, scope: str, action: str) -> None:
    """Refuse `action` unless the caller's token has `scope`: disabled (403) when no token has it at all,
    401 for an anonymous caller, 403 for a token without it."""
    if not any(scope in token.scopes for token in access.tokens.values()):
        raise AuthError(403, f"{action} is disabled: no token with the {scope!r} scope is configured")
    if caller.name == ANONYMOUS_NAME:
        raise AuthError(401, f"{action} needs a bearer token with the {scope!r} scope")
    if scope not in caller.scopes:
        raise AuthError(403, f"token {caller.name!r} has no {scope!r} scope")
