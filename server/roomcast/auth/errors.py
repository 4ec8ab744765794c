"""Why a client was not let in.

::

    ConnectionClosing (protocol/errors.py)
     +-- Unauthorized (3500)
     |    +-- InvalidCredentials   missing, malformed, badly signed, wrong iss/aud: 401
     +-- TokenExpired (3003)
     |    +-- TokenExpiredError    a valid token past its exp: 401, fetch a new one
     +-- AuthUnavailable (1013)    the JWKS cannot be fetched now: 503, try again
     +-- RateLimited (3004)
          +-- TooManyConnections   per-user or per-IP connection limit: 429

Each carries the HTTP status and the error code REST and SSE answer with.
"""

from __future__ import annotations

from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.errors import ConnectionClosing, RateLimited, TokenExpired, Unauthorized

__all__ = ["AuthUnavailable", "InvalidCredentials", "TokenExpiredError", "TooManyConnections"]


class InvalidCredentials(Unauthorized):
    status = 401
    error_code = ErrorCode.UNAUTHORIZED


class TokenExpiredError(TokenExpired):
    status = 401
    error_code = ErrorCode.TOKEN_EXPIRED


class AuthUnavailable(ConnectionClosing):
    close_code = CloseCode.TRY_AGAIN_LATER
    status = 503
    error_code = ErrorCode.UNAVAILABLE


class TooManyConnections(RateLimited):
    status = 429
    error_code = ErrorCode.LIMIT_EXCEEDED
