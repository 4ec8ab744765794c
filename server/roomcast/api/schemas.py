"""Request and response bodies of the REST routes (also the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Header, Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from ..hub.broker import HistoryPage, PresenceEntry
from ..protocol.codes import CloseCode
from ..protocol.events import Event
from ..protocol.frames import MAX_HISTORY_PAGE, MAX_IDEMPOTENCY_KEY_LENGTH, ROOM_PATTERN

__all__ = [
    "MAX_OFFSET",
    "BroadcastBody",
    "BroadcastOut",
    "DisconnectBody",
    "ErrorBody",
    "HistoryOut",
    "IdempotencyKeyHeader",
    "MessageOut",
    "PresenceOut",
    "PublishBody",
    "PublishOut",
    "PublishedOut",
    "RoomName",
    "StatsOut",
]

RoomName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=f"^{ROOM_PATTERN.pattern}$",
        description="1-128 letters, digits and _ . : -",
        examples=["chat:lobby"],
    ),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=r"^[!-~]+$",
        description="1-128 printable ASCII characters, no spaces. A publish with the same "
        "key, room and caller (user id) within idempotency_window seconds of the first is "
        "not published again: it is answered with the first one's position and "
        '`"duplicate": true`',
        examples=["3f1c9e0a-7b2d-4c51-9a8e-2d6f0b1e4a77"],
    ),
]
MAX_OFFSET = 2**53  # offsets and page positions stay exact in JSON (and fit BIGINT)

HistoryLimit = Annotated[int, Field(ge=1, le=MAX_HISTORY_PAGE)]


def _json_integer(value: object) -> object:
    """JSON Schema's integer: 3 and 3.0, never "3" or true (bodies are strict)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


HistorySize = Annotated[int, Field(ge=1, le=100_000), BeforeValidator(_json_integer)]


class ErrorBody(BaseModel):
    detail: str


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    data: JsonValue = Field(description="any JSON value")


class PublishedOut(BaseModel):
    room: str
    epoch: str
    offset: int


class PublishOut(PublishedOut):
    duplicate: bool = Field(
        default=False,
        description="present, and true, only when this publish was not published again: "
        "its Idempotency-Key was used before, and room, epoch and offset are the first one's",
    )


class MessageOut(BaseModel):
    type: Literal["message"] = "message"
    room: str
    epoch: str
    offset: int
    data: JsonValue
    sender: str
    ts: float

    @classmethod
    def of(cls, event: Event) -> MessageOut:
        return cls.model_validate(event.to_dict())


class HistoryOut(BaseModel):
    room: str
    epoch: str
    offset: int = Field(description="the room's current offset")
    events: list[MessageOut] = Field(description="oldest first")
    more: bool = Field(description="older events are retained")

    @classmethod
    def of(cls, room: str, page: HistoryPage) -> HistoryOut:
        return cls(
            room=room,
            epoch=page.position.epoch,
            offset=page.position.offset,
            events=[MessageOut.of(event) for event in page.events],
            more=page.more,
        )


class MemberOut(BaseModel):
    conn: str
    user: str
    joined: float


class PresenceOut(BaseModel):
    room: str
    members: list[MemberOut]

    @classmethod
    def of(cls, room: str, entries: list[PresenceEntry]) -> PresenceOut:
        members = [MemberOut(conn=e.conn, user=e.user, joined=e.joined) for e in entries]
        return cls(room=room, members=members)


class RoomIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(
        min_length=1, max_length=128, pattern=f"^{ROOM_PATTERN.pattern}$", examples=["chat:lobby"]
    )
    persist: bool = Field(default=False, description="keep every message in SQL")
    history_size: HistorySize | None = Field(
        default=None, description="events the broker keeps (default: the setting)"
    )
    presence: bool = Field(default=True, description="track members and send join/leave")


class RoomOut(BaseModel):
    name: str
    persist: bool
    history_size: int | None
    presence: bool
    created_at: float


class RoomDetail(RoomOut):
    epoch: str
    offset: int = Field(description="the room's current offset")
    local_subscribers: int = Field(description="subscribers on this process")
    total_subscribers: int = Field(description="members on every process (from presence)")


class RoomList(BaseModel):
    rooms: list[RoomOut]
    total: int
    offset: int
    limit: int


RoomField = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=f"^{ROOM_PATTERN.pattern}$", examples=["feed:a"]),
]


class BroadcastBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rooms: list[RoomField] = Field(min_length=1, description="each gets one publish, in order")
    data: JsonValue = Field(description="any JSON value")


class BroadcastOut(BaseModel):
    published: list[PublishedOut]


class DisconnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    code: Literal[tuple(int(c) for c in CloseCode if 3000 <= c <= 3999)] = Field(  # type: ignore[valid-type]
        default=int(CloseCode.DISCONNECTED),
        description="a close code of the table (docs/protocol.md): 3503 (default) tells "
        "clients not to reconnect, 3000-3499 to reconnect",
    )


class StatsOut(BaseModel):
    node: str = Field(description="this process (each worker answers for itself)")
    connections: int
    websockets: int
    sse_streams: int
    subscriptions: int
    rooms: int
    draining: bool
