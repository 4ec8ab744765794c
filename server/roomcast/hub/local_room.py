"""A room as one process's hub sees it: its live and pending local subscribers.

Used by hub.py only; see its docstring for the replay-to-live handover that
:class:`Pending` and :func:`reached` serve.
"""

from __future__ import annotations

import asyncio

from ..protocol.events import Event, Notice, Position
from ..protocol.httpchunk import http_chunk
from .audience import Audience
from .broker import Recovery
from .subscriber import Subscriber

__all__ = ["BATCH_CHARS", "BATCH_EVENTS", "LocalRoom", "Pending", "frame_for", "reached"]


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
    """A room's local subscribers, and the events delivered to it in this loop
    iteration that its live subscribers have not been sent yet (:attr:`batch`).

    The hub appends each event (and notice) to the batch and calls :meth:`flush`
    at the end of the loop iteration, or as soon as the batch reaches
    :data:`BATCH_EVENTS` items or :data:`BATCH_CHARS` characters (so an event
    waits behind at most that much). A flush builds the bytes once (one event's
    shared frame, or the batch's frames joined) and writes them to each live
    subscriber with one call (``write`` on :attr:`Subscriber.sink`); a subscriber that cannot
    take them directly gets each item offered in order instead (audience.py, which
    also keeps the transports it wrote to for the next flush). Whoever changes
    :attr:`live` or :attr:`live_sse` flushes first (:meth:`add_live`,
    :meth:`remove`), so an event goes to exactly the subscribers that were live
    when it was delivered.
    """

    __slots__ = ("batch", "batch_chars", "live", "live_sse", "pending", "ready")

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.live = Audience()  # get events' text frames (WebSocket)
        self.live_sse = Audience()  # get events' sse form
        self.pending: dict[Subscriber, Pending] = {}
        self.ready = ready
        self.batch: list[Event | Notice] | None = None
        self.batch_chars = 0

    def empty(self) -> bool:
        return not self.live and not self.live_sse and not self.pending

    def add(self, item: Event | Notice) -> bool:
        """Batch ``item`` for the live subscribers. True: a new batch started, and
        the caller must see that :meth:`flush` runs before this iteration ends."""
        batch = self.batch
        if batch is None:
            self.batch = [item]
            self.batch_chars = len(item.frame)
            return True
        batch.append(item)
        self.batch_chars += len(item.frame)
        if len(batch) >= BATCH_EVENTS or self.batch_chars >= BATCH_CHARS:
            self.flush()
        return False

    def flush(self) -> None:
        """Send the batch to every live subscriber."""
        items = self.batch
        if items is None:
            return
        self.batch = None
        one = items[0] if len(items) == 1 else None
        if self.live:
            data = one.wire if one else b"".join([item.wire for item in items])
            self.live.send(data, [item.frame for item in items], items)
        if self.live_sse:
            texts = [item.sse for item in items]
            data = one.sse_wire if one else http_chunk("".join(texts).encode())  # one chunk
            self.live_sse.send(data, texts, items)

    def add_live(self, sub: Subscriber) -> None:
        self.flush()  # the batch was delivered before ``sub`` went live
        (self.live_sse if sub.sse else self.live).add(sub)

    def remove(self, sub: Subscriber) -> bool:
        """Take ``sub`` out of the room, live or pending; whether it was in."""
        if sub in self.live or sub in self.live_sse:
            self.flush()  # what was delivered while it was in
            self.live.discard(sub)
            self.live_sse.discard(sub)
            return True
        return self.pending.pop(sub, None) is not None


BATCH_EVENTS = 64
"""Items a room's batch holds before it is flushed at once (not at the end of the
loop iteration): the most an event waits behind, with :data:`BATCH_CHARS`."""
BATCH_CHARS = 64 * 1024
"""Characters of the batch's frames past which it is flushed at once."""
