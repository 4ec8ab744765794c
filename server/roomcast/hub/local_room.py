"""A room as one process's hub sees it: its live and pending local subscribers.

Used by hub.py only; see its docstring for the replay-to-live handover that
:class:`Pending` and :func:`reached` serve.
"""

from __future__ import annotations

import asyncio

from ..protocol.events import Event, Notice, Position
from .subscriber import Subscriber

__all__ = ["LocalRoom", "Pending", "frame_for", "reached"]


def frame_for(item: Event | Notice, sub: Subscriber) -> str:
    """The form of ``item`` that ``sub``'s transport sends (text frame or SSE)."""
    return item.sse if sub.sse else item.frame


def reached(live: Position, target: Position) -> bool:
    """Whether live delivery at ``live`` has passed ``target`` (or left its epoch)."""
    return live.epoch != target.epoch or live.offset >= target.offset


class Pending:
    """A subscriber that is not live yet: what arrived meanwhile, and from where on
    live events are new to it (None while its replay is still being read)."""

    __slots__ = ("buffer", "until")

    def __init__(self) -> None:
        self.buffer: list[Event | Notice] = []
        self.until: Position | None = None


class LocalRoom:
    __slots__ = ("live", "live_sse", "pending", "ready")

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.live: dict[Subscriber, None] = {}  # get events' text frames (WebSocket)
        self.live_sse: dict[Subscriber, None] = {}  # get events' sse form
        self.pending: dict[Subscriber, Pending] = {}
        self.ready = ready

    def empty(self) -> bool:
        return not self.live and not self.live_sse and not self.pending

    def add_live(self, sub: Subscriber) -> None:
        (self.live_sse if sub.sse else self.live)[sub] = None

    def remove(self, sub: Subscriber) -> bool:
        """Take ``sub`` out of the room, live or pending; whether it was in."""
        found = sub in self.live or sub in self.live_sse or sub in self.pending
        self.live.pop(sub, None)
        self.live_sse.pop(sub, None)
        self.pending.pop(sub, None)
        return found
