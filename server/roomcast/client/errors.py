"""The client's exceptions, all under roomcast's one tree.

::

    RoomcastError
     +-- RequestError              (roomcast.protocol) an error reply
     |    +-- RequestRefused         the server refused this client's request: ``op``,
     |                               ``code`` (the protocol's error code), ``message``
     +-- ClientError               the client has no answer to give
          +-- RequestTimeout         no reply within the request's timeout (a TimeoutError too)
          +-- QueueFull              ``max_pending`` requests already wait for their replies
          +-- Disconnected           sent, but the connection was lost before the reply:
          |    |                     it may or may not have taken effect
          |    +-- PublishUnconfirmed  a publish without an idempotency key: never resent
          +-- ClientClosed           the client was closed (``close()``, or the ``async with``
          |                          block ended)
          +-- ConnectionFailed       the client gave up: a close code that says "do not
                                     reconnect", a refused ``connect`` or handshake, or
                                     ``max_retries`` failed attempts in a row

Invalid arguments (a room name the protocol does not allow, a limit out of range) raise
``ValueError`` at the call, before anything is sent.
"""

from __future__ import annotations

from ..protocol.codes import ErrorCode
from ..protocol.errors import RequestError, RoomcastError

__all__ = [
    "ClientClosed",
    "ClientError",
    "ConnectionFailed",
    "Disconnected",
    "PublishUnconfirmed",
    "QueueFull",
    "RequestRefused",
    "RequestTimeout",
]


class RequestRefused(RequestError):
    """The server answered ``op`` with an error reply.

    ``code`` is an :class:`~roomcast.ErrorCode` (``forbidden``, ``rate_limited``, ...);
    a code this client does not know (a newer server's) is ``internal``, and
    :attr:`raw_code` keeps the string as sent."""

    def __init__(self, op: str, code: str, message: str, request_id: int | None = None) -> None:
        try:
            known = ErrorCode(code)
        except ValueError:
            known = ErrorCode.INTERNAL
        super().__init__(known, message, request_id)
        self.args = (f"{op} refused: {code}: {message}",)
        self.op = op
        self.raw_code = code


class ClientError(RoomcastError):
    """The client gave up on a request, or on the connection."""


class RequestTimeout(ClientError, TimeoutError):
    """No reply within the request's timeout, counted from the call (time spent
    waiting for a connection counts)."""


class QueueFull(ClientError):
    """``max_pending`` requests already wait for their replies: this one was not sent."""


class Disconnected(ClientError):
    """The request was sent, but the connection was lost before its reply: it may or
    may not have taken effect. (With ``queue=False`` also a request made while not
    connected: that one was not sent.)"""


class PublishUnconfirmed(Disconnected):
    """A publish without an idempotency key was sent, and the connection was lost
    before its reply. It may or may not have been published; the client does not send
    it again, since a second copy could be published twice. Check the room (its
    ``history``, or the subscription's events after the resume) before publishing it
    anew, or publish with an idempotency key, which the client resends by itself."""


class ClientClosed(ClientError):
    """The client was closed; nothing more is sent or received."""


class ConnectionFailed(ClientError):
    """The client gave up on the connection and will not reconnect.

    ``close_code`` is the server's close code (3500 bad credentials, 3503
    disconnected by the application, ...), or ``None`` when the connection did not
    get that far; ``status`` the HTTP status of a refused handshake or event stream;
    ``error`` the error code of a refused ``connect``."""

    def __init__(
        self,
        message: str,
        *,
        close_code: int | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.status = status
        self.error = error
