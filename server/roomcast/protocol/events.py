"""Events: what the server sends to every subscriber of a room.

A :class:`Event` is one published message. It carries its room's position
``(epoch, offset)`` and encodes itself to a text frame exactly once, however
many subscribers receive it: :attr:`Event.frame` is computed on first use and
then shared. The payload ``data`` is kept as raw JSON bytes from the moment it
is validated, so it is never decoded or re-encoded on the fan-out path.

Each also has an ``sse`` form (one Server-Sent Event around the same JSON),
likewise built once and shared by every SSE subscriber.

A :class:`Notice` is an event without a position (presence ``join`` and
``leave``, and the control events of docs/protocol.md). Notices are live only:
they are not kept in history and are not replayed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from .httpchunk import http_chunk
from .wsframe import text_frame

__all__ = ["Event", "Notice", "Position", "encode_event_frame"]


class Position(NamedTuple):
    """A place in a room's stream: the history's ``epoch`` and an ``offset``.

    Offsets start at 1 for a room's first event; a room with no events is at
    offset 0. A new epoch means the history before it is gone.
    """

    epoch: str
    offset: int


def encode_event_frame(
    room: str, epoch: str, offset: int, data: bytes, sender: str, ts: float
) -> str:
    """The text frame of a message event; ``data`` must be valid JSON bytes."""
    return orjson.dumps(
        {
            "type": "message",
            "room": room,
            "epoch": epoch,
            "offset": offset,
            "data": orjson.Fragment(data),
            "sender": sender,
            "ts": ts,
        }
    ).decode()


class _Encoded:
    """What Event and Notice share: a text ``frame`` each builds once, and the
    forms derived from it, cached the same way."""

    __slots__ = ("_frame", "_sse", "_sse_wire", "_wire")

    def __init__(self) -> None:
        self._frame: str | None = None
        self._sse: str | None = None
        self._wire: bytes | None = None
        self._sse_wire: bytes | None = None

    @property
    def frame(self) -> str:
        raise NotImplementedError

    @property
    def wire(self) -> bytes:
        """``frame`` as a complete WebSocket frame (wsframe.py), built once."""
        wire = self._wire
        if wire is None:
            wire = self._wire = text_frame(self.frame.encode())
        return wire

    @property
    def sse(self) -> str:
        raise NotImplementedError

    @property
    def sse_wire(self) -> bytes:
        """``sse`` as one chunk of a chunked HTTP body (httpchunk.py), built once."""
        wire = self._sse_wire
        if wire is None:
            wire = self._sse_wire = http_chunk(self.sse.encode())
        return wire


class Event(_Encoded):
    """One published message at its position in a room.

    Immutable by convention; brokers create it, the hub and transports only
    read it. ``frame`` is the encoded text frame, built once and cached.
    """

    __slots__ = ("data", "epoch", "offset", "room", "sender", "ts")

    def __init__(
        self, room: str, epoch: str, offset: int, data: bytes, sender: str, ts: float
    ) -> None:
        super().__init__()
        self.room = room
        self.epoch = epoch
        self.offset = offset
        self.data = data
        self.sender = sender
        self.ts = ts

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    @property
    def frame(self) -> str:
        frame = self._frame
        if frame is None:
            frame = self._frame = encode_event_frame(
                self.room, self.epoch, self.offset, self.data, self.sender, self.ts
            )
        return frame

    @property
    def sse(self) -> str:
        """The event as one Server-Sent Event: ``id`` is ``<epoch>:<offset>``."""
        sse = self._sse
        if sse is None:
            sse = self._sse = (
                f"event: message\nid: {self.epoch}:{self.offset}\ndata: {self.frame}\n\n"
            )
        return sse

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (for REST bodies and history results)."""
        return {
            "type": "message",
            "room": self.room,
            "epoch": self.epoch,
            "offset": self.offset,
            "data": orjson.loads(self.data),
            "sender": self.sender,
            "ts": self.ts,
        }

    def __repr__(self) -> str:
        return f"Event({self.room!r}, {self.epoch!r}, {self.offset})"


class Notice(_Encoded):
    """An event without a position: ``{"type": kind, "room": room, **fields}``."""

    __slots__ = ("fields", "kind", "room")

    def __init__(self, kind: str, room: str, fields: dict[str, Any]) -> None:
        super().__init__()
        self.kind = kind
        self.room = room
        self.fields = fields

    @property
    def frame(self) -> str:
        frame = self._frame
        if frame is None:
            frame = self._frame = orjson.dumps(
                {"type": self.kind, "room": self.room, **self.fields}
            ).decode()
        return frame

    @property
    def sse(self) -> str:
        """The notice as one Server-Sent Event; a notice that moves the room to a
        new position (``reset``) carries it as its ``id``."""
        sse = self._sse
        if sse is None:
            fields = self.fields
            pid = f"id: {fields['epoch']}:{fields['offset']}\n" if "epoch" in fields else ""
            sse = self._sse = f"event: {self.kind}\n{pid}data: {self.frame}\n\n"
        return sse

    def __repr__(self) -> str:
        return f"Notice({self.kind!r}, {self.room!r}, {self.fields!r})"
