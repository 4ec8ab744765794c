"""Credentials over HTTP: REST callers (API keys, bearer tokens) and SSE streams.

Failures map to HTTP as auth/errors.py says: 401 (with ``WWW-Authenticate:
Bearer``, ``error="invalid_token"`` and a description saying whether the token
expired), 403 for a principal that may not do this, 429 over a connection
limit, 503 when the JWKS cannot be fetched.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..auth import Authority, Principal, TokenExpiredError
from ..protocol.errors import ConnectionClosing
from .deps import RoomcastDep, scope_principal
from .schemas import ErrorBody

__all__ = [
    "AUTH_ERRORS",
    "Caller",
    "denied",
    "http_error",
    "stream_credentials",
]

RETRY_AFTER = 5
"""Seconds a client over a connection limit is asked to wait (``Retry-After``)."""

_bearer = HTTPBearer(auto_error=False, description="an API key or (auth=jwt) a token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired credentials"},
    403: {"model": ErrorBody, "description": "the credentials do not allow this"},
}


def http_error(exc: ConnectionClosing, *, presented: bool = True) -> HTTPException:
    """The HTTP answer to an auth error (auth/errors.py gives each its status).
    ``presented``: whether the request carried credentials (RFC 6750 gives an
    ``error`` only then)."""
    code = getattr(exc, "status", status.HTTP_401_UNAUTHORIZED)
    headers = None
    if code == status.HTTP_401_UNAUTHORIZED:
        challenge = "Bearer"
        if presented:
            description = "token expired" if isinstance(exc, TokenExpiredError) else "invalid"
            challenge += f' error="invalid_token", error_description="{description}"'
        headers = {"WWW-Authenticate": challenge}
    elif code == status.HTTP_429_TOO_MANY_REQUESTS:
        headers = {"Retry-After": str(RETRY_AFTER)}
    return HTTPException(code, str(exc) or exc.reason, headers=headers)


def denied(principal: Principal, what: str) -> HTTPException:
    """401 for an anonymous caller (credentials would help), else 403."""
    if principal.anonymous:
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"credentials required to {what}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return HTTPException(status.HTTP_403_FORBIDDEN, f"not allowed to {what}")


async def get_caller(
    request: Request,
    rc: RoomcastDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The principal of a REST request (an API key, a token, or what the
    application's ``authenticate`` returned)."""
    try:
        return await rc.authority.rest_principal(
            bearer.credentials if bearer is not None else None,
            api_key,
            scope_principal(request),
        )
    except ConnectionClosing as exc:
        raise http_error(exc) from None


Caller = Annotated[Principal, Depends(get_caller)]


def stream_credentials(
    request: Request, authority: Authority, query_token: str | None
) -> tuple[str | None, bool]:
    """An SSE request's token, the explicit ones first: ``Authorization: Bearer``,
    the ``token`` query parameter, then the auth cookie; and whether it came from
    the cookie (as on WebSocket, where ``?token=`` also wins over the cookie)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    if query_token:
        return query_token, False
    cookie = request.cookies.get(authority.cookie)
    return cookie or None, bool(cookie)
