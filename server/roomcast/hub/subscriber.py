"""Subscriber: one connection as the hub sees it, with a bounded outbox.

The hub only ever calls :meth:`Subscriber.offer`, which never blocks and never
awaits: it appends an already-encoded frame to the outbox and wakes the
connection's writer if it was idle. When the outbox would exceed its bounds
(``max_messages`` frames or ``max_bytes`` characters) the subscriber is
evicted as a slow consumer: its outbox is dropped and it is marked closing
with 3001. Its writer then closes the connection; the client reconnects and
resumes from history.

The writer side (a transport) must loop::

    while True:
        frame = sub.pop()
        if frame is None:
            if sub.closing:
                break
            await sub.wait()
        else:
            await send(frame)
    # then close the connection with sub.close_code, unless sub.peer_gone

and set :attr:`Subscriber.on_evict` to something that stops that loop even
while it is blocked in ``send`` on a peer that stopped reading.

Objects here hold no references back to the hub, so they form no cycles.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..protocol.codes import CloseCode

__all__ = ["Subscriber"]


class Subscriber:
    """A connection's identity, its rooms, and its outbox of text frames."""

    __slots__ = (
        "_bytes",
        "_credit",
        "_credit_bytes",
        "_outbox",
        "_waiter",
        "close_code",
        "conn_id",
        "max_bytes",
        "max_messages",
        "on_evict",
        "peer_gone",
        "pops",
        "rooms",
        "sending",
        "sse",
        "stalls",
        "user",
        "watched_pops",
    )

    def __init__(
        self, conn_id: str, user: str, *, max_messages: int, max_bytes: int, sse: bool = False
    ) -> None:
        self.conn_id = conn_id
        self.sse = sse  # receives events' ``sse`` form instead of their text frame
        self.user = user
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.rooms: set[str] = set()  # maintained by the hub
        self.close_code: CloseCode | None = None
        self.peer_gone = False
        self.pops = 0  # frames taken by the writer: progress, for the send watchdog
        self.sending = False  # the writer holds a frame it has not finished sending
        self.watched_pops = 0  # pops at the watchdog's last look
        self.stalls = 0  # consecutive looks that found a send with no progress
        self.on_evict: Callable[[], object] | None = None
        """Called once on eviction; the transport uses it to stop a blocked writer."""
        self._outbox: deque[str] = deque()
        self._bytes = 0
        self._credit = 0  # frames queued by offer_replay, not yet sent
        self._credit_bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    # -- hub side ---------------------------------------------------------------

    def offer(self, frame: str) -> bool:
        """Queue ``frame`` for sending. False if closing or just evicted."""
        if self.close_code is not None:
            return False
        self._outbox.append(frame)
        self._bytes += len(frame)
        if (
            len(self._outbox) > self.max_messages + self._credit
            or self._bytes > self.max_bytes + self._credit_bytes
        ):
            self.evict()
            return False
        self._wake()
        return True

    def evict(self) -> None:
        """Close as a slow consumer (3001, unless already closing with another
        code): drop the outbox and stop the writer, once."""
        self.close(CloseCode.SLOW_CONSUMER, discard=True)
        hook, self.on_evict = self.on_evict, None
        if hook is not None:
            hook()

    def offer_replay(self, frames: list[str]) -> None:
        """Queue a subscribe's replay without counting it against the bounds.

        A resume may replay up to a whole room history at once; the bounds are
        raised by the replay's size until that many frames have been sent, so
        only live traffic a client cannot keep up with evicts it.
        """
        if self.close_code is not None or not frames:
            return
        size = sum(map(len, frames))
        self._outbox.extend(frames)
        self._bytes += size
        self._credit += len(frames)
        self._credit_bytes += size
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self, code: CloseCode, *, discard: bool = False, peer_gone: bool = False) -> None:
        """Mark closing with ``code``; the writer sends what is queued, then closes.

        ``discard`` drops the queued frames first (eviction); ``peer_gone`` says
        the peer has already disconnected, so nothing more is sent at all.
        The first close code wins.
        """
        if self.close_code is None:
            self.close_code = code
        if peer_gone:
            self.peer_gone = True
        if discard or peer_gone:
            self._outbox.clear()
            self._bytes = self._credit = self._credit_bytes = 0
        self._wake()

    # -- writer side ------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def pop(self) -> str | None:
        """The next frame to send, or None when the outbox is empty."""
        if not self._outbox:
            return None
        frame = self._outbox.popleft()
        self._bytes -= len(frame)
        self.pops += 1
        self.sending = True
        if self._credit:
            self._credit -= 1
            self._credit_bytes = max(0, self._credit_bytes - len(frame))
        return frame

    async def wait(self) -> None:
        """Wait until a frame is offered or the subscriber is closed."""
        self.sending = False
        if self._outbox or self.close_code is not None:
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def __repr__(self) -> str:
        return f"Subscriber({self.conn_id!r}, {self.user!r}, queued={len(self._outbox)})"
