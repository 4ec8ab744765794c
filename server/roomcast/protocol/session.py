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
* a room is subscribed at most once, and at most ``max_subscriptions`` at a time;
* ``unsubscribe`` needs a subscription;
* a publish's ``data`` is at most ``max_payload_bytes`` once encoded;
* after ``max_bad_frames`` malformed frames the connection is closed (3502).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from .codec import DataNotEncodable, decode_request, encode_data
from .codes import ErrorCode
from .errors import FrameTooLarge, ProtocolViolation, RequestError, UnsupportedData
from .frames import Connect, Publish, Request, Subscribe, Unsubscribe

__all__ = ["Session", "SessionLimits", "SessionState"]


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


class Session:
    """One connection's protocol state. Not thread-safe; one per connection."""

    def __init__(self, limits: SessionLimits, rooms: Collection[str]) -> None:
        self.limits = limits
        self.rooms = rooms
        self.state = SessionState.NEW
        self.bad_frames = 0

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
        except RequestError:
            self.bad_frames += 1
            if self.bad_frames >= self.limits.max_bad_frames:
                self.state = SessionState.CLOSED
                raise ProtocolViolation("too many malformed frames") from None
            raise
        first = self.state is SessionState.NEW
        self.state = SessionState.OPEN
        if isinstance(request, Connect):
            if not first:
                raise RequestError(
                    ErrorCode.BAD_REQUEST, "connect must be the first frame", request.id
                )
        elif isinstance(request, Subscribe):
            if request.room in self.rooms:
                raise RequestError(ErrorCode.BAD_REQUEST, "already subscribed", request.id)
            if len(self.rooms) >= self.limits.max_subscriptions:
                raise RequestError(
                    ErrorCode.BAD_REQUEST,
                    f"at most {self.limits.max_subscriptions} subscriptions per connection",
                    request.id,
                )
        elif isinstance(request, Unsubscribe) and request.room not in self.rooms:
            raise RequestError(ErrorCode.NOT_SUBSCRIBED, "not subscribed", request.id)
        return request

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
