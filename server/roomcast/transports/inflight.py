"""InFlight: one connection's publishes that the broker has taken but not answered.

A client may send several publishes without waiting for each reply (the bench's
publisher keeps 16 in flight; a backend relaying a feed does the same). Carried
out one at a time, each would wait for the broker's round trip before the next
frame is even read. Instead the reader submits each publish to the hub (which
fixes its place in the room: Hub.submit_publish) and goes on reading; this
queue sends the replies in request order as the publishes complete.

Rules that keep the protocol's guarantees:

* at most ``limit`` publishes are in flight: the reader then waits for the
  oldest before it reads on (backpressure on the socket, not an error);
* any other request first waits until every publish in flight is answered, so
  a ``history`` or ``unsubscribe`` after a publish sees it, as when requests
  were carried out one by one;
* replies (and errors) leave in the order the requests arrived;
* a publish the broker answered at once (the memory broker) is answered at the
  end of the loop iteration, after the room's batch (hub/local_room.py) has been
  written to this process's subscribers: a publisher that waits for each reply
  cannot run ahead of what its room's sockets have taken. At one publish at a
  time to 1,000 subscribers that halved the p99 and took 7% off the server's CPU
  per delivery (docs/performance.md). A second such publish read in the same
  iteration shows a publisher that does not wait for each reply: its replies
  leave at once, so that it sends more while the batch is written (held back to
  the end of every iteration, they cost a fifth of the peak with 16 in flight).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from ..hub.broker import Duplicate, Unavailable
from ..hub.publishing import PublishedNotPersisted
from ..hub.subscriber import Subscriber
from ..protocol.codec import encode_error, encode_reply
from ..protocol.codes import ErrorCode
from ..protocol.events import Event

__all__ = ["InFlight", "publish_result"]

log = logging.getLogger("roomcast.dispatch")


_EMPTY: collections.deque[_Entry] = collections.deque(maxlen=0)
"""Shared by every InFlight that has not pipelined yet (an idle connection's deque
would cost ~750 bytes); nothing is ever appended to it."""


def publish_result(event: Event) -> dict[str, Any]:
    """A publish's result: its position, and ``duplicate: true`` when it was not
    published again (an idempotency key seen before, hub/publishing.py)."""
    if isinstance(event, Duplicate):
        return {"epoch": event.epoch, "offset": event.offset, "duplicate": True}
    return {"epoch": event.epoch, "offset": event.offset}


class _Entry:
    __slots__ = ("frame", "future", "rid")

    def __init__(self, rid: int | None, future: asyncio.Future[Event] | None, frame: str | None):
        self.rid = rid
        self.future = future
        self.frame = frame

    def done(self) -> bool:
        return self.future is None or self.future.done()


class InFlight:
    _draining = False  # a drain is scheduled for the end of this loop iteration

    def __init__(self, sub: Subscriber, limit: int) -> None:
        self.sub = sub
        self.limit = limit
        self._queue: collections.deque[_Entry] = _EMPTY  # a deque of its own once used

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, rid: int | None, pending: asyncio.Future[Event]) -> None:
        """A submitted publish: its reply goes out once it and those before it are done."""
        if self._queue is _EMPTY:
            self._queue = collections.deque()
        self._queue.append(_Entry(rid, pending, None))
        if not pending.done():
            pending.add_done_callback(self._on_done)
        elif self._draining:  # a second in this iteration: the publisher pipelines, and
            self._drain()  # its replies now let it send more while the batch is written
        else:  # the memory broker: after the room's batch is written
            self._draining = True  # (its flush was scheduled first: call_soon is FIFO)
            pending.get_loop().call_soon(self._scheduled_drain)

    def add_frame(self, frame: str) -> None:
        """An answer known already (an error), sent after the replies ahead of it."""
        if not self._queue:
            self.sub.offer(frame)
            return
        self._queue.append(_Entry(None, None, frame))  # not _EMPTY: it holds entries

    async def room(self) -> None:
        """Return once fewer than ``limit`` publishes are in flight."""
        while len(self._queue) >= self.limit:
            await self._wait_head()

    async def settle(self) -> None:
        """Return once every publish in flight is answered."""
        while self._queue:
            await self._wait_head()

    async def _wait_head(self) -> None:
        head = self._queue[0].future
        if head is not None and not head.done():
            await asyncio.wait([head])
        self._drain()

    def _on_done(self, _: asyncio.Future[Event]) -> None:
        self._drain()

    def _scheduled_drain(self) -> None:
        self._draining = False
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue and queue[0].done():
            entry = queue.popleft()
            frame = entry.frame if entry.frame is not None else _answer(entry)
            self.sub.offer(frame)


def _answer(entry: _Entry) -> str:
    future = entry.future
    assert future is not None
    rid = entry.rid
    if future.cancelled():
        return encode_error(rid, ErrorCode.UNAVAILABLE, "publish cancelled")
    exc = future.exception()
    if exc is None:
        return encode_reply(rid, publish_result(future.result()))
    if isinstance(exc, Unavailable):
        return encode_error(rid, ErrorCode.UNAVAILABLE, str(exc) or "unavailable")
    if isinstance(exc, PublishedNotPersisted):  # it went out: not `unavailable`
        return encode_error(rid, ErrorCode.NOT_PERSISTED, str(exc))
    log.error("publish failed", exc_info=exc)
    return encode_error(rid, ErrorCode.INTERNAL, "internal error")
