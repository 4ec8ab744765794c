"""What a subscription yields and what requests return: typed, immutable values
made from the server's frames (docs/protocol.md, "Events" and "Client operations").

Events of a room, in the order the room's stream delivers them:

* :class:`Message`: one published ``data`` at its :class:`Position`.
* :class:`Join`, :class:`Leave`: presence notices (not replayed on a resume).
* :class:`Recovered`: a subscribe with a position (a resume after a reconnect, or
  ``since=`` given) got every event it missed; they follow, in order.
* :class:`Reset`: there is a gap the client cannot fill by itself: the server's
  ``reset`` notice, a resume the server answered ``recovered: false``, or events the
  subscription dropped because its buffer was full. Take :attr:`Reset.position` as
  the room's position and reload what matters, e.g. ``history(room, before=offset + 1)``.
* :class:`Unsubscribed`: the server took this client out of the room (the
  application's ``unsubscribe``, or a ``refresh`` whose token no longer allows it):
  the last event of the subscription.
* :class:`Notice`: an event type this client does not know (a newer server's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..protocol.events import Position

__all__ = [
    "Event",
    "HistoryPage",
    "Join",
    "Leave",
    "Member",
    "Message",
    "Notice",
    "Position",
    "PublishResult",
    "Recovered",
    "Reset",
    "Session",
    "SubscribeResult",
    "Unsubscribed",
    "event_of",
]

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """A published message (``{"type": "message", ...}``)."""

    room: str
    epoch: str
    offset: int
    data: Any
    sender: str
    ts: float

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    @classmethod
    def of(cls, frame: Frame) -> Message:
        return cls(
            frame["room"], frame["epoch"], frame["offset"], frame["data"], frame["sender"],
            frame["ts"],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Join:
    """Someone subscribed to the room (``conn`` is their connection id)."""

    room: str
    user: str
    conn: str


@dataclass(frozen=True, slots=True)
class Leave:
    """Someone unsubscribed from the room or disconnected."""

    room: str
    user: str
    conn: str


ResetCause = Literal["server", "not_recovered", "overflow"]


@dataclass(frozen=True, slots=True)
class Reset:
    """A gap this client cannot fill: reload, then continue after :attr:`position`.

    ``cause``: ``"server"`` (the server's ``reset`` notice: the room's history was
    lost or could not be delivered without a gap), ``"not_recovered"`` (a subscribe
    from a position the server could not resume: the history was lost or the gap is
    older than it keeps), ``"overflow"`` (this subscription's buffer was full and
    dropped events; :attr:`position` is the last one dropped)."""

    room: str
    epoch: str
    offset: int
    cause: ResetCause

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)


@dataclass(frozen=True, slots=True)
class Recovered:
    """A subscribe from ``since`` got everything after it: ``replayed`` events follow
    (0 when nothing was missed). ``epoch``/``offset`` is where the room was then."""

    room: str
    since: Position
    epoch: str
    offset: int
    replayed: int


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The server removed this client from the room: ``reason`` is the server's
    (``"server"``), or ``"revoked"`` when a refreshed token no longer allows it."""

    room: str
    reason: str


@dataclass(frozen=True, slots=True)
class Notice:
    """An event of a type this client does not know: its ``type`` and other fields."""

    type: str
    room: str
    fields: Frame


Event = Message | Join | Leave | Reset | Recovered | Unsubscribed | Notice


def event_of(frame: Frame) -> Event:
    """The typed event of a server event frame (one with a ``type``)."""
    kind = frame["type"]
    room = frame.get("room", "")
    if kind == "message":
        return Message.of(frame)
    if kind == "join":
        return Join(room, frame.get("user", ""), frame.get("conn", ""))
    if kind == "leave":
        return Leave(room, frame.get("user", ""), frame.get("conn", ""))
    if kind == "reset":
        return Reset(room, frame["epoch"], frame["offset"], "server")
    if kind == "unsubscribed":
        return Unsubscribed(room, frame.get("reason", "server"))
    fields = {k: v for k, v in frame.items() if k not in ("type", "room")}
    return Notice(kind, room, fields)


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """The ``connect`` result of the current connection."""

    conn: str
    user: str
    user_id: str
    expires: float | None
    node: str
    version: int
    anonymous: bool

    @property
    def idempotency_scope(self) -> str:
        """Whose idempotency keys the server checks a publish against: the user id,
        except that every anonymous connection (``anonymous``: no credentials, and a
        new ``anon-`` id each time) shares one scope on the server."""
        return "\x00anon" if self.anonymous else self.user_id

    @classmethod
    def of(cls, result: Frame) -> Session:
        anonymous = result.get("anonymous")
        if not isinstance(anonymous, bool):  # a server from before the field
            anonymous = result.get("expires") is None and result["user_id"].startswith("anon-")
        return cls(
            result["conn"], result["user"], result["user_id"], result.get("expires"),
            result.get("node", ""), result.get("version", 1), anonymous,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """The room's position at the subscribe, and whether the gap since ``since``
    was filled (``replayed`` events follow)."""

    room: str
    epoch: str
    offset: int
    recovered: bool
    replayed: int

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    @classmethod
    def of(cls, result: Frame) -> SubscribeResult:
        return cls(
            result["room"], result["epoch"], result["offset"], result["recovered"],
            result.get("replayed", 0),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where the message landed. ``duplicate``: the server had already published a
    message with the same idempotency key, and this is that one's position."""

    epoch: str
    offset: int
    duplicate: bool = False

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)

    @classmethod
    def of(cls, result: Frame) -> PublishResult:
        return cls(result["epoch"], result["offset"], bool(result.get("duplicate", False)))


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Retained messages below ``before``, oldest first; ``more``: older ones exist
    (ask again with ``before=events[0].offset``). ``epoch``/``offset``: the room now."""

    room: str
    epoch: str
    offset: int
    events: tuple[Message, ...]
    more: bool

    @classmethod
    def of(cls, result: Frame) -> HistoryPage:
        events = tuple(Message.of(e) for e in result["events"])
        return cls(result["room"], result["epoch"], result["offset"], events, result["more"])


@dataclass(frozen=True, slots=True)
class Member:
    """One subscribed connection of the room (a user with two appears twice)."""

    conn: str
    user: str
    joined: float

    @classmethod
    def of(cls, entry: Frame) -> Member:
        return cls(entry["conn"], entry["user"], entry["joined"])
