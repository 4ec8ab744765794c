"""One room's events, as an async iterator.

A :class:`Subscription` is what ``await rc.subscribe(room)`` returns. The client
feeds it every event of the room, across reconnects: it drops messages it has
already delivered (by position), turns resumes into :class:`Recovered` or
:class:`Reset` events, and holds at most ``max_buffer`` events for a consumer that
has not taken them (beyond that it drops them and the consumer gets one
:class:`Reset` with cause ``overflow`` instead).

Iterating ends (``StopAsyncIteration``) after ``unsubscribe()``, after an
:class:`Unsubscribed` event, or when the client is closed; it raises
:class:`ConnectionFailed` when the client gave up, or :class:`RequestRefused` when a
resubscribe was refused (a refreshed token that no longer allows the room), after
the events received before that.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from ..protocol.events import Position
from .errors import ClientClosed
from .events import Event, Message, Recovered, Reset, SubscribeResult, Unsubscribed, event_of
from .position import RoomPosition

if TYPE_CHECKING:
    from .connection import Client

__all__ = ["Subscription"]


class _Gap:
    """Where a full buffer dropped events: one ``Reset`` (overflow) when reached."""

    __slots__ = ("epoch", "offset")

    def __init__(self, epoch: str, offset: int) -> None:
        self.epoch = epoch
        self.offset = offset


class Subscription:
    """The events of one room, in order: ``async for event in sub``.

    :attr:`result` is the first subscribe's result; :attr:`position` the last
    message received (what a resume asks from). One consumer at a time.
    """

    def __init__(self, client: Client, room: str, since: Position | None, max_buffer: int) -> None:
        self.room = room
        #: The first subscribe's result (set before ``subscribe()`` returns).
        self.result: SubscribeResult | None = None
        self._client = client
        self._position = RoomPosition(since)
        self._max_buffer = max_buffer
        self._items: deque[Event | _Gap] = deque()
        self._held = 0  # events in _items (a _Gap is not counted)
        self._gap: _Gap | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        # The client's bookkeeping: subscribe on every connection while wanted.
        self.wanted = True
        self.subscribed = False  # asked on the current connection
        self.live = False  # answered on the current connection: its events count
        self.first: asyncio.Future[SubscribeResult] = asyncio.get_running_loop().create_future()

    @property
    def position(self) -> Position | None:
        """The last message received (or the position the room was reset to)."""
        return self._position.since

    @property
    def active(self) -> bool:
        """Still subscribed: not unsubscribed, removed, or ended with the client."""
        return not self._ended

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if isinstance(item, _Gap):
            if self._gap is item:
                self._gap = None
            return Reset(self.room, item.epoch, item.offset, "overflow")
        self._held -= 1
        return item

    async def unsubscribe(self) -> None:
        """Stop receiving (``rc.unsubscribe(room)``); iterating ends after the events
        already received."""
        await self._client.unsubscribe(self.room)

    # -- fed by the client ----------------------------------------------------------------

    def since(self) -> Position | None:
        return self._position.since

    def subscribed_with(self, result: SubscribeResult, since: Position | None) -> None:
        """A (re)subscribe was answered: a resume says whether it recovered."""
        if not result.recovered:
            self._position.reset(result.epoch, result.offset)
        if since is not None:
            if result.recovered:
                self._push(
                    Recovered(self.room, since, result.epoch, result.offset, result.replayed)
                )
            else:
                self._push(Reset(self.room, result.epoch, result.offset, "not_recovered"))
        if self.result is None:
            self.result = result
        if not self.first.done():
            self.first.set_result(result)

    def deliver(self, frame: dict[str, Any]) -> None:
        """One event frame of this room."""
        kind = frame.get("type")
        if kind == "message":
            if self._position.advance(frame["epoch"], frame["offset"]):
                self._push(Message.of(frame))
            return
        event = event_of(frame)
        if isinstance(event, Reset):
            self._position.reset(event.epoch, event.offset)
        self._push(event)
        if isinstance(event, Unsubscribed):
            self.end()

    def removed(self, reason: str) -> None:
        """The server took the client out of the room without a notice (``revoked``)."""
        self._push(Unsubscribed(self.room, reason))
        self.end()

    def end(self, error: BaseException | None = None) -> None:
        """No more events: iterating ends after the held ones (raising ``error``).
        A first subscribe still waiting fails with ``error`` (or :class:`ClientClosed`)."""
        self.wanted = False
        self.subscribed = self.live = False
        if self._ended:
            return
        self._ended = True
        self._error = error
        if not self.first.done():
            self.first.set_exception(error or ClientClosed(f"{self.room}: no longer subscribed"))
            self.first.exception()  # retrieved: subscribe() may be gone
        self._wake()

    def _push(self, event: Event) -> None:
        if self._ended:
            return
        if self._held >= self._max_buffer:
            position = self._position.since
            if position is None:
                return
            if self._gap is None:
                self._gap = _Gap(position.epoch, position.offset)
                self._items.append(self._gap)
            else:
                self._gap.epoch, self._gap.offset = position
            return
        self._items.append(event)
        self._held += 1
        self._gap = None  # a later overflow is another gap
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __repr__(self) -> str:
        return f"<Subscription {self.room!r} at {self._position!r}>"
