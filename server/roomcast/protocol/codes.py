"""Close codes and error codes: the one table clients code against.

Close codes fall in ranges that tell a client what to do next:

=============  ===========================================================
1000-2999      standard WebSocket codes (RFC 6455)
3000-3499      reconnect and resume from the last position seen
3500-3999      do not reconnect: fix the request, the token or the client
4000-4999      free for applications built on roomcast
=============  ===========================================================

Error codes are the stable ``code`` strings of error replies; the connection
stays open after an error reply.
"""

from __future__ import annotations

import enum

__all__ = [
    "CloseCode",
    "ErrorCode",
    "close_reason",
    "closing_code_of",
    "error_meaning",
    "http_status_of",
    "should_reconnect",
]


class CloseCode(enum.IntEnum):
    """Every close code the server sends, with its meaning."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002  # sent by the WebSocket layer: a malformed WebSocket frame
    UNSUPPORTED_DATA = 1003  # a binary frame; the protocol is text only
    INVALID_DATA = 1007  # sent by the WebSocket layer: a text frame that is not UTF-8
    POLICY = 1008
    TOO_BIG = 1009  # a frame over the size limit
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013

    # 3000-3499: reconnect and resume.
    SHUTDOWN = 3000
    SLOW_CONSUMER = 3001
    BROKER_LOST = 3002
    TOKEN_EXPIRED = 3003
    RATE_LIMITED = 3004

    # 3500-3999: do not reconnect.
    UNAUTHORIZED = 3500
    FORBIDDEN = 3501
    PROTOCOL_VIOLATION = 3502
    DISCONNECTED = 3503  # the application disconnected this user (rc.disconnect)


_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.GOING_AWAY: "going away",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.UNSUPPORTED_DATA: "binary frames are not supported",
    CloseCode.INVALID_DATA: "invalid UTF-8",
    CloseCode.POLICY: "policy violation",
    CloseCode.TOO_BIG: "frame too large",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SERVICE_RESTART: "service restart",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.SHUTDOWN: "server shutdown",
    CloseCode.SLOW_CONSUMER: "slow consumer",
    CloseCode.BROKER_LOST: "broker lost",
    CloseCode.TOKEN_EXPIRED: "token expired",
    CloseCode.RATE_LIMITED: "rate limited",
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.PROTOCOL_VIOLATION: "protocol violation",
    CloseCode.DISCONNECTED: "disconnected by the application",
}


def close_reason(code: CloseCode) -> str:
    """The short reason sent with ``code`` (always under the 123-byte limit)."""
    return _REASONS[code]


def should_reconnect(code: int) -> bool:
    """Whether a client that saw close ``code`` should reconnect and resume.

    3000-3499 mean "reconnect and resume"; 3500-3999 mean "stop and report".
    Standard codes mean "reconnect" except those that say the client itself
    sent something wrong (1002, 1003, 1007, 1008, 1009): reconnecting would
    only repeat it. Application codes (4000-4999) are the application's to
    define: False.
    """
    if 3000 <= code <= 3499:
        return True
    if 3500 <= code <= 4999:
        return False
    return code not in _CLIENT_FAULTS


_CLIENT_FAULTS = frozenset(
    {
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_DATA,
        CloseCode.INVALID_DATA,
        CloseCode.POLICY,
        CloseCode.TOO_BIG,
    }
)


class ErrorCode(enum.StrEnum):
    """The ``code`` of an error reply: ``{"id": 3, "ok": false, "error": {...}}``."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    NOT_SUBSCRIBED = "not_subscribed"
    ROOM_INVALID = "room_invalid"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    LIMIT_EXCEEDED = "limit_exceeded"
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"
    UNAVAILABLE = "unavailable"
    NOT_PERSISTED = "not_persisted"  # delivered live, not committed: do not just retry
    INTERNAL = "internal"


_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "a malformed frame, a field missing, of the wrong type or out of range",
    ErrorCode.UNKNOWN_OP: "op is not one of the eight ops",
    ErrorCode.NOT_SUBSCRIBED: "unsubscribe of a room this connection is not subscribed to",
    ErrorCode.ROOM_INVALID: "not a valid room name, or longer than max_room_length",
    ErrorCode.TOO_LARGE: "publish data over max_payload_bytes",
    ErrorCode.RATE_LIMITED: "publish over the connection's rate; the message says when to retry",
    ErrorCode.LIMIT_EXCEEDED: "max_subscriptions, or a user at max_connections_per_user",
    ErrorCode.FORBIDDEN: "the token does not allow this room (or another user's token)",
    ErrorCode.UNAUTHORIZED: "refresh with an invalid token",
    ErrorCode.TOKEN_EXPIRED: "refresh with an expired token",
    ErrorCode.UNAVAILABLE: "the broker cannot serve it now: retry later",
    ErrorCode.NOT_PERSISTED: "a durable publish went out but was not committed: check history, "
    "do not just retry",
    ErrorCode.INTERNAL: "an unexpected server error (logged by the server)",
}


def error_meaning(code: ErrorCode) -> str:
    """One line on when the server answers ``code`` (docs/protocol.md has the table)."""
    return _MEANINGS[code]


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNKNOWN_OP: 400,
    ErrorCode.NOT_SUBSCRIBED: 400,
    ErrorCode.ROOM_INVALID: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.LIMIT_EXCEEDED: 429,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.NOT_PERSISTED: 500,  # not 503: a retry would publish the event twice
    ErrorCode.INTERNAL: 500,
}


def http_status_of(code: ErrorCode) -> int:
    """The HTTP status REST and SSE answer an error of ``code`` with."""
    return _HTTP_STATUS[code]


_CLOSING: dict[ErrorCode, CloseCode] = {
    ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
    ErrorCode.TOKEN_EXPIRED: CloseCode.TOKEN_EXPIRED,
    ErrorCode.RATE_LIMITED: CloseCode.RATE_LIMITED,
    ErrorCode.LIMIT_EXCEEDED: CloseCode.RATE_LIMITED,
    ErrorCode.UNAVAILABLE: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.NOT_PERSISTED: CloseCode.INTERNAL_ERROR,
    ErrorCode.INTERNAL: CloseCode.INTERNAL_ERROR,
}


def closing_code_of(code: ErrorCode) -> CloseCode:
    """The close code of a connection refused with error ``code``: 3500 for
    ``unauthorized``, 3003 ``token_expired``, 3004 for limits, 1013
    ``unavailable``, 1011 ``internal`` and ``not_persisted``, and 3501
    (forbidden) for the rest."""
    return _CLOSING.get(code, CloseCode.FORBIDDEN)
