"""Client frames: one JSON object per text frame, selected by ``op``.

These pydantic models are the single description of what a client may send;
the codec validates against them and docs/protocol.md is written from them.
Unknown fields are ignored so that newer clients can talk to older servers.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_EPOCH_LENGTH",
    "MAX_HISTORY_PAGE",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_ROOM_LENGTH",
    "MAX_TOKEN_LENGTH",
    "ROOM_PATTERN",
    "Connect",
    "History",
    "Ping",
    "Presence",
    "Publish",
    "Refresh",
    "Request",
    "Since",
    "Subscribe",
    "Unsubscribe",
    "is_valid_idempotency_key",
    "is_valid_room",
    "namespace_of",
]

MAX_ROOM_LENGTH = 128
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")

# Fixed protocol limits: part of the wire contract (docs/protocol.md), not
# operator settings. Operator limits (frame and payload size, subscriptions,
# bad frames) are settings and enforced by the session.
MAX_NAME_LENGTH = 64
MAX_EPOCH_LENGTH = 64
MAX_TOKEN_LENGTH = 8192
MAX_HISTORY_PAGE = 1000
MAX_IDEMPOTENCY_KEY_LENGTH = 128
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[!-~]{1,128}")
"""An idempotency key: 1-128 printable ASCII characters, no spaces."""

RequestId = Annotated[
    int | None, Field(default=None, description="echoed in the reply, to match it to this request")
]
RoomName = Annotated[
    str,
    Field(
        description="a room: 1-128 letters, digits and _ . : - (else room_invalid)",
        # Documented, not validated here: codec.py answers room_invalid, not bad_request.
        json_schema_extra={"pattern": ROOM_PATTERN.pattern.join("^$")},
    ),
]


def is_valid_room(room: str) -> bool:
    """1-128 characters of letters, digits and ``_ . : -``."""
    return ROOM_PATTERN.fullmatch(room) is not None


def is_valid_idempotency_key(key: str) -> bool:
    """1-128 printable ASCII characters without spaces (``!`` to ``~``)."""
    return IDEMPOTENCY_KEY_PATTERN.fullmatch(key) is not None


def namespace_of(room: str) -> str:
    """The part of a room name before its first ``:`` ("" when there is none)."""
    head, sep, _ = room.partition(":")
    return head if sep else ""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class Since(_Frame):
    """The last position a client saw in a room."""

    epoch: Annotated[str, Field(min_length=1, max_length=MAX_EPOCH_LENGTH)]
    offset: Annotated[int, Field(ge=0)]


class Connect(_Frame):
    """Authenticate and name the connection; if sent, the first request."""

    op: Literal["connect"]
    id: RequestId
    name: Annotated[
        str | None,
        Field(
            default=None,
            min_length=1,
            max_length=MAX_NAME_LENGTH,
            description="display name without a token (ignored with one)",
        ),
    ]
    token: Annotated[
        str | None,
        Field(default=None, max_length=MAX_TOKEN_LENGTH, description="a JWT (auth=jwt)"),
    ]


class Subscribe(_Frame):
    """Start receiving a room's events, resuming after ``since`` if given."""

    op: Literal["subscribe"]
    id: RequestId
    room: RoomName
    since: Annotated[
        Since | None,
        Field(default=None, description="the last position seen: replay what came after"),
    ]


class Unsubscribe(_Frame):
    """Stop receiving a room's events."""

    op: Literal["unsubscribe"]
    id: RequestId
    room: RoomName


class Publish(_Frame):
    """Append a JSON value to a room and send it to every subscriber."""

    op: Literal["publish"]
    id: RequestId
    room: RoomName
    data: Annotated[JsonValue, Field(description="any JSON value, null included")]
    durable: Annotated[bool, Field(default=False, description="answer once stored in the database")]
    idempotency_key: Annotated[
        str | None,
        Field(
            default=None,
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
            pattern=r"^[!-~]+$",
            description="the same key, room and user within idempotency_window seconds: "
            "answered with the first publish's position, not published again",
        ),
    ]


class History(_Frame):
    """A page of a room's retained events, oldest first."""

    op: Literal["history"]
    id: RequestId
    room: RoomName
    limit: Annotated[int, Field(default=50, ge=1, le=MAX_HISTORY_PAGE)]
    before: Annotated[
        int | None,
        Field(default=None, ge=1, description="events below this offset; null: the newest"),
    ]


class Presence(_Frame):
    """The room's members: one entry per subscribed connection."""

    op: Literal["presence"]
    id: RequestId
    room: RoomName


class Refresh(_Frame):
    """A new token for this connection, before the current one expires."""

    op: Literal["refresh"]
    id: RequestId
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class Ping(_Frame):
    """An application-level round trip; the reply carries the server's time."""

    op: Literal["ping"]
    id: RequestId


Request = Connect | Subscribe | Unsubscribe | Publish | History | Presence | Refresh | Ping

MODELS: dict[str, type[_Frame]] = {
    "connect": Connect,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "publish": Publish,
    "history": History,
    "presence": Presence,
    "refresh": Refresh,
    "ping": Ping,
}
