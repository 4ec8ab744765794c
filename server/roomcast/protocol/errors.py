"""The protocol's exceptions.

::

    RoomcastError
     +-- RequestError          answered with an error reply; the connection stays
     |    +-- (code: ErrorCode, message, request_id)
     |    +-- Refused            raised by an application's hook: ``forbidden`` by default
     +-- ConnectionClosing     the connection must be closed with ``close_code``
          +-- ConnectionRefused  the application's ``on_connect`` refused: the close
          |                      code that matches its error code (closing_code_of)
          +-- ProtocolViolation  3502: too many bad frames
          +-- Unauthorized       3500: missing or invalid credentials
          +-- TokenExpired       3003: the token expired; fetch a new one and reconnect
          +-- RateLimited        3004: too many requests or connections
          +-- UnsupportedData    1003: a binary frame
          +-- FrameTooLarge      1009: a frame over the size limit
"""

from __future__ import annotations

from .codes import CloseCode, ErrorCode, close_reason, closing_code_of

__all__ = [
    "ConnectionClosing",
    "ConnectionRefused",
    "FrameTooLarge",
    "ProtocolViolation",
    "RequestError",
    "RateLimited",
    "Refused",
    "RoomcastError",
    "TokenExpired",
    "Unauthorized",
    "UnsupportedData",
]


class RoomcastError(Exception):
    """Base of every error roomcast raises on purpose."""


class RequestError(RoomcastError):
    """A request that gets an error reply: ``{"id", "ok": false, "error"}``."""

    def __init__(self, code: ErrorCode, message: str, request_id: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


class ConnectionClosing(RoomcastError):
    """The connection must be closed with :attr:`close_code`."""

    close_code: CloseCode = CloseCode.PROTOCOL_VIOLATION

    @property
    def reason(self) -> str:
        return close_reason(self.close_code)


class ProtocolViolation(ConnectionClosing):
    close_code = CloseCode.PROTOCOL_VIOLATION


class UnsupportedData(ConnectionClosing):
    close_code = CloseCode.UNSUPPORTED_DATA


class FrameTooLarge(ConnectionClosing):
    close_code = CloseCode.TOO_BIG


class Unauthorized(ConnectionClosing):
    close_code = CloseCode.UNAUTHORIZED


class TokenExpired(ConnectionClosing):
    close_code = CloseCode.TOKEN_EXPIRED


class RateLimited(ConnectionClosing):
    close_code = CloseCode.RATE_LIMITED


class Refused(RequestError):
    """An application's hook says no: the client gets an error reply with ``code``
    (``forbidden`` unless told otherwise) and ``message``, the connection stays.

    Raised from ``on_subscribe`` or ``on_publish`` it refuses that one request;
    from ``on_connect`` it refuses the connection (see :class:`ConnectionRefused`).
    """

    def __init__(
        self, message: str = "refused", code: ErrorCode | str = ErrorCode.FORBIDDEN
    ) -> None:
        super().__init__(ErrorCode(code), message)


class ConnectionRefused(ConnectionClosing):
    """A connection refused with an error code: closed with the close code that
    matches it (``forbidden`` -> 3501, ``unauthorized`` -> 3500, ...)."""

    def __init__(self, error: RequestError) -> None:
        super().__init__(error.message)
        self.error = error
        self.close_code = closing_code_of(error.code)
