"""A room as one process's hub sees it: its live and pending local subscribers.

Used by hub.py only; see its docstring for the replay-to-live handover that
:class:`Pending` and :func:`reached` serve.
"""

from __future__ import annotations

import asyncio

from ..protocol.events import Event, Notice, Position
from .broker import Recovery
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
    live events are new to it (None while its replay is still being read).

    What it buffers is bounded by the subscriber's outbox limits (``max_messages``,
    ``max_bytes``: a slow replay read in a hot room must not grow without bound).
    Past them while the replay is being read, the buffer is let go and :attr:`lost`
    keeps the position live delivery continues after; :meth:`settle` then answers the
    subscribe ``recovered: false`` at that position, unless the replay reaches it
    anyway. Past them once the reply is out (live delivery has yet to reach the end
    of the replay), the subscriber is evicted as a slow consumer (3001: it may
    reconnect and resume).
    """

    __slots__ = ("buffer", "lost", "size", "until")

    def __init__(self) -> None:
        self.buffer: list[Event | Notice] = []
        self.until: Position | None = None
        self.lost: Position | None = None
        self.size = 0  # characters of the buffered items' frames, as the outbox counts

    def hold(self, item: Event | Notice, sub: Subscriber) -> None:
        """Buffer ``item``, a live event or notice of the room, for ``sub``. The
        hub calls it for every item while ``sub`` is pending, in delivery order."""
        if sub.close_code is not None:
            return  # closing: a replay or buffer is never queued to it
        until = self.until
        if (
            until is not None
            and isinstance(item, Event)
            and item.epoch == until.epoch
            and item.offset <= until.offset
        ):
            return  # replayed already (the flush would skip it)
        self.buffer.append(item)
        self.size += len(frame_for(item, sub))
        if len(self.buffer) > sub.max_messages or self.size > sub.max_bytes:
            self._overflow(sub)

    def _overflow(self, sub: Subscriber) -> None:
        if self.until is not None:
            sub.evict()  # the reply promised these events: it cannot have them now
        else:
            for item in reversed(self.buffer):
                if isinstance(item, Event):
                    self.lost = item.position
                    break
                if item.kind == "reset":
                    self.lost = Position(item.fields["epoch"], item.fields["offset"])
                    break
        self.buffer = []
        self.size = 0

    def settle(self, recovery: Recovery) -> Recovery:
        """What the subscribe answers once its replay is read: ``recovery``, or, if
        live events it does not reach were let go, ``recovered: false`` at the
        position live delivery continues after (nothing is replayed; the client
        reloads through ``history``, which meets the live events that follow)."""
        lost, self.lost = self.lost, None
        if lost is None:
            return recovery
        end = recovery.events[-1].position if recovery.events else recovery.position
        if lost.epoch == end.epoch and lost.offset <= end.offset:
            return recovery  # what was let go is all in the replay (or before it)
        return Recovery(lost)

    def take(self) -> list[Event | Notice]:
        """What is buffered, emptying the buffer."""
        buffer, self.buffer, self.size = self.buffer, [], 0
        return buffer


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
