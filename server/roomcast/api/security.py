"""Credentials over HTTP: REST callers (API keys, bearer tokens) and SSE streams.

Failures map to HTTP as auth/errors.py says: 401 (with ``WWW-Authenticate:
Bearer``, ``error="invalid_token"`` and a description saying whether the token
expired), 403 for a principal that may not do this, 429 over a connection
limit (``Retry-After``: the ``retry_after`` setting), 503 when the JWKS cannot
be fetched.

Every credential a request presents must hold (docs/security.md): an
``Authorization`` header that is not one ``Bearer <token>``, an empty
``X-API-Key``, or two of either, is refused 401, never passed over as if it
were absent (FastAPI's ``HTTPBearer``/``APIKeyHeader`` with
``auto_error=False`` do that, so they only describe the schemes in OpenAPI
here). When the application authenticates, a non-Bearer ``Authorization`` is
its business and left to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from ..auth import Authority, InvalidCredentials, Principal, TokenExpiredError
from ..protocol.errors import ConnectionClosing
from .deps import RoomcastDep, scope_principal
from .schemas import ErrorBody

__all__ = [
    "AUTH_ERRORS",
    "CALLER",
    "Caller",
    "Presented",
    "denied",
    "http_error",
    "presented",
    "rest_caller",
    "stream_credentials",
]

CALLER = "roomcast.caller"
"""Scope key: the principal the body guard (bodylimit.py) already made of this
request's credentials, so :func:`get_caller` does not verify them twice."""

_bearer = HTTPBearer(auto_error=False, description="an API key or (auth=jwt) a token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired credentials"},
    403: {"model": ErrorBody, "description": "the credentials do not allow this"},
}


def http_error(
    exc: ConnectionClosing, *, presented: bool = True, retry_after: int | None = None
) -> HTTPException:
    """The HTTP answer to an auth error (auth/errors.py gives each its status).
    ``presented``: whether the request carried credentials (RFC 6750 gives an
    ``error`` only then). ``retry_after``: the ``Retry-After`` of a 429 (the
    ``retry_after`` setting); a caller that can get a 429 passes it."""
    code = getattr(exc, "status", status.HTTP_401_UNAUTHORIZED)
    headers = None
    if code == status.HTTP_401_UNAUTHORIZED:
        challenge = "Bearer"
        if presented:
            description = "token expired" if isinstance(exc, TokenExpiredError) else "invalid"
            challenge += f' error="invalid_token", error_description="{description}"'
        headers = {"WWW-Authenticate": challenge}
    elif code == status.HTTP_429_TOO_MANY_REQUESTS and retry_after is not None:
        headers = {"Retry-After": str(retry_after)}
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


@dataclass(frozen=True, slots=True)
class Presented:
    """The credentials a REST request carries, as :func:`presented` read them."""

    bearer: str | None
    """The token of ``Authorization: Bearer <token>``; None without one."""
    api_key: str | None
    """``X-API-Key`` as sent (``""`` when empty: presented, and no key); None without."""
    malformed: str | None
    """Why ``Authorization`` is not one bearer token (a Basic header, an empty
    token, two headers), or None."""
    duplicate_key: bool
    """More than one ``X-API-Key`` header."""


def presented(headers: Headers) -> Presented:
    """What the ``Authorization`` and ``X-API-Key`` headers of a request present."""
    bearer = malformed = None
    values = headers.getlist("authorization")
    if len(values) > 1:
        malformed = "more than one Authorization header"
    elif values:
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            malformed = "Authorization must be 'Bearer <token>'"
        elif not token or " " in token:
            malformed = "Authorization: Bearer needs one token"
        else:
            bearer = token
    keys = headers.getlist("x-api-key")
    return Presented(bearer, keys[0].strip() if keys else None, malformed, len(keys) > 1)


async def rest_caller(
    authority: Authority, headers: Headers, host: Principal | None = None
) -> Principal:
    """The principal of a REST request (an API key, a token, or ``host``: what the
    application's ``authenticate`` returned). Raises HTTPException (401, or 503
    when the JWKS cannot be fetched) for credentials that do not hold."""
    credentials = presented(headers)
    try:
        if credentials.duplicate_key:
            raise InvalidCredentials("more than one X-API-Key header")
        if credentials.malformed and not authority.host_authenticates:
            raise InvalidCredentials(credentials.malformed)
        return await authority.rest_principal(credentials.bearer, credentials.api_key, host)
    except ConnectionClosing as exc:
        raise http_error(exc) from None


async def get_caller(
    request: Request,
    rc: RoomcastDep,
    _bearer_scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _api_key_scheme: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The principal of a REST request (:func:`rest_caller`). The two scheme
    parameters are for the OpenAPI document only: the headers are read here."""
    known = request.scope.get(CALLER)
    if isinstance(known, Principal):
        return known
    return await rest_caller(rc.authority, request.headers, scope_principal(request))


Caller = Annotated[Principal, Depends(get_caller)]


def stream_credentials(
    request: Request, authority: Authority, query_token: str | None
) -> tuple[str | None, bool]:
    """An SSE request's token, the explicit ones first: ``Authorization: Bearer``,
    the ``token`` query parameter, then the auth cookie; and whether it came from
    the cookie (as on WebSocket, where ``?token=`` also wins over the cookie).

    When tokens count (``auth=jwt``), an explicit credential that cannot be used is
    refused (HTTPException 401), never passed over for the next: an
    ``Authorization`` that is not one bearer token, an empty ``?token=``, or a
    header and a ``?token=`` that differ."""
    credentials = presented(request.headers)
    if authority.verifier is not None:
        problem = credentials.malformed
        if query_token is not None and not query_token:
            problem = "an empty token parameter"
        elif query_token and credentials.bearer not in (None, query_token):
            problem = "two different tokens (Authorization and the token parameter)"
        if problem:
            raise http_error(InvalidCredentials(problem))
    if credentials.bearer is not None:
        return credentials.bearer, False
    if query_token:
        return query_token, False
    cookie = request.cookies.get(authority.cookie)
    return cookie or None, bool(cookie)
