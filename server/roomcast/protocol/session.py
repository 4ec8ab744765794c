"""Session rules: the per-connection state machine, with no I/O.

A transport feeds every incoming frame to :meth:`Session.receive_text` (or
:meth:`Session.receive_binary`) and acts on what comes back:

* a validated request, to carry out and answer;
* :class:`RequestError`, to answer with an error reply (the connection stays);
* :class:`ConnectionClosing`, to close the connection with its code.

The session reads the connection's current rooms from the collection it was
given (the transport's live set), so it keeps no copy that could drift. The
rules enforced here:

* ``connect`` is only accepted as the first frame;
* a room name is at most ``max_room_length`` characters (``room_invalid``);
* a room is subscribed at most once, and at most ``max_subscriptions`` at a time
  (``limit_exceeded``);
* ``unsubscribe`` needs a subscription;
* publishes are limited to ``publish_rate`` per second in bursts of
  ``publish_burst`` (``rate_limited``); every refused publish counts as a breach
  and every accepted one takes a breach back, and at ``max_rate_breaches`` the
  connection is closed (3004);
* a publish's ``data`` is at most ``max_payload_bytes`` once encoded;
* after ``max_bad_frames`` malformed or refused frames (limits included) the
  connection is closed (3502).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from .codec import DataNotEncodable, decode_request, encode_data
from .codes import ErrorCode
from .errors import FrameTooLarge, ProtocolViolation, RateLimited, RequestError, UnsupportedData
from .frames import MAX_ROOM_LENGTH, Connect, Publish, Request, Subscribe, Unsubscribe
from .ratelimit import TokenBucket

__all__ = ["Session", "SessionLimits", "SessionState"]


# Refusals that count towards max_bad_frames: a malformed frame, or one over a limit.
# (already subscribed / not subscribed are ordinary races of a correct client.)
_COUNTED = frozenset(
    {ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_OP, ErrorCode.ROOM_INVALID, ErrorCode.LIMIT_EXCEEDED}
)


class SessionState(enum.Enum):
    NEW = "new"  # no frame received yet: connect is still allowed
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_frame_bytes: int = 128 * 1024
    max_payload_bytes: int = 64 * 1024
    max_subscriptions: int = 100
    max_bad_frames: int = 20
    max_room_length: int = MAX_ROOM_LENGTH
    publish_rate: float = 0.0  # per second; 0: no limit
    publish_burst: int = 1
    max_rate_breaches: int = 20


class _Uncounted(RequestError):
    """A refusal a correct client can run into (a race); not a bad frame."""


class Session:
    """One connection's protocol state. Not thread-safe; one per connection."""

    def __init__(
        self,
        limits: SessionLimits,
        rooms: Collection[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.rooms = rooms
        self.state = SessionState.NEW
        self.bad_frames = 0
        self.rate_breaches = 0
        self._clock = clock
        self._publishes = TokenBucket(limits.publish_rate, limits.publish_burst, clock())

    def receive_binary(self) -> None:
        """Binary frames are not part of the protocol: always closes with 1003."""
        self.state = SessionState.CLOSED
        raise UnsupportedData("binary frames are not supported")

    def receive_text(self, text: str) -> Request:
        """Validate one text frame against the protocol and this session's state."""
        if self.state is SessionState.CLOSED:
            raise ProtocolViolation("session is closed")
        if len(text) > self.limits.max_frame_bytes:
            self.state = SessionState.CLOSED
            raise FrameTooLarge("frame too large")
        try:
            request = decode_request(text)
            first = self.state is SessionState.NEW
            self.state = SessionState.OPEN
            self._check(request, first)
        except RequestError as exc:
            if exc.code in _COUNTED and not isinstance(exc, _Uncounted):
                self.refused()
            raise
        return request

    def refused(self) -> None:
        """Count one bad frame (malformed, or refused by a limit or a permission);
        raises :class:`ProtocolViolation` (3502) at ``max_bad_frames``."""
        self.bad_frames += 1
        if self.bad_frames >= self.limits.max_bad_frames:
            self.state = SessionState.CLOSED
            raise ProtocolViolation("too many bad frames") from None

    def _check(self, request: Request, first: bool) -> None:
        room = getattr(request, "room", None)
        if room is not None and len(room) > self.limits.max_room_length:
            raise RequestError(
                ErrorCode.ROOM_INVALID,
                f"room names are at most {self.limits.max_room_length} characters",
                request.id,
            )
        if isinstance(request, Connect):
            if not first:
                raise _Uncounted(
                    ErrorCode.BAD_REQUEST, "connect must be the first frame", request.id
                )
        elif isinstance(request, Subscribe):
            if request.room in self.rooms:
                raise _Uncounted(ErrorCode.BAD_REQUEST, "already subscribed", request.id)
            if len(self.rooms) >= self.limits.max_subscriptions:
                raise RequestError(
                    ErrorCode.LIMIT_EXCEEDED,
                    f"at most {self.limits.max_subscriptions} subscriptions per connection",
                    request.id,
                )
        elif isinstance(request, Unsubscribe) and request.room not in self.rooms:
            raise RequestError(ErrorCode.NOT_SUBSCRIBED, "not subscribed", request.id)
        elif isinstance(request, Publish):
            self._rate(request)

    def _rate(self, request: Publish) -> None:
        if self._publishes.take(self._clock()):
            self.rate_breaches = max(0, self.rate_breaches - 1)
            return
        self.rate_breaches += 1
        if self.rate_breaches >= self.limits.max_rate_breaches:
            self.state = SessionState.CLOSED
            raise RateLimited("publish rate exceeded repeatedly")
        raise RequestError(
            ErrorCode.RATE_LIMITED,
            f"at most {self.limits.publish_rate:g} publishes per second; "
            f"retry in {self._publishes.retry_after():.2f} s",
            request.id,
        )

    def payload(self, request: Publish) -> bytes:
        """The publish's ``data`` as JSON bytes, within ``max_payload_bytes``."""
        try:
            data = encode_data(request.data)
        except DataNotEncodable as exc:
            raise RequestError(ErrorCode.BAD_REQUEST, str(exc), request.id) from None
        if len(data) > self.limits.max_payload_bytes:
            raise RequestError(
                ErrorCode.TOO_LARGE,
                f"data is {len(data)} bytes; the limit is {self.limits.max_payload_bytes}",
                request.id,
            )
        return data
