"""Subscriber: one connection as the hub sees it, with a bounded outbox.

The hub only ever calls :meth:`Subscriber.offer` (or :meth:`offer_wire`), which
never blocks and never awaits: it appends an already-encoded frame to the
outbox and wakes the connection's writer if it was idle.

A transport that can take a shared, pre-built WebSocket frame without waiting
sets :attr:`Subscriber.direct`. Then, while nothing is queued or being sent
and the connection is writable, :meth:`offer_wire` *corks* the frame instead
of waking the writer, and the hub calls :meth:`flush` once per loop iteration:
every event of that iteration goes out in one write, with no task switch.
Anything offered through the outbox first flushes what is corked, so the
order on the wire is the order of the offers, and backpressure is unchanged
(a paused transport takes nothing directly; frames then queue and count
against the bounds).

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
from typing import Protocol

from ..protocol.codes import CloseCode
from .incidents import INCIDENTS
from .stats import STATS, EvictionReason

__all__ = ["DirectWrite", "Framed", "Subscriber"]


class Framed(Protocol):
    """An event as the hub offers it: its text frame, and the same frame made a
    complete WebSocket frame (``Event`` and ``Notice`` build both once)."""

    @property
    def frame(self) -> str: ...

    @property
    def wire(self) -> bytes: ...


class DirectWrite(Protocol):
    """A connection that can take complete WebSocket frames without waiting."""

    def ready(self) -> bool:
        """Open, not paused by flow control: :meth:`write` would not buffer past
        the transport's high-water mark."""

    def write(self, data: bytes) -> None:
        """Write complete frames now (never awaits)."""


_NO_OUTBOX: deque[str] = deque(maxlen=0)
"""The outbox of every subscriber that never queued a frame (under direct writes,
most of them: an idle connection's deque would cost ~750 bytes). Always empty:
frames are only ever added to a subscriber's own deque."""


class Subscriber:
    """A connection's identity, its rooms, and its outbox of text frames."""

    __slots__ = (
        "_bytes",
        "_corked",
        "_credit",
        "_credit_bytes",
        "_outbox",
        "_waiter",
        "close_code",
        "conn_id",
        "direct",
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
        "user_id",
        "watched_pops",
    )

    def __init__(
        self,
        conn_id: str,
        user: str,
        *,
        max_messages: int,
        max_bytes: int,
        sse: bool = False,
        user_id: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.sse = sse  # receives events' ``sse`` form instead of their text frame
        self.user = user  # display name, as presence and senders show it
        self.user_id = user_id
        """The principal's stable user id, set by the transport once it knows it;
        what ``Hub.disconnect_user`` and ``Hub.unsubscribe_user`` match (control.py)."""
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
        self.direct: DirectWrite | None = None
        """Set by a transport that can take pre-built frames (see offer_wire)."""
        self._outbox: deque[str] = _NO_OUTBOX  # its own deque from the first frame queued
        self._bytes = 0
        self._credit = 0  # frames queued by offer_replay, not yet sent
        self._credit_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._corked: list[Framed] | None = None  # offered, awaiting flush()

    # -- hub side ---------------------------------------------------------------

    def offer(self, frame: str) -> bool:
        """Queue ``frame`` for sending. False if closing or just evicted."""
        if self._corked is not None:
            self.flush()  # what was corked goes first
        if self.close_code is not None:
            return False
        if self._outbox is _NO_OUTBOX:
            self._outbox = deque()
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

    def offer_wire(self, item: Framed) -> bool:
        """Offer an event (shared by every subscriber; see :class:`Framed`).

        When nothing is ahead of it and the connection takes direct writes, the
        event is corked; True means this subscriber just started corking and
        the caller must call :meth:`flush` before this loop iteration ends
        (which writes it, or queues it if the connection cannot take it now).
        Otherwise its text frame is queued like :meth:`offer`.
        """
        corked = self._corked
        if corked is not None:
            corked.append(item)
            return False
        if (
            self.direct is not None
            and not self._outbox
            and not self.sending
            and self.close_code is None
        ):
            self._corked = [item]  # flush() asks the connection if it is ready
            return True
        self.offer(item.frame)
        return False

    def flush(self) -> None:
        """Write what is corked in one write; if the connection can no longer
        take it directly, queue it instead (in order)."""
        corked, self._corked = self._corked, None
        if not corked:
            return
        direct = self.direct
        if direct is not None and self.close_code is None and direct.ready():
            direct.write(corked[0].wire if len(corked) == 1 else b"".join(i.wire for i in corked))
            return
        for item in corked:
            self.offer(item.frame)

    def evict(self, reason: EvictionReason = "outbox_full") -> None:
        """Close as a slow consumer (3001, unless already closing with another
        code): drop the outbox and stop the writer, once. ``reason`` is counted
        for /metrics (hub/stats.py)."""
        was_open = self.close_code is None
        self.close(CloseCode.SLOW_CONSUMER, discard=True)
        hook, self.on_evict = self.on_evict, None
        if hook is not None or was_open:
            STATS.evicted(reason)
            user = self.user_id or self.user
            INCIDENTS.evicted(reason, self.conn_id, user, self.user, sse=self.sse, rooms=self.rooms)
        if hook is not None:
            hook()

    def offer_replay(self, frames: list[str]) -> None:
        """Queue a subscribe's replay without counting it against the bounds.

        A resume may replay up to a whole room history at once; the bounds are
        raised by the replay's size until that many frames have been sent, so
        only live traffic a client cannot keep up with evicts it.
        """
        if self._corked is not None:
            self.flush()
        if self.close_code is not None or not frames:
            return
        size = sum(map(len, frames))
        if self._outbox is _NO_OUTBOX:
            self._outbox = deque()
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
        if self._corked is not None:
            if discard or peer_gone:
                self._corked = None
            else:
                self.flush()  # sent before the close, like the rest of the outbox
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
        if not self._outbox:
            self._outbox = _NO_OUTBOX  # an idle connection keeps no deque
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
