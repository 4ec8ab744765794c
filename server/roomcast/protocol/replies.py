"""Server frames: every reply, error and event the server sends, as models.

frames.py describes what a client may send; this module describes what it gets
back. The server does not build its frames through these models (codec.py and
events.py encode with orjson, once per event, on the fan-out path): they are
the contract, from which the AsyncAPI document (asyncapi.py) is generated, and
the tests check every frame the server sends in the end-to-end suites against
that document. ``extra="forbid"``: a field the models do not name is a frame
the contract does not describe.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from .codes import ErrorCode

__all__ = [
    "EVENTS",
    "REPLIES",
    "ConnectReply",
    "ConnectResult",
    "DeletedEvent",
    "ErrorDetail",
    "ErrorReply",
    "HistoryReply",
    "HistoryResult",
    "JoinEvent",
    "LeaveEvent",
    "Member",
    "MessageEvent",
    "PingReply",
    "PingResult",
    "PresenceReply",
    "PresenceResult",
    "PublishReply",
    "PublishResult",
    "RefreshReply",
    "RefreshResult",
    "ResetEvent",
    "SseClose",
    "SseError",
    "SubscribeReply",
    "SubscribeResult",
    "UnsubscribeReply",
    "UnsubscribeResult",
    "UnsubscribedEvent",
]

RequestId = Annotated[
    int | None, Field(description="the request's id, echoed; null when it had no usable id")
]
Epoch = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="names the room's history stream; opaque, compare for equality only",
    ),
]
Offset = Annotated[int, Field(ge=0, description="a position in the room: 0 before any event")]
Room = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$", description="a room name")]
UnixTime = Annotated[float, Field(description="server Unix time, in seconds")]


class _ServerFrame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- results -------------------------------------------------------------------


class ConnectResult(_ServerFrame):
    """Who the connection is, and where it landed."""

    conn: Annotated[str, Field(description="this connection's id")]
    user: Annotated[str, Field(description="the display name: sender and presence entries")]
    user_id: Annotated[str, Field(description="the token's sub, or a generated anon- id")]
    expires: Annotated[UnixTime | None, Field(description="the token's exp; null without one")]
    node: Annotated[str, Field(description="the server process (8 hex digits, new per start)")]
    version: Annotated[Literal[1], Field(description="the protocol version")]
    anonymous: Annotated[
        bool,
        Field(
            description="no credentials: every anonymous connection shares one scope of "
            "idempotency keys (its user_id is new on each connection)"
        ),
    ]


class SubscribeResult(_ServerFrame):
    """The room's position at the subscribe; replayed events end at ``offset``."""

    room: Room
    epoch: Epoch
    offset: Offset
    recovered: Annotated[bool, Field(description="every event after since was replayed")]
    replayed: Annotated[int, Field(ge=0, description="how many events follow as replay")]


class UnsubscribeResult(_ServerFrame):
    room: Room


class PublishResult(_ServerFrame):
    """The published event's position."""

    epoch: Epoch
    offset: Annotated[int, Field(ge=1)]
    duplicate: Annotated[
        Literal[True] | None,
        Field(
            default=None,
            description="present (true) when the idempotency key was seen before: "
            "nothing was published, this is the first publish's position",
        ),
    ]


class MessageEvent(_ServerFrame):
    """One published value at its position in a room."""

    type: Literal["message"]
    room: Room
    epoch: Epoch
    offset: Annotated[int, Field(ge=1, description="+1 per publish, starting at 1")]
    data: Annotated[JsonValue, Field(description="the published JSON value")]
    sender: Annotated[str, Field(description="the publisher's display name")]
    ts: UnixTime


class HistoryResult(_ServerFrame):
    """Up to ``limit`` retained events below ``before``, oldest first."""

    room: Room
    epoch: Epoch
    offset: Annotated[int, Field(ge=0, description="the room's current position")]
    events: list[MessageEvent]
    more: Annotated[bool, Field(description="older retained events exist")]


class Member(_ServerFrame):
    conn: str
    user: str
    joined: UnixTime


class PresenceResult(_ServerFrame):
    room: Room
    members: Annotated[list[Member], Field(description="one entry per subscribed connection")]


class RefreshResult(_ServerFrame):
    expires: Annotated[UnixTime | None, Field(description="the new token's exp")]
    revoked: Annotated[
        list[str], Field(description="rooms the new token does not allow: unsubscribed")
    ]


class PingResult(_ServerFrame):
    ts: UnixTime


# -- replies -------------------------------------------------------------------


class _Reply(_ServerFrame):
    id: RequestId
    ok: Literal[True]


class ConnectReply(_Reply):
    result: ConnectResult


class SubscribeReply(_Reply):
    result: SubscribeResult


class UnsubscribeReply(_Reply):
    result: UnsubscribeResult


class PublishReply(_Reply):
    result: PublishResult


class HistoryReply(_Reply):
    result: HistoryResult


class PresenceReply(_Reply):
    result: PresenceResult


class RefreshReply(_Reply):
    result: RefreshResult


class PingReply(_Reply):
    result: PingResult


REPLIES: dict[str, type[_Reply]] = {
    "connect": ConnectReply,
    "subscribe": SubscribeReply,
    "unsubscribe": UnsubscribeReply,
    "publish": PublishReply,
    "history": HistoryReply,
    "presence": PresenceReply,
    "refresh": RefreshReply,
    "ping": PingReply,
}
"""Each op's success reply: ``{"id", "ok": true, "result"}``."""


class ErrorDetail(_ServerFrame):
    code: Annotated[ErrorCode, Field(description="stable; see the error table")]
    message: Annotated[str, Field(description="for people; may change")]


class ErrorReply(_ServerFrame):
    """A request that failed; the connection stays open."""

    id: RequestId
    ok: Literal[False]
    error: ErrorDetail


# -- notices (events without a position) -----------------------------------------


class JoinEvent(_ServerFrame):
    """A connection subscribed to the room (the new subscriber gets its own)."""

    type: Literal["join"]
    room: Room
    user: str
    conn: str


class LeaveEvent(_ServerFrame):
    """A connection left the room: unsubscribed, disconnected or dropped."""

    type: Literal["leave"]
    room: Room
    user: str
    conn: str


class ResetEvent(_ServerFrame):
    """Live delivery could not continue without a gap: take this as the position
    and reload (e.g. through history)."""

    type: Literal["reset"]
    room: Room
    epoch: Epoch
    offset: Offset


class UnsubscribedEvent(_ServerFrame):
    """The server took this connection out of the room; do not resubscribe."""

    type: Literal["unsubscribed"]
    room: Room
    reason: Literal["server"]


class DeletedEvent(_ServerFrame):
    """The room was deleted (REST ``DELETE /rooms/{room}``); its subscribers are
    unsubscribed."""

    type: Literal["deleted"]
    room: Room


EVENTS: dict[str, type[_ServerFrame]] = {
    "message": MessageEvent,
    "join": JoinEvent,
    "leave": LeaveEvent,
    "reset": ResetEvent,
    "unsubscribed": UnsubscribedEvent,
    "deleted": DeletedEvent,
}
"""Every event ``type``; all but ``message`` are notices (no position, not kept)."""


# -- Server-Sent Events only ---------------------------------------------------------


class SseClose(_ServerFrame):
    """``event: close``: the server ended the stream (a close code of the table)."""

    code: int
    reason: str


class SseError(_ServerFrame):
    """``event: error``: the stream could not start."""

    code: ErrorCode
    message: str
